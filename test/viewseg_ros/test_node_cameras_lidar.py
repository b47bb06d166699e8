"""Several cameras and one LiDAR (real rclpy nodes on loopback): the node subscribes to the
point cloud once, and each camera's keyframe takes its depth from the same scan, registered
into that camera's own pose and lens (as ``viewseg bag2scene --cameras`` does for a bag)."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_ros.camera_stream import view_pose  # noqa: E402
from ros_graph import Graph, PosedCamera, params, resend, tiny_rgbd_checkpoint, turned, wait_for  # noqa: E402

W, H = 32, 24
FRONT_K = np.array([[25.0, 0.0, 15.5], [0.0, 25.0, 11.5], [0.0, 0.0, 1.0]])
SIDE_K = np.array([[35.0, 0.0, 19.5], [0.0, 35.0, 14.5], [0.0, 0.0, 1.0]])  # 40x30, another lens
AHEAD_M = {"front": 3.0, "side": 2.0}     # the scan's wall in front of each camera


def grid_ahead(c2w: np.ndarray, K: np.ndarray, size: tuple[int, int], metres: float) -> np.ndarray:
    """[N, 3] map points ``metres`` ahead of the camera at ``c2w`` (planar depth) through every
    4th pixel centre of its (width, height) image."""
    u, v = np.meshgrid(np.arange(0, size[0], 4, dtype=float), np.arange(0, size[1], 4, dtype=float))
    rays = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=-1) @ np.linalg.inv(K).T
    return (rays * metres) @ c2w[:3, :3].T + c2w[:3, 3]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from sensor_msgs.msg import PointCloud2

    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_rgbd_checkpoint(tmp_path_factory.mktemp("cameras_lidar") / "tiny_rgbd.pt")
    g = Graph()
    try:
        g.node = g.add(ViewSegNode(context=g.context, namespace="multilidar", parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "cameras": "front, side", "keyframes.width": W, "keyframes.height": H, "depth_completion": "none",
            "pointcloud_topic": "/lidar/points", "query.min_coverage": 0.0})))
        g.front = PosedCamera(g, FRONT_K, "front_optical", namespace="multilidar/front")
        g.side = PosedCamera(g, SIDE_K, "side_optical", namespace="multilidar/side")
        g.lidar = g.client.create_publisher(PointCloud2, "/lidar/points", 10)
        wait_for(lambda: g.lidar.get_subscription_count(), 10.0, "the node to subscribe to the point cloud")
        yield g
    finally:
        g.close()


def test_one_scan_gives_each_cameras_keyframe_its_depth(rig):
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import make_xyz_cloud, matrix_to_transform_stamped

    node = rig.node
    assert sum(1 for s in node.subscriptions if s.topic_name == "/lidar/points") == 1
    stamp = 700 * 10**9
    front_pose = view_pose(0, 1.0, 0.0)
    side_pose = turned(front_pose, 90.0)          # looking off to the side: none of the front's wall
    side_size = (int(2 * (SIDE_K[0, 2] + 0.5)), int(2 * (SIDE_K[1, 2] + 0.5)))
    # The LiDAR sits at the front camera's pose (its frame the same as the map's here, moved);
    # one scan holds both walls.
    lidar_pose = np.eye(4)
    lidar_pose[:3, 3] = front_pose[:3, 3]
    world = np.concatenate([grid_ahead(front_pose, FRONT_K, (W, H), AHEAD_M["front"]),
                            grid_ahead(side_pose, SIDE_K, side_size, AHEAD_M["side"])])
    in_lidar = world - lidar_pose[:3, 3]

    def send(attempt: int) -> None:
        at = stamp + attempt * 10**6
        rig.front.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(lidar_pose, "map", "lidar", at)]))
        rig.lidar.publish(make_xyz_cloud(in_lidar, frame_id="lidar", stamp_ns=at))
        rig.front.publish(front_pose, at)
        rig.side.publish(side_pose, at)

    def both_kept() -> bool:
        return {k.stream for k in node.keyframes.snapshot() if k.view.depth is not None} == {"front", "side"}

    assert resend(send, both_kept, "a keyframe with depth from each camera")
    kept = {k.stream: k for k in node.keyframes.snapshot() if k.view.depth is not None}
    for name, keyframe in kept.items():
        depth = keyframe.view.depth
        measured = np.isfinite(depth)
        # Each camera sees its own wall, at its own distance, and nothing of the other's.
        assert measured.sum() >= 12, (name, measured.sum())
        np.testing.assert_allclose(depth[measured], AHEAD_M[name], atol=1e-3)
    assert node.drops.get("depth", 0) == 0, node.last_drop
