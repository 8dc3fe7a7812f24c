# SPDX-License-Identifier: GPL-3.0-or-later
"""What a service's answer means, in an artist's words. bpy-free.

One reason extractor (`failure_reason`) reads every service's error shapes — flat
`{"error": "…"}`, `{"message": …}`, FastAPI's `{"detail": [{"msg": …}]}`, Runware's nested
`{"error": {"code", "message"}}` and `{"errors": [...]}` — and one mapping turns an HTTP
status into a message (`describe_status`); providers refine only what their service says
differently.
"""
from __future__ import annotations

import requests

from ..errors import AuthError, Recon3DError, ServiceError
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
    return " ".join(str(found).split())[:MAX_REASON_CHARS]


def _find_reason(body, keys, depth):
    if depth > 6:
        return None
    if isinstance(body, str):
        return body if body.strip() else None
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


def describe_status(service: str, status: int, reason: str | None, *,
                    key_hint: str) -> Recon3DError:
    """Generic status → artist message; providers refine what their service says."""
    why = f": {reason}" if reason else ""
    if status == 401:
        return AuthError(f"{service} says the API key is invalid or missing{why}. {key_hint}")
    if status == 402:
        return ServiceError(f"{service} says your account has no credits or balance left{why}. "
                            f"Top up your {service} account, then try again.", code="credits")
    if status == 403:
        return ServiceError(f"{service} refused the request{why}. Your plan or key may not "
                            f"allow this model; check your {service} account.", code="forbidden")
    if status == 404:
        return ServiceError(f"{service} does not know this job or model any more{why}. "
                            f"Results expire after a while: generate again.", code="not_found")
    if status == 410:
        return ServiceError(f"{service} has retired this model{why}. Pick another provider "
                            f"in the Recon3D panel.", code="retired")
    if status == 429:
        return ServiceError(f"{service} is rate-limiting this account{why}. Wait a minute "
                            f"and try again, or run fewer jobs at once.", code="rate_limited")
    if status >= 500:
        return ServiceError(f"{service} is having trouble (HTTP {status}){why}. Try again "
                            f"in a few minutes.", code="service_down")
    return ServiceError(f"{service} rejected the request (HTTP {status}){why}.", code="rejected")


def describe_download_error(service: str, status: int) -> Recon3DError:
    """A CDN that will not hand out a paid result: the result is safe at the service."""
    if status in TRANSIENT_STATUSES:
        return ServiceError(
            f"Downloading the result from {service} failed (HTTP {status}): its download "
            f"server is having trouble. The result is safe — nothing was lost or billed "
            f"again; use Retry Download later.", code="download")
    return ServiceError(f"Downloading the result from {service} failed (HTTP {status}). "
                        f"Try the import again later.", code="download")
