"""Depth of one camera registered into another: what ``depth_image_proc/register`` and an
``aligned_depth_to_color`` driver option do, for a depth camera that is not aligned.

Most RGB-D cameras have their depth sensor a few centimetres from the colour sensor, with its
own intrinsics and size (a RealSense publishes unaligned depth unless ``align_depth`` is on).
Registration lifts every measured depth pixel to a 3D point with the depth camera's K, moves
it into the colour camera's frame and z-buffers it into the colour image
(:func:`viewseg_core.model.depth_guide.splat_depth`: per pixel, the nearest surface, read at
the point of it that projects closest to the pixel centre). The result is planar depth in the
colour camera, NaN where no depth pixel lands (the part of the colour view the depth camera
does not see, and surfaces hidden from it).

Footprint: where the colour image has more pixels per radian than the depth image, each point
covers a 2x2 block so that neighbouring measurements meet; where it has fewer (registering
into a small working size), every colour pixel collects several points and one pixel is enough.
Where it has far fewer (a 640x480 depth image into the model's 80x60), the depth image is
first sampled every ``stride`` pixels so that about two depth pixels per colour pixel remain
along each axis: the nearest-surface choice needs a few candidates per pixel, not 64, and the
registration costs a sixteenth (docs/benchmarks.md, "Camera input").

Point clouds (:func:`register_points`: a LiDAR, or a driver's ``depth/points``) take the same
z-buffer with points given directly, one pixel each.
"""
from __future__ import annotations

import numpy as np
import torch

from viewseg_core.model.depth_guide import MIN_SPLAT_DEPTH, focal_pixels, lift_source_depth, splat_depth
from viewseg_core.stale_points import STALE_CELL_DEG, stale_points

# Seconds of point clouds around a keyframe's paired one registered into it, at most (the node's
# pointcloud_accumulate_s, bag2scene's --pointcloud-accumulate): the node's TF keeps 10 s.
MAX_ACCUMULATE_S = 8.0


def _finite_transform(matrix: np.ndarray, what: str) -> np.ndarray:
    """``matrix`` as a float64 [4, 4], or ValueError naming ``what``."""
    transform = np.asarray(matrix, dtype=np.float64)
    if transform.shape != (4, 4) or not np.all(np.isfinite(transform)):
        raise ValueError(f"{what} must be a finite 4x4 matrix, got {transform.tolist()}")
    return transform


