"""The semantic field f: a 3D point seen from several source views -> density, RGB, class logits.

Per source view v (pixelNeRF, Yu et al. 2021; ViewSeg, Qian et al. 2022, Sec. 3):

    h_v = ResBlock^3( W [gamma(x_v), gamma(d_v), F_v(pi_v(x))] + b )

where ``x_v``/``d_v`` are the point and viewing direction in view v's camera frame,
``gamma`` the harmonic embedding and ``F_v(pi_v(x))`` the source feature map bilinearly
sampled at the point's projection. The ``h_v`` are averaged over the views that SEE the
point (in front of the camera and inside the image), then two heads of two residual blocks
each give class logits and RGB + density.

``view_pooling="mean_var"`` (not in the paper; IBRNet, Wang et al. 2021, pools this way)
also takes the variance of the ``h_v`` over the visible views and maps [mean, variance]
back to ``hidden_dim`` with one linear layer. A point on a surface looks alike from every
view that sees it, a point in free space does not, so the variance is a direct cue for
density that mean pooling leaves the heads to infer (they see only the average). The layer
starts as the identity on the mean and zero on the variance: training begins from the
paper's model.

``source_rgb=True`` (not in the paper; IBRNet pools source colours in the same spirit)
samples each source image's colour ``c_v`` at the point's full-resolution projection and
adds ``W_c [mean_v c_v, log(var_v c_v + 1e-4)]`` (over the visible views) to the pooled
state. The encoder features live at stride 4 and come from a segmenter, which is trained
to ignore texture; the colour variance is the photo-consistency of the point at pixel scale (a
surface point looks alike from every view, a point in free space does not), handed to the
heads directly. ``W_c`` starts at zero, so a model without it is the same function
(:data:`NOOP_AT_INIT`), and it is linear in its inputs, so it gets a gradient from the first
step (a per-view colour term seen only through the variance would be quadratic in its
weights and start with none). The log matters: colour variances are 1e-4..1e-1, too small
for a zero-initialised layer to make anything of in a few thousand Adam steps (measured in
docs/results.md: with the raw variance the layer stayed near zero and changed nothing).

``source_depth=True`` (not in the paper; RGB-D keyframes, issue 15) adds a per-(point, view)
visibility cue: the signed difference ``z_v(x) - D_v(pi_v(x))`` between the point's planar
depth in source camera v and the depth that camera MEASURED at the point's projection
(positive: the point lies behind the measured surface, hidden from v; negative: in front
of it, in space v saw to be empty; near 0: on the surface). ``D_v`` is read at the nearest
depth pixel, not bilinearly: interpolating across a depth edge invents a surface midway
between foreground and background (exactly where the cue would then claim one), and
nearest never mixes a measurement with an unknown neighbour. The difference enters as
``tanh(diff / s)`` for s in :data:`DEPTH_FEATURE_SCALES` (2 cm resolves sensor noise near
the surface, 1 m still orders points far from it; tanh keeps a 10 m miss finite), through
``W_z`` into the per-view first layer: ``h_v += W_z e_v``. Where the camera measured
nothing (NaN or 0 in the depth map, or no depth at all for the view: sensor holes, source
depth dropout, a keyframe without depth) ``h_v`` gets a LEARNED vector ``u`` instead of
``W_z e_v`` ("unknown" is not "on the surface", which is what e = 0 would say). ``W_z`` and
``u`` both start at zero (:data:`NOOP_AT_INIT`): an RGB model's weights load into the RGB-D
model and render the same images, bit for bit, until training moves them; both are linear in
their inputs, so both get a gradient at the first step.

``depth_evidence=True`` (needs ``source_depth``; RGB-D keyframes) turns the measurements into
density directly, the way a TSDF fusion would, instead of leaving the MLP to learn it:

- **carving**: a point that more source depth cameras saw through (``diff < -3 s``, with the
  tolerance ``s = max(EVIDENCE_SIGMA_M, EVIDENCE_SIGMA_REL * D)`` growing with distance like
  the sensor noise) than call it surface (``|diff| <= 3 s``) has density 0, whatever the MLP
  says; a view that does not see the point or measured nothing there does not vote. Free space
  the cameras measured is empty, so the fog in front of measured surfaces goes;
- **surface density**: where a view measured a surface, a density step is added that starts
  half a tolerance in front of the measurement and ends 3 tolerances behind it:
  ``alpha / s * sigmoid(4 (diff / s + 0.5))``, the max over views (a view from which the point
  is hidden, ``diff > 3 s``, says nothing). A step and not a bump: a ray entering a step of
  density ``alpha / s`` stops on average ``s / alpha`` past its start, so with ``alpha`` =
  :data:`EVIDENCE_ALPHA_INIT` = 2 the expected depth is the measured one, at any distance
  (measured: a symmetric bump as dense stopped rays on its front flank, 5-7% short at 2 m).
  ``alpha`` is one learned scalar (``log_alpha``).
Where no camera measured anything (holes, beyond range, a keyframe without depth) both are
silent and the field is the RGB field. Unlike ``depth_embed`` this is not a no-op at init
(:data:`EVIDENCE_AT_INIT`): a model gains it knowingly, and its renders change at once.
Measured in docs/results.md (issue 15): turned on over an RGB-D model without training, it
took δ<1.25 from 61% to 82% (8 test targets).

``occlusion_pooling=True`` (needs ``source_depth``; RGB-D keyframes) leaves out of the
pooling (features, their variance and the source colours) every view whose measured depth
hides the point: it lies more than ``EVIDENCE_FREE_SIGMAS`` tolerances behind the surface that
view measured at its projection, so the features it samples there are the occluder's (a
chair's for a point on the wall behind it), and the mean would blend them into the point's
class. A point that every view pooling it hides keeps them all (the field needs inputs; its
density is the depth evidence's to carve). IBRNet weighs views by a learned visibility; here
the measured depth says it. No weights: it changes the function of a model it is switched on
for, and the fused kernel does not implement it (``fused_field.field_reason`` refuses).

Why the camera frame and not the world frame: the world frame is arbitrary (a dataset's
origin, a robot's ``map`` or ``odom``), so world coordinates would tie the weights to one
scene's layout; in the view frame the field sees "this far in front of camera v, along
this ray of v", which transfers across scenes (the argument pixelNeRF makes).

Points that no source view sees get density 0 by default (``unseen_points="empty"``, the
paper's model): nothing is known there, so the point must not occlude or colour the render;
their logits and RGB are the heads' output for a zero hidden state (finite, and weightless in
compositing since alpha is 0). With RGB-D keyframes that leaves the rays that leave every
source frustum empty once the depth evidence has carved the fog in front of them (issue 15:
`scripts/depth_coverage.py` found 72% of the pixels whose true surface lies outside every
frustum empty, all of stage 2's empties).
``unseen_points="extrapolate"`` evaluates such a point from the views it lies in front of,
as pixelNeRF does: features, colours and measured depth from the nearest image border pixel
(border padding), its own position and direction in the view's frame, pooled over those
views; the MLP then says whether the wall or floor at the image edge goes on. Its density is
the MLP's alone (the depth evidence votes only where a view sees the point), and
``num_visible`` stays 0 there, so that the renderer can tell observed opacity from
extrapolated opacity (the confidence output). A point behind every camera still gets 0.

Projected features: the feature part ``W_f`` of the first linear layer commutes with
bilinear sampling (sampling is a linear combination of feature pixels with weights summing
to one), so ``W_f F(pi(x)) == (W_f * F)(pi(x))``. The default path applies ``W_f`` to each
source feature map once as a 1x1 convolution (:meth:`SemanticField.prepare`) and samples
``hidden_dim`` channels per point instead of ``feature_dim``; ``projected_features=False``
keeps the naive reference path (sample, concatenate, linear).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from viewseg_core.cameras import in_image, project_camera_points, world_to_camera
from viewseg_core.classes import NUM_CLASSES
from viewseg_core.model import cpu_linear
from viewseg_core.model.depth_guide import known_depth
from viewseg_core.model.embedding import HarmonicEmbedding


VIEW_POOLING_MODES = ("mean", "mean_var")
UNSEEN_POINT_MODES = ("empty", "extrapolate")
# Projected coordinates of points outside an image are clamped to this many half-images
# before grid_sample (border padding reads the edge either way; this keeps a point almost in
# a camera's plane, whose projection is huge, finite).
EXTRAPOLATE_GRID_LIMIT = 4.0
# Parameters that begin as a no-op (identity / zero): a checkpoint that lacks them starts
# the same function, so fine-tuning may add them (``load_state_strict(allow_new=...)``).
NOOP_AT_INIT = ("pool_proj", "colour_proj", "depth_embed")
# Parameters that a model may gain on fine-tuning although they change its function from the
# first step (``depth_evidence``: see the module docstring); loaders log that they are new.
EVIDENCE_AT_INIT = ("depth_evidence",)
# Surface tolerance of the depth evidence: max(2 cm, 2% of the measured depth) (a
# structured-light camera's noise is ~0.002 z^2 m: 1.8 cm at 3 m, 5 cm at 5 m).
EVIDENCE_SIGMA_M = 0.02
EVIDENCE_SIGMA_REL = 0.02
EVIDENCE_FREE_SIGMAS = 3.0   # a point this many tolerances in front of a measurement is free
EVIDENCE_ONSET = 0.5         # the surface density starts this many tolerances in front ...
EVIDENCE_EDGE = 4.0          # ... over a sigmoid this steep (per tolerance)
EVIDENCE_ALPHA_INIT = 2.0    # optical depth per tolerance: rays stop s / alpha past the onset
COLOUR_VAR_EPS = 1e-4  # floor of the colour variance before its log (a colour std of 1%)
# Metres: the signed depth difference enters as tanh(diff / s) for each s (source_depth).
DEPTH_FEATURE_SCALES = (0.02, 0.05, 0.2, 1.0)


def as_float_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """Images as floats in [0, 1]: uint8 is divided by 255, float images pass unchanged."""
    return rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb


def evidence_tolerance(measured: torch.Tensor) -> torch.Tensor:
    """The depth evidence's surface tolerance at a measured depth (metres, any shape):
    max(EVIDENCE_SIGMA_M, EVIDENCE_SIGMA_REL * measured), growing with distance like the noise."""
    return torch.clamp(EVIDENCE_SIGMA_REL * measured, min=EVIDENCE_SIGMA_M)


def hidden_behind(diff: torch.Tensor, measured: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Where a view's measurement hides the point: the point lies more than
    EVIDENCE_FREE_SIGMAS tolerances behind the measured depth (``diff`` = the point's planar
    depth minus ``measured``; ``known``: the measurement exists). Same shapes in and out."""
    return known & (diff > EVIDENCE_FREE_SIGMAS * evidence_tolerance(measured))


