# SPDX-License-Identifier: GPL-3.0-or-later
"""The one HTTP layer every provider shares. bpy-free.

What it guarantees, so no provider has to repeat it:
- a timeout on every request (connect and read);
- credentials are attached only to requests for the provider's own host; redirects are followed
  by hand so a key never follows a redirect to another host (requests only strips
  `Authorization`, not custom headers such as Segmind's `x-api-key`);
- retries with capped exponential backoff and jitter, honouring `Retry-After` and Segmind's
  `x-rate-limit-reset-at-utc`, for requests that are safe to repeat; a request that bills
  (`billing=True`) is retried only when the service provably did not accept it;
- downloads streamed to a temporary file with a size cap, checked, then renamed;
- while Blender's online access is off, only loopback hosts are reached.
Error bodies are turned into messages by the provider (`Provider.describe_error`).
"""
from __future__ import annotations

import email.utils
import ipaddress
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Mapping
from urllib.parse import urljoin, urlsplit

import requests

from ..errors import Canceled, NetworkBlocked, Recon3DError, ResultError, ServiceError

USER_AGENT = "Recon3D-Blender/0.1"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
MAX_REDIRECTS = 5
#: statuses that mean "not now" rather than "no": retried for requests safe to repeat
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: statuses that prove a billing request was not accepted, so sending it again is safe
NOT_ACCEPTED_STATUSES = frozenset({429, 503})


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


@dataclass
class RetryPolicy:
    attempts: int = 5          # total tries, the first included
    base_delay: float = 0.5    # seconds before the first retry
    max_delay: float = 30.0    # cap of one wait
    jitter: float = 0.25       # +/- fraction of each wait, so many clients do not retry in step

    def delay(self, attempt: int, server_hint: float | None) -> float:
        """Wait before retry number `attempt` (1-based); a server's hint wins when given."""
        if server_hint is not None:
            return min(max(server_hint, 0.0), self.max_delay)
        wait = min(self.base_delay * (2 ** (attempt - 1)), self.max_delay)
        return wait * (1 + random.uniform(-self.jitter, self.jitter))


