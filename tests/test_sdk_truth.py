# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 9: the services as their official SDKs describe them (notes/sdk-findings.md), driven
through real HTTP against the emulator — ambiguous Runware sends resolved without a second
task, every paid variation collected, nested and singular errors read, Segmind's stringified
output and FAILED bodies under any status, Scenario's hidden uploads, total cost and dry-run
estimate."""
from __future__ import annotations

import importlib
import os

import bpy
import numpy as np
import pytest

from conftest import PKG, bottom_centre
from emulator import Reply, TEST_KEYS
from emulator.runware import task_validator
from test_jobs import _resume, _start_and_kill, crash_env, journal  # noqa: F401 (fixture)
from test_providers import serve


def runware_submits(emulator) -> list[dict]:
    """3dInference tasks the service received (not those a fault answered instead)."""
    return [t for r in emulator.runware.bodies for t in r.json if t["taskType"] == "3dInference"]


def runware_polls(emulator) -> list:
    return [r for r in emulator.runware.bodies
            if any(t.get("taskType") == "getResponse" for t in r.json)]


def is_runware_submit(req) -> bool:
    return "/runware/" in req.path and b'"3dInference"' in req.body


def is_runware_poll(req) -> bool:
    return "/runware/" in req.path and b'"getResponse"' in req.body


def failing_job(api, emulator, fixtures, provider, service, **knobs):
    """A job whose emulated service, set by `knobs`, fails it; returned once it failed."""
    serve(emulator, provider, [fixtures.glb("blob")])
    for name, value in knobs.items():
        setattr(service, name, value)
    job = api.submit(fixtures.path("photo.png"), provider)
    assert job.wait(30).state == "failed"
    return job


# -- Runware: an ambiguous send is resolved, never failed, never billed twice ----------------------
@pytest.mark.parametrize("lost", [
    Reply(504, "<html>Gateway Timeout</html>", content_type="text/html"),
    Reply(200, {"data": [{"taskType": "3dInference"}]}, cut_after=5),     # reset mid-answer
], ids=["504", "reset"])
def test_runware_send_recorded_but_answer_lost_ends_with_its_model(api, emulator, fixtures,
                                                                  lost):
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    emulator.fault(is_runware_submit, lost, after_service=True)
    objects = api.reconstruct(fixtures.path("photo.png"), provider="runware_sam3d")
    job = api.jobs()[-1]
    assert len(objects) == 1 and job.state == "imported" and job.error is None
    assert emulator.runware.billed == 1
    # Resolved by asking getResponse for the journaled UUID: sent once, never again.
    assert [t["taskUUID"] for t in runware_submits(emulator)] == [job.remote_id]
    assert emulator.runware.conflicts == []


def test_runware_conflict_task_uuid_on_a_resend_means_accepted(api, emulator, fixtures):
    """The answer was lost and the service had not recorded the task yet when asked: the same
    task goes again, Runware refuses it with conflictTaskUUID — which means accepted."""
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    emulator.fault(is_runware_submit, Reply(502, "<html>Bad Gateway</html>",
                                            content_type="text/html"), after_service=True)
    emulator.fault(is_runware_poll, Reply(400, {"errors": [{"code": "taskNotFound",
                                                            "message": "No task"}]}))
    job = api.submit(fixtures.path("photo.png"), "runware_sam3d")
    assert job.wait(30).state == "ready", job.error
    assert [t["taskUUID"] for t in runware_submits(emulator)] == [job.remote_id] * 2
    assert emulator.runware.conflicts == [job.remote_id]      # the second was refused…
    assert emulator.runware.billed == 1                       # …and billed nothing
    assert len(job.files) == 1


def test_runware_never_recorded_send_fails_clearly_without_a_task(api, emulator, fixtures):
    """Every send lost before the service kept it: a clear failure after a bounded few sends of
    the same task, never an endless wait. "No record yet" may only mean the first send is not
    recorded, so the message says it may have been billed (billing.py rule 2), never "not
    billed"."""
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    emulator.fault(is_runware_submit, Reply(502, "<html>Bad Gateway</html>",
                                            content_type="text/html"), times=99)
    job = api.submit(fixtures.path("photo.png"), "runware_sam3d")
    assert job.wait(60).state == "failed"
    assert job.error_code == "ambiguous_submit" and "has no record of it yet" in job.error
    assert "check your Runware dashboard" in job.error
    assert emulator.runware.billed == 0
    sent = [r.json[0]["taskUUID"] for r in emulator.requests(contains="/runware/")
            if is_runware_submit(r)]
    assert len(sent) == 3 and len(set(sent)) == 1            # same task, a bounded few times


