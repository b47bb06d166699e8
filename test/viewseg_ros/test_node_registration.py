"""The viewseg node with an unaligned depth camera (its own frame, size and CameraInfo; real
rclpy nodes on loopback): with ``depth_camera_info_topic`` each keyframe's depth is registered
into the colour camera through TF, as viewseg_core.depth_registration computes it; depth whose
frame TF cannot place is dropped and counted, and the keyframe is kept without it."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_core.cameras import K_from_hfov  # noqa: E402
from viewseg_core.depth_registration import register_depth  # noqa: E402
from viewseg_ros.camera_stream import view_pose  # noqa: E402
from ros_graph import Graph, PosedCamera, params, resend, tiny_checkpoint, wait_for  # noqa: E402

W, H = 64, 48
K = K_from_hfov(70.0, W, H)
DEPTH_K = np.array([[30.0, 0.0, 19.5], [0.0, 30.0, 14.5], [0.0, 0.0, 1.0]])     # 40x30
FRAME, DEPTH_FRAME = "reg_colour_optical", "reg_depth_optical"
COLOUR_FROM_DEPTH = np.eye(4)
COLOUR_FROM_DEPTH[0, 3] = 0.05                                                   # 5 cm baseline


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import make_camera_info, matrix_to_transform_stamped
    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("registration") / "tiny.pt")
    g = Graph()
    try:
        g.node = g.add(ViewSegNode(context=g.context, namespace="reg", parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "depth_topic": "depth", "depth_camera_info_topic": "depth/camera_info",
            "keyframes.width": W, "keyframes.height": H})))
        g.camera = PosedCamera(g, K, FRAME, depth_topic="depth", namespace="reg")
        static = g.client.create_publisher(TFMessage, "/tf_static", QoSProfile(
            depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
        static.publish(TFMessage(transforms=[matrix_to_transform_stamped(COLOUR_FROM_DEPTH, FRAME, DEPTH_FRAME, 0)]))
        g.depth_info = g.client.create_publisher(CameraInfo, "/reg/depth/camera_info", qos_profile_sensor_data)
        wait_for(lambda: g.depth_info.get_subscription_count() > 0, 10.0, "the node's depth CameraInfo subscription")
        g.depth_info_msg = make_camera_info(DEPTH_K, 40, 30, frame_id=DEPTH_FRAME)
        g.index, g.stamp_ns = 0, 1300 * 10**9
        yield g
    finally:
        g.close()


def send_view(g: Graph, depth: np.ndarray, depth_frame: str):
    """Publish a novel view with unaligned depth until it is a keyframe; that keyframe."""
    sent = {}

    def send(_attempt: int) -> None:
        g.index += 1
        g.stamp_ns += 10**9
        sent["stamp"] = g.stamp_ns
        g.depth_info.publish(g.depth_info_msg)
        g.camera.publish(view_pose(g.index, 1.0, 0.0), g.stamp_ns, depth=depth, depth_frame=depth_frame)

    assert resend(send, lambda: any(k.stamp_ns == sent.get("stamp") for k in g.node.keyframes.snapshot()),
                  "a view to become a keyframe")
    return next(k for k in g.node.keyframes.snapshot() if k.stamp_ns == sent["stamp"])


def test_unaligned_depth_is_registered_into_the_colour_keyframe(rig):
    depth = np.full((30, 40), 3.0, np.float32)
    depth[:, 18:22] = 1.0
    keyframe = None
    for _ in range(3):  # the depth CameraInfo is best effort: until one has landed, depth is dropped
        keyframe = send_view(rig, depth, DEPTH_FRAME)
        if keyframe.view.depth is not None:
            break
    assert keyframe.view.depth is not None, rig.node.last_drop.get("depth")
    expected = register_depth(depth, DEPTH_K, keyframe.view.K, (H, W), COLOUR_FROM_DEPTH)
    np.testing.assert_array_equal(keyframe.view.depth, expected)
    assert np.isfinite(expected).mean() > 0.5 and set(np.unique(expected[np.isfinite(expected)])) == {1.0, 3.0}


def test_depth_in_a_frame_tf_does_not_know_is_dropped_and_the_keyframe_kept(rig):
    node = rig.node
    drops = node.drops["depth"]
    keyframe = send_view(rig, np.full((30, 40), 2.0, np.float32), "nowhere_optical")
    assert keyframe.view.depth is None
    wait_for(lambda: node.drops["depth"] > drops, 5.0, "the unplaceable depth counted")
    assert "no TF from 'nowhere_optical'" in node.last_drop["depth"]
