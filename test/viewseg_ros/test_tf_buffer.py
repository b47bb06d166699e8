"""TransformBuffer against hand-computed transforms: chains, interpolation (lerp + slerp),
static edges, time 0, and the errors; then a real TfListener fed by rclpy publishers."""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest

from viewseg_ros.tf_buffer import (
    ConnectivityError, ExtrapolationError, TransformBuffer, UnknownFrameError, add_tf_message,
    matrix_to_quaternion, quaternion_to_matrix, slerp)

SEC = 1_000_000_000


def qz(angle: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation by `angle` radians about z."""
    return (0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2))


def rz(angle: float, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0, t[0]], [s, c, 0, t[1]], [0, 0, 1, t[2]], [0, 0, 0, 1]], float)


@pytest.fixture
def robot() -> TransformBuffer:
    """map -> odom (static), odom -> base (moving), base -> camera (static), base -> lidar (static).

    base moves from x=0, yaw 0 at t=1 s to x=2, yaw 90 deg at t=3 s.
    """
    buffer = TransformBuffer(cache_time_s=None)
    buffer.add_transform("map", "odom", 0, (10.0, 0.0, 0.0), qz(0.0), static=True)
    buffer.add_transform("odom", "base", 1 * SEC, (0.0, 0.0, 0.0), qz(0.0))
    buffer.add_transform("odom", "base", 3 * SEC, (2.0, 0.0, 0.0), qz(math.pi / 2))
    buffer.add_transform("base", "camera", 0, (0.5, 0.0, 1.0), qz(math.pi), static=True)
    buffer.add_transform("/base", "lidar", 0, (0.0, 0.2, 0.0), qz(0.0), static=True)  # leading '/' dropped
    return buffer


def test_chain_at_a_stamp(robot):
    # map <- odom <- base <- camera at t = 3 s, composed by hand.
    expected = rz(0, (10, 0, 0)) @ rz(math.pi / 2, (2, 0, 0)) @ rz(math.pi, (0.5, 0, 1))
    np.testing.assert_allclose(robot.lookup("map", "camera", 3 * SEC), expected, atol=1e-12)
    # camera origin in map: base at (12, 0) facing +y, camera 0.5 m ahead -> (12, 0.5, 1).
    np.testing.assert_allclose(expected[:3, 3], [12, 0.5, 1], atol=1e-12)
    # The reverse lookup is the inverse; sibling frames chain through their common parent.
    np.testing.assert_allclose(robot.lookup("camera", "map", 3 * SEC), np.linalg.inv(expected), atol=1e-12)
    lidar_in_camera = np.linalg.inv(rz(math.pi, (0.5, 0, 1))) @ rz(0, (0, 0.2, 0))
    np.testing.assert_allclose(robot.lookup("camera", "lidar", 2 * SEC), lidar_in_camera, atol=1e-12)
    np.testing.assert_allclose(robot.lookup("base", "base", 5 * SEC), np.eye(4))


def test_interpolation(robot):
    # t = 1.5 s is a quarter of the way: x = 0.5, yaw = 22.5 deg (slerp is uniform in angle).
    T = robot.lookup("odom", "base", int(1.5 * SEC))
    np.testing.assert_allclose(T, rz(math.pi / 8, (0.5, 0, 0)), atol=1e-12)
    stamped = robot.lookup_transform("map", "camera", int(1.5 * SEC))
    expected = rz(0, (10, 0, 0)) @ rz(math.pi / 8, (0.5, 0, 0)) @ rz(math.pi, (0.5, 0, 1))
    np.testing.assert_allclose(stamped.matrix, expected, atol=1e-12)
    assert stamped.stamp_ns == int(1.5 * SEC)


def test_slerp_takes_the_short_way_and_is_uniform():
    q0, q1 = np.array(qz(math.radians(170))), -np.array(qz(math.radians(-170)))  # 20 deg apart, sign flipped
    mid = slerp(q0, q1, 0.5)
    np.testing.assert_allclose(quaternion_to_matrix(mid), rz(math.pi)[:3, :3], atol=1e-12)
    for ratio in (0.1, 0.3, 0.77):
        q = slerp(np.array(qz(0.0)), np.array(qz(2.0)), ratio)
        np.testing.assert_allclose(quaternion_to_matrix(q), rz(2.0 * ratio)[:3, :3], atol=1e-12)


def test_quaternion_matrix_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[3] >= 0 else -q
        np.testing.assert_allclose(matrix_to_quaternion(quaternion_to_matrix(q)), q, atol=1e-12)
    for axis_angle in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):  # 180-degree turns: trace = -1
        q = np.array([*axis_angle, 0.0])
        np.testing.assert_allclose(np.abs(matrix_to_quaternion(quaternion_to_matrix(q))), np.abs(q), atol=1e-12)


def test_time_zero_is_latest_common_time(robot):
    robot.add_transform("map", "marker", 2 * SEC, (1.0, 0.0, 0.0), qz(0.0))
    robot.add_transform("map", "marker", int(2.5 * SEC), (2.0, 0.0, 0.0), qz(0.0))
    # base's edge ends at 3 s, marker's at 2.5 s: the common latest is 2.5 s.
    assert robot.latest_common_time("marker", "base") == int(2.5 * SEC)
    stamped = robot.lookup_transform("marker", "base", 0)
    assert stamped.stamp_ns == int(2.5 * SEC)
    base_in_map = rz(0, (10, 0, 0)) @ rz(3 * math.pi / 8, (1.5, 0, 0))
    np.testing.assert_allclose(stamped.matrix, np.linalg.inv(rz(0, (2, 0, 0))) @ base_in_map, atol=1e-12)
    # An all-static chain resolves to time 0 and holds at every time.
    assert robot.latest_common_time("camera", "lidar") == 0
    np.testing.assert_allclose(robot.lookup("camera", "lidar", 0), robot.lookup("camera", "lidar", 10**15))


def test_errors(robot):
    with pytest.raises(ExtrapolationError) as info:
        robot.lookup("map", "camera", 4 * SEC)
    error = info.value
    assert error.requested_ns == 4 * SEC and error.available_ns == (1 * SEC, 3 * SEC)
    assert error.edge == ("odom", "base")
    assert "4.000000000 s" in str(error) and "from 1.000000000 s to 3.000000000 s" in str(error)
    with pytest.raises(ExtrapolationError):
        robot.lookup("map", "camera", SEC // 2)
    with pytest.raises(UnknownFrameError, match="source frame 'nowhere' does not exist"):
        robot.lookup("map", "nowhere", 2 * SEC)
    robot.add_transform("world", "island", 0, (0, 0, 0), qz(0), static=True)
    with pytest.raises(ConnectivityError, match="different trees"):
        robot.lookup("map", "island", 0)
    assert not robot.can_transform("map", "island") and robot.can_transform("map", "camera", 2 * SEC)
    for bad, match in (
        (dict(quaternion=(0, 0, 0, 0)), "not normalised"),
        (dict(quaternion=(0, 0, math.nan, 1)), "non-finite quaternion"),
        (dict(translation=(0, math.inf, 0)), "translation must be 3 finite"),
        (dict(child="map"), "same frame"),
        (dict(parent=""), "non-empty"),
    ):
        args = dict(parent="map", child="x", stamp_ns=SEC, translation=(0, 0, 0), quaternion=(0, 0, 0, 1))
        args.update(bad)
        with pytest.raises(ValueError, match=match):
            robot.add_transform(**args)


def test_loop_is_a_connectivity_error():
    buffer = TransformBuffer()
    buffer.add_transform("a", "b", 0, (0, 0, 0), qz(0), static=True)
    buffer.add_transform("b", "c", 0, (0, 0, 0), qz(0), static=True)
    buffer.add_transform("c", "a", 0, (0, 0, 0), qz(0), static=True)
    with pytest.raises(ConnectivityError, match="loop"):
        buffer.lookup("a", "c")


def test_history_is_bounded():
    buffer = TransformBuffer(cache_time_s=1.0, max_history=5)
    for i in range(20):  # 10 Hz for 2 s: the count bound (5) bites before the time bound (1 s)
        buffer.add_transform("odom", "base", i * SEC // 10, (i, 0, 0), qz(0))
    with pytest.raises(ExtrapolationError) as info:
        buffer.lookup("odom", "base", SEC)
    assert info.value.available_ns == (15 * SEC // 10, 19 * SEC // 10)
    buffer = TransformBuffer(cache_time_s=1.0, max_history=1000)
    for i in range(20):
        buffer.add_transform("odom", "base", i * SEC // 10, (i, 0, 0), qz(0))
    assert buffer.lookup("odom", "base", 0)[0, 3] == 19  # time 0 resolves to the newest
    with pytest.raises(ExtrapolationError) as info:
        buffer.lookup("odom", "base", SEC // 2)
    assert info.value.available_ns == (9 * SEC // 10, 19 * SEC // 10)
    # Out-of-order arrival is sorted in; a repeated stamp replaces.
    buffer.add_transform("odom", "base", 15 * SEC // 10 + 1, (100, 0, 0), qz(0))
    buffer.add_transform("odom", "base", 15 * SEC // 10, (-1, 0, 0), qz(0))
    assert buffer.lookup("odom", "base", 15 * SEC // 10)[0, 3] == -1


def test_add_tf_message_skips_bad_transforms():
    from types import SimpleNamespace as NS

    def stamped(parent, child, w):
        return NS(header=NS(frame_id=parent, stamp=NS(sec=1, nanosec=5)), child_frame_id=child,
                  transform=NS(translation=NS(x=1.0, y=2.0, z=3.0), rotation=NS(x=0.0, y=0.0, z=0.0, w=w)))

    buffer = TransformBuffer()
    problems = add_tf_message(buffer, NS(transforms=[stamped("a", "b", 1.0), stamped("a", "c", 2.0)]), False)
    assert len(problems) == 1 and "'a' -> 'c'" in problems[0]
    np.testing.assert_allclose(buffer.lookup("a", "b", SEC + 5)[:3, 3], [1, 2, 3])



# --------------------------------------------------------------------------- clock jumps
def _jumpy(jump_back_s) -> TransformBuffer:
    """Static map -> odom and base -> camera; dynamic odom -> base at 10 and 12 s, map -> marker at 11 and 12 s."""
    buffer = TransformBuffer(cache_time_s=None, jump_back_s=jump_back_s)
    buffer.add_transform("map", "odom", 0, (10.0, 0.0, 0.0), qz(0.0), static=True)
    buffer.add_transform("base", "camera", 0, (0.5, 0.0, 1.0), qz(math.pi), static=True)
    buffer.add_transform("odom", "base", 10 * SEC, (0.0, 0.0, 0.0), qz(0.0))
    buffer.add_transform("odom", "base", 12 * SEC, (2.0, 0.0, 0.0), qz(0.0))
    buffer.add_transform("map", "marker", 11 * SEC, (1.0, 0.0, 0.0), qz(0.0))
    buffer.add_transform("map", "marker", 12 * SEC, (1.0, 0.0, 0.0), qz(0.0))
    return buffer


def test_jump_back_clears_every_dynamic_edge():
    from viewseg_ros.tf_buffer import TransformError

    buffer = _jumpy(1.0)
    assert buffer.time_jumps == 0 and buffer.last_jump == ""
    np.testing.assert_allclose(buffer.lookup("odom", "base", 11 * SEC)[:3, 3], [1, 0, 0])
    # 2 s before the edge's newest (12 s): a jump. The new value starts a fresh timeline.
    buffer.add_transform("odom", "base", 10 * SEC, (5.0, 0.0, 0.0), qz(0.0))
    assert buffer.time_jumps == 1
    assert buffer.last_jump == ("transform 'odom' -> 'base' stamped 10.000000000 s, 2.000 s before its newest; "
                                "dynamic transforms cleared")
    np.testing.assert_allclose(buffer.lookup("odom", "base", 10 * SEC)[:3, 3], [5, 0, 0])  # not the old 0
    with pytest.raises(ExtrapolationError) as info:  # the old 12 s sample is gone
        buffer.lookup("odom", "base", 11 * SEC)
    assert info.value.available_ns == (10 * SEC, 10 * SEC)
    # The other dynamic edge is gone too, at any stamp; both static edges stay.
    assert "marker" not in buffer.frames()
    with pytest.raises(TransformError):
        buffer.lookup("map", "marker", 11 * SEC)
    np.testing.assert_allclose(buffer.lookup("map", "odom", 0), rz(0.0, (10, 0, 0)), atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("base", "camera", 0), rz(math.pi, (0.5, 0, 1)), atol=1e-12)
    # The whole chain works at the new stamp: map <- odom (static) <- base (new) <- camera (static).
    expected = rz(0.0, (10, 0, 0)) @ rz(0.0, (5, 0, 0)) @ rz(math.pi, (0.5, 0, 1))
    np.testing.assert_allclose(buffer.lookup("map", "camera", 10 * SEC), expected, atol=1e-12)
    # Later data on the new timeline is ordinary data.
    buffer.add_transform("odom", "base", 11 * SEC, (6.0, 0.0, 0.0), qz(0.0))
    assert buffer.time_jumps == 1
    np.testing.assert_allclose(buffer.lookup("odom", "base", int(10.5 * SEC))[:3, 3], [5.5, 0, 0])


def test_small_steps_back_are_late_data_not_jumps():
    buffer = _jumpy(1.0)
    buffer.add_transform("odom", "base", int(11.5 * SEC), (7.0, 0.0, 0.0), qz(0.0))  # 0.5 s before the newest
    buffer.add_transform("odom", "base", 11 * SEC, (1.0, 0.0, 0.0), qz(0.0))  # exactly 1 s: still late data
    assert buffer.time_jumps == 0 and buffer.last_jump == ""
    # Inserted in order: 10 s (0), 11 s (1), 11.5 s (7), 12 s (2); the marker edge is untouched.
    np.testing.assert_allclose(buffer.lookup("odom", "base", int(11.25 * SEC))[:3, 3], [4, 0, 0])
    np.testing.assert_allclose(buffer.lookup("odom", "base", 10 * SEC)[:3, 3], [0, 0, 0])
    assert buffer.can_transform("map", "marker", int(11.5 * SEC))
    # One nanosecond more than jump_back_s is a jump.
    buffer.add_transform("odom", "base", 11 * SEC - 1, (1.0, 0.0, 0.0), qz(0.0))
    assert buffer.time_jumps == 1 and "1.000 s before its newest" in buffer.last_jump
    # Static edges never trigger a jump, whatever their stamps; a new edge has nothing to jump from.
    buffer = _jumpy(1.0)
    buffer.add_transform("base", "camera", 0, (0.5, 0.0, 1.0), qz(math.pi), static=True)
    buffer.add_transform("map", "other", 0, (0.0, 0.0, 0.0), qz(0.0))
    assert buffer.time_jumps == 0
    # A jump is judged per edge: 10.5 s is 1.5 s before marker's newest (12 s), a jump.
    buffer.add_transform("map", "marker", int(10.5 * SEC), (1.0, 0.0, 0.0), qz(0.0))
    assert buffer.time_jumps == 1 and "'map' -> 'marker'" in buffer.last_jump
    assert "other" not in buffer.frames() and "base" in buffer.frames()  # base: parent of static camera


def test_jump_back_none_keeps_everything():
    buffer = _jumpy(None)
    buffer.add_transform("odom", "base", 0, (9.0, 0.0, 0.0), qz(0.0))  # 12 s back: inserted as late data
    assert buffer.time_jumps == 0 and buffer.last_jump == ""
    np.testing.assert_allclose(buffer.lookup("odom", "base", 11 * SEC)[:3, 3], [1, 0, 0])
    np.testing.assert_allclose(buffer.lookup("odom", "base", 5 * SEC)[:3, 3], [4.5, 0, 0])
    assert buffer.can_transform("map", "marker", 11 * SEC)


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan])
def test_jump_back_s_must_be_positive(bad):
    with pytest.raises(ValueError, match="jump_back_s must be > 0 or None"):
        TransformBuffer(jump_back_s=bad)


def test_clear_dynamic_keeps_static_edges():
    buffer = _jumpy(1.0)
    buffer.clear_dynamic()
    assert buffer.frames() == {"map", "odom", "base", "camera"}
    assert buffer.time_jumps == 0  # an explicit clear is not a detected jump
    assert not buffer.can_transform("odom", "base", 11 * SEC)
    np.testing.assert_allclose(buffer.lookup("base", "camera", 0), rz(math.pi, (0.5, 0, 1)), atol=1e-12)
    # Old stamps are free to come back now: no jump against a cleared edge.
    buffer.add_transform("odom", "base", SEC, (3.0, 0.0, 0.0), qz(0.0))
    assert buffer.time_jumps == 0
    np.testing.assert_allclose(buffer.lookup("map", "base", SEC)[:3, 3], [13, 0, 0])


# --------------------------------------------------------------------------- real ROS
@pytest.mark.ros
def test_tf_listener_resolves_chain_from_real_publishers(rclpy_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import matrix_to_transform_stamped
    from viewseg_ros.tf_buffer import TfListener

    publisher_node = Node("tf_test_publisher", context=rclpy_context)
    static_pub = publisher_node.create_publisher(
        TFMessage, "/tf_static", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                            durability=DurabilityPolicy.TRANSIENT_LOCAL))
    dynamic_pub = publisher_node.create_publisher(TFMessage, "/tf", 100)
    camera_in_base = rz(math.pi, (0.5, 0, 1))
    # Published before the listener exists: only transient-local durability delivers it.
    static_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(camera_in_base, "base", "camera")]))

    listener_node = Node("tf_test_listener", context=rclpy_context)
    listener = TfListener(listener_node)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(publisher_node)
    executor.add_node(listener_node)

    stamps = [1 * SEC, 3 * SEC]
    poses = [rz(0, (0, 0, 0)), rz(math.pi / 2, (2, 0, 0))]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not listener.buffer.can_transform("map", "camera", 2 * SEC):
        dynamic_pub.publish(TFMessage(transforms=[
            matrix_to_transform_stamped(pose, "map", "base", stamp) for stamp, pose in zip(stamps, poses)]))
        executor.spin_once(timeout_sec=0.05)
    expected = rz(math.pi / 4, (1, 0, 0)) @ camera_in_base
    np.testing.assert_allclose(listener.buffer.lookup("map", "camera", 2 * SEC), expected, atol=1e-9)
    executor.shutdown()  # destroy() wants no executor spinning the node (its docstring)
    assert {sub.topic_name for sub in listener_node.subscriptions} == {"/tf", "/tf_static"}
    listener.destroy()
    assert list(listener_node.subscriptions) == []
    listener_node.destroy_node()
    publisher_node.destroy_node()



@pytest.mark.ros
def test_tf_listener_reports_a_clock_jump_once(rclpy_context):
    """A publisher's /tf goes from t = 100 s back to t = 10 s (a bag loop): the listener's
    buffer clears its dynamic edges and on_time_jump is called once with the description."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import matrix_to_transform_stamped
    from viewseg_ros.tf_buffer import TfListener

    publisher_node = Node("tf_jump_publisher", context=rclpy_context)
    dynamic_pub = publisher_node.create_publisher(TFMessage, "/tf", 100)
    listener_node = Node("tf_jump_listener", context=rclpy_context)
    jumps: list[str] = []
    listener = TfListener(listener_node, TransformBuffer(jump_back_s=1.0), on_time_jump=jumps.append)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(publisher_node)
    executor.add_node(listener_node)

    def publish(stamp_ns: int, x: float) -> None:
        dynamic_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(rz(0, (x, 0, 0)), "map", "base", stamp_ns)]))

    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not listener.buffer.can_transform("map", "base", 100 * SEC):
            publish(100 * SEC, 1.0)
            executor.spin_once(timeout_sec=0.05)
        assert listener.buffer.can_transform("map", "base", 100 * SEC) and jumps == []
        # One writer delivers in order: every queued t = 100 s message arrives before t = 10 s.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not jumps:
            publish(10 * SEC, 2.0)
            executor.spin_once(timeout_sec=0.05)
        # More of the same new timeline (and a drain of anything still queued) is no new jump.
        for _ in range(10):
            publish(10 * SEC, 2.0)
            executor.spin_once(timeout_sec=0.05)
        assert jumps == ["transform 'map' -> 'base' stamped 10.000000000 s, 90.000 s before its newest; "
                         "dynamic transforms cleared"]
        assert listener.buffer.time_jumps == 1 and listener.buffer.last_jump == jumps[0]
        assert not listener.buffer.can_transform("map", "base", 100 * SEC)
        np.testing.assert_allclose(listener.buffer.lookup("map", "base", 10 * SEC)[:3, 3], [2, 0, 0], atol=1e-12)
    finally:
        executor.shutdown()
        listener.destroy()
        listener_node.destroy_node()
        publisher_node.destroy_node()


def test_core_imports_no_rclpy():
    """Bag import runs without ROS: the core, the keyframes and bag import must not pull in rclpy."""
    import subprocess

    code = ("import sys, viewseg_ros.tf_buffer, viewseg_ros.keyframes, viewseg_ros.bag_import; "
            "sys.exit('rclpy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_batched_rotations_and_inverses_equal_one_at_a_time():
    from viewseg_ros.tf_buffer import invert_transform, make_transform

    rng = np.random.default_rng(3)
    q = rng.normal(size=(6, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rotations = quaternion_to_matrix(q)
    assert rotations.shape == (6, 3, 3)
    for batch, one in zip(rotations, q):
        np.testing.assert_array_equal(batch, quaternion_to_matrix(one))
    transforms = np.stack([make_transform(rng.normal(size=3), one) for one in q])
    inverses = invert_transform(transforms)
    for transform, inverse in zip(transforms, inverses):
        np.testing.assert_allclose(inverse, invert_transform(transform), atol=1e-15)
        np.testing.assert_allclose(inverse @ transform, np.eye(4), atol=1e-12)
