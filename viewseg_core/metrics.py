"""Evaluation metrics: semantic scores from one dataset-level confusion matrix, per-image
mIoU, and depth errors, each also split into things and stuff.

Semantic definitions follow detectron2's ``SemSegEvaluator`` (what ViewSeg reported):

* IoU_c = TP / (TP + FP + FN), defined for classes that occur in the ground truth *or* the
  prediction; mIoU averages over those. A class predicted but absent from the ground truth
  therefore counts with IoU 0 (a false positive is an error).
* Class accuracy = TP / (TP + FN), for classes in the ground truth; mACC averages those.
* fwIoU weights IoU_c by the class's share of ground-truth pixels.
* pACC = sum TP / number of labelled pixels.
* "things" and "stuff" mIoU: the same mean restricted to :data:`THING_CLASSES` and
  :data:`STUFF_CLASSES` (wall, floor, ceiling).

Per-image mIoU (Semantic-NeRF / S-Ray protocol) computes mIoU on each image's own confusion
matrix and averages over images; it is reported separately and named ``per_image_miou``.
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
    """mIoU, fwIoU, pACC, mACC, things/stuff mIoU and per-class IoU from a confusion matrix."""
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

    return {
        "miou": mean_over(range(num_classes)),
        "fwiou": float((iou * pos_gt)[iou_valid].sum() / total) if total else float("nan"),
        "pacc": float(tp.sum() / total) if total else float("nan"),
        "macc": float(acc[acc_valid].mean()) if acc_valid.any() else float("nan"),
        "miou_things": mean_over(THING_CLASSES),
        "miou_stuff": mean_over(STUFF_CLASSES),
        "iou_per_class": [float(v) if ok else None for v, ok in zip(iou, iou_valid)],
    }


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
        out: dict[str, float] = {}
        for name, (n, l1, absrel, d1, d2, d3) in self.sums.items():
            suffix = "" if name == "all" else f"_{name}"
            div = n if n else float("nan")
            out[f"depth_l1{suffix}"] = l1 / div
            out[f"depth_absrel{suffix}"] = absrel / div
            if name == "all":
                out.update(delta1=d1 / div, delta2=d2 / div, delta3=d3 / div)
        total = self.sums["all"][0] + self.missing
        out["depth_missing_fraction"] = self.missing / total if total else float("nan")
        return out


@dataclass
class SegmentationEvaluator:
    """Accumulates a dataset-level confusion matrix, per-image mIoU and depth errors."""

    num_classes: int = NUM_CLASSES
    conf: np.ndarray = None  # type: ignore[assignment]
    per_image_miou: list = field(default_factory=list)
    depth: DepthAccumulator = field(default_factory=DepthAccumulator)

    def __post_init__(self) -> None:
        if self.conf is None:
            self.conf = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    def add(self, pred_labels: np.ndarray, gt_labels: np.ndarray,
            pred_depth: np.ndarray | None = None, gt_depth: np.ndarray | None = None) -> float:
        """Add one image; returns its own mIoU (NaN when it has no labelled pixel)."""
        image_conf = confusion_matrix(pred_labels, gt_labels, self.num_classes)
        self.conf += image_conf
        image_miou = semantic_scores(image_conf)["miou"]
        if np.isfinite(image_miou):
            self.per_image_miou.append(image_miou)
        if pred_depth is not None and gt_depth is not None:
            self.depth.add(pred_depth, gt_depth, gt_labels)
        return image_miou

    def scores(self) -> dict:
        out = dict(semantic_scores(self.conf))
        out["per_image_miou"] = float(np.mean(self.per_image_miou)) if self.per_image_miou else float("nan")
        out["num_images"] = len(self.per_image_miou)
        out.update(self.depth.scores())
        return out


__all__ = ["confusion_matrix", "semantic_scores", "DepthAccumulator", "SegmentationEvaluator",
           "IGNORE_LABEL", "DELTA_THRESHOLDS"]
