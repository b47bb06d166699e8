"""Whether the confidence image means what a planner reads in it, and a map that makes it so.

The node's confidence (:func:`viewseg_core.volrend.confidence`, 0 where no keyframe sees the
rendered surface) is a score: opacity times one minus the normalised class entropy. A planner
that keeps the pixels above 0.5 wants to know how often those labels are right. This module
measures that (:class:`Reliability`: pixels binned by confidence, the accuracy in each bin,
the expected calibration error, the accuracy and coverage above thresholds) and fits a
monotone map from the score to the probability that the label is right
(:class:`ConfidenceCalibration`, isotonic regression on held-out rooms), which the node
applies to every confidence image (``query.confidence_calibration``).

Conventions:
- Only pixels with a true label and a predicted label count for reliability. A pixel the node
  answers "unknown" abstains: it has no label to be right about. It still counts in the
  coverage of a threshold (the share of labelled pixels a planner keeps).
- The map applies to every answered pixel, a raw score of 0 included (a pixel some keyframe's
  frustum holds whose opacity all came from points no view sees: such labels are right about
  half the time). Pixels no keyframe sees get confidence 0 after the map, as before it: that
  is the node's mark for "unknown" (with ``query.unseen_pixels: extrapolated``, a guess),
  which a planner must still be able to tell apart.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viewseg_core.atomic_io import write_text_atomic

FORMAT = "viewseg-confidence-calibration"
FORMAT_VERSION = 1
DEFAULT_BINS = 20
THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class Reliability:
    """Labelled pixels binned by confidence (``bins`` equal bins of [0, 1]).

    Attributes:
        count: [bins] pixels with a predicted and a true label per bin.
        confidence_sum: [bins] their summed confidence.
        correct: [bins] how many of them have the true label.
        abstained: pixels with a true label that the prediction left unknown.
    """

    bins: int = DEFAULT_BINS
    count: np.ndarray = field(default=None)
    confidence_sum: np.ndarray = field(default=None)
    correct: np.ndarray = field(default=None)
    abstained: int = 0

    def __post_init__(self) -> None:
        if self.bins < 1:
            raise ValueError(f"bins must be >= 1, got {self.bins}")
        for name, dtype in (("count", np.int64), ("confidence_sum", np.float64), ("correct", np.int64)):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.bins, dtype))

    def add(self, confidence: np.ndarray, predicted: np.ndarray, truth: np.ndarray, ignore: int) -> None:
        """One image: [H, W] confidence in [0, 1], predicted and true class ids (``ignore`` =
        unknown / unlabelled)."""
        confidence, predicted, truth = (np.asarray(a).reshape(-1) for a in (confidence, predicted, truth))
        if not (confidence.shape == predicted.shape == truth.shape):
            raise ValueError(f"confidence, prediction and truth differ in size: {confidence.shape}, "
                             f"{predicted.shape}, {truth.shape}")
        labelled = truth != ignore
        answered = labelled & (predicted != ignore)
        self.abstained += int((labelled & ~answered).sum())
        values = np.clip(confidence[answered].astype(np.float64), 0.0, 1.0)
        if np.isnan(values).any():
            raise ValueError("confidence holds NaN where a label was predicted")
        index = np.minimum((values * self.bins).astype(np.int64), self.bins - 1)
        self.count += np.bincount(index, minlength=self.bins)
        self.confidence_sum += np.bincount(index, weights=values, minlength=self.bins)
        self.correct += np.bincount(index, weights=(predicted[answered] == truth[answered]),
                                    minlength=self.bins).astype(np.int64)

    @property
    def answered(self) -> int:
        return int(self.count.sum())

    @property
    def accuracy(self) -> np.ndarray:
        """[bins] share of correct labels per bin (NaN where a bin is empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.correct / np.maximum(self.count, 1), np.nan)

    @property
    def mean_confidence(self) -> np.ndarray:
        """[bins] mean confidence per bin (NaN where a bin is empty)."""
        return np.where(self.count > 0, self.confidence_sum / np.maximum(self.count, 1), np.nan)

    def ece(self) -> float:
        """Expected calibration error: sum over bins of (share of pixels) x |accuracy - mean
        confidence|. 0 = confidence is the probability of a right label."""
        total = self.answered
        if not total:
            return float("nan")
        full = self.count > 0
        gaps = np.abs(self.correct[full] - self.confidence_sum[full])   # = count x |acc - conf|
        return float(gaps.sum() / total)

    def overall_accuracy(self) -> float:
        return float(self.correct.sum() / self.answered) if self.answered else float("nan")

    def above(self, threshold: float) -> tuple[float, float]:
        """(share of the labelled pixels answered with confidence >= ``threshold``, their
        accuracy). Exact for thresholds on bin edges (the THRESHOLDS are, at 10 or 20 bins)."""
        first = int(np.ceil(threshold * self.bins - 1e-9))
        kept, right = int(self.count[first:].sum()), int(self.correct[first:].sum())
        labelled = self.answered + self.abstained
        return (kept / labelled if labelled else float("nan"), right / kept if kept else float("nan"))

    def to_dict(self) -> dict:
        return {"bins": self.bins, "count": self.count.tolist(), "confidence_sum": self.confidence_sum.tolist(),
                "correct": self.correct.tolist(), "answered": self.answered, "abstained": self.abstained, "ece": self.ece(),
                "accuracy": self.overall_accuracy(),
                "above": {f"{t:g}": dict(zip(("coverage", "accuracy"), self.above(t))) for t in THRESHOLDS}}


def isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (pool
    adjacent violators)."""
    blocks: list[list[float]] = []   # [mean, weight, length]
    for value, weight in zip(values.astype(np.float64), weights.astype(np.float64)):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (v1, w1, n1), (v2, w2, n2) = blocks[-2], blocks[-1]
            total = w1 + w2
            blocks[-2:] = [[(v1 * w1 + v2 * w2) / total if total else (v1 + v2) / 2, total, n1 + n2]]
    return np.concatenate([np.full(n, v) for v, _, n in blocks]) if blocks else np.zeros(0)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ConfidenceCalibration:
    """A monotone map from the confidence score to the probability of a right label.

    ``scores`` (strictly increasing, in (0, 1]) and ``probabilities`` (non-decreasing, in
    [0, 1]) are its knots; between them it is linear, outside them flat.
    ``fitted_on`` records what it was fitted for: the checkpoint file's SHA-256, its preset,
    data and pixel counts.
    """

    scores: np.ndarray
    probabilities: np.ndarray
    fitted_on: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        if self.scores.ndim != 1 or self.scores.shape != self.probabilities.shape or not len(self.scores):
            raise ValueError(f"calibration knots must be two equal, non-empty lists; got {self.scores.shape} "
                             f"and {self.probabilities.shape}")
        if not (np.all(np.isfinite(self.scores)) and np.all(np.isfinite(self.probabilities))):
            raise ValueError("calibration knots must be finite")
        if np.any(np.diff(self.scores) <= 0) or self.scores[0] <= 0 or self.scores[-1] > 1:
            raise ValueError(f"calibration scores must increase strictly within (0, 1]: {self.scores.tolist()}")
        if np.any(np.diff(self.probabilities) < 0) or self.probabilities.min() < 0 or self.probabilities.max() > 1:
            raise ValueError(f"calibration probabilities must be non-decreasing within [0, 1]: "
                             f"{self.probabilities.tolist()}")

    @classmethod
    def fit(cls, reliability: Reliability, min_pixels: int = 100, fitted_on: dict | None = None
            ) -> "ConfidenceCalibration":
        """Isotonic regression of accuracy on confidence over the bins with at least
        ``min_pixels`` pixels, knots at those bins' mean confidence (one such bin: a constant)."""
        keep = reliability.count >= min_pixels
        if not keep.any():
            raise ValueError(f"too few pixels to fit a calibration: no bin holds {min_pixels} or more "
                             f"(of {reliability.answered} answered pixels)")
        scores = reliability.mean_confidence[keep]
        probabilities = isotonic(reliability.accuracy[keep], reliability.count[keep])
        scores = np.maximum(scores, 1e-6)   # a bin of zeros: the knot just above 0, flat below it
        return cls(scores, probabilities, dict(fitted_on or {}, pixels=reliability.answered))

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        """Calibrated confidence, same shape and dtype (NaN stays NaN). The caller sets the
        pixels no keyframe sees to 0 afterwards (module docstring)."""
        confidence = np.asarray(confidence)
        mapped = np.interp(confidence, self.scores, self.probabilities)
        mapped = np.where(np.isnan(confidence), np.nan, mapped)
        return mapped.astype(confidence.dtype if confidence.dtype.kind == "f" else np.float32)

    def save(self, path: str | Path) -> Path:
        document = {"format": FORMAT, "format_version": FORMAT_VERSION, "scores": self.scores.tolist(),
                    "probabilities": self.probabilities.tolist(), "fitted_on": self.fitted_on}
        return write_text_atomic(path, json.dumps(document, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ConfidenceCalibration":
        """Read a file :meth:`save` wrote; ValueError naming the file for anything else."""
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such confidence calibration file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a confidence calibration file ({error})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"{path}: not a confidence calibration file (format {FORMAT!r} expected)")
        if document.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {document['format_version']} is newer than this viewseg "
                             f"reads ({FORMAT_VERSION})")
        try:
            return cls(document["scores"], document["probabilities"], dict(document.get("fitted_on") or {}))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None

    def check_checkpoint(self, checkpoint: str | Path) -> None:
        """ValueError when the map was fitted for another checkpoint file (its SHA-256)."""
        expected = self.fitted_on.get("checkpoint_sha256")
        if expected and expected != file_sha256(checkpoint):
            raise ValueError(f"confidence calibration fitted for checkpoint {self.fitted_on.get('checkpoint')!r} "
                             f"(SHA-256 {expected[:12]}...), not {str(checkpoint)!r}: fit one for this model "
                             f"(viewseg confidence --fit)")


__all__ = ["Reliability", "ConfidenceCalibration", "isotonic", "file_sha256", "THRESHOLDS", "DEFAULT_BINS"]
