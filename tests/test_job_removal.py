# SPDX-License-Identifier: GPL-3.0-or-later
"""Removing jobs with their files (the Jobs panel's Remove, Preferences › Clear Old Results…)
and the placement and size defaults of the preferences, in real headless Blender against the
emulator."""
from __future__ import annotations

import errno
import importlib
import json
import os
import threading
import time

import bpy
import pytest
from mathutils import Vector

from conftest import PKG
from emulator import Reply, wait_until

DAY = 24 * 3600.0


def module(name: str):
    return importlib.import_module(f"{PKG}.{name}")


@pytest.fixture
def eng(recon3d, emulator):
    return module("addon.runtime").engine()


def finished_job(api, fixtures, emulator, **submit_kw):
    emulator.segmind.result = fixtures.glb("blob")
    job = api.submit(fixtures.path("photo.png"), "segmind_sam3d", **submit_kw)
    assert job.wait(timeout=30).state == "ready", job.error
    return job


def select(eng, job) -> None:
    """Select the job in the Jobs list, as a click in the panel does."""
    wm = bpy.context.window_manager
    module("addon.form").sync_job_list(wm, eng.jobs())
    wm.recon3d_jobs.active = [item.job_id for item in wm.recon3d_jobs.items].index(job.id)


def listed(eng) -> set:
    return {item.job_id for item in bpy.context.window_manager.recon3d_jobs.items}


def test_remove_a_finished_job_with_its_files(api, eng, fixtures, emulator):
    removal_ops = module("operators.removal")
    job = finished_job(api, fixtures, emulator, prompt="chair")
    objects = api.import_job(job, match_camera=True)
    assert job.state == "imported"
    folder = eng.job_dir(job)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert os.path.isfile(job.files[0]) and job.files[0].startswith(folder)
    camera = next(o for o in bpy.data.objects if o.type == "CAMERA")     # the scene was empty
    photo = camera.data.background_images[0].image
    # The photo is packed at once, so files saved before the removal keep it too.
    assert photo.packed_file is not None and photo.filepath.startswith(folder)
    # What the confirmation says: which job and model, what is deleted, what stays.
    words = "\n".join(removal_ops.confirmation(job, size))
    assert "Remove “chair” from the list?" in words and "Made with SAM 3D Objects" in words
    assert "photo copy" in words and "cannot be undone" in words
    assert "objects it imported stay" in words
    select(eng, job)
    assert bpy.ops.recon3d.job_remove.poll()
    assert bpy.ops.recon3d.job_remove(job_id=job.id) == {"FINISHED"}
    assert not os.path.exists(folder)
    assert eng.get(job.id) is None and job.id not in listed(eng)
    with pytest.raises(api.Recon3DError, match="no Recon3D job"):
        api.get_job(job.id)
    # The imported objects stay, and the camera still shows the photo (packed into the file).
    assert all(o.name in bpy.data.objects for o in [*objects, camera])
    assert photo.packed_file is not None
    # Read the folder again, as a restart and the shared-folder watch do: it stays gone.
    assert eng.resume() == [] and eng.get(job.id) is None
    eng.check_others()
    assert eng.get(job.id) is None
    assert job.id not in {j.id for j in eng.journal.load_all()}
    trash = os.path.join(eng.data_dir, module("jobs.removal").TRASH)
    assert wait_until(lambda: not os.listdir(trash), timeout=10)        # the deleter's work


def test_a_result_never_imported_can_be_removed_and_says_so(api, eng, fixtures, emulator):
    removal_ops = module("operators.removal")
    job = finished_job(api, fixtures, emulator)
    words = " ".join(removal_ops.confirmation(job, 2_500_000))
    assert "paid result was never imported and is lost with it" in words
    assert "cannot be fetched again after removal" in words and "(2.5 MB)" in words
    folder = eng.job_dir(job)
    select(eng, job)
    assert bpy.ops.recon3d.job_remove() == {"FINISHED"}          # the selected job
    assert not os.path.exists(folder) and eng.get(job.id) is None