def register_depth(depth: np.ndarray, depth_K: np.ndarray, colour_K: np.ndarray, colour_hw: tuple[int, int],
                   colour_from_depth: np.ndarray) -> np.ndarray:
    """Planar depth of the depth camera's measurements as the colour camera sees them.

    Args:
        depth: [H', W'] planar metres in the depth camera (NaN / <= 0 = unknown).
        depth_K: [3, 3] of the depth image; colour_K: [3, 3] of the colour image of
            ``colour_hw`` (height, width).
        colour_from_depth: [4, 4] maps depth-camera coordinates to colour-camera coordinates
            (the depth optical frame's pose in the colour optical frame, as TF gives it).
    Returns:
        [height, width] float32 planar metres in the colour camera, NaN where none landed.
    Raises:
        ValueError: shapes that do not fit, or a non-finite transform.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2 or min(depth.shape) < 1:
        raise ValueError(f"register_depth: depth must be [H, W], got shape {depth.shape}")
    transform = _finite_transform(colour_from_depth, "register_depth: colour_from_depth")
    height, width = colour_hw
    K = torch.as_tensor(colour_K, dtype=torch.float32)[None, None]
    colour_focal, depth_focal = float(focal_pixels(K)), float(focal_pixels(torch.as_tensor(depth_K)[None]))
    stride = max(1, int(depth_focal // (2.0 * colour_focal)))
    depth_K = np.asarray(depth_K, dtype=np.float64)
    if stride > 1:  # pixel i of the sampled image is pixel stride * i of the full one
        depth = np.ascontiguousarray(depth[::stride, ::stride])
        depth_K = np.diag([1.0 / stride, 1.0 / stride, 1.0]) @ depth_K
    d = torch.from_numpy(depth)[None, None]
    # The depth camera is the world frame; the colour camera sits at its pose in it.
    points, known = lift_source_depth(d, torch.as_tensor(depth_K, dtype=torch.float32)[None, None],
                                      torch.eye(4)[None, None], depth.shape[0], depth.shape[1])
    c2w = torch.as_tensor(np.linalg.inv(transform), dtype=torch.float32)[None, None]
    footprint = 2 if colour_focal > depth_focal else 1
    image = splat_depth(points, known, K, c2w, height, width, footprint=footprint)
    return image[0, 0].numpy().astype(np.float32)


def _near_the_image(points: np.ndarray, colour_K: np.ndarray, colour_hw: tuple[int, int],
                    colour_from_points: np.ndarray, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """([N, 3] float32 points in the colour optical frame, [N] bool: in front of the camera and
    projecting within a pixel of its image)."""
    transform = _finite_transform(colour_from_points, f"{caller}: colour_from_points")
    height, width = colour_hw
    K = np.asarray(colour_K, dtype=np.float64)
    # A spinning LiDAR's sweep is mostly elsewhere, and the z-buffer's cost grows with the points.
    in_camera = points @ transform[:3, :3].T.astype(np.float32) + transform[:3, 3].astype(np.float32)
    h = in_camera @ K.T.astype(np.float32)
    z = in_camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = h[:, 0] / h[:, 2], h[:, 1] / h[:, 2]
    return in_camera, (z > MIN_SPLAT_DEPTH) & (u > -1.0) & (u < width) & (v > -1.0) & (v < height)


def points_in_view(points: np.ndarray, colour_K: np.ndarray, colour_hw: tuple[int, int],
                   colour_from_points: np.ndarray) -> np.ndarray:
    """[N] bool: which of ``points`` (finite [N, 3]) :func:`register_points` would z-buffer into
    the colour image (in front of the camera, projecting within a pixel of it): the only ones a
    keyframe's depth depends on.

    Raises:
        ValueError: a non-finite transform.
    """
    return _near_the_image(np.asarray(points, dtype=np.float32), colour_K, colour_hw, colour_from_points,
                           "points_in_view")[1]


def register_points(points: np.ndarray, colour_K: np.ndarray, colour_hw: tuple[int, int],
                    colour_from_points: np.ndarray) -> np.ndarray:
    """Planar depth of a point cloud (a LiDAR's, or a depth camera's points) as the colour
    camera sees it: the points moved into the colour optical frame and z-buffered one pixel
    each (:func:`viewseg_core.model.depth_guide.splat_depth`, footprint 1: a scan line's points
    are not spread over the rows between the lines, where the sensor measured nothing).

    Args:
        points: [N, 3] metres in the cloud's frame (finite).
        colour_K: [3, 3] of the colour image of ``colour_hw`` (height, width).
        colour_from_points: [4, 4] maps the cloud's frame to the colour optical frame.
    Returns:
        [height, width] float32 planar metres, NaN where no point landed (and behind the camera).
    Raises:
        ValueError: a malformed point array or a non-finite transform.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3 or not np.isfinite(points).all():
        raise ValueError(f"register_points: points must be finite [N, 3], got shape {points.shape}")
    in_camera, near = _near_the_image(points, colour_K, colour_hw, colour_from_points, "register_points")
    in_camera = np.compress(near, in_camera, axis=0)
    height, width = colour_hw
    K = np.asarray(colour_K, dtype=np.float64)
    pts = torch.from_numpy(np.ascontiguousarray(in_camera))[None]
    image = splat_depth(pts, torch.ones(pts.shape[:2], dtype=torch.bool),
                        torch.as_tensor(K, dtype=torch.float32)[None, None], torch.eye(4)[None, None],
                        height, width, footprint=1)
    return image[0, 0].numpy().astype(np.float32)


OCCLUSION_MARGIN_M = 0.10   # a neighbour nearer by this much, or by OCCLUSION_MARGIN_REL, hides a point
OCCLUSION_MARGIN_REL = 0.05
MAX_OCCLUSION_RADIUS = 8


def _shifted(image: np.ndarray, dv: int, du: int, fill: float) -> np.ndarray:
    """``image`` moved so that out[v, u] = image[v + dv, u + du] (``fill`` beyond the border)."""
    height, width = image.shape
    out = np.full_like(image, fill)
    out[max(0, -dv):height - max(0, dv), max(0, -du):width - max(0, du)] = \
        image[max(0, dv):height - max(0, -dv), max(0, du):width - max(0, -du)]
    return out


