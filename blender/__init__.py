# SPDX-License-Identifier: GPL-3.0-or-later
"""Recon3D's work inside Blender (bpy, main thread only): input preparation (`inputs`), the
importer (`importer/`) and the main-thread bridge that hands workers' results to Blender
(`main_thread`)."""
