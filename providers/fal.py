# SPDX-License-Identifier: GPL-3.0-or-later
"""fal.ai: one queue client for every fal endpoint (shared/PROVIDERS.md, fal-findings note).

Adding another fal endpoint is one declaration: a `FalProvider` subclass with its id, endpoint,
image field, capabilities and options (`FalOption`: the service's parameter name, defaults,
ranges, and for enumerations the values fal accepts).

The protocol, as fal's official clients speak it:
- submit: `POST {queue}/{endpoint}` with `Authorization: Key …`; the answer's
  `status_url` / `response_url` / `cancel_url` drop the endpoint's sub-path and are used as
  returned — but only on fal's own host (the queue base's scheme, host and port). An URL
  elsewhere is never followed: the handle is rebuilt from the request id the way fal's SDK
  does (`{queue}/{owner}/{alias}/requests/{id}`), so a paid job is never lost either.
- images go as `data:` URIs up to `inline_max_bytes`, else through fal's storage upload
  (REST token, then the CDN upload) — the uploaded URLs are journaled, so a resumed submit
  never uploads twice;
- no idempotency key: a submit is sent again only when fal cannot have taken it
  (`not_accepted`: 429, or a gateway 502/503/504 without fal's `x-fal-request-id` header —
  the ingress answered, fal's queue never saw it); everything else after sending is
  "may have been accepted" (billing.py);
- a failed run also ends COMPLETED: its result GET answers with the model's own error (422
  `{"detail": [...]}` or `{"detail": "…"}`), which ends the job with that reason;
- results are kept only minutes: on COMPLETED the result JSON is fetched at once (in `poll`)
  and the engine downloads the files right after. A result that is gone (404/410 on the
  request, or on its files) fails the job with code "expired" — the run was paid, so Recon3D
  says so and never submits again by itself;
- cancel: `PUT` the cancel URL; OK / CANCELLATION_REQUESTED / ALREADY_COMPLETED / NOT_FOUND
  are all accepted, whatever the HTTP code.
"""
from __future__ import annotations

import json
import os
from urllib.parse import quote

import requests

from ..errors import AuthError, InputError, ServiceError
from .base import JobInputs, KeySpec, PollStatus, Provider
from .files import MAX_RESULT_BYTES, check_model_bytes, data_uri, sniff_file
from .addresses import scheme_host_port
from .messages import describe_status, failure_reason, json_body

#: fal keeps results of 10 KB or more for about this long (1 hour for smaller ones)
RESULT_KEPT_MINUTES = 6
#: answers to a billing request that prove fal's queue never saw it
GATEWAY_STATUSES = frozenset({502, 503})     # a 504 may come after a proxy forwarded it


