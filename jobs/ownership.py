# SPDX-License-Identifier: GPL-3.0-or-later
"""Which process owns which job, among all processes sharing one data folder. bpy-free, stdlib.

Several Blender processes may share a data folder (two windows; `blender -b --command recon3d`
beside the GUI). Each job has exactly one owner process at a time; the others list it
("running in another Blender") but neither submit, poll nor download it, and take it over
when the owner is gone.

How: each job has a lock file, `jobs/<id>/owner.lock`. The owner keeps it open, holding an
OS advisory lock on its first byte, for as long as it owns the job: `fcntl.flock` on Linux and
macOS, `msvcrt.locking` on Windows. The OS drops the lock when the process ends in any way —
closed, crashed, SIGKILLed — so ownership never goes stale: no pid guessing, no heartbeat.
After byte 0 the file holds one JSON line saying who owns it (pid, host, label, since), read
by the other processes for their job lists; it only means something while the lock is held.

Rules for the engine (each one needed for "one owner, one submit"):
1. `claim()` a job before its first journal write: a new job before its job.json exists
   (`create=True`: the only claim that may make the job's folder), a journaled job before
   anything is done with it (`create=False`).
2. Never write the journal of a job `owns()` is False for.
3. After claiming a job that was journaled before, re-read its journal entry: the previous
   owner may have moved it on (even finished it) between our read and our claim.
4. `release()` a job only after its last journal write; `release_all()` on shutdown, after the
   workers have stopped.
5. Take-over: every `TAKEOVER_INTERVAL` seconds, on a worker thread, `claim()` each journaled
   unfinished job that is not ours. A failed claim costs an open, a lock attempt and a close
   (~20 µs on a local disk), so even hundreds of foreign jobs cost well under 1 % of a core.
6. Never delete an `owner.lock` (deleting it while another process holds it would let a third
   create a new file and own the same job too). `claim()` checks that the file it locked is
   still the one at the path, so a job folder removed by its owner cannot be double-owned.

One open file per owned job (measured: N owned jobs hold N descriptors; a first claim, which
creates the file, takes ~0.2 ms). Only unfinished jobs need an owner. Limits: 1024
descriptors per process by default on Linux, 8192 in the Windows C runtime, but 256 for macOS
GUI apps, so `claim()` raises the soft limit to 1024 (if the hard limit allows) once owned
jobs reach half of it. It never goes above 1024: descriptors numbered past FD_SETSIZE break
`select()` users elsewhere in the process. So one process can own about 900 unfinished jobs
at once; past that `claim()` raises OSError(EMFILE) (the job is then left for a later claim,
or for another process).

Network folders: flock over NFS is mapped onto NFS (NLM or v4) byte-range locks by Linux and
works across hosts when the server supports locking; SMB shares honour `msvcrt.locking`
across Windows hosts. A share mounted without lock support (NFS `nolock`, some CIFS setups)
only excludes processes on the same host: two Blenders on two machines sharing such a folder
are NOT kept apart. Where the OS refuses locks outright (ENOLCK, EOPNOTSUPP), `claim()`
still succeeds, so a single Blender keeps working, and `unsupported` says why (for a
warning); two processes on such a folder may then both work on a job. On Windows the OS may
release a killed process's locks after a short delay. A process forked (not spawned) while it
owns jobs shares the locks with its child until the child ends.

One `Ownership` per data folder per process: a second instance in the same process (say a
leaked engine after a reload) is treated like another process — it cannot claim the first
one's jobs until they are released.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass

LOCK_NAME = "owner.lock"
#: seconds between take-over checks (the lag after an owner crashed or closed)
TAKEOVER_INTERVAL = 2.0
#: the soft limit on open files is raised (POSIX) once owned jobs reach half of it, up to this
#: (descriptors numbered past FD_SETSIZE = 1024 would break select() users in the process)
FD_CAP = 1024
#: errors meaning "this file system has no locks", not "someone holds it"
_NO_LOCKS = {getattr(errno, name) for name in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS")
             if hasattr(errno, name)}
#: errors meaning "someone else holds the lock"
_HELD = {getattr(errno, name) for name in ("EAGAIN", "EWOULDBLOCK", "EACCES", "EDEADLK",
                                           "EDEADLOCK") if hasattr(errno, name)}
_RECORD_MAX = 4096

if os.name == "nt":                                        # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    def _same_file(fd: int, path: str) -> bool:
        return True          # an open file cannot be deleted or replaced on Windows
else:
    import fcntl

    def _try_lock(fd: int) -> None:
        # flock, not lockf: flock locks belong to the open file, so a second open in the same
        # process (another thread, another Ownership) is refused too, and closing some other
        # descriptor of the file never drops them.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _same_file(fd: int, path: str) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

_BINARY = getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class OwnerInfo:
    """Who owns a job, as its owner wrote it. `label` is e.g. "Blender 4.2 (GUI)"."""
    pid: int
    host: str
    label: str
    since: float            # when the owner process started owning jobs (its Ownership)
    claimed_at: float       # when it claimed this job
    token: str              # unique per Ownership: tells two owners in one process apart

    def describe(self) -> str:
        """For a job list: 'Blender 4.2 (GUI), process 4711' (plus the host if not ours)."""
        where = f"process {self.pid}" if self.pid else "another process"
        if self.host and self.host != _HOST:
            where += f" on {self.host}"
        return f"{self.label}, {where}" if self.label else where


_HOST = socket.gethostname()


class Ownership:
    """This process's claims on jobs under `data_dir`/jobs. Thread-safe."""

    def __init__(self, data_dir: str, label: str = ""):
        self.jobs_dir = os.path.join(data_dir, "jobs")
        self.label = label
        self.token = uuid.uuid4().hex
        self.since = time.time()
        #: set (to a sentence for the artist) once the data folder refused file locks
        self.unsupported: str | None = None
        self._held: dict[str, int] = {}          # job id -> open, locked descriptor
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_all, self._held)

    # -- asking ------------------------------------------------------------------------------
    def owns(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._held

    def owned(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def owner_of(self, job_id: str) -> OwnerInfo | None:
        """Who owns the job now; None when nobody does (free to claim). Our own jobs give our
        own record. Briefly takes the lock of a free job to find out: a claim by another
        process in that instant fails and succeeds on its next try."""
        with self._lock:
            if job_id in self._held:
                return self._info(time.time())
            path = self._path(job_id)
            try:
                fd = os.open(path, os.O_RDWR | _BINARY)
            except FileNotFoundError:
                return None
            try:
                try:
                    _try_lock(fd)
                except OSError as exc:
                    if exc.errno in _NO_LOCKS:
                        return None
                    if exc.errno not in _HELD:
                        raise
                    return _read_record(fd)
                _unlock(fd)
                return None
            finally:
                os.close(fd)

    # -- claiming ----------------------------------------------------------------------------
    def claim(self, job_id: str, create: bool = True) -> bool:
        """Own the job, without waiting. True when this Ownership owns it afterwards (also when
        it already did); False when another process (or another Ownership) holds it, or —
        with `create=False` — when its folder is gone (removed). The engine makes a job's
        folder only when it submits a new job (`create`), so a stale reference to a removed
        job never brings the folder back."""
        with self._lock:
            if job_id in self._held:
                return True
            _ensure_fd_headroom(len(self._held))
            folder = os.path.join(self.jobs_dir, job_id)
            if create:
                os.makedirs(folder, exist_ok=True)
            elif not os.path.isdir(folder):
                return False
            path = os.path.join(folder, LOCK_NAME)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | _BINARY, 0o644)
            except FileNotFoundError:
                if create:
                    raise
                return False                      # removed just now
            try:
                try:
                    _try_lock(fd)
                except OSError as exc:
                    if exc.errno not in _NO_LOCKS:
                        if exc.errno in _HELD:
                            os.close(fd)
                            return False
                        raise
                    self.unsupported = (
                        f"The data folder {self.jobs_dir} does not support file locks, so "
                        f"Recon3D cannot keep two Blenders from working on the same job. Run "
                        f"one Blender at a time on it, or set RECON3D_DATA_DIR to a local "
                        f"folder.")
                if not _same_file(fd, path):      # its folder was removed meanwhile
                    os.close(fd)
                    return False
                self._write_record(fd)
            except BaseException:
                os.close(fd)
                raise
            self._held[job_id] = fd
            return True

    def release(self, job_id: str) -> None:
        """Stop owning the job (after its last journal write). Unknown ids are ignored."""
        with self._lock:
            fd = self._held.pop(job_id, None)
        if fd is not None:
            _close(fd)

    def release_all(self) -> None:
        with self._lock:
            fds = list(self._held.values())
            self._held.clear()
        for fd in fds:
            _close(fd)

    close = release_all

    # -- internals ---------------------------------------------------------------------------
    def _path(self, job_id: str) -> str:
        return os.path.join(self.jobs_dir, job_id, LOCK_NAME)

    def _info(self, claimed_at: float) -> OwnerInfo:
        return OwnerInfo(os.getpid(), _HOST, self.label, self.since, claimed_at, self.token)

    def _write_record(self, fd: int) -> None:
        """After byte 0 (the locked one, which Windows will not let others read), one JSON
        line; readers stop at the newline, so a longer old record's tail never confuses them."""
        info = self._info(time.time())
        line = json.dumps({"pid": info.pid, "host": info.host, "label": info.label,
                           "since": info.since, "claimed_at": info.claimed_at,
                           "token": info.token}) + "\n"
        data = line.encode("utf-8")[:_RECORD_MAX - 1]
        os.lseek(fd, 1, os.SEEK_SET)
        os.write(fd, data)
        os.ftruncate(fd, 1 + len(data))


def _read_record(fd: int) -> OwnerInfo:
    """The owner's line; a record being written right now reads as an unknown owner."""
    os.lseek(fd, 1, os.SEEK_SET)
    raw = os.read(fd, _RECORD_MAX)
    try:
        data = json.loads(raw.split(b"\n", 1)[0].decode("utf-8"))
        return OwnerInfo(int(data["pid"]), str(data["host"]), str(data["label"]),
                         float(data["since"]), float(data["claimed_at"]), str(data["token"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return OwnerInfo(0, "", "", 0.0, 0.0, "")


def _close(fd: int) -> None:
    """Closing drops the lock (and on Windows unlock first, as the docs ask)."""
    try:
        if os.name == "nt":                               # pragma: no cover - Windows
            try:
                _unlock(fd)
            except OSError:
                pass
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def _close_all(held: dict) -> None:
    for fd in list(held.values()):
        _close(fd)
    held.clear()


def _ensure_fd_headroom(in_use: int) -> None:
    """Raise the soft limit on open files when owned jobs come near it (macOS: 256)."""
    try:
        import resource
    except ImportError:                                   # Windows: 8192 in the C runtime
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= FD_CAP or in_use < soft // 2:
        return
    target = FD_CAP if hard == resource.RLIM_INFINITY else min(hard, FD_CAP)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


__all__ = ["LOCK_NAME", "OwnerInfo", "Ownership", "TAKEOVER_INTERVAL"]
