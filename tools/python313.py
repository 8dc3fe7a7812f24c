#!/usr/bin/env python3
"""A working Python 3.13 for the Blender releases whose bpy wheel is cp313-only (5.2).

    python3 tools/python313.py [--build]      prints the interpreter's path on the last line

Found, in this order: one built earlier by this tool (in the cache, next to the venvs), then
`python3.13` on PATH, /usr/bin, /usr/local/bin and pyenv's ~/.pyenv/versions/3.13.*. Each is
run to check that it really works (pyenv shims exist without an interpreter behind them) and
has what the tests need: ssl, sqlite3, zlib, ctypes, lzma, bz2 and venv with pip.

None there (a CI machine with only Python 3.11): CPython 3.13 is built once from the
upstream tarball inside Debian's own `python3.13` source package (fetched with apt through a
private source list in the cache; the system's apt configuration is not touched), into
<cache>/python-3.13. Missing build dependencies are installed with apt-get. Takes a few
minutes on 2 cores; no PGO/LTO. `--build` (or RECON3D_BUILD_PYTHON=1) skips the machine's
interpreters; `--build` also rebuilds.

A file lock keeps two concurrent runs from building twice; the install is marked complete
only after the built interpreter passed the checks, so a half-finished build is never used.
"""
from __future__ import annotations

import argparse
import fcntl
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
from blenders import cache_root  # noqa: E402

DEBIAN_SOURCES = "deb-src {signed}http://deb.debian.org/debian trixie main\n"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: Debian packages CPython's optional modules need (checked with dpkg, installed if missing)
BUILD_DEPS = ["build-essential", "pkg-config", "xz-utils", "libssl-dev", "zlib1g-dev",
              "libffi-dev", "libbz2-dev", "liblzma-dev", "libsqlite3-dev", "libreadline-dev",
              "libncurses-dev", "uuid-dev"]
#: what a usable interpreter must import (the venv check below covers pip)
NEEDED_MODULES = "ssl, sqlite3, zlib, ctypes, lzma, bz2, venv, ensurepip"
COMPLETE = ".recon3d-complete"


def prefix() -> Path:
    return cache_root() / "python-3.13"


