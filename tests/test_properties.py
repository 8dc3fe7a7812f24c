# SPDX-License-Identifier: GPL-3.0-or-later
"""Property tests (hypothesis) of the placement and polling maths, inside real Blender."""
from __future__ import annotations

import importlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from mathutils import Vector

from conftest import PKG

coords = st.floats(min_value=-50, max_value=50, allow_nan=False)
sizes = st.floats(min_value=1e-3, max_value=20, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(low=st.tuples(coords, coords, coords), extent=st.tuples(sizes, sizes, sizes),
       target=st.tuples(coords, coords, coords),
       size=st.one_of(st.none(), st.floats(min_value=0.01, max_value=10)),
       placement=st.sampled_from(["cursor", "origin", "original"]))
def test_placement_puts_the_bottom_centre_where_asked(recon3d, low, extent, target, size,
                                                     placement):
    importer = importlib.import_module(f"{PKG}.blender.importer")
    low = Vector(low)
    high = low + Vector(extent)
    place = importer.placement_matrix(low, high, placement, Vector(target), size)
    bottom = Vector(((low.x + high.x) / 2, (low.y + high.y) / 2, low.z))
    goal = {"cursor": Vector(target), "origin": Vector(), "original": bottom}[placement]
    # mathutils (like Blender's object matrices) is single precision: tolerances scale with
    # the magnitudes involved.
    factor = max(1.0, (size or max(extent)) / max(extent))       # fitting scales errors too
    magnitude = (1 + goal.length + bottom.length + high.length) * factor
    assert ((place @ bottom) - goal).length < 1e-6 * magnitude
    corners = [place @ Vector((x, y, z)) for x in (low.x, high.x) for y in (low.y, high.y)
               for z in (low.z, high.z)]
    span = max(max(c[i] for c in corners) - min(c[i] for c in corners) for i in range(3))
    expected = size if size else max(extent)
    assert abs(span - expected) <= 1e-6 * (magnitude + expected)


@settings(max_examples=300, deadline=None)
@given(age=st.floats(min_value=0, max_value=7200), seed=st.integers(0, 2**32 - 1),
       progress=st.one_of(st.none(), st.floats(min_value=0, max_value=1)))
def test_poll_interval_is_bounded_and_grows_with_age(recon3d, age, seed, progress):
    polling = importlib.import_module(f"{PKG}.jobs.polling")
    interval = polling.next_poll_interval(age, progress, rng=random.Random(seed))
    assert 0.9 * polling.FIRST_INTERVAL <= interval <= 1.1 * polling.ABSOLUTE_CAP
    later = polling.next_poll_interval(age + 10, None, rng=random.Random(seed))
    now = polling.next_poll_interval(age, None, rng=random.Random(seed))
    assert later >= now - 1e-9                                # same jitter: never shrinks


@settings(max_examples=3000, deadline=None)
@given(width=st.integers(1, 20000), height=st.integers(1, 20000),
       max_side=st.sampled_from([512, 1024, 1536, 2048, 4096]),
       inset=st.tuples(*[st.floats(0, 0.49) for _ in range(4)]))
def test_boxes_and_points_inside_the_photo_stay_inside_after_downscaling(
        recon3d, width, height, max_side, inset):
    """The one bounds rule holds before and after input preparation's rescaling: a box that
    reaches the photo's edges, and points on its last pixels, are never refused because
    rounding pushed them past the edge of the downscaled copy."""
    rules = importlib.import_module(f"{PKG}.providers.declaration")
    a, b, c, d = inset
    boxes = [(0.0, 0.0, float(width), float(height)),
             (a * width, b * height, width - c * width, height - d * height)]
    boxes = [box for box in boxes if box[0] < box[2] and box[1] < box[3]]
    points = [(0.0, 0.0), (width - 1.0, height - 1.0), (width - 1e-6, height - 1e-6)]
    rules.check_prompts_inside(points, boxes, (width, height))          # inside the original
    size = rules.fit_within(width, height, max_side)
    scaled_points, scaled_boxes = rules.scale_prompts(points, boxes, (width, height), size)
    rules.check_prompts_inside(scaled_points, scaled_boxes, size)       # and inside the copy
    assert scaled_boxes[0] == (0.0, 0.0, float(size[0]), float(size[1]))
