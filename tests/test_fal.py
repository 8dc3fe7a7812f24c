# SPDX-License-Identifier: GPL-3.0-or-later
"""fal.ai end to end: its four models, SAM 3D's several objects and splat, and the queue's
traps (failures reported as COMPLETED, results kept minutes, no idempotency key)."""
from __future__ import annotations

import importlib
import os
import time

import bpy
import numpy as np
import pytest

from conftest import PKG, bottom_centre, count_data
from emulator import Reply, TEST_KEYS, wait_until
from emulator.fal import model_error, sample_splat, validation_error
from test_providers import reconstruct_on_the_cursor

FAL_IDS = ("fal_sam3d", "fal_pixal3d", "fal_trellis2", "fal_hunyuan3d")
CASES = {
    "fal_sam3d": dict(prompt="chair", seed=7),
    "fal_pixal3d": dict(seed=7, options={"ss_sampling_steps": 20, "remesh": False}),
    "fal_trellis2": dict(seed=7, options={"resolution": 1536, "texture_size": 4096}),
    "fal_hunyuan3d": dict(options={"enable_pbr": True, "face_count": 80_000}),
}
ENDPOINT = {"fal_sam3d": "fal-ai/sam-3/3d-objects", "fal_pixal3d": "fal-ai/pixal3d",
            "fal_trellis2": "fal-ai/trellis-2",
            "fal_hunyuan3d": "fal-ai/hunyuan-3d/v3.1/pro/image-to-3d"}


def is_submit(provider):
    path = f"/fal/{ENDPOINT[provider]}"
    return lambda req: req.method == "POST" and req.path.split("?")[0] == path


def meshes(objects):
    return [o for o in objects if o.type == "MESH"]


@pytest.mark.parametrize("provider", FAL_IDS)
def test_each_fal_model_reconstructs_on_the_cursor(api, emulator, fixtures, provider):
    emulator.fal.results = [fixtures.glb("sam3d_posed")]
    objects = reconstruct_on_the_cursor(api, fixtures, provider, CASES[provider])
    mat = objects[0].data.materials[0]                 # vertex colours wired in
    assert any(n.type == "VERTEX_COLOR" for n in mat.node_tree.nodes)
    # One accepted submit, to the endpoint's own path, valid for its schema, with the key.
    assert len(emulator.fal.submits) == 1 and emulator.fal.billed == 1
    assert emulator.fal.invalid == []
    submit = emulator.fal.submits[0]
    assert submit.path == f"/fal/{ENDPOINT[provider]}"
    for req in emulator.requests(server="api"):
        assert req.headers["authorization"] == f"Key {TEST_KEYS['fal']}"
    for req in emulator.requests(server="cdn"):
        assert "authorization" not in req.headers
    # Status and result were asked at the URLs without the endpoint's sub-path.
    app = "/".join(ENDPOINT[provider].split("/")[:2])
    job = api.jobs()[-1]
    assert emulator.fal.status_polls and emulator.fal.result_gets
    for req in emulator.fal.status_polls + emulator.fal.result_gets:
        assert req.path.startswith(f"/fal/{app}/requests/{job.remote_id}")
    assert job.provider == provider and job.state == "imported"


def test_request_bodies_follow_the_declarations(api, emulator, fixtures):
    emulator.fal.results = [fixtures.glb("blob")]
    for provider in FAL_IDS:
        api.reconstruct(fixtures.path("photo.png"), provider=provider, **CASES[provider])
    bodies = {s.path: s.json for s in emulator.fal.submits}
    sam = bodies["/fal/fal-ai/sam-3/3d-objects"]
    assert sam["image_url"].startswith("data:image/png;base64,")
    assert sam["prompt"] == "chair" and sam["seed"] == 7
    assert set(sam) == {"image_url", "prompt", "seed"}
    pixal = bodies["/fal/fal-ai/pixal3d"]
    assert {k: v for k, v in pixal.items() if k != "image_url"} == {
        "ss_sampling_steps": 20, "remesh": False, "seed": 7}
    trellis = bodies["/fal/fal-ai/trellis-2"]
    assert trellis["resolution"] == "1536" and trellis["texture_size"] == "4096"
    hunyuan = bodies["/fal/fal-ai/hunyuan-3d/v3.1/pro/image-to-3d"]
    assert hunyuan["input_image_url"].startswith("data:image/png;base64,")
    assert hunyuan["enable_pbr"] is True and hunyuan["face_count"] == 80_000
    assert "image_url" not in hunyuan and "seed" not in hunyuan
    assert emulator.fal.invalid == []


