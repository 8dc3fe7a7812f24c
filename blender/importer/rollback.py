# SPDX-License-Identifier: GPL-3.0-or-later
"""All-or-nothing imports: remember which datablocks existed, remove every new one on
failure (bpy)."""
from __future__ import annotations

import bpy

#: ID collections an import may add to; snapshotted so a failed import can be undone
ID_COLLECTIONS = ("objects", "meshes", "materials", "images", "textures", "collections",
                  "node_groups", "cameras", "lights", "actions", "armatures", "shape_keys")

def snapshot() -> dict[str, set]:
    return {name: set(getattr(bpy.data, name)) for name in ID_COLLECTIONS}


def rollback(before: dict[str, set]) -> None:
    # Objects first (they use the rest), then data, then collections.
    for name in ("objects",) + tuple(n for n in ID_COLLECTIONS if n not in ("objects",)):
        coll = getattr(bpy.data, name)
        for idblock in [i for i in coll if i not in before[name]]:
            try:
                coll.remove(idblock)
            except (ReferenceError, RuntimeError):
                pass




def drop_empty_new_collections(before, keep) -> None:
    for coll in [c for c in bpy.data.collections if c not in before["collections"]]:
        if coll is not keep and not coll.objects and not coll.children:
            bpy.data.collections.remove(coll)
