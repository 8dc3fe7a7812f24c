# SPDX-License-Identifier: GPL-3.0-or-later
"""Scenario's protocol: assets, custom-model generation, jobs, signed CDN URLs."""
from __future__ import annotations

import base64
import binascii
import threading
import time
import uuid
from dataclasses import dataclass, field

from .server import Recorded, Reply

MODELS = {"model_meta-sam-3d-objects", "model_pixal3d"}
PIXAL_PARAMS = {"ssGuidanceStrength", "ssGuidanceRescale", "ssSamplingSteps",
                "shapeSlatGuidanceStrength", "shapeSlatGuidanceRescale", "shapeSlatSamplingSteps",
                "shapeSlatRescaleT", "texSlatGuidanceStrength", "texSlatGuidanceRescale",
                "texSlatSamplingSteps", "texSlatRescaleT", "meshScale", "maxNumTokens",
                "decimationTarget", "generationResolution", "resolution", "remesh", "seed",
                "image"}
SAM_PARAMS = {"image", "prompt", "mask", "pointPrompts", "boxPrompts", "seed"}
#: the status sequence of a successful job, by fraction of its duration
SEQUENCE = (("pending", 0.0), ("queued", 0.1), ("warming-up", 0.2), ("in-progress", 0.35),
            ("finalizing", 0.9))
MAX_UPLOAD = 6 * 1024 * 1024


@dataclass
class ScenarioJob:
    id: str
    model: str
    body: dict
    created: float
    duration: float
    fail: tuple[str, str] | None
    results: list[bytes]
    canceled: bool = False
    asset_ids: list[str] = field(default_factory=list)
    fetched: bool = False

    def status(self, now: float) -> tuple[str, float]:
        if self.canceled:
            return "canceled", 0.0
        frac = (now - self.created) / self.duration if self.duration else 1.0
        if frac >= 1.0:
            return ("failure" if self.fail else "success"), 1.0
        state = "pending"
        for name, start in SEQUENCE:
            if frac >= start:
                state = name
        return state, round(min(max(frac, 0.0), 0.99), 3)


