"""Evaluation metrics: semantic scores from one dataset-level confusion matrix, per-image
mIoU, and depth errors, each also split into things and stuff.

Semantic definitions follow detectron2's ``SemSegEvaluator`` (what ViewSeg reported):

* IoU_c = TP / (TP + FP + FN), defined for classes that occur in the ground truth *or* the
  prediction; mIoU averages over those. A class predicted but absent from the ground truth
  therefore counts with IoU 0 (a false positive is an error).
* Class accuracy = TP / (TP + FN), for classes in the ground truth; mACC averages those.
* fwIoU weights IoU_c by the class's share of ground-truth pixels.
* pACC = sum TP / number of labelled pixels.
* "things" and "stuff" mIoU (``miou_things``, ``miou_stuff``): the same mean restricted to
  :data:`THING_CLASSES` and :data:`STUFF_CLASSES` (wall, floor, ceiling).
* The paper's IoU_T and IoU_S (``iou_t_merged``, ``iou_s_merged``): every thing class merged
  into one class "thing" and wall, floor and ceiling into one class "stuff", then the IoU of
  each merged class (:func:`merged_iou`). A thing pixel labelled as another thing class is
  right here and wrong in ``miou_things``; a pixel predicted "unknown" (255, an empty ray) is
  a false negative of its true group.

Per-image mIoU (Semantic-NeRF / S-Ray protocol) computes mIoU on each image's own confusion
matrix and averages over images; it is reported separately and named ``per_image_miou``.

Is a difference between two methods real? :func:`paired_bootstrap` resamples the images of a
split (the same resample for both methods, since both predicted the same targets), recomputes
every dataset-level score from the resampled images' own sums, and reports the difference
with a percentile interval. Images of one scene are correlated, so with few scenes the
interval is narrower than a scene-level one would be; it measures image-sampling noise only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewseg_core.classes import IGNORE_LABEL, NUM_CLASSES, STUFF_CLASSES, THING_CLASSES

DELTA_THRESHOLDS = (1.25, 1.25 ** 2, 1.25 ** 3)


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Count (ground truth, prediction) pairs over labelled pixels.

    Args:
        pred: [...] integer predicted class ids (values outside 0..C-1 count as wrong).
        gt: [...] integer true class ids; ids outside 0..C-1 (255 = ignore) are skipped.
    Returns:
        [C, C + 1] int64; row = true class, column = predicted class, last column = an
        invalid prediction (e.g. "unknown" on an empty ray), which is a miss for that class.
    """
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and ground truth differ in size: {pred.size} vs {gt.size}")
    keep = (gt >= 0) & (gt < num_classes)
    pred, gt = pred[keep], gt[keep]
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    counts = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def semantic_scores(conf: np.ndarray) -> dict[str, float | list[float | None]]:
    """mIoU, mIoU over the classes in the truth, fwIoU, pACC, mACC, things/stuff mIoU and per-class
    IoU from a confusion matrix."""
    conf = np.asarray(conf, dtype=np.float64)
    num_classes = conf.shape[0]
    tp = np.diag(conf[:, :num_classes])
    pos_gt = conf.sum(axis=1)
    pos_pred = conf[:, :num_classes].sum(axis=0)
    union = pos_gt + pos_pred - tp
    iou_valid = (pos_gt + pos_pred) > 0
    acc_valid = pos_gt > 0
    iou = np.divide(tp, union, out=np.zeros(num_classes), where=union > 0)
    acc = np.divide(tp, pos_gt, out=np.zeros(num_classes), where=acc_valid)
    total = pos_gt.sum()

    def mean_over(classes) -> float:
        sel = [c for c in classes if c < num_classes and iou_valid[c]]
        return float(iou[sel].mean()) if sel else float("nan")

    in_truth = pos_gt > 0
    return {
        "miou": mean_over(range(num_classes)),
        # The classes that occur in the ground truth only: a class the split never shows scores
        # IoU 0 in "miou" as soon as a method predicts one pixel of it, so on a small split a
        # few stray pixels of absent classes move "miou" by points (docs/results.md).
        "miou_in_truth": float(iou[in_truth].mean()) if in_truth.any() else float("nan"),
        "iou_t_merged": merged_iou(conf, THING_CLASSES),
        "iou_s_merged": merged_iou(conf, STUFF_CLASSES),
        "fwiou": float((iou * pos_gt)[iou_valid].sum() / total) if total else float("nan"),
        "pacc": float(tp.sum() / total) if total else float("nan"),
        "macc": float(acc[acc_valid].mean()) if acc_valid.any() else float("nan"),
        "miou_things": mean_over(THING_CLASSES),
        "miou_stuff": mean_over(STUFF_CLASSES),
        "iou_per_class": [float(v) if ok else None for v, ok in zip(iou, iou_valid)],
    }


