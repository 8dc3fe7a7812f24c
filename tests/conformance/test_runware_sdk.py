# SPDX-License-Identifier: GPL-3.0-or-later
"""The official `runware-sdk` (1.8.x, package `runware`) drives the emulator over REST.

Base URL: `Runware(transport="rest", http_base_url=…)` (runware/types/sdk.py SDKConfig; the
default transport is a WebSocket, which the emulator does not speak and Recon3D does not use).
`taskType` is passed explicitly and the model is AIR-shaped, so the SDK never asks its schema
registry on schemas.runware.ai."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from runware import Runware
from runware.errors import RunwareError
from runware.types.sdk import RunOptions

from support import GLB, PNG_DATA_URI, TEST_KEYS, Reply, fetch


def task(**extra) -> dict:
    return {"taskType": "3dInference", "model": "meta:sam@3d", "positivePrompt": "chair",
            "inputs": {"image": PNG_DATA_URI, "mask": PNG_DATA_URI}, "seed": 11,
            "outputFormat": "GLB", "outputType": "URL", "includeCost": True, **extra}


#: the SDK's own bounds (ms), far below its 20-minute defaults: a protocol mismatch that makes
#: it poll forever fails the test instead of hanging the suite
BOUNDS = {"poll_timeout": 20_000, "timeout": 10_000, "retry_delay": 10}


def drive(emu, work, **config):
    """Run `await work(client)` with a REST client pointed at the emulator."""
    async def main():
        async with Runware(api_key=TEST_KEYS["runware"], transport="rest",
                           http_base_url=emu.runware_url, **BOUNDS, **config) as client:
            return await work(client)
    return asyncio.run(main())


def polls(emu, task_uuid: str) -> list:
    return [r for r in emu.runware.bodies
            if any(t.get("taskType") == "getResponse" and t.get("taskUUID") == task_uuid
                   for t in r.json)]


def test_submit_poll_result(emu):
    emu.runware.results = [GLB]
    task_uuid = str(uuid.uuid4())
    results = drive(emu, lambda c: c.run(task(taskUUID=task_uuid)))
    assert len(results) == 1
    item = results[0]
    assert item["taskUUID"] == task_uuid and item["status"] == "success"
    assert item["cost"] == pytest.approx(emu.runware.cost) and item["seed"] == 11
    assert [fetch(f["url"]) for f in item["outputs"]["files"]] == [GLB]
    sent = emu.runware.submits[0].json[0]
    assert sent["taskUUID"] == task_uuid and sent["deliveryMethod"] == "async"
    assert emu.runware.invalid == [] and polls(emu, task_uuid)
    assert emu.runware.billed == 1
    assert {r.headers["authorization"] for r in emu.runware.bodies} == \
        {f"Bearer {TEST_KEYS['runware']}"}


def test_variations_arrive_one_after_another(emu):
    """numberResults 3: one item per result, finishing one after another; the SDK waits for
    all three (told apart by resultIndex) and reports progress on those still running."""
    emu.runware.results = [GLB]
    emu.runware.duration = 1.8
    arrivals, progress = [], []
    options = RunOptions(
        on_result=lambda item: arrivals.append((item["resultIndex"], len(emu.runware.bodies))),
        on_progress=lambda item: progress.append((item["resultIndex"], item["progress"])))
    results = drive(emu, lambda c: c.run(task(numberResults=3), options))
    assert [r["resultIndex"] for r in results] == [0, 1, 2]
    urls = [f["url"] for r in results for f in r["outputs"]["files"]]
    assert len(set(urls)) == 3 and all(fetch(u) == GLB for u in urls)
    # They came in over several polls, not all at once.
    assert sorted(i for i, _ in arrivals) == [0, 1, 2]
    assert len({n for _, n in arrivals}) >= 2, arrivals
    assert progress and all(0 <= p < 100 for _, p in progress)
    assert emu.runware.billed == 1


def test_one_failed_variation_beside_successful_ones(emu):
    """A result that fails on its own is an error item beside the others: the SDK shows the
    successful one to on_result before raising the error item's reason."""
    emu.runware.results = [GLB]
    emu.runware.duration = 1.0
    emu.runware.fail_results = {1}
    arrivals = []
    options = RunOptions(on_result=lambda item: arrivals.append(
        (item["resultIndex"], item["status"])))
    with pytest.raises(RunwareError) as caught:
        drive(emu, lambda c: c.run(task(numberResults=2), options))
    assert caught.value.message == "Inference failed for this result"
    assert arrivals == [(0, "success"), (1, "error")]
    assert emu.runware.billed == 1


