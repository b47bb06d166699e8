"""Metrics against hand-computed confusion matrices and depth errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.metrics import DepthAccumulator, SegmentationEvaluator, confusion_matrix, semantic_scores

#            wall wall wall floor floor cabinet cabinet ignore bed
GT = np.array([0, 0, 0, 1, 1, 2, 2, 255, 3])
PRED = np.array([0, 0, 1, 1, 1, 2, 5, 0, 255])  # 5 (sofa) never occurs in GT; 255 = unknown


def test_confusion_matrix_by_hand():
    conf = confusion_matrix(PRED, GT)
    assert conf.shape == (37, 38)
    assert conf.sum() == 8  # the ignore pixel is dropped
    expected = {(0, 0): 2, (0, 1): 1, (1, 1): 2, (2, 2): 1, (2, 5): 1, (3, 37): 1}
    for (row, col), count in expected.items():
        assert conf[row, col] == count, (row, col)
    assert sum(expected.values()) == conf.sum()


def test_semantic_scores_by_hand():
    scores = semantic_scores(confusion_matrix(PRED, GT))
    # IoU: wall 2/3, floor 2/3, cabinet 1/2, bed 0, sofa 0 (predicted, absent from GT).
    assert scores["miou"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2 + 0 + 0) / 5)
    assert scores["pacc"] == pytest.approx(5 / 8)
    assert scores["macc"] == pytest.approx((2 / 3 + 1 + 1 / 2 + 0) / 4)
    assert scores["fwiou"] == pytest.approx((3 * 2 / 3 + 2 * 2 / 3 + 2 * 1 / 2 + 1 * 0) / 8)
    assert scores["miou_stuff"] == pytest.approx(2 / 3)
    assert scores["miou_things"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert scores["iou_per_class"][5] == 0.0
    assert scores["iou_per_class"][6] is None  # table: neither in GT nor predicted


def test_perfect_prediction_and_shape_mismatch():
    gt = np.array([[0, 1], [21, 4]])
    scores = semantic_scores(confusion_matrix(gt, gt))
    assert scores["miou"] == scores["pacc"] == scores["fwiou"] == scores["macc"] == 1.0
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix(np.zeros(3), np.zeros(4))


def test_per_image_miou_differs_from_dataset_miou():
    ev = SegmentationEvaluator()
    # image 1: all wall, predicted right -> mIoU 1. image 2: floor predicted as wall -> mIoU 0.
    assert ev.add(np.zeros((2, 2), int), np.zeros((2, 2), int)) == 1.0
    assert ev.add(np.zeros((1, 2), int), np.ones((1, 2), int)) == 0.0
    scores = ev.scores()
    assert scores["per_image_miou"] == pytest.approx(0.5)
    # dataset level: wall TP 4, FP 2 -> 4/6; floor TP 0 -> 0.
    assert scores["miou"] == pytest.approx((4 / 6 + 0) / 2)
    assert scores["num_images"] == 2


def test_depth_errors_by_hand():
    acc = DepthAccumulator()
    gt = np.array([1.0, 2.0, 4.0, np.nan, 2.0])
    pred = np.array([1.5, 2.0, 3.0, 1.0, np.nan])
    labels = np.array([0, 4, 4, 4, 1])  # wall (stuff), chair, chair, ..., floor
    acc.add(pred, gt, labels)
    s = acc.scores()
    assert s["depth_l1"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert s["depth_absrel"] == pytest.approx((0.5 + 0 + 0.25) / 3)
    assert s["depth_l1_stuff"] == pytest.approx(0.5)
    assert s["depth_l1_things"] == pytest.approx(0.5)
    # ratios 1.5, 1.0, 4/3: delta1 counts only 1.0; delta2 (1.5625) all three.
    assert s["delta1"] == pytest.approx(1 / 3)
    assert s["delta2"] == pytest.approx(1.0)
    assert s["depth_missing_fraction"] == pytest.approx(1 / 4)
    assert math.isnan(DepthAccumulator().scores()["depth_l1"])
