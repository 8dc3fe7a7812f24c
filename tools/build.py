#!/usr/bin/env python3
"""Validate the manifest and build recon3d-<version>.zip with Blender's own extension tool.

Uses `blender --command extension build|validate` when a Blender binary is on PATH, otherwise
the same tool shipped inside the bpy wheel (bl_pkg/cli/blender_ext.py) of a pinned venv.
Prints the zip's path on the last line.

    python3 tools/build.py [--output-dir dist] [--release 4.2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blenders  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: what must never ship in the zip
FORBIDDEN_PREFIXES = ("tests/", "bench/", "tools/", ".ci/", ".git/", "dist/", ".hypothesis/",
                      ".pytest_cache/")


def extension_tool(release: str) -> list[str]:
    blender = shutil.which("blender")
    if blender and not os.environ.get("RECON3D_USE_WHEEL_TOOL"):
        return [blender, "--factory-startup", "--command", "extension"]
    py = blenders.ensure_venv(release)
    tool = blenders.bpy_scripts_dir(release) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    return [str(py), str(tool)]


def build(output_dir: Path, release: str = "4.2") -> Path:
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tool = extension_tool(release)
    subprocess.run([*tool, "validate", str(ROOT)], check=True)
    output_dir.mkdir(parents=True, exist_ok=True)       # `build` does not create it
    if zip_path.exists():
        zip_path.unlink()
    subprocess.run([*tool, "build", "--source-dir", str(ROOT), "--output-filepath",
                    str(zip_path)], check=True)
    subprocess.run([*tool, "validate", str(zip_path)], check=True)
    with zipfile.ZipFile(zip_path) as archive:
        bad = [n for n in archive.namelist() if n.startswith(FORBIDDEN_PREFIXES)]
    if bad:
        raise SystemExit(f"build: the zip holds files that must not ship: {bad[:5]}")
    return zip_path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", default=str(ROOT / "dist"))
    parser.add_argument("--release", default="4.2", choices=sorted(blenders.RELEASES))
    args = parser.parse_args()
    print(build(Path(args.output_dir), args.release))
    return 0


if __name__ == "__main__":
    sys.exit(main())
