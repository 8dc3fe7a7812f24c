#!/usr/bin/env python3
"""Run the test suite inside real headless Blender, once per supported release.

    python3 tools/run_tests.py [--release 4.2 --release 5.0] [--jobs 2] [pytest args…]

Installs what it needs (a venv per release with the pinned bpy wheel and the library versions
that release bundles, plus pytest/jsonschema/hypothesis; cached in ~/.cache/recon3d), builds
the extension zip with Blender's own tool, then runs pytest in each venv with Blender's user
folders in a temp dir; two releases at a time by default (each one's output is printed whole
when it ends). The last line counts tests over all releases. Exits non-zero if any fails.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.dont_write_bytecode = True     # nothing a tool runs may land in the source tree

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blenders  # noqa: E402
import conformance  # noqa: E402
import build  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", action="append", choices=sorted(blenders.RELEASES))
    parser.add_argument("--jobs", type=int, default=2, metavar="N",
                        help="releases tested side by side (default 2; the suite mostly "
                             "waits on the emulator)")
    parser.add_argument("--no-conformance", action="store_true",
                        help="skip the SDK conformance suite (tools/conformance.py)")
    args, pytest_args = parser.parse_known_args()
    releases = args.release or list(blenders.RELEASES)

    started = time.monotonic()
    for release in releases:
        blenders.ensure_venv(release)
    out_dir = Path(tempfile.mkdtemp(prefix="recon3d-dist-"))
    try:
        zip_path = build.build(out_dir, releases[0])
        print(f"[tests] built {zip_path} in {time.monotonic() - started:.0f} s", flush=True)
        jobs = max(1, min(args.jobs, len(releases)))
        if jobs > 1:
            print(f"[tests] {jobs} releases at a time; each one's output is shown whole when "
                  f"it ends", flush=True)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            runs = [pool.submit(_run_release, release, zip_path, pytest_args, live=jobs == 1)
                    for release in releases]
            results = [run.result() for run in runs]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

    results = [(f"Blender {r}", c, counts, t) for r, c, counts, t in results]
    if args.no_conformance:
        print("\n[tests] SDK conformance: SKIPPED (--no-conformance)", flush=True)
    else:
        t0 = time.monotonic()
        code, counts = conformance.run(_run_and_count, pytest_args)
        results.append((conformance.LABEL, code, counts, time.monotonic() - t0))

    totals = {"passed": 0, "failed": 0}
    for _, code, counts, _ in results:
        totals["passed"] += counts.get("passed", 0)
        failed = counts.get("failed", 0) + counts.get("error", 0)
        totals["failed"] += failed or (code != 0)   # a crash or an interrupted run counts too
    print("\n[tests] summary: " + ", ".join(
        f"{r} {'passed' if c == 0 else f'FAILED (exit {c})'} ({t:.0f} s)"
        for r, c, _, t in results) + f" — {time.monotonic() - started:.0f} s in all")
    print(f"tests: {totals['passed']} passed, {totals['failed']} failed")
    return 0 if all(c == 0 for _, c, _, _ in results) else 1


_PRINT = threading.Lock()


def _say(text: str) -> None:
    with _PRINT:
        sys.stdout.write(text)
        sys.stdout.flush()


def _run_release(release: str, zip_path: Path, pytest_args: list[str], live: bool):
    """pytest in the release's venv, Blender's user folders in a temp dir. Its output is
    echoed live when it runs alone, else kept and shown whole when it ends."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"recon3d-user-{release}-") as user:
        env = dict(os.environ)
        env.update({
            "RECON3D_ZIP": str(zip_path),
            "RECON3D_RELEASE": release,
            # Blender's user folders (config, extensions, scripts) go to a temp dir.
            "BLENDER_USER_RESOURCES": user,
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        for var in ("RECON3D_DATA_DIR", "RECON3D_SEGMIND_URL", "RECON3D_SCENARIO_URL",
                    "RECON3D_RUNWARE_URL", "SEGMIND_API_KEY", "RUNWARE_API_KEY",
                    "SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET", "RECON3D_FAL_URL",
                    "RECON3D_FAL_REST_URL", "FAL_KEY"):
            env.pop(var, None)          # the tests set their own, pointing at loopback
        cmd = [str(blenders.venv_python(release)), "-m", "pytest", "-p", "no:cacheprovider",
               "-q", "-rfEs", str(ROOT / "tests"), *pytest_args]
        header = f"\n[tests] Blender {release}: {' '.join(cmd[1:])}\n"
        if live:
            _say(header)
        else:
            _say(f"[tests] Blender {release}: started\n")
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if live:
                _say(line)
        code = proc.wait()
    elapsed = time.monotonic() - t0
    footer = f"[tests] Blender {release}: exit {code} in {elapsed:.0f} s\n"
    _say(footer if live else header + "".join(lines) + footer)
    return release, code, _counts(lines), elapsed


def _run_and_count(cmd, env) -> tuple[int, dict]:
    """Run a pytest command, echoing its output live; (exit code, closing-line counts)."""
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        _say(line)
    return proc.wait(), _counts(lines)


def _counts(lines: list[str]) -> dict:
    """The counts of pytest's closing line ("3 failed, 120 passed, 1 error in 80.1s")."""
    for line in reversed(lines):
        if " in " in line and ("passed" in line or "failed" in line or "error" in line):
            found = dict((word.rstrip("s"), int(num)) for num, word in
                         re.findall(r"(\d+) (passed|failed|errors?)", line))
            if found:
                return found
    return {}


if __name__ == "__main__":
    sys.exit(main())