def unoccluded_views(pooled: torch.Tensor, known: torch.Tensor, diff: torch.Tensor,
                     measured: torch.Tensor) -> torch.Tensor:
    """``occlusion_pooling``: the pooled views [B, V, N] less those whose measured depth hides
    the point (it lies more than EVIDENCE_FREE_SIGMAS tolerances behind the surface the view
    measured at its projection: that view's features there are the occluder's), except where
    that would leave a point no view (then all of them stay: the point is hidden from every
    measuring view, and the field still needs its inputs).

    Args:
        known: [B, V, ...] with N elements per view; diff, measured: [B, V, N] (the depth cue).
    """
    B, V, N = pooled.shape
    kept = pooled & ~hidden_behind(diff, measured, known.reshape(B, V, N))
    return torch.where(kept.any(dim=1, keepdim=True), kept, pooled)


def masked_mean_var(values: torch.Tensor, visible: torch.Tensor, count: torch.Tensor,
                    variance: bool = True, overwrite: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean and (population) variance over the views that see each point.

    Args:
        values: [B, V, R, S, D]; visible: [B, V, R, S] bool;
        count: [B, R, S, 1] visible views, clamped to >= 1, in ``values``' dtype.
        variance: False skips it (one pass less over ``values`` on the query path).
        overwrite: use ``values`` as scratch (inference: no new [B, V, R, S, D] tensors; the
            same numbers bit for bit).
    Returns:
        mean, variance: [B, R, S, D]; E[x^2] - E[x]^2, clamped at 0 (0 for one view), or None.
    """
    if overwrite:
        x = values.masked_fill_(~visible[..., None], 0.0)
        mean = x.sum(dim=1).div_(count)
        if not variance:
            return mean, None
        return mean, x.mul_(x).sum(dim=1).div_(count).sub_(mean * mean).clamp_min_(0.0)
    x = torch.where(visible[..., None], values, 0.0)
    mean = x.sum(dim=1) / count
    if not variance:
        return mean, None
    return mean, ((x * x).sum(dim=1) / count - mean * mean).clamp_min(0.0)


@dataclass
class FieldConfig:
    """Architecture of one semantic field (coarse and fine fields each have their own)."""

    hidden_dim: int = 128          # paper: 128 by default, up to 512
    n_blocks: int = 3              # residual blocks per view, before the mean over views
    n_head_blocks: int = 2         # residual blocks in each head
    n_harmonic_xyz: int = 10
    n_harmonic_dir: int = 4
    num_classes: int = NUM_CLASSES
    projected_features: bool = True  # False: the naive reference path (sample 256-d, then linear)
    view_pooling: str = "mean"       # mean (paper) | mean_var (see the module docstring)
    source_rgb: bool = False         # also read source colours (see the module docstring)
    source_depth: bool = False       # also read measured source depth (see the module docstring)
    view_direction: bool = True      # False: no gamma(d_v) input at all (the paper's "w/o view dir." ablation)
    depth_evidence: bool = False     # measured depth carves free space and adds surface density (see above)
    unseen_points: str = "empty"     # empty (density 0, paper) | extrapolate (from the image borders; see above)
    occlusion_pooling: bool = False  # pool only the views whose measured depth does not hide the point (see above)

    def __post_init__(self) -> None:
        if self.view_pooling not in VIEW_POOLING_MODES:
            raise ValueError(f"FieldConfig.view_pooling must be one of {VIEW_POOLING_MODES}, "
                             f"got {self.view_pooling!r}")
        if self.unseen_points not in UNSEEN_POINT_MODES:
            raise ValueError(f"FieldConfig.unseen_points must be one of {UNSEEN_POINT_MODES}, "
                             f"got {self.unseen_points!r}")
        if self.depth_evidence and not self.source_depth:
            raise ValueError("FieldConfig.depth_evidence needs source_depth: the evidence is read from the "
                             "measured source depth")
        if self.occlusion_pooling and not self.source_depth:
            raise ValueError("FieldConfig.occlusion_pooling needs source_depth: occlusion is read from the "
                             "measured source depth")


@dataclass
class SourceViews:
    """Encoded source views for a batch of queries.

    Attributes:
        features: [B, V, C, h, w] encoder feature maps (any stride; they cover the image).
        K: [B, V, 3, 3] intrinsics for images of size (height, width).
        c2w: [B, V, 4, 4] camera-to-world poses (OpenCV optical frame, metres).
        height, width: the source image size that K refers to.
        valid: optional [B, V] bool; False marks a padding view that is never used.
        rgb: optional [B, V, 3, H', W'] source colours in [0, 1] (any size covering the
            image; fields with ``source_rgb`` need them).
        depth: optional [B, V, H'', W''] measured planar source depth in metres, NaN (or 0)
            = no measurement (any size covering the image, like ``rgb``). Read by fields
            with ``source_depth`` and by depth-guided sampling; None = no view has depth.
    """

    features: torch.Tensor
    K: torch.Tensor
    c2w: torch.Tensor
    height: int
    width: int
    valid: torch.Tensor | None = None
    rgb: torch.Tensor | None = None
    depth: torch.Tensor | None = None

    def __post_init__(self) -> None:
        f = self.features
        if f.ndim != 5:
            raise ValueError(f"SourceViews.features must be [B, V, C, h, w], got {tuple(f.shape)}")
        b, v = f.shape[:2]
        if tuple(self.K.shape) != (b, v, 3, 3):
            raise ValueError(f"SourceViews.K must be [{b}, {v}, 3, 3], got {tuple(self.K.shape)}")
        if tuple(self.c2w.shape) != (b, v, 4, 4):
            raise ValueError(f"SourceViews.c2w must be [{b}, {v}, 4, 4], got {tuple(self.c2w.shape)}")
        if self.valid is not None and tuple(self.valid.shape) != (b, v):
            raise ValueError(f"SourceViews.valid must be [{b}, {v}], got {tuple(self.valid.shape)}")
        if self.rgb is not None and (self.rgb.ndim != 5 or tuple(self.rgb.shape[:3]) != (b, v, 3)):
            raise ValueError(f"SourceViews.rgb must be [{b}, {v}, 3, H, W], got {tuple(self.rgb.shape)}")
        if self.depth is not None and (self.depth.ndim != 4 or tuple(self.depth.shape[:2]) != (b, v)
                                       or not self.depth.is_floating_point()):
            raise ValueError(f"SourceViews.depth must be float [{b}, {v}, H, W] (metres, NaN = unknown), "
                             f"got {tuple(self.depth.shape)} {self.depth.dtype}")
        if int(self.height) <= 0 or int(self.width) <= 0:
            raise ValueError(f"SourceViews image size must be positive, got {self.height}x{self.width}")

    @property
    def batch_size(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.features.shape[1])


@dataclass
class PreparedSources:
    """What one field needs per forward pass, computed once by :meth:`SemanticField.prepare`.

    Attributes:
        sources: the SourceViews.
        maps: [B*V, M, h, w] the maps to sample: projected (M = hidden_dim) or raw (M = C).
        rotation: [B, V, 3, 3] camera-to-world rotations R (d_cam = d @ R), in the cameras' dtype.
        colours: [B*V, 3, H', W'] float source colours (fields with ``source_rgb``), else None.
        depth: [B*V, H'', W''] float32 measured depth, NaN = unknown (fields with
            ``source_depth`` whose sources have depth), else None.
    """

    sources: SourceViews
    maps: torch.Tensor
    rotation: torch.Tensor
    colours: torch.Tensor | None = None
    depth: torch.Tensor | None = None


@dataclass
class FieldOutput:
    """Field values at sample points. Shapes: logits [B, R, S, num_classes], rgb [B, R, S, 3]
    in [0, 1], density [B, R, S] >= 0 (per metre), num_visible [B, R, S] (source views that see
    the point)."""

    logits: torch.Tensor
    rgb: torch.Tensor
    density: torch.Tensor
    num_visible: torch.Tensor


class ResBlock(nn.Module):
    """Pre-activation residual MLP block ``x + fc1(relu(fc0(relu(x))))`` (pixelNeRF's
    ResnetBlockFC). ``fc1`` starts at zero, so every block starts as the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc0 = nn.Linear(dim, dim)
        self.fc1 = nn.Linear(dim, dim)
        nn.init.kaiming_normal_(self.fc0.weight, a=0.0, mode="fan_in")
        nn.init.zeros_(self.fc0.bias)
        nn.init.zeros_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inference: the second ReLU and the residual add run in place, or inside the GEMM on
        # the CPU (cpu_linear): passes over [points, views, hidden], not the GEMMs, bound the
        # 2-core CPU's query time.
        return cpu_linear.linear(cpu_linear.linear(F.relu(x), self.fc0, "relu"), self.fc1, residual=x)


class Head(nn.Module):
    """``n_blocks`` residual blocks, ReLU, then a linear layer to ``out_dim``."""

    def __init__(self, dim: int, out_dim: int, n_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResBlock(dim) for _ in range(n_blocks)])
        self.out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_linear.linear(F.relu(self.blocks(x)), self.out)


