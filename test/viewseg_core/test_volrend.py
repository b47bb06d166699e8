"""Volume rendering: closed-form slab, empty rays, a wall under a tilted camera, gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from viewseg_core import cameras as C
from viewseg_core.rays import grid_rays
from viewseg_core.sampling import hierarchical_samples, stratified_samples
from viewseg_core.volrend import (LAST_DELTA, composite, composite_fused, composite_reference,
                                  confidence, render, render_weights)

F64 = dict(dtype=torch.float64)


def test_constant_density_slab_closed_form():
    """sigma = s on [a, b], 0 elsewhere, samples every d: exact T, opacity; depth in closed form."""
    s, a, b, d, far = 0.8, 2.0, 3.5, 0.01, 6.0
    t = (torch.arange(50, 600, **F64) / 100)[None]  # every d = 0.01 from 0.5
    sigma = s * ((t >= a - 1e-9) & (t < b - 1e-9)).double()
    w, T, alpha = render_weights(sigma, t, far=far)
    assert torch.allclose(T, torch.exp(-s * (t - a).clamp(0, b - a)), atol=1e-12)
    z = 0.6  # optical-axis component of the ray
    out = render(sigma, t, {"one": torch.ones(*t.shape, 1, **F64)}, z_axis=torch.tensor([z], **F64), far=far)
    opacity = 1 - math.exp(-s * (b - a))
    assert out.opacity.item() == pytest.approx(opacity, abs=1e-12)
    assert out.channels["one"].item() == pytest.approx(opacity, abs=1e-12)
    # Continuous expected termination distance given termination in the slab:
    L = b - a
    expected = a + 1 / s - L * math.exp(-s * L) / (1 - math.exp(-s * L))
    # The quadrature puts each interval's mass at its left end; with constant density every
    # interval's conditional mean sits the same m past that end, so the offset is exact.
    m = 1 / s - d * math.exp(-s * d) / (1 - math.exp(-s * d))
    assert out.distance.item() + m == pytest.approx(expected, abs=1e-9)
    assert out.depth.item() == pytest.approx(out.distance.item() * z, abs=1e-12)
    assert out.valid.item() == (opacity >= 0.5)


def test_empty_ray_is_background():
    t = torch.linspace(0.1, 20.0, 64, **F64).expand(3, 64)
    logits = torch.randn(3, 64, 37, **F64)
    out = render(torch.zeros(3, 64, **F64), t, {"semantics": logits, "rgb": torch.rand(3, 64, 3, **F64)},
                 z_axis=torch.ones(3, **F64), far=20.0)
    assert torch.all(out.opacity == 0) and torch.all(out.weights == 0)
    assert torch.all(torch.isnan(out.depth)) and not out.valid.any()
    assert torch.all(out.distance == 0) and torch.all(out.channels["semantics"] == 0)
    probs = out.channels["semantics"].softmax(-1)
    assert torch.all(confidence(probs, out.opacity) == 0)


def test_far_none_uses_last_delta():
    t = torch.tensor([[1.0, 2.0]], **F64)
    w, _, alpha = render_weights(torch.tensor([[0.0, 1e-6]], **F64), t)
    assert alpha[0, 1].item() == pytest.approx(1 - math.exp(-1e-6 * LAST_DELTA))
    assert w[0, 1].item() == 1.0


def test_opaque_wall_tilted_camera_planar_depth_every_pixel():
    """A thick wall x . n >= d seen by a pitched, yawed tilt-shift camera: planar depth exact."""
    H, W = 12, 16
    K = torch.tensor(C.hypersim_K(np.array([[0.55, 0.04, 0.15], [0.0, 0.42, -0.2], [0.0, 0.0, -1.0]]), W, H))
    yaw, pitch = 0.5, -0.35
    Ry = torch.tensor([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    Rx = torch.tensor([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    c2w = torch.eye(4, **F64)
    c2w[:3, :3] = Ry @ Rx
    c2w[:3, 3] = torch.tensor([0.3, -0.2, 0.1])
    n, dist = torch.tensor([0.0, 0.0, 1.0], **F64), 4.0  # wall at world z = 4
    rays = grid_rays(K, c2w, H, W, near=0.1, far=20.0)

    def density(t):
        x = rays.points(t)
        return 1e3 * (x @ n >= dist).double()

    tc = stratified_samples(rays, 64, perturb=False)
    coarse = render(density(tc), tc, {}, rays=rays)
    t = hierarchical_samples(tc, coarse.weights, 128, perturb=False)
    out = render(density(t), t, {}, rays=rays)

    t_hit = (dist - rays.origins @ n) / (rays.directions @ n)
    hit = rays.origins + t_hit[:, None] * rays.directions
    true_depth = C.world_to_camera(c2w, hit)[:, 2]
    assert out.valid.all()
    # fine samples are (20 - 0.1) / 64 / 64 = 4.9 mm apart around the wall: that bounds the error
    assert torch.allclose(out.depth, true_depth, atol=5e-3)
    # and it really is planar depth, not ray distance (they differ off-axis by > 1 cm here)
    assert (t_hit - true_depth).abs().max() > 0.1


def test_confidence_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.75, 0.25]], **F64)
    op = torch.tensor([1.0, 1.0, 0.8], **F64)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    assert confidence(p, op).tolist() == pytest.approx([1.0, 0.0, 0.8 * (1 - h)])


def test_render_splits_channels_and_probabilities_sum_to_opacity():
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(4, 10, generator=g, **F64) * 2
    t = torch.sort(torch.rand(4, 10, generator=g, **F64) * 5, -1).values
    probs = torch.rand(4, 10, 5, generator=g, **F64).softmax(-1)
    rgb = torch.rand(4, 10, 3, generator=g, **F64)
    out = render(sigma, t, {"probs": probs, "rgb": rgb}, far=6.0)
    w, _, _ = render_weights(sigma, t, far=6.0)
    assert torch.allclose(out.channels["rgb"], composite(w, rgb))
    assert torch.allclose(out.channels["probs"].sum(-1), out.opacity)
    assert torch.allclose(out.opacity, w.sum(-1))
    assert out.depth is None  # no z_axis given


def test_gradcheck_reference_compositing_float64():
    g = torch.Generator().manual_seed(1)
    sigma = (torch.rand(3, 6, generator=g, **F64) * 2).requires_grad_()
    t = torch.sort(torch.rand(3, 6, generator=g, **F64) * 4 + 0.1, -1).values.requires_grad_()
    values = torch.randn(3, 6, 4, generator=g, **F64).requires_grad_()
    far = torch.full((3,), 5.0, **F64).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: composite_reference(*a), (sigma, t, values, far))
    assert torch.autograd.gradcheck(lambda s, v: composite_reference(s, t, v, None), (sigma, values))
    assert torch.autograd.gradcheck(
        lambda s, v: render(s, t, {"v": v}, z_axis=torch.full((3,), 0.7, **F64), far=5.0,
                            opacity_threshold=0.0).depth, (sigma, values))


def test_composite_fused_dispatches_to_reference_on_cpu(monkeypatch):
    sigma, t = torch.rand(2, 5), torch.sort(torch.rand(2, 5), -1).values
    v = torch.rand(2, 5, 3)
    ref = composite_reference(sigma, t, v, 2.0)
    for a, b in zip(composite_fused(sigma, t, v, 2.0), ref):
        assert torch.equal(a, b)
    monkeypatch.setenv("VIEWSEG_COMPOSITING", "reference")
    for a, b in zip(composite_fused(sigma, t, v, 2.0, backend="cuda"), ref):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="backend"):
        composite_fused(sigma, t, v, backend="triton")
    monkeypatch.delenv("VIEWSEG_COMPOSITING")
    with pytest.raises(ValueError, match="CUDA device"):
        composite_fused(sigma, t, v, backend="cuda")


def test_reference_low_precision_accumulates_in_float32():
    g = torch.Generator().manual_seed(2)
    sigma = torch.rand(8, 192, generator=g) * 2
    t = torch.sort(torch.rand(8, 192, generator=g) * 20, -1).values
    v = torch.randn(8, 192, 40, generator=g)
    ref = composite_reference(sigma, t, v, 20.0)
    low = composite_reference(sigma.bfloat16(), t.bfloat16(), v.bfloat16(), 20.0)
    assert all(x.dtype == torch.bfloat16 for x in low)
    # inputs rounded to bf16 (t to ~0.06 m near 20 m), sums still in float32
    torch.testing.assert_close(low[2].float(), ref[2], rtol=0.02, atol=0.02)
    torch.testing.assert_close(low[0].float(), ref[0], rtol=0.1, atol=0.1)


@pytest.mark.parametrize("channels", [0, 3])
def test_flatten_rays_for_the_kernel_handles_zero_channels(channels):
    # Seen on an H200: reshape(-1, S, 0) is ambiguous, so zero-channel renders failed before
    # reaching the kernel (which supports them).
    from viewseg_core.volrend import flatten_rays

    sigma = torch.rand(2, 5, 7, dtype=torch.float32)
    t = torch.rand(2, 5, 7, dtype=torch.float32)
    values = torch.rand(2, 5, 7, channels, dtype=torch.float64)   # the promoted dtype wins
    flat = flatten_rays(sigma, t, values, torch.ones(2, 5))
    assert [tuple(x.shape) for x in flat] == [(10, 7), (10, 7), (10, 7, channels), (10,)]
    assert {x.dtype for x in flat} == {torch.float64}
    assert torch.equal(flat[0], sigma.double().reshape(10, 7))
    assert flatten_rays(sigma, t, values, None)[3] is None
