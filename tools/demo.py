#!/usr/bin/env python3
"""The main job, end to end, on a fresh Linux machine with Python 3.11:

    python3 tools/demo.py [--release 5.0] [--photo PHOTO] [--prompt chair] [--output demo.blend]

Builds the extension zip with Blender's own tool, installs it into headless Blender (the
pinned bpy module of the chosen release), and runs `recon3d generate` — the same code as
`blender --command recon3d generate` — on a photo. By default the hosted service is played by
the provider emulator from tests/ on loopback (no key or network needed), returning a
SAM-3D-shaped model; with --real it talks to the real service using your key from the
environment (SEGMIND_API_KEY, …). The result is saved as a .blend you can open in Blender,
by default ~/.cache/recon3d/demo/recon3d-demo.blend (never in the source tree; the path is
printed at the end). Everything else it makes lives in a temp dir removed at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.dont_write_bytecode = True     # nothing a tool runs may land in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import blenders  # noqa: E402
import build  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent("""
    import os, sys, subprocess, importlib
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    work = WORK
    photo = PHOTO
    if not REAL:
        from emulator import Emulator, TEST_KEYS
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "make_fixtures.py"),
                        os.path.join(work, "fixtures")], check=True, capture_output=True)
        emu = Emulator()
        emu.segmind.result = open(os.path.join(work, "fixtures", "sam3d_posed.glb"), "rb").read()
        emu.segmind.duration = 2.0
        os.environ["RECON3D_SEGMIND_URL"] = emu.segmind_url
        os.environ["SEGMIND_API_KEY"] = TEST_KEYS["segmind"]
        photo = photo or os.path.join(work, "fixtures", "photo.png")
        print(f"demo: provider emulator on {emu.api.url} (CDN {emu.cdn.url})", flush=True)
    import bpy
    if REAL:
        bpy.context.preferences.system.use_online_access = True
    repo = os.path.join(work, "repo")
    os.makedirs(repo, exist_ok=True)
    bpy.context.preferences.extensions.repos.new(name="recon3d_demo", module="recon3d_demo",
                                                 custom_directory=repo)
    assert bpy.ops.extensions.package_install_files(filepath=ZIP, repo="recon3d_demo",
                                                    enable_on_install=True) == {"FINISHED"}
    cli = importlib.import_module("bl_ext.recon3d_demo.recon3d.cli")
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    code = cli.main(["generate", photo, "--provider", PROVIDER, "--prompt", PROMPT,
                     "--output", OUTPUT])
    for obj in bpy.data.objects:
        dims = ", ".join(f"{d:.3f}" for d in obj.dimensions)
        print(f"demo: {obj.name}: {len(obj.data.vertices):,} vertices, size {dims} m, "
              f"scale {tuple(obj.scale)}, in {obj.users_collection[0].name}")
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(code)
""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default="5.0", choices=sorted(blenders.RELEASES))
    parser.add_argument("--photo", help="input photo (default: a generated test photo)")
    parser.add_argument("--prompt", default="chair")
    parser.add_argument("--provider", default="segmind_sam3d")
    parser.add_argument("--output", default=str(blenders.cache_root() / "demo" /
                                                "recon3d-demo.blend"))
    parser.add_argument("--real", action="store_true",
                        help="use the real hosted service (needs its key in the environment)")
    args = parser.parse_args()

    py = blenders.ensure_venv(args.release)
    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    work = tempfile.mkdtemp(prefix="recon3d-demo-")
    try:
        result = _run(args, py, work, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"demo: {'done, open ' + output + ' in Blender' if result == 0 else 'failed'}")
    return result


def _run(args, py, work: str, output: str) -> int:
    zip_path = build.build(Path(work) / "dist", args.release)
    env = dict(os.environ, BLENDER_USER_RESOURCES=os.path.join(work, "user"),
               RECON3D_DATA_DIR=os.path.join(work, "data"), PYTHONDONTWRITEBYTECODE="1")
    code = CHILD
    for name, value in (("ROOT", str(ROOT)), ("WORK", work), ("ZIP", str(zip_path)),
                        ("PHOTO", args.photo and os.path.abspath(args.photo)),
                        ("PROMPT", args.prompt), ("PROVIDER", args.provider),
                        ("OUTPUT", output), ("REAL", args.real)):
        code = f"{name} = {value!r}\n" + code
    return subprocess.call([str(py), "-c", code], env=env)


if __name__ == "__main__":
    sys.exit(main())