class DepthEmbedding(nn.Module):
    """Per-(point, view) depth cue -> hidden offset: ``W_z e`` where measured, ``u`` where not.

    ``proj`` (``W_z``, no bias) and ``unknown`` (``u``) start at zero: a no-op at init.
    """

    def __init__(self, hidden_dim: int, scales: tuple[float, ...] = DEPTH_FEATURE_SCALES) -> None:
        super().__init__()
        self.register_buffer("inv_scales", 1.0 / torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.proj = nn.Linear(len(scales), hidden_dim, bias=False)
        nn.init.zeros_(self.proj.weight)
        self.unknown = nn.Parameter(torch.zeros(hidden_dim))

    def features(self, diff: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """[...] signed differences (metres) and [...] bool -> e [..., n_scales] float32,
        0 where unknown (so that nothing non-finite reaches the layer: 0 * NaN is NaN)."""
        e = torch.tanh(torch.where(known, diff, 0.0)[..., None].float() * self.inv_scales)
        return torch.where(known[..., None], e, 0.0)

    def _inputs(self, features: torch.Tensor, known: torch.Tensor, dtype: torch.dtype):
        w = torch.cat([self.proj.weight, self.unknown[:, None]], dim=1).to(dtype)
        return torch.cat([features.to(dtype), (~known)[..., None].to(dtype)], dim=-1), w

    def forward(self, features: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """features [..., n_scales] (from :meth:`features`), known [...] -> [..., hidden].

        One linear layer over [known * e, 1 - known] with weight [W_z, u]: the same as
        ``where(known, W_z e, u)`` without a second pass over [..., hidden].
        """
        x, w = self._inputs(features, known, self.proj.weight.dtype)
        return F.linear(x, w)

    def add_to(self, h: torch.Tensor, features: torch.Tensor, known: torch.Tensor,
               overwrite: bool = False) -> torch.Tensor:
        """``h + self(features, known)`` for h [..., hidden], in one GEMM that accumulates
        into h (addmm: no separate [..., hidden] tensor and pass for the sum; under autocast
        the plain sum, which keeps h's dtype; ``overwrite``: into h itself, which must be
        contiguous). With W_z = u = 0 the product is exact zeros, so h comes back bit for bit."""
        if torch.is_autocast_enabled(h.device.type):  # addmm would run (and return) in bf16/fp16
            return h + self(features, known)
        x, w = self._inputs(features, known, h.dtype)
        if overwrite:
            h.view(-1, h.shape[-1]).addmm_(x.reshape(-1, x.shape[-1]), w.t())
            return h
        out = torch.addmm(h.reshape(-1, h.shape[-1]), x.reshape(-1, x.shape[-1]), w.t())
        return out.reshape(h.shape)


def pixels_to_grid(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel-centre (u, v) -> grid_sample coordinates in [-1, 1] for ``align_corners=False``.

    The image spans u in [-0.5, W - 0.5], mapped to [-1, 1]; a feature map of any stride
    covers the same span, so the same coordinates address it.
    Args: uv [..., 2]. Returns: [..., 2].
    """
    scale = uv.new_tensor([2.0 / width, 2.0 / height])
    return (uv + 0.5) * scale - 1.0


class DepthEvidence(nn.Module):
    """Density from measured source depth: carving and surface density (module docstring)."""

    def __init__(self, alpha: float = EVIDENCE_ALPHA_INIT) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))  # dimensionless

    def forward(self, density: torch.Tensor, diff: torch.Tensor, measured: torch.Tensor, known: torch.Tensor,
                visible: torch.Tensor) -> torch.Tensor:
        """Density [B, N] of the MLP -> density with the evidence applied.

        Args:
            diff: [B, V, N] z_v(x) - D_v in metres; measured: [B, V, N] D_v (metres);
            known: [B, V, N] D_v is a measurement; visible: [B, V, N] view v sees x.
        """
        seen_known = visible & known
        sigma = evidence_tolerance(torch.where(seen_known, measured, 0.0))
        z = torch.where(seen_known, diff, 0.0) / sigma
        free = (seen_known & (z < -EVIDENCE_FREE_SIGMAS)).sum(dim=1)
        shell = seen_known & (z.abs() <= EVIDENCE_FREE_SIGMAS)
        carve = free > shell.sum(dim=1)
        step = torch.sigmoid(EVIDENCE_EDGE * (z + EVIDENCE_ONSET)) / sigma
        surface = torch.where(shell, step, 0.0).amax(dim=1)
        alpha = self.log_alpha.exp()
        return torch.where(carve, 0.0, density + (alpha * surface).to(density.dtype))


def query_shape(points: torch.Tensor, directions: torch.Tensor, sources: SourceViews) -> tuple[int, int, int]:
    """(B, R, S) of a field query, after checking that points [B, R, S, 3], directions [B, R, 3]
    and the source views' batch agree; a ValueError names the mismatch."""
    if points.ndim != 4 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, R, S, 3], got {tuple(points.shape)}")
    B, R, S, _ = points.shape
    if tuple(directions.shape) != (B, R, 3):
        raise ValueError(f"directions must be [{B}, {R}, 3], got {tuple(directions.shape)}")
    if sources.batch_size != B:
        raise ValueError(f"points have batch {B}, the source views {sources.batch_size}")
    return B, R, S


class SemanticField(nn.Module):
    """The multi-view semantic field of ViewSeg. See the module docstring."""

    def __init__(self, feature_dim: int, config: FieldConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or FieldConfig()
        self.feature_dim = int(feature_dim)
        self.embed_xyz = HarmonicEmbedding(cfg.n_harmonic_xyz)
        self.embed_dir = HarmonicEmbedding(cfg.n_harmonic_dir)
        self.xyz_dim = self.embed_xyz.output_dim(3)
        # Without view direction the input layer has no direction columns: n_harmonic_dir=0
        # alone would still feed the raw direction (include_input), so it is no off switch.
        self.dir_dim = self.embed_dir.output_dim(3) if cfg.view_direction else 0
        # One layer over [gamma(x), gamma(d), feature]; the paths below use slices of its weight.
        self.lin_in = nn.Linear(self.xyz_dim + self.dir_dim + self.feature_dim, cfg.hidden_dim)
        self.colour_proj = None
        if cfg.source_rgb:  # [mean colour, log colour variance] over the visible views -> hidden
            self.colour_proj = nn.Linear(6, cfg.hidden_dim, bias=False)
            nn.init.zeros_(self.colour_proj.weight)
        self.blocks = nn.Sequential(*[ResBlock(cfg.hidden_dim) for _ in range(cfg.n_blocks)])
        self.pool_proj = None
        if cfg.view_pooling == "mean_var":
            self.pool_proj = nn.Linear(2 * cfg.hidden_dim, cfg.hidden_dim)
            with torch.no_grad():
                self.pool_proj.weight.zero_()
                self.pool_proj.weight[:, :cfg.hidden_dim].copy_(torch.eye(cfg.hidden_dim))
                self.pool_proj.bias.zero_()
        self.semantic_head = Head(cfg.hidden_dim, cfg.num_classes, cfg.n_head_blocks)
        self.rgb_density_head = Head(cfg.hidden_dim, 4, cfg.n_head_blocks)
        # Last, so that the random init of every other layer is the same with or without it.
        self.depth_embed = DepthEmbedding(cfg.hidden_dim) if cfg.source_depth else None
        self.depth_evidence = DepthEvidence() if cfg.depth_evidence else None

    # Slices of lin_in's weight: [hidden, xyz_dim], [hidden, dir_dim], [hidden, feature_dim].
    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w = self.lin_in.weight
        a, b = self.xyz_dim, self.xyz_dim + self.dir_dim
        return w[:, :a], w[:, a:b], w[:, b:]

    def prepare(self, sources: SourceViews) -> PreparedSources:
        """Once per forward pass: project (or keep) the feature maps, split the poses."""
        feats = sources.features
        if feats.shape[2] != self.feature_dim:
            raise ValueError(f"source features have {feats.shape[2]} channels, the field expects "
                             f"{self.feature_dim}")
        maps = feats.flatten(0, 1)
        if self.config.projected_features:
            w_feat = self._weights()[2]
            maps = F.conv2d(maps, w_feat[:, :, None, None].to(maps.dtype))  # [B*V, hidden, h, w]
        colours = None
        if self.colour_proj is not None:
            if sources.rgb is None:
                raise ValueError("this field reads source colours (model config source_rgb: true): "
                                 "pass the source images as make_sources(..., rgb=...)")
            colours = as_float_rgb(sources.rgb.flatten(0, 1)).float()
        depth = None
        if self.depth_embed is not None and sources.depth is not None:
            depth = sources.depth.flatten(0, 1).float()
        return PreparedSources(sources, maps, sources.c2w[..., :3, :3], colours, depth)

    def depth_difference(self, x_cam: torch.Tensor, uv: torch.Tensor, prepared: PreparedSources
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed planar-depth difference to the measured surface, per (point, view).

        Args:
            x_cam: [B, V, N, 3] points in each source camera's frame; uv: [B, V, N, 2] their
                projections (source image pixels; only meaningful where visible).
        Returns:
            diff [B, V, N] = x_cam.z - D_v at the nearest depth pixel (metres), and known
            [B, V, N] bool (the depth pixel holds a measurement; False everywhere when the
            sources carry no depth).
        """
        src = prepared.sources
        B, V, N = x_cam.shape[:3]
        if prepared.depth is None:
            return x_cam.new_zeros((B, V, N)), torch.zeros((B, V, N), dtype=torch.bool, device=x_cam.device)
        depth = prepared.depth                                                # [B*V, H'', W'']
        Hd, Wd = depth.shape[-2:]
        # Nearest depth pixel: column floor((u + 0.5) W'' / W) (pixel areas, any map size).
        uv = torch.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0)
        col = torch.floor((uv[..., 0] + 0.5) * (Wd / src.width)).clamp(0, Wd - 1).long()
        row = torch.floor((uv[..., 1] + 0.5) * (Hd / src.height)).clamp(0, Hd - 1).long()
        measured = depth.reshape(B, V, Hd * Wd).gather(2, row * Wd + col).to(x_cam.dtype)
        known = known_depth(measured)
        return torch.where(known, x_cam[..., 2] - measured, 0.0), known

    def _inputs(self, points: torch.Tensor, directions: torch.Tensor, prepared: PreparedSources):
        """Sampled (projected) features [B, V, R, S, M], embeddings gamma(x_v) [B, V, R, S, *]
        and gamma(d_v) [B, V, R, 1, *] in the weights' dtype, visibility [B, V, R*S] (in
        front of the view, inside its image), the sampled source colours [B, V, R, S, 3] (None
        without ``source_rgb``), the depth cue (features [B, V, R, S, n_scales], known
        [B, V, R, S], the signed difference [B, V, R*S] and the measured depth [B, V, R*S];
        None without ``source_depth``) and the views pooled [B, V, R*S] (the visible ones;
        with ``unseen_points="extrapolate"``, for a point no view sees, every view it lies in
        front of)."""
        src = prepared.sources
        B, R, S, _ = points.shape
        V, N = src.num_views, R * S
        gdtype = torch.promote_types(points.dtype, torch.float32)
        points, directions = points.to(gdtype), directions.to(gdtype)
        K, c2w = src.K.to(gdtype), src.c2w.to(gdtype)
        maps = prepared.maps
        if maps.dtype not in (torch.float32, torch.float64):
            maps = maps.float()

        # Projection and visibility of every point in every view: [B, V, N].
        pts = points.reshape(B, 1, N, 3).expand(B, V, N, 3)
        x_cam = world_to_camera(c2w, pts)                                   # [B, V, N, 3]
        uv, _, in_front = project_camera_points(K, x_cam)
        if src.valid is not None:
            in_front = in_front & src.valid[:, :, None]
        visible = in_front & in_image(uv, src.height, src.width)
        pooled = visible
        grid = pixels_to_grid(uv, src.height, src.width)
        if self.config.unseen_points == "extrapolate":
            pooled = torch.where(visible.any(dim=1, keepdim=True), visible, in_front)
            grid = grid.clamp(-EXTRAPOLATE_GRID_LIMIT, EXTRAPOLATE_GRID_LIMIT)
        # Points no pooled view sees may project to inf/NaN; park them at the centre so that
        # nothing non-finite enters grid_sample (0 * NaN would survive the masking below).
        grid = torch.where(pooled[..., None], grid, 0.0)
        sampled = F.grid_sample(maps, grid.reshape(B * V, N, 1, 2).to(maps.dtype), mode="bilinear",
                                padding_mode="border", align_corners=False)  # [B*V, M, N, 1]
        sampled = sampled.reshape(B, V, -1, R, S).permute(0, 1, 3, 4, 2)  # [B, V, R, S, M]
        colours = None
        if prepared.colours is not None:
            colours = F.grid_sample(prepared.colours, grid.reshape(B * V, N, 1, 2).float(), mode="bilinear",
                                    padding_mode="border", align_corners=False)  # [B*V, 3, N, 1]
            colours = colours.reshape(B, V, 3, R, S).permute(0, 1, 3, 4, 2)

        # Direction in each source camera's frame: d_cam = R^T d (x_cam = R^T (x - t) above).
        rot = prepared.rotation
        d_cam = directions[:, None] @ rot.to(gdtype)                        # [B, V, R, 3]
        wdtype = self.lin_in.weight.dtype
        g_x = self.embed_xyz(x_cam).reshape(B, V, R, S, self.xyz_dim).to(wdtype)
        g_d = self.embed_dir(d_cam)[:, :, :, None].to(wdtype) if self.dir_dim else None  # [B, V, R, 1, dir_dim]
        depth_cue = None
        if self.depth_embed is not None:
            diff, known = self.depth_difference(x_cam, uv, prepared)
            depth_cue = (self.depth_embed.features(diff, known).reshape(B, V, R, S, -1),
                         known.reshape(B, V, R, S), diff, x_cam[..., 2] - diff)
        return (sampled.to(wdtype), g_x, g_d, visible, None if colours is None else colours.to(wdtype),
                depth_cue, pooled)

    def forward(self, points: torch.Tensor, directions: torch.Tensor,
                prepared: PreparedSources) -> FieldOutput:
        """Evaluate the field.

        Args:
            points: [B, R, S, 3] world points (S samples on each of R rays).
            directions: [B, R, 3] unit world viewing directions of the rays.
            prepared: from :meth:`prepare` of THIS field.
        Returns:
            FieldOutput with [B, R, S, ...] tensors.
        """
        src = prepared.sources
        B, R, S = query_shape(points, directions, src)
        V = src.num_views
        # Geometry (projection, frames, embedding) and feature sampling run in at least
        # float32 with autocast off: autocast would run these einsums/matmuls in bf16, and a
        # bf16 coordinate is off by centimetres (sin(2^9 x) becomes noise) or by a fraction
        # of a feature pixel. Only the MLP below follows autocast.
        with torch.autocast(points.device.type, enabled=False):
            sampled, g_x, g_d, visible, colours, depth_cue, pooled = self._inputs(points, directions, prepared)
            if self.config.occlusion_pooling:
                pooled = unoccluded_views(pooled, *depth_cue[1:])
        # Inference in one dtype: the [B, V, R, S, hidden] tensors below are this call's own,
        # so the input layer's GEMMs accumulate into one of them and the pooling reuses it
        # (four fewer passes over it, and fewer fresh allocations, which on the CPU cost page
        # faults; docs/benchmarks.md, "Ray chunks").
        # Not under torch.compile: inductor plans its own buffers, and the in-place writes into
        # views of fresh tensors below confuse its layouts (a failed view at compile time).
        overwrite = not (torch.is_grad_enabled() or torch.is_autocast_enabled(points.device.type)
                         or torch.compiler.is_compiling())
        if self.config.projected_features:
            w_x, w_d, _ = self._weights()
            # The direction term is per ray, shared by the ray's S samples.
            if overwrite:  # sampled, g_x and the weights share one dtype (_inputs casts them)
                shared = self.lin_in.bias if g_d is None else F.linear(g_d, w_d, self.lin_in.bias)
                h = torch.add(sampled, shared, out=sampled.new_empty((B, V, R, S, self.config.hidden_dim)))
                h.view(-1, h.shape[-1]).addmm_(g_x.reshape(-1, g_x.shape[-1]), w_x.t())
            elif g_d is None:
                h = F.linear(g_x, w_x, self.lin_in.bias) + sampled
            else:
                h = F.linear(g_x, w_x) + F.linear(g_d, w_d, self.lin_in.bias) + sampled
        else:
            parts = [g_x] + ([] if g_d is None else [g_d.expand(B, V, R, S, self.dir_dim)]) + [sampled]
            h = self.lin_in(torch.cat(parts, dim=-1))
        if depth_cue is not None:  # added last: with W_z = u = 0 it adds exact zeros
            h = self.depth_embed.add_to(h, *depth_cue[:2], overwrite=overwrite and h.is_contiguous())
        h = self.blocks(h)                                                  # [B, V, R, S, hidden]

        vis = pooled.reshape(B, V, R, S)
        count = vis.sum(dim=1)                                              # [B, R, S]
        n = count.clamp(min=1)[..., None].to(h.dtype)
        mean, var = masked_mean_var(h, vis, n, variance=self.pool_proj is not None, overwrite=overwrite)
        c_term = None
        if colours is not None:
            c_mean, c_var = masked_mean_var(colours, vis, n)
            c_term = cpu_linear.linear(torch.cat([c_mean, torch.log(c_var + COLOUR_VAR_EPS)], dim=-1),
                                       self.colour_proj)
        if var is not None:  # the colour term rides on pool_proj's GEMM as its residual
            h = cpu_linear.linear(torch.cat([mean, var], dim=-1), self.pool_proj, residual=c_term)
        else:
            h = mean if c_term is None else mean + c_term

        logits = self.semantic_head(h)
        raw = self.rgb_density_head(h)
        rgb = torch.sigmoid(raw[..., :3])
        # softplus, not ReLU: a ReLU density stuck below zero gets no gradient.
        density = torch.where(count > 0, F.softplus(raw[..., 3]), 0.0)
        if self.depth_evidence is not None:
            _, known, diff, measured = depth_cue
            density = self.depth_evidence(density.reshape(B, R * S), diff, measured,
                                          known.reshape(B, V, R * S), visible).reshape(B, R, S)
        num_visible = count if pooled is visible else visible.reshape(B, V, R, S).sum(dim=1)
        return FieldOutput(logits=logits, rgb=rgb, density=density, num_visible=num_visible)
