"""A simulator's clock (real rclpy nodes on loopback): with ``use_sim_time`` (Gazebo, Isaac
Sim; ``ros2 launch ... use_sim_time:=true``) the node's clock follows /clock. Keyframes are
admitted from images stamped in simulated time, and a query for "latest" (stamp 0) is
answered and stamped at the simulated time, not the wall clock's."""
from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from ros_graph import Graph, PosedCamera, WallWalk, params, render_request, resend, \
    tiny_rgbd_checkpoint  # noqa: E402

SIM_START_S = 1000.0


def test_the_node_follows_a_simulators_clock(tmp_path):
    from builtin_interfaces.msg import Time
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock

    from viewseg_ros.node import ViewSegNode

    g = Graph()
    stop = threading.Event()
    sim_ns = [int(SIM_START_S * 1e9)]
    try:
        clock = g.client.create_publisher(Clock, "/clock", 10)

        def tick():   # a simulator at real-time factor 1, 100 Hz clock
            while not stop.is_set():
                sim_ns[0] += 10_000_000
                clock.publish(Clock(clock=Time(sec=sim_ns[0] // 10**9, nanosec=sim_ns[0] % 10**9)))
                time.sleep(0.01)

        threading.Thread(target=tick, daemon=True).start()
        checkpoint = tiny_rgbd_checkpoint(tmp_path / "rgbd.pt")
        node = g.add(ViewSegNode(context=g.context, namespace="/sim", parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "depth_topic": "depth", "keyframes.width": WallWalk.W,
            "keyframes.height": WallWalk.H, "query.min_coverage": 0.0, "warmup": False})
            + [Parameter("use_sim_time", value=True)]))
        camera = PosedCamera(g, WallWalk.K(), "sim_optical", depth_topic="depth", namespace="/sim")
        for index in (1, 2, 3):
            stamp = sim_ns[0]
            assert resend(lambda attempt, index=index, stamp=stamp: camera.publish(
                WallWalk.pose(index), stamp + attempt, depth=WallWalk.depth(index)),
                lambda index=index: node.keyframes.admitted >= index, f"view {index}", timeout=3.0)
        pose = WallWalk.pose(2)
        pose[0, 3] -= 0.5
        before = sim_ns[0]
        response = g.call("/sim/viewseg/render_view", render_request(pose, width=WallWalk.W, height=WallWalk.H))
        assert response.success, response.message
        stamp = response.depth.header.stamp.sec * 10**9 + response.depth.header.stamp.nanosec
        # A pose in the fixed frame at stamp 0 needs no TF: the answer is stamped with the node's
        # clock when it rendered, which must be the simulated one (the wall clock is ~1.8e9 s).
        assert before <= stamp <= sim_ns[0]
        now = node.get_clock().now().nanoseconds
        assert abs(now - sim_ns[0]) < 5 * 10**9
    finally:
        stop.set()
        g.close()
