"""The viewseg node with a camera whose CameraInfo has lens distortion (real rclpy nodes on
loopback): colour and registered depth are undistorted onto the pinhole of CameraInfo.p before
they become keyframes, /diagnostics says so, and a distortion model that cannot be inverted is
dropped, counted and named."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_core.rectify import make_undistorter  # noqa: E402
from viewseg_ros.camera_stream import view_pose  # noqa: E402
from ros_graph import Graph, PosedCamera, params, resend, tiny_checkpoint, wait_for  # noqa: E402

W, H = 64, 48
K = np.array([[50.0, 0.0, 31.5], [0.0, 50.0, 23.5], [0.0, 0.0, 1.0]])
NEW_K = np.array([[42.0, 0.0, 31.5], [0.0, 42.0, 23.5], [0.0, 0.0, 1.0]])
D = [-0.25, 0.07, 0.001, -0.002, 0.0]
FRAME = "rectify_test_optical"
DISTORTED = {"distortion_model": "plumb_bob", "d": D,
             "p": np.concatenate([NEW_K, np.zeros((3, 1))], axis=1).reshape(-1).tolist()}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from diagnostic_msgs.msg import DiagnosticArray

    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("rectify") / "tiny.pt")
    g = Graph()
    try:
        g.node = g.add(ViewSegNode(context=g.context, namespace="lens", parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "depth_topic": "depth", "keyframes.width": W, "keyframes.height": H, "diagnostics_period_s": 0.2})))
        g.camera = PosedCamera(g, K, FRAME, depth_topic="depth", namespace="lens")
        g.diagnostics = []
        g.client.create_subscription(DiagnosticArray, "/diagnostics", g.diagnostics.append, 10)
        g.index, g.stamp_ns = 0, 700 * 10**9
        yield g
    finally:
        g.close()


def test_a_distorted_camera_is_undistorted_onto_the_pinhole_of_p(rig):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = np.where(np.arange(W)[None, :] < W // 2, 1.5, 3.0).astype(np.float32).repeat(H, axis=0)
    sent = {}

    def send(_attempt: int) -> None:
        rig.index += 1
        rig.stamp_ns += 10**9
        sent["stamp"] = rig.stamp_ns
        rig.camera.publish(view_pose(rig.index, 1.0, 0.0), rig.stamp_ns, rgb=rgb, depth=depth,
                           info_fields=DISTORTED)

    def kept():
        return any(k.stamp_ns == sent.get("stamp") and k.view.depth is not None for k in rig.node.keyframes.snapshot())

    assert resend(send, kept, "a distorted view to become a keyframe with its depth")
    keyframe = next(k for k in rig.node.keyframes.snapshot() if k.stamp_ns == sent["stamp"])
    expected = make_undistorter(K, D, "plumb_bob", W, H, NEW_K)
    np.testing.assert_array_equal(keyframe.view.K, NEW_K)
    np.testing.assert_array_equal(keyframe.view.rgb, expected.colour(rgb))
    np.testing.assert_array_equal(keyframe.view.depth, expected.depth(depth))
    assert not np.array_equal(keyframe.view.rgb, rgb)      # the undistortion moved pixels
    # Nearest resampling: only depths the camera measured, none invented between the two walls.
    assert set(np.unique(keyframe.view.depth[np.isfinite(keyframe.view.depth)]).tolist()) == {1.5, 3.0}
    wait_for(lambda: any(kv.key == "rectification" and kv.value == "undistorting plumb_bob"
                         for msg in list(rig.diagnostics) for status in msg.status for kv in status.values),
             5.0, "diagnostics to say the images are undistorted")


def test_a_distortion_model_it_cannot_invert_is_dropped_and_named(rig):
    node = rig.node
    drops = node.drops["camera_info"]
    rig.stamp_ns += 10**9
    rig.camera.publish(view_pose(50, 1.0, 0.0), rig.stamp_ns, info_fields={"distortion_model": "fov", "d": [0.4]})
    wait_for(lambda: node.drops["camera_info"] > drops, 5.0, "the CameraInfo with an unknown model dropped")
    reason = node.last_drop["camera_info"]
    assert "'fov'" in reason and "rectified" in reason and "\n" not in reason


def test_an_image_rect_topic_is_read_with_p_and_not_undistorted_again(rig):
    """image_proc publishes image_rect with the raw camera's CameraInfo (d non-zero): with
    rectification auto, a node on such a topic reads its frames with p as they are."""
    from viewseg_ros.node import ViewSegNode

    checkpoint = rig.node.params["checkpoint"]
    node = rig.add(ViewSegNode(context=rig.context, namespace="rect", parameter_overrides=params({
        "checkpoint": checkpoint, "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
        "image_topic": "/lens/image_rect_color", "camera_info_topic": "/lens/camera_info",
        "keyframes.width": W, "keyframes.height": H})))
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from viewseg_ros.conversions import numpy_to_image

    rect_pub = rig.client.create_publisher(Image, "/lens/image_rect_color", QoSProfile(
        depth=20, reliability=ReliabilityPolicy.RELIABLE))
    wait_for(lambda: rect_pub.get_subscription_count() > 0, 10.0, "the image_rect subscription")
    rgb = np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)
    sent = {}

    def send(_attempt: int) -> None:
        rig.index += 1
        rig.stamp_ns += 10**9
        sent["stamp"] = rig.stamp_ns
        rig.camera.publish(view_pose(rig.index, 1.0, 0.0), rig.stamp_ns, info_fields=DISTORTED)  # TF + CameraInfo
        rect_pub.publish(numpy_to_image(rgb, "rgb8", frame_id=FRAME, stamp_ns=rig.stamp_ns))

    assert resend(send, lambda: any(k.stamp_ns == sent.get("stamp") for k in node.keyframes.snapshot()),
                  "an image_rect frame to become a keyframe")
    keyframe = next(k for k in node.keyframes.snapshot() if k.stamp_ns == sent["stamp"])
    np.testing.assert_array_equal(keyframe.view.K, NEW_K)
    np.testing.assert_array_equal(keyframe.view.rgb, rgb)        # not resampled
    assert node.rectification == "rectified images (pinhole of p)"

    # The same topic from a stereo pair's left camera: its CameraInfo's r turns the rectified
    # image 4 degrees about y; the keyframe's pose is the frame's (TF) turned by r.
    from viewseg_core.rectify import rotated_frame

    c, s_ = np.cos(np.radians(4.0)), np.sin(np.radians(4.0))
    R = np.array([[c, 0.0, s_], [0.0, 1.0, 0.0], [-s_, 0.0, c]])
    stereo = {**DISTORTED, "r": R.reshape(-1).tolist()}

    def send_stereo(_attempt: int) -> None:
        rig.index += 1
        rig.stamp_ns += 10**9
        sent["stamp"], sent["pose"] = rig.stamp_ns, view_pose(rig.index, 1.0, 0.0)
        rig.camera.publish(sent["pose"], rig.stamp_ns, info_fields=stereo)
        rect_pub.publish(numpy_to_image(rgb, "rgb8", frame_id=FRAME, stamp_ns=rig.stamp_ns))

    def send_calibration(_attempt: int) -> None:
        rig.stamp_ns += 10**9
        rig.camera.publish(view_pose(rig.index, 1.0, 0.0), rig.stamp_ns, info_fields=stereo)

    # The calibration first, so that the frame below is read with it (CameraInfo and images
    # are taken in separate callback groups).
    assert resend(send_calibration, lambda: node.cameras[0].calibrated is not None
                  and node.cameras[0].calibrated[0].rotation is not None, "the stereo CameraInfo")
    assert resend(send_stereo, lambda: any(k.stamp_ns == sent.get("stamp") for k in node.keyframes.snapshot()),
                  "a stereo image_rect frame to become a keyframe")
    keyframe = next(k for k in node.keyframes.snapshot() if k.stamp_ns == sent["stamp"])
    np.testing.assert_allclose(keyframe.c2w, sent["pose"] @ np.linalg.inv(rotated_frame(R)), atol=1e-9)
    assert not np.allclose(keyframe.c2w, sent["pose"], atol=1e-3)
    assert node.rectification == "rectified images (pinhole of p, turned 4.00 deg by r)"
