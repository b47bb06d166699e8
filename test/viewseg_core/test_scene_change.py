"""viewseg_core.scene_change: what one depth keyframe shows that another's depth sees through.

Hand-built cases: a wall 4 m in front of the camera, with a "person" (a block of pixels at 2 m)
in one keyframe and not in the other, from the same pose and from a camera turned 20 degrees;
and a simulated room seen from two poses of the walk, which must show no change at all.
"""
from __future__ import annotations

import numpy as np
import pytest

from viewseg_core.cameras import K_from_hfov
from viewseg_core.scene_change import (ChangeEvidence, grid_stride, measured_points, reach_box, scene_change,
                                      scene_changes)

import wall_scene  # test/support
from wall_scene import yawed

W, H = 80, 60
K = K_from_hfov(70.0, W, H)
PERSON = (slice(20, 44), slice(30, 40))   # rows, columns of the person in the first camera


def wall_depth(c2w: np.ndarray, width: int = W, height: int = H, K: np.ndarray = K) -> np.ndarray:
    return wall_scene.wall_depth(c2w, K, width, height)


def with_person(depth: np.ndarray) -> np.ndarray:
    return wall_scene.with_person(depth, *PERSON)


def full_change(older, newer, *args):
    """scene_change with every point of an 80x60 older keyframe tested (no subsample)."""
    return scene_change(older, newer, *args, max_tested=H * W)


PERSON_PIXELS = 24 * 10


def test_a_person_who_walked_away_is_gone_from_the_same_pose():
    pose = yawed(0.0)
    older, newer = (with_person(wall_depth(pose)), K, pose), (wall_depth(pose), K, pose)
    assert full_change(older, newer) == ChangeEvidence(gone=PERSON_PIXELS, points=H * W)
    assert full_change(older, newer).share == pytest.approx(PERSON_PIXELS / (H * W))
    # The other way round the person walked in: the older keyframe misses them but shows nothing
    # that is gone (the newer one's person hides the older one's wall there).
    assert full_change(newer, older) == ChangeEvidence(gone=0, points=H * W)


def test_a_turned_camera_sees_through_the_person_it_overlaps():
    """The newer camera is turned 20 degrees right: the person (centre of the older image, some
    10 degrees right of its axis) lies inside its view, before the wall it measures."""
    older_pose, newer_pose = yawed(0.0), yawed(20.0)
    evidence = full_change((with_person(wall_depth(older_pose)), K, older_pose), (wall_depth(newer_pose), K, newer_pose))
    assert evidence == ChangeEvidence(gone=PERSON_PIXELS, points=H * W)


def test_a_static_wall_from_two_poses_shows_no_change_and_a_hidden_surface_is_no_evidence():
    older_pose, newer_pose = yawed(0.0), yawed(-25.0, centre=(0.5, 0.0, 1.0))
    assert full_change((wall_depth(older_pose), K, older_pose), (wall_depth(newer_pose), K, newer_pose)) == \
        ChangeEvidence(0, H * W)
    # A person in front of the newer camera hides the wall it stands before: the older
    # keyframe's wall there is hidden, not seen through.
    assert full_change((wall_depth(older_pose), K, older_pose),
                        (with_person(wall_depth(newer_pose)), K, newer_pose)) == ChangeEvidence(0, H * W)


def test_no_measurement_is_no_evidence():
    pose = yawed(0.0)
    blind = np.full((H, W), np.nan, np.float32)
    assert full_change((with_person(wall_depth(pose)), K, pose), (blind, K, pose)) == ChangeEvidence(0, H * W)
    # Unknown where the person was (a depth camera's hole): nothing to see through there, and the
    # two opposite neighbours a point needs are missing inside the hole.
    holed = wall_depth(pose)
    holed[14:50, 24:46] = 0.0   # the person's pixels and 6 around them (more than a 2-degree cell and its neighbours)
    assert full_change((with_person(wall_depth(pose)), K, pose), (holed, K, pose)).gone == 0


def test_a_simulated_room_seen_from_two_poses_shows_no_change():
    from viewseg_core.data.synth.render import render
    from viewseg_ros.sim_camera import SimWorld

    world = SimWorld.create(0)
    views = []
    for t in (2.0, 3.0):
        c2w = world.camera_pose(t)
        views.append((render(world.scene, K, c2w, H, W).depth, K, c2w))
    assert full_change(*views) == ChangeEvidence(0, H * W)


