# SPDX-License-Identifier: GPL-3.0-or-later
"""When to poll next. bpy-free.

Vendor SDKs poll every second (Segmind) or every 3 s (Runware) for the job's whole life. Jobs
here take half a minute to several minutes, so: quick at first (failures and fast jobs show
up at once), then backing off with the job's age, capped so that a finished job is noticed
within a couple of seconds; for long jobs the cap grows slowly with age. Where the service
reports progress, the estimated time left pulls the next poll closer; so does the provider's
expected duration (jobs/durations.py): one poll just after it, then quick polls while the job
is overdue. Jitter keeps many jobs from polling in step.
"""
from __future__ import annotations

import random

FIRST_INTERVAL = 1.0     # seconds
GROWTH = 2.0             # the interval grows at twice the job's age (polls at ~1, 3 s)...
SHORT_JOB_CAP = 3.4      # ...up to this, so a finished job is noticed ~1.7 s later on median
LONG_JOB_SLOPE = 0.05    # past ~68 s the cap becomes 5% of the age
ABSOLUTE_CAP = 30.0
JITTER = 0.1
EXPECTED_MARGIN = 0.05   # the poll aimed at the expected finish comes this much after it
OVERDUE_MIN = 0.25       # past the expected finish: polls this far apart at first...
OVERDUE_GROWTH = 1.0     # ...then as long as it is overdue (never more than the usual interval)


def next_poll_interval(age: float, progress: float | None = None,
                       rng: random.Random | None = None,
                       expected: float | None = None) -> float:
    cap = min(max(SHORT_JOB_CAP, LONG_JOB_SLOPE * age), ABSOLUTE_CAP)
    interval = min(max(FIRST_INTERVAL, GROWTH * age), cap)
    if progress is not None and 0.05 < progress < 1.0 and age > 0:
        remaining = age * (1.0 - progress) / progress
        interval = min(interval, max(FIRST_INTERVAL, remaining * 0.5))
    rng = rng or random
    interval *= 1.0 + rng.uniform(-JITTER, JITTER)
    if expected is not None and expected > 0:
        if age < expected:
            interval = min(interval, expected - age + EXPECTED_MARGIN)
        else:
            interval = min(interval, max(OVERDUE_MIN, OVERDUE_GROWTH * (age - expected)))
    return interval
