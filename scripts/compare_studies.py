#!/usr/bin/env python
"""Compare how two training recipes degrade in the same ``viewseg eval`` study: the drop of each
from the study's reference row, and the other's drop as a difference and a ratio of the reference
recipe's, with paired image-bootstrap intervals.

    python scripts/compare_studies.py \
        --reference runs/ablation_base/eval_noise95/study_pose_noise.json \
        --other runs/pose_spread_stage1/eval_noise95/study_pose_noise.json [--resamples 1000] [--out F.md]

Each side takes one study, or several: one per training seed of the same recipe. A recipe's
per-image drop is then the mean over its seeds' drops on that image, so the drops and the ratio
estimate what the recipe does on average over seeds, and each seed's own drops are listed
beside them. The intervals resample images, not seeds (a handful of seeds cannot be resampled):
they say how sure the targets make us of the seed-averaged drops, and the per-seed rows show
how far one seed strays from them.

Issue 18's pose-noise target is such a ratio ("the model trained with noise loses at most half
as much mIoU at 5° as the clean-trained one"), and a ratio of two small drops is noisy: this
gives it an interval. Both studies must have scored the same targets with the same sources
(same split, pairs and levels); the script refuses otherwise. The measure is the per-image mIoU
each study stores per example (``image_miou``); images where some study's per-image mIoU is
undefined at some row are left out, and counted. ``--measure`` picks a dataset-level score
instead (dataset mIoU, pixel accuracy, IoU_T, δ<1.25, depth L1, AbsRel): it is computed from the
per-image statistics each study writes beside its JSON (``study_<kind>_per_image.npz``), so
every resample re-scores the pooled images, as ``viewseg eval``'s own bootstrap does.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without `pip install -e .`

from training.evaluate import read_image_stats, study_stats_file  # noqa: E402
from viewseg_core.metrics import SegmentationEvaluator, bootstrap_counts, percentile_interval  # noqa: E402

# --measure: (title, unit, scale from the stored fraction); per_image_miou comes from the JSON.
MEASURES = {"per_image_miou": ("per-image mIoU", "%", 100.0), "miou": ("dataset mIoU", "%", 100.0),
            "pacc": ("pixel accuracy", "%", 100.0), "iou_t_merged": ("IoU_T (things merged)", "%", 100.0),
            "iou_s_merged": ("IoU_S (stuff merged)", "%", 100.0), "delta1": ("δ<1.25", "%", 100.0),
            "depth_l1": ("depth L1", "m", 1.0), "depth_absrel": ("AbsRel", "", 1.0)}


def read_study(path: str | Path) -> dict:
    """A study report written by ``viewseg eval`` (study_*.json); errors name the file."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read study {path}: {exc}") from exc
    if not isinstance(report, dict) or "study" not in report or "per_example" not in report:
        raise ValueError(f"{path} is not a viewseg eval study report (study_*.json)")
    return report


def read_study_stats(path: str | Path, report: dict) -> dict[str, SegmentationEvaluator]:
    """Each row's evaluator from the per-image statistics beside study JSON ``path``; they must
    be of the same images as the report's examples."""
    stats_path = Path(path).parent / study_stats_file(report["study"])
    if not stats_path.exists():
        raise ValueError(f"{path} has no per-image statistics beside it ({stats_path.name}; viewseg eval writes "
                         "them since 2026-12-06): evaluate again, or use --measure per_image_miou")
    evaluators, index, _, meta = read_image_stats(stats_path)
    if [int(i) for i in index] != [int(e["index"]) for e in report["per_example"]]:
        raise ValueError(f"{stats_path} holds other images than {path}")
    if meta.get("checkpoint", "") != str(report.get("checkpoint", "")):
        raise ValueError(f"{stats_path} is of checkpoint {meta.get('checkpoint')!r}, {path} of "
                         f"{report.get('checkpoint')!r}: evaluate again")
    labels = [row["label"] for row in report["rows"]]
    if list(evaluators) != labels:
        raise ValueError(f"{stats_path} has rows {list(evaluators)}, {path} has {labels}")
    return evaluators


