"""What the tests of scripts/ share: loading a script (not a package module) by its name, and
a tiny procedural split with a config and a tiny ViewSeg for the scripts that evaluate."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def load_script():
    """``load_script("depth_profile")`` -> the module of scripts/depth_profile.py, freshly executed."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses in a script look their module up there
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="module")
def tiny_rooms(tmp_path_factory):
    """(data root, config.yaml): 3 procedural rooms x 10 views at 40x30, pairs loose enough for them."""
    from viewseg_core.data.synth.generate import SynthConfig, write_dataset
    root = tmp_path_factory.mktemp("tiny_rooms")
    data = root / "data"
    write_dataset(data, 3, SynthConfig(views=10, height=30, width=40), seed=5, progress=False)
    config = root / "config.yaml"
    config.write_text(f"data:\n  root: {data}\n  image_size: [30, 40]\n  num_sources: 3\n"
                      "  pairs: {min_rotation_deg: 10.0, min_baseline: 0.2, min_overlap: 0.05}\n")
    return data, config


def tiny_viewseg(**overrides):
    """A seeded random ViewSeg small enough to render the tiny rooms in a second."""
    import torch
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    torch.manual_seed(0)
    kwargs = dict(encoder="deeplabv3plus_resnet18", feature_dim=16, hidden_dim=16, n_blocks=1, n_head_blocks=1,
                  n_harmonic_xyz=4, n_harmonic_dir=2, num_coarse=8, num_fine=4, far=8.0)
    return ViewSeg(ModelConfig(**{**kwargs, **overrides})).eval()