def test_sam3d_points_with_background_boxes_masks_and_options(api, emulator, fixtures):
    emulator.fal.results = [fixtures.glb("blob")]
    from conftest import write_png
    mask = write_png(fixtures.dir / "fal-mask.png", np.ones((64, 96, 4)))
    api.reconstruct(fixtures.path("photo.png"), provider="fal_sam3d", prompt="cup",
                    points=[(40, 30), (12, 8), (80, 60)], boxes=[(10, 10, 60, 50)],
                    mask=[mask, mask], seed=3,
                    options={"background_points": 1, "detection_threshold": 0.3,
                             "export_textured_glb": True})
    body = emulator.fal.submits[0].json
    assert body["point_prompts"] == [{"x": 40, "y": 30, "label": "1"},
                                     {"x": 12, "y": 8, "label": "1"},
                                     {"x": 80, "y": 60, "label": "0"}]
    assert body["box_prompts"] == [{"x_min": 10, "y_min": 10, "x_max": 60, "y_max": 50,
                                    "object_id": 0}]
    assert len(body["mask_urls"]) == 2 and all(u.startswith("data:image/png;base64,")
                                               for u in body["mask_urls"])
    assert body["detection_threshold"] == 0.3 and body["export_textured_glb"] is True
    assert "background_points" not in body and "import_splat" not in body
    assert emulator.fal.invalid == []


@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "default 'car'"),                                    # no prompt: refused, not "car"
    ({"boxes": [(10, 10, 60, 50)]}, "needs a prompt"),
    ({"prompt": "cup", "points": [(4, 4)], "options": {"background_points": 2}},
     "only 1 point(s)"),
    ({"prompt": "cup", "options": {"detection_threshold": 0.01}}, "between 0.1 and 1"),
])
def test_sam3d_input_refused_before_any_request(api, emulator, fixtures, kwargs, fragment):
    before = count_data()
    with pytest.raises(api.Recon3DError) as info:
        api.submit(fixtures.path("photo.png"), "fal_sam3d", **kwargs)
    assert fragment in str(info.value)
    assert emulator.requests() == []
    assert count_data() == before


def test_enumerated_option_refused_when_not_one_of_its_values(api, emulator, fixtures):
    with pytest.raises(api.Recon3DError, match="one of 512, 1024, 1536"):
        api.submit(fixtures.path("photo.png"), "fal_trellis2", options={"resolution": 700})
    assert emulator.requests() == []


def test_sam3d_two_boxes_give_two_objects_in_their_photo_layout(api, emulator, fixtures):
    """The combined model_glb is the scene fal composed: imported as it is, placed as one."""
    emulator.fal.results = [fixtures.glb("blob")]
    emulator.fal.scene = fixtures.glb("pair")
    bpy.context.scene.cursor.location = (3.0, 0.0, 0.0)
    objects = api.reconstruct(fixtures.path("photo.png"), provider="fal_sam3d", prompt="cup",
                              boxes=[(5, 5, 40, 40), (50, 10, 90, 60)])
    body = emulator.fal.submits[0].json
    assert [b["object_id"] for b in body["box_prompts"]] == [0, 1]
    assert len(objects) == 2 and all(tuple(o.scale) == (1, 1, 1) for o in objects)
    centre, _, _ = bottom_centre(objects)
    assert np.allclose(centre, (3, 0, 0), atol=1e-5)
    pair = fixtures.meta("pair")
    by_name = {o.name.split(".")[0]: o for o in objects}
    got = bottom_centre([by_name["cup"]])[1] - bottom_centre([by_name["saucer"]])[1]
    want = np.array(pair["objects"]["cup"]["low"]) - np.array(pair["objects"]["saucer"]["low"])
    assert np.allclose(got, want, atol=1e-5)
    # Per-object GLBs, splats and metadata are kept beside the scene, not imported.
    job = api.jobs()[-1]
    extras = job.service_data["extra_files"]
    assert len(extras["individual_glbs"]) == 2 and len(extras["individual_splats"]) == 2
    assert all(os.path.isfile(p) for p in extras["individual_glbs"] + [extras["splat"],
                                                                        extras["metadata"]])
    assert job.files == [os.path.join(os.path.dirname(extras["splat"]), "result-0.glb")]


