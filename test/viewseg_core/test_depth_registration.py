"""viewseg_core.depth_registration: depth of an unaligned depth camera in the colour camera,
against projections worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.depth_registration import register_depth

DEPTH_K = np.array([[30.0, 0.0, 19.5], [0.0, 30.0, 14.5], [0.0, 0.0, 1.0]])    # 40x30
COLOUR_K = np.array([[45.0, 0.0, 31.5], [0.0, 45.0, 23.5], [0.0, 0.0, 1.0]])   # 64x48
BASELINE = 0.05  # the depth camera 5 cm to the colour camera's right (+x)


def translation(x: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x
    return T


def test_a_wall_keeps_its_planar_depth_and_the_baseline_shifts_the_covered_band():
    out = register_depth(np.full((30, 40), 2.0, np.float32), DEPTH_K, COLOUR_K, (48, 64), translation(BASELINE))
    assert out.shape == (48, 64) and out.dtype == np.float32
    assert np.all(out[np.isfinite(out)] == np.float32(2.0))            # a lateral shift keeps planar depth
    # Depth pixel centres u = 0..39 at 2 m land at u' = 45 (2 (u - 19.5) / 30 + 0.05) / 2 + 31.5,
    # from 3.375 to 61.875; rows from 1.75 to 45.25; each fills its two nearest columns/rows.
    assert np.isnan(out[:, :3]).all() and np.isnan(out[:, 63]).all()
    assert np.isfinite(out[2:46, 4:62]).all()
    assert np.isfinite(out[2:46, 62]).all() and np.isnan(out[10, 2])     # the band moved right by f b / z
    assert np.isnan(out[0]).all() and np.isnan(out[47]).all()
    unshifted = register_depth(np.full((30, 40), 2.0, np.float32), DEPTH_K, COLOUR_K, (48, 64), np.eye(4))
    assert np.isfinite(unshifted[10, 2]) and np.isnan(unshifted[10, 62])


def test_the_nearer_surface_wins_and_the_background_behind_it_is_unknown():
    depth = np.full((30, 40), 3.0, np.float32)
    depth[:, 18:22] = 1.0                                  # a post 1 m away, 4 depth pixels wide
    depth[:, 0] = np.nan                                   # no return
    out = register_depth(depth, DEPTH_K, COLOUR_K, (48, 64), translation(BASELINE))
    values = set(np.unique(out[np.isfinite(out)]).tolist())
    assert values == {1.0, 3.0}                            # nearest neighbour: no depth in between
    # The post's centre (u = 19.5) lands at 45 (0 + 0.05) / 1 + 31.5 = 33.75: columns 33 and 34.
    assert np.all(out[5:40, 33:35] == 1.0)
    # Background beside it lands shifted by 45 b / 3 = 0.75 px only: left of the post a strip the
    # depth camera could not see (it looked at the post there) stays unknown.
    for row in range(5, 40):
        assert np.isnan(out[row, 28:32]).any(), row


def test_a_rotated_colour_camera_gets_the_point_depth_in_its_own_frame():
    depth = np.full((30, 40), np.nan, np.float32)
    depth[10, 25] = 2.5                                    # one measured pixel
    angle = math.radians(10.0)
    R = np.array([[math.cos(angle), 0.0, math.sin(angle)], [0.0, 1.0, 0.0], [-math.sin(angle), 0.0, math.cos(angle)]])
    colour_from_depth = np.eye(4)
    colour_from_depth[:3, :3], colour_from_depth[:3, 3] = R, [BASELINE, 0.01, 0.0]
    out = register_depth(depth, DEPTH_K, COLOUR_K, (48, 64), colour_from_depth)
    X = np.array([(25 - 19.5) / 30 * 2.5, (10 - 14.5) / 30 * 2.5, 2.5])
    Xc = R @ X + [BASELINE, 0.01, 0.0]
    u, v = 45 * Xc[0] / Xc[2] + 31.5, 45 * Xc[1] / Xc[2] + 23.5
    cells = {(r, c) for r in (math.floor(v), math.floor(v) + 1) for c in (math.floor(u), math.floor(u) + 1)}
    finite = {tuple(rc) for rc in np.argwhere(np.isfinite(out)).tolist()}
    assert finite == cells
    for r, c in cells:
        assert out[r, c] == pytest.approx(Xc[2], abs=1e-5)


def test_registering_into_a_coarser_image_uses_one_pixel_per_point():
    small_K = np.array([[15.0, 0.0, 7.5], [0.0, 15.0, 5.5], [0.0, 0.0, 1.0]])      # 16x12, half the focal
    out = register_depth(np.full((30, 40), 2.0, np.float32), DEPTH_K, small_K, (12, 16), np.eye(4))
    assert np.isfinite(out[1:11, 1:15]).all() and np.all(out[np.isfinite(out)] == np.float32(2.0))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="finite 4x4"):
        register_depth(np.ones((3, 4), np.float32), DEPTH_K, COLOUR_K, (48, 64), np.eye(3))
    with pytest.raises(ValueError, match="finite 4x4"):
        register_depth(np.ones((3, 4), np.float32), DEPTH_K, COLOUR_K, (48, 64), np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="must be \\[H, W\\]"):
        register_depth(np.ones((3, 4, 1), np.float32), DEPTH_K, COLOUR_K, (48, 64), np.eye(4))


def test_a_much_coarser_colour_image_samples_the_depth_image_first():
    """640x480 depth into 80x60 (the working size): sampled every 4th pixel, the result covers
    the same pixels with the same surfaces as registering every pixel would."""
    from viewseg_core.cameras import K_from_hfov
    from viewseg_core.model.depth_guide import lift_source_depth, splat_depth
    import torch

    big_K, small_K = K_from_hfov(70.0, 640, 480), K_from_hfov(70.0, 80, 60)
    v, u = np.mgrid[0:480, 0:640]
    depth = np.where((u > 300) & (u < 340), 1.0, 2.0 + u / 640.0).astype(np.float32)   # a post before a slanted wall
    out = register_depth(depth, big_K, small_K, (60, 80), translation(BASELINE))
    # Every pixel of the full image, by the same splat: the reference.
    points, known = lift_source_depth(torch.from_numpy(depth)[None, None], torch.as_tensor(big_K).float()[None, None],
                                      torch.eye(4)[None, None], 480, 640)
    c2w = torch.as_tensor(np.linalg.inv(translation(BASELINE))).float()[None, None]
    full = splat_depth(points, known, torch.as_tensor(small_K).float()[None, None], c2w, 60, 80, footprint=1)[0, 0].numpy()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(full))
    both = np.isfinite(out)
    # Only where the nearest surface is a close call, at the post's edges (columns 36-45 of 80),
    # may the sampled image pick the other one: measured, one column of 60 pixels.
    differ = (np.abs(out - full) > 0.02 * full) & both
    assert differ.sum() <= 60 and set(np.argwhere(differ)[:, 1].tolist()) <= set(range(36, 46))


def test_a_distorted_depth_camera_registers_once_undistorted_as_its_pinhole_would():
    """A raw depth image from a lens with distortion, undistorted (nearest) onto its pinhole and
    then registered, lands where the same camera's pinhole image lands."""
    import cv2

    from viewseg_core.rectify import make_undistorter

    d = np.array([-0.28, 0.08, 0.0, 0.0, 0.0])
    raw_K = DEPTH_K
    pinhole_K = cv2.getOptimalNewCameraMatrix(raw_K, d, (40, 30), 0.0)[0]   # what CameraInfo.p holds

    def slanted_wall(points_xy: np.ndarray) -> np.ndarray:
        """Planar depth of the wall z = 2 + 0.5 x along normalised rays (x, y, 1)."""
        return (2.0 / (1.0 - 0.5 * points_xy[..., 0])).astype(np.float32)

    u, v = np.meshgrid(np.arange(40.0), np.arange(30.0))
    pixels = np.stack([u, v], -1).reshape(-1, 1, 2)
    raw_rays = cv2.undistortPoints(pixels, raw_K, d).reshape(30, 40, 2)      # where each raw pixel looks
    raw = slanted_wall(raw_rays)
    pinhole = slanted_wall(np.stack([(u - pinhole_K[0, 2]) / pinhole_K[0, 0],
                                     (v - pinhole_K[1, 2]) / pinhole_K[1, 1]], -1))
    undistorter = make_undistorter(raw_K, d, "plumb_bob", 40, 30, pinhole_K)
    registered = register_depth(undistorter.depth(raw), pinhole_K, COLOUR_K, (48, 64), translation(BASELINE))
    reference = register_depth(pinhole, pinhole_K, COLOUR_K, (48, 64), translation(BASELINE))
    both = np.isfinite(registered) & np.isfinite(reference)
    assert both.mean() > 0.6
    # Nearest resampling moves a depth by at most about a pixel along the slope (up to 0.09 m
    # a pixel at 3 m): within 3% everywhere, and on most pixels exact to the first decimal.
    error = np.abs(registered[both] - reference[both]) / reference[both]
    assert error.max() < 0.03 and np.median(error) < 0.01
    # Lifting the raw image with K as if it were a pinhole puts the wall elsewhere.
    naive = register_depth(raw, raw_K, COLOUR_K, (48, 64), translation(BASELINE))
    both_naive = np.isfinite(naive) & np.isfinite(reference)
    naive_error = np.abs(naive[both_naive] - reference[both_naive]) / reference[both_naive]
    assert naive_error.max() > 0.1


