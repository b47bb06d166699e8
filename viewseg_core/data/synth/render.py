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


def camera_rays(K: np.ndarray, c2w: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit world directions [H, W, 3] and their optical-axis components [H, W] (float64)."""
    K_t = torch.as_tensor(np.asarray(K, dtype=np.float64))
    c2w_t = torch.as_tensor(np.asarray(c2w, dtype=np.float64))
    uv = cameras.pixel_grid(height, width, dtype=torch.float64)
    _, dirs = cameras.pixels_to_rays(K_t, c2w_t, uv)
    z = cameras.ray_z_component(K_t, c2w_t, dirs)
    return dirs.numpy().reshape(height, width, 3), z.numpy().reshape(height, width)


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
    hit = prim >= 0
    labels = np.full((height, width), IGNORE_LABEL, dtype=np.uint8)
    labels[hit] = scene.label[prim[hit]].astype(np.uint8)
    depth = np.full((height, width), np.nan, dtype=np.float32)
    depth[hit] = (dist[hit] * z[hit]).astype(np.float32)
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    if hit.any():
        d = dirs[hit]
        points = c2w[:3, 3] + dist[hit, None] * d
        rad = shade(scene, prim[hit], points, d)
        rgb[hit] = to_srgb8(rad, scene.meta.get("exposure", 1.0) if exposure is None else exposure)
    return Rendering(rgb=rgb, labels=labels, depth=depth, distance=dist, primitive=prim)


def render_view(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int,
                view_id: str = "", stamp: float = 0.0) -> View:
    """:func:`render` packed as a :class:`~viewseg_core.data.records.View`."""
    r = render(scene, K, c2w, height, width)
    return View(rgb=r.rgb, K=K, c2w=c2w, labels=r.labels, depth=r.depth, view_id=view_id, stamp=stamp,
                meta={"scene": scene.name})


__all__ = ["Rendering", "render", "render_view", "camera_rays"]
