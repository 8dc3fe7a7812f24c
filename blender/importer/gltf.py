# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender's own glTF importer, called with only the arguments this Blender accepts (bpy)."""
from __future__ import annotations

import os

import bpy

from ...errors import ResultError

def gltf_import(path: str) -> None:
    op = bpy.ops.import_scene.gltf
    accepted = {p.identifier for p in op.get_rna_type().properties}
    # Images packed so the .blend travels; no collection of the importer's own (5.0 makes one
    # per glTF scene by default): the job gets its own collection.
    wanted = {"filepath": path, "merge_vertices": False, "import_shading": "NORMALS",
              "guess_original_bind_pose": True, "import_pack_images": True,
              "import_scene_as_collection": False, "import_select_created_objects": False}
    args = {k: v for k, v in wanted.items() if k in accepted}
    try:
        result = op(**args)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise ResultError(f"Blender's glTF importer could not read '{os.path.basename(path)}' "
                          f"({reason[:200]}). Nothing was imported.") from None
    if "FINISHED" not in result:
        raise ResultError(f"Blender's glTF importer could not read "
                          f"'{os.path.basename(path)}'. Nothing was imported.")
