"""Metrics against hand-computed confusion matrices and depth errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.metrics import (DepthAccumulator, SegmentationEvaluator, confusion_matrix, merged_iou,
                                  paired_bootstrap, semantic_scores)

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
    # Over the classes in the truth only, the sofa nobody has drops out.
    assert scores["miou_in_truth"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2 + 0) / 4)
    assert scores["pacc"] == pytest.approx(5 / 8)
    assert scores["macc"] == pytest.approx((2 / 3 + 1 + 1 / 2 + 0) / 4)
    assert scores["fwiou"] == pytest.approx((3 * 2 / 3 + 2 * 2 / 3 + 2 * 1 / 2 + 1 * 0) / 8)
    assert scores["miou_stuff"] == pytest.approx(2 / 3)
    assert scores["miou_things"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert scores["iou_per_class"][5] == 0.0
    assert scores["iou_per_class"][6] is None  # table: neither in GT nor predicted


# Paper-style IoU_T / IoU_S. Rows: true class; columns: predicted class (37 = unknown, an
# empty ray). Ids: wall 0, floor 1, cabinet 2, bed 3, chair 4, sofa 5, ceiling 21.
HAND_CONF = {  # (true, predicted): pixels
    (0, 0): 6, (0, 1): 2, (0, 4): 1, (0, 37): 1,   # wall: 6 wall, 2 floor, 1 chair, 1 unknown
    (1, 1): 5, (1, 3): 2,                          # floor: 5 floor, 2 bed
    (21, 0): 3, (21, 37): 2,                       # ceiling: 3 wall, 2 unknown
    (2, 2): 4, (2, 5): 2, (2, 0): 2, (2, 37): 1,   # cabinet: 4 cabinet, 2 sofa, 2 wall, 1 unknown
    (3, 4): 3, (3, 1): 1,                          # bed: 3 chair, 1 floor
}


def _hand_matrix() -> np.ndarray:
    conf = np.zeros((37, 38), np.int64)
    for (row, col), count in HAND_CONF.items():
        conf[row, col] = count
    return conf


def test_merged_things_and_stuff_iou_by_hand():
    scores = semantic_scores(_hand_matrix())
    # stuff merged: TP = wall->wall 6 + wall->floor 2 + floor->floor 5 + ceiling->wall 3 = 16;
    # FN = wall->chair 1 + wall->unknown 1 + floor->bed 2 + ceiling->unknown 2 = 6;
    # FP = cabinet->wall 2 + bed->floor 1 = 3.
    assert scores["iou_s_merged"] == pytest.approx(16 / 25)
    # thing merged: TP = cabinet->cabinet 4 + cabinet->sofa 2 + bed->chair 3 = 9;
    # FN = cabinet->wall 2 + cabinet->unknown 1 + bed->floor 1 = 4; FP = wall->chair 1 + floor->bed 2 = 3.
    assert scores["iou_t_merged"] == pytest.approx(9 / 16)
    # the per-class means of the same matrix: wall 6/(10+11-6), floor 5/(7+8-5), ceiling 0;
    # cabinet 4/9, bed 0, chair 0 (predicted, never true), sofa 0
    assert scores["miou_stuff"] == pytest.approx((6 / 15 + 5 / 10 + 0) / 3)
    assert scores["miou_things"] == pytest.approx((4 / 9 + 0 + 0 + 0) / 4)
    # merged_iou on a 3-class matrix with any group; no pixel of the group: NaN
    small = np.array([[3, 1, 0, 1],    # class 0: 3 right, 1 as class 1, 1 unknown
                      [2, 4, 0, 0],    # class 1
                      [0, 0, 0, 0]])   # class 2: absent
    assert merged_iou(small, (0, 1)) == pytest.approx(10 / 11)  # only the unknown pixel is wrong
    assert merged_iou(small, (0,)) == pytest.approx(3 / (3 + 2 + 2))
    assert math.isnan(merged_iou(small, (2,)))
    # the last column is never a class of a group (an unknown pixel is no thing)
    assert merged_iou(small, (0, 1, 3)) == pytest.approx(10 / 11)


def test_merged_scores_in_the_bootstrap():
    """IoU_T / IoU_S recomputed per resample from the images' own matrices."""
    thing, stuff = np.full((1, 2), 2), np.zeros((1, 2), int)   # cabinet, wall
    a, b = SegmentationEvaluator(), SegmentationEvaluator()
    a.add(np.array([[3, 0]]), thing)    # image 0: one thing pixel right (bed for cabinet), one as wall
    a.add(stuff, stuff)                 # image 1: stuff right
    b.add(np.full((1, 2), 255), thing)  # image 0: unknown everywhere
    b.add(np.ones((1, 2), int), stuff)  # image 1: floor for wall (still stuff)
    out = paired_bootstrap(a, b, names=("iou_t_merged", "iou_s_merged"), counts=np.array([[2, 0], [0, 2]]))
    # all images: a thing 1/2, stuff 2/3 (one FP from the thing pixel called wall); b thing 0, stuff 1
    assert out["iou_t_merged"]["difference"] == pytest.approx(1 / 2 - 0)
    assert out["iou_s_merged"]["difference"] == pytest.approx(2 / 3 - 1)
    # image 0 twice: thing a 2/4 - b 0/4 = +1/2; stuff a 0/2 (the FP only), b NaN (no stuff at all)
    # image 1 twice: thing NaN for both; stuff a 1 - b 1 = 0
    assert out["iou_t_merged"]["low"] == out["iou_t_merged"]["high"] == pytest.approx(1 / 2)
    assert out["iou_t_merged"]["a_better"] == pytest.approx(1 / 2)  # the NaN resample is not "better"
    assert out["iou_s_merged"]["low"] == out["iou_s_merged"]["high"] == 0.0
    assert out["iou_s_merged"]["a_better"] == 0.0


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


