"""The viewseg node on image_transport's compressed topics (real rclpy nodes on loopback): with
``image_transport: compressed`` and ``depth_transport: compressedDepth`` it subscribes to
``<image_topic>/compressed`` and ``<depth_topic>/compressedDepth`` and keeps what it decodes;
a frame that does not decode is dropped, counted and named, and intake goes on."""
from __future__ import annotations

import struct

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_core.cameras import K_from_hfov  # noqa: E402
from viewseg_ros.camera_stream import view_pose  # noqa: E402
from ros_graph import Graph, params, resend, tiny_checkpoint, wait_for  # noqa: E402

W, H = 64, 48
K = K_from_hfov(70.0, W, H)
FRAME = "transport_test_optical"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("transport") / "tiny.pt")
    g = Graph()
    try:
        g.node = g.add(ViewSegNode(context=g.context, namespace="cam", parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "image_topic": "color/image_raw", "image_transport": "compressed", "camera_info_topic": "color/camera_info",
            "depth_topic": "depth/image_raw", "depth_transport": "compressedDepth",
            "keyframes.width": W, "keyframes.height": H})))
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        g.tf = g.client.create_publisher(TFMessage, "/tf", 100)
        g.info = g.client.create_publisher(CameraInfo, "/cam/color/camera_info", qos_profile_sensor_data)
        g.image = g.client.create_publisher(CompressedImage, "/cam/color/image_raw/compressed", reliable)
        g.depth = g.client.create_publisher(CompressedImage, "/cam/depth/image_raw/compressedDepth", reliable)
        wait_for(lambda: all(pub.get_subscription_count() for pub in (g.tf, g.info, g.image, g.depth)), 10.0,
                 "the node to subscribe to the compressed topics")
        g.index, g.stamp_ns = 0, 900 * 10**9
        yield g
    finally:
        g.close()


def publish(g: Graph, rgb_payload: bytes, depth_payload: bytes) -> int:
    from sensor_msgs.msg import CompressedImage
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import make_camera_info, matrix_to_transform_stamped, ns_to_time

    g.index += 1
    g.stamp_ns += 10**9
    g.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(view_pose(g.index, 1.0, 0.0), "map", FRAME,
                                                                   g.stamp_ns)]))
    g.info.publish(make_camera_info(K, W, H, frame_id=FRAME, stamp_ns=g.stamp_ns))
    for pub, fmt, payload in ((g.image, "rgb8; png compressed bgr8", rgb_payload),
                              (g.depth, "16UC1; compressedDepth png", depth_payload)):
        msg = CompressedImage(format=fmt, data=payload)
        msg.header.frame_id, msg.header.stamp = FRAME, ns_to_time(g.stamp_ns)
        pub.publish(msg)
    return g.stamp_ns


def test_compressed_colour_and_depth_become_a_keyframe(rig):
    import cv2

    rgb = np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8)
    mm = np.full((H, W), 2500, np.uint16)
    mm[:, W // 2:] = 4000
    mm[:3, :3] = 0                                  # no return
    rgb_png = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()
    depth_png = struct.pack("<iff", 0, 0.0, 0.0) + cv2.imencode(".png", mm)[1].tobytes()
    sent = {}

    def send(_attempt: int) -> None:
        sent["stamp"] = publish(rig, rgb_png, depth_png)

    def kept():
        return any(k.stamp_ns == sent.get("stamp") and k.view.depth is not None for k in rig.node.keyframes.snapshot())

    assert resend(send, kept, "a compressed frame to become a keyframe with its depth")
    keyframe = next(k for k in rig.node.keyframes.snapshot() if k.stamp_ns == sent["stamp"])
    np.testing.assert_array_equal(keyframe.view.rgb, rgb)
    expected = np.where(mm > 0, mm / 1000.0, np.nan).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(keyframe.view.depth), np.isnan(expected))
    np.testing.assert_allclose(keyframe.view.depth[mm > 0], expected[mm > 0], rtol=1e-6)


def test_a_frame_that_does_not_decode_is_dropped_and_named(rig):
    import cv2

    node = rig.node
    image_drops, depth_drops = node.drops["image"], node.drops["depth"]
    good_depth = struct.pack("<iff", 0, 0.0, 0.0) + cv2.imencode(".png", np.full((H, W), 1000, np.uint16))[1].tobytes()
    publish(rig, b"\x89PNG but cut short", good_depth[:20])
    wait_for(lambda: node.drops["image"] > image_drops and node.drops["depth"] > depth_drops, 5.0,
             "the undecodable colour and depth frames dropped")
    assert "could not be decoded" in node.last_drop["image"] and "\n" not in node.last_drop["image"]
    assert "/cam/depth/image_raw/compressedDepth" in node.last_drop["depth"]
