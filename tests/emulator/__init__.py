# SPDX-License-Identifier: GPL-3.0-or-later
"""A provider emulator for tests and benchmarks, written from shared/PROVIDERS.md.

Two loopback servers: `api` speaks the services' protocols (each under its own path prefix,
so one server plays them all) and `cdn`, on another port, serves result files the way the
vendors' CDNs do. Every request is recorded; faults can be switched on per request.

    emu = Emulator()
    os.environ["RECON3D_SEGMIND_URL"] = emu.segmind_url
    emu.segmind.result = glb_bytes
    ...
    assert len(emu.segmind.submits) == 1
"""
from __future__ import annotations

import itertools
import os
import ssl
import threading
import time
import uuid

from .fal import FalService
from .server import Fault, FileBody, Recorded, Reply, Server
from .runware import RunwareService
from .scenario import ScenarioService
from .segmind import SegmindService

TEST_KEYS = {"segmind": "test-segmind-key-5f2c9a", "runware": "test-runware-key-81d0e4",
             "scenario_key": "test-scenario-key-3b7a", "scenario_secret": "test-scenario-secret-c41f",
             "fal": "test-fal-key-id-7d21:test-fal-secret-e90b"}


class Emulator:
    def __init__(self):
        self.lock = threading.Lock()
        self.log: list[Recorded] = []
        self.faults: list[Fault] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self._names = itertools.count(1)
        self.expired: set[str] = set()
        self.segmind = SegmindService(self, TEST_KEYS["segmind"])
        self.scenario = ScenarioService(self, TEST_KEYS["scenario_key"],
                                        TEST_KEYS["scenario_secret"])
        self.runware = RunwareService(self, TEST_KEYS["runware"])
        self.fal = FalService(self, TEST_KEYS["fal"])
        self.services = {"/segmind/": self.segmind, "/scenario/": self.scenario,
                         "/runware/": self.runware, "/fal/": self.fal, "/fal-rest/": self.fal}
        self.api = Server("api", self._route_api, self.log, self.faults, self.lock)
        self.cdn = Server("cdn", self._route_cdn, self.log, self.faults, self.lock)
        self.extra_servers: list[Server] = []

    # -- setup ----------------------------------------------------------------------------------
    @property
    def segmind_url(self) -> str:
        return f"{self.api.url}/segmind"

    @property
    def scenario_url(self) -> str:
        return f"{self.api.url}/scenario/v1"

    @property
    def runware_url(self) -> str:
        return f"{self.api.url}/runware/v1"

    @property
    def fal_url(self) -> str:
        """The queue root (queue.fal.run)."""
        return f"{self.api.url}/fal"

    @property
    def fal_rest_url(self) -> str:
        """The REST root (rest.fal.ai): storage tokens and upload initiation."""
        return f"{self.api.url}/fal-rest"

    def environment(self) -> dict:
        """Endpoint overrides and test keys, as the add-on reads them."""
        return {"RECON3D_SEGMIND_URL": self.segmind_url,
                "RECON3D_SCENARIO_URL": self.scenario_url,
                "RECON3D_RUNWARE_URL": self.runware_url,
                "RECON3D_FAL_URL": self.fal_url,
                "RECON3D_FAL_REST_URL": self.fal_rest_url,
                "FAL_KEY": TEST_KEYS["fal"],
                "SEGMIND_API_KEY": TEST_KEYS["segmind"],
                "RUNWARE_API_KEY": TEST_KEYS["runware"],
                "SCENARIO_SDK_API_KEY": TEST_KEYS["scenario_key"],
                "SCENARIO_SDK_API_SECRET": TEST_KEYS["scenario_secret"]}

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.faults.clear()
            self.files.clear()
            self.expired.clear()
        for service in self.services.values():
            service.reset()

    def publish_file(self, path: str, content_type: str = "model/gltf-binary") -> str:
        """Put a (large) file on the CDN, streamed from disk; return its URL."""
        name = f"{uuid.uuid4().hex[:8]}-{os.path.basename(path)}"
        with self.lock:
            self.files[name] = (FileBody(path), content_type)
        return f"{self.cdn.url}/files/{name}"

    def publish(self, data: bytes, content_type: str = "model/gltf-binary",
                name: str | None = None) -> str:
        """Put a file on the CDN; return its URL."""
        name = name or f"{uuid.uuid4().hex[:8]}-{next(self._names)}.glb"
        with self.lock:
            self.files[name] = (data, content_type)
        return f"{self.cdn.url}/files/{name}"

    def publish_expired(self, name: str) -> str:
        """A signed URL whose signature has expired: the CDN answers 403."""
        with self.lock:
            self.expired.add(name)
        return f"{self.cdn.url}/files/{name}"

    def fault(self, match, reply: Reply, times: int = 1, after_service: bool = False) -> Fault:
        """Answer requests for which `match(req)` (or whose path contains `match`, a string)
        is true with `reply`, `times` times."""
        if isinstance(match, str):
            text = match
            match = lambda req, text=text: text in req.path     # noqa: E731
        fault = Fault(match, reply, times, after_service=after_service)
        with self.lock:
            self.faults.append(fault)
        return fault

    def requests(self, server: str | None = None, contains: str = "",
                 method: str | None = None) -> list[Recorded]:
        with self.lock:
            return [r for r in self.log if (server is None or r.server == server)
                    and contains in r.path and (method is None or r.method == method)]

    def serve_tls(self, certfile: str, keyfile: str) -> str:
        """Serve the services' protocols over HTTPS too, with this certificate, on another
        loopback port (recorded as server "tls"); returns its root URL. Closed with the
        emulator."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        server = Server("tls", self._route_api, self.log, self.faults, self.lock, tls=context)
        self.extra_servers.append(server)
        return server.url

    def close(self) -> None:
        for server in (self.api, self.cdn, *self.extra_servers):
            server.close()

    # -- routing --------------------------------------------------------------------------------
    def _route_api(self, req: Recorded) -> Reply:
        for prefix, service in self.services.items():
            if req.path.startswith(prefix):
                return service.handle(req, req.path[len(prefix) - 1:])
        return Reply(404, {"error": "no such endpoint"})

    def _route_cdn(self, req: Recorded) -> Reply:
        upload = self.fal.handle_cdn(req)       # fal's CDN host takes uploads too
        if upload is not None:
            return upload
        name = req.path.split("?", 1)[0].rsplit("/", 1)[-1]
        with self.lock:
            item = self.files.get(name)
            expired = name in self.expired
        if expired:
            return Reply(403, "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>"
                              "<Message>Request has expired</Message></Error>",
                         content_type="application/xml")
        if item is None:
            return Reply(404, "<html><body>NoSuchKey</body></html>", content_type="text/html")
        data, ctype = item
        return Reply(200, data, content_type=ctype)


def peak_per_second(times: list[float]) -> int:
    """The most requests in any 1 s window (of recorded request times)."""
    times = sorted(times)
    start = peak = 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


__all__ = ["Emulator", "Fault", "FileBody", "Recorded", "Reply", "TEST_KEYS", "peak_per_second",
           "wait_until"]
