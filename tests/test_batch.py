# SPDX-License-Identifier: GPL-3.0-or-later
"""Batch work from the command line (cli.main, as `blender --command recon3d` runs it) and
from Python, in headless Blender against the emulator: a folder of photos, layout, export,
previews, resume after Ctrl-C, dry run."""
from __future__ import annotations

import base64
import importlib
import os

import bpy
import numpy as np
import pytest

from conftest import PKG, bottom_centre, read_image, start_blender, write_png
from emulator import Reply


@pytest.fixture
def posed(emulator, fixtures):
    emulator.segmind.result = fixtures.glb("sam3d_posed")


@pytest.fixture
def cli(recon3d):
    return importlib.import_module(f"{PKG}.cli")


def make_photos(folder, count: int) -> list[str]:
    """`count` different small photos (different colours, so different bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        rgba = np.ones((48, 64, 4), dtype=np.float32)
        rgba[..., :3] = ((i * 0.23) % 1.0, 0.5, 1.0 - (i * 0.17) % 1.0)
        rgba[10:30, 20:40, :3] = 0.9
        paths.append(write_png(folder / f"photo-{i:02d}.png", rgba))
    return paths


def result_groups():
    """The meshes of each job's collection, by collection name."""
    return {c.name: [o for o in c.objects if o.type == "MESH"]
            for c in bpy.data.collections if c.name.startswith("Recon3D ")}


def overlaps(a, b) -> bool:
    (low_a, high_a), (low_b, high_b) = a, b
    return bool(np.all(low_a < high_b) and np.all(low_b < high_a))


def test_folder_with_one_failure_imports_lays_out_saves_and_exits_non_zero(
        cli, emulator, posed, tmp_path, capsys):
    photos = make_photos(tmp_path / "photos", 5)
    with open(photos[2], "rb") as fh:
        bad = base64.b64encode(fh.read())
    emulator.fault(lambda req: req.method == "POST" and bad in req.body,
                   Reply(422, {"error": "Image could not be processed: no object found"}))
    output = tmp_path / "batch.blend"
    export = tmp_path / "glb"

    code = cli.main(["generate", str(tmp_path / "photos"), "--provider", "segmind_sam3d",
                     "--jobs", "3", "--layout", "grid", "--export", str(export),
                     "--output", str(output)])

    out, err = capsys.readouterr()
    assert code == 1
    assert len(emulator.segmind.submits) == 4        # the refused one was never accepted
    # The failure is listed with the service's reason; the others are not.
    assert "1 of 5 photo(s) did not make it" in err
    assert f"{photos[2]}: " in err and "no object found" in err
    assert all(f"{p}: " not in err for p in photos if p != photos[2])
    assert "Traceback" not in out + err
    # A live line per job as it moves, and the summary table.
    assert "[1/5] photo-00: running" in out or "[1/5] photo-00: submitting" in out
    header = next(line for line in out.splitlines() if line.startswith("photo "))
    for column in ("model", "state", "seconds", "cost", "objects", "error"):
        assert column in header
    rows = [line for line in out.splitlines() if line.startswith("photo-0")]
    assert sum("imported" in r for r in rows) == 4 and sum("failed" in r for r in rows) == 1
    # Four results imported, each in its own collection; no two overlap in the world.
    groups = result_groups()
    assert len(groups) == 4 and all(len(g) == 1 for g in groups.values())
    bpy.context.view_layer.update()
    boxes = [bottom_centre(g)[1:] for g in groups.values()]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not overlaps(boxes[i], boxes[j]), (i, j, boxes[i], boxes[j])
    # Saved, and each result exported as a GLB.
    assert bpy.data.filepath == str(output) and output.stat().st_size > 0
    glbs = sorted(export.iterdir())
    assert [p.name for p in glbs] == [f"photo-{i:02d}.glb" for i in (0, 1, 3, 4)]
    for path in glbs:
        head = path.read_bytes()[:12]
        assert head[:4] == b"glTF" and int.from_bytes(head[8:12], "little") == \
            path.stat().st_size


