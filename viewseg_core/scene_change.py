"""Scene change between two depth keyframes: what one shows that the other's depth sees through.

A keyframe is a snapshot. A person who stood in front of the camera when it was taken stays
in it, and a query rendered later from that keyframe shows them where they no longer are (a
phantom obstacle for a planner). A newer keyframe with depth says what is there now: its
depth camera (or LiDAR) saw past every point in front of its measurements. So a point of the
older keyframe that lies in space the newer one saw through is gone.

The converse, a point of the newer keyframe in space the older one saw through (someone walked
in), is not counted: the older keyframe then misses a person but shows nothing false, and a
person who stays in view would make every new keyframe evict the one before it (measured:
scripts/keyframe_change.py, docs/ros.md "People in keyframes").

:func:`scene_changes` counts the gone points with the seen-through test of
:mod:`viewseg_core.stale_points`: a range image of the newer keyframe's measured points about
its camera centre, with the camera's axis on the image's equator; a point is judged only where
that image has returns in its own cell or two opposite neighbours, and is seen through only
where every return in the 3 x 3 cells around it lies more than the margin beyond it. A surface one keyframe shows and the other cannot see (hidden behind something nearer,
or outside its view) is no evidence, so an ordinary change of viewpoint never counts as a
change of the scene.

What the test cannot see: keyframes without depth (an RGB camera), and changes no keyframe
with depth has looked at since.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from viewseg_core.depth_registration import points_in_view
from viewseg_core.stale_points import MAX_CELL_DEG, stale_points

CHANGE_CELL_DEG = 2.0     # a degree of pose error between keyframes shifts a point by half a cell
MIN_CELL_PIXELS = 2.0     # ... and never under two pixels of the camera that saw through (see scene_change)
MAX_CHANGE_PIXELS = 20_000  # a larger depth image is read on a pixel grid of this many at most (cost) ...
MAX_TESTED_PIXELS = 2_500   # ... and an older keyframe's points tested on one of this many (a 2% share is 50 points)


def grid_stride(height: int, width: int, max_pixels: int = MAX_CHANGE_PIXELS) -> int:
    """The smallest pixel stride whose grid over an image [height, width] has at most ``max_pixels``."""
    return max(1, math.ceil(math.sqrt(height * width / max_pixels)))


def measured_points(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, stride: int = 1) -> np.ndarray:
    """[N, 3] world points of the pixels of ``depth`` with a measurement (finite, > 0).

    Args:
        depth: [H, W] planar depth in metres along the optical axis, NaN or 0 = unknown.
        K: [3, 3] pixels from the optical frame (:class:`viewseg_core.data.records.View`).
        c2w: [4, 4] camera-to-world pose of the optical frame.
        stride: read every ``stride``-th row and column only.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"measured_points: depth must be [H, W], got shape {depth.shape}")
    grid = depth[::stride, ::stride]
    rows, cols = np.nonzero(np.isfinite(grid) & (grid > 0))
    pixels = np.stack([cols * stride, rows * stride, np.ones_like(rows)], axis=1).astype(np.float64)
    rays = pixels @ np.linalg.inv(np.asarray(K, dtype=np.float64)).T
    camera = rays / rays[:, 2:3] * grid[rows, cols].astype(np.float64)[:, None]
    c2w = np.asarray(c2w, dtype=np.float64)
    return camera @ c2w[:3, :3].T + c2w[:3, 3]


@dataclass(frozen=True)
class ChangeEvidence:
    """What a newer keyframe with depth says about an older one (points on the pixel grid)."""

    gone: int     # points of the older keyframe in space the newer one saw through
    points: int   # the older keyframe's measured points (both on its grid: scene_changes' max_tested)

    @property
    def share(self) -> float:
        """The share of the older keyframe's measured points that are gone."""
        return self.gone / max(self.points, 1)


Keyframe = tuple[np.ndarray, np.ndarray, np.ndarray]   # (depth [H, W], K [3, 3], c2w [4, 4])


