"""Keyframe depth from a point cloud (``pointcloud_topic``; real rclpy nodes on loopback): a
LiDAR 25 cm above the camera scans the wall of the wall walk; the node pairs the scan nearest
each image by stamp, moves it through TF from the LiDAR's pose at the scan's stamp into the
camera's pose at the image's (the robot moved 20 cm in between), and z-buffers it into the
keyframe. The registered depth is the wall's, to the millimetre, on the scan lines only; with
``depth_completion`` (auto: columns for a point cloud) the model reads it on the rows between them too.
Malformed clouds, clouds in an unknown frame and clouds that miss the image are dropped and
counted, and the node keeps answering."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from ros_graph import WallWalk, diagnostics_values, render_request, resend, wait_for  # noqa: E402

NS = "lidar_rig"
LIDAR = f"{NS}_lidar"
S = 1_000_000_000
# The LiDAR's pose in the camera's optical frame: 25 cm above it (optical y points down) and
# 5 cm ahead, axes as REP 103 (x forward = optical z, y left = optical -x, z up = optical -y).
OPTICAL_FROM_LIDAR = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.25], [1.0, 0.0, 0.0, 0.05],
                               [0.0, 0.0, 0.0, 1.0]])
ELEVATIONS_DEG = (-12.0, -6.0, 0.0, 6.0, 12.0)   # five beams
SCAN_AHEAD_S = 0.03                              # the scan is stamped 30 ms before the image ...
MOVED_M = 0.2                                    # ... when the robot stood 20 cm further back


def scan_of_the_wall(map_from_lidar: np.ndarray, elevations=ELEVATIONS_DEG) -> np.ndarray:
    """[N, 3] in the LiDAR frame: where each beam (every 2 degrees of azimuth) meets the wall."""
    rays = []
    for elevation in np.radians(elevations):
        for azimuth in np.radians(np.arange(-50.0, 50.1, 2.0)):
            rays.append((math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                         math.sin(elevation)))
    directions = np.array(rays) @ map_from_lidar[:3, :3].T            # world
    origin = map_from_lidar[:3, 3]
    t = (WallWalk.WALL_X - origin[0]) / directions[:, 0]
    world = origin + t[:, None] * directions
    return (world - map_from_lidar[:3, 3]) @ map_from_lidar[:3, :3]   # back into the LiDAR frame


def cloud_message(points: np.ndarray, frame: str, stamp_ns: int, drop_field: str = ""):
    """A PointCloud2 laid out as a Velodyne driver's: x, y, z, intensity (float32), ring (uint16),
    2 bytes of padding; ``drop_field`` leaves one field out."""
    from sensor_msgs.msg import PointCloud2, PointField

    from viewseg_ros.conversions import ns_to_time

    layout = np.dtype({"names": ["x", "y", "z", "intensity", "ring"], "formats": ["<f4"] * 4 + ["<u2"],
                       "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
    data = np.zeros(len(points), dtype=layout)
    data["x"], data["y"], data["z"] = np.asarray(points, np.float32).T
    data["intensity"] = 100.0
    data["ring"] = np.arange(len(points)) % len(ELEVATIONS_DEG)
    msg = PointCloud2()
    msg.header.frame_id = frame
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.height, msg.width = 1, len(points)
    msg.fields = [PointField(name=name, offset=layout.fields[name][1],
                             datatype=PointField.UINT16 if name == "ring" else PointField.FLOAT32, count=1)
                  for name in layout.names if name != drop_field]
    msg.is_bigendian, msg.point_step, msg.row_step, msg.is_dense = False, 20, 20 * len(points), True
    msg.data = data.tobytes()
    return msg


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from sensor_msgs.msg import PointCloud2

    with WallWalk.rig(tmp_path_factory.mktemp("lidar"), NS, diagnostics=True, diagnostics_period_s=0.2,
                      depth_topic="", pointcloud_topic="/lidar/points") as g:
        g.lidar = g.client.create_publisher(PointCloud2, "/lidar/points", 10)
        wait_for(lambda: g.lidar.get_subscription_count(), 10.0, "the node to subscribe to the point cloud")
        yield g


def feed(g, index: int, frame: str = LIDAR, cloud_of=None, drop_field: str = "") -> None:
    """View ``index`` with a scan ``SCAN_AHEAD_S`` before it, taken 20 cm further back along the
    walk (TF has the LiDAR there at the scan's stamp, and with the camera at the image's), until
    the node admits the view. ``cloud_of`` changes the scan's points, ``drop_field`` leaves a
    field out of its message."""
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import matrix_to_transform_stamped

    pose = WallWalk.pose(index)
    before = pose.copy()
    before[0, 3] -= MOVED_M
    before_admitted = g.node.keyframes.admitted

    def send(attempt: int) -> None:
        stamp = (100 * index + attempt) * S
        scan_stamp = stamp - int(SCAN_AHEAD_S * S)
        g.camera.tf.publish(TFMessage(transforms=[
            matrix_to_transform_stamped(before @ OPTICAL_FROM_LIDAR, "map", LIDAR, scan_stamp),
            matrix_to_transform_stamped(pose @ OPTICAL_FROM_LIDAR, "map", LIDAR, stamp)]))
        points = scan_of_the_wall(before @ OPTICAL_FROM_LIDAR)
        g.lidar.publish(cloud_message(points if cloud_of is None else cloud_of(points), frame, scan_stamp, drop_field))
        g.camera.publish(pose, stamp)

    assert resend(send, lambda: g.node.keyframes.admitted > before_admitted, f"view {index} to become a keyframe",
                  timeout=3.0), f"view {index} never became a keyframe"


def publish_scan(g, map_from_lidar: np.ndarray, stamp: int, points_in_lidar: np.ndarray) -> None:
    """TF of the LiDAR at ``stamp`` and its scan of those points; returns once the node holds
    the scan (so that a later image may pair with it, or accumulate it)."""
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import matrix_to_transform_stamped

    g.camera.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(map_from_lidar, "map", LIDAR, stamp)]))
    g.lidar.publish(cloud_message(points_in_lidar, LIDAR, stamp))
    wait_for(lambda: any(c[0] == stamp for c in list(g.node.clouds)), 5.0, f"the node to take the scan at {stamp}")


def admit(g, pose: np.ndarray, stamp: int) -> np.ndarray:
    """The depth of the keyframe the view at ``pose`` (image stamped ``stamp``) becomes."""
    admitted = g.node.keyframes.admitted
    g.camera.publish(pose, stamp)
    wait_for(lambda: g.node.keyframes.admitted > admitted, 5.0, "the view to become a keyframe")
    return g.node.keyframes.snapshot()[-1].view.depth


def test_the_scan_is_registered_into_the_keyframe_from_the_lidars_pose_at_its_own_stamp(rig):
    g = rig
    feed(g, 1)
    keyframe = g.node.keyframes.snapshot()[-1]
    depth = keyframe.view.depth
    assert depth is not None and depth.shape == (WallWalk.H, WallWalk.W)
    measured = np.isfinite(depth)
    # Only where beams land: each of the five beams crosses every column (in one pixel, two where
    # its curve steps to the next row), and the rows between the scan lines stay unknown.
    per_column = measured.sum(axis=0)
    assert per_column.min() == len(ELEVATIONS_DEG) and per_column.max() <= len(ELEVATIONS_DEG) + 1, per_column
    assert measured.mean() < 0.3
    # The wall's planar depth from the camera's pose at the image's stamp: 6 - 1 = 5 m, to the
    # millimetre. Moved with the LiDAR's pose at the image's stamp instead, the scan (taken 20 cm
    # further back) would put the wall at 5.2 m.
    np.testing.assert_allclose(depth[measured], WallWalk.WALL_X - WallWalk.pose(1)[0, 3], atol=1e-3)
    # The beams go where the geometry says: the level beam, 25 cm above the optical axis, meets
    # the wall 5 m ahead 25 cm above the principal point, f * 0.25 / 5 rows up (the middle of
    # the five beams in the centre column).
    K = WallWalk.K()
    level_row = K[1, 2] - K[1, 1] * 0.25 / (WallWalk.WALL_X - WallWalk.pose(1)[0, 3])
    centre = np.flatnonzero(measured[:, WallWalk.W // 2])
    assert centre[len(ELEVATIONS_DEG) // 2] == int(np.floor(level_row + 0.5)), (centre, level_row)


def test_depth_completion_fills_the_rows_between_scan_lines_for_the_model_only(rig):
    """``depth_completion: auto`` with a point cloud is ``columns``: the model reads the wall's depth on the rows between the
    five scan lines too (a plane: filled exactly), while the keyframe keeps what the LiDAR
    measured."""
    g = rig
    assert g.node.depth_completion == "columns"
    keyframe = g.node.keyframes.snapshot()[0]
    measured = np.isfinite(keyframe.view.depth)
    given = g.node.keyframe_sources([keyframe]).depth[0, 0].numpy()
    between = np.zeros_like(measured)
    for column in range(WallWalk.W):
        rows = np.flatnonzero(measured[:, column])
        between[rows[0]:rows[-1] + 1, column] = True
    assert np.isfinite(given[between]).all() and np.isnan(given[~between]).all()
    np.testing.assert_allclose(given[between], WallWalk.WALL_X - WallWalk.pose(1)[0, 3], atol=1e-3)
    assert between.sum() > 2 * measured.sum() and np.isfinite(keyframe.view.depth).sum() == measured.sum()


def test_queries_render_from_keyframes_with_lidar_depth_and_say_nothing_is_missing(rig):
    from viewseg_ros.conversions import image_to_numpy

    g = rig
    feed(g, 2)
    assert all(k.view.depth is not None for k in g.node.keyframes)
    response = g.call(f"/{NS}/viewseg/render_view", render_request(WallWalk.pose(2), width=WallWalk.W, height=WallWalk.H))
    assert response.success, response.message
    assert "no depth" not in response.message
    assert image_to_numpy(response.depth).shape == (WallWalk.H, WallWalk.W)
    values = diagnostics_values(g, until=lambda d: int(d.get("received_pointcloud", 0)) >= 2)
    assert values["keyframes_with_depth"] == str(len(g.node.keyframes)) and values["dropped_depth"] == "0"
    assert values["sampling"].startswith("rgbd")   # the depth-guided preset: the keyframes have depth


@pytest.mark.parametrize("case, reason", [
    ("no_z_field", "no 'z' field"),
    ("unknown_frame", "no TF from 'nowhere_lidar'"),
    ("behind_the_camera", "none of its"),
])
def test_bad_clouds_are_dropped_and_counted_and_the_keyframe_is_kept_without_depth(rig, case, reason):
    g = rig
    index = {"no_z_field": 3, "unknown_frame": 4, "behind_the_camera": 5}[case]
    dropped = g.node.drops["depth"]
    without = g.node.keyframes_without_depth
    if case == "no_z_field":
        feed(g, index, drop_field="z")
    elif case == "unknown_frame":
        feed(g, index, frame="nowhere_lidar")
    else:
        feed(g, index, cloud_of=lambda points: points * np.array([-1.0, 1.0, 1.0]))   # mirrored: behind
    wait_for(lambda: g.node.drops["depth"] > dropped, 5.0, "the cloud to be dropped")
    assert reason in g.node.last_drop["depth"], g.node.last_drop["depth"]
    assert g.node.keyframes.snapshot()[-1].view.depth is None
    assert g.node.keyframes_without_depth == without + 1
    response = g.call(f"/{NS}/viewseg/render_view", render_request(WallWalk.pose(index)))
    assert response.success and "have no depth (no depth image or point cloud was paired with them)" \
        in response.message, response.message


def test_pointcloud_parameters_are_checked_at_start(rig):
    from ros_graph import params

    from viewseg_ros.node import ViewSegNode

    for overrides, match in [({"pointcloud_sync_tolerance_s": 0.0}, "pointcloud_sync_tolerance_s must be positive"),
                             ({"depth_completion": "fill"}, "depth_completion must be one of auto / none / columns")]:
        with pytest.raises(ValueError, match=match.replace("/", "\\|")):
            ViewSegNode(context=rig.context, namespace="lidar_bad", parameter_overrides=params({
                "device": "cpu", "warmup": False, "pointcloud_topic": "/lidar/points", **overrides}))


# Deskewing: a sweep of SWEEP_S, stamped at its first firing (as Ouster and Velodyne drivers
# do), while the LiDAR turns at YAW_RATE about its vertical axis; the image is taken at the
# sweep's last firing, when the LiDAR has turned to the pose the other tests use.
SWEEP_S, YAW_RATE = 0.1, 1.0
FIRINGS = np.arange(-50.0, 50.1, 2.0)          # azimuth columns (deg), fired in this order, 2 ms apart


def yawed(map_from_lidar: np.ndarray, angle: float) -> np.ndarray:
    turn = np.eye(4)
    turn[:2, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    return map_from_lidar @ turn


def turning_sweep(map_from_lidar_at_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([N, 3] points in the LiDAR frame at each firing's own time, [N] their times after the
    sweep's first firing) of a LiDAR that turns at YAW_RATE and ends at ``map_from_lidar_at_end``."""
    points, times = [], []
    for j, azimuth in enumerate(np.radians(FIRINGS)):
        tau = SWEEP_S * j / (len(FIRINGS) - 1)
        pose = yawed(map_from_lidar_at_end, YAW_RATE * (tau - SWEEP_S))
        for elevation in np.radians(ELEVATIONS_DEG):
            local = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                              math.sin(elevation)])
            direction = pose[:3, :3] @ local
            t = (WallWalk.WALL_X - pose[0, 3]) / direction[0]
            points.append(local * t)
            times.append(tau)
    return np.array(points), np.array(times)


