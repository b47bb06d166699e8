"""A hand-built scene for the scene-change tests: a wall 4 m ahead, a "person" (a block of pixels
at 2 m) in some views, seen by cameras turned about the world's y axis (the optical frame's down)."""
from __future__ import annotations

import math

import numpy as np

WALL_Z = 4.0
PERSON_Z = 2.0


def yawed(degrees: float, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """c2w of an optical frame turned ``degrees`` about the world's y axis (down), at ``centre``."""
    a = math.radians(degrees)
    c2w = np.eye(4)
    c2w[:3, :3] = [[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]]
    c2w[:3, 3] = centre
    return c2w


def wall_depth(c2w: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """[height, width] float32 planar depth of the world plane z = WALL_Z seen from ``c2w``."""
    v, u = np.mgrid[0:height, 0:width]
    rays = np.stack([u, v, np.ones_like(u)], axis=-1).astype(np.float64) @ np.linalg.inv(K).T
    along = rays @ c2w[:3, :3].T
    return ((WALL_Z - c2w[2, 3]) / along[..., 2]).astype(np.float32)   # planar depth = t (ray z = 1)


def with_person(depth: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """``depth`` with the pixels ``rows`` x ``cols`` at PERSON_Z."""
    out = depth.copy()
    out[rows, cols] = PERSON_Z
    return out
