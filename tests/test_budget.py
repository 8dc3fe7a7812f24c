# SPDX-License-Identifier: GPL-3.0-or-later
"""The request budget per service (jobs/budget.py) and the schedule around each model's
learned duration (jobs/durations.py, jobs/polling.py)."""
from __future__ import annotations

import importlib
import json
import random
import threading
import time

import bpy
import pytest

from conftest import PKG
from emulator import peak_per_second, wait_until


def test_jobs_of_two_providers_of_one_service_share_its_request_budget(api, recon3d, emulator,
                                                                       fixtures):
    budget = importlib.import_module(f"{PKG}.jobs.budget")
    prefs = bpy.context.preferences.addons[PKG].preferences
    emulator.scenario.results = [fixtures.glb("blob")]
    emulator.scenario.duration = 0.3
    prefs.max_in_flight = 16
    try:
        jobs = [api.submit(fixtures.path("photo.png"), provider)
                for provider in ("scenario_sam3d", "scenario_pixal3d") for _ in range(8)]
        for job in jobs:
            job.wait(timeout=120)
    finally:
        prefs.max_in_flight = 4
    assert [j.state for j in jobs] == ["ready"] * 16, [j.error for j in jobs]
    sent = [r.time for r in emulator.requests(server="api", contains="/scenario/")]
    # 16 jobs sent at once would ask for more (16 uploads at the start alone): the budget,
    # one for both Scenario models, held them to its rate, and no window saw more.
    assert len(sent) > 3 * budget.RATE
    assert peak_per_second(sent) == budget.RATE


def test_a_request_waiting_for_the_budget_stops_at_once_on_cancel_or_shutdown(recon3d):
    budget = importlib.import_module(f"{PKG}.jobs.budget")
    lanes = importlib.import_module(f"{PKG}.jobs.lanes")
    errors = importlib.import_module(f"{PKG}.errors")
    Job = importlib.import_module(f"{PKG}.jobs.model").Job
    full = budget.Budget(rate=1, window=60.0)
    full.take()                                     # the next slot is a minute away
    for stop_how, raised in (("cancel", errors.Canceled), ("shutdown", lanes.Stopped)):
        job = Job("segmind_sam3d", {"image_path": "x.png", "image_size": [8, 8]})
        stopping = threading.Event()
        outcome = {}

        def wait(job=job, stopping=stopping, outcome=outcome):
            try:
                full.take(lanes.StopSignal(job, stopping), urgency=5.0)
                outcome["got"] = True
            except BaseException as exc:            # noqa: BLE001 - recorded and checked
                outcome["error"] = exc
        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive() and not outcome       # held by the budget
        t0 = time.monotonic()
        (job.cancel_event if stop_how == "cancel" else stopping).set()
        thread.join(2)
        assert time.monotonic() - t0 < 0.5, stop_how
        assert isinstance(outcome.get("error"), raised), outcome
    assert full._waiting == []                      # the stopped waiters left the queue


def test_the_budget_serves_the_most_urgent_request_first_and_pauses_on_429(recon3d):
    budget = importlib.import_module(f"{PKG}.jobs.budget")
    one = budget.Budget(rate=1, window=0.4)
    one.take()
    order = []

    def take(name, urgency):
        one.take(urgency=urgency)
        order.append((name, time.monotonic()))
    early = threading.Thread(target=take, args=("early poll", -2.0))
    early.start()
    time.sleep(0.1)                                 # queued first...
    overdue = threading.Thread(target=take, args=("overdue poll", 1.0))
    overdue.start()
    early.join(3)
    overdue.join(3)
    assert [name for name, _ in order] == ["overdue poll", "early poll"]   # ...served last
    assert order[1][1] - order[0][1] >= 0.4 - 0.01  # one per window
    one.pause(0.5)                                  # a 429 asking for half a second
    t0 = time.monotonic()
    one.take()
    assert time.monotonic() - t0 >= 0.45


