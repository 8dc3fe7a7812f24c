# SPDX-License-Identifier: GPL-3.0-or-later
"""The "Recon3D" tab of the 3D View sidebar: photo, model, Generate, Advanced options and the
job list; and the Image Editor panel for picking points and boxes."""
from __future__ import annotations

import bpy

from .. import api, operators
from ..addon import EXTENSION_PACKAGE, preferences, runtime
from ..addon.form import option_attr
from ..operators import checks
from .common import KEY_SOURCE_WORDS, ImageEditorSide, Sidebar, draw_wrapped, switched
from .jobs import RECON3D_PT_jobs, RECON3D_UL_jobs, release_previews
from .preferences_page import draw_preferences



class RECON3D_PT_generate(Sidebar, bpy.types.Panel):
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
        switched(layout, form, "use_seed", "seed")
        draw_placement(layout, form)
        layout.prop(form, "match_camera")
        if checks.can_price(cls.id):
            row = layout.row(align=True)
            price = operators.prices.get(operators.price_key(form), _UNASKED)
            row.label(text="Price not asked yet" if price is _UNASKED else
                      "No price given" if price is None else
                      f"Costs {price}" if isinstance(price, (int, float)) else str(price),
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


class RECON3D_PT_advanced(Sidebar, bpy.types.Panel):
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
        unchecked = cls.describe_unchecked(form.extra_chosen())
        if unchecked:      # names the model does not declare: a typo shows here
            draw_wrapped(layout.column(align=True), f"Sent to {cls.service} as typed, "
                         f"unchecked: {unchecked}", icon="INFO")
        layout.operator("recon3d.extra_option_add", icon="ADD")


def draw_placement(layout, form) -> None:
    """Placement and size: the preferences' defaults (greyed, as Generate and Import will use
    them) while the form uses them, else the scene's own choice."""
    layout.prop(form, "use_preference_defaults")
    data, placement, fit, size = checks.placement_fields(form)
    col = layout.column()
    col.enabled = data is form
    col.prop(data, placement)
    switched(col, data, fit, size)


def register():
    preferences.draw_preferences = draw_preferences


def unregister():
    preferences.draw_preferences = None
    release_previews()


class RECON3D_PT_image_editor(ImageEditorSide, bpy.types.Panel):
    bl_idname = "RECON3D_PT_image_editor"
    bl_label = "Recon3D"

    def draw(self, context):
        column = self.layout.column()
        column.operator("recon3d.use_editor_image", icon="IMAGE_DATA")
        column.operator("recon3d.pick_prompts", icon="RESTRICT_SELECT_OFF")
        for field in ("points", "boxes"):
            column.prop(context.scene.recon3d, field)


classes = (RECON3D_PT_generate, RECON3D_PT_advanced, RECON3D_PT_jobs, RECON3D_UL_jobs,
           RECON3D_PT_image_editor)
