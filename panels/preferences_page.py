# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's preferences as drawn (Preferences › Add-ons › Recon3D): per service its keys
and where each comes from, its endpoint and Test Connection; then the shared settings."""
from __future__ import annotations


from ..addon import preferences, runtime
from ..jobs.removal import folder_size, size_words
from ..operators import checks, connection
from ..providers.network import settings_problem
from . import common
from .common import KEY_SOURCE_WORDS, draw_wrapped, switched


def draw_preferences(prefs, layout, context) -> None:
    """Per service (as the providers declare them): its keys and where each comes from, its
    endpoint, Test Connection and its result; then the shared settings and the data folder."""
    for service, cls in preferences.services().items():
        box = layout.box()
        box.label(text=service, icon="URL")
        for key, source in checks.key_sources(cls.id):
            row = box.row()
            row.prop(prefs, key.pref)
            words, icon = KEY_SOURCE_WORDS[source]
            row.label(text=words if source != "environment" else f"from {key.env}", icon=icon)
        box.prop(prefs, cls.url_pref())
        row = box.row()
        row.operator("recon3d.test_connection", icon="PLUGIN").service = service
        outcome = connection.result(service)
        if outcome is not None:
            state, message = outcome
            draw_wrapped(box.column(align=True), message, width=70,
                         icon={"ok": "CHECKMARK", "bad": "ERROR"}.get(state, "SORTTIME"))
    layout.prop(prefs, "max_in_flight")
    layout.prop(prefs, "requests_per_second")
    _draw_network(prefs, layout.box(), context)
    # -- where results land by default; the data folder and clearing old results -------------
    box = layout.box()
    box.label(text="Placement and Size of Results (the Sidebar's Defaults)",
              icon="OBJECT_ORIGIN")
    box.prop(prefs, "default_placement")
    switched(box, prefs, "default_use_target_size", "default_target_size")
    folder = runtime.data_dir()
    row = layout.row()
    row.label(text=f"Results: {folder} ({_folder_size(folder)})", icon="FILE_FOLDER")
    row.operator("recon3d.clear_old_results", text="Clear Old Results…", icon="TRASH")
    if not runtime.online_access():
        layout.label(text="Online access is off: Recon3D can only reach services on this "
                          "machine. Turn it on in System › Network.", icon="ERROR")


def _draw_network(prefs, box, context) -> None:
    """Proxy, CA bundle and Blender's own network time-out (which Recon3D follows)."""
    box.label(text="Network", icon="WORLD")
    box.prop(prefs, "https_proxy")
    box.prop(prefs, "ca_bundle")
    box.prop(context.preferences.system, "network_timeout", text="Time-out (Blender's)")
    problem = settings_problem(runtime.network_settings())
    if problem:
        draw_wrapped(box.column(align=True), problem, width=70, icon="ERROR")


_sizes: dict[str, tuple[float, str]] = {}


def _folder_size(folder: str) -> str:
    """The data folder's size (links not followed: `jobs.removal.folder_size`), measured at
    most every 10 s (draw runs often)."""
    seen = _sizes.get(folder)
    if seen is not None and common.now() - seen[0] < 10:
        return seen[1]
    text = size_words(folder_size(folder))
    _sizes[folder] = (common.now(), text)
    return text