def test_an_active_job_cannot_be_removed(api, eng, fixtures, emulator):
    emulator.segmind.result = fixtures.glb("blob")
    emulator.fault("/status", Reply(200, {"status": "PROCESSING", "request_id": "x"}),
                   times=1000)
    job = api.submit(fixtures.path("photo.png"), "segmind_sam3d")
    assert wait_until(lambda: job.state == "running", timeout=20), job.state
    folder = eng.job_dir(job)
    select(eng, job)
    # Greyed out in the panel, saying why (the poll's message is its tooltip); refused when
    # called anyway.
    assert not bpy.ops.recon3d.job_remove.poll()
    with pytest.raises(RuntimeError, match=r"poll\(\) .*cancel it first"):
        bpy.ops.recon3d.job_remove()
    with pytest.raises(RuntimeError, match="cancel it first"):
        bpy.ops.recon3d.job_remove(job_id=job.id)
    with pytest.raises(api.Recon3DError, match="cancel it first") as refused:
        api.remove(job)
    assert refused.value.code == "busy"
    polls = job.polls
    assert wait_until(lambda: job.polls > polls, timeout=20)    # it keeps running
    assert job.state == "running" and eng.get(job.id) is job and os.path.isdir(folder)
    assert os.path.isfile(os.path.join(folder, "job.json"))
    api.cancel(job)
    assert job.wait(timeout=30).state == "canceled"
    assert bpy.ops.recon3d.job_remove.poll()
    assert bpy.ops.recon3d.job_remove(job_id=job.id) == {"FINISHED"}
    assert not os.path.exists(folder)


def test_another_blenders_job_cannot_be_removed(api, eng, fixtures, emulator):
    ownership = module("jobs.ownership")
    job = finished_job(api, fixtures, emulator)
    folder = eng.job_dir(job)
    # A second owner of the data folder (as another Blender would be) holds the job.
    other = ownership.Ownership(eng.data_dir, "Blender 4.2 (GUI)")
    assert wait_until(lambda: other.claim(job.id), timeout=5)   # once its worker let go
    try:
        with pytest.raises(RuntimeError, match=r"Another Blender \(Blender 4.2 \(GUI\), "
                                               rf"process {os.getpid()}\) is working"):
            bpy.ops.recon3d.job_remove(job_id=job.id)
        assert os.path.isfile(os.path.join(folder, "job.json")) and eng.get(job.id) is job
        select(eng, job)
        assert not bpy.ops.recon3d.job_remove.poll()      # now the list knows who has it
    finally:
        other.release_all()
    job.owner = None                                     # (the watch notices it in ~2 s)
    assert bpy.ops.recon3d.job_remove(job_id=job.id) == {"FINISHED"}
    assert not os.path.exists(folder)


def _journal(engine_module, data_dir, job_id, state, *, age_days=0.0, payload=0, **fields):
    """A finished job as the journal holds it, finished `age_days` ago, with a result file
    of `payload` bytes (and the other `fields` given)."""
    Job = engine_module.Job
    job = Job("segmind_sam3d", {}, job_id=job_id, label=job_id)
    folder = os.path.join(data_dir, "jobs", job_id)
    os.makedirs(folder)
    result = os.path.join(folder, "result-0.glb")
    with open(result, "wb") as fh:
        fh.write(b"\0" * payload)
    job.update(state=state, files=[result], **fields)
    job.finished_at = job.updated_at = time.time() - age_days * DAY
    job.created_at = job.finished_at - 60
    with open(os.path.join(folder, "job.json"), "w", encoding="utf-8") as fh:
        json.dump(job.to_json(), fh)
    return folder


def test_a_job_removed_in_one_blender_leaves_the_others_list(recon3d, tmp_path):
    """Two engines on one data folder (two Blenders): a job removed in one leaves the other's
    list on its next look at the folder, and neither reads it back."""
    jobs = module("jobs")
    removal = module("jobs.removal")
    data = str(tmp_path / "shared")
    os.makedirs(os.path.join(data, "jobs"))
    folder = _journal(jobs, data, "job-a", "imported", payload=1000)
    _journal(jobs, data, "job-b", "failed")
    settings = module("addon.runtime").settings_for
    a = jobs.Engine(data, settings, owner_label="A")
    b = jobs.Engine(data, settings, owner_label="B")
    try:
        a.resume()
        b.resume()
        b.check_others()
        assert b.get("job-a") is not None
        size = removal.folder_size(folder)
        assert size > 1000                                  # the result and the record
        job = a.get("job-a")
        walkers = []
        real_size = removal.folder_size
        removal.folder_size = lambda path: walkers.append(
            threading.current_thread().name) or real_size(path)
        try:
            deletion = a.remove(job)
            assert not os.path.exists(folder)       # moved away at once (one rename) ...
            freed = deletion.wait(10)               # ... measured and deleted on a thread
        finally:
            removal.folder_size = real_size
        assert walkers == ["recon3d-delete"]
        assert size < freed < size + 1024       # and the owner record of the removal's claim
        assert not os.listdir(os.path.join(data, removal.TRASH))
        a.mark_imported(job, ["late"])          # a change from a stale reference: not written
        assert not os.path.exists(folder)
        b.check_others()
        assert b.get("job-a") is None and b.get("job-b") is not None
        a.check_others()
        a.resume()
        assert a.get("job-a") is None
    finally:
        a.shutdown()
        b.shutdown()