def drop_occluded(depth: np.ndarray, radius: int = 1) -> np.ndarray:
    """``depth`` (a registered point cloud's [H, W], NaN = no point) without the pixels that a
    nearer measurement within ``radius`` pixels hides: one more than max(OCCLUSION_MARGIN_M,
    OCCLUSION_MARGIN_REL of its depth) nearer, unless the pixel lies on the surface through
    that neighbour and the one opposite it (inverse depth midway between theirs to within
    OCCLUSION_MARGIN_REL: a plane seen at a slant, a floor, has inverse depth linear in the
    image).

    A LiDAR beside the camera (above it, on most robots) sees past the top and sides of nearer
    things, and the z-buffer keeps such a point wherever no nearer point of the sparse cloud
    landed on its pixel, although the camera sees the nearer thing there. A nearer measurement
    right beside it, not continued by the one across, is the sign. The cost: a true farther
    surface within ``radius`` pixels of a nearer thing's silhouette goes too, and so does the
    last measured pixel of a slanted surface, which has no pixel across (docs/ros.md, "Hidden
    from the camera").

    Raises:
        ValueError: a depth that is not [H, W], or a radius that is not 1-MAX_OCCLUSION_RADIUS.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"drop_occluded: depth must be [H, W], got shape {depth.shape}")
    if not 1 <= int(radius) <= MAX_OCCLUSION_RADIUS or int(radius) != radius:
        raise ValueError(f"drop_occluded: radius must be an integer 1-{MAX_OCCLUSION_RADIUS} pixels, got {radius}")
    radius = int(radius)
    measured = np.isfinite(depth)
    inverse = np.where(measured, 1.0 / np.where(measured, depth, 1.0), np.nan).astype(np.float32)
    hidden_below = np.where(measured, depth - np.maximum(OCCLUSION_MARGIN_M, OCCLUSION_MARGIN_REL * depth), -np.inf)
    hidden = np.zeros(depth.shape, dtype=bool)
    for dv in range(-radius, radius + 1):
        for du in range(-radius, radius + 1):
            if (dv, du) == (0, 0):
                continue
            neighbour = _shifted(depth, dv, du, np.nan)
            nearer = neighbour < hidden_below                      # NaN compares False
            if not nearer.any():
                continue
            across = _shifted(inverse, -dv, -du, np.nan)
            on_slope = np.abs(2.0 * inverse - 1.0 / neighbour - across) <= OCCLUSION_MARGIN_REL * 2.0 * inverse
            hidden |= nearer & ~on_slope                          # no pixel across: NaN, not on a slope
    return np.where(hidden, np.float32(np.nan), depth)


def accumulated_points(paired: np.ndarray, others: np.ndarray, origin: np.ndarray | None, colour_K: np.ndarray,
                       colour_hw: tuple[int, int], colour_from_points: np.ndarray,
                       stale_cell_deg: float | None = STALE_CELL_DEG) -> tuple[np.ndarray, int]:
    """The points a keyframe registers from its paired cloud and the clouds accumulated around
    it (``pointcloud_accumulate_s``): the paired cloud's, and those of ``others`` that land in
    the image, less those the paired cloud contradicts (:func:`viewseg_core.stale_points.
    stale_points`, judged about the sensor's ``origin``; none left out where ``origin`` or
    ``stale_cell_deg`` is None).

    Args:
        paired, others: [N, 3], [M, 3] finite points in the fixed frame.
        origin: [3] the paired cloud's sensor position at the middle of its sweep, or None.
    Returns:
        ([K, 3] points for :func:`register_points`, how many of ``others`` were left out as stale).
    """
    others = np.asarray(others, dtype=np.float32)
    if others.ndim != 2 or others.shape[1] != 3 or not np.isfinite(others).all():
        raise ValueError(f"accumulated_points: others must be finite [M, 3], got shape {others.shape}")
    # Only the points that land in the image matter, and the stale test costs per point.
    others = others[points_in_view(others, colour_K, colour_hw, colour_from_points)]
    stale = 0
    if origin is not None and stale_cell_deg is not None and len(others):
        contradicted = stale_points(others, paired, origin, cell_deg=stale_cell_deg)
        stale = int(contradicted.sum())
        others = others[~contradicted]
    return np.concatenate([np.asarray(paired, dtype=np.float32), others]), stale


__all__ = ["MAX_ACCUMULATE_S", "register_depth", "register_points", "points_in_view", "accumulated_points",
           "drop_occluded", "MAX_OCCLUSION_RADIUS"]
