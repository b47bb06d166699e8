"""Query latency of ViewSeg: the fast path against the reference path, in one process.

A query renders one target camera from 4 cached source views (the node keeps per-keyframe
encoder features, so a query never re-encodes: encoding is timed on its own row). Scene:
one procedural room of ``viewseg_core.data.synth`` rendered at ``--size`` (default
320x240); the target is a view of its camera walk and the 4 sources are picked by the
node's own source selection.

Paths, for each preset (``paper`` = 64 coarse + 128 fine samples, ``fast``; see
``viewseg_core.model.fast.PRESETS``):

- **fast**: :func:`viewseg_core.model.fast.render_query` (projected feature maps, fused
  compositing on CUDA, bf16 MLP on CUDA and on CPUs with native bf16, memory-budget chunks,
  fine-pass occupancy skipping where the preset sets it); the path names the MLP precision
  that ran (``fast bf16`` / ``fast fp32``; a preset spec ``NAME:AMP`` such as ``rgbd:off``
  sets it);
- **fast+fused**: the same with the fused Triton field (issue 19: every field call of the
  query in one kernel per tile of points, ``QueryPreset.field_impl``): ``--field`` picks the
  field implementations of the fast rows, ``auto`` (default: fused on CUDA where supported,
  the PyTorch field otherwise), ``reference`` (path "fast": the PyTorch field), ``fused``,
  or a list (``--field reference,fused``: both rows per preset). Fused rows are GPU-only: on
  CPU they are skipped with a note (under ``TRITON_INTERPRET=1`` they run in the triton
  interpreter, for tests, and are printed but never recorded). The row's path says which
  implementation ran (``QueryStats.field_impl``), whatever was asked;
- on CPU, the fast rows' linear layers run with their bias, ReLU and residual add fused into
  the GEMM (:mod:`viewseg_core.model.cpu_linear`; path suffix ``+epi``); ``--epilogues
  on,off`` adds the rows without, ``off`` runs only those;
- ``--prepared query,kept`` adds fast rows that reuse the sources' projected feature maps
  (path suffix ``kept-maps``; prepared once before timing, as ``viewseg_node``'s
  :mod:`~viewseg_core.model.prepared_cache` does for queries that pick the same keyframes: issue 19,
  item 3); the default ``query`` prepares them in every timed query, and their FLOPs count only there;
- **reference**: plain PyTorch as in the original code, ``ViewSeg.render`` with per-point
  sampling of the full feature maps (``projected_features=False``), unfused compositing
  (``VIEWSEG_COMPOSITING=reference``), float32, 6000-ray chunks, at the preset's samples.

The process keeps freed memory for reuse as ``viewseg_node`` does (glibc malloc's thresholds
raised: :mod:`viewseg_core.cpu_allocator`); ``--malloc default`` leaves malloc as it is, and the
model column then says ``[malloc default]`` (rows before 2026-12-05's "CPU allocator" section
ran that way without saying so).

Columns: median and p90 milliseconds over ``--repeats`` runs after warm-up (``--interleave``:
the fast rows' runs in rounds, one of each per round, for ratios on a machine whose speed
drifts; the reference
may use fewer, ``--ref-repeats``: "n"); field points evaluated per ray; peak memory (CUDA:
``max_memory_allocated``; CPU: growth of the process's peak RSS during the runs, reset via
/proc/self/clear_refs); GFLOP per query counted from the architecture (every matmul and
convolution the path executes: see :func:`field_flops`; the fused kernel embeds the viewing
direction per point, not per ray; on the CPU the padding rays of ``fast.ray_bucket``, up to
6.25% more, are not counted: they are no useful work); achieved TFLOP/s and its share of the device's measured
dense matmul rate (a large square matmul in the path's dtype: bf16 for the fast and fused
rows on CUDA); the
"floor" = GFLOP / that rate; speed-up over the reference at the same samples and over the
reference at the paper's samples (the original code's setting). A dated row per case, with
the device, the torch version and the 1-minute load average, is appended to the "Query
latency" section of docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_query.py                        # paper model, 320x240, CUDA if present
    python benchmarks/bench_query.py --size 160x120 --model small --threads 2   # the CPU target
    python benchmarks/bench_query.py --model runs/synthetic_small/model.pt --size 160x120
    python benchmarks/bench_query.py --miou runs/synthetic_small/model.pt   # quality of the presets
    python benchmarks/bench_query.py --quick                # tiny model, a few seconds (tests)
    python benchmarks/bench_query.py --field reference,fused --presets paper,fast   # CUDA: fused vs PyTorch field

``--model``: ``paper`` (ModelConfig defaults: DeepLabv3+ ResNet-50, 256-d features, hidden
128; random weights), ``small`` (training/configs/synthetic_small.yaml's architecture,
random weights), or a model/checkpoint file. Random weights give representative times for
every path except occupancy skipping, whose savings depend on how concentrated the trained
densities are: the "points/ray" column shows what was skipped.

RGB-D (issue 15): the sources carry their depth (``--source-depth``: ``clean`` synthetic depth,
``sensor`` through ``viewseg_core.data.depth_sensor``'s default camera, seed 0, or ``none``),
and ``--rgbd`` turns the model into an RGB-D one with the new layers as no-ops
(``extend_model(model, source_depth=True, depth_guided=True)``: a trained RGB checkpoint then
renders the same image, at the RGB-D model's cost). Depth-guided presets (``rgbd``, or
``NSs+NBb+NF`` specs such as ``8s+8b+0``, ``/free`` appended for measured-free-space
skipping) are compared with the reference path at the same guided
samples.

    python benchmarks/bench_query.py --model checkpoints/demo.pt --size 160x120 --threads 2 --rgbd --presets fast,rgbd

``--guide-max-footprint N`` sets the depth guide's widest splat block (0: the fixed 2x2 blocks of
the rows before 2026-12-07; the model column then says ``[guide blocks fixed]``).

``--miou CHECKPOINT`` measures the other half of the trade: dataset mIoU of each preset on
the checkpoint's test split (its training data config), and its depth (δ<1.25, AbsRel, empty
pixels), beside the checkpoint's own sample counts, and appends those rows to the "Fast
preset quality" section. With ``--min-free-path X`` each preset also gets a row
``[free path >= X]``: the same render with the depth of the pixels whose path to the surface the
sources' depth saw free for less than X withheld, as the node's ``query.min_free_path`` does
(labels kept; the withheld pixels count as empty).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import gc
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

from report import add_record_arguments, append_rows, cpu_name, load_avg  # noqa: E402  (benchmarks/report.py)

from viewseg_core.model.fast import FIELD_ENV, FIELD_IMPLS, PRESETS, QueryPreset, render_query_stats, \
    trained_preset  # noqa: E402
from viewseg_core.cpu_allocator import keep_freed_memory  # noqa: E402
from viewseg_core.model.depth_guide import free_path_image  # noqa: E402
from viewseg_core.model import cpu_linear  # noqa: E402
from viewseg_core.model.field import SemanticField  # noqa: E402
from viewseg_core.model.fused_field import FusedFieldUnsupported  # noqa: E402
from viewseg_core.model.viewseg import ModelConfig, ViewSeg  # noqa: E402

REFERENCE_CHUNK = 6000
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Query latency (benchmarks/bench_query.py)"
TABLE_HEADER = ("| date | device | torch | load | model | size | batch | preset | path | points/ray | median ms "
                "| p90 ms | n | peak MiB | GFLOP | TFLOP/s | % of matmul | floor ms | speed-up (same samples) "
                "| speed-up vs reference 64+128 |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
QUALITY_SECTION = "## Fast preset quality (benchmarks/bench_query.py --miou)"
QUALITY_HEADER = ("| date | checkpoint (trained samples) | data / split | examples | sampling | points/ray "
                  "| dataset mIoU | per-image mIoU | pixel acc. | labels equal to trained sampling "
                  "| depth δ<1.25 | depth AbsRel | depth empty |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
QUICK_CONFIG = dict(encoder="deeplabv3plus_resnet18", feature_dim=32, hidden_dim=32, n_harmonic_xyz=6,
                    n_harmonic_dir=2, near=0.1, far=12.0, chunk_size=2048)


# --------------------------------------------------------------------------------------
# Device, timing, memory
# --------------------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_name()} ({torch.get_num_threads()} threads)"


def load_average() -> str:
    return f"{load_avg():.1f}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall milliseconds of ``repeats`` calls after ``warmup`` calls (synchronised on CUDA)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def time_interleaved(fns: list[Callable[[], object]], device: torch.device, repeats: int) -> list[list[float]]:
    """Wall milliseconds of ``repeats`` rounds that call every function once, in turn
    (synchronised on CUDA): a machine whose speed drifts within minutes slows every row of a
    round alike, so the rows' ratios hold where back-to-back blocks of runs did not."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, row in zip(fns, times):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            row.append((time.perf_counter() - t0) * 1e3)
    return times


