# SPDX-License-Identifier: GPL-3.0-or-later
""""Match Photo Camera": a camera that sees the photo as the service did (bpy)."""
from __future__ import annotations

import math
import os

import bpy


def match_photo_camera(photo_path: str, name: str, collection, scene) -> bpy.types.Object:
    """A camera at the origin looking along +Y, the photo as its background and the scene's
    output shaped like the photo, so results placed 'original' line up with the photo. The
    photo is packed into the file (it is small): the job's folder it comes from may be
    removed later, and a file saved meanwhile must still show it."""
    image = bpy.data.images.load(photo_path, check_existing=True)
    if image.packed_file is None:
        image.pack()
    width, height = image.size
    data = bpy.data.cameras.new(f"{name} Camera")
    data.sensor_fit = "AUTO"
    data.show_background_images = True
    background = data.background_images.new()
    background.image = image
    background.alpha = 1.0
    camera = bpy.data.objects.new(f"{name} Camera", data)
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)     # Blender cameras look down local -Z
    collection.objects.link(camera)
    if width and height:
        render = scene.render
        render.resolution_y = max(1, round(render.resolution_x * height / width))
    if scene.camera is None:
        scene.camera = camera
    return camera


def pack_images_from(folder: str) -> list[str]:
    """Pack into the open file every image it shows from `folder` (a matched camera's photo),
    before that folder is deleted; returns their names."""
    root = os.path.normcase(os.path.realpath(folder)) + os.sep
    packed = []
    for image in bpy.data.images:
        if image.source != "FILE" or image.packed_file is not None or not image.filepath:
            continue
        path = os.path.normcase(os.path.realpath(bpy.path.abspath(image.filepath,
                                                                   library=image.library)))
        if path.startswith(root) and os.path.isfile(path):
            image.pack()
            packed.append(image.name)
    return packed
