# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors Recon3D raises, and the one table of error codes. bpy-free: shared by providers/,
jobs/ and the Blender side.

Every message is written for an artist: what went wrong and what to do next. Keys never appear
in a message: every Recon3DError's text, every `Job.error` and every record of Recon3D's
loggers passes through `scrub`, which masks the configured keys (`remember_secrets`).

`CODES` is the only place that says what a code means for the machinery:
- `transient`: the same request may work if sent again soon; the HTTP layer retries it and the
  engine keeps polling through it;
- `refetch`: a job that failed with it still has a result at the service that can be fetched
  again without a new submit (so without paying again): "Retry Download" is offered;
- `billed`: the service may have accepted and billed the job although Recon3D has no answer.
"""
from __future__ import annotations

import base64
import itertools
import logging
import threading
import traceback
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
    "auth": Code(refetch=True),               # a job already at the service: fix the key, retry
    "not_ready": Code(),
    "network_settings": Code(refetch=True),   # proxy / CA bundle in the preferences: fix, retry
    "elsewhere": Code(),                      # another Blender runs this job
    "busy": Code(),                           # the job is still working: cancel it first
    # the service said no
    "credits": Code(refetch=True),
    "forbidden": Code(refetch=True),
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
    "removal": Code(),                        # a job's files could not be deleted
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
        super().__init__(scrub(message))
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


# -- keys never reach a message, the journal or a log ----------------------------------------------
#: what replaces a key or secret wherever text is scrubbed
MASK = "[key hidden]"
_SECRETS: set[str] = set()
_secrets_lock = threading.Lock()
#: shorter values are not masked (they would blank out ordinary words)
MIN_SECRET_CHARS = 6


def remember_secrets(values) -> None:
    """Record configured keys/secrets so `scrub` masks them: each value, its escaped form (as
    an exception's repr quotes it), its parts around inner whitespace, and the Basic token
    (base64 of `a:b`) of every pair, as Scenario sends it."""
    values = [v for v in values if isinstance(v, str) and v]
    forms = set(values)
    for value in values:
        forms.add(repr(value)[1:-1])
        forms.update(value.split())
    for first, second in itertools.permutations(values, 2):
        forms.add(base64.b64encode(f"{first}:{second}".encode()).decode("ascii"))
    with _secrets_lock:
        _SECRETS.update(f for f in forms if len(f) >= MIN_SECRET_CHARS)


def scrub(text) -> str:
    """`text` with every remembered key or secret replaced by MASK."""
    text = str(text)
    with _secrets_lock:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class ScrubFilter(logging.Filter):
    """Installed on Recon3D's loggers: a record's message and traceback are scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info))
                                    .rstrip("\n"))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


_FILTER = ScrubFilter()


def install_log_filter(package: str) -> None:
    """Put the scrubber on every logger of `package` (a filter on a logger does not cover
    its children, so each one gets it)."""
    names = [name for name in list(logging.Logger.manager.loggerDict)
             if name == package or name.startswith(package + ".")]
    for name in [package, *names]:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
