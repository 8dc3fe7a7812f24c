# SPDX-License-Identifier: GPL-3.0-or-later
"""The import an artist expects, on every supported Blender: placed, sized, scale applied,
rotations and parenting kept, coloured, all or nothing.

Expected values come from a bare `bpy.ops.import_scene.gltf` of the same file in the same
Blender (then removed), so they do not depend on Recon3D's own code."""
from __future__ import annotations

import os
import struct

import bpy
import numpy as np
import pytest
from mathutils import Matrix, Vector

from conftest import count_data, read_image

FIXTURES = ("sam3d_posed", "hierarchy", "shared_mesh", "textured", "pair")
ALL_DATA = ("objects", "meshes", "materials", "images", "collections", "textures",
            "node_groups", "cameras", "lights", "actions")


def snapshot_ids() -> dict:
    return {name: set(getattr(bpy.data, name)) for name in ALL_DATA}


def remove_new(before: dict) -> None:
    for name in ALL_DATA:
        coll = getattr(bpy.data, name)
        for item in [i for i in coll if i not in before[name]]:
            coll.remove(item)


def world_vertices(obj) -> np.ndarray:
    count = len(obj.data.vertices)
    co = np.empty(count * 3)
    obj.data.vertices.foreach_get("co", co)
    mw = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]


def nearest_mesh_parent(obj):
    parent = obj.parent
    while parent is not None and parent.type == "EMPTY":
        parent = parent.parent
    return parent.name if parent else None


def bare_import(path: str) -> dict:
    """What Blender's own importer makes of the file: world vertices, rotations, parents."""
    before = snapshot_ids()
    bpy.ops.import_scene.gltf(filepath=path)
    bpy.context.view_layer.update()
    found = {}
    for obj in bpy.data.objects:
        if obj in before["objects"] or obj.type != "MESH":
            continue
        found[obj.name] = {"verts": world_vertices(obj),
                           "rotation": obj.matrix_world.decompose()[1],
                           "parent": nearest_mesh_parent(obj)}
    remove_new(before)
    return found


def expected_placement(bare: dict, placement: str, target, size) -> Matrix:
    pts = np.concatenate([o["verts"] for o in bare.values()])
    low, high = pts.min(0), pts.max(0)
    bottom = Vector(((low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]))
    factor = size / float(max(high - low)) if size else 1.0
    scale = Matrix.Diagonal(Vector((factor, factor, factor, 1.0)))
    goal = {"original": bottom, "origin": Vector(), "cursor": Vector(target)}[placement]
    return Matrix.Translation(goal) @ scale @ Matrix.Translation(-bottom)


@pytest.mark.parametrize("size", [None, 0.8])
@pytest.mark.parametrize("placement", ["cursor", "origin", "original"])
@pytest.mark.parametrize("fixture", FIXTURES)
def test_placement_scale_vertices_rotations_parents(recon3d, fixtures, fixture, placement,
                                                    size):
    path = fixtures.path(f"{fixture}.glb")
    bare = bare_import(path)
    cursor = (1.25, -0.5, 0.3)
    bpy.context.scene.cursor.location = cursor
    objects = recon3d.blender.importer.import_files([path], name=f"T {fixture}", placement=placement,
                                            target_size=size)
    bpy.context.view_layer.update()
    place = np.array(expected_placement(bare, placement, cursor, size))
    meshes = {o.name: o for o in objects if o.type == "MESH"}
    assert set(meshes) == set(bare)
    assert [o for o in bpy.data.objects if o.type == "EMPTY"] == []
    for name, obj in meshes.items():
        assert tuple(obj.scale) == (1.0, 1.0, 1.0), name
        want = bare[name]["verts"] @ place[:3, :3].T + place[:3, 3]
        got = world_vertices(obj)
        span = float(np.ptp(want, axis=0).max())
        assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * span), name
        rot = obj.matrix_world.decompose()[1]
        assert abs(rot.dot(bare[name]["rotation"])) > 1 - 1e-6, name
        assert (obj.parent.name if obj.parent else None) == bare[name]["parent"], name
    if fixture == "hierarchy":
        parents = fixtures.meta("hierarchy")["expected_parents"]
        assert {n: (meshes[n].parent.name if meshes[n].parent else None) for n in meshes} == \
            parents
    if fixture == "shared_mesh":
        by_name = {o.name: o for o in objects}
        # The two same-scale twins still share one mesh, transformed once; the small one has
        # its own copy (its residual scale differs).
        assert by_name["twin_a"].data == by_name["twin_b"].data
        assert by_name["small"].data != by_name["twin_a"].data
    collections = {c for o in objects for c in o.users_collection}
    assert len(collections) == 1 and next(iter(collections)).name == f"T {fixture}"


