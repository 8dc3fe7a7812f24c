# SPDX-License-Identifier: GPL-3.0-or-later
"""Import cost, against Blender's own operators measured in the same run:

1. import + placement + applied scale of a ~200k-vertex textured GLB, versus a bare
   `bpy.ops.import_scene.gltf` of the same file (target ≤ 1.15×);
2. placing and applying scale to a 1M-vertex hierarchy with rotations, versus a bare
   `bpy.ops.object.transform_apply(scale=True)` on identical copies (target ≤ 1.5×).

    RECON3D_ZIP=… python bench/import.py        (bench/run.py sets it up)
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

from common import median

ROUNDS = 7
DATA = ("objects", "meshes", "materials", "images", "collections", "textures", "node_groups")


def snapshot(bpy):
    return {name: set(getattr(bpy.data, name)) for name in DATA}


def remove_new(bpy, before):
    for name in DATA:
        coll = getattr(bpy.data, name)
        for item in [i for i in coll if i not in before[name]]:
            coll.remove(item)


def make_textured_glb(bpy, np, path: str, texture: int = 2048) -> None:
    """A UV sphere of ~200k vertices with UVs and a texture, like Pixal3D's output, exported
    with Blender's glTF exporter."""
    import bmesh
    before = snapshot(bpy)
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=632, v_segments=316, radius=0.5, calc_uvs=True)
    mesh = bpy.data.meshes.new("pixal")
    bm.to_mesh(mesh)
    bm.free()
    # Smooth shading, so the exporter splits vertices only along UV seams (as real results).
    mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
    img = bpy.data.images.new("albedo", texture, texture)
    ramp = np.linspace(0, 1, texture, dtype=np.float32)
    pixels = np.empty((texture, texture, 4), dtype=np.float32)
    pixels[..., 0] = ramp[None, :]
    pixels[..., 1] = ramp[:, None]
    pixels[..., 2] = 0.5
    pixels[..., 3] = 1.0
    img.pixels.foreach_set(pixels.ravel())
    img.filepath_raw = str(Path(path).with_suffix(".png"))
    img.file_format = "PNG"
    img.save()
    mat = bpy.data.materials.new("pbr")
    if bpy.app.version < (5, 0):               # always on (and deprecated) from 5.0
        mat.use_nodes = True
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = img
    mat.node_tree.links.new(node.outputs["Color"],
                            mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    mesh.materials.append(mat)
    obj = bpy.data.objects.new("pixal", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = (0.3, 2.0, -0.4)
    obj.rotation_euler = (0.3, 0.1, 0.7)
    obj.scale = (1.2, 1.2, 1.2)
    for other in bpy.context.scene.objects:
        other.select_set(other == obj)
    bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True)
    remove_new(bpy, before)


def make_hierarchy(bpy, np):
    """~1M vertices: a rotated, scaled parent grid and two rotated, scaled children."""
    import bmesh

    def grid(name, segments):
        bm = bmesh.new()
        bmesh.ops.create_grid(bm, x_segments=segments, y_segments=segments, size=0.5)
        mesh = bpy.data.meshes.new(name)
        bm.to_mesh(mesh)
        bm.free()
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.attributes["position"].data.foreach_get("vector", co)
        co[2::3] = 0.05 * np.sin(co[0::3] * 20) * np.cos(co[1::3] * 20)
        mesh.attributes["position"].data.foreach_set("vector", co)
        obj = bpy.data.objects.new(name, mesh)
        bpy.context.scene.collection.objects.link(obj)
        return obj

    parent = grid("parent", 706)          # 707² ≈ 500k vertices
    parent.location = (0.5, 1.0, -0.2)
    parent.rotation_euler = (0.3, 0.2, 0.6)
    parent.scale = (1.5, 1.5, 1.5)
    children = []
    for index in range(2):
        child = grid(f"child{index}", 499)    # 500² = 250k vertices
        child.parent = parent
        child.location = (0.6 * (index * 2 - 1), 0.0, 0.2)
        child.rotation_euler = (0.0, 0.4 * index, 0.5)
        child.scale = (0.7, 0.7, 0.7)
        children.append(child)
    bpy.context.view_layer.update()
    return [parent, *children]


def copy_hierarchy(bpy, objects):
    copies = {}
    for obj in objects:
        copy = obj.copy()
        copy.data = obj.data.copy()
        bpy.context.scene.collection.objects.link(copy)
        copies[obj] = copy
    for obj, copy in copies.items():
        if obj.parent in copies:
            copy.parent = copies[obj.parent]
            copy.matrix_parent_inverse = obj.matrix_parent_inverse.copy()
    bpy.context.view_layer.update()
    return list(copies.values())


def main() -> int:
    from rig import install_from_zip
    work = Path(tempfile.mkdtemp(prefix="recon3d-bench-import-"))
    os.environ["BLENDER_USER_RESOURCES"] = str(work / "user")
    os.environ["RECON3D_DATA_DIR"] = str(work / "data")
    import bpy
    import numpy as np
    recon3d = install_from_zip(os.environ["RECON3D_ZIP"], work / "repo")
    importer = recon3d.blender.importer
    bpy.ops.wm.read_factory_settings(use_empty=True)
    recon3d = install_from_zip(os.environ["RECON3D_ZIP"], work / "repo")
    importer = recon3d.blender.importer

    # 1. Textured GLB: bare import vs Recon3D's import (+ placement + applied scale).
    glb = str(work / "pixal.glb")
    make_textured_glb(bpy, np, glb)
    before = snapshot(bpy)
    bpy.ops.import_scene.gltf(filepath=glb)
    vertices = sum(len(m.vertices) for m in bpy.data.meshes if m not in before["meshes"])
    remove_new(bpy, before)
    bare, ours = [], []
    for round_index in range(ROUNDS + 1):
        for which in (("bare", "ours") if round_index % 2 else ("ours", "bare")):
            before = snapshot(bpy)
            t0 = time.perf_counter()
            if which == "bare":
                bpy.ops.import_scene.gltf(filepath=glb)
            else:
                importer.import_files([glb], name="bench", placement="cursor")
            elapsed = time.perf_counter() - t0
            remove_new(bpy, before)
            if round_index:            # round 0 warms caches for both
                (bare if which == "bare" else ours).append(elapsed)
    ratio1 = median(ours) / median(bare)
    print(f"import benchmark 1: textured GLB, {vertices:,} vertices, 2048² texture, "
          f"{ROUNDS} rounds")
    print(f"  bare import_scene.gltf {median(bare) * 1e3:.1f} ms, Recon3D import + placement + "
          f"applied scale {median(ours) * 1e3:.1f} ms: ratio {ratio1:.3f} (target <= 1.15)")

    # 2. 1M-vertex hierarchy: transform_apply(scale=True) vs placement + applied scale.
    source = make_hierarchy(bpy, np)
    total = sum(len(o.data.vertices) for o in source)
    apply_times, place_times = [], []
    cursor = bpy.context.scene.cursor.location.copy()
    for round_index in range(ROUNDS + 1):
        copies = copy_hierarchy(bpy, source)
        for obj in bpy.context.view_layer.objects:
            obj.select_set(obj in copies)
        bpy.context.view_layer.objects.active = copies[0]
        t0 = time.perf_counter()
        bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
        elapsed_apply = time.perf_counter() - t0
        for obj in copies:
            bpy.data.meshes.remove(obj.data)
        copies = copy_hierarchy(bpy, source)
        t0 = time.perf_counter()
        importer.place_and_bake([copies], placement="cursor", target=cursor)
        elapsed_place = time.perf_counter() - t0
        assert all(tuple(o.scale) == (1.0, 1.0, 1.0) for o in copies)
        for obj in copies:
            bpy.data.meshes.remove(obj.data)
        if round_index:
            apply_times.append(elapsed_apply)
            place_times.append(elapsed_place)
    ratio2 = median(place_times) / median(apply_times)
    print(f"import benchmark 2: hierarchy of {len(source)} rotated, scaled meshes, "
          f"{total:,} vertices, {ROUNDS} rounds")
    print(f"  bare transform_apply(scale=True) {median(apply_times) * 1e3:.1f} ms, Recon3D "
          f"placement + applied scale {median(place_times) * 1e3:.1f} ms: ratio {ratio2:.2f} "
          f"(target <= 1.5)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
