# SPDX-License-Identifier: GPL-3.0-or-later
"""fal.ai's queue protocol, storage upload and four image-to-3D endpoints, as the official
clients (`fal-client` 1.0.x, `@fal-ai/client`) speak them (shared/PROVIDERS.md; details and
sources in the fal findings note).

Queue (under the emulator's `/fal` prefix, the `queue.fal.run` root):
    POST /{endpoint id}                         submit -> request_id + status/response/cancel URLs
    GET  /{owner}/{alias}/requests/{id}/status  202 IN_QUEUE (queue_position) / IN_PROGRESS,
                                                200 COMPLETED (a failed run too, with `error`)
    GET  /{owner}/{alias}/requests/{id}         the model's output, or its error (422 …)
    PUT  /{owner}/{alias}/requests/{id}/cancel  OK / CANCELLATION_REQUESTED / ALREADY_COMPLETED /
                                                NOT_FOUND
The status, result and cancel URLs drop the endpoint's sub-path; a URL that keeps it is 404.
REST (under `/fal-rest`, the `rest.fal.ai` root): storage token and upload initiation.
CDN (the emulator's `cdn` server, `v3.fal.media`): `POST /files/upload` with the token, and
`PUT /upload/{ticket}` for the initiate route; result and uploaded files are served from it.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import io
import json
import math
import random
import re
import secrets
import struct
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Callable

from .server import Recorded, Reply

# -- the endpoints' inputs ------------------------------------------------------------------------
# A check takes a value and returns an error message, or None when the value is fine.
Check = Callable[[object], "str | None"]


def _number(lo: float, hi: float, integer: bool = False) -> Check:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return f"value is not a valid {'integer' if integer else 'number'}"
        if not lo <= value <= hi:
            return f"ensure this value is between {lo} and {hi}"
        return None
    return check


def _choice(*values) -> Check:
    return lambda value: None if value in values else \
        f"value is not a valid enumeration member; permitted: {', '.join(map(repr, values))}"


def _is(kind: type, name: str) -> Check:
    return lambda value: None if isinstance(value, kind) and not (
        kind is not bool and isinstance(value, bool)) else f"value is not a valid {name}"


def _items(check_item: Check) -> Check:
    def check(value):
        if not isinstance(value, list):
            return "value is not a valid list"
        for item in value:
            problem = check_item(item)
            if problem:
                return problem
        return None
    return check


def _object(required: dict, optional: dict | None = None) -> Check:
    def check(value):
        if not isinstance(value, dict):
            return "value is not a valid dict"
        for key, item_check in required.items():
            if key not in value:
                return f"field {key} required"
            problem = item_check(value[key])
            if problem:
                return f"{key}: {problem}"
        for key, item_check in (optional or {}).items():
            if value.get(key) is not None:
                problem = item_check(value[key])
                if problem:
                    return f"{key}: {problem}"
        unknown = set(value) - set(required) - set(optional or {})
        return f"extra fields not permitted: {sorted(unknown)}" if unknown else None
    return check


TEXT, FLAG, URL = _is(str, "string"), _is(bool, "boolean"), _is(str, "string")
SEED = _number(0, 2 ** 32 - 1, integer=True)
COORD = _number(0, 1e6)
OBJECT_ID = _number(0, 1000, integer=True)
#: the point label: PROVIDERS.md writes the strings "1"/"0"; the integers are accepted too
LABEL = _choice("0", "1", 0, 1)
SAMPLERS = {   # TRELLIS-style sampler settings (Pixal3D and TRELLIS.2 share them)
    "ss_guidance_strength": _number(0, 10), "ss_guidance_rescale": _number(0, 1),
    "ss_sampling_steps": _number(1, 50, integer=True), "ss_rescale_t": _number(1, 6),
    "shape_slat_guidance_strength": _number(0, 10), "shape_slat_guidance_rescale": _number(0, 1),
    "shape_slat_sampling_steps": _number(1, 50, integer=True),
    "shape_slat_rescale_t": _number(1, 6),
    "tex_slat_guidance_strength": _number(0, 10), "tex_slat_guidance_rescale": _number(0, 1),
    "tex_slat_sampling_steps": _number(1, 50, integer=True), "tex_slat_rescale_t": _number(1, 6),
    "texture_size": _choice("1024", "2048", "4096", 1024, 2048, 4096),
    "decimation_target": _number(10_000, 2_000_000, integer=True),
    "remesh": FLAG, "seed": SEED,
}


@dataclass(frozen=True)
class Endpoint:
    id: str
    image: str                    # the input field that carries the photo
    params: dict                  # other input fields -> check
    outputs: str                  # which output builder (see FalService._output)

    @property
    def app(self) -> str:
        """owner/alias: what the status, result and cancel URLs keep of the id."""
        return "/".join(self.id.split("/")[:2])


ENDPOINTS = {e.id: e for e in (
    Endpoint("fal-ai/sam-3/3d-objects", "image_url", {
        "prompt": TEXT, "mask_urls": _items(URL), "seed": SEED,
        "point_prompts": _items(_object({"x": COORD, "y": COORD, "label": LABEL},
                                        {"object_id": OBJECT_ID})),
        "box_prompts": _items(_object({"x_min": COORD, "y_min": COORD, "x_max": COORD,
                                       "y_max": COORD}, {"object_id": OBJECT_ID})),
        "detection_threshold": _number(0.1, 1.0), "export_textured_glb": FLAG,
        "pointmap_url": URL}, "sam3d"),
    Endpoint("fal-ai/pixal3d", "image_url", {
        **SAMPLERS, "resolution": _choice("512", "1024", "1536", 512, 1024, 1536)}, "glb"),
    Endpoint("fal-ai/trellis-2", "image_url", {
        **SAMPLERS, "resolution": _choice("512", "1024", "1536", 512, 1024, 1536)}, "glb"),
    Endpoint("fal-ai/hunyuan-3d/v3.1/pro/image-to-3d", "input_image_url", {
        "back_image_url": URL, "left_image_url": URL, "right_image_url": URL,
        "prompt": TEXT, "generate_pbr": FLAG, "enable_pbr": FLAG,
        "face_count": _number(40_000, 1_500_000, integer=True),
        "generate_type": _choice("Normal", "LowPoly", "Geometry"), "seed": SEED}, "hunyuan"),
)}

IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
               (b"RIFF", "image/webp"))


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or baseline/progressive JPEG, else None."""
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker, size = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + size
    return None


