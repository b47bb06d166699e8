"""Coarse-to-fine volume rendering of the semantic field along rays (ViewSeg's raymarcher).

Coarse and fine fields have separate weights (NeRF). The coarse field is evaluated at
stratified samples; its render weights place importance samples, and the fine field is
evaluated at the coarse and fine samples merged (NeRF's hierarchical sampling, via
:mod:`viewseg_core.sampling`). Each pass composites class logits and RGB with
:func:`viewseg_core.volrend.render` (logits, as Semantic-NeRF and ViewSeg do; see volrend)
and reports planar depth, opacity and confidence.

:meth:`Renderer.render_image` renders every pixel of a target camera in chunks of rays
under ``torch.no_grad`` for inference; each field projects its source feature maps once
per call (not per chunk).

Depth-guided sampling (``depth_guided``, RGB-D keyframes): the coarse pass evaluates
``num_coarse`` stratified samples plus ``guide_samples`` in [d - guide_band, d + guide_band]
around each ray's candidate surface distance d, which :mod:`viewseg_core.model.depth_guide`
splats from the sources' measured depth (rays without a candidate get ``num_coarse +
guide_samples`` stratified samples; :func:`viewseg_core.sampling.guided_samples`). The fine
pass, when there is one, places importance samples from those coarse weights as before.
Training jitters both the stratified and the band samples within their bins.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from viewseg_core.classes import IGNORE_LABEL
from viewseg_core.model.depth_guide import camera_guides
from viewseg_core.model.field import FieldConfig, FieldOutput, PreparedSources, SemanticField, SourceViews
from viewseg_core.rays import RayBundle, grid_rays
from viewseg_core.sampling import guided_samples, hierarchical_samples, stratified_samples
from viewseg_core.volrend import DEFAULT_OPACITY_THRESHOLD, RenderOutput, confidence, render


@dataclass
class RendererConfig:
    """Sampling and rendering settings (paper: 64 coarse + 128 fine samples, 0.1-20 m)."""

    num_coarse: int = 64
    num_fine: int = 128            # 0: coarse pass only
    lindisp: bool = False
    near: float = 0.1
    far: float = 20.0
    opacity_threshold: float = DEFAULT_OPACITY_THRESHOLD
    chunk_size: int = 4096         # rays per chunk in render_image (over the whole batch)
    depth_guided: bool = False     # coarse samples concentrated around measured source depth
    guide_samples: int = 8         # band samples per ray (depth_guided)
    guide_band: float = 0.1        # band half-width, metres (depth_guided)
    guide_footprint: int = 2       # splat block width, pixels of the splat grid (depth_guided)
    guide_layers: int = 1          # candidates per ray: 2 adds the surface behind a silhouette (depth_guided)
    guide_max_footprint: int = 6   # blocks widen to reach their neighbours, up to this; <= footprint: fixed


@dataclass
class PassOutput:
    """One pass (coarse or fine) over rays [...].

    Attributes:
        logits: [..., C] composited class logits.
        probabilities: [..., C] softmax of ``logits``.
        rgb: [..., 3] composited colour.
        depth: [...] planar depth in metres, NaN where the ray is background (not ``valid``).
        expected_depth: [...] planar depth without the background rule (for depth losses).
        opacity: [...] accumulated opacity in [0, 1].
        confidence: [...] opacity * (1 - normalised class entropy), in [0, 1].
        valid: [...] bool, opacity >= the threshold.
        weights: [..., S] render weights, t: [..., S] sample distances (None in images).
    """

    logits: torch.Tensor
    probabilities: torch.Tensor
    rgb: torch.Tensor
    depth: torch.Tensor
    expected_depth: torch.Tensor
    opacity: torch.Tensor
    confidence: torch.Tensor
    valid: torch.Tensor
    weights: torch.Tensor | None = None
    t: torch.Tensor | None = None

    def map(self, fn) -> "PassOutput":
        """Apply ``fn`` to every tensor field (None stays None)."""
        return PassOutput(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                             for f in fields(self)})

    @property
    def labels(self) -> torch.Tensor:
        """[...] int64 argmax class, :data:`IGNORE_LABEL` (255) where the ray is background."""
        return torch.where(self.valid, self.logits.argmax(-1), IGNORE_LABEL)


@dataclass
class RayOutput:
    """Both passes for a set of rays; ``fine`` is None when ``num_fine == 0``. ``measured``
    [...] bool: the ray had a candidate surface splatted from measured source depth
    (depth-guided models in training; None elsewhere)."""

    coarse: PassOutput
    fine: PassOutput | None
    measured: torch.Tensor | None = None

    @property
    def final(self) -> PassOutput:
        """The pass to report: fine when there is one."""
        return self.fine if self.fine is not None else self.coarse

    def passes(self) -> dict[str, PassOutput]:
        return {"coarse": self.coarse} | ({"fine": self.fine} if self.fine is not None else {})


def observed_opacity(r: RenderOutput, out: FieldOutput) -> torch.Tensor:
    """[B, R] the opacity the ray gathered at points some source view sees.

    Confidence rests on it: opacity a field with ``unseen_points="extrapolate"`` puts where no
    keyframe looked is a guess, and a planner must not read it as knowledge. For a field that
    gives unseen points density 0 their weights are exactly 0, so this is ``r.opacity`` bit for
    bit.
    """
    unseen = (out.num_visible == 0).to(r.weights.dtype)
    return (r.opacity - (r.weights * unseen).sum(dim=-1)).clamp_min(0.0)


class Renderer(nn.Module):
    """Coarse and fine semantic fields plus hierarchical sampling and compositing."""

    def __init__(self, feature_dim: int, field: FieldConfig | None = None,
                 config: RendererConfig | None = None) -> None:
        super().__init__()
        self.config = config or RendererConfig()
        self.coarse = SemanticField(feature_dim, field)
        self.fine = SemanticField(feature_dim, field) if self.config.num_fine > 0 else None

    def prepare(self, sources: SourceViews) -> tuple[PreparedSources, PreparedSources | None]:
        """Per-forward-pass source preparation of both fields (the projected feature maps)."""
        return self.coarse.prepare(sources), (self.fine.prepare(sources) if self.fine is not None else None)

    def coarse_samples(self, rays: RayBundle, guide: torch.Tensor | None, perturb: bool,
                       generator: torch.Generator | None = None, num_coarse: int | None = None,
                       guide_samples: int | None = None) -> torch.Tensor:
        """The coarse pass's sample distances [B, R, S] (stratified, or depth-guided when
        ``guide`` [B, R] is given: see the module docstring). Counts default to the config."""
        cfg = self.config
        nc = cfg.num_coarse if num_coarse is None else num_coarse
        if guide is None:
            return stratified_samples(rays, nc, perturb, generator, lindisp=cfg.lindisp)
        nb = cfg.guide_samples if guide_samples is None else guide_samples
        return guided_samples(rays, guide, nc, nb, cfg.guide_band, perturb, generator, lindisp=cfg.lindisp)

    def guides(self, sources: SourceViews, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
               rays: RayBundle) -> torch.Tensor:
        """Candidate surface distances [B, R] ([B, R, 2] with ``guide_layers`` 2) for rays
        [B, R] that start at C cameras K [B, C, 3, 3], c2w [B, C, 4, 4] of images (height,
        width) (NaN = none)."""
        return camera_guides(sources.depth, sources.K, sources.c2w, sources.height, sources.width, K, c2w,
                             height, width, rays.origins, rays.directions, self.config.guide_footprint,
                             sources.valid, layers=self.config.guide_layers,
                             max_footprint=self.config.guide_max_footprint)

    def _pass(self, field: SemanticField, prepared: PreparedSources, rays: RayBundle,
              t: torch.Tensor) -> PassOutput:
        return self.composite_pass(field(rays.points(t), rays.directions, prepared), rays, t)

    def composite_pass(self, out: FieldOutput, rays: RayBundle, t: torch.Tensor) -> PassOutput:
        """Field values at samples ``t`` [B, R, S] of ``rays`` [B, R] -> a rendered PassOutput
        (also used by :mod:`viewseg_core.model.fast`, which evaluates the field differently)."""
        r = render(out.density, t, {"logits": out.logits, "rgb": out.rgb}, rays=rays,
                   opacity_threshold=self.config.opacity_threshold)
        logits = r.channels["logits"]
        probs = torch.softmax(logits, dim=-1)
        return PassOutput(logits=logits, probabilities=probs, rgb=r.channels["rgb"], depth=r.depth,
                          expected_depth=r.distance * rays.z_axis.to(r.distance.dtype),
                          opacity=r.opacity, confidence=confidence(probs, observed_opacity(r, out)), valid=r.valid,
                          weights=r.weights, t=t)

    def forward(self, rays: RayBundle, sources: SourceViews, *, perturb: bool = False,
                generator: torch.Generator | None = None,
                prepared: tuple[PreparedSources, PreparedSources | None] | None = None,
                guide: torch.Tensor | None = None) -> RayOutput:
        """Render rays [B, R] from the batch's source views.

        Args:
            rays: RayBundle [B, R] (world frame; its near/far bound the samples).
            sources: SourceViews with batch B.
            perturb: jitter the samples (training); False is deterministic.
            generator: seeds the jitter.
            prepared: from :meth:`prepare`, to reuse across chunks.
            guide: [B, R] or [B, R, 2] candidate surface distances (NaN = none; :meth:`guides`). Needed
                by a ``depth_guided`` renderer whose sources have depth; without source
                depth every ray is unguided (the dropout behaviour).
        Returns:
            RayOutput with [B, R, ...] tensors.
        """
        if len(rays.shape) != 2:
            raise ValueError(f"rays must be a RayBundle [B, R], got leading shape {tuple(rays.shape)}")
        prep_c, prep_f = prepared if prepared is not None else self.prepare(sources)
        cfg = self.config
        if cfg.depth_guided and guide is None:
            if sources.depth is not None:
                raise ValueError("a depth-guided renderer needs guide distances for its rays when the "
                                 "sources have depth (Renderer.guides)")
            guide = torch.full(rays.shape, float("nan"), dtype=rays.dtype, device=rays.device)
        t_c = self.coarse_samples(rays, guide if cfg.depth_guided else None, perturb, generator)
        coarse = self._pass(self.coarse, prep_c, rays, t_c)
        fine = None
        if self.fine is not None and cfg.num_fine > 0:  # a fine field with num_fine 0: coarse only
            t_f = hierarchical_samples(t_c, coarse.weights, cfg.num_fine, perturb, generator)
            fine = self._pass(self.fine, prep_f, rays, t_f)
        return RayOutput(coarse, fine)

    @torch.no_grad()
    def render_image(self, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
                     sources: SourceViews, chunk_size: int | None = None) -> PassOutput:
        """Render every pixel of B target cameras (inference; no gradient, no jitter).

        Args:
            K: [B, 3, 3] target intrinsics for (height, width); c2w: [B, 4, 4].
            sources: SourceViews with batch B.
            chunk_size: rays per chunk over the whole batch (default: config.chunk_size).
        Returns:
            PassOutput of the final pass with [B, height, width, ...] tensors (weights/t None).
        """
        B = sources.batch_size
        if K.shape != (B, 3, 3) or c2w.shape != (B, 4, 4):
            raise ValueError(f"render_image: K must be [{B}, 3, 3] and c2w [{B}, 4, 4], "
                             f"got {tuple(K.shape)} and {tuple(c2w.shape)}")
        chunk = max(1, int(chunk_size or self.config.chunk_size) // B)
        dtype = torch.promote_types(sources.c2w.dtype, torch.float32)
        rays = grid_rays(K.to(dtype), c2w.to(dtype), height, width, near=self.config.near,
                         far=self.config.far)
        prepared = self.prepare(sources)
        guide = None
        if self.config.depth_guided:  # the splat is per image, not per chunk
            guide = self.guides(sources, K[:, None], c2w[:, None], height, width, rays)
        pieces = []
        for start in range(0, height * width, chunk):
            sl = slice(start, start + chunk)
            out = self(rays[:, sl], sources, perturb=False, prepared=prepared,
                       guide=None if guide is None else guide[:, sl]).final
            pieces.append(replace(out, weights=None, t=None))  # drop [.., S] tensors early
        merged = PassOutput(**{f.name: None if getattr(pieces[0], f.name) is None else
                               torch.cat([getattr(p, f.name) for p in pieces], dim=1)
                               for f in fields(PassOutput)})
        return merged.map(lambda x: x.reshape(B, height, width, *x.shape[2:]))
