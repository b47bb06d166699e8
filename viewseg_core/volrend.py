"""Volume rendering: densities along rays -> weights -> composited channels, depth, opacity.

Quadrature (NeRF): for samples at distances t_i with densities sigma_i >= 0 (the model
applies its activation first),

    delta_i = t_{i+1} - t_i,  delta_last = far - t_last   (or LAST_DELTA when far is None)
    alpha_i = 1 - exp(-sigma_i delta_i)
    T_i     = exp(-sum_{j<i} sigma_j delta_j)               (transmittance)
    w_i     = T_i alpha_i                                   (render weights)
    C       = sum_i w_i c_i          for any channels c     (composite)
    opacity = 1 - exp(-sum_i sigma_i delta_i) = sum_i w_i

Last interval: with ``far`` it ends at the far bound, so a ray that meets nothing inside
[near, far] keeps a low opacity and is reported as background. With ``far=None`` it is
LAST_DELTA = 1e10 m long (NeRF's convention): any density at the last sample makes the ray
opaque there. ``render`` uses the rays' far bound.

Depth and background rule: ``distance`` is the expected ray distance *given that the ray
terminates in [near, far]*, sum_i w_i t_i / opacity, and the planar depth is
``distance * z_axis`` (the direction's optical-axis component; design.md forbids reporting
ray distance as depth). Rays with opacity < ``opacity_threshold`` (default 0.5: the ray
more likely passes through everything than stops) are background: depth NaN, ``valid``
False, and the node reports their semantic label as unknown (255). Normalising by opacity
keeps half-transparent rays from being pulled toward the camera.

Semantics are composited as **logits**, like Semantic-NeRF and ViewSeg: the MLP emits
per-point class logits, compositing them is linear in the weights, and the cross-entropy
is taken on softmax(composited logits). Compositing is linear, so the channels can be
anything (probabilities work too, and then sum to ``opacity``); ViewSeg's choice keeps the
loss identical to the paper. ``confidence`` is opacity * (1 - normalised entropy of the
class probabilities), in [0, 1]: 0 for empty rays and for uniform class distributions (the
renderer passes the ray's *observed* opacity, gathered where some source view looks:
:func:`viewseg_core.model.renderer.observed_opacity`).

``composite_fused`` is the single entry point for the heavy part (weights, channels,
opacity, distance in one pass): on CUDA tensors it runs the fused kernel of
``viewseg_core.cuda`` (forward and backward), elsewhere the PyTorch reference below. The
two agree up to floating-point rounding. ``VIEWSEG_COMPOSITING=reference`` forces the
reference everywhere.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from viewseg_core.rays import RayBundle

LAST_DELTA = 1e10
DEFAULT_OPACITY_THRESHOLD = 0.5
# Opacities below this count as zero when normalising the expected distance.
_OPACITY_EPS = 1e-10

BACKENDS = ("auto", "reference", "cuda")


# --------------------------------------------------------------------------------------
# Reference (PyTorch) quadrature
# --------------------------------------------------------------------------------------

def _far_like(far, t: torch.Tensor) -> torch.Tensor | None:
    if far is None:
        return None
    return torch.as_tensor(far, dtype=t.dtype, device=t.device).expand(t.shape[:-1])


def sample_deltas(t: torch.Tensor, far=None) -> torch.Tensor:
    """Interval lengths [..., S] (the last one reaches ``far``, or is LAST_DELTA)."""
    far = _far_like(far, t)
    if far is None:
        last = torch.full_like(t[..., -1:], LAST_DELTA)
    else:
        last = far[..., None] - t[..., -1:]
    # Unsorted or duplicate samples give empty intervals, never negative optical depth.
    return torch.cat([t[..., 1:] - t[..., :-1], last], dim=-1).clamp_min(0)


def render_weights(densities: torch.Tensor, t: torch.Tensor,
                   far=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render weights by the quadrature above (PyTorch reference).

    Args:
        densities: [..., S] sigma >= 0 (per metre); t: [..., S] sorted ray distances;
        far: None, a float or [...] (end of the last interval).
    Returns:
        weights [..., S], transmittance [..., S] (T_i, light reaching sample i),
        alpha [..., S].
    """
    if densities.shape != t.shape:
        raise ValueError(f"densities {tuple(densities.shape)} and t {tuple(t.shape)} must match")
    tau = densities * sample_deltas(t, far)
    # Transmittance from an exclusive cumulative sum in log space: stable, and its gradient
    # has no 1/(1 - alpha) term the way a cumprod of (1 - alpha) would.
    cum = torch.cumsum(tau, dim=-1)
    transmittance = torch.exp(-torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], -1))
    alpha = -torch.expm1(-tau)
    return transmittance * alpha, transmittance, alpha


