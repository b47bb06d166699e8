"""Per-camera settings (``camera.<name>.<setting>``, viewseg_ros/camera_input.py) on a real
rclpy node with three cameras: a depth camera in front, a plain camera behind (no depth
topic: its keyframes are not "missing" depth), and a side camera read through
``compressed``; bad per-camera values stop the node at start, naming the parameter."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from ros_graph import Graph, PosedCamera, WallWalk, params, resend, tiny_rgbd_checkpoint, wait_for  # noqa: E402

W, H = WallWalk.W, WallWalk.H


def node_params(checkpoint, **extra) -> list:
    return params({"checkpoint": str(checkpoint), "device": "cpu", "cameras": "front, rear, side",
                   "depth_topic": "depth", "keyframes.width": W, "keyframes.height": H,
                   "camera.rear.depth_topic": "", "camera.rear.image_stamp_offset_s": -0.05,
                   "camera.side.image_transport": "compressed", "camera.side.rectification": "none", **extra})


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from viewseg_ros.node import ViewSegNode

    g = Graph()
    try:
        g.checkpoint = tiny_rgbd_checkpoint(tmp_path_factory.mktemp("overrides") / "rgbd.pt")
        g.node = g.add(ViewSegNode(context=g.context, namespace="mixed", parameter_overrides=node_params(g.checkpoint)))
        g.front = PosedCamera(g, WallWalk.K(), "front_optical", depth_topic="depth", namespace="mixed/front")
        g.rear = PosedCamera(g, WallWalk.K(), "rear_optical", namespace="mixed/rear")
        yield g
    finally:
        g.close()


def test_each_camera_takes_its_own_settings(rig):
    front, rear, side = rig.node.cameras
    assert (front.depth_topic, rear.depth_topic, side.depth_topic) == ("/mixed/front/depth", "", "/mixed/side/depth")
    assert (front.stamp_offset_s, rear.stamp_offset_s, side.stamp_offset_s) == (0.0, -0.05, 0.0)
    assert (front.rectification_mode, side.rectification_mode) == ("auto", "none")
    assert front.image_subscription_topic == "/mixed/front/image"
    assert side.image_subscription_topic == "/mixed/side/image/compressed"
    wait_for(lambda: rig.client.get_subscriptions_info_by_topic("/mixed/side/image/compressed"), 10.0,
             "the side camera's compressed subscription")
    kinds = {info.topic_type for info in rig.client.get_subscriptions_info_by_topic("/mixed/side/image/compressed")}
    assert kinds == {"sensor_msgs/msg/CompressedImage"}
    assert not rig.client.get_subscriptions_info_by_topic("/mixed/rear/depth")
    assert rig.node.depth_topics == ["/mixed/front/depth", "/mixed/side/depth"]


def test_a_camera_without_depth_is_not_missing_depth(rig):
    stamp = 700 * 10**9
    assert resend(lambda attempt: rig.front.publish(WallWalk.pose(1), stamp + attempt * 10**9, depth=WallWalk.depth(1)),
                  lambda: any(k.stream == "front" for k in rig.node.keyframes.snapshot()), "a front keyframe")
    # The rear camera was at pose 4 when exposed and at pose 5 (1 m on) at its stamp, 0.05 s
    # later: with its own offset (-0.05 s) the keyframe takes pose 4; the front's is 0.
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import matrix_to_transform_stamped

    rear_stamp = 800 * 10**9

    def send_rear(attempt: int) -> None:
        at = rear_stamp + attempt * 10**9
        rig.rear.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(WallWalk.pose(4), "map", "rear_optical",
                                                                              at - 50_000_000)]))
        rig.rear.publish(WallWalk.pose(5), at)     # TF at the stamp, CameraInfo and the image

    assert resend(send_rear, lambda: any(k.stream == "rear" for k in rig.node.keyframes.snapshot()), "a rear keyframe")
    kept = {k.stream: k for k in rig.node.keyframes.snapshot()}
    assert kept["front"].view.depth is not None and kept["rear"].view.depth is None
    np.testing.assert_allclose(kept["rear"].c2w, WallWalk.pose(4), atol=1e-9)
    assert rig.node.keyframes_without_depth == 0


@pytest.mark.parametrize("extra, message", [
    ({"camera.side.image_transport": "theora"}, "camera.side.image_transport must be one of raw | compressed"),
    ({"camera.rear.image_stamp_offset_s": float("inf")}, "camera.rear.image_stamp_offset_s must be a finite number"),
    ({"camera.rear.depth_topic": "/abs/depth"}, "parameter camera.rear.depth_topic is '/abs/depth'"),
    ({"cameras": "/left/cam, /right/cam"}, "several namespaces end in cam"),
])
def test_bad_per_camera_settings_stop_the_node(rig, extra, message):
    from viewseg_ros.node import ViewSegNode

    with pytest.raises(ValueError, match=message.replace("|", r"\|")):
        ViewSegNode(context=rig.context, namespace="bad", parameter_overrides=node_params(rig.checkpoint, **extra))
