"""What the scene-change check costs the node: each keyframe admitted with depth is checked against
the older keyframes with depth (``keyframes.change_share``, :mod:`viewseg_core.scene_change`).

Times, per keyframe size: one pair (``scene_change``: the older keyframe's points against the
newer one's range image), and the whole check of one new keyframe against a buffer of
``--keyframes`` older ones along the simulator's walk (``KeyframeBuffer.changed_keyframes``: one
range image of the new keyframe, and each older keyframe's points in its view tested on a grid
of at most 2 500). Reference in the same run: the keyframe's
encoder pass (``encode_sources`` of ``--checkpoint``, the demo RGB-D model), which every
admission pays anyway. The new keyframe's depth is read on a grid of at most 20 000 pixels
(``grid_stride``), so the cost stops growing past 160x120.

A dated row per size, with the CPU name, is appended to the "Scene change" section of
docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_keyframe_change.py --quick     # 80x60 only, a few repeats
    python benchmarks/bench_keyframe_change.py              # 80x60, 160x120, 320x240, 640x480
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from report import add_record_arguments, cpu_name, median_ms, print_and_record  # noqa: E402  (benchmarks/report.py)

SECTION = "## Scene change (viewseg_core/scene_change.py, keyframes.change_share)"
INTRO = ("`python benchmarks/bench_keyframe_change.py [--quick]` times the check a keyframe admitted with depth "
         "makes against the older keyframes with depth: one pair, and one new keyframe against a buffer of "
         "keyframes along the simulator's walk (one range image of the new keyframe; each older keyframe's points "
         "in its view tested on a grid of at most 2 500), against the keyframe's encoder pass (the demo RGB-D "
         "model) that every admission pays; CPU, `--threads` torch threads, medians.\n\n")
TABLE_HEADER = ("| date | CPU | threads | keyframe | keyframes checked | one pair ms | whole check ms | encoder pass "
          "(reference) ms | check / encoder |\n|---|---|---|---|---|---|---|---|---|\n")


def measure(width: int, height: int, keyframes: int, repeats: int, model) -> tuple[float, float, float]:
    from viewseg_core.cameras import K_from_hfov
    from viewseg_core.data.records import View
    from viewseg_core.data.synth.render import render
    from viewseg_core.scene_change import scene_change
    from viewseg_ros.keyframes import NS_PER_S, KeyframeBuffer, KeyframeConfig
    from viewseg_ros.sim_camera import SimWorld

    world = SimWorld.create(0)
    K = K_from_hfov(70.0, width, height)
    buffer = KeyframeBuffer(KeyframeConfig(change_share=0.02, max_keyframes=keyframes + 1, min_translation=0.0,
                                           min_rotation_deg=0.0))
    views = []
    for i in range(keyframes + 1):   # every 0.5 s of one walk, the newest last
        t = 0.5 * i * world.period_s / (2 * keyframes)
        c2w = world.camera_pose(t)
        views.append(View(rgb=np.zeros((height, width, 3), np.uint8), K=K, c2w=c2w,
                          depth=render(world.scene, K, c2w, height, width).depth, stamp=t))
    for i, view in enumerate(views[:-1]):
        buffer.add(view, int(view.stamp * NS_PER_S), force=True)
    newest = views[-1]
    stamp_ns = int(newest.stamp * NS_PER_S)
    pair = median_ms(lambda: scene_change((views[-2].depth, K, views[-2].c2w), (newest.depth, K, newest.c2w)), repeats)
    whole = median_ms(lambda: buffer.changed_keyframes(newest, stamp_ns), max(1, repeats // 4))
    image = torch.zeros((1, 1, 3, height, width), dtype=torch.uint8)
    with torch.no_grad():
        encoder = median_ms(lambda: model.encode_sources(image), max(1, repeats // 4))
    return pair, whole, encoder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="80x60 only, few repeats")
    p.add_argument("--keyframes", type=int, default=32, help="older keyframes in the buffer")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "demo_rgbd.pt")
    add_record_arguments(p)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from viewseg_core.model.weights import load_model

    model = load_model(args.checkpoint).eval()
    sizes = [(80, 60)] if args.quick else [(80, 60), (160, 120), (320, 240), (640, 480)]
    repeats = 4 if args.quick else args.repeats
    keyframes = min(args.keyframes, 8) if args.quick else args.keyframes
    date, cpu = _dt.date.today().isoformat(), cpu_name()
    rows = []
    for width, height in sizes:
        pair, whole, encoder = measure(width, height, keyframes, repeats, model)
        rows.append(f"| {date} | {cpu} | {args.threads} | {width}x{height} | {keyframes} | {pair:.2f} | {whole:.1f} | "
                    f"{encoder:.1f} | {whole / encoder:.2f} |\n")
    print_and_record(args, SECTION, TABLE_HEADER, rows, intro=INTRO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
