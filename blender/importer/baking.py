# SPDX-License-Identifier: GPL-3.0-or-later
"""Applied scale: every object gets a rigid world matrix and the rest (scale, shear, the
job's fit) goes into its mesh data, with one `Mesh.transform` per mesh (bpy)."""
from __future__ import annotations

from mathutils import Matrix

def _rigid(mat: Matrix) -> Matrix:
    """The rotation + translation part of a matrix (its scale and shear dropped)."""
    loc, rot, _scale = mat.decompose()
    return Matrix.Translation(loc) @ rot.to_matrix().to_4x4()


def bake(objects, worlds, placement: Matrix, keep_parent) -> None:
    """Give every object a rigid world matrix and put the rest (scale, shear, the job's fit)
    into its mesh: world-space vertices end exactly at `placement @ world @ v`."""
    finals = {obj: placement @ worlds[obj] for obj in objects}
    rigid = {obj: _rigid(finals[obj]) for obj in objects}

    # One Mesh.transform per distinct (mesh, residual); a mesh shared by objects that need
    # different residuals is copied so each object keeps its world shape.
    by_mesh: dict = {}
    for obj in objects:
        if obj.type == "MESH":
            residual = rigid[obj].inverted_safe() @ finals[obj]
            by_mesh.setdefault(obj.data, []).append((obj, residual))
    for mesh, users in by_mesh.items():
        groups: list[tuple[Matrix, list]] = []
        for obj, residual in users:
            for mat, members in groups:
                if _close(mat, residual):
                    members.append(obj)
                    break
            else:
                groups.append((residual, [obj]))
        # Copies first, from the untouched mesh; then each copy gets its own transform.
        datas = [mesh] + [mesh.copy() for _ in groups[1:]]
        for data, (residual, members) in zip(datas, groups):
            if not _is_identity(residual):
                data.transform(residual, shape_keys=True)   # the keys move with the mesh
                data.update()
            for obj in members:
                obj.data = data

    # Objects top-down: rigid local matrices, parent inverse reset, scale exactly 1.
    for obj in _top_down(objects, keep_parent):
        parent = keep_parent.get(obj)
        local = rigid[obj] if parent is None else rigid[parent].inverted_safe() @ rigid[obj]
        obj.parent = parent
        obj.matrix_parent_inverse = Matrix.Identity(4)
        loc, rot, _ = local.decompose()
        obj.location = loc
        if obj.rotation_mode == "QUATERNION":
            obj.rotation_quaternion = rot
        elif obj.rotation_mode == "AXIS_ANGLE":
            axis, angle = rot.to_axis_angle()
            obj.rotation_axis_angle = (angle, *axis)
        else:
            obj.rotation_euler = rot.to_euler(obj.rotation_mode)
        obj.scale = (1.0, 1.0, 1.0)
        # matrix_basis (read above) includes the deltas; they are folded in, so clear them.
        obj.delta_location = (0.0, 0.0, 0.0)
        obj.delta_rotation_euler = (0.0, 0.0, 0.0)
        obj.delta_rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
        obj.delta_scale = (1.0, 1.0, 1.0)


def _close(a: Matrix, b: Matrix, eps: float = 1e-6) -> bool:
    return all(abs(a[i][j] - b[i][j]) <= eps for i in range(4) for j in range(4))


def _is_identity(m: Matrix) -> bool:
    return _close(m, Matrix.Identity(4), 1e-9)


def _top_down(objects, keep_parent) -> list:
    order, seen = [], set()

    def visit(obj):
        if obj in seen:
            return
        parent = keep_parent.get(obj)
        if parent is not None:
            visit(parent)
        seen.add(obj)
        order.append(obj)

    for obj in objects:
        visit(obj)
    return order


def kept_parent(obj, kept: set):
    parent = obj.parent
    while parent is not None and parent not in kept:
        parent = parent.parent
    return parent