def test_runware_killed_before_the_service_kept_the_send_sends_it_once_more(
        emulator, fixtures, tmp_path, crash_env):
    """SIGKILL while the first send was still on its way and never recorded: on resume the
    service is asked, says it has no such task, and the same task is sent — one billed."""
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    emulator.fault(is_runware_submit, Reply(504, "late", delay=30))      # never reaches it
    job_id = _start_and_kill(emulator, fixtures, tmp_path, crash_env, "runware_sam3d",
                             lambda j: j.get("submit_sent") and
                             emulator.requests(contains="/runware/"))
    assert emulator.runware.billed == 0
    task = journal(crash_env["RECON3D_DATA_DIR"], job_id)["service_data"]["taskUUID"]
    result = _resume(tmp_path, crash_env, job_id)
    assert result["state"] == "ready", result
    assert [t["taskUUID"] for t in runware_submits(emulator)] == [task]   # the service's view
    asked = [r for r in runware_polls(emulator)
             if r.time < emulator.runware.submits[0].time]
    assert asked, "the service was not asked before the task was sent again"
    assert emulator.runware.billed == 1


# -- Runware: variations, errors, prompt ----------------------------------------------------------
def test_runware_three_variations_all_arrive_side_by_side(api, emulator, fixtures):
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    emulator.runware.duration = 3.0               # results at 1 s, 2 s and 3 s
    job = api.submit(fixtures.path("photo.png"), "runware_sam3d",
                     options={"numberResults": 3})
    seen = set()
    while not job.done:
        seen.add(round(job.progress, 2))
        job.wait(0.05)
    assert job.state == "ready", job.error
    assert any(0.0 < p < 1.0 for p in seen), seen            # processing items' progress
    task = emulator.runware.tasks[job.remote_id]
    partial = [r for r in runware_polls(emulator)
               if task.done_at(0) <= r.time < task.done_at(2)]
    assert partial, "no poll happened while only some results were in"
    assert len(set(job.files)) == 3
    urls = {f["url"] for files in task.files.values() for f in files}
    assert len(urls) == 3
    cdn = {r.path.rsplit("/", 1)[-1] for r in emulator.requests(server="cdn")}
    assert cdn == {u.rsplit("/", 1)[-1] for u in urls}       # each variation downloaded
    assert sorted(job.service_data["results"]) == ["0", "1", "2"]
    assert job.cost == pytest.approx(3 * emulator.runware.cost)
    objects = api.import_job(job)
    assert len(objects) == 3
    spans = sorted((bottom_centre([o])[1][0], bottom_centre([o])[2][0]) for o in objects)
    assert all(left[1] <= right[0] + 1e-6 for left, right in zip(spans, spans[1:])), spans
    assert emulator.runware.billed == 1


def test_runware_one_failed_variation_keeps_the_paid_ones(api, emulator, fixtures, capsys):
    """runware-sdk's collector keeps successful items beside an error item: a variation that
    fails on its own must not throw away the others, which are billed."""
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    emulator.runware.duration = 1.5
    emulator.runware.fail_results = {1}
    job = api.submit(fixtures.path("photo.png"), "runware_sam3d",
                     options={"numberResults": 3}).wait(30)
    assert job.state == "ready", job.error
    assert job.error is None and len(set(job.files)) == 2
    assert "1 of 3 variations could not be made" in job.notice
    assert "Inference failed for this result" in job.notice
    assert job.cost == pytest.approx(2 * emulator.runware.cost)
    assert journal(os.environ["RECON3D_DATA_DIR"], job.id)["notice"] == job.notice
    cli = importlib.import_module(f"{PKG}.cli")
    assert cli.main(["jobs"]) == 0
    listed = next(line for line in capsys.readouterr().out.splitlines() if job.id in line)
    assert "1 of 3 variations could not be made" in listed
    assert len(api.import_job(job)) == 2
    assert emulator.runware.billed == 1


def _runware_answers(answers):
    """A Runware provider whose getResponse answers are `answers`, one per poll."""
    providers = importlib.import_module(f"{PKG}.providers")
    provider = providers.provider_class("runware_sam3d").__new__(
        providers.provider_class("runware_sam3d"))
    queue = list(answers)
    provider._post = lambda tasks, billing=False: (queue.pop(0), [])
    return provider


def _item(index, status, **extra):
    item = {"taskType": "3dInference", "taskUUID": "t", "status": status, **extra}
    if index is not None:
        item["resultIndex"] = index
    if status == "success":
        item.update(cost=0.01, outputs={"files": [{"uuid": f"u{index}",
                                                   "url": f"https://cdn/r{index}.glb"}]})
    if status == "error":
        item["error"] = {"code": "inferenceError", "message": f"variation {index} failed"}
    return item


