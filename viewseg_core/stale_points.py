"""Stale points of accumulated LiDAR sweeps: those a keyframe's own sweep contradicts.

A keyframe that accumulates the sweeps of a few seconds around its own
(``pointcloud_accumulate_s``) also takes what those seconds got wrong for it:
- a person who walked past leaves a trail of surfaces that are no longer there, nearer than
  the true ones and so winning the keyframe's z-buffer;
- where the person now stands, or where the robot moved behind an object, an earlier sweep
  saw a farther surface that shows through the gaps between the keyframe's scan lines.

The keyframe's own sweep says what is there now. A beam that returned from farther away
passed through every point in front of its return (free space); a beam that returned from
nearer hides every point behind it. :func:`stale_points` finds the points of the other sweeps
that lie in such space, in a range image of the reference sweep about its sensor's origin
(cells of ``cell_deg`` in azimuth and elevation, as a spinning LiDAR sees).

The test is conservative, because a beam only samples its own direction: a point is judged
only where the reference sweep has a return in the point's own cell, or in two opposite cells
of the 8 around it (above and below, left and right, or a diagonal pair: returns on one side
only could be a surface slanting towards the point, a floor below the lowest beam); and it is
stale only where every return in those 3 x 3 cells lies more than the margin beyond it (seen
through), or every one more than the margin before it (hidden). So a point beside a depth edge
of the reference sweep (a silhouette, a floor at a grazing angle) stays, and a cell without a
return (no beam there, or a beam that returned nothing) is no evidence. Cells about as tall as the LiDAR's beam
spacing make the 3 x 3 cells reach the beams above and below a point between them (and a
point on a cell's border is judged the same from either side); much smaller cells leave most
points between beams with no evidence, much larger ones only judge open space.

What the test cannot see: anything outside the LiDAR's field of view (a trail close in front
of a camera pitched down below the lowest beam stays).
"""
from __future__ import annotations

import math

import numpy as np

STALE_CELL_DEG = 2.0     # about a 16-beam, 30-degree LiDAR's beam spacing
STALE_MARGIN_M = 0.10    # a return must lie this far beyond (or before) a point to make it stale ...
STALE_MARGIN_REL = 0.05  # ... or this share of the point's range, whichever is larger
MAX_CELL_DEG = 10.0
BORDER_RAD = 2e-6        # a point this close to a cell border (10 um at 5 m) counts as in both cells


