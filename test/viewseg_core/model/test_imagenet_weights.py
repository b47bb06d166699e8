"""PixelNeRF++'s encoder start: torchvision's ImageNet ResNet-34 from the local torch hub
cache (``model.encoder_weights: torchvision:imagenet``), never downloaded."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
import torchvision

from viewseg_core.model import build_encoder, build_model, load_encoder_weights
from viewseg_core.model.encoder import IMAGENET_WEIGHTS, TORCHVISION_IMAGENET
from viewseg_core.model.weights import torchvision_weights_file

URL = "https://download.pytorch.org/models/resnet34-b627a593.pth"  # torchvision's ResNet34_Weights.IMAGENET1K_V1


@pytest.fixture(scope="module")
def fake_resnet34(tmp_path_factory):
    """A random torchvision ResNet-34 state dict saved under torchvision's own file name."""
    torch.manual_seed(34)
    state = torchvision.models.resnet34(weights=None).state_dict()
    home = tmp_path_factory.mktemp("torch_home")
    path = home / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return home, path, state


def test_the_file_is_where_torchvision_caches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert IMAGENET_WEIGHTS == {"pixelnerf_resnet34": "ResNet34_Weights.IMAGENET1K_V1"}
    path, url = torchvision_weights_file("pixelnerf_resnet34")
    assert url == torchvision.models.ResNet34_Weights.IMAGENET1K_V1.url == URL
    assert path == tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    assert path.parent == type(path)(torch.hub.get_dir()) / "checkpoints"


def test_imagenet_weights_load_into_the_backbone(fake_resnet34, monkeypatch):
    home, path, state = fake_resnet34
    monkeypatch.setenv("TORCH_HOME", str(home))
    encoder = build_encoder("pixelnerf_resnet34")
    with pytest.warns(UserWarning, match="not torchvision's release"):  # random weights, not the real file
        load_encoder_weights(encoder, TORCHVISION_IMAGENET, include_head=False)
    own = encoder.backbone.state_dict()
    loaded = [k for k in own if not k.endswith("num_batches_tracked")]
    assert len(loaded) > 100 and all(torch.equal(own[k], state[k]) for k in loaded)
    assert not any(k.startswith(("fc.", "layer4.")) for k in own)  # pixelNeRF drops them, by name

    # The same through the model config (build_model), as training does.
    from viewseg_core.model.viewseg import ModelConfig
    config = ModelConfig(encoder="pixelnerf_resnet34", feature_dim=512, encoder_weights=TORCHVISION_IMAGENET,
                         hidden_dim=16, n_blocks=1, n_head_blocks=1, num_coarse=4, num_fine=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(config)
    assert torch.equal(model.encoder.backbone.layer3[5].conv2.weight, state["layer3.5.conv2.weight"])
    assert torch.equal(model.encoder.backbone.bn1.running_var, state["bn1.running_var"])


def test_missing_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    downloads = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: downloads.append(a))
    with pytest.raises(FileNotFoundError) as error:
        load_encoder_weights(build_encoder("pixelnerf_resnet34"), TORCHVISION_IMAGENET, include_head=False)
    message = str(error.value)
    expected = os.path.join(str(tmp_path), "hub", "checkpoints", "resnet34-b627a593.pth")
    assert "\n" not in message and expected in message and URL in message and "never downloads" in message
    assert not downloads and not (tmp_path / "hub").exists()


def test_refused_for_other_encoders_and_unknown_specs(fake_resnet34, monkeypatch):
    home, _, _ = fake_resnet34
    monkeypatch.setenv("TORCH_HOME", str(home))
    deeplab = build_encoder("deeplabv3plus_resnet18", feature_dim=16)
    with pytest.raises(ValueError, match=r"'torchvision:imagenet' is only for encoder\(s\) pixelnerf_resnet34.*"
                                         r"not 'deeplabv3plus_resnet18'"):
        load_encoder_weights(deeplab, TORCHVISION_IMAGENET, include_head=False)
    with pytest.raises(ValueError, match="only torchvision weights viewseg knows are 'torchvision:imagenet'"):
        load_encoder_weights(build_encoder("pixelnerf_resnet34"), "torchvision:imagenet21k", include_head=False)
    # ImageNet has no 37-class head to load.
    with pytest.raises(ValueError, match="encoder_weights_head false"):
        load_encoder_weights(build_encoder("pixelnerf_resnet34"), TORCHVISION_IMAGENET, include_head=True)
