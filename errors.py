# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors Recon3D raises, and the one table of error codes. bpy-free: shared by providers/,
jobs/ and the Blender side.

Every message is written for an artist: what went wrong and what to do next. Keys never appear
in a message (the HTTP layer never formats request headers into text).

`CODES` is the only place that says what a code means for the machinery:
- `transient`: the same request may work if sent again soon; the HTTP layer retries it and the
  engine keeps polling through it;
- `refetch`: a job that failed with it still has a result at the service that can be fetched
  again without a new submit (so without paying again): "Retry Download" is offered;
- `billed`: the service may have accepted and billed the job although Recon3D has no answer.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    transient: bool = False
    refetch: bool = False
    billed: bool = False


CODES: dict[str, Code] = {
    # refused locally: nothing was sent
    "input": Code(),
    "offline": Code(refetch=True),            # turn online access on, then retry
    "auth": Code(),
    "not_ready": Code(),
    # the service said no
    "credits": Code(),
    "forbidden": Code(),
    "not_found": Code(),
    "expired": Code(),                        # the service no longer keeps the job's result
    "retired": Code(),
    "rejected": Code(),
    "failed": Code(),                         # the service ran the job and it failed
    "canceled": Code(),
    # not now: may work again later
    "rate_limited": Code(transient=True, refetch=True),
    "service_down": Code(transient=True, refetch=True),
    "unreachable": Code(transient=True, refetch=True),
    "timeout": Code(transient=True, refetch=True),
    "bad_response": Code(transient=True, refetch=True),
    "download": Code(transient=True, refetch=True),   # CDN fault while fetching a result
    # the result file itself
    "result": Code(refetch=True),
    "import": Code(),
    # a submit whose fate is unknown: never sent again
    "ambiguous_submit": Code(billed=True),
    "interrupted_submit": Code(billed=True),
    # a bug in Recon3D: the result may still be fetched
    "internal": Code(refetch=True),
    "error": Code(),
}


def code_info(code: str | None) -> Code:
    return CODES.get(code or "error", CODES["error"])


class Recon3DError(Exception):
    """Base class of every error the API raises; its message says what to do."""

    #: short machine-readable reason, a key of `CODES`, for the UI and tests
    code = "error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code        # a key of CODES (a test checks every code Recon3D uses)

    @property
    def transient(self) -> bool:
        return code_info(self.code).transient

    @property
    def message(self) -> str:
        return str(self)


def _kind(name: str, code: str, doc: str) -> type:
    return type(name, (Recon3DError,), {"code": code, "__doc__": doc, "__module__": __name__})


# The kinds of error, each with its default code (an instance may carry a more precise one).
InputError = _kind("InputError", "input",
                   "Input refused locally, before anything was uploaded or billed.")
NetworkBlocked = _kind("NetworkBlocked", "offline",
                       "Blender's online access is off and the endpoint is not on this machine.")
AuthError = _kind("AuthError", "auth", "A key is missing or the service refused it.")
ServiceError = _kind("ServiceError", "rejected",
                     "The service answered with an error (mapped to an artist-facing message).")
JobFailed = _kind("JobFailed", "failed",
                  "The service ran the job and it failed; the message carries its reason.")
Canceled = _kind("Canceled", "canceled", "The job was canceled.")
ResultError = _kind("ResultError", "result",
                    "The result file is missing, truncated or not a model Recon3D can import.")
