"""viewseg export-model: the model inside a real training checkpoint, as a plain model file."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .conftest import TINY_OVERRIDES
from training.checkpoint import load_checkpoint
from training.config_io import load_config
from training.train import TrainConfig, train
from viewseg_core import cli
from viewseg_core.model.weights import load_model

CONFIG = str(Path(__file__).resolve().parents[2] / "training" / "configs" / "synthetic_small.yaml")


def test_export_equals_the_checkpointed_model(tiny_synth, tmp_path, capsys):
    out_dir = tmp_path / "run"
    train(load_config(TrainConfig, CONFIG, [*TINY_OVERRIDES, f"data.root={tiny_synth}", f"run.out_dir={out_dir}",
                                            "run.max_steps=2", "run.checkpoint_every=1", "run.keep_checkpoints=5"]))
    step1 = out_dir / "checkpoints" / "step_1.pt"
    exported = tmp_path / "model_step_1.pt"
    assert cli.main(["export-model", "--checkpoint", str(step1), "--out", str(exported)]) == 0
    assert "[export-model] wrote" in capsys.readouterr().out
    expected = load_checkpoint(step1)["model"]["state_dict"]
    got = torch.load(exported, weights_only=True)
    assert got["format"] == "viewseg-model" and "optimizer" not in got
    assert got["state_dict"].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got["state_dict"][key], value), key
    assert exported.stat().st_size < step1.stat().st_size  # no optimizer state
    # The last checkpoint exported equals the model.pt that training wrote at its end.
    last = cli.main(["export-model", "--checkpoint", str(out_dir / "checkpoints" / "step_2.pt"),
                     "--out", str(tmp_path / "last.pt")])
    assert last == 0
    final, again = load_model(out_dir / "model.pt").state_dict(), load_model(tmp_path / "last.pt").state_dict()
    assert all(torch.equal(final[k], again[k]) for k in final)
    # A step-1 weight differs from step 2's: the export did not just copy the final model.
    assert any(not torch.equal(expected[k], final[k]) for k in final if expected[k].is_floating_point())

    # Both files carry the run's data settings, as eval will read them.
    from training.config_io import from_dict, to_dict
    from training.data import DataConfig
    run_data = load_checkpoint(step1)["config"]["data"]
    assert run_data["root"] == str(tiny_synth)
    for path in (exported, tmp_path / "last.pt", out_dir / "model.pt"):
        data = torch.load(path, weights_only=True)["data"]
        assert data == run_data and to_dict(from_dict(DataConfig, data, "data.")) == data, path
    # --data-config records another config's data section instead.
    other = tmp_path / "other.pt"
    assert cli.main(["export-model", "--checkpoint", str(step1), "--out", str(other),
                     "--data-config", CONFIG]) == 0
    assert torch.load(other, weights_only=True)["data"]["root"] == "data/synthetic_small"
    # A model file without data settings exports without them, and says so.
    from viewseg_core.model.weights import save_model
    bare = save_model(load_model(exported), tmp_path / "bare.pt")
    capsys.readouterr()
    assert cli.main(["export-model", "--checkpoint", str(bare), "--out", str(tmp_path / "bare_out.pt")]) == 0
    assert "no data settings recorded" in capsys.readouterr().out
    assert "data" not in torch.load(tmp_path / "bare_out.pt", weights_only=True)


def test_export_refuses_bad_inputs(tmp_path):
    from training.export_model import export_model
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError):
        export_model(bad, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    with pytest.raises(ValueError, match="is the checkpoint itself"):
        export_model(bad, bad)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert cli.main(["export-model", "--checkpoint", str(bad), "--out", str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("viewseg export-model: error: refusing weights file") and "Traceback" not in err
    assert cli.main(["export-model", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o.pt")]) == 2
    assert "viewseg export-model: error:" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "o.pt").exists()