def p90(times: list[float]) -> float:
    return float(np.percentile(np.asarray(times), 90))


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


class PeakMemory:
    """Peak memory of the code inside ``with``: CUDA ``max_memory_allocated`` above the
    allocation at entry, or on CPU the growth of peak RSS (VmHWM, reset by writing 5 to
    /proc/self/clear_refs) over the RSS at entry. ``mib`` is None where unsupported."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            # Hand freed heap back first, so that memory an earlier run left cached in the
            # allocator does not hide this run's growth (glibc; elsewhere RSS is unsupported).
            gc.collect()
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self._base = _rss_kib("VmRSS")
            except OSError:
                self._base = None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif self._base is not None:
            with contextlib.suppress(OSError):
                self.mib = max(0, _rss_kib("VmHWM") - self._base) / 1024


def matmul_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul rate (TFLOP/s): a square matmul, 8192 on CUDA, 1024 on CPU."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = time_runs(lambda: a @ b, device, repeats=10 if device.type == "cuda" else 5, warmup=2)
    return 2 * n ** 3 / (min(times) * 1e-3) / 1e12


# --------------------------------------------------------------------------------------
# FLOPs counted from the architecture
# --------------------------------------------------------------------------------------

def field_flops(field: SemanticField, num_views: int, points: int, ray_groups: int, projected: bool,
                map_pixels: int = 0, with_geometry: bool = True) -> float:
    """Matmul FLOPs (2 x multiply-adds) of one field call.

    Args:
        field: its config gives widths (hidden H, embeddings X/D, features F, classes C).
        num_views: V source views (per-view work is done for every view, visible or not).
        points: field points in the call (summed over the batch).
        ray_groups: rays whose samples share one direction embedding in the call (the dense
            path: rays; the packed fine path: one per point).
        projected: the projected-features path (True) or the reference (False).
        map_pixels: B*V*h*w feature pixels projected by ``prepare`` (count it once per
            prepare call, e.g. with points=0).
        with_geometry: the 3x3 matmuls of projection and frame changes.
    """
    cfg = field.config
    H, X, D, F, C = cfg.hidden_dim, field.xyz_dim, field.dir_dim, field.feature_dim, cfg.num_classes
    pv, rv = points * num_views, ray_groups * num_views
    if projected:
        first = 2 * pv * X * H + 2 * rv * D * H + 2 * map_pixels * F * H
    else:
        first = 2 * pv * (X + D + F) * H
    blocks = pv * cfg.n_blocks * 2 * (2 * H * H)
    heads = points * (2 * cfg.n_head_blocks * 2 * (2 * H * H) + 2 * H * (C + 4))
    if field.pool_proj is not None:  # view_pooling="mean_var": [mean, variance] -> hidden
        heads += points * 2 * (2 * H) * H
    if field.colour_proj is not None:  # source_rgb: [mean, variance] of the colours -> hidden
        heads += points * 2 * 6 * H
    if field.depth_embed is not None:  # source_depth: [known * e, 1 - known] -> hidden, per view
        first += 2 * pv * (field.depth_embed.proj.in_features + 1) * H
    geometry = (3 * 2 * 9 * pv + 2 * 9 * rv) if with_geometry else 0
    return float(first + blocks + heads + geometry)


def composite_flops(points: int, channels: int) -> float:
    """The compositing sum over samples (an einsum in the reference)."""
    return 2.0 * points * channels


def query_flops(model: ViewSeg, num_views: int, map_pixels: int, rays: int, coarse_points: int,
                fine_points: int, *, projected: bool, composite_coarse: bool, packed_fine: bool = False,
                per_point_directions: bool = False) -> float:
    """Forward FLOPs of rendering ``rays``: both passes, each field's ``prepare`` (projected),
    compositing (the coarse pass only when ``composite_coarse``: the reference and training
    composite it, :func:`render_query` needs only its weights).

    ``packed_fine``: the fine points were evaluated as a flat list (one direction each).
    ``per_point_directions``: every point of both passes embeds its direction (the fused kernel).
    """
    r = model.renderer
    channels = r.coarse.config.num_classes + 3
    coarse_groups = coarse_points if per_point_directions else rays
    total = field_flops(r.coarse, num_views, coarse_points, coarse_groups, projected, map_pixels if projected else 0)
    if composite_coarse or not fine_points:
        total += composite_flops(coarse_points, channels)
    if r.fine is not None and fine_points:
        groups = fine_points if packed_fine or per_point_directions else rays
        total += field_flops(r.fine, num_views, fine_points, groups, projected, map_pixels if projected else 0)
        total += composite_flops(fine_points, channels)
    return total


def encoder_flops(model: ViewSeg, rgb: torch.Tensor) -> float:
    """Convolution FLOPs of encoding ``rgb`` [B, V, 3, H, W] (counted by torch's FlopCounterMode,
    which multiplies out every convolution's shape: the encoder's architecture)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode_sources(rgb)
    return float(counter.get_total_flops())


