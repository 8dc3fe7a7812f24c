# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors Recon3D raises. bpy-free: shared by providers/, jobs/ and the Blender side.

Every message is written for an artist: what went wrong and what to do next. Keys never appear
in a message (the HTTP layer never formats request headers into text).
"""
from __future__ import annotations


class Recon3DError(Exception):
    """Base class of every error the API raises; its message says what to do."""

    #: short machine-readable reason ("auth", "credits", "failed", ...), for the UI and tests
    code = "error"
    #: whether trying the same thing again later may succeed
    transient = False

    def __init__(self, message: str, *, code: str | None = None, transient: bool | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if transient is not None:
            self.transient = transient

    @property
    def message(self) -> str:
        return str(self)


class InputError(Recon3DError):
    """Input refused locally, before anything was uploaded or billed."""
    code = "input"


class NetworkBlocked(Recon3DError):
    """Blender's online access is off and the endpoint is not on this machine."""
    code = "offline"


class AuthError(Recon3DError):
    code = "auth"


class ServiceError(Recon3DError):
    """The service answered with an error (mapped to an artist-facing message)."""
    code = "service"


class JobFailed(Recon3DError):
    """The service ran the job and it failed; the message carries the service's reason."""
    code = "failed"


class Canceled(Recon3DError):
    code = "canceled"


class ResultError(Recon3DError):
    """The result file is missing, truncated or not a model Recon3D can import."""
    code = "result"
