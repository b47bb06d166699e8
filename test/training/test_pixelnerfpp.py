"""training/configs/synthetic_small_pixelnerfpp.yaml (PixelNeRF++): the config builds pixelNeRF's
ImageNet ResNet-34 from the local torch hub cache and trains; without the file it stops at
once with one line naming it."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from training.config_io import load_config
from training.train import TrainConfig, train
from viewseg_core.model.viewseg import build_model
from viewseg_core.model.weights import load_model, read_weights_file

from .conftest import TINY_OVERRIDES

CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "synthetic_small_pixelnerfpp.yaml"
# The tiny field and data of the other training tests; the encoder stays the config's.
TINY = [o for o in TINY_OVERRIDES if not o.startswith(("model.encoder=", "model.encoder_weights=",
                                                       "model.feature_dim="))]


@pytest.fixture
def fake_imagenet(tmp_path, monkeypatch):
    """A random ResNet-34 state dict under torchvision's file name in a temporary TORCH_HOME."""
    torch.manual_seed(1)
    state = torchvision.models.resnet34(weights=None).state_dict()
    path = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return state


def test_config_is_pixelnerf_with_imagenet_weights():
    cfg = load_config(TrainConfig, CONFIG)
    model_cfg = cfg.model_config()
    assert (model_cfg.encoder, model_cfg.encoder_weights, model_cfg.feature_dim) == \
        ("pixelnerf_resnet34", "torchvision:imagenet", 512)
    assert cfg.run.out_dir == "runs/ablation_pixelnerfpp"
    base = load_config(TrainConfig, CONFIG.parent / "synthetic_small.yaml")
    assert cfg.data == base.data and cfg.loss == base.loss and cfg.optim == base.optim
    assert (cfg.run.max_steps, cfg.run.seed) == (base.run.max_steps, base.run.seed)


def test_config_builds_the_model_with_the_weights(fake_imagenet):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fake file is not torchvision's (hash warning)
        model = build_model(load_config(TrainConfig, CONFIG).model_config())
    backbone = model.encoder.backbone.state_dict()
    assert all(torch.equal(v, fake_imagenet[k]) for k, v in backbone.items() if not k.endswith("num_batches_tracked"))
    assert model.encoder.feature_dim == 512 and model.encoder.stride == 2


def test_two_training_steps_at_tiny_size(fake_imagenet, tiny_synth, tmp_path, one_torch_thread):
    out_dir = tmp_path / "run"
    cfg = load_config(TrainConfig, CONFIG, [*TINY, f"data.root={tiny_synth}", f"run.out_dir={out_dir}",
                                            "run.max_steps=2", "run.checkpoint_every=2", "data.num_sources=2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = train(cfg)
    model = load_model(final)
    assert model.config.encoder == "pixelnerf_resnet34"
    assert read_weights_file(final)["data"]["root"] == str(tiny_synth)
    trained = model.encoder.backbone.state_dict()
    # Started from the ImageNet file, then trained: the backbone moved away from it.
    assert any(not torch.equal(trained[k], fake_imagenet[k]) for k in trained if trained[k].is_floating_point())
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_training_without_the_file_stops_with_one_line(tmp_path, monkeypatch, tiny_synth):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    cfg = load_config(TrainConfig, CONFIG, [*TINY, f"data.root={tiny_synth}", f"run.out_dir={tmp_path / 'run'}",
                                            "run.max_steps=1"])
    with pytest.raises(FileNotFoundError) as error:
        train(cfg)
    message = str(error.value)
    assert "\n" not in message and "resnet34-b627a593.pth" in message
    assert "https://download.pytorch.org/models/resnet34-b627a593.pth" in message


def test_missing_weights_are_reported_before_the_dataset_is_built(tmp_path, monkeypatch):
    """The data root does not exist either: the weights file is named first (the check runs
    before the dataset, which took 16 s on the synthetic rooms), for the torchvision file and
    for a plain file path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    missing_root = [f"data.root={tmp_path / 'no_data'}", f"run.out_dir={tmp_path / 'run'}", "run.max_steps=1"]
    with pytest.raises(FileNotFoundError, match="resnet34-b627a593.pth is missing"):
        train(load_config(TrainConfig, CONFIG, [*TINY, *missing_root]))
    with pytest.raises(FileNotFoundError, match="no_such_encoder.pt does not exist"):
        train(load_config(TrainConfig, CONFIG, [*TINY, *missing_root,
                                                f"model.encoder_weights={tmp_path / 'no_such_encoder.pt'}"]))
    with pytest.raises(ValueError, match="only torchvision weights viewseg knows"):
        train(load_config(TrainConfig, CONFIG, [*TINY, *missing_root, "model.encoder_weights=torchvision:other"]))
    assert not (tmp_path / "run" / "pairs_train.json").exists()
