# SPDX-License-Identifier: GPL-3.0-or-later
"""All four hosted models end to end against the emulator, and what each one accepts."""
from __future__ import annotations

import base64
import importlib

import bpy
import numpy as np
import pytest

from conftest import PKG, bottom_centre, count_data, read_image, write_png
from emulator import TEST_KEYS
from emulator.runware import poll_validator, task_validator


def serve(emulator, provider: str, glbs: list[bytes]) -> None:
    """Make the emulated service of `provider` return these GLBs."""
    if provider == "segmind_sam3d":
        emulator.segmind.result = glbs[0]
    elif provider.startswith("scenario"):
        emulator.scenario.results = list(glbs)
    else:
        emulator.runware.results = list(glbs)


def billed(emulator, provider: str) -> int:
    if provider == "segmind_sam3d":
        return len(emulator.segmind.submits)
    if provider.startswith("scenario"):
        return len(emulator.scenario.submits)
    return emulator.runware.billed


CASES = {
    "segmind_sam3d": dict(prompt="chair", seed=7, points=[(40, 30)]),
    "scenario_sam3d": dict(prompt="chair", seed=7, points=[(40, 30)], boxes=[(10, 10, 60, 50)]),
    "scenario_pixal3d": dict(seed=7, options={"ssSamplingSteps": 20, "remesh": False,
                                              "texSlatGuidanceStrength": 1.5}),
    "runware_sam3d": dict(prompt="chair", seed=7),
}


@pytest.mark.parametrize("provider", list(CASES))
def test_each_provider_reconstructs_on_the_cursor(api, emulator, fixtures, provider):
    serve(emulator, provider, [fixtures.glb("sam3d_posed")])
    reconstruct_on_the_cursor(api, fixtures, provider, CASES[provider])
    assert billed(emulator, provider) == 1


def reconstruct_on_the_cursor(api, fixtures, provider, kwargs) -> list:
    """The SAM-3D-like fixture through `provider`: one mesh, bottom-centre on the cursor, the
    GLB's own size, scale applied, no wrapper Empty left. Returns the objects."""
    bpy.context.scene.cursor.location = (-1.0, 2.0, 0.5)
    objects = api.reconstruct(fixtures.path("photo.png"), provider=provider, **kwargs)
    assert [o.type for o in objects] == ["MESH"]
    assert all(tuple(o.scale) == (1.0, 1.0, 1.0) for o in objects)
    centre, low, high = bottom_centre(objects)
    assert np.allclose(centre, (-1.0, 2.0, 0.5), atol=1e-5)
    meta = fixtures.meta("sam3d_posed")
    assert np.allclose(high - low, np.array(meta["high"]) - np.array(meta["low"]), rtol=1e-4)
    assert [o for o in bpy.data.objects if o.type == "EMPTY"] == []
    return objects
    job = api.jobs()[-1]
    assert job.provider == provider and job.state == "imported"


def test_scenario_request_shapes_and_auth(api, emulator, fixtures):
    serve(emulator, "scenario_sam3d", [fixtures.glb("blob")])
    mask = write_png(fixtures.dir / "mask96.png", np.ones((64, 96, 4)))
    api.reconstruct(fixtures.path("photo.png"), provider="scenario_sam3d", prompt="chair",
                    seed=11, points=[(40, 30)], boxes=[(10, 10, 60, 50)], mask=[mask, mask])
    token = base64.b64encode(f"{TEST_KEYS['scenario_key']}:{TEST_KEYS['scenario_secret']}"
                             .encode()).decode()
    for req in emulator.requests(server="api", contains="/scenario/"):
        assert req.headers["authorization"] == f"Basic {token}"
    for req in emulator.requests(server="cdn"):
        assert "authorization" not in req.headers
    assert len(emulator.scenario.uploads) == 3            # image + two masks
    body = emulator.scenario.submits[0].json
    assert body["image"].startswith("asset_") and len(body["mask"]) == 2
    assert body["prompt"] == "chair" and body["seed"] == 11
    assert body["pointPrompts"] == [{"x": 40, "y": 30}]
    assert body["boxPrompts"] == [{"x1": 10, "y1": 10, "x2": 60, "y2": 50}]
    job = api.jobs()[-1]
    assert job.cost == emulator.scenario.cu_cost


