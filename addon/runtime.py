# SPDX-License-Identifier: GPL-3.0-or-later
"""The running engine and what it may read from worker threads.

Workers must never touch bpy, so URLs, keys and the online-access flag are read here on the
main thread (on enable, on every submit, when preferences change) into plain Python values.
"""
from __future__ import annotations

import os
import threading

import bpy

from ..errors import AuthError, NetworkBlocked, Recon3DError, remember_secrets
from ..jobs import DEFAULT_MAX_IN_FLIGHT, Engine
from ..providers import REGISTRY, ProviderSettings, provider_class, resolve_base_url
from ..providers.addresses import is_loopback
from ..providers.network import (NetworkSettings, environment_proxies, proxy_secrets,
                                 settings_problem)
from . import EXTENSION_PACKAGE, preferences

_engine: Engine | None = None
_settings: dict[str, ProviderSettings] = {}
_settings_lock = threading.Lock()


def online_access() -> bool:
    """Blender's Preferences › System › Network › Allow Online Access (read-only in Python;
    tests replace this function)."""
    return bool(bpy.app.online_access)


def data_dir() -> str:
    path = os.environ.get("RECON3D_DATA_DIR") or bpy.utils.extension_path_user(
        EXTENSION_PACKAGE, create=True)
    os.makedirs(path, exist_ok=True)
    return path


def engine() -> Engine:
    global _engine
    if _engine is None:
        refresh_settings()
        prefs = preferences.get()
        limit = prefs.max_in_flight if prefs else DEFAULT_MAX_IN_FLIGHT
        _engine = Engine(data_dir(), settings_for, max_in_flight=limit,
                         owner_label=owner_label())
        if prefs:
            _engine.set_request_rate(prefs.requests_per_second)
    return _engine


def owner_label() -> str:
    """How the other Blenders sharing the data folder name this one in their job lists."""
    kind = "headless" if bpy.app.background else "GUI"
    return f"Blender {bpy.app.version_string} ({kind})"


def running_engine() -> Engine | None:
    return _engine


def credentials(provider_id: str) -> dict:
    """Preferences first, then the environment (DESIGN.md). Main thread only."""
    cls = provider_class(provider_id)
    prefs = preferences.get()
    creds = {}
    for key in cls.keys:
        value = getattr(prefs, key.pref, "") if prefs else ""
        creds[key.pref] = (value.strip() or os.environ.get(key.env, "")).strip()
    remember_secrets(creds.values())          # masked wherever text is scrubbed
    return creds


def network_settings() -> NetworkSettings:
    """The Network preferences (proxy, CA bundle) and Blender's own network timeout. Main
    thread only. A proxy may carry a password, the preference's or the environment's (which
    requests reads itself): it is masked wherever text is scrubbed."""
    prefs = preferences.get()
    proxy = prefs.https_proxy.strip() if prefs else ""
    bundle = prefs.ca_bundle.strip() if prefs else ""
    for address in [proxy, *environment_proxies().values()]:
        remember_secrets(proxy_secrets(address))
    return NetworkSettings(proxy=proxy,
                           ca_bundle=os.path.expanduser(bpy.path.abspath(bundle)) if bundle
                           else "",
                           timeout=float(bpy.context.preferences.system.network_timeout))


def resolve_settings(provider_id: str) -> ProviderSettings:
    cls = provider_class(provider_id)
    prefs = preferences.get()
    pref_url = getattr(prefs, cls.url_pref(), "") if prefs else ""
    return ProviderSettings(base_url=resolve_base_url(cls, pref_url),
                            credentials=credentials(provider_id),
                            allow_online=online_access(), network=network_settings())


def refresh_settings() -> None:
    fresh = {pid: resolve_settings(pid) for pid in REGISTRY}
    with _settings_lock:
        _settings.update(fresh)
    if _engine is not None:
        prefs = preferences.get()
        if prefs:
            _engine.set_max_in_flight(prefs.max_in_flight)
            _engine.set_request_rate(prefs.requests_per_second)


def settings_for(provider_id: str) -> ProviderSettings:
    """Called from worker threads: plain values only."""
    with _settings_lock:
        settings = _settings.get(provider_id)
    if settings is None:
        raise AuthError(f"Recon3D has no settings for {provider_id}; enable the extension again.")
    return settings


def send_blocker(provider_id: str) -> tuple[ProviderSettings, Recon3DError | None]:
    """Why a job for this provider cannot be sent now — no key, a key with a space or an
    invisible character inside, a CA bundle that does not exist or a proxy that is not an
    address, or a service on the internet while Blender's online access is off — as the error
    to show, or None; with the settings it was decided on. The one definition of these rules:
    the API raises it, the panel greys Generate out with it."""
    cls = provider_class(provider_id)
    settings = resolve_settings(provider_id)
    missing = cls.missing_keys(settings.credentials)
    if missing:
        names = " and ".join(k.label for k in missing)
        return settings, AuthError(f"No {names} is set. {cls.key_hint()}")
    malformed = cls.malformed_keys(settings.credentials)
    if malformed:
        names = " and ".join(k.label for k in malformed)
        return settings, AuthError(
            f"The {names} has a space, line break or other invisible character inside, so it "
            f"was not sent. Copy it again from your {cls.service} account. {cls.key_hint()}")
    problem = settings_problem(settings.network)
    if problem:
        return settings, Recon3DError(problem, code="network_settings")
    if not settings.allow_online and not is_loopback(settings.base_url):
        return settings, NetworkBlocked(
            f"Blender's online access is off, so Recon3D cannot send the job to {cls.service}. "
            f"Turn on Preferences › System › Network › Allow Online Access, then try again.")
    return settings, None


def check_ready_to_send(provider_id: str) -> ProviderSettings:
    """Refuse, before anything is uploaded, a job that cannot be sent (`send_blocker`)."""
    settings, blocker = send_blocker(provider_id)
    if blocker is not None:
        raise blocker
    with _settings_lock:
        _settings[provider_id] = settings
    return settings


def start() -> None:
    """On enable: resume the journal's unfinished jobs right away (no timer needed)."""
    preferences.on_change = refresh_settings
    eng = engine()
    eng.resume()


def stop() -> None:
    global _engine
    if _engine is not None:
        _engine.shutdown()
        _engine = None
    preferences.on_change = None
    with _settings_lock:
        _settings.clear()
