# SPDX-License-Identifier: GPL-3.0-or-later
"""Two headless Blenders on one data folder (issue 10, done-when 1): one owner per job, one
submit per job, the other Blender lists the jobs without touching them and finishes them
once their owner is SIGKILLed."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from conftest import start_blender
from emulator import wait_until
from test_providers import serve

JOBS = 5
LIMIT = 2           # Blender A's jobs at once per service: the rest wait queued

# Both Blenders count what they themselves send (the emulator counts what reached it).
PRELUDE = """
    import time
    mod = install_from_zip(ZIP, REPO)
    import bpy
    from bl_ext.recon3d_test.recon3d import api
    from bl_ext.recon3d_test.recon3d.providers import provider_class
    from rig import count_sends
    sent = count_sends(provider_class("segmind_sam3d"))
    def report(ids):
        jobs = [api.get_job(i) for i in ids]
        return dict(sent=sent, pid=os.getpid(),
                    jobs={j.id: dict(state=j.state, remote_id=j.remote_id, error=j.error,
                                     owner=j.owner and j.owner.pid) for j in jobs})
"""

OWNER = PRELUDE + """
    bpy.context.preferences.addons["bl_ext.recon3d_test.recon3d"].preferences.max_in_flight = LIMIT
    ids = [api.submit(PHOTO, "segmind_sam3d").id for _ in range(JOBS)]
    say("JOBS", ids)
    for job_id in ids:
        api.get_job(job_id).wait(timeout=120)
    say("DONE", report(ids))
    time.sleep(600)          # stays alive (owning its jobs) until the test ends it
"""

OTHER = PRELUDE + """
    listed = {j.id: (j.state, j.owner and j.owner.pid, j.owner and j.owner.describe())
              for j in api.jobs()}
    say("LISTED", listed)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not all(
            api.get_job(i).state == "ready" for i in IDS):
        time.sleep(0.1)
    say("DONE", report(IDS))
    time.sleep(600)
