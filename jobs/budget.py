# SPDX-License-Identifier: GPL-3.0-or-later
"""The request budget of one service. bpy-free.

Every request Recon3D sends to a service's API (submit, upload, poll, result, cancel; a
download from the service's own host) takes a slot of that service's budget first: at most
`rate` requests in any `window` (10 in a second, with a small margin for the time a request
takes to arrive, so the service never counts more). Several provider ids can share one service
and one key (Scenario's two models, fal's endpoints): the budget is per service, not per
provider. Result files fetched from a CDN on another host are not counted: CDNs are made for
bulk transfers, and the services' rate limits are on their APIs.

When requests wait, the most urgent goes first: a poll of a job that is likely finished (past
its expected finish) before one that is early, before a new submit. A 429 pauses the whole
budget for as long as the service asked. A request waiting for a slot gives up at once when its
job is canceled or the engine stops.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque

from ..providers import REGISTRY

RATE = 10            # requests...
WINDOW = 1.05        # ...in any this many seconds
CHECK = 0.1          # how often a waiting request looks at its job's cancel


class Budget:
    def __init__(self, rate: int = RATE, window: float = WINDOW):
        self.rate = max(1, int(rate))
        self.window = window
        self.paused_until = 0.0
        self._cond = threading.Condition()
        self._sent: deque[float] = deque()
        self._waiting: list[tuple[float, int]] = []
        self._order = itertools.count()

    def set_rate(self, rate: int) -> None:
        with self._cond:
            self.rate = max(1, int(rate))
            self._cond.notify_all()      # waiters look again: a higher rate may free a slot

    def pause(self, seconds: float) -> None:
        """A 429: nothing is sent to the service for that long."""
        with self._cond:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)
            self._cond.notify_all()

    def take(self, stop=None, urgency: float = 0.0) -> None:
        """Wait for a slot (the most urgent waiting request first); `stop` (a StopSignal)
        interrupts the wait by raising Canceled or Stopped."""
        ticket = (-urgency, next(self._order))
        with self._cond:
            heapq.heappush(self._waiting, ticket)
            try:
                while True:
                    now = time.monotonic()
                    free_at = self._free_at(now)
                    if self._waiting[0] == ticket and free_at <= now:
                        heapq.heappop(self._waiting)
                        self._sent.append(now)
                        self._cond.notify_all()
                        return
                    if stop is not None and stop.wait(0):
                        stop.raise_if_stopped()
                    wait = free_at - now if self._waiting[0] == ticket else CHECK
                    self._cond.wait(min(CHECK, max(wait, 0.001)))
            except BaseException:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    heapq.heapify(self._waiting)
                    self._cond.notify_all()
                raise

    def _free_at(self, now: float) -> float:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        free = self._sent[0] + self.window if len(self._sent) >= self.rate else now
        return max(free, self.paused_until)


class Budgets:
    """One Budget per service, for the provider ids that use it."""

    def __init__(self, rate: int = RATE, window: float = WINDOW):
        self.rate = rate
        self.window = window
        self._lock = threading.Lock()
        self._by_service: dict[str, Budget] = {}

    def set_rate(self, rate: int) -> None:
        with self._lock:
            self.rate = rate = max(1, int(rate))
            budgets = list(self._by_service.values())
        for budget in budgets:
            budget.set_rate(rate)

    def for_provider(self, provider_id: str) -> Budget:
        cls = REGISTRY.get(provider_id)
        service = cls.service if cls is not None else provider_id
        with self._lock:
            budget = self._by_service.get(service)
            if budget is None:
                budget = self._by_service[service] = Budget(self.rate, self.window)
            return budget
