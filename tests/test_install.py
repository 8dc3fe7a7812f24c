# SPDX-License-Identifier: GPL-3.0-or-later
"""The built zip: valid, only the extension's own files, installs and enables, disables cleanly."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import bpy
import pytest

from conftest import PKG, ROOT, SESSION_DIR, run_blender, zip_path

sys.path.insert(0, str(ROOT / "tools"))
import build  # noqa: E402


def _ext_tool() -> list[str]:
    scripts = Path(bpy.utils.resource_path("LOCAL")) / "scripts"
    return [sys.executable, str(scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py")]


def test_blender_validates_manifest_and_zip():
    for target in (ROOT, zip_path()):
        proc = subprocess.run([*_ext_tool(), "validate", str(target)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Success" in proc.stdout


def test_zip_holds_only_the_extensions_own_files():
    with zipfile.ZipFile(zip_path()) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "providers/segmind.py" in names and "jobs/engine.py" in names
    # The extension is its manifest, LICENSE, README.md and its packages' .py modules: no
    # tests, benchmarks, tooling, caches, saved .blend files or anything else.
    assert build.strays(names) == []
    assert sorted(names) == sorted(build.source_files(ROOT))     # and all of them ship


def test_strays_are_found_and_the_build_refuses_them(tmp_path):
    names = ["__init__.py", "blender_manifest.toml", "providers/__init__.py",
             "providers/segmind.py", "recon3d-demo.blend", "tests/conftest.py", "notes/x.py",
             "providers/__pycache__/segmind.cpython-311.pyc", "dist/recon3d-0.1.0.zip"]
    assert build.strays(names) == sorted(names[4:])
    # A saved .blend in a copy of the source tree: the build stops before making any zip.
    source = tmp_path / "source"
    for name in build.source_files(ROOT):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, source / name)
    (source / "recon3d-demo.blend").write_bytes(b"BLENDER-v")
    with pytest.raises(SystemExit, match="recon3d-demo.blend"):
        build.build(tmp_path / "out", os.environ["RECON3D_RELEASE"], source=source)
    assert not (tmp_path / "out").exists()


def test_installed_from_zip_into_throwaway_repo_and_enabled(recon3d):
    module_file = Path(recon3d.__file__).resolve()
    assert module_file.is_relative_to((SESSION_DIR / "repo").resolve())
    assert recon3d.__name__ == PKG
    assert PKG in bpy.context.preferences.addons
    assert hasattr(bpy.types, "RECON3D_PT_generate")
    assert bpy.ops.recon3d.submit.idname() == "RECON3D_OT_submit"
    assert hasattr(bpy.context.scene, "recon3d")
    prefs = bpy.context.preferences.addons[PKG].preferences
    assert prefs.bl_rna.properties["segmind_api_key"].subtype == "PASSWORD"


def test_disable_leaves_no_classes_timers_handlers_or_threads(emulator, fixtures, tmp_path):
    """Fresh process: enable, start a job (so the timer and a worker run), disable; compare."""
    emulator.segmind.duration = 30.0      # still running when we disable
    result = run_blender(f"""
        import addon_utils, threading, time
        def handler_counts():
            return {{name: len(getattr(bpy.app.handlers, name)) for name in dir(bpy.app.handlers)
                    if not name.startswith("_") and isinstance(getattr(bpy.app.handlers, name), list)}}
        def recon_types():
            return sorted(n for n in dir(bpy.types) if n.upper().startswith("RECON3D"))
        before_handlers = handler_counts()
        before_types = recon_types()
        mod = install_from_zip(ZIP, {str(tmp_path / 'repo')!r})
        from bl_ext.recon3d_test.recon3d import api
        from bl_ext.recon3d_test.recon3d.blender import main_thread as bridge
        tick = bridge._tick
        job = api.submit({fixtures.path('photo.png')!r}, "segmind_sam3d", prompt="chair")
        deadline = time.time() + 20
        while job.state != "running" and time.time() < deadline:
            time.sleep(0.05)
        enabled = dict(types=recon_types(), timer=bpy.app.timers.is_registered(tick),
                       scene_prop=hasattr(bpy.types.Scene, "recon3d"),
                       workers=[t.name for t in threading.enumerate() if t.name.startswith("recon3d-")],
                       state=job.state)
        enabled_ops = sorted(dir(bpy.ops.recon3d))
        addon_utils.disable("bl_ext.recon3d_test.recon3d", default_set=True)
        time.sleep(0.5)
        answer(dict(enabled=enabled, types=recon_types(), before_types=before_types,
                    timer=bpy.app.timers.is_registered(tick),
                    scene_prop=hasattr(bpy.types.Scene, "recon3d"),
                    handlers=handler_counts(), before_handlers=before_handlers,
                    workers=[t.name for t in threading.enumerate() if t.name.startswith("recon3d-")],
                    ops=sorted(dir(bpy.ops.recon3d)), enabled_ops=enabled_ops))
    """, env={"BLENDER_USER_RESOURCES": str(tmp_path / "user"),
              "RECON3D_DATA_DIR": str(tmp_path / "data")})
    enabled = result["enabled"]
    # While enabled, everything is really there (so the checks below can fail).
    assert enabled["state"] == "running"
    assert enabled["timer"] is True
    assert enabled["scene_prop"] is True
    assert enabled["workers"], "a worker thread should be polling"
    assert "RECON3D_PT_generate" in enabled["types"]
    # After disabling: nothing of ours is left.
    assert result["types"] == result["before_types"] == []
    assert result["timer"] is False
    assert result["scene_prop"] is False
    assert result["handlers"] == result["before_handlers"]
    assert result["workers"] == []
    assert "submit" in result["enabled_ops"]
    assert result["ops"] == []
    # The job was not canceled on the service: it stays journaled for the next enable.
    assert len(emulator.segmind.submits) == 1
