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


def test_a_depth_camera_with_lens_distortion_is_undistorted_before_registration(rig):
    """An Azure Kinect-like raw depth stream: CameraInfo with distortion and the pinhole of p.
    The node undistorts each admitted keyframe's depth onto p's pinhole (nearest), then registers."""
    import cv2

    from viewseg_core.rectify import make_undistorter

    d = [-0.28, 0.08, 0.0, 0.0, 0.0]
    new_K = cv2.getOptimalNewCameraMatrix(DEPTH_K, np.array(d), (40, 30), 0.0)[0]
    pinhole_msg = rig.depth_info_msg
    distorted = type(pinhole_msg)()
    distorted.header, distorted.width, distorted.height = pinhole_msg.header, 40, 30
    distorted.distortion_model, distorted.d, distorted.k = "plumb_bob", d, DEPTH_K.reshape(-1).tolist()
    distorted.r = np.eye(3).reshape(-1).tolist()
    distorted.p = np.concatenate([new_K, np.zeros((3, 1))], axis=1).reshape(-1).tolist()
    depth = np.full((30, 40), 3.0, np.float32)
    depth[:, 14:26] = 1.2                          # a post: its edges move when undistorted
    rig.depth_info_msg = distorted
    try:
        camera = rig.node.cameras[0]
        # The calibration first (best effort), so that the keyframe below is registered with it.
        assert resend(lambda _: rig.depth_info.publish(distorted),
                      lambda: camera.depth_calibrated is not None
                      and camera.depth_calibrated[0].undistorter is not None,
                      "the node to take the distorted depth CameraInfo")
        np.testing.assert_allclose(camera.depth_calibrated[0].K, new_K)
        keyframe = send_view(rig, depth, DEPTH_FRAME)
        assert keyframe.view.depth is not None, rig.node.last_drop.get("depth")
        undistorter = make_undistorter(DEPTH_K, d, "plumb_bob", 40, 30, new_K)
        expected = register_depth(undistorter.depth(depth), new_K, keyframe.view.K, (H, W), COLOUR_FROM_DEPTH)
        np.testing.assert_array_equal(keyframe.view.depth, expected)
        naive = register_depth(depth, DEPTH_K, keyframe.view.K, (H, W), COLOUR_FROM_DEPTH)
        assert not np.allclose(naive, expected, equal_nan=True)  # ignoring the lens would differ
    finally:
        rig.depth_info_msg = pinhole_msg
