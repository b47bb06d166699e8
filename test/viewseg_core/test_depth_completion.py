"""viewseg_core/depth_completion.py: the rows a sparse sensor skips, filled between scan lines
on planes exactly, never across a depth edge, never changing a measurement."""
from __future__ import annotations

import numpy as np

from viewseg_core.depth_completion import fill_columns


def plane(H: int = 24, W: int = 5) -> np.ndarray:
    """A floor seen by a pinhole: inverse depth affine in the pixel coordinates."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return (1.0 / (0.25 + 0.012 * v + 0.004 * u)).astype(np.float32)


def test_a_plane_is_filled_exactly_between_its_scan_lines_and_nowhere_else():
    z = plane()
    sparse = np.where((np.arange(24) % 4 == 1)[:, None], z, np.nan)
    filled = fill_columns(sparse)
    np.testing.assert_allclose(filled[1:22], z[1:22], rtol=1e-6)          # rows 1 .. 21: between scan lines
    assert np.isnan(filled[0]).all() and np.isnan(filled[22:]).all()       # outside the first and last line
    np.testing.assert_array_equal(filled[1::4], sparse[1::4])              # measurements untouched


def test_an_edge_and_a_long_gap_are_left_unknown():
    z = np.full((20, 3), 4.0, np.float32)                                  # a wall 4 m away ...
    z[:8, 1] = 2.0                                                          # ... and a box in front in column 1
    sparse = np.full_like(z, np.nan)
    sparse[[2, 6, 10, 19]] = z[[2, 6, 10, 19]]
    filled = fill_columns(sparse, max_gap=8, max_step_per_row=0.05)
    np.testing.assert_allclose(filled[3:6, 1], 2.0)                        # on the box: filled
    assert np.isnan(filled[7:10, 1]).all()                                  # box (2 m) to wall (4 m): not bridged
    np.testing.assert_allclose(filled[7:10, 0], 4.0)                        # the wall beside it: filled
    assert np.isnan(filled[11:19]).all()                                    # 9 rows apart: too far
    assert fill_columns(np.full((4, 4), np.nan)).shape == (4, 4)           # nothing measured: nothing filled