"""


def _code(template: str, **values) -> str:
    import textwrap
    return "".join(f"{k} = {v!r}\n" for k, v in values.items()) + textwrap.dedent(template)


def _read(proc, tag: str, timeout: float = 150):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(tag + ":"):
            return json.loads(line[len(tag) + 1:])
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {tag} from Blender {proc.pid}: {proc.stderr.read()[-3000:]}")


def _journal_states(data_dir, ids) -> dict:
    states = {}
    for job_id in ids:
        try:
            with open(os.path.join(data_dir, "jobs", job_id, "job.json")) as fh:
                states[job_id] = json.load(fh)["state"]
        except (OSError, ValueError):
            states[job_id] = None
    return states


def _close(*procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def _start_pair(emulator, fixtures, tmp_path, duration: float):
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    emulator.segmind.duration = duration
    data = str(tmp_path / "data")

    def env(name):
        return {"RECON3D_DATA_DIR": data, "BLENDER_USER_RESOURCES": str(tmp_path / f"u{name}")}
    a = start_blender(_code(OWNER, REPO=str(tmp_path / "repoA"), PHOTO=fixtures.path(
        "photo.png"), JOBS=JOBS, LIMIT=LIMIT), env=env("A"))
    ids = _read(a, "JOBS")
    b = start_blender(_code(OTHER, REPO=str(tmp_path / "repoB"), IDS=ids), env=env("B"))
    return a, b, ids, data


def test_ownership_two_blenders_one_submit_per_job_the_second_only_lists(emulator, fixtures,
                                                                        tmp_path):
    a, b, ids, _ = _start_pair(emulator, fixtures, tmp_path, duration=3.0)
    try:
        listed = _read(b, "LISTED")
        assert set(ids) <= set(listed)
        for job_id in ids:
            state, owner, text = listed[job_id]
            assert owner == a.pid and str(a.pid) in text, listed[job_id]
        done_a, done_b = _read(a, "DONE"), _read(b, "DONE")
    finally:
        _close(a, b)
    assert {j["state"] for j in done_a["jobs"].values()} == {"ready"}, done_a
    assert all(j["owner"] is None for j in done_a["jobs"].values())
    # B saw every job finish through the journal, and never sent anything for them.
    assert {j["state"] for j in done_b["jobs"].values()} == {"ready"}, done_b
    assert done_b["sent"] == {"submits": 0, "polls": {}}
    assert done_a["sent"]["submits"] == JOBS
    assert len(emulator.segmind.submits) == JOBS
    # Every poll the service saw came from A.
    remote = {j["remote_id"] for j in done_a["jobs"].values()}
    assert set(done_a["sent"]["polls"]) == remote
    assert all(emulator.segmind.jobs[r].polls == done_a["sent"]["polls"][r] for r in remote)


def test_ownership_sigkilled_owner_the_other_blender_finishes_its_jobs(emulator, fixtures,
                                                                       tmp_path):
    a, b, ids, data = _start_pair(emulator, fixtures, tmp_path, duration=6.0)
    try:
        listed = _read(b, "LISTED")
        assert {listed[i][1] for i in ids} == {a.pid}
        # Kill A while some jobs run and the rest still wait, none halfway through a submit.
        assert wait_until(lambda: sorted(_journal_states(data, ids).values()) ==
                          ["queued"] * (JOBS - LIMIT) + ["running"] * LIMIT, 30)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
        killed_at = time.monotonic()
        done_b = _read(b, "DONE")
        took = time.monotonic() - killed_at
    finally:
        _close(a, b)
    assert {j["state"] for j in done_b["jobs"].values()} == {"ready"}, done_b
    assert all(j["owner"] is None for j in done_b["jobs"].values())
    assert len(emulator.segmind.submits) == JOBS            # still one submit per job
    assert done_b["sent"]["submits"] == JOBS - LIMIT        # the queued ones, by B
    remote = {j["remote_id"] for j in done_b["jobs"].values()}
    assert set(done_b["sent"]["polls"]) == remote           # B polled all, A's running ones too
    assert took < 60, took


def test_ownership_closed_engine_hands_its_jobs_over(recon3d, emulator, fixtures, tmp_path):
    """Two engines on one folder in this process (each its own Ownership, so they exclude
    each other like two processes): B lists A's jobs, follows them through the journal, and
    takes them over when A shuts down cleanly (releasing them) — one submit per job."""
    import importlib
    from conftest import PKG
    jobs, runtime = (importlib.import_module(f"{PKG}.{m}") for m in ("jobs", "addon.runtime"))
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    emulator.segmind.duration = 1.5
    data = str(tmp_path / "data")
    a = jobs.Engine(data, runtime.settings_for, max_in_flight=1, owner_label="engine A")
    b = jobs.Engine(data, runtime.settings_for, max_in_flight=4, owner_label="engine B")
    b.takeover_interval = 0.1
    inputs = {"image_path": fixtures.path("photo.png"), "image_size": [64, 64]}
    mine = [a.submit(jobs.Job("segmind_sam3d", dict(inputs))) for _ in range(3)]
    try:
        assert b.resume() == []
        listed = {j.id: j for j in b.jobs()}
        assert set(listed) == {j.id for j in mine}
        assert {j.owner.label for j in listed.values()} == {"engine A"}
        assert wait_until(lambda: mine[0].state == "running" and
                          listed[mine[0].id].state == "running", 20)   # followed, not polled
        a.shutdown()
        assert [a.ownership.owns(j.id) for j in mine] == [False] * 3
        for job in listed.values():
            assert job.wait(30).state == "ready", job.error
        assert all(j.owner is None and b.ran_here(j) for j in listed.values())
        assert len(emulator.segmind.submits) == 3
    finally:
        a.shutdown()
        b.shutdown()


def test_ownership_a_lock_that_cannot_be_made_is_a_clear_error(recon3d, emulator, fixtures,
                                                               tmp_path):
    """A job folder where the lock file cannot be created (here: a folder in its place):
    submitting says so in a sentence, and enabling (resume) lists the job without failing."""
    import importlib
    from conftest import PKG
    jobs, runtime, errors = (importlib.import_module(f"{PKG}.{m}")
                             for m in ("jobs", "addon.runtime", "errors"))
    data = tmp_path / "data"
    engine = jobs.Engine(str(data), runtime.settings_for, owner_label="test")
    job = jobs.Job("segmind_sam3d", {"image_path": fixtures.path("photo.png"),
                                     "image_size": [64, 64]})
    (data / "jobs" / job.id / "owner.lock").mkdir(parents=True)
    try:
        with pytest.raises(errors.Recon3DError, match="could not lock job .* writable"):
            engine.submit(job)
        engine.journal.write(job)                  # as if journaled by an older version
        other = jobs.Engine(str(data), runtime.settings_for, owner_label="other")
        try:
            assert other.resume() == []
            assert [j.id for j in other.jobs()] == [job.id]
            assert other.get(job.id).state == "queued"
        finally:
            other.shutdown()
    finally:
        engine.shutdown()
    assert emulator.segmind.submits == []


@contextlib.contextmanager
def ready_job_locked_elsewhere(emulator, fixtures, tmp_path, holder: str):
    """An engine with a finished job it has let go of, whose lock another Ownership (another
    process, as far as locks go) now holds: (engine, job, that ownership)."""
    import importlib
    from conftest import PKG
    jobs, runtime, ownership = (importlib.import_module(f"{PKG}.{m}")
                                for m in ("jobs", "addon.runtime", "jobs.ownership"))
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    data = str(tmp_path / "data")
    engine = jobs.Engine(data, runtime.settings_for, owner_label="this Blender")
    other = ownership.Ownership(data, holder)
    try:
        job = engine.submit(jobs.Job("segmind_sam3d", {
            "image_path": fixtures.path("photo.png"), "image_size": [64, 64]}))
        assert job.wait(30).state == "ready", job.error
        assert wait_until(lambda: not engine.ownership.owns(job.id), 5)
        assert other.claim(job.id)
        yield engine, job, other
    finally:
        other.release_all()
        engine.shutdown()


def test_ownership_a_change_made_while_another_process_holds_the_lock_is_journaled_later(
        recon3d, emulator, fixtures, tmp_path):
    """Importing a finished job while another process holds its lock for an instant (its
    watch glancing at who owns it): the "imported" state reaches the journal once the lock is
    free, instead of being dropped — so the other Blender does not list it as still ready."""
    with ready_job_locked_elsewhere(emulator, fixtures, tmp_path,
                                    "the other Blender's watch") as (engine, job, glance):
        engine.mark_imported(job, ["Mesh"])

        assert engine.journal.load(job.id).state == "ready"      # locked: not yet written
        engine.check_others()
        assert engine.journal.load(job.id).state == "ready"      # still locked
        glance.release(job.id)
        engine.check_others()
        entry = engine.journal.load(job.id)
        assert (entry.state, entry.imported_objects) == ("imported", ["Mesh"])
        assert not engine.ownership.owns(job.id)                 # claimed for the write only


def test_ownership_a_job_removed_in_one_blender_stays_gone_when_another_changes_it(
        recon3d, emulator, fixtures, tmp_path):
    """Engine A removes a finished job; engine B still holds its copy and imports it (a
    stale reference): B's change is dropped instead of making the job's folder again (with a
    lock file and a record pointing at deleted files), so a restart lists nothing."""
    import importlib
    from conftest import PKG
    jobs, runtime = (importlib.import_module(f"{PKG}.{m}") for m in ("jobs", "addon.runtime"))
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    data = str(tmp_path / "data")
    a = jobs.Engine(data, runtime.settings_for, owner_label="engine A")
    b = jobs.Engine(data, runtime.settings_for, owner_label="engine B")
    try:
        job = a.submit(jobs.Job("segmind_sam3d", {
            "image_path": fixtures.path("photo.png"), "image_size": [64, 64]}))
        assert job.wait(30).state == "ready", job.error
        b.resume()
        stale = b.get(job.id)
        assert stale is not None and stale is not job
        folder = a.job_dir(job)
        a.remove(job)
        assert wait_until(lambda: not os.path.exists(folder), 10)
        b.mark_imported(stale, ["Mesh"])
        b.save_deferred()
        assert not os.path.exists(folder)
        b.check_others()
        assert b.get(job.id) is None and not os.path.exists(folder)
        fresh = jobs.Engine(data, runtime.settings_for, owner_label="after a restart")
        try:
            assert fresh.resume() == [] and fresh.jobs() == []
        finally:
            fresh.shutdown()
    finally:
        a.shutdown()
        b.shutdown()


def test_ownership_a_deferred_change_loses_to_the_owners_newer_entry(recon3d, emulator,
                                                                     fixtures, tmp_path):
    """A change made while another process held the job's lock is journaled later — but
    when that process journaled the job after our change, its newer entry wins: it is taken
    here and ours is dropped, instead of being written over it."""
    import time as clock
    with ready_job_locked_elsewhere(emulator, fixtures, tmp_path,
                                    "the other Blender") as (engine, job, other):
        engine.mark_imported(job, ["Mine"])                      # deferred: locked
        clock.sleep(0.01)
        theirs = engine.journal.load(job.id)
        theirs.update(state="imported", imported_objects=["Theirs"])   # later than ours
        engine.journal.write(theirs)                             # as its owner
        other.release(job.id)
        engine.check_others()
        entry = engine.journal.load(job.id)
        assert entry.imported_objects == ["Theirs"]
        assert job.imported_objects == ["Theirs"]
        assert not engine.ownership.owns(job.id)