def test_a_failed_listing_of_the_data_folder_forgets_no_job(recon3d, tmp_path):
    """The data folder cannot be listed for a moment (a network share's hiccup), or a
    listing misses folders that are there: the jobs stay listed, and a change waiting for a
    lock held elsewhere is still journaled afterwards."""
    jobs = module("jobs")
    ownership = module("jobs.ownership")
    data = str(tmp_path / "shared")
    os.makedirs(os.path.join(data, "jobs"))
    _journal(jobs, data, "job-a", "ready")
    _journal(jobs, data, "job-b", "failed")
    eng = jobs.Engine(data, module("addon.runtime").settings_for, owner_label="A")
    glance = ownership.Ownership(data, "another Blender")
    try:
        eng.resume()
        eng.check_others()
        assert {j.id for j in eng.jobs()} == {"job-a", "job-b"}
        assert glance.claim("job-a")
        eng.mark_imported(eng.get("job-a"), ["Mesh"])          # waits for the lock
        away = os.path.join(data, "jobs-away")
        os.rename(os.path.join(data, "jobs"), away)
        try:
            assert eng.journal.ids() is None
            eng.check_others()
        finally:
            os.rename(away, os.path.join(data, "jobs"))
        assert {j.id for j in eng.jobs()} == {"job-a", "job-b"}
        real_ids = eng.journal.ids
        eng.journal.ids = lambda: []                           # a listing cut short
        try:
            eng.check_others()
        finally:
            eng.journal.ids = real_ids
        assert {j.id for j in eng.jobs()} == {"job-a", "job-b"}
        glance.release("job-a")
        eng.check_others()
        assert eng.journal.load("job-a").state == "imported"
    finally:
        glance.release_all()
        eng.shutdown()


def test_a_folder_that_cannot_be_moved_away_says_why(recon3d, tmp_path, monkeypatch):
    """The rename into the trash fails: the job stays listed with its files, and the message
    fits the error (a file in use, no permission, another drive) instead of always "close
    programs"."""
    jobs = module("jobs")
    removal = module("jobs.removal")
    data = str(tmp_path / "data")
    os.makedirs(os.path.join(data, "jobs"))
    folder = _journal(jobs, data, "job-a", "failed")
    eng = jobs.Engine(data, module("addon.runtime").settings_for, owner_label="A")
    try:
        eng.resume()
        for code, words in ((errno.EACCES, "you may change files"),
                            (errno.EXDEV, "another drive"), (errno.EBUSY, "Close programs")):
            def refuse(src, dst, code=code):
                raise OSError(code, os.strerror(code))
            monkeypatch.setattr(removal.os, "rename", refuse)
            with pytest.raises(module("errors").Recon3DError, match=words) as refused:
                eng.remove(eng.get("job-a"))
            monkeypatch.undo()
            assert refused.value.code == "removal"
            assert "Close programs" not in str(refused.value) or code == errno.EBUSY
            assert os.path.isdir(folder) and eng.get("job-a") is not None
    finally:
        eng.shutdown()


def test_the_data_folder_size_follows_no_links(recon3d, tmp_path):
    """The preferences' data folder size and a job's size are one measure: a link to a
    large file elsewhere counts as the link, not as the file."""
    removal = module("jobs.removal")
    page = module("panels.preferences_page")
    data = tmp_path / "data"
    data.mkdir()
    (data / "own.bin").write_bytes(b"\0" * 1_000_000)
    big = tmp_path / "elsewhere.bin"
    big.write_bytes(b"\0" * 5_000_000)
    os.symlink(big, data / "link.bin")
    assert removal.folder_size(str(data)) < 1_001_000
    assert page._folder_size(str(data)) == removal.size_words(removal.folder_size(str(data)))
    assert page._folder_size(str(data)) == "1.0 MB"


def test_nothing_outside_the_data_folder_is_deleted(recon3d, tmp_path):
    jobs = module("jobs")
    removal = module("jobs.removal")
    data = str(tmp_path / "data")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    os.makedirs(os.path.join(data, "jobs"))
    os.symlink(outside, os.path.join(data, "jobs", "linked"))
    eng = jobs.Engine(data, module("addon.runtime").settings_for, owner_label="A")
    try:
        for job_id in ("linked", "../precious", ".."):
            job = jobs.Job("segmind_sam3d", {}, job_id=job_id)
            job.state = "failed"
            with eng._lock:
                eng._jobs[job_id] = job
            with pytest.raises(module("errors").Recon3DError, match="deletes nothing outside") \
                    as refused:
                eng.remove(job)
            assert refused.value.code == "removal"
            assert eng.get(job_id) is job
        assert (outside / "keep.txt").read_text() == "mine"
        assert removal.job_folder(eng.journal.jobs_dir, "job-1") == \
            os.path.join(data, "jobs", "job-1")
    finally:
        eng.shutdown()


