#!/usr/bin/env python3
"""Where an RGB-D model's depth is right: the pixels some source depth camera measured against
the pixels none did.

    python scripts/depth_coverage.py --checkpoint checkpoints/demo_rgbd.pt \\
        --config training/configs/synthetic_small_rgbd_evidence.yaml data.root=data/synthetic_small \\
        --split test --max-examples 24 --source-depth sensor

Renders the full target of each example (the model's own samples, ``ViewSeg.render``) and
splits its pixels (those with true depth) by whether the splat of the sources' measured depth
gives the pixel's ray a candidate surface (:func:`viewseg_core.model.depth_guide.camera_guides`
with the model's footprint: "measured"). For each part it prints the share of pixels, the
rendered depth's δ<1.25 and AbsRel over the pixels it fills, and its empty share; for the
measured part also the candidate surface's own δ<1.25 and AbsRel (what the depth camera
says, a ceiling for the render there). The last line is the share of pixels whose true surface
some source sees at all (true geometry: the pixel's true 3D point lies, within 5% + 3 cm, on
a source's true depth map): what no model of these keyframes can measure is the rest. The
row "true surface in no source's view" is the pixels whose true surface lies outside every
source frustum (:func:`viewseg_core.source_selection.pixel_coverage`), with the render's
scores and empty share there. The measured part is split again at the true depth edges
(:func:`depth_edges`: the true depths within one pixel span more than 10%, an object's
silhouette), where the splat's footprint can hand a background ray a foreground candidate and
the sensor model drops pixels; the last line says how often the candidate is off there, and
for how many of those the silhouette layer (``model.guide_layers: 2``, the 1-pixel z-buffer of
:func:`viewseg_core.model.depth_guide.splat_depth`) has the right surface. The row "rendered surface in no source's view" counts the
pixels whose *rendered* surface lies outside every source frustum (the same test, the
node's): the node answers those "unknown" unless ``query.unseen_pixels: extrapolated``,
so the empty share a robot sees by default is that row's share plus the render's empties.
The last line counts, over the source views that see each pixel's true surface point, those
whose measured (input) depth hides it: what ``model.occlusion_pooling`` leaves out.
docs/results.md quotes this table for the RGB-D model.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training.data import build_dataset  # noqa: E402
from training.evaluate import (SOURCE_DEPTH_CHOICES, example_indices, load_viewseg, resolve_data_config,  # noqa: E402
                               set_guide_max_footprint)
from training.panels import source_depth_kwargs  # noqa: E402
from viewseg_core.cameras import in_image, project_points  # noqa: E402
from viewseg_core.model.depth_guide import camera_guides, lift_source_depth  # noqa: E402
from viewseg_core.model.field import hidden_behind  # noqa: E402
from viewseg_core.rays import grid_rays  # noqa: E402
from viewseg_core.source_selection import pixel_coverage  # noqa: E402

PARTS = ("measured", "measured, at a depth edge", "measured, elsewhere", "not measured", "all",
         "true surface in no source's view", "rendered surface in no source's view")
# A target pixel lies at a depth edge when the true depths within EDGE_RADIUS pixels of it
# span more than this ratio (an object's silhouette against what lies behind it).
EDGE_RATIO, EDGE_RADIUS = 1.1, 1
# A target pixel's true point counts as seen by a source when it lies this close to the
# source's true depth (planar, relative + absolute).
SEEN_REL, SEEN_ABS = 0.05, 0.03


def _scores(pred: torch.Tensor, true: torch.Tensor) -> tuple[int, int, float, float]:
    """(pixels, empty pixels, δ<1.25 %, AbsRel) of predicted depth over pixels with true depth."""
    filled = torch.isfinite(pred) & (pred > 0)
    p, t = pred[filled], true[filled]
    if p.numel() == 0:
        return int(true.numel()), int(true.numel()), float("nan"), float("nan")
    ratio = torch.maximum(p / t, t / p)
    return (int(true.numel()), int((~filled).sum()), float((ratio < 1.25).float().mean() * 100),
            float(((p - t).abs() / t).mean()))


def depth_edges(depth: torch.Tensor, ratio: float = EDGE_RATIO, radius: int = EDGE_RADIUS) -> torch.Tensor:
    """[H, W] true depth (NaN / 0: unknown) -> [H, W] bool: the known depths within ``radius``
    pixels (a square) span more than ``ratio`` (max / min; unknown neighbours do not count)."""
    known = torch.isfinite(depth) & (depth > 0)
    k = 2 * radius + 1
    hi = torch.nn.functional.max_pool2d(torch.where(known, depth, 0.0)[None, None], k, 1, radius)[0, 0]
    lo = -torch.nn.functional.max_pool2d(torch.where(known, -depth, -float("inf"))[None, None], k, 1, radius)[0, 0]
    return known & (hi > ratio * lo)


def _true_points_in_sources(example: dict, depth_key: str) -> tuple[torch.Tensor, ...]:
    """The target pixels' true surface points in every source: (known [H * W]; inside,
    planar depth z, and the source depth ``example[depth_key]`` at the nearest pixel of the
    projection, each [V, H * W])."""
    H, W = (int(x) for x in example["target_size"])
    depth = example["target_depth"].reshape(1, 1, H, W).float()
    points, known = lift_source_depth(depth, example["target_K"][None, None].float(),
                                      example["target_c2w"][None, None].float(), H, W)
    V = example["source_K"].shape[0]
    source_depth = example[depth_key].float()
    Hs, Ws = source_depth.shape[-2:]
    uv, z, front = project_points(example["source_K"][None].float(), example["source_c2w"][None].float(),
                                  points[:, None].expand(1, V, -1, 3))
    inside = front & in_image(uv, H, W)
    col = torch.floor((uv[..., 0] + 0.5) * (Ws / W)).clamp(0, Ws - 1).long()
    row = torch.floor((uv[..., 1] + 0.5) * (Hs / H)).clamp(0, Hs - 1).long()
    surface = source_depth.reshape(1, V, Hs * Ws).gather(2, row * Ws + col)
    return known[0], inside[0], z[0], surface[0]


def seen_by_a_source(example: dict) -> torch.Tensor:
    """[H * W] bool: the target pixel's true surface point lies on some source's true depth map."""
    known, inside, z, surface = _true_points_in_sources(example, "source_depth")
    on_it = inside & torch.isfinite(surface) & ((z - surface).abs() <= SEEN_REL * surface + SEEN_ABS)
    return on_it.any(dim=0) & known


def hidden_views(example: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """([H * W] views that see the pixel's true surface point, [H * W] of them whose MEASURED
    depth (the input the model reads) hides it: the views ``model.occlusion_pooling`` leaves
    out of the pooling, by its rule, :func:`viewseg_core.model.field.unoccluded_views`)."""
    known, inside, z, surface = _true_points_in_sources(example, "source_depth_input")
    hidden = inside & hidden_behind(z - surface, surface, torch.isfinite(surface) & (surface > 0))
    return inside.sum(dim=0) * known, hidden.sum(dim=0) * known


@torch.no_grad()
def depth_coverage(model, dataset, max_examples: int) -> dict:
    """Per part (PARTS): pixels, empty, δ<1.25, AbsRel of the render; ``guide``: the candidate
    surfaces' own scores on the measured part; ``seen_share``: pixels some source sees. Scores
    ``max_examples`` examples spread evenly over the dataset (as ``viewseg eval``)."""
    model = model.float().eval()
    pred, true, measured, guide, second, seen, outside, true_outside, edge = [], [], [], [], [], [], [], [], []
    seeing, hiding = [], []
    for i in example_indices(len(dataset), max_examples):
        ex = dataset[i]
        H, W = (int(x) for x in ex["target_size"])
        rgb = ex["source_rgb"][None]
        sources = model.make_sources(model.encode_sources(rgb), ex["source_K"][None], ex["source_c2w"][None], H, W,
                                     rgb=rgb, **source_depth_kwargs(model, ex, torch.device("cpu")))
        out = model.render(ex["target_K"], ex["target_c2w"], H, W, sources)
        rays = grid_rays(ex["target_K"][None].float(), ex["target_c2w"][None].float(), H, W,
                         near=model.config.near, far=model.config.far)
        depth_in = ex.get("source_depth_input")
        layered = camera_guides(None if depth_in is None else depth_in[None].float(), ex["source_K"][None].float(),
                                ex["source_c2w"][None].float(), H, W, ex["target_K"][None, None].float(),
                                ex["target_c2w"][None, None].float(), H, W, rays.origins, rays.directions,
                                model.config.guide_footprint, layers=2,
                                max_footprint=model.config.guide_max_footprint)[0] * rays.z_axis[0][:, None]
        cand = layered[:, 0]
        t = ex["target_depth"].reshape(-1).float()
        known = torch.isfinite(t) & (t > 0)
        pred.append(out.depth.reshape(-1)[known])
        true.append(t[known])
        guide.append(cand[known])
        second.append(layered[:, 1][known])
        measured.append(torch.isfinite(cand[known]))
        seen.append(seen_by_a_source(ex)[known])
        if ex.get("source_depth_input") is not None:
            views, hidden = hidden_views(ex)
            seeing.append(views[known])
            hiding.append(hidden[known])
        edge.append(depth_edges(ex["target_depth"].reshape(H, W).float()).reshape(-1)[known])
        def in_no_view(depth: torch.Tensor) -> torch.Tensor:  # [H, W] -> [pixels with true depth]
            covered = pixel_coverage(ex["target_K"].numpy(), ex["target_c2w"].numpy(), depth.reshape(H, W).numpy(),
                                     ex["source_K"].numpy(), ex["source_c2w"].numpy(),
                                     tuple(ex["source_rgb"].shape[-2:]), model.config.far)
            return (torch.isfinite(depth.reshape(-1)) & ~torch.from_numpy(covered.reshape(-1)))[known]

        outside.append(in_no_view(out.depth))
        true_outside.append(in_no_view(ex["target_depth"].float()))
    if not pred:
        raise ValueError("depth_coverage: the split has no examples")
    pred, true, guide, second, measured, seen, outside, true_outside, edge = (
        torch.cat(x) for x in (pred, true, guide, second, measured, seen, outside, true_outside, edge))
    masks = {"measured": measured, "measured, at a depth edge": measured & edge, "measured, elsewhere": measured & ~edge,
             "not measured": ~measured, "all": torch.ones_like(measured),
             "true surface in no source's view": true_outside, "rendered surface in no source's view": outside}
    report = {part: _scores(pred[m], true[m]) for part, m in masks.items()}
    for part in ("measured", "measured, at a depth edge", "measured, elsewhere"):
        report[f"guide: {part}"] = _scores(guide[masks[part]], true[masks[part]])
    report["seen_share"] = float(seen.float().mean() * 100)
    if seeing:
        seeing, hiding = torch.cat(seeing), torch.cat(hiding)
        report["hidden_view_share"] = float(hiding.sum() / seeing.sum().clamp(min=1) * 100)
        report["pooling_changed_share"] = float(((hiding > 0) & (hiding < seeing)).float().mean() * 100)
    off = masks["measured, at a depth edge"] & ~_within(guide, true)
    report["edge_candidate_off"] = float(off.float().mean() * 100)
    report["edge_off_second_right"] = float(_within(second, true)[off].float().mean() * 100) if off.any() else math.nan
    report["edge_off_render_right"] = float(_within(pred, true)[off].float().mean() * 100) if off.any() else math.nan
    return report


def _within(depth: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Finite predictions within a factor 1.25 of the truth (δ<1.25 per pixel)."""
    return torch.isfinite(depth) & (depth > 0) & (torch.maximum(depth / true, true / depth) < 1.25)


