"""Where to evaluate the field along each ray: stratified coarse, importance fine and depth-guided samples.

Hierarchical sampling as in NeRF/pixelNeRF/ViewSeg: 64 stratified samples between near and
far, then 128 more drawn by inverse-CDF from the coarse pass's weights, merged and sorted.
``perturb=False`` (evaluation) is fully deterministic; ``perturb=True`` (training) draws
from ``generator``, so a seeded generator reproduces a run. Sample positions carry no
gradient: they are where the field is probed, not something to learn.

Depth-guided samples (RGB-D keyframes, :func:`guided_samples`): where the source depth
cameras give a ray a candidate surface distance d (:mod:`viewseg_core.model.depth_guide`),
``num_band`` samples are stratified over the band [d - band, d + band] and ``num_stratified``
over [near, far] (so that space no source measured, such as an object hidden from every
keyframe, is still probed); a ray without a candidate gets ``num_stratified + num_band``
stratified samples instead (the RGB coarse pass at that count), so every ray has the same
number of samples and the tensors stay rectangular. A ray with a second candidate behind the
first (the silhouette layer of :func:`viewseg_core.model.depth_guide.splat_depth`) splits its
band samples between the two, the first taking the odd one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from viewseg_core.rays import RayBundle

# Added to every coarse weight before building the PDF, so rays that hit nothing still
# spread their fine samples over [near, far] instead of dividing by zero.
PDF_EPS = 1e-5


@dataclass
class SamplingConfig:
    """Hierarchical sampling settings (defaults follow ViewSeg/pixelNeRF)."""

    num_coarse: int = 64
    num_fine: int = 128
    # Linear in distance suits rooms with a 20 m far bound; disparity spacing concentrates
    # coarse samples near the camera (for unbounded scenes).
    lindisp: bool = False


def _uniform(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def stratified_samples(rays: RayBundle, num_samples: int, perturb: bool,
                       generator: torch.Generator | None = None,
                       lindisp: bool = False) -> torch.Tensor:
    """Stratified distances in [near, far]: one sample per equal-width bin.

    With ``perturb`` each sample is uniform within its bin; without, it is the bin centre.

    Args:
        rays: RayBundle [...].
    Returns:
        t: [..., S] sorted distances along the rays.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    near, far = rays.near.detach()[..., None], rays.far.detach()[..., None]
    edges = torch.linspace(0.0, 1.0, num_samples + 1, device=rays.device, dtype=rays.dtype)
    if perturb:
        frac = _uniform((*rays.shape, num_samples), near, generator)
    else:
        frac = torch.full((*rays.shape, num_samples), 0.5, device=rays.device, dtype=rays.dtype)
    s = edges[:-1] + (edges[1:] - edges[:-1]) * frac  # [..., S] in [0, 1)
    if lindisp:
        return 1.0 / (1.0 / near * (1.0 - s) + 1.0 / far * s)
    return near + (far - near) * s


