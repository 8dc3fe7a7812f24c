# SPDX-License-Identifier: GPL-3.0-or-later
"""`blender --command recon3d …` and, for the bpy module (which has no --command), the same
code as `cli.main(argv)`.

    recon3d generate PHOTO_OR_FOLDER… [--provider ID] [--jobs N] [--prompt TEXT]…
                           [--seed N] [--point X,Y]… [--box X1,Y1,X2,Y2]… [--mask FILE]
                           [--option NAME=VALUE]… [--placement cursor|origin|original]
                           [--size LENGTH] [--match-camera] [--layout grid|row|original]
                           [--export DIR] [--preview DIR] [--timeout S] [--output FILE.blend]
                           [--shard K/N] [--resume] [--dry-run]
    recon3d jobs
    recon3d import JOB_ID [--placement …] [--size …] [--output FILE.blend]
    recon3d cancel JOB_ID
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading

import bpy

from . import api
from .addon import runtime
from .blender import batch
from .errors import Recon3DError
from .jobs.batches import BatchManifest
from .providers import REGISTRY, provider_class


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
    """NAME=VALUE; true and false in any case are booleans (True, FALSE); otherwise the value
    is read as a JSON literal when it is one (50000, 1.5, null, "quoted text", [1, 2],
    {"a": 1}), else taken as text (studio → "studio"). A whole number written without a
    decimal point is an integer even with an exponent (1e3 → 1000; 1.0 and 1e-3 are
    floats)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE")
    word = value.strip().lower()
    if word in ("true", "false"):
        return name.strip(), word == "true"
    try:
        parsed = json.loads(value, parse_constant=_not_json, parse_float=_number)
    except ValueError:
        parsed = value
    return name.strip(), parsed


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")     # NaN, Infinity: taken as text


def _number(text: str):
    number = float(text)
    if not math.isfinite(number):
        _not_json(text)                             # 1e999: taken as text
    return int(number) if number.is_integer() and "." not in text else number


