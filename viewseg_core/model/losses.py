"""Training losses of ViewSeg (paper Eq. 6): semantic cross-entropy and photometric MSE on
target-view rays and on source-view rays, for the coarse and the fine pass.

    L = sum_{split in target, source} w_split sum_{pass in coarse, fine}
            lambda_sem CE(logits, labels) + lambda_rgb MSE(rgb, rgb_gt)
            [+ lambda_depth rho(depth)] [+ lambda_dist distortion(weights, t)]

Labels outside 0..C-1 (255 in label images, -100 in PyTorch) are ignored. The optional
depth term (off by default: 3D supervision, which ViewSeg never uses; on in the RGB-D
configs) is a robust L1, the Charbonnier penalty

    rho(d) = sqrt(d^2 + eps^2) - eps,     d = expected planar depth - true planar depth

(metres; ``loss.depth_eps``, default 0.01 m), averaged over the rays whose true depth is
known (finite and > 0). It is |d| - eps far from 0 (an L1: a few wrong depth labels, say at
edges, pull no harder than any other pixel) and d^2 / (2 eps) within a centimetre (smooth, so
a ray that is right stops being pushed back and forth). ``depth_eps = 0`` is the plain L1.
``loss.depth_relative: true`` takes rho of the relative error d / (true depth) instead (eps is
then a share: 0.01 = 1%), the per-pixel error that AbsRel averages and that delta < 1.25 thresholds:
in metres a far wall's error outweighs a near object's of the same share.
``loss.depth_unmeasured_weight`` w weighs the depth term of a ray that had no candidate surface
splatted from measured source depth (depth-guided models) w times a measured ray's, in a
weighted mean: where no keyframe measured, the model must find the surface on its own.

Class balance (``loss.class_balance`` = p > 0; off in the paper's configs): the cross-entropy
of a ray labelled c is weighted by w_c proportional to f_c^-p, where f_c is class c's share of
the training labels (:func:`class_weights_from_counts`; p = 0.5 is the inverse square root of
the frequency, p = 1 the inverse frequency). Why: the mIoU averages classes, and a room's
labels are 60% wall and floor while 18 of the 37 classes each hold under 0.5% of the pixels,
so the unweighted loss barely sees them. The weights are normalised so that the average
weight per labelled pixel of the training set is 1 (the loss keeps its scale against the RGB
and depth terms), capped at ``class_weight_max``, and stored resolved in
``loss.class_weights`` (the run's config.yaml and checkpoints), so a resume uses the same ones.

The optional distortion term (mip-NeRF 360, Barron et al. 2022, Eq. 15; off by default, not
in ViewSeg) needs no labels: for each ray it is

    sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 delta_i     (metres)

over the samples' intervals (midpoints m_i, widths delta_i). It is small when a ray's
weight sits in one short stretch and large for "fog", density spread thinly along the ray,
which a generalising field falls into before it learns where surfaces are (the colour of a
fog is the average of what the sources see). The weight is per metre of spread.
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
    depth_eps: float = 0.01        # metres: the Charbonnier depth penalty's smooth core (0 = plain L1)
    depth_relative: bool = False   # the penalty of (pred - true) / true instead of metres (AbsRel's error)
    depth_unmeasured_weight: float = 1.0  # depth term weight of rays no measured source depth guided
    distortion_weight: float = 0.0 # per metre (see the module docstring); 0 = the paper's losses
    source_weight: float = 1.0     # weight of the source-view ray terms relative to the target's
    coarse_weight: float = 1.0     # weight of the coarse pass relative to the fine pass
    class_balance: float = 0.0     # p: class weights ~ training label frequency^-p (0 = unweighted, the paper)
    class_weight_max: float = 10.0 # cap on any class weight (a class seen in a handful of pixels)
    # The resolved per-class weights (filled by the trainer from the training labels when
    # class_balance > 0; None = unweighted). Kept in the config so that a resume uses them.
    class_weights: list[float] | None = None


def class_weights_from_counts(counts, power: float, max_weight: float = 10.0) -> list[float]:
    """Per-class cross-entropy weights from label pixel counts (see the module docstring).

    w_c = f_c^-power / Z with Z such that sum_c f_c w_c = 1 (the mean weight per labelled
    pixel), then capped at ``max_weight``; a class with no pixel gets 1 (it never occurs as
    a label, so its weight changes nothing).

    Args:
        counts: [C] pixel counts per class (any sequence of numbers >= 0, not all 0).
    Returns:
        C floats.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.ndim != 1 or counts.numel() == 0 or bool((counts < 0).any()) or not float(counts.sum()) > 0:
        raise ValueError(f"class_weights_from_counts needs [C] counts >= 0 with some > 0, got {counts.tolist()}")
    if not (power >= 0 and max_weight > 0):
        raise ValueError(f"class balance power must be >= 0 and max_weight > 0, got {power}, {max_weight}")
    freq = counts / counts.sum()
    present = freq > 0
    raw = torch.where(present, freq.clamp_min(1e-300) ** -power, 1.0)
    raw = raw / (freq * raw).sum()
    return torch.where(present, raw.clamp(max=max_weight), 1.0).tolist()