# -- results --------------------------------------------------------------------------------------
SH_C0 = 0.28209479177387814      # 3DGS colour = 0.5 + SH_C0 * f_dc (spherical-harmonics band 0)
SPLAT_PROPERTIES = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


def splat_ply(positions, colours, opacity: float = 0.9, size: float = 0.01) -> bytes:
    """A 3D Gaussian Splatting PLY (binary little endian, the INRIA layout TRELLIS/SAM 3D
    write): one vertex per Gaussian with x,y,z, zero normals, f_dc_0..2 = (rgb - 0.5) / SH_C0,
    opacity as a logit, log scales, and the identity rotation (rot_0..3 = w, x, y, z)."""
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(positions)}\n"
              + "".join(f"property float {name}\n" for name in SPLAT_PROPERTIES)
              + "end_header\n").encode("ascii")
    logit = math.log(opacity / (1.0 - opacity))
    log_size = math.log(size)
    row = struct.Struct("<17f")
    body = b"".join(row.pack(x, y, z, 0.0, 0.0, 0.0, *((c - 0.5) / SH_C0 for c in rgb), logit,
                             log_size, log_size, log_size, 1.0, 0.0, 0.0, 0.0)
                    for (x, y, z), rgb in zip(positions, colours))
    return header + body


def sample_splat(count: int = 400, seed: int = 0, centre=(0.0, 0.0, 0.0),
                 size=(0.4, 0.3, 0.2)) -> tuple[bytes, list[tuple[float, float, float]]]:
    """A coloured ellipsoid of `count` Gaussians; returns (ply bytes, the rgb of each)."""
    rng = random.Random(seed)
    positions, colours = [], []
    for _ in range(count):
        while True:
            p = [rng.uniform(-1, 1) for _ in range(3)]
            if sum(v * v for v in p) <= 1:
                break
        positions.append(tuple(c + 0.5 * s * v for c, s, v in zip(centre, size, p)))
        t = (p[0] + 1) / 2          # red on -x, blue on +x, green varying with z
        colours.append((round(0.9 - 0.8 * t, 4), round(0.3 + 0.3 * p[2], 4),
                        round(0.1 + 0.8 * t, 4)))
    return splat_ply(positions, colours), colours


