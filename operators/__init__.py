# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: thin, they read the form and call `api`. Nothing here waits on the network."""
from __future__ import annotations

import os
import threading

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from .. import api
from ..blender import job_start, main_thread
from ..addon import runtime
from . import checks, connection, picker, removal


#: where a placement puts a result, in the words of a report
_WHERE = {"cursor": "at the 3D cursor", "origin": "at the world origin",
          "original": "where the service placed it"}


class RECON3D_OT_submit(bpy.types.Operator):
    """Send the photo to the chosen model; the result is imported when ready, placed and
    sized as the panel shows"""
    bl_idname = "recon3d.submit"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return checks.allowed(cls, checks.submit_blocker(context))

    def execute(self, context):
        form = context.scene.recon3d
        # Imported by itself when ready, into this file and scene, as chosen now.
        auto_import = {"blend": bpy.data.filepath, "scene": context.scene.name,
                       **checks.placement_arguments(form), "match_camera": form.match_camera}
        try:
            job = api.submit(form.photo(), form.provider, **checks.job_arguments(form),
                             _auto_import=auto_import)
        except api.Recon3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        where = _WHERE.get(auto_import["placement"], "in the scene")
        self.report({"INFO"}, f"Recon3D: job {job.id} sent; it will appear {where}.")
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


class RECON3D_OT_import_job(_JobOperator, bpy.types.Operator):
    """Import this job's result into the current scene (again, if it was imported before)"""
    bl_idname = "recon3d.import_job"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    def act(self, context, job):
        form = context.scene.recon3d
        api.import_job(job, **checks.placement_arguments(form), match_camera=form.match_camera)


def _job_action(name: str, label: str, doc: str, action) -> type:
    """A job-row button that only calls one api function with the job."""
    return type(f"RECON3D_OT_{name}", (_JobOperator, bpy.types.Operator), {
        "__doc__": doc, "bl_idname": f"recon3d.{name}", "bl_label": label,
        "bl_options": {"INTERNAL"}, "act": lambda self, context, job: action(job)})


RECON3D_OT_cancel = _job_action("cancel", "Cancel Job",
                                "Stop this job (the service is asked to stop where it can)",
                                api.cancel)
RECON3D_OT_retry = _job_action("retry", "Retry Download",
                               "Fetch this job's result again (it is not sent again, so not "
                               "billed again)", api.retry)


class RECON3D_OT_select_imported(_JobOperator, bpy.types.Operator):
    """Select the objects this job imported (those still in the file) and make the first one
    active"""
    bl_idname = "recon3d.select_imported"
    bl_label = "Select Imported Objects"
    bl_options = {"REGISTER", "UNDO"}

    def act(self, context, job):
        objects = imported_objects(job, context)
        if not objects:
            raise api.Recon3DError("The objects this job imported are no longer in this scene; "
                                   "import it again.", code="not_found")
        for obj in context.view_layer.objects:
            obj.select_set(obj in objects)
        context.view_layer.objects.active = objects[0]


def imported_objects(job, context) -> list:
    """The job's imported objects that are still in the current view layer."""
    layer = context.view_layer.objects
    return [layer[name] for name in job.imported_objects if name in layer]


#: opens a folder in the system's file browser (tests replace it)
open_folder = bpy.ops.wm.path_open


class RECON3D_OT_open_job_folder(_JobOperator, bpy.types.Operator):
    """Open the folder with this job's photo and results in the file browser"""
    bl_idname = "recon3d.open_job_folder"
    bl_label = "Open Result Folder"
    bl_options = {"INTERNAL"}

    def act(self, context, job):
        folder = runtime.engine().job_dir(job)
        if not os.path.isdir(folder):
            raise api.Recon3DError(f"The job's folder {folder} is gone.", code="not_found")
        open_folder(filepath=folder)


def set_clipboard(context, text: str) -> None:
    """(Tests replace it: a headless Blender has no system clipboard.)"""
    context.window_manager.clipboard = text


