# SPDX-License-Identifier: GPL-3.0-or-later
"""What the sidebar needs to know before Generate: where each key comes from, what a model
takes, and — in plain words — why Generate cannot run yet. Read by the submit operator's
poll (its tooltip, via `poll_message_set`) and by the panel; one definition of each rule."""
from __future__ import annotations

import os

from ..addon import preferences, runtime
from ..errors import InputError
from .. import api
from ..providers import JobInputs, Provider, provider_class
from ..providers.declaration import as_boxes, as_points


def allowed(cls, reason: str | None) -> bool:
    """An operator's poll: greyed out, with `reason` as its tooltip, unless reason is None."""
    if reason:
        cls.poll_message_set(reason)
    return reason is None


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


def job_arguments(form) -> dict:
    """What the form asks the model for, as api.submit and api.estimate take it: only the
    inputs the model takes (the others stay in the form, not sent)."""
    caps = form.provider_class().capabilities
    return dict(prompt=(form.prompt or None) if caps.prompt else None,
                mask=(form.mask_path or None) if caps.mask else None,
                points=form.parsed_points() if caps.points else None,
                boxes=form.parsed_boxes() if caps.boxes else None,
                seed=form.seed if form.use_seed else None,
                options=form.chosen_options())


def placement_fields(form) -> tuple:
    """Where the placement and size of a result are read from: the preferences' defaults
    while the form uses them (and the preferences are there), else the form's own fields;
    as (data, placement, fit size, size) names."""
    prefs = preferences.get() if form.use_preference_defaults else None
    if prefs is not None:
        return prefs, "default_placement", "default_use_target_size", "default_target_size"
    return form, "placement", "use_target_size", "target_size"


def placement_arguments(form) -> dict:
    """Placement and size as api.import_job takes them, from where `placement_fields` says."""
    data, placement, fit, size = placement_fields(form)
    return {"placement": getattr(data, placement),
            "target_size": getattr(data, size) if getattr(data, fit) else None}


def ignored_inputs(form) -> list[str]:
    """Inputs filled in for another model that this one does not take (not sent)."""
    caps = form.provider_class().capabilities
    given = {"the prompt": bool(form.prompt.strip()) and not caps.prompt,
             "the mask": bool(form.mask_path) and not caps.mask,
             "the points": bool(form.points.strip()) and not caps.points,
             "the boxes": bool(form.boxes.strip()) and not caps.boxes}
    return [name for name, ignored in given.items() if ignored]


def submit_blocker(context) -> str | None:
    """Why Generate cannot run now, in words, or None when it can."""
    form = getattr(context.scene, "recon3d", None)
    if form is None:
        return "Recon3D is not enabled in this scene."
    cls = form.provider_class()
    if form.photo() is None:
        return "Choose a photo first (an image, the Render Result or an image file)."
    _, blocker = runtime.send_blocker(cls.id)
    if blocker is not None:
        return str(blocker)
    try:       # the model's own rules, as api.submit applies them before anything is sent
        args = job_arguments(form)
        cls.validate(JobInputs(image_path="", image_size=(1 << 30, 1 << 30),
                               prompt=args["prompt"], mask_paths=[args["mask"]] if args["mask"]
                               else [], points=as_points(args["points"]),
                               boxes=as_boxes(args["boxes"]), seed=args["seed"],
                               options=args["options"]))
    except InputError as exc:
        return str(exc)
    return None


def can_price(provider_id: str) -> bool:
    """The service can say what a job costs before it runs (its provider overrides
    `estimate`, and the API offers it)."""
    base = getattr(Provider, "estimate", None)
    own = getattr(provider_class(provider_id), "estimate", None)
    return getattr(api, "estimate", None) is not None and own is not None and own is not base
