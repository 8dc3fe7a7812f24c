# SPDX-License-Identifier: GPL-3.0-or-later
"""Where imported objects are: world matrices from the hierarchy and tight world bounds
(bpy, numpy)."""
from __future__ import annotations

import numpy as np
from mathutils import Matrix, Vector

from ...errors import ResultError

def world_matrices(objects) -> dict:
    """World matrices from the hierarchy itself (no depsgraph update needed)."""
    cache: dict = {}

    def world(obj):
        if obj in cache:
            return cache[obj]
        local = obj.matrix_parent_inverse @ obj.matrix_basis if obj.parent else obj.matrix_basis
        mat = (world(obj.parent) @ local) if obj.parent else local.copy()
        cache[obj] = mat
        return mat

    for obj in objects:
        world(obj)
    return cache


def _axis_aligned(world: Matrix, eps: float = 1e-7) -> bool:
    """True when the world matrix maps the local axes onto world axes (any scale): then the
    local bounding box, transformed, is exactly the world one."""
    for col in range(3):
        column = Vector((world[0][col], world[1][col], world[2][col]))
        length = column.length
        if length == 0:
            return False
        big = sum(1 for value in column if abs(value) / length > 1 - eps)
        if big != 1:
            return False
    return True


def _mesh_world_bounds(obj, world: Matrix) -> tuple[np.ndarray, np.ndarray] | None:
    """Tight world bounds of a mesh object. Axis-aligned: the local box Blender keeps (C
    speed). Rotated: numpy over the position attribute, one projection per world axis."""
    mesh = obj.data
    count = len(mesh.vertices)
    if count == 0:
        return None
    mat = np.array(world, dtype=np.float64)
    if _axis_aligned(world):
        corners = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
        pts = corners @ mat[:3, :3].T + mat[:3, 3]
        return pts.min(axis=0), pts.max(axis=0)
    co = np.empty(count * 3, dtype=np.float32)
    positions = mesh.attributes.get("position")
    if positions is not None and positions.data_type == "FLOAT_VECTOR":
        positions.data.foreach_get("vector", co)
    else:
        mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    low, high = np.empty(3), np.empty(3)
    for axis in range(3):
        # One contiguous projection per axis: much faster than reducing an (N, 3) array.
        projected = co @ mat[axis, :3].astype(np.float32)
        low[axis] = float(projected.min()) + mat[axis, 3]
        high[axis] = float(projected.max()) + mat[axis, 3]
    return low, high


def combined_bounds(objects, worlds) -> tuple[Vector, Vector]:
    lows, highs = [], []
    for obj in objects:
        if obj.type == "MESH":
            bounds = _mesh_world_bounds(obj, worlds[obj])
            if bounds is not None:
                lows.append(bounds[0])
                highs.append(bounds[1])
    if not lows:
        raise ResultError("The result holds no vertices: the service found nothing to model. "
                          "Try another prompt, mask or photo.")
    return Vector(np.min(lows, axis=0).tolist()), Vector(np.max(highs, axis=0).tolist())