def test_runware_a_variation_not_listed_yet_is_waited_for_after_another_failed():
    """Three wanted; the answers list success 0 and error 1, variation 2 only later: the
    job waits for it (it may be made and billed) instead of ending at the first error."""
    early = [_item(0, "success"), _item(1, "error")]
    provider = _runware_answers([early, early, early + [_item(2, "success")]])
    state = {"numberResults": 3}
    assert provider.poll("t", state).state == "running"
    assert provider.poll("t", state).state == "running"
    status = provider.poll("t", state)
    assert status.state == "done" and len(status.result["urls"]) == 2
    assert state["notice"].startswith("1 of 3 variations could not be made (variation 1")
    # Never listed at all: after a few quiet answers the made one is delivered, not lost.
    provider = _runware_answers([early] * 5)
    state = {"numberResults": 3}
    states = [provider.poll("t", state).state for _ in range(3)]
    assert states == ["running", "running", "done"]
    assert state["notice"].startswith("2 of 3 variations could not be made")


def test_runware_an_error_naming_no_result_ends_the_task_once_keeping_the_made_ones():
    """An error item without resultIndex repeated by every (cumulative) answer is the
    task's own failure: counted once, the made variation kept."""
    answer = [_item(0, "success"), _item(None, "error"), _item(2, "processing", progress=40),
              _item(3, "processing", progress=10)]
    provider = _runware_answers([answer])
    state = {"numberResults": 4}
    status = provider.poll("t", state)
    assert status.state == "done" and status.result["urls"] == ["https://cdn/r0.glb"]
    assert state["notice"].startswith("3 of 4 variations could not be made")
    provider = _runware_answers([[_item(None, "error")]])
    status = provider.poll("t", {"numberResults": 2})
    assert status.state == "failed" and "variation None failed" in status.error


def test_runware_every_variation_failing_fails_the_job_with_the_reason(api, emulator, fixtures):
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    emulator.runware.duration = 0.6
    emulator.runware.fail_results = {0, 1}
    job = api.submit(fixtures.path("photo.png"), "runware_sam3d",
                     options={"numberResults": 2}).wait(30)
    assert job.state == "failed" and job.files == []
    assert "Inference failed for this result" in job.error


@pytest.mark.parametrize("style", ["item", "error", "errors"])
def test_runware_failure_reason_reaches_the_job(api, emulator, fixtures, style):
    """A failed item's nested error, a 200 with a singular `error`, a 400 `errors` list."""
    job = failing_job(api, emulator, fixtures, "runware_sam3d", emulator.runware,
                      fail="The mask covers no object", fail_style=style)
    assert "Runware could not make the model: The mask covers no object" in job.error
    assert "no reason given" not in job.error
    assert job.polls <= 3                 # the failure ended the polling at once
    assert emulator.runware.billed == 1 and emulator.runware.conflicts == []


def test_runware_positive_prompt_is_always_sent_and_valid(api, emulator, fixtures):
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    api.reconstruct(fixtures.path("photo.png"), provider="runware_sam3d")
    api.reconstruct(fixtures.path("photo.png"), provider="runware_sam3d", prompt="  chair ")
    first, second = runware_submits(emulator)
    assert isinstance(first.get("positivePrompt"), str) and first["positivePrompt"].strip()
    assert second["positivePrompt"] == "chair"
    validate = task_validator()
    for task in (first, second):
        validate.validate(task)
    assert emulator.runware.invalid == []


# -- Segmind ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["url", "list", "dict"])
def test_segmind_stringified_output_lands_as_the_placed_model(api, emulator, fixtures, mode):
    serve(emulator, "segmind_sam3d", [fixtures.glb("sam3d_posed")])
    emulator.segmind.output_mode = mode
    emulator.segmind.stringify_output = True
    bpy.context.scene.cursor.location = (0.5, -1.0, 0.25)
    objects = api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d")
    assert [o.type for o in objects] == ["MESH"]
    centre, low, high = bottom_centre(objects)
    assert np.allclose(centre, (0.5, -1.0, 0.25), atol=1e-5)
    meta = fixtures.meta("sam3d_posed")
    assert np.allclose(high - low, np.array(meta["high"]) - np.array(meta["low"]), rtol=1e-4)
    assert len(emulator.requests(server="cdn")) == 1


@pytest.mark.parametrize("status", [400, 422, 500])
def test_segmind_failed_under_any_status_is_a_clear_failure(api, emulator, fixtures, status):
    job = failing_job(api, emulator, fixtures, "segmind_sam3d", emulator.segmind,
                      fail_reason="No object found in the image", fail_status=status)
    assert job.error_code == "failed"
    assert "Segmind could not make the model: No object found in the image" in job.error
    assert len(emulator.segmind.submits) == 1
    seg = next(iter(emulator.segmind.jobs.values()))
    after = [r for r in emulator.requests(contains="/status")
             if r.time >= seg.created + seg.duration]
    assert len(after) == 1                # read at once: not retried as a server error
    assert float(job.remaining_credits) == pytest.approx(emulator.segmind.credits)


