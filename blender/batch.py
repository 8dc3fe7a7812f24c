# SPDX-License-Identifier: GPL-3.0-or-later
"""The Blender side of batch work (bpy, main thread): which files a folder holds, laying
finished results out so they do not overlap, writing each as a GLB with Blender's glTF
exporter, and small Cycles previews plus a contact sheet composed with Blender's own image
API (no imaging library)."""
from __future__ import annotations

import math
import os

import bpy
import numpy as np
from mathutils import Matrix, Vector

from ..errors import InputError, ResultError
from .importer.bounds import combined_bounds, world_matrices
from .importer.placement import side_by_side

LAYOUTS = ("grid", "row", "original")
#: space between grid cells, as a share of the largest footprint
GRID_GAP = 0.25
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr", ".tga")
PREVIEW_SIZE = 128
PREVIEW_SAMPLES = 8


def expand_photos(paths) -> list[str]:
    """Files as given; folders replaced by the photos directly inside them, sorted by name.
    A path that does not exist is kept: submitting it says so for that photo alone."""
    photos = []
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            inside = sorted(n for n in os.listdir(path)
                            if n.lower().endswith(PHOTO_EXTENSIONS) and not n.startswith("."))
            if not inside:
                raise InputError(f"The folder '{path}' holds no photos "
                                 f"({', '.join(PHOTO_EXTENSIONS)}).")
            photos.extend(os.path.join(path, n) for n in inside)
        else:
            photos.append(path)
    return photos


# -- layout ----------------------------------------------------------------------------------------
def arrange(groups: list[list], layout: str, anchor: Vector) -> None:
    """Move each group (the objects of one result) as a whole so no two overlap: "row" side by
    side along X, "grid" in rows of equal square cells; both centred on `anchor`, every bottom
    on its height. "original" leaves everything where the import placed it."""
    if layout not in LAYOUTS:
        raise InputError(f"Unknown layout '{layout}'; use one of {', '.join(LAYOUTS)}.")
    groups = [g for g in groups if any(o.type == "MESH" for o in g)]
    if layout == "original" or not groups:
        return
    bounds = [combined_bounds(g, world_matrices(g)) for g in groups]
    if layout == "row":
        offsets = side_by_side([(g, low, high) for g, (low, high) in zip(groups, bounds)], None)
    else:
        offsets = _grid_offsets(bounds)
    for group, (low, high), offset in zip(groups, bounds, offsets):
        bottom = Vector(((low.x + high.x) / 2, (low.y + high.y) / 2, low.z))
        move = Matrix.Translation(anchor + offset - bottom)
        members = set(group)
        for obj in group:
            if obj.parent not in members:
                obj.matrix_world = move @ obj.matrix_world
    bpy.context.view_layer.update()


