"""The ViewSeg model: a 2D encoder over the source views plus the coarse-to-fine renderer.

Two ways in:

- training: ``model(batch)`` with source images, cameras and ray bundles (see
  :meth:`ViewSeg.forward`), returning per-ray outputs for the losses;
- inference: ``features = model.encode_sources(rgb)`` once per keyframe (the ROS node
  caches them), ``sources = model.make_sources(features, K, c2w, height, width)``, then
  ``model.render(K, c2w, height, width, sources)`` for any number of query poses.

RGB-D keyframes (issue 15, opt-in): ``source_depth`` makes the field read the measured source
depth (a per-view visibility cue, see :mod:`viewseg_core.model.field`) and ``depth_guided``
concentrates the coarse samples around the surfaces that depth puts on each query ray (see
:mod:`viewseg_core.model.depth_guide`). Both read ``make_sources(..., depth=...)``; a view
without depth (NaN everywhere), or no depth at all, is the dropout behaviour: the learned
"unknown" cue and stratified samples. Both start from an RGB model's weights as a no-op
(:func:`viewseg_core.model.weights.extend_model`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from viewseg_core.classes import NUM_CLASSES
from viewseg_core.data.records import View
from viewseg_core.depth_completion import complete
from viewseg_core.model.encoder import ENCODER_NAMES, NORM_MODES, build_encoder
from viewseg_core.model.field import UNSEEN_POINT_MODES, VIEW_POOLING_MODES, FieldConfig, SourceViews, as_float_rgb
from viewseg_core.model.renderer import PassOutput, Renderer, RendererConfig, RayOutput
from viewseg_core.rays import RayBundle


@dataclass
class ModelConfig:
    """Everything that defines a ViewSeg network (stored in its checkpoints).

    Defaults are the paper's: DeepLabv3+ ResNet-50, 256-d features, hidden width 128,
    10/4 harmonics, 64 coarse + 128 fine samples between 0.1 m and 20 m.
    """

    encoder: str = "deeplabv3plus_resnet50"
    norm: str = "bn"                     # bn | frozen_bn | sync_bn
    feature_dim: int = 256               # DeepLabv3+ width (pixelnerf_resnet34 is always 512)
    encoder_weights: str = ""            # local file to start the encoder from ("" = random init)
    encoder_weights_head: bool = False   # also load its class head (same label set only)
    hidden_dim: int = 128
    n_blocks: int = 3
    n_head_blocks: int = 2
    n_harmonic_xyz: int = 10
    n_harmonic_dir: int = 4
    view_direction: bool = True          # False: the field gets no viewing direction (paper's ablation)
    num_classes: int = NUM_CLASSES
    projected_features: bool = True      # False: the naive reference path (benchmarks, tests)
    view_pooling: str = "mean"           # mean (paper) | mean_var (adds the variance over views)
    source_rgb: bool = False             # the field also reads source colours (not the paper's)
    source_depth: bool = False           # the field also reads measured source depth (RGB-D, not the paper's)
    depth_evidence: bool = False         # measured depth carves free space, adds surface density (needs source_depth)
    unseen_points: str = "empty"         # empty (density 0, paper) | extrapolate (from the image borders, RGB-D)
    occlusion_pooling: bool = False      # pool only views whose measured depth does not hide the point (RGB-D)
    depth_guided: bool = False           # coarse samples around the surfaces source depth measured (RGB-D)
    guide_samples: int = 8               # band samples per ray (depth_guided)
    guide_band: float = 0.1              # band half-width, metres (depth_guided)
    guide_footprint: int = 2             # splat block width in pixels (depth_guided)
    guide_layers: int = 1                # candidates per ray; 2 adds the surface behind a silhouette (depth_guided)
    guide_max_footprint: int = 6         # blocks widen to reach their neighbours, up to this; <= footprint: fixed
    num_coarse: int = 64
    num_fine: int = 128
    lindisp: bool = False
    near: float = 0.1
    far: float = 20.0
    opacity_threshold: float = 0.5
    chunk_size: int = 4096
    # (H, W) the encoder saw in training; inference resizes source images to it so that
    # features keep their trained scale. (0, 0) = use images as given.
    source_size: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.source_size = tuple(int(x) for x in self.source_size)  # lists from YAML/JSON
        if len(self.source_size) != 2 or min(self.source_size) < 0:
            raise ValueError(f"ModelConfig.source_size must be (H, W) >= 0, got {self.source_size}")
        if self.encoder not in ENCODER_NAMES:
            raise ValueError(f"ModelConfig.encoder must be one of {ENCODER_NAMES}, got {self.encoder!r}")
        if self.view_pooling not in VIEW_POOLING_MODES:
            raise ValueError(f"ModelConfig.view_pooling must be one of {VIEW_POOLING_MODES}, "
                             f"got {self.view_pooling!r}")
        if self.occlusion_pooling and not self.source_depth:
            raise ValueError("ModelConfig.occlusion_pooling needs source_depth: true (occlusion is read from the "
                             "measured source depth)")
        if self.depth_evidence and not self.source_depth:
            raise ValueError("ModelConfig.depth_evidence needs source_depth: true (the evidence is the measured "
                             "source depth the field reads)")
        if self.unseen_points not in UNSEEN_POINT_MODES:
            raise ValueError(f"ModelConfig.unseen_points must be one of {UNSEEN_POINT_MODES}, "
                             f"got {self.unseen_points!r}")
        if self.guide_layers not in (1, 2):
            raise ValueError(f"ModelConfig.guide_layers must be 1 or 2, got {self.guide_layers}")
        if self.guide_max_footprint < 0:
            raise ValueError(f"ModelConfig.guide_max_footprint must be >= 0 (0 or <= guide_footprint: fixed "
                             f"blocks), got {self.guide_max_footprint}")
        if self.norm not in NORM_MODES:
            raise ValueError(f"ModelConfig.norm must be one of {NORM_MODES}, got {self.norm!r}")
        if not 0 <= self.near < self.far:
            raise ValueError(f"ModelConfig needs 0 <= near < far, got {self.near}, {self.far}")
        for name in ("hidden_dim", "num_coarse", "num_classes", "chunk_size", "feature_dim", "guide_samples",
                     "guide_band", "guide_footprint"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> "ModelConfig":
        """Build from plain values; unknown keys are an error naming ``source``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{source}: unknown model config key(s) {unknown}; valid: {sorted(names)}")
        return cls(**dict(data))

    def field_config(self) -> FieldConfig:
        return FieldConfig(hidden_dim=self.hidden_dim, n_blocks=self.n_blocks,
                           n_head_blocks=self.n_head_blocks, n_harmonic_xyz=self.n_harmonic_xyz,
                           n_harmonic_dir=self.n_harmonic_dir, num_classes=self.num_classes,
                           projected_features=self.projected_features, view_pooling=self.view_pooling,
                           source_rgb=self.source_rgb, source_depth=self.source_depth,
                           view_direction=self.view_direction, depth_evidence=self.depth_evidence,
                           unseen_points=self.unseen_points, occlusion_pooling=self.occlusion_pooling)

    def renderer_config(self) -> RendererConfig:
        return RendererConfig(num_coarse=self.num_coarse, num_fine=self.num_fine, lindisp=self.lindisp,
                              near=self.near, far=self.far, opacity_threshold=self.opacity_threshold,
                              chunk_size=self.chunk_size, depth_guided=self.depth_guided,
                              guide_samples=self.guide_samples, guide_band=self.guide_band,
                              guide_footprint=self.guide_footprint, guide_layers=self.guide_layers,
                              guide_max_footprint=self.guide_max_footprint)

    @property
    def reads_source_depth(self) -> bool:
        """The model uses measured source depth (field cue or guided sampling)."""
        return self.source_depth or self.depth_guided


