#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run every benchmark and print its numbers (ratios are against baselines measured in the
same run). Uses the pinned venv of one Blender release (default 5.0) and the built zip.

    python3 bench/run.py [--release 4.2] [name ...]      names: polling download drain import shared
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True     # nothing a tool runs may land in the source tree
sys.path.insert(0, str(HERE.parent / "tools"))
import blenders  # noqa: E402
import build  # noqa: E402

BENCHES = ["polling", "download", "drain", "import", "shared"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--release", default="5.0", choices=sorted(blenders.RELEASES))
    parser.add_argument("names", nargs="*", default=BENCHES)
    args = parser.parse_args()
    py = blenders.ensure_venv(args.release)
    zip_path = build.build(Path(tempfile.mkdtemp(prefix="recon3d-bench-dist-")), args.release)
    env = dict(os.environ, RECON3D_ZIP=str(zip_path), PYTHONDONTWRITEBYTECODE="1")
    failed = 0
    for name in args.names:
        print(f"\n== {name} (Blender {args.release}) ==", flush=True)
        failed |= subprocess.call([str(py), str(HERE / f"{name}.py")], cwd=str(HERE), env=env)
    return failed


if __name__ == "__main__":
    sys.exit(main())
