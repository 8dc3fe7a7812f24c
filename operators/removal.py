# SPDX-License-Identifier: GPL-3.0-or-later
"""Removing jobs with their files: one job (the Jobs panel's Remove button) and the finished
jobs older than some days (Preferences › Clear Old Results…). Both ask first, say what is
deleted, and go through `api.remove` (the engine's rules: never a job still working, never
one another Blender works on, never anything outside the data folder)."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from .. import api
from ..addon import form, runtime
from ..jobs import FINISHED
from ..jobs.removal import (folder_size, is_paid_not_imported, job_folder, old_results,
                            size_words)
from ..providers import REGISTRY
from .checks import allowed

#: bytes of each finished job's folder, measured when a dialog opens (draw runs often)
_sizes: dict[str, int] = {}


def selected_job(context):
    """The job selected in the Jobs list, or None."""
    listing = getattr(context.window_manager, "recon3d_jobs", None)
    eng = runtime.running_engine()
    if listing is None or eng is None or not 0 <= listing.active < len(listing.items):
        return None
    return eng.get(listing.items[listing.active].job_id)


def measure(jobs) -> None:
    eng = runtime.engine()
    for job in jobs:
        try:
            _sizes[job.id] = folder_size(job_folder(eng.journal.jobs_dir, job.id))
        except api.Recon3DError:
            _sizes[job.id] = 0


def _size(job) -> int:
    """The job's size as measured when its dialog opened (before its folder was moved away
    to be deleted on a thread), else now."""
    if job.id not in _sizes:
        measure([job])
    return _sizes.pop(job.id)


def confirmation(job, nbytes: int) -> list[str]:
    """What the Remove dialog says: which job, what is deleted, what stays."""
    cls = REGISTRY.get(job.provider)
    lines = [f"Remove “{job.label or job.id}” from the list?"]
    if cls is not None:
        lines.append(f"Made with {cls.label}.")
    lines += [f"Deletes its folder in Recon3D's data folder ({size_words(nbytes)}):",
              "its photo copy, the result the service sent, and its record."]
    if is_paid_not_imported(job):
        lines += ["Its paid result was never imported and is lost with it:",
                  "it cannot be fetched again after removal."]
    elif job.state == "imported":
        lines.append("The objects it imported stay in your scene.")
    else:
        lines.append("Nothing was imported from it.")
    lines.append("This cannot be undone.")
    return lines


def _draw_lines(layout, lines) -> None:
    col = layout.column(align=True)
    for line in lines:
        col.label(text=line)


def _after_removal(context) -> None:
    """The Jobs list without the removed jobs at once (not on the next tick)."""
    form.sync_job_list(context.window_manager, runtime.engine().jobs())


class RECON3D_OT_job_remove(bpy.types.Operator):
    """Take this job off the list and delete its files (its photo copy and result) after
    asking; objects imported from it stay in the scene"""
    bl_idname = "recon3d.job_remove"
    bl_label = "Remove Job"
    bl_options = {"INTERNAL"}          # files are deleted: nothing to undo

    job_id: StringProperty(name="Job", options={"SKIP_SAVE"},
                           description="The job to remove (empty: the one selected in the "
                                       "Jobs list)")

    @classmethod
    def poll(cls, context):
        # Poll cannot see job_id: it judges the selected job, which is the one the Jobs
        # panel's button names.
        job = selected_job(context)
        eng = runtime.running_engine()
        blocker = eng.removal_blocker(job) if job is not None and eng is not None else None
        return allowed(cls, str(blocker) if blocker is not None else None)

    def _job(self, context):
        if self.job_id:
            return api.get_job(self.job_id)
        job = selected_job(context)
        if job is None:
            raise api.Recon3DError("Select a job in the Jobs list first.", code="not_found")
        return job

    def invoke(self, context, event):
        try:
            job = self._job(context)
        except api.Recon3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.job_id = job.id
        measure([job])
        return context.window_manager.invoke_props_dialog(self, width=500, title="Remove Job",
                                                          confirm_text="Remove")

    def draw(self, context):
        job = runtime.engine().get(self.job_id)
        if job is not None:
            _draw_lines(self.layout, confirmation(job, _sizes.get(job.id, 0)))

    def execute(self, context):
        try:
            job = self._job(context)
            nbytes = _size(job)
            api.start_removal(job)
        except api.Recon3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _after_removal(context)
        self.report({"INFO"}, f"Removed “{job.label or job.id}” and its files "
                              f"({size_words(nbytes)}).")
        return {"FINISHED"}


class RECON3D_OT_clear_old_results(bpy.types.Operator):
    """Delete the files of finished jobs older than a number of days and take them off the
    list, after asking; running jobs, other Blenders' jobs and imported objects stay"""
    bl_idname = "recon3d.clear_old_results"
    bl_label = "Clear Old Results"
    bl_options = {"INTERNAL"}          # files are deleted: nothing to undo

    days: IntProperty(name="Older Than (Days)", default=30, min=0, soft_max=365,
                      description="Jobs that finished more than this many days ago")
    include_ready: BoolProperty(name="Also Results Never Imported", default=False,
                                description="Delete old paid results that were never "
                                            "imported too, also those that could still be "
                                            "fetched again (they are lost for good)")

    def plan(self) -> tuple[list, list]:
        """(the jobs it removes, the old results never imported it keeps)."""
        eng = runtime.engine()
        return old_results([job for job in eng.jobs() if eng.removal_blocker(job) is None],
                           self.days, include_ready=self.include_ready)

    def summary(self) -> list[str]:
        """What the dialog says it will do."""
        doomed, kept = self.plan()
        days = f"{self.days} day{'s' if self.days != 1 else ''}"
        if doomed:
            size = size_words(sum(_sizes.get(job.id, 0) for job in doomed))
            lines = [f"Deletes {len(doomed)} finished job{'s' if len(doomed) != 1 else ''} "
                     f"older than {days}, freeing {size}."]
        else:
            lines = [f"No finished job is older than {days}: nothing to delete."]
        if kept:
            lines.append(f"{len(kept)} old result{'s' if len(kept) != 1 else ''} never "
                         f"imported {'are' if len(kept) != 1 else 'is'} kept (tick above to "
                         f"delete {'them' if len(kept) != 1 else 'it'} too).")
        lines.append("Running jobs and other Blenders' jobs are kept; imported objects stay.")
        return lines

    def invoke(self, context, event):
        measure([job for job in runtime.engine().jobs() if job.state in FINISHED])
        return context.window_manager.invoke_props_dialog(self, width=500,
                                                          title="Clear Old Results",
                                                          confirm_text="Delete")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "days")
        layout.prop(self, "include_ready")
        _draw_lines(layout, self.summary())

    def execute(self, context):
        doomed, _ = self.plan()
        freed, removed, refused = 0, 0, []
        for job in doomed:
            try:
                nbytes = _size(job)
                api.start_removal(job)
                freed += nbytes
                removed += 1
            except api.Recon3DError as exc:       # taken by another Blender meanwhile, …
                refused.append(str(exc))
        _after_removal(context)
        if refused:
            self.report({"WARNING"}, f"{len(refused)} old job(s) were kept: {refused[0]}")
        self.report({"INFO"}, f"Cleared {removed} old job{'s' if removed != 1 else ''}, "
                              f"freeing {size_words(freed)}." if removed else
                              f"No finished job is older than {self.days} days; nothing was "
                              f"deleted.")
        return {"FINISHED"}


classes = (RECON3D_OT_job_remove, RECON3D_OT_clear_old_results)