def test_pixal3d_sends_only_the_options_set(api, emulator, fixtures):
    serve(emulator, "scenario_pixal3d", [fixtures.glb("blob")])
    api.reconstruct(fixtures.path("photo.png"), provider="scenario_pixal3d",
                    **CASES["scenario_pixal3d"])
    body = emulator.scenario.submits[0].json
    assert emulator.requests(contains="/generate/custom/model_pixal3d")
    assert body == {"image": body["image"], "ssSamplingSteps": 20, "remesh": False,
                    "texSlatGuidanceStrength": 1.5, "seed": 7}


def test_scenario_several_objects_keep_their_layout(api, emulator, fixtures):
    serve(emulator, "scenario_sam3d", [fixtures.glb("sam3d_posed"), fixtures.glb("blob")])
    bpy.context.scene.cursor.location = (3.0, 0.0, 0.0)
    objects = api.reconstruct(fixtures.path("photo.png"), provider="scenario_sam3d",
                              prompt="chair")
    assert len(objects) == 2
    assert len({tuple(o.users_collection) for o in objects}) == 1
    centre, _, _ = bottom_centre(objects)
    assert np.allclose(centre, (3, 0, 0), atol=1e-5)
    # The two objects moved together: their offset is the one the service returned.
    posed, blob = fixtures.meta("sam3d_posed"), fixtures.meta("blob")
    by_name = {o.name.split(".")[0]: o for o in objects}
    got = bottom_centre([by_name["geometry_0"]])[1] - bottom_centre([by_name["blob"]])[1]
    want = np.array(posed["low"]) - np.array(blob["low"])
    assert np.allclose(got, want, atol=1e-5)


