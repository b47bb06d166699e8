"""The inference fast path: query presets and a renderer that skips empty space in the fine pass.

:func:`render_query` renders target cameras like :meth:`ViewSeg.render` (same model, same
weights, same outputs) with three differences, each measured against the plain PyTorch
reference path by ``benchmarks/bench_query.py`` (see docs/benchmarks.md):

1. **Sample counts come from a** :class:`QueryPreset`, not from the model config, so a model
   trained with 32 + 32 samples can be queried with the paper's 64 + 128 or with fewer.
2. **Coarse-occupancy skipping** (``skip_weight > 0``): the fine pass evaluates only the
   merged samples whose coarse interval carries render weight >= ``skip_weight`` (an
   interval [t_j, t_j+1] counts max(w_j, w_j+1), the same 2-tap filter that places the
   importance samples). The rest, empty space in front of the first surface and everything
   behind it, get density 0: they neither occlude nor colour the ray. The kept samples are
   packed into a flat list, so the field's cost follows the occupied samples, not
   rays x samples. This is an approximation (the fine field could put density where the
   coarse one saw none); its mIoU cost is measured. ``skip_weight = 0`` evaluates every
   sample and matches :meth:`Renderer.render_image` to float rounding.
3. **Chunks are sized by a memory budget** (points per field call), not by a fixed ray
   count: on CPU, :data:`CPU_BUDGET_BYTES` (3 MiB) of one [points, views, hidden] float32
   activation (3072 points of 4 views at hidden 64), and a share of the free memory on CUDA
   (1/32 per [points, views, hidden] float32 tensor; untuned: no GPU was available), so
   chunks follow the device instead of the original fixed 6000 rays. On the 2-core
   development machine 128-ray chunks once ran 2.4x faster than 2048-ray ones; since the
   field's forward works in place and the process keeps its freed memory, larger calls are
   faster (12288 points against 3072: the ``rgbd`` query in 0.73-0.89x the time, the same
   image bit for bit). CPU calls are padded to a few sizes (:func:`call_bucket`), because
   oneDNN keeps memory for every shape it has run. With that, an RGB-D node at 12288 points
   stayed within a band under twenty minutes of load, but a node of the RGB model drifted
   +11% in ten, so the default stays at 3 MiB and ``query.point_budget: 12288`` is the
   opt-in (docs/benchmarks.md, "CPU point budget"). The rays of one chunk (sampling,
   packing, compositing) are :data:`RAY_CHUNK_CALLS` field calls' worth of dense samples:
   a field call stays within the budget (dense passes are split by rays, packed ones by
   points), while the many small per-chunk operations run a few times per image instead of
   once per field call (on the 2-core CPU, 76 chunks of 256 rays spent most of an ``rgbd``
   query outside the MLP; docs/benchmarks.md, "Ray chunks").

4. **Depth-guided presets** (``guide_samples > 0``, RGB-D keyframes): the coarse samples are
   ``num_coarse`` stratified plus ``guide_samples`` in a band around the surface the source
   depth puts on each ray (:mod:`viewseg_core.model.depth_guide`, splatted once per call;
   band width and footprint from the model config), as a depth-guided model is trained.
   Rays without a candidate, and every ray when the sources carry no depth, get
   ``num_coarse + guide_samples`` stratified samples. With ``skip_free`` the coarse pass
   evaluates only the samples that the source depth does not account for
   (:func:`viewseg_core.model.depth_guide.measured_empty`: unseen by every source, or with
   no measured surface near it and either seen through by a depth camera or behind the
   ray's own candidate surface) and packs them like the fine pass's occupancy skipping;
   the rest get density 0. Unseen points have density 0 in the field anyway (exact; a field
   with ``unseen_points="extrapolate"`` evaluates those in front of a source, so only points
   in front of none count as unseen); the others are an approximation whose cost is
   measured. A ray that comes out below the opacity threshold with samples skipped is
   evaluated again at all of them (the field had not made the measured surface opaque, so
   what lies behind it counts), so skipping never leaves a pixel empty that the full pass
   fills. With ``fine_unexplained`` the fine pass runs only on the rays that the measured
   depth does not explain: no candidate surface, or a coarse depth more than
   :data:`EXPLAINED_BANDS` band half-widths from it along the ray (:func:`explained_rays`);
   the others keep the coarse pass's output, for which the band already sampled the measured
   surface. On the synthetic test split its fine pass evaluated a third of the full fine
   pass's points (3.0 against 9.1 per ray) for the full fine pass's depth
   (docs/benchmarks.md, "Fast preset quality").

5. **The field implementation** (``QueryPreset.field_impl``, overridden by the environment
   variable ``VIEWSEG_FIELD``): ``fused`` evaluates every field call of the query (coarse,
   the coarse re-evaluation of ``skip_free``, fine; all through :class:`FieldChoice`) with
   the fused Triton kernel (:func:`viewseg_core.model.fused_field.fused_field_forward`: the
   whole field in one kernel per tile of points, bf16 ``tl.dot`` with float32 accumulation,
   or IEEE float32 when ``amp`` resolves to ``off``), ``reference`` with the PyTorch
   :class:`SemanticField`. ``auto`` (the default) takes ``fused`` on CUDA where
   :func:`~viewseg_core.model.fused_field.fused_supported` accepts every field of the model,
   and the PyTorch field otherwise; on CPU it never picks the triton interpreter. A forced
   ``fused`` that cannot run raises :class:`~viewseg_core.model.fused_field.FusedFieldUnsupported`
   (one line, with the reason); on CPU it runs under the interpreter only when
   ``TRITON_INTERPRET=1`` is set (parity tests: orders of magnitude slower).
   :attr:`QueryStats.field_impl` says which ran and :attr:`QueryStats.field_note` why
   ``auto`` fell back. Under ``auto`` a run-time failure of the compiled kernel (a compile
   error, no C compiler for triton's launcher) does not fail the query: the PyTorch field
   takes over, for that query and for the rest of the process on that device, with a
   warning and the reason in the stats. Training keeps the PyTorch field (no fused backward).

On CUDA the field's MLP also runs under autocast (``amp``, bf16 by default); the field keeps
projection, embedding and feature sampling in float32 itself, and compositing runs in
float32 in the fused kernel. On CPU, ``amp="bf16"`` (and ``auto`` on CPUs with AVX512-BF16
or AMX) runs the PyTorch field from a bfloat16 copy of its weights instead
(:func:`low_precision_field`, made once per weight version): the field's inference forward
then works in bf16 end to end, where CPU autocast measured no faster (it casts around every
op and takes the field's out-of-place training forward). In either precision the CPU field's
linear layers run with their bias, ReLU and residual add fused into the GEMM
(:mod:`viewseg_core.model.cpu_linear`). The triton interpreter (tests) keeps ``auto`` at
float32 on CPU. Projected feature maps (``projected_features``) are the model's
own default path; :func:`render_query` prepares them once per call, or takes them from
``prepared`` (``viewseg_node`` keeps them per keyframe set:
:mod:`viewseg_core.model.prepared_cache`).
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
import warnings
import weakref
from dataclasses import dataclass, field as dc_field, fields, replace
from typing import Callable

import torch

from viewseg_core.model.depth_guide import measured_empty
from viewseg_core.model.field import FieldOutput, PreparedSources, SemanticField, SourceViews
from viewseg_core.model.fused_field import FusedFieldUnsupported, fused_field_forward, fused_supported
from viewseg_core.model.renderer import PassOutput, Renderer
from viewseg_core.rays import RayBundle, grid_rays
from viewseg_core.sampling import hierarchical_samples
from viewseg_core.volrend import render_weights

AMP_MODES = ("auto", "off", "bf16", "fp16")
FIELD_IMPLS = ("auto", "fused", "reference")
FIELD_ENV = "VIEWSEG_FIELD"   # overrides QueryPreset.field_impl (benchmarks, tests)
# Default per-call budget: bytes of one [points, views, hidden] float32 activation (module
# docstring, item 3; docs/benchmarks.md, "CPU point budget").
CPU_BUDGET_BYTES = 3 << 20
CUDA_FREE_MEMORY_SHARE = 1 / 32   # the field holds ~10 such tensors at its peak
# Dense samples per ray chunk, in field calls (module docstring, item 3). A cancelled render
# stops before its next field call, not at the end of a chunk (about 0.1 s at 8 on the 2-core CPU).
RAY_CHUNK_CALLS = 8
# A CPU field call of more than an eighth of its pass's most rays per call is padded to one of
# this many sizes (call_bucket; 0: ray_bucket's finer steps only).
LARGE_CALL_SIZES = 8


class RenderCancelled(RuntimeError):
    """:func:`render_query` stopped before a field call because ``should_stop`` said so;
    ``stats`` is the work done until then (a caller's cost model learns from it too): the rays
    and points of the chunks that finished, and every field call made."""

    def __init__(self, message: str, stats: "QueryStats"):
        super().__init__(message)
        self.stats = stats


class _StopAsked(Exception):
    """Raised by :class:`FieldChoice` before a field call that ``should_stop`` refused; the
    query loop turns it into :class:`RenderCancelled` with its stats."""


@dataclass(frozen=True)
class QueryPreset:
    """How to render a query image (inference only; the model's weights are unchanged).

    Attributes:
        name: label for tables.
        num_coarse / num_fine: samples per ray (fine: importance samples, evaluated together
            with the coarse ones, as in training); num_fine 0 = coarse pass only.
        skip_weight: fine-pass occupancy threshold (0 = evaluate every merged sample).
        amp: the MLP's precision: ``auto`` (bf16 on CUDA; on CPU bf16 where the CPU has it
            natively, :func:`cpu_weights_dtype`, else float32), ``off`` (float32), ``bf16``
            (CUDA: autocast; CPU: a bf16 copy of the field's weights, see the module
            docstring), ``fp16`` (CUDA autocast only). :attr:`QueryStats.precision` says
            what ran.
        point_budget: points per field call (0 = from the device, see the module docstring).
        guide_samples: depth-guided band samples per ray added to the coarse pass (0 = none;
            ``num_coarse`` then counts its stratified samples).
        skip_free: the coarse pass skips what the source depth accounts for as empty or
            hidden (needs source depth to skip more than the points no source sees; see
            the module docstring).
        field_impl: ``auto`` | ``fused`` | ``reference``: which implementation evaluates the
            fields (module docstring, item 5; the environment variable ``VIEWSEG_FIELD``
            overrides it).
        fine_unexplained: the fine pass only on the rays whose coarse depth the source depth
            does not explain (module docstring, item 4); the rest keep the coarse pass.
    """

    name: str
    num_coarse: int
    num_fine: int
    skip_weight: float = 0.0
    amp: str = "auto"
    point_budget: int = 0
    guide_samples: int = 0
    skip_free: bool = False
    field_impl: str = "auto"
    fine_unexplained: bool = False

    def __post_init__(self) -> None:
        if self.num_coarse < 2 and self.num_fine > 0:
            raise ValueError(f"QueryPreset {self.name!r}: importance sampling needs num_coarse >= 2")
        if self.num_coarse <= 0 or self.num_fine < 0:
            raise ValueError(f"QueryPreset {self.name!r}: need num_coarse > 0 and num_fine >= 0, got "
                             f"{self.num_coarse}, {self.num_fine}")
        if not 0.0 <= self.skip_weight < 1.0:
            raise ValueError(f"QueryPreset {self.name!r}: skip_weight must be in [0, 1), got {self.skip_weight}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"QueryPreset {self.name!r}: amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.point_budget < 0:
            raise ValueError(f"QueryPreset {self.name!r}: point_budget must be >= 0, got {self.point_budget}")
        if self.guide_samples < 0:
            raise ValueError(f"QueryPreset {self.name!r}: guide_samples must be >= 0, got {self.guide_samples}")
        if self.field_impl not in FIELD_IMPLS:
            raise ValueError(f"QueryPreset {self.name!r}: field_impl must be one of {FIELD_IMPLS}, "
                             f"got {self.field_impl!r}")
        if self.fine_unexplained and (self.guide_samples == 0 or self.num_fine == 0):
            raise ValueError(f"QueryPreset {self.name!r}: fine_unexplained needs band samples and a fine pass "
                             f"(guide_samples > 0 and num_fine > 0), got {self.guide_samples} and {self.num_fine}")

    @property
    def coarse_samples(self) -> int:
        """Samples per ray in the coarse pass (stratified + band)."""
        return self.num_coarse + self.guide_samples

    @property
    def label(self) -> str:
        skip = f" skip<{self.skip_weight:g}" if self.skip_weight > 0 else ""
        guided = f"{self.num_coarse}s+{self.guide_samples}b" if self.guide_samples else f"{self.num_coarse}"
        free = " free-skip" if self.skip_free else ""
        unexplained = " fine-unexplained" if self.fine_unexplained else ""
        amp = "" if self.amp == "auto" else f" {self.amp}"
        budget = f" {self.point_budget}/call" if self.point_budget else ""
        samples = f"{guided}+{self.num_fine}{skip}{free}{unexplained}{amp}{budget}"
        return samples if self.name in ("", samples) else f"{self.name} ({samples})"


PRESETS: dict[str, QueryPreset] = {
    # The paper's sampling, every sample evaluated: the same image as the reference path.
    "paper": QueryPreset("paper", 64, 128),
    # 21.7 points/ray instead of 256: chosen for the 2-core CPU target; on the synthetic test
    # split no measurable mIoU cost vs 32+32 (docs/benchmarks.md, "Fast preset quality").
    "fast": QueryPreset("fast", 8, 8, skip_weight=1e-3),
    # RGB-D keyframes, one pass: 8 stratified + 4 band samples around the measured surface,
    # skipping what the source depth accounts for as empty or hidden (5.6 of the 12 evaluated
    # on the 160x120 bench scene with sensor depth, plus the rays evaluated again below the
    # opacity threshold); rgbd_full: 8 + 8 (the training default), all 16 evaluated. Chosen
    # on speed and a first look at quality (an early RGB-D checkpoint on 4 synthetic rooms);
    # the test split with a trained model decides (benchmarks/bench_query.py --miou).
    "rgbd": QueryPreset("rgbd", 8, 0, guide_samples=4, skip_free=True),
    "rgbd_full": QueryPreset("rgbd_full", 8, 0, guide_samples=8),
    # rgbd plus a 4-sample fine pass on the rays whose coarse depth the measured depth does not
    # explain (no candidate surface, or rendered away from it): the full fine pass's depth on
    # the synthetic test split for 9.7 points per ray instead of 15.8 (docs/benchmarks.md,
    # "Fast preset quality").
    "rgbd_fine": QueryPreset("rgbd_fine", 8, 4, skip_weight=1e-3, guide_samples=4, skip_free=True,
                             fine_unexplained=True),
}
# A ray's coarse depth is "explained" by its candidate surface within this many band half-widths.
EXPLAINED_BANDS = 2.0


def trained_preset(renderer: Renderer, name: str = "checkpoint") -> QueryPreset:
    """The samples the model was trained with: its coarse samples (plus its band samples when
    it is depth-guided) and fine samples (0 without a fine field), nothing skipped."""
    cfg = renderer.config
    return QueryPreset(name, cfg.num_coarse, cfg.num_fine if renderer.fine is not None else 0,
                       guide_samples=cfg.guide_samples if cfg.depth_guided else 0)


@dataclass
class QueryStats:
    """Work done by one :func:`render_query_stats` call.

    Attributes:
        rays: rays rendered (all cameras of the batch).
        coarse_points / fine_points: field evaluations per pass (fine: after skipping).
        fine_points_dense: fine evaluations without skipping (rays x (coarse + fine)).
        field_calls: calls of a field (chunks).
        rays_done: rays of the chunks finished (``rays`` unless the render was cancelled).
        field_impl: the field implementation that ran: ``fused`` or ``reference``.
        field_note: why ``auto`` kept the PyTorch field ('' when fused ran or was not asked for).
        precision: the MLP's arithmetic: ``fp32``, ``bf16`` or ``fp16`` (what ``amp`` resolved to).
    """

    rays: int = 0
    rays_done: int = 0
    coarse_points: int = 0
    fine_points: int = 0
    fine_points_dense: int = 0
    field_calls: int = 0
    field_impl: str = ""
    field_note: str = ""
    precision: str = ""

    @property
    def points_per_ray(self) -> float:
        return (self.coarse_points + self.fine_points) / max(1, self.rays_done)


def point_budget(preset: QueryPreset, field: SemanticField, num_views: int, device: torch.device) -> int:
    """Points per field call: ``preset.point_budget`` or the device default (>= 1)."""
    if preset.point_budget:
        return preset.point_budget
    per_point = 4 * max(1, num_views) * field.config.hidden_dim
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = int(free * CUDA_FREE_MEMORY_SHARE)
    else:
        budget = CPU_BUDGET_BYTES
    return max(1, budget // per_point)


def check_amp(preset: QueryPreset, device: torch.device | str) -> None:
    """Refuses a precision the device cannot run (a node checks at start what a query would
    otherwise refuse at its first render)."""
    device = torch.device(device)
    if _amp_mode(preset, device) == "fp16" and device.type != "cuda":
        raise ValueError("amp fp16 needs CUDA (on CPU use bf16 or off)")


def _autocast(preset: QueryPreset, device: torch.device):
    check_amp(preset, device)
    mode = _amp_mode(preset, device)
    if mode == "off" or device.type == "cpu":  # CPU bf16: the field's weights (low_precision_field)
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


_low_precision: "weakref.WeakKeyDictionary[SemanticField, tuple[tuple, SemanticField]]" = weakref.WeakKeyDictionary()
_low_precision_lock = threading.Lock()


def low_precision_field(field: SemanticField, dtype: torch.dtype) -> SemanticField:
    """``field`` with its weights and buffers in ``dtype`` (inference only): a copy, kept while
    the original's parameters are the same tensors at the same version, so a query pays the
    cast once and a training step or ``load_state_dict`` (both bump the versions) is seen."""
    key = (dtype, tuple((p.data_ptr(), p._version) for p in field.parameters()))
    with _low_precision_lock:
        hit = _low_precision.get(field)
        if hit is not None and hit[0] == key:
            return hit[1]
        low = copy.deepcopy(field).to(dtype).eval().requires_grad_(False)
        _low_precision[field] = (key, low)
        return low


def _amp_mode(preset: QueryPreset, device: torch.device) -> str:
    return ("bf16" if device.type == "cuda" else "off") if preset.amp == "auto" else preset.amp


def _precision(evaluate: "FieldChoice", fused: bool, preset: QueryPreset, device: torch.device) -> str:
    """What :attr:`QueryStats.precision` reports for a query's MLP."""
    if fused:
        return evaluate.precision
    if evaluate.weights_dtype is not None:
        return "bf16"
    amp = _amp_mode(preset, device)
    return "fp32" if amp == "off" or device.type == "cpu" else amp


def cpu_has_native_bf16() -> bool:
    """The CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and
    slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: do not guess
        return False


def cpu_weights_dtype(preset: QueryPreset) -> torch.dtype | None:
    """The dtype of the PyTorch field's weights for a CPU query (None: the field's own):
    ``bf16`` always, ``auto`` on CPUs with native bf16, where it measured 0.8x the float32
    time at the same mIoU (docs/benchmarks.md, "CPU bf16")."""
    if preset.amp == "bf16" or (preset.amp == "auto" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


@dataclass(frozen=True)
class FieldChoice:
    """The one dispatch point of a query's field evaluations (coarse, coarse re-evaluation,
    fine): call it like the field, ``choice(field, points, directions, prepared)``.

    Attributes:
        impl: ``fused`` or ``reference`` (what runs).
        requested: ``auto``, ``fused`` or ``reference`` (what was asked for).
        source: where the request came from: ``preset`` or ``VIEWSEG_FIELD``.
        note: why ``auto`` took the PyTorch field ('' otherwise).
        precision: the fused kernel's dot precision (``bf16`` or ``fp32``); None for reference.
        interpret: the fused kernel runs under the triton interpreter (CPU tests only).
        failure: under ``auto``, why the fused kernel failed at run time (a compile error, a
            missing C compiler for triton's launcher, ...): that call and the rest of the query
            ran the PyTorch field, and ``auto`` keeps it on that device for the process
            (:func:`fused_failures`). A forced ``fused`` raises instead.
        should_stop: asked before every call; True stops the query (:class:`RenderCancelled`).
            Here because every field evaluation of a query passes through this one object, so
            a deadline is honoured to within one field call, whatever the chunking.
        weights_dtype: the PyTorch field runs from a copy with weights in this dtype
            (:func:`low_precision_field`; CPU bf16); None: the field as it is.
    """

    impl: str
    requested: str = "reference"
    source: str = "preset"
    note: str = ""
    precision: str | None = None
    interpret: bool = False
    failure: list = dc_field(default_factory=list, compare=False, repr=False)
    should_stop: Callable[[], bool] | None = dc_field(default=None, compare=False, repr=False)
    weights_dtype: torch.dtype | None = None

    def __call__(self, field: SemanticField, points: torch.Tensor, directions: torch.Tensor,
                 prepared: PreparedSources, per_call: int = 0) -> FieldOutput:
        """``per_call``: the most rays the calling pass puts in one call (CPU padding,
        :func:`call_bucket`; 0 = unknown)."""
        if self.should_stop is not None and self.should_stop():
            raise _StopAsked
        if self.impl != "fused" or self.failure:
            return self._reference(field, points, directions, prepared, per_call)
        if self.requested != "auto":
            return fused_field_forward(field, points, directions, prepared, precision=self.precision,
                                       interpret=self.interpret)
        try:
            return fused_field_forward(field, points, directions, prepared, precision=self.precision,
                                       interpret=self.interpret)
        except torch.cuda.OutOfMemoryError:
            raise
        except FusedFieldUnsupported as exc:  # this query's inputs (not the device): this query only
            self.failure.append(f"{type(exc).__name__}: {exc}")
            return self._reference(field, points, directions, prepared, per_call)
        except Exception as exc:  # noqa: BLE001 - auto must not take a query down with the kernel
            why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
            self.failure.append(why)
            with _failures_lock:
                _fused_failed[str(points.device)] = why
            warnings.warn(f"fused field kernel failed on {points.device} ({why}); field_impl=auto uses the "
                          "PyTorch field there from now on", RuntimeWarning, stacklevel=2)
            return self._reference(field, points, directions, prepared, per_call)

    def _reference(self, field: SemanticField, points: torch.Tensor, directions: torch.Tensor,
                   prepared: PreparedSources, per_call: int = 0) -> FieldOutput:
        """The PyTorch field, from its ``weights_dtype`` copy where one is asked for; a CPU
        inference call with its rays padded to :func:`call_bucket` (see there)."""
        if torch.is_grad_enabled():
            return field(points, directions, prepared)
        if self.weights_dtype is not None:
            field = low_precision_field(field, self.weights_dtype)
        if points.device.type == "cpu":
            return padded_field_call(field, points, directions, prepared, per_call)
        return field(points, directions, prepared)


def ray_bucket(rays: int) -> int:
    """``rays`` rounded up to one of a few sizes: a multiple of 16 below 512, above that a
    multiple of a 16th of the largest power of two not above it (at most 6.25% more rays; 56
    sizes up to 1536).

    Why: a query's field calls have as many shapes as its chunks have ray counts, and on the
    CPU every new shape costs memory that is never given back (:func:`call_bucket` pads the
    large calls coarser still). oneDNN's bf16 GEMMs keep memory
    for each shape they have run, outside the primitive cache that
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` bounds. In float32, the freed tensors of one shape
    seldom fit the next, so glibc's heap grows around them. A node that rendered for 10
    minutes grew by gigabytes (docs/benchmarks.md, "Load"); with the rays bucketed the shapes
    repeat and its memory levels off, at the same speed. The price: a call may hold a few more
    points than the point budget (6.25% at most from 256 rays up, 15 rays below), computed for
    nothing.
    """
    if rays < 1:
        raise ValueError(f"ray_bucket: need at least one ray, got {rays}")
    step = max(16, 1 << max(0, rays.bit_length() - 5))
    return -(-rays // step) * step


def call_bucket(rays: int, per_call: int = 0) -> int:
    """The rays a CPU field call of ``rays`` is padded to, in a pass that puts at most
    ``per_call`` rays in one call (0: unknown): above an eighth of ``per_call``
    (:data:`LARGE_CALL_SIZES`), the next multiple of that eighth, never past ``per_call``;
    below it, :func:`ray_bucket`.

    Why: :func:`ray_bucket`'s 6.25% steps give a pass of a large budget many large shapes
    (72 from 512 rays to 12288), and oneDNN's bf16 GEMMs keep memory for each shape
    they have run; this gives the large calls 8 shapes whatever the budget, for at most an
    eighth of a call computed for nothing at the end of a pass (docs/benchmarks.md, "CPU
    point budget").
    """
    if per_call > 0 and LARGE_CALL_SIZES > 0:
        step = -(-per_call // LARGE_CALL_SIZES)
        if rays > step:
            return min(-(-rays // step) * step, max(per_call, rays))
    return ray_bucket(rays)


def padded_field_call(field: SemanticField, points: torch.Tensor, directions: torch.Tensor,
                      prepared: PreparedSources, per_call: int = 0) -> FieldOutput:
    """``field(points, directions, prepared)`` on [B, R, S, 3] points with R padded to
    :func:`call_bucket` (``per_call``: the pass's most rays in one call) by repeating the last
    ray; the padding is cut off again, so the result is the plain call's (every point is
    evaluated on its own)."""
    rays = points.shape[1]
    padded = call_bucket(rays, per_call)
    if padded == rays:
        return field(points, directions, prepared)
    extra = padded - rays
    points = torch.cat([points, points[:, -1:].expand(-1, extra, -1, -1)], dim=1)
    directions = torch.cat([directions, directions[:, -1:].expand(-1, extra, -1)], dim=1)
    out = field(points, directions, prepared)
    return FieldOutput(*(getattr(out, f.name)[:, :rays] for f in fields(FieldOutput)))


# Devices where the compiled fused kernel failed at run time under ``auto`` (why): ``auto``
# keeps the PyTorch field there for the rest of the process.
_fused_failed: dict[str, str] = {}
_failures_lock = threading.Lock()


def fused_failures(clear: bool = False) -> dict[str, str]:
    """{device: why} where the fused kernel failed under ``auto`` (``clear``: forget them, so
    that ``auto`` tries again)."""
    with _failures_lock:
        out = dict(_fused_failed)
        if clear:
            _fused_failed.clear()
    return out


REFERENCE_FIELD = FieldChoice("reference")


def requested_field_impl(preset: QueryPreset) -> tuple[str, str]:
    """(``auto`` | ``fused`` | ``reference``, where from): ``VIEWSEG_FIELD`` when set, else the preset's."""
    env = os.environ.get(FIELD_ENV, "").strip().lower()
    if not env:
        return preset.field_impl, "preset"
    if env not in FIELD_IMPLS:
        raise ValueError(f"{FIELD_ENV}={env!r}: use one of {', '.join(FIELD_IMPLS)}")
    return env, FIELD_ENV


def choose_field(renderer: Renderer, preset: QueryPreset, device: torch.device | str,
                 prepared: tuple[PreparedSources, PreparedSources | None] | None = None,
                 dtype: torch.dtype = torch.float32) -> FieldChoice:
    """Which implementation evaluates the query's fields (module docstring, item 5).

    ``auto``: fused on CUDA when :func:`fused_supported` accepts every field the preset uses
    (with its prepared maps), the cameras (``dtype``) are not float64, autograd is off and
    the kernel has not failed on the device before (:func:`fused_failures`), else the
    PyTorch field. ``fused``: the same checks, raising :class:`FusedFieldUnsupported` (one
    line, the reason) when they fail; a CPU device needs ``TRITON_INTERPRET=1`` (the
    interpreter).
    """
    device = torch.device(device)
    requested, source = requested_field_impl(preset)
    if requested == "reference":
        return FieldChoice("reference", requested, source)
    from viewseg_core.kernels import interpret_requested

    # The interpreter only on explicit request: a forced ``fused`` on a non-CUDA device
    # with TRITON_INTERPRET=1 in the environment (``auto`` never runs it).
    interpret = requested == "fused" and device.type != "cuda" and interpret_requested()
    fields_used = [(renderer.coarse, None if prepared is None else prepared[0])]
    if preset.num_fine > 0 and renderer.fine is not None:
        fields_used.append((renderer.fine, None if prepared is None else prepared[1]))
    reason = ""
    with _failures_lock:
        failed = _fused_failed.get(str(device)) if requested == "auto" else None
    if failed:
        reason = f"the fused kernel failed earlier on {device} ({failed})"
    elif dtype == torch.float64:
        reason = "float64 cameras: the fused kernel computes geometry in float32"
    elif torch.is_grad_enabled():
        reason = "autograd is on (the fused field is inference-only; training keeps the PyTorch field)"
    else:
        for field, prep in fields_used:
            ok, why = fused_supported(field, device, prep, interpret=interpret)
            if not ok:
                reason = why
                break
    if reason:
        if requested == "fused":
            hint = ("; set TRITON_INTERPRET=1 to run it under the triton interpreter (tests only)"
                    if device.type != "cuda" and not interpret else "")
            where = f"{FIELD_ENV}=fused" if source == FIELD_ENV else "field_impl='fused'"
            raise FusedFieldUnsupported(f"{where}: {reason}{hint}".replace("\n", " "))
        return FieldChoice("reference", requested, source, note=reason)
    precision = "fp32" if _amp_mode(preset, device) == "off" else "bf16"
    return FieldChoice("fused", requested, source, precision=precision, interpret=interpret)


def occupied_samples(t_coarse: torch.Tensor, coarse_weights: torch.Tensor, t: torch.Tensor,
                     skip_weight: float) -> torch.Tensor:
    """Which samples ``t`` lie in a coarse interval with render weight >= ``skip_weight``.

    Interval j = [t_j, t_j+1] counts max(w_j, w_j+1); before t_0 counts w_0 and after the
    last coarse sample counts w_last.
    Args:
        t_coarse: [..., Sc] sorted; coarse_weights: [..., Sc]; t: [..., S] sorted.
    Returns:
        [..., S] bool.
    """
    w = coarse_weights.detach().to(t_coarse.dtype)
    interval = torch.maximum(w[..., :-1], w[..., 1:])                          # [..., Sc-1]
    per_slot = torch.cat([w[..., :1], interval, w[..., -1:]], dim=-1)           # [..., Sc+1]
    slot = torch.searchsorted(t_coarse.contiguous(), t.contiguous(), right=True)  # 0..Sc
    return per_slot.gather(-1, slot) >= skip_weight


def _evaluate_in_calls(evaluate: FieldChoice, field: SemanticField, prepared: PreparedSources,
                       points: torch.Tensor, directions: torch.Tensor, rays_per_call: int,
                       stats: QueryStats) -> FieldOutput:
    """The field at ``points`` [B, R, S, 3] (``directions`` [B, R, 3]), ``rays_per_call`` rays
    per call (counted in ``stats.field_calls``), the outputs joined along R."""
    R = points.shape[1]
    outs = []
    for start in range(0, R, rays_per_call):
        sl = slice(start, start + rays_per_call)
        outs.append(evaluate(field, points[:, sl], directions[:, sl], prepared, per_call=rays_per_call))
        stats.field_calls += 1
    if len(outs) == 1:
        return outs[0]
    return FieldOutput(**{f.name: torch.cat([getattr(o, f.name) for o in outs], dim=1) for f in fields(FieldOutput)})


def _eval_packed(field: SemanticField, prepared: PreparedSources, points: torch.Tensor,
                 directions: torch.Tensor, keep: torch.Tensor, budget: int, stats: QueryStats,
                 count_as: str = "fine_points", evaluate: FieldChoice = REFERENCE_FIELD) -> FieldOutput:
    """The field at the kept samples only; skipped samples get zeros (density 0).

    Args:
        points: [B, R, S, 3]; directions: [B, R, 3]; keep: [B, R, S] bool.
        count_as: the QueryStats counter the evaluated points add to.
        evaluate: the field implementation (:class:`FieldChoice`).
    Returns:
        FieldOutput with [B, R, S, ...] tensors.
    """
    B, R, S, _ = points.shape
    M = R * S
    keep = keep.reshape(B, M)
    count = keep.sum(dim=1)                                                     # [B]
    N = int(count.max())
    if N == 0:  # nothing occupied in this chunk: an empty fine pass
        zeros = points.new_zeros((B, R, S))
        return FieldOutput(logits=points.new_zeros((B, R, S, field.config.num_classes)),
                           rgb=points.new_zeros((B, R, S, 3)), density=zeros,
                           num_visible=torch.zeros((B, R, S), dtype=torch.int64, device=points.device))
    # Kept samples first (stable: ray order is kept); slots past a batch element's count
    # hold its skipped samples and are written back as zeros.
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :N]   # [B, N]
    valid = torch.arange(N, device=keep.device)[None] < count[:, None]          # [B, N]
    pts = points.reshape(B, M, 3).gather(1, order[..., None].expand(B, N, 3))
    dirs = directions.gather(1, (order // S)[..., None].expand(B, N, 3))
    # budget // B kept samples per batch element: a call holds at most ``budget`` points in all.
    out = _evaluate_in_calls(evaluate, field, prepared, pts[:, :, None], dirs, max(1, budget // B), stats)
    setattr(stats, count_as, getattr(stats, count_as) + int(count.sum()))

    def scatter(name: str) -> torch.Tensor:
        vals = getattr(out, name)[:, :, 0]                                     # [B, N, ...]
        vals = torch.where(valid.reshape(B, N, *([1] * (vals.ndim - 2))), vals, 0)
        full = vals.new_zeros((B, M, *vals.shape[2:]))
        idx = order.reshape(B, N, *([1] * (vals.ndim - 2))).expand_as(vals)
        return full.scatter_(1, idx, vals).reshape(B, R, S, *vals.shape[2:])

    return FieldOutput(logits=scatter("logits"), rgb=scatter("rgb"), density=scatter("density"),
                       num_visible=scatter("num_visible"))


def _eval_dense(evaluate: FieldChoice, field: SemanticField, prepared: PreparedSources, points: torch.Tensor,
                directions: torch.Tensor, budget: int, stats: QueryStats, count_as: str) -> FieldOutput:
    """The field at every sample, in calls of at most ``budget`` points (split by rays).

    Args:
        points: [B, R, S, 3]; directions: [B, R, 3].
    Returns:
        FieldOutput with [B, R, S, ...] tensors.
    """
    B, R, S, _ = points.shape
    setattr(stats, count_as, getattr(stats, count_as) + points[..., 0].numel())
    return _evaluate_in_calls(evaluate, field, prepared, points, directions, max(1, budget // (B * S)), stats)


def _coarse_skipping_free(renderer: Renderer, prepared: PreparedSources, rays: RayBundle, t: torch.Tensor,
                          guide: torch.Tensor | None, budget: int, stats: QueryStats,
                          evaluate: FieldChoice = REFERENCE_FIELD) -> FieldOutput:
    """The coarse field at the samples ``t`` [B, R, S] that the source depth does not account
    for (:func:`measured_empty`); skipped samples get density 0.

    Fallback: a ray that comes out below the opacity threshold although samples of it were
    skipped (the field had not concentrated its surface in the band, so what lay behind it
    mattered) is evaluated again at every sample, so skipping never turns a ray the full pass
    would render into background.
    """
    src, points, band = prepared.sources, rays.points(t), renderer.config.guide_band
    behind = None if guide is None else t > (farthest_candidate(guide, rays) + band)[..., None]  # NaN: False
    skip = measured_empty(points, src.depth, src.K, src.c2w, src.height, src.width, band, src.valid, behind,
                          extrapolate=renderer.coarse.config.unseen_points == "extrapolate")
    out = _eval_packed(renderer.coarse, prepared, points, rays.directions, ~skip, budget, stats,
                       count_as="coarse_points", evaluate=evaluate)
    weights, _, _ = render_weights(out.density.to(t.dtype), t, rays.far)
    redo = skip & (weights.sum(-1) < renderer.config.opacity_threshold)[..., None]  # [B, R, S]
    if not bool(redo.any()):
        return out
    extra = _eval_packed(renderer.coarse, prepared, points, rays.directions, redo, budget, stats,
                         count_as="coarse_points", evaluate=evaluate)
    return _where(redo, extra, out)


def _render_rays(renderer: Renderer, rays: RayBundle, prepared, preset: QueryPreset, budget: int,
                 stats: QueryStats, guide: torch.Tensor | None = None,
                 evaluate: FieldChoice = REFERENCE_FIELD) -> PassOutput:
    """Coarse pass (depth-guided where ``guide`` [B, R] is given), then the (skipping) fine
    pass, for rays [B, R]; every field evaluation goes through ``evaluate``."""
    prep_c, prep_f = prepared
    B, R = rays.shape
    t_c = renderer.coarse_samples(rays, guide, perturb=False, num_coarse=preset.num_coarse,
                                  guide_samples=preset.guide_samples)
    if preset.skip_free:
        coarse = _coarse_skipping_free(renderer, prep_c, rays, t_c, guide, budget, stats, evaluate)
    else:
        coarse = _eval_dense(evaluate, renderer.coarse, prep_c, rays.points(t_c), rays.directions, budget, stats,
                             "coarse_points")
    if preset.num_fine == 0:
        return renderer.composite_pass(coarse, rays, t_c)
    weights, _, _ = render_weights(coarse.density.to(t_c.dtype), t_c, rays.far)
    t_f = hierarchical_samples(t_c, weights, preset.num_fine, perturb=False)
    stats.fine_points_dense += t_f.numel()
    points = rays.points(t_f)
    explained = None
    if preset.fine_unexplained and guide is not None:
        coarse_pass = renderer.composite_pass(coarse, rays, t_c)
        explained = explained_rays(coarse_pass, rays, guide, EXPLAINED_BANDS * renderer.config.guide_band)
    if preset.skip_weight > 0 or explained is not None:
        keep = occupied_samples(t_c, weights, t_f, preset.skip_weight) if preset.skip_weight > 0 \
            else torch.ones_like(t_f, dtype=torch.bool)
        if explained is not None:
            keep = keep & ~explained[..., None]
        fine = _eval_packed(renderer.fine, prep_f, points, rays.directions, keep, budget, stats,
                            evaluate=evaluate)
    else:
        fine = _eval_dense(evaluate, renderer.fine, prep_f, points, rays.directions, budget, stats, "fine_points")
    fine_pass = renderer.composite_pass(fine, rays, t_f)
    if explained is None:
        return fine_pass
    # weights and t have each pass's own sample count: the merged image has none.
    return _where(explained, replace(coarse_pass, weights=None, t=None), replace(fine_pass, weights=None, t=None))


def _where(mask: torch.Tensor, a, b):
    """The dataclass (FieldOutput, PassOutput) with ``a``'s tensors where ``mask`` [*M] is True
    and ``b``'s elsewhere; every tensor is [*M, ...]; None fields stay None."""
    def pick(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        return torch.where(mask.reshape(*mask.shape, *([1] * (x.ndim - mask.ndim))), x, y)
    return type(a)(**{f.name: pick(getattr(a, f.name), getattr(b, f.name)) for f in fields(a)})


def candidate_layers(guide: torch.Tensor, rays: RayBundle) -> torch.Tensor:
    """Candidate distances [B, R] or [B, R, L] (:meth:`Renderer.guides`) -> [B, R, L]."""
    return guide if guide.ndim == len(rays.shape) + 1 else guide[..., None]


def farthest_candidate(guide: torch.Tensor, rays: RayBundle) -> torch.Tensor:
    """[B, R]: each ray's farthest candidate surface distance (NaN: none)."""
    layers = candidate_layers(guide, rays)
    known = torch.isfinite(layers)
    return torch.where(known.any(-1), torch.where(known, layers, -math.inf).amax(-1), math.nan)


def explained_rays(coarse: PassOutput, rays: RayBundle, guide: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Rays [B, R] whose coarse pass rendered a surface within ``tolerance`` metres (along the
    ray) of a candidate surface ``guide`` [B, R] or [B, R, L] that the source depth put there
    (NaN: none, never explained): the fine pass of ``fine_unexplained`` leaves them to the
    coarse pass."""
    distance = coarse.depth / rays.z_axis.to(coarse.depth.dtype)      # NaN where the ray is background
    layers = candidate_layers(guide, rays).to(distance.dtype)
    return (torch.isfinite(layers) & ((distance[..., None] - layers).abs() <= tolerance)).any(-1)


@torch.no_grad()
def render_query_stats(model, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
                       sources: SourceViews, preset: QueryPreset | str = "fast",
                       prepared: tuple[PreparedSources, PreparedSources | None] | None = None,
                       should_stop: Callable[[], bool] | None = None,
                       ) -> tuple[PassOutput, QueryStats]:
    """:func:`render_query` plus the work it did (:class:`QueryStats`)."""
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    renderer: Renderer = model.renderer
    if preset.num_fine > 0 and renderer.fine is None:
        raise ValueError(f"preset {preset.label} has a fine pass, the model has no fine field (num_fine=0)")
    single = K.ndim == 2
    dev = sources.features.device
    dtype = torch.promote_types(sources.c2w.dtype, torch.float32)
    K, c2w = K.to(dev, dtype), c2w.to(dev, dtype)
    if single:
        K, c2w = K[None], c2w[None]
    B = sources.batch_size
    if K.shape != (B, 3, 3) or c2w.shape != (B, 4, 4):
        raise ValueError(f"render_query: K must be [{B}, 3, 3] and c2w [{B}, 4, 4], "
                         f"got {tuple(K.shape)} and {tuple(c2w.shape)}")
    cfg = renderer.config
    rays = grid_rays(K, c2w, height, width, near=cfg.near, far=cfg.far)          # [B, H*W]
    if prepared is None:
        prepared = renderer.prepare(sources)
    evaluate = replace(choose_field(renderer, preset, dev, prepared, dtype), should_stop=should_stop,
                       weights_dtype=cpu_weights_dtype(preset) if dev.type == "cpu" else None)
    budget = point_budget(preset, renderer.coarse, sources.num_views, dev)
    # Rays per chunk (over the whole batch): RAY_CHUNK_CALLS budgets of the densest pass's
    # samples; every pass splits its field calls to the budget (module docstring, item 3).
    dense = preset.coarse_samples + (0 if preset.skip_weight > 0 else preset.num_fine)
    chunk = max(1, RAY_CHUNK_CALLS * budget // (B * dense))
    stats = QueryStats(rays=B * height * width, field_impl=evaluate.impl, field_note=evaluate.note,
                       precision=_precision(evaluate, evaluate.impl == "fused", preset, dev))
    guide = None
    if preset.guide_samples > 0:  # one splat per call; rays read their candidates per chunk
        guide = renderer.guides(sources, K[:, None], c2w[:, None], height, width, rays)
    pieces = []
    with _autocast(preset, dev):
        for start in range(0, height * width, chunk):
            sl = slice(start, start + chunk)
            done = (stats.coarse_points, stats.fine_points, stats.fine_points_dense)
            try:
                out = _render_rays(renderer, rays[:, sl], prepared, preset, budget, stats,
                                   None if guide is None else guide[:, sl], evaluate)
            except _StopAsked:
                # The point counters keep the finished chunks only, as rays_done does: a cost
                # model divides one by the other (a stop inside the first chunk once gave the
                # node 29501 "points per ray" and it refused every query after).
                stats.coarse_points, stats.fine_points, stats.fine_points_dense = done
                raise RenderCancelled(f"render stopped after {start} of {height * width} rays "
                                      f"({stats.field_calls} field calls)", stats) from None
            stats.rays_done += B * min(chunk, height * width - start)
            pieces.append(replace(out, weights=None, t=None))  # drop [.., S] tensors early
    if evaluate.failure:  # auto fell back at run time (module docstring, item 5)
        stats.field_impl, stats.field_note = "reference", f"the fused kernel failed ({evaluate.failure[0]})"
        stats.precision = _precision(evaluate, False, preset, dev)
    merged = PassOutput(**{f.name: None if getattr(pieces[0], f.name) is None else
                           torch.cat([getattr(p, f.name) for p in pieces], dim=1)
                           for f in fields(PassOutput)})
    merged = merged.map(lambda x: x.reshape(B, height, width, *x.shape[2:]))
    return (merged.map(lambda x: x[0]) if single else merged), stats


def render_query(model, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int, sources: SourceViews,
                 preset: QueryPreset | str = "fast",
                 prepared: tuple[PreparedSources, PreparedSources | None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> PassOutput:
    """Render target cameras with a query preset (inference; no gradient).

    Args:
        model: a ViewSeg (eval mode).
        K: [B, 3, 3] or [3, 3]; c2w: [B, 4, 4] or [4, 4], for images of (height, width).
        sources: SourceViews with batch B (``model.make_sources``).
        preset: a :class:`QueryPreset` or a name in :data:`PRESETS`.
        prepared: ``model.renderer.prepare(sources)``, to reuse across queries.
        should_stop: asked before every field call; True raises :class:`RenderCancelled` (a
            caller's deadline or cancellation: one field call is the unit of work that cannot be
            interrupted, a few tens of milliseconds on the 2-core CPU).
    Returns:
        PassOutput of the final pass with [B, H, W, ...] ([H, W, ...] for one camera) tensors,
        as :meth:`ViewSeg.render` returns.
    """
    return render_query_stats(model, K, c2w, height, width, sources, preset, prepared, should_stop)[0]


__all__ = ["QueryPreset", "QueryStats", "RenderCancelled", "PRESETS", "RAY_CHUNK_CALLS", "AMP_MODES", "FIELD_IMPLS", "FIELD_ENV",
           "FieldChoice", "check_amp", "choose_field", "cpu_weights_dtype", "low_precision_field", "requested_field_impl", "fused_failures", "render_query",
           "render_query_stats",
           "occupied_samples", "explained_rays", "call_bucket", "padded_field_call", "point_budget", "ray_bucket", "trained_preset",
           "EXPLAINED_BANDS"]
