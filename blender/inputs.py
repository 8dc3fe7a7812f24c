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
import tempfile
from dataclasses import dataclass, field

import bpy
import numpy as np

from ..errors import InputError
from ..providers.declaration import (as_boxes, as_points, check_prompts_inside, fit_within,
                                     scale_prompts)
from ..providers.files import sniff

#: kinds of file (providers.files.sniff) uploaded as they are; anything else becomes a PNG
PASS_THROUGH = {"png": ".png", "jpeg": ".jpg"}


@dataclass
class Prepared:
    image_path: str
    image_size: tuple[int, int]
    mask_paths: list[str] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    original_size: tuple[int, int] = (0, 0)


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
        self.folder: str | None = None

    def file(self, name: str) -> str:
        """A path in a folder removed on exit."""
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="recon3d-input-")
        return os.path.join(self.folder, name)

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
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


@dataclass
class UploadLimits:
    """What the provider accepts; the image is downscaled/re-encoded to fit."""
    max_side: int = 4096
    max_bytes: int = 15_000_000
    derive_mask: bool = False        # the provider requires a mask: make one if none given


def _load(source, what: str, temp: _TempImages) -> tuple[bpy.types.Image, str | None, bytes | None]:
    """(Blender image, file path if the bytes are on disk, packed bytes if packed)."""
    if isinstance(source, (str, os.PathLike)):
        path = _check_file(os.fspath(source), what)
        return temp.load(path, what), path, None
    if isinstance(source, bpy.types.Image):
        if source.type in {"RENDER_RESULT", "COMPOSITING"}:
            # The Render Result and the Viewer Node hold no pixels Python can read: save them.
            path = temp.file("render.png")
            try:
                source.save_render(path, scene=bpy.context.scene)
            except RuntimeError:
                raise InputError(f"'{source.name}' is empty: render (or run the compositor) "
                                 f"first, or pick another image.") from None
            return temp.load(path, what), path, None
        if source.packed_file is not None:
            return source, None, bytes(source.packed_file.data)
        if source.source == "FILE" and source.filepath:
            path = _check_file(bpy.path.abspath(source.filepath, library=source.library), what)
            return temp.load(path, what), path, None
        if not source.size[0] or not source.size[1] or not source.has_data:
            raise InputError(f"The Blender image '{source.name}' holds no pixels. Open or "
                             f"render it first, or pick an image file.")
        return source, None, None
    raise InputError(f"The {what} must be a file path or a Blender image, not "
                     f"{type(source).__name__}.")


def _kind(path: str | None, packed: bytes | None) -> str | None:
    head = packed[:16] if packed is not None else None
    if head is None and path:
        with open(path, "rb") as fh:
            head = fh.read(16)
    return sniff(head) if head else None


def _save(img: bpy.types.Image, dest: str, file_format: str, size: tuple[int, int] | None,
          temp: _TempImages) -> str:
    """Write a (scaled) copy of `img`, so the artist's image keeps its own path and pixels."""
    copy = img.copy()
    temp.images.append(copy)
    if size is not None and tuple(copy.size) != tuple(size):
        copy.scale(int(size[0]), int(size[1]))
    copy.filepath_raw = dest
    copy.file_format = file_format
    try:
        if file_format == "JPEG":
            copy.save(filepath=dest, quality=90)
        else:
            copy.save(filepath=dest)
    except RuntimeError as exc:
        raise InputError(f"Recon3D could not convert the image '{img.name}' ({exc}).") from None
    return dest


