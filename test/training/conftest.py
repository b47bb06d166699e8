"""A tiny synthetic dataset and a tiny model config shared by the training tests."""
from __future__ import annotations

from pathlib import Path

import pytest

TINY_OVERRIDES = [
    "model.encoder=deeplabv3plus_resnet18", "model.encoder_weights=\"\"", "model.feature_dim=16", "model.hidden_dim=16",
    "model.n_harmonic_xyz=4", "model.n_harmonic_dir=2", "model.num_coarse=8", "model.num_fine=8",
    "model.far=12.0", "data.image_size=[30,40]", "data.target_rays=32", "data.source_rays=8",
    "data.num_workers=0", "data.pairs={min_rotation_deg: 10.0, min_baseline: 0.2, min_overlap: 0.05}",
    "optim.lr=0.001", "run.log_every=1", "run.image_every=0", "run.threads=1",
]


CONFIG = str(Path(__file__).resolve().parents[2] / "training" / "configs" / "synthetic_small.yaml")
DATA_OVERRIDES = [o for o in TINY_OVERRIDES if o.startswith("data.")]


@pytest.fixture(scope="module")
def tiny_cfg(tiny_synth):
    """synthetic_small.yaml with TINY_OVERRIDES on the tiny dataset."""
    from training.config_io import load_config
    from training.train import TrainConfig

    return load_config(TrainConfig, CONFIG, [*TINY_OVERRIDES, f"data.root={tiny_synth}"])


@pytest.fixture(scope="module")
def tiny_files(tiny_cfg, tmp_path_factory):
    """A random tiny ViewSeg (seed 0) as a model file ("model"), the same with its data settings
    ("with_data"), as a training checkpoint ("train"), its state dict, and a random 2D segmenter."""
    import torch

    from training.checkpoint import FORMAT as TRAIN_FORMAT
    from training.config_io import to_dict
    from viewseg_core.model.encoder import build_encoder
    from viewseg_core.model.viewseg import ViewSeg
    from viewseg_core.model.weights import model_checkpoint, save_encoder, save_model

    root = tmp_path_factory.mktemp("eval_models")
    torch.manual_seed(0)
    model = ViewSeg(tiny_cfg.model_config()).eval()
    seg = build_encoder("deeplabv3plus_resnet18", feature_dim=16).eval()
    train_ckpt = root / "step_3.pt"
    torch.save({"format": TRAIN_FORMAT, "format_version": 1, "step": 3, "model": model_checkpoint(model),
                "config": to_dict(tiny_cfg)}, train_ckpt)
    with_data = root / "with_data.pt"
    torch.save({**model_checkpoint(model), "data": to_dict(tiny_cfg.data)}, with_data)
    return {"model": save_model(model, root / "model.pt"), "with_data": with_data, "train": train_ckpt,
            "segmenter": save_encoder(seg, root / "segmenter.pt"), "state": model.state_dict()}


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """3 procedural scenes x 12 views at 40x30 (train/val/test: one scene each)."""
    from viewseg_core.data.synth.generate import SynthConfig, write_dataset

    root = tmp_path_factory.mktemp("tiny_synth")
    write_dataset(root, 3, SynthConfig(views=12, height=30, width=40), seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module (its timings and results do not depend on the machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
