"""Filling the rows a sparse depth sensor skips: scan lines of a LiDAR projected into a camera.

A LiDAR's beams land on a few rows of each keyframe (docs/ros.md, "Point clouds"), and the
RGB-D model, trained on a depth camera's dense depth, makes little of them (docs/results.md,
"How much source depth the RGB-D model needs"). ``fill_columns`` interpolates each image
column between two consecutive measured pixels, in inverse depth (exact on any plane seen by
a pinhole camera: 1/z is affine in the pixel coordinates), where

- they are at most ``max_gap`` rows apart (farther, and the two need not see one surface), and
- their depths differ by at most ``max_step_per_row`` of the nearer per row between them (more,
  and they straddle an edge: the gap is left unknown, as the sensor left it, rather than
  bridged with a ramp; a floor seen at a grazing angle changes by a few percent a row).

Measured pixels are never changed; pixels outside the first and last measurement of a column
stay unknown. This is the classical kind of depth completion (cf. Ku et al., "In Defense of
Classical Image Processing: Fast Depth Completion on the CPU", 2018), reduced to the one
direction the scan lines leave open.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DEPTH_COMPLETIONS", "fill_columns", "complete"]

# none: the depth as measured; columns: fill_columns (a setting of the dataset and of viewseg_node).
DEPTH_COMPLETIONS = ("none", "columns")


def fill_columns(depth: np.ndarray, max_gap: int = 8, max_step_per_row: float = 0.05) -> np.ndarray:
    """[..., H, W] planar depth (NaN or <= 0 = unknown) -> the same with the column gaps filled
    (see the module docstring); float32."""
    d = np.asarray(depth, dtype=np.float32)
    known = np.isfinite(d) & (d > 0)
    H = d.shape[-2]
    rows = np.arange(H).reshape((H, 1))
    # Nearest measured row above (prev) and below (next) each pixel, per column.
    prev = np.maximum.accumulate(np.where(known, rows, -1), axis=-2)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(known, rows, H), axis=-2), axis=-2), axis=-2)
    gap = nxt - prev
    fillable = ~known & (prev >= 0) & (nxt < H) & (gap <= max_gap)
    safe_prev, safe_next = np.clip(prev, 0, H - 1), np.clip(nxt, 0, H - 1)
    above = np.take_along_axis(np.where(known, d, np.nan), safe_prev, axis=-2)
    below = np.take_along_axis(np.where(known, d, np.nan), safe_next, axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        same = np.abs(above - below) <= max_step_per_row * gap * np.fmin(above, below)
        ratio = (rows - prev) / np.maximum(gap, 1)
        inverse = (1 - ratio) / above + ratio / below
        filled = np.where(fillable & same, 1.0 / inverse, np.nan)
    return np.where(known, d, filled).astype(np.float32)


def complete(depth: np.ndarray, mode: str) -> np.ndarray:
    """``depth`` [..., H, W] with ``mode`` (one of :data:`DEPTH_COMPLETIONS`) applied."""
    if mode == "columns":
        return fill_columns(depth)
    if mode == "none":
        return depth
    raise ValueError(f"depth completion must be one of {' | '.join(DEPTH_COMPLETIONS)}, got {mode!r}")