def _grid_offsets(bounds) -> list[Vector]:
    pitch = max(max(high.x - low.x, high.y - low.y) for low, high in bounds)
    pitch = max(pitch, 1e-3) * (1.0 + GRID_GAP)
    cols = math.ceil(math.sqrt(len(bounds)))
    rows = math.ceil(len(bounds) / cols)
    return [Vector(((i % cols - (cols - 1) / 2) * pitch, ((rows - 1) / 2 - i // cols) * pitch,
                    0.0)) for i in range(len(bounds))]


# -- export ----------------------------------------------------------------------------------------
def export_glb(objects, path: str) -> str:
    """Write these objects, as placed, to a GLB with Blender's glTF exporter."""
    op = bpy.ops.export_scene.gltf
    accepted = {p.identifier for p in op.get_rna_type().properties}
    wanted = {"filepath": path, "export_format": "GLB", "use_selection": True,
              "export_apply": False, "export_yup": True}
    view_layer = bpy.context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    chosen = set(objects)
    try:
        for obj in view_layer.objects:
            obj.select_set(obj in chosen)
        result = op(**{k: v for k, v in wanted.items() if k in accepted})
    except RuntimeError as exc:
        raise ResultError(f"Blender's glTF exporter could not write '{path}' "
                          f"({str(exc).strip()[-200:]}).") from None
    finally:
        for obj in view_layer.objects:
            obj.select_set(obj in selected)
        view_layer.objects.active = active
    if "FINISHED" not in result:
        raise ResultError(f"Blender's glTF exporter could not write '{path}'.")
    return path


# -- previews --------------------------------------------------------------------------------------
def render_previews(groups: list[tuple[str, list]], out_dir: str, *, size: int = PREVIEW_SIZE,
                    samples: int = PREVIEW_SAMPLES) -> tuple[list[str], str | None]:
    """One small Cycles (CPU) render per group (name, objects) into `out_dir`/<name>.png, and
    a contact sheet of them all (contact-sheet.png). Rendered in a scene of its own that is
    removed afterwards; the artist's scene is not touched. Returns (pngs, sheet)."""
    os.makedirs(out_dir, exist_ok=True)
    made = []
    stage = _Stage(size, samples)
    try:
        for name, objects in groups:
            path = os.path.join(out_dir, f"{name}.png")
            stage.render(objects, path)
            made.append(path)
    finally:
        stage.remove()
    sheet = contact_sheet(made, os.path.join(out_dir, "contact-sheet.png")) if made else None
    return made, sheet


class _Stage:
    """A throwaway scene: Cycles on the CPU, a camera, a sun; results linked in one by one."""

    def __init__(self, size: int, samples: int):
        scene = self.scene = bpy.data.scenes.new("Recon3D Preview")
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False
        scene.render.resolution_x = scene.render.resolution_y = size
        scene.render.resolution_percentage = 100
        scene.render.image_settings.file_format = "PNG"
        self.world = scene.world = bpy.data.worlds.new("Recon3D Preview")
        self.camera = bpy.data.objects.new("Recon3D Preview", bpy.data.cameras.new(
            "Recon3D Preview"))
        self.sun = bpy.data.objects.new("Recon3D Preview Sun", bpy.data.lights.new(
            "Recon3D Preview Sun", "SUN"))
        self.sun.data.energy = 3.0
        self.sun.rotation_euler = (0.7, 0.2, 0.6)
        for obj in (self.camera, self.sun):
            scene.collection.objects.link(obj)
        scene.camera = self.camera

    def render(self, objects, path: str) -> None:
        linked = [o for o in objects if o.name not in self.scene.collection.objects]
        for obj in linked:
            self.scene.collection.objects.link(obj)
        try:
            self._frame(objects)
            self.scene.render.filepath = path
            bpy.ops.render.render(write_still=True, scene=self.scene.name)
        finally:
            for obj in linked:
                self.scene.collection.objects.unlink(obj)

    def _frame(self, objects) -> None:
        low, high = combined_bounds(objects, world_matrices(objects))
        centre, radius = (low + high) / 2, max((high - low).length / 2, 1e-3)
        fov = self.camera.data.angle
        distance = radius / math.sin(fov / 2) * 1.05
        direction = Vector((0.6, -1.0, 0.55)).normalized()
        self.camera.location = centre + direction * distance
        self.camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
        self.camera.data.clip_start = max(distance - radius * 2, distance * 1e-3)
        self.camera.data.clip_end = distance + radius * 2

    def remove(self) -> None:
        camera, light = self.camera.data, self.sun.data
        bpy.data.objects.remove(self.camera)
        bpy.data.objects.remove(self.sun)
        bpy.data.cameras.remove(camera)
        bpy.data.lights.remove(light)
        bpy.data.scenes.remove(self.scene)
        bpy.data.worlds.remove(self.world)


def contact_sheet(pngs: list[str], path: str, *, gap: int = 4) -> str:
    """The PNGs side by side in rows (as many columns as rows, or one more), on dark grey."""
    tiles = [_read_pixels(p) for p in pngs]
    tile_h = max(t.shape[0] for t in tiles)
    tile_w = max(t.shape[1] for t in tiles)
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    width, height = cols * tile_w + (cols + 1) * gap, rows * tile_h + (rows + 1) * gap
    sheet = np.full((height, width, 4), 0.02, dtype=np.float32)
    sheet[..., 3] = 1.0
    for i, tile in enumerate(tiles):
        top = gap + (i // cols) * (tile_h + gap)
        left = gap + (i % cols) * (tile_w + gap)
        sheet[top:top + tile.shape[0], left:left + tile.shape[1]] = tile
    img = bpy.data.images.new("Recon3D Contact Sheet", width, height, alpha=True)
    try:
        img.pixels.foreach_set(np.flipud(sheet).ravel())     # Blender's row 0 is the bottom
        img.filepath_raw = path
        img.file_format = "PNG"
        img.save()
    finally:
        bpy.data.images.remove(img)
    return path


def _read_pixels(path: str) -> np.ndarray:
    """An (h, w, 4) float array, row 0 at the top."""
    img = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = img.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        img.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(img)
    return np.flipud(pixels.reshape(height, width, 4))