def minimal_glb() -> bytes:
    """The smallest valid GLB: one triangle, no material."""
    positions = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    gltf = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "buffers": [{"byteLength": len(positions)}],
            "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(positions)}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                           "min": [0, 0, 0], "max": [1, 1, 0]}]}
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text + \
        struct.pack("<I4s", len(positions), b"BIN\x00") + positions
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


# -- jobs -----------------------------------------------------------------------------------------
@dataclass
class FalJob:
    id: str
    endpoint: Endpoint
    body: dict
    created: float
    queue_time: float
    duration: float
    queue_position: int
    fail: tuple[int, dict] | None            # (HTTP status, body) of the result GET
    objects: int = 1
    image: tuple[int, int] | None = None      # the decoded photo's (width, height)
    canceled_at: float | None = None
    output: dict | None = None
    files: list[str] = field(default_factory=list)    # CDN names of its result files
    fetched: bool = False

    def state(self, now: float) -> str:
        if self.canceled_at is not None:
            return "COMPLETED"
        age = now - self.created
        if age < self.queue_time:
            return "IN_QUEUE"
        return "IN_PROGRESS" if age < self.queue_time + self.duration else "COMPLETED"

    def finished_at(self) -> float:
        return self.canceled_at if self.canceled_at is not None else \
            self.created + self.queue_time + self.duration

    def position(self, now: float) -> int:
        left = 1.0 - (now - self.created) / self.queue_time if self.queue_time else 0.0
        return max(0, math.ceil(self.queue_position * left) - 1) if left > 0 else 0