@pytest.mark.parametrize("style", ["item", "errors", "error"])
def test_failure_carries_the_nested_reason(emu, style):
    """A failed item's `error: {code, message}`, a 400 `errors` array, or a 200 with a
    singular `error`: each is a failure with the service's reason."""
    emu.runware.fail = "Could not segment the object"
    emu.runware.fail_style = style
    with pytest.raises(RunwareError) as caught:
        drive(emu, lambda c: c.run(task()))
    assert caught.value.message == "Could not segment the object"
    assert caught.value.code == "provider"          # inferenceError
    assert emu.runware.billed == 1


def test_out_of_credit_code(emu):
    emu.runware.fail = "Your balance is too low"
    emu.runware.fail_code = "insufficientCredits"
    with pytest.raises(RunwareError) as caught:
        drive(emu, lambda c: c.run(task()))
    assert caught.value.code == "quota"


def test_reused_task_uuid_is_refused_but_the_task_runs_on(emu):
    """The service refuses a taskUUID it already has (HTTP 400 conflictTaskUUID); the first
    task is untouched, billed once, and getResponse still answers for it."""
    emu.runware.results = [GLB]
    task_uuid = str(uuid.uuid4())
    first = drive(emu, lambda c: c.run(task(taskUUID=task_uuid)))

    with pytest.raises(RunwareError) as caught:
        drive(emu, lambda c: c.run(task(taskUUID=task_uuid)))
    assert caught.value.status_code == 400 and caught.value.code == "validation"
    assert caught.value.task_uuid == task_uuid
    assert emu.runware.conflicts == [task_uuid] and emu.runware.billed == 1

    again = drive(emu, lambda c: c.get_response({"taskUUID": task_uuid}))
    assert [i["status"] for i in again] == ["success"]
    assert again[0]["outputs"] == first[0]["outputs"]


def test_lost_submit_answer_retried_by_the_sdk_meets_the_conflict(emu):
    """The SDK's REST transport re-sends the same task after a 5xx; the service already had it
    and answers conflictTaskUUID, which the REST SDK raises (only its WebSocket transport reads
    it as "accepted"). The task itself ran once and its result is there."""
    emu.runware.results = [GLB]
    task_uuid = str(uuid.uuid4())
    emu.fault(lambda r: b'"3dInference"' in r.body,
              Reply(502, "<html>Bad Gateway</html>", content_type="text/html"),
              after_service=True)
    with pytest.raises(RunwareError) as caught:
        drive(emu, lambda c: c.run(task(taskUUID=task_uuid)))
    assert caught.value.status_code == 400 and caught.value.task_uuid == task_uuid
    assert len(emu.runware.submits) == 2 and emu.runware.billed == 1

    async def poll_until_done(client):
        for _ in range(100):
            items = await client.get_response({"taskUUID": task_uuid})
            if items and items[0]["status"] == "success":
                return items
            await asyncio.sleep(0.05)
        raise AssertionError("never finished")
    items = drive(emu, poll_until_done)
    assert fetch(items[0]["outputs"]["files"][0]["url"]) == GLB


def test_transient_poll_errors_are_retried(emu):
    emu.runware.results = [GLB]
    for status in (503, 429):
        emu.fault(lambda r: b'"getResponse"' in r.body, Reply(status, {"errors": [
            {"code": "serviceUnavailable", "message": "Try again"}]}))
    results = drive(emu, lambda c: c.run(task()))
    assert len(results) == 1 and emu.runware.billed == 1


def test_unknown_task_uuid(emu):
    with pytest.raises(RunwareError) as caught:
        drive(emu, lambda c: c.get_response({"taskUUID": str(uuid.uuid4())}))
    assert caught.value.code == "notFound"


def test_body_outside_the_vendor_schema_is_refused(emu):
    with pytest.raises(RunwareError) as caught:
        drive(emu, lambda c: c.run(task(steps=3)))
    assert caught.value.code == "validation" and emu.runware.invalid
    assert emu.runware.billed == 0


def test_wrong_key_is_refused(emu):
    async def main():
        async with Runware(api_key="wrong", transport="rest",
                           http_base_url=emu.runware_url, **BOUNDS) as client:
            return await client.run(task())
    with pytest.raises(RunwareError) as caught:
        asyncio.run(main())
    assert caught.value.code == "auth" and caught.value.status_code == 401


def test_a_documented_parameter_travels_at_the_top_level_of_the_task(emu):
    """Every parameter is a key of the task object (TaskPayload.to_wire: taskType, taskUUID,
    then the rest), where Recon3D puts its extra parameters too; `ttl` is in the schema."""
    emu.runware.results = [GLB]
    results = drive(emu, lambda c: c.run(task(taskUUID=str(uuid.uuid4()), ttl=3600)))
    assert len(results) == 1 and emu.runware.submits[0].json[0]["ttl"] == 3600
    assert emu.runware.invalid == []
