"""scripts/export_demo.py on a tiny random model: float16 storage, float32 after load_model,
source_size, the size limit, and the fp16-vs-fp32 agreement on rendered views."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from viewseg_core.model.viewseg import ModelConfig, ViewSeg
from viewseg_core.model.weights import MODEL_FORMAT, load_model, model_checkpoint, save_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=16, hidden_dim=32, n_blocks=1,
                         n_head_blocks=1, n_harmonic_xyz=4, n_harmonic_dir=2, num_coarse=8, num_fine=4)
    return save_model(ViewSeg(config), tmp_path_factory.mktemp("export") / "model.pt")


def test_export_stores_float16_and_loads_as_float32(tiny, tmp_path, capsys, load_script):
    module = load_script("export_demo")
    out = tmp_path / "demo" / "demo.pt"
    assert module.main(["--model", str(tiny), "--out", str(out), "--source-size", "24x32"]) == 0
    printed = capsys.readouterr().out
    assert "labels equal on" in printed and f"wrote {out}" in printed

    original = load_model(tiny)
    reference = original.state_dict()
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["format"] == MODEL_FORMAT and tuple(raw["config"]["source_size"]) == (24, 32)
    halved = 0
    for name, stored in raw["state_dict"].items():
        fp32 = reference[name]
        if fp32.is_floating_point() and fp32.numel() >= module.SMALL_TENSOR:
            assert stored.dtype == torch.float16, name
            halved += 1
        else:  # small float tensors (biases, BatchNorm statistics) and integer counters stay as they were
            assert stored.dtype == fp32.dtype and torch.equal(stored, fp32), name
    assert halved >= 10
    assert out.stat().st_size < 0.6 * tiny.stat().st_size  # the float16 bulk halves the file

    loaded = load_model(out)
    assert loaded.config.source_size == (24, 32)
    assert dataclasses.replace(loaded.config, source_size=(0, 0)) == original.config
    for name, value in loaded.state_dict().items():
        fp32 = reference[name]
        assert value.dtype == fp32.dtype, name  # load_model casts back: the module computes in float32
        expected = fp32.half().float() if raw["state_dict"][name].dtype == torch.float16 else fp32
        assert torch.equal(value, expected), name  # exactly the float16-rounded weights
    assert all(p.dtype == torch.float32 for p in loaded.parameters())

    # Numerically: the fp16-stored model renders the same labels as the fp32 one.
    original.config = dataclasses.replace(original.config, source_size=(24, 32))  # test views at 24x32
    check = module.compare(original, loaded)
    assert check["pixels"] == module.VERIFY_QUERIES * 24 * 32
    assert check["agreement"] >= 0.99 and check["agreement_occupied"] >= 0.99, check
    assert 0 < check["max_probability_diff"] < 0.05, check


def test_export_keeps_unknown_source_size_and_reads_training_checkpoints(tiny, tmp_path, load_script):
    module = load_script("export_demo")
    training = tmp_path / "step_10.pt"
    torch.save({"step": 10, "model": model_checkpoint(load_model(tiny)), "optimizer": {}}, training)
    out = tmp_path / "demo.pt"
    assert module.main(["--model", str(training), "--out", str(out)]) == 0
    assert load_model(out).config.source_size == (0, 0)


def test_export_refuses_oversize_and_bad_arguments(tiny, tmp_path, capsys, load_script):
    module = load_script("export_demo")
    out = tmp_path / "demo.pt"
    assert module.main(["--model", str(tiny), "--out", str(out), "--max-mb", "0.01"]) == 1
    assert "> --max-mb 0.01 MB" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written, no temporary left
    with pytest.raises(SystemExit) as error:
        module.main(["--model", str(tiny), "--out", str(out), "--source-size", "60by80"])
    assert error.value.code == 2 and "expected HEIGHTxWIDTH" in capsys.readouterr().err
    assert module.main(["--model", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


REPO = Path(__file__).resolve().parents[2]


def test_data_settings_are_recorded_and_a_reexport_keeps_every_tensor(tiny, tmp_path, capsys, load_script):
    from training.config_io import from_dict, load_config, to_dict
    from training.data import DataConfig
    from training.train import TrainConfig

    module = load_script("export_demo")
    first = tmp_path / "demo.pt"
    config = REPO / "training" / "configs" / "synthetic_small_rgbd.yaml"  # a base: chain, nested sections
    assert module.main(["--model", str(tiny), "--out", str(first), "--data-config", str(config)]) == 0
    raw = torch.load(first, map_location="cpu", weights_only=True)
    expected = to_dict(load_config(TrainConfig, config).data)
    assert raw["data"] == expected and raw["data"]["root"] == "data/synthetic_medium"
    assert from_dict(DataConfig, raw["data"], "data.") == load_config(TrainConfig, config).data  # what eval reads
    assert raw["export"]["data_from"] == str(config) and raw["export"]["from"] == str(tiny)

    # Re-exporting the demo file in place (to change its data settings) keeps every stored tensor,
    # its dtype and where the weights came from.
    again = tmp_path / "again.pt"
    small = REPO / "training" / "configs" / "synthetic_small.yaml"
    assert module.main(["--model", str(first), "--out", str(again), "--data-config", str(small)]) == 0
    second = torch.load(again, map_location="cpu", weights_only=True)
    assert second["state_dict"].keys() == raw["state_dict"].keys()
    for name, value in raw["state_dict"].items():
        assert second["state_dict"][name].dtype == value.dtype and torch.equal(second["state_dict"][name], value), name
    assert second["export"]["from"] == str(tiny) and second["data"]["root"] == "data/synthetic_small"
    # Without --data-config the input's own settings are carried.
    third = tmp_path / "third.pt"
    assert module.main(["--model", str(again), "--out", str(third)]) == 0
    carried = torch.load(third, map_location="cpu", weights_only=True)
    assert carried["data"] == second["data"] and carried["export"]["data_from"] == str(small)
    # A model file without settings gives a file without them (eval then needs --config).
    capsys.readouterr()
    bare = tmp_path / "bare.pt"
    assert module.main(["--model", str(tiny), "--out", str(bare)]) == 0
    assert "data settings: none" in capsys.readouterr().out
    assert "data" not in torch.load(bare, map_location="cpu", weights_only=True)
    # A config whose data section is wrong is refused before anything is written.
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("data:\n  kind: nope\n")
    assert module.main(["--model", str(tiny), "--out", str(tmp_path / "no.pt"), "--data-config", str(wrong)]) == 2
    assert "data.kind" in capsys.readouterr().err and not (tmp_path / "no.pt").exists()


def test_shipped_demo_files_carry_their_data_settings():
    from training.config_io import from_dict, load_config
    from training.data import DataConfig
    from training.train import TrainConfig

    for name, config in (("demo.pt", "synthetic_small.yaml"), ("demo_rgbd.pt", "synthetic_small_rgbd_extrapolate.yaml")):
        raw = torch.load(REPO / "checkpoints" / name, map_location="cpu", weights_only=True)
        data = from_dict(DataConfig, raw["data"], "data.")
        assert data == load_config(TrainConfig, REPO / "training" / "configs" / config).data, name
        assert raw["export"]["data_from"] == f"training/configs/{config}"
        assert list(data.image_size) == list(raw["config"]["source_size"]) == [60, 80]
