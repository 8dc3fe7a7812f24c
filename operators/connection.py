# SPDX-License-Identifier: GPL-3.0-or-later
"""Preferences › Recon3D › Test Connection: one cheap, authenticated request per service.

The request asks the service about a job that does not exist, through the provider's own
status call (so it uses the same URL, key and HTTP rules as a real job, costs nothing and
creates nothing): a service that answers "no such job" accepted the key; one that answers
"key refused" did not; one that cannot be reached says so. It runs on a thread; the result is
kept here for the preferences to show inline, and a timer on the main thread redraws them.
"""
from __future__ import annotations

import threading

import bpy
from bpy.props import StringProperty

from ..addon import preferences, runtime
from ..errors import Recon3DError, code_info
from ..providers import make_provider

#: a well-formed id no service has (some services check the id's shape before the key)
PROBE_JOB_ID = "00000000-0000-4000-8000-000000000000"
REFUSED = {"auth", "forbidden"}

_results: dict[str, tuple[str, str]] = {}      # service → (state, message); state: testing/ok/bad
_threads: dict[str, threading.Thread] = {}
_lock = threading.Lock()


def result(service: str) -> tuple[str, str] | None:
    with _lock:
        return _results.get(service)


def _set(service: str, state: str, message: str) -> None:
    with _lock:
        _results[service] = (state, message)


def provider_for(service: str):
    """The first model of the service (any of them reaches the same account)."""
    return preferences.services().get(service)


def verdict(service: str, error: Exception | None) -> tuple[str, str]:
    """What the probe's outcome means for the artist."""
    if error is None or not isinstance(error, Recon3DError):
        if error is not None:
            return "bad", f"Recon3D could not test {service} ({type(error).__name__})."
        return "ok", f"Connected: {service} accepted the key."
    if error.code in REFUSED:
        return "bad", str(error)
    if error.code == "credits":
        return "ok", f"Connected, but: {error}"
    if error.code == "offline" or code_info(error.code).transient:
        return "bad", str(error)
    return "ok", f"Connected: {service} accepted the key."


def _probe(service: str, provider_id: str, settings) -> None:
    try:
        provider = make_provider(provider_id, settings, sleep=lambda seconds: None)
        provider.poll(PROBE_JOB_ID, {})
        outcome = verdict(service, None)
    except Exception as exc:     # every outcome is shown to the artist, none raised
        outcome = verdict(service, exc)
    _set(service, *outcome)


def start(service: str) -> threading.Thread | None:
    """Main thread: check what can be checked here, then probe on a thread."""
    cls = provider_for(service)
    if cls is None:
        _set(service, "bad", f"Recon3D has no model on {service}.")
        return None
    settings, blocker = runtime.send_blocker(cls.id)
    if blocker is not None:
        _set(service, "bad", str(blocker))
        return None
    _set(service, "testing", f"Asking {service}…")
    thread = threading.Thread(target=_probe, args=(service, cls.id, settings),
                              name=f"recon3d-test-{service}", daemon=True)
    with _lock:
        _threads[service] = thread
    thread.start()
    if not bpy.app.timers.is_registered(_redraw_when_done):
        bpy.app.timers.register(_redraw_when_done, first_interval=0.2)
    return thread


def _redraw_when_done():
    """Timer: redraw the preferences while a test runs, and once when it ends."""
    with _lock:
        busy = any(t.is_alive() for t in _threads.values())
    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm else []):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()
    return 0.2 if busy else None


class RECON3D_OT_test_connection(bpy.types.Operator):
    """Check that the service can be reached and accepts your key (free: nothing is
    generated)"""
    bl_idname = "recon3d.test_connection"
    bl_label = "Test Connection"
    bl_options = {"INTERNAL"}

    service: StringProperty()

    def execute(self, context):
        start(self.service)
        return {"FINISHED"}


classes = (RECON3D_OT_test_connection,)
