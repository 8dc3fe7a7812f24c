# SPDX-License-Identifier: GPL-3.0-or-later
"""Vertex colours made visible: a material that reads the colour attribute (bpy)."""
from __future__ import annotations

import bpy

def _vertex_colour_material(name: str, attribute: str) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0):               # always on (and deprecated) from 5.0
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        output = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
        links.new(bsdf.outputs[0], output.inputs[0])
    colour = nodes.new("ShaderNodeVertexColor")
    colour.layer_name = attribute
    colour.location = (bsdf.location.x - 300, bsdf.location.y)
    links.new(colour.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def colour_meshes(objects, job_name: str) -> None:
    made: dict[str, bpy.types.Material] = {}
    for mesh in {o.data for o in objects if o.type == "MESH"}:
        if any(slot is not None for slot in mesh.materials):
            continue
        attrs = getattr(mesh, "color_attributes", None)
        if not attrs or len(attrs) == 0:
            continue
        attr = attrs.active_color or attrs[0]
        mat = made.get(attr.name)
        if mat is None:
            mat = made[attr.name] = _vertex_colour_material(f"{job_name} Vertex Colour",
                                                            attr.name)
        mesh.materials.clear()
        mesh.materials.append(mat)