def test_clear_old_results(api, eng, capfd):
    """Old imported, failed and canceled jobs go, with their files; old results never
    imported stay unless asked; recent, running and other Blenders' jobs stay."""
    jobs = module("jobs")
    ownership = module("jobs.ownership")
    removal = module("jobs.removal")
    tag = f"clear-{time.time_ns()}"
    folders = {name: _journal(jobs, eng.data_dir, f"{tag}-{name}", state, age_days=age,
                              payload=1_000_000)
               for name, state, age in (("imported", "imported", 40), ("failed", "failed", 31),
                                        ("canceled", "canceled", 90), ("ready", "ready", 45),
                                        ("recent", "imported", 5),
                                        ("others", "imported", 60))}
    eng.resume()
    running = jobs.Job("segmind_sam3d", {}, job_id=f"{tag}-running")
    running.state, running.created_at = "running", time.time() - 50 * DAY
    with eng._lock:
        eng._jobs[running.id] = running
    other = ownership.Ownership(eng.data_dir, "Blender 4.2 (GUI)")
    assert other.claim(f"{tag}-others")
    sizes = {name: removal.folder_size(path) for name, path in folders.items()}
    try:
        capfd.readouterr()
        assert bpy.ops.recon3d.clear_old_results(days=30) == {"FINISHED"}
        out = capfd.readouterr().out
        gone = ("imported", "failed", "canceled")
        expected = removal.size_words(sum(sizes[name] for name in gone))
        assert f"Cleared 3 old jobs, freeing {expected}." in out, out
        assert expected == "3.0 MB"
        assert "1 old job(s) were kept: Another Blender" in out, out
        for name, path in folders.items():
            assert os.path.exists(path) == (name not in gone), name
            assert (eng.get(f"{tag}-{name}") is None) == (name in gone), name
        assert eng.get(running.id) is running
        # Results never imported go only when asked.
        assert bpy.ops.recon3d.clear_old_results(days=30, include_ready=True) == {"FINISHED"}
        assert f"Cleared 1 old job, freeing {removal.size_words(sizes['ready'])}." in \
            capfd.readouterr().out
        assert not os.path.exists(folders["ready"])
        assert bpy.ops.recon3d.clear_old_results(days=30) == {"FINISHED"}
        assert "nothing was deleted" in capfd.readouterr().out
    finally:
        other.release_all()
        with eng._lock:
            eng._jobs.pop(running.id, None)
    # What the dialog counts is what it removes.
    old, kept = removal.old_results(eng.jobs(), 3, include_ready=False)
    assert {j.id for j in old} == {f"{tag}-recent", f"{tag}-others"} and kept == []


def test_a_paid_result_that_can_still_be_fetched_is_kept_unless_asked(api, eng, capfd):
    """A failed download (the result is still at the service: Retry fetches it) and an
    ambiguous submit (it may have been billed) are paid results never imported, like a
    "ready" one: Clear Old Results keeps them unless asked, and the Remove dialog says the
    result is lost for good. A failed job the service has nothing for goes."""
    jobs = module("jobs")
    removal = module("jobs.removal")
    removal_ops = module("operators.removal")
    tag = f"paid-{time.time_ns()}"
    folders = {
        "download": _journal(jobs, eng.data_dir, f"{tag}-download", "failed", age_days=40,
                             remote_id="rq-1", error_code="download", error="CDN down"),
        "ambiguous": _journal(jobs, eng.data_dir, f"{tag}-ambiguous", "failed", age_days=40,
                              error_code="ambiguous_submit", error="no answer"),
        "refused": _journal(jobs, eng.data_dir, f"{tag}-refused", "failed", age_days=40,
                            remote_id="rq-2", error_code="failed", error="not a photo")}
    eng.resume()
    fetchable = eng.get(f"{tag}-download")
    assert eng.can_retry(fetchable)
    words = " ".join(removal_ops.confirmation(fetchable, 1000))
    assert "paid result was never imported and is lost with it" in words
    assert "cannot be fetched again after removal" in words
    assert "Nothing was imported" not in words
    words = " ".join(removal_ops.confirmation(eng.get(f"{tag}-refused"), 1000))
    assert "Nothing was imported from it." in words and "paid result" not in words
    doomed, kept = removal.old_results(eng.jobs(), 30)
    assert {j.id for j in kept} >= {f"{tag}-download", f"{tag}-ambiguous"}
    assert f"{tag}-refused" in {j.id for j in doomed}
    capfd.readouterr()
    assert bpy.ops.recon3d.clear_old_results(days=30) == {"FINISHED"}
    assert os.path.isdir(folders["download"]) and os.path.isdir(folders["ambiguous"])
    assert wait_until(lambda: not os.path.exists(folders["refused"]), timeout=10)
    assert bpy.ops.recon3d.clear_old_results(days=30, include_ready=True) == {"FINISHED"}
    assert wait_until(lambda: not any(os.path.exists(f) for f in folders.values()), 10)
    assert eng.get(f"{tag}-download") is None and eng.get(f"{tag}-ambiguous") is None


