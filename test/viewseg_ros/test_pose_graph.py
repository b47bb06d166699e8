"""viewseg_ros/pose_graph.py: keyframes re-posed from a SLAM pose graph, against hand-computed
corrections and a drifting-odometry loop whose true poses are known."""
from __future__ import annotations

import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path

from viewseg_core.data.records import View
from viewseg_ros.keyframes import KeyframeBuffer, KeyframeConfig, pose_difference
from viewseg_ros.pose_graph import (OdometryUnavailable, PoseGraphCorrector, apply_pose_graph,
                                    interpolate_transform, nodes_from_path)
from viewseg_ros.tf_buffer import invert_transform, matrix_to_quaternion

S = 1_000_000_000


def planar(x: float, y: float, yaw_deg: float, z: float = 0.0) -> np.ndarray:
    yaw = math.radians(yaw_deg)
    out = np.eye(4)
    out[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    out[:3, 3] = [x, y, z]
    return out


# base_link -> camera_optical: 1.2 m up, looking along the body's x (REP 103 to OpenCV optical).
BODY_FROM_CAMERA = np.array([[0, 0, 1, 0.1], [-1, 0, 0, 0], [0, -1, 0, 1.2], [0, 0, 0, 1]], dtype=np.float64)


def test_a_constant_correction_moves_every_keyframe_by_it_exactly():
    shift = planar(0.5, -0.2, 10.0)
    odometry = {t * S: planar(t * 0.3, 0.0, 3.0 * t) for t in range(10)}
    graph = PoseGraphCorrector(max_gap_s=2.0)
    graph.update([(stamp, shift @ pose) for stamp, pose in odometry.items()], odometry.get)
    keyframe_in_odom = planar(1.05, 0.0, 10.5) @ BODY_FROM_CAMERA   # between nodes 3 and 4
    np.testing.assert_allclose(graph.correct(int(3.5 * S), keyframe_in_odom), shift @ keyframe_in_odom, atol=1e-12)
    assert graph.usable_nodes == 10 and graph.nodes == 10


def test_between_two_nodes_the_correction_is_interpolated_by_time():
    # map -> odom implied by node 0 is the identity, by node 1 (4 s later) 0.4 m along x and 20 deg:
    # a keyframe a quarter of the way gets 0.1 m and 5 deg.
    odometry = {0: np.eye(4), 4 * S: planar(2.0, 0.0, 0.0)}
    graph = PoseGraphCorrector(max_gap_s=3.0)
    graph.update([(0, np.eye(4)), (4 * S, planar(0.4, 0.0, 20.0) @ planar(2.0, 0.0, 0.0))], odometry.get)
    np.testing.assert_allclose(graph.fixed_from_odom(1 * S), planar(0.1, 0.0, 5.0), atol=1e-12)
    np.testing.assert_allclose(interpolate_transform(np.eye(4), planar(0.4, 0, 20.0), 0.25), planar(0.1, 0, 5.0),
                               atol=1e-12)


def test_keyframes_beyond_max_gap_of_every_node_are_not_covered():
    odometry = {10 * S: np.eye(4), 11 * S: np.eye(4)}
    graph = PoseGraphCorrector(max_gap_s=2.0)
    graph.update([(10 * S, planar(1, 0, 0)), (11 * S, planar(1, 0, 0))], odometry.get)
    assert graph.fixed_from_odom(int(7.9 * S)) is None       # 2.1 s before the first node
    np.testing.assert_allclose(graph.fixed_from_odom(int(8.5 * S)), planar(1, 0, 0))   # the first node's
    np.testing.assert_allclose(graph.fixed_from_odom(int(12.9 * S)), planar(1, 0, 0))  # the last node's
    assert graph.fixed_from_odom(int(13.1 * S)) is None
    empty = PoseGraphCorrector()
    assert empty.fixed_from_odom(0) is None


def test_odometry_is_looked_up_once_per_node_and_retried_only_when_tf_may_still_know():
    asked: list[int] = []

    def odometry_at(stamp_ns):
        asked.append(stamp_ns)
        if stamp_ns == 1 * S:
            raise OdometryUnavailable("older than the TF history")
        if stamp_ns == 3 * S:
            return None   # newer than TF so far: ask again with the next graph
        return np.eye(4)

    graph = PoseGraphCorrector()
    nodes = [(t * S, planar(t, 0, 0)) for t in (1, 2, 3)]
    graph.update(nodes, odometry_at)
    assert asked == [1 * S, 2 * S, 3 * S] and graph.usable_nodes == 1
    graph.update(nodes + [(4 * S, planar(4, 0, 0))], odometry_at)
    assert asked[3:] == [3 * S, 4 * S] and graph.usable_nodes == 2   # node 1 never again, node 2 remembered
    graph.update([(4 * S, planar(4, 0, 0))], odometry_at)            # the graph dropped nodes 1-3
    assert graph.usable_nodes == 1 and graph.nodes == 1
    graph.reset()
    assert graph.usable_nodes == 0 and graph.fixed_from_odom(4 * S) is None


def drifting_loop(seconds: int = 40):
    """A robot driving a 4 m x 4 m square at 0.4 m/s; its odometry drifts (a heading error
    growing as the square of time and a scale error), SLAM's online map -> odom stays the
    identity until the loop closes. Returns true body poses and odometry poses per 0.5 s."""
    true, odom = {}, {}
    for step in range(2 * seconds + 1):
        t = step / 2.0
        side, along = divmod(0.4 * t, 4.0)
        corners = [(0, 0, 0), (4, 0, 90), (4, 4, 180), (0, 4, 270)]
        x0, y0, yaw = corners[int(side) % 4]
        heading = math.radians(yaw)
        true_pose = planar(x0 + along * math.cos(heading), y0 + along * math.sin(heading), yaw)
        drift = planar(0.02 * t, -0.01 * t, 0.004 * t * t)   # 6.4 deg and 0.9 m after 40 s
        true[int(t * S)] = true_pose
        odom[int(t * S)] = invert_transform(drift) @ true_pose
    return true, odom


def test_a_drifting_loop_is_put_back_on_the_true_trajectory():
    true, odom = drifting_loop()
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.0, min_rotation_deg=0.0, min_interval_s=0.0,
                                           keep_recent=0))
    rgb, K = np.zeros((4, 4, 3), np.uint8), np.eye(3)
    for stamp in sorted(true)[1::4]:   # a keyframe every 2 s, posed by TF with map -> odom = identity
        camera_in_odom = odom[stamp] @ BODY_FROM_CAMERA
        buffer.add(View(rgb=rgb, K=K, c2w=camera_in_odom), stamp, force=True, odom_c2w=camera_in_odom)
    before = [pose_difference(k.c2w, true[k.stamp_ns] @ BODY_FROM_CAMERA)[0] for k in buffer]
    # The optimised graph: true body poses at nodes every 3 s, offset from the keyframes' stamps.
    nodes = [(stamp, true[stamp]) for stamp in sorted(true)[::6]]
    graph = PoseGraphCorrector(max_gap_s=5.0)
    graph.update(nodes, odom.get)
    update = apply_pose_graph(buffer, graph)
    after = [pose_difference(k.c2w, true[k.stamp_ns] @ BODY_FROM_CAMERA) for k in buffer]
    assert update.covered == update.moved == len(buffer) == 20 and update.unanchored == update.uncovered == 0
    assert max(before) > 0.8                               # the uncorrected keyframes are off by the drift
    assert max(shift for shift, _ in after) < 0.003        # within 3 mm after (interpolation between nodes)
    assert max(turn for _, turn in after) < 0.02
    # The same graph again moves nothing; corrections start from the odometry pose, never accumulate.
    again = apply_pose_graph(buffer, graph)
    assert again.covered == 20 and again.moved == 0 and again.max_shift_m < 1e-9


