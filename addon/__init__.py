# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's own state in this Blender session (bpy): its preferences (keys, endpoints),
the sidebar form (`Scene.recon3d`) and the running job engine with the settings its workers
may read."""

#: The extension's package ("bl_ext.<repo>.recon3d"). Blender keys an add-on's preferences and
#: its user folder by it; modules at the package root write `__package__`, and the modules in
#: this folder use this, which is the same name.
EXTENSION_PACKAGE = __package__.rpartition(".")[0]
