"""scripts/compare_methods.py: a subset re-scored from per_image_stats.npz equals evaluating that subset."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from viewseg_core.model.weights import save_model

from .conftest import tiny_viewseg


@pytest.fixture(scope="module")
def tiny_eval_inputs(tiny_rooms, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    save_model(tiny_viewseg(), root / "model.pt")
    return root, tiny_rooms[1]


def _evaluate(root, config, out, max_examples):
    from training.evaluate import EvalConfig, evaluate
    return evaluate(EvalConfig(checkpoint=str(root / "model.pt"), out=str(root / out), split="test",
                               config=str(config), baselines=("nearest_view_true_labels",),
                               max_examples=max_examples,
                               panels=0, threads=1, progress=False, bootstrap=200))


def _same(a, b):
    return (a is None and b is None) or (isinstance(a, float) and math.isnan(a) and b is None) or \
        (a is None and isinstance(b, float) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def test_subset_equals_a_direct_evaluation(tiny_eval_inputs, load_script, capsys, tmp_path):
    cm = load_script("compare_methods")
    root, config = tiny_eval_inputs
    full = _evaluate(root, config, "full", 0)
    part = _evaluate(root, config, "part", 2)
    assert full["num_examples"] > part["num_examples"] == 2
    report = cm.compare(root / "full" / "per_image_stats.npz", max_examples=2, resamples=200)
    assert report["num_examples"] == 2
    for name, scores in part["methods"].items():
        for key in ("dataset_miou", "per_image_miou", "fwiou", "depth_l1", "depth_l1_stuff", "delta1"):
            assert _same(report["methods"][name][key], scores[key]), (name, key)
    assert report["comparisons"]["against"]["nearest_view_true_labels"]["depth_l1"] == \
        pytest.approx(part["comparisons"]["against"]["nearest_view_true_labels"]["depth_l1"])
    # the paper's merged IoU_T / IoU_S come back from the per-image matrices too, and are compared
    for key in ("iou_t_merged", "iou_s_merged"):
        assert _same(report["methods"]["viewseg"][key], part["methods"]["viewseg"][key]), key
        assert _same(report["comparisons"]["against"]["nearest_view_true_labels"][key]["difference"],
                     part["comparisons"]["against"]["nearest_view_true_labels"][key]["difference"]), key
    # Every image: the evaluation's own numbers.
    whole = cm.compare(root / "full" / "per_image_stats.npz", resamples=200)
    assert whole["methods"]["viewseg"]["dataset_miou"] == pytest.approx(full["methods"]["viewseg"]["dataset_miou"])

    out = tmp_path / "subset.md"
    assert cm.main(["--stats", str(root / "full" / "per_image_stats.npz"), "--max-examples", "2",
                    "--resamples", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## ViewSeg against each method (paired image bootstrap)" in printed and out.read_text() == printed
    assert "# Evaluation: test split of" in printed and "model.pt`" in printed


def test_refuses_a_subset_the_evaluation_did_not_score(tiny_eval_inputs, load_script, capsys):
    cm = load_script("compare_methods")
    root, config = tiny_eval_inputs
    _evaluate(root, config, "two", 2)
    assert cm.main(["--stats", str(root / "two" / "per_image_stats.npz"), "--max-examples", "3"]) == 2
    assert "did not score" in capsys.readouterr().err
    assert cm.main(["--stats", str(root / "missing.npz")]) == 2
    assert "cannot read per-image statistics" in capsys.readouterr().err


def test_an_older_file_names_true_label_nearest_view_for_what_it_was(tiny_eval_inputs, load_script, tmp_path):
    """Before the names were split, an evaluation without a segmenter stored its true-label nearest
    view as "nearest_view": read back, it is nearest_view_true_labels (with a segmenter it stays)."""
    import numpy as np

    cm = load_script("compare_methods")
    root, config = tiny_eval_inputs
    _evaluate(root, config, "new", 2)
    with np.load(root / "new" / "per_image_stats.npz") as data:
        arrays = {k: data[k] for k in data.files}
    old = {k.replace("nearest_view_true_labels/", "nearest_view/"): v for k, v in arrays.items()}
    np.savez(tmp_path / "old.npz", **old)
    report = cm.compare(tmp_path / "old.npz", resamples=20)
    assert list(report["methods"]) == ["viewseg", "nearest_view_true_labels"]
    np.savez(tmp_path / "with_segmenter.npz", **{**old, "meta/segmenter": np.asarray("seg.pt")})
    assert list(cm.compare(tmp_path / "with_segmenter.npz", resamples=20)["methods"]) == ["viewseg", "nearest_view"]


def test_against_compares_two_evaluations_of_the_same_images(tiny_eval_inputs, load_script, capsys):
    """--against: the other file's ViewSeg becomes method 'against'; ViewSeg minus it is the
    difference of the two evaluations' own scores, and other images are refused."""
    cm = load_script("compare_methods")
    root, config = tiny_eval_inputs
    a = _evaluate(root, config, "a", 2)
    save_model(tiny_viewseg(hidden_dim=8), root / "other.pt")   # another model
    from training.evaluate import EvalConfig, evaluate
    b = evaluate(EvalConfig(checkpoint=str(root / "other.pt"), out=str(root / "b"), split="test", config=str(config),
                            max_examples=2, panels=0, threads=1, progress=False, bootstrap=0))
    report = cm.compare(root / "a" / "per_image_stats.npz", resamples=200, against=root / "b" / "per_image_stats.npz")
    assert report["methods"]["against"]["dataset_miou"] == pytest.approx(b["methods"]["viewseg"]["dataset_miou"])
    expected = a["methods"]["viewseg"]["depth_l1"] - b["methods"]["viewseg"]["depth_l1"]
    assert report["comparisons"]["against"]["against"]["depth_l1"]["difference"] == pytest.approx(expected)
    assert "other.pt" in report["titles"]["against"]
    _evaluate(root, config, "three", 3)
    assert cm.main(["--stats", str(root / "a" / "per_image_stats.npz"),
                    "--against", str(root / "three" / "per_image_stats.npz")]) == 2
    assert "other images" in capsys.readouterr().err