class FalProvider(Provider):
    """The queue client; subclasses only declare."""
    service = "fal.ai"
    default_url = "https://queue.fal.run"
    url_env = "RECON3D_FAL_URL"
    #: fal's storage/REST base (uploads): the vendor default and its override
    rest_url = ("https://rest.fal.ai", "RECON3D_FAL_REST_URL")
    keys = (KeySpec("fal_api_key", "FAL_KEY", "fal.ai API key",
                    "From fal.ai › Dashboard › Keys"),)
    endpoint = ""                  # "fal-ai/trellis-2": the endpoint id
    image_field = "image_url"
    #: photos and masks up to this size go inline as data: URIs; larger ones are uploaded
    inline_max_bytes = 3_000_000

    def _auth(self) -> dict:
        return {"Authorization": f"Key {self.settings.credentials.get('fal_api_key', '')}"}

    # -- declaration ----------------------------------------------------------------------------
    @classmethod
    def validate_options(cls, options) -> None:
        super().validate_options(options)
        for spec in cls.options:
            value = options.get(spec.name)
            if value is not None and getattr(spec, "choices", ()) and value not in spec.choices:
                allowed = ", ".join(str(c) for c in spec.choices)
                raise InputError(f"{cls.label} option '{spec.name}' must be one of {allowed}; "
                                 f"{value!r} is not.")

    @classmethod
    def reserved_params(cls):
        return {cls.image_field: "Photo", "seed": "Seed"}

    def sent_options(self, inputs: JobInputs) -> dict:
        """The options the artist set that are fal parameters, as fal wants them; extra
        parameters (not declared) as typed."""
        specs = {o.name: o for o in self.options}
        out = {}
        for name, value in inputs.options.items():
            spec = specs.get(name)
            if spec is None:
                out[name] = value
                continue
            if not getattr(spec, "sent", True):
                continue
            if spec.kind is int:
                value = int(value)
            out[name] = str(value) if getattr(spec, "as_text", False) else value
        return out

    def build_payload(self, inputs: JobInputs, image_url: str, mask_urls: list[str]) -> dict:
        payload = {self.image_field: image_url, **self.sent_options(inputs)}
        if inputs.seed is not None:
            payload["seed"] = int(inputs.seed)
        return payload

    # -- inputs ---------------------------------------------------------------------------------
    def file_url(self, path: str, state: dict) -> str:
        """A data: URI for a small file, else fal storage (uploaded once per job)."""
        if os.path.getsize(path) <= self.inline_max_bytes:
            return data_uri(path)
        uploads = state.setdefault("uploads", {})
        name = os.path.basename(path)
        if name not in uploads:
            uploads[name] = self.upload(path)
        return uploads[name]

    def upload(self, path: str) -> str:
        """fal's storage: a CDN token from the REST API, then the bytes to the CDN."""
        default, env = self.rest_url
        rest = (os.environ.get(env) or default).rstrip("/")
        # The REST host is fal's too, but not the queue's: the key is given explicitly.
        token = self.http.parse_json(self.http.request(
            "POST", f"{rest}/storage/auth/token?storage_type=fal-cdn-v3", json_data={},
            headers={**self._auth(), "Accept": "application/json"}))
        if not isinstance(token, dict) or not token.get("token") or not token.get("base_url"):
            raise ServiceError("fal.ai did not hand out an upload token. Try again later.",
                               code="bad_response")
        kind = sniff_file(path) or "png"
        with open(path, "rb") as fh:
            data = fh.read()
        resp = self.http.request(
            "POST", str(token["base_url"]).rstrip("/") + "/files/upload", data=data,
            headers={"Authorization": f"{token.get('token_type') or 'Bearer'} {token['token']}",
                     "Content-Type": "image/jpeg" if kind == "jpeg" else "image/png",
                     "X-Fal-File-Name": quote(os.path.basename(path))})
        body = self.http.parse_json(resp)
        url = body.get("access_url") if isinstance(body, dict) else None
        if not url:
            raise ServiceError("fal.ai accepted the upload but gave no address for it. Try "
                               "again later.", code="bad_response")
        return str(url)

    # -- protocol -------------------------------------------------------------------------------
    def submit(self, inputs, state, mark_sending) -> str:
        image_url = self.file_url(inputs.image_path, state)
        mask_urls = [self.file_url(p, state) for p in inputs.mask_paths]
        payload = self.build_payload(inputs, image_url, mask_urls)
        mark_sending()
        resp = self.http.request("POST", self.endpoint, json_data=payload, billing=True)
        body = json_body(resp)
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not request_id:
            raise ServiceError("fal.ai accepted the request but did not say which job it "
                               "started. Check your fal.ai dashboard (Requests) before trying "
                               "again.", code="ambiguous_submit")
        state["urls"] = self._handle(str(request_id), body)
        return str(request_id)

    def _handle(self, request_id: str, body: dict) -> dict:
        """status/response/cancel URLs as the submit returned them, when they are on fal's
        own host; else the SDK's rule `{queue}/{owner}/{alias}/requests/{id}`."""
        app = "/".join(self.endpoint.split("/")[:2])
        base = f"{self.settings.base_url.rstrip('/')}/{app}/requests/{request_id}"
        built = {"status_url": f"{base}/status", "response_url": base,
                 "cancel_url": f"{base}/cancel"}
        home = scheme_host_port(self.settings.base_url)
        urls = {}
        for key, fallback in built.items():
            url = body.get(key)
            ok = isinstance(url, str) and url.startswith(("http://", "https://")) and \
                scheme_host_port(url) == home
            urls[key] = url if ok else fallback
        return urls

    def _urls(self, remote_id: str, state: dict) -> dict:
        return state.get("urls") or self._handle(remote_id, {})

    def poll(self, remote_id, state) -> PollStatus:
        urls = self._urls(remote_id, state)
        body = self.http.get_json(urls["status_url"])
        status = str(body.get("status", "")).upper() if isinstance(body, dict) else ""
        if status == "IN_QUEUE":
            state["queue_position"] = body.get("queue_position")
            return PollStatus("running")
        if status != "COMPLETED":
            state.pop("queue_position", None)
            return PollStatus("running")
        if str(body.get("error_type") or "") == "request_cancelled":
            return PollStatus("canceled")
        # Results are kept only minutes: fetch the result now, even for a failed run.
        return self._fetch_result(remote_id, urls["response_url"])

    def _fetch_result(self, remote_id: str, url: str) -> PollStatus:
        resp = self.http.request("GET", url, ok_statuses=(400, 404, 410, 422))
        try:
            if resp.status_code in (404, 410):
                raise self.expired(remote_id)
            body = json_body(resp)
            if not resp.ok:
                return PollStatus("failed", error=failure_reason(body) or
                                  f"fal.ai answered HTTP {resp.status_code}")
        finally:
            resp.close()
        if not isinstance(body, dict):
            raise ServiceError("fal.ai answered the result request with something that is "
                               "not data. Try again later.", code="bad_response")
        refs = self.result_refs(body)
        if not refs.get("model"):
            return PollStatus("failed", error="the job finished without a 3D model")
        return PollStatus("done", progress=1.0, result=refs)

    def result_refs(self, output: dict) -> dict:
        """What to download from the model's output: {"model": url, "extras": {...}}."""
        return {"model": result_url(output.get("model_glb")) or
                result_url((output.get("model_urls") or {}).get("glb"))}

    def download(self, remote_id, status, state, job_dir) -> list[str]:
        """The model, then the extras (splats, per-object GLBs, metadata) beside it; a file
        already on disk is never fetched again. A CDN file that is gone (403/404/410) went
        with its request: no fresh URL exists, so the job ends with the expiry message."""
        refs = status.result
        model = os.path.join(job_dir, "result-0.glb")
        self._fetch(refs["model"], model, remote_id,
                    check=lambda head: check_model_bytes(head, self.service))
        extras: dict = {}
        for key, value in (refs.get("extras") or {}).items():
            urls = value if isinstance(value, list) else [value]
            paths = [self._fetch(url, os.path.join(job_dir, f"{key}-{i}{_ext(url)}"),
                                 remote_id) for i, url in enumerate(urls)]
            extras[key] = paths if isinstance(value, list) else paths[0]
        if refs.get("metadata") is not None:
            path = os.path.join(job_dir, "metadata.json")
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(refs["metadata"], fh, indent=1)
            extras["metadata"] = path
        if extras:
            state["extra_files"] = extras
        return [model]

    def _fetch(self, url: str, dest: str, remote_id: str, check=None) -> str:
        if not os.path.isfile(dest):
            self.http.download(url, dest, max_bytes=MAX_RESULT_BYTES, check=check,
                               on_expired=lambda: self._gone(remote_id))
        return dest

    def _gone(self, remote_id: str) -> str:
        raise self.expired(remote_id)

    def cancel(self, remote_id, state) -> None:
        """PUT the cancel URL; every answer fal documents is fine (local polling has stopped
        regardless)."""
        url = self._urls(remote_id, state)["cancel_url"]
        resp = self.http.request("PUT", url, ok_statuses=(400, 404, 409))
        resp.close()

    # -- errors ---------------------------------------------------------------------------------
    def expired(self, remote_id: str) -> ServiceError:
        return ServiceError(
            f"fal.ai kept the result of this job only for about {RESULT_KEPT_MINUTES} "
            f"minutes and it is gone now. The job was paid — generate again, or contact fal "
            f"support with request id {remote_id}. Recon3D did not send it again.",
            code="expired")

    def not_accepted(self, resp: requests.Response) -> bool:
        """429, or a gateway error that did not come from fal's own servers (they mark every
        answer with `x-fal-request-id`; fal's SDK retries exactly these): fal's queue never
        saw the submit, so sending it again cannot bill twice."""
        if resp.status_code == 429:
            return True
        return resp.status_code in GATEWAY_STATUSES and "x-fal-request-id" not in resp.headers

    def describe_error(self, resp: requests.Response):
        body = json_body(resp)
        reason = failure_reason(body)
        status = resp.status_code
        if status in (401, 403) and resp.request is not None and \
                resp.request.headers.get("Authorization", "") in ("", "Key "):
            return AuthError(f"No fal.ai API key is set. {self.key_hint()}")
        if status == 401 or (status == 403 and "key" in (reason or "").lower()):
            return AuthError(f"fal.ai says the API key is invalid"
                             f"{': ' + reason if reason else ''}. {self.key_hint()}")
        if status == 403 and "balance" in (reason or "").lower() or status == 402:
            return ServiceError(f"fal.ai says your account has no balance left"
                                f"{': ' + reason if reason else ''}. Top up at fal.ai › "
                                f"Billing, then try again.", code="credits")
        if status in (404, 410) and "/requests/" in (resp.url or ""):
            return self.expired(resp.url.split("/requests/", 1)[1].split("/", 1)[0])
        if status == 413:
            return ServiceError(f"fal.ai refused the request as too large"
                                f"{': ' + reason if reason else ''}. Use a smaller photo.",
                                code="rejected")
        return describe_status(self.service, status, reason, key_hint=self.key_hint())


def _ext(url: str) -> str:
    ext = os.path.splitext(url.split("?", 1)[0])[1].lower()
    return ext if ext in (".ply", ".glb") else ".bin"


def result_url(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) and value else None
