# SPDX-License-Identifier: GPL-3.0-or-later
"""How Recon3D's requests reach a service: through an HTTPS proxy, trusting a studio's own
certificate authority, within Blender's network timeout. bpy-free.

The rules, defined once here and applied by the HTTP layer to every request:
- the proxy set in the preferences carries every request (https and http) except to hosts
  the usual `NO_PROXY` / `no_proxy` environment variable lists; without a preference, requests
  honours `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` itself (the preference wins
  over the environment because it is passed with each request, where requests lets it win);
- loopback (127.0.0.0/8, ::1, localhost) never goes through any proxy: a service on this
  machine is this machine's (`LOOPBACK_NEVER_PROXIED`);
- the CA bundle set in the preferences replaces the trusted authorities for every request;
  without one, `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` and then certifi apply, as requests
  does. A bundle path that does not exist refuses the request before anything is sent;
- Blender's network timeout (Preferences › System › Network › Time-out; 0 = the system's
  default) is the connect timeout and the read timeout of API requests. A request that starts
  paid work and a download wait at least their own longer floor: waiting longer is cheaper
  than a submit whose fate is unknown.
"""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import requests

from ..errors import Recon3DError
from .addresses import is_loopback

#: Recon3D's own timeouts, used when Blender's network timeout is 0 ("the system's default")
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
#: the least a paid submit or a download waits for an answer, whatever the network timeout
SLOW_READ_FLOOR = 60.0
#: a service on this machine is never reached through a proxy. Only a test sets this False,
#: to send the loopback emulator through its loopback proxy (no other host exists offline).
LOOPBACK_NEVER_PROXIED = True
PREFERENCES = "Preferences › Add-ons › Recon3D › Network"
#: passed with a request: no proxy at all, whatever the environment says
NO_PROXY = {"http": None, "https": None, "all": None}
#: where requests takes a proxy from when the preference is empty
PROXY_ENVIRONMENT = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                     "all_proxy")
#: what to do about a password that breaks a proxy address
PERCENT_HINT = ("if its user name or password has characters like # / @ [ ] or a space, write "
                "them percent-encoded (# as %23, / as %2F, @ as %40)")


@dataclass(frozen=True)
class NetworkSettings:
    """The network preferences, read on the main thread (plain values)."""
    proxy: str = field(default="", repr=False)   # http://user:pass@host:port — a secret
    ca_bundle: str = ""                           # a PEM file of trusted authorities
    timeout: float = 0.0                          # Blender's network timeout; 0: defaults

    @property
    def proxy_shown(self) -> str:
        """The proxy as it may be shown: its user and password left out."""
        return shown_proxy(self.proxy)

    def timeouts(self) -> tuple[float, float]:
        """(connect, read) for API requests."""
        if self.timeout > 0:
            return float(self.timeout), float(self.timeout)
        return CONNECT_TIMEOUT, READ_TIMEOUT


def parse_proxy(proxy: str) -> SplitResult | None:
    """A proxy address split into its parts, or None when it is not one (http(s)://host with
    a numeric port, if any). The one reading of a proxy address: a password with # / @ [ left
    unencoded makes it unreadable here, as it does for requests."""
    try:
        parts = urlsplit(proxy.strip())
        parts.port                                  # raises ValueError when not a number
    except ValueError:                              # "Invalid IPv6 URL", a bad port
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts


def shown_proxy(proxy: str) -> str:
    parts = parse_proxy(proxy)
    if parts is None:
        return "(not a proxy address)"
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return urlunsplit((parts.scheme, f"{netloc}:{parts.port}" if parts.port else netloc,
                       "", "", ""))


def proxy_secrets(proxy: str) -> list[str]:
    """What of a proxy address must never be shown: its password, the address as typed with
    it, and the Proxy-Authorization token made of it. (The address without them is shown in
    messages; the user name alone is not a secret and would mask ordinary words.) Read by
    hand, not with `parse_proxy`: an address its password makes unreadable still hides it."""
    text = proxy.strip()
    userinfo, at, _ = text.split("://", 1)[-1].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (at and colon and password):
        return []
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return [text, password, unquote(password), token]


def environment_proxies() -> dict[str, str]:
    """The proxy variables set in the environment (name → address)."""
    return {name: os.environ[name] for name in PROXY_ENVIRONMENT if os.environ.get(name)}


