# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the test GLBs with Blender's own glTF exporter (run once per test session, in a
separate bpy process so the test session's file stays clean).

    python make_fixtures.py OUT_DIR

Writes each fixture as NAME.glb plus NAME.json with what the tests need to know about it:
the world-space bounding box of its meshes (Blender Z-up) and its world vertex positions.
"""
from __future__ import annotations

import json
import math
import os
import sys


def main(out_dir: str) -> int:
    import bpy
    import numpy as np
    from mathutils import Euler, Matrix, Vector

    os.makedirs(out_dir, exist_ok=True)

    def reset():
        bpy.ops.wm.read_factory_settings(use_empty=True)

    def lumpy_mesh(name, size, seed=1, colours=True, subdiv=3):
        """An irregular, vertex-coloured blob of roughly `size` (x, y, z) metres."""
        import bmesh
        rng = np.random.default_rng(seed)
        bm = bmesh.new()
        bmesh.ops.create_icosphere(bm, subdivisions=subdiv, radius=0.5)
        for v in bm.verts:
            v.co *= 1.0 + 0.15 * float(rng.uniform(-1, 1))
            v.co.x *= size[0]
            v.co.y *= size[1]
            v.co.z *= size[2]
        mesh = bpy.data.meshes.new(name)
        bm.to_mesh(mesh)
        bm.free()
        if colours:
            attr = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
            cols = np.empty((len(mesh.vertices), 4), dtype=np.float32)
            co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
            mesh.vertices.foreach_get("co", co)
            co = co.reshape(-1, 3)
            cols[:, 0] = 0.8
            cols[:, 1] = 0.25 + 0.2 * (co[:, 2] > 0)
            cols[:, 2] = 0.1
            cols[:, 3] = 1.0
            attr.data.foreach_set("color", cols.ravel())
            mesh.color_attributes.active_color = attr
        return mesh

    def export(name, extra=None):
        path = os.path.join(out_dir, name + ".glb")
        op = bpy.ops.export_scene.gltf
        accepted = {p.identifier for p in op.get_rna_type().properties}
        wanted = {"filepath": path, "export_format": "GLB", "use_selection": False,
                  "export_yup": True, "export_apply": False, "export_vertex_color": "ACTIVE",
                  "export_colors": True, "export_materials": "EXPORT",
                  "export_animations": False, "export_extras": False}
        op(**{k: v for k, v in wanted.items() if k in accepted})
        bpy.context.view_layer.update()
        meta = {"name": name, "objects": {}}
        lows, highs = [], []
        for obj in bpy.context.scene.objects:
            if obj.type != "MESH":
                continue
            deps = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
            mw = np.array(deps.matrix_world)
            co = np.empty(len(obj.data.vertices) * 3)
            obj.data.vertices.foreach_get("co", co)
            pts = co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]
            lows.append(pts.min(0))
            highs.append(pts.max(0))
            meta["objects"][obj.name] = {
                "vertex_count": len(obj.data.vertices),
                "low": pts.min(0).tolist(), "high": pts.max(0).tolist(),
                "first_vertices": pts[:8].tolist(),
                "parent": obj.parent.name if obj.parent else None,
                "rotation": list(deps.matrix_world.to_quaternion()),
            }
        meta["low"] = np.min(lows, 0).tolist()
        meta["high"] = np.max(highs, 0).tolist()
        meta.update(extra or {})
        with open(os.path.join(out_dir, name + ".json"), "w") as fh:
            json.dump(meta, fh, indent=1)

    # 1. Shaped like real SAM 3D output: posed ~2.6 m in front of the camera, below z = 0,
    #    0.55 x 0.24 x 0.19 m, under a wrapper Empty named "world", vertex colours, no material.
    reset()
    scene = bpy.context.scene
    world = bpy.data.objects.new("world", None)
    scene.collection.objects.link(world)
    world.rotation_euler = Euler((0.0, 0.0, math.radians(12.0)))
    mesh = lumpy_mesh("geometry_0", (0.55 / 1.3, 0.24 / 1.3, 0.19 / 1.3), subdiv=4)
    obj = bpy.data.objects.new("geometry_0", mesh)
    scene.collection.objects.link(obj)
    obj.parent = world
    obj.location = (0.15, 2.6, -0.45)
    obj.rotation_euler = Euler((math.radians(8), math.radians(-5), math.radians(30)))
    obj.scale = (1.3, 1.3, 1.3)
    export("sam3d_posed", {"wrapper": "world"})

    # A small photo (PNG) with a gradient, as the artist's input image.
    img = bpy.data.images.new("photo", 96, 64, alpha=False)
    px = np.zeros((64, 96, 4), dtype=np.float32)
    px[..., 0] = np.linspace(0, 1, 96)[None, :]
    px[..., 1] = np.linspace(0, 1, 64)[:, None]
    px[..., 2] = 0.3
    px[..., 3] = 1.0
    img.pixels.foreach_set(px.ravel())
    img.filepath_raw = os.path.join(out_dir, "photo.png")
    img.file_format = "PNG"
    img.save()

    # 2. A plain unit-ish cube at the origin, for quick protocol tests.
    reset()
    scene = bpy.context.scene
    mesh = lumpy_mesh("blob", (0.4, 0.3, 0.5), seed=2, subdiv=2)
    obj = bpy.data.objects.new("blob", mesh)
    scene.collection.objects.link(obj)
    export("blob")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)    # a bpy-module process can hang at interpreter exit
