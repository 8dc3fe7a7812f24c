# SPDX-License-Identifier: GPL-3.0-or-later
"""providers/ and jobs/ are bpy-free: they import and work in a Python without bpy loaded."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import SESSION_DIR


def test_providers_and_jobs_import_without_bpy(recon3d):
    ext_dir = SESSION_DIR / "repo" / "recon3d"
    code = textwrap.dedent(f"""
        import sys, types
        # Mount the installed extension as a plain package without running its __init__
        # (which registers Blender classes), then import the bpy-free layers.
        pkg = types.ModuleType("r3d")
        pkg.__path__ = [{str(ext_dir)!r}]
        sys.modules["r3d"] = pkg
        import r3d.providers, r3d.jobs, r3d.errors
        from r3d.providers import REGISTRY
        from r3d.jobs import Engine, Job
        assert "segmind_sam3d" in REGISTRY
        job = Job("segmind_sam3d", {{}})
        assert job.wait(timeout=0.01).state == "queued"
        print("BPY_LOADED" if "bpy" in sys.modules else "BPY_FREE")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("BPY_FREE")