def format_table(report: dict) -> str:
    total = report["all"][0]
    lines = ["| pixels | share | δ<1.25 | AbsRel | empty |", "|---|---|---|---|---|"]
    for part in PARTS:
        n, empty, d1, absrel = report[part]
        lines.append(f"| {part} | {100 * n / max(total, 1):.1f}% | {d1:.1f} | {absrel:.3f} | "
                     f"{100 * empty / max(n, 1):.1f}% |")
    for part in ("measured", "measured, at a depth edge", "measured, elsewhere"):
        n, _, d1, absrel = report[f"guide: {part}"]
        lines.append(f"| {part}: the candidate surface itself | {100 * n / max(total, 1):.1f}% | {d1:.1f} | "
                     f"{absrel:.3f} | |")
    lines.append(f"\ntrue surface seen by some source: {report['seen_share']:.1f}% of pixels")
    if "hidden_view_share" in report:
        lines.append(f"of the source views that see a pixel's true surface point, {report['hidden_view_share']:.1f}% "
                     f"measured a surface in front of it (model.occlusion_pooling leaves them out); "
                     f"{report['pooling_changed_share']:.1f}% of pixels have such a view and another that is not")
    lines.append(f"at a depth edge the candidate surface is off (δ>=1.25) for {report['edge_candidate_off']:.1f}% of "
                 f"all pixels; of those, the silhouette layer (model.guide_layers 2) has the right surface for "
                 f"{report['edge_off_second_right']:.1f}% and the render is right for {report['edge_off_render_right']:.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="viewseg-model file or training checkpoint")
    ap.add_argument("--config", default="", help="training YAML whose data section to read (default: the "
                                                 "checkpoint's data settings)")
    ap.add_argument("overrides", nargs="*", help="data.key=value")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-examples", type=int, default=24)
    ap.add_argument("--source-depth", choices=[c for c in SOURCE_DEPTH_CHOICES if c != "auto"], default="sensor")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--guide-max-footprint", type=int, default=-1, help="the depth guide's widest splat block "
                                                                        "(0: fixed; default: the model's own)")
    args = ap.parse_args(argv)
    if args.guide_max_footprint < -1:
        ap.error(f"--guide-max-footprint must be >= 0 (or -1, the model's own), got {args.guide_max_footprint}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, train_config = load_viewseg(args.checkpoint)
    if args.guide_max_footprint >= 0:
        set_guide_max_footprint(model, args.guide_max_footprint)
    data = resolve_data_config(train_config, args.config, args.overrides, source=args.checkpoint)
    data.source_depth = args.source_depth
    with tempfile.TemporaryDirectory() as pairs_dir:  # mined pairs, if any, never go into the data or model folder
        dataset = build_dataset(data, args.split, seed=0, full_target=True, pairs_dir=pairs_dir)
        print(format_table(depth_coverage(model, dataset, args.max_examples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