# --------------------------------------------------------------------------------------
# Scene and models
# --------------------------------------------------------------------------------------

@dataclass
class QueryScene:
    """One synthetic query: 4 sources and a target of the same room (float32 torch)."""

    source_rgb: torch.Tensor      # [1, V, 3, H, W] in [0, 1]
    source_K: torch.Tensor        # [1, V, 3, 3]
    source_c2w: torch.Tensor      # [1, V, 4, 4]
    K: torch.Tensor               # [T, 3, 3] target cameras (T >= 1)
    c2w: torch.Tensor             # [T, 4, 4]
    height: int
    width: int
    target_labels: np.ndarray     # [T, H, W]
    source_views: list            # the View records (labels, depth) of the sources ...
    target_views: list            # ... and of the targets

    def source_depth(self, mode: str = "clean") -> torch.Tensor | None:
        """[1, V, H, W] measured source depth: ``clean``, ``sensor`` (the default depth
        camera model, seed 0) or ``none`` (None)."""
        if mode == "none":
            return None
        depth = np.stack([v.depth if v.depth is not None else np.full((self.height, self.width), np.nan, np.float32)
                          for v in self.source_views])
        if mode == "sensor":
            from viewseg_core.data.depth_sensor import apply_sensor
            depth = apply_sensor(depth, rng=0)
        elif mode != "clean":
            raise ValueError(f"source depth mode must be clean, sensor or none, got {mode!r}")
        return torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None]


def synthetic_scene(height: int, width: int, num_sources: int = 4, num_targets: int = 1,
                    seed: int = 0) -> QueryScene:
    """A procedural room at (height, width); sources chosen by the node's source selection."""
    from viewseg_core.data.synth.generate import SynthConfig, make_scene, render_views
    from viewseg_core.source_selection import SourceSelectionConfig, select_sources

    cfg = SynthConfig(views=24, height=height, width=width)
    scene, cams = make_scene(seed, cfg)
    targets = [cams[(6 + 3 * i) % len(cams)] for i in range(num_targets)]
    others = [c for c in cams if all(c is not t for t in targets)]
    sel = select_sources(targets[0].K, targets[0].c2w, (height, width), np.stack([c.K for c in others]),
                         np.stack([c.c2w for c in others]), (height, width),
                         SourceSelectionConfig(num_sources=num_sources))
    views = list(render_views(scene, [others[i] for i in sel.indices] + targets, cfg))
    src, tgt = views[:num_sources], views[num_sources:]
    f32 = lambda xs: torch.from_numpy(np.stack(xs)).float()  # noqa: E731
    rgb = torch.from_numpy(np.stack([v.rgb for v in src])).permute(0, 3, 1, 2).float() / 255.0
    return QueryScene(rgb[None], f32([v.K for v in src])[None], f32([v.c2w for v in src])[None],
                      f32([v.K for v in tgt]), f32([v.c2w for v in tgt]), height, width,
                      np.stack([v.labels for v in tgt]), src, tgt)


def build_bench_model(spec: str, quick: bool = False) -> tuple[ViewSeg, str]:
    """``paper`` | ``small`` | a model/checkpoint path -> (eval-mode model on CPU, description)."""
    torch.manual_seed(0)
    if quick:
        return ViewSeg(ModelConfig(**QUICK_CONFIG)).eval(), "tiny (random)"
    if spec == "paper":
        return ViewSeg(ModelConfig()).eval(), "paper R50/256/128 (random)"
    if spec == "small":
        import yaml
        doc = yaml.safe_load((ROOT / "training" / "configs" / "synthetic_small.yaml").read_text())
        return ViewSeg(ModelConfig.from_dict(doc["model"], "synthetic_small.yaml")).eval(), "small R18/64/64 (random)"
    from viewseg_core.model.weights import load_model
    model = load_model(spec).eval()
    c = model.config
    trained = trained_preset(model.renderer, name="").label
    return model, f"{Path(spec).name} ({c.encoder.split('_')[-1]}/{c.feature_dim}/{c.hidden_dim}, trained {trained})"