def test_repose_swaps_keyframes_in_place_and_leaves_snapshots_and_the_unanchored_alone():
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.1, keep_recent=0))
    rgb, K = np.zeros((4, 4, 3), np.uint8), np.eye(3)
    for index in range(3):
        pose = planar(index, 0, 0)
        buffer.add(View(rgb=rgb, K=K, c2w=pose), (index + 1) * S, odom_c2w=pose)
    restored = buffer.restore(View(rgb=rgb, K=K, c2w=planar(9, 0, 0)), 5 * S)
    buffer.add(View(rgb=rgb, K=K, c2w=planar(5, 0, 0)), 6 * S)   # no odometry pose
    held = buffer.snapshot()
    graph = PoseGraphCorrector(max_gap_s=10.0)
    graph.update([(1 * S, planar(0, 1, 0))], {1 * S: np.eye(4)}.get)   # map -> odom: 1 m along y
    update = apply_pose_graph(buffer, graph)
    assert (update.covered, update.moved, update.unanchored) == (3, 3, 2)
    assert update.max_shift_m == pytest.approx(1.0)
    now = buffer.snapshot()
    assert [k.id for k in now] == [k.id for k in held]                  # admission order kept
    np.testing.assert_allclose([k.c2w[:3, 3] for k in now[1:4]], [[0, 1, 0], [1, 1, 0], [2, 1, 0]])
    np.testing.assert_allclose(held[1].c2w[:3, 3], [0, 0, 0])            # a query's snapshot is untouched
    assert now[1].view is not held[1].view and now[1].features is held[1].features
    assert now[0] is held[0] and now[0].id == restored.id and now[4] is held[4]
    buffer.reset_clock()   # stamps of another clock epoch do not compare with the graph's
    assert apply_pose_graph(buffer, graph).unanchored == 5
    assert buffer.repose({999: np.eye(4)}) == 0


