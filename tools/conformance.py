#!/usr/bin/env python3
"""Run the conformance suite: the vendors' official Python SDKs drive the provider emulator.

    python3 tools/conformance.py [pytest args…]

The SDKs live in a test-only venv of their own (`venv-sdk` beside the Blender venvs, in
~/.cache/recon3d or $RECON3D_CACHE_DIR), never in a Blender venv (whose pinned requests/urllib3
they may not accept) and never in the zip. tests/conformance/ starts one emulator on 127.0.0.1
and refuses any other host. tools/run_tests.py runs this once per test run (not per Blender
release) and adds its counts to its closing line; `--no-conformance` there skips it.
Needs Python ≥ 3.11 (runware-sdk uses typing.Self).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True     # nothing a tool runs may land in the source tree

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blenders  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "conformance"
VENV = "venv-sdk"
LABEL = "SDK conformance"
# Never add `runware` (0.5.x): it installs a runware/ package over runware-sdk's.
SDK_PINS = ["segmind==1.3.0", "scenario-sdk==2.4.0", "runware-sdk==1.8.0", "fal-client==1.0.3",
            "httpx==0.28.1", "pytest==8.3.4", "jsonschema==4.23.0", "rfc3986-validator==0.1.1"]
#: pytest exits 5 when a -k expression selects none of the suite's tests
NO_TESTS_SELECTED = 5


def ensure_venv(log=print) -> Path:
    py = blenders.ensure_pinned_venv(VENV, SDK_PINS, log)
    clash = subprocess.run([str(py), "-m", "pip", "show", "-q", "runware"],
                           capture_output=True).returncode == 0
    if clash:
        raise SystemExit(f"[{VENV}] the `runware` package (0.5.x) is installed beside "
                         f"runware-sdk and overwrites its runware/ module: delete "
                         f"{py.parent.parent} and run again")
    return py


def selection(pytest_args: list[str]) -> list[str]:
    """The arguments of a Blender-suite run that also make sense here: -k EXPR, -x."""
    out, args = [], iter(pytest_args)
    for arg in args:
        if arg == "-k":
            out += [arg, next(args, "")]
        elif re.fullmatch(r"-k=?.+", arg) or arg in ("-x", "--exitfirst"):
            out.append(arg)
    return out


def command(py: Path, pytest_args: list[str]) -> list[str]:
    # The suite's own rootdir/confcutdir: tests/conftest.py (bpy, Blender) is not loaded.
    return [str(py), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
            "--rootdir", str(SUITE), "--confcutdir", str(SUITE), str(SUITE), *pytest_args]


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"      # nothing lands in the source tree
    return env


def run(runner, pytest_args: list[str] = ()) -> tuple[int, dict]:
    """Run the suite with `runner(cmd, env) -> (exit code, counts)` (run_tests.py's, which
    echoes the output and reads pytest's closing line). A -k that selects none of the suite's
    tests is not a failure: nothing ran, and the counts say so."""
    paths = [a for a in pytest_args if not a.startswith("-") and a.endswith(".py")]
    if paths and not any("conformance" in p for p in paths):
        print(f"\n[tests] {LABEL}: not run (the selection names only Blender test files)",
              flush=True)
        return 0, {}
    cmd = command(ensure_venv(), selection(list(pytest_args)))
    print(f"\n[tests] {LABEL}: {' '.join(cmd[1:])}", flush=True)
    code, counts = runner(cmd, environment())
    if code == NO_TESTS_SELECTED and not any(counts.values()):
        print(f"[tests] {LABEL}: no test matched the selection", flush=True)
        code = 0
    return code, counts


def main() -> int:
    code = subprocess.call(command(ensure_venv(), sys.argv[1:]), cwd=str(ROOT),
                           env=environment())
    return code


if __name__ == "__main__":
    sys.exit(main())
