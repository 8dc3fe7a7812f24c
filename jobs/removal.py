# SPDX-License-Identifier: GPL-3.0-or-later
"""Removing jobs with their files, and which jobs "Clear Old Results" removes. bpy-free.

The engine decides whether a job may go (`Engine.remove`: not while it is still working, not
while another Blender owns it); this module finds its folder — only ever a folder directly
inside the data folder's jobs/ — measures it and deletes it. Deleting first moves the folder
into `<data dir>/.removed/` (one rename, on the calling thread: the job leaves the journal at
once and whole, so no half-deleted job is ever read back), then measures and deletes it there
on a thread of its own; what a locked file keeps there is deleted on the next removal.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import uuid

from ..errors import Recon3DError
from ..providers.billing import paid_not_imported
from .model import FINISHED

TRASH = ".removed"
DAY = 24 * 3600.0
#: the clock job ages are measured with (tests replace it)
clock = time.time


def job_folder(jobs_dir: str, job_id: str) -> str:
    """The job's folder: `jobs_dir/<id>`, refused (Recon3DError) when the id or the folder
    would lead anywhere else — a name with a path in it, a link to another place."""
    folder = os.path.join(jobs_dir, job_id)
    plain = job_id not in ("", ".", "..") and os.path.basename(job_id) == job_id and \
        "/" not in job_id and "\\" not in job_id
    if not plain or os.path.islink(folder) or \
            os.path.dirname(os.path.realpath(folder)) != os.path.realpath(jobs_dir):
        raise Recon3DError(
            f"Recon3D did not delete the files of job '{job_id}': its folder is not inside "
            f"Recon3D's data folder {jobs_dir}, and Recon3D deletes nothing outside it. Delete "
            f"the job's folder by hand if you no longer need it.", code="removal")
    return folder


def folder_size(folder: str) -> int:
    """Bytes in the folder's files (links not followed); 0 for a missing folder."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class Deletion:
    """A job folder moved into the trash, being measured and deleted on a thread of its own
    (a large folder on a network share takes seconds: never on Blender's main thread)."""

    def __init__(self, trashed: str, data_dir: str):
        self.trashed = trashed
        self.freed = 0
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(data_dir,), name="recon3d-delete",
                         daemon=True).start()

    def _run(self, data_dir: str) -> None:
        try:
            self.freed = folder_size(self.trashed)
            empty_trash(data_dir)
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> int:
        """The bytes freed, once deleted (what a locked file keeps stays in the trash)."""
        self._done.wait(timeout)
        return self.freed


_emptying = threading.Lock()


def empty_trash(data_dir: str) -> None:
    """Delete what the trash holds; what cannot be deleted now is tried again next time."""
    trash = os.path.join(data_dir, TRASH)
    with _emptying:
        try:
            names = os.listdir(trash)
        except OSError:
            return
        for name in names:
            shutil.rmtree(os.path.join(trash, name), ignore_errors=True)


def delete_folder(folder: str, data_dir: str) -> Deletion:
    """Move the job folder out of the journal (one rename, at once), then measure and delete
    it on a thread (`Deletion`). OSError when the rename fails (nothing changed then)."""
    trash = os.path.join(data_dir, TRASH)
    os.makedirs(trash, exist_ok=True)
    trashed = os.path.join(trash, f"{os.path.basename(folder)}-{uuid.uuid4().hex[:8]}")
    if os.path.isdir(folder):
        os.rename(folder, trashed)
    return Deletion(trashed, data_dir)


def rename_refused(exc: OSError) -> str:
    """What to do when moving a job's folder into the trash failed, by the error's kind."""
    if exc.errno in (errno.EBUSY, errno.ETXTBSY) or getattr(exc, "winerror", None) in (32, 33):
        return "Close programs that use them, then try again."
    if os.name == "nt" and exc.errno == errno.EACCES:      # a file open elsewhere, or rights
        return ("Close programs that use them and check that you may change files in "
                "Recon3D's data folder, then try again.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ("Check that you may change files in Recon3D's data folder (it is not "
                "read-only), then try again.")
    if exc.errno == errno.EXDEV:
        return ("Its folder is on another drive than the data folder (a link or a mount "
                "inside it): delete the job's folder by hand.")
    return "Check the data folder's drive (it may be offline or full), then try again."


def finished_age(job, now: float | None = None) -> float:
    """Seconds since the job finished (else since it last changed)."""
    end = job.finished_at or job.updated_at or job.created_at
    return (clock() if now is None else now) - end


def old_results(jobs, days: float, *, include_ready: bool = False,
                now: float | None = None) -> tuple[list, list]:
    """What "Clear Old Results" removes, and the old results it keeps: imported, failed and
    canceled jobs that finished more than `days` days ago are removed; paid results never
    imported (`billing.paid_not_imported`: "ready", a failed fetch the service can still
    answer, a submit that may have been billed) only when asked, since removing them gives
    them up for good — otherwise they are returned as kept, so the dialog can say so."""
    old = [job for job in jobs if job.state in FINISHED and finished_age(job, now) > days * DAY]
    if include_ready:
        return old, []
    paid = [job for job in old if is_paid_not_imported(job)]
    return [job for job in old if job not in paid], paid


def is_paid_not_imported(job) -> bool:
    """`billing.paid_not_imported` for a job."""
    return paid_not_imported(job.state, job.remote_id, job.error_code)


def size_words(nbytes: int) -> str:
    """Disk space as the artist reads it: '12.3 MB'."""
    return f"{nbytes / 1e6:.1f} MB"


__all__ = ["DAY", "TRASH", "Deletion", "delete_folder", "empty_trash", "finished_age",
           "folder_size", "rename_refused",
           "is_paid_not_imported", "job_folder", "old_results", "size_words"]
