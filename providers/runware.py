# SPDX-License-Identifier: GPL-3.0-or-later
"""Runware: SAM 3D Objects through task arrays (shared/PROVIDERS.md, vendor OpenAPI schema).

The client chooses the taskUUID, so a submit may be sent again with the same UUID without
paying twice: the UUID is journaled before the first send and reused on every retry and on
resume. The mask is required: input preparation derives one when the artist gave none.
"""
from __future__ import annotations

import uuid

import requests

from ..errors import Recon3DError, ServiceError
from .billing import ambiguous_submit
from .base import Capabilities, JobInputs, KeySpec, OptionSpec, PollStatus, Provider
from .files import data_uri
from .messages import describe_status, failure_reason, json_body

MODEL = "meta:sam@3d"
#: what Runware's statuses mean (messages.describe_status)
ANSWERS = {402: ("credits", "your balance is too low", "Top up at runware.ai, then try again.")}
#: sent as positivePrompt when the artist gave none (the SDK's schema requires one)
NEUTRAL_PROMPT = "object"
#: codes saying the service has no task with this UUID
NOT_FOUND_CODES = frozenset({"tasknotfound", "taskfailedornotfound", "notfound"})
#: how often an ambiguous submit is sent again (same taskUUID, so never billed twice)
RESEND_ROUNDS = 3


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

    @classmethod
    def reserved_params(cls):
        """Every field `build_task` writes, and the webhook (results come back to Recon3D)."""
        return {"taskType": "", "taskUUID": "", "model": "Model", "positivePrompt": "Prompt",
                "inputs": "Photo and Mask", "outputFormat": "", "outputType": "",
                "deliveryMethod": "", "includeCost": "", "seed": "Seed", "webhookURL": ""}

    def build_task(self, inputs: JobInputs, task_uuid: str) -> dict:
        # positivePrompt is required by the SDK's schema for meta:sam@3d (runware-sdk 1.8):
        # the artist's prompt, else a neutral word.
        task = {"taskType": "3dInference", "taskUUID": task_uuid, "model": MODEL,
                "positivePrompt": inputs.prompt or NEUTRAL_PROMPT,
                "inputs": {"image": data_uri(inputs.image_path),
                           "mask": data_uri(inputs.mask_paths[0])},
                "outputFormat": "GLB", "outputType": "URL", "deliveryMethod": "async",
                "includeCost": True}
        if inputs.seed is not None:
            task["seed"] = int(inputs.seed)
        results = int(inputs.options.get("numberResults", 1))
        if results != 1:
            task["numberResults"] = results
        task.update(self.unchecked_options(inputs.options))     # extra parameters, as typed
        return task

    def _post(self, tasks: list, *, billing: bool = False) -> tuple[list[dict], list[dict]]:
        """One POST (every Runware request is one, even a poll): the answer's `data` items
        and its problems — the `errors` list, or a singular `error` object, which the SDK
        treats as an error even beside HTTP 200."""
        resp = self.http.request("POST", "", json_data=tasks, billing=billing,
                                 ok_statuses=(400, 409))
        body = json_body(resp)
        problems = _problems(body)
        if not resp.ok and not problems:
            raise self.describe_error(resp)
        if body is None:
            body = self.http.parse_json(resp)       # raises: not data
        data = body.get("data") if isinstance(body, dict) else None
        return [i for i in data or [] if isinstance(i, dict)], problems

    def submit(self, inputs, state, mark_sending) -> str:
        resend = "taskUUID" in state            # sent before (resumed after a crash, say)
        task_uuid = state.setdefault("taskUUID", str(uuid.uuid4()))
        task = self.build_task(inputs, task_uuid)
        state["numberResults"] = task.get("numberResults", 1)
        mark_sending()              # journals the taskUUID before the first byte is sent
        if resend and self._known(task_uuid):
            return task_uuid        # the first send was recorded: poll it, never send again
        known = None
        for _ in range(RESEND_ROUNDS):
            try:
                _, problems = self._post([task], billing=True)
            except Recon3DError as exc:
                # A timeout, reset or gateway error after sending proves nothing (billing.py
                # rule 2); the taskUUID makes the send idempotent (rule 3): ask the service,
                # and send the same task again unless it already has it.
                if exc.code != "ambiguous_submit":
                    raise
                known = self._known(task_uuid)
                if known:
                    return task_uuid
                continue
            if problems and not all(_code(p) == "conflicttaskuuid" for p in problems):
                raise self._problem_error(problems[0])
            # No problem, or conflictTaskUUID: the service already has this task (an earlier
            # send was recorded although its answer was lost) — that means accepted.
            return task_uuid
        if known is False:
            # "Not found" may only mean the first send is not recorded yet: never "not
            # billed" (billing.py rule 2).
            raise ambiguous_submit(self.service, f"Runware did not answer {RESEND_ROUNDS} "
                                                 f"sends of this job and has no record of it "
                                                 f"yet.")
        # No answer either way: polling finds out without sending again (a task the service
        # never recorded ends as "never accepted, so not billed").
        return task_uuid

    def _known(self, task_uuid: str) -> bool | None:
        """Does the service have this task? False on `taskNotFound`, None when it cannot
        say (no answer)."""
        try:
            _, problems = self._post([{"taskType": "getResponse", "taskUUID": task_uuid}])
        except Recon3DError as exc:
            if exc.transient:
                return None
            raise
        return not any(_code(p) in NOT_FOUND_CODES for p in problems)

    def poll(self, remote_id, state) -> PollStatus:
        items, problems = self._post([{"taskType": "getResponse", "taskUUID": remote_id}])
        if problems:
            return self._poll_problem(problems[0])
        wanted = int(state.get("numberResults", 1))
        # Answers are cumulative, one item per result, told apart by `resultIndex`; items of
        # earlier polls are kept in the journaled state, so a result is never lost or counted
        # twice, and the task is done only when every paid variation is in.
        done = state.setdefault("results", {})
        # A variation can fail on its own (the SDK reports it and keeps the others): the
        # made ones are paid for, so they are kept, and the job ends once every variation
        # has either arrived or failed.
        failed = state.setdefault("failed_results", {})
        progress = {}
        processing = False
        task_error = None        # an error item naming no result: the whole task failed
        for item in items:
            if item.get("taskUUID") not in (None, remote_id):
                continue
            if str(item.get("status", "")).lower() == "error" or \
                    isinstance(item.get("error"), dict):
                index = item.get("resultIndex")
                if isinstance(index, int) and not isinstance(index, bool):
                    failed.setdefault(str(index), _reason(item))
                else:
                    task_error = _reason(item)
                continue
            key = _result_key(item, len(done))
            urls = [f["url"] for f in ((item.get("outputs") or {}).get("files") or [])
                    if isinstance(f, dict) and f.get("url")]
            if urls:
                done[key] = {"urls": urls, "cost": item.get("cost")}
            else:
                processing = True
                if isinstance(item.get("progress"), (int, float)):
                    progress[key] = min(max(float(item["progress"]) / 100.0, 0.0), 1.0)
        costs = [r["cost"] for r in done.values() if isinstance(r.get("cost"), (int, float))]
        if costs:
            state["cost"] = sum(costs)
        lost = {k: v for k, v in failed.items() if k not in done}
        # A variation not listed yet may still come: after a failed one, the task is given
        # SETTLE_POLLS answers listing nothing in progress before the missing ones count as
        # lost (never forever: the made ones are paid and must not wait for the deadline).
        quiet = lost and not processing and len(done) + len(lost) < wanted
        state["quiet_polls"] = state.get("quiet_polls", 0) + 1 if quiet else 0
        if task_error or len(done) + len(lost) >= wanted or \
                state["quiet_polls"] >= SETTLE_POLLS:
            reason = task_error or next(iter(lost.values()), None)
            if not done:
                return PollStatus("failed", error=reason)
            if len(done) < wanted:
                state["notice"] = (f"{wanted - len(done)} of {wanted} variations could not "
                                   f"be made ({reason}); the {len(done)} made are kept.")
            urls = [u for key in sorted(done, key=_order) for u in done[key]["urls"]]
            return PollStatus("done", progress=1.0, result={"urls": urls})
        share = (len(done) + sum(v for k, v in progress.items() if k not in done)) / wanted
        return PollStatus("running", progress=min(share, 0.99) if share else None)

    def download(self, remote_id, status, state, job_dir) -> list[str]:
        return self.download_each(job_dir, status.result.get("urls") or [], lambda url: url)

    def _poll_problem(self, problem: dict) -> PollStatus:
        """A problem in a getResponse answer: the task's own failure, or one of the account's
        (raised: it is not the job's fault)."""
        code = _code(problem)
        if code in NOT_FOUND_CODES:
            raise ServiceError("Runware no longer knows this job: it was never accepted (so "
                               "not billed) or its result has expired. Generate again.",
                               code="expired")
        error = self._problem_error(problem)
        if error.code in ("auth", "credits", "rate_limited"):
            raise error
        return PollStatus("failed", error=_reason(problem))

    def _problem_error(self, problem, status: int | None = None) -> Recon3DError:
        """A problem Runware reported, as an artist's error: by the HTTP status when there
        is one, else by the category the SDK derives from the raw code."""
        code = _code(problem)
        message = _reason(problem, default="") or None
        if status is None:
            status = 401 if "apikey" in code or "auth" in code else \
                402 if any(w in code for w in ("balance", "credit", "quota", "payment")) else \
                429 if "ratelimit" in code else None
        if status is None:
            return ServiceError(f"Runware rejected the job: {message or 'no reason given'}",
                                code="rejected")
        return describe_status(self.service, status, message, key_hint=self.key_hint(),
                               answers=ANSWERS)

    def describe_error(self, resp: requests.Response):
        problems = _problems(json_body(resp))
        return self._problem_error(problems[0] if problems else {}, resp.status_code)


