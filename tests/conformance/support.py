# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared by the conformance tests: the vendors' official SDKs drive tests/emulator, so the
emulator is checked by code we did not write. Runs in the test-only venv built by tools/conformance.py (never in a
Blender venv, never in the zip): `python3 tools/conformance.py`.

One Emulator serves the session on 127.0.0.1. Nothing may leave the machine: proxies are
cleared and every socket connect / name lookup to a host other than loopback fails the test.
"""
from __future__ import annotations

import base64
import os
import socket
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
             "SCENARIO_BASE_URL", "SCENARIO_CUSTOM_HEADERS", "SCENARIO_SDK_JWT",
             "FAL_RUN_HOST", "FAL_QUEUE_RUN_HOST"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from emulator import TEST_KEYS, Emulator, Reply  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: every attempt to reach another host (refused), for the test that made it to fail on
BLOCKED: list[str] = []

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _host_of(address) -> str | None:
    return address[0] if isinstance(address, tuple) and address else None


def _guarded_getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and name not in LOOPBACK:
        BLOCKED.append(f"lookup {name}")
        raise socket.gaierror(socket.EAI_NONAME, f"conformance: {name} is not loopback")
    return _real_getaddrinfo(host, *args, **kwargs)


def _check(address) -> None:
    host = _host_of(address)
    if host is not None and host not in LOOPBACK:
        BLOCKED.append(f"connect {address!r}")
        raise ConnectionRefusedError(f"conformance: {address!r} is not loopback")


def _guarded_connect(self, address):
    _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(address)
    return _real_connect_ex(self, address)


socket.getaddrinfo = _guarded_getaddrinfo
socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex

#: a PNG signature is all the emulator looks at; the SDKs send it as given
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
PNG_DATA_URI = "data:image/png;base64," + PNG_B64
GLB = b"glTF\x02\x00\x00\x00" + b"conformance-model" * 4


def fetch(url: str) -> bytes:
    """Download a result URL the way an artist's machine would (no vendor key)."""
    import httpx
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.content

