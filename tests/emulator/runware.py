# SPDX-License-Identifier: GPL-3.0-or-later
"""Runware's task-array protocol for SAM 3D Objects. 3dInference tasks are validated against
the vendor's own OpenAPI schema (shared/vendor-docs), so a body the real service would
refuse is refused here too."""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
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
    count: int = 1                  # numberResults: one item per result
    failing: frozenset = frozenset()  # result indices that end as error items of their own
    #: result index -> its files [{uuid, url}], fixed once published (polls are cumulative)
    files: dict[int, list[dict]] = field(default_factory=dict)
    fetched: bool = False

    def done_at(self, index: int) -> float:
        """Results finish one after another: item k at (k+1)/count of the duration."""
        return self.created + self.duration * (index + 1) / self.count

    def status(self, now: float) -> str:
        """The whole task: processing until its last result (or its failure) is in."""
        if self.fail:
            return "error" if now >= self.done_at(0) else "processing"
        return "success" if now >= self.done_at(self.count - 1) else "processing"


class RunwareService:
    """Knobs: `duration`, `results` (GLB bytes: the files of one result item; each of the
    task's `numberResults` items carries them all), `fail` (reason), `fail_code`, `fail_style`
    ("item": a getResponse item `{"status": "error", "error": {code, message}}`; "errors": a
    400 `errors` array; "error": HTTP 200 with a singular top-level `error` object), `cost` (per
    result item), `fail_results` (indices of results that fail on their own: error items beside
    the successful ones, as the SDK's collector expects).

    As the service does (shared/PROVIDERS.md, corrections read from runware-sdk 1.8): a
    3dInference whose taskUUID is already known is refused with HTTP 400
    `{"errors": [{"code": "conflictTaskUUID", ...}]}` and not billed again; getResponse answers
    cumulatively, one item per result with its `resultIndex`, `progress` (0-100) on the ones
    still processing."""

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
        self.conflicts: list[str] = []          # taskUUIDs refused as already known
        self.invalid: list[str] = []
        self.duration = 0.3
        self.results: list[bytes] = []
        self.fail: str | None = None
        #: result indices that fail on their own (status "error" items beside the others)
        self.fail_results: set[int] = set()
        self.fail_code = "inferenceError"
        self.fail_style = "item"
        self.cost = 0.0123
        self.max_running = 0

    @property
    def billed(self) -> int:
        """Distinct tasks started (a resent taskUUID is refused, not billed again)."""
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
        data, errors, single_error = [], [], None
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
                started = self._start(task)
                if "code" in started:
                    errors.append(started)
                else:
                    data.append(started)
            elif kind == "getResponse":
                problems = [e.message for e in self.validate_poll.iter_errors(task)]
                if problems:
                    self.invalid.extend(problems)
                    errors.append({"code": "invalidParameter", "message": problems[0]})
                    continue
                found = self._response(task["taskUUID"])
                if isinstance(found, dict) and "errors" in found:
                    errors.extend(found["errors"])
                elif isinstance(found, dict) and "error" in found:
                    single_error = found
                else:
                    data.extend(found)
            else:
                errors.append({"code": "invalidTaskType", "message": f"Unknown task {kind}"})
        if errors and not data:
            return Reply(400, {"errors": errors})
        body: dict = {"data": data}
        if errors:
            body["errors"] = errors
        if single_error is not None:
            body.update(single_error)
        return Reply(200, body)

    def _start(self, task: dict) -> dict:
        task_uuid = task["taskUUID"]
        with self.lock:
            if task_uuid in self.tasks:     # the service refuses a taskUUID it already has
                self.conflicts.append(task_uuid)
                return {"code": "conflictTaskUUID", "taskType": "3dInference",
                        "taskUUID": task_uuid, "parameter": "taskUUID",
                        "message": "Conflict: a task with this taskUUID already exists. "
                                   "Use a new UUID for each task."}
            self.tasks[task_uuid] = RunwareTask(
                task_uuid, task, time.time(), self.duration, self.fail, list(self.results),
                count=int(task.get("numberResults", 1)),
                failing=frozenset(self.fail_results))
            self.max_running = max(self.max_running, self.running())
        return {"taskType": "3dInference", "taskUUID": task_uuid}

    def _response(self, task_uuid: str):
        task = self.tasks.get(task_uuid)
        if task is None:
            return {"errors": [{"code": "taskNotFound", "taskUUID": task_uuid,
                                "message": "No task with this UUID"}]}
        now = time.time()
        head = {"taskType": "3dInference", "taskUUID": task_uuid}
        if task.status(now) == "error":
            error = {"code": self.fail_code, "message": task.fail}
            if self.fail_style == "errors":
                return {"errors": [dict(error, taskType="3dInference", taskUUID=task_uuid)]}
            if self.fail_style == "error":
                return dict(head, error=error)
            return [dict(head, status="error", resultIndex=0, error=error)]
        items = []
        for index in range(task.count):
            if now < task.done_at(index):
                start = task.done_at(index - 1) if index else task.created
                share = (now - start) / max(task.done_at(index) - start, 1e-9)
                items.append(dict(head, status="processing", resultIndex=index,
                                  progress=int(min(max(share, 0.0), 0.99) * 100)))
                continue
            if index in task.failing:
                items.append(dict(head, status="error", resultIndex=index,
                                  error={"code": self.fail_code,
                                         "message": "Inference failed for this result"}))
                continue
            with self.lock:
                if index not in task.files:
                    task.files[index] = [{"uuid": str(uuid.uuid4()), "url": self.emu.publish(data)}
                                         for data in task.results]
            items.append(dict(head, status="success", resultIndex=index, cost=self.cost,
                              seed=task.body.get("seed", 42),
                              outputs={"files": [dict(f) for f in task.files[index]]}))
        if task.status(now) == "success":
            task.fetched = True
        return items
