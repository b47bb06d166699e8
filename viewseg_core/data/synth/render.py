"""Render any camera (K, c2w, size) in a synthetic scene: RGB, class labels, planar depth.

Rays come from :mod:`viewseg_core.cameras` (general K, OpenCV pixel centres), so a ROS
simulated camera, an evaluation pose or a dataset frame all render with the conventions the
model is trained on. Labels and depth are exact: one ray per pixel centre, no anti-aliasing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from viewseg_core import cameras
from viewseg_core.classes import IGNORE_LABEL
from viewseg_core.data.records import View
from viewseg_core.data.synth.raycast import cast_camera, pixel_rects
from viewseg_core.data.synth.scene import Scene
from viewseg_core.data.synth.shading import shade, to_srgb8


@dataclass
class Rendering:
    """One rendered camera.

    Attributes:
        rgb: [H, W, 3] uint8. labels: [H, W] uint8 (255 where a ray hits nothing).
        depth: [H, W] float32 planar depth, metres (NaN where nothing is hit).
        distance: [H, W] float64 ray length to the hit. primitive: [H, W] int32 (-1 = none).
    """

    rgb: np.ndarray
    labels: np.ndarray
    depth: np.ndarray
    distance: np.ndarray
    primitive: np.ndarray


_DIRECTION_CACHE: dict[tuple, np.ndarray] = {}


def _camera_directions(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W, 3] unit camera-frame directions of the pixel centres, cached per (K, size).

    A scene's views share one camera, so the (torch) ray construction of
    :mod:`viewseg_core.cameras` runs once per camera model rather than once per view.
    """
    key = (K.tobytes(), height, width)
    d = _DIRECTION_CACHE.get(key)
    if d is None:
        uv = cameras.pixel_grid(height, width, dtype=torch.float64)
        d = cameras.camera_directions(torch.as_tensor(K), uv).numpy().reshape(height, width, 3)
        if len(_DIRECTION_CACHE) > 16:
            _DIRECTION_CACHE.clear()
        _DIRECTION_CACHE[key] = d
    return d


def camera_rays(K: np.ndarray, c2w: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit world directions [H, W, 3] and their optical-axis components [H, W] (float64).

    The optical-axis component of a unit direction is its camera-frame z (planar depth =
    ray distance * z), what :func:`viewseg_core.cameras.ray_z_component` computes in torch.
    """
    d_cam = _camera_directions(np.asarray(K, dtype=np.float64), height, width)
    R = np.asarray(c2w, dtype=np.float64)[:3, :3]
    return d_cam @ R.T, d_cam[..., 2]


def render(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int,
           exposure: float | None = None, precision=np.float32) -> Rendering:
    """Ray-cast one camera.

    Args:
        K: [3, 3] general intrinsics (OpenCV pixels); c2w: [4, 4] OpenCV camera-to-world.
        exposure: multiplies linear radiance before gamma; default: the scene's own.
        precision: working dtype of the caster (np.float32 or np.float64).
    """
    K = np.asarray(K, dtype=np.float64)
    c2w = np.asarray(c2w, dtype=np.float64)
    dirs, z = camera_rays(K, c2w, height, width)
    rects = pixel_rects(scene, K, c2w, height, width)
    dist, prim = cast_camera(scene, c2w[:3, 3], dirs, rects, dtype=precision)
    exposure = scene.meta.get("exposure", 1.0) if exposure is None else exposure
    hit = prim >= 0
    if hit.all():   # the usual case inside a closed room: skip the masking
        labels = scene.label.astype(np.uint8)[prim]
        depth = (dist * z).astype(np.float32)
        d = dirs.reshape(-1, 3)
        points = c2w[:3, 3] + dist.reshape(-1, 1) * d
        rgb = to_srgb8(shade(scene, prim.reshape(-1), points, d), exposure).reshape(height, width, 3)
    else:
        labels = np.full((height, width), IGNORE_LABEL, dtype=np.uint8)
        labels[hit] = scene.label[prim[hit]].astype(np.uint8)
        depth = np.full((height, width), np.nan, dtype=np.float32)
        depth[hit] = (dist[hit] * z[hit]).astype(np.float32)
        rgb = np.zeros((height, width, 3), dtype=np.uint8)
        if hit.any():
            d = dirs[hit]
            points = c2w[:3, 3] + dist[hit, None] * d
            rgb[hit] = to_srgb8(shade(scene, prim[hit], points, d), exposure)
    return Rendering(rgb=rgb, labels=labels, depth=depth, distance=dist, primitive=prim)


def render_view(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int,
                view_id: str = "", stamp: float = 0.0) -> View:
    """:func:`render` packed as a :class:`~viewseg_core.data.records.View`."""
    r = render(scene, K, c2w, height, width)
    return View(rgb=r.rgb, K=K, c2w=c2w, labels=r.labels, depth=r.depth, view_id=view_id, stamp=stamp,
                meta={"scene": scene.name})


__all__ = ["Rendering", "render", "render_view", "camera_rays"]