@contextlib.contextmanager
def reference_path(model: ViewSeg, num_coarse: int, num_fine: int, guide_samples: int = 0):
    """The original code's path on ``model``: per-point 256-d sampling, unfused compositing,
    plain linear layers (no fused epilogues), 6000-ray chunks, the given samples (depth-guided when ``guide_samples``); restores the
    model afterwards."""
    renderer = model.renderer
    saved_cfg, saved_proj = renderer.config, model.config.projected_features
    saved_env = os.environ.get("VIEWSEG_COMPOSITING")
    model.set_projected_features(False)
    guided = dict(depth_guided=True, guide_samples=guide_samples) if guide_samples else dict(depth_guided=False)
    renderer.config = replace(saved_cfg, num_coarse=num_coarse, num_fine=num_fine, chunk_size=REFERENCE_CHUNK,
                              **guided)
    os.environ["VIEWSEG_COMPOSITING"] = "reference"
    try:
        with cpu_linear.epilogues(False):   # the plain ops, as the original code ran them
            yield
    finally:
        renderer.config = saved_cfg
        model.set_projected_features(saved_proj)
        if saved_env is None:
            os.environ.pop("VIEWSEG_COMPOSITING", None)
        else:
            os.environ["VIEWSEG_COMPOSITING"] = saved_env


def parse_epilogues(spec: str) -> list[bool]:
    """``on`` | ``off`` | ``on,off`` -> the fast rows' cpu_linear settings, in order."""
    modes = [m.strip().lower() for m in spec.split(",") if m.strip()]
    if not modes or any(m not in ("on", "off") for m in modes):
        raise ValueError(f"--epilogues takes on, off or on,off, got {spec!r}")
    return [m == "on" for m in modes]


def epilogues_arg(spec: str) -> list[bool]:
    """argparse type of ``--epilogues``: a usage error, not a traceback, for a bad value."""
    try:
        return parse_epilogues(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def prepared_arg(spec: str) -> list[bool]:
    """argparse type of ``--prepared``: ``query`` | ``kept`` | ``query,kept`` -> [kept maps?] per row."""
    modes = {"query": False, "kept": True}
    parts = [p.strip() for p in spec.split(",")]
    if not parts or any(p not in modes for p in parts) or len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"--prepared takes query, kept or query,kept, got {spec!r}")
    return [modes[p] for p in parts]


def epilogues_fuse(device: torch.device, precision: str, on: bool) -> bool:
    """Whether the PyTorch field's linear layers ran with fused epilogues (cpu_linear)."""
    if not on or device.type != "cpu" or precision not in ("fp32", "bf16"):
        return False
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with torch.no_grad(), cpu_linear.epilogues(True):
        return cpu_linear.fusable(torch.empty(1, 1, dtype=dtype), torch.empty(1, 1, dtype=dtype))


def parse_preset(spec: str) -> QueryPreset:
    """A name in PRESETS, or ``NC+NF`` / ``NC+NF@SKIP`` (e.g. ``32+16@1e-3``), or depth-guided
    ``NSs+NBb+NF[@SKIP]`` (e.g. ``4s+8b+0``: 4 stratified + 8 band samples, no fine pass), with
    ``/free`` at the end for ``skip_free`` (e.g. ``8s+8b+0/free``), then ``/unexplained`` for
    ``fine_unexplained`` (e.g. ``8s+4b+4@1e-3/free/unexplained``, the ``rgbd_fine`` preset); ``:AMP`` after any of them
    sets the MLP precision (e.g. ``rgbd:bf16``; the presets' own is ``auto``), and ``/budget=N``
    at the very end sets the points per field call (``QueryPreset.point_budget``; e.g.
    ``rgbd/budget=3072`` or ``fast:off/budget=3072``; default: the device's)."""
    head, sep, budget = spec.rpartition("/budget=")
    if sep:
        preset = parse_preset(head)   # a bad preset before the budget says so itself
        try:
            return replace(preset, point_budget=int(budget))
        except ValueError as exc:
            raise ValueError(f"preset {spec!r}: /budget= takes a whole number of points >= 0 ({exc})") from exc
    spec, _, amp = spec.partition(":")
    if amp:
        preset = parse_preset(spec)
        try:
            return replace(preset, amp=amp)
        except ValueError as exc:
            raise ValueError(f"preset {spec + ':' + amp!r}: {exc}") from exc
    if spec in PRESETS:
        return PRESETS[spec]
    spec, unexplained = (spec[:-len("/unexplained")], True) if spec.endswith("/unexplained") else (spec, False)
    spec, free = (spec[:-len("/free")], True) if spec.endswith("/free") else (spec, False)
    try:
        samples, _, skip = spec.partition("@")
        parts = samples.split("+")
        guide = 0
        if len(parts) == 3 and parts[0].endswith("s") and parts[1].endswith("b"):
            parts, guide = [parts[0][:-1], parts[2]], int(parts[1][:-1])
        nc, nf = (int(x) for x in parts)
        return QueryPreset("", nc, nf, skip_weight=float(skip) if skip else 0.0, guide_samples=guide,
                           skip_free=free, fine_unexplained=unexplained)
    except ValueError as exc:
        raise ValueError(f"preset {spec!r}: use one of {sorted(PRESETS)}, NC+NF[@skip_weight] or "
                         f"NSs+NBb+NF[@skip_weight][/free][/unexplained], then optionally :AMP ({exc})") from exc


