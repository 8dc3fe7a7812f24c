# SPDX-License-Identifier: GPL-3.0-or-later
"""What every provider is: its declaration (capabilities, options, keys) and its protocol.

bpy-free. A provider module subclasses `Provider`, fills in the class attributes once, and
implements submit/poll/download/cancel on the shared `HttpClient`. The UI, the API's input
checks and the engine read the declaration; none of them special-case a provider by name.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import requests

from ..errors import InputError, Recon3DError, ResultError
from .http import HttpClient, describe_status, reason_from_body

GLB_MAGIC = b"glTF"
ZIP_MAGIC = b"PK\x03\x04"
MAX_RESULT_BYTES = 1 << 30          # 1 GiB: far above any real result, well below trouble


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
    detail: dict = field(default_factory=dict)   # what download() needs (journaled: no secrets)


@dataclass
class ProviderSettings:
    """Everything a provider needs at run time, resolved on the main thread. Never journaled."""
    base_url: str
    credentials: dict
    allow_online: bool = False


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
    def missing_keys(cls, credentials: Mapping[str, str]) -> list[KeySpec]:
        return [k for k in cls.keys if not credentials.get(k.pref)]

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
        width, height = inputs.image_size
        for x, y in inputs.points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise InputError(f"The point ({x:g}, {y:g}) lies outside the image "
                                 f"({width}×{height} px).")
        for x1, y1, x2, y2 in inputs.boxes:
            if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                raise InputError(f"The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) must lie inside the "
                                 f"image ({width}×{height} px) with x1 < x2 and y1 < y2.")
        if inputs.seed is not None:
            if not caps.seed:
                raise InputError(f"{name} does not take a seed.")
            low, high = caps.seed_range
            if not isinstance(inputs.seed, int) or not low <= inputs.seed <= high:
                raise InputError(f"{name} takes a seed from {low:,} to {high:,}; "
                                 f"{inputs.seed!r} is out of range.")
        cls.validate_options(inputs.options)

    @classmethod
    def validate_options(cls, options: Mapping) -> None:
        specs = {o.name: o for o in cls.options}
        for key, value in options.items():
            spec = specs.get(key)
            if spec is None:
                known = ", ".join(specs) or "none"
                raise InputError(f"{cls.label} has no option '{key}' (its options: {known}).")
            if spec.kind is bool:
                if not isinstance(value, bool):
                    raise InputError(f"{cls.label} option '{key}' must be true or false.")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{cls.label} option '{key}' must be a number.")
            if spec.kind is int and int(value) != value:
                raise InputError(f"{cls.label} option '{key}' must be a whole number.")
            if spec.minimum is not None and value < spec.minimum or \
                    spec.maximum is not None and value > spec.maximum:
                raise InputError(f"{cls.label} option '{key}' must be between {spec.minimum:g} "
                                 f"and {spec.maximum:g}; {value!r} is out of range.")

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

    def download(self, remote_id: str, status: PollStatus, state: dict,
                 job_dir: str) -> list[str]:
        """Fetch the result files into `job_dir`; return their paths (complete files only)."""
        raise NotImplementedError

    def download_each(self, job_dir: str, refs, url_for: Callable[[Any], str],
                      refresh: bool = False) -> list[str]:
        """Download one result file per ref as result-<i>.glb, skipping files already on
        disk (a resumed job never downloads twice). With `refresh`, an expired URL (CDN
        403/404) is asked for again through `url_for`."""
        import os
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
        return describe_status(self.service, resp.status_code, reason_from_body(resp),
                               key_hint=self.key_hint())


def check_model_bytes(head: bytes, service: str) -> None:
    """Refuse a download that is neither a GLB nor a ZIP as soon as its first bytes arrive."""
    if head.startswith(GLB_MAGIC) or head.startswith(ZIP_MAGIC):
        return
    sniff = head[:16].lstrip().lower()
    kind = "a web page" if sniff.startswith((b"<", b"<!doctype")) else \
        "JSON text" if sniff.startswith((b"{", b"[")) else "something else"
    raise ResultError(f"{service} sent {kind} instead of a 3D model. Nothing was imported; "
                      f"try the import again later.")


def extract_glb_from_zip(zip_path: str, dest: str, *, max_bytes: int = MAX_RESULT_BYTES) -> str:
    """Take the .glb out of a result ZIP (Segmind's debug artifacts) without trusting names:
    the member is read as a stream and written to `dest`, so no path in the archive is used
    (no zip slip), and its size is capped while reading (no zip bomb)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [m for m in archive.infolist()
                       if not m.is_dir() and m.filename.lower().endswith(".glb")]
            if not members:
                raise ResultError("The result archive holds no .glb model. Nothing was "
                                  "imported.")
            member = max(members, key=lambda m: m.file_size)
            written = 0
            with archive.open(member) as src, open(dest + ".part", "wb") as out:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > max_bytes:
                        raise ResultError("The model inside the result archive is larger than "
                                          "Recon3D accepts.")
                    out.write(chunk)
    except zipfile.BadZipFile:
        raise ResultError("The result archive is damaged. Nothing was imported.") from None
    except BaseException:
        import os
        if os.path.exists(dest + ".part"):
            os.remove(dest + ".part")
        raise
    import os
    with open(dest + ".part", "rb") as fh:
        if fh.read(4) != GLB_MAGIC:
            os.remove(dest + ".part")
            raise ResultError("The .glb inside the result archive is not a valid model.")
    os.replace(dest + ".part", dest)
    return dest


def sequence_of_pairs(values: Sequence) -> list[list[int]]:
    return [[int(round(v[0])), int(round(v[1]))] for v in values]
