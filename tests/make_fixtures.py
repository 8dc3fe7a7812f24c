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
        if lows:
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

    # 3. A hierarchy with rotations: a non-uniformly scaled, rotated parent; a rotated,
    #    scaled child; and a grandchild under an Empty in the middle (collapsed on import).
    reset()
    scene = bpy.context.scene
    parent = bpy.data.objects.new("parent", lumpy_mesh("parent", (0.6, 0.4, 0.3), seed=3))
    scene.collection.objects.link(parent)
    parent.location = (0.5, 1.0, -0.3)
    parent.rotation_euler = Euler((math.radians(20), math.radians(10), math.radians(35)))
    parent.scale = (1.5, 1.0, 0.6)
    child = bpy.data.objects.new("child", lumpy_mesh("child", (0.2, 0.3, 0.2), seed=4))
    scene.collection.objects.link(child)
    child.parent = parent
    child.location = (0.6, 0.0, 0.2)
    child.rotation_euler = Euler((0.0, math.radians(30), math.radians(45)))
    child.scale = (0.8, 0.8, 0.8)
    pivot = bpy.data.objects.new("pivot", None)
    scene.collection.objects.link(pivot)
    pivot.parent = parent
    pivot.location = (-0.5, 0.2, 0.0)
    pivot.rotation_euler = Euler((math.radians(-15), 0.0, 0.0))
    grandchild = bpy.data.objects.new("grandchild", lumpy_mesh("gc", (0.15, 0.15, 0.4), seed=5))
    scene.collection.objects.link(grandchild)
    grandchild.parent = pivot
    grandchild.location = (0.0, 0.0, 0.3)
    grandchild.scale = (1.2, 0.7, 1.0)
    export("hierarchy", {"expected_parents": {"parent": None, "child": "parent",
                                              "grandchild": "parent"}})

    # 4. Three objects sharing one mesh: two with the same scale (one mesh transform serves
    #    both), one with another scale (it needs its own copy).
    reset()
    scene = bpy.context.scene
    shared = lumpy_mesh("shared", (0.3, 0.3, 0.3), seed=6)
    for name, loc, rot, scale in (("twin_a", (0, 0, 0), 0, 2.0),
                                  ("twin_b", (1.5, 0, 0.2), 90, 2.0),
                                  ("small", (-1.0, 0.5, 0), 30, 0.5)):
        obj = bpy.data.objects.new(name, shared)
        scene.collection.objects.link(obj)
        obj.location = loc
        obj.rotation_euler = Euler((0, 0, math.radians(rot)))
        obj.scale = (scale, scale, scale)
    export("shared_mesh")

    # 5. A textured PBR mesh (as Pixal3D returns): UVs, base-colour image, no vertex colours.
    reset()
    scene = bpy.context.scene
    mesh = lumpy_mesh("textured", (0.5, 0.5, 0.7), seed=7, colours=False)
    uv = mesh.uv_layers.new(name="UVMap")
    coords = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    loops = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    coords[0::2] = (co[loops, 0] + 0.5) % 1.0
    coords[1::2] = (co[loops, 2] + 0.5) % 1.0
    uv.data.foreach_set("uv", coords)
    tex = bpy.data.images.new("albedo", 64, 64)
    pix = np.zeros((64, 64, 4), dtype=np.float32)
    pix[..., 0] = np.linspace(0.2, 1, 64)[None, :]
    pix[..., 2] = np.linspace(1, 0.2, 64)[:, None]
    pix[..., 3] = 1
    tex.pixels.foreach_set(pix.ravel())
    tex.filepath_raw = os.path.join(out_dir, "albedo.png")
    tex.file_format = "PNG"
    tex.save()
    mat = bpy.data.materials.new("pbr")
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = tex
    mat.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.6
    mesh.materials.append(mat)
    obj = bpy.data.objects.new("textured", mesh)
    scene.collection.objects.link(obj)
    obj.location = (0.2, 0.0, 0.4)
    obj.rotation_euler = Euler((0.1, 0.2, 0.3))
    export("textured")

    # 6. Several objects of one photo in one file, and 7. a file with no mesh at all.
    reset()
    scene = bpy.context.scene
    for name, loc, seed in (("cup", (0.3, 2.0, -0.5), 8), ("saucer", (-0.4, 2.2, -0.6), 9)):
        obj = bpy.data.objects.new(name, lumpy_mesh(name, (0.2, 0.2, 0.15), seed=seed))
        scene.collection.objects.link(obj)
        obj.location = loc
    export("pair")
    reset()
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("lonely", None))
    export("no_mesh")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)    # a bpy-module process can hang at interpreter exit
