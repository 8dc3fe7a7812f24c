# SPDX-License-Identifier: GPL-3.0-or-later
"""What a service's answer means, in an artist's words. bpy-free.

One reason extractor (`failure_reason`) reads every service's error shapes — flat
`{"error": "…"}`, `{"message": …}`, FastAPI's `{"detail": [{"msg": …}]}`, Runware's nested
`{"error": {"code", "message"}}` and `{"errors": [...]}` — and one mapping turns an HTTP
status into a message (`describe_status`); providers refine only what their service says
differently.
"""
from __future__ import annotations

from typing import Mapping

import requests

from ..errors import AuthError, Recon3DError, ServiceError, scrub
from .retry import TRANSIENT_STATUSES

REASON_KEYS = ("message", "error", "detail", "msg", "reason", "errors", "responseContent")
MAX_REASON_CHARS = 300


def json_body(resp: requests.Response):
    """The response's JSON, or None when the body is not JSON (an HTML error page, say)."""
    try:
        return resp.json()
    except ValueError:
        return None


def failure_reason(body, keys: tuple[str, ...] = REASON_KEYS) -> str | None:
    """A short, single-line reason from a service's error body, or None."""
    found = _find_reason(body, keys, depth=0)
    if not found:
        return None
    # Scrubbed before it is shortened: a key cut in half would no longer be recognised.
    return " ".join(scrub(found).split())[:MAX_REASON_CHARS]


def _find_reason(body, keys, depth):
    if depth > 6:
        return None
    if isinstance(body, str):
        return body if body.strip() else None
    if isinstance(body, dict) and body.get("msg") and isinstance(body.get("loc"), list):
        # FastAPI's validation item (fal): keep the field it is about, "prompt: required"
        where = ".".join(str(p) for p in body["loc"] if p != "body")
        return f"{where}: {body['msg']}" if where else str(body["msg"])
    if isinstance(body, list) and body and all(
            isinstance(i, dict) and i.get("msg") for i in body):
        return "; ".join(_find_reason(i, keys, depth + 1) or "" for i in body)
    if isinstance(body, dict):
        for key in keys:
            inner = _find_reason(body.get(key), keys, depth + 1)
            if inner:
                return inner
    if isinstance(body, list):
        for item in body:
            inner = _find_reason(item, keys, depth + 1)
            if inner:
                return inner
    return None


def reason_from_response(resp: requests.Response) -> str | None:
    return failure_reason(json_body(resp))


#: status → (error code, what the service says, what to do); "{service}" and "{key_hint}" are
#: filled in. Providers pass their own lines for what their service says differently.
GENERAL_ANSWERS: dict[int, tuple[str, str, str]] = {
    408: ("timeout", "it gave up waiting for the request", "Try again in a few minutes."),
    401: ("auth", "the API key is invalid or missing", "{key_hint}"),
    402: ("credits", "your account has no credits or balance left",
          "Top up your {service} account, then try again."),
    403: ("forbidden", "it refuses the request",
          "Your plan or key may not allow this model; check your {service} account."),
    404: ("not_found", "it does not know this job or model any more",
          "Results expire after a while: generate again."),
    410: ("retired", "it has retired this model", "Pick another provider in the Recon3D panel."),
    429: ("rate_limited", "it is rate-limiting this account",
          "Wait a minute and try again, or run fewer jobs at once."),
}


def describe_status(service: str, status: int, reason: str | None, *, key_hint: str,
                    answers: Mapping[int, tuple[str, str, str]] | None = None) -> Recon3DError:
    """An HTTP error status as an artist-facing error: "<service> says <what>: <reason>.
    <what to do>", from the provider's `answers`, else the general ones."""
    why = f": {reason}" if reason else ""
    line = (answers or {}).get(status) or GENERAL_ANSWERS.get(status)
    if line is None:
        if status >= 500:
            return ServiceError(f"{service} is having trouble (HTTP {status}){why}. Try again "
                                f"in a few minutes.", code="service_down")
        return ServiceError(f"{service} rejected the request (HTTP {status}){why}.",
                            code="rejected")
    code, what, todo = line
    todo = todo.format(service=service, key_hint=key_hint)
    cls = AuthError if code == "auth" else ServiceError
    return cls(f"{service} says {what}{why}. {todo}".strip(), code=code)


def describe_download_error(service: str, status: int) -> Recon3DError:
    """A CDN that will not hand out a paid result: the result is safe at the service."""
    trouble = ": its download server is having trouble" if status in TRANSIENT_STATUSES else ""
    # A transient fault ("download") is tried again by itself for a while; any other is not,
    # but the result is still there for Retry Download ("result").
    return ServiceError(
        f"Downloading the result from {service} failed (HTTP {status}){trouble}. The result is "
        f"safe — nothing was lost or billed again; use Retry Download later.",
        code="download" if status in TRANSIENT_STATUSES else "result")