def _write_image(img, path, packed, dest_stem, limits, temp) -> tuple[str, tuple[int, int]]:
    """The upload file: the original bytes when they already fit, else a downscaled PNG (or
    JPEG when PNG is still too large), shrinking further until it fits."""
    width, height = int(img.size[0]), int(img.size[1])
    kind = _kind(path, packed)
    size = fit_within(width, height, limits.max_side)
    original_bytes = len(packed) if packed is not None else (
        os.path.getsize(path) if path else None)
    if kind in PASS_THROUGH and size == (width, height) and original_bytes is not None \
            and original_bytes <= limits.max_bytes:
        dest = dest_stem + PASS_THROUGH[kind]
        if packed is not None:
            with open(dest, "wb") as fh:
                fh.write(packed)
        else:
            shutil.copyfile(path, dest)
        return dest, size
    formats = ["JPEG"] if kind == "jpeg" else ["PNG", "JPEG"]
    for _ in range(8):
        for file_format in formats:
            dest = dest_stem + (".jpg" if file_format == "JPEG" else ".png")
            _save(img, dest, file_format, size, temp)
            if os.path.getsize(dest) <= limits.max_bytes:
                return dest, size
            os.remove(dest)
        size = (max(1, round(size[0] * 0.8)), max(1, round(size[1] * 0.8)))
    raise InputError(f"The image '{img.name}' cannot be made small enough to upload; use a "
                     f"smaller photo.")


def _derive_mask(img, size, dest: str, temp: _TempImages) -> str:
    """A mask for providers that require one: the image's alpha where it has any
    transparency, otherwise the whole image."""
    scaled = img.copy()
    temp.images.append(scaled)
    if tuple(scaled.size) != tuple(size):
        scaled.scale(*size)
    width, height = size
    mask = np.ones(width * height, dtype=np.float32)
    if img.depth in (32, 64, 128) or img.is_float:
        pixels = np.empty(width * height * 4, dtype=np.float32)
        scaled.pixels.foreach_get(pixels)
        alpha = pixels[3::4]
        if (alpha < 0.999).any():
            mask = (alpha > 0.5).astype(np.float32)
    out = bpy.data.images.new("recon3d-mask", width, height, alpha=False)
    temp.images.append(out)
    rgba = np.empty((width * height, 4), dtype=np.float32)
    rgba[:, 0] = rgba[:, 1] = rgba[:, 2] = mask
    rgba[:, 3] = 1.0
    out.pixels.foreach_set(rgba.ravel())
    out.filepath_raw = dest
    out.file_format = "PNG"
    out.save()
    return dest


def prepare(job_dir: str, image, *, mask=None, points=None, boxes=None,
            limits: UploadLimits | None = None) -> Prepared:
    """Write the job's inputs into `job_dir`. Raises InputError for anything unusable.

    Points, boxes and masks come in pixels of the original image and leave in pixels of the
    uploaded one: when the image is downscaled they are scaled with it."""
    limits = limits or UploadLimits()
    with _TempImages() as temp:
        img, path, packed = _load(image, "image", temp)
        original = (int(img.size[0]), int(img.size[1]))
        points, boxes = as_points(points), as_boxes(boxes)
        check_prompts_inside(points, boxes, original)
        image_path, size = _write_image(img, path, packed, os.path.join(job_dir, "input"),
                                        limits, temp)
        masks = []
        mask_list = [] if mask is None else (list(mask) if isinstance(mask, (list, tuple))
                                             else [mask])
        for index, item in enumerate(mask_list):
            mask_img, _, _ = _load(item, "mask", temp)
            mask_size = (int(mask_img.size[0]), int(mask_img.size[1]))
            if mask_size != original:
                raise InputError(f"Mask {index + 1} is {mask_size[0]}×{mask_size[1]} px but the "
                                 f"image is {original[0]}×{original[1]} px; they must match.")
            masks.append(_save(mask_img, os.path.join(job_dir, f"mask-{index}.png"), "PNG",
                               size, temp))
        if not masks and limits.derive_mask:
            masks.append(_derive_mask(img, size, os.path.join(job_dir, "mask-0.png"), temp))
    points, boxes = scale_prompts(points, boxes, original, size)
    return Prepared(image_path=image_path, image_size=size, mask_paths=masks, points=points,
                    boxes=boxes, original_size=original)