class ViewSeg(nn.Module):
    """Encoder + renderer. Construction never reads files; :func:`build_model` does."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ModelConfig()
        self.encoder = build_encoder(cfg.encoder, feature_dim=cfg.feature_dim, num_classes=cfg.num_classes,
                                     norm=cfg.norm)
        self.renderer = Renderer(self.encoder.feature_dim, cfg.field_config(), cfg.renderer_config())
        # The encoder's class head serves 2D pretraining and the oracle baseline; no ViewSeg
        # loss reaches it, so it is frozen here (DDP then needs no find_unused_parameters).
        self.encoder.head.requires_grad_(False)

    def set_projected_features(self, enabled: bool) -> None:
        """Switch both fields between the projected (fast) and naive (reference) paths."""
        self.config = dataclasses.replace(self.config, projected_features=bool(enabled))
        for f in (self.renderer.coarse, self.renderer.fine):
            if f is not None:
                f.config = dataclasses.replace(f.config, projected_features=bool(enabled))

    def encode_sources(self, rgb: torch.Tensor) -> torch.Tensor:
        """Source images -> feature maps.

        Args:
            rgb: [B, V, 3, H, W] float in [0, 1] (or uint8).
        Returns:
            [B, V, C, h, w] with h = ceil(H / stride).
        """
        if rgb.ndim != 5 or rgb.shape[2] != 3:
            raise ValueError(f"source rgb must be [B, V, 3, H, W], got {tuple(rgb.shape)}")
        B, V = rgb.shape[:2]
        feats = self.encoder(as_float_rgb(rgb).flatten(0, 1))
        return feats.reshape(B, V, *feats.shape[1:])

    @staticmethod
    def make_sources(features: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
                     valid: torch.Tensor | None = None, rgb: torch.Tensor | None = None, *,
                     depth: torch.Tensor | None = None) -> SourceViews:
        """Bundle (possibly cached) features [B, V, C, h, w] with their cameras [B, V, ...]
        and, for models with ``source_rgb``, the source images [B, V, 3, H', W'] (float in
        [0, 1] or uint8; any size: they are sampled at the same relative positions), and for
        RGB-D models the measured depth [B, V, H'', W''] (planar metres, NaN or 0 = unknown;
        any size covering the image; None = no view has depth)."""
        # Cameras stay in (at least) float32 whatever the feature dtype: geometry needs it.
        dtype = torch.promote_types(features.dtype, torch.float32)
        return SourceViews(features, K.to(features.device, dtype), c2w.to(features.device, dtype),
                           int(height), int(width), None if valid is None else valid.to(features.device),
                           None if rgb is None else rgb.to(features.device),
                           None if depth is None else depth.to(features.device, torch.float32))

    def sources_of_views(self, features: Sequence[torch.Tensor], views: Sequence[View],
                         depth_completion: str = "none") -> SourceViews:
        """SourceViews (batch 1) of posed views from their cached encoder features [C, h, w], as
        the node renders from its keyframes: with their images [1, V, 3, H, W] uint8 for a model
        that reads source colours, and their depth [1, V, H, W] metres for one that reads source
        depth (all unknown for a view without; then ``depth_completion``,
        :func:`viewseg_core.depth_completion.complete`: a sparse sensor's skipped rows)."""
        stacked = torch.stack(list(features))[None]  # [1, V, C, h, w]
        K = torch.as_tensor(np.stack([v.K for v in views]))[None]
        c2w = torch.as_tensor(np.stack([v.c2w for v in views]))[None]
        height, width = views[0].height, views[0].width
        rgb = None
        if self.config.source_rgb:   # the field converts uint8
            rgb = torch.from_numpy(np.stack([v.rgb for v in views])).permute(0, 3, 1, 2)[None]
        extra = {}
        if getattr(self.config, "source_depth", False):
            depth = np.stack([v.depth if v.depth is not None else np.full((height, width), np.nan, np.float32)
                              for v in views])
            extra["depth"] = torch.from_numpy(complete(depth, depth_completion))[None]
        return self.make_sources(stacked, K, c2w, height, width, rgb=rgb, **extra)

    def forward(self, batch: Mapping[str, Any], *, perturb: bool | None = None,
                generator: torch.Generator | None = None) -> dict[str, RayOutput]:
        """Training forward pass.

        ``batch`` keys:
            source_rgb: [B, V, 3, H, W] float in [0, 1] (or uint8).
            source_K: [B, V, 3, 3] for (H, W); source_c2w: [B, V, 4, 4].
            target_rays: RayBundle [B, R] rays of the target view.
            source_rays: optional RayBundle [B, Rs] rays of the source views (paper Eq. 6).
            source_valid: optional [B, V] bool (False = padding view).
            source_depth_input: [B, V, H', W'] measured source depth (NaN = unknown), read
                by models with ``source_depth`` / ``depth_guided``; absent = no view has
                depth (the dropout behaviour).
            target_K [B, 3, 3], target_c2w [B, 4, 4], target_size [B, 2] or [2] (H, W): the
                target camera, needed by ``depth_guided`` models when source depth is given
                (the splat of source depth into the target image guides its rays; source
                rays are guided by splats into their own source cameras).
        ``perturb`` defaults to ``self.training``.
        Returns:
            {"target": RayOutput [B, R], "source": RayOutput [B, Rs] (when given)}.
        """
        missing = [k for k in ("source_rgb", "source_K", "source_c2w", "target_rays") if k not in batch]
        if missing:
            raise ValueError(f"ViewSeg batch lacks {missing}")
        rgb = batch["source_rgb"]
        depth = batch.get("source_depth_input") if self.config.reads_source_depth else None
        sources = self.make_sources(self.encode_sources(rgb), batch["source_K"], batch["source_c2w"],
                                    rgb.shape[-2], rgb.shape[-1], batch.get("source_valid"), rgb, depth=depth)
        perturb = self.training if perturb is None else perturb
        target: RayBundle = batch["target_rays"]
        extra: RayBundle | None = batch.get("source_rays")
        guide = None
        if self.config.depth_guided and sources.depth is not None:
            guide = self._training_guides(batch, sources, target, extra)
        # One pass over all rays, so each field projects the source features once.
        rays = target if extra is None else RayBundle.cat([target, extra.to(target.dtype)], dim=1)
        out = self.renderer(rays.to(sources.features.device), sources, perturb=perturb, generator=generator,
                            guide=guide)
        measured = None if guide is None else torch.isfinite(guide if guide.ndim == 2 else guide[..., 0])
        if extra is None:
            return {"target": RayOutput(out.coarse, out.fine, measured)}
        n = target.shape[1]
        split = lambda p, sl: None if p is None else p.map(lambda x: x[:, sl])  # noqa: E731
        part = lambda sl: None if measured is None else measured[:, sl]  # noqa: E731
        return {"target": RayOutput(split(out.coarse, slice(0, n)), split(out.fine, slice(0, n)), part(slice(0, n))),
                "source": RayOutput(split(out.coarse, slice(n, None)), split(out.fine, slice(n, None)),
                                    part(slice(n, None)))}

    @torch.no_grad()
    def _training_guides(self, batch: Mapping[str, Any], sources: SourceViews, target: RayBundle,
                         extra: RayBundle | None) -> torch.Tensor:
        """Candidate distances [B, R (+ Rs)] (or [B, R (+ Rs), 2] with two guide layers) for the target rays (splat into the target
        camera) and the source rays (splats into the source cameras they start from)."""
        missing = [k for k in ("target_K", "target_c2w", "target_size") if k not in batch]
        if missing:
            raise ValueError(f"a depth_guided ViewSeg batch with source_depth_input needs the target camera: "
                             f"it lacks {missing}")
        dev = sources.features.device
        size = torch.as_tensor(batch["target_size"]).reshape(-1, 2)
        if not bool((size == size[0]).all()):
            raise ValueError(f"target_size must be the same for the whole batch, got {size.tolist()}")
        H, W = int(size[0, 0]), int(size[0, 1])
        dtype = target.dtype
        target = target.to(dev, sources.c2w.dtype)
        guides = [self.renderer.guides(sources, batch["target_K"].to(dev, sources.K.dtype)[:, None],
                                       batch["target_c2w"].to(dev, sources.c2w.dtype)[:, None], H, W, target)]
        if extra is not None:
            extra = extra.to(dev, sources.c2w.dtype)
            guides.append(self.renderer.guides(sources, sources.K, sources.c2w, sources.height, sources.width,
                                               extra))
        return torch.cat(guides, dim=1).to(dtype)

    @torch.no_grad()
    def render(self, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int, sources: SourceViews,
               chunk_size: int | None = None) -> PassOutput:
        """Render target cameras [B] (or one camera, unbatched) at (height, width).

        Args:
            K: [B, 3, 3] or [3, 3]; c2w: [B, 4, 4] or [4, 4] (world frame of the sources).
        Returns:
            PassOutput with [B, H, W, ...] tensors ([H, W, ...] for an unbatched camera):
            probabilities, depth (planar, NaN = background), confidence, ``labels``...
        """
        single = K.ndim == 2
        dev, dtype = sources.features.device, sources.c2w.dtype
        K, c2w = K.to(dev, dtype), c2w.to(dev, dtype)
        if single:
            K, c2w = K[None], c2w[None]
        out = self.renderer.render_image(K, c2w, height, width, sources, chunk_size)
        return out.map(lambda x: x[0]) if single else out


def build_model(config: ModelConfig | None = None) -> ViewSeg:
    """A ViewSeg with its encoder initialised from ``config.encoder_weights`` when set."""
    from viewseg_core.model.weights import load_encoder_weights

    model = ViewSeg(config)
    if model.config.encoder_weights:
        load_encoder_weights(model.encoder, model.config.encoder_weights,
                             include_head=model.config.encoder_weights_head)
    return model
