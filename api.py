# SPDX-License-Identifier: GPL-3.0-or-later
"""Recon3D's Python API (the contract in DESIGN.md).

    from bl_ext.<repo>.recon3d import api
    objects = api.reconstruct("/photos/chair.jpg", provider="segmind_sam3d", prompt="chair")

`submit` prepares inputs on the calling (main) thread, refuses anything it can check locally
before a byte is sent, and returns at once; the network work happens on worker threads.
`estimate` prices a job before it runs where the service can (Scenario's dry run; None
elsewhere); it makes network calls and waits for them.
"""
from __future__ import annotations

from .addon import runtime
from .blender import batch_run, importer, job_start
from .blender.batch_run import BatchInterrupted, BatchResult, BatchResults
from .errors import Recon3DError
from .jobs import Job

__all__ = ["BatchInterrupted", "BatchResult", "Job", "Recon3DError", "cancel", "estimate",
           "get_job", "import_job", "jobs", "reconstruct", "reconstruct_many", "remove", "retry",
           "submit"]


def submit(image, provider: str = "segmind_sam3d", *, prompt=None, mask=None, points=None,
           boxes=None, seed=None, options=None, _auto_import: dict | None = None) -> Job:
    """Start a job and return it at once. Raises Recon3DError, with nothing sent, for input
    that can be checked here (missing or unreadable file, an input the provider does not take,
    a value out of range, no key, online access off).

    options: the model's declared options (checked against their type and range) and any
    other parameter the service documents, by name, sent as given at the top level of its
    request — unchecked, so it is logged once ("gets extra parameters unchecked: …"); a field
    Recon3D sets itself (the photo, prompt, seed, …) or a near miss of a declared name is
    refused."""
    return job_start.start_job(image, provider, auto_import=_auto_import, prompt=prompt,
                               mask=mask, points=points, boxes=boxes, seed=seed,
                               options=options)


def estimate(image, provider: str = "segmind_sam3d", *, prompt=None, mask=None, points=None,
             boxes=None, seed=None, options=None) -> float | None:
    """What `submit` with the same arguments would cost, in the service's own units
    (Scenario: Compute Units), or None when the service cannot price a job in advance
    (Segmind, Runware). Nothing billable is started: Scenario is asked through its dry run,
    for which the inputs are uploaded as hidden assets. Input is checked exactly as `submit`
    checks it (Recon3DError, with nothing sent).

    It blocks: it prepares the inputs with Blender (main thread, as `submit` does), then makes
    network calls and waits for them (seconds; longer on a bad connection). Fine in scripts;
    a panel must not call it from draw code — it should run it from an operator that keeps
    the interface responsive (the network part may run off the main thread)."""
    return job_start.estimate_job(image, provider, prompt=prompt, mask=mask, points=points,
                                  boxes=boxes, seed=seed, options=options)


def import_job(job: Job, *, placement: str = "cursor", target_size: float | None = None,
               collection=None, match_camera: bool = False) -> list:
    """Import a finished job into the current scene; returns the new objects.

    placement: "cursor" (bottom-centre of the whole job on the 3D cursor), "origin", or
    "original" (as returned: camera space of the photo). target_size: fit the largest side to
    this length in scene units. match_camera: also add a camera at the origin looking along +Y
    with the photo as its background, so "original" results line up with the photo."""
    return importer.import_job(_job(job), placement=placement, target_size=target_size,
                               collection=collection, match_camera=match_camera)


def reconstruct(image, provider: str = "segmind_sam3d", *, placement: str = "cursor",
                target_size: float | None = None, collection=None, match_camera: bool = False,
                timeout: float | None = None, **submit_kw) -> list:
    """submit + wait + import, for scripts and batch work. Raises Recon3DError on failure."""
    job = submit(image, provider, **submit_kw)
    job.wait(timeout)
    importer.raise_if_unsuccessful(job)
    if job.state not in ("ready", "imported"):
        why = (f"did not finish within {timeout:g} s; it keeps running" if timeout is not None
               else "was still running when Recon3D was disabled or reloaded; it resumes on "
                    "the next enable")
        raise Recon3DError(f"The job {job.id} {why}: import it later with api.import_job("
                           f"api.get_job('{job.id}')).", code="timeout")
    return import_job(job, placement=placement, target_size=target_size,
                      collection=collection, match_camera=match_camera)


def reconstruct_many(photos, provider: str = "segmind_sam3d", **batch_kw) -> BatchResults:
    """Reconstruct many photos at once and lay the results out; returns a BatchResult per
    photo, never one exception for the whole batch (only for arguments that are wrong for
    every photo). Keywords: jobs=None, layout=None, placement="cursor", target_size=None,
    match_camera=False, timeout=None, resume=False, dry_run=False, on_update=None, and any
    `submit` argument (prompt, mask, points, boxes, seed, options) for every photo.

    photos: files, folders (the photos directly inside), or dicts {"image": path, plus any
    `submit` argument for that photo alone, e.g. "prompt"}. jobs: how many run on the service
    at once. layout: "grid", "row" (no two results overlap; centred on the cursor, or on the
    origin) or "original" (each where `placement` puts it; the default for placement
    "original", else "grid"). resume: finish the newest unfinished batch of the same photos
    (interrupted, or timed out) without sending anything again. dry_run: check every photo
    and ask the cost where the service can tell; nothing is sent. on_update(result) is called
    on this thread whenever a photo's job moves. Results are imported on this (the main)
    thread as they arrive. Raises BatchInterrupted on Ctrl-C."""
    return batch_run.run_batch(photos, provider, estimate=globals().get("estimate"), **batch_kw)


def jobs() -> list[Job]:
    return runtime.engine().jobs()


def get_job(job_id: str) -> Job:
    job = runtime.engine().get(job_id)
    if job is None:
        raise Recon3DError(f"There is no Recon3D job '{job_id}'.", code="not_found")
    return job


def cancel(job) -> None:
    runtime.engine().cancel(_job(job))


def retry(job) -> Job:
    """Fetch the result of a job that failed while downloading (or polling) again. The job
    is not sent again, so it is not billed again. Returns at once; `wait()` on the job."""
    return job_start.fetch_again(_job(job))


def remove(job) -> int:
    """Take a finished job (imported, ready, failed or canceled) off the list and delete its
    folder in Recon3D's data folder: its record, photo copy and downloaded result — a "ready"
    result not imported yet is lost. Returns the bytes freed, once deleted (the Remove button
    does not wait: the folder is deleted on a thread). Objects imported from it stay in
    the scene (an image of this file shown from that folder, the photo behind a matched
    camera, is packed into the file first). Raises Recon3DError while the job is still being
    sent, generated or downloaded (cancel it first) or when another Blender works on it."""
    return start_removal(_job(job)).wait()


def start_removal(job: Job):
    """`remove` without waiting for the deletion (the Remove button, on the main thread):
    the job leaves the list at once; returns the `jobs.removal.Deletion`."""
    return runtime.engine().remove(job, before_delete=importer.camera.pack_images_from)


def _job(job) -> Job:
    return get_job(job) if isinstance(job, str) else job