def test_points_land_one_pixel_each_where_the_pinhole_puts_them_the_nearest_winning():
    """register_points by hand: the cloud's frame 0.1 m to the colour camera's left (its points
    move +0.1 m in x in the camera), K = COLOUR_K (64x48)."""
    from viewseg_core.depth_registration import register_points

    points = np.array([
        [0.0, 0.0, 2.0],     # -> x 0.1: u = 45 * 0.1 / 2 + 31.5 = 33.75 (col 34), v = 23.5 (row 24 of the 0.5 tie)
        [-0.5, 0.4, 4.0],    # -> x -0.4: u = 45 * -0.4 / 4 + 31.5 = 27.0, v = 45 * 0.4 / 4 + 23.5 = 28.0
        [-0.475, 0.5, 5.0],  # -> (-0.375, 0.5, 5): u = 28.125 (col 28), v = 28.0, hidden by the next one
        [-0.4, 0.4, 4.0],    # -> (-0.3, 0.4, 4) on the same ray: the same pixel, and the nearer (4 m) wins
        [0.0, 0.0, -1.0],    # behind the camera: nowhere
        [30.0, 0.0, 1.0],    # outside the image: nowhere
    ], np.float32)
    out = register_points(points, COLOUR_K, (48, 64), np.linalg.inv(translation(-0.1)))
    assert out.shape == (48, 64) and out.dtype == np.float32
    filled = {(int(r), int(c)): float(out[r, c]) for r, c in zip(*np.nonzero(np.isfinite(out)))}
    assert filled == {(24, 34): 2.0, (28, 27): 4.0, (28, 28): 4.0}, filled
    empty = register_points(np.zeros((0, 3), np.float32), COLOUR_K, (48, 64), np.eye(4))
    assert np.isnan(empty).all()