def merged_iou(conf: np.ndarray, group) -> float:
    """IoU of ``group`` (class ids) merged into one class, from a [C, C + 1] confusion matrix.

    TP: a true pixel of the group predicted as any class of the group; FN: a true pixel of the
    group predicted outside it, including "unknown" (the last column); FP: a pixel of another
    true class predicted inside the group. NaN when the group occurs in neither truth nor
    prediction.
    """
    conf = np.asarray(conf, dtype=np.float64)
    num_classes = conf.shape[0]
    inside = np.zeros(num_classes + 1, dtype=bool)
    inside[[c for c in group if 0 <= c < num_classes]] = True
    rows = inside[:num_classes]
    tp = conf[np.ix_(rows, inside)].sum()
    fn = conf[rows].sum() - tp
    fp = conf[np.ix_(~rows, inside)].sum()
    union = tp + fn + fp
    return float(tp / union) if union > 0 else float("nan")


@dataclass
class DepthAccumulator:
    """Sums of depth errors over valid pixels, overall and split by the true class group.

    A pixel is valid when the true depth is finite and > 0 and the prediction is finite;
    pixels the model leaves empty (NaN) are counted in ``missing`` so that a method cannot
    look better by abstaining.
    """

    sums: dict = field(default_factory=lambda: {k: np.zeros(6) for k in ("all", "things", "stuff")})
    missing: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, labels: np.ndarray | None = None) -> None:
        pred = np.asarray(pred, dtype=np.float64)
        gt = np.asarray(gt, dtype=np.float64)
        if pred.shape != gt.shape:
            raise ValueError(f"depth shapes differ: {pred.shape} vs {gt.shape}")
        has_gt = np.isfinite(gt) & (gt > 0)
        self.missing += int((has_gt & ~np.isfinite(pred)).sum())
        valid = has_gt & np.isfinite(pred) & (pred > 0)
        groups = {"all": valid}
        if labels is not None:
            labels = np.asarray(labels)
            stuff = np.isin(labels, STUFF_CLASSES)
            things = np.isin(labels, THING_CLASSES)
            groups.update(things=valid & things, stuff=valid & stuff)
        for name, mask in groups.items():
            p, g = pred[mask], gt[mask]
            if p.size == 0:
                continue
            ratio = np.maximum(p / g, g / p)
            self.sums[name] += np.array([p.size, np.abs(p - g).sum(), (np.abs(p - g) / g).sum(),
                                         *[(ratio < t).sum() for t in DELTA_THRESHOLDS]])

    def scores(self) -> dict[str, float]:
        return depth_scores(self.sums, self.missing)


DEPTH_GROUPS = ("all", "things", "stuff")


def depth_scores(sums: dict[str, np.ndarray], missing: float) -> dict[str, float]:
    """Depth scores from :class:`DepthAccumulator` sums ({group: [n, sum |e|, sum |e|/gt, d1, d2, d3]})."""
    out: dict[str, float] = {}
    for name in DEPTH_GROUPS:
        n, l1, absrel, d1, d2, d3 = sums[name]
        suffix = "" if name == "all" else f"_{name}"
        div = n if n else float("nan")
        out[f"depth_l1{suffix}"] = l1 / div
        out[f"depth_absrel{suffix}"] = absrel / div
        if name == "all":
            out.update(delta1=d1 / div, delta2=d2 / div, delta3=d3 / div)
    total = sums["all"][0] + missing
    out["depth_missing_fraction"] = missing / total if total else float("nan")
    return out


