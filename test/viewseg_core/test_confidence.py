"""viewseg_core/confidence.py: reliability bins and ECE against hand-computed cases, isotonic
regression, a calibration map that fixes an over-confident score, and its file format."""
from __future__ import annotations

import json

import numpy as np
import pytest

from viewseg_core.confidence import ConfidenceCalibration, Reliability, file_sha256, isotonic

IGNORE = 255


def test_bins_ece_and_thresholds_by_hand():
    # 10 bins. Bin 0: two pixels at 0.05, one right. Bin 9: four pixels at 0.95, three right.
    # One labelled pixel left unknown (abstained), one unlabelled pixel (not counted at all).
    confidence = np.array([0.05, 0.05, 0.95, 0.95, 0.95, 0.95, 0.0, 0.7])
    predicted = np.array([1, 2, 3, 3, 3, 4, IGNORE, 5])
    truth = np.array([1, 1, 3, 3, 3, 3, 2, IGNORE])
    r = Reliability(bins=10)
    r.add(confidence, predicted, truth, IGNORE)
    assert r.count.tolist() == [2] + [0] * 8 + [4] and r.correct.tolist() == [1] + [0] * 8 + [3]
    assert r.abstained == 1 and r.answered == 6
    np.testing.assert_allclose(r.accuracy[[0, 9]], [0.5, 0.75])
    assert np.isnan(r.accuracy[5]) and np.isnan(r.mean_confidence[5])
    # ECE = 2/6 |0.5 - 0.05| + 4/6 |0.75 - 0.95| = 0.15 + 0.1333
    assert r.ece() == pytest.approx(2 / 6 * 0.45 + 4 / 6 * 0.2)
    # confidence >= 0.5 keeps 4 of the 7 labelled pixels, 3 of them right.
    assert r.above(0.5) == pytest.approx((4 / 7, 0.75))
    assert r.above(0.0) == pytest.approx((6 / 7, 4 / 6))
    assert r.overall_accuracy() == pytest.approx(4 / 6)
    document = r.to_dict()
    assert document["answered"] == 6 and document["above"]["0.5"]["coverage"] == pytest.approx(4 / 7)
    assert confidence[-1] == 0.7 and r.count[7] == 0   # the unlabelled pixel counted nowhere
    with pytest.raises(ValueError, match="differ in size"):
        r.add(confidence[:3], predicted, truth, IGNORE)
    with pytest.raises(ValueError, match="NaN"):
        r.add(np.array([np.nan]), np.array([1]), np.array([1]), IGNORE)
    assert np.isnan(Reliability().ece())


def test_isotonic_pools_adjacent_violators():
    np.testing.assert_allclose(isotonic(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4)), [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(isotonic(np.array([3.0, 1.0]), np.array([1.0, 3.0])), [1.5, 1.5])
    np.testing.assert_allclose(isotonic(np.array([5.0, 4.0, 3.0]), np.ones(3)), [4, 4, 4])
    np.testing.assert_allclose(isotonic(np.array([0.1, 0.2]), np.ones(2)), [0.1, 0.2])


def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An over-confident model: a pixel of confidence c is right with probability c^2."""
    confidence = rng.uniform(0.0, 1.0, n)
    right = rng.uniform(0.0, 1.0, n) < confidence ** 2
    truth = np.ones(n, np.int64)
    return confidence, np.where(right, 1, 2), truth


def test_a_fitted_map_makes_an_over_confident_score_a_probability():
    rng = np.random.default_rng(0)
    fit_on, held_out, calibrated = Reliability(), Reliability(), Reliability()
    fit_on.add(*sample(rng, 200_000), IGNORE)
    calibration = ConfidenceCalibration.fit(fit_on, fitted_on={"checkpoint": "x.pt"})
    confidence, predicted, truth = sample(rng, 200_000)
    held_out.add(confidence, predicted, truth, IGNORE)
    calibrated.add(calibration(confidence), predicted, truth, IGNORE)
    # E|c - c^2| over U(0, 1) = 1/6; within a bin's width of 0 after the map.
    assert held_out.ece() == pytest.approx(1 / 6, abs=0.01)
    assert calibrated.ece() < 0.01
    np.testing.assert_allclose(calibration(np.array([0.5, 0.9])), [0.25, 0.81], atol=0.02)
    assert calibration.fitted_on == {"checkpoint": "x.pt", "pixels": 200_000}
    # Flat below the first knot (a raw 0 included: the caller zeroes what no keyframe sees);
    # NaN stays NaN; float32 stays float32.
    out = calibration(np.array([0.0, np.nan, 1e-3, 1.0], np.float32))
    assert out.dtype == np.float32 and out[0] == pytest.approx(calibration.probabilities[0]) and np.isnan(out[1])
    assert out[0] <= out[2] <= out[3] <= 1
    assert np.all(np.diff(calibration(np.linspace(1e-3, 1, 101))) >= 0)
    with pytest.raises(ValueError, match="too few pixels"):
        ConfidenceCalibration.fit(Reliability(), min_pixels=1)


def test_the_calibration_file_round_trips_and_bad_files_are_named(tmp_path):
    calibration = ConfidenceCalibration([0.2, 0.6, 0.9], [0.1, 0.5, 0.95], {"checkpoint": "a.pt"})
    path = calibration.save(tmp_path / "a.confidence.json")
    loaded = ConfidenceCalibration.load(path)
    np.testing.assert_array_equal(loaded.scores, calibration.scores)
    np.testing.assert_array_equal(loaded.probabilities, calibration.probabilities)
    assert loaded.fitted_on == {"checkpoint": "a.pt"}
    with pytest.raises(FileNotFoundError, match="no such confidence calibration"):
        ConfidenceCalibration.load(tmp_path / "missing.json")
    cases = {"garbage": ("{not json", "not a confidence calibration file"),
             "other": (json.dumps({"format": "something-else"}), "format 'viewseg-confidence-calibration'"),
             "newer": (json.dumps({"format": "viewseg-confidence-calibration", "format_version": 9}), "newer"),
             "falling": (json.dumps({"format": "viewseg-confidence-calibration", "scores": [0.2, 0.6],
                                     "probabilities": [0.9, 0.1]}), "non-decreasing"),
             "unsorted": (json.dumps({"format": "viewseg-confidence-calibration", "scores": [0.6, 0.2],
                                      "probabilities": [0.1, 0.9]}), "increase strictly"),
             "short": (json.dumps({"format": "viewseg-confidence-calibration", "scores": [0.6]}), "scores|probab")}
    for name, (text, match) in cases.items():
        bad = tmp_path / f"{name}.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            ConfidenceCalibration.load(bad)
    # Fitted for one checkpoint file, refused for another.
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"model a")
    b.write_bytes(b"model b")
    tied = ConfidenceCalibration([0.5, 1.0], [0.4, 0.9], {"checkpoint": "a.pt", "checkpoint_sha256": file_sha256(a)})
    tied.check_checkpoint(a)
    with pytest.raises(ValueError, match="fitted for checkpoint 'a.pt'"):
        tied.check_checkpoint(b)
