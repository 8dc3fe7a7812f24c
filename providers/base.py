# SPDX-License-Identifier: GPL-3.0-or-later
"""What every provider is: its declaration (capabilities, options, keys) and its protocol.

bpy-free. A provider module subclasses `Provider`, fills in the class attributes once, and
implements submit/poll/download/cancel on the shared `HttpClient`. The UI, the API's input
checks and the engine read the declaration; none of them special-case a provider by name.
"""
from __future__ import annotations

import json
import math
import os
import unicodedata
from typing import Any, Callable, Mapping

import requests

from ..errors import InputError, Recon3DError
from .billing import NOT_ACCEPTED_STATUSES
from .declaration import (Capabilities, JobInputs, KeySpec, OptionSpec, PollStatus,
                          ProviderSettings, check_prompts_inside)
from .files import MAX_RESULT_BYTES, check_model_bytes
from .http import HttpClient
from .messages import describe_status, reason_from_response


class Provider:
    id: str = ""
    service: str = ""              # "Segmind": in every message
    label: str = ""                # shown in the UI
    model: str = ""
    default_url: str = ""
    url_env: str = ""
    keys: tuple[KeySpec, ...] = ()
    capabilities: Capabilities = Capabilities()
    options: tuple[OptionSpec, ...] = ()
    #: a submit with the same idempotency token is safe to send again (Runware's taskUUID)
    idempotent_submit: bool = False
    #: several result files are variations of one object (laid side by side), not several
    #: objects of one scene (kept in their layout)
    results_are_variations: bool = False
    #: uploads are downscaled/re-encoded to fit these (points, boxes, masks follow)
    max_upload_side: int = 4096
    max_upload_bytes: int = 15_000_000

    def __init__(self, settings: ProviderSettings, http: HttpClient):
        self.settings = settings
        self.http = http

    # -- declaration helpers ----------------------------------------------------------------
    @classmethod
    def key_hint(cls) -> str:
        names = " and ".join(k.label for k in cls.keys)
        envs = " / ".join(k.env for k in cls.keys)
        return (f"Set the {names} in Preferences › Add-ons › Recon3D "
                f"(or the environment variable {envs}).")

    @classmethod
    def url_pref(cls) -> str:
        """The add-on preference holding this service's endpoint ("fal.ai" → fal_url)."""
        return cls.service.lower().split(".")[0] + "_url"

    @classmethod
    def missing_keys(cls, credentials: Mapping[str, str]) -> list[KeySpec]:
        return [k for k in cls.keys if not credentials.get(k.pref)]

    @classmethod
    def malformed_keys(cls, credentials: Mapping[str, str]) -> list[KeySpec]:
        """Keys with whitespace or a control character inside (a paste gone wrong): sent as a
        header they would fail, and the error would quote them."""
        return [k for k in cls.keys if any(
            ch.isspace() or unicodedata.category(ch).startswith("C")
            for ch in credentials.get(k.pref, ""))]

    @classmethod
    def validate(cls, inputs: JobInputs) -> None:
        """Refuse locally what this provider cannot take; nothing has been sent yet."""
        caps, name = cls.capabilities, cls.label
        if inputs.prompt:
            if not caps.prompt:
                raise InputError(f"{name} does not take a text prompt; clear the prompt or "
                                 f"pick a provider that does.")
            if caps.prompt_max_chars and len(inputs.prompt) > caps.prompt_max_chars:
                raise InputError(f"{name} takes prompts of at most {caps.prompt_max_chars} "
                                 f"characters; this one has {len(inputs.prompt)}.")
        if inputs.mask_paths and not caps.mask:
            raise InputError(f"{name} does not take a mask; remove it or pick another provider.")
        if len(inputs.mask_paths) > caps.max_masks:
            raise InputError(f"{name} takes at most {caps.max_masks} mask(s); "
                             f"{len(inputs.mask_paths)} were given.")
        if inputs.points and not caps.points:
            raise InputError(f"{name} does not take clicked points; use a prompt, mask or box "
                             f"instead, or pick a provider that takes points.")
        if inputs.boxes and not caps.boxes:
            raise InputError(f"{name} does not take boxes; use a prompt or mask instead.")
        if caps.max_boxes is not None and len(inputs.boxes) > caps.max_boxes:
            raise InputError(f"{name} takes at most {caps.max_boxes} box(es); "
                             f"{len(inputs.boxes)} were given.")
        check_prompts_inside(inputs.points, inputs.boxes, inputs.image_size)
        if inputs.seed is not None:
            if not caps.seed:
                raise InputError(f"{name} does not take a seed.")
            low, high = caps.seed_range
            if not isinstance(inputs.seed, int) or not low <= inputs.seed <= high:
                raise InputError(f"{name} takes a seed from {low:,} to {high:,}; "
                                 f"{inputs.seed!r} is out of range.")
        cls.validate_options(inputs.options)

    # -- options: declared ones checked, any other name sent as typed ---------------------------
    @classmethod
    def reserved_params(cls) -> Mapping[str, str]:
        """Request fields Recon3D sets itself (the photo, prompt, seed, ids …), each with the
        form field that sets it ("" when none does). Defined by each provider beside the code
        that builds its request; an extra parameter may not name one."""
        return {}

    @classmethod
    def unchecked_options(cls, options: Mapping) -> dict:
        """The options that are not declared: sent to the service as typed, unchecked."""
        declared = {o.name for o in cls.options}
        return {k: v for k, v in options.items() if k not in declared}

    @classmethod
    def describe_unchecked(cls, options: Mapping) -> str:
        """What a job sends beyond the declared options, as JSON would write it ("foo=3,
        bar=true, style=\"studio\""), or "": so a typo shows (command line, log, panel)."""
        return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                         for k, v in cls.unchecked_options(options).items())

    @classmethod
    def validate_options(cls, options: Mapping) -> None:
        """Declared options must meet their OptionSpec. Any other name goes to the service
        as typed (it may take parameters Recon3D does not list), except a field Recon3D sets
        itself or a near miss of a declared option's name (a typo: 'SSSamplingSteps')."""
        specs = {o.name: o for o in cls.options}
        for key, value in options.items():
            spec = specs.get(key)
            if spec is None:
                cls._check_unchecked(key, value, specs)
                continue
            if spec.kind is bool:
                if not isinstance(value, bool):
                    raise InputError(f"{cls.label} option '{key}' must be true or false.")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value):
                raise InputError(f"{cls.label} option '{key}' must be a finite number; "
                                 f"got {value!r}.")
            if spec.kind is int and int(value) != value:
                raise InputError(f"{cls.label} option '{key}' must be a whole number.")
            if spec.minimum is not None and value < spec.minimum or \
                    spec.maximum is not None and value > spec.maximum:
                raise InputError(f"{cls.label} option '{key}' must be between {spec.minimum:g} "
                                 f"and {spec.maximum:g}; {value!r} is out of range.")

    @classmethod
    def _check_unchecked(cls, key, value, specs: Mapping[str, OptionSpec]) -> None:
        if not isinstance(key, str) or not key.strip() or key != key.strip():
            raise InputError(f"An extra parameter of {cls.label} needs a name without spaces "
                             f"around it; got {key!r}.")
        reserved = {_folded(name): (name, field) for name, field in
                    cls.reserved_params().items()}
        name, field = reserved.get(_folded(key), (None, ""))
        if name is not None:
            instead = f"use the {field} field instead" if field else "it cannot be changed"
            raise InputError(f"{key} is set by Recon3D itself for {cls.label}; {instead}.")
        near = [name for name in specs if _folded(name) == _folded(key)]
        if near:
            raise InputError(f"{cls.label} has no option '{key}'; did you mean '{near[0]}'?")
        if not _plain_json(value):
            raise InputError(f"The extra parameter '{key}' of {cls.label} must be text, a "
                             f"number, true/false, a list or an object; got {value!r}.")

    # -- protocol (implemented per service) ---------------------------------------------------
    def submit(self, inputs: JobInputs, state: dict,
               mark_sending: Callable[[], None]) -> str:
        """Upload what is needed and start the paid job; return the service's job id.

        `state` is this job's provider-owned, journaled dict (no secrets). `mark_sending()`
        must be called right before the request that bills, so a crash after it is never
        re-sent blindly."""
        raise NotImplementedError

    def poll(self, remote_id: str, state: dict) -> PollStatus:
        raise NotImplementedError

    def estimate(self, inputs: JobInputs) -> float | None:
        """What the job would cost, in the service's units, asked before it runs and without
        starting anything billable; None when the service cannot say in advance."""
        return None

    def download(self, remote_id: str, status: PollStatus, state: dict,
                 job_dir: str) -> list[str]:
        """Fetch the result files into `job_dir`; return their paths (complete files only)."""
        raise NotImplementedError

    def download_each(self, job_dir: str, refs, url_for: Callable[[Any], str],
                      refresh: bool = False) -> list[str]:
        """Download one result file per ref as result-<i>.glb, skipping files already on
        disk (a resumed job never downloads twice). With `refresh`, an expired URL (CDN
        403/404) is asked for again through `url_for`."""
        files = []
        for index, ref in enumerate(refs):
            dest = os.path.join(job_dir, f"result-{index}.glb")
            if not os.path.isfile(dest):
                self.http.download(url_for(ref), dest, max_bytes=MAX_RESULT_BYTES,
                                   check=lambda head: check_model_bytes(head, self.service),
                                   on_expired=(lambda r=ref: url_for(r)) if refresh else None)
            files.append(dest)
        return files

    def cancel(self, remote_id: str, state: dict) -> None:
        """Ask the service to stop, best effort. Local polling stops regardless."""

    def describe_error(self, resp: requests.Response) -> Recon3DError:
        return describe_status(self.service, resp.status_code, reason_from_response(resp),
                               key_hint=self.key_hint())

    def not_accepted(self, resp: requests.Response) -> bool:
        """Does this answer to a billing request prove the service did not take it (so it may
        be sent again)? The general rule is in billing.py; a service may know more."""
        return resp.status_code in NOT_ACCEPTED_STATUSES


def _folded(name) -> str:
    """A name as a typo would still match it: case, '_' and '-' ignored."""
    return str(name).lower().replace("_", "").replace("-", "")


def _plain_json(value, depth: int = 0) -> bool:
    """A value JSON carries as is: text, a finite number, true/false, null, lists, objects."""
    if depth > 32:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v, depth + 1) for k, v in value.items())
    return False


__all__ = ["Capabilities", "JobInputs", "KeySpec", "OptionSpec", "PollStatus", "Provider",
           "ProviderSettings"]
