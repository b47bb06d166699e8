"""The memory a CPU query process keeps for its field-call shapes, per point budget and padding rule.

oneDNN keeps memory for every GEMM shape it has run (outside the primitive cache that
``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` bounds), so a node's resident set grows with the number of
distinct field-call shapes its queries produce, not with the number of queries. CPU calls are
padded to a few sizes for that reason (``viewseg_core.model.fast.call_bucket``). This renders
``--queries`` poses near the sources (the targets of the procedural room, each turned and moved
a little, seeded) ``--rounds`` times in a process that keeps freed memory as ``viewseg_node``
does, hands freed heap back after each round (``release_freed_memory``, as the node's
``HeapReleaser`` does), and reports the resident set above the one before the first query:
what stays however often the same poses come again. Each (preset, rule) runs in a process of
its own, so that no configuration inherits another's shapes; one more process times the rules
against each other, every pose under both in turn (the time ratio column). Rules: ``call`` pads as the node
does (``call_bucket``: large calls to one of ``LARGE_CALL_SIZES`` sizes); ``ray`` pads every
call by ``ray_bucket``'s 6.25% steps only (``LARGE_CALL_SIZES = 0``), the rule before
2026-12-07, the reference of the ratio column.

A dated row per configuration, with the CPU name, is appended to the "CPU call shapes" section
of docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_call_shapes.py --quick     # tiny model, 40x30, 3 queries (seconds)
    python benchmarks/bench_call_shapes.py             # demo_rgbd.pt, 160x120, rgbd at 3072 and 12288 points
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py and bench_query.py, also when loaded by path

from report import add_record_arguments, cpu_name, print_and_record  # noqa: E402  (benchmarks/report.py)

SECTION = "## CPU call shapes (benchmarks/bench_call_shapes.py)"
INTRO = ("`python benchmarks/bench_call_shapes.py [--quick]` renders the same query poses for several rounds in "
         "a process that keeps freed memory as `viewseg_node` does and hands it back after each round, and "
         "reports the resident set that stays above the one before the first query (\"kept\"), the distinct "
         "field-call shapes (points per call), and the render median; one process per row. `call` pads CPU calls "
         "as the node does (`fast.call_bucket`), `ray` by `fast.ray_bucket` alone (the rule before 2026-12-07); "
         "\"kept vs ray\" is kept memory against the `ray` row of the same preset in the same run. The render "
         "median of a row comes from its own process (runs in different processes differ by up to some 15% on "
         "this VM); \"time vs ray, interleaved\" is measured apart, in one more process that renders every pose "
         "under both rules in turn, after a round that warms both: the ratio of the two total times.\n\n")
TABLE_HEADER = ("| date | CPU | threads | model | preset | size | queries x rounds | rule | shapes | kept MiB "
                "(after round 1 / last) | kept vs ray | render median ms | time vs ray, interleaved |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
RULES = ("ray", "call")
INTERLEAVED = "interleaved"   # a child that renders every pose under each rule in turn (timing only)


def query_poses(scene_c2w, count: int, seed: int = 0):
    """[count, 4, 4]: the scene's targets in turn, each turned up to 15 degrees about its
    vertical and moved up to 0.2 m (seeded), so that every query packs a different number of
    samples."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    poses = []
    for i in range(count):
        c2w = scene_c2w[i % len(scene_c2w)].double().numpy().copy()
        yaw = math.radians(rng.uniform(-15.0, 15.0))
        # about the camera's own y axis (image down: the vertical of a level camera)
        turn = np.array([[math.cos(yaw), 0.0, math.sin(yaw)], [0.0, 1.0, 0.0], [-math.sin(yaw), 0.0, math.cos(yaw)]])
        c2w[:3, :3] = c2w[:3, :3] @ turn
        c2w[:3, 3] += rng.uniform(-0.2, 0.2, 3)
        poses.append(torch.from_numpy(c2w).float())
    return torch.stack(poses)


