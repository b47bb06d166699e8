"""The semantic field's forward as ONE fused Triton kernel (issue 19): inference only.

:func:`fused_field_forward` has the contract of :meth:`SemanticField.forward` (points
[B, R, S, 3], directions [B, R, 3], the field's own ``prepare`` output -> a
:class:`FieldOutput` of [B, R, S, ...] tensors) and computes the same function. One program
of :mod:`viewseg_core.kernels.field_triton` takes a tile of points through the whole field:
projection and visibility in each source view, bilinear sampling of the projected feature
maps (``F.grid_sample(..., padding_mode="border", align_corners=False)``, reproduced
exactly: same unnormalisation, clamping and corner weights), the embedding terms of the
first layer, the per-view residual blocks (``tl.dot``), masked mean (and variance) over the
views that see the point, the pooling layer, both heads, sigmoid/softplus. Only logits,
rgb, density and the visible-view count are written; the [points, views, hidden]
activations that the PyTorch field streams through memory a dozen times stay on chip.
Every (point, view) row is computed, visible or not (the mask applies at the pooling), as
in the PyTorch field: visibility compaction is not done.

Supported (:func:`fused_supported` says why not otherwise; the caller then keeps the
PyTorch field):

- ``projected_features=True`` (the default; the naive path samples raw features),
- ``view_pooling`` ``mean`` and ``mean_var``,
- ``hidden_dim`` a power of two in [16, 256] (tl.dot tiles; 128 is the paper's), any
  ``n_blocks``/``n_head_blocks``/harmonic counts/``num_classes`` <= 256,
- float32/bfloat16/float16 weights; float32 (or half, promoted) points; float32 geometry;
- the RGB-D and colour options of the shipped models, all in float32 on chip:
  ``source_rgb`` (the source images sampled bilinearly at each point's full-resolution
  projection, their mean and log variance over the visible views through ``W_c`` into the
  pooled state), ``source_depth`` (the signed difference to the measured depth at the nearest
  depth pixel through tanh at the model's scales and ``W_z``, or the learned unknown vector),
  ``depth_evidence`` (carving and the surface step on the density) and
  ``unseen_points="extrapolate"`` (points no view sees pooled over the views they lie in front
  of, read at their projection clamped to the grid limit).

Refused: ``view_direction=False`` (the ablation), ``projected_features=False``, any field
component the kernel does not know (checked by name, so a new optional part of
``SemanticField`` is refused rather than silently dropped), float64 points (the reference
then does its geometry in float64), and autograd (below).

Precision: ``precision="bf16"`` (the CUDA default, issue 19) feeds ``tl.dot`` bfloat16
operands and accumulates in float32; geometry, embeddings' arguments, sampling, bias adds,
residual adds and pooling stay float32 (the PyTorch path under autocast rounds all of these
to bf16 too, so the fused path is, if anything, closer to the fp32 reference).
``precision="fp32"`` uses IEEE float32 dots (no TF32): the parity mode, and the only mode
the CPU interpreter tests. Outputs are float32 whatever the weights' dtype.

Devices: CUDA with compute capability >= 8.0 (bf16 ``tl.dot``). On CPU the kernel runs only
under the triton interpreter, and only when asked explicitly (``interpret=True``): that is
for parity tests, orders of magnitude slower than the PyTorch field, so a dispatcher that
asks ``fused_supported(field, device)`` on CPU always hears "no" (even with
``TRITON_INTERPRET=1`` in the environment).

The query path dispatches here: :func:`viewseg_core.model.fast.choose_field`
(``QueryPreset.field_impl`` / ``VIEWSEG_FIELD``; ``auto`` = this kernel on CUDA when supported).

Training keeps the PyTorch field. A backward needs, per (point, view), the pre-activations
of all 2 * n_blocks layers (or their recomputation inside the backward kernel) and weight
gradients reduced over every point of the batch (a split reduction or atomics per tile);
recomputing with the PyTorch field instead would cost more than the PyTorch
forward + backward it replaces (the forward would run twice). Neither could be measured
without a GPU in the session that built this (the interpreter proves values, not speed),
so the fused path raises :class:`FusedFieldUnsupported` under autograd: call it inside
``torch.no_grad()``/``torch.inference_mode()``.

Performance is NOT measured yet (no GPU in the building session): see
``benchmarks/bench_fused_field.py`` and docs/benchmarks.md, "Fused field kernel".
"""
from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from viewseg_core.model.field import COLOUR_VAR_EPS, DEPTH_FEATURE_SCALES, EVIDENCE_EDGE, EVIDENCE_FREE_SIGMAS, \
    EVIDENCE_ONSET, EVIDENCE_SIGMA_M, EVIDENCE_SIGMA_REL, EXTRAPOLATE_GRID_LIMIT, FieldOutput, PreparedSources, \
    ResBlock, SemanticField, query_shape