def test_completed_run_that_failed_ends_with_the_models_reason(api, emulator, fixtures):
    emulator.fal.fail = model_error("No objects found for the prompt 'unicorn'")
    before = count_data()
    with pytest.raises(api.Recon3DError) as info:
        api.reconstruct(fixtures.path("photo.png"), provider="fal_sam3d", prompt="unicorn")
    assert "fal.ai could not make the model: No objects found for the prompt 'unicorn'" in \
        str(info.value)
    assert info.value.code == "failed" and count_data() == before
    assert len(emulator.fal.submits) == 1 and len(emulator.fal.result_gets) == 1

    emulator.reset()
    emulator.fal.fail = validation_error([(["body", "face_count"], "ensure this value is "
                                                                   "between 40000 and 1500000")])
    with pytest.raises(api.Recon3DError) as info:
        api.reconstruct(fixtures.path("photo.png"), provider="fal_hunyuan3d")
    assert "face_count: ensure this value is between 40000 and 1500000" in str(info.value)
    assert len(emulator.fal.submits) == 1


def _expiry_message_checks(job, emulator):
    assert job.state == "failed" and job.error_code == "expired", (job.state, job.error)
    assert "only for about 6 minutes" in job.error and "paid" in job.error
    assert "generate again" in job.error and "fal support" in job.error
    assert job.remote_id in job.error
    assert len(emulator.fal.submits) == 1 and emulator.fal.billed == 1


def test_result_expired_before_a_resume_says_so_and_never_submits_again(
        api, recon3d, emulator, fixtures):
    runtime = recon3d.addon.runtime
    emulator.fal.results = [fixtures.glb("blob")]
    emulator.fal.duration = 1.0
    job = api.submit(fixtures.path("photo.png"), "fal_trellis2")
    assert wait_until(lambda: job.remote_id and job.state == "running", 20)
    runtime.stop()                                   # Blender closes while the job runs
    emulator.fal.expire_after = 0.0
    fal_job = emulator.fal.jobs[job.remote_id]
    assert wait_until(lambda: time.time() > fal_job.finished_at() + 0.2, 10)
    runtime.start()                                  # … and opens again: the job resumes
    resumed = api.get_job(job.id)
    assert resumed is not job and resumed.wait(30).done
    _expiry_message_checks(resumed, emulator)
    assert emulator.fal.result_gets == []            # nothing was left to fetch


def test_result_files_gone_from_the_cdn_say_it_expired(api, emulator, fixtures):
    emulator.fal.results = [fixtures.glb("blob")]
    emulator.fault(lambda req: req.server == "cdn",
                   Reply(404, "<html>NoSuchKey</html>", content_type="text/html"), times=99)
    job = api.submit(fixtures.path("photo.png"), "fal_pixal3d")
    assert job.wait(30).done
    _expiry_message_checks(job, emulator)
    with pytest.raises(api.Recon3DError, match="generate again"):
        api.retry(job)                               # nothing to fetch: never re-submitted
    assert len(emulator.fal.submits) == 1


def test_cancel_reaches_the_cancel_url(api, emulator, fixtures):
    emulator.fal.results = [fixtures.glb("blob")]
    emulator.fal.queue_time, emulator.fal.duration = 0.0, 60.0
    job = api.submit(fixtures.path("photo.png"), "fal_sam3d", prompt="chair")
    assert wait_until(lambda: len(emulator.fal.status_polls) >= 1, 20)
    api.cancel(job)
    assert job.wait(5).state == "canceled"
    assert wait_until(lambda: emulator.fal.cancels, 5)
    assert emulator.fal.cancels == [(job.remote_id, "CANCELLATION_REQUESTED")]
    puts = emulator.requests(server="api", method="PUT")
    assert [r.path for r in puts] == [f"/fal/fal-ai/sam-3/requests/{job.remote_id}/cancel"]
    assert puts[0].headers["authorization"] == f"Key {TEST_KEYS['fal']}"


