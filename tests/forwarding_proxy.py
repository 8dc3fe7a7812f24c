# SPDX-License-Identifier: GPL-3.0-or-later
"""A tiny forwarding HTTP proxy on 127.0.0.1 for the network tests: it takes the
absolute-URI requests a client sends to a proxy for http:// targets and the CONNECT tunnels
it opens for https:// ones, forwards each to its target (loopback only: the emulator) and
records what it forwarded (a tunnel as CONNECT host:port). With `credentials`, a
request without the matching Proxy-Authorization is answered 407, as a studio proxy does.
`drop_answers_to`: for a request whose URL contains it, the proxy forwards it, then closes
the connection instead of passing the answer on (a reset after the request was sent)."""
from __future__ import annotations

import base64
import http.client
import selectors
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive",
              "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Forwarded:
    method: str
    url: str                    # the absolute URI the client asked for
    proxy_authorization: str


def _pipe(client: socket.socket, target: socket.socket) -> None:
    """Copy bytes both ways until either side closes (a CONNECT tunnel)."""
    with selectors.DefaultSelector() as sel, target:
        sel.register(client, selectors.EVENT_READ, target)
        sel.register(target, selectors.EVENT_READ, client)
        while True:
            for key, _ in sel.select(timeout=30):
                try:
                    data = key.fileobj.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    return
                key.data.sendall(data)


class ForwardingProxy:
    def __init__(self, credentials: str | None = None):
        self.forwarded: list[Forwarded] = []
        self.refused: list[str] = []
        self.drop_answers_to: str | None = None
        self.lock = threading.Lock()
        expected = ("Basic " + base64.b64encode(credentials.encode()).decode()
                    if credentials else None)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = urlsplit(self.path)
                if not self._admit(target.scheme == "http" and target.port is not None
                                   and target.hostname in ("127.0.0.1", "localhost")):
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    path = target.path + (f"?{target.query}" if target.query else "")
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in HOP_BY_HOP}
                    conn.request(self.command, path or "/", body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    if outer.drop_answers_to and outer.drop_answers_to in self.path:
                        self.close_connection = True
                        return
                    self._answer(resp.status, data, {k: v for k, v in resp.getheaders()
                                                     if k.lower() not in HOP_BY_HOP
                                                     and k.lower() != "content-length"})
                finally:
                    conn.close()

            def _admit(self, loopback: bool) -> bool:
                """Forward only to loopback, only with the right credentials; recorded."""
                auth = self.headers.get("Proxy-Authorization", "")
                if not loopback:
                    self._answer(502, b"this test proxy forwards to loopback only")
                    return False
                if expected and auth != expected:
                    with outer.lock:
                        outer.refused.append(self.path)
                    self._answer(407, b"proxy authentication required",
                                 {"Proxy-Authenticate": 'Basic realm="test"'})
                    return False
                with outer.lock:
                    outer.forwarded.append(Forwarded(self.command, self.path, auth))
                return True

            def _answer(self, status: int, data: bytes, headers: dict | None = None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def do_CONNECT(self):
                host, _, port = self.path.rpartition(":")
                if not self._admit(host in ("127.0.0.1", "localhost") and port.isdigit()):
                    return
                target = socket.create_connection((host, int(port)), timeout=30)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                _pipe(self.connection, target)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test-proxy",
                                       daemon=True)
        self.thread.start()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
