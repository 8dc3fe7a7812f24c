# SPDX-License-Identifier: GPL-3.0-or-later
"""The README's batch examples, run as written: every `blender … --command recon3d …` line of
its batch sections (and the Deadline arguments) goes through `cli.main` — the code `blender
--command recon3d` runs — and its Python example is executed, in headless Blender against the
emulator. The commands are read from README.md itself, so an example that drifts from the
command line fails here. The only change: absolute example folders (/farm/…, /photos/…) are
mapped into the test's own folder, which is also the working directory."""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import bpy
import numpy as np
import pytest

from conftest import PKG, write_png

README = Path(__file__).resolve().parents[1] / "README.md"
BATCH_SECTIONS = ("Batches: a folder of photos", "Batches on a render farm")
#: the Blender flags the examples may put before `--command` (the bpy module has none)
BLENDER_FLAGS = {"-b", "--online-mode"}
ROOTS = ("/farm/", "/photos/")


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    end = re.compile(r"^#{1,3} ", re.M).search(text, start + 4)
    return text[start:end.start() if end else len(text)]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(text: str) -> list[list[str]]:
    """Each command of the section's bash blocks, continuation lines joined."""
    out = []
    for block in code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                out.append(shlex.split(line))
    return out


def recon3d_arguments(argv: list[str]) -> list[str]:
    """What follows `--command recon3d`, after checking what comes before it is Blender's."""
    assert argv[0] == "blender", argv
    at = argv.index("--command")
    assert set(argv[1:at]) <= BLENDER_FLAGS, argv
    assert argv[at + 1] == "recon3d", argv
    return argv[at + 2:]


def mapped(value: str, root: Path) -> str:
    for prefix in ROOTS:
        value = value.replace(prefix, f"{root}{prefix}")
    return value


def write_jpeg(path: Path, rgb) -> None:
    img = bpy.data.images.new("test-jpeg", 64, 48)
    try:
        pixels = np.ones((48, 64, 4), dtype=np.float32)
        pixels[..., :3] = rgb
        pixels[10:30, 20:40, :3] = 0.9
        img.pixels.foreach_set(pixels.ravel())
        img.filepath_raw = str(path)
        img.file_format = "JPEG"
        img.save()
    finally:
        bpy.data.images.remove(img)


def photos_in(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rgba = np.ones((48, 64, 4), dtype=np.float32)
        rgba[..., :3] = ((i * 0.29) % 1.0, 0.4, 1.0 - (i * 0.13) % 1.0)
        rgba[8:40, 16:48, :3] = 0.85
        write_png(folder / f"photo-{i:02d}.png", rgba)


@pytest.fixture
def example_files(tmp_path, monkeypatch, emulator, fixtures):
    """The photos and folders the examples name, in a working directory of their own."""
    emulator.segmind.result = fixtures.glb("sam3d_posed")
    photos_in(tmp_path / "photos", 3)
    photos_in(tmp_path / "farm" / "photos", 9)
    photos_in(tmp_path / "photos" / "shelf", 2)
    write_jpeg(tmp_path / "kitchen.jpg", (0.6, 0.5, 0.3))
    write_jpeg(tmp_path / "photos" / "desk.jpg", (0.3, 0.5, 0.6))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_and_check(cli, argv: list[str], root: Path, capsys) -> None:
    args = [mapped(a, root) for a in argv]
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert code == 0, (args, out[-1500:], err[-1500:])
    assert "Traceback" not in out + err
    options = dict(zip(args, args[1:]))
    if "--output" in options:
        assert Path(options["--output"]).stat().st_size > 0, args
        assert bpy.data.filepath == str(Path(options["--output"]).resolve())
    if "--export" in options:
        glbs = list(Path(options["--export"]).glob("*.glb"))
        assert glbs and all(p.read_bytes()[:4] == b"glTF" for p in glbs), args
    if "--preview" in options:
        assert (Path(options["--preview"]) / "contact-sheet.png").stat().st_size > 0, args


def test_the_batch_command_lines_run_as_written(example_files, capsys, emulator, recon3d):
    cli = importlib.import_module(f"{PKG}.cli")
    found = [recon3d_arguments(c) for title in BATCH_SECTIONS for c in commands(section(title))]
    assert len(found) >= 3, found                  # the folder, one-photo and farm examples
    made = {}
    for argv in found:
        before = len(emulator.segmind.submits)
        collections = set(bpy.data.collections)
        run_and_check(cli, argv, example_files, capsys)
        assert len(emulator.segmind.submits) > before, argv
        made[tuple(argv)] = [c for c in bpy.data.collections if c not in collections
                             and c.name.startswith("Recon3D ")]
    # The farm example takes every 8th photo starting with the 3rd: photo-02 only.
    farm = next(a for a in found if "--shard" in a)
    assert farm[farm.index("--shard") + 1] == "3/8"
    assert sorted(p.name for p in (example_files / "farm" / "out" / "glb").iterdir()) == \
        ["photo-02.glb"]
    # Several objects from one photo: one job per --prompt, each imported.
    kitchen = next(a for a in found if a.count("--prompt") > 1)
    assert len(made[tuple(kitchen)]) == kitchen.count("--prompt") == 3


def test_the_deadline_arguments_run_as_written(example_files, capsys, emulator, recon3d):
    cli = importlib.import_module(f"{PKG}.cli")
    text = section("Batches on a render farm")
    arguments = re.search(r"Arguments `([^`]*)`", text, re.S).group(1)
    argv = recon3d_arguments(["blender", *shlex.split(arguments.replace("<STARTFRAME>", "1"))])
    run_and_check(cli, argv, example_files, capsys)
    # Frame 1 of 8: the 1st and the 9th photo.
    assert sorted(p.name for p in (example_files / "farm" / "out" / "glb").iterdir()) == \
        ["photo-00.glb", "photo-08.glb"]
    assert (example_files / "farm" / "out" / "part-1.blend").is_file()


def test_the_python_batch_example_runs_as_written(example_files, api, emulator):
    source = next(block for block in code_blocks(section("Batches: a folder of photos"),
                                                 "python") if "reconstruct_many" in block)
    namespace = {"api": api}
    exec(compile(mapped(source, example_files), "README.md", "exec"), namespace)
    results = namespace["results"]
    # Two photos from the shelf folder and the desk photo with its prompt, all imported.
    assert [r.state for r in results] == ["imported"] * 3
    assert list(results.failures) == []
    assert results[2].prompt == "lamp" and results[2].photo.endswith("desk.jpg")
    assert all(len(r.objects) >= 1 for r in results)
