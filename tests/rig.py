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


def count_sends(provider_class) -> dict:
    """Count what this process sends through a provider class: submits, and polls per remote
    id. For tests and benchmarks with several processes on one service (the emulator counts
    what reached it, this says who sent it)."""
    sent = {"submits": 0, "polls": {}}
    submit, poll = provider_class.submit, provider_class.poll

    def counted_submit(self, *args, **kwargs):
        sent["submits"] += 1
        return submit(self, *args, **kwargs)

    def counted_poll(self, remote_id, *args, **kwargs):
        sent["polls"][remote_id] = sent["polls"].get(remote_id, 0) + 1
        return poll(self, remote_id, *args, **kwargs)

    provider_class.submit, provider_class.poll = counted_submit, counted_poll
    return sent