def settings_problem(settings: NetworkSettings) -> str | None:
    """Why these settings cannot carry a request (checked before anything is sent), or
    None."""
    if settings.ca_bundle and not os.path.isfile(settings.ca_bundle):
        return (f"The CA bundle {settings.ca_bundle} set in {PREFERENCES} does not exist. "
                f"Choose the certificate file your studio's IT gave you (a .pem), or clear "
                f"the field to trust the usual authorities.")
    if settings.proxy.strip() and parse_proxy(settings.proxy) is None:
        return (f"The HTTPS proxy set in {PREFERENCES} is not a proxy address; write it "
                f"as http://host:port (e.g. http://proxy.studio:3128), and {PERCENT_HINT}.")
    return None


def check(settings: NetworkSettings) -> None:
    problem = settings_problem(settings)
    if problem:
        raise Recon3DError(problem, code="network_settings")


def route(settings: NetworkSettings, url: str) -> dict:
    """`proxies` and `verify` for one request to `url` (requests' keyword arguments)."""
    check(settings)
    options: dict = {"verify": settings.ca_bundle or None}   # None: the environment, certifi
    if LOOPBACK_NEVER_PROXIED and is_loopback(url):
        options["proxies"] = NO_PROXY
    elif settings.proxy.strip():
        listed = requests.utils.should_bypass_proxies(url, no_proxy=None)   # NO_PROXY
        proxy = settings.proxy.strip()
        options["proxies"] = NO_PROXY if listed else {"http": proxy, "https": proxy}
    return options


def describe_transport(service: str, settings: NetworkSettings,
                       exc: Exception) -> Recon3DError | None:
    """A proxy or certificate failure in an artist's words; None for any other failure."""
    if isinstance(exc, requests.exceptions.ProxyError):
        return proxy_failed(service, settings)
    if isinstance(exc, requests.exceptions.SSLError) and untrusted(exc):
        return Recon3DError(f"{service}'s certificate is not trusted by this machine; if your "
                            f"studio uses its own certificate authority, set its CA bundle in "
                            f"{PREFERENCES}.", code="network_settings")
    return None


def proxy_failed(service: str, settings: NetworkSettings) -> Recon3DError:
    """The proxy could not be reached, or refused to carry the request (407 and the like)."""
    if settings.proxy.strip():
        return Recon3DError(f"Recon3D could not reach the proxy {settings.proxy_shown} set in "
                            f"{PREFERENCES} — check it (address, port, user and password), "
                            f"or clear it to connect directly.", code="unreachable")
    return Recon3DError(f"Recon3D could not reach {service} through the proxy the environment "
                        f"names (HTTPS_PROXY / HTTP_PROXY) — check it, or set the proxy in "
                        f"{PREFERENCES}.", code="unreachable")


def unreadable_proxy(settings: NetworkSettings, url: str,
                     exc: requests.exceptions.InvalidURL) -> Recon3DError | None:
    """requests could not read an address: when it is the proxy's (the request's own `url`
    is readable), the artist is told where the proxy is set, without echoing it (it may
    hold a password); None when `url` itself is at fault."""
    if not isinstance(exc, requests.exceptions.InvalidProxyURL):
        try:
            requests.models.PreparedRequest().prepare_url(url, None)
        except requests.exceptions.RequestException:
            return None
    if settings.proxy.strip():
        where = f"set in {PREFERENCES}"
    else:
        where = "in " + (" / ".join(environment_proxies()) or "HTTPS_PROXY")
    return Recon3DError(f"The proxy address {where} could not be read: write it as "
                        f"http://host:port (e.g. http://proxy.studio:3128), and "
                        f"{PERCENT_HINT}. Or clear it to connect directly.",
                        code="network_settings")


def untrusted(exc: BaseException) -> bool:
    """A certificate that failed verification (the handshake: nothing was sent)."""
    return "CERTIFICATE_VERIFY_FAILED" in repr(exc) or "certificate verify failed" in repr(exc)


def tunnel_refused(exc: BaseException) -> int | None:
    """The status with which the proxy refused to open a tunnel (CONNECT, for an https://
    service; 407: a wrong or missing password), or None. A tunnel never set up carried
    nothing. (http.client's words, under urllib3 1.26 and 2 alike; on urllib3 1.26 every
    socket error through a proxy is a ProxyError, so the type alone proves nothing.)"""
    found = re.search(r"Tunnel connection failed: (\d{3})", repr(exc))
    return int(found.group(1)) if found else None


def hopeless(exc: BaseException) -> bool:
    """Sending again cannot help: the certificate is not trusted, or the proxy wants other
    credentials."""
    return untrusted(exc) or tunnel_refused(exc) == 407