def feed_sweep(g, pose: np.ndarray, stamp: int, times_of=lambda times: times) -> None:
    """A keyframe at ``pose`` (image stamped ``stamp``) with the turning sweep ending then;
    TF has the LiDAR every 10 ms of the sweep. ``times_of`` changes the time field."""
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import make_xyz_cloud, matrix_to_transform_stamped

    end = pose @ OPTICAL_FROM_LIDAR
    before_admitted = g.node.keyframes.admitted

    def send(attempt: int) -> None:
        image_stamp = stamp + attempt * S
        sweep_stamp = image_stamp - int(SWEEP_S * S)
        g.camera.tf.publish(TFMessage(transforms=[
            matrix_to_transform_stamped(yawed(end, YAW_RATE * (k * 0.01 - SWEEP_S)), "map", LIDAR,
                                        sweep_stamp + k * S // 100) for k in range(11)]))
        points, times = turning_sweep(end)
        g.lidar.publish(make_xyz_cloud(points, frame_id=LIDAR, stamp_ns=sweep_stamp, times=times_of(times)))
        g.camera.publish(pose, image_stamp)

    assert resend(send, lambda: g.node.keyframes.admitted > before_admitted, "the view to become a keyframe",
                  timeout=3.0), "the view never became a keyframe"


def test_an_image_waits_for_tf_to_reach_the_end_of_its_clouds_sweep(rig):
    """TF for the second half of the sweep arrives after the image and the cloud: the image
    waits in the TF queue (up to tf_wait_s) instead of giving up the deskew."""
    import time

    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import make_xyz_cloud, matrix_to_transform_stamped

    g = rig
    pose = WallWalk.pose(0).copy()
    pose[1, 3] -= 1.0
    end = pose @ OPTICAL_FROM_LIDAR
    image_stamp = 900 * S                  # stamps rise through the file: 900, 1000, 1100 s
    sweep_stamp = image_stamp - int(SWEEP_S * S)
    admitted, deskewed, skipped = g.node.keyframes.admitted, g.node.events["pointclouds_deskewed"], \
        g.node.events["deskew_skipped"]

    def tf(ks) -> None:
        g.camera.tf.publish(TFMessage(transforms=[
            matrix_to_transform_stamped(yawed(end, YAW_RATE * (k * 0.01 - SWEEP_S)), "map", LIDAR,
                                        sweep_stamp + k * S // 100) for k in ks]))

    tf(range(6))
    points, times = turning_sweep(end)
    g.lidar.publish(make_xyz_cloud(points, frame_id=LIDAR, stamp_ns=sweep_stamp, times=times))
    wait_for(lambda: any(c[0] == sweep_stamp for c in list(g.node.clouds)), 5.0, "the node to take the cloud")
    g.camera.publish(pose, image_stamp)
    wait_for(lambda: any(p.stamp_ns == image_stamp for c in g.node.cameras for p in list(c.pending)), 5.0,
             "the image to wait for TF")
    time.sleep(0.2)
    assert g.node.keyframes.admitted == admitted          # still waiting for the sweep's end
    tf(range(6, 11))
    wait_for(lambda: g.node.keyframes.admitted > admitted, 5.0, "the view to become a keyframe")
    assert g.node.events["pointclouds_deskewed"] == deskewed + 1 and g.node.events["deskew_skipped"] == skipped
    error = wall_depth_error(g.node.keyframes.snapshot()[-1].view.depth, pose)
    assert error.max() < 0.02, error.max()


def wall_depth_error(depth: np.ndarray, pose: np.ndarray) -> np.ndarray:
    measured = np.isfinite(depth)
    assert measured.sum() > 50
    return np.abs(depth[measured] - (WallWalk.WALL_X - pose[0, 3]))


def test_a_sweep_taken_while_turning_is_deskewed_with_tf_at_each_points_time(rig):
    """The LiDAR turns 0.1 rad during the sweep: placed with the pose at the cloud's stamp (the
    sweep's start), the wall's points would land up to tens of centimetres off the wall. Each
    5 ms slice placed with TF at its own time puts them on it to the slice's 2.5 ms of turn."""
    g = rig
    pose = WallWalk.pose(0)
    deskewed = g.node.events["pointclouds_deskewed"]
    feed_sweep(g, pose, 1000 * S)
    assert g.node.events["pointclouds_deskewed"] > deskewed
    error = wall_depth_error(g.node.keyframes.snapshot()[-1].view.depth, pose)
    assert np.median(error) < 0.005 and error.max() < 0.02, (np.median(error), error.max())
    # What one pose for the whole sweep would have given: the same scan placed rigidly at its start.
    from viewseg_core.depth_registration import register_points

    points, _ = turning_sweep(pose @ OPTICAL_FROM_LIDAR)
    start = yawed(pose @ OPTICAL_FROM_LIDAR, -YAW_RATE * SWEEP_S)
    rigid = register_points(points, WallWalk.K(), (WallWalk.H, WallWalk.W), np.linalg.inv(pose) @ start)
    assert wall_depth_error(rigid, pose).max() > 0.3


def test_a_time_field_that_is_not_one_sweeps_costs_the_deskew_not_the_points(rig):
    """Per-point times spanning hours (a wrong unit) are refused with a warning and counted;
    the cloud is placed with its stamp's pose, and the keyframe keeps its depth."""
    g = rig
    pose = WallWalk.pose(0).copy()
    pose[1, 3] += 1.0                      # one metre beside the last view: a new keyframe
    skipped, dropped = g.node.events["deskew_skipped"], g.node.drops["depth"]
    feed_sweep(g, pose, 1100 * S, times_of=lambda times: times * 1e5)
    assert g.node.events["deskew_skipped"] > skipped and g.node.drops["depth"] == dropped
    assert "not the times of one sweep" in g.node.last_event["deskew_skipped"]
    error = wall_depth_error(g.node.keyframes.snapshot()[-1].view.depth, pose)
    assert error.max() > 0.3        # placed at the sweep's start: the turn is not undone, but nothing is lost


def test_clouds_around_the_image_are_accumulated_into_the_keyframe(rig):
    """``pointcloud_accumulate_s`` (live): a scan taken half a second earlier, from a metre
    further back and with its beams lower (another band of the wall), is placed through TF at
    its own stamp and registered into the keyframe beside the paired scan: both bands land on
    the wall to the millimetre. Set back to 0, a keyframe takes its paired scan only."""
    from rclpy.parameter import Parameter

    g = rig
    assert g.node.set_parameters([Parameter("pointcloud_accumulate_s", value=1.0)])[0].successful
    refused = g.node.set_parameters([Parameter("pointcloud_accumulate_s", value=9.0)])[0]
    assert not refused.successful and "pointcloud_accumulate_s must be in [0, 8]" in refused.reason
    pose = WallWalk.pose(0).copy()
    pose[1, 3] += 2.0
    earlier = pose.copy()
    earlier[0, 3] -= 1.0
    image_stamp, earlier_stamp = 1300 * S, 1300 * S - S // 2
    low_band = (-26.0, -22.0, -18.0)      # below the paired scan's lowest beam (-12 degrees)

    try:
        before = earlier @ OPTICAL_FROM_LIDAR
        publish_scan(g, before, earlier_stamp, scan_of_the_wall(before, low_band))
        publish_scan(g, pose @ OPTICAL_FROM_LIDAR, image_stamp, scan_of_the_wall(pose @ OPTICAL_FROM_LIDAR))
        depth = admit(g, pose, image_stamp)
        measured = np.isfinite(depth)
        np.testing.assert_allclose(depth[measured], WallWalk.WALL_X - pose[0, 3], atol=1e-3)
        rows = np.flatnonzero(measured[:, WallWalk.W // 2])
        K = WallWalk.K()
        lowest_paired = K[1, 2] + K[1, 1] * (math.tan(math.radians(12.0)) * 6.0 - 0.25) / 6.0   # -12 deg beam, 6 m
        assert len(rows) >= len(ELEVATIONS_DEG) + 2 and rows.max() > lowest_paired + 1, (rows, lowest_paired)
    finally:
        assert g.node.set_parameters([Parameter("pointcloud_accumulate_s", value=0.0)])[0].successful


def test_an_accumulated_scans_trail_is_left_out_unless_asked(rig):
    """``pointcloud_drop_stale`` (default true, live): the earlier scan, from a metre further
    back, also holds a ghost half-way along the paired scan's beams within 20 degrees of
    straight ahead (someone who walked through). The paired scan passed through it, so the
    keyframe's depth is the wall's to the millimetre, and ``accumulated_points_stale`` counts
    at least the ghost's points (also on /diagnostics). With it false the ghost wins pixels of
    the next keyframe, metres in front of the wall. A cell of 0 degrees is refused."""
    from rclpy.parameter import Parameter

    g = rig
    refused = g.node.set_parameters([Parameter("pointcloud_stale_cell_deg", value=0.0)])[0]
    assert not refused.successful and "pointcloud_stale_cell_deg must be in (0, 10]" in refused.reason
    assert g.node.set_parameters([Parameter("pointcloud_accumulate_s", value=1.0)])[0].successful

    def keyframe_with_ghost(side_m: float, image_stamp: int) -> tuple[np.ndarray, float, int]:
        """(the keyframe's depth, the wall's depth, the ghost's points) for a view ``side_m``
        beside the walk's first."""
        pose = WallWalk.pose(0).copy()
        pose[1, 3] += side_m
        earlier = pose.copy()
        earlier[0, 3] -= 1.0
        paired, before = pose @ OPTICAL_FROM_LIDAR, earlier @ OPTICAL_FROM_LIDAR
        scan = scan_of_the_wall(paired)
        ahead = np.abs(np.degrees(np.arctan2(scan[:, 1], scan[:, 0]))) <= 20.0
        ghost_in_map = paired[:3, 3] + 0.5 * (scan[ahead] @ paired[:3, :3].T)
        ghost_in_before = (ghost_in_map - before[:3, 3]) @ before[:3, :3]
        publish_scan(g, before, image_stamp - S // 2, np.concatenate([scan_of_the_wall(before), ghost_in_before]))
        publish_scan(g, paired, image_stamp, scan)
        return admit(g, pose, image_stamp), WallWalk.WALL_X - pose[0, 3], int(ahead.sum())

    try:
        stale_before = g.node.events["accumulated_points_stale"]
        depth, wall, ghosts = keyframe_with_ghost(3.0, 1500 * S)
        measured = np.isfinite(depth)
        assert measured.sum() > 2 * WallWalk.W
        np.testing.assert_allclose(depth[measured], wall, atol=1e-3)
        assert g.node.events["accumulated_points_stale"] - stale_before >= ghosts > 10
        assert "accumulated points contradicted by it" in g.node.last_event["accumulated_points_stale"]
        values = diagnostics_values(g, until=lambda v: int(v.get("accumulated_points_stale", 0)) >= stale_before + ghosts)
        assert int(values["accumulated_points_stale"]) >= stale_before + ghosts

        assert g.node.set_parameters([Parameter("pointcloud_drop_stale", value=False)])[0].successful
        depth, wall, _ = keyframe_with_ghost(4.0, 1600 * S)
        assert (depth < wall - 1.0).sum() >= 5
    finally:
        assert g.node.set_parameters([Parameter("pointcloud_accumulate_s", value=0.0),
                                      Parameter("pointcloud_drop_stale", value=True)])[0].successful


def test_depth_a_nearer_measurement_hides_is_dropped_with_an_occlusion_radius(rig):
    """``pointcloud_occlusion_radius`` (live, default 0): a scan with the wall 6 m away on two
    rows and a board 3 m away over six pixels of the upper row (as a LiDAR above the camera
    sees past the board's edge onto the wall the camera sees the board in front of). With 0,
    the keyframe keeps every point; with 1, the wall points within a pixel of the board go and
    the rest of the wall and the board stay. 9 is refused."""
    from rclpy.parameter import Parameter

    g = rig
    refused = g.node.set_parameters([Parameter("pointcloud_occlusion_radius", value=9)])[0]
    assert not refused.successful and "pointcloud_occlusion_radius must be 0-8" in refused.reason
    K, row = WallWalk.K(), WallWalk.H // 2
    board = range(5, 11)

    def pixel_points(v: int, columns, z: float) -> np.ndarray:
        # 0.3 px into each pixel: the same pixel whether projections are floored or rounded.
        uv1 = np.stack([np.asarray(list(columns), float) + 0.3, np.full(len(columns), v + 0.3), np.ones(len(columns))],
                       axis=-1)
        return z * uv1 @ np.linalg.inv(K).T

    in_camera = np.concatenate([pixel_points(row, [u for u in range(WallWalk.W) if u not in board], 6.0),
                                pixel_points(row, board, 3.0), pixel_points(row + 1, range(WallWalk.W), 6.0)])
    lidar_from_camera = np.linalg.inv(OPTICAL_FROM_LIDAR)
    in_lidar = in_camera @ lidar_from_camera[:3, :3].T + lidar_from_camera[:3, 3]
    depths = {}
    try:
        for radius, side_m, stamp in ((0, 5.0, 1700 * S), (1, 6.0, 1800 * S)):
            assert g.node.set_parameters([Parameter("pointcloud_occlusion_radius", value=radius)])[0].successful
            pose = WallWalk.pose(0).copy()
            pose[1, 3] += side_m
            publish_scan(g, pose @ OPTICAL_FROM_LIDAR, stamp, in_lidar)
            depths[radius] = admit(g, pose, stamp)
    finally:
        assert g.node.set_parameters([Parameter("pointcloud_occlusion_radius", value=0)])[0].successful
    expected = np.full((WallWalk.H, WallWalk.W), np.nan, np.float32)
    expected[row:row + 2] = 6.0
    expected[row, list(board)] = 3.0
    np.testing.assert_allclose(depths[0], expected, atol=1e-3)
    expected[row + 1, board.start - 1:board.stop + 1] = np.nan     # below the board and a pixel either side
    expected[row, [board.start - 1, board.stop]] = np.nan           # beside it on its own row
    np.testing.assert_allclose(depths[1], expected, atol=1e-3)
