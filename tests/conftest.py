# SPDX-License-Identifier: GPL-3.0-or-later
"""Test session inside real headless Blender (the bpy module of one pinned release).

The extension is installed from the zip Blender's own builder made (RECON3D_ZIP, set by
tools/run_tests.py) into a throwaway extensions repository, exactly as Preferences › Get
Extensions › Install from Disk does, and enabled. One provider emulator serves the session.
Blender's user folders point into a temp dir (never ~/.config/blender).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))

from emulator import TEST_KEYS, Emulator  # noqa: E402
from rig import REPO_MODULE, install_from_zip  # noqa: E402

PKG = f"bl_ext.{REPO_MODULE}.recon3d"
#: Recon3D's own modules as installed (a warning is attributed to the module that raised it,
#: or to its caller with stacklevel=2, as numpy and Blender's deprecations do)
OWN_MODULES = r"bl_ext\.\w+\.recon3d(\.|$)"


def pytest_configure(config):
    """A DeprecationWarning from Recon3D's own code fails the test that caused it."""
    config.addinivalue_line("filterwarnings", f"error::DeprecationWarning:{OWN_MODULES}")


# The SDK conformance suite runs in its own venv (tools/conformance.py), never inside Blender.
collect_ignore = ["conformance"]

SESSION_DIR = Path(tempfile.mkdtemp(prefix="recon3d-tests-"))
for var, sub in (("BLENDER_USER_RESOURCES", "user"), ("RECON3D_DATA_DIR", "data")):
    if not os.environ.get(var) or var == "RECON3D_DATA_DIR":
        os.environ[var] = str(SESSION_DIR / sub)
import bpy  # noqa: E402  (after the environment is set)

try:   # hypothesis keeps its example database in the session dir, never in the source tree
    from hypothesis import settings as _hyp_settings
    from hypothesis.database import DirectoryBasedExampleDatabase
    _hyp_settings.register_profile("recon3d", database=DirectoryBasedExampleDatabase(
        str(SESSION_DIR / "hypothesis")))
    _hyp_settings.load_profile("recon3d")
except ImportError:
    pass


def zip_path() -> Path:
    value = os.environ.get("RECON3D_ZIP")
    if not value or not os.path.isfile(value):
        pytest.exit("RECON3D_ZIP is not set to a built zip: run the tests with "
                    "`python3 tools/run_tests.py`", returncode=4)
    return Path(value)


@pytest.fixture(scope="session")
def emulator():
    emu = Emulator()
    os.environ.update(emu.environment())
    yield emu
    emu.close()