class RECON3D_OT_copy_job_text(_JobOperator, bpy.types.Operator):
    """Copy this job's text to the clipboard, to paste into a support request"""
    bl_idname = "recon3d.copy_job_text"
    bl_label = "Copy"
    bl_options = {"INTERNAL"}

    what: EnumProperty(items=(("REMOTE_ID", "Service Job ID", "The service's id of this job"),
                              ("ERROR", "Error", "The full error message")))

    def act(self, context, job):
        text = job.remote_id if self.what == "REMOTE_ID" else job.error
        if not text:
            raise api.Recon3DError("There is nothing to copy for this job.", code="not_found")
        set_clipboard(context, text)
        self.report({"INFO"}, "Copied to the clipboard.")


class RECON3D_OT_extra_option_add(bpy.types.Operator):
    """Add a parameter by its name, for parameters of the model the panel does not list"""
    bl_idname = "recon3d.extra_option_add"
    bl_label = "Add Parameter"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.recon3d.extra_options.add()
        return {"FINISHED"}


class RECON3D_OT_extra_option_remove(bpy.types.Operator):
    """Remove this parameter"""
    bl_idname = "recon3d.extra_option_remove"
    bl_label = "Remove Parameter"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(default=-1)

    def execute(self, context):
        extras = context.scene.recon3d.extra_options
        if not 0 <= self.index < len(extras):
            return {"CANCELLED"}
        extras.remove(self.index)
        return {"FINISHED"}


#: prices asked for with Ask the Price: (model, photo, options) → the answer, in the service's
#: units; the panel shows the one matching the form now
prices: dict[tuple, object] = {}
#: the threads asking (tests join them)
price_threads: list = []


def price_key(form) -> tuple:
    photo = form.photo()
    photo = photo.name if isinstance(photo, bpy.types.Image) else photo
    return (form.provider, photo, tuple(sorted(form.chosen_options().items())), form.prompt,
            form.points, form.boxes, form.mask_path)


class RECON3D_OT_estimate_cost(bpy.types.Operator):
    """Ask the service what this job would cost (nothing is generated or billed; the photo
    is uploaded to ask, which takes a few seconds)"""
    bl_idname = "recon3d.estimate_cost"
    bl_label = "Ask the Price"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        reason = checks.submit_blocker(context)
        if reason is None and not checks.can_price(context.scene.recon3d.provider):
            reason = "This service cannot price a job before it runs."
        return checks.allowed(cls, reason)

    def execute(self, context):
        form = context.scene.recon3d
        key = price_key(form)
        try:       # checks and input preparation here (bpy); the network on a thread
            ask = job_start.prepare_estimate(form.photo(), form.provider,
                                             **checks.job_arguments(form))
        except api.Recon3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        prices[key] = "Asking the service…"

        def run():
            try:
                prices[key] = ask()
            except Exception as exc:    # shown where the price would be, never raised
                prices[key] = str(exc) if isinstance(exc, api.Recon3DError) else \
                    f"Could not ask ({type(exc).__name__})"

        thread = threading.Thread(target=run, name="recon3d-price", daemon=True)
        price_threads.append(thread)
        thread.start()
        main_thread.redraw_while(thread.is_alive)
        return {"FINISHED"}


class RECON3D_OT_notify(bpy.types.Operator):
    """Tell the artist about a finished job in the status bar and the Info log"""
    bl_idname = "recon3d.notify"
    bl_label = "Recon3D Notification"
    bl_options = {"INTERNAL"}

    message: StringProperty()
    level: EnumProperty(items=(("INFO", "Info", ""), ("WARNING", "Warning", ""),
                               ("ERROR", "Error", "")))

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


classes = (RECON3D_OT_submit, RECON3D_OT_retry, RECON3D_OT_cancel, RECON3D_OT_import_job,
           RECON3D_OT_select_imported, RECON3D_OT_open_job_folder, RECON3D_OT_copy_job_text,
           RECON3D_OT_extra_option_add, RECON3D_OT_extra_option_remove,
           RECON3D_OT_estimate_cost, RECON3D_OT_notify,
           *connection.classes, *picker.classes, *removal.classes)


def unregister():
    picker.unregister()
