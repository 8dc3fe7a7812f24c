# SPDX-License-Identifier: GPL-3.0-or-later
"""Runware: SAM 3D Objects through task arrays (shared/PROVIDERS.md, vendor OpenAPI schema).

The client chooses the taskUUID, so a submit may be sent again with the same UUID without
paying twice: the UUID is journaled before the first send and reused on every retry and on
resume. The mask is required: input preparation derives one when the artist gave none.
"""
from __future__ import annotations

import uuid

import requests

from ..errors import AuthError, ServiceError
from .base import Capabilities, JobInputs, KeySpec, OptionSpec, PollStatus, Provider
from .files import data_uri
from .messages import describe_status, failure_reason, json_body

MODEL = "meta:sam@3d"
#: what Runware's statuses mean (messages.describe_status)
ANSWERS = {402: ("credits", "your balance is too low", "Top up at runware.ai, then try again.")}


class RunwareSam3D(Provider):
    id = "runware_sam3d"
    service = "Runware"
    label = "SAM 3D Objects (Runware)"
    model = MODEL
    default_url = "https://api.runware.ai/v1"
    url_env = "RECON3D_RUNWARE_URL"
    keys = (KeySpec("runware_api_key", "RUNWARE_API_KEY", "Runware API key",
                    "From runware.ai › API Keys"),)
    capabilities = Capabilities(prompt=True, mask=True, mask_required=True, max_masks=1,
                                points=False, boxes=False, seed=True,
                                seed_range=(0, 2**63 - 1), max_results=4)
    options = (OptionSpec("numberResults", int, 1, 1, 4, "Variations",
                          "How many variations to make (each is billed)"),)
    idempotent_submit = True
    results_are_variations = True      # numberResults > 1: variations of the same object

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.settings.credentials.get('runware_api_key', '')}"}

    def build_task(self, inputs: JobInputs, task_uuid: str) -> dict:
        task = {"taskType": "3dInference", "taskUUID": task_uuid, "model": MODEL,
                "inputs": {"image": data_uri(inputs.image_path),
                           "mask": data_uri(inputs.mask_paths[0])},
                "outputFormat": "GLB", "outputType": "URL", "deliveryMethod": "async",
                "includeCost": True}
        if inputs.prompt:
            task["positivePrompt"] = inputs.prompt
        if inputs.seed is not None:
            task["seed"] = int(inputs.seed)
        results = int(inputs.options.get("numberResults", 1))
        if results != 1:
            task["numberResults"] = results
        return task

    def _post(self, tasks: list, *, repeatable: bool = True):
        # Every Runware request is a POST, even a poll; all of them are safe to repeat
        # (the submit because its taskUUID makes it idempotent).
        resp = self.http.request("POST", "", json_data=tasks, billing=not repeatable)
        body = self.http.parse_json(resp)
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            raise self._task_error(errors)
        return body

    def submit(self, inputs, state, mark_sending) -> str:
        task_uuid = state.setdefault("taskUUID", str(uuid.uuid4()))
        task = self.build_task(inputs, task_uuid)
        state["numberResults"] = task.get("numberResults", 1)
        mark_sending()              # journals the taskUUID before the first byte is sent
        body = self._post([task])
        for item in _items(body, task_uuid):
            if item.get("cost") is not None:
                state["cost"] = item["cost"]
        return task_uuid

    def poll(self, remote_id, state) -> PollStatus:
        body = self._post([{"taskType": "getResponse", "taskUUID": remote_id}])
        items = _items(body, remote_id)
        files, cost = [], None
        for item in items:
            if str(item.get("status", "")).lower() == "error":
                return PollStatus("failed", error=_reason(item))
            for entry in ((item.get("outputs") or {}).get("files") or []):
                if isinstance(entry, dict) and entry.get("url"):
                    files.append(entry["url"])
            if item.get("cost") is not None:
                cost = (cost or 0) + item["cost"]
        if cost is not None:
            state["cost"] = cost
        wanted = int(state.get("numberResults", 1))
        done = files and (len(files) >= wanted or
                          any(str(i.get("status", "")).lower() == "success" for i in items))
        if done:
            return PollStatus("done", progress=1.0, result={"urls": files})
        return PollStatus("running")

    def download(self, remote_id, status, state, job_dir) -> list[str]:
        return self.download_each(job_dir, status.result.get("urls") or [], lambda url: url)

    def _task_error(self, errors) -> Exception:
        first = errors[0] if isinstance(errors, list) and errors else {}
        code = str(first.get("code", "")).lower() if isinstance(first, dict) else ""
        message = _reason(first)
        if "auth" in code or "apikey" in code.replace("_", ""):
            return AuthError(f"Runware says the API key is invalid ({message}). "
                             f"{self.key_hint()}")
        if "balance" in code or "credit" in code:
            return ServiceError(f"Runware says your balance is too low ({message}). Top up at "
                                f"runware.ai, then try again.", code="credits")
        return ServiceError(f"Runware rejected the job: {message}", code="rejected")

    def describe_error(self, resp: requests.Response):
        body = json_body(resp)
        errors = body.get("errors") if isinstance(body, dict) else None
        message = None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = failure_reason(errors[0])
        return describe_status(self.service, resp.status_code, message,
                               key_hint=self.key_hint(), answers=ANSWERS)

def _items(body, task_uuid: str) -> list[dict]:
    data = body.get("data") if isinstance(body, dict) else None
    return [i for i in data or [] if isinstance(i, dict) and i.get("taskUUID") in (None, task_uuid)]


def _reason(item) -> str:
    return failure_reason(item) or "no reason given"