PRECISIONS = ("bf16", "fp32")
MAX_HIDDEN = 256
MAX_CLASSES = 256
# Children of SemanticField the kernel implements; optional ones may be None.
_KNOWN_CHILDREN = {"embed_xyz", "embed_dir", "lin_in", "blocks", "pool_proj", "colour_proj", "semantic_head",
                   "rgb_density_head", "depth_embed", "depth_evidence"}
_REFUSED_CHILDREN: dict[str, str] = {}  # optional parts the kernel does not implement (none today)
# Launch defaults: points per program and warps, by hidden width. The kernel's dots have
# M = points x views (rounded up to a power of two) rows: 16 points x 4 views = 64 rows, the
# smallest M for Hopper's wgmma. NOT tuned (chosen without a GPU from sm_90 builds' register
# and spill counts, docs/benchmarks.md); benchmarks/bench_fused_field.py sweeps them on CUDA.
DEFAULT_BLOCK_POINTS = {16: 16, 32: 16, 64: 16, 128: 16, 256: 16}
DEFAULT_NUM_WARPS = {16: 4, 32: 4, 64: 4, 128: 8, 256: 8}
INTERPRET_BLOCK_POINTS = 64  # fewer, larger programs: the interpreter's cost is per op


class FusedFieldUnsupported(ValueError):
    """This field, input or mode is not implemented by the fused kernel (use the PyTorch field)."""


def _pow2(n: int, minimum: int = 16) -> int:
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def _interpret_mode(device: torch.device, interpret: bool | None) -> bool:
    """Interpreter only on request: None means compiled (CUDA)."""
    return bool(interpret)