def test_register_points_equals_the_z_buffer_of_every_point():
    """Culling the points the camera cannot see before the z-buffer changes nothing: a cloud
    all around a turned, shifted camera (most of it behind or beside the image, some just past
    its borders) registers exactly as splat_depth z-buffers all of it."""
    import torch

    from viewseg_core.depth_registration import register_points
    from viewseg_core.model.depth_guide import splat_depth

    rng = np.random.default_rng(3)
    points = rng.uniform(-6.0, 6.0, size=(20000, 3)).astype(np.float32)
    angle = 0.4
    colour_from_points = np.eye(4)
    colour_from_points[:3, :3] = [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                                  [-math.sin(angle), 0, math.cos(angle)]]
    colour_from_points[:3, 3] = [0.3, -0.2, 0.5]
    out = register_points(points, COLOUR_K, (48, 64), colour_from_points)
    every = splat_depth(torch.from_numpy(points)[None], torch.ones(1, len(points), dtype=torch.bool),
                        torch.as_tensor(COLOUR_K, dtype=torch.float32)[None, None],
                        torch.as_tensor(np.linalg.inv(colour_from_points), dtype=torch.float32)[None, None],
                        48, 64, footprint=1)[0, 0].numpy()
    np.testing.assert_array_equal(np.isfinite(out), np.isfinite(every))
    np.testing.assert_allclose(out[np.isfinite(out)], every[np.isfinite(every)], rtol=1e-5)
    assert 500 < np.isfinite(out).sum() < 48 * 64


