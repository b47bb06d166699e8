"""2D image encoders: DeepLabv3+ ("bseg", the paper's) and a pixelNeRF-style ResNet-34.

An encoder maps RGB in [0, 1] to a feature map that the semantic field samples at the
projection of every 3D point. Every encoder also carries a 1x1 class head over its
features, used for 2D pretraining and for the oracle baseline; the field never uses it.

No encoder downloads anything: torchvision models are built with ``weights=None`` and
weights come from local files (:mod:`viewseg_core.model.weights`). ``pixelnerf_resnet34``
can also start from torchvision's own ImageNet file in the local torch hub cache
(``model.encoder_weights: torchvision:imagenet``, :data:`TORCHVISION_IMAGENET`): that is
pixelNeRF's initialisation, and with ViewSeg's semantic head it is the paper's PixelNeRF++.

Feature maps have stride ``encoder.stride`` (4 for DeepLabv3+, 2 for pixelNeRF) and cover
the whole image, so a pixel-centre coordinate ``u`` maps to the normalised coordinate
``(u + 0.5) / W * 2 - 1`` with ``grid_sample(align_corners=False)`` at any stride.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.ops import FrozenBatchNorm2d

from viewseg_core.classes import NUM_CLASSES

ENCODER_NAMES: tuple[str, ...] = (
    "deeplabv3plus_resnet50",   # the paper's bseg (default)
    "deeplabv3plus_resnet101",  # larger backbone, same head
    "deeplabv3plus_resnet18",   # CPU demos and tests: ResNet-18 truncated after layer3
    "pixelnerf_resnet34",       # pixelNeRF's multi-scale ResNet-34 (the paper's ablation)
)
NORM_MODES: tuple[str, ...] = ("bn", "frozen_bn", "sync_bn")

# ``model.encoder_weights`` value that loads torchvision's ImageNet backbone weights from the
# local torch hub cache, and the torchvision weights enum member it means for each encoder
# that may use it (``<enum>.<member>`` in ``torchvision.models``). pixelNeRF initialises its
# ResNet-34 from exactly these weights; the DeepLabv3+ encoders start from a 2D segmenter.
TORCHVISION_IMAGENET = "torchvision:imagenet"
IMAGENET_WEIGHTS: dict[str, str] = {"pixelnerf_resnet34": "ResNet34_Weights.IMAGENET1K_V1"}

# ImageNet statistics, the normalisation every torchvision backbone was trained with.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def convert_norm(module: nn.Module, mode: str) -> nn.Module:
    """Switch every BatchNorm2d of ``module`` to ``mode`` (one of :data:`NORM_MODES`).

    ``frozen_bn`` replaces BatchNorm2d by torchvision's FrozenBatchNorm2d (fixed statistics
    and affine, same state-dict keys minus ``num_batches_tracked``), the usual choice when
    fine-tuning a pretrained segmenter with few images per GPU. ``sync_bn`` uses
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` for DDP (it needs an initialised process
    group in training mode). Returns the (possibly new) module.
    """
    if mode not in NORM_MODES:
        raise ValueError(f"norm mode must be one of {NORM_MODES}, got {mode!r}")
    if mode == "bn":
        return module
    if mode == "sync_bn":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _freeze_bn(module)


def _freeze_bn(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = _freeze_bn(child)
        if new is not child:
            setattr(module, name, new)
    return module


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """Common interface: ``forward(rgb) -> features``, ``classify``, ``segment``.

    Attributes:
        name: one of :data:`ENCODER_NAMES`.
        feature_dim: channels of the feature map.
        stride: image pixels per feature pixel.
        backbone: a torchvision ResNet with its unused parts deleted; its state-dict keys
            are torchvision's, so ImageNet weights load into it directly.
        backbone_unused_prefixes: torchvision ResNet keys this encoder deliberately lacks
            (``fc.``, and ``layer4.`` for truncated backbones), for explicit weight loading.
        head: the 1x1 class head.
    """

    name: str
    feature_dim: int
    stride: int
    num_classes: int
    backbone: nn.Module
    backbone_unused_prefixes: tuple[str, ...]
    head: nn.Conv2d

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> ImageNet-normalised input."""
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"encoder input must be [B, 3, H, W] RGB in [0, 1], got {tuple(rgb.shape)}")
        return (rgb - self.mean.to(rgb.dtype)) / self.std.to(rgb.dtype)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """[B, feature_dim, h, w] -> class logits [B, num_classes, h, w] at feature resolution."""
        return self.head(features)

    def segment(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> class logits [B, num_classes, H, W]."""
        logits = self.classify(self(rgb))
        return F.interpolate(logits, size=rgb.shape[-2:], mode="bilinear", align_corners=False)


def _resnet_stem(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return backbone.relu(backbone.bn1(backbone.conv1(x)))  # stride 2


class DeepLabV3Plus(Encoder):
    """DeepLabv3+ (Chen et al. 2018): ResNet at output stride 16, ASPP, stride-4 decoder.

    ``forward`` returns the decoder's ``feature_dim``-channel map at stride 4 (the class
    prediction layer is the separate :attr:`head`). ResNet-50/101 get output stride 16 from
    torchvision's ``replace_stride_with_dilation`` (dilated layer4, ASPP rates 6/12/18).
    The ResNet-18 variant is truncated after layer3, which already has stride 16: torchvision
    cannot dilate BasicBlocks, and dropping layer4 removes 70% of its weights, which suits
    CPU demos and a small committed checkpoint.
    """

    def __init__(self, backbone: str = "resnet50", feature_dim: int = 256, num_classes: int = NUM_CLASSES,
                 low_level_dim: int = 48, atrous_rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        if backbone in ("resnet50", "resnet101"):
            ctor = getattr(torchvision.models, backbone)
            self.backbone = ctor(weights=None, replace_stride_with_dilation=[False, False, True])
            high_dim, low_dim = 2048, 256
            self._truncated = False
            self.backbone_unused_prefixes = ("fc.",)
        elif backbone == "resnet18":
            self.backbone = torchvision.models.resnet18(weights=None)
            del self.backbone.layer4
            high_dim, low_dim = 256, 64
            self._truncated = True
            self.backbone_unused_prefixes = ("fc.", "layer4.")
        else:
            raise ValueError(f"DeepLabv3+ backbone must be resnet18, resnet50 or resnet101, got {backbone!r}")
        del self.backbone.fc
        self.name = f"deeplabv3plus_{backbone}"
        self.feature_dim = int(feature_dim)
        self.stride = 4
        self.num_classes = int(num_classes)
        self.aspp = ASPP(high_dim, list(atrous_rates), self.feature_dim)
        self.low_level = _conv_bn_relu(low_dim, low_level_dim, 1)
        self.decoder = nn.Sequential(_conv_bn_relu(self.feature_dim + low_level_dim, self.feature_dim, 3),
                                     _conv_bn_relu(self.feature_dim, self.feature_dim, 3))
        self.head = nn.Conv2d(self.feature_dim, self.num_classes, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> features [B, feature_dim, ceil(H/4), ceil(W/4)]."""
        b = self.backbone
        x = b.maxpool(_resnet_stem(b, self.normalize(rgb)))
        low = b.layer1(x)                       # stride 4
        x = b.layer3(b.layer2(low))             # stride 16
        if not self._truncated:
            x = b.layer4(x)                     # stride 16 (dilated)
        x = self.aspp(x)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.decoder(torch.cat([x, self.low_level(low)], dim=1))


class PixelNeRFEncoder(Encoder):
    """pixelNeRF's multi-scale ResNet-34 encoder (Yu et al. 2021, ``SpatialEncoder``).

    The stem (stride 2) and layer1-3 outputs (strides 4, 8, 16; 64+64+128+256 channels) are
    upsampled to the stem's resolution and concatenated: 512 channels at stride 2.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.backbone = torchvision.models.resnet34(weights=None)
        del self.backbone.fc, self.backbone.layer4
        self.backbone_unused_prefixes = ("fc.", "layer4.")
        self.name = "pixelnerf_resnet34"
        self.feature_dim = 512
        self.stride = 2
        self.num_classes = int(num_classes)
        self.head = nn.Conv2d(self.feature_dim, self.num_classes, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> features [B, 512, ceil(H/2), ceil(W/2)]."""
        b = self.backbone
        x = _resnet_stem(b, self.normalize(rgb))
        latents = [x]
        x = b.layer1(b.maxpool(x))
        latents.append(x)
        x = b.layer2(x)
        latents.append(x)
        latents.append(b.layer3(x))
        size = latents[0].shape[-2:]
        latents = [latents[0]] + [F.interpolate(z, size=size, mode="bilinear", align_corners=False)
                                  for z in latents[1:]]
        return torch.cat(latents, dim=1)


def build_encoder(name: str = "deeplabv3plus_resnet50", *, feature_dim: int = 256,
                  num_classes: int = NUM_CLASSES, norm: str = "bn") -> Encoder:
    """Build an encoder by name (see :data:`ENCODER_NAMES`) with BatchNorm mode ``norm``.

    ``feature_dim`` applies to DeepLabv3+ (ASPP and decoder width); pixelNeRF's is 512.
    """
    if name not in ENCODER_NAMES:
        raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODER_NAMES}")
    if name == "pixelnerf_resnet34":
        enc: Encoder = PixelNeRFEncoder(num_classes=num_classes)
    else:
        enc = DeepLabV3Plus(name.removeprefix("deeplabv3plus_"), feature_dim=feature_dim,
                            num_classes=num_classes)
    converted = convert_norm(enc, norm)
    assert converted is enc  # the root is never a BatchNorm, so conversion is in place
    return enc