@pytest.fixture(scope="session")
def fixtures():
    """GLBs and a photo made once per session by Blender's exporter, in a child process."""
    out = SESSION_DIR / "fixtures"
    proc = subprocess.run([sys.executable, str(TESTS / "make_fixtures.py"), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    class Fixtures:
        dir = out

        @staticmethod
        def path(name: str) -> str:
            return str(out / name)

        @staticmethod
        def glb(name: str) -> bytes:
            return (out / f"{name}.glb").read_bytes()

        @staticmethod
        def meta(name: str) -> dict:
            return json.loads((out / f"{name}.json").read_text())

    return Fixtures


@pytest.fixture(scope="session")
def recon3d(emulator):
    module = install_from_zip(zip_path(), SESSION_DIR / "repo")
    return module


@pytest.fixture(scope="session")
def api(recon3d):
    return importlib.import_module(f"{PKG}.api")


def count_data() -> dict:
    return {name: len(getattr(bpy.data, name)) for name in
            ("objects", "meshes", "materials", "images", "collections", "textures",
             "node_groups")}


def clear_scene() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for name in ("collections", "meshes", "materials", "images", "textures", "cameras",
                 "lights"):
        coll = getattr(bpy.data, name)
        for item in list(coll):
            coll.remove(item)
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
    form = getattr(bpy.context.scene, "recon3d", None)
    if form is not None:                       # the sidebar form back to its defaults
        for prop in form.bl_rna.properties:
            if prop.identifier not in ("rna_type", "name", "options"):
                form.property_unset(prop.identifier)
        for prop in form.options.bl_rna.properties:
            if prop.identifier not in ("rna_type", "name"):
                form.options.property_unset(prop.identifier)


@pytest.fixture(autouse=True)
def fresh(request, emulator):
    """Each test starts with an empty scene and a quiet emulator; keys as in the session."""
    emulator.reset()
    if "api" in request.fixturenames or "recon3d" in request.fixturenames:
        clear_scene()
    os.environ.update(emulator.environment())
    yield


def _child_code(code: str) -> str:
    prelude = textwrap.dedent(f"""
        import json, os, sys, importlib, warnings
        warnings.filterwarnings("error", category=DeprecationWarning, module={OWN_MODULES!r})
        sys.path.insert(0, {str(TESTS)!r})
        import bpy
        ZIP = {str(zip_path())!r}
        from rig import install_from_zip
        def say(tag, obj):
            print(tag + ":" + json.dumps(obj), flush=True)
        def answer(obj):
            say("RESULT", obj)
            sys.stderr.flush()
            os._exit(0)
    """)
    return prelude + textwrap.dedent(code)


def start_blender(code: str, *, env: dict | None = None) -> subprocess.Popen:
    """Start `code` in a fresh headless Blender (bpy module) process, stdout piped."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-c", _child_code(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env)


def run_blender(code: str, *, env: dict | None = None, timeout: float = 180) -> dict:
    """Run `code` in a fresh headless Blender process; it must call answer(obj) (one JSON
    line prefixed RESULT:). The prelude gives it `install_from_zip`, `ZIP` and `say`."""
    proc = start_blender(code, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    for line in out.splitlines():
        if line.startswith("RESULT:"):
            return json.loads(line[len("RESULT:"):])
    raise AssertionError(f"child Blender gave no result (exit {proc.returncode}):\n"
                         f"{out[-3000:]}\n{err[-3000:]}")


_EXIT_STATUS = [0]


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS[0] = int(exitstatus)
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


def pytest_unconfigure(config):
    """A bpy-module process can crash or hang at interpreter exit (daemon threads, Blender's
    own teardown): once pytest has reported, leave with its exit status directly."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[0])


def write_png(path, rgba) -> str:
    """Save an (h, w, 4) float array, row 0 at the TOP (photo convention), as a PNG."""
    import numpy as np
    rgba = np.asarray(rgba, dtype=np.float32)
    height, width = rgba.shape[:2]
    img = bpy.data.images.new("test-png", width, height, alpha=True)
    try:
        img.pixels.foreach_set(np.flipud(rgba).ravel())   # Blender's row 0 is the bottom
        img.filepath_raw = str(path)
        img.file_format = "PNG"
        img.save()
    finally:
        bpy.data.images.remove(img)
    return str(path)


def read_image(path_or_bytes, tmp_dir=None):
    """Decode an image with Blender; returns an (h, w, 4) array, row 0 at the TOP."""
    import numpy as np
    path = path_or_bytes
    if isinstance(path_or_bytes, (bytes, bytearray)):
        path = os.path.join(tmp_dir or SESSION_DIR, f"decoded-{os.getpid()}-{id(path_or_bytes)}")
        with open(path, "wb") as fh:
            fh.write(path_or_bytes)
    img = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = img.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        img.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(img)
    return np.flipud(pixels.reshape(height, width, 4))


def bottom_centre(objects):
    import numpy as np
    lows, highs = [], []
    for obj in objects:
        mw = np.array(obj.matrix_world)
        co = np.empty(len(obj.data.vertices) * 3)
        obj.data.vertices.foreach_get("co", co)
        pts = co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]
        lows.append(pts.min(0))
        highs.append(pts.max(0))
    low, high = np.min(lows, 0), np.max(highs, 0)
    return np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]]), low, high
