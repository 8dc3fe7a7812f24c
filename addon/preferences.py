# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: API keys (PASSWORD fields, kept in userpref.blend, never in a scene),
endpoint overrides and the concurrency limit."""
from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from ..providers import REGISTRY
from . import EXTENSION_PACKAGE
from .form import fit_size_property, placement_property, size_property

#: called when a preference changes (the running engine re-reads its settings); set by
#: addon.runtime, which reads the preferences, so this module does not import it
on_change = None


def _changed(self, context):
    if on_change is not None:
        on_change()


class RECON3D_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = EXTENSION_PACKAGE

    max_in_flight: IntProperty(name="Jobs at Once per Service", default=4, min=1, max=32,
                               description="How many jobs run on one service at the same time; "
                                           "the rest wait in order", update=_changed)

    # -- Network (drawn in its own box; see providers/network.py) --------------------------
    https_proxy: StringProperty(
        name="HTTPS Proxy", subtype="PASSWORD", update=_changed,
        description="Your studio's proxy, e.g. http://proxy.studio:3128 (or "
                    "http://user:password@proxy.studio:3128). Empty: the HTTPS_PROXY / "
                    "HTTP_PROXY environment variables, if set. Hosts in NO_PROXY and this "
                    "computer are reached directly")
    ca_bundle: StringProperty(
        name="CA Bundle", subtype="FILE_PATH", update=_changed,
        description="A .pem file of the certificate authorities to trust, when your studio "
                    "inspects secure traffic with its own (else REQUESTS_CA_BUNDLE, else the "
                    "usual authorities)")

    # -- where results land by default (the sidebar's "Use Preferences' Defaults") --------------
    default_placement: placement_property(
        description="Where Generate and Import put results when the sidebar uses the "
                    "preferences' defaults")
    default_use_target_size: fit_size_property(
        description="Scale results so their largest side has the default size, when the "
                    "sidebar uses the preferences' defaults")
    default_target_size: size_property(description="The default length of a result's largest "
                                                   "side (with Fit Size)")

    requests_per_second: IntProperty(
        name="Requests per Second per Service", default=10, min=1, max=100, update=_changed,
        description="At most this many requests (submits, status checks, result fetches) go "
                    "to one service each second, however many jobs run; raise it only if "
                    "your plan with the service allows more")

    def draw(self, context):
        if draw_preferences is not None:
            draw_preferences(self, self.layout, context)


#: draws the preferences (keys and where they come from, connection tests, the data folder);
#: set by panels.register(), which reads the running engine, so this module stays free of it
draw_preferences = None


def services() -> dict:
    """One provider class per service (its keys and endpoint are the service's)."""
    found = {}
    for cls in REGISTRY.values():
        found.setdefault(cls.service, cls)
    return found


def _service_fields() -> dict:
    """A key field per declared key and an endpoint field per service, from the providers'
    declarations: a new service brings its preferences with it."""
    fields = {}
    for service, cls in services().items():
        for key in cls.keys:
            fields[key.pref] = StringProperty(
                name=key.label, subtype="PASSWORD", update=_changed,
                description=f"{key.where} (else the environment variable {key.env})".strip())
        fields[cls.url_pref()] = StringProperty(
            name=f"{service} URL", default="", update=_changed,
            description=f"Leave empty for {cls.default_url} ({cls.url_env} overrides)")
    return fields


RECON3D_AddonPreferences.__annotations__.update(_service_fields())


def get(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(EXTENSION_PACKAGE)
    return addon.preferences if addon else None


classes = (RECON3D_AddonPreferences,)
