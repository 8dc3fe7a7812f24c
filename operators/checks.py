# SPDX-License-Identifier: GPL-3.0-or-later
"""What the sidebar needs to know before Generate: where each key comes from, what a model
takes, and — in plain words — why Generate cannot run yet. Read by the submit operator's
poll (its tooltip, via `poll_message_set`) and by the panel; one definition of each rule."""
from __future__ import annotations

import os

import bpy

from ..addon import preferences, runtime
from ..errors import InputError
from .. import api
from ..providers import Provider, provider_class
from ..providers.http import is_loopback


def online_access() -> bool:
    """Blender's Preferences › System › Network › Allow Online Access (tests replace this)."""
    return bool(bpy.app.online_access)


def key_sources(provider_id: str) -> list[tuple[object, str]]:
    """Each key the model needs, with where it comes from: "preferences", "environment" or
    "missing" (preferences win, as `runtime.credentials` reads them)."""
    prefs = preferences.get()
    out = []
    for key in provider_class(provider_id).keys:
        if prefs is not None and getattr(prefs, key.pref, "").strip():
            out.append((key, "preferences"))
        elif os.environ.get(key.env, "").strip():
            out.append((key, "environment"))
        else:
            out.append((key, "missing"))
    return out


def takes(provider_id: str) -> str:
    """What the model takes besides the photo, e.g. "photo, prompt, mask, points, 1 box"."""
    caps = provider_class(provider_id).capabilities
    parts = ["photo"]
    if caps.prompt:
        parts.append("prompt")
    if caps.mask:
        parts.append("mask (required: made from alpha if none)" if caps.mask_required
                     else "mask" if caps.max_masks <= 1 else f"up to {caps.max_masks} masks")
    if caps.points:
        parts.append("points")
    if caps.boxes:
        parts.append("1 box" if caps.max_boxes == 1 else "boxes")
    return ", ".join(parts)


def _unsupported_inputs(form, caps) -> list[str]:
    given = {"a prompt": bool(form.prompt.strip()) and not caps.prompt,
             "a mask": bool(form.mask_path) and not caps.mask,
             "points": bool(form.points.strip()) and not caps.points,
             "boxes": bool(form.boxes.strip()) and not caps.boxes}
    return [name for name, refused in given.items() if refused]


def submit_blocker(context) -> str | None:
    """Why Generate cannot run now, in words, or None when it can."""
    form = getattr(context.scene, "recon3d", None)
    if form is None:
        return "Recon3D is not enabled in this scene."
    cls = form.provider_class()
    if form.photo() is None:
        return "Choose a photo first (an image, the Render Result or an image file)."
    missing = [key for key, source in key_sources(cls.id) if source == "missing"]
    if missing:
        return (f"No {' and '.join(k.label for k in missing)} is set: add it in "
                f"Preferences › Add-ons › Recon3D.")
    base_url = runtime.resolve_settings(cls.id).base_url
    if not online_access() and not is_loopback(base_url):
        return (f"Online access is off, so nothing can be sent to {cls.service}: turn on "
                f"Preferences › System › Network › Allow Online Access.")
    refused = _unsupported_inputs(form, cls.capabilities)
    if refused:
        return (f"{cls.label} does not take {' or '.join(refused)}: clear "
                f"{'it' if len(refused) == 1 else 'them'} or pick another model.")
    try:       # the model's own option rules (extra parameters by name included)
        cls.validate_options(form.chosen_options())
    except InputError as exc:
        return f"{exc} Change it under Advanced."
    return None


def can_price(provider_id: str) -> bool:
    """The service can say what a job costs before it runs (its provider overrides
    `estimate`, and the API offers it)."""
    base = getattr(Provider, "estimate", None)
    own = getattr(provider_class(provider_id), "estimate", None)
    return getattr(api, "estimate", None) is not None and own is not None and own is not base
