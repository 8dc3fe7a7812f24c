# SPDX-License-Identifier: GPL-3.0-or-later
"""What a worker thread does with one job the engine handed it: submit, poll until the
service is done, download; cancel and failure on the way. bpy-free.

Every change goes through the engine (`engine._set`), which journals it; the never-pay-twice
rules it follows are in providers/billing.py (see jobs/engine.py).
"""
from __future__ import annotations

import logging
import os
import time

from ..errors import Canceled, JobFailed, Recon3DError, ServiceError
from ..providers import JobInputs, PollStatus, make_provider
from .lanes import Lane, StopSignal, Stopped, unexpected_failure
from .durations import duration_key
from .model import Job
from .polling import (URGENCY_CANCEL, URGENCY_DOWNLOAD, URGENCY_SUBMIT, next_poll_interval,
                      urgency)

log = logging.getLogger(__name__)

#: how long a job may keep getting transient errors while polling before it gives up
TRANSIENT_GIVE_UP = 15 * 60.0
#: a job still unfinished after this long of polling (counted from its submit, resume or
#: retry, and only once it has been polled) is failed
JOB_DEADLINE = 2 * 3600.0


class Worker:
    """One worker thread's turn with one job. `engine` is the jobs.engine.Engine that handed
    the job out (not imported here: the engine imports this module)."""

    def __init__(self, engine, lane: Lane):
        self.engine = engine
        self.lane = lane
        #: how urgent this worker's next request is, for the service's budget (jobs/budget.py)
        self.urgency = URGENCY_SUBMIT
        self.sent_at = 0.0          # when its last request left (after waiting for the budget)

    def _take_budget(self, stop: StopSignal) -> None:
        # A canceled job's last request (asking the service to cancel it) still waits for its
        # slot: only the engine stopping interrupts that wait.
        canceled = stop.job.cancel_event.is_set()
        waiter = _ShutdownOnly(stop.stopping) if canceled else stop
        self.lane.budget.take(waiter, URGENCY_CANCEL if canceled else self.urgency)
        self.sent_at = time.time()

    def run(self, job: Job, step: str) -> None:
        stop = StopSignal(job, self.engine.stopping)
        provider = None
        try:
            stop.raise_if_stopped()
            provider = make_provider(job.provider, self.engine.settings_for(job.provider),
                                     stop=stop, on_backoff=self.lane.slow_down,
                                     before_request=lambda: self._take_budget(stop),
                                     **({"sleep": self.engine._sleep} if self.engine._sleep else {}))
            inputs = JobInputs.from_json(job.inputs)
            if step == "submit":
                self._submit(job, provider, inputs, self.lane, stop)
            # A resumed job polls at once: it may have finished while Blender was closed.
            status = self._poll_until_done(job, provider, self.lane, stop,
                                           immediate=step != "submit")
            self.urgency = URGENCY_DOWNLOAD
            self._download(job, provider, status, stop)
        except Stopped:
            return
        except Canceled:
            if job.cancel_event.is_set():
                self._finish_canceled(job, provider, stop)
        except Recon3DError as exc:
            if job.cancel_event.is_set():
                self._finish_canceled(job, provider, stop)
            elif not self.engine.stopping.is_set():
                self.engine._set(job, state="failed", error=str(exc), error_code=exc.code)
        except Exception as exc:  # a bug: the artist still gets a sentence, the console the trace
            log.exception("Recon3D job %s failed unexpectedly", job.id)
            self.engine._set(job, state="failed", error_code="internal",
                             error=unexpected_failure(exc, self.engine.job_dir(job)))

    def _finish_canceled(self, job, provider, stop) -> None:
        """Ask the service to cancel: that request's retry pauses and budget wait must not be
        cut short by the very cancel they serve (only the engine stopping ends them)."""
        if provider is not None:
            provider.http.stop = _ShutdownOnly(stop.stopping)
        self.urgency = URGENCY_CANCEL
        self.engine.finish_canceled(job, provider)

    def _submit(self, job, provider, inputs, lane, stop) -> None:
        state = dict(job.service_data)
        self.engine._set(job, state="submitting")

        def mark_sending():
            stop.raise_if_stopped()
            self.engine._set(job, submit_sent=True, service_data=dict(state))

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
                if time.monotonic() - limited_since > self.engine.rate_limit_give_up:
                    raise
                lane.slow_down(min(5.0, self.engine.rate_limit_give_up / 4))
        self.engine._set(job, state="running", remote_id=remote_id, service_data=dict(state),
                  submitted_at=time.time(), **_service_fields(state))

    def _poll_until_done(self, job, provider, lane, stop, immediate: bool) -> PollStatus:
        state = dict(job.service_data)
        # Never in the future: another Blender's clock may run ahead of this one's.
        submitted = min(job.submitted_at or time.time(), time.time())
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
        model = duration_key(job.provider, job.inputs.get("options"), provider.options)
        while True:
            age = time.time() - submitted
            if polled and time.time() - waiting_since > JOB_DEADLINE:
                raise ServiceError(f"{provider.service} has not finished this job after "
                                   f"{JOB_DEADLINE / 3600:.0f} hours of waiting; Recon3D "
                                   f"stopped waiting. "
                                   f"Check your {provider.service} dashboard.", code="timeout")
            expected = self.engine.durations.expected(model)
            if delay is None:
                delay = next_poll_interval(age, job.progress or None, expected=expected)
            if stop.wait(delay):
                stop.raise_if_stopped()
            lane.wait_backoff(stop)
            delay = None
            self.urgency = urgency(time.time() - submitted, expected)
            try:
                status = provider.poll(job.remote_id, state)
                # The job's state at the service is that of some moment between sending the
                # poll (after waiting for the budget) and its answer.
                sent_age, polled_age = self.sent_at - submitted, time.time() - submitted
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
                self.engine.events.put(job.id)
            if status.state == "done":
                if pending_age and not immediate:   # else only an upper bound: not learned
                    self.engine.durations.learn(model, pending_age, polled_age)
                state["result_refs"] = status.result
                self.engine._set(job, state="downloading", service_data=dict(state),
                          **_service_fields(state))
                return status
            if status.state == "failed":
                raise JobFailed(f"{provider.service} could not make the model: "
                                f"{status.error or 'no reason given'}.")
            if status.state == "canceled":
                raise Canceled(f"The job was canceled on {provider.service}.")
            pending_age = sent_age

    def _download(self, job, provider, status, stop) -> None:
        if job.files and all(os.path.isfile(f) for f in job.files):
            files = job.files          # already on disk: never download twice
        else:
            state = dict(job.service_data)
            files = self._download_patiently(job, provider, status, state, stop)
            job.update(service_data=state)
        if job.cancel_event.is_set():
            raise Canceled("The job was canceled.")
        self.engine._set(job, state="ready", files=list(files), progress=1.0,
                  **_service_fields(job.service_data))

    def _download_patiently(self, job, provider, status, state, stop) -> list[str]:
        """The provider's download, tried again with growing pauses while it fails with
        transient faults (the HTTP layer already retried each request), for
        `download_give_up` seconds; then its error, which says the result is safe."""
        started = time.monotonic()
        troubles = 0
        while True:
            stop.raise_if_stopped()
            try:
                return provider.download(job.remote_id, status, state, self.engine.job_dir(job))
            except Recon3DError as exc:
                left = self.engine.download_give_up - (time.monotonic() - started)
                if not exc.transient or left <= 0:
                    raise
                troubles += 1
                if stop.wait(min(60.0, 2.0 ** troubles, left)):
                    stop.raise_if_stopped()


class _ShutdownOnly:
    """A StopSignal that only the engine stopping sets off."""

    def __init__(self, stopping):
        self.stopping = stopping

    def wait(self, seconds: float) -> bool:
        return self.stopping.wait(seconds)

    def raise_if_stopped(self) -> None:
        if self.stopping.is_set():
            raise Stopped()


def _service_fields(state: dict) -> dict:
    """The job fields a provider's journaled data sets: cost, credits left and a notice."""
    out = {}
    if state.get("notice"):
        out["notice"] = str(state["notice"])
    if state.get("cost") is not None:
        out["cost"] = state["cost"]
    if state.get("remaining_credits") is not None:
        out["remaining_credits"] = state["remaining_credits"]
    return out
