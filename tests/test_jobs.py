# SPDX-License-Identifier: GPL-3.0-or-later
"""Jobs survive anything: real processes killed with SIGKILL, resume, cancel, concurrency."""
from __future__ import annotations

import base64
import importlib
import json
import os
import signal
import time

import bpy
import pytest

from conftest import PKG, count_data, run_blender, start_blender
from emulator import Reply, TEST_KEYS, wait_until
from test_providers import serve


def journal(data_dir, job_id) -> dict:
    try:
        with open(os.path.join(data_dir, "jobs", job_id, "job.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


SUBMIT_AND_SLEEP = """
    mod = install_from_zip(ZIP, REPO)
    from bl_ext.recon3d_test.recon3d import api
    job = api.submit(PHOTO, PROVIDER, prompt="chair")
    say("JOB", job.id)
    import time
    time.sleep(600)
"""

RESUME_AND_IMPORT = """
    import time
    t0 = time.monotonic()
    mod = install_from_zip(ZIP, REPO)
    from bl_ext.recon3d_test.recon3d import api
    listed = {j.id: j.state for j in api.jobs()}
    job = api.get_job(JOB_ID)
    state_on_enable = job.state
    job.wait(timeout=60)
    result = dict(listed=listed, state_on_enable=state_on_enable, state=job.state,
                  error=job.error, polls=job.polls)
    if job.state == "ready":
        objects = api.import_job(job)
        result.update(objects=[o.name for o in objects], scales=[tuple(o.scale) for o in objects],
                      imported=job.state)
    answer(result)
"""


def _code(template: str, **values) -> str:
    import textwrap
    return "".join(f"{k} = {v!r}\n" for k, v in values.items()) + textwrap.dedent(template)


@pytest.fixture
def crash_env(tmp_path):
    data = tmp_path / "data"
    return {"RECON3D_DATA_DIR": str(data), "BLENDER_USER_RESOURCES": str(tmp_path / "userA")}


def _start_and_kill(emulator, fixtures, tmp_path, crash_env, provider, until):
    """Blender A submits, and is SIGKILLed once the journal satisfies `until`."""
    proc = start_blender(_code(SUBMIT_AND_SLEEP, REPO=str(tmp_path / "repoA"),
                               PHOTO=fixtures.path("photo.png"), PROVIDER=provider),
                         env=crash_env)
    try:
        job_id = None
        deadline = time.monotonic() + 90
        while job_id is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("JOB:"):
                job_id = json.loads(line[4:])
            elif not line and proc.poll() is not None:
                break
        assert job_id, proc.stderr.read()[-3000:]
        assert wait_until(lambda: until(journal(crash_env["RECON3D_DATA_DIR"], job_id)), 60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    return job_id


def _resume(tmp_path, crash_env, job_id):
    env = dict(crash_env, BLENDER_USER_RESOURCES=str(tmp_path / "userB"))
    return run_blender(_code(RESUME_AND_IMPORT, REPO=str(tmp_path / "repoB"), JOB_ID=job_id),
                       env=env)


def test_killed_while_running_resumes_in_a_new_blender(emulator, fixtures, tmp_path,
                                                       crash_env):
    serve(emulator, "segmind_sam3d", [fixtures.glb("sam3d_posed")])
    emulator.segmind.duration = 4.0
    job_id = _start_and_kill(emulator, fixtures, tmp_path, crash_env, "segmind_sam3d",
                             lambda j: j.get("state") == "running" and j.get("remote_id"))
    assert emulator.requests(server="cdn") == []          # killed before any download
    result = _resume(tmp_path, crash_env, job_id)
    assert job_id in result["listed"]
    assert result["state_on_enable"] in ("running", "downloading", "ready")
    assert result["state"] == "ready", result
    assert result["imported"] == "imported" and len(result["objects"]) == 1
    assert result["scales"] == [[1.0, 1.0, 1.0]]
    assert len(emulator.segmind.submits) == 1
    assert journal(crash_env["RECON3D_DATA_DIR"], job_id)["state"] == "imported"


def test_killed_after_download_imports_without_downloading_again(emulator, fixtures, tmp_path,
                                                                 crash_env):
    serve(emulator, "segmind_sam3d", [fixtures.glb("sam3d_posed")])
    job_id = _start_and_kill(emulator, fixtures, tmp_path, crash_env, "segmind_sam3d",
                             lambda j: j.get("state") == "ready")
    downloads = len(emulator.requests(server="cdn"))
    assert downloads == 1
    result = _resume(tmp_path, crash_env, job_id)
    assert result["state_on_enable"] == "ready" and result["polls"] > 0
    assert result["imported"] == "imported" and len(result["objects"]) == 1
    assert len(emulator.requests(server="cdn")) == downloads     # not downloaded again
    assert len(emulator.segmind.submits) == 1


def test_killed_between_send_and_record_is_not_sent_again(emulator, fixtures, tmp_path,
                                                          crash_env):
    """The service took the job, but Blender died before hearing its id: never re-send."""
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    emulator.fault("/segmind/v2/sam-3d-objects", Reply(200, {"request_id": "late"}, delay=30),
                   after_service=True)
    job_id = _start_and_kill(emulator, fixtures, tmp_path, crash_env, "segmind_sam3d",
                             lambda j: j.get("submit_sent") and len(emulator.segmind.submits))
    result = _resume(tmp_path, crash_env, job_id)
    assert result["state"] == "failed"
    assert "dashboard" in result["error"] and "not charged twice" in result["error"]
    assert len(emulator.segmind.submits) == 1


def test_runware_killed_between_send_and_record_finds_its_task(emulator, fixtures, tmp_path,
                                                              crash_env):
    serve(emulator, "runware_sam3d", [fixtures.glb("blob")])
    emulator.fault(lambda r: b'"3dInference"' in r.body,
                   Reply(200, {"data": []}, delay=30), after_service=True)
    job_id = _start_and_kill(emulator, fixtures, tmp_path, crash_env, "runware_sam3d",
                             lambda j: j.get("submit_sent") and emulator.runware.billed)
    task = journal(crash_env["RECON3D_DATA_DIR"], job_id)["service_data"]["taskUUID"]
    result = _resume(tmp_path, crash_env, job_id)
    assert result["state"] == "ready", result
    sent = [t["taskUUID"] for r in emulator.runware.bodies for t in r.json
            if t["taskType"] == "3dInference"]
    assert sent == [task]               # the service was asked (getResponse) and had it
    assert emulator.runware.billed == 1 and emulator.runware.conflicts == []


@pytest.mark.parametrize("provider", ["segmind_sam3d", "scenario_sam3d"])
def test_cancel_stops_polling_within_one_interval(api, emulator, fixtures, provider):
    serve(emulator, provider, [fixtures.glb("blob")])
    emulator.segmind.duration = emulator.scenario.duration = 60.0
    poll_path = "/status" if provider == "segmind_sam3d" else "/scenario/v1/jobs/"
    job = api.submit(fixtures.path("photo.png"), provider)
    assert wait_until(lambda: len(emulator.requests(contains=poll_path, method="GET")) >= 2, 20)
    before = count_data()
    api.cancel(job)
    canceled_at = time.monotonic()
    assert job.wait(timeout=5).state == "canceled"
    assert time.monotonic() - canceled_at < 1.0          # well inside one poll interval
    polls = len(emulator.requests(contains=poll_path, method="GET"))
    time.sleep(4.0)                                     # longer than any early poll interval
    assert len(emulator.requests(contains=poll_path, method="GET")) == polls
    assert count_data() == before and job.files == []
    with pytest.raises(api.Recon3DError, match="canceled"):
        api.import_job(job)
    if provider == "scenario_sam3d":                    # asked the service too (best effort)
        assert wait_until(lambda: emulator.scenario.cancels == [job.remote_id], 5)


def test_fifty_jobs_with_a_limit_of_four_and_a_burst_of_429s(api, recon3d, emulator, fixtures):
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.max_in_flight = 4
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    emulator.segmind.duration = 0.2
    emulator.fault("/status", Reply(429, {"error": "Too many requests"},
                                    headers={"Retry-After": "0.2"}), times=25)
    jobs = [api.submit(fixtures.path("photo.png"), "segmind_sam3d") for _ in range(50)]
    for job in jobs:
        job.wait(timeout=120)
    assert [j.state for j in jobs] == ["ready"] * 50, {j.state for j in jobs}
    assert emulator.segmind.max_running <= 4
    assert emulator.segmind.max_running == 4             # the limit was actually reached
    assert len(emulator.segmind.submits) == 50
    assert sum(f.used for f in emulator.faults) == 25    # the 429 burst really happened
    # Submitted in order: the first submit the emulator saw came from the first job.
    assert emulator.segmind.submits[0].time <= emulator.segmind.submits[-1].time


def test_keys_never_reach_the_journal_data_folder_or_blend(api, emulator, fixtures, tmp_path):
    for provider in ("segmind_sam3d", "scenario_sam3d", "scenario_pixal3d", "runware_sam3d"):
        serve(emulator, provider, [fixtures.glb("blob")])
        api.reconstruct(fixtures.path("photo.png"), provider=provider)
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    data_dir = os.environ["RECON3D_DATA_DIR"]
    files = [os.path.join(d, f) for d, _, fs in os.walk(data_dir) for f in fs] + [str(blend)]
    assert sum(f.endswith("job.json") for f in files) >= 4
    secrets = list(TEST_KEYS.values())
    basic = base64.b64encode(f"{TEST_KEYS['scenario_key']}:{TEST_KEYS['scenario_secret']}"
                             .encode())
    for path in files:
        with open(path, "rb") as fh:
            content = fh.read()
        for secret in secrets:
            assert secret.encode() not in content, path
        assert basic not in content, path


def test_auto_import_only_into_the_file_it_came_from(api, recon3d, emulator, fixtures,
                                                    tmp_path):
    bridge = importlib.import_module(f"{PKG}.blender.main_thread")
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    form = bpy.context.scene.recon3d
    form.image_path = fixtures.path("photo.png")
    form.provider = "segmind_sam3d"
    assert bpy.ops.recon3d.submit() == {"FINISHED"}
    job = api.jobs()[-1]
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "other.blend"))   # a different file
    assert job.wait(30).state == "ready", job.error
    for _ in range(3):
        bridge.drain()
    assert job.state == "ready"                              # waits for a manual import
    assert [o for o in bpy.data.objects if o.type == "MESH"] == []
    assert bpy.ops.recon3d.import_job(job_id=job.id) == {"FINISHED"}
    assert job.state == "imported"


def test_sidebar_jobs_ready_while_a_headless_batch_waits_are_imported_without_undo_steps(
        api, recon3d, emulator, fixtures):
    """Headless Blender has nobody to undo an import: the auto-import pushes no undo step
    (a crash dump of headless 4.5 showed the main thread inside that push, made from a
    batch's wait loop). The bpy module keeps no undo step unless one is pushed explicitly;
    after two pushes `ed.undo` becomes possible, so two auto-imports would show it."""
    assert bpy.app.background
    assert not bpy.ops.ed.undo.poll(), "an earlier test left undo steps: nothing to measure"
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    form = bpy.context.scene.recon3d
    form.image_path, form.provider = fixtures.path("photo.png"), "segmind_sam3d"
    before = {job.id for job in api.jobs()}
    for _ in range(2):
        assert bpy.ops.recon3d.submit() == {"FINISHED"}
    sidebar = [job for job in api.jobs() if job.id not in before]
    assert len(sidebar) == 2
    for job in sidebar:
        assert job.wait(30).state == "ready", job.error      # nobody has drained yet
    results = api.reconstruct_many([fixtures.path("photo.png")])
    assert [r.state for r in results] == ["imported"]
    assert [job.state for job in sidebar] == ["imported", "imported"]   # the batch's drain
    assert all(job.imported_objects for job in sidebar)
    assert not bpy.ops.ed.undo.poll()


def test_polls_are_counted_and_adaptive(api, recon3d, emulator, fixtures):
    polling = importlib.import_module(f"{PKG}.jobs.polling")
    import random
    rng = random.Random(1)
    first = polling.next_poll_interval(0, rng=rng)
    second = polling.next_poll_interval(1, rng=rng)
    late = [polling.next_poll_interval(age, rng=rng) for age in (30, 60)]
    long_job = polling.next_poll_interval(600, rng=rng)
    assert first < 1.2 and second < 2.3 and 3.0 <= min(late) <= max(late) <= 3.8
    assert 27 <= long_job <= 33
    near_done = polling.next_poll_interval(60, progress=0.95, rng=rng)
    assert near_done < 2.0                                  # progress pulls the poll closer
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    emulator.segmind.duration = 2.5
    job = api.submit(fixtures.path("photo.png"), "segmind_sam3d")
    assert job.wait(30).state == "ready"
    assert job.polls == len(emulator.requests(contains="/status"))
    assert 2 <= job.polls <= 3
