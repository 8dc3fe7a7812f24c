# SPDX-License-Identifier: GPL-3.0-or-later
"""Several Blender processes sharing one data folder (two windows, a headless batch beside the
GUI): each job has one owner process (jobs/ownership.py); the engine of every other process
lists the job, follows it through the journal and takes it over when its owner is gone.
bpy-free. `SharedFolder` is a part of the Engine (jobs/engine.py), kept apart by concern.
"""
from __future__ import annotations

import logging
import os
import threading

from ..errors import Recon3DError
from .model import Job

log = logging.getLogger(__name__)


class SharedFolder:
    """The Engine's dealings with the other processes of its data folder."""

    def check_others(self) -> None:
        """Follow the jobs other processes own: list new ones, take their journaled progress,
        and take over those whose owner is gone. Runs every `takeover_interval` seconds on a
        thread of its own; costs a directory listing and a stat per job, a read per changed
        entry and a claim attempt (~20 µs) per unfinished job of another process."""
        self.save_deferred()
        listed = self.journal.ids()
        if listed is None:          # the folder could not be listed (a network hiccup):
            return                  # nothing is concluded from it; tried again next time
        for job_id in listed:
            if self.stopping.is_set():
                return
            if self.ownership.owns(job_id):
                continue
            stamp = _stamp(self.journal.entry_path(job_id))
            if stamp is None:
                continue
            job = self.get(job_id)
            if job is None or self._stamps.get(job_id) != stamp:
                fresh = self.journal.load(job_id)
                if fresh is None:
                    continue
                self._stamps[job_id] = stamp
                if job is None:
                    with self._lock:
                        if job_id in self._removed:     # removed here while being read
                            continue
                        job = self._jobs.setdefault(job_id, fresh)
                    self.events.put(job_id)
                elif job.refresh_from(fresh):
                    self.events.put(job_id)
            if self.needs_work(job):
                self._take(job)
            elif job.owner is not None:
                job.owner = None
                self.events.put(job_id)
        self._forget_removed(set(listed))

    def _forget_removed(self, listed: set) -> None:
        """Jobs whose journal entry was seen here and whose folder is gone now were removed
        by another Blender (`Engine.remove`): they leave this list too. A job missing from
        the listing whose folder is still there (a listing cut short) stays."""
        for job_id in [i for i in list(self._stamps) if i not in listed]:
            if not self.journal.gone(job_id):
                continue
            with self._lock:
                if job_id in self._busy or self.ownership.owns(job_id):
                    continue
                self._stamps.pop(job_id, None)
                self._unsaved.discard(job_id)
                gone = self._jobs.pop(job_id, None)
            if gone is not None:
                self.events.put(job_id)

    def _take(self, job: Job) -> bool:
        """Own a listed job and queue its next step; False when another process owns it (then
        `job.owner` says who) or nothing is left to do."""
        with self._take_lock:
            if job.id in self._busy or self.stopping.is_set():
                return False
            try:
                claimed = self._claim(job.id)
            except Recon3DError as exc:     # tried again on the next check
                log.warning("Recon3D: %s", exc)
                return False
            if not claimed:
                owner = self.ownership.owner_of(job.id)
                if owner is not None and owner != job.owner:
                    job.owner = owner
                    self.events.put(job.id)
                return False
            # The previous owner may have moved it on since we read it.
            fresh = self.journal.load(job.id)
            if fresh is not None:
                job.refresh_from(fresh)
            job.owner = None
            step = self._resume_step(job)
            if step is None:
                self.ownership.release(job.id)
                self.events.put(job.id)
                return False
            self._ran.add(job.id)
            self._enqueue(job, step)
            self.events.put(job.id)
            return True

    def _claim(self, job_id: str, create: bool = False) -> bool:
        """`Ownership.claim`; only a new job's claim (`create`) makes its folder."""
        try:
            claimed = self.ownership.claim(job_id, create)
            if self.ownership.unsupported and not self._warned_unsupported:
                self._warned_unsupported = True
                log.warning("Recon3D: %s", self.ownership.unsupported)
            return claimed
        except OSError as exc:
            raise Recon3DError(
                f"Recon3D could not lock job {job_id} in its data folder "
                f"{self.journal.jobs_dir} ({exc.strerror or exc}). Check that the folder is "
                f"writable and the disk is not full, then try again.") from exc

    @staticmethod
    def _elsewhere(job: Job, what: str) -> Recon3DError:
        who = f" ({job.owner.describe()})" if job.owner is not None else ""
        return Recon3DError(f"This job is running in another Blender{who}; {what}.",
                            code="elsewhere")

    def _start_watch(self) -> None:
        with self._lock:
            if self._watcher is not None or self.stopping.is_set():
                return
            self._watcher = threading.Thread(target=self._watch, name="recon3d-watch",
                                             daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self.stopping.wait(self.takeover_interval):
            try:
                self.check_others()
            except Exception:       # never let the watch die: take-over depends on it
                log.exception("Recon3D: checking the jobs of other Blenders failed")


def _stamp(path: str) -> tuple | None:
    """Changes whenever the journal entry is rewritten (a new file replaces it each time)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
