# SPDX-License-Identifier: GPL-3.0-or-later
"""Segmind's SAM 3D Objects, async v2 protocol (see shared/PROVIDERS.md).

No cancel endpoint and no idempotency key: a submit that was accepted is never sent again.
As the official SDK (segmind 1.3) does: a body whose `status` is FAILED (or COMPLETED) is read
whatever the HTTP status it comes with (422 usually, 400 and 500 seen too), the `status_url` /
`response_url` the submit returned are followed (only on Segmind's own host; else the URLs are
built), and a string `output` holding JSON (a quoted URL, a list, an object) is decoded.
"""
from __future__ import annotations

import base64
import binascii
import json
import os

import requests

from ..errors import AuthError, JobFailed, ResultError, ServiceError
from .base import Capabilities, JobInputs, KeySpec, OptionSpec, PollStatus, Provider
from .files import (MAX_RESULT_BYTES, MODEL_KINDS, capped, check_model_bytes,
                    extract_glb_from_zip, read_base64, remove_quietly, sniff, sniff_file,
                    write_capped)
from .addresses import scheme_host_port
from .messages import describe_status, failure_reason, json_body, reason_from_response

MODEL_PATH = "/v2/sam-3d-objects"
#: what Segmind's statuses mean (messages.describe_status); 406 is also a wrong content type
ANSWERS = {401: ("auth", "the API key is invalid", "{key_hint}"),
           406: ("credits", "your account does not have enough credits",
                 "Top up at segmind.com, then try again.")}
#: the result answer read into memory when it is JSON (an inline base64 model at most)
MAX_BODY_BYTES = MAX_RESULT_BYTES // 2


class SegmindSam3D(Provider):
    id = "segmind_sam3d"
    service = "Segmind"
    label = "SAM 3D Objects (Segmind)"
    model = "sam-3d-objects"
    default_url = "https://api.segmind.com"
    url_env = "RECON3D_SEGMIND_URL"
    keys = (KeySpec("segmind_api_key", "SEGMIND_API_KEY", "Segmind API key",
                    "From segmind.com › API Keys"),)
    capabilities = Capabilities(prompt=True, mask=True, points=True, boxes=True, max_boxes=1,
                                seed=True, seed_range=(0, 1_000_000))
    options = (OptionSpec("include_artifacts", bool, False, label="Include Artifacts",
                          description="Ask Segmind for its debug ZIP; the model inside is used"),)

    def _auth(self) -> dict:
        return {"x-api-key": self.settings.credentials.get("segmind_api_key", "")}

    # -- submit ---------------------------------------------------------------------------------
    @classmethod
    def reserved_params(cls):
        return {"image": "Photo", "prompt": "Prompt", "mask": "Mask", "point_coords": "Points",
                "bounding_box": "Boxes", "seed": "Seed"}

    def build_payload(self, inputs: JobInputs) -> dict:
        payload: dict = {"image": read_base64(inputs.image_path)}
        if inputs.prompt:
            payload["prompt"] = inputs.prompt
        if inputs.mask_paths:
            payload["mask"] = read_base64(inputs.mask_paths[0])
        if inputs.points:
            payload["point_coords"] = json.dumps([[round(x), round(y)] for x, y in inputs.points],
                                                 separators=(",", ":"))
        if inputs.boxes:
            payload["bounding_box"] = json.dumps([int(round(v)) for v in inputs.boxes[0]],
                                                 separators=(",", ":"))
        if inputs.seed is not None:
            payload["seed"] = int(inputs.seed)
        payload["include_artifacts"] = bool(inputs.options.get("include_artifacts", False))
        payload.update(self.unchecked_options(inputs.options))     # extra parameters, as typed
        return payload

    def submit(self, inputs, state, mark_sending) -> str:
        payload = self.build_payload(inputs)
        mark_sending()
        resp = self.http.request("POST", MODEL_PATH, json_data=payload, billing=True)
        self._note_credits(resp, state)
        body = json_body(resp)
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not request_id:
            raise ServiceError("Segmind accepted the request but did not say which job it "
                               "started. Check your Segmind dashboard before trying again.",
                               code="ambiguous_submit")
        for key in ("status_url", "response_url"):
            if self._own_host(body.get(key)):
                state[key] = body[key]          # journaled with the job
        return str(request_id)

    def _own_host(self, url) -> bool:
        """A URL the service returned may be followed (with the key) only on its own host."""
        return isinstance(url, str) and url.startswith(("http://", "https://")) and \
            scheme_host_port(url) == scheme_host_port(self.settings.base_url)

    def _status_url(self, remote_id: str, state: dict) -> str:
        return state.get("status_url") if self._own_host(state.get("status_url")) else \
            f"/v2/requests/{remote_id}/status"

    def _response_url(self, remote_id: str, state: dict) -> str:
        return state.get("response_url") if self._own_host(state.get("response_url")) else \
            f"/v2/requests/{remote_id}"

    # -- poll -----------------------------------------------------------------------------------
    def poll(self, remote_id, state) -> PollStatus:
        resp = self.http.request("GET", self._status_url(remote_id, state), read_if=_terminal)
        self._note_credits(resp, state)
        body = self.http.parse_json(resp)
        status = str(body.get("status", "")).upper() if isinstance(body, dict) else ""
        if status == "FAILED" or resp.status_code == 422:
            return PollStatus("failed", error=_failure_reason(body))
        if status == "COMPLETED":
            return PollStatus("done", progress=1.0)
        if status in ("QUEUED", "PROCESSING", "IN_PROGRESS", "RUNNING", ""):
            return PollStatus("running")
        return PollStatus("running")

    # -- download -------------------------------------------------------------------------------
    def download(self, remote_id, status, state, job_dir) -> list[str]:
        dest = os.path.join(job_dir, "result-0.glb")
        raw = os.path.join(job_dir, "result-0.bin")      # GLB or ZIP, decided by content
        resp = self.http.request("GET", self._response_url(remote_id, state),
                                 read_if=_terminal, stream=True)
        try:
            self._note_credits(resp, state)
            chunks = resp.iter_content(1 << 20)
            first = next(chunks, b"")
            if sniff(first) in MODEL_KINDS:
                # The result endpoint answered with the model itself.
                write_capped(raw, _chained(first, chunks), service=self.service)
                return [self._finish_file(raw, dest)]
            body_text = b"".join(capped(_chained(first, chunks), MAX_BODY_BYTES, self.service))
        finally:
            resp.close()
        try:
            body = json.loads(body_text)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            raise ServiceError("Segmind answered the result request with something that is "
                               "not data. Try the import again later.",
                               code="bad_response") from None
        if resp.status_code == 422 or str(body.get("status", "")).upper() == "FAILED":
            raise JobFailed(f"Segmind could not make the model: {_failure_reason(body)}")
        ref = _find_output(body.get("output"))
        if ref is None:
            raise ResultError("Segmind finished the job but returned no model. Try generating "
                              "again.")
        if ref.startswith(("http://", "https://")):
            self.http.download(ref, raw, max_bytes=MAX_RESULT_BYTES,
                               check=lambda head: check_model_bytes(head, self.service),
                               on_expired=lambda: self._fresh_output_url(remote_id, state))
            return [self._finish_file(raw, dest)]
        write_capped(raw, [_decode_base64(ref)], service=self.service)
        return [self._finish_file(raw, dest)]

    def _fresh_output_url(self, remote_id: str, state: dict) -> str:
        """The result's URL asked for again (a signed link may have expired)."""
        body = self.http.get_json(self._response_url(remote_id, state), read_if=_terminal)
        ref = _find_output(body.get("output") if isinstance(body, dict) else None)
        if not ref or not ref.startswith(("http://", "https://")):
            raise ResultError("Segmind no longer offers the result for download. Generate "
                              "again.")
        return ref

    def _finish_file(self, raw: str, dest: str) -> str:
        """A downloaded result is a GLB (renamed into place) or a ZIP (the GLB inside taken)."""
        try:
            kind = sniff_file(raw)
            if kind == "glb":
                os.replace(raw, dest)
                return dest
            if kind == "zip":
                return extract_glb_from_zip(raw, dest)
            with open(raw, "rb") as fh:
                check_model_bytes(fh.read(16), self.service)   # raises, saying what it is
            return dest
        finally:
            remove_quietly(raw)

    # -- errors ---------------------------------------------------------------------------------
    def describe_error(self, resp: requests.Response):
        reason = reason_from_response(resp)
        status = resp.status_code
        if status in (401, 403) and resp.request is not None and \
                not resp.request.headers.get("x-api-key"):
            return AuthError(f"No Segmind API key is set. {self.key_hint()}")
        low = (reason or "").lower()
        if status == 406 and "content" in low and "type" in low:
            return ServiceError(f"Segmind refused the request format ({reason}). This is a "
                                f"Recon3D bug; please report it.", code="rejected")
        if status == 405:
            return ServiceError("Segmind does not accept this request (HTTP 405). The endpoint "
                                "may be wrong: check the Segmind URL in Preferences › Add-ons › "
                                "Recon3D.", code="rejected")
        if status == 404 and "/v2/requests/" in (resp.url or ""):
            return ServiceError("Segmind no longer knows this job: its results expire one hour "
                                "after submission. Generate again.", code="expired")
        return describe_status(self.service, status, reason, key_hint=self.key_hint(),
                               answers=ANSWERS)

    @staticmethod
    def _note_credits(resp, state) -> None:
        credits = resp.headers.get("x-remaining-credits")
        if credits:
            state["remaining_credits"] = credits


