# SPDX-License-Identifier: GPL-3.0-or-later
"""Running a batch (bpy, main thread): many photos submitted under one manifest (so an
interrupted batch resumes without new submits), waited for on this thread, imported as they
arrive and laid out; a result per photo, never one exception for the whole batch. The
layout, export and previews themselves are in blender/batch.py; api.reconstruct_many is the
door."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field

import bpy
from mathutils import Vector

from ..addon import runtime
from ..errors import InputError, Recon3DError
from ..jobs import Job
from ..jobs.batches import BatchManifest, item_key
from ..jobs.model import WAIT_TERMINAL, new_job_id
from . import batch, importer, main_thread
from .job_start import JobRequest, fetch_again, start_job


@dataclass
class BatchResult:
    """What became of one photo of a batch. `state`: a job state ("imported" is success), or
    "refused" (checked here and not sent: nothing billed), "checked" (dry run: it would be
    sent), "unfinished" (still running on the service: resume the batch later)."""
    photo: str
    provider: str
    prompt: str | None = None
    job: Job | None = None
    state: str = "queued"
    objects: list = field(default_factory=list)
    error: str | None = None
    error_code: str | None = None
    estimate: object = None          # dry run: what the service says it would cost, if it can
    main_thread_seconds: float = 0.0  # submitting and importing it (the UI's share of the work)

    @property
    def ok(self) -> bool:
        return self.state == "imported"

    @property
    def name(self) -> str:
        stem = os.path.splitext(os.path.basename(self.photo))[0]
        return f"{stem}-{bpy.path.clean_name(self.prompt)}" if self.prompt else stem

    @property
    def progress(self) -> float:
        return self.job.progress if self.job else 0.0

    @property
    def seconds(self) -> float | None:
        job = self.job
        if job is None or job.finished_at is None:
            return None
        return max(0.0, job.finished_at - job.created_at)

    @property
    def cost(self):
        return self.job.cost if self.job else None


class BatchResults(list):
    """The BatchResult of every photo, in the order given, plus the batch's own numbers."""
    batch_id: str = ""
    wall_seconds: float = 0.0
    main_thread_seconds: float = 0.0     # all work on the calling thread, waiting excluded

    @property
    def failures(self) -> list[BatchResult]:
        return [r for r in self if not r.ok]


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C while a batch waited. `results` holds what was done; the jobs still running keep
    running on the service: `reconstruct_many(..., resume=True)` finishes them, unbilled."""

    def __init__(self, results: BatchResults):
        super().__init__(f"batch {results.batch_id} interrupted")
        self.results = results


#: how often the calling thread looks at the batch's jobs while it waits
BATCH_LOOK_SECONDS = 0.05


def run_batch(photos, provider: str = "segmind_sam3d", *, jobs: int | None = None,
                     layout: str | None = None, placement: str = "cursor",
                     target_size: float | None = None, match_camera: bool = False,
                     timeout: float | None = None, resume: bool = False,
                     dry_run: bool = False, on_update=None, _argv=None, estimate=None,
                     **submit_kw) -> BatchResults:
    """Reconstruct many photos at once and lay the results out; returns a BatchResult per
    photo, never one exception for the whole batch (only for arguments that are wrong for
    every photo).

    photos: files, folders (the photos directly inside), or dicts {"image": path, plus any
    `submit` argument for that photo alone, e.g. "prompt"}. jobs: how many run on the service
    at once. layout: "grid", "row" (no two results overlap; centred on the cursor, or on the
    origin) or "original" (each where `placement` puts it; the default for placement
    "original", else "grid"). resume: finish the newest unfinished batch of the same photos
    (interrupted, or timed out) without sending anything again. dry_run: check every photo and ask the cost where the service can tell; nothing is
    sent. on_update(result) is called on this thread whenever a photo's job moves. Results
    are imported on this (the main) thread as they arrive. Raises BatchInterrupted on Ctrl-C."""
    started = time.perf_counter()
    layout = layout or ("original" if placement == "original" else "grid")
    if layout not in batch.LAYOUTS:
        raise InputError(f"Unknown layout '{layout}'; use one of {', '.join(batch.LAYOUTS)}.")
    items = _batch_items(photos, submit_kw)
    results = BatchResults(BatchResult(photo=p, provider=provider, prompt=kw.get("prompt"))
                           for p, kw in items)
    if dry_run:
        for result, (photo, kw) in zip(results, items):
            _check_only(result, photo, kw, estimate)
            _tell(on_update, result)
        return results
    eng = runtime.engine()
    keys = [item_key(p, kw.get("prompt")) for p, kw in items]
    manifest = None
    if resume:
        eng.resume()          # jobs journaled by the interrupted process
        manifest = BatchManifest.latest_unfinished(runtime.data_dir(), provider, keys)
        if manifest is None:
            raise Recon3DError("There is no unfinished batch of these photos to resume; run it "
                               "again without resume.", code="not_found")
    manifest = manifest or BatchManifest.create(runtime.data_dir(), provider, keys, _argv)
    results.batch_id = manifest.id
    anchor = bpy.context.scene.cursor.location.copy() if placement == "cursor" else Vector()
    import_kw = {"placement": placement, "target_size": target_size}
    previous_limit = eng.max_in_flight
    if jobs:
        eng.set_max_in_flight(jobs)
    waited = [0.0]
    try:
        for index, (result, (photo, kw)) in enumerate(zip(results, items)):
            t0 = time.perf_counter()
            _start(result, index, manifest, photo, kw, eng)
            result.main_thread_seconds += time.perf_counter() - t0
            _tell(on_update, result)
        deadline = None if timeout is None else time.monotonic() + timeout
        _collect(results, deadline, on_update, import_kw, match_camera, waited)
    except KeyboardInterrupt:
        _settle_submits(eng, [r.job for r in results if r.job is not None])
        for result in results:
            if result.state not in _SETTLED:
                result.state = "unfinished"
                result.error = "Interrupted; the job keeps running on the service."
        results.wall_seconds = time.perf_counter() - started
        raise BatchInterrupted(results) from None
    finally:
        if jobs:
            eng.set_max_in_flight(previous_limit)
    batch.arrange([r.objects for r in results if r.objects], layout, anchor)
    if all(r.state != "unfinished" for r in results):
        manifest.set_finished()
    results.wall_seconds = time.perf_counter() - started
    results.main_thread_seconds = results.wall_seconds - waited[0]
    return results


#: states a batch result stays in
_SETTLED = frozenset({"imported", "failed", "canceled", "refused", "checked", "unfinished"})


def _batch_items(photos, submit_kw: dict) -> list[tuple[str, dict]]:
    if isinstance(photos, (str, os.PathLike, dict)):
        photos = [photos]
    items = []
    for entry in photos:
        if isinstance(entry, dict):
            kw = dict(submit_kw)
            kw.update({k: v for k, v in entry.items() if k != "image"})
            items.extend((p, kw) for p in batch.expand_photos([entry["image"]]))
        else:
            items.extend((p, dict(submit_kw)) for p in batch.expand_photos([entry]))
    if not items:
        raise InputError("No photos were given.")
    return items


def _start(result: BatchResult, index: int, manifest: BatchManifest, photo: str, kw: dict,
           eng) -> None:
    """Attach the photo's job of an earlier run of this batch, or submit it now."""
    try:
        job_id = manifest.job_id(index)
        if job_id:
            job = eng.get(job_id)
            if job is None:
                raise Recon3DError(f"This photo's job {job_id} is gone from Recon3D's data "
                                   f"folder; generate it again.", code="not_found")
            if eng.can_retry(job):
                fetch_again(job)   # its result could not be fetched: fetch again, unbilled
        else:
            # The id is on disk before the job can be sent: a crash or Ctrl-C at any point
            # leaves a batch record that names every job the service may bill.
            job_id = new_job_id()
            manifest.set_job(index, job_id)
            with _sigint_deferred():     # Ctrl-C waits until the job is handed over
                try:
                    job = start_job(photo, result.provider, job_id=job_id, **kw)
                except BaseException:
                    manifest.set_job(index, None)      # refused before anything was sent
                    raise
        result.job, result.state = job, job.state
    except Recon3DError as exc:
        result.state, result.error, result.error_code = "refused", str(exc), exc.code


