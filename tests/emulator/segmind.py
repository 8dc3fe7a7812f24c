# SPDX-License-Identifier: GPL-3.0-or-later
"""Segmind's async v2 protocol for SAM 3D Objects (shared/PROVIDERS.md, vendor-docs)."""
from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field

from .server import Recorded, Reply

MODEL = "/v2/sam-3d-objects"


@dataclass
class SegmindJob:
    id: str
    payload: dict
    created: float
    duration: float
    fail_reason: str | None
    output_mode: str
    result: bytes
    stringify: bool = False
    fail_status: int = 422
    polls: int = 0
    fetched: bool = False

    def status(self, now: float) -> str:
        age = now - self.created
        if age < self.duration * 0.3:
            return "QUEUED"
        if age < self.duration:
            return "PROCESSING"
        return "FAILED" if self.fail_reason else "COMPLETED"


class SegmindService:
    """Knobs for the next submits: `duration`, `result`, `output_mode` ("url", "base64",
    "data_uri", "raw", "zip", "zip_url", "list", "dict", "none"), `stringify_output` (send the
    JSON output as a string holding its JSON, as the official SDK says v2 does: a quoted URL, a
    list, an object), `fail_reason`, `fail_status` (the HTTP status a FAILED body comes with:
    422 usually, 400 or 500 too), `status_base` (the base of the status/response URLs the
    submit returns; default this service's own URL), `credits`, `expire_after` (seconds until
    an id answers 404)."""

    def __init__(self, emulator, key: str):
        self.emu = emulator
        self.key = key
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.jobs: dict[str, SegmindJob] = {}
            self.submits: list[Recorded] = []
            self.duration = 0.3
            self.result: bytes = b""
            self.output_mode = "url"
            self.stringify_output = False
            self.fail_status = 422
            self.status_base: str | None = None
            self.fail_reason: str | None = None
            self.credits = 1000.0
            self.cost = 0.35
            self.expire_after: float | None = None
            self.duration_jitter = 0.0     # each job takes duration ± this (uniform)
            self.max_running = 0

    # -- helpers --------------------------------------------------------------------------------
    def running(self, now: float | None = None) -> int:
        """Jobs accepted whose result has not been collected yet (they hold a worker)."""
        now = now or time.time()
        return sum(1 for j in self.jobs.values()
                   if not j.fetched and j.status(now) != "FAILED")

    def _headers(self) -> dict:
        return {"x-remaining-credits": f"{self.credits:.2f}"}

    def _authorised(self, req: Recorded) -> bool:
        return req.headers.get("x-api-key") == self.key

    def _job(self, job_id: str) -> SegmindJob | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        if self.expire_after is not None and time.time() - job.created > self.expire_after:
            return None
        return job

    # -- protocol -------------------------------------------------------------------------------
    def handle(self, req: Recorded, path: str) -> Reply:
        if not self._authorised(req):
            return Reply(401, {"error": "Invalid API key"})
        path = path.split("?", 1)[0]
        if req.method == "POST" and path == MODEL:
            return self._submit(req)
        if req.method == "GET" and path.startswith("/files/"):
            # A result link on Segmind's own host that redirects to the CDN on another host.
            name = path[len("/files/"):]
            return Reply(302, b"", headers={
                "Location": f"http://localhost:{self.emu.cdn.port}/files/{name}"})
        if req.method == "GET" and path.startswith("/v2/requests/"):
            rest = path[len("/v2/requests/"):]
            if rest.endswith("/status"):
                return self._status(rest[:-len("/status")])
            return self._result(rest)
        return Reply(404, {"error": "Not Found"})

    def _submit(self, req: Recorded) -> Reply:
        body = req.json
        if not isinstance(body, dict) or not body.get("image"):
            return Reply(400, {"error": "image is required"})
        seed = body.get("seed")
        if seed is not None and not (isinstance(seed, int) and 0 <= seed <= 1_000_000):
            return Reply(400, {"error": "seed must be between 0 and 1000000"})
        with self.lock:
            duration = self.duration + random.uniform(-self.duration_jitter,
                                                      self.duration_jitter)
            job = SegmindJob(id=str(uuid.uuid4()), payload=body, created=time.time(),
                             duration=duration, fail_reason=self.fail_reason,
                             output_mode=self.output_mode, result=self.result,
                             stringify=self.stringify_output, fail_status=self.fail_status)
            self.jobs[job.id] = job
            self.submits.append(req)
            self.credits -= self.cost
            self.max_running = max(self.max_running, self.running())
        base = f"{self.status_base or self.emu.segmind_url}/v2/requests/{job.id}"
        return Reply(200, {"request_id": job.id, "status": "QUEUED",
                           "status_url": f"{base}/status", "response_url": base},
                     headers=self._headers())

    def _status(self, job_id: str) -> Reply:
        job = self._job(job_id)
        if job is None:
            return Reply(404, {"error": "Request not found or expired"})
        job.polls += 1
        status = job.status(time.time())
        if status == "FAILED":
            return self._failed(job)
        return Reply(200, {"status": status, "request_id": job.id,
                           "metrics": {"queue_time": 0.1}}, headers=self._headers())

    def _failed(self, job: SegmindJob) -> Reply:
        """A FAILED request: its JSON body under `fail_status` (the SDK reads the body whatever
        the status), on /status and on the result alike."""
        return Reply(job.fail_status, {"status": "FAILED", "request_id": job.id,
                                       "error": job.fail_reason}, headers=self._headers())

    def _result(self, job_id: str) -> Reply:
        job = self._job(job_id)
        if job is None:
            return Reply(404, {"error": "Request not found or expired"})
        status = job.status(time.time())
        if status == "FAILED":
            return self._failed(job)
        if status != "COMPLETED":
            return Reply(200, {"status": status, "request_id": job.id})
        job.fetched = True
        mode, data = job.output_mode, job.result
        if mode == "raw":
            return Reply(200, data, content_type="model/gltf-binary", headers=self._headers())
        if mode == "zip":
            return Reply(200, _zip(data), content_type="application/zip")
        output: object
        if mode == "url":
            output = self.emu.publish(data)
        elif mode == "redirect":
            name = self.emu.publish(data).rsplit("/", 1)[-1]
            output = f"{self.emu.segmind_url}/files/{name}"
        elif mode == "zip_url":
            output = self.emu.publish(_zip(data), "application/zip", name=f"{job.id}.zip")
        elif mode == "base64":
            output = base64.b64encode(data).decode()
        elif mode == "data_uri":
            output = "data:model/gltf-binary;base64," + base64.b64encode(data).decode()
        elif mode == "list":
            output = [self.emu.publish(data)]
        elif mode == "dict":
            output = {"glb": self.emu.publish(data), "preview": None}
        else:
            output = None
        if job.stringify and output is not None:
            output = json.dumps(output)
        return Reply(200, {"status": "COMPLETED", "request_id": job.id, "output": output,
                           "metrics": {"inference_time": job.duration}},
                     headers=self._headers())


def _zip(glb: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("artifacts/debug.json", '{"note": "debug"}')
        archive.writestr("artifacts/mesh.glb", glb)
    return buf.getvalue()
