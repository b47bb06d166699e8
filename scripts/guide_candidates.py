#!/usr/bin/env python3
"""How good the depth guide's candidate surfaces are, per splat footprint, before any field runs.

    python scripts/guide_candidates.py --config training/configs/synthetic_small_rgbd_extrapolate.yaml \\
        data.root=data/synthetic_small --split test --max-footprints 0,4,6 --group-by trajectory

For every target of the split (full images, source depth through the sensor model), the
sources' measured depth is splatted into the target camera
(:func:`viewseg_core.model.depth_guide.camera_guides`, ``--footprint`` blocks, widening up to
each ``--max-footprints`` value; 0 = fixed blocks) and each pixel with true depth is put in one
of four bins by its candidate against the truth: *none* (no candidate: a crack between splatted
points, or nothing measured there), *in front* (candidate < truth / 1.25: a foreground block
spilling over a silhouette), *behind* (> 1.25 x truth: a crack showing the surface behind, or a
surface no source measured) or *right*. Pixels are split into things and stuff (the paper's
classes) and, with ``--group-by KEY``, by the target frame's meta (``trajectory``: robot or
human camera height in the synthetic rooms). The last column is the median time of the splat
per target. No model is needed: the candidates depend on the sources and cameras only.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training.data import build_dataset  # noqa: E402
from training.evaluate import example_indices, resolve_data_config  # noqa: E402
from viewseg_core.classes import THING_CLASSES  # noqa: E402
from viewseg_core.data.scene_folder import SceneFolder, frame_meta  # noqa: E402
from viewseg_core.model.depth_guide import camera_guides  # noqa: E402
from viewseg_core.rays import grid_rays  # noqa: E402

BINS = ("none", "in front", "behind", "right")
# A candidate within this factor of the truth is right (the δ<1.25 of the depth metrics).
RIGHT_RATIO = 1.25


def candidate_bins(candidate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """[N] planar candidate depths (NaN: none) and [N] true depths -> [N] bin index (BINS)."""
    ratio = candidate / truth
    bins = torch.full(truth.shape, BINS.index("right"), dtype=torch.long)
    bins[ratio < 1.0 / RIGHT_RATIO] = BINS.index("in front")
    bins[ratio > RIGHT_RATIO] = BINS.index("behind")
    bins[~torch.isfinite(candidate)] = BINS.index("none")
    return bins


def planar_candidates(example: dict, footprint: int, max_footprint: int, near: float = 0.1,
                      far: float = 20.0) -> torch.Tensor:
    """[H * W] planar candidate depth of every target pixel from the example's measured source
    depth (``source_depth_input``), NaN where none."""
    H, W = (int(x) for x in example["target_size"])
    K, c2w = example["target_K"][None].float(), example["target_c2w"][None].float()
    rays = grid_rays(K, c2w, H, W, near=near, far=far)
    depth = example["source_depth_input"][None].float()
    t = camera_guides(depth, example["source_K"][None].float(), example["source_c2w"][None].float(), H, W,
                      K[:, None], c2w[:, None], H, W, rays.origins, rays.directions, footprint,
                      max_footprint=max_footprint)[0]
    return t * rays.z_axis[0]


def target_group(example: dict, group_by: str, data_root: Path, metas: dict) -> str:
    """The value of the example's target frame meta key ``group_by`` in its scene folder's
    ``cameras.json`` ("all" without a key); ``metas`` caches each scene's frame metas.
    ValueError naming the keys there when the frame has no such key."""
    if not group_by:
        return "all"
    if example["scene"] not in metas:
        metas[example["scene"]] = frame_meta(SceneFolder(data_root / example["scene"]))
    meta = metas[example["scene"]][example["target_id"]]
    if group_by not in meta:
        raise ValueError(f"--group-by {group_by!r}: target {example['target_id']} of {example['scene']} has no such "
                         f"meta key (it has {sorted(meta)})")
    return str(meta[group_by])


def tally(dataset, max_footprints: list[int], footprint: int, max_examples: int, group_by: str,
          data_root: Path) -> tuple[dict, dict]:
    """Pixel counts per (max_footprint, group, things|stuff) and bin, and the splat's median
    milliseconds per max_footprint."""
    counts: dict[tuple, torch.Tensor] = {}
    times: dict[int, list[float]] = {m: [] for m in max_footprints}
    metas: dict[str, dict] = {}
    things = torch.tensor(THING_CLASSES)
    for i in example_indices(len(dataset), max_examples):
        ex = dataset[i]
        if ex.get("source_depth_input") is None:
            raise ValueError("the examples carry no source depth: set --source-depth sensor or clean")
        group = target_group(ex, group_by, data_root, metas)
        truth = ex["target_depth"].reshape(-1).float()
        known = torch.isfinite(truth) & (truth > 0)
        is_thing = torch.isin(ex["target_labels"].reshape(-1), things)
        for m in max_footprints:
            start = time.perf_counter()
            candidate = planar_candidates(ex, footprint, m)
            times[m].append(time.perf_counter() - start)
            bins = candidate_bins(candidate, truth)
            for kind, mask in (("things", known & is_thing), ("stuff", known & ~is_thing)):
                key = (m, group, kind)
                counts[key] = counts.get(key, torch.zeros(len(BINS), dtype=torch.long)) \
                    + torch.bincount(bins[mask], minlength=len(BINS))
    return counts, {m: 1e3 * statistics.median(v) for m, v in times.items() if v}


def format_table(counts: dict, times_ms: dict, footprint: int) -> str:
    lines = ["| widest block | targets | pixels | share | " + " | ".join(BINS) + " | splat ms (median) |",
             "|---|---|---|---|" + "---|" * len(BINS) + "---|"]
    per_setting: dict[int, int] = {}
    for (m, _, _), c in counts.items():
        per_setting[m] = per_setting.get(m, 0) + int(c.sum())
    for (m, group, kind), c in sorted(counts.items()):
        total, all_of_setting = int(c.sum()), per_setting[m]
        widest = f"{m}" if m > footprint else f"{footprint} (fixed)"
        shares = " | ".join(f"{100 * int(x) / max(total, 1):.1f}%" for x in c)
        lines.append(f"| {widest} | {group} | {kind} | {100 * total / max(all_of_setting, 1):.1f}% | {shares} | "
                     f"{times_ms[m]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="training YAML whose data section to read")
    ap.add_argument("overrides", nargs="*", help="data.key=value")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-examples", type=int, default=0, help="targets, spread over the split (0: all)")
    ap.add_argument("--source-depth", choices=("sensor", "clean"), default="sensor")
    ap.add_argument("--footprint", type=int, default=2, help="the fixed block width (model.guide_footprint)")
    ap.add_argument("--max-footprints", default="0,4", help="comma-separated widest blocks to compare "
                                                            "(0 or <= --footprint: fixed blocks)")
    ap.add_argument("--group-by", default="", help="target frame meta key to split by (e.g. trajectory)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        max_footprints = [int(x) for x in args.max_footprints.split(",")]
    except ValueError:
        ap.error(f"--max-footprints takes comma-separated integers, e.g. 0,6; got {args.max_footprints!r}")
    if any(m < 0 for m in max_footprints) or args.footprint < 1:
        ap.error("--footprint must be >= 1 and --max-footprints >= 0")
    data = resolve_data_config(None, args.config, args.overrides, config_flag="--config")
    data.source_depth = args.source_depth
    with tempfile.TemporaryDirectory() as pairs_dir:  # mined pairs never go into the data folder
        dataset = build_dataset(data, args.split, seed=0, full_target=True, pairs_dir=pairs_dir)
        try:
            counts, times_ms = tally(dataset, max_footprints, args.footprint, args.max_examples, args.group_by,
                                     Path(data.root))
        except ValueError as error:     # no source depth, an unknown --group-by key
            ap.error(str(error))
    print(format_table(counts, times_ms, args.footprint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
