# SPDX-License-Identifier: GPL-3.0-or-later
"""The sidebar form, `Scene.recon3d`. Holds what the artist asks for; never a key.

Provider options are not written out by hand: `RECON3D_Options` is generated from each
provider's declared option schema (name, type, default, range), so the panel, the API's checks
and the request all follow the same declaration.
"""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from ..errors import InputError
from ..providers import REGISTRY


#: built once: Blender keeps pointers to an items callback's strings, so the callback must
#: return the same (referenced) list every time, never fresh strings
_PROVIDER_ITEMS = [(cls.id, cls.label, f"{cls.model} on {cls.service}")
                   for cls in REGISTRY.values()]


def _provider_items(self, context):
    return _PROVIDER_ITEMS


def option_attr(provider_id: str, option_name: str) -> str:
    return f"{provider_id}__{option_name}"


def _option_property(spec):
    common = {"name": spec.label or spec.name, "description": spec.description,
              "default": spec.default}
    if spec.kind is bool:
        return BoolProperty(**common)
    if spec.kind is int:
        return IntProperty(min=int(spec.minimum), max=int(spec.maximum), **common)
    return FloatProperty(min=spec.minimum, max=spec.maximum, **common)


RECON3D_Options = type("RECON3D_Options", (bpy.types.PropertyGroup,), {
    "__annotations__": {option_attr(cls.id, spec.name): _option_property(spec)
                        for cls in REGISTRY.values() for spec in cls.options},
})


class RECON3D_Form(bpy.types.PropertyGroup):
    image_path: StringProperty(name="Image", subtype="FILE_PATH",
                               description="The photo to turn into a 3D model")
    provider: EnumProperty(name="Model", items=_provider_items,
                           description="Hosted model that makes the 3D object")
    prompt: StringProperty(name="Prompt", description="Which object of the photo to model, "
                                                      "e.g. 'chair' (optional)")
    mask_path: StringProperty(name="Mask", subtype="FILE_PATH",
                              description="Black-and-white image of the photo's size: white "
                                          "marks the object (optional)")
    points: StringProperty(name="Points", description="Pixels on the object, in the original "
                                                      "photo: 'x,y; x,y' (optional)")
    boxes: StringProperty(name="Boxes", description="Boxes around objects, in pixels of the "
                                                    "original photo: 'x1,y1,x2,y2; …' (optional)")
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
    match_camera: BoolProperty(name="Match Photo Camera", default=False,
                               description="Add a camera at the origin looking along +Y with "
                                           "the photo as its background (pairs with 'As "
                                           "Returned' placement)")
    options: PointerProperty(type=RECON3D_Options)

    def provider_class(self):
        return REGISTRY[self.provider]

    def chosen_options(self) -> dict:
        """The provider's options the artist changed from their defaults."""
        out = {}
        for spec in self.provider_class().options:
            value = getattr(self.options, option_attr(self.provider, spec.name))
            if spec.kind is float:
                value = round(float(value), 6)
            if value != spec.default:
                out[spec.name] = value
        return out

    def parsed_points(self) -> list[tuple[float, float]]:
        return [tuple(v) for v in _parse_groups(self.points, 2, "point", "x,y")]

    def parsed_boxes(self) -> list[tuple[float, float, float, float]]:
        return [tuple(v) for v in _parse_groups(self.boxes, 4, "box", "x1,y1,x2,y2")]


def _parse_groups(text: str, size: int, what: str, shape: str) -> list[list[float]]:
    groups = []
    for chunk in text.replace("\n", ";").split(";"):
        chunk = chunk.strip().strip("()[]")
        if not chunk:
            continue
        try:
            values = [float(v) for v in chunk.replace(" ", ",").split(",") if v]
        except ValueError:
            values = []
        if len(values) != size:
            raise InputError(f"Each {what} must be written '{shape}' (pixels), separated by "
                             f"';'; '{chunk}' is not.")
        groups.append(values)
    return groups


classes = (RECON3D_Options, RECON3D_Form)


def register():
    bpy.types.Scene.recon3d = PointerProperty(type=RECON3D_Form)


def unregister():
    del bpy.types.Scene.recon3d
