# SPDX-License-Identifier: GPL-3.0-or-later
"""Click points and drag boxes on the photo in the Image Editor (modal operator).

Coordinates are written to the form in pixels of the original photo, top-left origin (the
convention of every service), whatever the editor's zoom and pan.

The picking rules (`Picks`, `handle`) are plain Python, tested with synthetic events; the
operator only feeds them Blender's events and draws what they hold. Drawing uses the
POLYLINE_UNIFORM_COLOR shader (wide lines on Metal and Vulkan too, where `line_width_set`
does nothing), only in the editor the picking started in, and the draw handler is removed on
every way out (Enter, Esc, the editor closing, an error, the extension being disabled).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import bpy

DRAG_PIXELS = 6          # a press and release closer than this (in screen pixels) is a click
REMOVE_REACH = 30        # right-click removes the nearest pick within this many screen pixels
LINE_WIDTH = 2.0
MARK_SIZE = 6.0
COLOR = (1.0, 0.35, 0.1, 1.0)


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


def _box_distance(box, x: float, y: float) -> float:
    """Distance from (x, y) to the box's outline (0 on an edge)."""
    x1, y1, x2, y2 = box
    dx = max(x1 - x, 0.0, x - x2)
    dy = max(y1 - y, 0.0, y - y2)
    if dx or dy:
        return math.hypot(dx, dy)
    return min(x - x1, x2 - x, y - y1, y2 - y)       # inside: to the nearest edge


