# SPDX-License-Identifier: GPL-3.0-or-later
"""Recon3D: turn a photo into a 3D model with hosted SAM 3D Objects and Pixal3D.

Layers (DESIGN.md): providers/ and jobs/ are bpy-free; blender/ (input preparation, importer,
main-thread bridge), addon/ (preferences, form, running engine), operators/ and panels/ touch
bpy, on the main thread only.
"""
from __future__ import annotations

import bpy

from . import cli, operators, panels
from .errors import install_log_filter
from .addon import form, preferences, runtime
from .blender import main_thread

_classes = (*preferences.classes, *form.classes, *operators.classes, *panels.classes)
_cli_handle = None


def register():
    global _cli_handle
    for cls in _classes:
        bpy.utils.register_class(cls)
    form.register()
    panels.register()
    install_log_filter(__package__)       # no key reaches a log record (errors.scrub)
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command("recon3d", cli.main)
    # Resume the journal's unfinished jobs now, on worker threads: no timer needed for that,
    # so api.jobs() and Job.wait() see them even in a headless process.
    runtime.start()
    # One tick at least: it lists the journal's jobs in the sidebar, then stops when idle.
    main_thread.ensure_timer()


def unregister():
    global _cli_handle
    main_thread.stop_timer()
    runtime.stop()
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    form.unregister()
    panels.unregister()
    operators.unregister()
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
