# SPDX-License-Identifier: GPL-3.0-or-later
"""How long each model's jobs take, learned from the jobs themselves. bpy-free.

A finished job's true finish lies between its last "still running" poll and its "done" poll
(seconds since the service accepted it). Windows are kept per model: the provider id (fal
serves several models, each its own provider id) plus the options that change the work (a
textured result, more faces …: every declared number or switch sent to the service that
differs from its default; options the provider does not declare — sent as typed, perhaps a
token — never go into a key). At most MAX_KEYS models are kept, the least recently learned
dropped first. A model run with options not seen often enough is judged by all of its
provider's windows together.

From the latest windows (narrow ones — width ≤ 0.3 s or 10 % of the duration — when there are
enough; a wide one's midpoint says little) comes an `Expected`: the median midpoint, and the
spread around it where most jobs finish (when all narrow windows overlap, the jobs take one
steady time: the first moment by which each of them was done) (a robust spread: the median absolute deviation, which
a job once stuck in a queue does not blow up). The schedule (jobs/polling.py) polls sparsely
before the spread, densely through it. The windows are kept in `durations.json` in the data
folder, so a new Blender session starts with what the last one learned; files written when
the key was only the provider id read as that provider's jobs with default options.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import threading
from dataclasses import dataclass

from .journal import write_atomically

FILE = "durations.json"
KEEP = 50            # windows kept per model
MIN_SAMPLES = 3      # before this many, nothing is expected
NARROW = (0.3, 0.1)  # a window this wide (s, or share of its end) or less is narrow
SPREAD_Z = 2.0       # the spread reaches this many (robust) standard deviations each side...
MIN_SPREAD = 0.04    # ...and at least this share of the median, each side
MAX_KEYS = 200       # models kept; the least recently learned go first
KEY_KINDS = (bool, int, float)   # option kinds that go into a key


@dataclass(frozen=True)
class Expected:
    """When a job of this model should finish: `median`, and `early`..`late`, where nearly
    all of them do (seconds after the service accepted the job)."""
    median: float
    early: float
    late: float


def duration_key(provider_id: str, options: dict | None = None, specs=()) -> str:
    """The model a job runs: its provider id, plus its declared options (`specs`: the
    provider's OptionSpecs) of kind bool, int or float whose value differs from the default.
    Options marked `sent=False` are Recon3D's own and change nothing at the service; options
    the provider does not declare are the artist's own text, never kept."""
    declared = {spec.name: spec for spec in specs}
    changed = []
    for name, value in sorted((options or {}).items()):
        spec = declared.get(name)
        if (spec is None or spec.kind not in KEY_KINDS or not getattr(spec, "sent", True)
                or not isinstance(value, KEY_KINDS) or value == spec.default):
            continue
        changed.append(f"{name}={json.dumps(value)}")
    return provider_id + ("?" + "&".join(changed) if changed else "")


def valid_window(low, high) -> bool:
    """A window a job can have finished in: finite seconds, 0 <= low <= high."""
    return all(_finite(v) for v in (low, high)) and 0 <= low <= high


def _finite(value) -> bool:
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    except OverflowError:       # an integer too large for a float
        return False


def _read(path: str) -> dict[str, list[list[float]]]:
    """The windows kept in `path`; whatever in it is not a valid window is left out, and an
    unreadable file reads as nothing learned (only a hint: never worth failing over)."""
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    windows = {}
    for key, value in loaded.items():
        if not isinstance(value, list):
            continue
        kept = [[float(w[0]), float(w[1])] for w in value
                if isinstance(w, list) and len(w) == 2 and valid_window(*w)][-KEEP:]
        if kept:
            windows[str(key)] = kept
    return dict(list(windows.items())[-MAX_KEYS:])


class Durations:
    def __init__(self, data_dir: str | None = None):
        self.path = os.path.join(data_dir, FILE) if data_dir else None
        self._lock = threading.Lock()
        self._windows: dict[str, list[list[float]]] = {}
        if self.path:
            self._windows = _read(self.path)

    def learn(self, key: str, low: float, high: float) -> None:
        """A job of this model (`duration_key`) finished after more than `low` and at most
        `high` s."""
        if not valid_window(low, high):
            return
        with self._lock:
            windows = self._windows.pop(key, [])     # (re)inserted last: the latest learned
            self._windows[key] = windows
            windows.append([round(low, 3), round(high, 3)])
            del windows[:-KEEP]
            for stale in list(self._windows)[:-MAX_KEYS]:
                del self._windows[stale]
            snapshot = json.dumps(self._windows)
        self._save(snapshot)

    def expected(self, key: str) -> Expected | None:
        """What the windows of this model say; with too few, what all windows of its provider
        say; None while there is too little to go by."""
        provider_id = key.split("?", 1)[0]
        with self._lock:
            own = list(self._windows.get(key, ()))
            related = [w for k, ws in self._windows.items()
                       if k == provider_id or k.startswith(provider_id + "?") for w in ws]
        return _expected(own) or _expected(related)

    def _save(self, text: str) -> None:
        if not self.path:
            return
        try:
            write_atomically(self.path, text)
        except OSError:
            pass          # only a hint for the poll schedule: never worth failing a job


def _expected(windows: list[list[float]]) -> Expected | None:
    narrow = [w for w in windows if w[1] - w[0] <= max(NARROW[0], NARROW[1] * w[1])]
    chosen = narrow if len(narrow) >= MIN_SAMPLES else windows
    if len(chosen) < MIN_SAMPLES:
        return None
    if chosen is narrow:
        latest_low = max(low for low, _ in chosen)
        earliest_high = min(high for _, high in chosen)
        if latest_low <= earliest_high:
            # Every job so far finished at one and the same moment after it was sent (a
            # steady service): a poll at the first moment all of them were done finds it so.
            return Expected(earliest_high, earliest_high,
                            earliest_high * (1 + MIN_SPREAD))
    middles = [(low + high) / 2 for low, high in chosen]
    median = statistics.median(middles)
    deviation = 1.4826 * statistics.median(abs(m - median) for m in middles)
    # Where within its window a job finished is unknown: half the typical width widens it.
    unsure = statistics.median(high - low for low, high in chosen) / 2
    spread = max(SPREAD_Z * deviation, MIN_SPREAD * median) + unsure
    return Expected(median, max(0.0, median - spread), median + spread)
