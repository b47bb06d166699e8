"""Linear layers with their epilogue (bias, ReLU, residual add) fused into the GEMM on the CPU.

The field's inference forward on a small CPU is bound by passes over its [views, points,
hidden] tensors, not by its GEMMs (docs/benchmarks.md, "Ray chunks": the arithmetic was 15%
of an ``rgbd`` query): ``addmm`` copies the bias into its output before the product, and a
ReLU or a residual add then reads and writes the whole tensor again. oneDNN's inner product
applies them as post-ops while each output tile is still in cache
(``torch.ops.mkldnn._linear_pointwise``, the op that inductor's CPU backend emits for the
same pattern), so a layer is one pass over its output.

:func:`linear` takes that op only where it computes the same function as the plain ops:
autograd off (the op has no backward), autocast off, a CPU tensor in the weight's dtype
(float32 or bfloat16), the op present in this build and passing a one-time probe against
the plain ops. In float32 the result is the plain ops' bit for bit (PyTorch's CPU
``F.linear`` runs the same oneDNN inner product); in bfloat16 the fused residual add rounds
once where the plain ops round the product and then the sum. Everywhere else, and with
``VIEWSEG_CPU_EPILOGUES=off`` in the environment or inside ``epilogues(False)`` (the
benchmark's rows without it), the plain ops run: out of place under autograd or autocast,
in place on the layer's fresh output otherwise.
"""
from __future__ import annotations

import contextlib
import os
import threading

import torch
import torch.nn.functional as F
from torch import nn

EPILOGUES_ENV = "VIEWSEG_CPU_EPILOGUES"
ACTIVATIONS = ("none", "relu")
_FUSED_DTYPES = (torch.float32, torch.bfloat16)

_probed: dict[torch.dtype, bool] = {}
_probe_lock = threading.Lock()
_override: list[bool] = []   # innermost epilogues(...) wins


def _op_present() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _probe(dtype: torch.dtype) -> bool:
    """Once per dtype: the fused op runs here and matches the plain ops on a small case."""
    known = _probed.get(dtype)      # every linear layer of a query asks: no lock once known
    if known is not None:
        return known
    with _probe_lock:
        if dtype not in _probed:
            _probed[dtype] = _probe_once(dtype)
        return _probed[dtype]


def _probe_once(dtype: torch.dtype) -> bool:
    if not _op_present():
        return False
    gen = torch.Generator().manual_seed(0)
    x, r, w = (torch.randn(n, 16, generator=gen).to(dtype) for n in (37, 37, 16))
    b = torch.randn(16, generator=gen).to(dtype)
    tol = 1e-5 if dtype == torch.float32 else 0.1
    try:
        with torch.no_grad():
            relu = torch.ops.mkldnn._linear_pointwise(x, w, b, "relu", [], "")
            add = torch.ops.mkldnn._linear_pointwise.binary(x, r, w, b, "add")
            plain = F.linear(x, w, b)
        return (torch.allclose(relu.float(), plain.relu().float(), atol=tol, rtol=tol)
                and torch.allclose(add.float(), (plain.float() + r.float()), atol=tol, rtol=tol))
    except RuntimeError:  # a build or CPU whose oneDNN lacks the primitive: the plain ops
        return False


def enabled() -> bool:
    """Whether :func:`linear` may fuse (``epilogues(...)`` if inside one, else the environment)."""
    if _override:
        return _override[-1]
    return os.environ.get(EPILOGUES_ENV, "on").strip().lower() not in ("0", "off", "false", "no")


@contextlib.contextmanager
def epilogues(on: bool):
    """Fuse (True) or not (False) inside the block, whatever the environment says (process-wide:
    for benchmarks and tests, not for a server answering queries on several threads)."""
    _override.append(bool(on))
    try:
        yield
    finally:
        _override.pop()


def fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` runs the fused op for input ``x`` and ``weight`` (module docstring)."""
    # Not while torch.compile traces: inductor fuses the same epilogues itself, and lowers this
    # op only for weights it has frozen as graph constants.
    return (x.device.type == "cpu" and x.dtype == weight.dtype and x.dtype in _FUSED_DTYPES
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
            and weight.device.type == "cpu" and enabled() and _probe(x.dtype))


def linear(x: torch.Tensor, layer: nn.Linear, activation: str = "none",
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """``act(layer(x)) (+ residual)``: ``relu(x W^T + b)`` or ``x W^T + b + residual``.

    Args:
        x: [..., in_features]; layer: an ``nn.Linear`` (with or without bias).
        activation: ``none`` | ``relu`` (not together with ``residual``).
        residual: [..., out_features], added after the layer.
    Returns:
        [..., out_features], a new tensor (``x`` and ``residual`` are left as they are).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if residual is not None and activation != "none":
        raise ValueError("linear: a residual add and an activation together are not supported")
    w, b = layer.weight, layer.bias
    if fusable(x, w) and (residual is None or residual.dtype == x.dtype):
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, w, b, "add")
        return torch.ops.mkldnn._linear_pointwise(x, w, b, activation, [], "")
    out = F.linear(x, w, b)
    if (torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type)
            or torch.compiler.is_compiling()):
        out = F.relu(out) if activation == "relu" else out
        return out if residual is None else out + residual
    # Inference: ``out`` is this call's own tensor, so the epilogue may run in place.
    if activation == "relu":
        out = out.relu_()
    return out if residual is None else out.add_(residual)


__all__ = ["EPILOGUES_ENV", "enabled", "epilogues", "fusable", "linear"]
