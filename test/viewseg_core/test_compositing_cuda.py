"""The fused compositing kernel: parity with the PyTorch reference (GPU), build, and its algorithm.

- ``gpu`` tests: kernel vs reference on fresh random inputs, values and gradients, with the
  allocator's memory poisoned with NaN first so that any output element the kernel forgets
  to write shows up. Run with ``make test-gpu`` on a CUDA machine.
- ``slow`` test: the extension compiles and imports (needs nvcc, no GPU).
- default test: a lane-by-lane NumPy emulation of the kernel's warp algorithm (chunked
  scans, lane/channel mapping, the closed-form backward) against the reference and
  autograd, so the maths is checked even where no GPU is available. It mirrors
  compositing_kernel.cu; keep the two in step.
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from viewseg_core.volrend import LAST_DELTA, composite_fused, composite_reference, render

WARP = 32


# --------------------------------------------------------------------------------------
# Warp emulation (runs everywhere)
# --------------------------------------------------------------------------------------

def _shfl_up(x: np.ndarray, offset: int) -> np.ndarray:
    y = x.copy()  # lanes below `offset` get their own value back, as in CUDA
    y[offset:] = x[:-offset]
    return y


def _scan(x: np.ndarray) -> np.ndarray:
    lane = np.arange(WARP)
    offset = 1
    while offset < WARP:
        y = _shfl_up(x, offset)
        x = np.where(lane >= offset, x + y, x)
        offset <<= 1
    return x


def _delta(t_r, s, S, ts, far_r, last_delta):
    raw = np.where(s + 1 < S, t_r[np.minimum(s + 1, S - 1)] - ts,
                   far_r - ts if far_r is not None else last_delta)
    ok = raw >= 0
    return np.where(ok, raw, 0.0), ok


def _emulate_forward(sig_r, t_r, v_r, far_r, last_delta=LAST_DELTA):
    S, C = v_r.shape
    lane = np.arange(WARP)
    w_sh = np.zeros(S)
    weights = np.full(S, np.nan)
    carry, dist_acc = 0.0, np.zeros(WARP)
    for base in range(0, S, WARP):
        s = base + lane
        m = s < S
        sc = np.minimum(s, S - 1)
        ts = np.where(m, t_r[sc], 0.0)
        delta, _ = _delta(t_r, sc, S, ts, far_r, last_delta)
        tau = np.where(m, sig_r[sc] * delta, 0.0)
        incl = _scan(tau)
        excl = _shfl_up(incl, 1)
        excl[0] = 0.0
        w = np.exp(-(carry + excl)) * (-np.expm1(-tau))
        w_sh[s[m]] = w[m]
        weights[s[m]] = w[m]
        dist_acc += np.where(m, w * ts, 0.0)
        carry += incl[WARP - 1]
    opacity, dist = -math.expm1(-carry), dist_acc.sum()
    out = np.full(C, np.nan)
    if 0 < C <= WARP:
        group = WARP // C
        acc = np.zeros(WARP)
        for ln in range(group * C):
            c = ln % C
            for s in range(ln // C, S, group):
                acc[ln] += w_sh[s] * v_r[s, c]
        for ln in range(C):
            out[ln] = sum(acc[j * C + ln] for j in range(group))
    elif C > WARP:
        for c0 in range(0, C, WARP):
            for c in range(c0, min(c0 + WARP, C)):
                out[c] = sum(w_sh[s] * v_r[s, c] for s in range(S))
    return out, weights, opacity, dist


def _emulate_backward(sig_r, t_r, v_r, far_r, go, gw_in, g_op, g_dist, last_delta=LAST_DELTA):
    S, C = v_r.shape
    lane = np.arange(WARP)
    w_sh, g_sh, tn_sh, p_sh = (np.zeros(S) for _ in range(4))
    carry_tau = carry_gw = 0.0
    for base in range(0, S, WARP):
        s = base + lane
        m = s < S
        sc = np.minimum(s, S - 1)
        ts = np.where(m, t_r[sc], 0.0)
        delta, _ = _delta(t_r, sc, S, ts, far_r, last_delta)
        tau = np.where(m, sig_r[sc] * delta, 0.0)
        incl = _scan(tau)
        excl = _shfl_up(incl, 1)
        excl[0] = 0.0
        w = np.exp(-(carry_tau + excl)) * (-np.expm1(-tau))
        g = gw_in[sc] + g_dist * ts + g_op + v_r[sc] @ go
        gw = np.where(m, g * w, 0.0)
        gw_incl = _scan(gw)
        w_sh[s[m]], g_sh[s[m]] = w[m], g[m]
        tn_sh[s[m]] = np.exp(-(carry_tau + incl))[m]
        p_sh[s[m]] = (carry_gw + gw_incl)[m]
        carry_tau += incl[WARP - 1]
        carry_gw += gw_incl[WARP - 1]
    total = carry_gw
    g_sigma, g_t, g_far = np.full(S, np.nan), np.full(S, np.nan), None
    carry_dd = 0.0
    for base in range(0, S, WARP):
        s = base + lane
        m = s < S
        sc = np.minimum(s, S - 1)
        ts = t_r[sc]
        delta, ok = _delta(t_r, sc, S, ts, far_r, last_delta)
        dtau = g_sh[sc] * tn_sh[sc] - (total - p_sh[sc])
        depends = (sc + 1 < S) | (far_r is not None)
        dd = np.where(m & ok & depends, dtau * sig_r[sc], 0.0)
        gt = g_dist * w_sh[sc] - dd
        dd_prev = _shfl_up(dd, 1)
        dd_prev[0] = carry_dd
        g_sigma[s[m]] = (dtau * delta)[m]
        g_t[s[m]] = (gt + dd_prev)[m]
        if far_r is not None and base <= S - 1 < base + WARP:
            g_far = dd[S - 1 - base]
        carry_dd = dd[WARP - 1]
    g_values = np.full(S * C, np.nan)
    for e in range(S * C):
        s = e // C
        g_values[e] = go[e - s * C] * w_sh[s]
    return g_sigma, g_t, g_values.reshape(S, C), g_far


@pytest.mark.parametrize("S,C,with_far", [(1, 3, True), (45, 3, True), (70, 7, False),
                                          (33, 32, True), (64, 40, False), (40, 0, True),
                                          (5, 1, False), (96, 37, True)])
def test_kernel_algorithm_emulation_matches_reference(S, C, with_far):
    g = torch.Generator().manual_seed(S * 100 + C)
    R = 2
    sigma = (torch.rand(R, S, generator=g, dtype=torch.float64) * 3).requires_grad_()
    t = torch.sort(torch.rand(R, S, generator=g, dtype=torch.float64) * 4 + 0.1, -1).values.requires_grad_()
    values = torch.randn(R, S, C, generator=g, dtype=torch.float64).requires_grad_()
    far = torch.full((R,), 4.5, dtype=torch.float64, requires_grad=True) if with_far else None
    outs = composite_reference(sigma, t, values, far)
    grads_out = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outs]
    inputs = [sigma, t, values] + ([far] if with_far else [])
    ref_grads = torch.autograd.grad(outs, inputs, grads_out, allow_unused=True)
    for r in range(R):
        far_r = float(far[r].detach()) if with_far else None
        args = (sigma[r].detach().numpy(), t[r].detach().numpy(), values[r].detach().numpy(), far_r)
        o, w, op, d = _emulate_forward(*args)
        np.testing.assert_allclose(o, outs[0][r].detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(w, outs[1][r].detach().numpy(), rtol=1e-10, atol=1e-12)
        assert op == pytest.approx(float(outs[2][r].detach()), rel=1e-10, abs=1e-12)
        assert d == pytest.approx(float(outs[3][r].detach()), rel=1e-10, abs=1e-12)
        gs, gt, gv, gf = _emulate_backward(*args, grads_out[0][r].numpy(), grads_out[1][r].numpy(),
                                           float(grads_out[2][r]), float(grads_out[3][r]))
        np.testing.assert_allclose(gs, ref_grads[0][r].numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(gt, ref_grads[1][r].numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(gv, ref_grads[2][r].numpy(), rtol=1e-8, atol=1e-10)
        if with_far:
            assert gf == pytest.approx(float(ref_grads[3][r]), rel=1e-8, abs=1e-10)


# --------------------------------------------------------------------------------------
# Build (needs nvcc, no GPU)
# --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_extension_compiles_and_imports():
    from viewseg_core.cuda import cuda_toolkit, load_extension

    if cuda_toolkit() is None or shutil.which("ninja") is None:
        pytest.skip("no CUDA toolkit (nvcc) or ninja")
    ext = load_extension()
    assert callable(ext.forward) and callable(ext.backward)


# --------------------------------------------------------------------------------------
# GPU parity
# --------------------------------------------------------------------------------------

def _poison_cuda_cache(shapes, dtype) -> None:
    """Leave NaN in the allocator blocks the kernel's outputs will reuse (same sizes, freed
    last), plus a large block: any output element the kernel fails to write stays NaN."""
    keep = [torch.full(tuple(s), math.nan, device="cuda", dtype=dtype) for s in shapes]
    keep.append(torch.full((8 << 20,), math.nan, device="cuda", dtype=dtype))
    del keep


def _inputs(R, S, C, dtype, with_far, seed, device="cuda"):
    g = torch.Generator(device=device).manual_seed(seed)
    sigma = torch.rand(R, S, generator=g, device=device, dtype=dtype) * 4
    sigma = sigma * (torch.rand(R, S, generator=g, device=device, dtype=dtype) > 0.3)  # empty stretches
    sigma[0] = 0  # one empty ray
    t = torch.sort(torch.rand(R, S, generator=g, device=device, dtype=dtype) * 6 + 0.1, -1).values
    values = torch.randn(R, S, C, generator=g, device=device, dtype=dtype)
    far = torch.full((R,), 6.5, device=device, dtype=dtype) if with_far else None
    return sigma, t, values, far


CASES = [(1, 1, 3), (257, 64, 3), (300, 192, 40), (129, 33, 32), (64, 17, 1), (50, 45, 0), (31, 96, 70)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_far", [True, False])
@pytest.mark.parametrize("R,S,C", CASES)
def test_kernel_matches_reference_values_and_grads(R, S, C, dtype, with_far):
    sigma, t, values, far = _inputs(R, S, C, dtype, with_far, seed=R + S + C)
    leaves = [x.clone().requires_grad_() for x in (sigma, t, values)]
    far_leaf = far.clone().requires_grad_() if with_far else None
    ref_leaves = [x.clone().requires_grad_() for x in (sigma, t, values)]
    ref_far = far.clone().requires_grad_() if with_far else None

    _poison_cuda_cache([(R, C), (R, S), (R,), (R,)], dtype)
    outs = composite_fused(*leaves, far_leaf, backend="cuda")
    refs = composite_reference(*ref_leaves, ref_far)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for name, a, b in zip(("composited", "weights", "opacity", "dist_sum"), outs, refs):
        assert not torch.isnan(a).any(), f"{name}: unwritten (NaN) elements"
        torch.testing.assert_close(a, b, **tol, msg=f"{name} differs")

    g = torch.Generator(device="cuda").manual_seed(7)
    grads = [torch.randn(o.shape, generator=g, device="cuda", dtype=dtype) for o in outs]
    _poison_cuda_cache([(R, S), (R, S), (R, S, C), (R,)], dtype)
    got = torch.autograd.grad(outs, leaves + ([far_leaf] if with_far else []), grads)
    want = torch.autograd.grad(refs, ref_leaves + ([ref_far] if with_far else []), grads)
    # the 1e10 last interval without far scales sigma gradients by 1e10: compare relatively
    for name, a, b in zip(("sigma", "t", "values", "far"), got, want):
        assert not torch.isnan(a).any(), f"grad {name}: unwritten (NaN) elements"
        scale = b.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a / scale, b / scale, **tol, msg=f"grad {name} differs")


@pytest.mark.gpu
def test_kernel_gradcheck_float64():
    from viewseg_core.cuda.function import fused_composite_cuda

    sigma, t, values, far = _inputs(4, 9, 5, torch.float64, True, seed=3)
    args = [x.requires_grad_() for x in (sigma, t, values, far)]
    assert torch.autograd.gradcheck(fused_composite_cuda, args)


@pytest.mark.gpu
def test_kernel_without_value_grads_and_in_inference_mode():
    sigma, t, values, far = _inputs(100, 64, 40, torch.float32, True, seed=5)
    s = sigma.clone().requires_grad_()
    out = composite_fused(s, t, values, far, backend="cuda")
    (gs,) = torch.autograd.grad(out[0].sum() + out[2].sum(), [s])
    s_ref = sigma.clone().requires_grad_()
    ref = composite_reference(s_ref, t, values, far)
    (gs_ref,) = torch.autograd.grad(ref[0].sum() + ref[2].sum(), [s_ref])
    torch.testing.assert_close(gs, gs_ref, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():
        out = composite_fused(sigma, t, values, far, backend="cuda")
    torch.testing.assert_close(out[0], ref[0].detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kernel_low_precision_accumulates_in_float(dtype):
    sigma, t, values, far = _inputs(200, 128, 40, torch.float32, True, seed=11)
    ref = composite_reference(sigma, t, values, far)
    out = composite_fused(sigma.to(dtype), t.to(dtype), values.to(dtype), far.to(dtype), backend="cuda")
    assert out[0].dtype == dtype
    tol = 2e-2 if dtype == torch.float16 else 8e-2
    torch.testing.assert_close(out[0].float(), ref[0], rtol=tol, atol=tol)
    torch.testing.assert_close(out[2].float(), ref[2], rtol=tol, atol=tol)


@pytest.mark.gpu
def test_render_on_cuda_matches_cpu():
    sigma, t, values, far = _inputs(64, 96, 40, torch.float32, True, seed=13)
    z = torch.rand(64, device="cuda") * 0.5 + 0.5
    chans = {"semantics": values[..., :37], "rgb": values[..., 37:]}
    gpu = render(sigma, t, chans, z_axis=z, far=far)
    cpu = render(sigma.cpu(), t.cpu(), {k: v.cpu() for k, v in chans.items()}, z_axis=z.cpu(), far=far.cpu())
    for k in chans:
        torch.testing.assert_close(gpu.channels[k].cpu(), cpu.channels[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu.depth.cpu(), cpu.depth, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert torch.equal(gpu.valid.cpu(), cpu.valid)
