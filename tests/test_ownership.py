# SPDX-License-Identifier: GPL-3.0-or-later
"""Job ownership across real processes: one owner per job, visible to all, freed by a crash.

jobs/ownership.py is bpy-free, so the processes here are plain Python (this interpreter, no
Blender). Under the suite (`tools/run_tests.py`) the module comes from the installed extension;
run alone with any Python, it comes from the source tree:

    PYTHONDONTWRITEBYTECODE=1 python3 -m pytest --noconftest -p no:cacheprovider \
        --rootdir tests tests/test_ownership.py
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "jobs" / "ownership.py"

# A process that owns jobs, driven line by line: [command, arg] in, one JSON answer out.
CHILD = r"""
import importlib.util, json, os, sys, time
sys.dont_write_bytecode = True           # nothing lands in the source tree
spec = importlib.util.spec_from_file_location("ownership_child", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
spec.loader.exec_module(mod)
own = mod.Ownership(sys.argv[2], sys.argv[3])
for line in sys.stdin:
    cmd, arg = json.loads(line)
    if cmd == "claim":
        out = [i for i in arg if own.claim(i)]
    elif cmd == "race":                     # claim arg["ids"] starting at arg["at"]
        while time.time() < arg["at"]:
            pass
        out = [i for i in arg["ids"] if own.claim(i)]
    elif cmd == "release":
        for i in arg:
            own.release(i)
        out = own.owned()
    elif cmd == "release_all":
        own.release_all()
        out = own.owned()
    elif cmd == "owner_of":
        info = own.owner_of(arg)
        out = info and [info.pid, info.label]
    elif cmd == "exit":
        os._exit(0)
    print(json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def module_file(request) -> str:
    """The installed extension's copy under the Blender suite, else the source file."""
    try:
        package = request.getfixturevalue("recon3d")
    except pytest.FixtureLookupError:
        return str(SOURCE)
    path = Path(package.__file__).parent / "jobs" / "ownership.py"
    assert path.read_bytes() == SOURCE.read_bytes()
    return str(path)


@pytest.fixture(scope="module")
def ownership(module_file):
    sys.dont_write_bytecode = True           # nothing lands in the source tree
    spec = importlib.util.spec_from_file_location("ownership_under_test", module_file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


class Child:
    def __init__(self, module_file: str, data_dir, label: str):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, module_file, str(data_dir),
                                      label], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.pid = self.proc.pid

    def send(self, cmd: str, arg=None) -> None:
        self.proc.stdin.write(json.dumps([cmd, arg]) + "\n")
        self.proc.stdin.flush()

    def answer(self):
        line = self.proc.stdout.readline()
        assert line, f"child {self.pid} died (exit {self.proc.poll()})"
        return json.loads(line)

    def ask(self, cmd: str, arg=None):
        self.send(cmd, arg)
        return self.answer()

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.returncode == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def children(module_file, tmp_path):
    made = []

    def make(label: str) -> Child:
        child = Child(module_file, tmp_path / "data", label)
        made.append(child)
        return child
    yield make
    for child in made:
        child.close()


def open_fds_on(path) -> int:
    """How many descriptors of this process are open on `path` (Linux and macOS)."""
    fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    target = os.stat(path)
    count = 0
    for name in os.listdir(fd_dir):
        try:
            st = os.fstat(int(name))
        except OSError:
            continue
        count += (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino)
    return count


def test_an_owned_job_cannot_be_claimed_elsewhere_and_names_its_owner(ownership, children,
                                                                      tmp_path):
    a = children("Blender 4.2 (GUI)")
    assert a.ask("claim", ["job-1", "job-2"]) == ["job-1", "job-2"]
    b = ownership.Ownership(str(tmp_path / "data"), "headless")
    assert b.claim("job-1") is False and b.claim("job-2") is False
    assert not b.owns("job-1") and b.owned() == []
    info = b.owner_of("job-1")
    assert (info.pid, info.label, info.host) == (a.pid, "Blender 4.2 (GUI)", ownership._HOST)
    assert info.describe() == f"Blender 4.2 (GUI), process {a.pid}"
    assert a.ask("owner_of", "job-1") == [a.pid, "Blender 4.2 (GUI)"]   # its own record
    # A free job has no owner, and asking does not take it.
    assert b.owner_of("job-3") is None
    assert a.ask("claim", ["job-3"]) == ["job-3"]
    assert b.owner_of("job-3").pid == a.pid
    b.release_all()


def test_sigkill_frees_the_owners_jobs_at_once(ownership, children, tmp_path):
    a = children("GUI")
    ids = [f"job-{i}" for i in range(3)]
    assert a.ask("claim", ids) == ids
    b = children("headless")
    assert b.ask("claim", ids) == []
    a.kill()
    assert b.ask("claim", ids) == ids
    # The record now names the new owner, not the dead one.
    c = ownership.Ownership(str(tmp_path / "data"), "third")
    assert {c.owner_of(i).pid for i in ids} == {b.pid}
    assert c.claim(ids[0]) is False


def test_release_frees_one_job_and_release_all_the_rest(children):
    a, b = children("A"), children("B")
    ids = ["j1", "j2", "j3"]
    assert a.ask("claim", ids) == ids
    assert a.ask("release", ["j1"]) == ["j2", "j3"]
    assert b.ask("claim", ids) == ["j1"]
    assert a.ask("owner_of", "j1")[0] == b.pid
    assert a.ask("release_all") == []
    assert b.ask("claim", ids) == ids                      # j1 it already had
    assert a.ask("claim", ids) == []


def test_two_processes_racing_for_fifty_jobs_give_each_exactly_one_owner(ownership, children,
                                                                          tmp_path):
    a, b = children("A"), children("B")
    observer = ownership.Ownership(str(tmp_path / "data"), "observer")
    contested = 0
    for round_ in range(3):
        ids = [f"r{round_}-job-{i:02d}" for i in range(50)]
        at = time.time() + 0.3
        a.send("race", {"ids": ids, "at": at})
        b.send("race", {"ids": ids if round_ != 1 else ids[::-1], "at": at})
        got_a, got_b = set(a.answer()), set(b.answer())
        assert got_a.isdisjoint(got_b)
        assert got_a | got_b == set(ids)
        for job_id in ids:
            assert observer.owner_of(job_id).pid == (a.pid if job_id in got_a else b.pid)
            assert observer.claim(job_id) is False
        contested += min(len(got_a), len(got_b))
    assert contested > 0             # both processes won some: they really raced


def test_one_process_never_holds_a_job_twice(ownership, tmp_path, children):
    """Threads claiming one job at once all see it owned, through one descriptor; one release
    frees it for another process. A second Ownership in the same process is kept out."""
    own = ownership.Ownership(str(tmp_path / "data"), "threads")
    other = ownership.Ownership(str(tmp_path / "data"), "leaked engine")
    b = children("B")
    for round_ in range(20):
        job_id = f"job-{round_}"
        barrier = threading.Barrier(8)
        results = []

        def racer():
            barrier.wait()
            results.append(own.claim(job_id))
        threads = [threading.Thread(target=racer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert results == [True] * 8
        lock_file = tmp_path / "data" / "jobs" / job_id / ownership.LOCK_NAME
        assert open_fds_on(lock_file) == 1
        assert other.claim(job_id) is False and other.owner_of(job_id).token == own.token
        assert b.ask("claim", [job_id]) == []
        own.release(job_id)
        assert open_fds_on(lock_file) == 0
        assert b.ask("claim", [job_id]) == [job_id]


def test_descriptors_and_cost_of_owning_many_jobs(ownership, tmp_path, children):
    """One descriptor per owned job and none after release; the take-over check (a failed
    claim per foreign job) stays cheap."""
    jobs_dir = tmp_path / "data" / "jobs"
    fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    b = children("B")
    baseline = len(os.listdir(fd_dir))
    own = ownership.Ownership(str(tmp_path / "data"), "many")
    ids = [f"job-{i:03d}" for i in range(300)]
    t0 = time.perf_counter()
    assert all(own.claim(i) for i in ids)
    claim_us = (time.perf_counter() - t0) / len(ids) * 1e6
    assert len(os.listdir(fd_dir)) - baseline == 300
    b.send("claim", ids)
    assert b.answer() == []                                 # warm-up: the files exist now
    t0 = time.perf_counter()
    assert b.ask("claim", ids) == []
    scan_us = (time.perf_counter() - t0) / len(ids) * 1e6  # includes the pipe round trip
    own.release_all()
    assert len(os.listdir(fd_dir)) == baseline
    assert len(os.listdir(jobs_dir)) == 300
    print(f"\nownership: claim {claim_us:.0f} µs/job; take-over check of 300 foreign jobs "
          f"{scan_us:.0f} µs/job; 300 owned jobs = 300 descriptors")
    assert scan_us < 1000 and claim_us < 5000
    assert b.ask("claim", ids) == ids