def field_reason(field: nn.Module) -> str | None:
    """Why the kernel cannot compute this field (None: it can), from its structure only."""
    if not isinstance(field, SemanticField):
        return f"not a SemanticField ({type(field).__name__})"
    cfg = field.config
    if not cfg.projected_features:
        return "projected_features=False (the naive reference path) is not fused"
    if getattr(cfg, "unseen_points", "empty") not in ("empty", "extrapolate"):
        return f"unseen_points={cfg.unseen_points!r} is not fused"
    if field.depth_embed is not None and tuple(field.depth_embed.inv_scales.shape) != (len(DEPTH_FEATURE_SCALES),):
        return "a depth embedding with other scales is not fused"
    if getattr(cfg, "occlusion_pooling", False):
        return "occlusion_pooling (views hidden by their measured depth left out of the pooling) is not fused"
    if not getattr(cfg, "view_direction", True):
        return "view_direction=False (the no-direction ablation) is not fused"
    for name, child in field.named_children():
        if name in _REFUSED_CHILDREN and child is not None:
            return f"{_REFUSED_CHILDREN[name]} is not fused"
        if name not in _KNOWN_CHILDREN and name not in _REFUSED_CHILDREN:
            return f"unknown field component {name!r} ({type(child).__name__}): not fused"
    if cfg.view_pooling not in ("mean", "mean_var"):
        return f"view_pooling={cfg.view_pooling!r} is not fused"
    if (field.pool_proj is not None) != (cfg.view_pooling == "mean_var"):
        return "pool_proj does not match view_pooling"
    H = int(cfg.hidden_dim)
    if H < 16 or H > MAX_HIDDEN or H & (H - 1):
        return f"hidden_dim={H}: the kernel needs a power of two in [16, {MAX_HIDDEN}]"
    if not 1 <= int(cfg.num_classes) <= MAX_CLASSES:
        return f"num_classes={cfg.num_classes}: the kernel handles 1..{MAX_CLASSES}"
    for emb in (field.embed_xyz, field.embed_dir):
        if not emb.include_input:
            return "a harmonic embedding without its input is not fused"
    for name, blocks in (("blocks", field.blocks), ("semantic_head", field.semantic_head.blocks),
                         ("rgb_density_head", field.rgb_density_head.blocks)):
        if any(type(b) is not ResBlock for b in blocks):
            return f"{name} holds a block other than ResBlock"
    if len(field.semantic_head.blocks) != len(field.rgb_density_head.blocks):
        return "the two heads have different depths"
    if field.rgb_density_head.out.out_features != 4:
        return "the rgb+density head does not output 4 values"
    dtypes = {p.dtype for p in field.parameters()}
    if not dtypes <= {torch.float32, torch.bfloat16, torch.float16}:
        return f"weights of dtype {sorted(map(str, dtypes))}: the kernel reads float32/bfloat16/float16"
    return None


def fused_supported(field: nn.Module, device: torch.device | str, prepared: PreparedSources | None = None,
                    *, interpret: bool | None = None) -> tuple[bool, str]:
    """(True, "") if :func:`fused_field_forward` can evaluate ``field`` on ``device``, else
    (False, the reason). ``prepared`` (optional) is checked too.

    CPU counts as supported only with ``interpret=True`` (the triton interpreter: tests,
    never speed).
    Autograd is checked at call time (the fused path is inference-only).
    """
    device = torch.device(device)
    reason = field_reason(field)
    if reason is not None:
        return False, reason
    from viewseg_core.kernels import triton_available

    ok, why = triton_available()
    if not ok:
        return False, why
    if _interpret_mode(device, interpret):
        pass
    elif device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return False, f"compute capability {major}.{minor} < 8.0 (bf16 tl.dot)"
    else:
        return False, (f"device {device.type}: the fused kernel runs on CUDA (on CPU only under the "
                       "triton interpreter, interpret=True, for tests)")
    if prepared is not None:
        maps = prepared.maps
        if maps.ndim != 4 or maps.shape[1] != field.config.hidden_dim:
            return False, f"prepared maps {tuple(maps.shape)} are not [B*V, hidden, h, w] projected maps"
        if maps.device.type != device.type:
            return False, f"prepared maps on {maps.device}, not {device}"
    return True, ""


# --------------------------------------------------------------------------------------
# Packed weights and maps (cached: a query calls the field per chunk)
# --------------------------------------------------------------------------------------

@dataclass
class _Packed:
    key: tuple
    tensors: dict
    dims: dict


_pack_cache: "weakref.WeakKeyDictionary[nn.Module, _Packed]" = weakref.WeakKeyDictionary()
_maps_cache: dict[int, tuple] = {}
_cache_lock = threading.Lock()
_MAPS_CACHE_SIZE = 8


def _param_key(field: SemanticField) -> tuple:
    return tuple((id(p), p._version, p.device, p.dtype) for p in field.parameters())


