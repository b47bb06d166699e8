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