def presets_arg(text: str) -> str:
    """argparse type of ``--presets``: every comma-separated spec parses (a usage error naming
    the bad one, not a traceback after the model has loaded); the text itself is kept."""
    try:
        for spec in text.split(","):
            parse_preset(spec.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (height, width)."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--size must be WxH, e.g. 320x240, got {text!r}") from exc
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"--size must be positive, got {text!r}")
    return h, w


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fast_field_impls(spec: str, device: torch.device) -> list[str]:
    """``--field`` (comma-separated ``auto``/``fused``/``reference``) -> the field
    implementations of the fast rows. ``fused`` is GPU-only: on CPU it is dropped with a note
    (kept under ``TRITON_INTERPRET=1``: the interpreter, for tests; its rows are not recorded)."""
    from viewseg_core.kernels import interpret_requested

    impls = [x.strip().lower() for x in spec.split(",") if x.strip()]
    bad = [x for x in impls if x not in FIELD_IMPLS]
    if bad or not impls:
        raise ValueError(f"--field {spec!r}: use a comma-separated list of {', '.join(FIELD_IMPLS)}")
    if os.environ.get(FIELD_ENV):
        print(f"note: {FIELD_ENV}={os.environ[FIELD_ENV]} is set and overrides --field (rows say what ran)")
    if device.type != "cuda" and "fused" in impls:
        if interpret_requested():
            print("fused rows: TRITON_INTERPRET=1, run in the triton interpreter (a test of the path, not a "
                  "benchmark: printed, never recorded)")
        else:
            print("fused rows: GPU-only (the fused Triton field runs compiled on CUDA; on CPU only in the triton "
                  "interpreter, for tests): skipped")
            impls = [x for x in impls if x != "fused"] or ["reference"]
    return list(dict.fromkeys(impls))


# --------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------

@dataclass
class Result:
    preset: QueryPreset
    path: str
    times: list[float]
    points_per_ray: float
    peak_mib: float | None
    gflop: float


def guide_blocks(model, max_footprint: int) -> str:
    """``--guide-max-footprint``: set the depth guide's widest splat block of ``model`` (-1: keep
    the model's own); returns what the model column adds (nothing when kept)."""
    if max_footprint < 0:
        return ""
    from training.evaluate import set_guide_max_footprint
    set_guide_max_footprint(model, max_footprint)
    return f" [guide blocks <= {max_footprint}]" if max_footprint > model.config.guide_footprint \
        else " [guide blocks fixed]"


