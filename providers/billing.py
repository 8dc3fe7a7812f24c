# SPDX-License-Identifier: GPL-3.0-or-later
"""The never-pay-twice rules, in one place. bpy-free.

A paid generation is never lost and never paid twice:
1. Before the request that starts paid work, the job is journaled as `submit_sent`
   (`Provider.submit` calls `mark_sending()` right before it).
2. That request is sent again only when the service provably did not take it: the connection
   was never made (refused, unresolvable, connect timeout, an untrusted certificate, a proxy
   that refused to open the tunnel to the service) or the service said "not now"
   (`NOT_ACCEPTED_STATUSES`, or what a provider's `not_accepted()` recognises). Anything
   else after sending — a reset, a read timeout, a gateway error — is ambiguous: the job
   fails with code "ambiguous_submit", asking the artist to check the service's dashboard,
   and is never sent again by Recon3D.
3. The exception is a provider whose submit carries an idempotency token chosen by us
   (`Provider.idempotent_submit`, Runware's taskUUID): sending the same token again is safe,
   and the service's "already have it" answer means accepted.
4. The service's job id is journaled before the worker does anything else with it.
5. After a restart, a job journaled as sent but without a service job id is not sent again
   (rule 2) unless rule 3 applies (`resume_step`).
6. "Retry" only fetches a result again (poll/download); it never re-submits, and it is offered
   only for a job with a service job id whose failure code allows a refetch (`can_refetch`).
"""
from __future__ import annotations

import requests

from ..errors import ServiceError, code_info
from .network import tunnel_refused, untrusted

#: answers that prove a billing request was not accepted, so sending it again is safe
NOT_ACCEPTED_STATUSES = frozenset({429, 503})

_NEVER_SENT_MARKERS = ("NewConnectionError", "Connection refused", "Name or service not known",
                       "nodename nor servname", "Failed to resolve", "getaddrinfo failed",
                       "ConnectTimeout")


def never_sent(exc: BaseException) -> bool:
    """True when a transport error happened before the request could reach the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout) or untrusted(exc):
        return True           # a certificate refused during the handshake: nothing was sent
    if tunnel_refused(exc) is not None:
        return True           # the proxy never opened the tunnel the request would go through
    text = repr(exc)
    return any(marker in text for marker in _NEVER_SENT_MARKERS)


def ambiguous_submit(service: str, what_happened: str) -> ServiceError:
    return ServiceError(
        f"{what_happened} The job may still have been accepted and billed: check your "
        f"{service} dashboard before trying again (Recon3D did not send it again, so you are "
        f"not charged twice).", code="ambiguous_submit")


def interrupted_submit(service: str) -> ServiceError:
    return ServiceError(
        f"Blender stopped while this job was being sent to {service}, before {service} "
        f"confirmed it. It may have been accepted and billed: check your {service} dashboard. "
        f"Recon3D did not send it again, so you are not charged twice.",
        code="interrupted_submit")


def resume_step(state: str, submit_sent: bool, remote_id: str | None,
                idempotent: bool) -> str | None:
    """What a job found in the journal at start-up may do next: "submit", "poll",
    "interrupted" (rule 5: fail it with `interrupted_submit`) or None (nothing)."""
    if state == "queued" or (state == "submitting" and not submit_sent):
        return "submit"
    if state == "submitting" and not remote_id:
        return "submit" if idempotent else "interrupted"
    if state in ("submitting", "running", "downloading", "ready"):
        return "poll" if remote_id else None
    return None


def can_refetch(state: str, remote_id: str | None, error_code: str | None) -> bool:
    """Rule 6: a failed job whose result may still be fetched without a new submit."""
    return state == "failed" and bool(remote_id) and code_info(error_code).refetch


def paid_not_imported(state: str, remote_id: str | None, error_code: str | None) -> bool:
    """A job that was (or may have been) paid for and whose result was never imported: a
    "ready" result, a failed job whose result can still be fetched (`can_refetch`), or a
    submit that may have been accepted and billed (`ambiguous_submit`, `interrupted_submit`).
    Removing it gives that result up for good, so it is removed only when the artist says so."""
    return state == "ready" or can_refetch(state, remote_id, error_code) or \
        (state == "failed" and code_info(error_code).billed)
