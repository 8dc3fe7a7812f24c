# SPDX-License-Identifier: GPL-3.0-or-later
"""Recon3D's Python API (the contract in DESIGN.md).

    from bl_ext.<repo>.recon3d import api
    objects = api.reconstruct("/photos/chair.jpg", provider="segmind_sam3d", prompt="chair")

`submit` prepares inputs on the calling (main) thread, refuses anything it can check locally
before a byte is sent, and returns at once; the network work happens on worker threads.
"""
from __future__ import annotations

import os
import shutil

import bpy

from .addon import runtime
from .blender import importer, inputs, main_thread
from .errors import InputError, Recon3DError
from .jobs import Job
from .providers import JobInputs, provider_class
from .providers.declaration import as_boxes, as_points

__all__ = ["Job", "Recon3DError", "cancel", "get_job", "import_job", "jobs", "reconstruct",
           "retry", "submit"]


def submit(image, provider: str = "segmind_sam3d", *, prompt=None, mask=None, points=None,
           boxes=None, seed=None, options=None, _auto_import: dict | None = None) -> Job:
    """Start a job and return it at once. Raises Recon3DError, with nothing sent, for input
    that can be checked here (missing or unreadable file, an input the provider does not take,
    a value out of range, no key, online access off)."""
    cls = provider_class(provider)
    if prompt is not None and not isinstance(prompt, str):
        raise InputError("The prompt must be text.")
    prompt = (prompt or "").strip() or None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError(f"The seed must be a whole number; got {seed!r}.")
    options = dict(options or {})
    points, boxes = as_points(points), as_boxes(boxes)
    # What can be checked without touching files, first: the cheapest refusals.
    cls.validate(JobInputs(image_path="", image_size=(1 << 30, 1 << 30), prompt=prompt,
                           mask_paths=[""] * (len(mask) if isinstance(mask, (list, tuple))
                                              else (1 if mask is not None else 0)),
                           points=points, boxes=boxes, seed=seed,
                           options=options))
    runtime.check_ready_to_send(provider)

    eng = runtime.engine()
    job = Job(provider, {}, auto_import=dict(_auto_import or {}))
    job_dir = eng.job_dir(job)
    try:
        limits = inputs.UploadLimits(max_side=cls.max_upload_side,
                                     max_bytes=cls.max_upload_bytes,
                                     derive_mask=cls.capabilities.mask_required)
        prepared = inputs.prepare(job_dir, image, mask=mask, points=points, boxes=boxes,
                                  limits=limits)
        job_inputs = JobInputs(image_path=prepared.image_path, image_size=prepared.image_size,
                               prompt=prompt, mask_paths=prepared.mask_paths,
                               points=prepared.points, boxes=prepared.boxes, seed=seed,
                               options=options)
        cls.validate(job_inputs)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    job.inputs = job_inputs.to_json()
    job.label = _label(image, prompt)
    eng.submit(job)
    main_thread.ensure_timer()
    return job


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
    job = _job(job)
    runtime.check_ready_to_send(job.provider)
    runtime.engine().retry(job)
    main_thread.ensure_timer()
    return job


def _job(job) -> Job:
    return get_job(job) if isinstance(job, str) else job


def _label(image, prompt) -> str:
    if prompt:
        return prompt[:40]
    if isinstance(image, bpy.types.Image):
        return image.name
    return os.path.splitext(os.path.basename(os.fspath(image)))[0][:40]
