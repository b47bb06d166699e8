"""scripts/compare_studies.py: two checkpoints' drops in one study, their difference and ratio,
with paired image-bootstrap intervals; refuses studies of different targets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from viewseg_core.model.weights import save_model

from .conftest import tiny_viewseg

LABELS = ["0°, 0 cm", "5°, 5 cm"]


def _study(per_image: list[list[float | None]], checkpoint: str, targets=("a", "b", "c")) -> dict:
    """A study report in the layout viewseg eval writes, with per-image mIoU as fractions."""
    return {"study": "pose_noise", "reference": LABELS[0], "checkpoint": checkpoint,
            "rows": [{"label": label} for label in LABELS],
            "per_example": [{"index": i, "scene": "room", "target_id": target,
                             "source_ids": {label: ["1", "2"] for label in LABELS},
                             "image_miou": dict(zip(LABELS, scores))}
                            for i, (target, scores) in enumerate(zip(targets, per_image))]}


def test_drops_difference_and_ratio_by_hand(load_script):
    cs = load_script("compare_studies")
    # reference drops 4, 2, 0 points (mean 2); other drops 1, 1, 1 (mean 1): ratio 0.5, difference +1
    reference = _study([[0.30, 0.26], [0.20, 0.18], [0.10, 0.10]], "clean.pt")
    other = _study([[0.31, 0.30], [0.21, 0.20], [0.11, 0.10]], "noisy.pt")
    result = cs.compare_studies(reference, other, counts=np.ones((1, 3)))
    assert result["dataset_miou"] is None                              # these rows carry no scores
    (row,) = result["rows"]
    assert row["label"] == "5°, 5 cm" and result["images"] == 3 and result["images_left_out"] == 0
    assert row["reference_drop"] == pytest.approx(-2.0) and row["other_drop"] == pytest.approx(-1.0)
    assert row["difference"] == pytest.approx(1.0) and row["ratio"] == pytest.approx(0.5)
    assert row["ratio_interval"] == pytest.approx([0.5, 0.5])        # one resample: every image once
    assert result["reference_scores"][LABELS[0]] == pytest.approx(20.0)
    # Fixed draws: image 0 twice + image 1, and image 2 three times (reference drop 0: no ratio).
    result = cs.compare_studies(reference, other, counts=np.array([[2, 1, 0], [0, 0, 3]]), level=1.0)
    (row,) = result["rows"]
    assert row["reference_drop_interval"] == pytest.approx([-10 / 3, 0.0])
    assert row["other_drop_interval"] == pytest.approx([-1.0, -1.0])
    assert row["difference_interval"] == pytest.approx([-1.0, 7 / 3])
    assert row["ratio_interval"] == pytest.approx([0.3, 0.3]) and row["ratio_undefined_resamples"] == 1
    # An image with an undefined per-image mIoU in any row of either study is left out, and counted.
    holed = _study([[0.30, None], [0.20, 0.18], [0.10, 0.10]], "clean.pt")
    result = cs.compare_studies(holed, other, counts=np.ones((1, 2)))
    assert result["images"] == 2 and result["images_left_out"] == 1
    assert result["rows"][0]["reference_drop"] == pytest.approx(-1.0)


def test_several_seeds_per_side_average_per_image(load_script, capsys, tmp_path):
    """A side given one study per training seed: per-image scores are the seeds' mean, each
    seed's own drop is listed, and an image undefined in any seed is left out of every seed."""
    cs = load_script("compare_studies")
    # reference seeds drop (4, 2, 0) and (2, 4, 0): per image (3, 3, 0), mean 2; other drops 1, 1, 1
    seed0 = _study([[0.30, 0.26], [0.20, 0.18], [0.10, 0.10]], "clean0.pt")
    seed1 = _study([[0.40, 0.38], [0.30, 0.26], [0.20, 0.20]], "clean1.pt")
    other = _study([[0.31, 0.30], [0.21, 0.20], [0.11, 0.10]], "noisy.pt")
    result = cs.compare_studies([seed0, seed1], other, counts=np.array([[1, 1, 1], [3, 0, 0], [0, 0, 3]]), level=1.0)
    (row,) = result["rows"]
    assert row["reference_drop"] == pytest.approx(-2.0) and row["ratio"] == pytest.approx(0.5)
    assert row["reference_seed_drops"] == pytest.approx([-2.0, -2.0]) and row["other_seed_drops"] == pytest.approx([-1.0])
    assert row["reference_drop_interval"] == pytest.approx([-3.0, 0.0])   # image 0 alone: (-4 - 2) / 2
    assert row["ratio_interval"] == pytest.approx([1 / 3, 0.5]) and row["ratio_undefined_resamples"] == 1
    assert result["reference_scores"][LABELS[0]] == pytest.approx(25.0)
    assert result["reference_checkpoints"] == ["clean0.pt", "clean1.pt"]
    holed = _study([[0.40, 0.38], [0.30, None], [0.20, 0.20]], "clean1.pt")
    result = cs.compare_studies([seed0, holed], other, counts=np.ones((1, 2)))
    assert result["images"] == 2 and result["images_left_out"] == 1
    assert result["rows"][0]["reference_seed_drops"] == pytest.approx([-2.0, -1.0])
    with pytest.raises(ValueError, match="different targets or sources .first difference at example 1 of 3 and 3, "
                                         "reference 1 and reference 2"):
        cs.compare_studies([seed0, _study([[0.3, 0.2]] * 3, "x.pt", targets=("a", "q", "c"))], other)
    # The command line takes several studies per side and prints each one's drop.
    paths = []
    for name, report in (("s0", seed0), ("s1", seed1), ("o", other)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(report))
    assert cs.main(["--reference", str(paths[0]), str(paths[1]), "--other", str(paths[2]), "--resamples", "20"]) == 0
    text = capsys.readouterr().out
    assert "`clean0.pt`, `clean1.pt`" in text and "mean over its 2 and 1 studies" in text
    assert "| 5°, 5 cm | -2.00, -2.00 | -1.00 |" in text


