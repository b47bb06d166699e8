"""Throughput of the procedural scene generator (viewseg_core.data.synth), in views per second.

Two measurements at 320x240 (``--size`` to change):

- render: ray casting + shading of already generated scenes' cameras, one process
  (what the ROS simulated camera and evaluation pay per image);
- write: the whole ``viewseg synth`` path (layout, trajectories, rendering, PNG/npy
  writing, no pair mining) with 1 and with 2 worker processes: the issue's target is
  >= 20 views/s on 2 cores.

The machine's 1-minute load average is recorded next to each row: the development machine
is shared, so a loaded run reads low in wall-clock views/s. CPU milliseconds per view (all
processes) do not depend on the load, so each row also gives the throughput that many idle
cores would reach, ``workers * 1000 / cpu_ms`` (an estimate: it assumes the workers do not
slow each other down). A dated row per measurement, with the CPU name, is
appended to the "Synthetic scenes" section of docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_synth.py --quick     # ~20 s on 2 cores
    python benchmarks/bench_synth.py             # more views, steadier numbers
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

import torch  # noqa: E402

from viewseg_core.data.synth import SynthConfig, make_scene, render, write_dataset  # noqa: E402
from report import add_record_arguments, append_rows, cpu_name, load_avg  # noqa: E402  (benchmarks/report.py)

SECTION = "## Synthetic scenes (viewseg_core/data/synth)"
INTRO = ("`python benchmarks/bench_synth.py [--quick]` measures views per second of the procedural "
         "generator: `render` = ray casting + shading of one camera (one process); `write` = the whole "
         "`viewseg synth` path (layout, trajectories, rendering, PNG + npy writing; no pair mining) with "
         "N worker processes. Target: >= 20 views/s at 320x240 on 2 cores. The load average is the "
         "machine's 1-minute load when the row was taken (the development machine is shared, so wall "
         "numbers under load read low); CPU ms/view counts every process, and the idle-core estimate is "
         "workers x 1000 / CPU ms.\n\n")
TABLE_HEADER = ("| date | CPU | cores | load avg | size | measurement | workers | views | views/s (wall) "
                "| CPU ms/view | idle-core estimate views/s |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|\n")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ru.ru_utime + ru.ru_stime


def bench_render(n_views: int, width: int, height: int) -> tuple[float, float]:
    """(views/s, CPU ms per view) of render() over the cameras of a few scenes (medians)."""
    cfg = SynthConfig(views=max(4, n_views // 4), width=width, height=height)
    times, cpu = [], []
    seed = 0
    while len(times) < n_views:
        scene, cams = make_scene(seed, cfg)
        render(scene, cams[0].K, cams[0].c2w, height, width)          # warm the ray cache
        for cam in cams:
            t0, c0 = time.perf_counter(), time.process_time()
            render(scene, cam.K, cam.c2w, height, width)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        seed += 1
    return 1.0 / statistics.median(times[:n_views]), 1000.0 * statistics.median(cpu[:n_views])


def bench_write(scenes: int, views: int, width: int, height: int, workers: int) -> tuple[float, float]:
    """(views/s, CPU ms per view) of write_dataset with ``workers`` processes."""
    cfg = SynthConfig(views=views, width=width, height=height)
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        write_dataset(tmp, scenes, cfg, seed=123, workers=workers, progress=False)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    n = scenes * views
    return n / wall, 1000.0 * cpu / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer views (~20 s on 2 cores)")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts for 'write'")
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    width, height = (int(x) for x in args.size.lower().split("x"))
    torch.set_num_threads(1)          # torch only builds camera rays here; threads just contend
    n_render, scenes, views = (24, 2, 12) if args.quick else (120, 4, 40)

    cpu, cores, today = cpu_name(), os.cpu_count() or 0, _dt.date.today().isoformat()
    print(f"CPU: {cpu} ({cores} cores)   size {width}x{height}")
    results = [("render", 1, n_render, *bench_render(n_render, width, height), load_avg())]
    for w in args.workers:
        results.append(("write", w, scenes * views, *bench_write(scenes, views, width, height, w), load_avg()))
    rows = []
    for name, w, n, vps, cpu_ms, load in results:
        est = w * 1000.0 / cpu_ms
        print(f"{name:<7} {w} worker(s)  {vps:6.1f} views/s wall   {cpu_ms:6.1f} CPU ms/view   "
              f"~{est:5.1f} views/s on {w} idle core(s)   (load {load:.1f})")
        label = name + (" (quick)" if args.quick else "")
        rows.append(f"| {today} | {cpu} | {cores} | {load:.1f} | {width}x{height} | {label} "
                    f"| {w} | {n} | {vps:.1f} | {cpu_ms:.1f} | {est:.1f} |\n")
    if not args.no_record:
        append_rows(args.output, SECTION, TABLE_HEADER, rows, intro=INTRO)
        print(f"appended {len(rows)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