def composite(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_i w_i v_i: weights [..., S], values [..., S, C] -> [..., C]."""
    return torch.einsum("...s,...sc->...c", weights, values.to(weights.dtype))


def composite_reference(densities: torch.Tensor, t: torch.Tensor, values: torch.Tensor,
                        far=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused operation in PyTorch (the definition the CUDA kernel must match).

    Args:
        densities: [..., S]; t: [..., S]; values: [..., S, C]; far: None | float | [...].
    Returns:
        composited [..., C], weights [..., S], opacity [...], distance_sum [...] = sum w_i t_i.
        Half/bfloat16 inputs are computed in float32 and the results cast back (as the
        kernel accumulates in float32): a bf16 cumulative sum would lose the transmittance.
    """
    dtype = torch.promote_types(densities.dtype, values.dtype)
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    densities, t, values = densities.to(work), t.to(work), values.to(work)
    far = far.to(work) if isinstance(far, torch.Tensor) else far
    # autocast would run the einsum in bf16/fp16; the sums stay in `work` precision
    with torch.autocast(device_type=densities.device.type, enabled=False):
        weights, _, _ = render_weights(densities, t, far)
        tau_total = (densities * sample_deltas(t, far)).sum(-1)
        opacity = -torch.expm1(-tau_total)
        outs = (composite(weights, values), weights, opacity, (weights * t).sum(-1))
    return tuple(o.to(dtype) for o in outs)


# --------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------

def _choose_backend(backend: str, *tensors: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if os.environ.get("VIEWSEG_COMPOSITING", "").strip().lower() == "reference":
        return "reference"
    on_cuda = all(x.is_cuda for x in tensors)
    if backend == "auto":
        return "cuda" if on_cuda else "reference"
    if backend == "cuda" and not on_cuda:
        raise ValueError("backend='cuda' needs densities, t and values on a CUDA device")
    return backend


def composite_fused(densities: torch.Tensor, t: torch.Tensor, values: torch.Tensor, far=None,
                    backend: str = "auto"):
    """Weights, composited channels, opacity and sum w_i t_i in one pass.

    Same arguments and results as :func:`composite_reference`. ``backend="auto"`` runs the
    fused CUDA kernel when the inputs are CUDA tensors (JIT-built on first use; a failed
    build raises RuntimeError, set VIEWSEG_COMPOSITING=reference to skip it) and the
    reference otherwise; ``"cuda"`` / ``"reference"`` force one.
    """
    if densities.shape != t.shape or values.shape[:-1] != t.shape:
        raise ValueError(f"composite: densities {tuple(densities.shape)}, t {tuple(t.shape)} "
                         f"and values {tuple(values.shape)} must be [..., S], [..., S], [..., S, C]")
    if _choose_backend(backend, densities, t, values) == "reference":
        return composite_reference(densities, t, values, far)

    from viewseg_core.cuda.function import fused_composite_cuda

    batch, S, C = t.shape[:-1], t.shape[-1], values.shape[-1]
    out, weights, opacity, dist = fused_composite_cuda(*flatten_rays(densities, t, values, _far_like(far, t)))
    return (out.reshape(*batch, C), weights.reshape(*batch, S), opacity.reshape(batch),
            dist.reshape(batch))


def flatten_rays(densities: torch.Tensor, t: torch.Tensor, values: torch.Tensor, far: torch.Tensor | None):
    """[..., S], [..., S], [..., S, C], [...] | None -> [R, S], [R, S], [R, S, C], [R] | None in
    one promoted dtype: the kernel's layout. The ray count is explicit because a reshape with
    -1 is ambiguous for zero channels."""
    S, C = t.shape[-1], values.shape[-1]
    rays = math.prod(t.shape[:-1])
    dtype = torch.promote_types(densities.dtype, values.dtype)
    return (densities.to(dtype).reshape(rays, S), t.to(dtype).reshape(rays, S),
            values.to(dtype).reshape(rays, S, C), None if far is None else far.to(dtype).reshape(rays))


# --------------------------------------------------------------------------------------
# Rendering a set of rays
# --------------------------------------------------------------------------------------

@dataclass
class RenderOutput:
    """What volume rendering gives for rays [...].

    Attributes:
        channels: name -> [..., C] composited channels (e.g. "semantics": logits, "rgb").
        weights: [..., S] render weights (drive the fine sampling).
        opacity: [...] accumulated opacity in [0, 1].
        distance: [...] expected ray distance given termination, metres (0 where opacity ~ 0).
        depth: [...] planar depth (distance * z_axis), NaN where not ``valid``; None when
            no optical-axis component was given.
        valid: [...] bool, opacity >= the threshold.
    """

    channels: dict[str, torch.Tensor]
    weights: torch.Tensor
    opacity: torch.Tensor
    distance: torch.Tensor
    depth: torch.Tensor | None
    valid: torch.Tensor


def render(densities: torch.Tensor, t: torch.Tensor, channels: dict[str, torch.Tensor], *,
           rays: RayBundle | None = None, z_axis: torch.Tensor | None = None, far=None,
           opacity_threshold: float = DEFAULT_OPACITY_THRESHOLD,
           backend: str = "auto") -> RenderOutput:
    """Volume-render rays: composite every channel, planar depth, opacity.

    Args:
        densities: [..., S] sigma >= 0; t: [..., S] sorted ray distances.
        channels: name -> [..., S, C] per-sample values (all composited in one pass).
        rays: the RayBundle [...] that ``t`` was sampled on; supplies ``z_axis`` and ``far``
            unless given explicitly.
        z_axis: [...] optical-axis component of each ray (planar depth = distance * z_axis).
        far: end of the last interval (None | float | [...]); None without ``rays`` means
            LAST_DELTA (see the module docstring).
        opacity_threshold: background rule: below it depth is NaN and ``valid`` False.
    """
    if rays is not None:
        z_axis = rays.z_axis if z_axis is None else z_axis
        far = rays.far if far is None else far
    names = list(channels)
    sizes = [channels[n].shape[-1] for n in names]
    dtype = torch.promote_types(densities.dtype, t.dtype)
    for n in names:
        dtype = torch.promote_types(dtype, channels[n].dtype)
    if names:
        values = torch.cat([channels[n].to(dtype) for n in names], dim=-1)
    else:
        values = densities.new_zeros((*densities.shape, 0), dtype=dtype)
    out, weights, opacity, dist_sum = composite_fused(densities.to(dtype), t.to(dtype), values,
                                                      far, backend=backend)
    composited = dict(zip(names, torch.split(out, sizes, dim=-1))) if names else {}
    distance = dist_sum / opacity.clamp_min(_OPACITY_EPS)
    valid = opacity >= opacity_threshold
    depth = None
    if z_axis is not None:
        depth = torch.where(valid, distance * z_axis.to(distance.dtype),
                            torch.full_like(distance, math.nan))
    return RenderOutput(composited, weights, opacity, distance, depth, valid)


def confidence(probabilities: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """opacity * (1 - H(p) / log C): [..., C] class probabilities, [...] opacity -> [...] in [0, 1].

    1 for an opaque ray with a one-hot class distribution, 0 for an empty ray or a
    uniform distribution.
    """
    C = probabilities.shape[-1]
    if C < 2:
        return opacity.clamp(0, 1)
    p = probabilities.clamp_min(0)
    entropy = -(torch.special.xlogy(p, p)).sum(-1)
    return opacity.clamp(0, 1) * (1.0 - entropy / math.log(C)).clamp(0, 1)


__all__ = ["LAST_DELTA", "DEFAULT_OPACITY_THRESHOLD", "sample_deltas", "render_weights",
           "composite", "composite_reference", "composite_fused", "RenderOutput", "render",
           "confidence"]
