"""cpu_linear: the fused oneDNN epilogues against the plain ops, and when they may run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from viewseg_core.model import cpu_linear


def _layer(n_in=24, n_out=40, bias=True, dtype=torch.float32, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out, bias=bias).to(dtype)


def _x(*shape, dtype=torch.float32, seed=1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_the_fused_op_runs_on_this_cpu():
    """The default CPU build has it; if this fails, every other row here tests only the plain ops."""
    layer, x = _layer(), _x(7, 24)
    with torch.no_grad():
        assert cpu_linear.fusable(x, layer.weight)
        assert cpu_linear.fusable(x.bfloat16(), layer.weight.bfloat16())


@pytest.mark.parametrize("shape", [(300, 24), (2, 3, 50, 1, 24), (0, 24)], ids=["2d", "5d", "empty"])
@pytest.mark.parametrize("bias", [True, False])
def test_float32_epilogues_equal_the_plain_ops(shape, bias):
    layer, x = _layer(bias=bias), _x(*shape)
    residual = _x(*shape[:-1], 40, seed=2)
    x0, r0 = x.clone(), residual.clone()
    plain = F.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        for kw, want in ((dict(), plain), (dict(activation="relu"), plain.relu()),
                         (dict(residual=residual), plain + residual)):
            got = cpu_linear.linear(x, layer, **kw)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want.detach(), rtol=1e-6, atol=1e-6)
            with cpu_linear.epilogues(False):
                torch.testing.assert_close(cpu_linear.linear(x, layer, **kw), want.detach(), rtol=1e-6, atol=1e-6)
    assert torch.equal(x, x0) and torch.equal(residual, r0)     # inputs untouched


def test_bfloat16_residual_add_rounds_once():
    """In bf16 the fused add rounds product + residual once; the plain ops round the product
    and then the sum, so the fused result is never further from the float32 truth on average."""
    layer32, x32 = _layer(64, 64), _x(4096, 64)
    r32 = _x(4096, 64, seed=3)
    truth = F.linear(x32, layer32.weight, layer32.bias).detach() + r32
    layer, x, r = _layer(64, 64, dtype=torch.bfloat16), x32.bfloat16(), r32.bfloat16()
    with torch.no_grad():
        fused = cpu_linear.linear(x, layer, residual=r).float()
        with cpu_linear.epilogues(False):
            plain = cpu_linear.linear(x, layer, residual=r).float()
        relu = cpu_linear.linear(x, layer, "relu").float()
        with cpu_linear.epilogues(False):
            relu_plain = cpu_linear.linear(x, layer, "relu").float()
    err_fused, err_plain = (fused - truth).abs().mean(), (plain - truth).abs().mean()
    assert err_fused <= err_plain and float(err_plain) < 0.05
    assert torch.equal(relu, relu_plain)  # ReLU after one rounding either way


def test_when_it_may_not_fuse():
    layer, x = _layer(), _x(5, 24)
    assert not cpu_linear.fusable(x, layer.weight)                       # autograd on (the default)
    with torch.no_grad():
        assert not cpu_linear.fusable(x.double(), layer.weight.double())  # float64: no
        assert not cpu_linear.fusable(x.bfloat16(), layer.weight)         # mixed dtypes
        with cpu_linear.epilogues(False):
            assert not cpu_linear.fusable(x, layer.weight)
            with cpu_linear.epilogues(True):                             # innermost wins
                assert cpu_linear.fusable(x, layer.weight)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not cpu_linear.fusable(x, layer.weight)


@pytest.mark.parametrize("value, on", [("off", False), ("0", False), ("on", True), ("", True)])
def test_the_environment_switch(monkeypatch, value, on):
    monkeypatch.setenv(cpu_linear.EPILOGUES_ENV, value)
    layer, x = _layer(), _x(5, 24)
    with torch.no_grad():
        assert cpu_linear.fusable(x, layer.weight) is on


def test_training_keeps_autograd_and_the_plain_values():
    layer, x = _layer(), _x(9, 24).requires_grad_(True)
    residual = _x(9, 40, seed=4)
    out = cpu_linear.linear(x, layer, residual=residual)
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias) + residual)
    cpu_linear.linear(x, layer, "relu").sum().backward()
    want = ((F.linear(x, layer.weight, layer.bias) > 0).float() @ layer.weight)   # d relu(xW^T+b) / dx summed
    torch.testing.assert_close(x.grad, want)
    assert layer.weight.grad is not None


def test_bad_arguments():
    layer, x = _layer(), _x(5, 24)
    with pytest.raises(ValueError, match="activation must be one of"):
        cpu_linear.linear(x, layer, "gelu")
    with pytest.raises(ValueError, match="residual add and an activation"):
        cpu_linear.linear(x, layer, "relu", residual=_x(5, 40))