def band_samples(guide: torch.Tensor, num_samples: int, band: float, perturb: bool,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Stratified distances in [guide - band, guide + band]: bin centres, or uniform within
    each of the ``num_samples`` equal bins with ``perturb``.

    Args:
        guide: [...] candidate surface distances (finite where used).
    Returns:
        t: [..., num_samples] sorted (not clipped to the rays' bounds).
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if not band > 0:
        raise ValueError(f"band must be positive, got {band}")
    guide = guide.detach()[..., None]
    k = torch.arange(num_samples, device=guide.device, dtype=guide.dtype)
    if perturb:
        frac = _uniform((*guide.shape[:-1], num_samples), guide, generator)
    else:
        frac = torch.full((*guide.shape[:-1], num_samples), 0.5, device=guide.device, dtype=guide.dtype)
    return guide + band * (2.0 * (k + frac) / num_samples - 1.0)


def has_guide(rays: RayBundle, guide: torch.Tensor, band: float) -> torch.Tensor:
    """[...] bool: the candidate is finite and its band overlaps [near, far]."""
    guide = guide.detach()
    return torch.isfinite(guide) & (guide + band > rays.near) & (guide - band < rays.far)


def guided_samples(rays: RayBundle, guide: torch.Tensor, num_stratified: int, num_band: int,
                   band: float, perturb: bool, generator: torch.Generator | None = None,
                   lindisp: bool = False) -> torch.Tensor:
    """Depth-guided distances (see the module docstring).

    Args:
        rays: RayBundle [...].
        guide: [...] candidate surface distance per ray, NaN = none; or [..., 2], the
            nearest candidate and a second one behind it (NaN = none).
        num_stratified: samples over [near, far] on every ray (>= 0; 0 = band only where
            there is a candidate).
        num_band: samples in [guide - band, guide + band], clipped to [near, far]; split
            ceil / floor between two candidates.
    Returns:
        t: [..., num_stratified + num_band] sorted distances in [near, far], no gradient.
    """
    if num_stratified < 0 or num_band <= 0:
        raise ValueError(f"guided_samples needs num_stratified >= 0 and num_band > 0, got "
                         f"{num_stratified}, {num_band}")
    layered = guide.ndim == len(rays.shape) + 1
    if guide.shape[:len(rays.shape)] != rays.shape or (layered and guide.shape[-1] not in (1, 2)) \
            or guide.ndim not in (len(rays.shape), len(rays.shape) + 1):
        raise ValueError(f"guide {tuple(guide.shape)} must have the rays' shape {tuple(rays.shape)}, "
                         f"or that shape plus 2 candidate layers")
    guide = guide.detach().to(rays.dtype)
    second = guide[..., 1] if layered and guide.shape[-1] == 2 else None
    guide = guide[..., 0] if layered else guide
    total = num_stratified + num_band
    fallback = stratified_samples(rays, total, perturb, generator, lindisp=lindisp)
    near, far = rays.near.detach()[..., None], rays.far.detach()[..., None]
    around = band_samples(torch.nan_to_num(guide, nan=0.0), num_band, band, perturb, generator)
    if second is not None and num_band >= 2:
        n_back = num_band // 2
        split = torch.cat([band_samples(torch.nan_to_num(guide, nan=0.0), num_band - n_back, band, perturb,
                                        generator),
                           band_samples(torch.nan_to_num(second, nan=0.0), n_back, band, perturb, generator)], -1)
        around = torch.where(has_guide(rays, second, band)[..., None], split, around)
    around = torch.minimum(torch.maximum(around, near), far)
    if num_stratified > 0:
        spread = stratified_samples(rays, num_stratified, perturb, generator, lindisp=lindisp)
        around = torch.cat([spread, around], dim=-1)
    if num_stratified > 0 or second is not None:
        around = torch.sort(around, dim=-1).values
    return torch.where(has_guide(rays, guide, band)[..., None], around, fallback)


def importance_samples(t_coarse: torch.Tensor, weights: torch.Tensor, num_samples: int,
                       perturb: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverse-CDF samples from the piecewise-constant PDF of the coarse weights.

    The PDF lives on the S - 1 intervals between consecutive coarse samples; interval
    [t_j, t_{j+1}] gets probability proportional to max(w_j, w_{j+1}) + PDF_EPS (the 2-tap
    max filter of mip-NeRF). Why both neighbours: when sample k is the first one inside a
    surface, the surface lies in (t_{k-1}, t_k], *before* the sample that carries the
    weight, and NeRF's midpoint bins (t_k +- h/2) can miss it entirely. Without
    ``perturb`` the CDF is inverted at the fixed quantiles (k + 0.5) / N.

    Args:
        t_coarse: [..., S] sorted distances; weights: [..., S] coarse render weights.
    Returns:
        t: [..., N] sorted distances, no gradient.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if t_coarse.shape != weights.shape:
        raise ValueError(f"t_coarse {tuple(t_coarse.shape)} and weights {tuple(weights.shape)} differ")
    t_coarse, weights = t_coarse.detach(), weights.detach().to(t_coarse.dtype)
    if t_coarse.shape[-1] < 2:
        raise ValueError("importance_samples needs at least 2 coarse samples per ray")
    edges = t_coarse  # [..., S]: S - 1 bins
    weights = weights.clamp_min(0)
    pdf = torch.maximum(weights[..., :-1], weights[..., 1:]) + PDF_EPS  # [..., S-1]
    pdf = pdf / pdf.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)], -1)  # [..., S]
    cdf = cdf / cdf[..., -1:]  # exact 1 at the end despite rounding

    batch = t_coarse.shape[:-1]
    if perturb:
        u = _uniform((*batch, num_samples), t_coarse, generator)
        u = torch.sort(u, dim=-1).values
    else:
        u = (torch.arange(num_samples, device=t_coarse.device, dtype=t_coarse.dtype) + 0.5) / num_samples
        u = u.expand(*batch, num_samples)
    u = u.contiguous()
    # bin b holds u with cdf[b] <= u < cdf[b+1]
    above = torch.searchsorted(cdf.contiguous(), u, right=True).clamp(1, cdf.shape[-1] - 1)
    below = above - 1
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    t_lo, t_hi = edges.gather(-1, below), edges.gather(-1, above)
    denom = cdf_hi - cdf_lo
    frac = torch.where(denom > 0, (u - cdf_lo) / denom.clamp_min(torch.finfo(denom.dtype).tiny),
                       torch.zeros_like(u))
    return t_lo + frac.clamp(0, 1) * (t_hi - t_lo)


def merge_samples(t_a: torch.Tensor, t_b: torch.Tensor) -> torch.Tensor:
    """[..., A] and [..., B] -> [..., A+B] sorted distances (the fine pass evaluates both)."""
    return torch.sort(torch.cat([t_a, t_b], dim=-1), dim=-1).values


def hierarchical_samples(t_coarse: torch.Tensor, coarse_weights: torch.Tensor, num_fine: int,
                         perturb: bool,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Coarse + importance samples, merged: [..., S] -> [..., S + num_fine]."""
    t_fine = importance_samples(t_coarse, coarse_weights, num_fine, perturb, generator)
    return merge_samples(t_coarse.detach(), t_fine)


__all__ = ["SamplingConfig", "stratified_samples", "importance_samples", "merge_samples",
           "hierarchical_samples", "band_samples", "guided_samples", "has_guide", "PDF_EPS"]