def _shard(text: str):
    k, sep, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"'{text}' is not K/N with 1 ≤ K ≤ N (e.g. 2/8)")
    return k, n


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon3d", description="Turn a photo into a 3D model.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="make models from photos and import them")
    gen.add_argument("images", nargs="*", metavar="PHOTO_OR_FOLDER",
                     help="photos, or folders of photos")
    gen.add_argument("--provider", default="segmind_sam3d", choices=sorted(REGISTRY))
    gen.add_argument("--jobs", type=int, metavar="N",
                     help="jobs running on the service at once (default: the preference)")
    gen.add_argument("--prompt", action="append", default=[],
                     help="what to model; repeat it for several objects of each photo")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--point", action="append", type=_numbers(2), default=[],
                     metavar="X,Y")
    gen.add_argument("--box", action="append", type=_numbers(4), default=[],
                     metavar="X1,Y1,X2,Y2")
    gen.add_argument("--mask")
    gen.add_argument("--option", action="append", type=_option, default=[],
                     metavar="NAME=VALUE",
                     help="a provider option, e.g. decimationTarget=50000; true/false in any "
                          "case are booleans, other values are read as JSON when they are JSON "
                          "(50000, 1e3, [1,2]), else as text. A name "
                          "the model does not declare is sent unchecked (and said so)")
    gen.add_argument("--timeout", type=float, help="stop waiting after this many seconds")
    gen.add_argument("--layout", choices=batch.LAYOUTS,
                     help="grid or row: results side by side, never overlapping (default "
                          "grid); original: where --placement puts each")
    gen.add_argument("--export", metavar="DIR", help="also write each result as a GLB here")
    gen.add_argument("--preview", metavar="DIR",
                     help="write a small rendered PNG per result and a contact sheet here")
    gen.add_argument("--shard", type=_shard, metavar="K/N",
                     help="only every N-th photo, starting with the K-th (for render farms: "
                          "task K of N)")
    gen.add_argument("--resume", action="store_true",
                     help="finish the unfinished jobs of the last interrupted batch (of "
                          "these photos, if given); nothing is sent again")
    gen.add_argument("--dry-run", action="store_true",
                     help="check every photo and show the cost where the service tells it; "
                          "nothing is sent")
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
    argv = list(argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:          # argparse already printed why
        return int(exc.code or 0)
    try:
        if args.command == "generate":
            return _generate(args, argv)
        if args.command == "jobs":
            for job in api.jobs():
                extra = f"  {job.error or job.notice}" if job.error or job.notice else ""
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


RESUME_HINT = "blender -b --command recon3d generate --resume"


def _generate(args, argv: list[str]) -> int:
    if args.resume and not args.images:
        manifest = BatchManifest.latest_unfinished(runtime.data_dir())
        if manifest is None:
            raise Recon3DError("There is no unfinished batch to resume.", code="not_found")
        print(f"recon3d: resuming batch {manifest.id}: {' '.join(manifest.argv)}", flush=True)
        argv = manifest.argv
        args = _parser().parse_args(argv + ["--resume"])
        _resolve_paths(args, manifest.cwd)     # as they were meant where the batch started
    else:
        # Blender's own file functions may resolve a relative path against another folder
        # than the one the command was run in (4.2 does): every path is made absolute here.
        _resolve_paths(args, os.getcwd())
    if not args.images:
        raise Recon3DError("Give at least one photo or folder of photos.", code="input")
    photos = batch.expand_photos(args.images)
    if args.shard:
        k, n = args.shard
        photos = photos[k - 1::n]
        if not photos:
            print(f"recon3d: shard {k}/{n} holds no photo; nothing to do.")
            return 0
    unchecked = provider_class(args.provider).describe_unchecked(dict(args.option))
    if unchecked:        # a typo would otherwise pass unseen
        print(f"recon3d: sent unchecked (not among the options Recon3D knows for "
              f"{args.provider}; the service decides): {unchecked}", file=sys.stderr,
              flush=True)
    items = [{"image": p, "prompt": q} for p in photos for q in (args.prompt or [None])]
    total = len(items)
    order = {}

    def progress(result):
        index = order.setdefault(id(result), len(order) + 1)
        extra = (f" {len(result.objects)} object(s): "
                 f"{', '.join(o.name for o in result.objects)}" if result.ok else
                 f"  {result.error}" if result.error else
                 f"  {result.progress:4.0%}" if result.state == "running" else "")
        print(f"recon3d: [{index}/{total}] {result.name}: {result.state}{extra}", flush=True)

    try:
        with _ctrl_c_interrupts():
            results = api.reconstruct_many(
                items, provider=args.provider, jobs=args.jobs, layout=args.layout,
                placement=args.placement, target_size=args.size,
                match_camera=args.match_camera, timeout=args.timeout, resume=args.resume,
                dry_run=args.dry_run, on_update=progress,
                _argv=[a for a in argv if a != "--resume"], seed=args.seed,
                points=args.point or None, boxes=args.box or None, mask=args.mask,
                options=dict(args.option))
    except api.BatchInterrupted as stop:
        _summary(stop.results)
        running = sum(1 for r in stop.results if r.state == "unfinished")
        print(f"recon3d: interrupted; nothing was saved. {running} job(s) keep running on "
              f"the service. Finish them without paying again: {RESUME_HINT}",
              file=sys.stderr)
        return 130
    if args.dry_run:
        return _dry_run_report(results)
    done = [r for r in results if r.ok]
    names = _unique_names(done)
    if args.export:
        os.makedirs(args.export, exist_ok=True)
        for result, name in zip(done, names):
            path = batch.export_glb(result.objects, os.path.join(args.export, f"{name}.glb"))
            print(f"recon3d: exported {path}")
    if args.preview and done:
        pngs, sheet = batch.render_previews(list(zip(names, (r.objects for r in done))),
                                            args.preview)
        print(f"recon3d: {len(pngs)} preview(s) and the contact sheet {sheet}")
    if done:
        _save(args.output)
    _summary(results)
    failed = results.failures
    if failed:
        print(f"recon3d: {len(failed)} of {len(results)} photo(s) did not make it:",
              file=sys.stderr)
        for result in failed:
            print(f"  {result.photo}: {result.error or result.state}", file=sys.stderr)
        if any(r.state == "unfinished" for r in failed):
            print(f"recon3d: the unfinished ones keep running; finish them: {RESUME_HINT}",
                  file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _ctrl_c_interrupts():
    """Ctrl-C raises KeyboardInterrupt while the batch waits, whatever Blender set up (under
    `blender -b` Python may not own SIGINT, and the process would just die)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _resolve_paths(args, cwd: str) -> None:
    def resolve(path):
        return path if path is None else os.path.join(cwd, path)
    args.images = [resolve(p) for p in args.images]
    for name in ("mask", "output", "export", "preview"):
        setattr(args, name, resolve(getattr(args, name)))


def _dry_run_report(results) -> int:
    for result in results:
        cost = "unknown" if result.estimate is None else result.estimate
        verdict = "ok" if result.state == "checked" else f"refused: {result.error}"
        print(f"recon3d: {result.name}: {verdict}; estimated cost: {cost}")
    refused = [r for r in results if r.state != "checked"]
    print(f"recon3d: dry run: {len(results) - len(refused)} of {len(results)} photo(s) would "
          f"be sent; nothing was sent.")
    return 1 if refused else 0


def _summary(results) -> None:
    rows = [("photo", "model", "state", "seconds", "cost", "objects", "error")]
    for r in results:
        seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
        cost = "" if r.cost is None else str(r.cost)
        notice = r.job.notice if r.job is not None and r.job.notice else ""
        error = (r.error or (f"note: {notice}" if notice else "")).replace("\n", " ")
        rows.append((os.path.basename(r.photo) + (f" [{r.prompt}]" if r.prompt else ""),
                     _model(r.provider), r.state, seconds, cost, str(len(r.objects)),
                     error[:120] + ("…" if len(error) > 120 else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


def _model(provider: str) -> str:
    try:
        return provider_class(provider).model or provider
    except Recon3DError:
        return provider


def _unique_names(results) -> list[str]:
    names, used = [], set()
    for result in results:
        name, n = result.name, 2
        while name in used:
            name, n = f"{result.name}-{n}", n + 1
        used.add(name)
        names.append(name)
    return names


def _save(path: str | None) -> None:
    if path:
        path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=path)
        print(f"recon3d: saved {path}")