def test_durations_are_learned_per_model_and_its_options(recon3d, tmp_path):
    durations = importlib.import_module(f"{PKG}.jobs.durations")
    providers = importlib.import_module(f"{PKG}.providers")
    specs = providers.REGISTRY["fal_sam3d"].options
    key = durations.duration_key
    assert key("fal_sam3d", {}, specs) == "fal_sam3d"
    # Defaults and Recon3D's own options (not sent) do not make another model...
    assert key("fal_sam3d", {"export_textured_glb": False, "import_splat": True}, specs) == \
        "fal_sam3d"
    # ...an option the service runs differently does.
    textured = key("fal_sam3d", {"export_textured_glb": True}, specs)
    assert textured == "fal_sam3d?export_textured_glb=true"
    # A file from before (keyed by provider id) reads as that provider's default options.
    (tmp_path / "durations.json").write_text(json.dumps(
        {"fal_sam3d": [[19.0, 21.0], [20.0, 22.0], [18.0, 20.0]]}))
    learned = durations.Durations(str(tmp_path))
    assert learned.expected("fal_sam3d").median == pytest.approx(20.0)
    # Too few textured runs yet: judged by all of the provider's runs.
    learned.learn(textured, 59.0, 61.0)
    assert learned.expected(textured).median == pytest.approx(20.5)
    for low in (60.0, 61.0):
        learned.learn(textured, low, low + 2.0)
    assert learned.expected(textured).median == pytest.approx(61.0)
    assert learned.expected("fal_sam3d").median == pytest.approx(20.0)
    assert learned.expected("fal_trellis2") is None


def test_the_schedule_is_sparse_before_the_learned_spread_and_dense_through_it(recon3d):
    durations = importlib.import_module(f"{PKG}.jobs.durations")
    polling = importlib.import_module(f"{PKG}.jobs.polling")
    learned = durations.Durations(None)
    rng = random.Random(5)
    for _ in range(30):                             # jobs of 120 s ± 7 %, polled 1 s apart
        finish = 120.0 * rng.gauss(1.0, 0.07)
        learned.learn("m", finish - rng.uniform(0, 1), finish + 1)
    expected = learned.expected("m")
    assert 95 < expected.early < 110 < expected.median < 130 < expected.late < 150
    no_jitter = random.Random(0)
    polling.JITTER, jitter = 0.0, polling.JITTER
    try:
        ages = [0.0]
        while ages[-1] < 160:
            ages.append(ages[-1] + polling.next_poll_interval(ages[-1], rng=no_jitter,
                                                              expected=expected))
    finally:
        polling.JITTER = jitter
    before = [a for a in ages if a < expected.early - 1e-6]
    through = [a for a in ages if expected.early - 1e-6 <= a <= expected.late]
    assert before[1] == pytest.approx(1.0)          # one quick poll: a refused job shows
    assert len(before) <= 6                         # then a few, on the way to the spread
    gaps = [b - a for a, b in zip(through, through[1:])]
    assert max(gaps) <= 1.5 * polling.DENSE_LIMITS[1] + 1e-6
    near = min(gaps[i] for i, a in enumerate(through[:-1]) if abs(a - expected.median) < 3)
    assert near == pytest.approx(polling.DENSE_LIMITS[1], rel=0.05)   # densest at the median
    assert len(ages) < 160 / 4                      # far fewer than a 1 s poller's 160
    after = [b - a for a, b in zip(ages, ages[1:]) if a > expected.late]
    assert after == sorted(after) and after[0] >= polling.DENSE_LIMITS[1]   # backing off
    # The budget serves polls past the median before those on the way to the spread.
    assert polling.urgency(expected.median + 5, expected) > 0 > \
        polling.urgency(expected.early + 1, expected) > polling.URGENCY_SUBMIT > \
        polling.urgency(10.0, expected)


def test_a_canceled_job_asks_the_service_to_cancel_once_the_paused_budget_allows(
        api, recon3d, emulator, fixtures):
    runtime = importlib.import_module(f"{PKG}.addon.runtime")
    emulator.scenario.results = [fixtures.glb("blob")]
    emulator.scenario.duration = 30
    job = api.submit(fixtures.path("photo.png"), "scenario_sam3d")
    assert wait_until(lambda: job.state == "running", 10)
    budget = runtime.engine().budgets.for_provider("scenario_sam3d")
    budget.pause(1.5)                               # as a 429 asking for 1.5 s would
    resumes = time.monotonic() + 1.5
    api.cancel(job)
    assert wait_until(lambda: job.state == "canceled", 1.0)    # locally at once
    assert emulator.scenario.cancels == []          # the service is not asked yet...
    assert wait_until(lambda: emulator.scenario.cancels == [job.remote_id], 5)
    assert time.monotonic() >= resumes - 0.05       # ...but once the pause is over


