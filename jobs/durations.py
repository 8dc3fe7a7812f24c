# SPDX-License-Identifier: GPL-3.0-or-later
"""How long each provider's jobs take, learned from the jobs themselves. bpy-free.

A finished job's true finish lies between its last "still running" poll and its "done" poll
(seconds since the service accepted it). The median midpoint of the latest narrow windows
(width ≤ 0.3 s or 10 % of the duration), per provider, is the expected duration; wide windows
count only until there are enough narrow ones — a wide one's midpoint says little, and the
poll aimed at the expected finish makes wide windows whenever it is on time. The windows are kept in `durations.json` in the data
folder, so a new Blender session starts with what the last one learned.
"""
from __future__ import annotations

import json
import os
import statistics
import threading

from .journal import write_atomically

FILE = "durations.json"
KEEP = 50            # windows kept per provider
MIN_SAMPLES = 3      # before this many, nothing is expected
NARROW = (0.3, 0.1)  # a window this wide (s, or share of its end) or less is narrow


class Durations:
    def __init__(self, data_dir: str | None = None):
        self.path = os.path.join(data_dir, FILE) if data_dir else None
        self._lock = threading.Lock()
        self._windows: dict[str, list[list[float]]] = {}
        if self.path:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    loaded = json.load(fh)
                self._windows = {str(k): [[float(a), float(b)] for a, b in v][-KEEP:]
                                 for k, v in loaded.items()}
            except (OSError, ValueError, TypeError):
                self._windows = {}

    def learn(self, provider_id: str, low: float, high: float) -> None:
        """A job of this provider finished after more than `low` and at most `high` s."""
        if not 0 <= low <= high:
            return
        with self._lock:
            windows = self._windows.setdefault(provider_id, [])
            windows.append([round(low, 3), round(high, 3)])
            del windows[:-KEEP]
            snapshot = json.dumps(self._windows)
        self._save(snapshot)

    def expected(self, provider_id: str) -> float | None:
        with self._lock:
            windows = list(self._windows.get(provider_id, ()))
        narrow = [w for w in windows if w[1] - w[0] <= max(NARROW[0], NARROW[1] * w[1])]
        chosen = narrow if len(narrow) >= MIN_SAMPLES else windows
        if len(chosen) < MIN_SAMPLES:
            return None
        return statistics.median((low + high) / 2 for low, high in chosen)

    def _save(self, text: str) -> None:
        if not self.path:
            return
        try:
            write_atomically(self.path, text)
        except OSError:
            pass          # only a hint for the poll schedule: never worth failing a job
