"""The ROS 2 layer the node stands on: transport across processes, our generated service
type, and /tf_static latching, each with real rclpy nodes on loopback."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (installed by scripts/setup.sh; a missing rclpy must fail, not skip)
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402


def spin_until(executor, predicate, timeout_sec: float) -> bool:
    deadline = time.monotonic() + timeout_sec
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


PUBLISHER_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node('foundation_image_publisher')
    pub = node.create_publisher(Image, 'foundation_image', 10)
    pixels = (np.arange(4 * 6 * 3) % 251).astype(np.uint8)
    msg = Image(height=4, width=6, encoding='rgb8', step=18, data=pixels.tobytes())
    msg.header.frame_id = 'camera_optical'
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the test process has seen it and killed us
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
""")


def test_image_crosses_processes(rclpy_context, ros_subprocess_env):
    from sensor_msgs.msg import Image

    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT], env=ros_subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        node = Node("foundation_image_subscriber", context=rclpy_context)
        received: list[Image] = []
        node.create_subscription(Image, "foundation_image", received.append, 10)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        assert spin_until(executor, lambda: bool(received), 30.0), (
            "no Image from the publisher process; its output:\n"
            + (proc.stdout.read1().decode() if proc.poll() is not None else "(still running)"))
        msg = received[0]
        assert (msg.height, msg.width, msg.encoding, msg.step) == (4, 6, "rgb8", 18)
        assert msg.header.frame_id == "camera_optical"
        expected = (np.arange(4 * 6 * 3) % 251).astype(np.uint8)
        np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8), expected)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_render_view_service_round_trip(rclpy_context):
    from builtin_interfaces.msg import Time
    from viewseg_interfaces.srv import RenderView

    server = Node("foundation_render_server", context=rclpy_context)
    client_node = Node("foundation_render_client", context=rclpy_context)
    seen_requests = []

    def handle(request, response):
        seen_requests.append(request)
        response.success = True
        response.message = ""
        response.depth.height = request.camera_info.height
        response.depth.width = request.camera_info.width
        response.depth.encoding = "32FC1"
        response.depth.step = 4 * request.camera_info.width
        response.depth.data = np.full((request.camera_info.height, request.camera_info.width),
                                      request.pose.pose.position.z, np.float32).tobytes()
        response.depth.header.frame_id = request.pose.header.frame_id
        response.keyframe_ids = [3, 7]
        response.keyframe_stamps = [Time(sec=1, nanosec=5), Time(sec=2, nanosec=0)]
        return response

    server.create_service(RenderView, "render_view", handle)
    client = client_node.create_client(RenderView, "render_view")
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(server)
    executor.add_node(client_node)
    assert spin_until(executor, client.service_is_ready, 10.0), "service never appeared"

    request = RenderView.Request()
    request.pose.header.frame_id = "map"
    request.pose.pose.position.z = 2.5
    request.pose.pose.orientation.w = 1.0
    request.camera_info.width, request.camera_info.height = 5, 3
    future = client.call_async(request)
    assert spin_until(executor, future.done, 10.0), "no response"
    response = future.result()
    assert response.success and len(seen_requests) == 1
    assert seen_requests[0].camera_info.width == 5
    assert (response.depth.height, response.depth.width, response.depth.encoding) == (3, 5, "32FC1")
    assert response.depth.header.frame_id == "map"
    depth = np.frombuffer(bytes(response.depth.data), np.float32).reshape(3, 5)
    np.testing.assert_array_equal(depth, 2.5)
    assert list(response.keyframe_ids) == [3, 7]
    assert [(t.sec, t.nanosec) for t in response.keyframe_stamps] == [(1, 5), (2, 0)]


def test_tf_static_reaches_late_subscriber(rclpy_context):
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    latched = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    publisher_node = Node("foundation_static_broadcaster", context=rclpy_context)
    pub = publisher_node.create_publisher(TFMessage, "/tf_static", latched)
    transform = TransformStamped()
    transform.header.frame_id = "base_link"
    transform.child_frame_id = "camera_optical"
    transform.transform.translation.x = 0.2
    transform.transform.rotation.x, transform.transform.rotation.w = 0.5, -0.5
    transform.transform.rotation.y, transform.transform.rotation.z = 0.5, -0.5
    pub.publish(TFMessage(transforms=[transform]))

    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(publisher_node)
    executor.spin_once(timeout_sec=0.2)

    # The subscriber is created only after the single publish: latching must deliver it.
    late_node = Node("foundation_late_listener", context=rclpy_context)
    received: list[TFMessage] = []
    late_node.create_subscription(TFMessage, "/tf_static", received.append, latched)
    executor.add_node(late_node)
    assert spin_until(executor, lambda: bool(received), 15.0), "late subscriber got no /tf_static"
    (got,) = received[0].transforms
    assert type(received[0]).__module__.startswith("tf2_msgs.msg")
    assert (got.header.frame_id, got.child_frame_id) == ("base_link", "camera_optical")
    assert got.transform.translation.x == pytest.approx(0.2)
    assert got.transform.rotation.w == pytest.approx(-0.5)


@pytest.mark.parametrize("type_name", ["tf2_msgs/msg/TFMessage", "tf2_msgs/msg/TF2Error"])
def test_vendored_tf2_msgs_hash_matches_upstream_kilted(type_name):
    """Our locally built tf2_msgs must carry upstream Kilted's type hash, or DDS would refuse
    to match it with a robot's real /tf publishers. rosbags ships upstream's definitions."""
    import json
    import os

    from rosbags.typesys import Stores, get_typestore

    prefix = os.environ.get("VIRTUAL_ENV") or sys.prefix
    package, _, name = type_name.split("/")
    with open(os.path.join(prefix, "share", package, "msg", f"{name}.json")) as f:
        built = {h["type_name"]: h["hash_string"] for h in json.load(f)["type_hashes"]}
    upstream = get_typestore(Stores.ROS2_KILTED).hash_rihs01(type_name)
    assert built[type_name] == upstream