def test_the_request_rate_preference_sets_every_services_budget(recon3d):
    """Preferences › Requests per Second per Service (default 10) reaches the running engine's
    budgets, those made already and those made later."""
    runtime = importlib.import_module(f"{PKG}.addon.runtime")
    prefs = importlib.import_module(f"{PKG}.addon.preferences").get()
    eng = runtime.engine()
    assert prefs.requests_per_second == 10
    made = eng.budgets.for_provider("segmind_sam3d")
    assert made.rate == 10
    try:
        prefs.requests_per_second = 25
        assert made.rate == 25 and eng.budgets.for_provider("fal_sam3d").rate == 25
    finally:
        prefs.requests_per_second = 10
    assert made.rate == 10


def test_a_damaged_durations_file_is_read_as_what_is_valid_in_it(recon3d, tmp_path):
    """durations.json is only a hint: whatever else is in it (another program's JSON, NaN,
    a reversed window) is left out, and reading it never fails the engine."""
    durations = importlib.import_module(f"{PKG}.jobs.durations")
    path = tmp_path / "durations.json"
    for text in ("[]", '"x"', "1", "[[1, 2]]", "null", "[" * 100_000, "{"):
        path.write_text(text)
        assert durations.Durations(str(tmp_path)).expected("m") is None, text
    good = [[19.0, 21.0], [20.0, 22.0], [18.0, 20.0]]
    path.write_text('{"m": [[NaN, 1], [1, Infinity], [-Infinity, 5], [5, 3], [-2, 1], '
                    '[1, "2"], [true, 2], [1, 2, 3], 7, "x", [1, 1' + "0" * 400 + '], '
                    + ", ".join(json.dumps(w) for w in good) + '], '
                    '"n": "x", "o": 3, "p": {"a": 1}, "q": [[NaN, NaN], [3, 1]]}')
    learned = durations.Durations(str(tmp_path))
    reference = durations.Durations(None)
    for low, high in good:
        reference.learn("m", low, high)
    assert learned.expected("m") == reference.expected("m")
    assert learned.expected("m").median == pytest.approx(20.0)
    for key in "nopq":
        assert learned.expected(key) is None
    learned.learn("m", 19.5, 20.5)                  # what it writes back is only the valid
    assert json.loads(path.read_text()) == {"m": good + [[19.5, 20.5]]}
    # learn() keeps to the same rule.
    for low, high in ((float("nan"), 1.0), (1.0, float("inf")), (5.0, 3.0), (-1.0, 2.0)):
        learned.learn("r", low, high)
    assert "r" not in json.loads(path.read_text())


def test_a_non_finite_or_negative_wait_is_no_wait_and_the_schedule_stays_finite(recon3d):
    polling = importlib.import_module(f"{PKG}.jobs.polling")
    durations = importlib.import_module(f"{PKG}.jobs.durations")
    lanes = importlib.import_module(f"{PKG}.jobs.lanes")
    Job = importlib.import_module(f"{PKG}.jobs.model").Job
    job = Job("segmind_sam3d", {"image_path": "x.png", "image_size": [8, 8]})
    stop = lanes.StopSignal(job, threading.Event())
    for seconds in (float("nan"), float("inf"), -5.0, 0.0):
        returned = []
        waiter = threading.Thread(target=lambda s=seconds: returned.append(stop.wait(s)),
                                  daemon=True)
        t0 = time.monotonic()
        waiter.start()
        waiter.join(2)
        assert returned == [False] and time.monotonic() - t0 < 0.5, seconds
    nan, inf = float("nan"), float("inf")
    low, high = polling.DENSE_LIMITS[0], polling.APPROACH_CAP
    for expected in (durations.Expected(nan, nan, nan), durations.Expected(20.0, nan, 25.0),
                     durations.Expected(inf, 1.0, inf), durations.Expected(20.0, 18.0, 22.0),
                     None):
        for age in (nan, -inf, -3.0, 0.0, 1.0, 19.0, 21.0, 500.0, 1e9, inf):
            for progress in (None, nan, 0.5):
                interval = polling.next_poll_interval(age, progress, expected=expected)
                assert low <= interval <= high, (expected, age, progress, interval)
            assert polling.URGENCY_EARLY <= polling.urgency(age, expected) <= \
                polling.URGENCY_POLL_MAX, (expected, age)