def per_image_scores(report: dict, source: str) -> tuple[list[str], np.ndarray, list[tuple]]:
    """(row labels, [images, rows] per-image mIoU in %, the identity of each image)."""
    labels = [row["label"] for row in report["rows"]]
    scores, identity = [], []
    for example in report["per_example"]:
        miou = example["image_miou"]
        if set(miou) != set(labels):
            raise ValueError(f"{source}: example {example['index']} lacks rows {sorted(set(labels) - set(miou))}")
        scores.append([np.nan if miou[label] is None else 100.0 * float(miou[label]) for label in labels])
        identity.append((example["index"], example["scene"], example["target_id"],
                         tuple(example["source_ids"][labels[0]])))
    return labels, np.asarray(scores, dtype=np.float64).reshape(len(identity), len(labels)), identity


def _side(reports: list[dict], name: str) -> tuple[list[str], np.ndarray, list[tuple]]:
    """(row labels, [seeds, images, rows] per-image mIoU, image identity) of one side's studies,
    which must agree on rows and images."""
    if not reports:
        raise ValueError(f"no {name} study given")
    labels, scores, ids = per_image_scores(reports[0], f"{name} 1")
    stacked = [scores]
    for k, report in enumerate(reports[1:], start=2):
        labels_k, scores_k, ids_k = per_image_scores(report, f"{name} {k}")
        _check_same(labels, ids, labels_k, ids_k, f"{name} 1", f"{name} {k}")
        stacked.append(scores_k)
    return labels, np.stack(stacked), ids


def _check_same(labels_a: list[str], ids_a: list[tuple], labels_b: list[str], ids_b: list[tuple],
                name_a: str, name_b: str) -> None:
    if labels_a != labels_b:
        raise ValueError(f"the studies have different rows: {labels_a} ({name_a}) and {labels_b} ({name_b})")
    if ids_a != ids_b:
        first = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
        raise ValueError(f"the studies scored different targets or sources (first difference at example "
                         f"{first} of {len(ids_a)} and {len(ids_b)}, {name_a} and {name_b}): compare "
                         "evaluations of the same pairs")