NGINX = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize("status, headers, after_service, resent", [
    (502, {}, False, True),                       # ingress page: fal never saw it
    (504, {}, False, False),                      # a proxy may answer 504 after forwarding
    (429, {"Retry-After": "0"}, False, True),     # "not now"
    (503, {"x-fal-request-id": "r-1"}, True, False),   # fal's own server: may have run
    (500, {}, True, False),                       # a 500 proves nothing either way
])
def test_5xx_on_submit_is_sent_again_only_when_fal_cannot_have_accepted_it(
        api, emulator, fixtures, status, headers, after_service, resent):
    emulator.fal.results = [fixtures.glb("blob")]
    emulator.fault(is_submit("fal_trellis2"),
                   Reply(status, NGINX, content_type="text/html", headers=headers),
                   after_service=after_service)
    job = api.submit(fixtures.path("photo.png"), "fal_trellis2")
    job.wait(30)
    posts = [r for r in emulator.requests(server="api") if is_submit("fal_trellis2")(r)]
    billed = 1 if resent or after_service else 0
    assert emulator.fal.billed == billed and len(emulator.fal.submits) == billed
    if resent:
        assert job.state == "ready", job.error
        assert len(posts) == 2
    else:
        assert job.state == "failed" and job.error_code == "ambiguous_submit"
        assert "may still have been accepted" in job.error and "<html>" not in job.error
        assert len(posts) == 1


def test_returned_urls_on_another_host_are_not_followed(api, emulator, fixtures):
    emulator.fal.results = [fixtures.glb("blob")]
    emulator.fal.url_base = "http://localhost:9/fal"      # not the queue's host
    objects = api.reconstruct(fixtures.path("photo.png"), provider="fal_trellis2", timeout=20)
    assert len(objects) == 1
    job = api.jobs()[-1]
    assert emulator.fal.status_polls[0].path.startswith(
        f"/fal/fal-ai/trellis-2/requests/{job.remote_id}/status")


def test_large_photo_goes_through_fal_storage(api, recon3d, emulator, fixtures):
    fal = importlib.import_module(f"{PKG}.providers.fal")
    emulator.fal.results = [fixtures.glb("blob")]
    inline = fal.FalProvider.inline_max_bytes
    fal.FalProvider.inline_max_bytes = 100           # the test photo is larger
    try:
        api.reconstruct(fixtures.path("photo.png"), provider="fal_trellis2")
    finally:
        fal.FalProvider.inline_max_bytes = inline
    assert [u["route"] for u in emulator.fal.uploads] == ["v3"]
    with open(fixtures.path("photo.png"), "rb") as fh:
        assert emulator.fal.uploads[0]["size"] == len(fh.read())
    body = emulator.fal.submits[0].json
    assert body["image_url"] == emulator.fal.uploads[0]["url"]
    token = emulator.requests(contains="/fal-rest/storage/auth/token")
    assert len(token) == 1 and token[0].headers["authorization"] == f"Key {TEST_KEYS['fal']}"
    upload = emulator.requests(server="cdn", method="POST")
    assert upload and upload[0].headers["authorization"].startswith("Bearer ")
    assert TEST_KEYS["fal"] not in repr(upload[0].headers)
    assert emulator.fal.invalid == []