def test_a_poll_ranks_below_downloads_and_cancels_however_overdue(recon3d):
    polling = importlib.import_module(f"{PKG}.jobs.polling")
    durations = importlib.import_module(f"{PKG}.jobs.durations")
    two_seconds = durations.Expected(2.0, 1.92, 2.08)
    assert polling.urgency(5.0, two_seconds) < polling.URGENCY_DOWNLOAD     # 3 s overdue...
    assert polling.urgency(5.0, two_seconds) == polling.URGENCY_POLL_MAX     # ...at most this
    assert polling.urgency(2.04, two_seconds) == pytest.approx(0.5)          # within: as was
    assert polling.urgency(1.0, two_seconds) == polling.URGENCY_EARLY
    assert polling.URGENCY_SUBMIT < polling.URGENCY_UNKNOWN == polling.urgency(3.0, None) < \
        polling.URGENCY_POLL_MAX < polling.URGENCY_DOWNLOAD < polling.URGENCY_CANCEL


def test_duration_keys_hold_only_declared_numbers_and_switches_and_are_bounded(recon3d,
                                                                               tmp_path):
    durations = importlib.import_module(f"{PKG}.jobs.durations")
    providers = importlib.import_module(f"{PKG}.providers")
    specs = providers.REGISTRY["fal_sam3d"].options
    # An option the provider does not declare is sent as typed (perhaps a token): never kept.
    options = {"webhook_token": "s3cret", "seed_list": [1, 2], "export_textured_glb": True}
    assert durations.duration_key("fal_sam3d", options, specs) == \
        "fal_sam3d?export_textured_glb=true"
    assert durations.duration_key("fal_sam3d", {"webhook_token": "s3cret"}, specs) == \
        "fal_sam3d"
    # One key per model learned, the least recently learned dropped past MAX_KEYS.
    learned = durations.Durations(str(tmp_path))
    total = durations.MAX_KEYS + 20
    for n in range(total):
        learned.learn(f"m{n}", 1.0, 2.0)
        learned.learn("m0", 1.0, 2.0)               # m0: learned again each time
    kept = list(json.loads((tmp_path / "durations.json").read_text()))
    survivors = [f"m{n}" for n in range(total - durations.MAX_KEYS + 1, total)] + ["m0"]
    assert kept == survivors
    # A new session keeps that order: the next model learned drops the oldest.
    durations.Durations(str(tmp_path)).learn("new", 1.0, 2.0)
    kept = list(json.loads((tmp_path / "durations.json").read_text()))
    assert kept == survivors[1:] + ["new"]


def test_clock_skew_and_long_models_keep_the_schedule_sparse(recon3d):
    polling = importlib.import_module(f"{PKG}.jobs.polling")
    durations = importlib.import_module(f"{PKG}.jobs.durations")
    rng = random.Random(1)
    # Another Blender, its clock 5 minutes ahead, sent the job: its age reads negative.
    for expected in (None, durations.Expected(120.0, 100.0, 140.0)):
        assert polling.next_poll_interval(-300.0, rng=rng, expected=expected) >= \
            polling.SHORT_JOB_CAP * (1 - polling.JITTER), expected
    assert polling.urgency(-300.0, durations.Expected(120.0, 100.0, 140.0)) == \
        polling.URGENCY_EARLY
    # A model of 50 minutes is still checked every minute or so before its spread.
    long_model = durations.Expected(3000.0, 2800.0, 3200.0)
    ages = [0.0]
    while ages[-1] < 2800.0:
        ages.append(ages[-1] + polling.next_poll_interval(ages[-1], rng=rng,
                                                          expected=long_model))
    gaps = [b - a for a, b in zip(ages, ages[1:])]
    assert gaps[0] == pytest.approx(1.0, rel=polling.JITTER)
    assert max(gaps) <= polling.APPROACH_CAP
    assert len(ages) < 2800 / polling.APPROACH_CAP * 1.5


def test_a_cancel_request_that_meets_a_503_is_retried(api, recon3d, emulator, fixtures):
    """The request asking the service to cancel is retried like any other: the job's own
    cancel must not cut its retry pause short."""
    from emulator import Reply
    emulator.scenario.results = [fixtures.glb("blob")]
    emulator.scenario.duration = 30
    job = api.submit(fixtures.path("photo.png"), "scenario_sam3d")
    assert wait_until(lambda: job.state == "running", 10)
    emulator.fault(lambda req: req.method == "POST" and "/action" in req.path,
                   Reply(503, {"message": "busy"}, headers={"Retry-After": "0"}))
    api.cancel(job)
    assert wait_until(lambda: emulator.scenario.cancels == [job.remote_id], 10)
    assert len(emulator.requests(contains="/action")) == 2      # the 503, then the cancel
