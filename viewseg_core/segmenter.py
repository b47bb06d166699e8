"""The 2D segmenter (``viewseg pretrain-2d``): loaded once for the baselines, bag2scene's and
``viewseg pseudo-label``'s pseudo-labels.

A ``viewseg-encoder`` checkpoint is a DeepLabv3+ encoder with its class head, trained on 2D
labels; :func:`load_segmenter` reads it (``weights_only``), :func:`segment` runs it, and
:class:`PseudoLabeler` turns a colour image into labels in viewseg's classes, mapping the
checkpoint's classes by name (a class viewseg lacks becomes ignore).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from viewseg_core.classes import CLASS_NAMES, IGNORE_LABEL
from viewseg_core.model.encoder import Encoder, build_encoder
from viewseg_core.model.weights import ENCODER_FORMAT, load_encoder_weights, read_weights_file


def load_segmenter(path: str | Path, device: torch.device | str = "cpu") -> Encoder:
    """A ``viewseg-encoder`` checkpoint (``viewseg pretrain-2d``, or its float16 export
    ``checkpoints/segmenter_small.pt`` from ``scripts/export_segmenter.py``) as an eval-mode
    float32 segmenter.

    The file is read with ``torch.load(weights_only=True)``; float16-stored tensors are cast
    to the module's float32, so the segmenter computes in float32 either way.
    Raises:
        ValueError (one line) for a file that is not a 2D segmenter checkpoint.
    """
    obj = read_weights_file(path)
    if not isinstance(obj, Mapping) or obj.get("format") != ENCODER_FORMAT:
        found = f"a {obj['format']!r} file" if isinstance(obj, Mapping) and isinstance(obj.get("format"), str) \
            else "no format=" + repr(ENCODER_FORMAT)
        raise ValueError(f"{path} is not a 2D segmenter checkpoint ({found}; write one with "
                         f"`viewseg pretrain-2d`, or use checkpoints/segmenter_small.pt)")
    for key in ("encoder", "feature_dim", "num_classes"):
        if key not in obj:
            raise ValueError(f"{path}: segmenter checkpoint lacks {key!r}")
    # sync_bn needs a process group; at evaluation it is plain BatchNorm with running stats.
    norm = {"sync_bn": "bn"}.get(str(obj.get("norm", "bn")), str(obj.get("norm", "bn")))
    try:
        encoder = build_encoder(str(obj["encoder"]), feature_dim=int(obj["feature_dim"]),
                                num_classes=int(obj["num_classes"]), norm=norm)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: segmenter checkpoint describes no buildable encoder: {error}") from None
    load_encoder_weights(encoder, path, include_head=True)
    return encoder.float().to(device).eval()


@torch.no_grad()
def segment(encoder: Encoder, rgb: torch.Tensor) -> torch.Tensor:
    """2D semantic labels.

    Args:
        rgb: [N, 3, H, W] float in [0, 1].
    Returns:
        [N, H, W] int64 argmax class ids (on rgb's device).
    """
    encoder.eval()
    dev = next(encoder.parameters()).device
    return encoder.segment(rgb.to(dev, torch.float32)).argmax(1).to(rgb.device)


class PseudoLabeler:
    """Colour image -> labels in viewseg's classes, from a 2D segmenter checkpoint.

    Args:
        path: a ``viewseg-encoder`` checkpoint; device: where it runs (a ``torch.device``).
    """

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        self.path = str(path)
        self.encoder = load_segmenter(path, device)
        names = read_weights_file(path).get("class_names") or CLASS_NAMES[: self.encoder.num_classes]
        # Checkpoint class index -> viewseg class id by name (ignore for classes viewseg lacks).
        self.lut = np.array([CLASS_NAMES.index(n) if n in CLASS_NAMES else IGNORE_LABEL for n in names], np.uint8)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 -> [H, W] uint8 class ids (255 = ignore)."""
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        return self.lut[segment(self.encoder, x)[0].cpu().numpy()]


__all__ = ["load_segmenter", "segment", "PseudoLabeler"]
