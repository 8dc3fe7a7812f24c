# SPDX-License-Identifier: GPL-3.0-or-later
"""Runware's task-array protocol for SAM 3D Objects. 3dInference tasks are validated against
the vendor's own OpenAPI schema (shared/vendor-docs), so a body the real service would
refuse is refused here too."""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .server import Recorded, Reply

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "shared" / "vendor-docs" / \
    "runware-sam3d-objects.openapi.json"
#: getResponse is not in the model's schema; this is its shape from shared/PROVIDERS.md
GET_RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"taskType": {"const": "getResponse"},
                   "taskUUID": {"type": "string", "format": "uuid"}},
    "required": ["taskType", "taskUUID"],
    "additionalProperties": False,
}


def task_validator():
    """A jsonschema validator for one 3dInference task (the vendor's RequestBody items)."""
    import jsonschema
    spec = json.loads(SCHEMA_PATH.read_text())
    item = spec["components"]["schemas"]["RequestBody"]["items"]
    cls = jsonschema.validators.validator_for(item, default=jsonschema.Draft202012Validator)
    return cls(item, format_checker=cls.FORMAT_CHECKER)


def poll_validator():
    import jsonschema
    cls = jsonschema.Draft202012Validator
    return cls(GET_RESPONSE_SCHEMA, format_checker=cls.FORMAT_CHECKER)


@dataclass
class RunwareTask:
    uuid: str
    body: dict
    created: float
    duration: float
    fail: str | None
    results: list[bytes]
    urls: list[str] | None = None
    fetched: bool = False

    def status(self, now: float) -> str:
        if now - self.created < self.duration:
            return "processing"
        return "error" if self.fail else "success"


class RunwareService:
    """Knobs: `duration`, `results` (GLB bytes; repeated per numberResults), `fail` (reason),
    `fail_style` ("item" or "errors"), `cost`."""

    def __init__(self, emulator, key: str):
        self.emu = emulator
        self.auth = f"Bearer {key}"
        self.lock = threading.Lock()
        self.validate_task = task_validator()
        self.validate_poll = poll_validator()
        self.reset()

    def reset(self) -> None:
        self.tasks: dict[str, RunwareTask] = {}
        self.bodies: list[Recorded] = []
        self.submits: list[Recorded] = []       # every 3dInference request received
        self.invalid: list[str] = []
        self.duration = 0.3
        self.results: list[bytes] = []
        self.fail: str | None = None
        self.fail_style = "item"
        self.cost = 0.0123
        self.max_running = 0

    @property
    def billed(self) -> int:
        """Distinct tasks started (a resent taskUUID is not billed again)."""
        return len(self.tasks)

    def running(self) -> int:
        now = time.time()
        return sum(1 for t in self.tasks.values() if not t.fetched and t.status(now) != "error")

    def handle(self, req: Recorded, path: str) -> Reply:
        if req.headers.get("authorization") != self.auth:
            return Reply(401, {"errors": [{"code": "invalidApiKey",
                                           "message": "Invalid API key. Check your key."}]})
        if req.method != "POST" or path.split("?", 1)[0].rstrip("/") != "/v1":
            return Reply(404, {"errors": [{"code": "notFound", "message": "Not found"}]})
        tasks = req.json
        if not isinstance(tasks, list) or not tasks:
            return Reply(400, {"errors": [{"code": "invalidRequest",
                                           "message": "Body must be an array of tasks"}]})
        self.bodies.append(req)
        data, errors = [], []
        for task in tasks:
            kind = task.get("taskType") if isinstance(task, dict) else None
            if kind == "3dInference":
                self.submits.append(req)
                problems = [e.message for e in self.validate_task.iter_errors(task)]
                if problems:
                    self.invalid.extend(problems)
                    errors.append({"code": "invalidParameter", "message": problems[0],
                                   "taskType": kind, "taskUUID": task.get("taskUUID")})
                    continue
                data.append(self._start(task))
            elif kind == "getResponse":
                problems = [e.message for e in self.validate_poll.iter_errors(task)]
                if problems:
                    self.invalid.extend(problems)
                    errors.append({"code": "invalidParameter", "message": problems[0]})
                    continue
                found = self._response(task["taskUUID"])
                if isinstance(found, dict) and "errors" in found:
                    errors.extend(found["errors"])
                else:
                    data.extend(found)
            else:
                errors.append({"code": "invalidTaskType", "message": f"Unknown task {kind}"})
        if errors and not data:
            return Reply(400, {"errors": errors})
        body: dict = {"data": data}
        if errors:
            body["errors"] = errors
        return Reply(200, body)

    def _start(self, task: dict) -> dict:
        with self.lock:
            existing = self.tasks.get(task["taskUUID"])
            if existing is None:        # a resent taskUUID is the same task: not billed twice
                self.tasks[task["taskUUID"]] = RunwareTask(
                    task["taskUUID"], task, time.time(), self.duration, self.fail,
                    list(self.results) * int(task.get("numberResults", 1)))
                self.max_running = max(self.max_running, self.running())
        return {"taskType": "3dInference", "taskUUID": task["taskUUID"]}

    def _response(self, task_uuid: str):
        task = self.tasks.get(task_uuid)
        if task is None:
            return {"errors": [{"code": "taskNotFound", "taskUUID": task_uuid,
                                "message": "No task with this UUID"}]}
        status = task.status(time.time())
        item = {"taskType": "3dInference", "taskUUID": task_uuid, "status": status}
        if status == "error":
            if self.fail_style == "errors":
                return {"errors": [{"code": "inferenceFailed", "taskUUID": task_uuid,
                                    "message": task.fail}]}
            item["message"] = task.fail
            return [item]
        if status == "success":
            if task.urls is None:
                task.urls = [self.emu.publish(data) for data in task.results]
            task.fetched = True
            item["cost"] = self.cost
            item["seed"] = task.body.get("seed", 42)
            item["outputs"] = {"files": [{"uuid": str(uuid.uuid4()), "url": url}
                                         for url in task.urls]}
        return [item]
