"""What a managed node's lifecycle costs: how long configure and cleanup take, and how much
memory cleanup gives back.

A real :class:`viewseg_ros.node.ViewSegNode` with ``managed: true`` is constructed in this
process (which keeps freed memory as ``viewseg_node`` does, ``keep_freed_memory``) and moved
through configure (the checkpoint loaded and warmed up, ``--keyframes`` keyframes of the model's
source size loaded from a folder and encoded), activate, deactivate and cleanup, ``--cycles``
times. The resident set (/proc/self/statm) is read unconfigured, configured and after each
cleanup; it should fall back near the unconfigured level, and not climb from one cycle to the next.

A dated row, with the CPU name, is appended to the "Lifecycle" section of docs/benchmarks.md
(``--no-record`` to skip).

    python benchmarks/bench_lifecycle.py --quick      # tiny model, 4 keyframes, 2 cycles (seconds)
    python benchmarks/bench_lifecycle.py               # checkpoints/demo_rgbd.pt, 64 keyframes, 3 cycles
    python benchmarks/bench_lifecycle.py --without-release   # the same, cleanup not returning freed memory
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

import numpy as np  # noqa: E402

from report import add_record_arguments, cpu_name, print_and_record  # noqa: E402  (benchmarks/report.py)
from viewseg_core.cpu_allocator import keep_freed_memory, resident_mib  # noqa: E402

SECTION = "## Lifecycle (a managed node: configure and cleanup)"
INTRO = ("`python benchmarks/bench_lifecycle.py [--quick]` moves a real `managed: true` node through "
         "configure, activate, deactivate and cleanup, in a process that keeps freed memory as "
         "`viewseg_node` does: configure loads and warms up the checkpoint and loads and encodes the "
         "keyframes of a folder; cleanup saves nothing here (no `keyframes.save_path`) and frees them. "
         "RSS is the process's resident set: unconfigured, configured, and after the first and the last "
         "cleanup. CPU, torch threads as the machine gives them.\n\n")
TABLE_HEADER = ("| date | CPU | checkpoint | keyframes | cycles | release at cleanup | configure s | cleanup s | "
                "RSS unconfigured MiB | RSS configured MiB | RSS after cleanup MiB | after last cleanup MiB |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def keyframe_folder(folder: Path, count: int, height: int, width: int) -> Path:
    """``count`` keyframes (random colour, a planar depth) along a line, saved as the node saves them."""
    from viewseg_core.cameras import K_from_hfov
    from viewseg_core.data.records import View
    from viewseg_ros.keyframe_store import save_keyframes
    from viewseg_ros.keyframes import Keyframe

    rng = np.random.default_rng(0)
    K = K_from_hfov(70.0, width, height)
    frames = []
    for i in range(count):
        c2w = np.eye(4)
        c2w[0, 3] = 0.3 * i
        frames.append(Keyframe(i, (i + 1) * 10**9, View(rgb=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                                        K=K, c2w=c2w, depth=np.full((height, width), 3.0, np.float32))))
    return save_keyframes(frames, folder, "map")


def measure(checkpoint: Path, keyframes: int, cycles: int, folder: Path) -> dict[str, float]:
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from viewseg_core.model.weights import load_model
    from viewseg_ros.node import ViewSegNode

    height, width = load_model(checkpoint, map_location="cpu").config.source_size
    saved = keyframe_folder(folder / "keyframes", keyframes, height or 60, width or 80)
    context = Context()
    rclpy.init(context=context)
    node = None
    try:
        node = ViewSegNode(context=context, parameter_overrides=[
            Parameter("managed", value=True), Parameter("checkpoint", value=str(checkpoint)),
            Parameter("device", value="cpu"), Parameter("keyframes.load_path", value=str(saved)),
            Parameter("keyframes.max_keyframes", value=max(64, keyframes))])
        out = {"rss_unconfigured": resident_mib(), "configure_s": [], "cleanup_s": [], "rss_cleanup": []}
        for cycle in range(cycles):
            start = time.perf_counter()
            node.trigger_configure()
            out["configure_s"].append(time.perf_counter() - start)
            if len(node.keyframes) != keyframes:
                raise RuntimeError(f"configure loaded {len(node.keyframes)} keyframes, not {keyframes}")
            node.trigger_activate()
            if cycle == 0:
                out["rss_configured"] = resident_mib()
            node.trigger_deactivate()
            start = time.perf_counter()
            node.trigger_cleanup()
            out["cleanup_s"].append(time.perf_counter() - start)
            if node.ready:
                raise RuntimeError("cleanup left the node configured")
            out["rss_cleanup"].append(resident_mib())
        return out
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny random model, 4 keyframes, 2 cycles (for tests)")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "demo_rgbd.pt")
    parser.add_argument("--keyframes", type=int, default=64)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--without-release", action="store_true",
                        help="cleanup does not hand freed memory back to the kernel (the node before it did)")
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    if args.keyframes < 1 or args.cycles < 1:
        parser.error("--keyframes and --cycles must be >= 1")
    keep_freed_memory()   # as viewseg_node: without the release at cleanup, freed memory would stay resident
    if args.without_release:
        import viewseg_ros.node

        viewseg_ros.node.release_freed_memory = lambda: False
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint, keyframes, cycles = args.checkpoint, args.keyframes, args.cycles
        if args.quick:
            sys.path.insert(0, str(ROOT / "test" / "support"))
            from ros_graph import tiny_rgbd_checkpoint

            checkpoint, keyframes, cycles = tiny_rgbd_checkpoint(Path(scratch) / "tiny.pt"), 4, 2
        out = measure(checkpoint, keyframes, cycles, Path(scratch))
    name = "tiny (--quick)" if args.quick else checkpoint.name
    row = (f"| {_dt.date.today().isoformat()} | {cpu_name()} | {name} | {keyframes} | {cycles} | "
           f"{'no' if args.without_release else 'yes'} | "
           f"{np.median(out['configure_s']):.2f} | {np.median(out['cleanup_s']):.3f} | "
           f"{out['rss_unconfigured']:.0f} | {out['rss_configured']:.0f} | {out['rss_cleanup'][0]:.0f} | "
           f"{out['rss_cleanup'][-1]:.0f} |\n")
    print_and_record(args, SECTION, TABLE_HEADER, [row], intro=INTRO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
