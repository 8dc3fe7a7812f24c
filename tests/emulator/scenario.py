# SPDX-License-Identifier: GPL-3.0-or-later
"""Scenario's protocol: assets, custom-model generation, jobs, signed CDN URLs."""
from __future__ import annotations

import base64
import binascii
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qs

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
TEAM = "team_emulator0000000000000"
USER = "user_emulator000000000000000"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
    canceled_at: float | None = None
    asset_ids: list[str] = field(default_factory=list)
    fetched: bool = False

    def history(self, now: float) -> list[dict]:
        """statusHistory: each status reached so far with its date."""
        out = []
        for name, start in SEQUENCE:
            at = self.created + start * self.duration
            if at <= now and not (self.canceled_at is not None and at > self.canceled_at):
                out.append({"status": name, "date": iso(at)})
        status, _ = self.status(now)
        if status in ("success", "failure", "canceled"):
            end = self.canceled_at if status == "canceled" else self.created + self.duration
            out.append({"status": status, "date": iso(end)})
        return out

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
    answers 403 at the CDN), `top_level_job_id`, `cancel_supported`, `cu_cost` (the main
    action), `cu_cost_details` (add-ons, e.g. {"quality-gate": 2}: the job's total is cu_cost
    plus these), `cu_discount`, `disable_refund`.

    Bodies carry every field the official SDK's response models require (scenario-sdk 2.4 with
    strict response validation). `?dryRun=true` on a generate answers HTTP 269 with the cost
    and starts nothing (recorded in `dry_runs`); uploads record `hide` (`assets[id]["hidden"])."""

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
        self.cu_cost_details: dict | None = None
        self.cu_discount = 0
        self.disable_refund: bool | None = None
        self.dry_runs: list[Recorded] = []
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
        path, _, query = path.partition("?")
        req_query = parse_qs(query)
        if not path.startswith("/v1/"):
            return Reply(404, {"status": "error", "message": "Not found"})
        path = path[3:]
        if req.method == "POST" and path == "/assets":
            return self._upload(req)
        if req.method == "GET" and path.startswith("/assets/"):
            return self._asset(path[len("/assets/"):])
        if req.method == "POST" and path.startswith("/generate/custom/"):
            dry = req_query.get("dryRun", [""])[0] in ("true", "api")
            return self._generate(req, path[len("/generate/custom/"):], dry)
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
            self.assets[asset_id] = {"data": data, "mime": mime, "name": body.get("name"),
                                     "hidden": bool(body.get("hide")), "created": time.time(),
                                     "kind": "image", "source": "uploaded"}
            self.uploads.append(req)
        url = self.emu.publish(data, mime, name=f"{asset_id}-upload")
        return Reply(200, {"asset": self._asset_json(asset_id, url)})

    def _asset_json(self, asset_id: str, url: str) -> dict:
        """An asset as the API describes it (all fields the SDK's Asset model requires)."""
        asset = self.assets[asset_id]
        stamp = iso(asset.get("created", time.time()))
        return {"id": asset_id, "url": url, "mimeType": asset["mime"], "kind": asset["kind"],
                "status": "success", "authorId": USER, "ownerId": TEAM, "privacy": "private",
                "collectionIds": [], "tags": [], "editCapabilities": [],
                "createdAt": stamp, "updatedAt": stamp, "source": asset["source"],
                "metadata": {"kind": asset["kind"], "type": asset["source"],
                             **({"name": asset["name"]} if asset.get("name") else {})},
                "properties": {"size": len(asset["data"])},
                "isHidden": asset.get("hidden", False)}

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
        return Reply(200, {"asset": self._asset_json(asset_id,
                                                     url + "?Signature=abc&Expires=1")})

    # -- jobs -----------------------------------------------------------------------------------
    def _billing(self) -> dict:
        billing = {"cuCost": self.cu_cost, "cuDiscount": self.cu_discount}
        if self.cu_cost_details:
            billing["cuCostDetails"] = dict(self.cu_cost_details)
        if self.disable_refund is not None:
            billing["disableRefund"] = self.disable_refund
        return billing

    def total_cost(self) -> float:
        return self.cu_cost + sum((self.cu_cost_details or {}).values())

    def _cost_details(self) -> dict:
        return {"custom-generation": self.cu_cost, **(self.cu_cost_details or {})}

    def _job_json(self, job: ScenarioJob, now: float | None = None) -> dict:
        """A job as the API describes it (all fields the SDK's Job model requires)."""
        now = time.time() if now is None else now
        status, progress = job.status(now)
        meta: dict = {"input": job.body}
        if status == "success":
            meta["assetIds"] = list(job.asset_ids)
        if status == "failure":
            meta["error"], meta["hint"] = job.fail
        history = job.history(now)
        return {"jobId": job.id, "jobType": "inference", "status": status, "progress": progress,
                "metadata": meta, "billing": self._billing(), "statusHistory": history,
                "createdAt": iso(job.created), "updatedAt": history[-1]["date"] if history
                else iso(job.created), "authorId": USER, "ownerId": TEAM}

    def _generate(self, req: Recorded, model: str, dry_run: bool = False) -> Reply:
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
        cost = {"creativeUnitsCost": self.total_cost(), "creativeUnitsDiscount": self.cu_discount,
                "costDetails": self._cost_details()}
        if dry_run:                 # the cost, and no job started
            self.dry_runs.append(req)
            return Reply(269, cost)
        job_id = f"job_{uuid.uuid4().hex[:12]}"
        with self.lock:
            job = ScenarioJob(job_id, model, body, time.time(), self.duration, self.fail,
                              list(self.results))
            self.jobs[job_id] = job
            self.submits.append(req)
            self.max_running = max(self.max_running, self.running())
        payload = self._job_json(job, job.created)
        if self.top_level_job_id:
            return Reply(200, payload)
        return Reply(200, {"job": payload, **cost})

    def _job(self, job_id: str) -> Reply:
        job = self.jobs.get(job_id)
        if job is None:
            return Reply(404, {"status": "error", "message": "Job not found"})
        now = time.time()
        if job.status(now)[0] == "success":
            with self.lock:
                if not job.asset_ids:
                    for data in job.results:
                        asset_id = f"asset_{uuid.uuid4().hex[:12]}"
                        self.assets[asset_id] = {"data": data, "mime": "model/gltf-binary",
                                                 "created": now, "kind": "3d",
                                                 "source": "img23d"}
                        job.asset_ids.append(asset_id)
                job.fetched = True
        return Reply(200, {"job": self._job_json(job, now)})

    def _action(self, req: Recorded, job_id: str) -> Reply:
        job = self.jobs.get(job_id)
        if job is None:
            return Reply(404, {"status": "error", "message": "Job not found"})
        self.cancels.append(job_id)
        if not self.cancel_supported:
            return Reply(400, {"status": "error", "message": "Cannot cancel this type of job"})
        if not job.canceled:
            job.canceled, job.canceled_at = True, time.time()
        return Reply(200, {"job": self._job_json(job)})
