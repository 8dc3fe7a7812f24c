# SPDX-License-Identifier: GPL-3.0-or-later
"""HTTP plumbing of the provider emulator: threaded loopback servers that record every request
and can be told to misbehave (status codes, bodies, headers, cut-off bodies, slowness,
redirects to another host). The services' protocols live in the sibling modules."""
from __future__ import annotations

import json
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Recorded:
    server: str           # "api" or "cdn"
    method: str
    path: str
    headers: dict
    body: bytes
    time: float

    @property
    def json(self):
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict = field(default_factory=dict)
    content_type: str | None = None
    #: send only this many bytes of the body, then drop the connection (Content-Length stays)
    cut_after: int | None = None
    delay: float = 0.0
    #: send the body in 64 KiB pieces with this pause between them (a slow download)
    chunk_delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, FileBody):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode(), self.content_type or "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return self.body, self.content_type or "application/octet-stream"


class FileBody:
    """A reply body streamed from a file (large results) instead of held in memory."""

    def __init__(self, path: str):
        self.path = path

    def __len__(self) -> int:
        return os.path.getsize(self.path)

    def write_to(self, out, limit: int | None = None) -> None:
        left = len(self) if limit is None else limit
        with open(self.path, "rb") as fh:
            while left > 0:
                chunk = fh.read(min(1 << 20, left))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk)


@dataclass
class Fault:
    """Answer matching requests with `reply` instead of the protocol, `times` times."""
    match: Callable[[Recorded], bool]
    reply: Reply
    times: int = 1
    used: int = 0
    #: let the service handle the request first (it is accepted), then answer with `reply`:
    #: "the job was taken but the answer was lost"
    after_service: bool = False


class Server:
    """One loopback HTTP server: routes are `(method, path) -> handler(req, match) -> Reply`."""

    def __init__(self, name: str, router: Callable[[Recorded], Reply], log: list,
                 faults: list, lock: threading.Lock, host: str = "127.0.0.1",
                 tls: ssl.SSLContext | None = None):
        self.name = name
        self.router = router
        self.log = log
        self.faults = faults
        self.lock = lock
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):       # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Recorded(outer.name, self.command, self.path,
                               {k.lower(): v for k, v in self.headers.items()}, body,
                               time.time())
                with outer.lock:
                    outer.log.append(req)
                    reply = None
                    late = None
                    for fault in outer.faults:
                        if fault.used < fault.times and fault.match(req):
                            fault.used += 1
                            if fault.after_service:
                                late = fault.reply
                            else:
                                reply = fault.reply
                            break
                if reply is None:
                    try:
                        reply = outer.router(req)
                    except Exception as exc:      # an emulator bug shows up as a 500 with text
                        import traceback
                        reply = Reply(500, {"error": f"emulator: {exc!r}",
                                            "trace": traceback.format_exc()})
                    if late is not None:
                        reply = late
                self._send(reply)

            def _send(self, reply: Reply):
                if reply.delay:
                    time.sleep(reply.delay)
                data, ctype = reply.encoded()
                self.send_response(reply.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.cut_after is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    if isinstance(data, FileBody):
                        data.write_to(self.wfile, reply.cut_after)
                    elif reply.cut_after is not None:
                        self.wfile.write(data[:reply.cut_after])
                    elif reply.chunk_delay:
                        for start in range(0, len(data), 1 << 16):
                            self.wfile.write(data[start:start + (1 << 16)])
                            self.wfile.flush()
                            time.sleep(reply.chunk_delay)
                    else:
                        self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    return
                if reply.cut_after is not None:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "https" if tls is not None else "http"
        if tls is not None:           # HTTPS: a client that does not trust it never gets in
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.host = host
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"emu-{name}",
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
