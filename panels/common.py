# SPDX-License-Identifier: GPL-3.0-or-later
"""What the panels share: the sidebar's place, words and icons for job states, wrapped text."""
from __future__ import annotations

import time

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


class Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Recon3D"


class ImageEditorSide:
    bl_space_type = "IMAGE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Recon3D"


def switched(layout, data, switch: str, value: str) -> None:
    """A checkbox and the value it switches on, greyed out while off."""
    row = layout.row(align=True)
    row.prop(data, switch)
    sub = row.row(align=True)
    sub.active = getattr(data, switch)
    sub.prop(data, value, text="")


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
