# SPDX-License-Identifier: GPL-3.0-or-later
"""What a provider declares — capabilities, options, keys — and the rules inputs must meet.
bpy-free.

The panel, the API's checks, the command line and the request all read these declarations;
none of them special-cases a provider by name. The bounds of points and boxes are defined
once here (`check_prompts_inside`, `scale_prompts`) and used both before and after input
preparation, so a box reaching the photo's edge survives downscaling.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import InputError
from .network import NetworkSettings

Point = tuple[float, float]
Box = tuple[float, float, float, float]
@dataclass(frozen=True)
class Capabilities:
    prompt: bool = False
    prompt_max_chars: int | None = None
    mask: bool = False
    mask_required: bool = False
    max_masks: int = 1
    points: bool = False
    boxes: bool = False
    max_boxes: int | None = None
    seed: bool = True
    seed_range: tuple[int, int] = (0, 2**32 - 1)
    multi_object: bool = False
    max_results: int = 1


@dataclass(frozen=True)
class OptionSpec:
    name: str                    # the service's parameter name
    kind: type                   # float, int or bool
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    label: str = ""
    description: str = ""


@dataclass(frozen=True)
class KeySpec:
    pref: str                    # attribute on the add-on preferences
    env: str                     # environment fallback
    label: str
    where: str = ""              # where the artist finds it, for the preference's tooltip


@dataclass
class JobInputs:
    """Inputs as they will be uploaded: the image is already a file on disk, and points,
    boxes and masks are in pixels of that file (input preparation rescales them)."""
    image_path: str
    image_size: tuple[int, int]
    prompt: str | None = None
    mask_paths: list[str] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    seed: int | None = None
    options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"image_path": self.image_path, "image_size": list(self.image_size),
                "prompt": self.prompt, "mask_paths": list(self.mask_paths),
                "points": [list(p) for p in self.points], "boxes": [list(b) for b in self.boxes],
                "seed": self.seed, "options": dict(self.options)}

    @classmethod
    def from_json(cls, data: Mapping) -> "JobInputs":
        return cls(image_path=data["image_path"], image_size=tuple(data["image_size"]),
                   prompt=data.get("prompt"), mask_paths=list(data.get("mask_paths") or []),
                   points=[tuple(p) for p in data.get("points") or []],
                   boxes=[tuple(b) for b in data.get("boxes") or []],
                   seed=data.get("seed"), options=dict(data.get("options") or {}))


@dataclass
class PollStatus:
    state: str                         # "running" | "done" | "failed" | "canceled"
    progress: float | None = None      # 0..1 when the service reports it
    error: str | None = None
    #: what download() needs to fetch the result (asset ids, URLs); journaled, so no secrets
    result: dict = field(default_factory=dict)


@dataclass
class ProviderSettings:
    """Everything a provider needs at run time, resolved on the main thread. Never journaled."""
    base_url: str
    credentials: dict = field(repr=False)       # keys: never in a repr or a log
    allow_online: bool = False
    #: the proxy, CA bundle and Blender's network timeout (network.py)
    network: NetworkSettings = field(default_factory=NetworkSettings)


def load_options(file_name: str) -> tuple[OptionSpec, ...]:
    """An option schema kept as data beside the providers (a vendor's parameter table)."""
    path = os.path.join(os.path.dirname(__file__), file_name)
    with open(path, encoding="utf-8") as fh:
        rows = json.load(fh)["options"]
    kinds = {"bool": bool, "int": int, "float": float}
    return tuple(OptionSpec(row["name"], kinds[row["kind"]], row["default"], row.get("min"),
                            row.get("max"), row.get("label", ""), row.get("description", ""))
                 for row in rows)


# -- points and boxes: one definition of their shape and bounds ------------------------------------
def as_points(values) -> list[Point]:
    """Points as given by an artist or a script, as (x, y) floats; anything else refused."""
    return [_numbers(value, 2, "point", "(x, y)") for value in values or []]


def as_boxes(values) -> list[Box]:
    return [_numbers(value, 4, "box", "(x1, y1, x2, y2)") for value in values or []]


def _numbers(value, count: int, what: str, shape: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or \
            len(value) != count:
        raise InputError(f"Each {what} must be {shape} in pixels; got {value!r}.")
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"Each {what} must be {shape} in pixels; got {value!r}.") from None
    if any(isinstance(v, (bool, str)) for v in value) or \
            not all(math.isfinite(v) for v in numbers):
        raise InputError(f"Each {what} must be {shape} as finite numbers; got {value!r}.")
    return numbers


def check_prompts_inside(points: Sequence[Point], boxes: Sequence[Box],
                         size: tuple[int, int]) -> None:
    """Points lie on a pixel of the image (0 ≤ x < width); boxes lie within its edges
    (0 ≤ x1 < x2 ≤ width), in pixels of the image `size` describes."""
    width, height = size
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(f"The point ({x:g}, {y:g}) lies outside the image "
                             f"({width}×{height} px).")
    for x1, y1, x2, y2 in boxes:
        if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise InputError(f"The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) must lie inside the "
                             f"image ({width}×{height} px) with x1 < x2 and y1 < y2.")


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size an image of width × height is downscaled to so its longer side is at most
    `max_side` (never upscaled, never below one pixel)."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def scale_prompts(points: Sequence[Point], boxes: Sequence[Box], original: tuple[int, int],
                  size: tuple[int, int]) -> tuple[list[Point], list[Box]]:
    """Points and boxes of the `original` image expressed in pixels of a resized copy of
    `size`: pixel centres map to pixel centres, box edges to box edges. Values that rounding
    pushed past the edge are clamped back, so what was inside stays inside."""
    width, height = size

    def along_x(value):           # multiply first: an edge (value == original) stays exact
        return value * width / original[0]

    def along_y(value):
        return value * height / original[1]

    def clamp(value, high):
        return min(max(value, 0.0), high)

    scaled_points = [(clamp(along_x(x + 0.5) - 0.5, width - 1.0),
                      clamp(along_y(y + 0.5) - 0.5, height - 1.0)) for x, y in points]
    scaled_boxes = [(clamp(along_x(a), width), clamp(along_y(b), height),
                     clamp(along_x(c), width), clamp(along_y(d), height))
                    for a, b, c, d in boxes]
    return scaled_points, scaled_boxes