def compare_studies(reference: dict | list[dict], other: dict | list[dict], resamples: int = 1000,
                    level: float = 0.95, seed: int = 0, counts: np.ndarray | None = None,
                    measure: str = "per_image_miou", reference_stats: list[dict] | None = None,
                    other_stats: list[dict] | None = None) -> dict:
    """Each non-reference row's drop (row minus the study's reference row, in ``measure``) for
    both sides, ``other - reference`` and ``other / reference`` of those drops, each with its
    ``level`` percentile interval over image resamples drawn once for both sides (``counts``
    [resamples, images]: fixed draw counts instead, for tests). A side is one study or a list
    of them (one per training seed): its scores and drops are the mean over its studies.

    ``measure`` is a key of :data:`MEASURES`. ``per_image_miou`` reads the studies' per-example
    mIoU; any other needs each study's row evaluators ({label: SegmentationEvaluator}, from
    :func:`read_study_stats`) in ``reference_stats`` / ``other_stats``, in the studies' order."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; known: {', '.join(MEASURES)}")
    references = [reference] if isinstance(reference, dict) else list(reference)
    others = [other] if isinstance(other, dict) else list(other)
    studies = {r.get("study") for r in references + others}
    if len(studies) != 1:
        raise ValueError(f"different studies: {sorted(map(repr, studies))}")
    labels, a_images, ids_a = _side(references, "reference")
    labels_b, b_images, ids_b = _side(others, "other")
    _check_same(labels, ids_a, labels_b, ids_b, "reference", "other")
    title, unit, scale = MEASURES[measure]
    if measure == "per_image_miou":
        keep = np.isfinite(a_images).all(axis=(0, 2)) & np.isfinite(b_images).all(axis=(0, 2))
    else:
        keep = np.ones(len(ids_a), dtype=bool)  # a pooled score is defined over every image
        for stats, side, name in ((reference_stats, references, "reference"), (other_stats, others, "other")):
            if stats is None or len(stats) != len(side) or any(list(ev) != labels for ev in stats):
                raise ValueError(f"--measure {measure} needs the {name} studies' per-image statistics, one "
                                 f"{{row label: evaluator}} per study with rows {labels}")
    n = int(keep.sum())
    if n == 0:
        raise ValueError("no image has a defined per-image mIoU in every row of every study")
    if counts is None:
        counts = bootstrap_counts(n, resamples, seed)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != n:
        raise ValueError(f"counts must be [resamples, {n}], got {counts.shape}")
    # Row 0: every image once (the point estimate); then the resamples.
    draws = np.concatenate([np.ones((1, n)), counts])

    def side_scores(images: np.ndarray, stats: list[dict] | None) -> np.ndarray:
        """[studies, 1 + resamples, rows] scores of one side, in the measure's unit."""
        if measure == "per_image_miou":
            weights = draws / draws.sum(axis=1, keepdims=True)
            return np.einsum("dn,snr->sdr", weights, images[:, keep])
        return scale * np.stack([np.concatenate([ev[label].resampled_scores(draws, (measure,)) for label in labels],
                                                axis=1) for ev in stats])

    a_scores, b_scores = side_scores(a_images, reference_stats), side_scores(b_images, other_stats)
    reference = references[0]
    ref = reference.get("reference", labels[0])
    r = labels.index(ref)

    def interval(values: np.ndarray) -> list[float]:
        return list(percentile_interval(values, level))

    rows = []
    for j, label in enumerate(labels):
        if j == r:
            continue
        seeds_a, seeds_b = a_scores[:, :, j] - a_scores[:, :, r], b_scores[:, :, j] - b_scores[:, :, r]
        drop_a, drop_b = seeds_a.mean(axis=0), seeds_b.mean(axis=0)      # [1 + resamples]
        boot_a, boot_b = drop_a[1:], drop_b[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            boot_ratio = np.where(boot_a != 0, boot_b / boot_a, np.nan)
        mean_a, mean_b = float(drop_a[0]), float(drop_b[0])
        rows.append({"label": label,
                     "reference_drop": mean_a, "reference_drop_interval": interval(boot_a),
                     "other_drop": mean_b, "other_drop_interval": interval(boot_b),
                     "difference": mean_b - mean_a, "difference_interval": interval(boot_b - boot_a),
                     "ratio": mean_b / mean_a if mean_a != 0 else float("nan"),
                     "ratio_interval": interval(boot_ratio),
                     "ratio_undefined_resamples": int(np.sum(~np.isfinite(boot_ratio))),
                     "reference_seed_drops": [float(d) for d in seeds_a[:, 0]],
                     "other_seed_drops": [float(d) for d in seeds_b[:, 0]]})
    return {"study": reference["study"], "reference_row": ref, "measure": f"{title} ({unit})" if unit else title,
            "measure_key": measure, "dataset_miou": dataset_miou_drops(references, others, ref),
            "images": n, "images_left_out": int((~keep).sum()), "resamples": int(counts.shape[0]),
            "level": level, "reference_checkpoints": [r.get("checkpoint") for r in references],
            "other_checkpoints": [o.get("checkpoint") for o in others],
            "reference_scores": dict(zip(labels, map(float, a_scores[:, 0].mean(axis=0)))),
            "other_scores": dict(zip(labels, map(float, b_scores[:, 0].mean(axis=0)))), "rows": rows}


def dataset_miou_drops(references: list[dict], others: list[dict], ref: str) -> list[dict] | None:
    """Each row's drop in dataset mIoU (%, from the studies' own row scores: point estimates that
    need no per-image statistics; ``measure="miou"`` resamples them), averaged over a side's
    studies, and the ratio of the two sides' drops; None when a row of some study has none."""
    def scores(report: dict) -> dict[str, float] | None:
        values = {row["label"]: (row.get("scores") or {}).get("dataset_miou") for row in report["rows"]}
        return None if any(v is None for v in values.values()) else {k: 100.0 * v for k, v in values.items()}

    sides = []
    for reports in (references, others):
        side = [scores(report) for report in reports]
        if any(s is None for s in side):
            return None
        sides.append(side)
    out = []
    for label in sides[0][0]:
        if label == ref:
            continue
        seed_a, seed_b = ([s[label] - s[ref] for s in side] for side in sides)
        drop_a, drop_b = float(np.mean(seed_a)), float(np.mean(seed_b))
        out.append({"label": label, "reference_drop": drop_a, "other_drop": drop_b,
                    "ratio": drop_b / drop_a if drop_a != 0 else float("nan"),
                    "reference_seed_drops": seed_a, "other_seed_drops": seed_b})
    return out


def _span(value: float, low_high: list[float], digits: int = 2, sign: str = "+") -> str:
    fmt = f"{{:{sign}.{digits}f}}"
    return f"{fmt.format(value)} [{fmt.format(low_high[0])}, {fmt.format(low_high[1])}]"


def comparison_markdown(result: dict) -> str:
    pct = round(100 * result["level"])
    refs, others = result["reference_checkpoints"], result["other_checkpoints"]
    seeds = len(refs) > 1 or len(others) > 1
    digits = 2 if MEASURES[result.get("measure_key", "per_image_miou")][1] == "%" else 3

    def names(checkpoints: list) -> str:
        return ", ".join(f"`{c}`" for c in checkpoints)

    lines = [f"# Two recipes in one {result['study']} study: drops from {result['reference_row']}", "",
             f"- reference: {names(refs)}", f"- other: {names(others)}",
             f"- measure: {result['measure']}, on {result['images']} images "
             f"({result['images_left_out']} left out: undefined in some row); "
             f"{pct}% paired image-bootstrap intervals over {result['resamples']} resamples"]
    if seeds:
        lines.append(f"- each side's scores and drops are the mean over its {len(refs)} and {len(others)} "
                     "studies (training seeds); the intervals resample images, not seeds")
    lines += ["", "| row | reference | other | reference: drop | other: drop | other - reference | other / reference |",
              "|---|---|---|---|---|---|---|"]
    ref_row = result["reference_row"]
    lines.append(f"| {ref_row} | {result['reference_scores'][ref_row]:.{digits}f} | "
                 f"{result['other_scores'][ref_row]:.{digits}f} | | | | |")
    for row in result["rows"]:
        label = row["label"]
        lines.append(f"| {label} | {result['reference_scores'][label]:.{digits}f} | "
                     f"{result['other_scores'][label]:.{digits}f} | "
                     f"{_span(row['reference_drop'], row['reference_drop_interval'], digits)} | "
                     f"{_span(row['other_drop'], row['other_drop_interval'], digits)} | "
                     f"{_span(row['difference'], row['difference_interval'], digits)} | "
                     f"{_span(row['ratio'], row['ratio_interval'], sign='')} |")
    if seeds:
        lines += ["", f"Each study's own drop in {result['measure']}, in the order given:", "",
                  "| row | reference: drop per study | other: drop per study |", "|---|---|---|"]
        lines += [f"| {row['label']} | {', '.join(f'{d:+.{digits}f}' for d in row['reference_seed_drops'])} | "
                  f"{', '.join(f'{d:+.{digits}f}' for d in row['other_seed_drops'])} |" for row in result["rows"]]
    if result.get("dataset_miou") and result.get("measure_key") != "miou":
        lines += ["", "Dataset mIoU (%), from each study's row scores: point estimates (`--measure miou` gives "
                      "them intervals)" + ("; each side's drop is the mean over its studies." if seeds else "."), "",
                  "| row | reference: drop | other: drop | other / reference |", "|---|---|---|---|"]
        lines += [f"| {row['label']} | {row['reference_drop']:+.3f} | {row['other_drop']:+.3f} | {row['ratio']:.2f} |"
                  for row in result["dataset_miou"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, nargs="+",
                        help="study_*.json of the reference recipe: one, or one per training seed")
    parser.add_argument("--other", required=True, nargs="+",
                        help="study_*.json of the other recipe (same targets): one, or one per training seed")
    parser.add_argument("--measure", choices=list(MEASURES), default="per_image_miou",
                        help="the score whose drops are compared (default: per-image mIoU, from the JSON; the "
                             "others re-score the per-image statistics beside it)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the markdown here")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error(f"--resamples must be >= 1 (the intervals are bootstrap percentiles), got {args.resamples}")
    try:
        sides = []
        for paths in (args.reference, args.other):
            reports = [read_study(path) for path in paths]
            stats = None if args.measure == "per_image_miou" else \
                [read_study_stats(path, report) for path, report in zip(paths, reports)]
            sides.append((reports, stats))
        (references, reference_stats), (others, other_stats) = sides
        result = compare_studies(references, others, args.resamples, seed=args.seed, measure=args.measure,
                                 reference_stats=reference_stats, other_stats=other_stats)
    except ValueError as error:
        print(f"compare_studies: {error}", file=sys.stderr)
        return 2
    text = comparison_markdown(result)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
