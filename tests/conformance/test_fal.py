# SPDX-License-Identifier: GPL-3.0-or-later
"""fal's official Python client (`fal-client` 1.0.x, sync client) drives the emulator's fal
queue and storage: if the real SDK is happy with every answer, the emulator speaks fal's
protocol. Runs in the SDK venv (tools/conformance.py), never inside Blender; nothing may leave
127.0.0.1 (non-loopback connects fail the test)."""
from __future__ import annotations

import base64
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fal_client  # noqa: E402  (the SDK venv has it: a missing one must fail, not skip)
import httpx  # noqa: E402  (fal-client's own dependency)
from fal_client import client as fal_module  # noqa: E402

from emulator import TEST_KEYS, Reply  # noqa: E402
from emulator.fal import SH_C0, model_error, sample_splat  # noqa: E402

SAM = "fal-ai/sam-3/3d-objects"
HUNYUAN = "fal-ai/hunyuan-3d/v3.1/pro/image-to-3d"


def png(width: int, height: int) -> bytes:
    """A red RGB PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png(4, 3)
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.fixture
def fal(emu, monkeypatch):
    """A fal-client SyncClient whose base URLs are the emulator's (the SDK only lets the
    host be changed under https, so its module constants are pointed at 127.0.0.1)."""
    emu.reset()
    monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", emu.fal_url + "/")
    monkeypatch.setattr(fal_module, "RUN_URL_FORMAT", emu.fal_url + "/")
    monkeypatch.setattr(fal_module, "REST_URL", emu.fal_rest_url)
    monkeypatch.setattr(fal_module, "CDN_URL", emu.cdn.url)
    monkeypatch.setattr(fal_module, "BASE_DELAY", 0.01)
    sync = fal_client.SyncClient(key=TEST_KEYS["fal"])
    yield sync
    sync._client.close()


def wait_for(handle, kind, timeout=5.0, **kw):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = handle.status(**kw)
        if isinstance(status, kind):
            return status
        time.sleep(0.02)
    raise AssertionError(f"never reached {kind.__name__}")


def test_submit_status_result(emu, fal):
    emu.fal.queue_time, emu.fal.queue_position, emu.fal.duration = 0.6, 3, 0.4
    emu.fal.results = [b"glTF-object-A", b"glTF-object-B"]
    handle = fal.submit(SAM, {"image_url": DATA_URI, "box_prompts": [
        {"x_min": 0, "y_min": 0, "x_max": 2, "y_max": 2},
        {"x_min": 2, "y_min": 1, "x_max": 4, "y_max": 3}]})

    submit = emu.fal.submits[0]
    assert submit.path == f"/fal/{SAM}"
    assert submit.headers["authorization"] == f"Key {TEST_KEYS['fal']}"
    assert submit.json["image_url"] == DATA_URI
    # status, result and cancel URLs keep owner/alias only
    assert handle.status_url == f"{emu.fal_url}/fal-ai/sam-3/requests/{handle.request_id}/status"
    assert handle.response_url == f"{emu.fal_url}/fal-ai/sam-3/requests/{handle.request_id}"
    assert handle.cancel_url.endswith(f"/fal-ai/sam-3/requests/{handle.request_id}/cancel")

    first = handle.status()
    assert isinstance(first, fal_client.Queued) and first.position == 2
    progress = wait_for(handle, fal_client.InProgress, with_logs=True)
    assert progress.logs and progress.logs[0]["message"]
    done = wait_for(handle, fal_client.Completed)
    assert done.error is None and done.metrics["inference_time"] == pytest.approx(0.4)

    output = handle.get()
    assert len(output["individual_glbs"]) == 2 and len(output["metadata"]) == 2
    assert [m["object_index"] for m in output["metadata"]] == [0, 1]
    for key in ("model_glb", "gaussian_splat", "artifacts_zip"):
        assert set(output[key]) == {"url", "content_type", "file_name", "file_size"}
    cdn = httpx.get(output["individual_glbs"][1]["url"])
    assert cdn.status_code == 200 and cdn.content == b"glTF-object-B"
    assert output["individual_glbs"][1]["url"].startswith(emu.cdn.url + "/")
    assert emu.cdn.port != emu.api.port
    assert len(emu.fal.status_polls) >= 3


def test_status_code_202_while_waiting_200_when_done(emu, fal):
    emu.fal.queue_time, emu.fal.duration = 0.2, 0.2
    handle = fal.submit("fal-ai/trellis-2", {"image_url": DATA_URI})
    waiting = httpx.get(handle.status_url, headers=fal._client.headers)
    assert waiting.status_code == 202 and waiting.json()["status"] == "IN_QUEUE"
    assert "queue_position" in waiting.json()
    time.sleep(0.45)
    done = httpx.get(handle.status_url + "?logs=1", headers=fal._client.headers)
    assert done.status_code == 200 and done.json()["status"] == "COMPLETED"
    assert isinstance(done.json()["logs"], list)
    # the URL that keeps the endpoint's sub-path does not exist
    wrong = httpx.get(f"{emu.fal_url}/fal-ai/trellis-2/x/requests/{handle.request_id}/status",
                      headers=fal._client.headers)
    assert wrong.status_code == 404


def test_sdk_builds_owner_alias_urls_from_an_id(emu, fal):
    emu.fal.queue_time = emu.fal.duration = 0.05
    emu.fal.results = [b"glTF-hunyuan"]
    handle = fal.submit(HUNYUAN, {"input_image_url": DATA_URI, "generate_pbr": True,
                                  "face_count": 500_000})
    output = fal.result(HUNYUAN, handle.request_id)       # the SDK's own URL, not the answer's
    assert set(output["model_glb"]) == {"url", "content_type", "file_name", "file_size"}
    assert httpx.get(output["model_urls"]["glb"]["url"]).content == b"glTF-hunyuan"
    assert any(f"/fal/fal-ai/hunyuan-3d/requests/{handle.request_id}" == r.path
               for r in emu.requests("api", method="GET"))


def test_every_endpoint_returns_a_glb(emu, fal):
    emu.fal.queue_time = emu.fal.duration = 0.02
    for endpoint, image_field in (("fal-ai/pixal3d", "image_url"),
                                  ("fal-ai/trellis-2", "image_url"),
                                  (HUNYUAN, "input_image_url"), (SAM, "image_url")):
        output = fal.subscribe(endpoint, {image_field: DATA_URI, "seed": 7})
        glb = httpx.get(output["model_glb"]["url"]).content
        assert glb[:4] == b"glTF", endpoint
        assert output["model_glb"]["file_size"] == len(glb)
    assert emu.fal.invalid == []


def test_completed_failure_raises_with_the_models_reason(emu, fal):
    emu.fal.queue_time = emu.fal.duration = 0.02
    emu.fal.fail = model_error("No objects detected for prompt 'teapot'", "no_detections")
    handle = fal.submit(SAM, {"image_url": DATA_URI, "prompt": "teapot"})
    done = wait_for(handle, fal_client.Completed)
    assert done.error == "No objects detected for prompt 'teapot'"
    assert done.error_type == "no_detections"
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        handle.get()
    assert caught.value.status_code == 422
    assert str(caught.value) == "No objects detected for prompt 'teapot'"
    assert caught.value.error_type == "no_detections"


def test_invalid_input_is_a_422_validation_result(emu, fal):
    emu.fal.queue_time = emu.fal.duration = 0.02
    handle = fal.submit(SAM, {"image_url": DATA_URI, "detection_threshold": 5})
    wait_for(handle, fal_client.Completed)
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        handle.get()
    assert caught.value.status_code == 422
    detail = caught.value.message
    assert detail[0]["loc"] == ["body", "detection_threshold"] and "between" in detail[0]["msg"]
    assert emu.fal.invalid == ["body.detection_threshold: ensure this value is between 0.1 and 1.0"]


def test_cancel_answers(emu, fal):
    emu.fal.queue_time, emu.fal.duration = 5.0, 0.1
    queued = fal.submit(SAM, {"image_url": DATA_URI, "prompt": "chair"})
    queued.cancel()                                             # 200 OK
    assert emu.fal.cancels == [(queued.request_id, "OK")]
    assert emu.requests("api", method="PUT")[0].path == \
        f"/fal/fal-ai/sam-3/requests/{queued.request_id}/cancel"
    status = queued.status()
    assert isinstance(status, fal_client.Completed) and status.error_type == "request_cancelled"
    with pytest.raises(fal_client.FalClientHTTPError) as again:
        queued.cancel()
    assert again.value.status_code == 400
    assert again.value.response.json() == {"status": "ALREADY_COMPLETED"}
    with pytest.raises(fal_client.FalClientHTTPError) as missing:
        fal.cancel(SAM, "00000000-0000-0000-0000-000000000000")
    assert missing.value.status_code == 404
    assert missing.value.response.json() == {"status": "NOT_FOUND"}
    emu.fal.queue_time = 0.0
    running = fal.submit(SAM, {"image_url": DATA_URI, "prompt": "chair"})
    wait_for(running, fal_client.InProgress)
    running.cancel()                                            # 202 CANCELLATION_REQUESTED
    assert emu.fal.cancels[-1] == (running.request_id, "CANCELLATION_REQUESTED")
    assert emu.fal.billed == 1          # the one canceled while still queued was not run


def test_result_expires_with_its_files(emu, fal):
    emu.fal.queue_time = emu.fal.duration = 0.02
    emu.fal.expire_after = 0.3
    handle = fal.submit("fal-ai/trellis-2", {"image_url": DATA_URI})
    output = handle.get()
    assert httpx.get(output["model_glb"]["url"]).status_code == 200
    time.sleep(0.4)
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        handle.get()
    assert caught.value.status_code == 404
    assert httpx.get(output["model_glb"]["url"]).status_code == 404


def test_storage_upload_v3(emu, fal):
    url = fal.upload(PNG, "image/png", file_name="photo.png")
    assert url.startswith(emu.cdn.url + "/files/") and url.endswith("photo.png")
    assert httpx.get(url).content == PNG
    token = emu.requests("api", contains="/storage/auth/token", method="POST")
    assert len(token) == 1 and token[0].headers["authorization"] == f"Key {TEST_KEYS['fal']}"
    assert "storage_type=fal-cdn-v3" in token[0].path
    upload = emu.requests("cdn", contains="/files/upload", method="POST")[0]
    assert upload.headers["authorization"].startswith("Bearer ")
    assert upload.headers["x-fal-file-name"] == "photo.png" and upload.body == PNG
    # an uploaded photo is a valid input
    emu.fal.queue_time = emu.fal.duration = 0.02
    fal.subscribe("fal-ai/pixal3d", {"image_url": url})
    job = next(iter(emu.fal.jobs.values()))
    assert job.image == (4, 3) and emu.fal.invalid == []


def test_storage_upload_falls_back_to_initiate(emu, fal):
    emu.fault("/files/upload", Reply(500, {"detail": "internal"}))
    url = fal.upload(PNG, "image/png", file_name="photo.png")
    assert emu.fal.uploads[-1]["route"] == "initiate"
    assert httpx.get(url).content == PNG


def test_sdk_retries_only_ingress_errors_on_submit(emu, fal):
    emu.fault(lambda r: r.method == "POST" and r.path == f"/fal/{SAM}",
              Reply(503, "<html><center>nginx</center></html>", content_type="text/html"))
    fal.submit(SAM, {"image_url": DATA_URI, "prompt": "cup"})
    assert len(emu.fal.submits) == 1
    assert len(emu.requests("api", contains=f"/fal/{SAM}", method="POST")) == 2
    emu.fault(lambda r: r.method == "POST" and r.path == f"/fal/{SAM}",
              Reply(503, {"detail": "runner unavailable"}, headers={"x-fal-request-id": "r1"}))
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        fal.submit(SAM, {"image_url": DATA_URI, "prompt": "cup"})
    assert caught.value.status_code == 503 and len(emu.fal.submits) == 1


def test_wrong_key_is_401(emu, fal):
    other = fal_client.SyncClient(key="someone-else:secret")
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        other.submit(SAM, {"image_url": DATA_URI})
    assert caught.value.status_code == 401 and emu.fal.submits == []


def test_gaussian_splat_is_3dgs_ply(emu, fal):
    data, colours = sample_splat(50, seed=3)
    emu.fal.splats = [data]
    emu.fal.queue_time = emu.fal.duration = 0.02
    output = fal.subscribe(SAM, {"image_url": DATA_URI, "prompt": "vase"})
    ply = httpx.get(output["individual_splats"][0]["url"]).content
    header, _, body = ply.partition(b"end_header\n")
    lines = header.decode().splitlines()
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 50"]
    names = [line.split()[2] for line in lines if line.startswith("property float")]
    assert names[:3] == ["x", "y", "z"] and "opacity" in names and "rot_3" in names
    assert len(body) == 50 * 4 * len(names)
    row = struct.unpack_from(f"<{len(names)}f", body, 0)
    rgb = [0.5 + SH_C0 * row[names.index(f"f_dc_{i}")] for i in range(3)]
    assert rgb == pytest.approx(colours[0], abs=1e-5)
    assert len({c for c in colours}) > 10      # not one flat colour


def test_extra_parameters_travel_in_the_input_and_unknown_ones_fail_the_run(emu, fal):
    """The input dict is the request body as given (where Recon3D puts its extra parameters):
    a field the endpoint documents runs; an unknown one fails the run with fal's 422."""
    emu.fal.queue_time = emu.fal.duration = 0.02
    output = fal.subscribe(HUNYUAN, {"input_image_url": DATA_URI, "generate_type": "LowPoly",
                                     "generate_pbr": True})
    assert output["model_glb"]["url"] and emu.fal.invalid == []
    assert emu.fal.submits[0].json["generate_type"] == "LowPoly"
    with pytest.raises(fal_client.FalClientHTTPError) as failed:
        fal.subscribe(HUNYUAN, {"input_image_url": DATA_URI, "r3dCount": 3})
    assert "r3dCount" in str(failed.value) and "extra fields not permitted" in str(failed.value)
