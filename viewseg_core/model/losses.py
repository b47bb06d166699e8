"""Training losses of ViewSeg (paper Eq. 6): semantic cross-entropy and photometric MSE on
target-view rays and on source-view rays, for the coarse and the fine pass.

    L = sum_{split in target, source} w_split sum_{pass in coarse, fine}
            lambda_sem CE(logits, labels) + lambda_rgb MSE(rgb, rgb_gt) [+ lambda_depth L1(depth)]

Labels outside 0..C-1 (255 in label images, -100 in PyTorch) are ignored. The optional
depth term (off by default) compares the expected planar depth with the true planar depth
where the latter is finite and positive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from viewseg_core.model.renderer import PassOutput, RayOutput


@dataclass
class LossConfig:
    """Loss weights; defaults are the paper's (semantic 0.04, RGB 1.0, no depth)."""

    semantic_weight: float = 0.04
    rgb_weight: float = 1.0
    depth_weight: float = 0.0
    source_weight: float = 1.0     # weight of the source-view ray terms relative to the target's
    coarse_weight: float = 1.0     # weight of the coarse pass relative to the fine pass


def semantic_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled rays; 0 (with gradient) when no ray is labelled.

    Args: logits [..., C]; labels [...] integer, outside 0..C-1 = ignore.
    """
    C = logits.shape[-1]
    labels = labels.to(logits.device).long()
    keep = (labels >= 0) & (labels < C)
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, labels.clamp(0, C - 1)[..., None])[..., 0]
    nll = torch.where(keep, lse - picked, 0.0)
    return nll.sum() / keep.sum().clamp(min=1)


def photometric_mse(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error: rgb [..., 3] vs target [..., 3] in [0, 1]."""
    return ((rgb - target.to(rgb)) ** 2).mean()


def depth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| where the target is finite and positive (0 when none is)."""
    target = target.to(pred)
    keep = torch.isfinite(target) & (target > 0) & torch.isfinite(pred)
    diff = torch.where(keep, (pred - torch.where(keep, target, 0.0)).abs(), 0.0)
    return diff.sum() / keep.sum().clamp(min=1)


def _pass_terms(out: PassOutput, gt: Mapping[str, torch.Tensor], cfg: LossConfig) -> dict[str, torch.Tensor]:
    terms = {"semantic": semantic_ce(out.logits, gt["labels"]),
             "rgb": photometric_mse(out.rgb, gt["rgb"])}
    if cfg.depth_weight > 0:
        if gt.get("depth") is None:
            raise ValueError("LossConfig.depth_weight > 0 but the targets have no 'depth'")
        terms["depth"] = depth_l1(out.expected_depth, gt["depth"])
    return terms


def viewseg_losses(outputs: Mapping[str, RayOutput], targets: Mapping[str, Mapping[str, torch.Tensor]],
                   cfg: LossConfig | None = None) -> dict[str, torch.Tensor]:
    """Named loss terms and their weighted ``total``.

    Args:
        outputs: ``ViewSeg.forward``'s {"target": RayOutput, "source": RayOutput (optional)}.
        targets: the same keys -> {"labels": [B, R] int, "rgb": [B, R, 3] in [0, 1],
            "depth": [B, R] planar metres, NaN = unknown (only with depth_weight > 0)}.
    Returns:
        {"total": scalar, "<split>/<pass>/<term>": unweighted scalar, ...}.
    """
    cfg = cfg or LossConfig()
    weights = {"semantic": cfg.semantic_weight, "rgb": cfg.rgb_weight, "depth": cfg.depth_weight}
    losses: dict[str, torch.Tensor] = {}
    total = None
    for split, ray_out in outputs.items():
        if split not in targets:
            raise ValueError(f"viewseg_losses: outputs have split {split!r} but targets do not")
        split_w = 1.0 if split == "target" else cfg.source_weight
        for name, out in ray_out.passes().items():
            pass_w = cfg.coarse_weight if name == "coarse" else 1.0
            for term, value in _pass_terms(out, targets[split], cfg).items():
                losses[f"{split}/{name}/{term}"] = value
                contrib = split_w * pass_w * weights[term] * value
                total = contrib if total is None else total + contrib
    if total is None:
        raise ValueError("viewseg_losses: no outputs given")
    return {"total": total, **losses}