@dataclass
class Picks:
    """Points and boxes in photo pixels, and a press in progress. `order` remembers which
    kind was added when, so undo removes the last one whatever its kind."""
    points: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    order: list = field(default_factory=list)
    press: tuple | None = None          # (screen x, screen y, photo pixel)
    current: tuple | None = None        # photo pixel under the mouse while dragging

    def __post_init__(self):
        if not self.order:
            self.order = ["point"] * len(self.points) + ["box"] * len(self.boxes)

    def add_point(self, pixel) -> None:
        self.points.append(tuple(pixel))
        self.order.append("point")

    def add_box(self, a, b) -> None:
        self.boxes.append((min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])))
        self.order.append("box")

    def undo(self) -> None:
        if self.order:
            self._remove(self.order[-1], -1)

    def _remove(self, kind: str, index: int) -> None:
        items = self.points if kind == "point" else self.boxes
        items.pop(index)
        positions = [i for i, k in enumerate(self.order) if k == kind]
        self.order.pop(positions[index])

    def nearest(self, x: float, y: float, to_screen) -> tuple[str, int, float] | None:
        """The pick nearest to screen position (x, y): (kind, index, screen distance)."""
        best = None
        for index, point in enumerate(self.points):
            sx, sy = to_screen(*point)
            candidate = ("point", index, math.hypot(sx - x, sy - y))
            best = candidate if best is None or candidate[2] < best[2] else best
        for index, (x1, y1, x2, y2) in enumerate(self.boxes):
            ax, ay = to_screen(x1, y1)
            bx, by = to_screen(x2, y2)
            box = (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
            candidate = ("box", index, _box_distance(box, x, y))
            best = candidate if best is None or candidate[2] < best[2] else best
        return best

    def remove_nearest(self, x: float, y: float, to_screen) -> bool:
        found = self.nearest(x, y, to_screen)
        if found is None or found[2] > REMOVE_REACH:
            return False
        self._remove(found[0], found[1])
        return True


def handle(picks: Picks, kind: str, value: str, screen: tuple[float, float], to_pixels,
           to_screen) -> str:
    """One event → what the operator does next: "running", "keep", "cancel" or "pass"
    (zoom and pan keep working). `to_pixels` maps a screen position to photo pixels,
    `to_screen` photo pixels to a screen position."""
    x, y = screen
    if kind == "LEFTMOUSE" and value == "PRESS":
        picks.press = (x, y, to_pixels(x, y))
        return "running"
    if kind == "MOUSEMOVE":
        if picks.press is None:
            return "pass"
        picks.current = to_pixels(x, y)
        return "running"
    if kind == "LEFTMOUSE" and value == "RELEASE" and picks.press is not None:
        start_x, start_y, start = picks.press
        if abs(x - start_x) + abs(y - start_y) < DRAG_PIXELS:
            picks.add_point(start)
        else:
            picks.add_box(start, to_pixels(x, y))
        picks.press = picks.current = None
        return "running"
    if kind == "RIGHTMOUSE" and value == "PRESS":
        picks.remove_nearest(x, y, to_screen)
        return "running"
    if kind == "BACK_SPACE" and value == "PRESS":
        picks.undo()
        return "running"
    if kind in {"RET", "NUMPAD_ENTER"} and value == "PRESS":
        return "keep"
    if kind == "ESC" and value == "PRESS":
        return "cancel"
    return "pass"


def geometry(picks: Picks, to_screen) -> tuple[list, list]:
    """What to draw, in screen pixels: line segments (pairs of points) and numbered labels
    ((x, y), text). Points are crosses numbered 1, 2, …; boxes outlines numbered too; the
    box being dragged is drawn without a number."""
    lines, labels = [], []
    for number, (px, py) in enumerate(picks.points, 1):
        cx, cy = to_screen(px, py)
        lines += [(cx - MARK_SIZE, cy), (cx + MARK_SIZE, cy),
                  (cx, cy - MARK_SIZE), (cx, cy + MARK_SIZE)]
        labels.append(((cx + MARK_SIZE + 2, cy + 2), str(number)))
    boxes = [(box, str(number)) for number, box in enumerate(picks.boxes, 1)]
    if picks.press is not None and picks.current is not None:
        start = picks.press[2]
        boxes.append(((start[0], start[1], picks.current[0], picks.current[1]), ""))
    for (x1, y1, x2, y2), text in boxes:
        a, b, c, d = to_screen(x1, y1), to_screen(x2, y1), to_screen(x2, y2), to_screen(x1, y2)
        lines += [a, b, b, c, c, d, d, a]
        if text:
            labels.append(((min(a[0], c[0]) + 3, max(a[1], c[1]) - 14), f"box {text}"))
    return lines, labels


def draw_geometry(lines, labels, viewport: tuple[int, int]) -> None:
    """Draw with the GPU module (raises SystemError where drawing is unavailable, as in a
    background Blender)."""
    import blf
    import gpu
    from gpu_extras.batch import batch_for_shader

    if lines:
        shader = gpu.shader.from_builtin("POLYLINE_UNIFORM_COLOR")
        batch = batch_for_shader(shader, "LINES", {"pos": [(x, y, 0.0) for x, y in lines]})
        shader.bind()
        shader.uniform_float("viewportSize", viewport)
        shader.uniform_float("lineWidth", LINE_WIDTH)
        shader.uniform_float("color", COLOR)
        batch.draw(shader)
    font = 0
    blf.size(font, 14)
    blf.color(font, *COLOR)
    for (x, y), text in labels:
        blf.position(font, x, y, 0)
        blf.draw(font, text)


#: draw handlers of the pickers running now, so disabling the extension removes them too
_handles: set = set()


class RECON3D_OT_pick_prompts(bpy.types.Operator):
    """Click on the object to add points, drag to add boxes, right-click removes the nearest;
    Enter keeps them, Esc cancels, Backspace removes the last one"""
    bl_idname = "recon3d.pick_prompts"
    bl_label = "Pick Points and Boxes"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        space = context.space_data
        if context.area is None or context.area.type != "IMAGE_EDITOR" or \
                getattr(space, "image", None) is None:
            cls.poll_message_set("Show the photo in an Image Editor first.")
            return False
        if not space.image.size[0]:
            cls.poll_message_set("This image has no pixels to click on yet.")
            return False
        return True

    def invoke(self, context, event):
        form = context.scene.recon3d
        image = context.space_data.image
        self.size = (int(image.size[0]), int(image.size[1]))
        try:
            self.picks = Picks(points=form.parsed_points(), boxes=form.parsed_boxes())
        except Exception as exc:            # unreadable text in the form: say so, start over
            self.report({"WARNING"}, f"Recon3D: the points/boxes in the panel were not "
                                     f"readable ({exc}); starting with none.")
            self.picks = Picks()
        self.area = context.area
        self.handle = bpy.types.SpaceImageEditor.draw_handler_add(
            self.draw_picks, (), "WINDOW", "POST_PIXEL")
        _handles.add(self.handle)
        self._header()
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _header(self):
        self.area.header_text_set(
            f"Recon3D: click = point, drag = box, right-click = remove nearest "
            f"({len(self.picks.points)} points, {len(self.picks.boxes)} boxes) · "
            f"Backspace: undo · Enter: keep · Esc: cancel")

    def _converters(self, region):
        view2d = region.view2d
        width, height = self.size

        def to_pixels(x, y):
            return view_to_pixels(*view2d.region_to_view(x, y), width, height)

        def to_screen(x, y):
            return view2d.view_to_region(*pixels_to_view(x, y, width, height), clip=False)
        return to_pixels, to_screen

    def modal(self, context, event):
        if context.area is None or self.area.as_pointer() != context.area.as_pointer():
            if not self._area_alive(context):
                self._finish()
                return {"CANCELLED"}
            return {"PASS_THROUGH"}         # events in other editors are theirs
        try:
            to_pixels, to_screen = self._converters(context.region)
            action = handle(self.picks, event.type, event.value,
                            (event.mouse_region_x, event.mouse_region_y), to_pixels, to_screen)
        except Exception:
            self._finish()
            raise
        if action == "pass":
            return {"PASS_THROUGH"}
        if action == "running":
            self._header()
            self.area.tag_redraw()
            return {"RUNNING_MODAL"}
        if action == "keep":
            form = context.scene.recon3d
            form.points = format_points(self.picks.points)
            form.boxes = format_boxes(self.picks.boxes)
            if form.image is None:
                form.image = context.space_data.image
            self.report({"INFO"}, f"Recon3D: {len(self.picks.points)} points, "
                                  f"{len(self.picks.boxes)} boxes kept")
        self._finish()
        return {"FINISHED"} if action == "keep" else {"CANCELLED"}

    def _area_alive(self, context) -> bool:
        pointer = self.area.as_pointer()
        return any(area.as_pointer() == pointer for window in context.window_manager.windows
                   for area in window.screen.areas)

    def _finish(self):
        remove_handler(self.handle)
        try:
            self.area.header_text_set(None)
            self.area.tag_redraw()
        except ReferenceError:
            pass                            # the editor is gone

    def draw_picks(self):
        context = bpy.context
        if context.area is None or context.area.as_pointer() != self.area.as_pointer():
            return                          # another Image Editor: not ours to draw in
        _, to_screen = self._converters(context.region)
        lines, labels = geometry(self.picks, to_screen)
        draw_geometry(lines, labels, (context.region.width, context.region.height))


def remove_handler(handle) -> None:
    """Remove a picker's draw handler once (every exit path calls this)."""
    if handle in _handles:
        _handles.discard(handle)
        bpy.types.SpaceImageEditor.draw_handler_remove(handle, "WINDOW")


def unregister():
    for handle in list(_handles):
        remove_handler(handle)


class RECON3D_OT_use_editor_image(bpy.types.Operator):
    """Use the image shown in this Image Editor (a file, a packed or generated image, the
    Render Result or the Viewer Node) as Recon3D's photo"""
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