def _collect(results, deadline, on_update, import_kw: dict, match_camera: bool,
             waited: list) -> None:
    """Wait on this thread for the batch's jobs, importing each as it finishes."""
    pending = [r for r in results if r.job is not None]
    seen = {id(r): (r.state, round(r.progress, 1)) for r in results}
    cameras: set[str] = set()
    while pending:
        main_thread.drain(undo_steps=False)
        for result in list(pending):
            job = result.job
            if job.state in WAIT_TERMINAL:
                pending.remove(result)
                t0 = time.perf_counter()
                camera = match_camera and result.photo not in cameras
                _import_result(result, dict(import_kw, match_camera=camera))
                if result.ok and camera:
                    cameras.add(result.photo)
                result.main_thread_seconds += time.perf_counter() - t0
            else:
                result.state = job.state
            now = (result.state, round(result.progress, 1))
            if seen[id(result)] != now:
                seen[id(result)] = now
                _tell(on_update, result)
        if not pending:
            break
        if deadline is not None and time.monotonic() > deadline:
            for result in pending:
                result.state = "unfinished"
                result.error = (f"Still {result.job.state} when the batch stopped waiting; it "
                                f"keeps running: resume the batch later.")
                _tell(on_update, result)
            break
        t0 = time.perf_counter()
        time.sleep(BATCH_LOOK_SECONDS)
        waited[0] += time.perf_counter() - t0


