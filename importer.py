# SPDX-License-Identifier: GPL-3.0-or-later
"""Bring result GLBs into the scene (bpy, main thread).

What SAM 3D returns is posed in camera space metres from the origin, under a wrapper Empty,
coloured only by vertex colours (shared/PROVIDERS.md). This module:
1. checks each GLB before Blender reads it (magic, declared length, JSON, at least one mesh);
2. imports with Blender's glTF importer, with only the arguments this Blender accepts;
3. collapses wrapper Empties, keeping every other parent/child relation;
4. computes one placement matrix for the whole job (bottom-centre of the combined world
   bounding box on the cursor or origin, optional fit to a size) and bakes each object's
   scale into its mesh with one `Mesh.transform`, so every object ends with scale (1, 1, 1),
   its rotation kept, and world-space vertices exactly where the placement puts them;
5. gives vertex-coloured meshes without a material one that shows the colours;
6. puts everything in one collection named after the job.
If anything fails, every datablock the import created is removed again: the file is left as
it was.
"""
from __future__ import annotations

import json
import math
import os
import struct

import bpy
import numpy as np
from mathutils import Matrix, Vector

from .errors import Recon3DError, ResultError

PLACEMENTS = ("cursor", "origin", "original")
#: ID collections an import may add to; snapshotted so a failed import can be undone
_ID_COLLECTIONS = ("objects", "meshes", "materials", "images", "textures", "collections",
                   "node_groups", "cameras", "lights", "actions", "armatures")


