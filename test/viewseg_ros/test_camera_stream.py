"""camera_stream's depth: one static world from every view, so a node's scene-change check
finds nothing changed (bench_load --depth measured keyframes dropped, not load, before)."""
import math

import numpy as np
import pytest

from viewseg_core.cameras import K_from_hfov
from viewseg_core.scene_change import measured_points, scene_changes
from viewseg_ros.camera_stream import CAMERA_HEIGHT_M, corridor_depth, view_pose


def test_corridor_depth_by_hand():
    K = np.array([[100.0, 0.0, 40.0], [0.0, 100.0, 50.0], [0.0, 0.0, 1.0]])
    depth = corridor_depth(K, 101, 80, camera_height=1.2, ceiling=2.5, max_range=8.0)
    assert depth.shape == (101, 80) and depth.dtype == np.float32
    assert depth[80, 0] == pytest.approx(1.2 * 100 / 30)           # floor, 30 rows below the centre
    assert depth[20, 79] == pytest.approx((2.5 - 1.2) * 100 / 30)  # ceiling, 30 rows above
    assert np.isnan(depth[50]).all()                               # the horizon row
    assert np.isnan(depth[60]).all()                               # floor at 12 m: beyond the range
    assert np.isnan(depth[40]).all()                               # ceiling at 13 m: beyond the range
    assert np.array_equal(depth[:, 0], depth[:, 79], equal_nan=True)  # planar depth: same along a row
    with pytest.raises(ValueError, match="camera_height < ceiling"):
        corridor_depth(K, 101, 80, camera_height=3.0, ceiling=2.5)


def test_every_measured_point_lies_on_the_floor_or_the_ceiling():
    K = K_from_hfov(70.0, 64, 48)
    depth = corridor_depth(K, 48, 64)
    for index in (0, 7):
        z = measured_points(depth, K, view_pose(index, 0.5, 20.0))[:, 2]
        assert len(z) > 0.5 * np.isfinite(depth).size
        assert np.allclose(np.minimum(np.abs(z), np.abs(z - 2.5)), 0.0, atol=1e-4)
        assert (np.abs(z) < 1e-4).any() and (np.abs(z - 2.5) < 1e-4).any()


@pytest.mark.parametrize("step", [1, 3])
def test_a_newer_view_sees_through_nothing_of_an_older_one(step):
    """The stream's walk (0.5 m and 20 deg per view): the scene-change test finds no point of
    an older view gone from the newer one's depth; a wall at 3 m ahead of every view (the
    stream's depth before) loses more than the node's change share, so this test can fail."""
    K = K_from_hfov(70.0, 160, 120)
    corridor = corridor_depth(K, 120, 160)
    wall = np.full((120, 160), 3.0, dtype=np.float32)
    for depth, expect_gone in ((corridor, False), (wall, True)):
        older = (depth, K, view_pose(4, 0.5, 20.0))
        newer = (depth, K, view_pose(4 + step, 0.5, 20.0))
        evidence, = scene_changes([older], newer)
        assert evidence.points > 0
        if expect_gone:
            assert evidence.share > 0.02   # keyframes.change_share in config/viewseg.yaml: dropped
        else:
            assert evidence.gone == 0


def test_camera_height_is_the_view_pose_height():
    assert view_pose(3, 0.5, 20.0)[2, 3] == CAMERA_HEIGHT_M
    assert math.isclose(np.linalg.det(view_pose(3, 0.5, 20.0)[:3, :3]), 1.0)