def _two_image_evaluators():
    """Method a gets image 0 right and image 1 wrong; method b the other way round.

    Image 0: 4 wall pixels at 2 m. Image 1: 2 floor pixels at 1 m.
    a: image 0 wall at 2 m (exact); image 1 wall (wrong) at 2 m (|e| 1, ratio 2).
    b: image 0 floor (wrong) at 3 m (|e| 1, ratio 1.5); image 1 floor at 1 m (exact).
    """
    wall, floor = np.zeros((2, 2), int), np.ones((1, 2), int)
    a, b = SegmentationEvaluator(), SegmentationEvaluator()
    a.add(wall, wall, np.full((2, 2), 2.0), np.full((2, 2), 2.0))
    a.add(np.zeros((1, 2), int), floor, np.full((1, 2), 2.0), np.full((1, 2), 1.0))
    b.add(np.ones((2, 2), int), wall, np.full((2, 2), 3.0), np.full((2, 2), 2.0))
    b.add(floor, floor, np.full((1, 2), 1.0), np.full((1, 2), 1.0))
    return a, b


def test_per_image_statistics_sum_to_the_dataset_scores():
    a, _ = _two_image_evaluators()
    assert len(a.image_conf) == len(a.image_depth) == len(a.image_missing) == 2
    np.testing.assert_array_equal(sum(a.image_conf), a.conf)
    np.testing.assert_allclose(sum(a.image_depth)[0], a.depth.sums["all"])
    np.testing.assert_allclose(sum(a.image_depth)[2], a.depth.sums["stuff"])  # wall and floor are stuff


