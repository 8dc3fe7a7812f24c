# SPDX-License-Identifier: GPL-3.0-or-later
"""Main-thread cost of the bridge: with 20 jobs polling (Scenario, which reports progress on
every poll, so events keep arriving), time each call of the timer callback (`bridge._tick`,
which drains the event queue) on the main thread. No job finishes during the measurement, so
no import is included. Target: p99 < 2 ms.

    RECON3D_ZIP=dist/recon3d-0.1.0.zip python bench/drain.py   (bench/run.py sets it up)
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from common import fake_glb, median, percentile, time_ticks, tiny_png

JOBS = 20
SECONDS = 15.0


def main() -> int:
    from emulator import Emulator
    work = Path(tempfile.mkdtemp(prefix="recon3d-bench-drain-"))
    emu = Emulator()
    os.environ.update(emu.environment())
    os.environ["BLENDER_USER_RESOURCES"] = str(work / "user")
    os.environ["RECON3D_DATA_DIR"] = str(work / "data")
    emu.scenario.duration = 600.0
    emu.scenario.results = [fake_glb()]
    import bpy
    from rig import install_from_zip
    recon3d = install_from_zip(os.environ["RECON3D_ZIP"], work / "repo")
    api, bridge = recon3d.api, recon3d.blender.main_thread
    bpy.context.preferences.addons[recon3d.__name__].preferences.max_in_flight = JOBS
    photo = tiny_png(work / "photo.png")
    jobs = [api.submit(photo, "scenario_sam3d") for _ in range(JOBS)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(j.state == "running" and j.polls >= 2
                                                   for j in jobs):
        bridge._tick()
        time.sleep(0.01)
    assert all(j.state == "running" for j in jobs), [j.state for j in jobs]

    eng = recon3d.addon.runtime.running_engine()
    times, handled = time_ticks(bridge._tick, eng.events, SECONDS)
    polls = sum(j.polls for j in jobs)
    for job in jobs:
        api.cancel(job)
    print(f"drain benchmark: {JOBS} jobs polling, {len(times)} timer calls over {SECONDS:.0f} s, "
          f"{handled} job events drained, {polls} polls in all")
    print(f"  time per call: median {median(times):.3f} ms, p99 {percentile(times, 99):.3f} ms, "
          f"max {max(times):.3f} ms (target p99 < 2 ms)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