def _rgba_photo(path, width=64, height=32):
    rgba = np.ones((height, width, 4), dtype=np.float32) * 0.6
    rgba[:, : width // 2, 3] = 0.0            # left half transparent
    return write_png(path, rgba)


def test_runware_bodies_validate_against_vendor_schema_with_derived_masks(api, emulator,
                                                                          fixtures, tmp_path):
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    api.reconstruct(fixtures.path("photo.png"), provider="runware_sam3d", prompt="chair",
                    seed=5)
    api.reconstruct(_rgba_photo(tmp_path / "cutout.png"), provider="runware_sam3d")
    assert emulator.runware.invalid == []
    tasks = [t for req in emulator.runware.bodies for t in req.json]
    inference = [t for t in tasks if t["taskType"] == "3dInference"]
    polls = [t for t in tasks if t["taskType"] == "getResponse"]
    assert len(inference) == 2 and polls
    validate, validate_poll = task_validator(), poll_validator()
    for task in inference:
        validate.validate(task)
    for task in polls:
        validate_poll.validate(task)
    # The schema check can fail: an extra property is refused.
    with pytest.raises(Exception):
        validate.validate(dict(inference[0], steps=3))
    # Derived masks: whole image for an opaque photo; the alpha for a cut-out.
    first, second = inference
    assert first["positivePrompt"] == "chair" and first["seed"] == 5
    for task, (w, h) in ((first, (96, 64)), (second, (64, 32))):
        assert task["inputs"]["mask"].startswith("data:image/png;base64,")
        mask = read_image(base64.b64decode(task["inputs"]["mask"].split(",", 1)[1]), tmp_path)
        assert mask.shape[:2] == (h, w)
        if task is first:
            assert mask[..., 0].min() > 0.99
        else:
            assert mask[:, : w // 2 - 1, 0].max() < 0.01
            assert mask[:, w // 2 + 1:, 0].min() > 0.99
    assert {r.headers["authorization"] for r in emulator.requests(contains="/runware/")} == \
        {f"Bearer {TEST_KEYS['runware']}"}
    job = api.jobs()[-1]
    assert job.cost == pytest.approx(emulator.runware.cost)


@pytest.fixture(scope="module")
def huge_photo(fixtures):
    """7000 x 3500 px, black, with a red square around (6980, 3480) and a mask marking it."""
    width, height = 7000, 3500
    rgba = np.zeros((height, width, 4), dtype=np.float32)
    rgba[..., 3] = 1.0
    rgba[3470:3491, 6970:6991, 0] = 1.0
    photo = write_png(fixtures.dir / "huge.png", rgba)
    mask = np.zeros((height, width, 4), dtype=np.float32)
    mask[..., 3] = 1.0
    mask[3470:3491, 6970:6991, :3] = 1.0
    return photo, write_png(fixtures.dir / "huge-mask.png", mask), (6980, 3480)


@pytest.mark.parametrize("provider", ["segmind_sam3d", "scenario_sam3d"])
def test_downscaled_photo_keeps_points_and_mask_on_the_same_pixels(api, emulator, fixtures,
                                                                   huge_photo, provider,
                                                                   tmp_path):
    photo, mask, (px, py) = huge_photo
    serve(emulator, provider, [fixtures.glb("blob")])
    api.reconstruct(photo, provider=provider, points=[(px, py)], mask=mask)
    if provider == "segmind_sam3d":
        body = emulator.segmind.submits[0].json
        image_bytes = base64.b64decode(body["image"])
        mask_bytes = base64.b64decode(body["mask"])
        x, y = eval(body["point_coords"])[0]         # "[[x,y]]", Segmind's string format
    else:
        body = emulator.scenario.submits[0].json
        image_bytes = emulator.scenario.assets[body["image"]]["data"]
        mask_bytes = emulator.scenario.assets[body["mask"][0]]["data"]
        x, y = body["pointPrompts"][0]["x"], body["pointPrompts"][0]["y"]
    image = read_image(image_bytes, tmp_path)
    sent_mask = read_image(mask_bytes, tmp_path)
    height, width = image.shape[:2]
    assert max(width, height) < 7000                 # it really was downscaled
    assert sent_mask.shape[:2] == (height, width)
    # Within 1 px of the point, the received image is red and the mask is white.
    window = image[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
    assert window[..., 0].max() > 0.9 and window[..., 1].max() < 0.1
    assert sent_mask[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2, 0].max() > 0.9
    assert sent_mask[:height // 2, :width // 2, 0].max() < 0.1


def test_scenario_upload_stays_under_6_mb_for_a_noisy_photo(api, emulator, fixtures):
    """Noise does not compress: the PNG is far over the limit, so it is re-encoded/downscaled."""
    rng = np.random.default_rng(5)
    noisy = rng.random((2200, 2600, 4), dtype=np.float32)
    noisy[..., 3] = 1.0
    path = write_png(fixtures.dir / "noisy.png", noisy)
    import os
    assert os.path.getsize(path) > 6 * 1024 * 1024
    serve(emulator, "scenario_sam3d", [fixtures.glb("blob")])
    api.reconstruct(path, provider="scenario_sam3d", points=[(2590, 2190)])
    upload = emulator.scenario.uploads[0]
    assert len(upload.body) < 6 * 1024 * 1024
    body = emulator.scenario.submits[0].json
    data = emulator.scenario.assets[body["image"]]["data"]
    width, height = _png_or_jpeg_size(data)
    point = body["pointPrompts"][0]
    assert 0 <= point["x"] < width and 0 <= point["y"] < height
    assert abs(point["x"] - 2590 * width / 2600) <= 1 and abs(point["y"] - 2190 * height / 2200) <= 1


def _png_or_jpeg_size(data: bytes) -> tuple[int, int]:
    import struct
    if data.startswith(b"\x89PNG"):
        return struct.unpack(">II", data[16:24])
    index = 2
    while index < len(data):                      # JPEG: find the SOF marker
        marker, length = data[index + 1], struct.unpack(">H", data[index + 2:index + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            return width, height
        index += 2 + length
    raise AssertionError("no image size found")


@pytest.mark.parametrize("provider, kwargs, fragment", [
    ("runware_sam3d", {"points": [(5, 5)]}, "does not take clicked points"),
    ("segmind_sam3d", {"seed": 2_000_000}, "seed from 0 to 1,000,000"),
    ("scenario_sam3d", {"prompt": "x" * 200}, "at most 120 characters"),
    ("scenario_pixal3d", {"prompt": "chair"}, "does not take a text prompt"),
    ("scenario_pixal3d", {"options": {"ssSamplingSteps": 500}}, "between 1 and 100"),
    ("runware_sam3d", {"options": {"numberResults": 5}}, "between 1 and 4"),
])
def test_input_a_provider_cannot_take_is_refused_before_any_request(
        api, emulator, fixtures, provider, kwargs, fragment):
    before = count_data()
    with pytest.raises(api.Recon3DError) as info:
        api.submit(fixtures.path("photo.png"), provider, **kwargs)
    assert fragment in str(info.value)
    assert emulator.requests() == []
    assert count_data() == before


def test_declarations_drive_the_ui(recon3d):
    providers = importlib.import_module(f"{PKG}.providers")
    assert set(providers.REGISTRY) == {"scenario_sam3d", "scenario_pixal3d", "segmind_sam3d",
                                       "runware_sam3d", "fal_sam3d", "fal_pixal3d",
                                       "fal_trellis2", "fal_hunyuan3d"}
    form = bpy.context.scene.recon3d
    listed = [item[0] for item in recon3d.addon.form._provider_items(form, bpy.context)]
    assert sorted(listed) == sorted(providers.REGISTRY)
    form.provider = "runware_sam3d"              # every declared provider is selectable
    assert form.provider == "runware_sam3d"
    pixal = providers.REGISTRY["scenario_pixal3d"]
    assert len(pixal.options) == 17
    assert {o.name for o in pixal.options} >= {"ssGuidanceStrength", "decimationTarget",
                                               "resolution", "remesh"}


def test_operator_sends_what_the_form_declares(api, recon3d, emulator, fixtures):
    """The panel's form: options generated from the declaration; only changed ones are sent."""
    props = recon3d.addon.form
    form = bpy.context.scene.recon3d
    serve(emulator, "scenario_pixal3d", [fixtures.glb("blob")])
    form.image_path = fixtures.path("photo.png")
    form.provider = "scenario_pixal3d"
    form.prompt = "ignored: Pixal3D takes no prompt"
    setattr(form.options, props.option_attr("scenario_pixal3d", "decimationTarget"), 50000)
    setattr(form.options, props.option_attr("scenario_pixal3d", "remesh"), False)
    assert form.chosen_options() == {"decimationTarget": 50000, "remesh": False}
    assert bpy.ops.recon3d.submit() == {"FINISHED"}
    job = api.jobs()[-1]
    assert job.wait(30).state == "ready"
    body = emulator.scenario.submits[-1].json
    assert body["decimationTarget"] == 50000 and body["remesh"] is False
    assert "prompt" not in body and "ssSamplingSteps" not in body

    emulator.reset()
    serve(emulator, "scenario_sam3d", [fixtures.glb("blob")])
    form.provider = "scenario_sam3d"
    form.prompt = "chair"
    form.points = "40,30; 12, 8"
    form.boxes = "(10,10,60,50)"
    assert bpy.ops.recon3d.submit() == {"FINISHED"}
    assert api.jobs()[-1].wait(30).state == "ready"
    body = emulator.scenario.submits[-1].json
    assert body["pointPrompts"] == [{"x": 40, "y": 30}, {"x": 12, "y": 8}]
    assert body["boxPrompts"] == [{"x1": 10, "y1": 10, "x2": 60, "y2": 50}]
    form.points = "40;30"
    with pytest.raises(RuntimeError, match="must be written 'x,y'"):
        bpy.ops.recon3d.submit()


def test_picked_clicks_become_form_pixels_in_the_original_photo(recon3d):
    """The Image Editor picker's maths: view coordinates (bottom-left, 0..1) to photo pixels
    (top-left), and the text it writes parses back to the same points and boxes."""
    picker = recon3d.operators.picker
    assert picker.view_to_pixels(0.0, 1.0, 96, 64) == (0.0, 0.0)          # top-left corner
    assert picker.view_to_pixels(0.5, 0.5, 96, 64) == (48.0, 32.0)
    assert picker.view_to_pixels(1.2, -0.1, 96, 64) == (95.0, 63.0)       # clamped inside
    u, v = picker.pixels_to_view(40, 30, 96, 64)
    assert picker.view_to_pixels(u, v, 96, 64) == pytest.approx((40, 30))
    form = bpy.context.scene.recon3d
    form.points = picker.format_points([(40.2, 30.7), (12, 8)])
    form.boxes = picker.format_boxes([(10, 10.4, 60, 50)])
    assert form.parsed_points() == [(40, 31), (12, 8)]
    assert form.parsed_boxes() == [(10, 10, 60, 50)]
    assert bpy.ops.recon3d.pick_prompts.poll() is False       # needs an Image Editor
    assert "RECON3D_PT_image_editor" in dir(bpy.types)


def test_exr_photo_is_sent_as_png_with_its_colours(api, emulator, fixtures, tmp_path):
    """A float EXR render (linear) is re-encoded to an 8-bit sRGB PNG; decoded again by
    Blender it has the same linear colour."""
    img = bpy.data.images.new("render", 40, 30, float_buffer=True)
    try:
        pixels = np.zeros((30, 40, 4), dtype=np.float32)
        pixels[...] = (0.2, 0.05, 0.6, 1.0)
        img.pixels.foreach_set(pixels.ravel())
        img.filepath_raw = str(tmp_path / "render.exr")
        img.file_format = "OPEN_EXR"
        img.save()
    finally:
        bpy.data.images.remove(img)
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    api.reconstruct(str(tmp_path / "render.exr"), provider="segmind_sam3d")
    sent = base64.b64decode(emulator.segmind.submits[0].json["image"])
    assert sent.startswith(b"\x89PNG")
    decoded = read_image(sent, tmp_path)
    assert decoded.shape[:2] == (30, 40)
    assert np.allclose(decoded[15, 20, :3], (0.2, 0.05, 0.6), atol=0.02), decoded[15, 20]


def test_packed_and_generated_blender_images_are_inputs(api, emulator, fixtures):
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    packed = bpy.data.images.load(fixtures.path("photo.png"), check_existing=False)
    packed.pack()
    packed.filepath = "//gone/photo.png"            # only the packed bytes are left
    generated = bpy.data.images.new("generated", 32, 16)
    try:
        api.reconstruct(packed, provider="segmind_sam3d")
        api.reconstruct(generated, provider="segmind_sam3d")
    finally:
        bpy.data.images.remove(packed)
        bpy.data.images.remove(generated)
    first, second = (base64.b64decode(r.json["image"]) for r in emulator.segmind.submits)
    with open(fixtures.path("photo.png"), "rb") as fh:
        assert first == fh.read()                   # packed PNG bytes sent as they are
    assert second.startswith(b"\x89PNG")
    assert read_image(second).shape[:2] == (16, 32)
    assert {i.name for i in bpy.data.images} & {"photo.png", "generated"} == set()
