# SPDX-License-Identifier: GPL-3.0-or-later
"""A Gaussian splat (3DGS .ply) as a point cloud Blender can show and render (bpy, numpy).

Blender cannot render Gaussian splats. What it has natively: a mesh of loose vertices with a
colour attribute (shown in the viewport's point display, kept by every exporter), and
Geometry Nodes' "Mesh to Points", which turns it into real points that Cycles and EEVEE
render as small spheres. The object made here is both: the mesh keeps one vertex per
Gaussian with its colour (`Col`, RGBA: colour from the SH DC term, 0.5 + C0 · f_dc, alpha
the Gaussian's opacity) and a Geometry Nodes modifier makes points of a radius taken from the
Gaussians' own sizes, with a material that reads `Col`.

Frame: the splat is read in the same axes as the job's GLB before Blender's glTF importer
converts it (Y up): (x, y, z) → Blender (x, −z, y), then placed with the job's objects.
That SAM 3D's scene splat and scene GLB share that frame is inferred, not confirmed.
"""
from __future__ import annotations

import os

import bpy
import numpy as np

from ...errors import ResultError

SH_C0 = 0.28209479177387814
#: custom property marking a point cloud made here (left out of the job's bounds)
TAG = "recon3d_splat"
COLOUR = "Col"
_PLY_TYPES = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
              "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1", "ushort": "<u2",
              "uint16": "<u2", "short": "<i2", "int16": "<i2", "uint": "<u4",
              "uint32": "<u4", "int": "<i4", "int32": "<i4"}


def read_splat(path: str) -> dict[str, np.ndarray]:
    """The vertex properties of a binary little-endian PLY, by name."""
    name = os.path.basename(path)
    with open(path, "rb") as fh:
        if fh.readline().strip() != b"ply":
            raise ResultError(f"The splat '{name}' is not a PLY file.")
        fields, count, element, fmt = [], None, None, None
        while True:
            line = fh.readline()
            if not line:
                raise ResultError(f"The splat '{name}' is damaged (no end of header).")
            words = line.decode("ascii", "replace").split()
            if not words:
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                element = words[1]
                if element == "vertex":
                    count = int(words[2])
            elif words[0] == "property" and element == "vertex":
                if words[1] == "list" or words[1] not in _PLY_TYPES:
                    raise ResultError(f"The splat '{name}' has a vertex property Recon3D "
                                      f"cannot read ({' '.join(words[1:])}).")
                fields.append((words[2], _PLY_TYPES[words[1]]))
            elif words[0] == "end_header":
                break
        if fmt != "binary_little_endian" or count is None:
            raise ResultError(f"The splat '{name}' is not a binary little-endian PLY with "
                              f"vertices; Recon3D cannot read it.")
        dtype = np.dtype(fields)
        data = np.frombuffer(fh.read(dtype.itemsize * count), dtype=dtype)
    if len(data) != count:
        raise ResultError(f"The splat '{name}' is cut off ({len(data)} of {count} points).")
    names = set(dtype.names or ())
    if not {"x", "y", "z"} <= names:
        raise ResultError(f"The splat '{name}' has no point positions.")
    return {key: data[key].astype(np.float64) for key in names}


def splat_colours(props: dict[str, np.ndarray]) -> np.ndarray:
    """RGBA per Gaussian: colour from the SH DC term, alpha from the opacity logit."""
    count = len(props["x"])
    if {"f_dc_0", "f_dc_1", "f_dc_2"} <= set(props):
        rgb = np.stack([0.5 + SH_C0 * props[f"f_dc_{i}"] for i in range(3)], axis=1)
    elif {"red", "green", "blue"} <= set(props):
        rgb = np.stack([props[c] / 255.0 for c in ("red", "green", "blue")], axis=1)
    else:
        rgb = np.full((count, 3), 0.8)
    alpha = 1.0 / (1.0 + np.exp(-props["opacity"])) if "opacity" in props else np.ones(count)
    return np.clip(np.column_stack([rgb, alpha]), 0.0, 1.0)


def _radius(props: dict[str, np.ndarray]) -> float:
    """A point radius from the Gaussians' own sizes (log scales), else 5 mm."""
    scales = [props[k] for k in ("scale_0", "scale_1", "scale_2") if k in props]
    if scales:
        size = float(np.median(np.exp(np.mean(scales, axis=0))))
        if np.isfinite(size) and size > 0:
            return min(max(size, 1e-4), 0.05)
    return 0.005


def import_splat(path: str, name: str) -> bpy.types.Object:
    """A point-cloud object for the splat at `path`, linked to the scene's collection."""
    props = read_splat(path)
    positions = np.column_stack([props["x"], -props["z"], props["y"]]).astype(np.float32)
    colours = splat_colours(props).astype(np.float32)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(positions))
    mesh.vertices.foreach_set("co", positions.ravel())
    attr = mesh.color_attributes.new(COLOUR, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", colours.ravel())
    mesh.color_attributes.active_color = attr
    mesh.update()
    material = _point_material(f"{name} Colour")
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    obj[TAG] = True
    bpy.context.scene.collection.objects.link(obj)
    modifier = obj.modifiers.new("Splat Points", "NODES")
    modifier.node_group = _points_nodes(f"{name} Points", _radius(props), material)
    return obj


def is_splat(obj) -> bool:
    return bool(obj.get(TAG))


def _point_material(name: str) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0):
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        links.new(bsdf.outputs[0], next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
                  .inputs[0])
    colour = nodes.new("ShaderNodeAttribute")
    colour.attribute_name = COLOUR
    colour.location = (bsdf.location.x - 300, bsdf.location.y)
    links.new(colour.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _points_nodes(name: str, radius: float, material) -> bpy.types.NodeTree:
    """Geometry Nodes: Mesh to Points (radius), Set Material — renderable points."""
    tree = bpy.data.node_groups.new(name, "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = tree.nodes, tree.links
    group_in = nodes.new("NodeGroupInput")
    group_out = nodes.new("NodeGroupOutput")
    to_points = nodes.new("GeometryNodeMeshToPoints")
    to_points.inputs["Radius"].default_value = radius
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = material
    group_in.location, to_points.location = (-400, 0), (-200, 0)
    set_material.location, group_out.location = (0, 0), (200, 0)
    links.new(group_in.outputs[0], to_points.inputs["Mesh"])
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], group_out.inputs[0])
    return tree
