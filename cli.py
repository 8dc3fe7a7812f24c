# SPDX-License-Identifier: GPL-3.0-or-later
"""`blender --command recon3d …` and, for the bpy module (which has no --command), the same
code as `cli.main(argv)`.

    recon3d generate PHOTO [--provider ID] [--prompt TEXT] [--seed N] [--point X,Y]…
                           [--box X1,Y1,X2,Y2]… [--mask FILE] [--option NAME=VALUE]…
                           [--placement cursor|origin|original] [--size LENGTH]
                           [--match-camera] [--timeout S] [--output FILE.blend]
    recon3d jobs
    recon3d import JOB_ID [--placement …] [--size …] [--output FILE.blend]
    recon3d cancel JOB_ID
"""
from __future__ import annotations

import argparse
import sys

import bpy

from . import api
from .errors import Recon3DError
from .providers import REGISTRY


def _numbers(count: int):
    def parse(text: str):
        try:
            values = [float(v) for v in text.replace(" ", "").split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {count} comma-separated numbers")
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"'{text}' needs {count} comma-separated numbers")
        return tuple(values)
    return parse


def _option(text: str):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE")
    low = value.strip().lower()
    if low in ("true", "false"):
        return name.strip(), low == "true"
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"option {name}: '{value}' is not a number, true or "
                                         f"false") from None
    return name.strip(), int(number) if number.is_integer() and "." not in value else number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon3d", description="Turn a photo into a 3D model.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="make a model from a photo and import it")
    gen.add_argument("image")
    gen.add_argument("--provider", default="segmind_sam3d", choices=sorted(REGISTRY))
    gen.add_argument("--prompt")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--point", action="append", type=_numbers(2), default=[],
                     metavar="X,Y")
    gen.add_argument("--box", action="append", type=_numbers(4), default=[],
                     metavar="X1,Y1,X2,Y2")
    gen.add_argument("--mask")
    gen.add_argument("--option", action="append", type=_option, default=[],
                     metavar="NAME=VALUE", help="a provider option, e.g. decimationTarget=50000")
    gen.add_argument("--timeout", type=float)
    _placement_args(gen)

    sub.add_parser("jobs", help="list jobs")
    imp = sub.add_parser("import", help="import a finished job")
    imp.add_argument("job_id")
    _placement_args(imp)
    can = sub.add_parser("cancel", help="cancel a job")
    can.add_argument("job_id")
    return parser


def _placement_args(p) -> None:
    p.add_argument("--placement", default="cursor", choices=("cursor", "origin", "original"))
    p.add_argument("--size", type=float, help="fit the largest side to this length")
    p.add_argument("--match-camera", action="store_true",
                   help="add a camera matching the photo (use with --placement original)")
    p.add_argument("--output", help="save the .blend here afterwards")


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:          # argparse already printed why
        return int(exc.code or 0)
    try:
        if args.command == "generate":
            objects = api.reconstruct(args.image, provider=args.provider, prompt=args.prompt,
                                      seed=args.seed, points=args.point or None,
                                      boxes=args.box or None, mask=args.mask,
                                      options=dict(args.option),
                                      placement=args.placement, target_size=args.size,
                                      match_camera=args.match_camera, timeout=args.timeout)
            print(f"recon3d: imported {len(objects)} object(s): "
                  + ", ".join(o.name for o in objects))
            _save(args.output)
        elif args.command == "jobs":
            for job in api.jobs():
                extra = f"  {job.error}" if job.error else ""
                if job.owner is not None:
                    extra += f"  (running in another Blender: {job.owner.describe()})"
                print(f"{job.id}  {job.provider:18} {job.state:11} {job.progress:4.0%}{extra}")
        elif args.command == "import":
            job = api.get_job(args.job_id).wait()
            objects = api.import_job(job, placement=args.placement, target_size=args.size,
                                     match_camera=args.match_camera)
            print(f"recon3d: imported {len(objects)} object(s)")
            _save(args.output)
        elif args.command == "cancel":
            api.cancel(api.get_job(args.job_id))
            print(f"recon3d: canceled {args.job_id}")
    except Recon3DError as exc:
        print(f"recon3d: {exc}", file=sys.stderr)
        return 1
    return 0


def _save(path: str | None) -> None:
    if path:
        bpy.ops.wm.save_as_mainfile(filepath=path)
        print(f"recon3d: saved {path}")
