"""Config loading with overrides, and atomic, code-free, exactly-resumable checkpoints."""
from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoint import (FORMAT, latest_checkpoint, load_checkpoint, rng_state, save_atomic,
                                 set_rng_state)
from training.config_io import apply_overrides, load_config, to_dict


@dataclass
class Inner:
    lr: float = 5e-4
    size: tuple[int, int] = (240, 320)


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: run\ninner:\n  lr: 0.001\n")
    cfg = load_config(Outer, path, ["inner.size=[120,160]", "name=other"])
    assert cfg == Outer(name="other", inner=Inner(lr=0.001, size=(120, 160)))
    assert to_dict(cfg) == {"name": "other", "inner": {"lr": 0.001, "size": [120, 160]}}
    with pytest.raises(ValueError, match=r"unknown config key\(s\) inner.lrr"):
        load_config(Outer, None, ["inner.lrr=1"])
    with pytest.raises(ValueError, match="not of the form"):
        apply_overrides({}, ["inner.lr"])
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(Outer, tmp_path / "bad.yaml")


def test_base_configs_merge_key_by_key(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "root.yaml").write_text("name: root\ninner:\n  lr: 0.1\n  size: [1, 2]\n")
    (tmp_path / "mid.yaml").write_text("base: shared/root.yaml\ninner:\n  lr: 0.2\n")
    (tmp_path / "leaf.yaml").write_text("base: mid.yaml\nname: leaf\n")
    # Each file wins over its base key by key; the command line wins over every file.
    assert load_config(Outer, tmp_path / "leaf.yaml") == Outer(name="leaf", inner=Inner(lr=0.2, size=(1, 2)))
    assert load_config(Outer, tmp_path / "leaf.yaml", ["inner.lr=0.3"]).inner.lr == 0.3
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="config base cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_config(Outer, tmp_path / "a.yaml")
    (tmp_path / "lost.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ValueError, match="cannot read config .*nowhere.yaml"):
        load_config(Outer, tmp_path / "lost.yaml")
    (tmp_path / "odd.yaml").write_text("base: [mid.yaml]\n")
    with pytest.raises(ValueError, match="'base' must be a file name"):
        load_config(Outer, tmp_path / "odd.yaml")


def test_gpu_config_is_stage_two_with_its_stated_changes():
    """synthetic_gpu.yaml states only what differs from synthetic_medium.yaml (its base)."""
    from training.train import TrainConfig
    configs = Path(__file__).resolve().parents[2] / "training" / "configs"
    medium = to_dict(load_config(TrainConfig, configs / "synthetic_medium.yaml"))
    gpu = to_dict(load_config(TrainConfig, configs / "synthetic_gpu.yaml"))
    assert gpu["model"] == {**medium["model"], "source_rgb": True}
    assert gpu["loss"] == medium["loss"]
    assert gpu["data"] == {**medium["data"], "root": "data/synthetic_large", "target_rays": 1024,
                           "source_rays": 64, "num_workers": 12}
    assert (gpu["optim"]["batch_size"], gpu["optim"]["lr"], gpu["run"]["init_from"]) == \
        (8, 5e-4, "runs/synthetic_medium/model.pt")


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_atomic({"format": FORMAT, "rng": rng_state()}, tmp_path / "step_5.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "step_5.pt")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])


class Evil:
    def __reduce__(self):
        return (print, ("this ran on load",))


def test_load_refuses_code_and_foreign_files(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": Evil()}, evil)
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(evil)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a viewseg training checkpoint"):
        load_checkpoint(foreign)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(ValueError, match="torn.pt"):
        load_checkpoint(torn)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_atomic_save_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "step_1.pt"
    save_atomic({"format": FORMAT, "v": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"format": FORMAT, "v": Unpicklable()}, path)
    assert load_checkpoint(path)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["step_1.pt"]
    save_atomic({"format": FORMAT}, tmp_path / "step_10.pt")
    save_atomic({"format": FORMAT}, tmp_path / "step_9.pt")
    assert latest_checkpoint(tmp_path).name == "step_10.pt"


def test_config_values_are_typed_and_range_checked():
    from training.train import TrainConfig

    cfg = load_config(TrainConfig, None, ["optim.lr=1e-3", "loss.depth_weight=1", "data.image_size=[60, 80]"])
    assert cfg.optim.lr == 0.001 and type(cfg.loss.depth_weight) is float and cfg.data.image_size == (60, 80)
    for override, message in [
        ("run.max_steps=-5", "config key run.max_steps must be >= 1, got -5"),
        ("optim.lr=0", "config key optim.lr must be > 0.0, got 0.0"),
        ("optim.lr=fast", "config key optim.lr: expected float, got 'fast' (str)"),
        ("run.max_steps=1.5", "config key run.max_steps: expected int, got 1.5 (float)"),
        ("run.bf16=1", "config key run.bf16: expected bool, got 1 (int)"),
        ("data.image_size=[60]", "config key data.image_size: expected tuple[int, int], got [60] (list)"),
        ("loss.semantic_weight=-0.1", "config key loss.semantic_weight must be >= 0.0, got -0.1"),
        ("optim.lr=.nan", "config key optim.lr must be > 0.0, got nan"),
    ]:
        with pytest.raises(ValueError) as error:
            load_config(TrainConfig, None, [override])
        assert str(error.value) == message


def test_source_depth_data_keys():
    from training.train import TrainConfig
    from viewseg_core.data.depth_sensor import DepthSensorConfig

    cfg = load_config(TrainConfig, None)
    assert cfg.data.source_depth == "none" and cfg.data.source_depth_dropout == 0.0  # the paper's RGB input
    cfg = load_config(TrainConfig, None, ["data.source_depth=sensor", "data.source_depth_dropout=0.2",
                                          "data.depth_sensor.noise_k=0.003", "data.depth_sensor.max_range_m=6"])
    assert cfg.data.source_depth == "sensor" and cfg.data.source_depth_dropout == 0.2
    assert cfg.data.depth_sensor == DepthSensorConfig(noise_k=0.003, max_range_m=6.0)
    assert to_dict(cfg)["data"]["depth_sensor"]["noise_k"] == 0.003
    for override, message in [
        ("data.source_depth=lidar", "config key data.source_depth: unknown mode 'lidar' (none | clean | sensor)"),
        ("data.source_depth_dropout=2", "config key data.source_depth_dropout must be in [0, 1], got 2.0"),
        ("data.pose_noise_spread=normal", "config key data.pose_noise_spread: unknown spread 'normal' "
                                          "(fixed | uniform)"),
        ("data.depth_sensor.hole_rate=1", "depth_sensor.hole_rate must be in [0, 1), got 1.0"),
        ("data.depth_sensor.noise=1", "unknown config key(s) data.depth_sensor.noise; valid keys under "
                                      "'data.depth_sensor.': edge_dropout, edge_threshold, hole_radius_px, hole_rate, "
                                      "max_range_m, min_range_m, noise_k, quantization_m, row_band, row_bands, row_stride, "
                                      "row_strides"),
        ("data.depth_sensor.row_stride=0", "depth_sensor.row_stride must be an integer >= 1, got 0"),
    ]:
        with pytest.raises(ValueError) as error:
            load_config(TrainConfig, None, [override])
        assert str(error.value) == message


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_config_loads(path):
    """Each config in training/configs parses into a TrainConfig and a valid ModelConfig."""
    from training.train import TrainConfig

    cfg = load_config(TrainConfig, path)
    model = cfg.model_config()
    assert cfg.run.max_steps > 0 and cfg.optim.lr > 0
    assert model.source_size == tuple(cfg.data.image_size)
