#!/usr/bin/env python3
"""Run the test suite inside real headless Blender, once per supported release.

    python3 tools/run_tests.py [--release 4.2 --release 5.0] [pytest args…]

Installs what it needs (a venv per release with the pinned bpy wheel and the library versions
that release bundles, plus pytest/jsonschema/hypothesis; cached in ~/.cache/recon3d), builds
the extension zip with Blender's own tool, then runs pytest in each venv with Blender's user
folders in a temp dir. Exits non-zero if any release fails.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blenders  # noqa: E402
import build  # noqa: E402
import conformance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", action="append", choices=sorted(blenders.RELEASES))
    parser.add_argument("--no-conformance", action="store_true",
                        help="skip the SDK conformance suite (tools/conformance.py)")
    args, pytest_args = parser.parse_known_args()
    releases = args.release or list(blenders.RELEASES)

    started = time.monotonic()
    for release in releases:
        blenders.ensure_venv(release)
    out_dir = Path(tempfile.mkdtemp(prefix="recon3d-dist-"))
    zip_path = build.build(out_dir, releases[0])
    print(f"[tests] built {zip_path} in {time.monotonic() - started:.0f} s", flush=True)

    results = {}
    totals = {"passed": 0, "failed": 0, "error": 0}
    for release in releases:
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
                        "SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET"):
                env.pop(var, None)          # the tests set their own, pointing at loopback
            cmd = [str(blenders.venv_python(release)), "-m", "pytest", "-p", "no:cacheprovider",
                   "-q", "-rfEs", str(ROOT / "tests"), *pytest_args]
            print(f"\n[tests] Blender {release}: {' '.join(cmd[1:])}", flush=True)
            code, counts = _run_and_count(cmd, env)
        results[release] = code
        for key in totals:
            totals[key] += counts.get(key, 0)
        if code != 0 and not counts.get("failed") and not counts.get("error"):
            totals["error"] += 1        # a crash or an interrupted run counts as a failure
        print(f"[tests] Blender {release}: exit {code} in {time.monotonic() - t0:.0f} s",
              flush=True)

    if args.no_conformance:
        print("\n[tests] SDK conformance: SKIPPED (--no-conformance)", flush=True)
    else:
        code, counts = conformance.run(_run_and_count, pytest_args)
        results[conformance.LABEL] = code
        totals = {key: totals[key] + counts.get(key, 0) for key in totals}
        totals["error"] += int(code != 0 and not counts.get("failed") and not counts.get("error"))

    print("\n[tests] summary: " + ", ".join(
        f"{r if r == conformance.LABEL else f'Blender {r}'} "
        f"{'passed' if c == 0 else f'FAILED (exit {c})'}" for r, c in results.items())
        + f" — {time.monotonic() - started:.0f} s in all")
    print(f"tests: {totals['passed']} passed, {totals['failed'] + totals['error']} failed")
    return 0 if all(c == 0 for c in results.values()) else 1


def _run_and_count(cmd, env) -> tuple[int, dict]:
    """Run pytest, echoing its output live, and read the counts from its closing line."""
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    counts: dict = {}
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if " in " in line and ("passed" in line or "failed" in line or "error" in line):
            found = dict((word.rstrip("s"), int(num)) for num, word in
                         re.findall(r"(\d+) (passed|failed|errors?)", line))
            if found:
                counts = {"passed": found.get("passed", 0), "failed": found.get("failed", 0),
                          "error": found.get("error", 0)}
    return proc.wait(), counts


if __name__ == "__main__":
    sys.exit(main())
