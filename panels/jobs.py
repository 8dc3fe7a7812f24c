# SPDX-License-Identifier: GPL-3.0-or-later
"""The Jobs panel: every job, newest first, in a scrolling list; the selected one with its
photo, progress, time, cost and actions."""
from __future__ import annotations

import os

import bpy

from ..addon import runtime
from ..jobs import ACTIVE, FINISHED
from ..operators import imported_objects
from ..providers import REGISTRY
from . import common
from .common import STATE_ICONS, STATE_WORDS, Sidebar, draw_wrapped


class RECON3D_UL_jobs(bpy.types.UIList):
    """Newest first; filtered to active or finished jobs."""
    bl_idname = "RECON3D_UL_jobs"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname,
                  index=0):
        job = _job(item.job_id)
        if job is None:
            layout.label(text="(removed)", icon="GHOST_DISABLED")
            return
        row = layout.row(align=True)
        photo = _photo_icon(job)
        if photo:
            row.label(text=job.label or job.id, icon_value=photo)
        else:
            row.label(text=job.label or job.id)
        if job.state in ACTIVE:
            row.progress(factor=float(job.progress or 0.0), type="RING",
                         text=_state_text(job))
        else:
            row.label(text=_state_text(job), icon=STATE_ICONS.get(job.state, "DOT"))

    def filter_items(self, context, data, propname):
        items = getattr(data, propname)
        wanted = {"ACTIVE": ACTIVE, "FINISHED": FINISHED}.get(data.show)
        flags = []
        for item in items:
            job = _job(item.job_id)
            shown = wanted is None or (job is not None and job.state in wanted)
            flags.append(self.bitflag_filter_item if shown else 0)
        return flags, []


def _job(job_id):
    eng = runtime.running_engine()
    return eng.get(job_id) if eng else None


def _state_text(job) -> str:
    words = STATE_WORDS.get(job.state, job.state)
    if job.state in ("running", "downloading") and job.progress:
        return f"{words} {job.progress:.0%}"
    return words


def elapsed(job) -> str:
    end = job.finished_at if job.state in FINISHED and job.finished_at else common.now()
    seconds = max(0, int(end - job.created_at))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


class RECON3D_PT_jobs(Sidebar, bpy.types.Panel):
    bl_idname = "RECON3D_PT_jobs"
    bl_label = "Jobs"
    bl_parent_id = "RECON3D_PT_generate"

    def draw(self, context):
        layout = self.layout
        listing = context.window_manager.recon3d_jobs
        if not len(listing.items):
            layout.label(text="No jobs yet: choose a photo and press Generate.")
            return
        layout.row().prop(listing, "show", expand=True)
        layout.template_list("RECON3D_UL_jobs", "", listing, "items", listing, "active",
                             rows=4)
        if 0 <= listing.active < len(listing.items):
            job = _job(listing.items[listing.active].job_id)
            if job is not None:
                draw_job(layout.box(), job, context)


def draw_job(layout, job, context) -> None:
    """The selected job: photo, model, state with progress and time, cost, and its actions."""
    cls = REGISTRY.get(job.provider)
    row = layout.row()
    icon = _photo_icon(job)
    if icon:
        row.template_icon(icon_value=icon, scale=3.0)
    col = row.column(align=True)
    col.label(text=job.label or job.id, icon=STATE_ICONS.get(job.state, "DOT"))
    col.label(text=cls.label if cls else job.provider)
    if job.state in ACTIVE:
        col.progress(factor=float(job.progress or 0.0), type="BAR",
                     text=f"{_state_text(job)} · {elapsed(job)}")
    else:
        col.label(text=f"{_state_text(job)} after {elapsed(job)}")
    money = [f"cost {job.cost}"] if job.cost is not None else []
    if job.remaining_credits is not None:
        money.append(f"{job.remaining_credits} credits left")
    if money:
        col.label(text=", ".join(money).capitalize(), icon="FUND")
    eng = runtime.running_engine()
    if job.owner is not None and job.state in ACTIVE:
        # Another Blender sharing the data folder runs it: only that one can act on it.
        layout.label(text="Running in another Blender", icon="WINDOW")
        layout.label(text=job.owner.describe())
        return
    actions = layout.row(align=True)
    if job.state in ACTIVE:
        actions.operator("recon3d.cancel", icon="X").job_id = job.id
    if job.state in ("ready", "imported") and job.files:
        actions.operator("recon3d.import_job", icon="IMPORT",
                         text="Import Again" if job.state == "imported" else "Import"
                         ).job_id = job.id
    if job.state == "imported" and imported_objects(job, context):
        actions.operator("recon3d.select_imported", text="Select", icon="RESTRICT_SELECT_OFF"
                         ).job_id = job.id
    if eng is not None and eng.can_retry(job):
        actions.operator("recon3d.retry", icon="FILE_REFRESH").job_id = job.id
    tools = layout.row(align=True)
    tools.operator("recon3d.open_job_folder", text="Folder", icon="FILE_FOLDER").job_id = job.id
    if job.remote_id:
        op = tools.operator("recon3d.copy_job_text", text="Copy Service Job ID", icon="COPYDOWN")
        op.job_id, op.what = job.id, "REMOTE_ID"
    # Greyed out, saying why, while the job still works (its poll judges the selected job).
    tools.operator("recon3d.job_remove", text="Remove", icon="TRASH").job_id = job.id
    unchecked = cls.describe_unchecked((job.inputs or {}).get("options") or {}) if cls else ""
    if unchecked:
        draw_wrapped(layout.column(align=True), f"Sent as typed, unchecked: {unchecked}",
                     icon="MODIFIER")
    if job.notice:
        draw_wrapped(layout.column(align=True), job.notice, icon="INFO")
    if job.error:
        col = layout.column(align=True)
        draw_wrapped(col, job.error, icon="ERROR")
        op = col.operator("recon3d.copy_job_text", text="Copy Error", icon="COPYDOWN")
        op.job_id, op.what = job.id, "ERROR"


_previews = None


def _photo_icon(job) -> int:
    """An icon of the job's uploaded photo (loaded once into a preview collection)."""
    global _previews
    path = (job.inputs or {}).get("image_path")
    if not path or not os.path.isfile(path):
        return 0
    if _previews is None:
        import bpy.utils.previews
        _previews = bpy.utils.previews.new()
    preview = _previews.get(job.id) or _previews.load(job.id, path, "IMAGE")
    return preview.icon_id


def release_previews() -> None:
    global _previews
    if _previews is not None:
        import bpy.utils.previews
        bpy.utils.previews.remove(_previews)
        _previews = None