def _settle_submits(eng, jobs: list, seconds: float = 15.0) -> None:
    """Before the caller may exit: let the submits under way be answered and their job ids be
    journaled, so a resume can find every job the service accepted (and bills)."""
    deadline = time.monotonic() + seconds
    for job in jobs:
        while time.monotonic() < deadline:
            if job.state != "submitting" and (not job.remote_id or
                                              _journaled_remote_id(eng, job) == job.remote_id):
                break
            time.sleep(0.02)


def _journaled_remote_id(eng, job: Job):
    journaled = eng.journal.load(job.id)
    return journaled.remote_id if journaled is not None else None


def _import_result(result: BatchResult, import_kw: dict) -> None:
    job = result.job
    if job.state in ("failed", "canceled"):
        result.state = job.state
        result.error = job.error or ("The job was canceled." if job.state == "canceled"
                                     else "The job failed.")
        result.error_code = job.error_code
        return
    try:
        result.objects = importer.import_job(job, **import_kw)
        result.state = "imported"
    except Recon3DError as exc:
        result.state, result.error, result.error_code = "failed", str(exc), exc.code


def _check_only(result: BatchResult, photo: str, kw: dict, estimate) -> None:
    """Everything `submit` checks, inputs prepared into a throwaway folder; nothing sent."""
    scratch = tempfile.mkdtemp(prefix="recon3d-check-")
    try:
        JobRequest(result.provider, **kw).prepare(scratch, photo)
        result.state = "checked"
    except Recon3DError as exc:
        result.state, result.error, result.error_code = "refused", str(exc), exc.code
        return
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if estimate is not None:
        try:
            result.estimate = estimate(photo, result.provider, **kw)
        except (Recon3DError, TypeError, ValueError):
            result.estimate = None


def _tell(on_update, result: BatchResult) -> None:
    if on_update is not None:
        on_update(result)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back Ctrl-C for the block (main thread only): it is raised right after it."""
    caught = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)     # None: not Python's to replace
        if previous is not None:
            signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt
