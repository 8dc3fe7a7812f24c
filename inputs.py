# SPDX-License-Identifier: GPL-3.0-or-later
"""Input preparation (bpy, main thread): turn what the artist gave — a file path or a
`bpy.types.Image`, packed or not — into image files in the job's folder, checked readable,
with points, boxes and masks expressed in pixels of the file that will be uploaded.

Anything wrong is refused here, before a byte leaves the machine. Temporary Blender images
made for the check are removed again, so the open .blend is left exactly as it was.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

import bpy

from .errors import InputError

#: formats uploaded as they are; anything else is re-encoded to PNG
PASS_THROUGH = {"PNG": ".png", "JPEG": ".jpg"}
MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG"}


@dataclass
class Prepared:
    image_path: str
    image_size: tuple[int, int]
    mask_paths: list[str] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)


def _sniff(path: str) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(8)
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def _check_file(path: str, what: str) -> str:
    path = bpy.path.abspath(path) if path.startswith("//") else path
    path = os.path.expanduser(path)
    if not path:
        raise InputError(f"No {what} was given. Pick an image file in the Recon3D panel.")
    if not os.path.isfile(path):
        raise InputError(f"The {what} file '{path}' does not exist. Check the path.")
    if not os.access(path, os.R_OK):
        raise InputError(f"Recon3D cannot read the {what} file '{path}' (no permission).")
    if os.path.getsize(path) == 0:
        raise InputError(f"The {what} file '{path}' is empty.")
    return path


class _TempImages:
    """Images loaded only to check or convert inputs; removed on exit."""

    def __init__(self):
        self.images: list[bpy.types.Image] = []

    def load(self, path: str, what: str) -> bpy.types.Image:
        try:
            img = bpy.data.images.load(path, check_existing=False)
        except RuntimeError:
            raise InputError(f"The {what} '{os.path.basename(path)}' is not an image Blender "
                             f"can read. Use a PNG or JPEG photo.") from None
        self.images.append(img)
        width, height = img.size
        if width == 0 or height == 0:
            raise InputError(f"The {what} '{os.path.basename(path)}' is not an image Blender "
                             f"can read. Use a PNG or JPEG photo.")
        return img

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for img in self.images:
            try:
                bpy.data.images.remove(img)
            except ReferenceError:
                pass
        self.images.clear()


def _materialise(source, dest_stem: str, what: str, temp: _TempImages) -> tuple[str, tuple[int, int]]:
    """Write `source` (path or Image) to `dest_stem` + extension; return (path, (w, h))."""
    if isinstance(source, (str, os.PathLike)):
        path = _check_file(os.fspath(source), what)
        img = temp.load(path, what)
        size = (int(img.size[0]), int(img.size[1]))
        kind = _sniff(path)
        if kind in PASS_THROUGH:
            dest = dest_stem + PASS_THROUGH[kind]
            shutil.copyfile(path, dest)
            return dest, size
        return _save_png(img, dest_stem + ".png"), size

    if isinstance(source, bpy.types.Image):
        width, height = (int(source.size[0]), int(source.size[1]))
        if source.packed_file is not None:
            data = bytes(source.packed_file.data)
            kind = next((n for m, n in MAGIC.items() if data.startswith(m)), None)
            if kind in PASS_THROUGH and width and height:
                dest = dest_stem + PASS_THROUGH[kind]
                with open(dest, "wb") as fh:
                    fh.write(data)
                return dest, (width, height)
        elif source.source == "FILE" and source.filepath:
            return _materialise(bpy.path.abspath(source.filepath, library=source.library),
                                dest_stem, what, temp)
        if not width or not height or not source.has_data:
            raise InputError(f"The Blender image '{source.name}' holds no pixels. Open or "
                             f"render it first, or pick an image file.")
        return _save_png(source, dest_stem + ".png"), (width, height)

    raise InputError(f"The {what} must be a file path or a Blender image, not "
                     f"{type(source).__name__}.")


def _save_png(img: bpy.types.Image, dest: str) -> str:
    """Re-encode through a copy so the artist's image keeps its own path and settings."""
    copy = img.copy()
    try:
        copy.filepath_raw = dest
        copy.file_format = "PNG"
        copy.save()
    except RuntimeError as exc:
        raise InputError(f"Recon3D could not convert the image '{img.name}' to PNG ({exc}).") \
            from None
    finally:
        bpy.data.images.remove(copy)
    return dest


def prepare(job_dir: str, image, *, mask=None, points=None, boxes=None) -> Prepared:
    """Write the job's inputs into `job_dir`. Raises InputError for anything unusable."""
    with _TempImages() as temp:
        image_path, size = _materialise(image, os.path.join(job_dir, "input"), "image", temp)
        masks = []
        if mask is not None:
            mask_list = mask if isinstance(mask, (list, tuple)) else [mask]
            for index, item in enumerate(mask_list):
                path, mask_size = _materialise(item, os.path.join(job_dir, f"mask-{index}"),
                                               "mask", temp)
                if mask_size != size:
                    raise InputError(f"The mask is {mask_size[0]}×{mask_size[1]} px but the "
                                     f"image is {size[0]}×{size[1]} px; they must match.")
                masks.append(path)
    return Prepared(image_path=image_path, image_size=size, mask_paths=masks,
                    points=[_pair(p, "point") for p in points or []],
                    boxes=[_box(b) for b in boxes or []])


def _pair(value, what) -> tuple[float, float]:
    try:
        x, y = value
        return float(x), float(y)
    except (TypeError, ValueError):
        raise InputError(f"Each {what} must be (x, y) in pixels; got {value!r}.") from None


def _box(value) -> tuple[float, float, float, float]:
    try:
        x1, y1, x2, y2 = value
        return float(x1), float(y1), float(x2), float(y2)
    except (TypeError, ValueError):
        raise InputError(f"Each box must be (x1, y1, x2, y2) in pixels; got {value!r}.") \
            from None
