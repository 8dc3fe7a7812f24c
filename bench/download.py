# SPDX-License-Identifier: GPL-3.0-or-later
"""Peak memory while downloading a 200 MB result, and a download cut half-way.

The emulator runs in this process; the download runs in a child process so its peak RSS
(ru_maxrss) is its own: the figure is the rise of the child's peak over its RSS just before
the download. Target: < 30 MB.

    python bench/download.py [--mb 200]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, BENCH)
from common import mount_core
r3d = mount_core()
from r3d.providers.files import check_model_bytes
from r3d.providers.http import HttpClient, HttpConfig, RetryPolicy
from r3d.errors import ServiceError

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

config = HttpConfig(service="CDN", base_url=BASE, allow_online=False,
                    retry=RetryPolicy(base_delay=0.05))
client = HttpClient(config, lambda r: ServiceError(str(r.status_code)))
client.session.get(BASE + "/files/none", timeout=5)          # warm: imports, connection pool
before = rss_mb()
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
t0 = time.perf_counter()
size = client.download(URL, DEST, max_bytes=1 << 31, check=lambda h: check_model_bytes(h, "CDN"))
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
print("RESULT:" + json.dumps(dict(size=size, seconds=seconds, rss_before=before,
                                  peak_before=peak_before, peak=peak,
                                  parts=[f for f in os.listdir(os.path.dirname(DEST)) if f.endswith(".part")])))
sys.stdout.flush(); os._exit(0)
"""


def make_glb(path: Path, megabytes: int) -> str:
    """A valid-looking GLB of the given size (JSON chunk + a BIN chunk of pseudo-random bytes)."""
    doc = json.dumps({"asset": {"version": "2.0"}, "buffers": [{"byteLength": 0}]}).encode()
    doc += b" " * (-len(doc) % 4)
    total = megabytes * 1_000_000
    bin_len = total - 12 - 8 - len(doc) - 8
    bin_len -= bin_len % 4
    with open(path, "wb") as fh:
        fh.write(b"glTF" + struct.pack("<II", 2, 12 + 8 + len(doc) + 8 + bin_len))
        fh.write(struct.pack("<I", len(doc)) + b"JSON" + doc)
        fh.write(struct.pack("<I", bin_len) + b"BIN\0")
        block = os.urandom(1 << 20)
        left = bin_len
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n
    return str(path)


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_child(base, url, dest) -> dict:
    code = f"BENCH={str(ROOT / 'bench')!r}\nBASE={base!r}\nURL={url!r}\nDEST={dest!r}\n" + CHILD
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT:"):
            return json.loads(line[7:])
    raise SystemExit(f"download child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    from emulator import Emulator, FileBody, Reply

    work = Path(tempfile.mkdtemp(prefix="recon3d-bench-dl-"))
    source = make_glb(work / "big.glb", args.mb)
    emu = Emulator()
    url = emu.publish_file(source)

    (work / "out").mkdir()
    full = run_child(emu.cdn.url, url, str(work / "out" / "a.glb"))
    rise = full["peak"] - full["rss_before"]
    print(f"download benchmark: {full['size'] / 1e6:.0f} MB result in {full['seconds']:.2f} s "
          f"({full['size'] / 1e6 / full['seconds']:.0f} MB/s)")
    print(f"  RSS before download {full['rss_before']:.1f} MB, peak during download "
          f"{full['peak']:.1f} MB: peak memory rise {rise:.1f} MB (target < 30 MB)")
    print(f"  complete and identical: {sha256(work / 'out' / 'a.glb') == sha256(source)}")

    # Cut half-way once: the client retries; the partial file never takes the final name.
    half = os.path.getsize(source) // 2
    name = url.rsplit("/", 1)[-1]
    first_run = len(emu.requests(server="cdn", contains=name))
    emu.fault(lambda req: req.server == "cdn" and name in req.path,
              Reply(200, FileBody(source), content_type="model/gltf-binary", cut_after=half))
    cut = run_child(emu.cdn.url, url, str(work / "out" / "b.glb"))
    requests_made = len(emu.requests(server="cdn", contains=name)) - first_run
    print(f"  cut at {half / 1e6:.0f} MB: {requests_made} requests (the cut one, then a retry), "
          f"final size "
          f"{cut['size'] / 1e6:.0f} MB, identical: "
          f"{sha256(work / 'out' / 'b.glb') == sha256(source)}, partial files left: "
          f"{len(cut['parts'])}")
    emu.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