def test_splat_option_imports_a_coloured_point_cloud(api, emulator, fixtures):
    emulator.fal.results = [fixtures.glb("blob")]
    bpy.context.scene.cursor.location = (0.0, 1.0, 0.0)
    objects = api.reconstruct(fixtures.path("photo.png"), provider="fal_sam3d", prompt="cup",
                              options={"import_splat": True})
    clouds = [o for o in objects if o.get("recon3d_splat")]
    solids = [o for o in objects if not o.get("recon3d_splat")]
    assert len(clouds) == 1 and len(solids) == 1
    cloud = clouds[0]
    _, colours = sample_splat(200, seed=99)         # the emulator's scene splat
    assert len(cloud.data.vertices) == len(colours) == 200
    assert len(cloud.data.polygons) == 0 and len(cloud.data.edges) == 0
    attr = cloud.data.color_attributes["Col"]
    rgba = np.empty(len(cloud.data.vertices) * 4, dtype=np.float32)
    attr.data.foreach_get("color", rgba)
    rgba = rgba.reshape(-1, 4)
    assert np.allclose(rgba[:, :3], np.array(colours), atol=1e-3)
    assert np.abs(rgba[:, :3] - 0.5).max() > 0.2                # not all grey
    assert np.allclose(rgba[:, 3], 0.9, atol=1e-3)              # the Gaussians' opacity
    assert [m.type for m in cloud.modifiers] == ["NODES"]
    assert any(n.bl_idname == "GeometryNodeMeshToPoints"
               for n in cloud.modifiers[0].node_group.nodes)
    assert tuple(cloud.scale) == (1.0, 1.0, 1.0)
    assert list(cloud.users_collection) == list(solids[0].users_collection)
    # The model, not the splat, decides the placement: its bottom-centre is on the cursor.
    centre, _, _ = bottom_centre(solids)
    assert np.allclose(centre, (0.0, 1.0, 0.0), atol=1e-5)
    # Off by default: the same job shape without the option imports the mesh only.
    emulator.reset()
    emulator.fal.results = [fixtures.glb("blob")]
    objects = api.reconstruct(fixtures.path("photo.png"), provider="fal_sam3d", prompt="cup")
    assert [o.get("recon3d_splat") for o in objects] == [None]


def test_declarations_reach_the_form_and_preferences(recon3d):
    providers = importlib.import_module(f"{PKG}.providers")
    assert set(FAL_IDS) <= set(providers.REGISTRY)
    form = bpy.context.scene.recon3d
    listed = [item[0] for item in recon3d.addon.form._provider_items(form, bpy.context)]
    assert set(FAL_IDS) <= set(listed)
    attr = recon3d.addon.form.option_attr
    assert getattr(form.options, attr("fal_sam3d", "import_splat")) is False
    assert getattr(form.options, attr("fal_trellis2", "resolution")) == 1024
    form.provider = "fal_sam3d"
    setattr(form.options, attr("fal_sam3d", "import_splat"), True)
    assert form.chosen_options() == {"import_splat": True}
    prefs = bpy.context.preferences.addons[PKG].preferences
    assert prefs.bl_rna.properties["fal_api_key"].subtype == "PASSWORD"
    assert prefs.bl_rna.properties["fal_url"].subtype != "PASSWORD"


def test_preference_key_and_url_are_used(api, recon3d, emulator, fixtures):
    prefs = bpy.context.preferences.addons[PKG].preferences
    del os.environ["FAL_KEY"]
    del os.environ["RECON3D_FAL_URL"]
    prefs.fal_api_key = TEST_KEYS["fal"]
    prefs.fal_url = emulator.fal_url
    emulator.fal.results = [fixtures.glb("blob")]
    try:
        objects = api.reconstruct(fixtures.path("photo.png"), provider="fal_pixal3d")
    finally:
        prefs.fal_api_key = ""
        prefs.fal_url = ""
    assert len(objects) == 1
    assert emulator.fal.submits[0].headers["authorization"] == f"Key {TEST_KEYS['fal']}"


def test_cli_takes_fal_models_and_the_splat_option(recon3d, emulator, fixtures, capsys):
    cli = importlib.import_module(f"{PKG}.cli")
    emulator.fal.results = [fixtures.glb("blob")]
    assert cli.main(["generate", fixtures.path("photo.png"), "--provider", "fal_sam3d",
                     "--prompt", "cup", "--box", "5,5,40,40", "--option",
                     "import_splat=true", "--option", "detection_threshold=0.4"]) == 0
    assert "imported 2 object" in capsys.readouterr().out       # the model and its splat
    clouds = [o for o in bpy.data.objects if o.get("recon3d_splat")]
    assert len(clouds) == 1 and len(clouds[0].data.vertices) == 200
    body = emulator.fal.submits[0].json
    assert body["detection_threshold"] == 0.4 and "import_splat" not in body
