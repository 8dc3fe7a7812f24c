# SPDX-License-Identifier: GPL-3.0-or-later
"""The "Recon3D" tab of the 3D View sidebar: photo, model, Generate, Advanced options and the
job list; and the Image Editor panel for picking points and boxes."""
from __future__ import annotations

import os
import time

import bpy

from .. import api, operators
from ..addon import EXTENSION_PACKAGE, preferences, runtime
from ..addon.form import option_attr
from ..jobs import ACTIVE, FINISHED
from ..operators import checks, connection, imported_objects
from ..providers import REGISTRY

STATE_ICONS = {"queued": "SORTTIME", "submitting": "EXPORT", "running": "PLAY",
               "downloading": "IMPORT", "ready": "CHECKMARK", "imported": "CHECKMARK",
               "failed": "ERROR", "canceled": "CANCEL"}
STATE_WORDS = {"queued": "Waiting", "submitting": "Sending", "running": "Generating",
               "downloading": "Downloading", "ready": "Ready to import",
               "imported": "Imported", "failed": "Failed", "canceled": "Canceled"}
KEY_SOURCE_WORDS = {"preferences": ("set", "CHECKMARK"),
                    "environment": ("from environment", "CHECKMARK"),
                    "missing": ("missing", "ERROR")}

#: the clock elapsed times are measured with (tests replace it)
now = time.time


class _Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Recon3D"


class RECON3D_PT_generate(_Sidebar, bpy.types.Panel):
    bl_idname = "RECON3D_PT_generate"
    bl_label = "Recon3D"

    def draw(self, context):
        layout = self.layout
        form = context.scene.recon3d
        cls = form.provider_class()
        caps = cls.capabilities
        draw_photo(layout, form)
        draw_model(layout, form)
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
        if checks.can_price(cls.id):
            row = layout.row(align=True)
            price = operators.prices.get(operators.price_key(form), _UNASKED)
            row.label(text="Price not asked yet" if price is _UNASKED else
                      f"Costs {price}" if price is not None else "No price given",
                      icon="FUND")
            row.operator("recon3d.estimate_cost", text="", icon="FILE_REFRESH")
        cost = cost_hint(cls.id)
        if cost:
            layout.label(text=cost, icon="FUND")
        ignored = checks.ignored_inputs(form)
        if ignored:
            draw_wrapped(layout.column(align=True),
                         f"{cls.label} does not take {' or '.join(ignored)}, so "
                         f"{'it is' if len(ignored) == 1 else 'they are'} not sent.",
                         icon="INFO")
        layout.operator("recon3d.submit", icon="MESH_MONKEY")
        reason = checks.submit_blocker(context)
        if reason:
            draw_wrapped(layout.column(align=True), reason, icon="INFO")


def draw_photo(layout, form) -> None:
    """The photo as any Blender image (with Open), else a file; its thumbnail and picks."""
    layout.template_ID(form, "image", open="image.open")
    image = form.image
    if image is None:
        layout.prop(form, "image_path")
        return
    row = layout.row()
    row.template_icon(icon_value=layout.icon(image), scale=5.0)
    col = row.column(align=True)
    width, height = image.size
    col.label(text=f"{width}×{height} px" if width and height else
              "The last render, as it is on Generate" if image.type in {"RENDER_RESULT", "COMPOSITING"} else
              "No pixels yet")
    points, boxes = _picks(form)
    col.label(text=f"{len(points)} point{'s' if len(points) != 1 else ''}, "
                   f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}")
    for index, (x, y) in enumerate(points, 1):
        col.label(text=f"{index}. point ({x:g}, {y:g})")
    for index, box in enumerate(boxes, 1):
        col.label(text=f"{index}. box ({', '.join(f'{v:g}' for v in box)})")


def _picks(form):
    try:
        return form.parsed_points(), form.parsed_boxes()
    except api.Recon3DError:
        return [], []