def test_segmind_follows_the_returned_status_urls_on_its_own_host(api, emulator, fixtures,
                                                                  monkeypatch):
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    submit = emulator.segmind._submit

    def marked(req):            # the URLs the submit returns, marked so they can be told apart
        reply = submit(req)
        reply.body = dict(reply.body, status_url=reply.body["status_url"] + "?from=submit",
                          response_url=reply.body["response_url"] + "?from=submit")
        return reply
    monkeypatch.setattr(emulator.segmind, "_submit", marked)
    api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d")
    job = api.jobs()[-1]
    assert job.service_data["status_url"].endswith("/status?from=submit")
    gets = emulator.requests(contains="/v2/requests/", method="GET")
    assert gets and all(r.path.endswith("?from=submit") for r in gets)
    assert any("/status?" in r.path for r in gets) and \
        any("/status?" not in r.path for r in gets)

    # On another host (the key would go with it): not followed, built from the endpoint.
    emulator.reset()
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    emulator.segmind.status_base = f"http://localhost:{emulator.api.port}/segmind"
    api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d")
    job = api.jobs()[-1]
    assert "status_url" not in job.service_data and "response_url" not in job.service_data
    gets = emulator.requests(server="api", contains="/v2/requests/", method="GET")
    assert gets and all(r.headers["host"].startswith("127.0.0.1:") for r in gets)
    assert all(r.headers.get("x-api-key") == TEST_KEYS["segmind"] for r in gets)


# -- Scenario --------------------------------------------------------------------------------------
def test_scenario_uploads_hidden_and_job_cost_is_the_total(api, emulator, fixtures, tmp_path):
    serve(emulator, "scenario_sam3d", [fixtures.glb("blob")])
    emulator.scenario.cu_cost = 12
    emulator.scenario.cu_cost_details = {"quality-gate": 2, "ip-detection": 1}
    emulator.scenario.cu_discount = 3
    mask = fixtures.path("photo.png")
    api.reconstruct(fixtures.path("photo.png"), provider="scenario_sam3d", mask=mask)
    job = api.jobs()[-1]
    assert job.cost == 15                 # cuCost + cuCostDetails (discount not subtracted)
    assert len(emulator.scenario.uploads) == 2
    assert all(r.json.get("hide") is True for r in emulator.scenario.uploads)
    assert all(a["hidden"] for a in emulator.scenario.assets.values()
               if a["source"] == "uploaded")


def test_scenario_estimate_is_the_dry_run_cost_without_a_job(api, emulator, fixtures):
    emulator.scenario.cu_cost = 20
    emulator.scenario.cu_cost_details = {"quality-gate": 4}
    jobs_before = len(api.jobs())
    cost = api.estimate(fixtures.path("photo.png"), "scenario_sam3d", prompt="chair",
                        points=[(40, 30)], seed=3)
    assert cost == 24
    assert len(emulator.scenario.dry_runs) == 1
    dry = emulator.scenario.dry_runs[0]
    assert "dryRun=true" in dry.path and dry.json["prompt"] == "chair" and dry.json["seed"] == 3
    assert emulator.scenario.jobs == {} and emulator.scenario.submits == []
    assert all(r.json.get("hide") is True for r in emulator.scenario.uploads)
    assert len(api.jobs()) == jobs_before                    # no Recon3D job either
    assert api.estimate(fixtures.path("photo.png"), "scenario_pixal3d",
                        options={"ssSamplingSteps": 20}) == 24
    assert emulator.scenario.dry_runs[-1].json["ssSamplingSteps"] == 20


def test_estimate_is_none_where_the_service_cannot_price_and_checks_input(api, emulator,
                                                                          fixtures):
    for provider in ("segmind_sam3d", "runware_sam3d"):
        assert api.estimate(fixtures.path("photo.png"), provider, prompt="chair") is None
    assert emulator.requests() == []                         # nothing sent at all
    with pytest.raises(api.Recon3DError, match="at most 120 characters"):
        api.estimate(fixtures.path("photo.png"), "scenario_sam3d", prompt="x" * 200)
    with pytest.raises(api.Recon3DError, match="does not take clicked points"):
        api.estimate(fixtures.path("photo.png"), "runware_sam3d", points=[(5, 5)])
    with pytest.raises(api.Recon3DError):
        api.estimate("/no/such/photo.png", "scenario_sam3d")
    assert emulator.requests() == []
    assert "estimate" in api.__all__ and "dry run" in api.estimate.__doc__
