"""Encoders: feature shapes and strides, class heads, BatchNorm modes."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from viewseg_core.classes import NUM_CLASSES
from viewseg_core.model.encoder import ENCODER_NAMES, build_encoder, convert_norm


@pytest.mark.parametrize("name,dim,stride", [("deeplabv3plus_resnet18", 32, 4),
                                             ("deeplabv3plus_resnet50", 256, 4),
                                             ("pixelnerf_resnet34", 512, 2)])
def test_shapes(name, dim, stride):
    torch.manual_seed(0)
    enc = build_encoder(name, feature_dim=dim).eval()
    x = torch.rand(2, 3, 24, 32)
    with torch.no_grad():
        f = enc(x)
        seg = enc.segment(x)
    assert enc.feature_dim == dim and enc.stride == stride
    assert f.shape == (2, dim, 24 // stride, 32 // stride) and f.dtype == torch.float32
    assert seg.shape == (2, NUM_CLASSES, 24, 32)
    assert torch.isfinite(f).all()


def test_resnet101_is_deeplab_at_stride_16():
    enc = build_encoder("deeplabv3plus_resnet101", feature_dim=64)
    # Output stride 16: the dilated layer4 keeps layer3's resolution.
    assert enc.backbone.layer4[0].conv2.stride == (1, 1) and enc.backbone.layer4[0].downsample[0].stride == (1, 1)
    assert enc.backbone.layer4[1].conv2.dilation == (2, 2)
    assert not hasattr(enc.backbone, "fc")
    assert "deeplabv3plus_resnet101" in ENCODER_NAMES


def test_bad_names():
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vit")
    with pytest.raises(ValueError, match="norm mode"):
        build_encoder("deeplabv3plus_resnet18", norm="gn")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        build_encoder("deeplabv3plus_resnet18", feature_dim=16)(torch.rand(3, 24, 32))


def test_frozen_bn_matches_bn_in_eval():
    torch.manual_seed(0)
    enc = build_encoder("deeplabv3plus_resnet18", feature_dim=16)
    # Non-trivial statistics, so the conversion has something to copy.
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        ref = enc.eval()(x)
        frozen = convert_norm(enc, "frozen_bn")
        assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
        assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())
        torch.testing.assert_close(frozen(x), ref, rtol=1e-5, atol=1e-5)
    # Frozen BN trains with batch size 1 (BN's ASPP pooling branch cannot).
    frozen.train()(x).sum().backward()


def test_sync_bn_conversion():
    enc = build_encoder("deeplabv3plus_resnet18", feature_dim=16, norm="sync_bn")
    kinds = {type(m) for m in enc.modules()}
    assert nn.SyncBatchNorm in kinds and nn.BatchNorm2d not in kinds
    # Same keys as plain BN, so checkpoints move between modes.
    assert set(enc.state_dict()) == set(build_encoder("deeplabv3plus_resnet18", feature_dim=16).state_dict())
    with torch.no_grad():
        assert enc.eval()(torch.rand(1, 3, 24, 32)).shape == (1, 16, 6, 8)
