# SPDX-License-Identifier: GPL-3.0-or-later
"""The "Recon3D" tab of the 3D View sidebar: the form, Generate, and the job list."""
from __future__ import annotations

import bpy

from ..addon import runtime
from ..addon.form import option_attr
from ..jobs import ACTIVE

MAX_LISTED_JOBS = 8
STATE_ICONS = {"queued": "SORTTIME", "submitting": "EXPORT", "running": "PLAY",
               "downloading": "IMPORT", "ready": "CHECKMARK", "imported": "CHECKMARK",
               "failed": "ERROR", "canceled": "CANCEL"}


class RECON3D_PT_generate(bpy.types.Panel):
    bl_idname = "RECON3D_PT_generate"
    bl_label = "Recon3D"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Recon3D"

    def draw(self, context):
        layout = self.layout
        form = context.scene.recon3d
        layout.prop(form, "image_path")
        layout.prop(form, "provider")
        cls = form.provider_class()
        caps = cls.capabilities
        # Only what the chosen model takes, as its provider declares it.
        if caps.prompt:
            layout.prop(form, "prompt")
        if caps.mask:
            layout.prop(form, "mask_path",
                        text="Mask" if not caps.mask_required else "Mask (else from alpha)")
        if caps.points:
            layout.prop(form, "points")
        if caps.boxes:
            layout.prop(form, "boxes")
        if caps.points or caps.boxes:
            layout.label(text="Click/drag them on the photo: Image Editor › Recon3D",
                         icon="INFO")
        row = layout.row(align=True)
        row.prop(form, "use_seed")
        sub = row.row(align=True)
        sub.active = form.use_seed
        sub.prop(form, "seed", text="")
        layout.prop(form, "placement")
        row = layout.row(align=True)
        row.prop(form, "use_target_size")
        sub = row.row(align=True)
        sub.active = form.use_target_size
        sub.prop(form, "target_size", text="")
        layout.prop(form, "match_camera")
        if not bpy.app.online_access:
            layout.label(text="Online access is off (Preferences › System)", icon="ERROR")
        if cls.options:
            box = layout.box()
            box.label(text=f"{cls.label} options")
            for spec in cls.options:
                box.prop(form.options, option_attr(cls.id, spec.name))
        layout.operator("recon3d.submit", icon="MESH_MONKEY")


class RECON3D_PT_jobs(bpy.types.Panel):
    bl_idname = "RECON3D_PT_jobs"
    bl_label = "Jobs"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Recon3D"
    bl_parent_id = "RECON3D_PT_generate"

    def draw(self, context):
        layout = self.layout
        eng = runtime.running_engine()
        jobs = list(reversed(eng.jobs()))[:MAX_LISTED_JOBS] if eng else []
        if not jobs:
            layout.label(text="No jobs yet")
            return
        for job in jobs:
            box = layout.box()
            row = box.row()
            row.label(text=f"{job.label or job.id}", icon=STATE_ICONS.get(job.state, "DOT"))
            if job.state in ("running", "downloading") and job.progress:
                row.label(text=f"{job.state} {job.progress:.0%}")
            else:
                row.label(text=job.state)
            if job.owner is not None and job.state in ACTIVE:
                box.label(text="Running in another Blender", icon="WINDOW")
                box.label(text=job.owner.describe())
            elif job.state in ACTIVE:
                row.operator("recon3d.cancel", text="", icon="X").job_id = job.id
            elif job.state == "ready":
                row.operator("recon3d.import_job", text="", icon="IMPORT").job_id = job.id
            elif eng.can_retry(job):
                row.operator("recon3d.retry", text="", icon="FILE_REFRESH").job_id = job.id
            if job.error:
                for line in _wrap(job.error, 48):
                    box.label(text=line)


class RECON3D_PT_image_editor(bpy.types.Panel):
    bl_idname = "RECON3D_PT_image_editor"
    bl_label = "Recon3D"
    bl_space_type = "IMAGE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Recon3D"

    def draw(self, context):
        layout = self.layout
        form = context.scene.recon3d
        layout.operator("recon3d.use_editor_image", icon="IMAGE_DATA")
        layout.operator("recon3d.pick_prompts", icon="RESTRICT_SELECT_OFF")
        layout.prop(form, "points")
        layout.prop(form, "boxes")


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines


classes = (RECON3D_PT_generate, RECON3D_PT_jobs, RECON3D_PT_image_editor)
