# SPDX-License-Identifier: GPL-3.0-or-later
"""Scenario: SAM 3D Objects and Pixal3D (shared/PROVIDERS.md).

Inputs are uploaded as assets first (their ids are journaled, so a resumed job never uploads
twice), then `POST /generate/custom/{model}` starts the paid job. Results are assets too:
their URLs are signed and short-lived, so each is asked for right before its download and
asked for again when the CDN says 403/404. Inputs are uploaded hidden (`hide: true`, as the
official SDK offers), so they stay out of the artist's gallery. A job's cost is its total (see
`total_cost`); `estimate` prices a job with Scenario's dry run before anything is started.
"""
from __future__ import annotations

import base64
import os

import requests

from ..errors import ServiceError
from .base import Capabilities, JobInputs, KeySpec, PollStatus, Provider
from .declaration import load_options
from .files import read_base64
from .messages import describe_status, json_body, reason_from_response

#: what Scenario's statuses mean (messages.describe_status)
ANSWERS = {401: ("auth", "the API key or secret is invalid", "{key_hint}"),
           402: ("credits", "your team has no credits left", "Top up at scenario.com.")}
RUNNING = {"pending", "queued", "warming-up", "in-progress", "finalizing", "processing"}


class ScenarioProvider(Provider):
    service = "Scenario"
    default_url = "https://api.cloud.scenario.com/v1"
    url_env = "RECON3D_SCENARIO_URL"
    keys = (KeySpec("scenario_api_key", "SCENARIO_SDK_API_KEY", "Scenario API key",
                    "From Scenario › Project Settings › API Keys"),
            KeySpec("scenario_api_secret", "SCENARIO_SDK_API_SECRET", "Scenario API secret",
                    "Goes with the Scenario key"))
    #: an asset upload must stay under 6 MB; base64 inflates by 4/3
    max_upload_bytes = 4_400_000

    def _auth(self) -> dict:
        creds = self.settings.credentials
        token = f"{creds.get('scenario_api_key', '')}:{creds.get('scenario_api_secret', '')}"
        return {"Authorization": "Basic " + base64.b64encode(token.encode()).decode("ascii")}

    # -- upload ---------------------------------------------------------------------------------
    def upload(self, path: str, name: str) -> str:
        resp = self.http.request("POST", "/assets",
                                 json_data={"image": read_base64(path), "name": name,
                                            "hide": True})
        body = self.http.parse_json(resp)
        asset = body.get("asset") if isinstance(body, dict) else None
        asset_id = (asset or {}).get("id") or (body.get("assetId") if isinstance(body, dict)
                                               else None)
        if not asset_id:
            raise ServiceError("Scenario accepted the upload but returned no asset id. Try "
                               "again later.", code="bad_response")
        return str(asset_id)

    def upload_inputs(self, inputs: JobInputs, state: dict) -> None:
        """Upload the image and masks once; the ids live in the journaled `state`."""
        if not state.get("image_asset"):
            ext = os.path.splitext(inputs.image_path)[1] or ".png"
            state["image_asset"] = self.upload(inputs.image_path, "input" + ext)
        masks = state.setdefault("mask_assets", [])
        for index, path in enumerate(inputs.mask_paths):
            if index >= len(masks):
                masks.append(self.upload(path, f"mask-{index}.png"))

    @classmethod
    def reserved_params(cls):
        return {"image": "Photo", "seed": "Seed"}

    def build_body(self, inputs: JobInputs, state: dict) -> dict:
        """The model's own fields (see `reserved_params`); `request_body` adds the rest."""
        raise NotImplementedError

    def request_body(self, inputs: JobInputs, state: dict) -> dict:
        """The generate body: the model's fields, then the extra parameters as typed."""
        return {**self.build_body(inputs, state), **self.unchecked_options(inputs.options)}

    # -- protocol -------------------------------------------------------------------------------
    def submit(self, inputs, state, mark_sending) -> str:
        self.upload_inputs(inputs, state)
        body = self.request_body(inputs, state)
        mark_sending()
        resp = self.http.request("POST", f"/generate/custom/{self.model}", json_data=body,
                                 billing=True)
        data = json_body(resp)
        job = data.get("job") if isinstance(data, dict) else None
        job_id = (job or {}).get("jobId") or (data.get("jobId") if isinstance(data, dict)
                                              else None)
        if not job_id:
            raise ServiceError("Scenario accepted the request but did not say which job it "
                               "started. Check your Scenario dashboard before trying again.",
                               code="ambiguous_submit")
        _note_cost(job, state)
        return str(job_id)

    def estimate(self, inputs: JobInputs) -> float | None:
        """The dry run (`?dryRun=true`): Scenario answers HTTP 269 with `creativeUnitsCost`
        and starts nothing. It names the inputs by asset id, so they are uploaded (hidden,
        not billed) first; the job that follows uploads its own."""
        state: dict = {}
        self.upload_inputs(inputs, state)
        # billing=True: should a service ever ignore dryRun, an unanswered send is not
        # repeated (each could start a paid job), and a job it did start is canceled below.
        resp = self.http.request("POST", f"/generate/custom/{self.model}?dryRun=true",
                                 json_data=self.request_body(inputs, state), billing=True)
        data = json_body(resp)
        job = data.get("job") if isinstance(data, dict) else None
        if resp.status_code != 269 and isinstance(job, dict) and job.get("jobId"):
            self.cancel(str(job["jobId"]), state)     # a service that ignored dryRun
        cost = data.get("creativeUnitsCost") if isinstance(data, dict) else None
        if isinstance(cost, bool) or not isinstance(cost, (int, float)):
            raise ServiceError("Scenario did not say what this job would cost. Try again "
                               "later.", code="bad_response")
        return float(cost)

    def poll(self, remote_id, state) -> PollStatus:
        body = self.http.get_json(f"/jobs/{remote_id}")
        job = body.get("job", body) if isinstance(body, dict) else {}
        status = str(job.get("status", "")).lower()
        progress = job.get("progress")
        progress = float(progress) if isinstance(progress, (int, float)) else None
        meta = job.get("metadata") or {}
        _note_cost(job, state)
        if status == "success":
            assets = [str(a) for a in meta.get("assetIds") or []]
            if not assets:
                return PollStatus("failed", error="the job finished without a model")
            return PollStatus("done", progress=1.0, result={"assetIds": assets})
        if status == "failure":
            reason = meta.get("error") or job.get("error") or "no reason given"
            hint = meta.get("hint")
            return PollStatus("failed", error=f"{reason}{' — ' + hint if hint else ''}")
        if status == "canceled":
            return PollStatus("canceled")
        return PollStatus("running", progress=progress)

    def asset_url(self, asset_id: str) -> str:
        body = self.http.get_json(f"/assets/{asset_id}")
        asset = body.get("asset", body) if isinstance(body, dict) else {}
        url = asset.get("url")
        if not url:
            raise ServiceError("Scenario did not give a download address for the result. "
                               "Try the import again later.", code="bad_response")
        return url

    def download(self, remote_id, status, state, job_dir) -> list[str]:
        # Signed URLs expire: ask right before each download, and again on 403/404.
        return self.download_each(job_dir, status.result.get("assetIds") or [],
                                  self.asset_url, refresh=True)

    def cancel(self, remote_id, state) -> None:
        try:
            self.http.request("POST", f"/jobs/{remote_id}/action",
                              json_data={"action": "cancel"})
        except Exception:
            pass            # many job types cannot be canceled: best effort only

    def describe_error(self, resp: requests.Response):
        reason = reason_from_response(resp)
        status = resp.status_code
        if status == 429:
            body = json_body(resp)
            details = body.get("details") if isinstance(body, dict) else None
            limit = details.get("actionLimit") if isinstance(details, dict) else None
            cap = f" (at most {limit} jobs at once)" if limit else ""
            return ServiceError(f"Scenario says your team is running too many jobs{cap}. "
                                f"Recon3D waits and tries again; lower 'Jobs at Once' in "
                                f"Preferences › Add-ons › Recon3D if this keeps happening.",
                                code="rate_limited")
        if status == 404 and "/jobs/" in (resp.url or ""):
            return ServiceError("Scenario no longer knows this job. Generate again.",
                                code="expired")
        answers = {403: ("forbidden", f"your plan does not allow {self.label}",
                         "Check your Scenario plan or pick another provider."), **ANSWERS}
        return describe_status(self.service, status, reason, key_hint=self.key_hint(),
                               answers=answers)


