# SPDX-License-Identifier: GPL-3.0-or-later
"""The sidebar form, `Scene.recon3d`. Holds what the artist asks for; never a key."""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from .providers import REGISTRY


def _provider_items(self, context):
    return [(cls.id, cls.label, f"{cls.model} on {cls.service}") for cls in REGISTRY.values()]


class RECON3D_Form(bpy.types.PropertyGroup):
    image_path: StringProperty(name="Image", subtype="FILE_PATH",
                               description="The photo to turn into a 3D model")
    provider: EnumProperty(name="Model", items=_provider_items,
                           description="Hosted model that makes the 3D object")
    prompt: StringProperty(name="Prompt", description="Which object of the photo to model, "
                                                      "e.g. 'chair' (optional)")
    use_seed: BoolProperty(name="Fixed Seed", default=False,
                           description="Use the same seed to get the same result again")
    seed: IntProperty(name="Seed", default=0, min=0)
    placement: EnumProperty(name="Placement", default="cursor", items=[
        ("cursor", "3D Cursor", "Bottom-centre of the result on the 3D cursor"),
        ("origin", "World Origin", "Bottom-centre of the result on the world origin"),
        ("original", "As Returned", "Where the service put it (camera space of the photo)"),
    ])
    use_target_size: BoolProperty(name="Fit Size", default=False,
                                  description="Scale the result so its largest side has this "
                                              "length")
    target_size: FloatProperty(name="Size", default=1.0, min=0.001, soft_max=100.0,
                               subtype="DISTANCE", unit="LENGTH")


classes = (RECON3D_Form,)


def register():
    bpy.types.Scene.recon3d = PointerProperty(type=RECON3D_Form)


def unregister():
    del bpy.types.Scene.recon3d