def _pacc_rows(correct_per_row: list[tuple[int, ...]]) -> dict:
    """{row label: evaluator} whose images have 10 pixels of class 0, ``correct`` of them right."""
    from viewseg_core.metrics import SegmentationEvaluator

    rows = {}
    for label, correct in zip(LABELS, correct_per_row):
        conf = np.zeros((len(correct), 2, 3), dtype=np.int64)
        conf[:, 0, 0], conf[:, 0, 1] = correct, 10 - np.asarray(correct)
        rows[label] = SegmentationEvaluator.from_image_arrays(conf, np.zeros((len(correct), 3, 6)),
                                                              np.zeros(len(correct), dtype=np.int64))
    return rows


def test_a_pooled_measure_over_seeds_by_hand(load_script):
    cs = load_script("compare_studies")
    studies = [_study([[0.5, 0.5], [0.5, 0.5]], name, targets=("a", "b")) for name in ("c0.pt", "c1.pt", "n.pt")]
    # pixel accuracy 100% at 0°; at 5°: seed 0 gets 8 + 6 of 20 pixels right (-30), seed 1 10 + 6
    # (-20): mean -25; the other recipe 9 + 9 (-10): ratio 0.4
    clean = [_pacc_rows([(10, 10), (8, 6)]), _pacc_rows([(10, 10), (10, 6)])]
    noisy = [_pacc_rows([(10, 10), (9, 9)])]
    result = cs.compare_studies(studies[:2], studies[2:], measure="pacc", reference_stats=clean, other_stats=noisy,
                                counts=np.array([[1, 1], [2, 0]]), level=1.0)
    (row,) = result["rows"]
    assert row["reference_seed_drops"] == pytest.approx([-30.0, -20.0]) and row["reference_drop"] == pytest.approx(-25.0)
    assert row["other_drop"] == pytest.approx(-10.0) and row["ratio"] == pytest.approx(0.4)
    # image 0 twice: seed 0 -20, seed 1 0 (mean -10); the other -10: ratio 1
    assert row["reference_drop_interval"] == pytest.approx([-25.0, -10.0])
    assert row["ratio_interval"] == pytest.approx([0.4, 1.0])
    assert result["measure"] == "pixel accuracy (%)" and result["reference_scores"][LABELS[1]] == pytest.approx(75.0)
    with pytest.raises(ValueError, match="needs the other studies' per-image statistics"):
        cs.compare_studies(studies[:2], studies[2:], measure="pacc", reference_stats=clean)
    with pytest.raises(ValueError, match="unknown measure 'fwiou'"):
        cs.compare_studies(studies[:2], studies[2:], measure="fwiou")


def test_refuses_studies_of_different_targets(load_script, tmp_path, capsys):
    cs = load_script("compare_studies")
    scores = [[0.3, 0.2], [0.2, 0.1], [0.1, 0.1]]
    with pytest.raises(ValueError, match="different targets or sources .first difference at example 2"):
        cs.compare_studies(_study(scores, "a.pt"), _study(scores, "b.pt", targets=("a", "b", "z")))
    other_rows = _study(scores, "b.pt")
    other_rows["rows"].append({"label": "10°, 10 cm"})
    for example in other_rows["per_example"]:
        example["image_miou"]["10°, 10 cm"] = 0.1
    with pytest.raises(ValueError, match="different rows"):
        cs.compare_studies(_study(scores, "a.pt"), other_rows)
    with pytest.raises(ValueError, match="different studies"):
        cs.compare_studies(_study(scores, "a.pt"), {**_study(scores, "b.pt"), "study": "num_sources"})
    (tmp_path / "metrics.json").write_text(json.dumps({"methods": {}}))
    assert cs.main(["--reference", str(tmp_path / "metrics.json"), "--other", str(tmp_path / "metrics.json")]) == 2
    assert "is not a viewseg eval study report" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cs.main(["--reference", "a.json", "--other", "b.json", "--resamples", "0"])
    assert usage.value.code == 2 and "--resamples must be >= 1" in capsys.readouterr().err