def _failure_reason(body) -> str:
    return failure_reason(body) or "no reason given"


def _terminal(resp: requests.Response) -> bool:
    """A FAILED or COMPLETED body is an answer whatever its HTTP status (the SDK's
    `_fetch_terminal_tolerant`): read, never retried."""
    if resp.status_code == 422:
        return True
    body = json_body(resp)
    return isinstance(body, dict) and str(body.get("status", "")).upper() in ("FAILED",
                                                                               "COMPLETED")


def _find_output(output, depth: int = 0) -> str | None:
    """The first usable reference in Segmind's loosely specified `output`: a URL, a data URI
    or raw base64, possibly inside a list or dict — or any of these stringified as JSON (v2
    double-encodes the model's output: `"\\"https://…\\""`, `"[…]"`, `"{…}"`)."""
    if depth > 8:
        return None
    if isinstance(output, str) and output.strip():
        text = output.strip()
        if text[0] in "\"[{":
            try:
                return _find_output(json.loads(text), depth + 1)
            except ValueError:
                pass
        return text
    if isinstance(output, list):
        for item in output:
            found = _find_output(item, depth + 1)
            if found:
                return found
    if isinstance(output, dict):
        for key in ("glb", "model", "url", "mesh", "output", "file"):
            found = _find_output(output.get(key), depth + 1)
            if found:
                return found
        for value in output.values():
            found = _find_output(value, depth + 1)
            if found:
                return found
    return None


def _decode_base64(text: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise ResultError("Segmind returned a result Recon3D cannot read (neither a link nor "
                          "base64). Try generating again.") from None


def _chained(first: bytes, rest):
    yield first
    yield from rest
