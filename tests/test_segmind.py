# SPDX-License-Identifier: GPL-3.0-or-later
"""Segmind's SAM 3D Objects end to end: photo on disk → emulator → objects on the cursor."""
from __future__ import annotations

import base64
import importlib
import io
import os
import contextlib

import bpy
import numpy as np
import pytest
from mathutils import Quaternion, Vector

from conftest import PKG, bottom_centre, count_data
from emulator import TEST_KEYS


def world_bounds(objects):
    _, low, high = bottom_centre(objects)
    return low, high


@pytest.fixture
def posed(emulator, fixtures):
    emulator.segmind.result = fixtures.glb("sam3d_posed")
    return fixtures.meta("sam3d_posed")


def test_reconstruct_lands_on_cursor_with_scale_applied(api, emulator, fixtures, posed):
    cursor = Vector((1.5, -2.0, 0.75))
    bpy.context.scene.cursor.location = cursor

    objects = api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d",
                              prompt="chair", seed=7)

    assert [o.type for o in objects] == ["MESH"]
    job = api.jobs()[-1]
    assert job.state == "imported" and job.provider == "segmind_sam3d"
    # No wrapper Empty left anywhere.
    assert [o for o in bpy.data.objects if o.type == "EMPTY"] == []
    for obj in objects:
        assert tuple(obj.scale) == (1.0, 1.0, 1.0)
        assert obj.parent is None
    bpy.context.view_layer.update()
    low, high = world_bounds(objects)
    bottom_centre = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])
    assert np.allclose(bottom_centre, cursor, atol=1e-5), (bottom_centre, cursor)
    # Same world size as the GLB (measured by the exporter that wrote it).
    expected = np.array(posed["high"]) - np.array(posed["low"])
    assert np.allclose(high - low, expected, rtol=1e-4, atol=1e-6), (high - low, expected)
    # Rotation kept as returned (the wrapper's rotation folded in), only scale baked.
    expected_rot = Quaternion(posed["objects"]["geometry_0"]["rotation"])
    got_rot = objects[0].matrix_world.to_quaternion()
    assert abs(got_rot.dot(expected_rot)) > 1 - 1e-6
    # One collection named after the job, holding exactly the job's objects.
    coll = bpy.data.collections[f"Recon3D {job.id}"]
    assert set(coll.objects) == set(objects)
    assert all(list(o.users_collection) == [coll] for o in objects)
    assert coll.name in bpy.context.scene.collection.children
    # Vertex colours are wired into a material.
    mat = objects[0].data.materials[0]
    assert any(n.type == "VERTEX_COLOR" for n in mat.node_tree.nodes)
    assert job.imported_objects == [o.name for o in objects]


def test_one_submit_with_image_prompt_seed_and_key_cdn_gets_no_key(api, emulator, fixtures,
                                                                    posed):
    api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d", prompt="chair",
                    seed=7)
    submits = emulator.segmind.submits
    assert len(submits) == 1
    body = submits[0].json
    with open(fixtures.path("photo.png"), "rb") as fh:
        assert base64.b64decode(body["image"]) == fh.read()
    assert body["prompt"] == "chair"
    assert body["seed"] == 7
    assert submits[0].headers["x-api-key"] == TEST_KEYS["segmind"]
    cdn = emulator.requests(server="cdn")
    assert len(cdn) >= 1
    for req in cdn:
        assert "x-api-key" not in req.headers
        assert "authorization" not in req.headers
        assert TEST_KEYS["segmind"] not in repr(req.headers)


def test_failed_job_raises_with_reason_and_leaves_scene(api, emulator, fixtures, posed):
    emulator.segmind.fail_reason = "No object matching the prompt 'unicorn' was found"
    bpy.context.scene.cursor.location = (1, 2, 3)
    before = count_data()
    with pytest.raises(api.Recon3DError) as info:
        api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d", prompt="unicorn")
    message = str(info.value)
    assert "No object matching the prompt 'unicorn' was found" in message
    assert "Segmind" in message
    assert count_data() == before
    assert api.jobs()[-1].state == "failed"
    assert len(emulator.segmind.submits) == 1


def test_wrong_key_says_which_key_and_where_to_set_it(api, emulator, fixtures, posed):
    os.environ["SEGMIND_API_KEY"] = "wrong-key-123"
    before = count_data()
    with pytest.raises(api.Recon3DError) as info:
        api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d", prompt="chair")
    message = str(info.value)
    assert "Segmind" in message and "API key" in message
    assert "Preferences › Add-ons › Recon3D" in message
    assert "SEGMIND_API_KEY" in message
    assert "wrong-key-123" not in message
    assert info.value.code == "auth"
    assert count_data() == before
    assert len(emulator.segmind.submits) == 0     # refused by the service: nothing billed
    assert len(emulator.requests(contains="/v2/sam-3d-objects")) == 1


def test_missing_key_is_refused_before_anything_is_sent(api, emulator, fixtures):
    del os.environ["SEGMIND_API_KEY"]
    with pytest.raises(api.Recon3DError) as info:
        api.submit(fixtures.path("photo.png"), "segmind_sam3d")
    assert "No Segmind API key is set" in str(info.value)
    assert emulator.requests() == []


