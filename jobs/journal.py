# SPDX-License-Identifier: GPL-3.0-or-later
"""The job journal: one JSON file per job, rewritten atomically on every state change.

Layout under the data directory:
    jobs/<job id>/job.json      the journal entry (no secrets, ever)
    jobs/<job id>/input*.png    the prepared inputs, so a job can be retried
    jobs/<job id>/result-*.glb  results, only ever present complete
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading

from .model import Job

JOURNAL_NAME = "job.json"

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.jobs_dir = os.path.join(data_dir, "jobs")
        os.makedirs(self.jobs_dir, exist_ok=True)
        self._lock = threading.Lock()

    def job_dir(self, job_id: str) -> str:
        path = os.path.join(self.jobs_dir, job_id)
        os.makedirs(path, exist_ok=True)
        return path

    def write(self, job: Job) -> None:
        """Temp file, flush + fsync, rename over the old entry, fsync the folder: after a crash
        the entry is either the old or the new one, never half of each."""
        folder = self.job_dir(job.id)
        data = json.dumps(job.to_json(), indent=1, sort_keys=True)
        with self._lock:
            write_atomically(os.path.join(folder, JOURNAL_NAME), data)

    def ids(self) -> list[str] | None:
        """The job folders there are (some may have no entry yet); None when the folder
        cannot be listed now (a network share's hiccup): callers skip that round rather
        than take it for an empty folder."""
        try:
            return sorted(os.listdir(self.jobs_dir))
        except OSError as exc:
            log.warning("Recon3D: the data folder %s cannot be listed (%s)", self.jobs_dir, exc)
            return None

    def gone(self, job_id: str) -> bool:
        """True when the job's folder is really gone (removed), not when the data folder
        itself cannot be reached for a moment."""
        return os.path.isdir(self.jobs_dir) and \
            not os.path.lexists(os.path.join(self.jobs_dir, job_id))

    def entry_path(self, job_id: str) -> str:
        return os.path.join(self.jobs_dir, job_id, JOURNAL_NAME)

    def load(self, job_id: str) -> Job | None:
        """The job as journaled, or None without a readable entry."""
        try:
            return _read(self.entry_path(job_id))
        except UNREADABLE:
            return None

    def load_all(self) -> list[Job]:
        """Every journaled job, oldest first. An entry that cannot be read is logged and listed
        as a failed job saying so (never rewritten: it stays for a person to look at)."""
        jobs = []
        for name in self.ids() or []:
            path = self.entry_path(name)
            if not os.path.isfile(path):
                continue            # a job folder whose job was never journaled
            try:
                jobs.append(_read(path))
            except UNREADABLE as exc:
                log.warning("Recon3D: the job record %s cannot be read (%s); it is listed as "
                            "a failed job and left as it is.", path, exc)
                jobs.append(_unreadable(name, path, exc))
        jobs.sort(key=lambda j: j.created_at)
        return jobs


#: what reading a damaged, odd or vanished entry raises
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)


def _read(path: str) -> Job:
    with open(path, encoding="utf-8") as fh:
        return Job.from_json(json.load(fh))


def _unreadable(name: str, path: str, exc: Exception) -> Job:
    job = Job("", {}, job_id=name, label=name)
    job.update(state="failed", error_code="error", error=(
        f"Recon3D cannot read this job's record ({exc}). Nothing more is sent or fetched for "
        f"it; its files are kept in {os.path.dirname(path)}."))
    try:
        job.created_at = os.path.getmtime(path)
    except OSError:
        pass
    return job


def write_atomically(path: str, text: str) -> None:
    """Temp file beside `path`, flush + fsync, rename over it, fsync the folder: after a crash
    the file is either the old or the new one, never half of each (the journal, batch records,
    learned durations)."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + "-", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