def stamped(stamp_ns: int, pose: np.ndarray, frame: str = "map") -> PoseStamped:
    message = PoseStamped()
    message.header.frame_id = frame
    message.header.stamp = Time(sec=stamp_ns // S, nanosec=stamp_ns % S)
    message.pose.position.x, message.pose.position.y, message.pose.position.z = pose[:3, 3].tolist()
    q = matrix_to_quaternion(pose[:3, :3])
    o = message.pose.orientation
    o.x, o.y, o.z, o.w = q.tolist()
    return message


def test_a_nav_msgs_path_reads_as_sorted_nodes_and_bad_ones_are_refused_whole():
    path = Path()
    path.header.frame_id = "map"
    path.poses = [stamped(2 * S, planar(1, 2, 30)), stamped(1 * S + 5, planar(0, 0, 0), frame="")]
    nodes = nodes_from_path(path, "map")
    assert nodes.stamps.tolist() == [1 * S + 5, 2 * S]
    np.testing.assert_allclose(nodes.poses, [planar(0, 0, 0), planar(1, 2, 30)], atol=1e-12)
    path.header.frame_id = "/map"
    assert len(nodes_from_path(path, "map")) == 2   # a leading slash is the same frame, as in TF
    with pytest.raises(ValueError, match="frame 'odom'.*fixed_frame 'map'"):
        path.header.frame_id = "odom"
        nodes_from_path(path, "map")
    path.header.frame_id = "map"
    for broken, match in [(stamped(0, np.eye(4)), "node 2 has no stamp"),
                          (stamped(3 * S, np.eye(4), frame="odom"), "node 2 is in frame 'odom'")]:
        path.poses = path.poses[:2] + [broken]
        with pytest.raises(ValueError, match=match):
            nodes_from_path(path, "map")
    bad = stamped(3 * S, np.eye(4))
    bad.pose.orientation.w = 2.0
    path.poses = path.poses[:2] + [bad]
    with pytest.raises(ValueError, match="not normalised"):
        nodes_from_path(path, "map")
    bad.pose.orientation.w = float("inf")
    with pytest.raises(ValueError, match="node 2: non-finite quaternion"):
        nodes_from_path(path, "map")
    bad.pose.orientation.w, bad.pose.position.x = 1.0, float("nan")
    with pytest.raises(ValueError, match="node 2: non-finite position"):
        nodes_from_path(path, "map")
    # A slightly off quaternion (within tf2's tolerance) is normalised, as TF does.
    bad.pose.position.x, bad.pose.orientation.w = 0.0, 1.004
    np.testing.assert_allclose(nodes_from_path(path, "map").poses[2], np.eye(4), atol=1e-12)
    with pytest.raises(ValueError, match="max_gap_s"):
        PoseGraphCorrector(max_gap_s=0.0)


def test_the_odometry_trail_interpolates_between_samples_and_nowhere_else():
    from viewseg_ros.pose_graph import OdometryTrail

    trail = OdometryTrail(max_samples=3, max_step_s=1.5)
    assert trail.at(0) is None and trail.first_ns is None
    trail.add(1 * S, planar(0, 0, 0))
    trail.add(2 * S, planar(1, 0, 90))
    trail.add(2 * S, planar(9, 9, 0))          # a stamp held already: kept as it was
    np.testing.assert_allclose(trail.at(int(1.5 * S)), planar(0.5, 0, 45), atol=1e-12)
    np.testing.assert_allclose(trail.at(2 * S), planar(1, 0, 90), atol=1e-12)
    assert trail.at(int(0.5 * S)) is None and trail.at(int(2.5 * S)) is None   # outside the samples
    trail.add(4 * S, planar(3, 0, 90))         # 2 s after the last: a gap longer than max_step_s
    assert trail.at(3 * S) is None
    trail.add(5 * S, planar(4, 0, 90))         # a fourth sample: the oldest goes
    assert len(trail) == 3 and trail.first_ns == 2 * S and trail.at(int(1.5 * S)) is None
    trail.add(int(4.5 * S), planar(3.5, 0, 90))   # an older stamp than the newest goes in its place
    np.testing.assert_allclose(trail.at(int(4.25 * S)), planar(3.25, 0, 90), atol=1e-12)
    assert trail.first_ns == 4 * S
    trail.reset()
    assert len(trail) == 0


def test_the_trail_gives_the_samples_near_keyframes_and_takes_them_back():
    """What a keyframe folder keeps of the trail (samples_near) and what a later run merges."""
    from viewseg_ros.pose_graph import OdometryTrail

    trail = OdometryTrail()
    for tenth in range(0, 200):                       # 20 s at 10 Hz, 1 cm per sample
        trail.add(tenth * S // 10, planar(0.01 * tenth, 0, 0))
    stamps, poses = trail.samples_near([5 * S, int(15.05 * S)], window_ns=S)
    expected = [t * S // 10 for t in range(40, 61)] + [t * S // 10 for t in range(141, 161)]
    assert stamps.tolist() == expected and poses.shape == (len(expected), 4, 4)
    np.testing.assert_allclose(poses[:, 0, 3], [0.01 * t for t in [*range(40, 61), *range(141, 161)]])
    assert trail.samples_near([], S)[0].shape == (0,) and OdometryTrail().samples_near([S], S)[0].shape == (0,)
    later = OdometryTrail()
    later.add(5 * S, planar(7, 7, 0))                # a stamp the run has already: its own sample stays
    later.merge(stamps, poses)
    assert len(later) == len(expected)
    np.testing.assert_allclose(later.at(5 * S), planar(7, 7, 0))
    np.testing.assert_allclose(later.at(int(14.55 * S)), planar(1.455, 0, 0), atol=1e-12)
    assert later.at(10 * S) is None                  # between the two windows: no sample within max_step_s
    # What a keyframe folder keeps of two trails (this run's first): sorted, one sample per stamp,
    # the first trail's where both hold one.
    from viewseg_ros.pose_graph import samples_near_all

    both_stamps, both_poses = samples_near_all((later, trail), [5 * S], S)
    assert both_stamps.tolist() == [t * S // 10 for t in range(40, 61)]
    np.testing.assert_allclose(both_poses[10], planar(7, 7, 0))      # 5 s: `later` holds its own sample there
    np.testing.assert_allclose(both_poses[0], planar(0.4, 0, 0))
    assert samples_near_all((OdometryTrail(), OdometryTrail()), [S], S)[1].shape == (0, 4, 4)


def test_restored_keyframes_with_their_odometry_follow_the_graph_until_the_clock_jumps():
    """A folder that kept the odometry: its keyframes are anchored (odom_epoch) like live ones;
    one without it stays put; a clock jump unanchors both kinds."""
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.1, keep_recent=0))
    rgb, K = np.zeros((4, 4, 3), np.uint8), np.eye(3)
    anchored = buffer.restore(View(rgb=rgb, K=K, c2w=planar(1, 0, 0)), 1 * S, odom_c2w=planar(1, 0, 0))
    loose = buffer.restore(View(rgb=rgb, K=K, c2w=planar(2, 0, 0)), 2 * S)
    live = buffer.add(View(rgb=rgb, K=K, c2w=planar(3, 0, 0)), 3 * S, odom_c2w=planar(3, 0, 0))
    assert (anchored.odom_epoch, loose.odom_epoch, live.odom_epoch) == (buffer.epoch, None, buffer.epoch)
    graph = PoseGraphCorrector(max_gap_s=10.0)
    graph.update([(1 * S, planar(1, 0.5, 0))], {1 * S: planar(1, 0, 0)}.get)   # map -> odom: 0.5 m along y
    update = apply_pose_graph(buffer, graph)
    assert (update.covered, update.moved, update.unanchored) == (2, 2, 1)
    poses = {k.id: k.c2w[:3, 3].tolist() for k in buffer}
    assert poses == {anchored.id: [1, 0.5, 0], loose.id: [2, 0, 0], live.id: [3, 0.5, 0]}
    buffer.reset_clock()
    assert apply_pose_graph(buffer, graph).unanchored == 3


def test_nodes_whose_odometry_was_unavailable_are_asked_again_after_forget_unavailable():
    graph = PoseGraphCorrector(max_gap_s=10.0)
    asked = []

    def never(stamp_ns):
        asked.append(stamp_ns)
        raise OdometryUnavailable("older than TF's history")

    graph.update([(1 * S, planar(0, 0, 0))], never)
    graph.update([(1 * S, planar(0, 0, 0))], never)
    assert asked == [1 * S] and graph.usable_nodes == 0      # remembered as unavailable: asked once
    graph.forget_unavailable()                                 # a saved trail was loaded
    graph.update([(1 * S, planar(0, 1, 0))], {1 * S: np.eye(4)}.get)
    assert graph.usable_nodes == 1 and graph.fixed_from_odom(1 * S)[1, 3] == pytest.approx(1.0)
