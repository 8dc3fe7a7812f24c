# SPDX-License-Identifier: GPL-3.0-or-later
"""The job engine: worker threads that submit, poll and download, one lane per provider.

bpy-free. The Blender side hands it resolved settings (URLs, keys, online access) through
`settings_for`, reads `events` on the main thread, and never waits on it there.

The never-pay-twice rules are stated (and decided) in providers/billing.py; the engine
follows them: it journals `submit_sent` when the provider is about to send the billing
request, journals the service's job id before anything else happens with it, asks
`billing.resume_step` what a journaled job may do after a restart and `billing.can_refetch`
whether a failed job may be retried. A canceled job never reaches "ready".

A job is worked on (and journaled) only by the process that owns it (jobs/ownership.py):
the other processes sharing the data folder list it, follow it through the journal, and take
it over when its owner is gone.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Callable

from ..errors import Recon3DError
from ..providers import ProviderSettings, provider_class
from ..providers import billing
from .budget import Budgets
from .durations import Durations
from .journal import Journal
from .lanes import Lane
from .model import ACTIVE, Job
from .ownership import TAKEOVER_INTERVAL, Ownership
from . import removal
from .sharing import SharedFolder
from .worker import TRANSIENT_GIVE_UP, Worker

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 4
#: how long a download keeps being tried again after transient faults (a CDN outage) before
#: the job fails with a message saying the result is safe and can be fetched again
DOWNLOAD_GIVE_UP = 5 * 60.0


class Engine(SharedFolder):
    def __init__(self, data_dir: str, settings_for: Callable[[str], ProviderSettings], *,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, sleep=None, owner_label: str = ""):
        self.journal = Journal(data_dir)
        #: which jobs this process owns; `owner_label` tells the others who we are
        self.ownership = Ownership(data_dir, owner_label)
        self.takeover_interval = TAKEOVER_INTERVAL
        self.durations = Durations(data_dir)
        self.budgets = Budgets()          # one request budget per service (jobs/budget.py)
        self.data_dir = data_dir
        self.settings_for = settings_for
        self.max_in_flight = max_in_flight
        self.events: "queue.SimpleQueue[str]" = queue.SimpleQueue()
        self.stopping = threading.Event()
        self._jobs: dict[str, Job] = {}
        self._lanes: dict[str, Lane] = {}
        self._lock = threading.Lock()
        self._take_lock = threading.Lock()      # one take-over (claim + queue) at a time
        self._busy: dict[str, int] = {}         # job id -> its steps queued or being run
        self._running: set[str] = set()         # jobs a worker is on
        self._ran: set[str] = set()             # jobs this engine submitted or took over
        self._stamps: dict[str, tuple] = {}     # journal entry identity, as last read
        self._removed: set[str] = set()         # jobs removed here: never listed again
        self._unsaved: set[str] = set()         # changed while another process held the lock
        self._watcher: threading.Thread | None = None
        self._warned_unsupported = False
        self._sleep = sleep
        #: how long a submit keeps waiting out 429s (the service did not take it) before the
        #: job fails with the service's rate-limit message
        self.rate_limit_give_up = TRANSIENT_GIVE_UP
        self.download_give_up = DOWNLOAD_GIVE_UP

    # -- public -------------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_at)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def has_active_jobs(self) -> bool:
        return any(j.state in ACTIVE for j in self.jobs())

    def job_dir(self, job: Job) -> str:
        return self.journal.job_dir(job.id)

    def set_max_in_flight(self, limit: int) -> None:
        self.max_in_flight = max(1, int(limit))
        for lane in list(self._lanes.values()):
            lane.limit = self.max_in_flight
            lane.spawn()

    def set_request_rate(self, rate: int) -> None:
        """Requests per second each service's budget allows (jobs/budget.py)."""
        self.budgets.set_rate(rate)

    def ran_here(self, job: Job) -> bool:
        """True for jobs this engine submitted or took over (the others' jobs are only listed)."""
        return job.id in self._ran

    def submit(self, job: Job) -> Job:
        """Own the job, journal it, then queue it. Returns at once."""
        if not self._claim(job.id, create=True):
            raise Recon3DError(f"Recon3D could not start job {job.id}: another Blender already "
                               f"uses its folder. Generate again.", code="internal")
        self._ran.add(job.id)
        self._record(job)
        self._enqueue(job, "submit")
        self._start_watch()
        return job

    def cancel(self, job: Job) -> None:
        """Stop local work at once; the worker asks the service to cancel (best effort)."""
        if job.state not in ACTIVE:
            return
        if job.owner is not None:
            raise self._elsewhere(job, "cancel it there")
        job.cancel_event.set()
        lane = self._lanes.get(job.provider)
        if lane is not None and lane.remove(job):
            self.finish_canceled(job, None)
            self._let_go(job)

    def can_retry(self, job: Job) -> bool:
        return billing.can_refetch(job.state, job.remote_id, job.error_code)

    def retry(self, job: Job) -> None:
        """Fetch a failed job's result again (download or poll); nothing is re-submitted,
        so nothing is billed again."""
        if not self.can_retry(job):
            raise Recon3DError("Only a job whose result could not be fetched can be retried; "
                               "generate again instead.", code="input")
        with self._take_lock:
            # (its worker may still be letting go of it: the queued step keeps it owned)
            if not self._claim(job.id):
                job.owner = self.ownership.owner_of(job.id) or job.owner
                raise self._elsewhere(job, "it is being fetched there")
            job.owner = None
            job.cancel_event.clear()
            self._ran.add(job.id)
            # Poll again rather than reuse the journaled result references: a poll never
            # bills, and it hands out fresh download addresses (signed URLs expire).
            data = {k: v for k, v in job.service_data.items() if k != "result_refs"}
            self._set(job, state="running", service_data=data, error=None, error_code=None,
                      finished_at=None)
            self._enqueue(job, "poll")

    def mark_imported(self, job: Job, object_names: list[str]) -> None:
        self._set(job, state="imported", imported_objects=list(object_names), error=None,
                  error_code=None)

    def note_import_error(self, job: Job, message: str) -> None:
        """An import failed: the job stays 'ready' (files intact) so it can be imported again."""
        self._set(job, error=message, error_code="import")

    def remove(self, job: Job,
               before_delete: Callable[[str], object] | None = None) -> removal.Deletion:
        """Take a finished job off the list and delete its folder (its journal entry, photo
        copy and downloaded results). Only the decision and one rename happen here (fast: the
        Remove button runs it on Blender's main thread); the folder is measured and deleted
        on a thread — `.wait()` on the returned Deletion gives the bytes freed. Objects
        imported from it stay where they are. Refused (Recon3DError) while the job is still
        queued, sent, generated or downloaded (cancel it first), while another Blender owns
        it, or when its folder is not inside the data folder. A removed job is not read back
        from the journal: neither by `resume()` nor by the watch on the shared folder.
        `before_delete(folder)` is called once the job may go, before anything is moved."""
        job = self.get(job.id) or job
        blocker = self.removal_blocker(job)
        if blocker is not None:
            raise blocker
        folder = removal.job_folder(self.journal.jobs_dir, job.id)
        self._wait_let_go(job)
        with self._take_lock:
            if not self._claim(job.id):
                job.owner = self.ownership.owner_of(job.id) or job.owner
                raise _owned_elsewhere(job)
            try:
                fresh = self.journal.load(job.id)  # its last owner may have moved it on
                if fresh is not None:
                    job.refresh_from(fresh)
                if job.state in ACTIVE:
                    raise _still_working(job)
                if before_delete is not None:
                    before_delete(folder)
                if os.name == "nt":      # a folder with an open file cannot be moved there
                    self.ownership.release(job.id)
                with self._lock:
                    self._removed.add(job.id)
                try:
                    deletion = removal.delete_folder(folder, self.data_dir)
                except OSError as exc:
                    with self._lock:
                        self._removed.discard(job.id)
                    raise Recon3DError(
                        f"Recon3D could not delete the files of “{job.label or job.id}” in "
                        f"{folder} ({exc.strerror or exc}); the job stays listed. "
                        f"{removal.rename_refused(exc)}", code="removal") from exc
                with self._lock:
                    self._jobs.pop(job.id, None)
                    self._stamps.pop(job.id, None)
                    self._ran.discard(job.id)
            finally:
                self.ownership.release(job.id)
        self.events.put(job.id)
        return deletion

    def removal_blocker(self, job: Job) -> Recon3DError | None:
        """Why `remove` would refuse the job now, as the error to show, or None (the one
        definition of these rules: the Remove button is greyed out with it)."""
        if job.owner is not None:
            return _owned_elsewhere(job)
        if job.state in ACTIVE:
            return _still_working(job)
        return None

    def _wait_let_go(self, job: Job, timeout: float = 2.0) -> None:
        """A job that has just finished may still have its worker making the last journal
        write (see _run); that takes moments."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                busy = job.id in self._busy or job.id in self._running
            if not busy:
                return
            if time.monotonic() > deadline:
                raise Recon3DError(f"“{job.label or job.id}” is still being saved; try again "
                                   f"in a moment.", code="busy")
            time.sleep(0.01)

    def resume(self) -> list[Job]:
        """List the journal's jobs and pick up the unfinished ones no other process owns
        (extension enabled, Blender started); the others' are taken over once they are gone."""
        resumed = []
        for job in self.journal.load_all():
            with self._lock:
                if job.id in self._jobs or job.id in self._removed:
                    continue
                self._jobs[job.id] = job
                # journaled, not read by the watch yet: it reads it once, and forgets it
                # once its folder is gone (removed by another Blender)
                self._stamps.setdefault(job.id, None)
            if self.needs_work(job) and self._take(job):
                resumed.append(job)
        self._start_watch()
        return resumed

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop workers between steps, leaving every job journaled as it is (it resumes on the
        next enable, or in another Blender). Never cancels anything on the service. Every
        `Job.wait()` returns at once, with the job as it is (see Job.wait)."""
        self.stopping.set()
        for job in self.jobs():
            job.release_waiters()
        deadline = time.monotonic() + timeout
        for thread in threading.enumerate():
            if thread.name.startswith("recon3d-") and thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))
        self.save_deferred()
        with self._take_lock:
            # A worker still inside a step keeps its job until it returns (see _run).
            for job_id in self.ownership.owned():
                if job_id not in self._running:
                    self.ownership.release(job_id)

    # -- internals -----------------------------------------------------------------------------
    def _enqueue(self, job: Job, step: str) -> None:
        with self._lock:
            self._busy[job.id] = self._busy.get(job.id, 0) + 1
        self._lane(job.provider).enqueue(job, step)

    def _let_go(self, job: Job) -> None:
        """After a step's last journal write: not owned any more, unless another step of the
        job was queued meanwhile (a retry)."""
        with self._take_lock:
            with self._lock:
                self._running.discard(job.id)
                left = self._busy.pop(job.id, 1) - 1
                if left > 0:
                    self._busy[job.id] = left
                    return
            self.ownership.release(job.id)

    def _lane(self, provider_id: str) -> Lane:
        with self._lock:
            lane = self._lanes.get(provider_id)
            if lane is None:
                lane = self._lanes[provider_id] = Lane(provider_id, self.max_in_flight,
                                                       self.stopping, self._run,
                                                       self.events.put,
                                                       self.budgets.for_provider(provider_id))
            return lane

    def _record(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
        self._save(job)

    def _save(self, job: Job) -> None:
        """Journal a change, only ever as the job's owner. A finished job this engine has let
        go of (imported later, say) is owned again for the write, unless another process has
        it: then the change stays in memory and that process's journal wins. A removed job
        (here or by another Blender: its folder is gone) is never journaled again (that would
        bring its folder back); only `submit` makes a job's folder."""
        with self._lock:
            if job.id in self._removed:
                self._unsaved.discard(job.id)
                return
        if self.ownership.owns(job.id):
            self.journal.write(job)
        elif self._claim(job.id):
            try:
                self.journal.write(job)
            finally:
                if job.id not in self._busy:
                    self.ownership.release(job.id)
        elif self.journal.gone(job.id):
            # Removed (by another Blender): a change from a stale reference is dropped, never
            # written — writing it would bring the folder back.
            with self._lock:
                self._unsaved.discard(job.id)
            return
        else:
            # Another process holds the job's lock: its owner, or a glance at who owns it
            # (owner_of locks a free job for an instant). The watch writes the change once the
            # lock is free (check_others); a newer journal entry of the owner's still wins.
            with self._lock:
                self._unsaved.add(job.id)
            log.info("Recon3D: job %s is locked by another Blender; journaled later", job.id)
            return
        with self._lock:
            self._unsaved.discard(job.id)
        self.events.put(job.id)

    def save_deferred(self) -> None:
        """Journal the changes `_save` could not write while another process held the lock —
        unless that process journaled the job later than our change (its newer entry wins:
        it is taken instead, and ours dropped)."""
        with self._lock:
            pending = [self._jobs[i] for i in self._unsaved if i in self._jobs]
        for job in pending:
            with self._take_lock:       # never while `remove` deletes the job's folder
                owned = self.ownership.owns(job.id)
                if not self._claim(job.id):
                    self._save(job)     # still held (kept for later), or removed (dropped)
                    continue
                try:
                    entry = self.journal.load(job.id)
                    if entry is not None and job.refresh_from(entry):
                        with self._lock:
                            self._unsaved.discard(job.id)
                        self.events.put(job.id)
                    else:
                        self._save(job)
                finally:
                    if not owned and job.id not in self._busy:
                        self.ownership.release(job.id)

    def _set(self, job: Job, **changes) -> None:
        job.update(**changes)
        self._save(job)

    @staticmethod
    def needs_work(job: Job) -> bool:
        """Something is left to do (or to decide, for an interrupted submit): what resume and
    take-over pick up."""
        return _next_step(job) is not None

    def _resume_step(self, job: Job) -> str | None:
        step = _next_step(job)
        if step == "interrupted":
            error = billing.interrupted_submit(_service_name(job.provider))
            self._set(job, state="failed", error_code=error.code, error=str(error))
            return None
        if step == "poll" and job.state == "ready":
            job.update(state="downloading")       # its files are gone: fetch them again
        return step

    def _run(self, job: Job, step: str, lane: Lane) -> None:
        with self._lock:
            self._running.add(job.id)
        try:
            Worker(self, lane).run(job, step)
        finally:
            # Its last journal write is done (finished, or stopped for the next owner).
            self._let_go(job)

    # -- used by workers (jobs/worker.py) -------------------------------------------------------
    def finish_canceled(self, job: Job, provider) -> None:
        if job.state in ("canceled", "imported"):
            return
        remote = job.remote_id
        self._set(job, state="canceled", error=None, error_code=None)
        if provider is not None and remote:
            try:
                provider.cancel(remote, dict(job.service_data))
            except Exception:       # best effort: local polling has stopped either way
                log.info("Recon3D: %s did not cancel job %s", job.provider, remote)


def _next_step(job: Job) -> str | None:
    """What a journaled job may do next (billing.resume_step), without doing anything."""
    if job.state == "ready" and job.files and all(os.path.isfile(f) for f in job.files):
        return None
    try:
        idempotent = provider_class(job.provider).idempotent_submit
    except Recon3DError:
        idempotent = False
    return billing.resume_step(job.state, job.submit_sent, job.remote_id, idempotent)


def _owned_elsewhere(job: Job) -> Recon3DError:
    who = f" ({job.owner.describe()})" if job.owner is not None else ""
    return Recon3DError(f"Another Blender{who} is working on “{job.label or job.id}”; remove "
                        f"it there, or here once that Blender is closed.", code="elsewhere")


def _still_working(job: Job) -> Recon3DError:
    return Recon3DError(f"“{job.label or job.id}” is still being sent, generated or "
                        f"downloaded, so it cannot be removed: cancel it first (Cancel Job), "
                        f"then remove it.", code="busy")


def _service_name(provider_id: str) -> str:
    try:
        return provider_class(provider_id).service
    except Recon3DError:
        return provider_id
