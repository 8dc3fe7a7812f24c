# SPDX-License-Identifier: GPL-3.0-or-later
"""When to poll next. bpy-free.

Vendor SDKs poll every second (Segmind) or every 3 s (Runware) for the job's whole life.

A model whose durations were learned (jobs/durations.py: the median, and the spread `early` ..
`late` where nearly all its jobs finish) is polled around its expected finish: once after a
second (a job refused at once shows up at once), then sparsely, each poll covering most of the
way to the spread but at most a minute of it (straight to it once it is near); densely through
the spread (10 % of the median apart, within 0.2–2 s, densest at the median where most jobs
finish, so a finished job is noticed about a second later on median); past it, the interval
grows with the time overdue.
When the service's budget is short, polls of the jobs likeliest to be done go first
(`urgency`).

A model with nothing learned yet: quick at first, then backing off with the job's age, capped
so that a finished job is noticed within a couple of seconds; for long jobs the cap grows
slowly with age.

Either way, where the service reports progress, the estimated time left pulls the next poll
closer, and jitter keeps many jobs from polling in step. The service's request budget
(jobs/budget.py) bounds what all jobs together send.
"""
from __future__ import annotations

import math
import random

from .durations import Expected

FIRST_INTERVAL = 1.0     # seconds
GROWTH = 2.0             # the interval grows at twice the job's age (polls at ~1, 3, 9 s)...
SHORT_JOB_CAP = 3.4      # ...up to this, so a finished job is noticed ~1.7 s later on median
LONG_JOB_SLOPE = 0.05    # past ~68 s the cap becomes 5% of the age
ABSOLUTE_CAP = 30.0
JITTER = 0.1
DENSE_SHARE = 0.1        # through the learned spread: polls this share of the median apart...
DENSE_LIMITS = (0.2, 2.0)    # ...within these bounds (s)
APPROACH = 0.8           # before the spread: a poll covers this share of the way to it...
APPROACH_CAP = 60.0      # ...at most this far (s), so a long model is still checked now and then
STRAIGHT = 4             # ...or all of it, once it is this many dense intervals away
TAIL_SPARSER = 1.5       # through the spread: polls at its edges this many times as far apart
OVERDUE_SLOPE = 0.25     # past the spread: the interval grows by this share of the time overdue


def next_poll_interval(age: float, progress: float | None = None,
                       rng: random.Random | None = None,
                       expected: Expected | None = None) -> float:
    """Seconds until the next poll of a job `age` s after the service accepted it; always
    finite, DENSE_LIMITS[0] .. APPROACH_CAP. A negative age (another Blender's clock, ahead
    of this one, stamped the job) says only that the job was sent some time ago: it is polled
    SHORT_JOB_CAP apart until its age reads true, not every second."""
    skewed = age < 0
    age = _since(age)
    cap = min(max(SHORT_JOB_CAP, LONG_JOB_SLOPE * age), ABSOLUTE_CAP)
    floor = 0.0
    if not _usable(expected):
        interval = min(max(FIRST_INTERVAL, GROWTH * age), cap)
    else:
        interval, floor = _around_expected(age, cap, expected)
    if progress is not None and 0.05 < progress < 1.0 and age > 0:
        remaining = age * (1.0 - progress) / progress
        interval = min(interval, max(FIRST_INTERVAL, remaining * 0.5))
        floor = min(floor, interval)
    if skewed:
        interval = max(interval, SHORT_JOB_CAP)
    rng = rng or random
    chosen = max(interval * (1.0 + rng.uniform(-JITTER, JITTER)), floor)
    if not math.isfinite(chosen):
        return ABSOLUTE_CAP
    return min(max(chosen, DENSE_LIMITS[0]), APPROACH_CAP)


# How urgent a request is when the service's budget is short (jobs/budget.py: most urgent
# first). Polls range URGENCY_EARLY .. URGENCY_POLL_MAX; downloads and cancels rank above
# every poll, and a new job below all but the earliest polls.
URGENCY_EARLY = -2.0      # a poll before the job's spread can wait for the budget longest...
URGENCY_SUBMIT = -1.5     # ...then a new job, then polls through the spread (-1 at its start,
URGENCY_UNKNOWN = 0.0     # 0 at the median, as a poll of a model with nothing learned yet,
URGENCY_POLL_MAX = 1.0    # up to this past it)...
URGENCY_DOWNLOAD = 2.0    # ...then downloads (a result ready to fetch)...
URGENCY_CANCEL = 3.0      # ...and, first of all, cancels (the service may bill on)


def urgency(age: float, expected: Expected | None) -> float:
    """How urgent a poll is when the service's budget is short: a job past its expected
    finish (by how far, in spreads, up to URGENCY_POLL_MAX) is the likeliest to be done and
    goes first."""
    age = _since(age)
    if not _usable(expected):
        return URGENCY_UNKNOWN
    if age < expected.early:
        return URGENCY_EARLY
    past = (age - expected.median) / max(expected.late - expected.median, 1e-3)
    return min(past, URGENCY_POLL_MAX) if math.isfinite(past) else URGENCY_UNKNOWN


def _since(age: float) -> float:
    """A job's age as the schedule reads it: never negative (clock skew), always finite."""
    return max(age, 0.0) if math.isfinite(age) else 0.0


def _usable(expected: Expected | None) -> bool:
    return (expected is not None and expected.median > 0
            and all(math.isfinite(v) for v in (expected.median, expected.early, expected.late)))


def _around_expected(age: float, cap: float, expected: Expected) -> tuple[float, float]:
    """The interval, and the least it may become with jitter (the poll that goes straight
    to the spread lands in it, never just before)."""
    dense = min(max(DENSE_SHARE * expected.median, DENSE_LIMITS[0]), DENSE_LIMITS[1])
    if expected.early - age > dense / 2:          # (closer: no poll just before the spread)
        left = expected.early - age
        if age < FIRST_INTERVAL / 2:
            return min(FIRST_INTERVAL, left), 0.0
        if left <= STRAIGHT * dense:
            return left, left
        return min(APPROACH * left, APPROACH_CAP), 0.0
    if age <= expected.late:
        # Finishes crowd around the median: polls there are densest, thinning out to
        # TAIL_SPARSER times as far apart at the spread's edges.
        half = (expected.late - expected.early) / 2
        off = abs(age - (expected.early + half)) / half if half > 0 else 0.0
        return dense * (1.0 + (TAIL_SPARSER - 1.0) * off * off), 0.0
    return min(dense + OVERDUE_SLOPE * (age - expected.late), max(cap, dense)), 0.0