def _level(points: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """``points`` [N, 3] (world) in the camera ``c2w``'s frame, with axes (forward, left, up): the
    image then lies about the range image's equator, far from its poles (where the azimuth cells
    shrink to nothing), however the camera is turned."""
    camera = (points - c2w[:3, 3]) @ c2w[:3, :3]
    return np.stack([camera[:, 2], -camera[:, 0], -camera[:, 1]], axis=1)


def _checked(view: Keyframe, name: str, max_pixels: int) -> tuple[Keyframe, np.ndarray, int]:
    """((depth, K, c2w) as arrays, its measured points on the grid, the grid's stride)."""
    depth, K, c2w = view
    depth, K, c2w = np.asarray(depth), np.asarray(K, dtype=np.float64), np.asarray(c2w, dtype=np.float64)
    if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
        raise ValueError(f"scene_change: the {name} keyframe's pose must be a finite 4x4 matrix")
    stride = grid_stride(*depth.shape[:2], max_pixels) if depth.ndim == 2 else 1
    return (depth, K, c2w), measured_points(depth, K, c2w, stride), stride


def scene_changes(olders: Sequence[Keyframe], newer: Keyframe, cell_deg: float = CHANGE_CELL_DEG,
                  max_pixels: int = MAX_CHANGE_PIXELS, max_tested: int = MAX_TESTED_PIXELS) -> list[ChangeEvidence]:
    """How much of what each of ``olders`` shows ``newer`` saw through (module docstring), in one
    pass: every older keyframe's points in the newer one's view are judged against the one range
    image of its measured points.

    Args:
        olders, newer: (depth [H, W], K [3, 3], c2w [4, 4]) of each keyframe, as in
            :func:`measured_points`.
        cell_deg: the range image's cell, in (0, 10] degrees (:func:`stale_points`); grown to
            two pixels of the newer camera's grid where those are wider (a point needs returns
            in its own cell or two opposite ones to be judged).
        max_pixels: the newer keyframe's depth is read on a pixel grid of at most this many
            pixels (:func:`grid_stride`) ...
        max_tested: ... and each older keyframe's on one of at most this many: the share of
            its points that are gone is estimated from a sample.
    Returns:
        one :class:`ChangeEvidence` per older keyframe, in order.
    Raises:
        ValueError: malformed depth, a non-finite pose or a cell out of range.
    """
    if not 0.0 < cell_deg <= MAX_CELL_DEG:
        raise ValueError(f"scene_change: cell_deg must be in (0, {MAX_CELL_DEG:g}], got {cell_deg}")
    if max_pixels < 1 or max_tested < 1:
        raise ValueError(f"scene_change: max_pixels and max_tested must be >= 1, got {max_pixels}, {max_tested}")
    (depth, K, c2w), seer, stride = _checked(newer, "newer", max_pixels)
    w2c = np.linalg.inv(c2w)
    tested, owner, counts = [], [], []
    for index, older in enumerate(olders):
        _, points, _ = _checked(older, "older", max_tested)
        counts.append(len(points))
        in_view = points[points_in_view(points, K, depth.shape, w2c)]   # no other point can be seen through
        tested.append(in_view)
        owner.append(np.full(len(in_view), index))
    gone = np.zeros(len(olders), dtype=np.int64)
    if len(seer) and sum(map(len, tested)):
        pitch_deg = math.degrees(stride / min(abs(K[0, 0]), abs(K[1, 1])))   # one grid pixel at the image centre
        cell = min(max(cell_deg, MIN_CELL_PIXELS * pitch_deg), MAX_CELL_DEG)
        through = stale_points(_level(np.concatenate(tested), c2w), _level(seer, c2w), np.zeros(3), cell, hidden=False)
        gone = np.bincount(np.concatenate(owner)[through], minlength=len(olders))
    return [ChangeEvidence(gone=int(g), points=n) for g, n in zip(gone, counts)]


def reach_box(points: np.ndarray, c2w: np.ndarray) -> np.ndarray | None:
    """[2, 3] (low, high) corners of a box holding every point a keyframe's measured ``points``
    ([N, 3] world, :func:`measured_points`; camera ``c2w``) can show seen through in
    :func:`scene_changes` (None: it measured nothing): the box of the camera centre and those
    points, grown by half their largest range. The seen-through test compares a point with the
    returns of range-image cells at most about two cells of MAX_CELL_DEG away, 20 degrees, and
    sin(20 deg) < 0.5: an older keyframe none of whose points lies in the box shows no change."""
    if not len(points):
        return None
    centre = c2w[:3, 3]
    grow = 0.5 * float(np.linalg.norm(points - centre, axis=1).max())
    return np.stack([np.minimum(points.min(0), centre) - grow, np.maximum(points.max(0), centre) + grow])


def scene_change(older: Keyframe, newer: Keyframe, cell_deg: float = CHANGE_CELL_DEG,
                 max_pixels: int = MAX_CHANGE_PIXELS, max_tested: int = MAX_TESTED_PIXELS) -> ChangeEvidence:
    """:func:`scene_changes` of one older keyframe."""
    return scene_changes([older], newer, cell_deg, max_pixels, max_tested)[0]


__all__ = ["ChangeEvidence", "CHANGE_CELL_DEG", "MAX_CHANGE_PIXELS", "MAX_TESTED_PIXELS", "grid_stride", "measured_points",
           "reach_box",
           "scene_change", "scene_changes"]
