"""The Blender releases Recon3D supports, and the venv that stands in for each.

Each venv holds the bpy wheel of that release plus the requests/urllib3/numpy versions that the
release bundles, so the add-on meets the same library versions as in a real Blender. Test-only
tools (pytest, jsonschema, hypothesis) live here and never in the extension zip.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True     # nothing a tool runs may land in the source tree

# name -> pinned requirements. Library pins follow what each Blender release bundles.
RELEASES: dict[str, list[str]] = {
    "4.2": ["bpy==4.2.23", "requests==2.27.1", "urllib3==1.26.20", "charset-normalizer==2.0.12",
            "idna==3.7", "certifi==2024.7.4", "numpy==1.24.3"],
    "4.5": ["bpy==4.5.15", "requests==2.32.3", "urllib3==2.2.3", "numpy==1.26.4"],
    "5.0": ["bpy==5.0.1", "requests==2.32.3", "urllib3==2.5.0", "numpy==1.26.4"],
    # 5.2 LTS: Blender's build_files/build_environment/cmake/versions.cmake of the libraries
    # the bpy 5.2.3 wheel was built with (its libpng 1.6.58 and FFmpeg 8.1 match).
    "5.2": ["bpy==5.2.3", "requests==2.32.3", "urllib3==2.4.0", "charset-normalizer==3.4.1",
            "idna==3.10", "certifi==2025.4.26", "numpy==2.3.4"],
}
#: releases whose bpy wheel needs another Python than the 3.11 running the tools
PYTHON_313 = {"5.2"}
# rfc3986-validator lets jsonschema check "format": "uri" (else it passes anything);
# cryptography makes the network tests' certificate authority (no openssl command needed)
TEST_TOOLS = ["pytest==8.3.4", "jsonschema==4.23.0", "rfc3986-validator==0.1.1",
              "hypothesis==6.122.3", "cryptography==44.0.0", "cffi==1.17.1",
              "pycparser==2.22"]


def cache_root() -> Path:
    """Venvs live outside the clone so a fresh clone reuses them (CI, later sessions)."""
    base = os.environ.get("RECON3D_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "recon3d")
    return Path(base)


def venv_python(release: str) -> Path:
    return cache_root() / f"venv-{release}" / "bin" / "python"


def base_python(release: str, log=print) -> str:
    """The interpreter a release's venv is made from."""
    if release in PYTHON_313:
        import python313
        return str(python313.find(log))
    return sys.executable


def ensure_venv(release: str, log=print) -> Path:
    """Create (once) the venv for a release; reinstall only when its pins (or, for 3.13, the
    base interpreter) change."""
    base = base_python(release, log) if release in PYTHON_313 else None
    return ensure_pinned_venv(f"venv-{release}", RELEASES[release] + TEST_TOOLS, log, base=base)


def ensure_pinned_venv(name: str, reqs: list[str], log=print, *, base: str | None = None) -> Path:
    """Create (once) the venv `name` under cache_root() holding exactly these pinned
    requirements, made from `base` (else the Python running this); reinstall only when the pins
    or the base change. A lock keeps concurrent runs from building it twice. Returns its
    python."""
    digest = hashlib.sha256("\n".join(reqs + ([base] if base else [])).encode()).hexdigest()[:16]
    root = cache_root() / name
    marker = root / ".recon3d-pins"
    py = root / "bin" / "python"

    def ready() -> bool:
        return py.exists() and marker.exists() and marker.read_text().strip() == digest

    if ready():
        return py
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():                     # another run made it while we waited
            return py
        log(f"[{name}] installing {' '.join(reqs)}")
        subprocess.run([base or sys.executable, "-m", "venv", "--clear", str(root)], check=True)
        # pip's output goes to a log, shown only if the install fails.
        log_path = root / "pip-install.log"
        with open(log_path, "w") as fh:
            code = subprocess.call([str(py), "-m", "pip", "install", *reqs], stdout=fh,
                                   stderr=subprocess.STDOUT)
        if code != 0:
            sys.stderr.write(log_path.read_text()[-5000:])
            raise SystemExit(f"[{name}] pip install failed (exit {code}); log: {log_path}")
        marker.write_text(digest)
    return py


def bpy_scripts_dir(release: str) -> Path:
    """`bpy/<ver>/scripts` inside the venv (Blender's bundled add-ons live below it)."""
    out = subprocess.run(
        [str(venv_python(release)), "-c",
         "import importlib.util,os;s=importlib.util.find_spec('bpy');"
         "print(os.path.dirname(s.origin))"],
        check=True, capture_output=True, text=True).stdout.strip()
    return Path(out) / release / "scripts"


if __name__ == "__main__":
    for name in (sys.argv[1:] or RELEASES):
        print(ensure_venv(name))