def test_api_reconstruct_many_returns_a_result_per_photo(api, emulator, posed, tmp_path):
    photos = make_photos(tmp_path / "p", 2)
    results = api.reconstruct_many(photos + [str(tmp_path / "missing.png")],
                                   "segmind_sam3d", jobs=2, layout="row")
    assert [r.state for r in results] == ["imported", "imported", "refused"]
    assert "does not exist" in results[2].error and results[2].job is None
    assert all(r.ok and len(r.objects) == 1 and r.seconds > 0 for r in results[:2])
    low_a, high_a = bottom_centre(results[0].objects)[1:]
    low_b, high_b = bottom_centre(results[1].objects)[1:]
    assert high_a[0] < low_b[0]                  # row: left to right, apart
    assert [f.photo for f in results.failures] == [results[2].photo]


def test_dry_run_checks_every_photo_and_sends_nothing(cli, emulator, tmp_path, capsys):
    photos = make_photos(tmp_path / "p", 2)
    assert cli.main(["generate", *photos, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok; estimated cost: ") == 2
    assert "nothing was sent" in out
    assert cli.main(["generate", photos[0], str(tmp_path / "nope.png"), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "nope: refused:" in out and "does not exist" in out
    # A render-farm task: every 2nd photo of the folder, starting with the 2nd.
    assert cli.main(["generate", str(tmp_path / "p"), "--shard", "2/2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "photo-01: ok" in out and out.count("ok; estimated cost: unknown") == 1
    assert cli.main(["generate", photos[0], "--shard", "3/2"]) == 2    # argparse refuses
    assert "K/N" in capsys.readouterr().err
    assert emulator.requests() == []


def test_preview_writes_a_png_per_result_and_a_contact_sheet(cli, emulator, posed, tmp_path,
                                                             capsys):
    photos = make_photos(tmp_path / "p", 3)
    previews = tmp_path / "previews"
    scenes_before = set(bpy.data.scenes)
    assert cli.main(["generate", *photos, "--preview", str(previews)]) == 0
    names = sorted(p.name for p in previews.iterdir())
    assert names == ["contact-sheet.png", "photo-00.png", "photo-01.png", "photo-02.png"]
    for name in names[1:]:
        pixels = read_image(previews / name)
        assert pixels.shape[:2] == (128, 128)
        # Not blank: the model stands out from the background.
        assert pixels[..., :3].std() > 0.02, name
        centre = pixels[48:80, 48:80, :3].mean(axis=(0, 1))
        corner = pixels[:16, :16, :3].mean(axis=(0, 1))
        assert np.abs(centre - corner).max() > 0.02, (name, centre, corner)
    sheet = read_image(previews / "contact-sheet.png")
    assert sheet.shape[0] >= 2 * 128 and sheet.shape[1] >= 2 * 128
    assert sheet[..., :3].std() > 0.05
    assert set(bpy.data.scenes) == scenes_before       # the preview stage is gone again


def test_interrupted_batch_resumes_without_new_submits(cli, emulator, posed, tmp_path,
                                                       capsys):
    photos = make_photos(tmp_path / "photos", 4)
    output = tmp_path / "resumed.blend"
    emulator.segmind.duration = 8.0
    # Ctrl-C once every job is running on the service, in a headless Blender of its own.
    child = start_blender(f"""
        import signal, threading, time
        recon3d = install_from_zip(ZIP, {str(tmp_path / "repo")!r})
        cli = importlib.import_module(recon3d.__name__ + ".cli")
        runtime = importlib.import_module(recon3d.__name__ + ".addon.runtime")
        started = time.time()
        def interrupt():
            while True:
                eng = runtime.running_engine()
                jobs = [j for j in (eng.jobs() if eng else []) if j.created_at >= started]
                if len(jobs) == 4 and all(j.state == "running" for j in jobs):
                    break
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        code = cli.main(["generate", {str(tmp_path / "photos")!r}, "--jobs", "4",
                         "--output", {str(output)!r}])
        answer({{"code": code}})
    """, env={"RECON3D_DATA_DIR": os.environ["RECON3D_DATA_DIR"]})
    out, err = child.communicate(timeout=120)
    result = next((line for line in out.splitlines() if line.startswith("RESULT:")), None)
    assert result == 'RESULT:{"code": 130}', out[-2000:] + err[-2000:]
    assert "interrupted; nothing was saved" in err and "--resume" in err
    assert "Traceback" not in err
    assert not output.exists()
    assert len(emulator.segmind.submits) == 4

    code = cli.main(["generate", "--resume"])

    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert len(emulator.segmind.submits) == 4           # nothing sent again
    assert "resuming batch" in out
    assert len(result_groups()) == 4
    assert output.exists() and bpy.data.filepath == str(output)
    # The batch is finished: there is nothing left to resume.
    assert cli.main(["generate", "--resume"]) == 1
    assert "no unfinished batch" in capsys.readouterr().err


def test_batch_jobs_poll_near_the_duration_learned_from_earlier_jobs(recon3d, tmp_path):
    durations = importlib.import_module(f"{PKG}.jobs.durations")
    polling = importlib.import_module(f"{PKG}.jobs.polling")
    import random
    learned = durations.Durations(str(tmp_path))
    learned.learn("segmind_sam3d", 1.0, 3.0)
    learned.learn("segmind_sam3d", 1.0, 3.1)
    assert learned.expected("segmind_sam3d") is None          # too few to go by
    learned.learn("segmind_sam3d", 1.0, 2.9)
    assert learned.expected("segmind_sam3d").median == pytest.approx(2.0)
    for low in (1.8, 1.95, 2.15):                              # narrow windows win
        learned.learn("segmind_sam3d", low, low + 0.25)
    expected = learned.expected("segmind_sam3d")
    assert expected.median == pytest.approx(2.075)
    assert expected.early < 1.95 and 2.25 < expected.late < 2.8
    assert learned.expected("scenario_sam3d") is None
    # Kept in the data folder: a new session starts with it.
    assert durations.Durations(str(tmp_path)).expected("segmind_sam3d") == expected
    rng = random.Random(3)
    usual = polling.next_poll_interval(1.0, rng=random.Random(3))
    aimed = polling.next_poll_interval(1.0, rng=rng, expected=expected)
    # From 1 s, the next poll goes straight to where the learned spread begins...
    assert usual > 1.5 and abs(1.0 + aimed - expected.early) <= 0.1 * (expected.early - 1.0)
    # ...then ~0.2 s apart through it (10 % of 2 s), backing off once the job is overdue.
    dense = [polling.next_poll_interval(age, rng=random.Random(3), expected=expected)
             for age in (expected.early, expected.median, expected.late)]
    assert 0.9 * 0.2 <= min(dense) and max(dense) <= 1.1 * polling.TAIL_SPARSER * 0.21
    overdue = [polling.next_poll_interval(age, rng=random.Random(3), expected=expected)
               for age in (2.7, 3.0, 4.0)]
    assert overdue == sorted(overdue) and overdue[0] >= 0.9 * 0.21
    # Windows that all overlap: a steady service. Near it, its jobs are polled at the first
    # moment by which every one of them was done (jitter only ever later).
    for low in (1.9, 1.95, 2.0):
        learned.learn("steady", low, low + 0.25)
    steady = learned.expected("steady")
    assert steady.median == steady.early == pytest.approx(2.15)
    for seed in range(20):
        step = polling.next_poll_interval(1.5, rng=random.Random(seed), expected=steady)
        assert 0.65 - 1e-9 <= step <= 0.65 * 1.1 + 1e-9
