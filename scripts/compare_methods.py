#!/usr/bin/env python3
"""Re-score and re-compare the methods of a finished ``viewseg eval`` on any subset of its images.

    python scripts/compare_methods.py --stats runs/synthetic_gpu2/eval_full/per_image_stats.npz \\
        [--max-examples 48] [--resamples 1000] [--seed 0] [--out subset.md]
    python scripts/compare_methods.py --stats runs/ablation_base/eval24/per_image_stats.npz \\
        --against runs/ablation_no_viewdir/eval24/per_image_stats.npz     # two checkpoints, same images
    python scripts/compare_methods.py --stats runs/rgbd_eval/per_image_stats.npz --target-meta trajectory=robot

``viewseg eval`` writes each method's per-image confusion matrix and depth sums to
``per_image_stats.npz``; this prints the evaluation's markdown tables (scores of every method
and ViewSeg minus each baseline with paired image-bootstrap intervals) for the same images or
for ``--max-examples N`` of them, chosen as ``viewseg eval --max-examples N`` chooses them
(spread evenly over the split). Nothing is rendered again, so a subset or another bootstrap
seed costs seconds instead of the evaluation's minutes. The paper's merged IoU_T / IoU_S come
back from the per-image matrices as well. ``--against OTHER.npz`` adds the ViewSeg of another
evaluation of the SAME images (another checkpoint: an ablation, a noise-trained model) as the
method ``against``, so that the ViewSeg-minus-method table compares the two checkpoints with
the paired bootstrap. A file written before the nearest-view names were
split, by an evaluation without ``--segmenter``, holds the true-label nearest view under
``nearest_view``: it is read back as ``nearest_view_true_labels``. ``--target-meta KEY=VALUE``
keeps the images whose target frame's ``meta`` in the scene folder's ``cameras.json`` has that
value, e.g. ``trajectory=robot`` for the synthetic rooms' low robot cameras (0.3-0.6 m) and
``trajectory=human`` for the others: it reads the evaluation's ``pairs_<split>.json`` (beside
the statistics) and the scene folders under the evaluation's data root (``--data`` elsewhere).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without `pip install -e .`

import numpy as np  # noqa: E402

from training.evaluate import example_indices, metrics_markdown, read_image_stats, score_methods  # noqa: E402
from viewseg_core.data.pairs import read_pairs  # noqa: E402
from viewseg_core.data.scene_folder import SceneFolder, frame_meta, meta_match  # noqa: E402
from viewseg_core.metrics import SegmentationEvaluator  # noqa: E402


def subset(evaluators: dict[str, SegmentationEvaluator], index: np.ndarray, examples_in_split: int,
           max_examples: int) -> tuple[dict[str, SegmentationEvaluator], list[int]]:
    """The evaluators restricted to the images ``viewseg eval --max-examples`` would pick."""
    if max_examples <= 0:
        return evaluators, [int(i) for i in index]
    wanted = example_indices(examples_in_split, max_examples)
    rows = {int(i): r for r, i in enumerate(index)}
    missing = [i for i in wanted if i not in rows]
    if missing:
        raise ValueError(f"--max-examples {max_examples} wants dataset indices {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, which this evaluation did not score")
    return take_rows(evaluators, [rows[i] for i in wanted]), wanted


def rows_with_target_meta(stats: str | Path, key: str, value: str, meta: dict, index: np.ndarray,
                          data_root: str | Path | None = None) -> list[int]:
    """The rows of ``stats`` whose target frame has ``meta[key] == value`` in its scene folder
    (dataset index i is the i-th entry of the evaluation's ``pairs_<split>.json``)."""
    pairs_path = Path(stats).parent / f"pairs_{meta.get('split', 'test')}.json"
    if not pairs_path.is_file():
        raise ValueError(f"--target-meta needs the evaluation's pairs file {pairs_path}, which is not there")
    pairs = read_pairs(pairs_path)
    root = Path(data_root or meta.get("data", ""))
    if not root.is_dir():
        raise ValueError(f"--target-meta needs the evaluation's data root {str(root)!r} (give --data)")
    frames: dict[str, dict[str, dict]] = {}
    rows = []
    for row, i in enumerate(index):
        if not 0 <= int(i) < len(pairs):
            raise ValueError(f"{stats}: dataset index {int(i)} is not in {pairs_path} ({len(pairs)} entries)")
        entry = pairs[int(i)]
        if entry.scene not in frames:
            frames[entry.scene] = frame_meta(SceneFolder(root / entry.scene))
        if str(frames[entry.scene][entry.target].get(key)) == value:
            rows.append(row)
    return rows


def take_rows(evaluators: dict[str, SegmentationEvaluator], rows: list[int]) -> dict[str, SegmentationEvaluator]:
    out = {}
    for name, ev in evaluators.items():
        arrays = ev.image_arrays()
        out[name] = SegmentationEvaluator.from_image_arrays(*(arrays[k][rows] for k in ("conf", "depth", "missing")))
    return out


AGAINST = "against"  # method name of --against's ViewSeg


def compare(stats: str | Path, max_examples: int = 0, resamples: int = 1000, seed: int = 0,
            against: str | Path | None = None, target_meta: tuple[str, str] | None = None,
            data_root: str | Path | None = None) -> dict:
    """The report (scores and comparisons) of ``max_examples`` of the images in ``stats``
    (with ``against``: that evaluation's ViewSeg on the same images as method ``against``;
    with ``target_meta`` (key, value): only the images whose target frame has it)."""
    evaluators, index, in_split, meta = read_image_stats(stats)
    titles = {}
    if against is not None:
        other, other_index, _, other_meta = read_image_stats(against)
        if "viewseg" not in evaluators or "viewseg" not in other:
            raise ValueError("--against compares the ViewSeg of two evaluations: both files need method 'viewseg'")
        if not np.array_equal(index, other_index):
            raise ValueError(f"--against {against} scored other images than {stats} (dataset indices differ): "
                             "evaluate both with the same split and --max-examples")
        evaluators = {**evaluators, AGAINST: other["viewseg"]}
        titles[AGAINST] = f"ViewSeg of {other_meta.get('checkpoint', against)}"
    evaluators, chosen = subset(evaluators, index, in_split, max_examples)
    if target_meta is not None:
        rows = rows_with_target_meta(stats, *target_meta, meta, np.asarray(chosen), data_root)
        if not rows:
            raise ValueError(f"no scored image has a target with {target_meta[0]}={target_meta[1]}")
        evaluators, chosen = take_rows(evaluators, rows), [chosen[r] for r in rows]
    split = meta.get("split", "?")
    if target_meta is not None:
        split = f"{split} (only the targets with {target_meta[0]}={target_meta[1]})"
    return {"titles": titles, "num_examples": len(chosen), "examples_in_split": in_split, "split": split,
            "data": meta.get("data", "?"), "checkpoint": meta.get("checkpoint", "?"),
            "segmenter": meta.get("segmenter", ""), "stats": str(stats),
            **score_methods(evaluators, resamples, seed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", required=True, help="per_image_stats.npz written by viewseg eval")
    parser.add_argument("--max-examples", type=int, default=0, help="the subset viewseg eval --max-examples N "
                                                                    "picks (0: every image in the file)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="also write the markdown here")
    parser.add_argument("--against", default="", help="per_image_stats.npz of another checkpoint's evaluation of "
                                                      "the same images: compared with this ViewSeg")
    parser.add_argument("--target-meta", default="", metavar="KEY=VALUE",
                        help="only the images whose target frame's meta has KEY=VALUE (e.g. trajectory=robot)")
    parser.add_argument("--data", default="", help="data root of the evaluation (default: the one it recorded)")
    args = parser.parse_args(argv)
    if args.resamples < 0:
        parser.error(f"--resamples must be >= 0, got {args.resamples}")
    target_meta = None
    if args.target_meta:
        try:
            target_meta = meta_match(args.target_meta)
        except ValueError as error:
            parser.error(f"--target-meta: {error}")
    try:
        report = compare(args.stats, args.max_examples, args.resamples, args.seed, args.against or None,
                         target_meta, args.data or None)
    except ValueError as exc:
        print(f"compare_methods: {exc}", file=sys.stderr)
        return 2
    text = metrics_markdown(report)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
