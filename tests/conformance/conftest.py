# SPDX-License-Identifier: GPL-3.0-or-later
"""Conformance suite fixtures: one Emulator on 127.0.0.1 for the session (see support.py)."""
from __future__ import annotations

import pytest

from support import BLOCKED, Emulator


@pytest.fixture(scope="session")
def emu():
    emulator = Emulator()
    yield emulator
    emulator.close()


@pytest.fixture(autouse=True)
def fresh(emu):
    """Each test starts with a quiet emulator; it fails if anything tried to leave loopback."""
    emu.reset()
    BLOCKED.clear()
    yield
    assert not BLOCKED, f"a request tried to leave 127.0.0.1: {BLOCKED}"
