# SPDX-License-Identifier: GPL-3.0-or-later
"""Starting a job from what the artist gave (bpy, main thread): every check that needs no
network, the inputs prepared into the job's folder, then the job handed to the engine. Also
fetching a failed job's result again, and pricing a job before it runs. Used by api.py
(submit, retry, estimate) and by batches."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

import bpy

from ..addon import runtime
from ..errors import InputError
from ..jobs import Job
from ..providers import JobInputs, make_provider, provider_class
from ..providers.declaration import as_boxes, as_points
from . import inputs, main_thread

log = logging.getLogger(__name__)
#: extra parameters already reported this session, per provider
_told: set[tuple[str, str]] = set()


def start_job(image, provider: str, *, auto_import: dict | None = None,
              job_id: str | None = None, **request_kw) -> Job:
    """Check, prepare and queue a job; returns it at once (see api.submit). `job_id`: an id
    the caller recorded beforehand (a batch, so a crash can never lose the job's id)."""
    request = JobRequest(provider, **request_kw)
    eng = runtime.engine()
    job = Job(provider, {}, auto_import=dict(auto_import or {}), job_id=job_id)
    job_dir = eng.job_dir(job)
    try:
        job.inputs = request.prepare(job_dir, image).to_json()
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    job.label = _label(image, request.prompt)
    eng.submit(job)
    main_thread.ensure_timer()
    return job


def estimate_job(image, provider: str, **request_kw) -> float | None:
    """The price of a job before it runs (see api.estimate): `prepare_estimate`, then ask."""
    return prepare_estimate(image, provider, **request_kw)()


def prepare_estimate(image, provider: str, **request_kw):
    """Main thread: the same checks and preparation as `start_job`, into a throwaway folder.
    Returns `ask()`, which makes the network calls (any thread: it touches no bpy) and gives
    the provider's price for the job (None when its service cannot say); nothing billable is
    sent. The folder is removed when `ask` has run."""
    request = JobRequest(provider, **request_kw)
    work_dir = tempfile.mkdtemp(prefix="recon3d-estimate-")
    try:
        job_inputs = request.prepare(work_dir, image)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise

    def ask() -> float | None:
        try:
            return make_provider(provider, request.settings).estimate(job_inputs)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    return ask


def fetch_again(job: Job) -> Job:
    """Fetch the result of a job that failed while downloading (or polling) again; nothing is
    sent again, so nothing is billed again (providers/billing.py)."""
    runtime.check_ready_to_send(job.provider)
    runtime.engine().retry(job)
    main_thread.ensure_timer()
    return job


class JobRequest:
    """The checks `submit` makes before anything is sent, the cheapest first: arguments on
    construction (no file touched), the files in `prepare`."""

    def __init__(self, provider: str, *, prompt=None, mask=None, points=None, boxes=None,
                 seed=None, options=None):
        cls = self.cls = provider_class(provider)
        if prompt is not None and not isinstance(prompt, str):
            raise InputError("The prompt must be text.")
        self.prompt = (prompt or "").strip() or None
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InputError(f"The seed must be a whole number; got {seed!r}.")
        self.seed, self.mask = seed, mask
        self.options = dict(options or {})
        self.points, self.boxes = as_points(points), as_boxes(boxes)
        cls.validate(JobInputs(image_path="", image_size=(1 << 30, 1 << 30), prompt=self.prompt,
                               mask_paths=[""] * (len(mask) if isinstance(mask, (list, tuple))
                                                  else (1 if mask is not None else 0)),
                               points=self.points, boxes=self.boxes, seed=seed,
                               options=self.options))
        self.settings = runtime.check_ready_to_send(provider)
        unchecked = cls.describe_unchecked(self.options)
        if unchecked and (cls.id, unchecked) not in _told:   # a typo must not go unseen
            _told.add((cls.id, unchecked))                    # (once, not per photo)
            log.warning("Recon3D: %s gets extra parameters unchecked: %s", cls.label, unchecked)

    def prepare(self, job_dir: str, image) -> JobInputs:
        cls = self.cls
        limits = inputs.UploadLimits(max_side=cls.max_upload_side,
                                     max_bytes=cls.max_upload_bytes,
                                     derive_mask=cls.capabilities.mask_required)
        prepared = inputs.prepare(job_dir, image, mask=self.mask, points=self.points,
                                  boxes=self.boxes, limits=limits)
        job_inputs = JobInputs(image_path=prepared.image_path, image_size=prepared.image_size,
                               prompt=self.prompt, mask_paths=prepared.mask_paths,
                               points=prepared.points, boxes=prepared.boxes, seed=self.seed,
                               options=self.options)
        cls.validate(job_inputs)
        return job_inputs


def _label(image, prompt) -> str:
    if prompt:
        return prompt[:40]
    if isinstance(image, bpy.types.Image):
        return image.name
    return os.path.splitext(os.path.basename(os.fspath(image)))[0][:40]
