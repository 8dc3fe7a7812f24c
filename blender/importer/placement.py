# SPDX-License-Identifier: GPL-3.0-or-later
"""The one matrix that places a whole job: bottom-centre on the cursor or origin, optional
fit to a size; and side-by-side offsets for variations (mathutils)."""
from __future__ import annotations

from mathutils import Matrix, Vector

from ...errors import InputError

PLACEMENTS = ("cursor", "origin", "original")
LAYOUTS = ("together", "side_by_side")
SIDE_BY_SIDE_GAP = 0.25     # of the widest variation

def placement_matrix(low: Vector, high: Vector, placement: str, target: Vector,
                     target_size: float | None) -> Matrix:
    """The one matrix applied to the whole job: scale about the bottom-centre of the combined
    box, then move that point onto the cursor (`target`), the world origin, or leave it where
    it is ("original")."""
    if placement not in PLACEMENTS:
        raise InputError(f"Unknown placement '{placement}'; use one of "
                         f"{', '.join(PLACEMENTS)}.")
    bottom = Vector(((low.x + high.x) / 2, (low.y + high.y) / 2, low.z))
    factor = 1.0
    if target_size:
        largest = max(high - low)
        if largest > 0:
            factor = float(target_size) / largest
    scale = Matrix.Diagonal(Vector((factor, factor, factor, 1.0)))
    about = Matrix.Translation(-bottom)
    goal = {"original": bottom, "origin": Vector(), "cursor": target}[placement]
    return Matrix.Translation(goal) @ scale @ about




def side_by_side(placed, target_size) -> list[Vector]:
    """X offsets that put variations next to each other, centred on the target."""
    widths = []
    for _members, low, high in placed:
        width = high.x - low.x
        if target_size:
            largest = max(high - low)
            width *= target_size / largest if largest > 0 else 1.0
        widths.append(width)
    gap = SIDE_BY_SIDE_GAP * max(widths)
    total = sum(widths) + gap * (len(widths) - 1)
    offsets, x = [], -total / 2
    for width in widths:
        offsets.append(Vector((x + width / 2, 0.0, 0.0)))
        x += width + gap
    return offsets
