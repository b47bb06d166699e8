"""What the node's free path check costs (``query.min_free_path``): the share of each query pixel's
path to its surface that the keyframes' depth saw free
(:func:`viewseg_core.model.depth_guide.observed_free_share`, which transforms each (ray,
keyframe) pair once and steps along it) against the plain reference, every path point
projected into every keyframe and classified on its own (``source_verdicts``), in the same
run.

Scene: ``bench_splat.py``'s (the simulator's room, ``--keyframes`` person-height depth
keyframes, a low robot camera's query of the same size), the query's surface its true depth.
Also printed: the mean share of the path seen free and the share of pixels under 0.5.

A dated row per size, with the CPU name, is appended to the "Free path check" section of
docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_free_path.py --quick     # 80x60 only, a few repeats
    python benchmarks/bench_free_path.py              # 80x60, 160x120, 320x240
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py and bench_splat.py, also when loaded by path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_splat import scene  # noqa: E402
from report import add_record_arguments, device_label, median_ms, print_and_record  # noqa: E402

SECTION = "## Free path check (viewseg_core/model/depth_guide.py observed_free_share, query.min_free_path)"
INTRO = ("`python benchmarks/bench_free_path.py [--quick]` times the share of each query pixel's path to its "
         "surface that the keyframes' depth saw free, as the node computes it for `query.min_free_path` "
         "(each (ray, keyframe) pair transformed once, its path points stepped along it), against the "
         "reference (every path point projected into every keyframe on its own), person-height keyframes of "
         "the simulator's room and a low robot camera's query of the same size (its true depth as the "
         "surface); `--device` (CPU: `--threads` torch threads), medians; the last two columns describe the "
         "scene.\n\n")
TABLE_HEADER = ("| date | device | threads | size | keyframes | path points | pointwise ms (reference) | free path ms | "
                "reference / free path | mean share seen free | pixels under 0.5 |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|\n")


def measure(width: int, height: int, keyframes: int, samples: int, repeats: int,
            device: torch.device = torch.device("cpu")) -> tuple[float, ...]:
    from viewseg_core.data.synth.render import render
    from viewseg_core.model.depth_guide import SAME_SURFACE, observed_free_share, source_verdicts
    from viewseg_core.rays import grid_rays
    from viewseg_ros.sim_camera import SimWorld

    depth, K, c2w, qK, qc2w = scene(width, height, keyframes, 0.2)
    truth = render(SimWorld.create(0, kind="robot").scene, qK.double().numpy(), qc2w.double().numpy(), height,
                   width).depth
    depth, K, c2w, qK, qc2w = (x.to(device) for x in (depth, K, c2w, qK, qc2w))
    rays = grid_rays(qK[None], qc2w[None], height, width, near=0.1, far=20.0)
    distance = torch.as_tensor(np.asarray(truth), dtype=torch.float32, device=device).reshape(1, -1) / rays.z_axis

    def fast() -> torch.Tensor:
        return observed_free_share(rays.origins, rays.directions, distance, depth, K, c2w, height, width,
                                   samples=samples)

    def pointwise() -> torch.Tensor:
        ok = torch.isfinite(distance) & (distance > 0)
        fractions = (torch.arange(samples, device=device) + 0.5) / samples * (1 - SAME_SURFACE)
        t = fractions * distance.nan_to_num(0.0)[..., None]
        points = rays.origins[:, :, None] + rays.directions[:, :, None] * t[..., None]
        _, _, free, _ = source_verdicts(points, depth, K, c2w, height, width, margin=0.1)
        share = free.any(dim=1).reshape(1, -1, samples).float().mean(dim=-1)
        return torch.where(ok, share, torch.full_like(share, float("nan")))

    share = fast()
    reference = pointwise()
    if not torch.allclose(share.nan_to_num(-1.0), reference.nan_to_num(-1.0), atol=1e-6):
        raise AssertionError("the free path share and its pointwise reference disagree")
    known = torch.isfinite(share)
    return (median_ms(pointwise, repeats, device), median_ms(fast, repeats, device),
            float(share[known].mean()), float((share[known] < 0.5).float().mean() * 100))


def main(argv: list[str] | None = None) -> int:
    from viewseg_core.model.depth_guide import FREE_PATH_SAMPLES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="80x60 only, few repeats")
    p.add_argument("--keyframes", type=int, default=4, help="depth keyframes the paths are put to")
    p.add_argument("--samples", type=int, default=FREE_PATH_SAMPLES, help="points along each path")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the GPU rows of scripts/gpu_session.sh)")
    p.add_argument("--repeats", type=int, default=10)
    add_record_arguments(p)
    args = p.parse_args(argv)
    if args.samples < 1 or args.keyframes < 1:
        p.error("--samples and --keyframes must be >= 1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [(80, 60)] if args.quick else [(80, 60), (160, 120), (320, 240)]
    repeats = 3 if args.quick else args.repeats
    date, name = _dt.date.today().isoformat(), device_label(device)
    rows = []
    for width, height in sizes:
        reference, fast, mean_share, under_half = measure(width, height, args.keyframes, args.samples, repeats,
                                                          device)
        rows.append(f"| {date} | {name} | {args.threads} | {width}x{height} | {args.keyframes} | {args.samples} | "
                    f"{reference:.1f} | {fast:.1f} | {reference / fast:.2f} | {mean_share:.2f} | "
                    f"{under_half:.1f}% |\n")
    print_and_record(args, SECTION, TABLE_HEADER, rows, intro=INTRO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
