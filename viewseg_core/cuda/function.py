"""The fused compositing kernel as a differentiable torch op (forward and backward on CUDA).

Same results as ``viewseg_core.volrend.composite_reference`` up to floating-point
rounding; gradients flow to densities, sample distances, values and ``far``. Call it
through ``viewseg_core.volrend.composite_fused`` / ``render``, which choose the backend.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from viewseg_core.cuda import load_extension


def _last_delta() -> float:
    from viewseg_core.volrend import LAST_DELTA

    return float(LAST_DELTA)


class FusedComposite(torch.autograd.Function):
    """(sigma [R,S], t [R,S], values [R,S,C], far [R] | None) ->
    (composited [R,C], weights [R,S], opacity [R], dist_sum [R])."""

    @staticmethod
    def forward(ctx, sigma, t, values, far):
        ext = load_extension()
        out, weights, opacity, dist = ext.forward(sigma, t, values, far, _last_delta())
        ctx.save_for_backward(sigma, t, values, far)
        return out, weights, opacity, dist

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_weights, grad_opacity, grad_dist):
        sigma, t, values, far = ctx.saved_tensors
        need_sigma, need_t, need_values, need_far = ctx.needs_input_grad
        if not any(ctx.needs_input_grad):
            return None, None, None, None
        grad_sigma, grad_t, grad_values, grad_far = load_extension().backward(
            sigma, t, values, far, grad_out.contiguous(), grad_weights.contiguous(),
            grad_opacity.contiguous(), grad_dist.contiguous(), bool(need_values),
            bool(need_far and far is not None), _last_delta())
        return (grad_sigma if need_sigma else None, grad_t if need_t else None,
                grad_values if need_values else None, grad_far if need_far else None)


def fused_composite_cuda(sigma: torch.Tensor, t: torch.Tensor, values: torch.Tensor,
                         far: torch.Tensor | None):
    """Run :class:`FusedComposite` on flattened inputs (made contiguous here).

    Args:
        sigma, t: [R, S]; values: [R, S, C]; far: [R] or None; one floating dtype, CUDA.
    """
    args = [sigma.contiguous(), t.contiguous(), values.contiguous()]
    return FusedComposite.apply(*args, None if far is None else far.contiguous())


__all__ = ["FusedComposite", "fused_composite_cuda"]
