# SPDX-License-Identifier: GPL-3.0-or-later
"""The sidebar form, `Scene.recon3d`. Holds what the artist asks for; never a key.

Provider options are not written out by hand: `RECON3D_Options` is generated from each
provider's declared option schema (name, type, default, range), so the panel, the API's checks
and the request all follow the same declaration.
"""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

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


EXTRA_KINDS = (("STRING", "Text", "The value is sent as text"),
               ("INT", "Whole Number", "The value is sent as a whole number"),
               ("FLOAT", "Number", "The value is sent as a number"),
               ("BOOL", "On/Off", "The value is sent as true or false"))


class RECON3D_ExtraOption(bpy.types.PropertyGroup):
    """A parameter the model's page documents that the panel does not list, by its name."""
    name: StringProperty(name="Name", description="The parameter's name, exactly as the "
                                                  "service's documentation writes it")
    kind: EnumProperty(name="Type", items=EXTRA_KINDS, default="STRING")
    text_value: StringProperty(name="Value")
    int_value: IntProperty(name="Value")
    float_value: FloatProperty(name="Value")
    bool_value: BoolProperty(name="Value")

    @property
    def value_attr(self) -> str:
        return {"STRING": "text_value", "INT": "int_value", "FLOAT": "float_value",
                "BOOL": "bool_value"}[self.kind]

    @property
    def value(self):
        return getattr(self, self.value_attr)


class RECON3D_JobItem(bpy.types.PropertyGroup):
    """One row of the Jobs list (the job itself lives in the engine; this names it)."""
    job_id: StringProperty()


JOB_FILTERS = (("ALL", "All", "Every job"),
               ("ACTIVE", "Active", "Jobs still queued, running or downloading"),
               ("FINISHED", "Finished", "Jobs that are ready, imported, failed or canceled"))


class RECON3D_JobList(bpy.types.PropertyGroup):
    """The Jobs panel's list, newest first, kept in step with the engine on the main thread
    (`sync_job_list`); a panel may not write properties while it draws."""
    items: CollectionProperty(type=RECON3D_JobItem)
    active: IntProperty(name="Selected Job", default=0)
    show: EnumProperty(name="Show", items=JOB_FILTERS, default="ALL")


def sync_job_list(window_manager, jobs) -> None:
    """Make the list name `jobs` newest first, keeping the selected job selected."""
    listing = getattr(window_manager, "recon3d_jobs", None)
    if listing is None:
        return
    wanted = [job.id for job in sorted(jobs, key=lambda j: j.created_at, reverse=True)]
    current = [item.job_id for item in listing.items]
    if current == wanted:
        return
    selected = current[listing.active] if 0 <= listing.active < len(current) else None
    listing.items.clear()
    for job_id in wanted:
        listing.items.add().job_id = job_id
    listing.active = wanted.index(selected) if selected in wanted else 0


PLACEMENTS = (("cursor", "3D Cursor", "Bottom-centre of the result on the 3D cursor"),
              ("origin", "World Origin", "Bottom-centre of the result on the world origin"),
              ("original", "As Returned", "Where the service put it (camera space of the "
                                          "photo)"))


# Where results land and how big: the form's fields and the preferences' defaults for them
# are made by these, so both offer the same choices and ranges.
def placement_property(**kw):
    return EnumProperty(name="Placement", default="cursor", items=PLACEMENTS, **kw)


def fit_size_property(**kw):
    return BoolProperty(name="Fit Size", default=False, **{
        "description": "Scale the result so its largest side has this length", **kw})


def size_property(**kw):
    return FloatProperty(name="Size", default=1.0, min=0.001, soft_max=100.0,
                         subtype="DISTANCE", unit="LENGTH", **kw)


class RECON3D_Form(bpy.types.PropertyGroup):
    image: PointerProperty(name="Photo", type=bpy.types.Image,
                           description="The photo to turn into a 3D model: any Blender image "
                                       "(a file, a packed or generated image, the Render "
                                       "Result or the Viewer Node)")
    image_path: StringProperty(name="Image File", subtype="FILE_PATH",
                               description="The photo to turn into a 3D model, as a file "
                                           "(used when no Blender image is chosen)")
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
    use_preference_defaults: BoolProperty(
        name="Use Preferences' Defaults", default=True,
        description="Place and size results as set in Preferences › Add-ons › Recon3D; turn "
                    "off to choose the placement and size for this scene")
    placement: placement_property()
    use_target_size: fit_size_property()
    target_size: size_property()
    match_camera: BoolProperty(name="Match Photo Camera", default=False,
                               description="Add a camera at the origin looking along +Y with "
                                           "the photo as its background (pairs with 'As "
                                           "Returned' placement)")
    options: PointerProperty(type=RECON3D_Options)
    extra_options: CollectionProperty(type=RECON3D_ExtraOption)

    def provider_class(self):
        return REGISTRY[self.provider]

    def photo(self):
        """The chosen photo: the Blender image if one is picked, else the file path, else
        None."""
        if self.image is not None:
            return self.image
        return self.image_path or None

    def extra_chosen(self) -> dict:
        """Extra parameters by name; unnamed rows are left out."""
        return {item.name.strip(): item.value for item in self.extra_options
                if item.name.strip()}

    def chosen_options(self) -> dict:
        """The provider's options the artist changed from their defaults."""
        out = {}
        for spec in self.provider_class().options:
            value = getattr(self.options, option_attr(self.provider, spec.name))
            if spec.kind is float:
                value = round(float(value), 6)
            if value != spec.default:
                out[spec.name] = value
        out.update(self.extra_chosen())
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


classes = (RECON3D_Options, RECON3D_ExtraOption, RECON3D_JobItem, RECON3D_JobList,
           RECON3D_Form)


#: the form's own placement and size (what "Use Preferences' Defaults" stands in for)
SCENE_PLACEMENT = ("placement", "use_target_size", "target_size")


@bpy.app.handlers.persistent
def keep_scene_placement(*_args) -> None:
    """A scene whose placement or size was chosen before the preferences had defaults keeps
    its choice: on load, its "Use Preferences' Defaults" is turned off (once: a scene where
    the switch was ever set is left as it is)."""
    for scene in bpy.data.scenes:
        form = getattr(scene, "recon3d", None)
        if form is None or form.is_property_set("use_preference_defaults"):
            continue
        if any(form.is_property_set(name) for name in SCENE_PLACEMENT):
            form.use_preference_defaults = False


def register():
    bpy.types.Scene.recon3d = PointerProperty(type=RECON3D_Form)
    bpy.types.WindowManager.recon3d_jobs = PointerProperty(type=RECON3D_JobList)
    bpy.app.handlers.load_post.append(keep_scene_placement)


def unregister():
    if keep_scene_placement in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(keep_scene_placement)
    del bpy.types.WindowManager.recon3d_jobs
    del bpy.types.Scene.recon3d
