"""What the adaptive splat footprint costs a depth-guided query: the depth guide's splat
(:func:`viewseg_core.model.depth_guide.camera_guides`: lift the keyframes' depth, z-buffer it
into the query camera, look up every ray) with fixed 2x2 blocks (the reference, the splat
before 2026-12-07) against blocks that widen to reach their neighbours' projections, up to
``--max-footprint`` (the models' default, ``model.guide_max_footprint``).

Scene: the simulator's room (``viewseg_ros.sim_camera.SimWorld``, seed 0): ``--keyframes``
depth keyframes at person height along its walk and a query from a low robot camera (0.3-0.6 m,
``kind="robot"``) on another walk of the same room, the case the wider blocks are for.
Keyframes and query have the same size. Also printed: the share of query pixels with no
candidate in each case (what the wider blocks fill).

A dated row per size, with the CPU name, is appended to the "Depth guide splat" section of
docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_splat.py --quick     # 80x60 only, a few repeats
    python benchmarks/bench_splat.py              # 80x60, 160x120, 320x240, 640x480
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

from report import add_record_arguments, device_label, median_ms, print_and_record  # noqa: E402  (benchmarks/report.py)

SECTION = "## Depth guide splat (viewseg_core/model/depth_guide.py, model.guide_max_footprint)"
INTRO = ("`python benchmarks/bench_splat.py [--quick]` times the depth guide's splat of a depth-guided query "
         "(lift the keyframes' depth, z-buffer it into the query camera, look up every ray) with fixed 2x2 "
         "blocks (the reference) and with blocks that widen to reach their neighbours' projections (adaptive), "
         "person-height keyframes of the simulator's room and a low robot camera's query of the same size; "
         "`--device` (CPU: `--threads` torch threads), medians; 'no candidate' is the share of query pixels "
         "each leaves without a candidate surface.\n\n")
TABLE_HEADER = ("| date | device | threads | size | keyframes | widest block | fixed 2x2 ms (reference) "
                "| adaptive ms | adaptive / fixed | no candidate, fixed | no candidate, adaptive |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|\n")


def scene(width: int, height: int, keyframes: int, query_time: float):
    """Keyframe depth [1, V, H, W], K [1, V, 3, 3], c2w [1, V, 4, 4] and the query K, c2w."""
    from viewseg_core.cameras import K_from_hfov
    from viewseg_core.data.synth.render import render
    from viewseg_ros.sim_camera import SimWorld

    world = SimWorld.create(0)
    robot = SimWorld.create(0, kind="robot")
    K = K_from_hfov(70.0, width, height)
    poses = [world.camera_pose(i * world.period_s / (2 * keyframes)) for i in range(keyframes)]
    depth = np.stack([render(world.scene, K, c2w, height, width).depth for c2w in poses])
    query = robot.camera_pose(query_time * robot.period_s)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return (t(depth)[None], t(K).expand(1, keyframes, 3, 3), t(np.stack(poses))[None], t(K), t(query))


def measure(width: int, height: int, keyframes: int, max_footprint: int, repeats: int,
            device: torch.device = torch.device("cpu")) -> tuple[float, ...]:
    from viewseg_core.model.depth_guide import camera_guides
    from viewseg_core.rays import grid_rays

    depth, K, c2w, qK, qc2w = (x.to(device) for x in scene(width, height, keyframes, 0.2))
    rays = grid_rays(qK[None], qc2w[None], height, width, near=0.1, far=20.0)

    def guides(widest: int) -> torch.Tensor:
        return camera_guides(depth, K, c2w, height, width, qK[None, None], qc2w[None, None], height, width,
                             rays.origins, rays.directions, 2, max_footprint=widest)

    fixed = median_ms(lambda: guides(0), repeats, device)
    adaptive = median_ms(lambda: guides(max_footprint), repeats, device)
    empty_fixed = float(torch.isnan(guides(0)).float().mean() * 100)
    empty_adaptive = float(torch.isnan(guides(max_footprint)).float().mean() * 100)
    return fixed, adaptive, empty_fixed, empty_adaptive


def main(argv: list[str] | None = None) -> int:
    from viewseg_core.model.viewseg import ModelConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="80x60 only, few repeats")
    p.add_argument("--keyframes", type=int, default=4, help="keyframes splatted into the query")
    p.add_argument("--max-footprint", type=int, default=ModelConfig.guide_max_footprint,
                   help="widest adaptive block (default: the models' default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the GPU rows of scripts/gpu_session.sh)")
    p.add_argument("--repeats", type=int, default=20)
    add_record_arguments(p)
    args = p.parse_args(argv)
    if args.max_footprint <= 2:
        p.error("--max-footprint must be > 2 (the fixed block's width) to compare anything")
    torch.set_num_threads(args.threads)
    sizes = [(80, 60)] if args.quick else [(80, 60), (160, 120), (320, 240), (640, 480)]
    repeats = 3 if args.quick else args.repeats
    device = torch.device(args.device)
    date, name = _dt.date.today().isoformat(), device_label(device)
    rows = []
    for width, height in sizes:
        fixed, adaptive, empty_fixed, empty_adaptive = measure(width, height, args.keyframes, args.max_footprint,
                                                               repeats, device)
        rows.append(f"| {date} | {name} | {args.threads} | {width}x{height} | {args.keyframes} | {args.max_footprint} | "
                    f"{fixed:.1f} | {adaptive:.1f} | {adaptive / fixed:.2f} | {empty_fixed:.1f}% | "
                    f"{empty_adaptive:.1f}% |\n")
    print_and_record(args, SECTION, TABLE_HEADER, rows, intro=INTRO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
