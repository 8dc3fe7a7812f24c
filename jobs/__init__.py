# SPDX-License-Identifier: GPL-3.0-or-later
"""Jobs: model, journal, polling schedule and the worker engine. bpy-free."""
from .engine import DEFAULT_MAX_IN_FLIGHT, Engine
from .lanes import StopSignal
from .journal import Journal
from .model import ACTIVE, FINISHED, STATES, WAIT_TERMINAL, Job

__all__ = ["ACTIVE", "DEFAULT_MAX_IN_FLIGHT", "Engine", "FINISHED", "Job", "Journal", "STATES",
           "StopSignal", "WAIT_TERMINAL"]