def server_retry_hint(resp: requests.Response, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `Retry-After` (seconds or HTTP date) or Segmind's
    `x-rate-limit-reset-at-utc` (ISO 8601 or epoch seconds)."""
    now = time.time() if now is None else now
    value = resp.headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(float(value), 0.0)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(when.timestamp() - now, 0.0)
            except (TypeError, ValueError):
                pass
    value = resp.headers.get("x-rate-limit-reset-at-utc")
    if value:
        value = value.strip()
        try:
            stamp = float(value)
            if stamp > 1e11:     # milliseconds
                stamp /= 1000.0
            return max(stamp - now, 0.0)
        except ValueError:
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                return max(when.timestamp() - now, 0.0)
            except ValueError:
                pass
    return None


def json_body(resp: requests.Response):
    """The response's JSON, or None when the body is not JSON (an HTML error page, say)."""
    try:
        return resp.json()
    except ValueError:
        return None


@dataclass
class HttpConfig:
    service: str                                   # "Segmind": used in messages
    base_url: str
    auth_headers: Mapping[str, str] = field(default_factory=dict)
    allow_online: bool = False                     # Blender's online access, read on the main thread
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT


class HttpClient:
    """A requests session bound to one service."""

    def __init__(self, config: HttpConfig,
                 describe_error: Callable[[requests.Response], Recon3DError],
                 sleep: Callable[[float], None] = time.sleep,
                 cancel_event: threading.Event | None = None,
                 on_backoff: Callable[[float], None] | None = None):
        self.config = config
        self.describe_error = describe_error
        self._sleep = sleep
        self.cancel_event = cancel_event
        self.on_backoff = on_backoff      # told how long a 429 asked us to wait (slows the lane)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self._origin = origin(config.base_url)

    # -- helpers -------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.config.base_url.rstrip("/") + "/" + path.lstrip("/")

    def _check_allowed(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ServiceError(f"{self.config.service} returned an address Recon3D cannot "
                               f"download from ({url[:60]}).")
        if not self.config.allow_online and not is_loopback(url):
            raise NetworkBlocked(
                f"Blender's online access is off, so Recon3D cannot reach "
                f"{urlsplit(url).hostname}. Turn on Preferences › System › Network › "
                f"Allow Online Access, then try again.")

    def _headers_for(self, url: str, extra: Mapping[str, str] | None) -> dict:
        headers = dict(extra or {})
        if origin(url) == self._origin:
            headers.update(self.config.auth_headers)
        return headers

    def _wait(self, seconds: float) -> None:
        if self.cancel_event is not None:
            if self.cancel_event.wait(seconds):
                raise Canceled("The job was canceled.")
        else:
            self._sleep(seconds)

    def _send_once(self, method: str, url: str, *, json_data=None, data=None,
                   headers=None, stream=False) -> requests.Response:
        """One request, with redirects followed by hand (auth dropped on a host change)."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check_allowed(url)
            resp = self.session.request(
                method, url, json=json_data, data=data,
                headers=self._headers_for(url, headers), stream=stream,
                allow_redirects=False,
                timeout=(self.config.connect_timeout, self.config.read_timeout))
            if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                resp.close()
                if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                    method, json_data, data = "GET", None, None
                continue
            return resp
        raise ServiceError(f"{self.config.service} redirected too many times; the service "
                           f"may be misconfigured. Try again later.", transient=True)

    # -- requests --------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, json_data=None, data=None, headers=None,
                billing: bool = False, ok_statuses: tuple[int, ...] = (),
                stream: bool = False) -> requests.Response:
        """Send a request, retrying what is safe to retry; non-2xx become Recon3DError.

        billing: the request starts paid work; it is retried only when the service provably
        did not accept it (connection refused before sending, 429, 503).
        ok_statuses: non-2xx statuses the caller reads itself (Segmind's 422 FAILED body).
        """
        url = self.url(path)
        policy = self.config.retry
        attempt = 0
        while True:
            attempt += 1
            hint = None
            try:
                resp = self._send_once(method, url, json_data=json_data, data=data,
                                       headers=headers, stream=stream)
            except (requests.exceptions.ConnectionError,
                    requests.exceptions.ChunkedEncodingError) as exc:
                # A refused connection proves nothing was sent; a reset after sending, or an
                # answer cut off half-way (ChunkedEncodingError on urllib3 2), does not.
                safe = (not billing) or _never_sent(exc)
                if not safe or attempt >= policy.attempts:
                    raise _connection_error(self.config.service, exc, billing) from None
            except requests.exceptions.Timeout as exc:
                safe = (not billing) or isinstance(exc, requests.exceptions.ConnectTimeout)
                if not safe or attempt >= policy.attempts:
                    raise ServiceError(
                        f"{self.config.service} did not answer in time. "
                        + ("The request may still have been accepted: check your "
                           f"{self.config.service} dashboard before trying again."
                           if billing else "Try again in a few minutes."),
                        code="timeout", transient=True) from None
            else:
                if resp.ok or resp.status_code in ok_statuses:
                    return resp
                retryable = resp.status_code in (NOT_ACCEPTED_STATUSES if billing
                                                 else TRANSIENT_STATUSES)
                if not retryable or attempt >= policy.attempts:
                    try:
                        error = self.describe_error(resp)
                        if billing and resp.status_code >= 500 and \
                                resp.status_code not in NOT_ACCEPTED_STATUSES:
                            # A gateway error after sending proves nothing either way.
                            error = ServiceError(
                                f"{error} The job may still have been accepted and billed: "
                                f"check your {self.config.service} dashboard before trying "
                                f"again.", code="ambiguous_submit")
                        raise error
                    finally:
                        resp.close()
                hint = server_retry_hint(resp)
                if resp.status_code == 429 and self.on_backoff is not None:
                    self.on_backoff(policy.delay(attempt, hint))
                resp.close()
            self._wait(policy.delay(attempt, hint))

    def get_json(self, path: str, **kw):
        resp = self.request("GET", path, **kw)
        return self.parse_json(resp)

    def parse_json(self, resp: requests.Response):
        body = json_body(resp)
        if body is None:
            raise ServiceError(
                f"{self.config.service} answered with something that is not data "
                f"(HTTP {resp.status_code}, {resp.headers.get('Content-Type', 'no type')}). "
                f"The service may be down or behind a proxy; try again later.",
                code="bad_response", transient=True)
        return body

    def download(self, url: str, dest: str, *, max_bytes: int,
                 check: Callable[[bytes], None] | None = None,
                 on_expired: Callable[[], str] | None = None,
                 chunk_size: int = 1 << 20) -> int:
        """Stream `url` to `dest` (via `dest + '.part'`), retrying cut-off transfers.

        check(first_bytes) raises ResultError when the content is not what we expect.
        on_expired() returns a fresh URL when the CDN says 403/404 (signed URL expired).
        Returns the number of bytes written. `dest` only ever exists complete.
        """
        policy = self.config.retry
        part = dest + ".part"
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            hint = None
            try:
                resp = self._send_once("GET", url, stream=True)
                try:
                    if resp.status_code in (403, 404, 410) and on_expired and not refreshed:
                        refreshed = True
                        url = on_expired()
                        attempt -= 1
                        continue
                    if not resp.ok:
                        if resp.status_code not in TRANSIENT_STATUSES or attempt >= policy.attempts:
                            raise self.describe_download_error(resp)
                        hint = server_retry_hint(resp)
                    else:
                        return self._stream_to(resp, part, dest, max_bytes, check, chunk_size)
                finally:
                    resp.close()
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError, _Truncated) as exc:
                _remove(part)
                if attempt >= policy.attempts:
                    raise ResultError(
                        f"The download from {self.config.service} kept breaking off "
                        f"({type(exc).__name__}). Nothing was imported; retry the job's "
                        f"import later.", transient=True) from None
            self._wait(policy.delay(attempt, hint))

    def describe_download_error(self, resp: requests.Response) -> Recon3DError:
        return ServiceError(
            f"Downloading the result from {self.config.service} failed (HTTP "
            f"{resp.status_code}). Try the import again later.",
            transient=resp.status_code in TRANSIENT_STATUSES)

    def _stream_to(self, resp, part, dest, max_bytes, check, chunk_size) -> int:
        expected = resp.headers.get("Content-Length")
        expected = int(expected) if expected and expected.isdigit() else None
        if expected is not None and expected > max_bytes:
            raise ResultError(f"The result from {self.config.service} is "
                              f"{expected / 1e6:.0f} MB, more than Recon3D accepts "
                              f"({max_bytes / 1e6:.0f} MB).")
        written = 0
        checked = check is None
        head = b""
        try:
            with open(part, "wb") as fh:
                for chunk in resp.iter_content(chunk_size):
                    if not chunk:
                        continue
                    if not checked:
                        head += chunk[:16]
                        if len(head) >= 16:
                            check(head)
                            checked = True
                    written += len(chunk)
                    if written > max_bytes:
                        raise ResultError(f"The result from {self.config.service} is larger "
                                          f"than Recon3D accepts ({max_bytes / 1e6:.0f} MB).")
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if not checked:
                check(head)
            if expected is not None and written != expected:
                raise _Truncated(f"{written} of {expected} bytes")
            os.replace(part, dest)
            return written
        except BaseException:
            _remove(part)
            raise


class _Truncated(Exception):
    pass


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _never_sent(exc: Exception) -> bool:
    """True when a ConnectionError happened before the request could reach the server."""
    text = repr(exc)
    return any(s in text for s in ("NewConnectionError", "Connection refused",
                                   "Name or service not known", "nodename nor servname",
                                   "Failed to resolve", "getaddrinfo failed"))


def _connection_error(service: str, exc: Exception, billing: bool) -> Recon3DError:
    if billing and not _never_sent(exc):
        return ServiceError(
            f"The connection to {service} broke while sending the job. It may still have "
            f"been accepted: check your {service} dashboard before trying again.",
            code="ambiguous_submit", transient=False)
    return ServiceError(f"Recon3D could not reach {service}. Check your internet connection "
                        f"(or the endpoint in Preferences › Add-ons › Recon3D) and try again.",
                        code="unreachable", transient=True)


def describe_status(service: str, status: int, reason: str | None, *,
                    key_hint: str, body_snippet: str = "") -> Recon3DError:
    """Generic status → artist message; providers refine what their service says."""
    from ..errors import AuthError
    why = f": {reason}" if reason else ""
    if status == 401:
        return AuthError(f"{service} says the API key is invalid or missing{why}. {key_hint}")
    if status == 402:
        return ServiceError(f"{service} says your account has no credits or balance left{why}. "
                            f"Top up your {service} account, then try again.", code="credits")
    if status == 403:
        return ServiceError(f"{service} refused the request{why}. Your plan or key may not "
                            f"allow this model; check your {service} account.", code="forbidden")
    if status == 404:
        return ServiceError(f"{service} does not know this job or model any more{why}. "
                            f"Results expire after a while: generate again.", code="not_found")
    if status == 410:
        return ServiceError(f"{service} has retired this model{why}. Pick another provider "
                            f"in the Recon3D panel.", code="retired")
    if status == 429:
        return ServiceError(f"{service} is rate-limiting this account{why}. Wait a minute "
                            f"and try again, or run fewer jobs at once.", code="rate_limited",
                            transient=True)
    if status >= 500:
        return ServiceError(f"{service} is having trouble (HTTP {status}){why}. Try again "
                            f"in a few minutes.", code="service_down", transient=True)
    if not reason and body_snippet:
        why = ""
    return ServiceError(f"{service} rejected the request (HTTP {status}){why}.", code="rejected")


def reason_from_body(resp: requests.Response, *keys: str) -> str | None:
    """A short reason from a JSON error body, looking at `keys` then common shapes."""
    body = json_body(resp)
    if body is None:
        return None
    found = _find_reason(body, keys or ("error", "message", "detail"))
    if found:
        found = " ".join(str(found).split())
        return found[:300]
    return None


def _find_reason(body, keys):
    if isinstance(body, dict):
        for key in keys:
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value
            if isinstance(value, (dict, list)):
                inner = _find_reason(value, keys)
                if inner:
                    return inner
    if isinstance(body, list):
        for item in body:
            inner = _find_reason(item, keys)
            if inner:
                return inner
    return None

