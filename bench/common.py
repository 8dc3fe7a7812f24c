# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared by the benchmarks: mount the bpy-free layers without Blender, small inputs."""
from __future__ import annotations

import statistics
import struct
import sys
import time
import types
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))


def mount_core():
    """Import providers/ and jobs/ from the source tree as package `r3d`, without running the
    extension's __init__ (which needs bpy): exactly the bpy-free layers."""
    if "r3d" not in sys.modules:
        pkg = types.ModuleType("r3d")
        pkg.__path__ = [str(ROOT)]
        sys.modules["r3d"] = pkg
    import r3d.jobs
    import r3d.providers
    return r3d


def tiny_png(path: Path, width: int = 8, height: int = 8) -> str:
    """A valid RGB PNG written without any imaging library."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + b"\x80\x40\x20" * width for _ in range(height))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                          0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return str(path)


def fake_glb(size: int = 256) -> bytes:
    """Bytes that pass the download checks (GLB magic and length); not for importing."""
    body = b"\0" * max(size - 12, 0)
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def time_ticks(tick, events, seconds: float) -> tuple[list[float], int]:
    """Call the main-thread timer callback every 5 ms for `seconds`: the milliseconds each
    call took, and how many job events were waiting for them in all."""
    times, handled = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pending = events.qsize()
        t0 = time.perf_counter()
        tick()
        times.append((time.perf_counter() - t0) * 1000)
        handled += pending
        time.sleep(0.005)
    return times, handled