def test_one_pass_over_several_older_keyframes_matches_each_pair():
    newer_pose = yawed(10.0, centre=(0.4, 0.0, 0.0))
    newer = (wall_depth(newer_pose), K, newer_pose)
    olders = []
    # (yaw, x, the person's rows): two people of different sizes, so that a count given to the
    # wrong keyframe shows
    for degrees, x, rows in ((0.0, 0.0, slice(20, 44)), (0.0, 0.0, None), (-5.0, 0.3, slice(20, 30)),
                             (180.0, 0.0, slice(20, 44))):
        pose = yawed(degrees, centre=(x, 0.0, 0.0))
        depth = wall_depth(pose) if rows is None else wall_scene.with_person(wall_depth(pose), rows, PERSON[1])
        if degrees == 180.0:   # facing away: its "wall" is behind the newer camera, out of its view
            depth = np.full((H, W), 3.0, np.float32)
        olders.append((depth, K, pose))
    together = scene_changes(olders, newer, max_tested=H * W)
    assert together == [full_change(older, newer) for older in olders]
    assert [e.gone for e in together] == [240, 0, 100, 0]


def test_measured_points_lie_on_their_pixels_rays_and_the_grid_strides():
    c2w = yawed(30.0, centre=(1.0, -0.5, 2.0))
    depth = np.full((H, W), 3.0, np.float32)
    depth[0, 0] = np.nan
    depth[0, 1] = 0.0
    points = measured_points(depth, K, c2w)
    assert len(points) == H * W - 2
    camera = (points - c2w[:3, 3]) @ c2w[:3, :3]
    np.testing.assert_allclose(camera[:, 2], 3.0, rtol=1e-9)
    uv = camera @ K.T
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    np.testing.assert_allclose(uv[:, 0] / uv[:, 2], cols, atol=1e-9)
    np.testing.assert_allclose(uv[:, 1] / uv[:, 2], rows, atol=1e-9)
    strided = measured_points(np.full((H, W), 3.0, np.float32), K, c2w, stride=4)
    assert len(strided) == (H // 4) * (W // 4)
    uv = ((strided - c2w[:3, 3]) @ c2w[:3, :3]) @ K.T
    assert set(np.round(uv[:, 0] / uv[:, 2]).astype(int)) == set(range(0, W, 4))


def test_a_large_image_is_read_on_a_grid_of_at_most_max_pixels():
    assert grid_stride(120, 160) == 1 and grid_stride(480, 640) == 4 and grid_stride(240, 320) == 2
    big_K = K_from_hfov(70.0, 640, 480)
    pose = yawed(0.0)
    assert full_change((with_person(wall_depth(pose)), K, pose), (wall_depth(pose, 640, 480, big_K), big_K, pose)) \
        == ChangeEvidence(gone=PERSON_PIXELS, points=H * W)
    # An older keyframe is tested on a coarser grid (max_tested): 2 500 pixels at most by default.
    assert scene_change((wall_depth(pose, 640, 480, big_K), big_K, pose), (wall_depth(pose), K, pose)).points \
        == len(range(0, 480, 12)) * len(range(0, 640, 12))


def test_the_default_subsample_estimates_the_same_share():
    """80x60 is read every second pixel (1 200 points): the person's 24 x 10 block is 12 x 5 of them."""
    pose = yawed(0.0)
    older, newer = (with_person(wall_depth(pose)), K, pose), (wall_depth(pose), K, pose)
    assert scene_change(older, newer) == ChangeEvidence(gone=60, points=1200)
    assert scene_change(older, newer).share == full_change(older, newer).share


@pytest.mark.parametrize("change, message", [
    (lambda older, newer: (older, newer, 0.0), "cell_deg"),
    (lambda older, newer: (older, (newer[0], K, np.full((4, 4), np.nan)), 1.0), "pose"),
    (lambda older, newer: ((older[0][None], K, older[2]), newer, 1.0), r"\[H, W\]"),
])
def test_bad_input_is_refused_with_a_reason(change, message):
    pose = yawed(0.0)
    view = (wall_depth(pose), K, pose)
    older, newer, cell = change(view, view)
    with pytest.raises(ValueError, match=message):
        scene_change(older, newer, cell)


def test_every_point_seen_through_lies_in_the_newer_keyframes_reach_box():
    """reach_box, by hand: a camera at the origin that measured two points 2 m ahead, one 1 m to
    the side, reaches the box of the centre and the points grown by half the largest range
    (sqrt(5) / 2); and a wall 1 m nearer than the one a newer keyframe measured, seen through
    nearly everywhere, lies inside the newer keyframe's box (bag2scene skips the earlier
    keyframes outside it)."""
    import math

    points = np.array([[0.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    grow = math.sqrt(5) / 2
    np.testing.assert_allclose(reach_box(points, np.eye(4)), [[-grow, -grow, -grow], [1 + grow, grow, 2 + grow]])
    assert reach_box(np.zeros((0, 3)), np.eye(4)) is None
    pose = yawed(20.0)
    wall = wall_depth(pose)
    nearer = np.where(np.isfinite(wall), wall - 1.0, np.nan).astype(np.float32)
    assert full_change((nearer, K, pose), (wall, K, pose)).share > 0.9
    box = reach_box(measured_points(wall, K, pose), pose)
    gone = measured_points(nearer, K, pose)
    assert np.all((gone >= box[0]) & (gone <= box[1]))
