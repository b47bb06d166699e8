"""Several cameras feeding one viewseg node (real rclpy nodes on loopback): each camera keeps
its own calibration and size, frames the two cameras stamp alike both become keyframes, a
query renders from keyframes of both, /diagnostics reports each camera, and bad ``cameras``
settings stop the node at start with a message naming the parameter."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_core.cameras import resize_intrinsics  # noqa: E402
from viewseg_ros.camera_stream import view_pose  # noqa: E402
from ros_graph import (Graph, PosedCamera, diagnostics_values, params, render_request, resend,  # noqa: E402
                       tiny_checkpoint, turned, wait_for)

W, H = 64, 48
FRONT_K = np.array([[50.0, 0.0, 31.5], [0.0, 50.0, 23.5], [0.0, 0.0, 1.0]])
SIDE_K = np.array([[70.0, 0.0, 39.5], [0.0, 70.0, 29.5], [0.0, 0.0, 1.0]])  # 80x60, another lens


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from diagnostic_msgs.msg import DiagnosticArray

    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("cameras") / "tiny.pt")
    g = Graph()
    try:
        g.checkpoint = str(checkpoint)
        g.node = g.add(ViewSegNode(context=g.context, namespace="multi", parameter_overrides=params({
            "checkpoint": g.checkpoint, "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "cameras": "front, side", "keyframes.width": W, "keyframes.height": H,
            "diagnostics_period_s": 0.2, "query.min_coverage": 0.0, "camera_rate.window_s": 1.0})))
        g.front = PosedCamera(g, FRONT_K, "front_optical", namespace="multi/front")
        g.side = PosedCamera(g, SIDE_K, "side_optical", namespace="multi/side")
        g.diagnostics = []
        g.client.create_subscription(DiagnosticArray, "/diagnostics", g.diagnostics.append, 10)
        g.stamp_ns = 900 * 10**9
        yield g
    finally:
        g.close()


def test_each_camera_is_subscribed_in_its_namespace(rig):
    cameras = rig.node.cameras
    assert [c.namespace for c in cameras] == ["front", "side"]
    assert [c.image_topic for c in cameras] == ["/multi/front/image", "/multi/side/image"]
    assert [c.camera_info_topic for c in cameras] == ["/multi/front/camera_info", "/multi/side/camera_info"]


def test_two_cameras_stamped_alike_both_become_keyframes_with_their_own_calibration(rig):
    node = rig.node
    rig.stamp_ns += 10**9
    stamp = rig.stamp_ns
    front_pose = view_pose(0, 1.0, 0.0)
    side_pose = turned(front_pose, 25.0)  # 25 degrees apart: each view is new to the other

    def send(_attempt: int) -> None:
        rig.front.publish(front_pose, stamp)
        rig.side.publish(side_pose, stamp)   # the same trigger: the same stamp

    def both_kept() -> bool:
        streams = {k.stream for k in node.keyframes.snapshot() if k.stamp_ns == stamp}
        return streams == {"front", "side"}

    # With one rate floor for all cameras the second frame would be 0 s "after the newest
    # keyframe" and refused as too soon.
    assert resend(send, both_kept, "a keyframe from each camera at one stamp")
    kept = {k.stream: k for k in node.keyframes.snapshot() if k.stamp_ns == stamp}
    np.testing.assert_allclose(kept["front"].view.K, FRONT_K)
    # The side camera is 80x60: resized to the 64x48 working size with its own K.
    np.testing.assert_allclose(kept["side"].view.K, resize_intrinsics(SIDE_K, (60, 80), (H, W)))
    assert kept["side"].view.rgb.shape == (H, W, 3)
    assert kept["front"].view.meta["frame_id"] == "front_optical"
    assert kept["side"].view.meta["frame_id"] == "side_optical"
    np.testing.assert_allclose(kept["side"].c2w, side_pose, atol=1e-6)
    assert node.drops["image"] == 0, node.last_drop
    assert node.not_admitted.get("too_soon", 0) == 0

    # A query between the two views renders from keyframes of both cameras.
    rig.front_side_ids = (kept["front"].id, kept["side"].id)
    response = rig.call("/multi/viewseg/render_view", render_request(turned(front_pose, 12.5)))
    assert response.success, response.message
    assert set(rig.front_side_ids) <= set(response.keyframe_ids)


def test_a_query_that_leaves_the_camera_open_gets_the_first_cameras(rig):
    """0x0 and K all zero: the first camera's keyframe camera, even when the other camera's
    keyframe is the newest (its lens differs: SIDE_K resized is not FRONT_K)."""
    node = rig.node
    rig.stamp_ns += 10**9
    front_stamp, side_stamp = rig.stamp_ns, rig.stamp_ns + 50_000_000
    front_pose = view_pose(11, 1.0, 0.0)

    def send(_attempt: int) -> None:
        rig.front.publish(front_pose, front_stamp)
        rig.side.publish(turned(view_pose(13, 1.0, 0.0), 40.0), side_stamp)

    assert resend(send, lambda: {k.stamp_ns for k in node.keyframes.snapshot()} >= {front_stamp, side_stamp},
                  "a front keyframe, then a newer side keyframe")
    assert node.keyframes.snapshot()[-1].stream == "side"
    response = rig.call("/multi/viewseg/render_view", render_request(front_pose, width=0, height=0))
    assert response.success, response.message
    assert (response.camera_info.width, response.camera_info.height) == (W, H)
    np.testing.assert_allclose(np.reshape(response.camera_info.k, (3, 3)), FRONT_K)


def test_the_same_camera_keeps_its_rate_floor(rig):
    node = rig.node
    rig.stamp_ns += 10**9
    first = rig.stamp_ns
    pose = view_pose(5, 1.0, 0.0)
    rig.front.publish(pose, first)
    wait_for(lambda: any(k.stamp_ns == first for k in node.keyframes.snapshot()), 5.0, "the first front keyframe")
    too_soon = node.not_admitted.get("too_soon", 0)
    # 5 ms later, 2 m further: novel, but within min_interval_s (0.01 s) of its own camera's keyframe.
    rig.front.publish(view_pose(7, 1.0, 0.0), first + 5_000_000)
    wait_for(lambda: node.not_admitted.get("too_soon", 0) > too_soon, 5.0, "the front frame refused as too soon")


def test_diagnostics_report_each_camera(rig):
    values = diagnostics_values(rig, rig.checkpoint, until=lambda v: "camera front" in v and "camera side" in v)
    assert values["cameras"] == "2"
    assert int(values["received_image"]) >= 2
    front, side = values["camera front"], values["camera side"]
    kept = {s: sum(1 for k in rig.node.keyframes.snapshot() if k.stream == s) for s in ("front", "side")}
    assert front.startswith(f"{kept['front']} keyframes;") and kept["front"] >= 1
    assert side.startswith(f"{kept['side']} keyframes;") and kept["side"] >= 1
    assert front.endswith("; pinhole (no distortion in CameraInfo)")  # each camera's own reading
    assert values["rectification"] == ("front: pinhole (no distortion in CameraInfo); "
                                       "side: pinhole (no distortion in CameraInfo)")


def test_a_camera_whose_images_stop_is_named_in_the_warning(rig):
    """The side camera's CameraInfo keeps coming but its images do not (lost in transport): the
    transport warning names that camera's topic, not the other's."""
    import time

    from viewseg_ros.conversions import make_camera_info

    stop = time.monotonic() + 4.0

    def infos_only(values) -> bool:
        rig.side.info.publish(make_camera_info(SIDE_K, 80, 60, frame_id="side_optical"))
        return "/multi/side/image delivered 0 images" in values["message"] or time.monotonic() > stop

    values = diagnostics_values(rig, rig.checkpoint, until=infos_only)
    assert "/multi/side/image delivered 0 images" in values["message"], values["message"]
    assert "/multi/front/image delivered" not in values["message"]  # the front camera's CameraInfo is not coming
    assert values["level"] == 1  # WARN


@pytest.mark.parametrize("overrides, expected", [
    ({"cameras": "front,front"}, "front listed twice"),
    ({"cameras": "front", "image_topic": "/camera/image"}, "parameter image_topic is '/camera/image'"),
    ({"cameras": "front", "depth_topic": "/camera/depth"}, "parameter depth_topic is '/camera/depth'"),
])
def test_bad_camera_settings_stop_the_node_naming_the_parameter(tmp_path, overrides, expected):
    from viewseg_ros.node import ViewSegNode

    g = Graph()
    try:
        with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
            ViewSegNode(context=g.context, parameter_overrides=params({
                "checkpoint": str(tiny_checkpoint(tmp_path / "tiny.pt")), "device": "cpu", "warmup": False,
                **overrides}))
    finally:
        g.close()