def _pack(field: SemanticField, device: torch.device, dot: int) -> _Packed:
    """Weights in the kernel's layout for dot mode ``dot`` (see ``field_triton._mm``)."""
    key = (device, dot, _param_key(field))
    with _cache_lock:
        hit = _pack_cache.get(field)
        if hit is not None and hit.key == key:
            return hit
    cfg = field.config
    H = int(cfg.hidden_dim)
    mat = torch.bfloat16 if dot == 1 else torch.float32

    def to_mat(t: torch.Tensor) -> torch.Tensor:
        if dot == 2:  # bf16 values held in float32
            return t.to(torch.bfloat16).to(torch.float32).contiguous()
        return t

    def f32(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=device, dtype=torch.float32).contiguous()

    def m(t: torch.Tensor) -> torch.Tensor:
        return to_mat(t.detach().to(device=device, dtype=torch.float32))

    def pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
        out = t.new_zeros((rows, t.shape[1]))
        out[: t.shape[0]] = t
        return out

    def pad_cols(t: torch.Tensor, cols: int) -> torch.Tensor:
        out = t.new_zeros((t.shape[0], cols))
        out[:, : t.shape[1]] = t
        return out

    with torch.no_grad():
        w = f32(field.lin_in.weight)                                      # [H, X + D + F]
        X, D = field.xyz_dim, field.dir_dim
        tensors, dims = {}, {}
        for tag, emb, part in (("x", field.embed_xyz, w[:, :X]), ("d", field.embed_dir, w[:, X:X + D])):
            L = emb.n_harmonic
            KP = _pow2(3 * L)
            tensors[f"w{tag}_id"] = part[:, :3].t().contiguous()                      # [3, H] fp32
            tensors[f"w{tag}_sin"] = to_mat(pad_rows(part[:, 3:3 + 3 * L].t(), KP))
            tensors[f"w{tag}_cos"] = to_mat(pad_rows(part[:, 3 + 3 * L:3 + 6 * L].t(), KP))
            freq = f32(emb.frequencies) if L else torch.ones(1, device=device)
            tensors[f"f{tag}"] = freq.contiguous()
            dims[f"L{tag}"], dims[f"K{tag}"] = L, KP
        tensors["b_in"] = f32(field.lin_in.bias)

        def block_stack(blocks) -> tuple[torch.Tensor, torch.Tensor]:
            if len(blocks) == 0:
                return torch.zeros(1, device=device, dtype=mat), torch.zeros(1, device=device)
            ws = torch.stack([torch.stack([m(b.fc0.weight.t()), m(b.fc1.weight.t())]) for b in blocks])
            bs = torch.stack([torch.stack([f32(b.fc0.bias), f32(b.fc1.bias)]) for b in blocks])
            return ws.contiguous(), bs.contiguous()

        tensors["blk_w"], tensors["blk_b"] = block_stack(field.blocks)
        if field.pool_proj is not None:
            pw = f32(field.pool_proj.weight)                                          # [H, 2H]
            tensors["pool_w"] = to_mat(torch.stack([pw[:, :H].t(), pw[:, H:].t()]))
            tensors["pool_b"] = f32(field.pool_proj.bias)
        else:
            tensors["pool_w"] = torch.zeros(1, device=device, dtype=mat)
            tensors["pool_b"] = torch.zeros(1, device=device)
        NHB = len(field.semantic_head.blocks)
        if NHB:
            sw, sb = block_stack(field.semantic_head.blocks)
            rw, rb = block_stack(field.rgb_density_head.blocks)
            tensors["head_w"] = torch.stack([sw, rw]).contiguous()
            tensors["head_b"] = torch.stack([sb, rb]).contiguous()
        else:
            tensors["head_w"] = torch.zeros(1, device=device, dtype=mat)
            tensors["head_b"] = torch.zeros(1, device=device)
        C = int(field.semantic_head.out.out_features)
        CP = _pow2(C)
        tensors["sem_w"] = to_mat(pad_cols(f32(field.semantic_head.out.weight).t(), CP))
        tensors["sem_b"] = pad_rows(f32(field.semantic_head.out.bias)[:, None], CP)[:, 0].contiguous()
        tensors["rgbd_w"] = to_mat(pad_cols(f32(field.rgb_density_head.out.weight).t(), 16))
        tensors["rgbd_b"] = pad_rows(f32(field.rgb_density_head.out.bias)[:, None], 16)[:, 0].contiguous()
        if field.colour_proj is not None:  # [H, 6] -> [6, H]: rows mean(r, g, b), log-variance(r, g, b)
            tensors["colour_w"] = f32(field.colour_proj.weight).t().contiguous()
        else:
            tensors["colour_w"] = torch.zeros(1, device=device)
        de = field.depth_embed
        if de is not None:  # 1 / s per scale; [W_z^T; u]: [NS + 1, H]
            tensors["dscale"] = f32(de.inv_scales)
            tensors["dw"] = torch.cat([f32(de.proj.weight).t(), f32(de.unknown)[None]]).contiguous()
        else:
            tensors["dscale"] = tensors["dw"] = torch.zeros(1, device=device)
        ev = field.depth_evidence
        dims.update(H=H, NB=len(field.blocks), NHB=NHB, C=C, CP=CP, MEAN_VAR=field.pool_proj is not None,
                    SRC_RGB=field.colour_proj is not None, SRC_DEPTH=de is not None,
                    NS=len(DEPTH_FEATURE_SCALES), EVIDENCE=ev is not None,
                    EV_ALPHA=float(ev.log_alpha.detach().float().exp()) if ev is not None else 0.0,
                    EXTRAPOLATE=cfg.unseen_points == "extrapolate")
    packed = _Packed(key, tensors, dims)
    with _cache_lock:
        _pack_cache[field] = packed
    return packed