def _bounds(objects):
    corners = [o.matrix_world @ Vector(c) for o in objects if o.type == "MESH"
               for c in o.bound_box]
    low = Vector(min(c[i] for c in corners) for i in range(3))
    high = Vector(max(c[i] for c in corners) for i in range(3))
    return low, high


def test_generate_and_import_use_the_preferences_defaults(api, eng, fixtures, emulator):
    prefs = module("addon.preferences").get()
    form = bpy.context.scene.recon3d
    emulator.segmind.result = fixtures.glb("blob")
    form.provider, form.image_path = "segmind_sam3d", fixtures.path("photo.png")
    form.placement, form.use_target_size = "cursor", False
    bpy.context.scene.cursor.location = (5.0, 0.0, 0.0)
    prefs.default_placement, prefs.default_use_target_size = "origin", True
    prefs.default_target_size = 2.0
    try:
        assert form.use_preference_defaults                    # on by default
        assert bpy.ops.recon3d.submit() == {"FINISHED"}
        job = eng.jobs()[-1]
        assert (job.auto_import["placement"], job.auto_import["target_size"]) == ("origin", 2.0)
        assert job.wait(timeout=30).state in ("ready", "imported"), job.error
        assert bpy.ops.recon3d.import_job(job_id=job.id) == {"FINISHED"}
        low, high = _bounds([bpy.data.objects[n] for n in job.imported_objects])
        assert max(high - low) == pytest.approx(2.0, rel=1e-3)
        assert abs(low.z) < 1e-4 and abs((low.x + high.x) / 2) < 1e-4      # on the origin

        form.use_preference_defaults = False                 # the scene's own choice
        assert bpy.ops.recon3d.submit() == {"FINISHED"}
        job = eng.jobs()[-1]
        assert (job.auto_import["placement"], job.auto_import["target_size"]) == ("cursor",
                                                                                 None)
        assert job.wait(timeout=30).state in ("ready", "imported"), job.error
        assert bpy.ops.recon3d.import_job(job_id=job.id) == {"FINISHED"}
        low, high = _bounds([bpy.data.objects[n] for n in job.imported_objects])
        assert abs((low.x + high.x) / 2 - 5.0) < 1e-4                        # on the cursor
        assert max(high - low) != pytest.approx(2.0, rel=1e-3)
    finally:
        for name in ("default_placement", "default_use_target_size", "default_target_size"):
            prefs.property_unset(name)



def test_a_scene_with_its_own_placement_keeps_it_when_loaded(recon3d):
    """A file saved before the preferences had defaults, where the artist chose a placement
    or size, opens with "Use Preferences' Defaults" off, so its choice still counts; a scene
    where nothing was chosen, or where the switch was stored, is left as it is. (The handler
    is called here as Blender calls it after loading a file: an unset property is one the
    file never stored.)"""
    form_module = module("addon.form")
    assert form_module.keep_scene_placement in bpy.app.handlers.load_post
    chosen = bpy.context.scene.recon3d
    chosen.placement = "origin"
    untouched = bpy.data.scenes.new("untouched")
    stored = bpy.data.scenes.new("switch stored")
    stored.recon3d.target_size = 3.0
    stored.recon3d.use_preference_defaults = True
    try:
        assert not chosen.is_property_set("use_preference_defaults")
        form_module.keep_scene_placement()
        assert chosen.use_preference_defaults is False and chosen.placement == "origin"
        assert untouched.recon3d.use_preference_defaults is True
        assert not untouched.recon3d.is_property_set("use_preference_defaults")
        assert stored.recon3d.use_preference_defaults is True
    finally:
        bpy.data.scenes.remove(untouched)
        bpy.data.scenes.remove(stored)
