"""Several robots on one network (real rclpy nodes on loopback): a node started in a robot's
namespace with TF remapped into it (``/tf:=tf``, as ``ros2 launch ... namespace:=robot1
namespaced_tf:=true`` and Nav2's multi-robot launch files remap it) poses its keyframes from
that robot's TF tree only, and serves under the namespace; another robot's TF on the global
/tf, for the same frame names, never reaches it."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from ros_graph import Graph, PosedCamera, WallWalk, params, render_request, resend, \
    tiny_rgbd_checkpoint  # noqa: E402

W, H = WallWalk.W, WallWalk.H


def test_namespaced_tf_poses_keyframes_from_its_own_robot_only(tmp_path):
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import matrix_to_transform_stamped
    from viewseg_ros.node import ViewSegNode

    g = Graph()
    try:
        checkpoint = tiny_rgbd_checkpoint(tmp_path / "rgbd.pt")
        node = g.add(ViewSegNode(
            context=g.context, namespace="/robot1",
            cli_args=["--ros-args", "-r", "/tf:=tf", "-r", "/tf_static:=tf_static"],
            parameter_overrides=params({"checkpoint": str(checkpoint), "device": "cpu", "depth_topic": "depth",
                                        "keyframes.width": W, "keyframes.height": H, "query.min_coverage": 0.0,
                                        "warmup": False})))
        assert node.get_fully_qualified_name() == "/robot1/viewseg"
        camera = PosedCamera(g, WallWalk.K(), "camera_optical", depth_topic="depth", namespace="/robot1",
                             tf_topic="/robot1/tf")
        other_robot = g.client.create_publisher(TFMessage, "/tf", 100)
        assert node.count_subscribers("/tf") == 0 and node.count_subscribers("/robot1/tf") >= 1

        for index in (1, 2):
            stamp = 100 * index * 10**9
            elsewhere = WallWalk.pose(index)
            elsewhere[:3, 3] += [50.0, -20.0, 3.0]   # robot 2's camera of the same name, far away
            other_robot.publish(TFMessage(transforms=[matrix_to_transform_stamped(elsewhere, "map", "camera_optical",
                                                                                   stamp)]))
            assert resend(lambda attempt, index=index, stamp=stamp: camera.publish(
                WallWalk.pose(index), stamp + attempt, depth=WallWalk.depth(index)),
                lambda index=index: node.keyframes.admitted >= index, f"view {index}", timeout=3.0)
        poses = [k.c2w for k in node.keyframes.snapshot()]
        assert len(poses) == 2
        for pose, index in zip(poses, (1, 2)):
            np.testing.assert_allclose(pose, WallWalk.pose(index), atol=1e-6)   # robot 1's tree, not robot 2's

        pose = WallWalk.pose(2)
        pose[0, 3] -= 0.5
        response = g.call("/robot1/viewseg/render_view", render_request(pose, width=W, height=H))
        assert response.success, response.message
        assert sorted(response.keyframe_ids) == [0, 1]
    finally:
        g.close()
