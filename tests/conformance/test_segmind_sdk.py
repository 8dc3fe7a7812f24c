# SPDX-License-Identifier: GPL-3.0-or-later
"""The official `segmind` SDK (1.3.x) drives the emulator's v2 async protocol.

Base URL: `SegmindClient(base_url=…/v1)`; the SDK derives its v2 prefix from it (segmind/v2.py
`_v2_base`) and then follows the status_url/response_url the submit returned."""
from __future__ import annotations

import json

import pytest
import segmind
from segmind.chat import _raw_from_v2_body     # the SDK's own reading of a v2 `output`
from segmind.v2 import InferenceFailed

from support import GLB, PNG_B64, TEST_KEYS, fetch

SLUG = "sam-3d-objects"


@pytest.fixture
def client(emu):
    sdk = segmind.SegmindClient(api_key=TEST_KEYS["segmind"], base_url=f"{emu.segmind_url}/v1")
    yield sdk
    sdk._client.close()


def submit(client, **extra):
    return client.submit_async(SLUG, image=PNG_B64, prompt="chair", seed=7, **extra)


def test_submit_poll_result(client, emu):
    emu.segmind.result = GLB
    job = submit(client)
    assert job.submit_response["status"] == "QUEUED"
    # The URLs the SDK follows point at the service's own host, and it follows them as given.
    assert job.status_url.startswith(emu.segmind_url + "/v2/requests/")
    assert job.response_url.startswith(emu.segmind_url + "/v2/requests/")
    body = job.wait(timeout=10, interval=0.05)
    assert body["status"] == "COMPLETED" and "inference_time" in body["metrics"]
    assert fetch(body["output"]) == GLB
    polls = emu.requests(contains=f"/v2/requests/{job.request_id}/status", method="GET")
    assert polls and all(r.headers["x-api-key"] == TEST_KEYS["segmind"] for r in polls)
    assert len(emu.segmind.submits) == 1
    assert emu.segmind.submits[0].json == {"image": PNG_B64, "prompt": "chair", "seed": 7}


@pytest.mark.parametrize("mode, kind", [("url", str), ("list", list), ("dict", dict)])
def test_output_as_stringified_json(client, emu, mode, kind):
    """v2 `output` is the model's JSON stringified: the SDK decodes it with json.loads."""
    emu.segmind.result = GLB
    emu.segmind.output_mode = mode
    emu.segmind.stringify_output = True
    body = submit(client).wait(timeout=10, interval=0.05)
    assert isinstance(body["output"], str)
    decoded = _raw_from_v2_body(body)
    assert isinstance(decoded, kind) and decoded == json.loads(body["output"])
    url = decoded if kind is str else decoded[0] if kind is list else decoded["glb"]
    assert fetch(url) == GLB


@pytest.mark.parametrize("status", [422, 400, 500])
def test_failed_body_under_any_status(client, emu, status):
    """A FAILED body is a failure with its reason whatever its HTTP status."""
    emu.segmind.fail_reason = "No object matching the prompt was found"
    emu.segmind.fail_status = status
    answers = []          # (path, HTTP status) of each answer the SDK's httpx client got
    client._client.event_hooks["response"].append(
        lambda response: answers.append((response.url.path, response.status_code)))
    job = submit(client)
    with pytest.raises(InferenceFailed) as caught:
        job.wait(timeout=10, interval=0.05)
    assert caught.value.detail == "No object matching the prompt was found"
    assert caught.value.status_body["status"] == "FAILED"
    assert answers[-1] == (f"/segmind/v2/requests/{job.request_id}/status", status)
    assert job.result() == dict(caught.value.status_body)    # the result URL serves it too
    assert answers[-1] == (f"/segmind/v2/requests/{job.request_id}", status)
    assert len(emu.segmind.submits) == 1


def test_unknown_or_expired_request_is_an_error(client, emu):
    emu.segmind.result = GLB
    emu.segmind.expire_after = 0.0
    job = submit(client)
    with pytest.raises(segmind.SegmindError) as caught:
        job.status()
    assert caught.value.status == 404


def test_submit_error_carries_the_reason(client, emu):
    with pytest.raises(segmind.SegmindError) as caught:
        client.submit_async(SLUG, prompt="no image")
    assert caught.value.status == 400 and "image" in caught.value.detail
    assert emu.segmind.submits == []


def test_wrong_key_is_refused(emu):
    sdk = segmind.SegmindClient(api_key="wrong", base_url=f"{emu.segmind_url}/v1")
    with pytest.raises(segmind.SegmindError) as caught:
        sdk.submit_async(SLUG, image=PNG_B64)
    assert caught.value.status == 401


def test_extra_parameters_travel_at_the_top_level_of_the_body(client, emu):
    """The SDK forwards any parameter verbatim into the JSON body (`**params`), where Recon3D
    puts its extra parameters too; the service takes the job."""
    emu.segmind.result = GLB
    job = submit(client, r3dCount=3, r3dFlag=True, r3dStyle="studio")
    assert job.wait(timeout=10, interval=0.05)["status"] == "COMPLETED"
    sent = emu.segmind.submits[0].json
    assert (sent["r3dCount"], sent["r3dFlag"], sent["r3dStyle"]) == (3, True, "studio")
