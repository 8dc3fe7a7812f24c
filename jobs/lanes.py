# SPDX-License-Identifier: GPL-3.0-or-later
"""Lanes: the jobs of one provider, at most N in flight, and what their workers wait on.
bpy-free."""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from typing import Callable

from ..errors import Canceled
from .budget import Budget
from .model import Job

log = logging.getLogger(__name__)

class Stopped(Exception):
    """The engine is shutting down (extension disabled): leave the job as journaled."""


class StopSignal:
    """What a worker waits on: its job's cancel, or the engine shutting down.

    `wait(seconds)` returns True when the worker should stop; the HTTP layer uses it for its
    retry pauses, so a cancel interrupts a backoff at once."""

    def __init__(self, job: Job, stopping: threading.Event):
        self.job = job
        self.stopping = stopping

    def wait(self, seconds: float) -> bool:
        # (NaN or a negative wait is no wait: a NaN deadline would never come, nor pass)
        deadline = time.monotonic() + (seconds if math.isfinite(seconds) and seconds > 0 else 0.0)
        while True:
            if self.job.cancel_event.is_set() or self.stopping.is_set():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.job.cancel_event.wait(min(remaining, 0.2))

    def raise_if_stopped(self) -> None:
        if self.job.cancel_event.is_set():
            raise Canceled("The job was canceled.")
        if self.stopping.is_set():
            raise Stopped()


class Lane:
    """Jobs of one provider: at most `limit` in flight, the rest waiting in submission order.
    Their requests take slots of the service's `budget` (jobs/budget.py), shared with the
    service's other providers; a 429 from the service pauses it instead of failing jobs."""

    def __init__(self, provider_id: str, limit: int, stopping: threading.Event,
                 run: Callable[[Job, str, "Lane"], None],
                 notify: Callable[[str], None] | None = None,
                 budget: Budget | None = None):
        self.stopping = stopping
        self.run = run
        self.notify = notify          # told the id of a job whose worker step crashed
        self.provider_id = provider_id
        self.limit = max(1, int(limit))
        self.pending: deque[tuple[Job, str]] = deque()
        self.active = 0
        self.lock = threading.Lock()
        self.budget = budget or Budget()

    def enqueue(self, job: Job, step: str) -> None:
        with self.lock:
            self.pending.append((job, step))
        self.spawn()

    def remove(self, job: Job) -> bool:
        with self.lock:
            for item in list(self.pending):
                if item[0] is job:
                    self.pending.remove(item)
                    return True
        return False

    def spawn(self) -> None:
        with self.lock:
            while self.active < self.limit and self.pending:
                self.active += 1
                threading.Thread(target=self._worker, name=f"recon3d-{self.provider_id}",
                                 daemon=True).start()

    def slow_down(self, seconds: float) -> None:
        """Called by the HTTP layer on a 429: every job of this service waits that long."""
        self.budget.pause(seconds)

    def wait_backoff(self, stop: StopSignal) -> None:
        while True:
            remaining = self.budget.paused_until - time.monotonic()
            if remaining <= 0:
                return
            if stop.wait(remaining):
                stop.raise_if_stopped()

    def _worker(self) -> None:
        while True:
            with self.lock:
                if not self.pending or self.stopping.is_set() or self.active > self.limit:
                    self.active -= 1
                    return
                job, step = self.pending.popleft()
            try:
                self.run(job, step, self)
            except Exception as exc:
                # The step's own error handling failed (a journal write on a full disk): the
                # job fails in memory, and this worker goes on, so the lane never stalls.
                log.exception("Recon3D: the worker of job %s failed", job.id)
                job.update(state="failed", error_code="internal", error=unexpected_failure(exc))
                if self.notify is not None:
                    self.notify(job.id)


def unexpected_failure(exc: BaseException, job_dir: str = "") -> str:
    """What the artist reads when a job fails on something Recon3D did not expect: a disk or
    permission problem of the data folder (the journal could not be written), or a bug.
    requests' and urllib3's errors are OSErrors too, but say nothing about the disk."""
    if isinstance(exc, OSError) and type(exc).__module__.split(".")[0] not in ("requests",
                                                                             "urllib3"):
        return (f"Recon3D could not record this job's progress ({type(exc).__name__}: {exc}). "
                f"Make room on the disk of the Recon3D data folder (or check its permissions); "
                f"a result already made is still at the service.")
    kept = f" The job's files are kept in {job_dir}." if job_dir else ""
    return f"Recon3D hit an unexpected problem ({type(exc).__name__}: {exc}).{kept} Please " \
           f"report this."
