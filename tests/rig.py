# SPDX-License-Identifier: GPL-3.0-or-later
"""Installing the built zip into real Blender, shared by the tests and the benchmarks."""
from __future__ import annotations

import importlib
import os

REPO_MODULE = "recon3d_test"


def install_from_zip(zip_file, repo_dir, module: str = REPO_MODULE):
    """Preferences › Get Extensions › Install from Disk, into a fresh repository; enabled."""
    import bpy
    os.makedirs(repo_dir, exist_ok=True)
    repos = bpy.context.preferences.extensions.repos
    if not any(r.module == module for r in repos):
        repos.new(name=module, module=module, custom_directory=str(repo_dir))
    result = bpy.ops.extensions.package_install_files(filepath=str(zip_file), repo=module,
                                                      enable_on_install=True)
    assert result == {"FINISHED"}, result
    return importlib.import_module(f"bl_ext.{module}.recon3d")
