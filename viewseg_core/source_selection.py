"""Source selection: which K of the kept views best support rendering a query camera.

Score (deterministic; all weights in :class:`SourceSelectionConfig`):

1. Sample a fixed grid of points in the query frustum: ``grid x grid`` pixel centres spread
   evenly over the query image, each at ``depth_samples`` planar depths evenly spaced in
   [near, far] (no scene geometry is needed, so it works before anything is rendered).
2. A point is *seen* by a source view when it projects in front of that camera and inside
   its image (the test of ``cameras.project_points`` + ``cameras.in_image``, in NumPy), and,
   when ``max_source_depth`` is set, no deeper than that in the source camera: a camera
   "sees" a point a kilometre away at its image centre, but its features say nothing about
   it. ``overlap`` is the fraction of the query's points a view sees, in [0, 1]; ``coverage``
   the fraction that at least one picked view sees.
3. Views are picked greedily. At each pick, a point already seen by ``c`` picked views is
   worth ``redundancy_decay ** c``, so a second view of the same wall counts less than a
   view of what no pick covers yet (``redundancy_decay = 1`` ranks by plain overlap). A
   view's score is
       gain - angle_weight * angle / 180deg - distance_weight * min(distance / far, 1)
   where ``gain`` is the mean point worth it sees, ``angle`` the angle between its optical
   axis and the query's (features of a surface seen from the same side transfer best) and
   ``distance`` between camera centres (nearby views see at similar scale).
4. Ties go to the lower index. Views that see nothing still rank (by angle and distance)
   so a caller always gets min(K, N) views; it can read ``overlap`` to refuse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from viewseg_core.cameras import _HOMOGENEOUS_EPS, pixels_to_rays, ray_z_component


@dataclass
class SourceSelectionConfig:
    num_sources: int = 4  # K: views returned
    near: float = 0.3  # metres: the sampled part of the query frustum
    far: float = 6.0
    grid: int = 12  # pixel samples per image side
    depth_samples: int = 8
    angle_weight: float = 0.25  # score lost by a view looking the opposite way
    distance_weight: float = 0.1  # score lost by a view `far` metres (or more) away
    redundancy_decay: float = 0.5  # worth of a point per earlier pick that sees it
    max_source_depth: float | None = None  # metres; None = a point at any depth in front counts

    def __post_init__(self) -> None:
        if self.num_sources < 1:
            raise ValueError(f"num_sources must be >= 1, got {self.num_sources}")
        if not 0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near} far={self.far}")
        if self.grid < 1 or self.depth_samples < 1:
            raise ValueError(f"grid and depth_samples must be >= 1: {self}")
        if not 0 <= self.redundancy_decay <= 1:
            raise ValueError(f"redundancy_decay must be in [0, 1], got {self.redundancy_decay}")
        if self.max_source_depth is not None and not self.max_source_depth > 0:
            raise ValueError(f"max_source_depth must be > 0 or None, got {self.max_source_depth}")


@dataclass
class SourceSelection:
    """Result: ``indices`` in pick order (best first) and per-candidate diagnostics.

    Attributes:
        indices: list of min(K, N) candidate indices.
        scores: the score of each pick when it was picked (same order as ``indices``).
        overlap: [N] fraction of query frustum points each candidate sees.
        angle_deg: [N] angle between optical axes, degrees.
        distance: [N] distance between camera centres, metres.
        coverage: fraction of query frustum points that at least one picked view sees.
    """

    indices: list[int]
    scores: list[float]
    overlap: torch.Tensor
    angle_deg: torch.Tensor
    distance: torch.Tensor
    coverage: float = 0.0


def frustum_points(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
                   config: SourceSelectionConfig) -> torch.Tensor:
    """[grid * grid * depth_samples, 3] world points filling the query frustum (step 1)."""
    dtype = torch.float64
    g = config.grid
    u = (torch.arange(g, dtype=dtype) + 0.5) * (width / g) - 0.5
    v = (torch.arange(g, dtype=dtype) + 0.5) * (height / g) - 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    uv = torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=-1)  # [g*g, 2]
    origins, directions = pixels_to_rays(K.to(dtype), c2w.to(dtype), uv)
    cos_z = ray_z_component(K, c2w.to(dtype), directions)  # ray distance = planar depth / cos_z
    depths = torch.linspace(config.near, config.far, config.depth_samples, dtype=dtype)
    distance = depths[:, None] / cos_z[None, :]  # [D, g*g]
    points = origins[None] + directions[None] * distance[..., None]
    return points.reshape(-1, 3)


def select_sources(query_K, query_c2w, query_hw: Sequence[int], source_K, source_c2w,
                   source_hw: Sequence[Sequence[int]] | Sequence[int],
                   config: SourceSelectionConfig | None = None) -> SourceSelection:
    """Pick the best ``config.num_sources`` source views for a query camera.

    Args:
        query_K: [3, 3]; query_c2w: [4, 4]; query_hw: (height, width) of the query image.
        source_K: [N, 3, 3]; source_c2w: [N, 4, 4] (numpy or torch, any float dtype).
        source_hw: (height, width) shared by all sources, or one pair per source.
    """
    config = config or SourceSelectionConfig()
    qK, qT = _as_float64(query_K), _as_float64(query_c2w)
    sK, sT = _as_float64(source_K).reshape(-1, 3, 3), _as_float64(source_c2w).reshape(-1, 4, 4)
    n = sK.shape[0]
    if sT.shape[0] != n:
        raise ValueError(f"select_sources: {n} source K but {sT.shape[0]} source poses")
    if n == 0:
        empty = torch.zeros(0, dtype=torch.float64)
        return SourceSelection([], [], empty, empty, empty)
    hw = np.asarray(source_hw, dtype=np.float64).reshape(-1, 2)
    if hw.shape[0] not in (1, n):
        raise ValueError(f"select_sources: {n} sources but {hw.shape[0]} (height, width) pairs")
    hw = np.broadcast_to(hw, (n, 2))
    if not (np.isfinite(qK).all() and np.isfinite(qT).all()):
        raise ValueError("select_sources: query K and pose must be finite")

    points = frustum_points(torch.from_numpy(qK), torch.from_numpy(qT), int(query_hw[0]), int(query_hw[1]),
                            config).numpy()  # [P, 3]
    seen = _seen(sK, sT, hw, points, config.max_source_depth)  # [N, P]
    overlap = seen.mean(axis=1)

    angle = np.arccos(np.clip((sT[:, :3, 2] * qT[:3, 2]).sum(-1), -1.0, 1.0))
    distance = np.linalg.norm(sT[:, :3, 3] - qT[:3, 3], axis=-1)
    penalty = config.angle_weight * angle / math.pi + config.distance_weight * np.minimum(distance / config.far, 1.0)

    seen_f = seen.astype(np.float64)
    worth = np.ones(points.shape[0])
    available = np.ones(n, dtype=bool)
    indices, scores = [], []
    for _ in range(min(config.num_sources, n)):
        score = np.where(available, seen_f @ worth / points.shape[0] - penalty, -math.inf)
        best = int(np.argmax(score))  # argmax returns the first maximum: ties -> lower index
        indices.append(best)
        scores.append(float(score[best]))
        available[best] = False
        worth = np.where(seen[best], worth * config.redundancy_decay, worth)
    coverage = float(seen[indices].any(axis=0).mean())
    return SourceSelection(indices, scores, torch.from_numpy(overlap), torch.from_numpy(np.rad2deg(angle)),
                           torch.from_numpy(distance), coverage)


def _as_float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


def _seen(K: np.ndarray, c2w: np.ndarray, hw: np.ndarray, points: np.ndarray,
          max_depth: float | None = None) -> np.ndarray:
    """[N, P] bool: point p projects in front of camera n and inside its image (and, with
    ``max_depth``, at most that deep in camera n).

    The same test as ``cameras.project_points`` + ``cameras.in_image`` (checked against
    them in the tests), in NumPy: a query's handful of small arrays costs per-op
    dispatch in torch, which made selection the node's largest overhead.
    """
    R, t = c2w[:, :3, :3], c2w[:, None, :3, 3]
    # One product per camera gives the homogeneous pixel (R K^T) and the depth (R's z column):
    # rows of (p - t) @ R are R^T (p - t).
    A = np.concatenate([R @ K.transpose(0, 2, 1), R[:, :, 2:3]], axis=2)  # [N, 3, 4]
    h = points @ A - t @ A  # [N, P, 4]
    w = h[..., 2]
    w = np.where(np.abs(w) < _HOMOGENEOUS_EPS, _HOMOGENEOUS_EPS, w)
    u, v = h[..., 0] / w, h[..., 1] / w
    height, width = hw[:, 0:1], hw[:, 1:2]
    seen = (h[..., 3] > 0) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    if max_depth is not None:
        seen &= h[..., 3] <= max_depth
    return seen


def pixel_coverage(K, c2w, depth, source_K, source_c2w, source_hw: Sequence[Sequence[int]] | Sequence[int],
                   max_source_depth: float | None = None) -> np.ndarray:
    """Which pixels of a rendered image show a surface that some source view sees.

    The pixel's rendered surface point (planar ``depth`` along the query camera's rays) must
    pass the test of :func:`select_sources` in at least one source camera. It is a test of
    the frustums only: without source depth a source cannot tell whether it sees the surface
    or something in front of it.

    Args:
        K: [3, 3], c2w: [4, 4] of the query camera; depth: [H, W] planar metres, NaN = no surface.
        source_K: [N, 3, 3]; source_c2w: [N, 4, 4]; source_hw: (height, width), shared or per source.
        max_source_depth: as in :class:`SourceSelectionConfig`.
    Returns:
        [H, W] bool; False where ``depth`` is NaN.
    """
    depth = np.asarray(depth, dtype=np.float64)
    height, width = depth.shape
    qK, qT = _as_float64(K), _as_float64(c2w)
    vv, uu = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    # Camera-frame point of pixel (u, v) at planar depth z: z * K^-1 [u, v, 1].
    rays_cam = np.stack([uu, vv, np.ones_like(uu)], axis=-1).reshape(-1, 3) @ np.linalg.inv(qK).T
    finite = np.isfinite(depth.reshape(-1))
    points_cam = rays_cam * np.where(finite, depth.reshape(-1), 0.0)[:, None]
    points = points_cam @ qT[:3, :3].T + qT[:3, 3]
    sK, sT = _as_float64(source_K).reshape(-1, 3, 3), _as_float64(source_c2w).reshape(-1, 4, 4)
    if sK.shape[0] == 0:
        return np.zeros((height, width), dtype=bool)
    hw = np.broadcast_to(np.asarray(source_hw, dtype=np.float64).reshape(-1, 2), (sK.shape[0], 2))
    seen = _seen(sK, sT, hw, points, max_source_depth).any(axis=0) & finite
    return seen.reshape(height, width)


def select_views(query_K, query_c2w, query_hw: Sequence[int], views: Sequence,
                 config: SourceSelectionConfig | None = None) -> SourceSelection:
    """:func:`select_sources` for objects with ``K``, ``c2w``, ``height`` and ``width`` (View records)."""
    if not views:
        return select_sources(query_K, query_c2w, query_hw, np.zeros((0, 3, 3)), np.zeros((0, 4, 4)), (1, 1), config)
    return select_sources(query_K, query_c2w, query_hw, np.stack([v.K for v in views]),
                          np.stack([v.c2w for v in views]), [(v.height, v.width) for v in views], config)


__all__ = ["SourceSelectionConfig", "SourceSelection", "select_sources", "select_views", "frustum_points",
           "pixel_coverage"]
