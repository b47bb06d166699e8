"""image_stamp_offset_s on a real rclpy node (loopback): a camera that stamps its frames on
arrival stamps them late, and while the robot moves the pose at the stamp is not the pose at
exposure. With the offset, each frame's pose is looked up at stamp + offset; stamps stay the
header's."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_ros.camera_stream import view_pose  # noqa: E402
from ros_graph import Graph, PosedCamera, params, resend, tiny_checkpoint  # noqa: E402

W, H = 64, 48
K = np.array([[50.0, 0.0, 31.5], [0.0, 50.0, 23.5], [0.0, 0.0, 1.0]])
FRAME = "late_optical"
LATENCY_S = 0.1


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("offset") / "tiny.pt")
    g = Graph()
    try:
        g.node = g.add(ViewSegNode(context=g.context, namespace="late", parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "warmup": False, "image_stamp_offset_s": -LATENCY_S,
            "keyframes.width": W, "keyframes.height": H})))
        g.camera = PosedCamera(g, K, FRAME, namespace="late")
        g.index, g.stamp_ns = 0, 1500 * 10**9
        yield g
    finally:
        g.close()


def test_the_pose_is_taken_at_exposure_not_at_the_late_stamp(rig):
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import matrix_to_transform_stamped

    sent = {}

    def send(_attempt: int) -> None:
        rig.index += 2
        rig.stamp_ns += 10**9
        exposed, stamped = view_pose(rig.index, 1.0, 0.0), view_pose(rig.index + 1, 1.0, 0.0)  # 1 m apart
        sent.update(stamp=rig.stamp_ns, exposed=exposed, stamped=stamped)
        # The robot was at `exposed` when the frame was taken, 0.1 s before the driver stamped it.
        rig.camera.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(
            exposed, "map", FRAME, rig.stamp_ns - int(LATENCY_S * 1e9))]))
        rig.camera.publish(stamped, rig.stamp_ns)   # TF at the stamp, CameraInfo and the image

    assert resend(send, lambda: any(k.stamp_ns == sent.get("stamp") for k in rig.node.keyframes.snapshot()),
                  "a late-stamped frame to become a keyframe")
    keyframe = next(k for k in rig.node.keyframes.snapshot() if k.stamp_ns == sent["stamp"])
    np.testing.assert_allclose(keyframe.c2w, sent["exposed"], atol=1e-9)
    assert not np.allclose(keyframe.c2w, sent["stamped"], atol=0.5)
    assert keyframe.stamp_ns == sent["stamp"]   # the header's stamp, as responses report it


def test_an_offset_that_is_not_a_number_stops_the_node(tmp_path):
    from viewseg_ros.node import ViewSegNode

    g = Graph()
    try:
        with pytest.raises(ValueError, match="image_stamp_offset_s must be a finite number"):
            ViewSegNode(context=g.context, parameter_overrides=params({
                "checkpoint": str(tiny_checkpoint(tmp_path / "tiny.pt")), "device": "cpu", "warmup": False,
                "image_stamp_offset_s": float("nan")}))
    finally:
        g.close()
