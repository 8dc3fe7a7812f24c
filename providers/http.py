# SPDX-License-Identifier: GPL-3.0-or-later
"""The one HTTP layer every provider shares. bpy-free.

What it guarantees, so no provider has to repeat it:
- a timeout on every request (connect and read: Blender's network timeout, network.py);
- the proxy and CA bundle of the preferences on every request (network.py), loopback never
  through a proxy;
- credentials are attached only to requests for the provider's own host; redirects are followed
  by hand so a key never follows a redirect to another host (requests only strips
  `Authorization`, not custom headers such as Segmind's `x-api-key`);
- retries with capped exponential backoff and jitter, honouring `Retry-After` and Segmind's
  `x-rate-limit-reset-at-utc`, for requests that are safe to repeat; a request that bills
  (`billing=True`) is retried only when the service provably did not accept it;
- downloads streamed to a temporary file with a size cap, checked, then renamed;
- while Blender's online access is off, only loopback hosts are reached;
- an address a remote service hands out (a result URL, a redirect) is never followed to
  loopback, private or link-local hosts, unless the configured endpoint is on one itself
  (the emulator, a LAN proxy);
- a download stops between chunks when the job is canceled.
Error bodies are turned into messages by the provider (`Provider.describe_error`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol
from urllib.parse import urljoin, urlsplit

import requests

from ..errors import Canceled, NetworkBlocked, Recon3DError, ResultError, ServiceError
from .addresses import is_internal, is_loopback, scheme_host_port
from .billing import NOT_ACCEPTED_STATUSES, ambiguous_submit, never_sent
from .files import remove_quietly
from .messages import describe_download_error, json_body
from .network import (CONNECT_TIMEOUT, READ_TIMEOUT, SLOW_READ_FLOOR, NetworkSettings,
                      describe_transport, hopeless, proxy_failed, route, unreadable_proxy)
from .retry import TRANSIENT_STATUSES, RetryPolicy, server_retry_hint

USER_AGENT = "Recon3D-Blender/0.1"
MAX_REDIRECTS = 5
#: the longest a service's Retry-After pauses all requests to it (a bogus day-long hint must
#: not freeze every job)
MAX_SERVICE_PAUSE = 15 * 60.0


class StopSignal(Protocol):
    """What the client waits on between retries: `wait(seconds)` returns True when the job
    was canceled or the engine is stopping (see jobs/lanes.py)."""

    def wait(self, seconds: float) -> bool: ...

    def raise_if_stopped(self) -> None: ...


@dataclass
class HttpConfig:
    service: str                                   # "Segmind": used in messages
    base_url: str
    auth_headers: Mapping[str, str] = field(default_factory=dict, repr=False)   # keys
    allow_online: bool = False                     # Blender's online access, read on the main thread
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    network: NetworkSettings = field(default_factory=NetworkSettings)   # proxy, CA bundle


class HttpClient:
    """A requests session bound to one service."""

    def __init__(self, config: HttpConfig,
                 describe_error: Callable[[requests.Response], Recon3DError],
                 sleep: Callable[[float], None] = time.sleep,
                 stop: StopSignal | None = None,
                 not_accepted: Callable[[requests.Response], bool] | None = None,
                 on_backoff: Callable[[float], None] | None = None,
                 before_request: Callable[[], None] | None = None):
        self.config = config
        self.describe_error = describe_error
        self._sleep = sleep
        self.stop = stop
        #: does this answer prove a billing request was not taken (so it may be re-sent)?
        self.not_accepted = not_accepted or (
            lambda resp: resp.status_code in NOT_ACCEPTED_STATUSES)
        self.on_backoff = on_backoff      # told how long a 429 asked us to wait (slows the lane)
        #: called before each attempt of an API request and each download hop on the
        #: service's own host (may wait: the service's request budget, jobs/budget.py)
        self.before_request = before_request
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self._home = scheme_host_port(config.base_url)
        #: a configured endpoint on this machine or network may send us anywhere; a remote one
        #: may not send us (or a key-less download) into it
        self._home_internal = is_internal(config.base_url)

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
        if not self._home_internal and is_internal(url):
            raise ServiceError(f"{self.config.service} pointed Recon3D at an address on this "
                               f"computer or its local network ({urlsplit(url).hostname}); "
                               f"Recon3D does not follow it. Report this to "
                               f"{self.config.service}.", code="bad_response")

    def _headers_for(self, url: str, extra: Mapping[str, str] | None) -> dict:
        headers = dict(extra or {})
        if scheme_host_port(url) == self._home:
            headers.update(self.config.auth_headers)
        return headers

    def _wait(self, seconds: float) -> None:
        if self.stop is not None:
            if self.stop.wait(seconds):
                self.stop.raise_if_stopped()      # Canceled, or the engine stopping
                raise Canceled("The job was canceled.")
        else:
            self._sleep(seconds)

    def _send_once(self, method: str, url: str, *, json_data=None, data=None,
                   headers=None, stream=False, read_floor: float = 0.0,
                   api: bool = True) -> requests.Response:
        """One request, with redirects followed by hand (auth dropped on a host change).
        `read_floor`: the least this request waits for an answer (a paid submit, a
        download), however short the network timeout."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check_allowed(url)
            if self.before_request is not None and (api or scheme_host_port(url) == self._home):
                self.before_request()
            try:
                resp = self.session.request(
                    method, url, json=json_data, data=data,
                    headers=self._headers_for(url, headers), stream=stream,
                    allow_redirects=False, **route(self.config.network, url),
                    timeout=(self.config.connect_timeout,
                             max(self.config.read_timeout, read_floor)))
            except requests.exceptions.InvalidURL as exc:    # before anything was sent
                unreadable = unreadable_proxy(self.config.network, url, exc)
                if unreadable is None:
                    raise
                raise unreadable from None
            if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                resp.close()
                if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                    method, json_data, data = "GET", None, None
                continue
            return resp
        raise ServiceError(f"{self.config.service} redirected too many times; the service "
                           f"may be misconfigured. Try again later.", code="bad_response")

    # -- requests --------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, json_data=None, data=None, headers=None,
                billing: bool = False, ok_statuses: tuple[int, ...] = (),
                read_if: Callable[[requests.Response], bool] | None = None,
                stream: bool = False) -> requests.Response:
        """Send a request, retrying what is safe to retry; non-2xx become Recon3DError.

        billing: the request starts paid work; it is sent again only as billing.py allows.
        ok_statuses: non-2xx statuses the caller reads itself.
        read_if: an answer the caller reads itself whatever its status, neither retried nor
        raised (Segmind's FAILED body, which comes under 422, 400, 500 …).
        """
        url = self.url(path)
        policy = self.config.retry
        service = self.config.service
        attempt = 0
        while True:
            attempt += 1
            hint = None
            try:
                resp = self._send_once(method, url, json_data=json_data, data=data,
                                       headers=headers, stream=stream,
                                       read_floor=SLOW_READ_FLOOR if billing else 0.0)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                # A refused connection proves nothing was sent; a reset after sending, a read
                # timeout or an answer cut off half-way (ChunkedEncodingError) does not.
                sent = not never_sent(exc)
                if billing and sent:
                    raise ambiguous_submit(service, (
                        f"{service} did not answer in time." if isinstance(
                            exc, requests.exceptions.Timeout) else
                        f"The connection to {service} broke while sending the job.")) from None
                if attempt >= policy.attempts or hopeless(exc):
                    raise self._transport_error(exc) from None
            else:
                if not stream and _cut_off(resp):
                    # urllib3 1.26 (Blender 4.2) hands over a short body without a word;
                    # urllib3 2 raises, above. Either way the answer is lost.
                    resp.close()
                    if billing:
                        raise ambiguous_submit(service, f"The answer from {service} was cut "
                                                        f"off while the job was being sent.")
                    if attempt >= policy.attempts:
                        raise ServiceError(f"{service}'s answers keep breaking off. Try again "
                                           f"in a few minutes.", code="unreachable")
                    self._wait(policy.delay(attempt, None))
                    continue
                if resp.ok or resp.status_code in ok_statuses or (read_if and read_if(resp)):
                    return resp
                if resp.status_code == 407:       # the proxy refused to carry it
                    resp.close()
                    raise proxy_failed(service, self.config.network)
                hint = server_retry_hint(resp)
                if resp.status_code == 429 and self.on_backoff is not None:
                    # The service's own pause holds for every request to it (the budget),
                    # however long: a retry's wait is capped, the service's pause is not —
                    # and it holds even when this request gives up now.
                    self.on_backoff(min(hint, MAX_SERVICE_PAUSE) if hint is not None
                                    else policy.delay(attempt, None))
                retryable = self.not_accepted(resp) if billing else \
                    resp.status_code in TRANSIENT_STATUSES
                if not retryable or attempt >= policy.attempts:
                    try:
                        error = self.describe_error(resp)
                        if billing and resp.status_code >= 500 and not retryable:
                            # A gateway error after sending proves nothing either way.
                            error = ambiguous_submit(service, str(error))
                        raise error
                    finally:
                        resp.close()
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
                code="bad_response")
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
                resp = self._send_once("GET", url, stream=True, read_floor=SLOW_READ_FLOOR,
                                       api=False)
                try:
                    if resp.status_code in (403, 404, 410) and on_expired and not refreshed:
                        refreshed = True
                        url = on_expired()
                        attempt -= 1
                        continue
                    if not resp.ok:
                        if resp.status_code not in TRANSIENT_STATUSES or attempt >= policy.attempts:
                            raise describe_download_error(self.config.service,
                                                          resp.status_code)
                        hint = server_retry_hint(resp)
                    else:
                        return self._stream_to(resp, part, dest, max_bytes, check, chunk_size)
                finally:
                    resp.close()
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError, _Truncated) as exc:
                remove_quietly(part)
                refused = describe_transport(self.config.service, self.config.network, exc)
                if refused is not None and (attempt >= policy.attempts or hopeless(exc)):
                    raise refused from None
                if attempt >= policy.attempts:
                    raise ResultError(
                        f"The download from {self.config.service} kept breaking off "
                        f"({type(exc).__name__}). The result is safe at the service — "
                        f"nothing was billed again; use Retry Download later.",
                        code="download") from None
            self._wait(policy.delay(attempt, hint))

    def _transport_error(self, exc: Exception) -> Recon3DError:
        service = self.config.service
        refused = describe_transport(service, self.config.network, exc)
        if refused is not None:
            return refused
        if isinstance(exc, requests.exceptions.Timeout):
            limit = self.config.network.timeout
            within = (f"within {limit:g} s (Blender's Preferences › System › Network › "
                      f"Time-out)" if limit else "in time")
            return ServiceError(f"{service} did not answer {within}. Try again in a few "
                                f"minutes.", code="timeout")
        return ServiceError(f"Recon3D could not reach {service}. Check your internet "
                            f"connection (or the endpoint in Preferences › Add-ons › Recon3D) "
                            f"and try again.", code="unreachable")

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
                    if self.stop is not None and self.stop.wait(0):
                        raise Canceled("The job was canceled.")
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
            # Content-Length counts the bytes on the wire, which differ from the file's when
            # the body was compressed (Content-Encoding: gzip): compare like with like.
            received = _wire_bytes(resp, written)
            if expected is not None and received != expected:
                raise _Truncated(f"{received} of {expected} bytes")
            os.replace(part, dest)
            return written
        except BaseException:
            remove_quietly(part)
            raise


class _Truncated(Exception):
    pass


def _wire_bytes(resp: requests.Response, decoded: int) -> int:
    """Bytes of the body as sent (urllib3 1.26 and 2.x count them in `tell()`)."""
    tell = getattr(resp.raw, "tell", None)
    try:
        return int(tell()) if tell is not None else decoded
    except (TypeError, ValueError, OSError):
        return decoded


def _cut_off(resp: requests.Response) -> bool:
    """A body shorter than its declared Content-Length (a connection reset mid-answer)."""
    length = resp.headers.get("Content-Length", "")
    if not length.isdigit() or resp.headers.get("Content-Encoding"):
        return False
    return len(resp.content) < int(length)