def draw_model(layout, form) -> None:
    """The model, where its key comes from, and what it takes."""
    layout.prop(form, "provider")
    col = layout.column(align=True)
    sources = checks.key_sources(form.provider)
    for key, source in sources:
        words, icon = KEY_SOURCE_WORDS[source]
        col.label(text=f"{key.label}: {words}", icon=icon)
    if any(source == "missing" for _, source in sources):
        col.operator("preferences.addon_show", text="Add the Key in Preferences",
                     icon="PREFERENCES").module = EXTENSION_PACKAGE
    col.label(text=f"Takes: {checks.takes(form.provider)}")


_UNASKED = object()


def cost_hint(provider_id: str) -> str:
    """The last cost seen for this model, else nothing."""
    eng = runtime.running_engine()
    for job in reversed(eng.jobs() if eng else []):
        if job.provider == provider_id and job.cost is not None:
            return f"Last job with this model cost {job.cost}"
    return ""


class RECON3D_PT_advanced(_Sidebar, bpy.types.Panel):
    bl_idname = "RECON3D_PT_advanced"
    bl_label = "Advanced"
    bl_parent_id = "RECON3D_PT_generate"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        form = context.scene.recon3d
        cls = form.provider_class()
        col = layout.column()
        for spec in cls.options:
            col.prop(form.options, option_attr(cls.id, spec.name))
        if not cls.options:
            col.label(text=f"{cls.label} has no further options.")
        layout.label(text="More parameters, by name:")
        for index, extra in enumerate(form.extra_options):
            row = layout.row(align=True)
            row.prop(extra, "name", text="")
            row.prop(extra, "kind", text="")
            row.prop(extra, extra.value_attr, text="")
            row.operator("recon3d.extra_option_remove", text="", icon="X").index = index
        layout.operator("recon3d.extra_option_add", icon="ADD")


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
    end = job.finished_at if job.state in FINISHED and job.finished_at else now()
    seconds = max(0, int(end - job.created_at))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


class RECON3D_PT_jobs(_Sidebar, bpy.types.Panel):
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


def register():
    preferences.draw_preferences = draw_preferences


def draw_preferences(prefs, layout, context) -> None:
    """Per service (as the providers declare them): its keys and where each comes from, its
    endpoint, Test Connection and its result; then the shared settings and the data folder."""
    for service, cls in preferences.services().items():
        box = layout.box()
        box.label(text=service, icon="URL")
        for key, source in checks.key_sources(cls.id):
            row = box.row()
            row.prop(prefs, key.pref)
            words, icon = KEY_SOURCE_WORDS[source]
            row.label(text=words if source != "environment" else f"from {key.env}", icon=icon)
        box.prop(prefs, cls.url_pref())
        row = box.row()
        row.operator("recon3d.test_connection", icon="PLUGIN").service = service
        outcome = connection.result(service)
        if outcome is not None:
            state, message = outcome
            draw_wrapped(box.column(align=True), message, width=70,
                         icon={"ok": "CHECKMARK", "bad": "ERROR"}.get(state, "SORTTIME"))
    layout.prop(prefs, "max_in_flight")
    folder = runtime.data_dir()
    row = layout.row()
    row.label(text=f"Results: {folder} ({_folder_size(folder)})", icon="FILE_FOLDER")
    if not checks.online_access():
        layout.label(text="Online access is off: Recon3D can only reach services on this "
                          "machine. Turn it on in System › Network.", icon="ERROR")


_sizes: dict[str, tuple[float, str]] = {}


def _folder_size(folder: str) -> str:
    """The data folder's size, measured at most every 10 s (draw runs often)."""
    seen = _sizes.get(folder)
    if seen is not None and now() - seen[0] < 10:
        return seen[1]
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    text = f"{total / 1e6:.1f} MB"
    _sizes[folder] = (now(), text)
    return text


def unregister():
    global _previews
    preferences.draw_preferences = None
    if _previews is not None:
        import bpy.utils.previews
        bpy.utils.previews.remove(_previews)
        _previews = None


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


def draw_wrapped(layout, text: str, width: int = 44, icon: str = "NONE") -> None:
    for index, line in enumerate(_wrap(text, width)):
        layout.label(text=line, icon=icon if index == 0 else "BLANK1")


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


classes = (RECON3D_PT_generate, RECON3D_PT_advanced, RECON3D_PT_jobs, RECON3D_UL_jobs,
           RECON3D_PT_image_editor)
