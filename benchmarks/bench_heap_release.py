"""What one heap release costs the node: the ``malloc_trim`` call itself, and the render after it.

``viewseg_node`` keeps freed memory for reuse (``keep_freed_memory``) and hands it back to the
kernel when its resident set has grown by ``cpu_allocator.RELEASE_GROWTH_MIB`` (128 MiB) since
the last time (``HeapReleaser``), and at a lifecycle cleanup. A render after a release pays page
faults for the memory it touches again. This times, in one process that keeps freed memory as
the node does, a CPU query (``--preset``, default the node's ``rgbd`` with the RGB-D demo
model, 160x120, 4 sources) in interleaved pairs: a render right after ``release_freed_memory()``
and a render without one. It reports the release call's time, both renders' medians, and their
ratio: what a release adds to the query that follows it.

A dated row, with the CPU name, is appended to the "Heap release" section of docs/benchmarks.md
(``--no-record`` to skip).

    python benchmarks/bench_heap_release.py --quick      # tiny model, 3 pairs (seconds)
    python benchmarks/bench_heap_release.py               # demo_rgbd.pt, rgbd, 160x120, 15 pairs
"""
from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py and bench_query.py, also when loaded by path

import torch  # noqa: E402

from report import add_record_arguments, cpu_name, print_and_record  # noqa: E402  (benchmarks/report.py)
from viewseg_core.cpu_allocator import keep_freed_memory, release_freed_memory, resident_mib  # noqa: E402

SECTION = "## Heap release (viewseg_core/cpu_allocator.py)"
INTRO = ("`python benchmarks/bench_heap_release.py [--quick]` times what one release of freed heap memory "
         "(`release_freed_memory`, glibc `malloc_trim`) costs the node: the call, and the query rendered right "
         "after it against one without it, in interleaved pairs in a process that keeps freed memory as "
         "`viewseg_node` does; CPU, `--threads` torch threads. The node releases when its resident set has grown "
         "by 128 MiB since the last release, and at a lifecycle cleanup.\n\n")
TABLE_HEADER = ("| date | CPU | threads | model | preset | size | pairs | release ms | MiB released | "
                "render after release ms | render without ms | ratio |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 40x30, 3 pairs (for tests)")
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "demo_rgbd.pt"))
    parser.add_argument("--preset", default="rgbd")
    parser.add_argument("--size", default="160x120", help="query and source size WxH")
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    import bench_query
    from viewseg_core.model import cpu_linear
    from viewseg_core.model.fast import render_query_stats

    width, height = (int(v) for v in ("40x30" if args.quick else args.size).split("x"))
    pairs = 3 if args.quick else args.pairs
    if pairs < 1:
        parser.error("--pairs must be >= 1")
    model, _ = bench_query.build_bench_model("small" if args.quick else args.model, args.quick)
    preset = bench_query.parse_preset("fast" if args.quick else args.preset)
    scene = bench_query.synthetic_scene(height, width, num_targets=1)
    with torch.no_grad():
        features = model.encode_sources(scene.source_rgb)
        depth = scene.source_depth("sensor") if model.config.source_depth else None
        sources = model.make_sources(features, scene.source_K, scene.source_c2w, height, width,
                                     rgb=scene.source_rgb, depth=depth)

    def render() -> float:
        start = time.perf_counter()
        with torch.no_grad(), cpu_linear.epilogues("on"):
            render_query_stats(model, scene.K[0], scene.c2w[0], height, width, sources, preset)
        return time.perf_counter() - start

    for _ in range(2):
        render()   # warm-up: oneDNN primitives, the heap at its working size
    release_s, released_mib, after, without = [], [], [], []
    for _ in range(pairs):
        without.append(render())
        before = resident_mib()
        start = time.perf_counter()
        release_freed_memory()
        release_s.append(time.perf_counter() - start)
        released_mib.append(before - resident_mib())
        after.append(render())
    median = statistics.median
    model_name = "small (--quick)" if args.quick else Path(args.model).name
    row = (f"| {_dt.date.today().isoformat()} | {cpu_name()} | {args.threads} | {model_name} | {preset.label} | "
           f"{width}x{height} | {pairs} | {1e3 * median(release_s):.2f} | {median(released_mib):.0f} | "
           f"{1e3 * median(after):.0f} | {1e3 * median(without):.0f} | {median(after) / median(without):.2f} |\n")
    print_and_record(args, SECTION, TABLE_HEADER, [row], intro=INTRO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
