# SPDX-License-Identifier: GPL-3.0-or-later
"""Click points and drag boxes on the photo in the Image Editor (modal operator).

Coordinates are written to the form in pixels of the original photo, top-left origin (the
convention of every service), whatever the editor's zoom and pan.
"""
from __future__ import annotations

import bpy
import gpu
from gpu_extras.batch import batch_for_shader

DRAG_PIXELS = 6          # a press and release closer than this is a click (a point)


def view_to_pixels(u: float, v: float, width: int, height: int) -> tuple[float, float]:
    """Image Editor view coordinates (0..1, origin bottom-left) → photo pixels (top-left)."""
    x = min(max(u, 0.0), 1.0) * width
    y = (1.0 - min(max(v, 0.0), 1.0)) * height
    return min(x, width - 1.0), min(y, height - 1.0)


def pixels_to_view(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    return x / width, 1.0 - y / height


def format_points(points) -> str:
    return "; ".join(f"{round(x)},{round(y)}" for x, y in points)


def format_boxes(boxes) -> str:
    return "; ".join(",".join(str(round(v)) for v in box) for box in boxes)


def _shader():
    name = "UNIFORM_COLOR" if bpy.app.version >= (4, 0) else "2D_UNIFORM_COLOR"
    return gpu.shader.from_builtin(name)


class RECON3D_OT_pick_prompts(bpy.types.Operator):
    """Click on the object to add points, drag to add boxes; Enter keeps them, Esc cancels,
    Backspace removes the last one"""
    bl_idname = "recon3d.pick_prompts"
    bl_label = "Pick Points and Boxes"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        space = context.space_data
        return (context.area is not None and context.area.type == "IMAGE_EDITOR"
                and space.image is not None and space.image.size[0] > 0)

    def invoke(self, context, event):
        form = context.scene.recon3d
        image = context.space_data.image
        self.size = (int(image.size[0]), int(image.size[1]))
        self.points = [tuple(p) for p in form.parsed_points()] if form.points else []
        self.boxes = [tuple(b) for b in form.parsed_boxes()] if form.boxes else []
        self.press = None
        self.current = None
        self.handle = bpy.types.SpaceImageEditor.draw_handler_add(
            self.draw, (context,), "WINDOW", "POST_PIXEL")
        self._header(context)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _header(self, context):
        context.area.header_text_set(
            f"Recon3D: click = point, drag = box ({len(self.points)} points, "
            f"{len(self.boxes)} boxes) · Backspace: undo last · Enter: keep · Esc: cancel")

    def _to_pixels(self, context, event):
        u, v = context.region.view2d.region_to_view(event.mouse_region_x, event.mouse_region_y)
        return view_to_pixels(u, v, *self.size)

    def modal(self, context, event):
        context.area.tag_redraw()
        if event.type == "LEFTMOUSE" and event.value == "PRESS":
            self.press = (event.mouse_region_x, event.mouse_region_y, self._to_pixels(context, event))
            return {"RUNNING_MODAL"}
        if event.type == "MOUSEMOVE" and self.press:
            self.current = self._to_pixels(context, event)
            return {"RUNNING_MODAL"}
        if event.type == "LEFTMOUSE" and event.value == "RELEASE" and self.press:
            start_x, start_y, start = self.press
            moved = abs(event.mouse_region_x - start_x) + abs(event.mouse_region_y - start_y)
            end = self._to_pixels(context, event)
            if moved < DRAG_PIXELS:
                self.points.append(start)
            else:
                self.boxes.append((min(start[0], end[0]), min(start[1], end[1]),
                                   max(start[0], end[0]), max(start[1], end[1])))
            self.press = self.current = None
            self._header(context)
            return {"RUNNING_MODAL"}
        if event.type == "BACK_SPACE" and event.value == "PRESS":
            if self.boxes and (not self.points or len(self.boxes) >= len(self.points)):
                self.boxes.pop()
            elif self.points:
                self.points.pop()
            self._header(context)
            return {"RUNNING_MODAL"}
        if event.type in {"RET", "NUMPAD_ENTER"} and event.value == "PRESS":
            form = context.scene.recon3d
            form.points = format_points(self.points)
            form.boxes = format_boxes(self.boxes)
            if form.image is None:
                form.image = context.space_data.image
            self._finish(context)
            self.report({"INFO"}, f"Recon3D: {len(self.points)} points, {len(self.boxes)} "
                                  f"boxes kept")
            return {"FINISHED"}
        if event.type in {"ESC", "RIGHTMOUSE"} and event.value == "PRESS":
            self._finish(context)
            return {"CANCELLED"}
        return {"PASS_THROUGH"}       # zoom and pan keep working

    def _finish(self, context):
        bpy.types.SpaceImageEditor.draw_handler_remove(self.handle, "WINDOW")
        context.area.header_text_set(None)
        context.area.tag_redraw()

    def draw(self, context):
        view2d = context.region.view2d
        width, height = self.size

        def to_region(x, y):
            return view2d.view_to_region(*pixels_to_view(x, y, width, height), clip=False)

        lines = []
        for x, y in self.points:
            cx, cy = to_region(x, y)
            lines += [(cx - 6, cy), (cx + 6, cy), (cx, cy - 6), (cx, cy + 6)]
        boxes = list(self.boxes)
        if self.press and self.current:
            start = self.press[2]
            boxes.append((start[0], start[1], self.current[0], self.current[1]))
        for x1, y1, x2, y2 in boxes:
            a, b, c, d = to_region(x1, y1), to_region(x2, y1), to_region(x2, y2), to_region(x1, y2)
            lines += [a, b, b, c, c, d, d, a]
        if not lines:
            return
        shader = _shader()
        batch = batch_for_shader(shader, "LINES", {"pos": lines})
        gpu.state.line_width_set(2.0)
        shader.uniform_float("color", (1.0, 0.35, 0.1, 1.0))
        batch.draw(shader)
        gpu.state.line_width_set(1.0)


class RECON3D_OT_use_editor_image(bpy.types.Operator):
    """Use the image shown in this Image Editor as Recon3D's input photo"""
    bl_idname = "recon3d.use_editor_image"
    bl_label = "Use This Image"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "image", None) is not None

    def execute(self, context):
        context.scene.recon3d.image = context.space_data.image
        return {"FINISHED"}


classes = (RECON3D_OT_pick_prompts, RECON3D_OT_use_editor_image)