class ScenarioService:
    """Knobs: `duration`, `results` (list of GLB bytes: one per object), `fail`
    ((error, hint) or None), `expire_first_url` (the first signed URL of each result asset
    answers 403 at the CDN), `top_level_job_id`, `cancel_supported`, `cu_cost`."""

    def __init__(self, emulator, key: str, secret: str):
        self.emu = emulator
        self.auth = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.assets: dict[str, dict] = {}
        self.uploads: list[Recorded] = []
        self.jobs: dict[str, ScenarioJob] = {}
        self.submits: list[Recorded] = []
        self.cancels: list[str] = []
        self.duration = 0.3
        self.results: list[bytes] = []
        self.fail: tuple[str, str] | None = None
        self.expire_first_url = False
        self.top_level_job_id = False
        self.cancel_supported = True
        self.cu_cost = 12
        self.url_requests: dict[str, int] = {}
        self.max_running = 0

    def running(self) -> int:
        now = time.time()
        return sum(1 for j in self.jobs.values()
                   if not j.fetched and j.status(now)[0] not in ("failure", "canceled"))

    def handle(self, req: Recorded, path: str) -> Reply:
        if req.headers.get("authorization") != self.auth:
            return Reply(401, {"status": "error", "code": "unauthorized",
                               "message": "Invalid API credentials"})
        path = path.split("?", 1)[0]
        if not path.startswith("/v1/"):
            return Reply(404, {"status": "error", "message": "Not found"})
        path = path[3:]
        if req.method == "POST" and path == "/assets":
            return self._upload(req)
        if req.method == "GET" and path.startswith("/assets/"):
            return self._asset(path[len("/assets/"):])
        if req.method == "POST" and path.startswith("/generate/custom/"):
            return self._generate(req, path[len("/generate/custom/"):])
        if req.method == "GET" and path.startswith("/jobs/"):
            return self._job(path[len("/jobs/"):])
        if req.method == "POST" and path.startswith("/jobs/") and path.endswith("/action"):
            return self._action(req, path[len("/jobs/"):-len("/action")])
        return Reply(404, {"status": "error", "message": "Not found"})

    # -- assets ---------------------------------------------------------------------------------
    def _upload(self, req: Recorded) -> Reply:
        body = req.json
        if not isinstance(body, dict) or not isinstance(body.get("image"), str):
            return Reply(400, {"status": "error", "message": "image is required"})
        try:
            data = base64.b64decode(body["image"], validate=True)
        except (binascii.Error, ValueError):
            return Reply(400, {"status": "error", "message": "image is not base64"})
        if len(req.body) > MAX_UPLOAD:
            return Reply(400, {"status": "error", "code": "payload_too_large",
                               "message": "Upload larger than 6 MB: use /uploads"})
        mime = "image/png" if data.startswith(b"\x89PNG") else \
            "image/jpeg" if data.startswith(b"\xff\xd8") else None
        if mime is None:
            return Reply(400, {"status": "error", "message": "not an image"})
        asset_id = f"asset_{uuid.uuid4().hex[:12]}"
        with self.lock:
            self.assets[asset_id] = {"data": data, "mime": mime, "name": body.get("name")}
            self.uploads.append(req)
        return Reply(200, {"asset": {"id": asset_id, "url": "", "mimeType": mime,
                                     "kind": "image", "status": "success"}})

    def _asset(self, asset_id: str) -> Reply:
        asset = self.assets.get(asset_id)
        if asset is None:
            return Reply(404, {"status": "error", "message": "Asset not found"})
        count = self.url_requests.get(asset_id, 0)
        self.url_requests[asset_id] = count + 1
        name = f"{asset_id}-{count}.glb"
        if self.expire_first_url and count == 0:
            url = self.emu.publish_expired(name)
        else:
            url = self.emu.publish(asset["data"], asset["mime"], name=name)
        return Reply(200, {"asset": {"id": asset_id, "url": url + "?Signature=abc&Expires=1",
                                     "mimeType": asset["mime"], "kind": "3d",
                                     "status": "success"}})

    # -- jobs -----------------------------------------------------------------------------------
    def _generate(self, req: Recorded, model: str) -> Reply:
        if model not in MODELS:
            return Reply(404, {"status": "error", "message": f"Model {model} not found"})
        body = req.json
        if not isinstance(body, dict) or body.get("image") not in self.assets:
            return Reply(400, {"status": "error", "message": "image must be an asset id"})
        allowed = SAM_PARAMS if model == "model_meta-sam-3d-objects" else PIXAL_PARAMS
        unknown = set(body) - allowed
        if unknown:
            return Reply(400, {"status": "error", "message": f"Unknown parameters {unknown}"})
        if len(body.get("prompt") or "") > 120:
            return Reply(400, {"status": "error", "message": "prompt too long"})
        for mask in body.get("mask") or []:
            if mask not in self.assets:
                return Reply(400, {"status": "error", "message": "mask must be asset ids"})
        job_id = f"job_{uuid.uuid4().hex[:12]}"
        with self.lock:
            job = ScenarioJob(job_id, model, body, time.time(), self.duration, self.fail,
                              list(self.results))
            self.jobs[job_id] = job
            self.submits.append(req)
            self.max_running = max(self.max_running, self.running())
        payload = {"jobId": job_id, "status": "queued", "billing": {"cuCost": self.cu_cost}}
        if self.top_level_job_id:
            return Reply(200, payload)
        return Reply(200, {"job": payload, "creativeUnitsCost": self.cu_cost})

    def _job(self, job_id: str) -> Reply:
        job = self.jobs.get(job_id)
        if job is None:
            return Reply(404, {"status": "error", "message": "Job not found"})
        status, progress = job.status(time.time())
        meta: dict = {"input": job.body}
        if status == "success":
            with self.lock:
                if not job.asset_ids:
                    for data in job.results:
                        asset_id = f"asset_{uuid.uuid4().hex[:12]}"
                        self.assets[asset_id] = {"data": data, "mime": "model/gltf-binary"}
                        job.asset_ids.append(asset_id)
                job.fetched = True
            meta["assetIds"] = list(job.asset_ids)
        if status == "failure":
            meta["error"], meta["hint"] = job.fail
        return Reply(200, {"job": {"jobId": job.id, "status": status, "progress": progress,
                                   "metadata": meta, "billing": {"cuCost": self.cu_cost}}})

    def _action(self, req: Recorded, job_id: str) -> Reply:
        job = self.jobs.get(job_id)
        if job is None:
            return Reply(404, {"status": "error", "message": "Job not found"})
        self.cancels.append(job_id)
        if not self.cancel_supported:
            return Reply(400, {"status": "error", "message": "Cannot cancel this type of job"})
        job.canceled = True
        return Reply(200, {"job": {"jobId": job.id, "status": "canceled"}})