def run_latency(args: argparse.Namespace) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    height, width = args.size
    model, model_desc = build_bench_model(args.model, args.quick)
    if args.malloc == "default" and device.type == "cpu":
        model_desc += " [malloc default]"
    if args.rgbd and not (model.config.source_depth and model.config.depth_guided):
        from viewseg_core.model.weights import extend_model
        model = extend_model(model, source_depth=True, depth_guided=True).eval()
        model_desc += " +RGB-D (no-op init)"
    model_desc += guide_blocks(model, args.guide_max_footprint)
    model = model.to(device)
    presets = [parse_preset(p.strip()) for p in args.presets.split(",")]
    field_impls = fast_field_impls(args.field, device)
    epilogue_modes = args.epilogues
    scene = synthetic_scene(height, width, num_targets=args.batch)
    B = args.batch
    dev = lambda x: x.to(device)  # noqa: E731
    rgb = dev(scene.source_rgb)
    with torch.no_grad():
        feats = model.encode_sources(rgb)
    # The same 4 sources for every query of a batch (expand: no copy of the features).
    depth = scene.source_depth(args.source_depth)
    sources = model.make_sources(feats.expand(B, *feats.shape[1:]), dev(scene.source_K).expand(B, -1, -1, -1),
                                 dev(scene.source_c2w).expand(B, -1, -1, -1), height, width,
                                 rgb=rgb.expand(B, *rgb.shape[1:]),
                                 depth=None if depth is None else dev(depth).expand(B, -1, -1, -1))
    K, c2w = dev(scene.K), dev(scene.c2w)
    V = sources.num_views
    map_pixels = B * V * feats.shape[-2] * feats.shape[-1]
    rays = B * height * width
    name = device_name(device)
    fast_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak_fast = matmul_tflops(device, fast_dtype)
    peak_ref = peak_fast if fast_dtype == torch.float32 else matmul_tflops(device, torch.float32)
    repeats = args.repeats
    ref_repeats = args.ref_repeats or (repeats if device.type == "cuda" else min(repeats, 3))
    print(f"device: {name}   torch {torch.__version__}   load {load_average()}   model {model_desc}   "
          f"{width}x{height}, batch {B}, {V} sources, source depth {args.source_depth}   "
          f"matmul: {peak_fast:.2f} TFLOP/s "
          f"({str(fast_dtype).removeprefix('torch.')})" +
          (f", {peak_ref:.2f} TFLOP/s (float32)" if peak_ref != peak_fast else ""))

    if args.compile:
        # Fields only (sampling and compositing stay eager); dynamic: chunk sizes vary.
        for f in (model.renderer.coarse, model.renderer.fine):
            if f is not None:
                f.forward = torch.compile(f.forward, dynamic=True)

    results: list[Result] = []
    ref_cache: dict[tuple[int, int, int], Result] = {}

    def reference(nc: int, nf: int, preset: QueryPreset) -> Result:
        ng = preset.guide_samples
        if (nc, nf, ng) not in ref_cache:
            fn = lambda: model.render(K if B > 1 else K[0], c2w if B > 1 else c2w[0], height, width, sources)  # noqa: E731
            with reference_path(model, nc, nf, ng), torch.no_grad():
                with PeakMemory(device) as mem:
                    times = time_runs(fn, device, ref_repeats, warmup=args.warmup)
            coarse, fine = rays * (nc + ng), rays * (nc + ng + nf) if nf else 0
            flops = query_flops(model, V, map_pixels, rays, coarse, fine, projected=False, composite_coarse=True)
            ref_cache[(nc, nf, ng)] = Result(preset, "reference", times, (coarse + fine) / rays, mem.mib, flops / 1e9)
        return ref_cache[(nc, nf, ng)]

    with torch.no_grad():  # --prepared kept: both fields' prepared sources, made once before any timing
        kept_maps = model.renderer.prepare(sources) if True in args.prepared else None

    interleaved: list[tuple[int, Callable[[], object]]] = []   # (index in results, fn) to time in rounds
    for preset in presets:
        for impl, epi, kept in [(i, e, k) for i in field_impls for e in epilogue_modes for k in args.prepared]:
            stats_box = {}
            fast_preset = replace(preset, field_impl=impl)

            def fast(fast_preset=fast_preset, stats_box=stats_box, epi=epi, kept=kept):
                with cpu_linear.epilogues(epi):
                    out, stats = render_query_stats(model, K if B > 1 else K[0], c2w if B > 1 else c2w[0], height,
                                                    width, sources, fast_preset,
                                                    prepared=kept_maps if kept else None)
                stats_box["stats"] = stats
                return out

            try:
                with PeakMemory(device) as mem:  # --interleave: the warm-up runs alone here, timed below
                    times = time_runs(fast, device, 0 if args.interleave else repeats, warmup=args.warmup)
            except Exception as error:  # noqa: BLE001 - a forced fused field that cannot run: the other rows stay
                if impl != "fused" or isinstance(error, torch.cuda.OutOfMemoryError):
                    raise
                kind = "" if isinstance(error, FusedFieldUnsupported) else f"{type(error).__name__}: "
                first = (str(error).strip().splitlines() or [""])[0][:300]
                print(f"fused rows of {preset.label}: skipped ({kind}{first})")
                continue
            st = stats_box["stats"]
            fused = st.field_impl == "fused"
            if impl == "auto" and st.field_note:
                print(f"field: auto kept the PyTorch field ({st.field_note})")
            flops = query_flops(model, V, 0 if kept else map_pixels, rays, st.coarse_points, st.fine_points,
                                projected=model.config.projected_features, composite_coarse=False,
                                packed_fine=preset.skip_weight > 0, per_point_directions=fused)
            path = ("fast+fused" + (" (interpreter)" if device.type != "cuda" else "")) if fused else "fast"
            path += f" {st.precision}"  # amp auto resolves per device (fast.py, QueryPreset.amp)
            # Compiled fields: inductor fuses the epilogues itself and cpu_linear stands aside.
            if not fused and not args.compile and epilogues_fuse(device, st.precision, epi):
                path += " +epi"
            if kept:
                path += " kept-maps"
            if args.interleave:
                interleaved.append((len(results), fast))
            results.append(Result(preset, path, times, st.points_per_ray, mem.mib, flops / 1e9))
        if not args.no_reference:
            results.append(reference(preset.num_coarse, preset.num_fine, preset))
    if interleaved:
        for (i, _), times in zip(interleaved, time_interleaved([fn for _, fn in interleaved], device, repeats)):
            results[i] = replace(results[i], times=times)
    paper_ref = None
    if not args.no_reference and not args.quick:
        paper_ref = reference(64, 128, PRESETS["paper"])

    enc_times = time_runs(lambda: model.encode_sources(rgb), device, max(3, repeats // 2), warmup=1) \
        if args.encoder else None
    with torch.no_grad():
        enc_gflop = encoder_flops(model, rgb) / 1e9

    header = (f"{'preset':<28} {'path':<14} {'pts/ray':>7} {'median ms':>10} {'p90 ms':>9} {'n':>3} {'peak MiB':>9} "
              f"{'GFLOP':>8} {'TFLOP/s':>8} {'%mm':>5} {'floor ms':>9} {'x same':>7} {'x ref64+128':>11}")
    print(header)
    print("-" * len(header))
    today, load = _dt.date.today().isoformat(), load_average()
    rows = []
    seen_refs: set[int] = set()
    for r in results:
        if r.path == "reference":
            if id(r) in seen_refs:
                continue
            seen_refs.add(id(r))
        med = statistics.median(r.times)
        peak = peak_ref if r.path == "reference" else peak_fast
        tflops = r.gflop / med  # GFLOP / ms = TFLOP/s
        same = ref_cache.get((r.preset.num_coarse, r.preset.num_fine, r.preset.guide_samples))
        x_same = statistics.median(same.times) / med if same is not None and r.path != "reference" else None
        x_paper = statistics.median(paper_ref.times) / med if paper_ref is not None else None
        label = r.preset.label if r.path != "reference" else \
            (f"{r.preset.num_coarse}s+{r.preset.guide_samples}b+{r.preset.num_fine}" if r.preset.guide_samples
             else f"{r.preset.num_coarse}+{r.preset.num_fine}")
        line = (f"{label:<28} {r.path:<14} {r.points_per_ray:>7.1f} {med:>10.1f} {p90(r.times):>9.1f} "
                f"{len(r.times):>3} "
                f"{_fmt(r.peak_mib):>9} {r.gflop:>8.1f} {tflops:>8.3f} {100 * tflops / peak:>5.1f} "
                f"{r.gflop / peak:>9.1f} {_fmt(x_same) + 'x' if x_same else '-':>7} "
                f"{_fmt(x_paper) + 'x' if x_paper else '-':>11}")
        print(line)
        if "(interpreter)" in r.path:
            continue  # the triton interpreter's times are no benchmark: never recorded
        rows.append(f"| {today} | {name} | {torch.__version__} | {load} | {model_desc}"
                    f"{' +compile' if args.compile and r.path.startswith('fast ') else ''} | {width}x{height} | {B} | {label} "
                    f"| {r.path} | {r.points_per_ray:.1f} | {med:.1f} | {p90(r.times):.1f} | {len(r.times)} "
                    f"| {_fmt(r.peak_mib)} | {r.gflop:.1f} | {tflops:.3f} | {100 * tflops / peak:.1f} "
                    f"| {r.gflop / peak:.1f} | {_fmt(x_same) + 'x' if x_same else '-'} "
                    f"| {_fmt(x_paper) + 'x' if x_paper else '-'} |\n")
    if enc_times is not None:
        med = statistics.median(enc_times)
        print(f"{'encode ' + str(V) + ' sources':<28} {'-':<10} {'-':>7} {med:>10.1f} {p90(enc_times):>9.1f} "
              f"{len(enc_times):>3} {'-':>9} {enc_gflop:>8.1f} {enc_gflop / med:>8.3f}")
        rows.append(f"| {today} | {name} | {torch.__version__} | {load} | {model_desc} | {width}x{height} | 1 "
                    f"| encode {V} sources (not in a query) | eager fp32 | - | {med:.1f} | {p90(enc_times):.1f} "
                    f"| {len(enc_times)} | - | {enc_gflop:.1f} | {enc_gflop / med:.3f} "
                    f"| {100 * enc_gflop / med / peak_ref:.1f} | {enc_gflop / peak_ref:.1f} | - | - |\n")
    if not args.no_record:
        append_rows(args.output, SECTION, TABLE_HEADER, rows)
        print(f"appended {len(rows)} rows to {args.output}")
    return 0


# --------------------------------------------------------------------------------------
# Quality (mIoU) of the presets on a checkpoint's test split
# --------------------------------------------------------------------------------------

def run_miou(args: argparse.Namespace) -> int:
    from training.data import build_dataset
    from training.evaluate import example_indices, load_viewseg, resolve_data_config, run_evaluation

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, train_config = load_viewseg(args.miou)
    label_suffix = guide_blocks(model, args.guide_max_footprint)
    model = model.to(device).eval()
    config_path = args.miou_config
    beside = Path(args.miou).parent / "config.yaml"     # a run folder's model.pt has its config there
    if not config_path and train_config is None and beside.is_file():
        config_path = str(beside)
    data_cfg = resolve_data_config(train_config, config_path, data_root=args.miou_data, source=str(args.miou),
                                   config_flag="--miou-config")
    dataset = build_dataset(data_cfg, split=args.miou_split, seed=0, full_target=True)
    indices = example_indices(len(dataset), args.miou_examples)
    trained = trained_preset(model.renderer, name="trained")
    presets = [trained] + [parse_preset(p.strip()) for p in args.presets.split(",")]
    points: dict[str, list[float]] = {p.label: [] for p in presets}
    labels: dict[str, list[np.ndarray]] = {p.label: [] for p in presets}

    def render_once(preset: QueryPreset, ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(labels, depth, free path share or None) of ``preset`` on ``ctx``'s example, rendered once
        for the preset and its --min-free-path row (kept on the example's context)."""
        done = ctx.__dict__.setdefault("_bench_renders", {})
        if preset.label in done:
            return done[preset.label]
        ex = ctx.example
        H, W = (int(x) for x in ex["target_size"])
        with torch.no_grad():
            rgb = ex["source_rgb"][None].to(device)
            depth = ex.get("source_depth_input")  # data.source_depth: clean | sensor (RGB-D)
            sources = model.make_sources(model.encode_sources(rgb), ex["source_K"][None].to(device),
                                         ex["source_c2w"][None].to(device), H, W, rgb=rgb,
                                         depth=None if depth is None else depth[None].to(device))
            out, stats = render_query_stats(model, ex["target_K"].to(device), ex["target_c2w"].to(device),
                                            H, W, sources, preset)
            free = None
            if args.min_free_path > 0:   # what the node's query.min_free_path compares
                free = free_path_image(out.depth, ex["target_K"], ex["target_c2w"], sources).cpu().numpy()
        points[preset.label].append(stats.points_per_ray)
        lab = out.labels.cpu().numpy().astype(np.int64)
        depth = out.depth.float().cpu().numpy()
        lab[~np.isfinite(depth)] = 255
        done[preset.label] = lab, depth, free
        return done[preset.label]

    def method(preset: QueryPreset):
        def run(ctx) -> dict:
            lab, depth, _ = render_once(preset, ctx)
            labels[preset.label].append(lab)
            return {"labels": lab, "depth": depth}
        return run

    def withheld(preset: QueryPreset):
        """The preset's render with the depth of paths seen free for less than --min-free-path
        withheld, labels kept (the node's query.min_free_path)."""
        def run(ctx) -> dict:
            lab, depth, free = render_once(preset, ctx)
            labels[free_label(preset)].append(lab)
            return {"labels": lab, "depth": np.where(free >= args.min_free_path, depth, np.nan)}
        return run

    def free_label(preset: QueryPreset) -> str:
        return f"{preset.label} [free path >= {args.min_free_path:g}]"

    methods = {}
    for p in presets:
        methods[p.label] = method(p)
        if args.min_free_path > 0:
            methods[free_label(p)] = withheld(p)
            labels[free_label(p)], points[free_label(p)] = [], points[p.label]
    report = run_evaluation(dataset, methods, indices=indices, model=model,
                            device=device, progress=not args.quick)
    today = _dt.date.today().isoformat()
    ckpt = f"{Path(args.miou).parent.name}/{Path(args.miou).name} ({replace(trained, name='').label}){label_suffix}"
    print(f"checkpoint {ckpt}   {data_cfg.root} / {args.miou_split}   {len(indices)} examples")
    print(f"{'sampling':<30} {'pts/ray':>8} {'mIoU':>7} {'img mIoU':>9} {'pACC':>7} {'same labels':>12} "
          f"{'δ<1.25':>7} {'AbsRel':>7} {'empty':>7}")
    rows = []
    for label in methods:
        s = report["methods"][label]
        same = np.mean([np.mean(a == b) for a, b in zip(labels[label], labels[trained.label])])
        pts = float(np.mean(points[label]))
        d1, absrel, empty = 100 * s["delta1"], s["depth_absrel"], 100 * s["depth_missing_fraction"]
        print(f"{label:<30} {pts:>8.1f} {100 * s['dataset_miou']:>7.2f} {100 * s['per_image_miou']:>9.2f} "
              f"{100 * s['pacc']:>7.2f} {100 * same:>11.2f}% {d1:>7.2f} {absrel:>7.4f} {empty:>6.2f}%")
        rows.append(f"| {today} | {ckpt} | {data_cfg.root} / {args.miou_split} | {len(indices)} | {label} "
                    f"| {pts:.1f} | {100 * s['dataset_miou']:.2f} | {100 * s['per_image_miou']:.2f} "
                    f"| {100 * s['pacc']:.2f} | {100 * same:.2f}% | {d1:.2f} | {absrel:.4f} | {empty:.2f}% |\n")
    if not args.no_record:
        append_rows(args.output, QUALITY_SECTION, QUALITY_HEADER, rows)
        print(f"appended {len(rows)} rows to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model and image, 2 runs (for tests)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--size", type=parse_size, default=None, help="query and source size WxH (default 320x240)")
    parser.add_argument("--model", default="paper", help="paper | small | a model or checkpoint file")
    parser.add_argument("--presets", type=presets_arg, default="paper,fast", help="comma-separated names or NC+NF[@skip]")
    parser.add_argument("--batch", type=int, default=1, help="target cameras per query call (batched queries)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per fast path (default 20; quick 2)")
    parser.add_argument("--ref-repeats", type=int, default=0, help="timed runs of the reference (default: "
                                                                   "--repeats on CUDA, at most 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3; quick 1)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference path")
    parser.add_argument("--no-encoder", dest="encoder", action="store_false", help="skip the encoder row")
    parser.add_argument("--field", default="auto", help="field implementations of the fast rows, comma-separated: "
                                                       "auto (fused on CUDA where supported) | reference (the "
                                                       "PyTorch field) | fused (GPU-only); e.g. reference,fused")
    parser.add_argument("--epilogues", type=epilogues_arg, default="on", help="the PyTorch field's linear layers with their bias, ReLU "
                        "and residual add fused into the GEMM on CPU (viewseg_core.model.cpu_linear): on | off | "
                        "on,off (both rows per preset; path '+epi' where they ran)")
    parser.add_argument("--prepared", type=prepared_arg, default="query", help="query: every timed query "
                        "prepares the sources' projected maps | kept: prepared once, as the node's cache does for "
                        "queries that pick the same keyframes (path 'kept-maps') | query,kept: both rows")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep", help="keep: glibc keeps freed "
                        "memory for reuse, as viewseg_node runs (viewseg_core/cpu_allocator.py); default: leave "
                        "malloc as it is (the model column says so)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fields (fast path)")
    parser.add_argument("--interleave", action="store_true", help="time the fast rows in rounds, one run of each "
                        "per round, so that a drifting machine slows them alike (ratios between rows)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--source-depth", choices=("clean", "sensor", "none"), default="clean",
                        help="source depth handed to the model (read by RGB-D models and guided presets)")
    parser.add_argument("--rgbd", action="store_true", help="make the model RGB-D (source_depth + depth_guided, "
                                                            "new layers as no-ops)")
    parser.add_argument("--guide-max-footprint", type=int, default=-1, help="depth-guided models: the widest "
                        "block of the depth guide's adaptive splat (0: fixed 2x2 blocks, as before 2026-12-07; "
                        "default: the model's own)")
    parser.add_argument("--miou", default="", help="checkpoint: measure the presets' mIoU on its test split")
    parser.add_argument("--miou-data", default="", help="data root for --miou (default: the checkpoint's)")
    parser.add_argument("--miou-config", default="", help="YAML with the data section for --miou (default: the "
                                                          "checkpoint's, or config.yaml beside it)")
    parser.add_argument("--miou-split", default="test")
    parser.add_argument("--miou-examples", type=int, default=0, help="targets to score (0 = the whole split)")
    parser.add_argument("--min-free-path", type=float, default=0.0, help="--miou: also score each preset with the "
                        "depth of paths the sources' depth saw free for less than this share withheld (the node's "
                        "query.min_free_path; 0 = no such rows)")
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    if args.guide_max_footprint < -1:
        parser.error(f"--guide-max-footprint must be >= 0 (or -1, the model's own), got {args.guide_max_footprint}")
    if not 0.0 <= args.min_free_path <= 1.0:
        parser.error(f"--min-free-path must be in [0, 1], got {args.min_free_path}")
    if args.min_free_path > 0 and not args.miou:
        parser.error("--min-free-path scores depth: it needs --miou")
    if args.malloc == "keep":   # as viewseg_node and the viewseg command run (viewseg_core/cpu_allocator.py)
        print(f"cpu allocator: {keep_freed_memory()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch < 1:
        parser.error("--batch must be >= 1")
    if args.quick:
        args.size = args.size or (16, 24)
        args.repeats = args.repeats or 2
        args.warmup = 1 if args.warmup is None else args.warmup
        if args.presets == "paper,fast":
            args.presets = "8+8,8+8@1e-3"
    args.size = args.size or (240, 320)
    args.repeats = args.repeats or 20
    args.warmup = 3 if args.warmup is None else args.warmup
    if args.miou:
        return run_miou(args)
    return run_latency(args)


if __name__ == "__main__":
    sys.exit(main())
