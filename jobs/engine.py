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

from ..errors import Canceled, JobFailed, Recon3DError, ServiceError
from ..providers import JobInputs, PollStatus, ProviderSettings, make_provider, provider_class
from ..providers import billing
from .durations import Durations
from .journal import Journal
from .lanes import Lane, StopSignal, Stopped
from .model import ACTIVE, Job
from .ownership import TAKEOVER_INTERVAL, Ownership
from .polling import next_poll_interval

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 4
#: how long a job may keep getting transient errors while polling before it gives up
TRANSIENT_GIVE_UP = 15 * 60.0
#: a job still unfinished after this long of polling (counted from its submit, resume or
#: retry, and only once it has been polled) is failed
JOB_DEADLINE = 2 * 3600.0
#: how long a download keeps being tried again after transient faults (a CDN outage) before
#: the job fails with a message saying the result is safe and can be fetched again
DOWNLOAD_GIVE_UP = 5 * 60.0


class Engine:
    def __init__(self, data_dir: str, settings_for: Callable[[str], ProviderSettings], *,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, sleep=None, owner_label: str = ""):
        self.journal = Journal(data_dir)
        #: which jobs this process owns; `owner_label` tells the others who we are
        self.ownership = Ownership(data_dir, owner_label)
        self.takeover_interval = TAKEOVER_INTERVAL
        self.durations = Durations(data_dir)
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

    def ran_here(self, job: Job) -> bool:
        """True for jobs this engine submitted or took over (the others' jobs are only listed)."""
        return job.id in self._ran

    def submit(self, job: Job) -> Job:
        """Own the job, journal it, then queue it. Returns at once."""
        if not self._claim(job.id):
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
            self._finish_canceled(job, None)
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
            self._set(job, state="downloading" if job.service_data.get("result_refs")
                      is not None else "running", error=None, error_code=None, finished_at=None)
            self._enqueue(job, "poll")

    def mark_imported(self, job: Job, object_names: list[str]) -> None:
        self._set(job, state="imported", imported_objects=list(object_names), error=None,
                  error_code=None)

    def note_import_error(self, job: Job, message: str) -> None:
        """An import failed: the job stays 'ready' (files intact) so it can be imported again."""
        self._set(job, error=message, error_code="import")

    def resume(self) -> list[Job]:
        """List the journal's jobs and pick up the unfinished ones no other process owns
        (extension enabled, Blender started); the others' are taken over once they are gone."""
        resumed = []
        for job in self.journal.load_all():
            with self._lock:
                if job.id in self._jobs:
                    continue
                self._jobs[job.id] = job
            if _needs_work(job) and self._take(job):
                resumed.append(job)
        self._start_watch()
        return resumed

    def check_others(self) -> None:
        """Follow the jobs other processes own: list new ones, take their journaled progress,
        and take over those whose owner is gone. Runs every `takeover_interval` seconds on a
        thread of its own; costs a directory listing and a stat per job, a read per changed
        entry and a claim attempt (~20 µs) per unfinished job of another process."""
        for job_id in self.journal.ids():
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
                        job = self._jobs.setdefault(job_id, fresh)
                    self.events.put(job_id)
                elif job.refresh_from(fresh):
                    self.events.put(job_id)
            if _needs_work(job):
                self._take(job)
            elif job.owner is not None:
                job.owner = None
                self.events.put(job_id)

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
        with self._take_lock:
            # A worker still inside a step keeps its job until it returns (see _run).
            for job_id in self.ownership.owned():
                if job_id not in self._running:
                    self.ownership.release(job_id)

    # -- internals -----------------------------------------------------------------------------
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

    def _claim(self, job_id: str) -> bool:
        try:
            claimed = self.ownership.claim(job_id)
            if self.ownership.unsupported and not self._warned_unsupported:
                self._warned_unsupported = True
                log.warning("Recon3D: %s", self.ownership.unsupported)
            return claimed
        except OSError as exc:
            raise Recon3DError(
                f"Recon3D could not lock job {job_id} in its data folder "
                f"{self.journal.jobs_dir} ({exc.strerror or exc}). Check that the folder is "
                f"writable and the disk is not full, then try again.") from exc

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

    @staticmethod
    def _elsewhere(job: Job, what: str) -> Recon3DError:
        who = f" ({job.owner.describe()})" if job.owner is not None else ""
        return Recon3DError(f"This job is running in another Blender{who}; {what}.",
                            code="input")

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

    def _lane(self, provider_id: str) -> Lane:
        with self._lock:
            lane = self._lanes.get(provider_id)
            if lane is None:
                lane = self._lanes[provider_id] = Lane(provider_id, self.max_in_flight,
                                                       self.stopping, self._run,
                                                       self.events.put)
            return lane

    def _record(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
        self._save(job)

    def _save(self, job: Job) -> None:
        """Journal a change, only ever as the job's owner. A finished job this engine has let
        go of (imported later, say) is owned again for the write, unless another process has
        it: then the change stays in memory and that process's journal wins."""
        if self.ownership.owns(job.id):
            self.journal.write(job)
        elif self._claim(job.id):
            try:
                self.journal.write(job)
            finally:
                if job.id not in self._busy:
                    self.ownership.release(job.id)
        else:
            log.info("Recon3D: job %s belongs to another Blender; change not journaled", job.id)
        self.events.put(job.id)

    def _set(self, job: Job, **changes) -> None:
        job.update(**changes)
        self._save(job)

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
            self._run_step(job, step, lane)
        finally:
            # Its last journal write is done (finished, or stopped for the next owner).
            self._let_go(job)

    def _run_step(self, job: Job, step: str, lane: Lane) -> None:
        stop = StopSignal(job, self.stopping)
        provider = None
        try:
            stop.raise_if_stopped()
            provider = make_provider(job.provider, self.settings_for(job.provider),
                                     stop=stop, on_backoff=lane.slow_down,
                                     **({"sleep": self._sleep} if self._sleep else {}))
            inputs = JobInputs.from_json(job.inputs)
            if step == "submit":
                self._submit(job, provider, inputs, lane, stop)
            # A resumed job polls at once: it may have finished while Blender was closed.
            status = self._poll_until_done(job, provider, lane, stop, immediate=step != "submit")
            self._download(job, provider, status, stop)
        except Stopped:
            return
        except Canceled:
            if job.cancel_event.is_set():
                self._finish_canceled(job, provider)
        except Recon3DError as exc:
            if job.cancel_event.is_set():
                self._finish_canceled(job, provider)
            elif not self.stopping.is_set():
                self._set(job, state="failed", error=str(exc), error_code=exc.code)
        except Exception as exc:  # a bug: the artist still gets a sentence, the console the trace
            log.exception("Recon3D job %s failed unexpectedly", job.id)
            self._set(job, state="failed", error_code="internal", error=(
                f"Recon3D hit an unexpected problem ({type(exc).__name__}: {exc}). The job's "
                f"files are kept in {self.job_dir(job)}; please report this."))

    def _submit(self, job, provider, inputs, lane, stop) -> None:
        state = dict(job.service_data)
        self._set(job, state="submitting")

        def mark_sending():
            stop.raise_if_stopped()
            self._set(job, submit_sent=True, service_data=dict(state))

        limited_since = None
        while True:
            lane.wait_backoff(stop)
            try:
                remote_id = provider.submit(inputs, state, mark_sending)
                break
            except Recon3DError as exc:
                # 429: the service provably did not take it; wait for the lane, then again,
                # for as long as the artist would reasonably wait.
                if exc.code != "rate_limited" or stop.wait(0):
                    raise
                limited_since = limited_since or time.monotonic()
                if time.monotonic() - limited_since > self.rate_limit_give_up:
                    raise
                lane.slow_down(min(5.0, self.rate_limit_give_up / 4))
        self._set(job, state="running", remote_id=remote_id, service_data=dict(state),
                  submitted_at=time.time(), **_cost_fields(state))

    def _poll_until_done(self, job, provider, lane, stop, immediate: bool) -> PollStatus:
        state = dict(job.service_data)
        submitted = job.submitted_at or time.time()
        if job.state == "downloading" and job.service_data.get("result_refs"):
            return PollStatus("done", result=job.service_data["result_refs"])
        # The deadline counts from now (this submit, resume or retry), never before a poll:
        # a job resumed hours after it was sent may long be finished.
        waiting_since = time.time()
        polled = False
        trouble_since = None
        troubles = 0
        delay = 0.0 if immediate else None
        pending_age = 0.0          # when the job was last seen still running
        while True:
            age = time.time() - submitted
            if polled and time.time() - waiting_since > JOB_DEADLINE:
                raise ServiceError(f"{provider.service} has not finished this job after "
                                   f"{JOB_DEADLINE / 3600:.0f} hours of waiting; Recon3D "
                                   f"stopped waiting. "
                                   f"Check your {provider.service} dashboard.", code="timeout")
            if delay is None:
                delay = next_poll_interval(age, job.progress or None,
                                           expected=self.durations.expected(job.provider))
            if stop.wait(delay):
                stop.raise_if_stopped()
            lane.wait_backoff(stop)
            delay = None
            polled_age = time.time() - submitted
            try:
                status = provider.poll(job.remote_id, state)
                trouble_since, troubles = None, 0
            except Recon3DError as exc:
                if not exc.transient:
                    raise
                trouble_since = trouble_since or time.monotonic()
                if time.monotonic() - trouble_since > TRANSIENT_GIVE_UP:
                    raise
                # The HTTP layer already retried this poll; wait longer before the next one.
                troubles += 1
                delay = min(60.0, 2.0 ** troubles)
                continue
            finally:
                polled = True
                job.update(polls=job.polls + 1)
            if status.progress is not None and status.progress != job.progress:
                job.update(progress=max(0.0, min(1.0, float(status.progress))))
                self.events.put(job.id)
            if status.state == "done":
                if pending_age and not immediate:   # else only an upper bound: not learned
                    self.durations.learn(job.provider, pending_age, polled_age)
                state["result_refs"] = status.result
                self._set(job, state="downloading", service_data=dict(state),
                          **_cost_fields(state))
                return status
            if status.state == "failed":
                raise JobFailed(f"{provider.service} could not make the model: "
                                f"{status.error or 'no reason given'}.")
            if status.state == "canceled":
                raise Canceled(f"The job was canceled on {provider.service}.")
            pending_age = polled_age

    def _download(self, job, provider, status, stop) -> None:
        if job.files and all(os.path.isfile(f) for f in job.files):
            files = job.files          # already on disk: never download twice
        else:
            state = dict(job.service_data)
            files = self._download_patiently(job, provider, status, state, stop)
            job.update(service_data=state)
        if job.cancel_event.is_set():
            raise Canceled("The job was canceled.")
        self._set(job, state="ready", files=list(files), progress=1.0,
                  **_cost_fields(job.service_data))

    def _download_patiently(self, job, provider, status, state, stop) -> list[str]:
        """The provider's download, tried again with growing pauses while it fails with
        transient faults (the HTTP layer already retried each request), for
        `download_give_up` seconds; then its error, which says the result is safe."""
        started = time.monotonic()
        troubles = 0
        while True:
            stop.raise_if_stopped()
            try:
                return provider.download(job.remote_id, status, state, self.job_dir(job))
            except Recon3DError as exc:
                left = self.download_give_up - (time.monotonic() - started)
                if not exc.transient or left <= 0:
                    raise
                troubles += 1
                if stop.wait(min(60.0, 2.0 ** troubles, left)):
                    stop.raise_if_stopped()

    def _finish_canceled(self, job: Job, provider) -> None:
        if job.state in ("canceled", "imported"):
            return
        remote = job.remote_id
        self._set(job, state="canceled", error=None, error_code=None)
        if provider is not None and remote:
            try:
                provider.cancel(remote, dict(job.service_data))
            except Exception:       # best effort: local polling has stopped either way
                log.info("Recon3D: %s did not cancel job %s", job.provider, remote)


def _cost_fields(state: dict) -> dict:
    """The job fields a provider's journaled data sets: cost and credits left."""
    out = {}
    if state.get("cost") is not None:
        out["cost"] = state["cost"]
    if state.get("remaining_credits") is not None:
        out["remaining_credits"] = state["remaining_credits"]
    return out


def _next_step(job: Job) -> str | None:
    """What a journaled job may do next (billing.resume_step), without doing anything."""
    if job.state == "ready" and job.files and all(os.path.isfile(f) for f in job.files):
        return None
    try:
        idempotent = provider_class(job.provider).idempotent_submit
    except Recon3DError:
        idempotent = False
    return billing.resume_step(job.state, job.submit_sent, job.remote_id, idempotent)


def _needs_work(job: Job) -> bool:
    """Something is left to do (or to decide, for an interrupted submit): what resume and
    take-over pick up."""
    return _next_step(job) is not None


def _stamp(path: str) -> tuple | None:
    """Changes whenever the journal entry is rewritten (a new file replaces it each time)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _service_name(provider_id: str) -> str:
    try:
        return provider_class(provider_id).service
    except Recon3DError:
        return provider_id
