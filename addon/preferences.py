# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: API keys (PASSWORD fields, kept in userpref.blend, never in a scene),
endpoint overrides and the concurrency limit."""
from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from ..providers import REGISTRY
from . import EXTENSION_PACKAGE

#: called when a preference changes (the running engine re-reads its settings); set by
#: addon.runtime, which reads the preferences, so this module does not import it
on_change = None


def _changed(self, context):
    if on_change is not None:
        on_change()


class RECON3D_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = EXTENSION_PACKAGE

    scenario_api_key: StringProperty(name="Scenario API Key", subtype="PASSWORD",
                                     description="From Scenario › Project Settings › API Keys "
                                                 "(else SCENARIO_SDK_API_KEY)", update=_changed)
    scenario_api_secret: StringProperty(name="Scenario API Secret", subtype="PASSWORD",
                                        description="Goes with the Scenario key (else "
                                                    "SCENARIO_SDK_API_SECRET)", update=_changed)
    scenario_url: StringProperty(name="Scenario URL", default="",
                                 description="Leave empty for https://api.cloud.scenario.com/v1 "
                                             "(RECON3D_SCENARIO_URL overrides)", update=_changed)
    runware_api_key: StringProperty(name="Runware API Key", subtype="PASSWORD",
                                    description="From runware.ai › API Keys (else "
                                                "RUNWARE_API_KEY)", update=_changed)
    runware_url: StringProperty(name="Runware URL", default="",
                                description="Leave empty for https://api.runware.ai/v1 "
                                            "(RECON3D_RUNWARE_URL overrides)", update=_changed)
    segmind_api_key: StringProperty(name="Segmind API Key", subtype="PASSWORD",
                                    description="Key from segmind.com › API Keys (else "
                                                "SEGMIND_API_KEY)", update=_changed)
    segmind_url: StringProperty(name="Segmind URL", default="",
                                description="Leave empty for https://api.segmind.com "
                                            "(RECON3D_SEGMIND_URL overrides)", update=_changed)
    max_in_flight: IntProperty(name="Jobs at Once per Service", default=4, min=1, max=32,
                               description="How many jobs run on one service at the same time; "
                                           "the rest wait in order", update=_changed)

    def draw(self, context):
        if draw_preferences is not None:
            draw_preferences(self, self.layout, context)


#: draws the preferences (keys and where they come from, connection tests, the data folder);
#: set by panels.register(), which reads the running engine, so this module stays free of it
draw_preferences = None


def url_attr(cls) -> str:
    """The preference holding a service's endpoint override (one per service)."""
    return f"{cls.service.lower()}_url"


def get(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(EXTENSION_PACKAGE)
    return addon.preferences if addon else None


classes = (RECON3D_AddonPreferences,)