def works(python: str | os.PathLike) -> bool:
    """Does this interpreter run, is it 3.13 and does it have the modules we need?"""
    code = f"import sys, {NEEDED_MODULES}; sys.exit(sys.version_info[:2] != (3, 13))"
    try:
        return subprocess.run([str(python), "-c", code], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def candidates() -> list[str]:
    found = [shutil.which("python3.13"), "/usr/bin/python3.13", "/usr/local/bin/python3.13"]
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found += sorted(glob.glob(os.path.join(pyenv, "versions", "3.13.*", "bin", "python3.13")),
                    key=_version_key, reverse=True)
    return [p for p in dict.fromkeys(found) if p and os.path.exists(p)]


def _version_key(path: str) -> tuple:
    version = Path(path).parent.parent.name.split(".")
    return tuple(int(v) if v.isdigit() else -1 for v in version)


def built() -> Path | None:
    py = prefix() / "bin" / "python3.13"
    return py if (prefix() / COMPLETE).exists() and works(py) else None


def find(log=print, build_it: bool = False) -> Path:
    """The interpreter to make 3.13 venvs with: found, else built (once)."""
    forced = build_it or os.environ.get("RECON3D_BUILD_PYTHON") not in (None, "", "0")
    if not build_it:
        py = built()
        if py:
            return py
    if not forced:
        for path in candidates():
            if works(path):
                return Path(path)
        log("[python 3.13] none on this machine that works; building one from Debian's "
            "python3.13 source package")
    return build(log, rebuild=build_it)


@contextmanager
def _lock(path: Path, log):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[python 3.13] another run is building it; waiting ({path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(log=print, rebuild: bool = False) -> Path:
    target = prefix()
    with _lock(target.parent / "python-3.13.lock", log):
        if not rebuild and built():             # another run finished it while we waited
            return target / "bin" / "python3.13"
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="recon3d-python313-"))
        logfile = target.parent / "python-3.13-build.log"
        try:
            _install_build_deps(log)
            source = _fetch_source(work, log)
            log(f"[python 3.13] building {source.name} into {target} (log: {logfile})")
            shutil.rmtree(target, ignore_errors=True)      # never reuse a half-finished one
            jobs = str(os.cpu_count() or 2)
            with open(logfile, "w") as out:
                for step in (["./configure", f"--prefix={target}", "--with-ensurepip=install",
                              "--disable-test-modules"],
                             ["make", f"-j{jobs}"], ["make", "install"]):
                    out.write(f"\n$ {' '.join(step)}\n")
                    out.flush()
                    code = subprocess.call(step, cwd=source, stdout=out,
                                           stderr=subprocess.STDOUT)
                    if code != 0:
                        sys.stderr.write(logfile.read_text()[-4000:])
                        raise SystemExit(f"[python 3.13] `{' '.join(step)}` failed (exit "
                                         f"{code}); log: {logfile}")
            py = target / "bin" / "python3.13"
            _check(py, work)
            (target / COMPLETE).write_text(source.name + "\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"[python 3.13] built {py} in {time.monotonic() - started:.0f} s")
        return py


def _check(py: Path, work: Path) -> None:
    """The modules the tests need import, and a venv with pip can be made from it."""
    if not works(py):
        missing = subprocess.run(
            [str(py), "-c", "import importlib\nfor m in '" + NEEDED_MODULES + "'.split(', '):\n"
             "    try: importlib.import_module(m)\n    except Exception as e: print(m, e)"],
            capture_output=True, text=True).stdout
        raise SystemExit(f"[python 3.13] the built interpreter lacks modules: {missing}")
    venv = work / "check-venv"
    subprocess.run([str(py), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"], check=True,
                   capture_output=True)


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def _install_build_deps(log) -> None:
    missing = [pkg for pkg in BUILD_DEPS + ([] if os.path.exists(KEYRING)
                                             else ["debian-archive-keyring"])
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                                 text=True).stdout.split()[-1:] != ["installed"]]
    if not missing:
        return
    log(f"[python 3.13] installing build dependencies: {' '.join(missing)}")
    install = [*_sudo(), "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.call(install, env=env, stdout=subprocess.DEVNULL) != 0:
        subprocess.run([*_sudo(), "apt-get", "update", "-q"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, check=True, stdout=subprocess.DEVNULL)


def _fetch_source(work: Path, log) -> Path:
    """Debian's python3.13 source package, through a private apt source list (checked by apt
    against Debian's archive key); returns the unpacked upstream tree of its orig tarball."""
    apt_dir = cache_root() / "apt-trixie-src"
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    sources = apt_dir / "sources.list"
    signed = f"[signed-by={KEYRING}] " if os.path.exists(KEYRING) else ""
    sources.write_text(DEBIAN_SOURCES.format(signed=signed))
    apt = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={sources}", "-o",
           "Dir::Etc::SourceParts=-", "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o",
           f"Dir::Cache={apt_dir / 'cache'}", "-o", "APT::Sandbox::User=root"]
    log("[python 3.13] fetching Debian's python3.13 source package (trixie)")
    subprocess.run([*apt, "update"], check=True, stdout=subprocess.DEVNULL)
    download = work / "download"
    download.mkdir()
    subprocess.run([*apt, "source", "--download-only", "python3.13"], cwd=download, check=True,
                   stdout=subprocess.DEVNULL)
    origs = sorted(download.glob("python3.13_*.orig.tar.*"))
    origs = [o for o in origs if not o.name.endswith(".asc")]
    if not origs:
        raise SystemExit("[python 3.13] Debian's source package has no orig tarball")
    with tarfile.open(origs[0]) as archive:
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(work / "src", **kwargs)
    trees = [p for p in (work / "src").iterdir() if (p / "configure").exists()]
    if len(trees) != 1:
        raise SystemExit(f"[python 3.13] unexpected layout in {origs[0].name}")
    return trees[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true",
                        help="build (again) from Debian's source package, ignoring the "
                             "interpreters on this machine")
    args = parser.parse_args()
    print(find(build_it=args.build))
    return 0


if __name__ == "__main__":
    sys.exit(main())