def test_target_meta_keeps_the_images_whose_target_has_it(tiny_eval_inputs, load_script, capsys):
    """--target-meta trajectory=robot / =human: the rows whose target frame (through the
    evaluation's pairs file) has that trajectory in its scene folder; the two subsets split
    the images between them, each is scored as the same rows taken by hand, and the header
    says which. A bad KEY=VALUE or a value no target has is refused."""
    import json

    from training.evaluate import read_image_stats
    from viewseg_core.data.pairs import read_pairs

    cm = load_script("compare_methods")
    root, config = tiny_eval_inputs
    stats = root / "full" / "per_image_stats.npz"
    if not stats.exists():
        _evaluate(root, config, "full", 0)
    evaluators, index, _, meta = read_image_stats(stats)
    pairs = read_pairs(root / "full" / f"pairs_{meta['split']}.json")
    data = meta["data"]
    kinds = []
    for i in index:
        doc = json.loads((Path(data) / pairs[int(i)].scene / "cameras.json").read_text())
        kinds.append({f["id"]: f["meta"]["trajectory"] for f in doc["frames"]}[pairs[int(i)].target])
    counts = {kind: kinds.count(kind) for kind in ("robot", "human")}
    assert sum(counts.values()) == len(index) and all(counts.values()), counts
    for kind, count in counts.items():
        if not count:
            continue
        report = cm.compare(stats, resamples=50, target_meta=("trajectory", kind))
        assert report["num_examples"] == count and f"targets with trajectory={kind}" in report["split"]
        rows = [r for r, k in enumerate(kinds) if k == kind]
        conf = sum(evaluators["viewseg"].image_arrays()["conf"][r] for r in rows)
        assert (cm.take_rows(evaluators, rows)["viewseg"].conf == conf).all()
        assert report["methods"]["viewseg"]["num_images"] == count
    for bad in ("trajectory", "=robot"):
        with pytest.raises(SystemExit):
            cm.main(["--stats", str(stats), "--target-meta", bad])
    assert cm.main(["--stats", str(stats), "--target-meta", "trajectory=drone", "--resamples", "10"]) == 2
    assert "no scored image has a target with trajectory=drone" in capsys.readouterr().err
