# SPDX-License-Identifier: GPL-3.0-or-later
"""The official `scenario-sdk` (2.4.x) drives the emulator, with its strict response validation
ON (`_strict_response_validation=True`: every answer must hold each field its pydantic models
require, or the SDK raises APIResponseValidationError).

Base URL: `Scenario(base_url=…)` (also the env var SCENARIO_BASE_URL)."""
from __future__ import annotations

import time

import pytest
import scenario_sdk
from scenario_sdk.types.generate_run_model_response import CostDetails

from support import GLB, PNG_B64, TEST_KEYS, Reply, fetch

SAM = "model_meta-sam-3d-objects"
PIXAL = "model_pixal3d"
TERMINAL = {"success", "failure", "canceled"}


@pytest.fixture
def client(emu):
    sdk = scenario_sdk.Scenario(api_key=TEST_KEYS["scenario_key"],
                                api_secret=TEST_KEYS["scenario_secret"],
                                base_url=emu.scenario_url, max_retries=0,
                                _strict_response_validation=True)
    assert sdk._strict_response_validation is True
    yield sdk
    sdk.close()


def upload(client, **extra):
    return client.assets.upload(name="input.png", image=PNG_B64, **extra).asset


def wait(client, job_id, timeout=10.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.jobs.retrieve(job_id).job
        seen.append(job.status)
        if job.status in TERMINAL:
            return job, seen
        time.sleep(0.03)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {timeout} s")


def test_strict_validation_is_really_on(client, emu):
    """The check can fail: an answer missing a required field is refused by the SDK."""
    emu.fault("/scenario/v1/assets",
              Reply(200, {"asset": {"id": "asset_x", "url": "https://cdn.example/x"}}))
    with pytest.raises(scenario_sdk.APIResponseValidationError):
        upload(client)


@pytest.mark.parametrize("hide", [True, False])
def test_upload_hidden_or_not(client, emu, hide):
    asset = upload(client, hide=hide)
    assert asset.id.startswith("asset_") and asset.kind == "image" and asset.status == "success"
    assert asset.is_hidden is hide
    assert emu.scenario.uploads[-1].json == {"name": "input.png", "image": PNG_B64, "hide": hide}
    assert emu.scenario.assets[asset.id]["hidden"] is hide


def test_generate_poll_download(client, emu):
    emu.scenario.results = [GLB, GLB + b"second"]
    image = upload(client, hide=True)
    mask = upload(client, hide=True)
    started = client.generate.run_model(SAM, body={"image": image.id, "mask": [mask.id],
                                                   "prompt": "chair", "seed": 3})
    assert started.job.job_id.startswith("job_") and started.job.status not in TERMINAL
    assert started.creative_units_cost == emu.scenario.cu_cost
    job, seen = wait(client, started.job.job_id)
    assert job.status == "success" and job.progress == 1.0
    order = ["pending", "queued", "warming-up", "in-progress", "finalizing", "success"]
    assert all(order.index(a) <= order.index(b) for a, b in zip(seen, seen[1:])), seen
    assert [h.status for h in job.status_history][-1] == "success"
    assert len(job.metadata.asset_ids) == 2
    files = [fetch(client.assets.retrieve(a).asset.url) for a in job.metadata.asset_ids]
    assert files == [GLB, GLB + b"second"]
    assert job.billing.cu_cost == emu.scenario.cu_cost and job.billing.cu_discount == 0


def test_pixal3d_generates(client, emu):
    emu.scenario.results = [GLB]
    image = upload(client, hide=True)
    started = client.generate.run_model(PIXAL, body={"image": image.id, "seed": 1,
                                                     "resolution": 1024})
    job, _ = wait(client, started.job.job_id)
    assert job.status == "success" and len(job.metadata.asset_ids) == 1


def test_billing_total_is_cu_cost_plus_details(client, emu):
    emu.scenario.results = [GLB]
    emu.scenario.cu_cost = 20
    emu.scenario.cu_cost_details = {"quality-gate": 3}
    emu.scenario.disable_refund = True
    image = upload(client)
    started = client.generate.run_model(SAM, body={"image": image.id})
    job, _ = wait(client, started.job.job_id)
    billing = job.billing
    total = billing.cu_cost + (billing.cu_cost_details.quality_gate or 0) + \
        (billing.cu_cost_details.ip_detection or 0)
    assert (billing.cu_cost, total, billing.disable_refund) == (20, 23, True)
    assert started.creative_units_cost == 23
    assert started.cost_details.custom_generation == 20 and \
        started.cost_details.quality_gate == 3


def test_dry_run_answers_269_with_the_cost_and_starts_nothing(client, emu):
    emu.scenario.cu_cost = 15
    emu.scenario.cu_cost_details = {"quality-gate": 2}
    image = upload(client)
    raw = client.generate.with_raw_response.run_model(SAM, body={"image": image.id},
                                                      dry_run="true")
    assert raw.status_code == 269
    assert raw.http_request.url.params["dryRun"] == "true"
    body = raw.json()
    assert body["creativeUnitsCost"] == 17
    details = CostDetails.model_validate(body["costDetails"])     # the SDK's own model
    assert details.custom_generation + details.quality_gate == body["creativeUnitsCost"]
    assert emu.scenario.jobs == {} and emu.scenario.submits == []
    assert len(emu.scenario.dry_runs) == 1


def test_failure_carries_error_and_hint(client, emu):
    emu.scenario.fail = ("Segmentation produced an empty mask", "Try a box prompt")
    image = upload(client)
    started = client.generate.run_model(SAM, body={"image": image.id, "prompt": "chair"})
    job, _ = wait(client, started.job.job_id)
    assert job.status == "failure"
    assert (job.metadata.error, job.metadata.hint) == ("Segmentation produced an empty mask",
                                                       "Try a box prompt")


def test_cancel(client, emu):
    emu.scenario.duration = 30.0
    image = upload(client)
    started = client.generate.run_model(SAM, body={"image": image.id})
    answer = client.jobs.trigger_action(started.job.job_id, action="cancel")
    assert answer.job.status == "canceled"
    assert client.jobs.retrieve(started.job.job_id).job.status == "canceled"
    assert emu.requests(contains="/action")[-1].json == {"action": "cancel"}


def test_cancel_refused_for_this_job_type(client, emu):
    emu.scenario.duration = 30.0
    emu.scenario.cancel_supported = False
    image = upload(client)
    started = client.generate.run_model(SAM, body={"image": image.id})
    with pytest.raises(scenario_sdk.BadRequestError) as caught:
        client.jobs.trigger_action(started.job.job_id, action="cancel")
    assert "Cannot cancel" in caught.value.body["message"]
    assert client.jobs.retrieve(started.job.job_id).job.status not in TERMINAL


def test_errors_are_status_errors(client, emu):
    with pytest.raises(scenario_sdk.NotFoundError):
        client.jobs.retrieve("job_missing")
    with pytest.raises(scenario_sdk.BadRequestError):
        client.generate.run_model(SAM, body={"image": "asset_unknown"})
    bad = scenario_sdk.Scenario(api_key="wrong", api_secret="wrong", base_url=emu.scenario_url,
                                max_retries=0, _strict_response_validation=True)
    with pytest.raises(scenario_sdk.AuthenticationError):
        bad.jobs.retrieve("job_x")


def test_extra_parameters_travel_in_the_body_and_unknown_ones_are_refused(client, emu):
    """A parameter goes in `run_model`'s body beside the documented ones (where Recon3D puts
    its extra parameters); a name the model does not take is refused with HTTP 400, naming
    it, and starts nothing."""
    image = upload(client, hide=True)
    with pytest.raises(scenario_sdk.BadRequestError) as refused:
        client.generate.run_model(SAM, body={"image": image.id, "r3dCount": 3})
    assert "r3dCount" in str(refused.value) and emu.scenario.jobs == {}
    assert emu.requests(contains="/generate/custom/")[0].json == {"image": image.id,
                                                                  "r3dCount": 3}
