# SPDX-License-Identifier: GPL-3.0-or-later
"""The fal.ai endpoints Recon3D offers: one declaration each, on the queue client of
providers/fal.py. Adding another fal endpoint is one more class here and its name in
`FAL_PROVIDERS`."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .declaration import Capabilities, JobInputs, OptionSpec
from .fal import FalProvider, result_url


@dataclass(frozen=True)
class FalOption(OptionSpec):
    """An option of a fal endpoint. `choices`: the only values fal accepts (shown as a number
    in the panel, sent as text when `as_text`); `sent=False`: a Recon3D option that is not
    part of fal's request (e.g. how the result is imported)."""
    choices: tuple = ()
    as_text: bool = False
    sent: bool = True


def _opt(name, kind, default, low=None, high=None, label="", description="", **kw):
    return FalOption(name, kind, default, low, high, label, description, **kw)


# TRELLIS-style sampler settings: TRELLIS.2 and Pixal3D on fal share them (fal's TRELLIS.2
# page gives the structure stage's defaults; the others follow the TRELLIS.2 release).
SAMPLERS = tuple(
    opt for stage, label, strength, rescale, steps, rescale_t in (
        ("ss", "Structure", 7.5, 0.7, 12, 5.0),
        ("shape_slat", "Shape", 7.5, 0.5, 12, 3.0),
        ("tex_slat", "Texture", 1.0, 0.0, 12, 3.0))
    for opt in (
        _opt(f"{stage}_guidance_strength", float, strength, 0.0, 10.0, f"{label} Guidance",
             f"How closely the {label.lower()} stage follows the image"),
        _opt(f"{stage}_guidance_rescale", float, rescale, 0.0, 1.0, f"{label} Rescale",
             f"Dampens artifacts from high guidance in the {label.lower()} stage"),
        _opt(f"{stage}_sampling_steps", int, steps, 1, 50, f"{label} Steps",
             f"Denoising steps of the {label.lower()} stage"),
        _opt(f"{stage}_rescale_t", float, rescale_t, 1.0, 6.0, f"{label} Noise Sharpness",
             f"Noise schedule sharpness of the {label.lower()} stage")))
MESH_OPTIONS = (
    _opt("resolution", int, 1024, 512, 1536, "Resolution",
         "Generation resolution: 512, 1024 or 1536", choices=(512, 1024, 1536), as_text=True),
    _opt("texture_size", int, 2048, 1024, 4096, "Texture Size",
         "Texture resolution: 1024, 2048 or 4096", choices=(1024, 2048, 4096), as_text=True),
    _opt("decimation_target", int, 500_000, 10_000, 2_000_000, "Target Faces",
         "Face count of the final mesh"),
    _opt("remesh", bool, True, label="Remesh", description="Rebuild the topology"),
)


