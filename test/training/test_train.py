"""Training end to end on CPU: a killed run resumes to the same weights, and torchrun with
two gloo processes keeps both replicas identical."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.checkpoint import load_checkpoint
from training.config_io import load_config
from training.train import TrainConfig, train

from .conftest import TINY_OVERRIDES

CONFIG = str(Path(__file__).resolve().parents[2] / "training" / "configs" / "synthetic_small.yaml")
REPO = Path(__file__).resolve().parents[2]


def _overrides(root, out_dir, *extra):
    return [*TINY_OVERRIDES, f"data.root={root}", f"run.out_dir={out_dir}", *extra]


def _final_state(out_dir: Path) -> dict:
    ckpt = load_checkpoint(out_dir / "checkpoints" / "step_6.pt")
    return ckpt["model"]["state_dict"]


def test_killed_run_resumes_to_identical_weights(tiny_synth, tmp_path):
    common = ["run.max_steps=6", "run.checkpoint_every=2", "run.keep_checkpoints=10"]
    straight = tmp_path / "straight"
    train(load_config(TrainConfig, CONFIG, _overrides(tiny_synth, straight, *common)))

    # Same run in a child process, SIGKILLed once its step-2 checkpoint exists.
    resumed = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "training.train", "--config", CONFIG,
           *_overrides(tiny_synth, resumed, *common)]
    child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (resumed / "checkpoints" / "step_2.pt").exists():
        assert child.poll() is None, f"training child died early: {child.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no step-2 checkpoint within 240 s"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (resumed / "model.pt").exists(), "the child finished before it was killed"
    for stale in (resumed / "checkpoints").glob("step_*.pt"):  # keep only step 2: resume from there
        if stale.name != "step_2.pt":
            stale.unlink()
    # A kill mid-write may leave a temp file (never a torn step_N.pt); the resumed run removes it.
    train(load_config(TrainConfig, CONFIG, _overrides(tiny_synth, resumed, *common)))
    assert not [p.name for p in (resumed / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    a, b = _final_state(straight), _final_state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    # and training did move the weights
    first = load_checkpoint(straight / "checkpoints" / "step_2.pt")["model"]["state_dict"]
    assert any(not torch.equal(first[k], a[k]) for k in a if a[k].is_floating_point())


def test_torchrun_two_gloo_processes_stay_in_sync(tiny_synth, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", "--config", CONFIG,
           *_overrides(tiny_synth, out, "run.max_steps=3", "run.checkpoint_every=3", "run.device=cpu")]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checksums = json.loads((out / "replica_checksums.json").read_text())
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert "2 replicas in sync" in result.stdout
    assert load_checkpoint(out / "checkpoints" / "step_3.pt")["step"] == 3


def test_class_balance_counts_the_training_labels_and_keeps_the_weights(tiny_synth, tmp_path):
    import numpy as np
    import yaml
    from PIL import Image

    from training.data import label_counts, load_scenes
    from viewseg_core.classes import NUM_CLASSES
    from viewseg_core.model.losses import class_weights_from_counts

    # label_counts against the label PNGs of the train scene, counted here by hand.
    cfg = load_config(TrainConfig, CONFIG, _overrides(tiny_synth, tmp_path / "unused"))
    scenes = load_scenes(cfg.data, "train")
    by_hand = np.zeros(256, np.int64)
    for scene in scenes:
        for png in sorted((Path(tiny_synth) / scene.name / "labels").glob("*.png")):
            by_hand += np.bincount(np.asarray(Image.open(png)).reshape(-1), minlength=256)
    counts = label_counts(scenes, NUM_CLASSES)
    assert counts.tolist() == by_hand[:NUM_CLASSES].tolist() and counts.sum() > 0
    # Every other view (max_views below the total): about half the pixels.
    views = sum(len(s) for s in scenes)
    assert 0.3 < label_counts(scenes, NUM_CLASSES, max_views=views // 2).sum() / counts.sum() < 0.7

    # A 2-step run resolves the weights once (from every view of the train split) and records
    # them in config.yaml and its checkpoints; rarer classes weigh more.
    out = tmp_path / "balanced"
    train(load_config(TrainConfig, CONFIG, _overrides(tiny_synth, out, "run.max_steps=2", "loss.class_balance=0.5")))
    weights = yaml.safe_load((out / "config.yaml").read_text())["loss"]["class_weights"]
    assert len(weights) == NUM_CLASSES
    assert weights == pytest.approx(class_weights_from_counts(counts.tolist(), 0.5, 10.0))
    present = np.flatnonzero(counts)
    rare, common = present[np.argmin(counts[present])], present[np.argmax(counts[present])]
    assert weights[rare] > weights[common]
    assert load_checkpoint(out / "checkpoints" / "step_2.pt")["config"]["loss"]["class_weights"] == weights
    # Resumed on data that changed since (a train label image now all wall), the run keeps the
    # weights it trained with: counted again they would differ.
    png = sorted((Path(tiny_synth) / scenes[0].name / "labels").glob("*.png"))[0]
    original = png.read_bytes()
    try:
        Image.fromarray(np.zeros_like(np.asarray(Image.open(png)))).save(png)
        assert class_weights_from_counts(label_counts(load_scenes(cfg.data, "train"), NUM_CLASSES).tolist(),
                                         0.5, 10.0) != pytest.approx(weights)
        train(load_config(TrainConfig, CONFIG, _overrides(tiny_synth, out, "run.max_steps=3", "loss.class_balance=0.5")))
    finally:
        png.write_bytes(original)
    assert yaml.safe_load((out / "config.yaml").read_text())["loss"]["class_weights"] == weights
    assert load_checkpoint(out / "checkpoints" / "step_3.pt")["config"]["loss"]["class_weights"] == weights
    # The log line's summary of the label shares, by hand (37 classes: names; otherwise numbers).
    from training.train import label_shares
    shares = np.zeros(NUM_CLASSES, np.int64)
    shares[[0, 1, 5]] = [600, 396, 4]
    assert label_shares(shares) == "1000 labelled pixels, wall 60.0%, floor 39.6%; 1 of 37 classes under 0.5% each"
    assert label_shares(np.array([1, 3])) == "4 labelled pixels, class 1 75.0%, class 0 25.0%; 0 of 2 classes under 0.5% each"
    # Given weights of the wrong length are refused before training.
    with pytest.raises(ValueError, match="class_weights"):
        train(load_config(TrainConfig, CONFIG, _overrides(tiny_synth, tmp_path / "bad", "run.max_steps=1",
                                                          "loss.class_weights=[1.0, 2.0]")))


def test_repeat_targets_sees_the_chosen_targets_more_often(tiny_synth, tmp_path, capsys):
    """data.repeat_targets {trajectory=robot: 3}: each training pair whose target frame is a
    robot's (cameras.json meta, counted here by hand) comes three times, right after itself,
    the others once; a 1-step run logs the epoch's new length. Bad rules are refused, and a
    scene without frame meta cannot be filtered."""
    from training.data import DataConfig, build_dataset, repeat_targets

    cfg = load_config(TrainConfig, CONFIG, _overrides(tiny_synth, tmp_path / "pairs"))
    dataset = build_dataset(cfg.data, split="train", pairs_dir=tmp_path)
    kinds = {}
    for scene in {p.scene for p in dataset.pairs}:
        doc = json.loads((Path(tiny_synth) / scene / "cameras.json").read_text())
        kinds[scene] = {f["id"]: f["meta"]["trajectory"] for f in doc["frames"]}
    robot = [p for p in dataset.pairs if kinds[p.scene][p.target] == "robot"]
    assert 0 < len(robot) < len(dataset)
    repeated = repeat_targets(dataset, {"trajectory=robot": 3})
    assert len(repeated) == len(dataset) + 2 * len(robot)
    expected = [p for p in dataset.pairs for _ in range(3 if kinds[p.scene][p.target] == "robot" else 1)]
    assert repeated.pairs == expected
    assert repeat_targets(dataset, {}) is dataset
    assert len(repeat_targets(dataset, {"trajectory=drone": 4})) == len(dataset)

    out = tmp_path / "run"
    train(load_config(TrainConfig, CONFIG, _overrides(tiny_synth, out, "run.max_steps=1",
                                                     'data.repeat_targets={"trajectory=robot": 3}')))
    assert f"{len(dataset)} pairs -> {len(repeated)} an epoch" in capsys.readouterr().err
    for bad in ({"trajectory": 2}, {"trajectory=robot": 0}, {"=robot": 2}, {"trajectory=robot": 1.5}):
        with pytest.raises(ValueError, match="data.repeat_targets"):
            DataConfig(repeat_targets=bad)
    dataset.scenes = {name: object() for name in dataset.scenes}
    with pytest.raises(ValueError, match="keeps no frame meta"):
        repeat_targets(dataset, {"trajectory=robot": 2})
