"""Resuming a training run after a kill: temp files of the interrupted write are removed, an
unreadable newest checkpoint costs one checkpoint interval instead of the run, and learning-rate
settings given on resume are applied, not silently replaced by the checkpoint's."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.checkpoint import load_checkpoint
from training.config_io import load_config
from training.train import TrainConfig, train

from .conftest import TINY_OVERRIDES

CONFIG = str(Path(__file__).resolve().parents[2] / "training" / "configs" / "synthetic_small.yaml")


def _config(root, out_dir, *extra) -> TrainConfig:
    return load_config(TrainConfig, CONFIG, [*TINY_OVERRIDES, f"data.root={root}", f"run.out_dir={out_dir}",
                                             "run.checkpoint_every=1", "run.keep_checkpoints=10",
                                             "optim.lr_final_ratio=0.5", "optim.warmup_steps=0", *extra])


def test_resume_cleans_temps_skips_a_torn_checkpoint_and_applies_a_new_lr(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    train(_config(tiny_synth, out, "run.max_steps=2"))  # TINY_OVERRIDES: optim.lr=0.001
    # What a kill leaves: temp files of interrupted atomic writes, and (a disk that filled,
    # a copy cut short) a newest checkpoint that is only half there.
    (ckpts / ".step_3.pt.k1ll3d.tmp").write_bytes(b"partial")
    (out / ".model.pt.k1ll3d.tmp").write_bytes(b"partial")
    torn = (ckpts / "step_2.pt").read_bytes()
    (ckpts / "step_2.pt").write_bytes(torn[: len(torn) // 2])
    capsys.readouterr()

    train(_config(tiny_synth, out, "run.max_steps=3", "optim.lr=5e-4"))  # '5e-4': YAML reads a string
    captured = capsys.readouterr()
    assert "removed 2 temp file(s) left by an interrupted run" in captured.err
    assert ".step_3.pt.k1ll3d.tmp" in captured.err and ".model.pt.k1ll3d.tmp" in captured.err
    assert f"skipping unreadable checkpoint {ckpts / 'step_2.pt'}" in captured.err
    assert f"resumed from {ckpts / 'step_1.pt'} at step 1" in captured.out
    assert "optim.lr 0.001 -> 0.0005" in captured.err and "run.max_steps 2 -> 3" in captured.err
    assert sorted(p.name for p in out.rglob("*.tmp")) == []

    # Steps 2 and 3 ran again from step 1; step_2.pt is whole again.
    assert load_checkpoint(ckpts / "step_2.pt")["step"] == 2
    final = load_checkpoint(ckpts / "step_3.pt")
    assert final["step"] == 3
    # The schedule continues from the NEW base rate: lr(3) = 5e-4 * 0.5 ** (3 / 3). Keeping
    # the checkpoint's base rate would give 1e-3 * 0.5 = 5e-4.
    assert final["scheduler"]["base_lrs"] == [5e-4]
    assert final["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2.5e-4, rel=1e-12)
    assert final["config"]["optim"]["lr"] == 5e-4
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["lr"] == 5e-4


def test_resume_refuses_when_no_checkpoint_can_be_read(tiny_synth, tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "step_1.pt").write_bytes(b"not a checkpoint")
    (ckpts / "step_2.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no checkpoint in .* can be read \(2 tried"):
        train(_config(tiny_synth, tmp_path / "run", "run.max_steps=3"))
    assert not (tmp_path / "run" / "model.pt").exists()
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_1.pt", "step_2.pt"]  # left for a look