def _nhwc_maps(maps: torch.Tensor) -> torch.Tensor:
    """[B*V, H, h, w] -> float32 [B*V, h, w, H] contiguous, cached per maps tensor (version)."""
    key = id(maps)
    with _cache_lock:
        hit = _maps_cache.get(key)
        if hit is not None and hit[0]() is maps and hit[1] == maps._version:
            return hit[2]
    out = maps.detach().float().permute(0, 2, 3, 1).contiguous()
    with _cache_lock:
        for k in [k for k, v in _maps_cache.items() if v[0]() is None]:
            del _maps_cache[k]
        while len(_maps_cache) >= _MAPS_CACHE_SIZE:
            del _maps_cache[next(iter(_maps_cache))]
        _maps_cache[key] = (weakref.ref(maps), maps._version, out)
    return out


def clear_caches() -> None:
    """Drop packed weights and NHWC maps (they are also refreshed when weights change)."""
    with _cache_lock:
        _pack_cache.clear()
        _maps_cache.clear()


# --------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------

def fused_field_forward(field: SemanticField, points: torch.Tensor, directions: torch.Tensor,
                        prepared: PreparedSources, *, precision: str | None = None,
                        block_points: int | None = None, num_warps: int | None = None,
                        interpret: bool | None = None) -> FieldOutput:
    """:meth:`SemanticField.forward` as one Triton kernel (see the module docstring).

    Args:
        field, points [B, R, S, 3], directions [B, R, 3], prepared: as for ``field(...)``.
        precision: "bf16" (CUDA default) or "fp32" (IEEE; the interpreter's default).
        block_points, num_warps: launch configuration (defaults: untuned, see the module).
        interpret: run under the triton interpreter (CPU tensors; tests only). Default: compiled.
    Returns:
        FieldOutput: logits [B, R, S, C], rgb [B, R, S, 3], density [B, R, S] float32;
        num_visible [B, R, S] int64.
    Raises:
        FusedFieldUnsupported: the field/mode is not implemented (the caller keeps the
            PyTorch field), or autograd is on and something requires grad.
    """
    device = points.device
    use_interp = _interpret_mode(device, interpret)
    ok, reason = fused_supported(field, device, prepared, interpret=use_interp)
    if not ok:
        raise FusedFieldUnsupported(reason)
    src = prepared.sources
    B, R, S = query_shape(points, directions, src)
    if points.dtype == torch.float64 or directions.dtype == torch.float64:
        raise FusedFieldUnsupported("float64 points: the kernel computes geometry in float32")
    if torch.is_grad_enabled() and (points.requires_grad or directions.requires_grad
                                    or prepared.maps.requires_grad
                                    or any(p.requires_grad for p in field.parameters())):
        raise FusedFieldUnsupported(
            "the fused field is inference-only (no backward kernel; training keeps the PyTorch "
            "field): call it under torch.no_grad() or torch.inference_mode()")
    if precision is None:
        precision = "fp32" if use_interp else "bf16"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    from viewseg_core.kernels import load

    kernels = load("field_triton", interpret=use_interp)
    V = src.num_views
    C = int(field.config.num_classes)
    N = R * S
    f32 = torch.float32
    logits = torch.empty((B, R, S, C), device=device, dtype=f32)
    rgb = torch.empty((B, R, S, 3), device=device, dtype=f32)
    density = torch.empty((B, R, S), device=device, dtype=f32)
    count = torch.empty((B, R, S), device=device, dtype=torch.int64)
    if B == 0 or N == 0:
        return FieldOutput(logits=logits, rgb=rgb, density=density, num_visible=count)

    # Dot mode (field_triton._mm): 0 fp32, 1 bf16 tensor cores, 2 bf16 emulated (interpreter).
    dot = 0 if precision == "fp32" else (2 if use_interp else 1)
    pk = _pack(field, device, dot)
    t, d = pk.tensors, pk.dims
    H = d["H"]
    pts = points.detach().to(f32).contiguous()
    dirs = directions.detach().to(f32).contiguous()
    c2w = src.c2w.detach().to(device=device, dtype=f32)
    cam = torch.cat([c2w[..., :3, :3].reshape(B, V, 9), c2w[..., :3, 3],
                     src.K.detach().to(device=device, dtype=f32).reshape(B, V, 9)], dim=-1).contiguous()
    if src.valid is None:
        valid = torch.ones((B, V), device=device, dtype=torch.int32)
    else:
        valid = src.valid.to(device=device, dtype=torch.int32).contiguous()
    maps = _nhwc_maps(prepared.maps)                                        # [B*V, h, w, H]
    map_h, map_w = int(maps.shape[1]), int(maps.shape[2])
    if d["SRC_RGB"]:
        if prepared.colours is None:
            raise ValueError("this field reads source colours (model config source_rgb: true): pass the "
                             "source images as make_sources(..., rgb=...)")
        colours = prepared.colours.detach().to(device=device, dtype=f32).contiguous()  # [B*V, 3, h, w]
    else:
        colours = torch.zeros(1, device=device)
    col_h, col_w = (int(colours.shape[2]), int(colours.shape[3])) if d["SRC_RGB"] else (1, 1)
    width, height = int(src.width), int(src.height)
    # pixels_to_grid multiplies by float32(2 / width): the same constant here.
    grid_sx = float(torch.tensor(2.0 / width, dtype=f32))
    grid_sy = float(torch.tensor(2.0 / height, dtype=f32))
    has_depth = d["SRC_DEPTH"] and prepared.depth is not None
    if has_depth:
        depth = prepared.depth.detach().to(device=device, dtype=f32).contiguous()        # [B*V, h, w]
        dep_h, dep_w = int(depth.shape[1]), int(depth.shape[2])
    else:
        depth, dep_h, dep_w = torch.zeros(1, device=device), 1, 1
    # SemanticField.depth_difference multiplies by the Python float dep_w / width: in float32.
    dep_sx = float(torch.tensor(dep_w / width, dtype=f32))
    dep_sy = float(torch.tensor(dep_h / height, dtype=f32))

    if block_points is None:
        block_points = INTERPRET_BLOCK_POINTS if use_interp else DEFAULT_BLOCK_POINTS[H]
    if block_points < 16 or block_points & (block_points - 1):
        raise ValueError(f"block_points must be a power of two >= 16, got {block_points}")
    if num_warps is None:
        num_warps = DEFAULT_NUM_WARPS[H]
    grid = (math.ceil(N / block_points), B)
    kernels.field_forward_kernel[grid](
        pts, dirs, cam, valid, maps, colours, t["colour_w"], depth, t["dscale"], t["dw"],
        t["fx"], t["fd"],
        t["wx_id"], t["wx_sin"], t["wx_cos"],
        t["wd_id"], t["wd_sin"], t["wd_cos"], t["b_in"],
        t["blk_w"], t["blk_b"], t["pool_w"], t["pool_b"], t["head_w"], t["head_b"],
        t["sem_w"], t["sem_b"], t["rgbd_w"], t["rgbd_b"],
        logits, rgb, density, count,
        N, S, V, C,
        float(width), float(height), grid_sx, grid_sy, map_w, map_h, float(map_w), float(map_h),
        col_w, col_h, col_h * col_w, float(col_w), float(col_h), COLOUR_VAR_EPS,
        dep_w, dep_h * dep_w, dep_sx, dep_sy, float(dep_w), float(dep_h), d["EV_ALPHA"], EXTRAPOLATE_GRID_LIMIT,
        H=H, LX=d["Lx"], LXS=max(d["Lx"], 1), XP=d["Kx"], LD=d["Ld"], LDS=max(d["Ld"], 1), DP=d["Kd"],
        NB=d["NB"], NHB=d["NHB"], CP=d["CP"], MEAN_VAR=d["MEAN_VAR"],
        BLOCK_P=block_points, VP=_pow2(V, 1), DOT=dot, SRC_RGB=d["SRC_RGB"],
        SRC_DEPTH=d["SRC_DEPTH"], HAS_DEPTH=has_depth, NS=d["NS"], EVIDENCE=d["EVIDENCE"],
        EV_SIGMA_M=EVIDENCE_SIGMA_M, EV_SIGMA_REL=EVIDENCE_SIGMA_REL, EV_FREE=EVIDENCE_FREE_SIGMAS,
        EV_ONSET=EVIDENCE_ONSET, EV_EDGE=EVIDENCE_EDGE, EXTRAPOLATE=d["EXTRAPOLATE"], num_warps=num_warps,
    )
    return FieldOutput(logits=logits, rgb=rgb, density=density, num_visible=count)


