# SPDX-License-Identifier: GPL-3.0-or-later
"""Hosted models Recon3D can call. bpy-free: usable and testable without Blender.

`REGISTRY` maps the contract's provider ids to provider classes; everything else (UI enums,
input checks, the engine) reads it rather than naming a provider.
"""
from __future__ import annotations

import os
from typing import Callable

from ..errors import InputError
from .base import Provider
from .declaration import Capabilities, JobInputs, OptionSpec, PollStatus, ProviderSettings
from .fal_models import FAL_PROVIDERS
from .http import HttpClient, HttpConfig, StopSignal
from .runware import RunwareSam3D
from .scenario import ScenarioPixal3D, ScenarioSam3D
from .segmind import SegmindSam3D

REGISTRY: dict[str, type[Provider]] = {
    cls.id: cls for cls in (ScenarioSam3D, ScenarioPixal3D, SegmindSam3D, RunwareSam3D,
                            *FAL_PROVIDERS)}


def provider_class(provider_id: str) -> type[Provider]:
    try:
        return REGISTRY[provider_id]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise InputError(f"Unknown provider '{provider_id}'. Recon3D offers: {known}.") from None


def resolve_base_url(cls: type[Provider], preference_url: str = "") -> str:
    """Environment override, else the preference, else the vendor default (DESIGN.md)."""
    return (os.environ.get(cls.url_env) or preference_url or cls.default_url).rstrip("/")


def make_provider(provider_id: str, settings: ProviderSettings, *,
                  stop: StopSignal | None = None,
                  on_backoff: Callable[[float], None] | None = None,
                  before_request: Callable[[], None] | None = None,
                  sleep: Callable[[float], None] | None = None) -> Provider:
    cls = provider_class(provider_id)
    holder: list[Provider] = []
    connect_timeout, read_timeout = settings.network.timeouts()
    config = HttpConfig(service=cls.service, base_url=settings.base_url,
                        auth_headers={}, allow_online=settings.allow_online,
                        network=settings.network, connect_timeout=connect_timeout,
                        read_timeout=read_timeout)
    kwargs = {"stop": stop, "on_backoff": on_backoff, "before_request": before_request,
              "not_accepted": lambda resp: holder[0].not_accepted(resp)}
    if sleep is not None:
        kwargs["sleep"] = sleep
    http = HttpClient(config, lambda resp: holder[0].describe_error(resp), **kwargs)
    provider = cls(settings, http)
    holder.append(provider)
    config.auth_headers = provider._auth()
    return provider


__all__ = ["REGISTRY", "Capabilities", "JobInputs", "OptionSpec", "PollStatus", "Provider",
           "ProviderSettings", "make_provider", "provider_class", "resolve_base_url"]
