# SPDX-License-Identifier: GPL-3.0-or-later
"""Every way the services fail, driven through real HTTP on loopback. Each fault ends in the
right message or in success, and none produces a second billed submit."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import bpy
import pytest

from conftest import count_data
from emulator import Reply, TEST_KEYS
from test_providers import billed, serve

PROVIDERS = ("segmind_sam3d", "scenario_sam3d", "runware_sam3d")
SUBMIT_PATH = {"segmind_sam3d": "/segmind/v2/sam-3d-objects",
               "scenario_sam3d": "/scenario/v1/generate/custom/",
               "runware_sam3d": "/runware/v1"}


def is_runware_submit(req) -> bool:
    return "/runware/" in req.path and b'"3dInference"' in req.body


def is_runware_poll(req) -> bool:
    return "/runware/" in req.path and b'"getResponse"' in req.body


def submit_match(provider):
    if provider == "runware_sam3d":
        return is_runware_submit
    return SUBMIT_PATH[provider]


@pytest.fixture
def run(api, emulator, fixtures):
    """Reconstruct with `provider`; returns (objects or the Recon3DError, job)."""
    def go(provider, **kw):
        serve(emulator, provider, [fixtures.glb("blob")])
        try:
            result = api.reconstruct(fixtures.path("photo.png"), provider=provider, **kw)
        except api.Recon3DError as exc:
            result = exc
        return result, api.jobs()[-1]
    return go


# -- keys, credits, plans ------------------------------------------------------------------------
@pytest.mark.parametrize("provider, env, shown", [
    ("scenario_sam3d", "SCENARIO_SDK_API_SECRET", "Scenario API key and Scenario API secret"),
    ("runware_sam3d", "RUNWARE_API_KEY", "Runware API key"),
])
def test_wrong_key_names_the_key_and_where_to_set_it(run, emulator, provider, env, shown):
    os.environ[env] = "wrong-value-77"
    before = count_data()
    error, job = run(provider)
    assert isinstance(error, Exception) and error.code == "auth"
    message = str(error)
    assert "invalid" in message and shown in message
    assert "Preferences › Add-ons › Recon3D" in message and env in message
    assert "wrong-value-77" not in message and "Traceback" not in message
    assert count_data() == before
    assert billed(emulator, provider) == 0


@pytest.mark.parametrize("provider, status, body, fragment", [
    ("segmind_sam3d", 406, {"error": "Insufficient credits"}, "not have enough credits"),
    ("runware_sam3d", 402, {"errors": [{"code": "insufficientBalance",
                                        "message": "Insufficient balance"}]}, "balance is too low"),
    ("scenario_sam3d", 402, {"status": "error", "message": "Not enough creative units"},
     "no credits left"),
])
def test_no_credits(run, emulator, provider, status, body, fragment):
    emulator.fault(submit_match(provider), Reply(status, body))
    error, job = run(provider)
    assert isinstance(error, Exception) and error.code == "credits"
    assert fragment in str(error)
    assert job.state == "failed" and billed(emulator, provider) == 0


def test_scenario_plan_does_not_allow_model(run, emulator):
    emulator.fault("/generate/custom/", Reply(403, {"status": "error", "code": "forbidden",
                                                     "message": "Model not in your plan"}))
    error, _ = run("scenario_sam3d")
    assert "plan does not allow" in str(error) and "Model not in your plan" in str(error)


def test_segmind_expired_job(run, emulator):
    emulator.segmind.expire_after = 0.0
    error, job = run("segmind_sam3d")
    assert error.code == "expired"
    assert "expire one hour after submission" in str(error)
    assert len(emulator.segmind.submits) == 1


def test_segmind_retired_model(run, emulator):
    emulator.fault(SUBMIT_PATH["segmind_sam3d"], Reply(410, {"error": "Model retired"}))
    error, _ = run("segmind_sam3d")
    assert error.code == "retired" and "retired" in str(error)
    assert "Pick another provider" in str(error)


def test_runware_task_error_carries_reason(run, emulator):
    emulator.runware.fail = "Could not segment the object"
    emulator.runware.fail_style = "errors"
    error, job = run("runware_sam3d")
    assert "Could not segment the object" in str(error)
    assert emulator.runware.billed == 1


def test_scenario_failure_carries_error_and_hint(run, emulator):
    emulator.scenario.fail = ("Segmentation produced an empty mask", "Try a box prompt")
    error, job = run("scenario_sam3d")
    assert "Scenario could not make the model" in str(error)
    assert "Segmentation produced an empty mask" in str(error) and "Try a box prompt" in str(error)


# -- rate limits and outages -------------------------------------------------------------------------
def test_429_on_polls_with_and_without_reset_header(run, emulator):
    reset = (datetime.now(timezone.utc) + timedelta(seconds=0.3)).isoformat()
    emulator.fault("/status", Reply(429, {"error": "Too many requests"},
                                    headers={"x-rate-limit-reset-at-utc": reset}))
    emulator.fault("/status", Reply(429, {"error": "Too many requests"}))
    objects, job = run("segmind_sam3d")
    assert isinstance(objects, list) and job.state == "imported"
    assert len(emulator.requests(contains="/status")) >= 3
    assert len(emulator.segmind.submits) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_on_submit_is_retried_once_accepted(run, emulator, provider):
    """429 proves the service did not take the job: sending it again is safe."""
    emulator.fault(submit_match(provider), Reply(429, {"error": "slow down"},
                                                 headers={"Retry-After": "0"}))
    objects, job = run(provider)
    assert isinstance(objects, list), objects
    assert billed(emulator, provider) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_500_502_503_on_polls_then_success(run, emulator, provider):
    match = is_runware_poll if provider == "runware_sam3d" else \
        ("/status" if provider == "segmind_sam3d" else "/scenario/v1/jobs/")
    for status in (500, 502, 503):
        emulator.fault(match, Reply(status, "<html><body>Bad gateway</body></html>",
                                    content_type="text/html"))
    objects, job = run(provider)
    assert isinstance(objects, list), objects
    assert billed(emulator, provider) == 1


@pytest.mark.parametrize("provider", ["segmind_sam3d", "scenario_sam3d"])
def test_accepted_submit_whose_answer_is_lost_is_not_sent_again(run, emulator, provider):
    """The service took the job but answered 502: sending it again would bill twice."""
    emulator.fault(submit_match(provider), Reply(502, "<html>Bad Gateway</html>",
                                                 content_type="text/html"), after_service=True)
    error, job = run(provider)
    assert isinstance(error, Exception)
    assert error.code == "ambiguous_submit"
    assert "may still have been accepted" in str(error) and "dashboard" in str(error)
    assert "<html>" not in str(error)
    assert billed(emulator, provider) == 1
    assert len(emulator.requests(contains=SUBMIT_PATH[provider], method="POST")) == 1


# -- broken transfers and wrong bodies -------------------------------------------------------------
def test_connection_reset_mid_download_is_retried(run, emulator, fixtures):
    glb = fixtures.glb("blob")
    emulator.fault(lambda req: req.server == "cdn",
                   Reply(200, glb, content_type="model/gltf-binary", cut_after=200))
    objects, job = run("segmind_sam3d")
    assert isinstance(objects, list), objects
    assert len(emulator.requests(server="cdn")) == 2
    assert not [f for f in os.listdir(os.path.dirname(job.files[0])) if f.endswith(".part")]


def test_truncated_json_poll_is_retried(run, emulator):
    emulator.fault("/status", Reply(200, {"status": "PROCESSING", "request_id": "x"},
                                    cut_after=10))
    objects, _ = run("segmind_sam3d")
    assert isinstance(objects, list), objects


def test_html_page_where_json_was_expected(run, emulator):
    emulator.fault("/status", Reply(200, "<!doctype html><title>Login</title>",
                                    content_type="text/html"))
    objects, _ = run("segmind_sam3d")            # a poll is retried: the job still lands
    assert isinstance(objects, list), objects
    emulator.reset()
    emulator.fault("/scenario/v1/assets", Reply(200, "<!doctype html><title>Proxy</title>",
                                                content_type="text/html"))
    error, job = run("scenario_sam3d")
    assert "not data" in str(error) and "<title>" not in str(error)
    assert billed(emulator, "scenario_sam3d") == 0


def test_wrong_content_type_from_cdn_imports_nothing(run, emulator):
    emulator.fault(lambda req: req.server == "cdn",
                   Reply(200, "<html><body>Access denied</body></html>",
                         content_type="text/html"), times=10)
    before = count_data()
    error, job = run("segmind_sam3d")
    assert "web page instead of a 3D model" in str(error)
    assert count_data() == before
    assert job.files == [] and job.state == "failed"


def test_scenario_expired_signed_url_is_fetched_again(run, emulator):
    emulator.scenario.expire_first_url = True
    objects, job = run("scenario_sam3d")
    assert isinstance(objects, list), objects
    assert list(emulator.scenario.url_requests.values())[-1] == 2
    cdn = emulator.requests(server="cdn")
    assert [r for r in cdn if "-0.glb" in r.path] and [r for r in cdn if "-1.glb" in r.path]


def test_redirect_to_another_host_drops_the_key(run, emulator):
    emulator.segmind.output_mode = "redirect"
    objects, _ = run("segmind_sam3d")
    assert isinstance(objects, list), objects
    own = emulator.requests(server="api", contains="/segmind/files/")
    assert own and own[0].headers.get("x-api-key") == TEST_KEYS["segmind"]
    cdn = emulator.requests(server="cdn")
    assert cdn and cdn[0].headers.get("host", "").startswith("localhost:")
    assert "x-api-key" not in cdn[0].headers


@pytest.mark.parametrize("mode", ["url", "zip_url", "zip", "raw", "base64", "data_uri", "list",
                                  "dict"])
def test_segmind_output_forms(run, emulator, mode):
    emulator.segmind.output_mode = mode
    objects, job = run("segmind_sam3d")
    assert isinstance(objects, list) and len(objects) == 1, objects
    assert job.files[0].endswith("result-0.glb")


def test_segmind_output_missing(run, emulator):
    emulator.segmind.output_mode = "none"
    error, job = run("segmind_sam3d")
    assert "returned no model" in str(error)


def test_zip_without_glb_and_zip_slip_names(api, recon3d, tmp_path):
    import importlib
    import zipfile
    base = importlib.import_module(f"{recon3d.__name__}.providers.files")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../../evil.glb", b"glTF" + b"\0" * 100)
        archive.writestr("notes.txt", b"hi")
    dest = tmp_path / "out" / "result.glb"
    dest.parent.mkdir()
    base.extract_glb_from_zip(str(bad), str(dest))
    assert dest.read_bytes().startswith(b"glTF")
    assert not (tmp_path.parent / "evil.glb").exists()
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("notes.txt", b"hi")
    with pytest.raises(api.Recon3DError, match="holds no .glb"):
        base.extract_glb_from_zip(str(empty), str(tmp_path / "x.glb"))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.glb", b"glTF" + b"\0" * 5_000_000)
    with pytest.raises(api.Recon3DError, match="larger than Recon3D accepts"):
        base.extract_glb_from_zip(str(bomb), str(tmp_path / "y.glb"), max_bytes=1_000_000)
    assert not (tmp_path / "y.glb.part").exists()


def test_persistent_503_on_submit_says_the_service_is_down(run, emulator):
    emulator.fault(SUBMIT_PATH["segmind_sam3d"], Reply(503, {"error": "maintenance"},
                                                       headers={"Retry-After": "0"}), times=99)
    error, job = run("segmind_sam3d")
    assert error.code == "service_down" and "Segmind is having trouble (HTTP 503)" in str(error)
    assert "Try again in a few minutes" in str(error)
    assert len(emulator.requests(contains=SUBMIT_PATH["segmind_sam3d"])) == 5   # capped retries
    assert len(emulator.segmind.submits) == 0


def test_endless_429_on_submit_gives_up_with_the_rate_limit_message(api, recon3d, run,
                                                                    emulator):
    engine = recon3d.addon.runtime.running_engine()
    engine.rate_limit_give_up = 1.0
    try:
        emulator.fault(SUBMIT_PATH["scenario_sam3d"],
                       Reply(429, {"status": "error", "message": "Too many jobs",
                                   "details": {"actionName": "generate", "actionLimit": 3}},
                             headers={"Retry-After": "0"}), times=999)
        error, job = run("scenario_sam3d")
    finally:
        engine.rate_limit_give_up = 15 * 60.0
    assert error.code == "rate_limited"
    assert "too many jobs (at most 3 jobs at once)" in str(error)
    assert emulator.scenario.submits == []


def test_credits_and_progress_are_kept_on_the_job(api, run, emulator, fixtures):
    objects, job = run("segmind_sam3d")
    assert float(job.remaining_credits) == pytest.approx(emulator.segmind.credits)
    emulator.reset()
    serve(emulator, "scenario_sam3d", [fixtures.glb("blob")])
    emulator.scenario.duration = 6.0
    job = api.submit(fixtures.path("photo.png"), "scenario_sam3d")
    seen = set()
    while not job.done:
        seen.add(round(job.progress, 2))
        job.wait(0.05)
    assert job.state == "ready" and job.progress == 1.0
    assert any(0.0 < p < 1.0 for p in seen), seen          # Scenario's progress reached the job
    assert job.cost == emulator.scenario.cu_cost


def test_failed_download_can_be_retried_without_a_new_submit(api, emulator, fixtures):
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    fault = emulator.fault(lambda req: req.server == "cdn",
                           Reply(200, "<html>proxy login</html>", content_type="text/html"),
                           times=99)
    job = api.submit(fixtures.path("photo.png"), "segmind_sam3d")
    assert job.wait(30).state == "failed" and job.error_code == "result"
    fault.times = 0                                   # the CDN recovers
    assert api.retry(job) is job
    assert job.wait(30).state == "ready", job.error
    assert len(api.import_job(job)) == 1
    assert len(emulator.segmind.submits) == 1         # fetched again, never sent again
    emulator.segmind.fail_reason = "Nothing to model"
    failed = api.submit(fixtures.path("photo.png"), "segmind_sam3d")
    assert failed.wait(30).state == "failed"
    with pytest.raises(api.Recon3DError, match="generate again"):
        api.retry(failed)                             # the service said no: nothing to fetch


def test_cdn_outage_longer_than_the_retries_leaves_a_retryable_job(api, recon3d, emulator,
                                                                    fixtures):
    """A CDN 5xx while downloading a paid result is not "generate again": the job fails with a
    code the error table marks refetchable, its message says the result is safe, and
    api.retry fetches it once the CDN is back — one submit in all."""
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    outage = emulator.fault(lambda req: req.server == "cdn", Reply(503, "down"), times=999)
    engine = recon3d.addon.runtime.running_engine()
    engine.download_give_up = 1.0             # the engine's own patience (minutes) cut short
    try:
        job = api.submit(fixtures.path("photo.png"), "segmind_sam3d")
        assert job.wait(120).state == "failed", job.state
    finally:
        engine.download_give_up = 5 * 60.0
    assert recon3d.errors.CODES[job.error_code].refetch, job.error_code
    assert "safe" in job.error and "Retry Download" in job.error, job.error
    assert not any(name.endswith(".part") for name in os.listdir(os.path.dirname(
        job.inputs["image_path"])))
    outage.times = 0                                   # the CDN is back
    api.retry(job)
    assert job.wait(60).state == "ready", job.error
    assert len(api.import_job(job)) == 1
    assert len(emulator.segmind.submits) == 1


def test_a_long_retry_after_pauses_the_service_for_as_long_even_on_the_last_try(recon3d,
                                                                                emulator):
    """Retry-After: 120 pauses every request to the service for 120 s (one retry's own wait
    is capped at 30 s, the service's pause is not), also when the last try gives up."""
    import importlib
    from conftest import PKG
    providers, runtime, errors = (importlib.import_module(f"{PKG}.{m}")
                                  for m in ("providers", "addon.runtime", "errors"))
    paused, slept = [], []
    provider = providers.make_provider("segmind_sam3d", runtime.settings_for("segmind_sam3d"),
                                       on_backoff=paused.append, sleep=slept.append)
    emulator.fault("/status", Reply(429, {"error": "slow down"},
                                    headers={"Retry-After": "120"}), times=99)
    with pytest.raises(errors.Recon3DError) as caught:
        provider.http.request("GET", "/v2/requests/abc/status")
    assert caught.value.code == "rate_limited"
    assert paused == [120.0] * len(emulator.requests(contains="/status")) and len(paused) >= 2
    assert slept and all(s <= 30.0 for s in slept)
