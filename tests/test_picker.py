# SPDX-License-Identifier: GPL-3.0-or-later
"""The Image Editor operators in a real Image Editor: the bpy module has no window, but its
startup file's screens do hold Image Editor areas (the UV Editing workspace), with real
regions and View2D. Under `context.temp_override` the operators' poll and execute run through
bpy.ops there, and the picker's own coordinate conversion, event handling and draw callback run
against that region's View2D. (A modal operator cannot be *invoked* without a window:
Blender refuses the call, so invoke's event loop is fed by hand below.)"""
from __future__ import annotations

import importlib
from types import SimpleNamespace

import bpy
import pytest

from conftest import PKG

WIDTH, HEIGHT = 256, 128


@pytest.fixture
def editor(recon3d):
    """The UV Editing workspace's Image Editor showing a 256×128 photo."""
    screen, area = next((s, a) for s in bpy.data.screens for a in s.areas
                        if a.type == "IMAGE_EDITOR" and s.name == "UV Editing")
    space = area.spaces.active
    region = next(r for r in area.regions if r.type == "WINDOW")
    photo = bpy.data.images.new("picker-photo", WIDTH, HEIGHT)
    previous = space.image
    space.image = photo
    try:
        with bpy.context.temp_override(screen=screen, area=area, region=region,
                                       space_data=space):
            yield SimpleNamespace(area=area, region=region, space=space, photo=photo)
    finally:
        space.image = previous
        bpy.data.images.remove(photo)
        bpy.context.scene.recon3d.image = None


def test_image_editor_operators_run_through_bpy_ops(editor):
    form = bpy.context.scene.recon3d
    form.image = None
    assert bpy.ops.recon3d.pick_prompts.poll()
    assert bpy.ops.recon3d.use_editor_image() == {"FINISHED"}
    assert form.image == editor.photo
    # No photo shown in the editor: both are greyed out.
    editor.space.image = None
    assert not bpy.ops.recon3d.pick_prompts.poll()
    assert not bpy.ops.recon3d.use_editor_image.poll()


def test_picker_events_in_a_real_image_editor_view(editor):
    picker = importlib.import_module(f"{PKG}.operators.picker")
    operator = picker.RECON3D_OT_pick_prompts
    state = SimpleNamespace(size=(WIDTH, HEIGHT))
    to_pixels, to_screen = operator._converters(state, editor.region)
    # Photo pixels → the region's screen pixels → back, through Blender's own View2D.
    for pixel in [(0.0, 0.0), (50.0, 20.0), (200.0, 100.0)]:
        screen = to_screen(*pixel)
        assert 0 <= screen[0] < editor.region.width and 0 <= screen[1] < editor.region.height
        back = to_pixels(*screen)
        assert back == pytest.approx(pixel, abs=1.0), (pixel, screen, back)
    # Photo y grows downwards, screen y upwards.
    assert to_screen(50.0, 20.0)[1] > to_screen(50.0, 100.0)[1]
    # A click and a drag as the operator's modal() sees them.
    picks = picker.Picks()
    x, y = to_screen(50.0, 20.0)
    for kind, value, at in [("LEFTMOUSE", "PRESS", (x, y)), ("LEFTMOUSE", "RELEASE", (x, y))]:
        assert picker.handle(picks, kind, value, at, to_pixels, to_screen) == "running"
    assert picks.points and picks.points[0] == pytest.approx((50.0, 20.0), abs=1.0)
    a, b = to_screen(100.0, 30.0), to_screen(150.0, 80.0)
    picker.handle(picks, "LEFTMOUSE", "PRESS", a, to_pixels, to_screen)
    picker.handle(picks, "MOUSEMOVE", "NOTHING", b, to_pixels, to_screen)
    picker.handle(picks, "LEFTMOUSE", "RELEASE", b, to_pixels, to_screen)
    assert picks.boxes[0] == pytest.approx((100.0, 30.0, 150.0, 80.0), abs=1.0)
    # Right-click on the point removes it, not the box.
    picker.handle(picks, "RIGHTMOUSE", "PRESS", (x + 2, y - 2), to_pixels, to_screen)
    assert picks.points == [] and len(picks.boxes) == 1


def test_picker_draw_callback_in_its_own_editor_only(editor):
    """The draw handler's callback draws in the editor the picking started in (through the
    GPU module where this Blender can draw headless) and nothing in another editor."""
    picker = importlib.import_module(f"{PKG}.operators.picker")
    import gpu
    state = SimpleNamespace(size=(WIDTH, HEIGHT), area=editor.area,
                            picks=picker.Picks(points=[(10.0, 10.0)],
                                               boxes=[(1.0, 2.0, 30.0, 40.0)]))
    state._converters = lambda region: picker.RECON3D_OT_pick_prompts._converters(state,
                                                                                 region)
    drawn = []
    real_draw = picker.draw_geometry
    picker.draw_geometry = lambda lines, labels, size: drawn.append((lines, labels, size))
    try:
        picker.RECON3D_OT_pick_prompts.draw_picks(state)
        screen, other = next((s, a) for s in bpy.data.screens for a in s.areas
                             if a.type == "IMAGE_EDITOR" and a != editor.area)
        with bpy.context.temp_override(screen=screen, area=other,
                                       region=next(r for r in other.regions
                                                   if r.type == "WINDOW")):
            picker.RECON3D_OT_pick_prompts.draw_picks(state)
    finally:
        picker.draw_geometry = real_draw
    assert len(drawn) == 1                         # its own editor only
    lines, labels, size = drawn[0]
    assert size == (editor.region.width, editor.region.height)
    assert [text for _, text in labels] == ["1", "box 1"] and len(lines) == 4 + 8
    if hasattr(gpu, "init"):                       # 5.2: the real drawing, offscreen
        gpu.init()
        offscreen = gpu.types.GPUOffScreen(*size)
        try:
            with offscreen.bind():
                picker.RECON3D_OT_pick_prompts.draw_picks(state)
        finally:
            offscreen.free()
    else:
        with pytest.raises(SystemError, match="not available in background mode"):
            picker.RECON3D_OT_pick_prompts.draw_picks(state)