def test_paired_bootstrap_by_hand():
    a, b = _two_image_evaluators()
    # Resamples: image 0 twice; image 1 twice; both once.
    counts = np.array([[2, 0], [0, 2], [1, 1]])
    out = paired_bootstrap(a, b, names=("miou", "depth_l1", "delta1"), counts=counts)
    # All images: a's wall IoU 4/6, floor 0 -> 1/3; b's floor IoU 2/6, wall 0 -> 1/6.
    assert out["miou"]["difference"] == pytest.approx(1 / 3 - 1 / 6)
    # a: |e| = 0,0,0,0,1,1 -> 2/6; b: 1,1,1,1,0,0 -> 4/6.
    assert out["depth_l1"]["difference"] == pytest.approx(2 / 6 - 4 / 6)
    # delta1: a's exact pixels 4/6; b's exact 2/6 (ratio 1.5 fails 1.25).
    assert out["delta1"]["difference"] == pytest.approx(4 / 6 - 2 / 6)
    # Per resample, a - b for depth L1: image 0 only: 0 - 1; image 1 only: 1 - 0; both: -1/3.
    diffs = np.array([-1.0, 1.0, -1 / 3])
    assert out["depth_l1"]["low"] == pytest.approx(np.percentile(diffs, 2.5))
    assert out["depth_l1"]["high"] == pytest.approx(np.percentile(diffs, 97.5))
    assert out["depth_l1"]["a_better"] == pytest.approx(2 / 3)  # lower L1 is better
    # mIoU: image 0 only: a 1 (wall only), b 0 (wall 0, floor 0) -> +1; image 1 only: a 0, b 1 -> -1.
    assert out["miou"]["a_better"] == pytest.approx(2 / 3)


def test_paired_bootstrap_identical_methods_and_a_constant_offset():
    rng = np.random.default_rng(1)
    a, b, c = SegmentationEvaluator(), SegmentationEvaluator(), SegmentationEvaluator()
    for _ in range(12):
        gt = rng.integers(0, 4, size=(6, 5))
        depth = rng.uniform(1, 5, size=(6, 5))
        pred = np.where(rng.random((6, 5)) < 0.7, gt, rng.integers(0, 4, size=(6, 5)))
        a.add(pred, gt, depth, depth)
        b.add(pred, gt, depth, depth)
        c.add(pred, gt, depth + 0.5, depth)
    same = paired_bootstrap(a, b, resamples=200)
    for scores in same.values():
        assert scores["difference"] == scores["low"] == scores["high"] == 0.0
        assert scores["a_better"] == 0.0
    offset = paired_bootstrap(a, c, names=("depth_l1", "miou"), resamples=200, seed=3)
    assert offset["depth_l1"]["difference"] == offset["depth_l1"]["low"] == pytest.approx(-0.5)
    assert offset["depth_l1"]["high"] == pytest.approx(-0.5) and offset["depth_l1"]["a_better"] == 1.0
    assert offset["miou"]["difference"] == 0.0
    assert paired_bootstrap(a, c, resamples=50, seed=3) == paired_bootstrap(a, c, resamples=50, seed=3)


def test_paired_bootstrap_refuses_mismatched_inputs():
    a, b = _two_image_evaluators()
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(a, SegmentationEvaluator())
    with pytest.raises(ValueError, match="unknown score"):
        paired_bootstrap(a, b, names=("mIoU",))
    with pytest.raises(ValueError, match="counts must be"):
        paired_bootstrap(a, b, counts=np.ones((3, 5)))


def test_image_arrays_round_trip():
    a, _ = _two_image_evaluators()
    b = SegmentationEvaluator.from_image_arrays(**a.image_arrays())
    scores_a, scores_b = a.scores(), b.scores()
    assert scores_a.keys() == scores_b.keys()
    for key, value in scores_a.items():  # NaN (no thing pixels) must stay NaN
        np.testing.assert_equal(scores_b[key], value, err_msg=key)
    np.testing.assert_array_equal(b.conf, a.conf)
    assert b.per_image_miou == a.per_image_miou
    empty = SegmentationEvaluator().image_arrays()
    assert empty["conf"].shape == (0, 37, 38) and empty["depth"].shape == (0, 3, 6)
    arrays = a.image_arrays()
    with pytest.raises(ValueError, match="do not fit together"):
        SegmentationEvaluator.from_image_arrays(arrays["conf"], arrays["depth"][:1], arrays["missing"])
