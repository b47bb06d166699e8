#!/usr/bin/env python3
"""Where an RGB-D model's depth error comes from: which pixels carry the AbsRel and the δ misses.

    python scripts/depth_error_budget.py --checkpoint checkpoints/demo_rgbd.pt \\
        --config training/configs/synthetic_small_rgbd_extrapolate.yaml data.root=data/synthetic_small \\
        --split test --source-depth sensor --threads 2

Renders every target of the split (full images, the model's own samples: ``ViewSeg.render``,
as ``viewseg eval``) and splits the pixels with true depth three ways, each with its share of
the pixels, the render's δ<1.25 and AbsRel there, and the share of the split's AbsRel *sum*
and of its δ misses the part carries (what fixing that part alone could win):

- **by the depth guide's candidate** against the truth (the bins of
  ``scripts/guide_candidates.py``: none, in front, behind, right);
- **by how much of the path to the rendered surface the sources saw through**
  (:func:`viewseg_core.model.depth_guide.free_path_image`, as the node computes it): where part
  of it is unobserved, an object there may be missing from the render;
- **by true distance.**

A fourth table keeps the depth only where at least 0.5, 0.75 or 0.9 of the path was seen free
(what the node's ``query.min_free_path`` does) and, beside it, as many pixels kept by the
render's confidence: which of the two picks the depth a planner can trust. The last lines say
how concentrated the AbsRel is (the share of its sum on the worst 1, 2 and 5% of pixels).
``--group-by KEY`` prints the tables again for each value of a target frame meta key
(``trajectory``: the synthetic rooms' robot and person camera heights).

``--oracle-candidates`` is a diagnosis, never a result: it hands the renderer the TRUE surface
as the candidate of some rays (``behind``: the rays whose candidate lies behind the truth;
``missing``: the rays with none; ``all``), so the band samples bracket the true surface. What
the render then gains bounds what any better candidate could give; what it does not is the
field's (it did not put density at a surface its samples reached). The bins stay those of the
real candidates, so the tables compare part for part.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, Path(__file__).resolve().parent):  # the repository; guide_candidates.py beside this file
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from guide_candidates import BINS, RIGHT_RATIO, candidate_bins, planar_candidates, target_group  # noqa: E402
from training.data import build_dataset  # noqa: E402
from training.evaluate import (SOURCE_DEPTH_CHOICES, example_indices, load_viewseg, resolve_data_config,  # noqa: E402
                               set_guide_max_footprint)
from training.panels import source_depth_kwargs  # noqa: E402
from viewseg_core.model.depth_guide import free_path_image  # noqa: E402
from viewseg_core.rays import grid_rays  # noqa: E402

ORACLES = ("off", "behind", "missing", "all")
# Parts of the path to the rendered surface seen through by some source depth camera.
FREE_PARTS = ((0.9, 1.01, "at least 90%"), (0.75, 0.9, "75-90%"), (0.5, 0.75, "50-75%"), (0.0, 0.5, "under 50%"))
DISTANCES = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, float("inf")))
WORST = (1, 2, 5)   # percent of pixels
KEEP_FREE = (0.5, 0.75, 0.9)   # query.min_free_path values compared with confidence


def oracle_guides(renderer, truth_distance: torch.Tensor, mode: str):
    """``renderer.guides`` with the true ray distance ``truth_distance`` [H * W] (NaN: unknown)
    put in place of the candidate on the rays ``mode`` names (ORACLES)."""
    real = type(renderer).guides

    def guides(sources, K, c2w, height, width, rays):
        guide = real(renderer, sources, K, c2w, height, width, rays)
        first = guide[..., 0] if guide.ndim == len(rays.shape) + 1 else guide
        truth = truth_distance.to(first).reshape(first.shape)
        known = torch.isfinite(truth)
        pick = {"behind": known & torch.isfinite(first) & (first > RIGHT_RATIO * truth),
                "missing": known & ~torch.isfinite(first),
                "all": known}[mode]
        first = torch.where(pick, truth, first)
        if guide.ndim == len(rays.shape) + 1:
            return torch.cat([first[..., None], guide[..., 1:]], dim=-1)
        return first
    return guides


@torch.no_grad()
def collect(model, dataset, max_examples: int, oracle: str = "off", group_by: str = "",
            data_root: Path | None = None) -> dict[str, torch.Tensor]:
    """Per pixel with true depth, over ``max_examples`` examples spread over the dataset (0: all):
    ``true``, ``pred`` (NaN: empty), ``bin`` (index into BINS), ``free`` (observed free share
    of the path to the rendered surface, NaN where empty), ``confidence`` (the render's raw score);
    and ``groups``, the target frames' ``group_by`` meta values (guide_candidates.target_group,
    read from the scene folders under ``data_root``; "all" without a key) of each pixel by index
    into the sorted list ``pixels["group_names"]``."""
    model = model.float().eval()
    cfg = model.config
    out: dict[str, list[torch.Tensor]] = {"true": [], "pred": [], "bin": [], "free": [], "confidence": []}
    groups: list[str] = []
    metas: dict = {}
    for i in example_indices(len(dataset), max_examples):
        ex = dataset[i]
        group = target_group(ex, group_by, Path(data_root or "."), metas)
        if ex.get("source_depth_input") is None:
            raise ValueError("the examples carry no source depth: set --source-depth sensor or clean")
        H, W = (int(x) for x in ex["target_size"])
        true = ex["target_depth"].reshape(-1).float()
        known = torch.isfinite(true) & (true > 0)
        rgb = ex["source_rgb"][None]
        sources = model.make_sources(model.encode_sources(rgb), ex["source_K"][None], ex["source_c2w"][None], H, W,
                                     rgb=rgb, **source_depth_kwargs(model, ex, torch.device("cpu")))
        if oracle != "off":
            rays = grid_rays(ex["target_K"][None].float(), ex["target_c2w"][None].float(), H, W)
            truth_distance = torch.where(known, true / rays.z_axis[0], torch.full_like(true, float("nan")))
            model.renderer.guides = oracle_guides(model.renderer, truth_distance, oracle)
        try:
            rendered = model.render(ex["target_K"], ex["target_c2w"], H, W, sources)
        finally:
            model.renderer.__dict__.pop("guides", None)
        pred = rendered.depth.reshape(-1).float()
        candidate = planar_candidates(ex, cfg.guide_footprint, cfg.guide_max_footprint, cfg.near, cfg.far)
        # What the node's query.min_free_path compares, from the sources the model read.
        free = free_path_image(rendered.depth.reshape(H, W).float(), ex["target_K"], ex["target_c2w"],
                               sources).reshape(-1)
        out["true"].append(true[known])
        out["pred"].append(pred[known])
        out["bin"].append(candidate_bins(candidate, true)[known])
        out["free"].append(free[known])
        out["confidence"].append(rendered.confidence.reshape(-1).float()[known])
        groups += [group] * int(known.sum())
    if not out["true"]:
        raise ValueError("depth_error_budget: the split has no examples")
    pixels = {k: torch.cat(v) for k, v in out.items()}
    names = sorted(set(groups))
    pixels["groups"] = torch.tensor([names.index(g) for g in groups], dtype=torch.long)
    pixels["group_names"] = names
    return pixels


def group_pixels(pixels: dict, name: str) -> dict[str, torch.Tensor]:
    """The pixels of one group (collect's ``groups``)."""
    keep = pixels["groups"] == pixels["group_names"].index(name)
    return {k: v[keep] for k, v in pixels.items() if isinstance(v, torch.Tensor) and k != "groups"}


def budget(pixels: dict[str, torch.Tensor]) -> dict:
    """Rows of the four tables and the concentration of the AbsRel sum (see the module docstring)."""
    true, pred = pixels["true"], pixels["pred"]
    filled = torch.isfinite(pred) & (pred > 0)
    rel = torch.where(filled, (pred - true).abs() / true, torch.zeros_like(true))
    miss = filled & (torch.maximum(pred / true, true / pred) >= RIGHT_RATIO)   # as viewseg eval: over filled pixels
    rel_sum, misses, n = float(rel.sum()), int(miss.sum()), true.numel()

    def row(mask: torch.Tensor) -> tuple[float, float, float, float, float]:
        """share of pixels %; over its filled pixels δ<1.25 % and AbsRel; its share of the AbsRel sum % and
        of the δ misses %."""
        k, f = int(mask.sum()), mask & filled
        if not f.any():
            return 100 * k / n, float("nan"), float("nan"), 0.0, 0.0
        return (100 * k / n, 100 * (1 - int(miss[mask].sum()) / int(f.sum())), float(rel[f].mean()),
                100 * float(rel[mask].sum()) / max(rel_sum, 1e-12), 100 * int(miss[mask].sum()) / max(misses, 1))

    free = pixels["free"]
    report = {
        "all": row(torch.ones_like(filled)),
        "empty": 100 * float((~filled).float().mean()),
        "bins": {name: row(pixels["bin"] == i) for i, name in enumerate(BINS)},
        "free": {name: row(filled & (free >= lo) & (free < hi)) for lo, hi, name in FREE_PARTS},
        "distance": {f"{lo:g}-{hi:g} m" if hi != float("inf") else f"{lo:g} m and more":
                     row((true >= lo) & (true < hi)) for lo, hi in DISTANCES},
        "worst": {},
        "keep": {},
    }
    # Depth kept where the path was seen free (the node's query.min_free_path), against keeping
    # as many pixels by the render's confidence.
    confidence = pixels["confidence"].nan_to_num(0.0)
    for threshold in KEEP_FREE:
        kept = filled & (free >= threshold)
        by_confidence = torch.zeros_like(kept)
        by_confidence[torch.argsort(torch.where(filled, confidence, torch.full_like(confidence, -1.0)),
                                    descending=True)[:int(kept.sum())]] = True
        report["keep"][threshold] = tuple(x for mask in (kept, by_confidence) for x in _kept(mask, rel, miss, n))
    ordered = torch.sort(rel, descending=True).values
    for p in WORST:
        k = max(1, int(round(n * p / 100)))
        report["worst"][p] = (100 * float(ordered[:k].sum()) / max(rel_sum, 1e-12),
                              float(ordered[k:].sum()) / max(n - k, 1))
    return report


def _kept(mask: torch.Tensor, rel: torch.Tensor, miss: torch.Tensor, n: int) -> tuple[float, float, float]:
    """(share of all pixels %, δ<1.25 %, AbsRel) of the filled pixels ``mask`` keeps."""
    k = int(mask.sum())
    if k == 0:
        return 0.0, float("nan"), float("nan")
    return 100 * k / n, 100 * (1 - int(miss[mask].sum()) / k), float(rel[mask].mean())


def format_report(report: dict) -> str:
    n_all = report["all"]
    lines = [f"all pixels with true depth: δ<1.25 {n_all[1]:.1f}, AbsRel {n_all[2]:.3f}, empty {report['empty']:.1f}%",
             ""]
    for title, key in (("the depth guide's candidate", "bins"),
                       ("the path to the rendered surface seen free by a source", "free"),
                       ("true distance", "distance")):
        lines += [f"| {title} | pixels | δ<1.25 | AbsRel | share of the AbsRel sum | share of the δ misses |",
                  "|---|---|---|---|---|---|"]
        for name, (share, d1, absrel, rel_share, miss_share) in report[key].items():
            lines.append(f"| {name} | {share:.1f}% | {d1:.1f} | {absrel:.3f} | {rel_share:.1f}% | {miss_share:.1f}% |")
        lines.append("")
    lines += ["| depth kept where the path was seen free for at least | kept | δ<1.25 | AbsRel | "
              "as many kept by confidence: δ<1.25 | AbsRel |", "|---|---|---|---|---|---|"]
    for threshold, (kept, d1, absrel, _, c_d1, c_absrel) in report["keep"].items():
        lines.append(f"| {threshold:g} | {kept:.1f}% | {d1:.1f} | {absrel:.3f} | {c_d1:.1f} | {c_absrel:.3f} |")
    lines.append("")
    for p, (share, rest) in report["worst"].items():
        lines.append(f"the worst {p}% of pixels carry {share:.1f}% of the AbsRel sum; AbsRel over the rest {rest:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="viewseg-model file or training checkpoint (RGB-D)")
    ap.add_argument("--config", default="", help="training YAML whose data section to read (default: the "
                                                 "checkpoint's data settings)")
    ap.add_argument("overrides", nargs="*", help="data.key=value")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-examples", type=int, default=0, help="targets, spread over the split (0: all)")
    ap.add_argument("--source-depth", choices=[c for c in SOURCE_DEPTH_CHOICES if c not in ("auto", "none")],
                    default="sensor")
    ap.add_argument("--oracle-candidates", choices=ORACLES, default="off",
                    help="diagnosis only: the true surface as the candidate of these rays (module docstring)")
    ap.add_argument("--group-by", default="", help="also print the tables for each value of this target frame "
                                                   "meta key (e.g. trajectory: robot or human camera height)")
    ap.add_argument("--guide-max-footprint", type=int, default=-1, help="the depth guide's widest splat block "
                                                                        "(0: fixed; default: the model's own)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.guide_max_footprint < -1:
        ap.error(f"--guide-max-footprint must be >= 0 (or -1, the model's own), got {args.guide_max_footprint}")
    if args.max_examples < 0:
        ap.error(f"--max-examples must be >= 0, got {args.max_examples}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, train_config = load_viewseg(args.checkpoint)
    if not (model.config.source_depth and model.config.depth_guided):
        ap.error(f"{args.checkpoint} is not a depth-guided RGB-D model (model.source_depth and "
                 f"model.depth_guided): it has no candidate surfaces to split by")
    if args.guide_max_footprint >= 0:
        set_guide_max_footprint(model, args.guide_max_footprint)
    data = resolve_data_config(train_config, args.config, args.overrides, source=args.checkpoint)
    data.source_depth = args.source_depth
    with tempfile.TemporaryDirectory() as pairs_dir:  # mined pairs never go into the data or model folder
        dataset = build_dataset(data, args.split, seed=0, full_target=True, pairs_dir=pairs_dir)
        try:
            pixels = collect(model, dataset, args.max_examples, args.oracle_candidates, args.group_by,
                             Path(data.root))
        except ValueError as error:     # no source depth, an unknown --group-by key
            ap.error(str(error))
    if args.oracle_candidates != "off":
        print(f"DIAGNOSIS, not a result: the true surface is the candidate of the rays "
              f"'{args.oracle_candidates}' names\n")
    print(format_report(budget(pixels)))
    if args.group_by:
        for name in pixels["group_names"]:
            print(f"\n## targets with {args.group_by} = {name}\n")
            print(format_report(budget(group_pixels(pixels, name))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
