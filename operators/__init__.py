# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: thin, they read the form and call `api`. Nothing here waits on the network."""
from __future__ import annotations

import bpy
from bpy.props import StringProperty

from .. import api
from . import picker


class RECON3D_OT_submit(bpy.types.Operator):
    """Send the photo to the chosen model; the result lands at the 3D cursor when ready"""
    bl_idname = "recon3d.submit"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        form = getattr(context.scene, "recon3d", None)
        return form is not None and bool(form.image_path)

    def execute(self, context):
        form = context.scene.recon3d
        # Imported by itself when ready, into this file and scene, as chosen now.
        auto_import = {"blend": bpy.data.filepath, "scene": context.scene.name,
                       "placement": form.placement,
                       "target_size": form.target_size if form.use_target_size else None,
                       "match_camera": form.match_camera}
        caps = form.provider_class().capabilities
        try:
            job = api.submit(form.image_path, form.provider,
                             prompt=(form.prompt or None) if caps.prompt else None,
                             mask=(form.mask_path or None) if caps.mask else None,
                             points=form.parsed_points() if caps.points else None,
                             boxes=form.parsed_boxes() if caps.boxes else None,
                             seed=form.seed if form.use_seed else None,
                             options=form.chosen_options(), _auto_import=auto_import)
        except api.Recon3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Recon3D: job {job.id} sent; it will appear at the 3D cursor.")
        return {"FINISHED"}


class _JobOperator:
    """A button on a job's row: finds the job, runs `act`, reports errors in words."""
    job_id: StringProperty()

    def act(self, context, job):
        raise NotImplementedError

    def execute(self, context):
        try:
            self.act(context, api.get_job(self.job_id))
        except api.Recon3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class RECON3D_OT_cancel(_JobOperator, bpy.types.Operator):
    """Stop this job (the service is asked to stop where it can)"""
    bl_idname = "recon3d.cancel"
    bl_label = "Cancel Job"
    bl_options = {"INTERNAL"}

    def act(self, context, job):
        api.cancel(job)


class RECON3D_OT_import_job(_JobOperator, bpy.types.Operator):
    """Import this finished job into the current scene"""
    bl_idname = "recon3d.import_job"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    def act(self, context, job):
        form = context.scene.recon3d
        api.import_job(job, placement=form.placement,
                       target_size=form.target_size if form.use_target_size else None,
                       match_camera=form.match_camera)


class RECON3D_OT_retry(_JobOperator, bpy.types.Operator):
    """Fetch this job's result again (it is not sent again, so not billed again)"""
    bl_idname = "recon3d.retry"
    bl_label = "Retry Download"
    bl_options = {"INTERNAL"}

    def act(self, context, job):
        api.retry(job)


classes = (RECON3D_OT_submit, RECON3D_OT_retry, RECON3D_OT_cancel, RECON3D_OT_import_job, *picker.classes)