@dataclass
class SegmentationEvaluator:
    """Accumulates a dataset-level confusion matrix, per-image mIoU and depth errors."""

    num_classes: int = NUM_CLASSES
    conf: np.ndarray = None  # type: ignore[assignment]
    per_image_miou: list = field(default_factory=list)
    depth: DepthAccumulator = field(default_factory=DepthAccumulator)
    # Every added image's own statistics, in order (for paired_bootstrap): its confusion
    # matrix, its depth sums [group, 6] (DEPTH_GROUPS) and its missing-depth pixel count.
    image_conf: list = field(default_factory=list)
    image_depth: list = field(default_factory=list)
    image_missing: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.conf is None:
            self.conf = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    def add(self, pred_labels: np.ndarray, gt_labels: np.ndarray,
            pred_depth: np.ndarray | None = None, gt_depth: np.ndarray | None = None) -> float:
        """Add one image; returns its own mIoU (NaN when it has no labelled pixel)."""
        image_depth = DepthAccumulator()
        if pred_depth is not None and gt_depth is not None:
            image_depth.add(pred_depth, gt_depth, gt_labels)
        return self._add_image(confusion_matrix(pred_labels, gt_labels, self.num_classes),
                               np.stack([image_depth.sums[name] for name in DEPTH_GROUPS]), image_depth.missing)

    def _add_image(self, image_conf: np.ndarray, image_depth: np.ndarray, image_missing: int) -> float:
        """Add one image's statistics (conf [C, C+1], depth sums [3, 6], missing); returns its mIoU."""
        self.conf += image_conf
        image_miou = semantic_scores(image_conf)["miou"]
        if np.isfinite(image_miou):
            self.per_image_miou.append(image_miou)
        for g, name in enumerate(DEPTH_GROUPS):
            self.depth.sums[name] += image_depth[g]
        self.depth.missing += int(image_missing)
        self.image_conf.append(image_conf)
        self.image_depth.append(image_depth)
        self.image_missing.append(int(image_missing))
        return image_miou

    def image_arrays(self) -> dict[str, np.ndarray]:
        """The per-image statistics as arrays: conf [N, C, C+1], depth [N, 3, 6], missing [N]."""
        n, c = len(self.image_conf), self.num_classes
        return {"conf": np.stack(self.image_conf) if n else np.zeros((0, c, c + 1), np.int64),
                "depth": np.stack(self.image_depth) if n else np.zeros((0, len(DEPTH_GROUPS), 6)),
                "missing": np.asarray(self.image_missing, dtype=np.int64)}

    @classmethod
    def from_image_arrays(cls, conf: np.ndarray, depth: np.ndarray, missing: np.ndarray) -> "SegmentationEvaluator":
        """An evaluator that has seen exactly these images (the inverse of :meth:`image_arrays`)."""
        conf, depth, missing = np.asarray(conf), np.asarray(depth, dtype=np.float64), np.asarray(missing)
        if conf.ndim != 3 or conf.shape[2] != conf.shape[1] + 1 or depth.shape != (len(conf), len(DEPTH_GROUPS), 6) \
                or missing.shape != (len(conf),):
            raise ValueError(f"per-image arrays do not fit together: conf {conf.shape}, depth {depth.shape}, "
                             f"missing {missing.shape} (expected [N, C, C+1], [N, {len(DEPTH_GROUPS)}, 6], [N])")
        ev = cls(num_classes=conf.shape[1])
        for image_conf, image_depth, image_missing in zip(conf.astype(np.int64), depth, missing):
            ev._add_image(image_conf, image_depth, int(image_missing))
        return ev

    def resampled_scores(self, counts: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """[resamples, len(names)] scores (keys of HIGHER_IS_BETTER) of this evaluator's images
        weighted by ``counts`` [resamples, images] (``np.ones((1, n))``: the plain scores)."""
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 2 or counts.shape[1] != len(self.image_conf):
            raise ValueError(f"counts must be [resamples, {len(self.image_conf)}], got {counts.shape}")
        arrays = tuple(v.astype(np.float64) for v in self.image_arrays().values())
        return _resampled_scores(*arrays, counts, names)

    def scores(self) -> dict:
        out = dict(semantic_scores(self.conf))
        out["per_image_miou"] = float(np.mean(self.per_image_miou)) if self.per_image_miou else float("nan")
        out["num_images"] = len(self.per_image_miou)
        out.update(self.depth.scores())
        return out


# Scores compared by paired_bootstrap, and whether a larger value is better.
HIGHER_IS_BETTER = {"miou": True, "miou_in_truth": True, "pacc": True, "fwiou": True, "macc": True, "miou_things": True,
                    "miou_stuff": True, "iou_t_merged": True, "iou_s_merged": True,
                    "delta1": True, "delta2": True, "delta3": True,
                    "depth_l1": False, "depth_absrel": False, "depth_l1_stuff": False,
                    "depth_l1_things": False, "depth_absrel_stuff": False, "depth_absrel_things": False}


def _resampled_scores(conf: np.ndarray, depth: np.ndarray, missing: np.ndarray, counts: np.ndarray,
                      names: tuple[str, ...]) -> np.ndarray:
    """[resamples, len(names)] scores of images weighted by ``counts`` [resamples, images]."""
    # One matrix product per statistic sums every resample at once (a split of many
    # thousand images stays seconds); only the small per-resample scores loop.
    conf_sums = (counts @ conf.reshape(len(conf), -1)).reshape(-1, *conf.shape[1:])
    depth_sums = (counts @ depth.reshape(len(depth), -1)).reshape(-1, *depth.shape[1:])
    missing_sums = counts @ missing
    out = np.empty((counts.shape[0], len(names)))
    for r in range(counts.shape[0]):
        scores = dict(semantic_scores(conf_sums[r]))
        scores.update(depth_scores(dict(zip(DEPTH_GROUPS, depth_sums[r])), float(missing_sums[r])))
        out[r] = [scores[name] for name in names]
    return out


def bootstrap_counts(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[resamples, n] draw counts of an image bootstrap: each row draws ``n`` images with
    replacement (row sums are ``n``); one draw serves every method of a paired comparison."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=int(resamples))


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite ``values`` (NaN, NaN if none)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap(a: SegmentationEvaluator, b: SegmentationEvaluator,
                     names: tuple[str, ...] = ("miou", "depth_l1", "depth_absrel", "depth_l1_stuff",
                                               "delta1", "delta2", "delta3"),
                     resamples: int = 1000, level: float = 0.95, seed: int = 0,
                     counts: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Score differences ``a - b`` over image resamples (both evaluators scored the same images).

    Args:
        a, b: evaluators that saw the same images in the same order.
        names: scores of :func:`semantic_scores` / :func:`depth_scores` (keys of HIGHER_IS_BETTER).
        resamples, seed: the bootstrap (images drawn with replacement, one draw for both methods).
        counts: optional [resamples, images] draw counts, instead of random draws (tests).
    Returns:
        {name: {"difference": a - b on all images, "low"/"high": the ``level`` percentile
        interval of a - b, "a_better": share of resamples where ``a`` is strictly better
        (NaN resamples, e.g. no depth, count as not better)}}.
    """
    n = len(a.image_conf)
    if n == 0 or len(b.image_conf) != n:
        raise ValueError(f"paired_bootstrap needs the same images in both evaluators, got {n} and "
                         f"{len(b.image_conf)}")
    unknown = [name for name in names if name not in HIGHER_IS_BETTER]
    if unknown:
        raise ValueError(f"paired_bootstrap: unknown score(s) {unknown}; known: {sorted(HIGHER_IS_BETTER)}")
    if counts is None:
        counts = bootstrap_counts(n, resamples, seed)
    full = np.ones((1, n))  # resampled_scores checks counts against the n images
    stats = {key: (ev.resampled_scores(full, names)[0], ev.resampled_scores(counts, names))
             for key, ev in (("a", a), ("b", b))}
    diff_all = stats["a"][0] - stats["b"][0]
    diffs = stats["a"][1] - stats["b"][1]
    out = {}
    for j, name in enumerate(names):
        d = diffs[:, j]
        low, high = percentile_interval(d, level)
        better = d > 0 if HIGHER_IS_BETTER[name] else d < 0
        out[name] = {"difference": float(diff_all[j]), "low": float(low), "high": float(high),
                     "a_better": float(np.mean(better & np.isfinite(d)))}
    return out


__all__ = ["confusion_matrix", "semantic_scores", "merged_iou", "DepthAccumulator", "SegmentationEvaluator",
           "depth_scores", "paired_bootstrap", "bootstrap_counts", "percentile_interval", "HIGHER_IS_BETTER", "IGNORE_LABEL", "DELTA_THRESHOLDS"]
