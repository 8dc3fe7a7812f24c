#!/usr/bin/env python3
"""Validate the manifest and build recon3d-<version>.zip with Blender's own extension tool.

Uses `blender --command extension build|validate` when a Blender binary is on PATH, otherwise
the same tool shipped inside the bpy wheel (bl_pkg/cli/blender_ext.py) of a pinned venv.
Prints the zip's path on the last line (by default in ~/.cache/recon3d/dist, never in the
source tree).

Refuses to build when the source tree holds a file that is not part of the extension (a saved
.blend, a stray zip, an editor's backup): the extension is its manifest, LICENSE, README.md and
the .py modules of its packages; tests/, bench/, tools/ and the other paths the manifest
excludes never ship. The built zip is checked against the same rule.

    python3 tools/build.py [--output-dir DIR] [--release 4.2]
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
from typing import Iterable

sys.dont_write_bytecode = True     # nothing a tool runs may land in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import blenders  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: what the extension consists of besides the .py modules of its packages
EXTENSION_FILES = {"blender_manifest.toml", "LICENSE", "README.md"}


def strays(names: Iterable[str]) -> list[str]:
    """Those of `names` (files, '/'-separated paths relative to the extension's root) that are
    not part of the extension: anything but EXTENSION_FILES and the .py modules (and .json
    data) of the root package and of its sub-packages (folders with an __init__.py, all the
    way up)."""
    names = {n for n in names if not n.endswith("/")}

    def in_package(path: str) -> bool:
        folders = path.split("/")[:-1]
        return all("/".join(folders[:depth] + ["__init__.py"]) in names
                   for depth in range(len(folders) + 1))

    return sorted(n for n in names if n not in EXTENSION_FILES
                  and not (n.endswith((".py", ".json")) and in_package(n)))


def source_files(source: Path) -> list[str]:
    """The files of the source tree that Blender's builder would consider: all but the paths
    the manifest's [build] paths_exclude_pattern anchors at the root, and __pycache__."""
    manifest = tomllib.loads((source / "blender_manifest.toml").read_text())
    anchored = {p.strip("/") for p in manifest.get("build", {}).get("paths_exclude_pattern", [])
                if p.startswith("/")}
    found = []
    for folder, dirs, files in os.walk(source):
        rel = Path(folder).relative_to(source).as_posix()
        rel = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if d != "__pycache__" and (rel + d) not in anchored]
        found += [rel + f for f in files if (rel + f) not in anchored]
    return found


def refuse_strays(names: Iterable[str], where: str) -> None:
    bad = strays(names)
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise SystemExit(f"build: {where} holds files that are not part of the extension: "
                         f"{shown}. Move them out of the source tree (the tools write their "
                         f"outputs under {blenders.cache_root()}) or delete them.")


def extension_tool(release: str) -> list[str]:
    blender = shutil.which("blender")
    if blender and not os.environ.get("RECON3D_USE_WHEEL_TOOL"):
        return [blender, "--factory-startup", "--command", "extension"]
    py = blenders.ensure_venv(release)
    tool = blenders.bpy_scripts_dir(release) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    return [str(py), str(tool)]


def build(output_dir: Path, release: str = "4.2", source: Path = ROOT) -> Path:
    refuse_strays(source_files(source), f"the source tree {source}")
    manifest = tomllib.loads((source / "blender_manifest.toml").read_text())
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tool = extension_tool(release)
    subprocess.run([*tool, "validate", str(source)], check=True)
    output_dir.mkdir(parents=True, exist_ok=True)       # `build` does not create it
    if zip_path.exists():
        zip_path.unlink()
    subprocess.run([*tool, "build", "--source-dir", str(source), "--output-filepath",
                    str(zip_path)], check=True)
    subprocess.run([*tool, "validate", str(zip_path)], check=True)
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    try:
        refuse_strays(names, f"the built {zip_path.name}")
    except SystemExit:
        zip_path.unlink()
        raise
    return zip_path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", default=str(blenders.cache_root() / "dist"))
    parser.add_argument("--release", default="4.2", choices=sorted(blenders.RELEASES))
    args = parser.parse_args()
    print(build(Path(args.output_dir), args.release))
    return 0


if __name__ == "__main__":
    sys.exit(main())
