# SPDX-License-Identifier: GPL-3.0-or-later
"""The built zip: valid, free of tests/tooling, installs and enables, disables cleanly."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import bpy

from conftest import PKG, ROOT, SESSION_DIR, run_blender, zip_path


def _ext_tool() -> list[str]:
    scripts = Path(bpy.utils.resource_path("LOCAL")) / "scripts"
    return [sys.executable, str(scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py")]


def test_blender_validates_manifest_and_zip():
    for target in (ROOT, zip_path()):
        proc = subprocess.run([*_ext_tool(), "validate", str(target)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Success" in proc.stdout


def test_zip_ships_no_tests_benchmarks_or_tooling():
    with zipfile.ZipFile(zip_path()) as archive:
        names = archive.namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "providers/segmind.py" in names and "jobs/engine.py" in names
    leaked = [n for n in names if n.split("/")[0] in {"tests", "bench", "tools", ".ci", "dist"}
              or "__pycache__" in n or n.endswith(".pyc")]
    assert leaked == []
    # Only the extension's own kinds of file: anything else (caches, databases) is a leak.
    allowed = {"LICENSE", "README.md", "blender_manifest.toml"}
    strays = [n for n in names if not n.endswith("/") and not n.endswith(".py")
              and n not in allowed]
    assert strays == []


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