def test_preference_key_wins_over_environment(api, recon3d, emulator, fixtures, posed):
    prefs = bpy.context.preferences.addons[PKG].preferences
    os.environ["SEGMIND_API_KEY"] = "stale-env-key"
    prefs.segmind_api_key = TEST_KEYS["segmind"]
    try:
        objects = api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d")
    finally:
        prefs.segmind_api_key = ""
    assert len(objects) == 1
    assert emulator.segmind.submits[0].headers["x-api-key"] == TEST_KEYS["segmind"]


def test_remote_host_refused_while_online_access_is_off(api, emulator, fixtures):
    assert bpy.app.online_access is False         # the bpy module starts offline
    os.environ["RECON3D_SEGMIND_URL"] = "https://api.segmind.example"
    with pytest.raises(api.Recon3DError) as info:
        api.submit(fixtures.path("photo.png"), "segmind_sam3d")
    assert "online access is off" in str(info.value)
    assert "Allow Online Access" in str(info.value)
    assert emulator.requests() == []


@pytest.mark.parametrize("kwargs, fragment", [
    ({"image": "/nonexistent/photo.png"}, "does not exist"),
    ({"image": "NOT_AN_IMAGE"}, "not an image Blender can read"),
    ({"seed": 2_000_000}, "0 to 1,000,000"),
    ({"points": [(10, 10)], "boxes": [(1, 1, 5, 5), (2, 2, 6, 6)]}, "at most 1 box"),
    ({"points": [(500, 10)]}, "outside the image"),
    ({"options": {"includeArtifacts": True}}, "did you mean 'include_artifacts'?"),
    ({"options": {"seed": 3}}, "seed is set by Recon3D itself"),
    ({"provider": "nope"}, "Unknown provider"),
])
def test_bad_input_refused_before_upload(api, emulator, fixtures, tmp_path, kwargs, fragment):
    kwargs = dict(kwargs)
    image = kwargs.pop("image", fixtures.path("photo.png"))
    if image == "NOT_AN_IMAGE":
        image = str(tmp_path / "notes.png")
        with open(image, "w") as fh:
            fh.write("this is not a picture")
    provider = kwargs.pop("provider", "segmind_sam3d")
    before = count_data()
    with pytest.raises(api.Recon3DError) as info:
        api.submit(image, provider, **kwargs)
    assert fragment in str(info.value)
    assert emulator.requests() == []
    assert count_data() == before


def test_operator_job_imports_through_the_drain(api, recon3d, emulator, fixtures, posed):
    """The UI path: Generate → worker → drain() (what the timer calls) imports at the cursor."""
    bridge = importlib.import_module(f"{PKG}.blender.main_thread")
    form = bpy.context.scene.recon3d
    form.image_path = fixtures.path("photo.png")
    form.provider = "segmind_sam3d"
    form.prompt = "chair"
    bpy.context.scene.cursor.location = (0.0, 4.0, 1.0)
    assert bpy.ops.recon3d.submit() == {"FINISHED"}
    job = api.jobs()[-1]
    assert bpy.app.timers.is_registered(bridge._tick)
    assert job.wait(timeout=30).state == "ready"
    assert [o for o in bpy.data.objects if o.type == "MESH"] == []   # nothing until drained
    handled = 0
    for _ in range(5):
        handled += bridge.drain()
        if job.state == "imported":
            break
    assert handled >= 1
    assert job.state == "imported"
    objects = [bpy.data.objects[name] for name in job.imported_objects]
    low, high = world_bounds(objects)
    assert np.allclose([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]], (0, 4, 1),
                       atol=1e-5)
    assert bridge._tick() is None      # no active jobs left: the timer unregisters itself


def test_cli_generate_and_errors(recon3d, emulator, fixtures, posed, capsys):
    cli = importlib.import_module(f"{PKG}.cli")
    assert cli.main(["generate", fixtures.path("photo.png"), "--provider", "segmind_sam3d",
                     "--prompt", "chair", "--seed", "3", "--placement", "origin"]) == 0
    out = capsys.readouterr().out
    assert "imported 1 object" in out
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    low, high = world_bounds(meshes)
    assert np.allclose([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]], 0, atol=1e-5)
    assert cli.main(["generate", "/nonexistent.png"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert cli.main(["jobs"]) == 0
    assert "imported" in capsys.readouterr().out


def test_data_directory_never_holds_a_key(api, emulator, fixtures, posed):
    api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d", prompt="chair")
    data_dir = os.environ["RECON3D_DATA_DIR"]
    files = [os.path.join(d, f) for d, _, fs in os.walk(data_dir) for f in fs]
    assert any(f.endswith("job.json") for f in files)
    for path in files:
        with open(path, "rb") as fh:
            content = fh.read()
        for key in TEST_KEYS.values():
            assert key.encode() not in content, path
            assert base64.b64encode(key.encode()) not in content, path