def _angles(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(azimuth + pi, elevation + pi / 2, range) of each offset [N, 3] from the origin, float32
    (a float32 angle is good to a microradian, the cost halves)."""
    offsets = offsets.astype(np.float32)
    x, y, z = offsets[:, 0], offsets[:, 1], offsets[:, 2]
    horizontal = np.hypot(x, y)
    return (np.arctan2(y, x) + np.float32(math.pi), np.arctan2(z, horizontal) + np.float32(math.pi / 2),
            np.hypot(horizontal, z))


def _cell_of(azimuth: np.ndarray, elevation: np.ndarray, cell: float, columns: int, rows: int) -> np.ndarray:
    """The flat cell index (row * columns + column) of angles from :func:`_angles`."""
    column = np.floor(azimuth / cell).astype(np.int64) % columns
    row = np.clip(np.floor(elevation / cell).astype(np.int64), 0, rows - 1)
    return row * columns + column


def _padded(image: np.ndarray, fill) -> np.ndarray:
    """``image`` [rows, columns] grown by one cell on every side: a row of ``fill`` beyond each
    pole (elevation does not wrap) and the opposite column at each end (azimuth does)."""
    padded = np.pad(image, ((1, 1), (0, 0)), constant_values=fill)
    return np.concatenate([padded[:, -1:], padded, padded[:, :1]], axis=1)


def _around(image: np.ndarray, reduce: np.ufunc, empty: float) -> np.ndarray:
    """``reduce`` (np.minimum or np.maximum) over each cell's 3 x 3 neighbourhood (:func:`_padded`:
    the row of ``empty`` beyond each pole adds nothing)."""
    rows, columns = image.shape
    padded = _padded(image, empty)
    out = np.full_like(image, empty)
    for dr in range(3):
        for dc in range(3):
            reduce(out, padded[dr:dr + rows, dc:dc + columns], out=out)
    return out


def _bracketed(known: np.ndarray) -> np.ndarray:
    """[rows, columns] bool: the cell has a return, or two opposite cells of its 8 neighbours
    (above and below, left and right, or a diagonal pair) both have one (azimuth wraps)."""
    padded = _padded(known, False)
    rows, columns = known.shape

    def at(dr: int, dc: int) -> np.ndarray:
        return padded[1 + dr:1 + dr + rows, 1 + dc:1 + dc + columns]

    out = known.copy()
    for dr, dc in ((1, 0), (0, 1), (1, 1), (1, -1)):
        out |= at(dr, dc) & at(-dr, -dc)
    return out


def stale_points(points: np.ndarray, reference: np.ndarray, origin: np.ndarray,
                 cell_deg: float = STALE_CELL_DEG, margin_m: float = STALE_MARGIN_M,
                 margin_rel: float = STALE_MARGIN_REL, hidden: bool = True) -> np.ndarray:
    """Which of ``points`` the ``reference`` sweep contradicts (see the module docstring).

    Args:
        points: [M, 3] points of other sweeps, in the frame of ``reference`` (the fixed frame).
        reference: [N, 3] the keyframe's own sweep, in the same frame.
        origin: [3] its sensor's position (for a sweep that took time, its middle).
        cell_deg: the range image's cell in azimuth and elevation, in (0, 10].
        margin_m, margin_rel: a point is stale only where every return around it lies more
            than max(margin_m, margin_rel * its range) beyond it (or before it).
        hidden: also the points hidden behind every return around them; False: only the
            points seen through.
    Returns:
        [M] bool, True for a point to drop.
    Raises:
        ValueError: malformed or non-finite arrays, a non-finite origin, or a cell or margin out
            of range.
    """
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    for name, array in (("points", points), ("reference", reference)):
        if array.ndim != 2 or array.shape[1] != 3 or not np.isfinite(array).all():
            raise ValueError(f"stale_points: {name} must be finite [N, 3], got shape {array.shape}")
    if origin.shape != (3,) or not np.isfinite(origin).all():
        raise ValueError(f"stale_points: origin must be 3 finite numbers, got {origin!r}")
    if not 0.0 < cell_deg <= MAX_CELL_DEG or not margin_m >= 0.0 or not margin_rel >= 0.0:
        raise ValueError(f"stale_points: cell_deg in (0, {MAX_CELL_DEG:g}] and margins >= 0 needed, got "
                         f"{cell_deg}, {margin_m}, {margin_rel}")
    if not len(points) or not len(reference):
        return np.zeros(len(points), dtype=bool)
    cell = math.radians(cell_deg)
    columns, rows = math.ceil(2 * math.pi / cell), math.ceil(math.pi / cell) + 1
    azimuth, elevation, returned = _angles(reference - origin)
    flat = _cell_of(azimuth, elevation, cell, columns, rows)
    nearest = np.full(rows * columns, np.inf, dtype=np.float32)
    np.minimum.at(nearest, flat, returned)
    azimuth, elevation, distance = _angles(points - origin)
    cells = _cell_of(azimuth, elevation, cell, columns, rows)
    margin = np.maximum(np.float32(margin_m), np.float32(margin_rel) * distance)
    known = np.isfinite(nearest)
    judged = _bracketed(known.reshape(rows, columns)).ravel()[cells]
    # A point on a cell's border (a beam on a whole multiple of the cell, and a point on that
    # beam) has its own cell on either side of it: rounding must not decide.
    border = BORDER_RAD / cell
    on_border = np.flatnonzero((np.abs(azimuth / cell - np.round(azimuth / cell)) < border)
                               | (np.abs(elevation / cell - np.round(elevation / cell)) < border))
    for nudge_azimuth in (-BORDER_RAD, BORDER_RAD):
        for nudge_elevation in (-BORDER_RAD, BORDER_RAD):
            judged[on_border] |= known[_cell_of(azimuth[on_border] + nudge_azimuth,
                                                elevation[on_border] + nudge_elevation, cell, columns, rows)]
    stale = judged & (_around(nearest.reshape(rows, columns), np.minimum, np.inf).ravel()[cells] > distance + margin)
    if hidden:
        farthest = np.full(rows * columns, -np.inf, dtype=np.float32)
        np.maximum.at(farthest, flat, returned)
        farthest_around = _around(farthest.reshape(rows, columns), np.maximum, -np.inf).ravel()[cells]
        stale |= judged & (farthest_around < distance - margin)
    return stale


__all__ = ["stale_points", "STALE_CELL_DEG", "STALE_MARGIN_M", "STALE_MARGIN_REL", "MAX_CELL_DEG"]
