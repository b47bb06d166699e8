#!/usr/bin/env python3
"""Where a ViewSeg model puts its depth: error by true-depth band, and weight in free space.

    python scripts/depth_profile.py --checkpoint runs/synthetic_medium/model.pt \\
        --config training/configs/synthetic_small.yaml --split val --max-examples 12

Renders the full target of each example (the model's own samples, fine pass) and, over the
pixels with true depth, prints per band of true planar depth: the pixel count, the L1 error
and the bias of the expected depth (no background rule, so every pixel counts), the median
ratio predicted / true, and the mean render weight that lies nearer than half the true
depth (free space, for a surface at the true depth). A model that has learned geometry has
ratios near 1 and little weight in free space; "fog" (density spread thinly from the
camera on, whose expected depth is about the same everywhere) has ratios well above 1 near
and well below 1 far, and a large free-space weight. docs/results.md quotes this table.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training.config_io import load_config  # noqa: E402
from training.data import build_dataset  # noqa: E402
from training.train import TrainConfig  # noqa: E402
from viewseg_core.model.weights import load_model  # noqa: E402
from viewseg_core.rays import grid_rays  # noqa: E402

BANDS = ((0.0, 1.5), (1.5, 2.5), (2.5, 3.5), (3.5, 5.0), (5.0, float("inf")))


@dataclass
class BandRow:
    low: float
    high: float
    pixels: int
    l1: float
    bias: float
    median_ratio: float
    free_space_weight: float


@torch.no_grad()
def depth_profile(model, dataset, max_examples: int, bands=BANDS) -> tuple[list[BandRow], BandRow]:
    """Rows per band of true depth, and the row over all pixels with true depth."""
    model = model.float().eval()
    r = model.renderer
    pred, true, free = [], [], []
    for i in range(min(max_examples, len(dataset))):
        ex = dataset[i]
        H, W = (int(x) for x in ex["target_size"])
        rgb = ex["source_rgb"][None]
        sources = model.make_sources(model.encode_sources(rgb), ex["source_K"][None], ex["source_c2w"][None],
                                     H, W, rgb=rgb)
        rays = grid_rays(ex["target_K"][None].float(), ex["target_c2w"][None].float(), H, W,
                         near=r.config.near, far=r.config.far)
        out = r(rays, sources).final
        depth = ex["target_depth"].reshape(-1).float()
        known = torch.isfinite(depth) & (depth > 0)
        planar_t = out.t[0] * rays.z_axis[0][:, None]
        in_free_space = (out.weights[0] * (planar_t < 0.5 * depth[:, None])).sum(-1)
        pred.append(out.expected_depth[0][known])
        true.append(depth[known])
        free.append(in_free_space[known])
    if not pred:
        raise ValueError("depth_profile: the split has no examples")
    pred, true, free = torch.cat(pred), torch.cat(true), torch.cat(free)

    def row(low: float, high: float, sel: torch.Tensor) -> BandRow:
        n = int(sel.sum())
        if n == 0:
            return BandRow(low, high, 0, float("nan"), float("nan"), float("nan"), float("nan"))
        err = pred[sel] - true[sel]
        return BandRow(low, high, n, float(err.abs().mean()), float(err.mean()),
                       float((pred[sel] / true[sel]).median()), float(free[sel].mean()))

    rows = [row(lo, hi, (true >= lo) & (true < hi)) for lo, hi in bands]
    return rows, row(0.0, float("inf"), torch.ones_like(true, dtype=torch.bool))


def format_table(rows: list[BandRow], total: BandRow) -> str:
    lines = ["| true depth (m) | pixels | L1 (m) | bias (m) | median pred/true | weight in free space |",
             "|---|---|---|---|---|---|"]
    for r in rows + [total]:
        band = "all" if r is total else (f"{r.low:g}-{r.high:g}" if r.high != float("inf") else f">= {r.low:g}")
        lines.append(f"| {band} | {r.pixels} | {r.l1:.3f} | {r.bias:+.3f} | {r.median_ratio:.2f} | "
                     f"{r.free_space_weight:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="viewseg-model file or training checkpoint")
    ap.add_argument("--config", required=True, help="training config whose data section to read")
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-examples", type=int, default=12)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(TrainConfig, args.config)
    dataset = build_dataset(cfg.data, args.split, full_target=True)
    rows, total = depth_profile(load_model(args.checkpoint), dataset, args.max_examples)
    print(format_table(rows, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