# -- the endpoints ------------------------------------------------------------------------------
class FalSam3D(FalProvider):
    """Meta's SAM 3D Objects on fal ($0.02 a run).

    Several objects keep the photo's layout through the combined `model_glb`: it is the scene
    fal composed from every object's pose, so Recon3D needs neither the metadata's frame nor
    its quaternion order, both unconfirmed. (Upstream sam-3d-objects gives each object's pose
    as local → camera, in PyTorch3D camera space: +X left, +Y up, +Z forward, quaternion
    w,x,y,z; PROVIDERS.md reads fal's as x,y,z,w.) `individual_glbs`, the splats and the
    metadata are downloaded beside it and listed in `job.service_data["extra_files"]`; only
    the scene GLB is in `job.files` (imported). With `import_splat`, the scene's Gaussian splat
    is also imported as a coloured point cloud (blender/importer/splat.py)."""
    id = "fal_sam3d"
    label = "SAM 3D Objects (fal.ai)"
    model = "fal-ai/sam-3/3d-objects"
    endpoint = "fal-ai/sam-3/3d-objects"
    capabilities = Capabilities(prompt=True, mask=True, max_masks=16, points=True, boxes=True,
                                max_boxes=16, seed=True, seed_range=(0, 2**32 - 1),
                                multi_object=True)
    options = (
        _opt("detection_threshold", float, 0.5, 0.1, 1.0, "Detection Threshold",
             "How sure the detector must be that a region is the prompted object"),
        _opt("export_textured_glb", bool, False, label="Textured GLB",
             description="A baked texture instead of vertex colours"),
        _opt("background_points", int, 0, 0, 64, "Background Points",
             "How many of the LAST clicked points mark background (what is not the object) "
             "instead of the object", sent=False),
        _opt("import_splat", bool, False, label="Import Splat as Points",
             description="Also import the Gaussian splat as a point cloud coloured from it",
             sent=False),
    )

    @classmethod
    def reserved_params(cls):
        return {**super().reserved_params(), "prompt": "Prompt", "mask_urls": "Mask",
                "point_prompts": "Points", "box_prompts": "Boxes"}

    @classmethod
    def validate(cls, inputs: JobInputs) -> None:
        super().validate(inputs)
        background = int(inputs.options.get("background_points", 0))
        if background > len(inputs.points):
            raise InputError(f"{cls.label}: {background} background point(s) asked for, but "
                             f"only {len(inputs.points)} point(s) were clicked.")
        if background and background == len(inputs.points) and not (
                inputs.boxes or inputs.mask_paths or inputs.prompt):
            raise InputError(f"{cls.label} needs at least one point on the object, a box or a "
                             f"prompt besides background points.")
        # fal's default prompt is "car": without the artist's own prompt it would be used.
        if not inputs.prompt and not inputs.mask_paths:
            raise InputError(f"{cls.label} needs a prompt naming the object (e.g. 'chair'), "
                             f"or a mask: without one, fal.ai looks for its default 'car'. "
                             f"Points and boxes then pick which of them.")

    def build_payload(self, inputs, image_url, mask_urls) -> dict:
        payload = super().build_payload(inputs, image_url, mask_urls)
        if inputs.prompt:
            payload["prompt"] = inputs.prompt
        if mask_urls:
            payload["mask_urls"] = mask_urls
        background = int(inputs.options.get("background_points", 0))
        split = len(inputs.points) - background
        if inputs.points:
            payload["point_prompts"] = [
                {"x": int(round(x)), "y": int(round(y)), "label": "1" if i < split else "0"}
                for i, (x, y) in enumerate(inputs.points)]
        if inputs.boxes:      # one object per box
            payload["box_prompts"] = [
                {"x_min": int(round(a)), "y_min": int(round(b)), "x_max": int(round(c)),
                 "y_max": int(round(d)), "object_id": i}
                for i, (a, b, c, d) in enumerate(inputs.boxes)]
        return payload

    def result_refs(self, output: dict) -> dict:
        refs = super().result_refs(output)
        def urls(key):
            return [u for u in map(result_url, output.get(key) or []) if u]

        extras = {"splat": result_url(output.get("gaussian_splat")),
                  "individual_glbs": urls("individual_glbs"),
                  "individual_splats": urls("individual_splats")}
        refs["extras"] = {k: v for k, v in extras.items() if v}
        if output.get("metadata") is not None:
            refs["metadata"] = output["metadata"]
        return refs


class FalPixal3D(FalProvider):
    id = "fal_pixal3d"
    label = "Pixal3D (fal.ai)"
    model = endpoint = "fal-ai/pixal3d"
    capabilities = Capabilities(seed=True, seed_range=(0, 2**32 - 1))
    options = SAMPLERS + MESH_OPTIONS


class FalTrellis2(FalPixal3D):
    """Microsoft's TRELLIS.2: the same inputs and options as Pixal3D on fal."""
    id = "fal_trellis2"
    label = "TRELLIS.2 (fal.ai)"
    model = endpoint = "fal-ai/trellis-2"


class FalHunyuan3D(FalProvider):
    id = "fal_hunyuan3d"
    label = "Hunyuan 3D 3.1 Pro (fal.ai)"
    model = "fal-ai/hunyuan-3d/v3.1/pro/image-to-3d"
    endpoint = "fal-ai/hunyuan-3d/v3.1/pro/image-to-3d"
    image_field = "input_image_url"
    capabilities = Capabilities(seed=False)
    # fal's page: 128–5000 px, at most 8 MB
    max_upload_side = 5000
    max_upload_bytes = 8_000_000
    options = (
        _opt("enable_pbr", bool, False, label="PBR Materials",
             description="Metallic, roughness and normal textures (costs more on fal.ai)"),
        _opt("face_count", int, 500_000, 40_000, 1_500_000, "Faces",
             "Face count of the generated model"),
    )


FAL_PROVIDERS = (FalSam3D, FalPixal3D, FalTrellis2, FalHunyuan3D)