def total_cost(billing) -> float | None:
    """What a Scenario job costs: `cuCost` (the main action alone) plus every add-on in
    `cuCostDetails` (e.g. quality-gate, ip-detection; they read 0 after a refund), as the
    SDK's Job model says. `cuDiscount` is not subtracted: the SDK calls `cuCost` the units
    charged and gives the discount only for information (the dry run's `creativeUnitsCost`
    is likewise the cost billed, with `creativeUnitsDiscount` beside it)."""
    if not isinstance(billing, dict):
        return None
    main = billing.get("cuCost")
    if isinstance(main, bool) or not isinstance(main, (int, float)):
        return None
    extras = billing.get("cuCostDetails")
    extras = extras.values() if isinstance(extras, dict) else ()
    return main + sum(v for v in extras if isinstance(v, (int, float))
                      and not isinstance(v, bool))


def _note_cost(job, state: dict) -> None:
    cost = total_cost((job or {}).get("billing"))
    if cost is not None:
        state["cost"] = cost


class ScenarioSam3D(ScenarioProvider):
    id = "scenario_sam3d"
    label = "SAM 3D Objects (Scenario)"
    model = "model_meta-sam-3d-objects"
    capabilities = Capabilities(prompt=True, prompt_max_chars=120, mask=True, max_masks=16,
                                points=True, boxes=True, max_boxes=16, seed=True,
                                seed_range=(0, 2**31 - 1), multi_object=True)

    @classmethod
    def reserved_params(cls):
        return {**super().reserved_params(), "prompt": "Prompt", "mask": "Mask",
                "pointPrompts": "Points", "boxPrompts": "Boxes"}

    def build_body(self, inputs, state) -> dict:
        body: dict = {"image": state["image_asset"]}
        if inputs.prompt:
            body["prompt"] = inputs.prompt
        if state.get("mask_assets"):
            body["mask"] = list(state["mask_assets"])
        if inputs.points:
            body["pointPrompts"] = [{"x": int(round(x)), "y": int(round(y))}
                                    for x, y in inputs.points]
        if inputs.boxes:
            body["boxPrompts"] = [{"x1": int(round(a)), "y1": int(round(b)),
                                   "x2": int(round(c)), "y2": int(round(d))}
                                  for a, b, c, d in inputs.boxes]
        if inputs.seed is not None:
            body["seed"] = int(inputs.seed)
        return body


class ScenarioPixal3D(ScenarioProvider):
    id = "scenario_pixal3d"
    label = "Pixal3D (Scenario)"
    model = "model_pixal3d"
    capabilities = Capabilities(prompt=False, mask=False, max_masks=0, points=False,
                                boxes=False, seed=True, seed_range=(0, 2**31 - 1))
    options = load_options("pixal3d_options.json")

    def build_body(self, inputs, state) -> dict:
        body: dict = {"image": state["image_asset"]}
        extra = self.unchecked_options(inputs.options)      # added by request_body
        # only the declared options the artist set; Scenario applies defaults
        body.update({k: v for k, v in inputs.options.items() if k not in extra})
        if inputs.seed is not None:
            body["seed"] = int(inputs.seed)
        return body