class FalService:
    """Knobs for the next submits: `queue_time`, `queue_position` (initial place in the queue),
    `duration` (running time; `duration_for(endpoint_id, body)`, when set, gives each submit
    its own), `results` (GLB bytes, one per object), `scene` (the combined GLB of SAM 3D;
    default: the first result), `detections` (objects a text prompt finds), `splats` (PLY bytes
    per object; default: generated), `metadata` (SAM 3D's list; default: objects side by side),
    `quat_order`, `fail` ((status, body) for the result GET, e.g. `validation_error(...)` or
    `model_error(...)`), `expire_after` (seconds after completion when the request and its CDN
    files are gone), `expired_status` (404 or 410), `drop_outputs` (output keys left out),
    `url_base` (another base for the returned URLs), `max_body` (submit bodies above it answer
    413), `cancel_effective` (a running job stops when asked).
    Records: `submits`, `status_polls`, `result_gets`, `cancels`, `uploads`, `invalid`."""

    def __init__(self, emulator, key: str):
        self.emu = emulator
        self.auth = f"Key {key}"
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.jobs: dict[str, FalJob] = {}
            self.submits: list[Recorded] = []
            self.status_polls: list[Recorded] = []
            self.result_gets: list[Recorded] = []
            self.cancels: list[tuple[str, str]] = []     # (request id, answer)
            self.uploads: list[dict] = []
            self.invalid: list[str] = []
            self.tokens: dict[str, float] = {}           # CDN token -> expiry
            self.tickets: dict[str, tuple[str, str]] = {}   # initiate ticket -> (name, type)
            self.queue_time = 0.1
            self.queue_position = 2
            self.duration = 0.2
            self.duration_for = None      # (endpoint id, body) -> running time of a submit
            self.results: list[bytes] = []
            self.scene: bytes | None = None
            self.detections = 1
            self.splats: list[bytes] | None = None
            self.metadata: list[dict] | None = None
            self.quat_order = "xyzw"
            self.fail: tuple[int, dict] | None = None
            self.expire_after: float | None = None
            self.expired_status = 404
            self.drop_outputs: set[str] = set()
            self.url_base: str | None = None
            self.max_body: int | None = None
            self.cancel_effective = True
            self.token_lifetime = 3600.0
            self.max_running = 0

    @property
    def billed(self) -> int:
        """Requests accepted by the queue (each one is a paid run unless canceled in queue)."""
        return sum(1 for j in self.jobs.values()
                   if j.canceled_at is None or j.canceled_at >= j.created + j.queue_time)

    def running(self) -> int:
        now = time.time()
        return sum(1 for j in self.jobs.values() if not j.fetched and j.canceled_at is None
                   and j.state(now) != "COMPLETED")

    # -- routing --------------------------------------------------------------------------------
    def handle(self, req: Recorded, path: str) -> Reply:
        if req.path.startswith("/fal-rest/"):
            return self._rest(req, req.path[len("/fal-rest"):])
        if req.headers.get("authorization") != self.auth:
            return Reply(401, {"detail": "Invalid API key: check FAL_KEY"})
        path = path.split("?", 1)[0].strip("/")
        if "/requests/" in path:
            app, rest = path.split("/requests/", 1)
            request_id, _, action = rest.partition("/")
            job = self._job(app, request_id)
            if req.method == "GET" and action == "status":
                return self._status(req, job)
            if req.method == "GET" and action == "":
                return self._result(req, job)
            if req.method == "PUT" and action == "cancel":
                return self._cancel(request_id, job)
            return Reply(405, {"detail": "Method Not Allowed"})
        if req.method == "POST" and path in ENDPOINTS:
            return self._submit(req, ENDPOINTS[path])
        return Reply(404, {"detail": f"Application '{path}' not found"})

    def _job(self, app: str, request_id: str) -> FalJob | None:
        job = self.jobs.get(request_id)
        if job is None or job.endpoint.app != app:
            return None            # e.g. a URL that kept the endpoint's sub-path
        if self._expired(job):
            self._drop_files(job)
            return None
        return job

    def _expired(self, job: FalJob) -> bool:
        now = time.time()
        return (self.expire_after is not None and job.state(now) == "COMPLETED"
                and now - job.finished_at() > self.expire_after)

    def _drop_files(self, job: FalJob) -> None:
        with self.emu.lock:
            for name in job.files:
                self.emu.files.pop(name, None)

    def _urls(self, job: FalJob) -> dict:
        base = f"{self.url_base or self.emu.fal_url}/{job.endpoint.app}/requests/{job.id}"
        return {"status_url": f"{base}/status", "response_url": base,
                "cancel_url": f"{base}/cancel"}

    @staticmethod
    def _server_headers(job_id: str | None = None) -> dict:
        """fal's own servers mark their answers (an ingress error page does not)."""
        return {"x-fal-request-id": job_id or str(uuid.uuid4())}

    # -- queue ----------------------------------------------------------------------------------
    def _submit(self, req: Recorded, endpoint: Endpoint) -> Reply:
        if self.max_body is not None and len(req.body) > self.max_body:
            return Reply(413, {"detail": f"Request body too large (limit {self.max_body} "
                                         "bytes): upload files to fal storage and send URLs"},
                         headers=self._server_headers())
        body = req.json
        if not isinstance(body, dict):
            return Reply(422, {"detail": [{"loc": ["body"], "msg": "value is not a valid dict",
                                           "type": "type_error.dict"}]},
                         headers=self._server_headers())
        problems, image = self._validate(endpoint, body)
        fail = validation_error(problems) if problems else self.fail
        with self.lock:
            duration = self.duration_for(endpoint.id, body) if self.duration_for else \
                self.duration
            job = FalJob(str(uuid.uuid4()), endpoint, body, time.time(), self.queue_time,
                         duration, self.queue_position, fail,
                         objects=self._objects(endpoint, body), image=image)
            self.jobs[job.id] = job
            self.submits.append(req)
            self.invalid.extend(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems)
            self.max_running = max(self.max_running, self.running())
        return Reply(200, {"status": "IN_QUEUE", "request_id": job.id, **self._urls(job),
                           "queue_position": self.queue_position},
                     headers=self._server_headers(job.id))

    def _validate(self, endpoint: Endpoint, body: dict):
        """([(loc, msg)], image size): what the model's input schema would refuse."""
        problems: list[tuple[list, str]] = []
        image = None
        if not isinstance(body.get(endpoint.image), str):
            problems.append((["body", endpoint.image], "field required"))
        else:
            data, problem = self._fetch_input(body[endpoint.image])
            if problem:
                problems.append((["body", endpoint.image], problem))
            else:
                image = image_size(data)
        for key, value in body.items():
            if key == endpoint.image or value is None:
                continue
            check = endpoint.params.get(key)
            problem = check(value) if check else "extra fields not permitted"
            if problem:
                problems.append((["body", key], problem))
        for url in body.get("mask_urls") or []:
            problem = self._fetch_input(url)[1] if isinstance(url, str) else None
            if problem:
                problems.append((["body", "mask_urls"], problem))
        return problems, image

    def _fetch_input(self, url: str) -> tuple[bytes, str | None]:
        """What the runner would download for a file input: a data URI or a file on the CDN
        (nothing outside loopback is reachable)."""
        if url.startswith("data:"):
            head, _, payload = url.partition(",")
            if not head.endswith(";base64"):
                return b"", "data URI is not base64"
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                return b"", "data URI is not valid base64"
        elif url.startswith(self.emu.cdn.url + "/files/"):
            with self.emu.lock:
                item = self.emu.files.get(url.rsplit("/", 1)[-1].split("?", 1)[0])
            if item is None or not isinstance(item[0], bytes):
                return b"", "Failed to download the file: 404"
            data = item[0]
        else:
            return b"", "Failed to download the file: host unreachable"
        if not any(data.startswith(magic) for magic, _ in IMAGE_MAGIC):
            return b"", "Could not read the image"
        return data, None

    def _objects(self, endpoint: Endpoint, body: dict) -> int:
        """How many objects SAM 3D reconstructs for this input."""
        if endpoint.outputs != "sam3d":
            return 1
        if body.get("mask_urls"):
            return len(body["mask_urls"])

        def groups(prompts):
            ids = [p.get("object_id") if isinstance(p, dict) else None for p in prompts]
            return len({i for i in ids if i is not None}) + ids.count(None)
        if body.get("box_prompts"):
            return groups(body["box_prompts"])
        if body.get("point_prompts"):
            ids = {p.get("object_id") for p in body["point_prompts"] if isinstance(p, dict)}
            return max(1, len(ids - {None}) + (None in ids))
        return self.detections

    def _status(self, req: Recorded, job: FalJob | None) -> Reply:
        if job is None:
            return Reply(404, {"detail": "Request not found"}, headers=self._server_headers())
        self.status_polls.append(req)
        now = time.time()
        state = job.state(now)
        body: dict = {"status": state, "request_id": job.id,
                      "response_url": self._urls(job)["response_url"]}
        logs = re.search(r"[?&]logs=(1|true)\b", req.path) is not None
        if state == "IN_QUEUE":
            body["queue_position"] = job.position(now)
        else:
            body["logs"] = self._logs(job, now) if logs else None
        if state == "COMPLETED":
            body["metrics"] = {"inference_time": round(job.duration, 3)}
            if job.canceled_at is not None:
                body.update(error="Request was cancelled", error_type="request_cancelled")
            elif job.fail:
                detail = job.fail[1].get("detail")
                body.update(error=detail if isinstance(detail, str) else json.dumps(detail),
                            error_type=job.fail[1].get("error_type", "validation_error"))
            return Reply(200, body, headers=self._server_headers(job.id))
        return Reply(202, body, headers=self._server_headers(job.id))

    @staticmethod
    def _logs(job: FalJob, now: float) -> list[dict]:
        stamp = datetime.datetime.fromtimestamp(job.created + job.queue_time,
                                                datetime.timezone.utc).isoformat()
        lines = ["Loading the model", "Reconstructing"]
        if job.state(now) == "COMPLETED":
            lines.append("Done")
        return [{"message": m, "level": "INFO", "source": "user", "timestamp": stamp}
                for m in lines]

    def _result(self, req: Recorded, job: FalJob | None) -> Reply:
        if job is None:
            return Reply(self.expired_status, {"detail": "Request not found"},
                         headers=self._server_headers())
        self.result_gets.append(req)
        state = job.state(time.time())
        if state != "COMPLETED":
            return Reply(400, {"detail": "Request is still in progress"},
                         headers=self._server_headers(job.id))
        if job.canceled_at is not None:
            return Reply(400, {"detail": "Request was cancelled",
                               "error_type": "request_cancelled"},
                         headers=self._server_headers(job.id))
        if job.fail:
            return Reply(job.fail[0], job.fail[1], headers=self._server_headers(job.id))
        with self.lock:
            if job.output is None:
                job.output = self._output(job)
            job.fetched = True
        return Reply(200, job.output, headers=self._server_headers(job.id))

    def _cancel(self, request_id: str, job: FalJob | None) -> Reply:
        if job is None:
            self.cancels.append((request_id, "NOT_FOUND"))
            return Reply(404, {"status": "NOT_FOUND"}, headers=self._server_headers())
        now = time.time()
        state = job.state(now)
        if state == "COMPLETED":
            answer, code = "ALREADY_COMPLETED", 400
        elif state == "IN_QUEUE":
            answer, code = "OK", 200
            job.canceled_at = now
        else:
            answer, code = "CANCELLATION_REQUESTED", 202
            if self.cancel_effective:
                job.canceled_at = now
        self.cancels.append((request_id, answer))
        return Reply(code, {"status": answer}, headers=self._server_headers(job.id))

    # -- outputs --------------------------------------------------------------------------------
    def _file(self, job: FalJob, data: bytes, content_type: str, file_name: str) -> dict:
        name = f"{job.id[:8]}-{uuid.uuid4().hex[:6]}-{file_name}"
        url = self.emu.publish(data, content_type, name=name)
        job.files.append(name)
        return {"url": url, "content_type": content_type, "file_name": file_name,
                "file_size": len(data)}

    def _output(self, job: FalJob) -> dict:
        results = self.results or [minimal_glb()]
        glb = "model/gltf-binary"
        if job.endpoint.outputs == "sam3d":
            n = job.objects
            meshes = [results[i % len(results)] for i in range(n)]
            splats = self.splats or [sample_splat(200, seed=i)[0] for i in range(n)]
            scene_splat, _ = sample_splat(200 * n, seed=99)
            output = {
                "model_glb": self._file(job, self.scene or meshes[0], glb, "scene.glb"),
                "gaussian_splat": self._file(job, scene_splat, "application/octet-stream",
                                             "scene.ply"),
                "individual_glbs": [self._file(job, m, glb, f"object_{i}.glb")
                                    for i, m in enumerate(meshes)],
                "individual_splats": [self._file(job, splats[i % len(splats)],
                                                 "application/octet-stream",
                                                 f"object_{i}.ply") for i in range(n)],
                "metadata": self.metadata or [self._pose(i, n) for i in range(n)],
                "artifacts_zip": self._file(job, _zip({"scene.glb": self.scene or meshes[0]}),
                                            "application/zip", "artifacts.zip"),
            }
        elif job.endpoint.outputs == "hunyuan":
            model = self._file(job, results[0], glb, "model.glb")
            output = {"model_glb": model, "model_urls": {
                "glb": self._file(job, results[0], glb, "model.glb"), "obj": None,
                "fbx": None, "usdz": None},
                "seed": job.body.get("seed", 1234)}
        else:
            output = {"model_glb": self._file(job, results[0], glb, "model.glb"),
                      "seed": job.body.get("seed", 42)}
        return {k: v for k, v in output.items() if k not in self.drop_outputs}

    def _pose(self, index: int, count: int) -> dict:
        """Objects side by side 0.6 m apart, 2.5 m in front of the camera (PyTorch3D camera
        frame: +X left, +Y up, +Z forward), unrotated, unit scale."""
        identity = [0.0, 0.0, 0.0, 1.0] if self.quat_order == "xyzw" else [1.0, 0.0, 0.0, 0.0]
        return {"object_index": index, "rotation": identity,
                "translation": [round((index - (count - 1) / 2) * 0.6, 4), 0.0, 2.5],
                "scale": [1.0, 1.0, 1.0],
                "camera_pose": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
                                [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]}

    # -- storage --------------------------------------------------------------------------------
    def _rest(self, req: Recorded, path: str) -> Reply:
        if req.headers.get("authorization") != self.auth:
            return Reply(401, {"detail": "Invalid API key: check FAL_KEY"})
        route, _, query = path.partition("?")
        if req.method == "POST" and route == "/storage/auth/token":
            token = secrets.token_hex(16)
            expires = time.time() + self.token_lifetime
            with self.lock:
                self.tokens[token] = expires
            return Reply(200, {"token": token, "token_type": "Bearer",
                               "base_url": self.emu.cdn.url,
                               "expires_at": datetime.datetime.fromtimestamp(
                                   expires, datetime.timezone.utc).isoformat()})
        if req.method == "POST" and route == "/storage/upload/initiate":
            body = req.json if isinstance(req.json, dict) else {}
            ticket = secrets.token_hex(12)
            name = f"{uuid.uuid4().hex[:8]}-{body.get('file_name') or 'upload.bin'}"
            with self.lock:
                self.tickets[ticket] = (name, body.get("content_type")
                                        or "application/octet-stream")
            return Reply(200, {"upload_url": f"{self.emu.cdn.url}/upload/{ticket}",
                               "file_url": f"{self.emu.cdn.url}/files/{name}"})
        return Reply(404, {"detail": "Not Found"})

    def handle_cdn(self, req: Recorded) -> Reply | None:
        """Uploads on the CDN host; None for requests that are not uploads."""
        route = req.path.split("?", 1)[0]
        if req.method == "POST" and route == "/files/upload":
            scheme, _, token = req.headers.get("authorization", "").partition(" ")
            with self.lock:
                expiry = self.tokens.get(token)
            if scheme != "Bearer" or expiry is None or expiry < time.time():
                return Reply(401, {"detail": "Invalid or expired upload token"})
            file_name = req.headers.get("x-fal-file-name") or "upload.bin"
            name = f"{uuid.uuid4().hex[:8]}-{file_name}"
            return self._store(req, name, req.headers.get("content-type")
                               or "application/octet-stream", route="v3")
        if req.method == "PUT" and route.startswith("/upload/"):
            with self.lock:
                target = self.tickets.pop(route[len("/upload/"):], None)
            if target is None:
                return Reply(403, "<Error><Code>SignatureDoesNotMatch</Code></Error>",
                             content_type="application/xml")
            return self._store(req, target[0], target[1], route="initiate")
        return None

    def _store(self, req: Recorded, name: str, content_type: str, route: str) -> Reply:
        url = self.emu.publish(req.body, content_type, name=name)
        with self.lock:
            self.uploads.append({"route": route, "url": url, "content_type": content_type,
                                 "size": len(req.body)})
        if route == "initiate":
            return Reply(200, b"")
        return Reply(200, {"access_url": url, "content_type": content_type,
                           "file_name": name.split("-", 1)[1], "file_size": len(req.body)})


def validation_error(problems: list[tuple[list, str]]) -> tuple[int, dict]:
    """The result answer of a run whose input the model's schema refused."""
    return 422, {"detail": [{"loc": loc, "msg": msg, "type": "value_error"}
                            for loc, msg in problems]}


def model_error(detail: str, error_type: str = "runtime_error",
                status: int = 422) -> tuple[int, dict]:
    """The result answer of a run the model itself failed (e.g. nothing detected)."""
    return status, {"detail": detail, "error_type": error_type}


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()