def test_register_points_refuses_what_it_cannot_use():
    from viewseg_core.depth_registration import register_points

    with pytest.raises(ValueError, match="finite \\[N, 3\\]"):
        register_points(np.array([[0.0, 0.0, np.nan]]), COLOUR_K, (48, 64), np.eye(4))
    with pytest.raises(ValueError, match="finite \\[N, 3\\]"):
        register_points(np.zeros((4, 2)), COLOUR_K, (48, 64), np.eye(4))
    with pytest.raises(ValueError, match="colour_from_points must be a finite 4x4"):
        register_points(np.zeros((4, 3)), COLOUR_K, (48, 64), np.full((4, 4), np.inf))


def test_drop_occluded_drops_what_a_nearer_neighbour_hides():
    """A wall 5 m away measured on a scan line, a box 2 m away over part of it, and wall points
    that a LiDAR above the camera saw past the box's top edge landing just below it (where the
    camera sees the box): with radius 1 the wall points right below the box go, the box stays,
    and so do the wall away from it and a point 4% behind its neighbour (within the 5% margin).
    The cost: the wall's scan line right above the box's edge, which the camera does see, goes
    too. Radius 2 reaches a pixel further. NaN stays NaN."""
    from viewseg_core.depth_registration import drop_occluded

    depth = np.full((6, 8), np.nan, np.float32)
    depth[1, :] = 5.0                  # the wall's scan line
    depth[2, 2:5] = 2.0                # the box's top edge
    depth[3, 2:5] = 5.0                # wall seen past it, where the camera sees the box
    depth[5, 6] = 5.2                  # nothing within a pixel: stays
    depth[4, 6], depth[4, 7] = 5.0, 5.2   # 4% behind its neighbour: stays
    out = drop_occluded(depth, radius=1)
    assert np.isnan(out[3, 2:5]).all()                           # hidden by the box
    np.testing.assert_array_equal(out[2, 2:5], 2.0)
    assert np.isnan(out[1, 1:6]).all() and (out[1, [0, 6, 7]] == 5.0).all()   # the wall beside the box's edge
    assert out[4, 7] == np.float32(5.2) and out[5, 6] == np.float32(5.2)
    assert np.isnan(out[0]).all()
    depth[4, 3] = 5.0                  # two rows below the box
    assert np.isfinite(drop_occluded(depth, radius=1)[4, 3]) and np.isnan(drop_occluded(depth, radius=2)[4, 3])
    for bad in (0, 9, 1.5):
        with pytest.raises(ValueError, match="radius must be an integer 1-8"):
            drop_occluded(depth, radius=bad)
    with pytest.raises(ValueError, match="depth must be"):
        drop_occluded(np.zeros((2, 2, 2)), radius=1)


def test_drop_occluded_keeps_a_slanted_plane_but_its_farthest_pixel():
    """A wall seen at a slant along a scan line: inverse depth linear in the column, each pixel
    7-12% farther than the one before (more than the margin). Each has a nearer neighbour, but
    lies midway (in inverse depth) between it and the one across: on the plane, kept. The
    farthest has no pixel across, and goes (the documented cost). Bent by 20% at one pixel,
    the plane breaks there."""
    from viewseg_core.depth_registration import drop_occluded

    depth = np.full((3, 12), np.nan, np.float32)
    depth[1] = 1.0 / (0.5 - 0.035 * np.arange(12))
    assert (depth[1, 1:] / depth[1, :-1] > 1.07).all()
    out = drop_occluded(depth, radius=1)
    np.testing.assert_array_equal(out[1, :-1], depth[1, :-1])
    assert np.isnan(out[1, -1])
    bent = depth.copy()
    bent[1, 6] *= 1.2
    assert np.isnan(drop_occluded(bent, radius=1)[1, 6])
