# SPDX-License-Identifier: GPL-3.0-or-later
"""The main-thread bridge: worker threads never touch bpy; they post job ids to the engine's
event queue, and `drain()` (main thread) turns them into UI updates and auto-imports.

`drain()` is an ordinary function: a persistent `bpy.app.timers` callback calls it in the UI,
and headless code (tests, `blender -b`, the bpy module, where timers never fire) calls it
directly. The timer runs only while jobs are active and is removed on disable.
"""
from __future__ import annotations

import contextlib
import queue
import time
import traceback

import bpy

from ..addon import form, runtime
from ..errors import Recon3DError
from . import importer

TICK_SECONDS = 0.25
#: the sidebar redraws at most this often, however fast progress changes
REDRAW_SECONDS = 0.25
#: what the artist hears when a job ends, even with the sidebar closed
ANNOUNCE = {"ready": ("INFO", "Recon3D: “{label}” is ready to import."),
            "imported": ("INFO", "Recon3D: “{label}” was imported."),
            "failed": ("ERROR", "Recon3D: “{label}” failed: {error}")}
_announced: set[tuple[str, str]] = set()
_last_redraw = [0.0, False]        # time of the last redraw, a redraw is owed


def drain(max_seconds: float = 0.01, *, undo_steps: bool = True) -> int:
    """Handle queued job events for at most `max_seconds` (imports excepted); return how many.
    undo_steps=False: auto-imports push no undo step (a batch's wait loop: its own imports
    push none either)."""
    eng = runtime.running_engine()
    if eng is None:
        return 0
    deadline = time.perf_counter() + max_seconds
    handled = 0
    changed: dict[str, object] = {}
    while time.perf_counter() < deadline:
        try:
            job_id = eng.events.get_nowait()
        except queue.Empty:
            break
        handled += 1
        job = eng.get(job_id)
        if job is not None:
            changed[job_id] = job
    for job in changed.values():
        # Only jobs this Blender ran (another one imports its own). A failed import is tried
        # once: the job keeps saying why until the artist imports it by hand (or a retry makes
        # it ready afresh, which clears the error).
        if job.state == "ready" and job.auto_import and eng.ran_here(job) and \
                job.error_code != "import":
            _auto_import(job, undo_step=undo_steps)
        _announce(job)
    wm = getattr(bpy.context, "window_manager", None)
    listing = getattr(wm, "recon3d_jobs", None)
    if handled or (listing is not None and len(listing.items) != len(eng.jobs())):
        # (also the first time: jobs resumed from the journal are listed without an event)
        form.sync_job_list(wm, eng.jobs())
        _last_redraw[1] = True
    if _last_redraw[1] and time.monotonic() - _last_redraw[0] >= REDRAW_SECONDS:
        _flush_redraw()
    return handled


def _flush_redraw() -> None:
    _last_redraw[:] = [time.monotonic(), False]
    _redraw()


def _announce(job) -> None:
    """One status-bar / Info report per job that finished or failed."""
    if job.state not in ANNOUNCE or (job.id, job.state) in _announced:
        return
    _announced.add((job.id, job.state))
    level, text = ANNOUNCE[job.state]
    message = text.format(label=job.label or job.id, error=job.error or "no reason given")
    if bpy.app.background:
        # No status bar: the console gets it, in the words of an operator's report (calling
        # the operator from a batch's wait loop crashed headless Blender 4.5).
        print(f"{level.capitalize()}: {message}", flush=True)
        return
    with _ui_context():
        try:
            bpy.ops.recon3d.notify(message=message, level=level)
        except (RuntimeError, AttributeError):
            pass      # the operators are gone (extension being disabled)


def _auto_import(job, undo_step: bool = True) -> None:
    """Import into the file and scene the job came from; otherwise leave it 'ready'. A failed
    import leaves it 'ready' saying why (drain does not try it again)."""
    settings = job.auto_import
    if settings.get("blend", "") != bpy.data.filepath:
        return
    scene = bpy.data.scenes.get(settings.get("scene", ""))
    if scene is None or scene != bpy.context.scene:
        return
    # Timers run with a bare context; operators (the glTF importer, undo) want a window.
    with _ui_context():
        try:
            importer.import_job(job, placement=settings.get("placement", "cursor"),
                                target_size=settings.get("target_size"),
                                match_camera=bool(settings.get("match_camera")))
        except Recon3DError as exc:
            runtime.engine().note_import_error(job, str(exc))
            return
        except Exception as exc:   # noqa: BLE001 — an importer bug must not stop the timer
            traceback.print_exc()
            runtime.engine().note_import_error(
                job, f"Blender could not import the result ({type(exc).__name__}: {exc}). "
                     f"Its files are kept: import it again from the job list.")
            return
        if bpy.app.background or not undo_step:
            # Headless there is nobody to undo it. A crash dump of headless Blender 4.5 showed
            # the main thread inside this push, made from a batch's wait loop; none of 6
            # whole 4.5/5.0 test runs crashed once it was skipped.
            return
        try:
            bpy.ops.ed.undo_push(message="Recon3D Import")    # one undo step per import
        except RuntimeError:
            pass      # no undo stack


def _ui_context():
    """A context override with a window and a 3D View (when Blender has a UI). Headless
    Blender keeps its startup window unopened: no override there, as for a batch's imports."""
    if bpy.app.background:
        return contextlib.nullcontext()
    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm else []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                region = next((r for r in area.regions if r.type == "WINDOW"), None)
                return bpy.context.temp_override(window=window, area=area, region=region)
    return contextlib.nullcontext()


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def redraw_while(busy) -> None:
    """Redraw the sidebar a few times a second while `busy()` holds, and once after (for
    work a thread does on the artist's behalf, such as asking a price)."""
    def tick():
        _redraw()
        return REDRAW_SECONDS if busy() else None
    if not bpy.app.background:
        bpy.app.timers.register(tick, first_interval=REDRAW_SECONDS)


def _tick():
    drain()
    if _last_redraw[1]:
        _flush_redraw()         # the timer itself runs only a few times a second
    eng = runtime.running_engine()
    if eng is None:
        return None
    if eng.has_active_jobs() or not eng.events.empty():
        return TICK_SECONDS
    return None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TICK_SECONDS, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