# -- checks -------------------------------------------------------------------------------------
def check_glb(path: str) -> None:
    """Refuse a file the glTF importer would choke on or half-import."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            header = fh.read(12)
            if len(header) < 12 or header[:4] != b"glTF":
                raise ResultError(f"The result '{name}' is not a GLB model. Nothing was "
                                  f"imported; generate again or report it to the service.")
            version, length = struct.unpack("<II", header[4:12])
            if version != 2:
                raise ResultError(f"The result '{name}' is glTF version {version}; Blender "
                                  f"reads version 2.")
            if length != size:
                raise ResultError(f"The result '{name}' is cut off ({size:,} of {length:,} "
                                  f"bytes). Nothing was imported; download it again.")
            chunk = fh.read(8)
            if len(chunk) < 8:
                raise ResultError(f"The result '{name}' is damaged (no content). Nothing was "
                                  f"imported.")
            chunk_len, chunk_type = struct.unpack("<II", chunk)
            if chunk_type != 0x4E4F534A or chunk_len > size:      # 'JSON'
                raise ResultError(f"The result '{name}' is damaged (bad JSON chunk). Nothing "
                                  f"was imported.")
            doc = json.loads(fh.read(chunk_len).decode("utf-8"))
    except OSError as exc:
        raise ResultError(f"Recon3D could not read the result '{name}' ({exc.strerror}).") \
            from None
    except (UnicodeDecodeError, ValueError):
        raise ResultError(f"The result '{name}' is damaged (unreadable description). Nothing "
                          f"was imported.") from None
    if not isinstance(doc, dict) or not doc.get("meshes"):
        raise ResultError(f"The result '{name}' holds no mesh: the service found nothing to "
                          f"model. Try another prompt, mask or photo.")


# -- snapshot / rollback ------------------------------------------------------------------------
def _snapshot() -> dict[str, set]:
    return {name: set(getattr(bpy.data, name)) for name in _ID_COLLECTIONS}


def _rollback(before: dict[str, set]) -> None:
    # Objects first (they use the rest), then data, then collections.
    for name in ("objects",) + tuple(n for n in _ID_COLLECTIONS if n not in ("objects",)):
        coll = getattr(bpy.data, name)
        for idblock in [i for i in coll if i not in before[name]]:
            try:
                coll.remove(idblock)
            except (ReferenceError, RuntimeError):
                pass


# -- glTF importer --------------------------------------------------------------------------------
def _gltf_import(path: str) -> None:
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


# -- transforms -----------------------------------------------------------------------------------
def _world_matrices(objects) -> dict:
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


def placement_matrix(low: Vector, high: Vector, placement: str, target: Vector,
                     target_size: float | None) -> Matrix:
    """The one matrix applied to the whole job: scale about the bottom-centre of the combined
    box, then move that point onto the cursor (`target`), the world origin, or leave it where
    it is ("original")."""
    if placement not in PLACEMENTS:
        raise Recon3DError(f"Unknown placement '{placement}'; use one of "
                           f"{', '.join(PLACEMENTS)}.", code="input")
    bottom = Vector(((low.x + high.x) / 2, (low.y + high.y) / 2, low.z))
    factor = 1.0
    if target_size:
        largest = max(high - low)
        if largest > 0:
            factor = float(target_size) / largest
    scale = Matrix.Diagonal(Vector((factor, factor, factor, 1.0)))
    about = Matrix.Translation(-bottom)
    goal = {"original": bottom, "origin": Vector(), "cursor": target}[placement]
    return Matrix.Translation(goal) @ scale @ about


def _rigid(mat: Matrix) -> Matrix:
    """The rotation + translation part of a matrix (its scale and shear dropped)."""
    loc, rot, _scale = mat.decompose()
    return Matrix.Translation(loc) @ rot.to_matrix().to_4x4()


def _bake(objects, worlds, placement: Matrix, keep_parent) -> None:
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
                data.transform(residual)
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


def _kept_parent(obj, kept: set):
    parent = obj.parent
    while parent is not None and parent not in kept:
        parent = parent.parent
    return parent


# -- materials --------------------------------------------------------------------------------------
def _vertex_colour_material(name: str, attribute: str) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0):               # always on (and deprecated) from 5.0
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        output = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
        links.new(bsdf.outputs[0], output.inputs[0])
    colour = nodes.new("ShaderNodeVertexColor")
    colour.layer_name = attribute
    colour.location = (bsdf.location.x - 300, bsdf.location.y)
    links.new(colour.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _colour_meshes(objects, job_name: str) -> None:
    made: dict[str, bpy.types.Material] = {}
    for mesh in {o.data for o in objects if o.type == "MESH"}:
        if any(slot is not None for slot in mesh.materials):
            continue
        attrs = getattr(mesh, "color_attributes", None)
        if not attrs or len(attrs) == 0:
            continue
        attr = attrs.active_color or attrs[0]
        mat = made.get(attr.name)
        if mat is None:
            mat = made[attr.name] = _vertex_colour_material(f"{job_name} Vertex Colour",
                                                            attr.name)
        mesh.materials.clear()
        mesh.materials.append(mat)


# -- camera -------------------------------------------------------------------------------------
def match_photo_camera(photo_path: str, name: str, collection, scene) -> bpy.types.Object:
    """A camera at the origin looking along +Y, the photo as its background and the scene's
    output shaped like the photo, so results placed 'original' line up with the photo."""
    image = bpy.data.images.load(photo_path, check_existing=True)
    width, height = image.size
    data = bpy.data.cameras.new(f"{name} Camera")
    data.sensor_fit = "AUTO"
    data.show_background_images = True
    background = data.background_images.new()
    background.image = image
    background.alpha = 1.0
    camera = bpy.data.objects.new(f"{name} Camera", data)
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)     # Blender cameras look down local -Z
    collection.objects.link(camera)
    if width and height:
        render = scene.render
        render.resolution_y = max(1, round(render.resolution_x * height / width))
    if scene.camera is None:
        scene.camera = camera
    return camera


# -- entry point ------------------------------------------------------------------------------------
LAYOUTS = ("together", "side_by_side")
SIDE_BY_SIDE_GAP = 0.25     # of the widest variation


def import_files(files, *, name: str, placement: str = "cursor",
                 target_size: float | None = None, collection=None, layout: str = "together",
                 photo: str | None = None, match_camera: bool = False,
                 context=None) -> list[bpy.types.Object]:
    """Import result GLBs; return the new objects. All or nothing.

    layout "together": every file is part of one scene (several objects of one photo): they
    keep their relative layout and are placed as one group. "side_by_side": every file is a
    variation of the same object: each is placed on its own, left to right along X."""
    context = context or bpy.context
    scene = context.scene
    if placement not in PLACEMENTS:
        raise Recon3DError(f"Unknown placement '{placement}'; use one of "
                           f"{', '.join(PLACEMENTS)}.", code="input")
    if layout not in LAYOUTS:
        raise Recon3DError(f"Unknown layout '{layout}'; use one of {', '.join(LAYOUTS)}.",
                           code="input")
    if target_size is not None and not target_size > 0:
        raise Recon3DError("The target size must be greater than zero.", code="input")
    if not files:
        raise ResultError("This job has no result files to import.")
    for path in files:
        check_glb(path)

    before = _snapshot()
    try:
        groups = []
        for path in files:
            seen = set(bpy.data.objects)
            _gltf_import(path)
            groups.append([o for o in bpy.data.objects if o not in seen])
        if layout == "together":
            groups = [[o for group in groups for o in group]]
        new_objects = [o for group in groups for o in group]
        if not any(o.type == "MESH" for o in new_objects):
            raise ResultError("The result holds no mesh: the service found nothing to model. "
                              "Try another prompt, mask or photo.")

        target = scene.cursor.location.copy() if placement == "cursor" else Vector()
        kept = place_and_bake(groups, placement=placement, target=target,
                              target_size=target_size)

        if collection is None:
            collection = bpy.data.collections.new(name)
            scene.collection.children.link(collection)
        for obj in kept:
            for owner in list(obj.users_collection):
                owner.objects.unlink(obj)
            collection.objects.link(obj)
        _drop_empty_new_collections(before, keep=collection)
        _colour_meshes(kept, name)
        if match_camera and photo:
            match_photo_camera(photo, name, collection, scene)
        context.view_layer.update()
        return kept
    except Recon3DError:
        _rollback(before)
        raise
    except Exception as exc:
        _rollback(before)
        raise ResultError(f"Importing the result failed ({type(exc).__name__}: {exc}). "
                          f"Nothing was imported.") from exc


def place_and_bake(groups, *, placement: str, target: Vector,
                   target_size: float | None = None) -> list[bpy.types.Object]:
    """Place groups of objects (each group moves as one) and bake their scale into the mesh
    data; wrapper Empties are removed, other parenting kept. Returns the objects kept."""
    new_objects = [o for group in groups for o in group]
    worlds = _world_matrices(new_objects)
    kept = [o for o in new_objects if o.type != "EMPTY"]
    kept_set = set(kept)
    keep_parent = {o: _kept_parent(o, kept_set) for o in kept}
    placed = []
    for group in groups:
        members = [o for o in group if o in kept_set]
        if any(o.type == "MESH" for o in members):
            low, high = combined_bounds(members, worlds)
            placed.append((members, low, high))
    offsets = _side_by_side(placed, target_size) if len(placed) > 1 else [Vector()] * len(placed)
    for (members, low, high), offset in zip(placed, offsets):
        place = Matrix.Translation(offset) @ placement_matrix(low, high, placement, target,
                                                              target_size)
        _bake(members, worlds, place, keep_parent)
    for empty in (o for o in new_objects if o.type == "EMPTY"):
        bpy.data.objects.remove(empty)
    return kept


def _side_by_side(placed, target_size) -> list[Vector]:
    """X offsets that put variations next to each other, centred on the target."""
    widths = []
    for _members, low, high in placed:
        width = high.x - low.x
        if target_size:
            largest = max(high - low)
            width *= target_size / largest if largest > 0 else 1.0
        widths.append(width)
    gap = SIDE_BY_SIDE_GAP * max(widths)
    total = sum(widths) + gap * (len(widths) - 1)
    offsets, x = [], -total / 2
    for width in widths:
        offsets.append(Vector((x + width / 2, 0.0, 0.0)))
        x += width + gap
    return offsets


def _drop_empty_new_collections(before, keep) -> None:
    for coll in [c for c in bpy.data.collections if c not in before["collections"]]:
        if coll is not keep and not coll.objects and not coll.children:
            bpy.data.collections.remove(coll)