def field_macs(field: SemanticField, num_views: int, points: int, rays: int | None = None) -> int:
    """Multiply-adds of one field forward over ``points`` points (architecture count, true
    widths, every view evaluated): the first layer's embedding part (the direction term once
    per ray when ``rays`` is given, as the PyTorch path does; once per point otherwise, as
    the kernel does), the per-view blocks, pooling, heads. Excludes ``prepare``'s 1x1
    convolution and the 3x3 geometry."""
    cfg = field.config
    H, X, D, C = cfg.hidden_dim, field.xyz_dim, field.dir_dim, cfg.num_classes
    groups = points if rays is None else rays
    per_view = points * (X * H + len(field.blocks) * 2 * H * H) + groups * D * H
    per_point = points * (2 * len(field.semantic_head.blocks) * 2 * H * H + H * (C + 4))
    if field.pool_proj is not None:
        per_point += points * 2 * H * H
    if field.colour_proj is not None:
        per_point += points * 6 * H
    if field.depth_embed is not None:
        per_view += points * (len(DEPTH_FEATURE_SCALES) + 1) * H
    return int(num_views * per_view + per_point)


__all__ = ["FusedFieldUnsupported", "PRECISIONS", "fused_supported", "fused_field_forward", "field_reason",
           "field_macs", "clear_caches"]