def semantic_ce(logits: torch.Tensor, labels: torch.Tensor,
                class_weights: torch.Tensor | list[float] | None = None) -> torch.Tensor:
    """Mean cross-entropy over labelled rays; 0 (with gradient) when no ray is labelled.

    With ``class_weights`` [C] the weighted mean sum_r w_{y_r} nll_r / sum_r w_{y_r}
    (``torch.nn.functional.cross_entropy``'s ``weight`` convention).

    Args: logits [..., C]; labels [...] integer, outside 0..C-1 = ignore.
    """
    C = logits.shape[-1]
    labels = labels.to(logits.device).long()
    keep = (labels >= 0) & (labels < C)
    lse = torch.logsumexp(logits, dim=-1)
    index = labels.clamp(0, C - 1)
    picked = logits.gather(-1, index[..., None])[..., 0]
    nll = torch.where(keep, lse - picked, 0.0)
    if class_weights is None:
        return nll.sum() / keep.sum().clamp(min=1)
    weights = torch.as_tensor(class_weights, dtype=nll.dtype, device=nll.device)
    if weights.shape != (C,):
        raise ValueError(f"class_weights has {tuple(weights.shape)} entries, the logits {C} classes")
    w = torch.where(keep, weights[index], 0.0)
    return (w * nll).sum() / w.sum().clamp(min=torch.finfo(w.dtype).tiny)


def photometric_mse(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error: rgb [..., 3] vs target [..., 3] in [0, 1]."""
    return ((rgb - target.to(rgb)) ** 2).mean()


def depth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| where the target is finite and positive (0 when none is)."""
    return depth_robust_l1(pred, target, eps=0.0)


def depth_robust_l1(pred: torch.Tensor, target: torch.Tensor, eps: float = 0.01,
                    relative: bool = False, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Charbonnier penalty sqrt(d^2 + eps^2) - eps, d = pred - target (``relative``:
    (pred - target) / target), over the pixels whose target is finite and positive and whose
    prediction is finite; 0 (with a zero, finite gradient) when there are none. eps = 0 gives |d|.
    ``weights`` (the shape of ``pred``, >= 0): a weighted mean over those pixels instead.

    Unknown pixels contribute neither value nor gradient, even where the prediction is NaN.
    Computed in (at least) float32: bf16 depth would step by 1.6 cm at 4 m, more than eps.
    """
    pred = pred.to(torch.promote_types(pred.dtype, torch.float32))
    target = target.to(pred)
    keep = torch.isfinite(target) & (target > 0) & torch.isfinite(pred)
    d = torch.where(keep, pred, 0.0) - torch.where(keep, target, 0.0)
    if relative:
        d = d / torch.where(keep, target, 1.0)
    if eps > 0:
        rho = torch.sqrt(d * d + eps * eps) - eps
    else:
        rho = d.abs()
    if weights is None:
        return torch.where(keep, rho, 0.0).sum() / keep.sum().clamp(min=1)
    w = torch.where(keep, weights.to(rho), 0.0)
    return (w * torch.where(keep, rho, 0.0)).sum() / w.sum().clamp(min=1e-12)


def distortion(weights: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean over rays of the mip-NeRF 360 distortion of render weights (metres).

    Sample i stands for the interval from t_i to t_{i+1} (the last one repeats its
    predecessor's width). The pairwise sum is O(S) on sorted midpoints:
    sum_{i,j} w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_{<i} - (wm)_{<i}).

    Args: weights [..., S] >= 0; t [..., S] sorted sample distances.
    """
    if weights.shape != t.shape or weights.shape[-1] < 2:
        raise ValueError(f"distortion needs weights and t of one shape [..., S >= 2], got "
                         f"{tuple(weights.shape)} and {tuple(t.shape)}")
    t = t.to(weights)
    delta = torch.diff(t, dim=-1)
    delta = torch.cat([delta, delta[..., -1:]], dim=-1)
    mid = t + 0.5 * delta
    w_before = torch.cumsum(weights, dim=-1) - weights
    wm_before = torch.cumsum(weights * mid, dim=-1) - weights * mid
    pairwise = 2.0 * (weights * (mid * w_before - wm_before)).sum(dim=-1)
    self_term = (weights * weights * delta).sum(dim=-1) / 3.0
    return (pairwise + self_term).mean()


def _pass_terms(out: PassOutput, gt: Mapping[str, torch.Tensor], cfg: LossConfig,
                measured: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    terms = {"semantic": semantic_ce(out.logits, gt["labels"], cfg.class_weights),
             "rgb": photometric_mse(out.rgb, gt["rgb"])}
    if cfg.depth_weight > 0:
        if gt.get("depth") is None:
            raise ValueError("LossConfig.depth_weight > 0 but the targets have no 'depth'")
        weights = None
        if measured is not None and cfg.depth_unmeasured_weight != 1.0:
            weights = torch.where(measured, 1.0, cfg.depth_unmeasured_weight)
        terms["depth"] = depth_robust_l1(out.expected_depth, gt["depth"], cfg.depth_eps, cfg.depth_relative, weights)
    if cfg.distortion_weight > 0:
        if out.weights is None or out.t is None:
            raise ValueError("LossConfig.distortion_weight > 0 needs the render weights and samples")
        terms["distortion"] = distortion(out.weights, out.t)
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
    weights = {"semantic": cfg.semantic_weight, "rgb": cfg.rgb_weight, "depth": cfg.depth_weight,
               "distortion": cfg.distortion_weight}
    losses: dict[str, torch.Tensor] = {}
    total = None
    for split, ray_out in outputs.items():
        if split not in targets:
            raise ValueError(f"viewseg_losses: outputs have split {split!r} but targets do not")
        split_w = 1.0 if split == "target" else cfg.source_weight
        for name, out in ray_out.passes().items():
            pass_w = cfg.coarse_weight if name == "coarse" else 1.0
            for term, value in _pass_terms(out, targets[split], cfg, getattr(ray_out, "measured", None)).items():
                losses[f"{split}/{name}/{term}"] = value
                contrib = split_w * pass_w * weights[term] * value
                total = contrib if total is None else total + contrib
    if total is None:
        raise ValueError("viewseg_losses: no outputs given")
    return {"total": total, **losses}