def run_child(args: argparse.Namespace) -> int:
    """One configuration in this process: prints one JSON line."""
    import torch

    from viewseg_core.cpu_allocator import keep_freed_memory, release_freed_memory, resident_mib
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    import bench_query
    from viewseg_core.model import fast
    from viewseg_core.model.field import SemanticField

    large_call_sizes = {"ray": 0, "call": fast.LARGE_CALL_SIZES}
    fast.LARGE_CALL_SIZES = large_call_sizes.get(args.child_rule, fast.LARGE_CALL_SIZES)
    height, width = args.size
    model, _ = bench_query.build_bench_model("small" if args.quick else args.model, args.quick)
    preset = bench_query.parse_preset(args.child_preset)
    scene = bench_query.synthetic_scene(height, width, num_targets=8)
    with torch.no_grad():
        features = model.encode_sources(scene.source_rgb)
        depth = scene.source_depth("sensor") if model.config.source_depth else None
        sources = model.make_sources(features, scene.source_K, scene.source_c2w, height, width,
                                     rgb=scene.source_rgb, depth=depth)
    poses = query_poses(scene.c2w, args.queries)
    shapes: set[int] = set()
    plain = SemanticField.forward

    def counting(self, points, *rest, **kw):
        shapes.add(points[..., 0].numel())
        return plain(self, points, *rest, **kw)

    def render(c2w) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            fast.render_query(model, scene.K[0], c2w, height, width, sources, preset)
        return time.perf_counter() - start

    if args.child_rule == INTERLEAVED:
        # Both rules' shapes warmed by the first round (not timed); then each pose under both
        # rules back to back, the order swapped every round, so that drift hits both alike.
        seconds = {rule: 0.0 for rule in RULES}
        for round_index in range(args.rounds + 1):
            for c2w in poses:
                for rule in (RULES if round_index % 2 else RULES[::-1]):
                    fast.LARGE_CALL_SIZES = large_call_sizes[rule]
                    elapsed = render(c2w)
                    if round_index:
                        seconds[rule] += elapsed
        print(json.dumps({"seconds": seconds}))
        return 0

    SemanticField.forward = counting
    release_freed_memory()
    base = resident_mib()
    kept, times = [], []
    for _ in range(args.rounds):
        for c2w in poses:
            times.append(render(c2w))
        release_freed_memory()
        kept.append(resident_mib() - base)
    print(json.dumps({"shapes": len(shapes), "kept": kept, "median_ms": 1e3 * statistics.median(times),
                      "label": preset.label}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 40x30, 3 queries, 2 rounds (for tests)")
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "demo_rgbd.pt"))
    parser.add_argument("--presets", default="rgbd,rgbd/budget=12288",
                        help="comma-separated query presets (bench_query.py's syntax, e.g. rgbd/budget=12288)")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated padding rules: ray, call")
    parser.add_argument("--size", default="160x120", help="query and source size WxH")
    parser.add_argument("--queries", type=int, default=24, help="distinct query poses")
    parser.add_argument("--rounds", type=int, default=3, help="renders of every pose")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child-preset", help=argparse.SUPPRESS)
    parser.add_argument("--child-rule", choices=RULES + (INTERLEAVED,), help=argparse.SUPPRESS)
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    import bench_query
    args.size = bench_query.parse_size("40x30" if args.quick else args.size)
    if args.quick:
        args.queries, args.rounds, args.presets = min(args.queries, 3), min(args.rounds, 2), "fast"
    if args.queries < 1 or args.rounds < 1 or args.threads < 1:
        parser.error("--queries, --rounds and --threads must be >= 1")
    if args.child_preset:
        return run_child(args)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    if not rules or any(r not in RULES for r in rules):
        parser.error(f"--rules takes {', '.join(RULES)}, got {args.rules!r}")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for preset in presets:
        try:
            bench_query.parse_preset(preset)
        except ValueError as error:
            parser.error(f"--presets: {error}")
    height, width = args.size
    model_name = "tiny (--quick)" if args.quick else Path(args.model).name
    rows = []
    for preset in presets:
        results = {}
        for rule in rules + ([INTERLEAVED] if len(rules) == len(RULES) else []):
            command = [sys.executable, str(Path(__file__).resolve()), "--child-preset", preset, "--child-rule", rule,
                       "--size", f"{width}x{height}", "--queries", str(args.queries), "--rounds", str(args.rounds),
                       "--threads", str(args.threads), "--model", args.model] + (["--quick"] if args.quick else [])
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout + done.stderr, file=sys.stderr)
                print(f"bench_call_shapes: the {preset} / {rule} run failed (exit {done.returncode})", file=sys.stderr)
                return 1
            results[rule] = json.loads(done.stdout.strip().splitlines()[-1])
        timing = results.pop(INTERLEAVED, None)
        for rule, r in results.items():
            reference = results.get("ray")
            ratio = (f"{r['kept'][-1] / reference['kept'][-1]:.2f}" if reference and rule != "ray"
                     and reference["kept"][-1] > 0 else "")
            time_ratio = (f"{timing['seconds'][rule] / timing['seconds']['ray']:.3f}"
                          if timing and rule != "ray" and timing["seconds"]["ray"] > 0 else "")
            rows.append(f"| {_dt.date.today().isoformat()} | {cpu_name()} | {args.threads} | {model_name} | "
                        f"{r['label']} | {width}x{height} | {args.queries} x {args.rounds} | {rule} | {r['shapes']} | "
                        f"{r['kept'][0]:.0f} / {r['kept'][-1]:.0f} | {ratio} | {r['median_ms']:.0f} | {time_ratio} |\n")
    print_and_record(args, SECTION, TABLE_HEADER, rows, intro=INTRO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