#: answers in a row with a failed variation and nothing in progress before the variations
#: still missing count as lost
SETTLE_POLLS = 3


def _problems(body) -> list[dict]:
    """`errors: [{code, message, …}]`, or a singular `error: {code, message}` (with the
    taskUUID beside it): both are errors, whatever the HTTP status (runware-sdk 1.8)."""
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        return [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
    error = body.get("error")
    if isinstance(error, dict):
        return [dict(error, taskUUID=body.get("taskUUID"))]
    if isinstance(error, str) and error.strip():
        return [{"message": error}]
    return []


def _code(problem) -> str:
    return str(problem.get("code", "")).lower() if isinstance(problem, dict) else ""


def _result_key(item: dict, seen: int) -> str:
    """Which result an item is: its `resultIndex` (the SDK's stable id), else its first file's
    uuid or url."""
    index = item.get("resultIndex")
    if isinstance(index, int) and not isinstance(index, bool):
        return str(index)
    files = (item.get("outputs") or {}).get("files") or []
    first = files[0] if files and isinstance(files[0], dict) else {}
    return str(first.get("uuid") or first.get("url") or f"item-{seen}")


def _order(key: str):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _reason(item, default: str = "no reason given") -> str:
    """A failed item's reason: the nested `error: {code, message}` the SDK reads, else
    whatever the item says."""
    nested = item.get("error") if isinstance(item, dict) else None
    return failure_reason(nested) or failure_reason(item) or default