def test_two_real_studies(tiny_rooms, load_script, tmp_path, capsys):
    """Two checkpoints' studies as viewseg eval writes them: the per-row scores are the studies'
    own per-image mIoU, and the markdown carries every row."""
    from training.evaluate import EvalConfig, evaluate

    cs = load_script("compare_studies")
    _, config = tiny_rooms
    reports = {}
    for name, width in (("a", 16), ("b", 24)):
        save_model(tiny_viewseg(hidden_dim=width), tmp_path / f"{name}.pt")
        reports[name] = evaluate(EvalConfig(checkpoint=str(tmp_path / f"{name}.pt"), out=str(tmp_path / name),
                                            split="test", config=str(config), max_examples=2,
                                            pose_noise=((0.0, 0.0), (10.0, 20.0)), panels=0, threads=1,
                                            progress=False, bootstrap=50))
    out = tmp_path / "compare.md"
    assert cs.main(["--reference", str(tmp_path / "a" / "study_pose_noise.json"),
                    "--other", str(tmp_path / "b" / "study_pose_noise.json"), "--resamples", "50",
                    "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text and "| 10°, 20 cm |" in text and "a.pt`" in text and "b.pt`" in text
    result = cs.compare_studies(cs.read_study(tmp_path / "a" / "study_pose_noise.json"),
                                cs.read_study(tmp_path / "b" / "study_pose_noise.json"), resamples=50)
    assert result["images"] == 2 and result["images_left_out"] == 0
    for key, name in (("reference_scores", "a"), ("other_scores", "b")):
        for row in reports[name]["rows"]:
            assert result[key][row["label"]] == pytest.approx(100 * row["scores"]["per_image_miou"])
    (row,) = result["rows"]
    assert row["difference"] == pytest.approx(row["other_drop"] - row["reference_drop"])
    (dataset,) = result["dataset_miou"]
    a_rows, b_rows = reports["a"]["rows"], reports["b"]["rows"]
    drop = [100 * (rows[1]["scores"]["dataset_miou"] - rows[0]["scores"]["dataset_miou"]) for rows in (a_rows, b_rows)]
    assert dataset["label"] == "10°, 20 cm"
    assert (dataset["reference_drop"], dataset["other_drop"]) == pytest.approx(drop)
    assert dataset["ratio"] == pytest.approx(drop[1] / drop[0]) and "| row | reference: drop |" in text
    # A pooled score from the per-image statistics beside each study: its drop is the study's own
    # row difference, and with the same draws (seed 0, 50 resamples) the same interval.
    for measure, key in (("pacc", "pacc"), ("miou", "dataset_miou"), ("depth_absrel", "depth_absrel")):
        paths = [tmp_path / name / "study_pose_noise.json" for name in ("a", "b")]
        reports_read = [cs.read_study(path) for path in paths]
        stats = [cs.read_study_stats(path, report) for path, report in zip(paths, reports_read)]
        result = cs.compare_studies(reports_read[0], reports_read[1], resamples=50, measure=measure,
                                    reference_stats=stats[:1], other_stats=stats[1:])
        (row,) = result["rows"]
        scale = 1.0 if measure == "depth_absrel" else 100.0
        for side, name in (("reference", "a"), ("other", "b")):
            own = reports[name]["rows"][1]["minus_reference"][key]
            assert row[f"{side}_drop"] == pytest.approx(scale * own["difference"])
            assert row[f"{side}_drop_interval"] == pytest.approx([scale * own["low"], scale * own["high"]])
        assert result["images"] == 2 and result["measure_key"] == measure
    assert cs.main(["--reference", str(paths[0]), "--other", str(paths[1]), "--measure", "pacc",
                    "--resamples", "20"]) == 0
    assert "- measure: pixel accuracy (%)" in capsys.readouterr().out
    # statistics of another model's study beside this JSON are refused
    (tmp_path / "a" / "study_pose_noise_per_image.npz").write_bytes(
        (tmp_path / "b" / "study_pose_noise_per_image.npz").read_bytes())
    assert cs.main(["--reference", str(paths[0]), "--other", str(paths[1]), "--measure", "pacc"]) == 2
    assert "is of checkpoint" in capsys.readouterr().err
    (tmp_path / "a" / "study_pose_noise_per_image.npz").unlink()
    assert cs.main(["--reference", str(paths[0]), "--other", str(paths[1]), "--measure", "pacc"]) == 2
    assert "has no per-image statistics beside it" in capsys.readouterr().err
