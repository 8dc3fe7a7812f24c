# SPDX-License-Identifier: GPL-3.0-or-later
"""Which addresses Recon3D may reach, and which count as the service's own host (the only one
a key is sent to). bpy-free."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_internal(url: str) -> bool:
    """Is `url` on this machine or a private/link-local network (by name or address)?"""
    if is_loopback(url):
        return True
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.endswith((".local", ".internal")) or "." not in host
    address = getattr(address, "ipv4_mapped", None) or address
    return not address.is_global


def scheme_host_port(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port
