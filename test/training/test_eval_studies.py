"""`viewseg eval` for the paper's experiments (issue 18): data settings carried by a model file,
pairs kept beside the results (never in the data root), the two nearest-view baselines kept
apart, the view-count study (--num-sources) and the source pose-noise study (--pose-noise)."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from training.config_io import load_config, to_dict
from training.data import build_dataset, find_pairs, load_scenes
from training.evaluate import (METHOD_TITLES, EvalConfig, evaluate, parse_baselines, pose_noise_datasets,
                               _scores, read_image_stats, resolve_data_config, source_subset, study_stats_file)
from training.train import TrainConfig
from viewseg_core import cli
from viewseg_core.data.pairs import read_pairs

from .conftest import CONFIG, DATA_OVERRIDES, TINY_OVERRIDES

# Scores a study row shares with a plain evaluation's ViewSeg, compared exactly.
SAME_SCORES = ("dataset_miou", "per_image_miou", "fwiou", "pacc", "iou_t_merged", "iou_s_merged", "miou_things",
               "depth_l1", "depth_absrel", "delta1", "depth_missing_fraction")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tiny_files, tmp_path_factory):
    """The shared tiny ViewSeg as a model file with its data settings, one without (named bare.pt,
    which the refusal message must name), and a segmenter."""
    bare = shutil.copy(tiny_files["model"], tmp_path_factory.mktemp("study_models") / "bare.pt")
    return {"with_data": tiny_files["with_data"], "bare": bare, "segmenter": tiny_files["segmenter"]}


def _eval(files, out, **kw) -> dict:
    args = dict(checkpoint=str(files["with_data"]), out=str(out), split="test", max_examples=2, panels=0,
                threads=1, progress=False, bootstrap=0)
    return evaluate(EvalConfig(**{**args, **kw}))


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def _same_scores(a: dict, b: dict) -> None:
    for key in SAME_SCORES:
        assert a[key] == b[key] or (a[key] is None and b[key] is None), key


# --------------------------------------------------------------------------------------
# Data settings carried by a model file
# --------------------------------------------------------------------------------------

def test_a_model_file_brings_its_data_settings(files, tiny_synth, tiny_cfg, tmp_path):
    # no data settings anywhere: one clear refusal instead of the 240x320 defaults
    with pytest.raises(ValueError, match=r"bare\.pt carries no data settings \(image size, pair rules\); "
                                         r"pass --config <the training YAML>"):
        _eval(files, tmp_path / "bare", checkpoint=str(files["bare"]))
    assert not (tmp_path / "bare" / "metrics.json").exists()
    # the model file's own settings: the 30x40 images it was trained on, no --config needed
    report = _eval(files, tmp_path / "own")
    assert report["image_size"] == [30, 40] and report["num_sources"] == 4
    assert report["data_settings"]["from"] == "checkpoint" and report["data_settings"]["changed_from_checkpoint"] == {}
    assert "- data settings from: checkpoint" in (tmp_path / "own" / "metrics.md").read_text()
    # a --config that disagrees (60x80, other pair rules) is refused, naming each key and both values
    with pytest.raises(ValueError) as err:
        _eval(files, tmp_path / "clash", config=CONFIG)
    text = str(err.value)
    assert "data.image_size is [30, 40] in the checkpoint, [60, 80] in --config" in text
    assert "data.pairs is" in text and "'min_rotation_deg': 10.0" in text and "'min_rotation_deg': 20.0" in text
    assert "num_sources" not in text  # both say 4
    # the same YAML with the clashing keys overridden on purpose is fine, and recorded
    record: dict = {}
    data = resolve_data_config({"data": to_dict(tiny_cfg.data)}, CONFIG, DATA_OVERRIDES, source="m.pt", record=record)
    assert tuple(data.image_size) == (30, 40) and record["changed_from_checkpoint"] == {}
    # a deliberate override is recorded against the checkpoint's value; the data root may differ freely
    record = {}
    data = resolve_data_config({"data": to_dict(tiny_cfg.data)}, "", ["data.num_sources=3"],
                               data_root="/elsewhere", source="m.pt", record=record)
    assert data.num_sources == 3 and data.root == "/elsewhere"
    assert record["changed_from_checkpoint"] == {"num_sources": {"checkpoint": 4, "used": 3}}
    assert record["overrides"] == ["data.num_sources=3"]
    # a bare model file with --config: the YAML's settings, as before
    data = resolve_data_config(None, CONFIG, ["data.image_size=[30,40]"])
    assert tuple(data.image_size) == (30, 40) and data.num_sources == 4


def test_training_pose_noise_is_not_applied_in_evaluation(tiny_cfg, files, tmp_path, capsys):
    """A model trained with source pose noise carries it; eval scores exact sources unless asked."""
    noisy = tmp_path / "noisy_trained.pt"
    obj = torch.load(files["with_data"], weights_only=False)
    obj["data"]["pose_noise"] = [5.0, 10.0]
    torch.save(obj, noisy)
    report = _eval(files, tmp_path / "e", checkpoint=str(noisy), max_examples=1)
    assert report["pose_noise"] == [0.0, 0.0]
    assert any("trained with source pose noise [5.0, 10.0]" in n for n in report["notices"])
    assert "evaluating with exact source poses" in capsys.readouterr().err
    plain = _eval(files, tmp_path / "p", max_examples=1)
    _same_scores(report["methods"]["viewseg"], plain["methods"]["viewseg"])


def test_a_training_noise_spread_never_changes_a_noise_level(files, tmp_path):
    """A model trained with pose_noise_spread "uniform" is scored at each --pose-noise level with
    every source at that sigma, the level 0 first included, exactly as a fixed-noise model."""
    spread = tmp_path / "spread_trained.pt"
    obj = torch.load(files["with_data"], weights_only=False)
    obj["data"].update(pose_noise=[5.0, 10.0], pose_noise_spread="uniform")
    torch.save(obj, spread)
    study = _eval(files, tmp_path / "s", checkpoint=str(spread), pose_noise=((0.0, 0.0), (10.0, 20.0)),
                  max_examples=1)
    fixed = _eval(files, tmp_path / "f", pose_noise=((10.0, 20.0),), max_examples=1)
    _same_scores(study["rows"][1]["scores"], fixed["methods"]["viewseg"])
    assert any("'uniform' is a training recipe" in n for n in study["notices"])


# --------------------------------------------------------------------------------------
# Pairs beside the results
# --------------------------------------------------------------------------------------

def test_pairs_live_beside_the_results_never_in_the_data_root(tiny_synth, tiny_cfg, files, tmp_path):
    before = _listing(tiny_synth)
    out = tmp_path / "eval"
    report = _eval(files, out, max_examples=1)
    assert report["pairs"] == {"file": str(out / "pairs_test.json"), "origin": "mined"}
    assert "(mined now)" in (out / "metrics.md").read_text()
    again = _eval(files, out, max_examples=1)
    assert again["pairs"]["origin"] == "pairs_dir"
    # a few training steps keep their pairs in the run folder
    from training.train import train
    run = tmp_path / "run"
    cfg = load_config(TrainConfig, CONFIG, [*TINY_OVERRIDES, f"data.root={tiny_synth}", f"run.out_dir={run}",
                                            "run.max_steps=2", "run.checkpoint_every=2", "run.device=cpu"])
    train(cfg)
    assert read_pairs(run / "pairs_train.json")
    assert _listing(tiny_synth) == before  # no file added, none rewritten

    # a matching pairs file in the data root (say, handed to a GPU machine) is read, not rewritten,
    # and copied beside the results; a stale one (other pair rules) is left alone
    data = tmp_path / "data"
    shutil.copytree(tiny_synth, data)
    cfg_data = dataclasses.replace(tiny_cfg.data, root=str(data))
    scenes = load_scenes(cfg_data, "test")
    shutil.copy(out / "pairs_test.json", data / "pairs_test.json")
    stale = data / "pairs_val.json"
    stale.write_text(json.dumps({"format_version": 1, "config": {"num_sources": 99}, "scenes": {}}))
    frozen = _listing(data)
    pairs, path, origin = find_pairs(cfg_data, "test", scenes, tmp_path / "elsewhere")
    assert (path, origin) == (data / "pairs_test.json", "data_root")
    assert (tmp_path / "elsewhere" / "pairs_test.json").read_text() == (data / "pairs_test.json").read_text()
    pairs_none, path_none, origin_none = find_pairs(cfg_data, "test", scenes, None)
    assert origin_none == "data_root" and [p.target for p in pairs_none] == [p.target for p in pairs]
    _, path, origin = find_pairs(cfg_data, "val", load_scenes(cfg_data, "val"), None)
    assert (path, origin) == (None, "mined")  # no pairs_dir: mined, written nowhere
    _, path, origin = find_pairs(cfg_data, "val", load_scenes(cfg_data, "val"), tmp_path / "elsewhere")
    assert (path, origin) == (tmp_path / "elsewhere" / "pairs_val.json", "mined")
    # an output folder that is the data root is still never written
    _, path, origin = find_pairs(cfg_data, "val", load_scenes(cfg_data, "val"), data)
    assert (path, origin) == (None, "mined")
    assert _listing(data) == frozen
    ds = build_dataset(cfg_data, "test", full_target=True, pairs_dir=tmp_path / "third")
    assert ds.pairs_origin == "data_root" and ds.pairs_file == str(data / "pairs_test.json")


# --------------------------------------------------------------------------------------
# Nearest view: segmenter labels and true labels are different methods
# --------------------------------------------------------------------------------------

def test_nearest_view_names():
    notices: list[str] = []
    assert parse_baselines(["all"], with_segmenter=False, notices=notices) == ("nearest_view_true_labels",)
    assert len(notices) == 1 and "\n" not in notices[0] and "need --segmenter" in notices[0]
    notices = []
    assert parse_baselines(["nearest_view"], with_segmenter=False, notices=notices) == ("nearest_view_true_labels",)
    assert len(notices) == 1 and "TRUE labels" in notices[0]
    assert parse_baselines(["all"]) == ("cloudseg_pred", "cloudseg_true", "nearest_view", "oracle")
    assert parse_baselines(["nearest_view,nearest_view_true_labels"]) == ("nearest_view", "nearest_view_true_labels")
    notices = []
    assert parse_baselines(["nearest_view_true_labels"], with_segmenter=False, notices=notices) == \
        ("nearest_view_true_labels",) and notices == []
    assert METHOD_TITLES["nearest_view_true_labels"] == "nearest source view (true source labels)"


def test_nearest_view_with_segmenter_labels_and_with_true_labels(files, tmp_path, capsys):
    report = _eval(files, tmp_path / "both", segmenter=str(files["segmenter"]),
                   baselines=("nearest_view", "nearest_view_true_labels"))
    m = report["methods"]
    assert list(m) == ["viewseg", "nearest_view", "nearest_view_true_labels"]
    # the same nearest source, so the same depth; its true labels against a random segmenter's
    assert m["nearest_view"]["depth_l1"] == m["nearest_view_true_labels"]["depth_l1"]
    assert m["nearest_view_true_labels"]["pacc"] > m["nearest_view"]["pacc"] + 0.2
    md = (tmp_path / "both" / "metrics.md").read_text()
    assert "| nearest source view |" in md and "| nearest source view (true source labels) |" in md
    # no segmenter: `all` is the true-label baseline, under its own name, with a notice
    report = _eval(files, tmp_path / "all", baselines=("all",))
    assert list(report["methods"]) == ["viewseg", "nearest_view_true_labels"]
    assert report["methods"]["nearest_view_true_labels"]["pacc"] == m["nearest_view_true_labels"]["pacc"]
    assert len(report["notices"]) == 1 and "[eval] no --segmenter" in capsys.readouterr().err
    assert "note: no --segmenter" in (tmp_path / "all" / "metrics.md").read_text()


# --------------------------------------------------------------------------------------
# --num-sources: the view-count study
# --------------------------------------------------------------------------------------

def test_num_sources_study(files, tmp_path):
    out = tmp_path / "study"
    report = _eval(files, out, num_sources=(2, 1, 3), bootstrap=50)
    assert [row["label"] for row in report["rows"]] == ["N=1", "N=2", "N=3"]
    assert report["reference"] == "N=3" and report["num_sources"] == 3 and report["num_examples"] == 2
    # one target set mined for N = 3; every N scored on the same targets, sources a prefix of N = 3's
    stored = {(p.scene, p.target): p.sources for p in read_pairs(out / "pairs_test.json")}
    for row in report["per_example"]:
        ids = row["source_ids"]
        assert ids["N=3"] == stored[(row["scene"], row["target_id"])]
        assert ids["N=1"] == ids["N=3"][:1] and ids["N=2"] == ids["N=3"][:2]
        assert set(row["image_miou"]) == {"N=1", "N=2", "N=3"}
    # the largest N is a plain evaluation with data.num_sources = 3, to the last digit
    plain = _eval(files, tmp_path / "plain", overrides=["data.num_sources=3"])
    assert [r["index"] for r in plain["per_example"]] == [r["index"] for r in report["per_example"]]
    _same_scores(report["rows"][2]["scores"], plain["methods"]["viewseg"])
    # each N minus the largest, with its bootstrap interval
    n1, n3 = report["rows"][0], report["rows"][2]
    assert "minus_reference" not in n3
    for key in ("dataset_miou", "iou_t_merged", "depth_l1"):
        d = n1["minus_reference"][key]
        assert d["difference"] == pytest.approx(n1["scores"][key] - n3["scores"][key], abs=1e-12)
        assert d["low"] <= d["high"]
    assert set(n1["minus_reference"]["per_image_miou"]) == {"difference"}  # no bootstrap of per-image mIoU
    saved = json.loads((out / "study_num_sources.json").read_text())
    assert saved["rows"][0]["num_sources"] == 1 and saved["rows"][2]["num_sources"] == 3
    md = (out / "study_num_sources.md").read_text()
    assert "ViewSeg only" in md and "## Each row minus N=3" in md and "| N=1 |" in md
    assert "IoU_T (paper: things merged)" in md and "first N sources" in md
    assert not (out / "metrics.json").exists()
    # every row's per-image statistics, read back as evaluators, give the row's scores exactly
    evaluators, index, in_split, meta = read_image_stats(out / study_stats_file("num_sources"))
    assert list(evaluators) == ["N=1", "N=2", "N=3"] and meta["study"] == "num_sources"
    assert list(index) == [r["index"] for r in report["per_example"]] and in_split == report["examples_in_split"]
    for row in report["rows"]:
        _same_scores(_scores(evaluators[row["label"]]), row["scores"])


def test_source_subset_takes_every_source_tensor(tiny_cfg):
    ex = build_dataset(tiny_cfg.data, "test", full_target=True)[0]
    sub = source_subset(ex, 2)
    for key, value in ex.items():
        if key.startswith("source_") and torch.is_tensor(value):
            assert torch.equal(sub[key], value[:2]), key
    assert sub["source_ids"] == ex["source_ids"][:2] and torch.equal(sub["target_c2w"], ex["target_c2w"])
    with pytest.raises(ValueError, match="cannot take 5"):
        source_subset(ex, 5)


# --------------------------------------------------------------------------------------
# --pose-noise: noisy sources
# --------------------------------------------------------------------------------------

def test_pose_noise_moves_only_the_sources(tiny_cfg):
    base = build_dataset(tiny_cfg.data, "test", full_target=True)
    clean, noisy = pose_noise_datasets(base, [(0, 0), (5, 10)])
    for index in (0, 3):
        a, b, ref = clean[index], noisy[index], base[index]
        assert a["source_ids"] == b["source_ids"] == ref["source_ids"] and a["target_id"] == b["target_id"]
        assert torch.equal(a["source_c2w"], ref["source_c2w"])
        for key in ("target_c2w", "target_K", "source_K", "source_rgb", "target_labels"):
            assert torch.equal(a[key], b[key]), key
        moved = (b["source_c2w"][:, :3, 3] - a["source_c2w"][:, :3, 3]).norm(dim=-1)
        assert (moved > 0).all() and (moved < 0.6).all()  # 10 cm per axis: never 60 cm
        assert not torch.allclose(b["source_c2w"][:, :3, :3], a["source_c2w"][:, :3, :3])


def test_pose_noise_levels(files, tmp_path):
    plain = _eval(files, tmp_path / "plain", baselines=("nearest_view_true_labels",))
    # one level of zero noise is a plain evaluation, every method
    zero = _eval(files, tmp_path / "zero", baselines=("nearest_view_true_labels",), pose_noise=((0.0, 0.0),))
    for name in plain["methods"]:
        _same_scores(zero["methods"][name], plain["methods"][name])
    # one noisy level: a normal evaluation whose baselines get the same noisy sources
    one = _eval(files, tmp_path / "one", baselines=("nearest_view_true_labels",), pose_noise=((10.0, 20.0),))
    assert one["pose_noise"] == [10.0, 20.0] and "methods" in one
    assert one["methods"]["viewseg"]["depth_l1"] != plain["methods"]["viewseg"]["depth_l1"]
    assert "source pose noise: σ = 10° rotation, 20 cm translation" in (tmp_path / "one" / "metrics.md").read_text()
    # several levels: a study of ViewSeg on the same targets; level 0,0 equals the plain evaluation
    study = _eval(files, tmp_path / "study", pose_noise=((0.0, 0.0), (10.0, 20.0)), bootstrap=40)
    assert [row["label"] for row in study["rows"]] == ["0°, 0 cm", "10°, 20 cm"]
    assert [r["index"] for r in study["per_example"]] == [r["index"] for r in plain["per_example"]]
    _same_scores(study["rows"][0]["scores"], plain["methods"]["viewseg"])
    _same_scores(study["rows"][1]["scores"], one["methods"]["viewseg"])
    for row in study["per_example"]:
        assert row["source_ids"]["0°, 0 cm"] == row["source_ids"]["10°, 20 cm"]
    d = study["rows"][1]["minus_reference"]["depth_l1"]
    assert d["difference"] == pytest.approx(one["methods"]["viewseg"]["depth_l1"] - plain["methods"]["viewseg"]
                                            ["depth_l1"], abs=1e-12) and d["low"] <= d["high"]
    assert study["rows"][1]["pose_noise"] == [10.0, 20.0]
    md = (tmp_path / "study" / "study_pose_noise.md").read_text()
    assert "noisy source poses" in md and "ViewSeg only" in md and "| 10°, 20 cm |" in md


def _cli(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(["eval", *args])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("flags, needle", [
    (["--pose-noise", "2"], "argument --pose-noise: '2' is not DEG,CM"),
    (["--pose-noise", "2,-1"], "argument --pose-noise: '2,-1' is not DEG,CM"),
    (["--pose-noise", "1,1", "x,2"], "argument --pose-noise: 'x,2' is not DEG,CM"),
    (["--num-sources", "0,2"], "argument --num-sources: '0,2': source counts must be >= 1"),
    (["--num-sources", "two"], "argument --num-sources: 'two' is not a comma-separated list"),
    (["--num-sources", "1,2", "--pose-noise", "0,0", "2,5"], "--num-sources and --pose-noise are separate studies"),
    (["--num-sources", "1,2", "--pose-noise", "2,5"], "--num-sources and --pose-noise are separate studies"),
    (["--num-sources", "1,2", "--baselines", "all"], "--num-sources is a study of ViewSeg alone and takes no "
                                                     "--baselines"),
    (["--pose-noise", "0,0", "2,5", "--segmenter", "s.pt"], "takes no --segmenter"),
])
def test_study_flags_refused_in_one_line(flags, needle, files, tmp_path, capsys):
    code, err = _cli(["--checkpoint", str(files["with_data"]), "--out", str(tmp_path / "o"), *flags], capsys)
    assert code == 2 and len(err.strip().splitlines()) <= 2 and "Traceback" not in err  # usage + the error
    assert needle in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_pose_noise_takes_overrides_after_the_levels(files, tiny_synth, tmp_path, capsys):
    code, err = _cli(["--checkpoint", str(files["bare"]), "--out", str(tmp_path / "o"), "--data", str(tiny_synth),
                      "--config", CONFIG, "--max-examples", "1", "--panels", "0", "--bootstrap", "0",
                      "--threads", "1", "--pose-noise", "0,0", "1,2", *DATA_OVERRIDES], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "study_pose_noise.json").read_text())
    assert report["image_size"] == [30, 40] and len(report["rows"]) == 2
    assert report["data_settings"]["overrides"] == DATA_OVERRIDES
    evaluators, *_ = read_image_stats(tmp_path / "o" / study_stats_file("pose_noise"))
    assert list(evaluators) == ["0°, 0 cm", "1°, 2 cm"]                      # the labels survive the npz
