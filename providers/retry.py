# SPDX-License-Identifier: GPL-3.0-or-later
"""When to send a request again, and how long to wait first. bpy-free.

Which *billing* requests may be sent again at all is decided in `billing.py`; this module only
knows about time: capped exponential backoff with jitter, and the waits servers ask for.
"""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import requests

#: statuses that mean "not now" rather than "no": retried for requests safe to repeat
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class RetryPolicy:
    attempts: int = 5          # total tries, the first included
    base_delay: float = 0.5    # seconds before the first retry
    max_delay: float = 30.0    # cap of one wait
    jitter: float = 0.25       # +/- fraction of each wait, so many clients do not retry in step

    def delay(self, attempt: int, server_hint: float | None) -> float:
        """Wait before retry number `attempt` (1-based); a server's hint wins when given."""
        if server_hint is not None:
            return min(max(server_hint, 0.0), self.max_delay)
        wait = min(self.base_delay * (2 ** (attempt - 1)), self.max_delay)
        return wait * (1 + random.uniform(-self.jitter, self.jitter))


def server_retry_hint(resp: requests.Response, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `Retry-After` (seconds or HTTP date) or Segmind's
    `x-rate-limit-reset-at-utc` (ISO 8601 or epoch seconds)."""
    now = time.time() if now is None else now
    value = (resp.headers.get("Retry-After") or "").strip()
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            try:
                return max(email.utils.parsedate_to_datetime(value).timestamp() - now, 0.0)
            except (TypeError, ValueError):
                pass
    value = (resp.headers.get("x-rate-limit-reset-at-utc") or "").strip()
    if value:
        try:
            stamp = float(value)
            if stamp > 1e11:     # milliseconds
                stamp /= 1000.0
            return max(stamp - now, 0.0)
        except ValueError:
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                return max(when.timestamp() - now, 0.0)
            except ValueError:
                pass
    return None
