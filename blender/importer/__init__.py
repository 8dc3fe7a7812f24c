# SPDX-License-Identifier: GPL-3.0-or-later
"""Bring result GLBs into the scene (bpy, main thread).

What SAM 3D returns is posed in camera space metres from the origin, under a wrapper Empty,
coloured only by vertex colours (shared/PROVIDERS.md). An import, one module per step:
1. checks each GLB before Blender reads it (providers/files.py `check_glb`: magic, declared
   length, JSON, at least one mesh);
2. imports with Blender's glTF importer, with only the arguments this Blender accepts (gltf);
3. collapses wrapper Empties, keeping every other parent/child relation (baking);
4. computes one placement matrix for the whole job — bottom-centre of the combined world
   bounding box (bounds) on the cursor or origin, optional fit to a size (placement) — and
   bakes each object's scale into its mesh with one `Mesh.transform` (baking), so every object
   ends with scale (1, 1, 1), its rotation kept, and world-space vertices exactly where the
   placement puts them;
5. gives vertex-coloured meshes without a material one that shows the colours (materials);
6. puts everything in one collection named after the job, optionally with a camera that
   matches the photo (camera).
If anything fails, every datablock the import created is removed again (rollback): the file is
left as it was.
"""
from __future__ import annotations

import os

import bpy
from mathutils import Matrix, Vector

from ...addon import runtime
from ...errors import Canceled, InputError, Recon3DError, ResultError
from ...jobs import Job
from ...providers import provider_class
from ...providers.files import check_glb
from .baking import bake, kept_parent
from .bounds import combined_bounds, world_matrices
from .camera import match_photo_camera
from .gltf import gltf_import
from .materials import colour_meshes
from .placement import LAYOUTS, PLACEMENTS, placement_matrix, side_by_side
from .rollback import drop_empty_new_collections, rollback, snapshot
from .splat import import_splat, is_splat


def import_job(job: Job, *, placement: str = "cursor", target_size: float | None = None,
               collection=None, match_camera: bool = False) -> list:
    """Import a finished job into the current scene and mark it imported; returns the new
    objects (see api.import_job)."""
    raise_if_unsuccessful(job)
    if job.state not in ("ready", "imported"):
        raise Recon3DError(f"The job is still {job.state}; wait for it to finish "
                           f"(job.wait()) before importing.", code="not_ready")
    missing = [f for f in job.files if not os.path.isfile(f)]
    if missing:
        raise Recon3DError("The job's result files are gone from Recon3D's data folder; "
                           "generate again.", code="result")
    variations = provider_class(job.provider).results_are_variations and len(job.files) > 1
    objects = import_files(job.files, name=f"Recon3D {job.id}", placement=placement,
                           target_size=target_size, collection=collection,
                           layout="side_by_side" if variations else "together",
                           photo=(job.inputs or {}).get("image_path"),
                           match_camera=match_camera, splats=_splats_asked_for(job))
    runtime.engine().mark_imported(job, [o.name for o in objects])
    return objects


def _splats_asked_for(job: Job) -> list[str]:
    """The job's Gaussian splat, when its options ask for it as a point cloud
    (`import_splat`) and the provider kept one beside the GLB (service_data["extra_files"])."""
    if not ((job.inputs or {}).get("options") or {}).get("import_splat"):
        return []
    splat = (job.service_data.get("extra_files") or {}).get("splat")
    if not splat or not os.path.isfile(splat):
        raise Recon3DError("This job has no Gaussian splat to import as points (the service "
                           "returned none, or its file is gone). Import it without the splat "
                           "option.", code="result")
    return [splat]


def raise_if_unsuccessful(job: Job) -> None:
    if job.state == "failed":
        raise Recon3DError(job.error or "The job failed.", code=job.error_code or "failed")
    if job.state == "canceled":
        raise Canceled("The job was canceled; there is nothing to import.")


def import_files(files, *, name: str, placement: str = "cursor",
                 target_size: float | None = None, collection=None, layout: str = "together",
                 photo: str | None = None, match_camera: bool = False,
                 context=None, splats=()) -> list[bpy.types.Object]:
    """Import result GLBs; return the new objects. All or nothing.

    layout "together": every file is part of one scene (several objects of one photo): they
    keep their relative layout and are placed as one group. "side_by_side": every file is a
    variation of the same object: each is placed on its own, left to right along X.
    splats: Gaussian splat files imported as point clouds with the (first) group, moved with
    it but left out of its bounds (splat.py)."""
    context = context or bpy.context
    scene = context.scene
    if placement not in PLACEMENTS:
        raise InputError(f"Unknown placement '{placement}'; use one of "
                         f"{', '.join(PLACEMENTS)}.")
    if layout not in LAYOUTS:
        raise InputError(f"Unknown layout '{layout}'; use one of {', '.join(LAYOUTS)}.")
    if target_size is not None and not target_size > 0:
        raise InputError("The target size must be greater than zero.")
    if not files:
        raise ResultError("This job has no result files to import.")
    for path in files:
        check_glb(path)

    before = snapshot()
    try:
        groups = []
        for path in files:
            seen = set(bpy.data.objects)
            gltf_import(path)
            groups.append([o for o in bpy.data.objects if o not in seen])
        if layout == "together":
            groups = [[o for group in groups for o in group]]
        for index, path in enumerate(splats):
            suffix = f" {index}" if index else ""
            groups[0].append(import_splat(path, f"{name} Splat{suffix}"))
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
        drop_empty_new_collections(before, keep=collection)
        colour_meshes(kept, name)
        if match_camera and photo:
            match_photo_camera(photo, name, collection, scene)
        context.view_layer.update()
        return kept
    except Recon3DError:
        rollback(before)
        raise
    except Exception as exc:
        rollback(before)
        raise ResultError(f"Importing the result failed ({type(exc).__name__}: {exc}). "
                          f"Nothing was imported.") from exc




def place_and_bake(groups, *, placement: str, target: Vector,
                   target_size: float | None = None) -> list[bpy.types.Object]:
    """Place groups of objects (each group moves as one) and bake their scale into the mesh
    data; wrapper Empties are removed, other parenting kept. Returns the objects kept."""
    new_objects = [o for group in groups for o in group]
    worlds = world_matrices(new_objects)
    kept = [o for o in new_objects if o.type != "EMPTY"]
    kept_set = set(kept)
    keep_parent = {o: kept_parent(o, kept_set) for o in kept}
    placed = []
    for group in groups:
        members = [o for o in group if o in kept_set]
        if any(o.type == "MESH" for o in members):
            low, high = combined_bounds([o for o in members if not is_splat(o)], worlds)
            placed.append((members, low, high))
    offsets = side_by_side(placed, target_size) if len(placed) > 1 else [Vector()] * len(placed)
    for (members, low, high), offset in zip(placed, offsets):
        place = Matrix.Translation(offset) @ placement_matrix(low, high, placement, target,
                                                              target_size)
        bake(members, worlds, place, keep_parent)
    for empty in (o for o in new_objects if o.type == "EMPTY"):
        bpy.data.objects.remove(empty)
    return kept