def test_textured_result_keeps_its_material_and_packs_images(recon3d, fixtures):
    objects = recon3d.blender.importer.import_files([fixtures.path("textured.glb")], name="T tex")
    mesh = objects[0].data
    mat = mesh.materials[0]
    textures = [n for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"]
    assert textures and textures[0].image is not None
    assert textures[0].image.packed_file is not None       # the .blend travels
    assert not any(n.type == "VERTEX_COLOR" for n in mat.node_tree.nodes)


def test_variations_are_laid_side_by_side(recon3d, fixtures):
    path = fixtures.path("blob.glb")
    bpy.context.scene.cursor.location = (0, 0, 0)
    objects = recon3d.blender.importer.import_files([path, path, path], name="T var",
                                            layout="side_by_side")
    assert len(objects) == 3
    boxes = []
    for obj in objects:
        pts = world_vertices(obj)
        boxes.append((pts.min(0), pts.max(0)))
        assert abs(pts.min(0)[2]) < 1e-5                     # each stands on the cursor plane
    boxes.sort(key=lambda b: b[0][0])
    for (low_a, high_a), (low_b, high_b) in zip(boxes, boxes[1:]):
        assert high_a[0] < low_b[0]                          # no overlap along X
    centre = (boxes[0][0][0] + boxes[-1][1][0]) / 2
    assert abs(centre) < 1e-4                                # the row is centred on the cursor


def test_match_photo_camera(recon3d, api, emulator, fixtures):
    emulator.segmind.result = fixtures.glb("sam3d_posed")
    bpy.context.scene.render.resolution_x = 1000
    objects = api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d",
                              placement="original", match_camera=True)
    cameras = [o for o in bpy.data.objects if o.type == "CAMERA"]
    assert len(cameras) == 1
    cam = cameras[0]
    assert cam.location.length < 1e-9
    forward = cam.matrix_world.to_3x3() @ Vector((0, 0, -1))
    assert (forward - Vector((0, 1, 0))).length < 1e-6
    assert cam.data.show_background_images
    assert os.path.basename(cam.data.background_images[0].image.filepath).startswith("input")
    assert bpy.context.scene.render.resolution_y == round(1000 * 64 / 96)
    assert set(cam.users_collection) == set(objects[0].users_collection)
    meta = fixtures.meta("sam3d_posed")
    pts = world_vertices(objects[0])
    assert np.allclose(pts.min(0), meta["low"], atol=1e-4)  # "original": as returned


def _glb_with_half_buffer(data: bytes) -> bytes:
    """A GLB whose declared lengths agree but whose binary chunk is cut in half."""
    json_len = struct.unpack("<I", data[12:16])[0]
    json_end = 20 + json_len
    bin_len = struct.unpack("<I", data[json_end:json_end + 4])[0]
    half = (bin_len // 2) // 4 * 4
    body = data[20:json_end]
    chunk = struct.pack("<I", half) + b"BIN\0" + data[json_end + 8:json_end + 8 + half]
    total = 12 + 8 + len(body) + len(chunk)
    return b"glTF" + struct.pack("<II", 2, total) + struct.pack("<I", json_len) + b"JSON" + \
        body + chunk


@pytest.mark.parametrize("kind, fragment", [
    ("corrupt_json", "damaged"),
    ("corrupt_buffer", "Nothing was imported"),
    ("truncated", "cut off"),
    ("not_glb", "is not a GLB model"),
    ("no_mesh", "holds no mesh"),
])
def test_bad_results_raise_and_leave_the_file_exactly_as_it_was(recon3d, api, fixtures,
                                                                tmp_path, kind, fragment):
    good = fixtures.glb("sam3d_posed")
    if kind == "corrupt_json":
        data = bytearray(good)
        data[20:60] = b"\x00\xff" * 20
        data = bytes(data)
    elif kind == "corrupt_buffer":
        data = _glb_with_half_buffer(good)
    elif kind == "truncated":
        data = good[: len(good) // 2]
    elif kind == "not_glb":
        with open(fixtures.path("photo.png"), "rb") as fh:
            data = fh.read()
    else:
        data = fixtures.glb("no_mesh")
    path = tmp_path / f"{kind}.glb"
    path.write_bytes(data)
    # Something already in the file, which must survive untouched.
    bpy.ops.mesh.primitive_cube_add()
    before = count_data()
    before_ids = snapshot_ids()
    with pytest.raises(api.Recon3DError) as info:
        recon3d.blender.importer.import_files([str(path)], name="T bad")
    assert fragment in str(info.value), str(info.value)
    assert "Traceback" not in str(info.value)
    assert count_data() == before
    assert snapshot_ids() == before_ids


def test_vertex_coloured_result_renders_coloured_in_cycles(recon3d, fixtures, tmp_path):
    scene = bpy.context.scene
    objects = recon3d.blender.importer.import_files([fixtures.path("sam3d_posed.glb")], name="T col",
                                            placement="origin")
    obj = objects[0]
    cam_data = bpy.data.cameras.new("cam")
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (0.0, -1.6, 0.5)
    cam.rotation_euler = (1.35, 0.0, 0.0)
    scene.camera = cam
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 4.0
    sun.rotation_euler = (0.6, 0.2, 0.0)
    scene.collection.objects.link(sun)
    if scene.world is None:
        scene.world = bpy.data.worlds.new("world")
    if bpy.app.version < (5, 0):              # always on (and deprecated) from 5.0
        scene.world.use_nodes = True
    scene.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.render.resolution_x = scene.render.resolution_y = 48
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"

    def render(name):
        scene.render.filepath = str(tmp_path / name)
        bpy.ops.render.render(write_still=True)
        pixels = read_image(str(tmp_path / name), tmp_path)
        lit = pixels[..., :3].max(-1) > 0.05
        assert lit.sum() > 50, "the object should fill part of the frame"
        rgb = pixels[lit][:, :3]
        return float(np.median(rgb[:, 0] - rgb[:, 2]))

    coloured = render("coloured.png")
    material = obj.data.materials[0]
    obj.data.materials.clear()                  # the control: the same mesh without it
    grey = render("grey.png")
    obj.data.materials.append(material)
    assert coloured > 0.15, coloured            # orange vertex colours: red well above blue
    assert abs(grey) < 0.05, grey               # without the material Blender renders grey
