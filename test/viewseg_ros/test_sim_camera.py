"""The simulated camera's depth topic (issue 15, item 6), with a real rclpy node on loopback:
depth registered to the image (same stamp, frame and size), 16UC1 millimetres, equal to the
ray-cast truth when the sensor model is off and within its noise when it is on; with lens
distortion, raw frames whose CameraInfo undistorts them back onto the truth; with a depth
camera of its own, depth that registers onto the colour camera's truth."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)
from rclpy.qos import qos_profile_sensor_data  # noqa: E402

from viewseg_ros.conversions import depth_image_to_metres, time_to_ns  # noqa: E402
from ros_graph import Graph, params, wait_for  # noqa: E402

W, H = 64, 48


def frames_from(sensor: bool, count: int = 3, namespace: str = "", infos: list | None = None, **overrides):
    """(sim node, [(image msg, depth msg)] pairs with equal stamps); CameraInfo messages go to ``infos``."""
    from sensor_msgs.msg import CameraInfo, Image

    from viewseg_ros.sim_camera import SimCameraNode

    namespace = namespace or f"sim_{int(sensor)}"
    g = Graph()
    try:
        sim = g.add(SimCameraNode(context=g.context, namespace=namespace, parameter_overrides=params({
            "seed": 2, "rate": 5.0, "width": W, "height": H, "depth_sensor": sensor, **overrides})))
        images, depths = [], []
        g.client.create_subscription(Image, f"/{namespace}/image", images.append, qos_profile_sensor_data)
        g.client.create_subscription(Image, f"/{namespace}/depth", depths.append, qos_profile_sensor_data)
        if infos is not None:
            g.client.create_subscription(CameraInfo, f"/{namespace}/camera_info", infos.append, qos_profile_sensor_data)
        wait_for(lambda: len(depths) >= count and len(images) >= count, 20.0, "sim frames")
        sim.timer.cancel()
        by_stamp = {time_to_ns(m.header.stamp): m for m in images}
        return sim, [(by_stamp[time_to_ns(d.header.stamp)], d) for d in depths if time_to_ns(d.header.stamp) in by_stamp]
    finally:
        g.close()


def truth(sim, stamp_ns: int) -> np.ndarray:
    from viewseg_core.data.synth.render import render

    return render(sim.scene, sim.K, sim.pose_at(stamp_ns), H, W).depth


def test_clean_depth_is_registered_millimetres_of_the_true_depth():
    sim, pairs = frames_from(sensor=False)
    assert pairs
    for image, depth_msg in pairs:
        assert depth_msg.encoding == "16UC1" and depth_msg.header.frame_id == image.header.frame_id
        assert (depth_msg.width, depth_msg.height) == (image.width, image.height) == (W, H)
        measured = depth_image_to_metres(depth_msg)
        true = truth(sim, time_to_ns(depth_msg.header.stamp))
        both = np.isfinite(true) & (true < 65.0)
        assert both.mean() > 0.9
        np.testing.assert_allclose(measured[both], np.round(true[both] * 1000) / 1000, atol=1e-6)


def test_sensor_depth_is_noisy_within_its_model():
    from viewseg_core.data.depth_sensor import DepthSensorConfig

    k = DepthSensorConfig().noise_k
    sim, pairs = frames_from(sensor=True)
    errors, missing = [], []
    for _, depth_msg in pairs:
        measured = depth_image_to_metres(depth_msg)
        true = truth(sim, time_to_ns(depth_msg.header.stamp))
        ok = np.isfinite(true) & np.isfinite(measured)
        errors.append((measured[ok] - true[ok]) / (k * true[ok] ** 2 + 1e-3))
        missing.append(np.isfinite(true) & ~np.isfinite(measured))
    z = np.concatenate(errors)
    # Gaussian noise sigma = k z^2 plus millimetre steps: a normalised error with std ~1,
    # never far beyond a few sigma; and the sensor loses some pixels (holes, edges), not most.
    assert 0.3 < z.std() < 1.5 and np.abs(z).max() < 8
    assert 0.0 < np.concatenate([m.ravel() for m in missing]).mean() < 0.3


def test_sigint_while_a_frame_is_being_rendered_exits_cleanly(tmp_path):
    """Frames slower than the timer keep a tick running all the time, so SIGINT lands inside
    one and the frame's publish meets a shut-down context: that is the requested stop (status
    0, no traceback), as `ros2 launch` needs (a launch test once failed on it)."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(random.randint(150, 230)))
    log = tmp_path / "sim.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "viewseg_ros.sim_camera", "--ros-args", "-p", "rate:=50.0",
                                 "-p", "width:=320", "-p", "height:=240"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "replaying" in log.read_text() or proc.poll() is not None, 60.0, "the sim camera to start")
        time.sleep(1.0)  # several ticks, each longer than the 20 ms period
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert status == 0 and "Traceback" not in text, text


def test_a_camera_with_lens_distortion_publishes_raw_frames_its_camera_info_undistorts():
    from viewseg_core.data.synth.render import render
    from viewseg_core.rectify import make_undistorter

    d = [-0.3, 0.1, 0.0, 0.0, 0.0]
    infos: list = []
    sim, pairs = frames_from(sensor=False, namespace="sim_lens", infos=infos, depth_encoding="32FC1",
                             distortion=",".join(map(str, d)))
    assert pairs and infos
    info = infos[-1]
    assert info.distortion_model == "plumb_bob" and list(info.d) == d
    np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), sim.K)
    P_K = np.asarray(info.p).reshape(3, 4)[:, :3]
    assert P_K[0, 0] < sim.K[0, 0]            # alpha 0 for barrel distortion: only valid pixels, a narrower view
    undistort = make_undistorter(sim.K, d, "plumb_bob", W, H, P_K)
    _, depth_msg = pairs[0]
    rectified = undistort.depth(depth_image_to_metres(depth_msg))
    true = render(sim.scene, P_K, sim.pose_at(time_to_ns(depth_msg.header.stamp)), H, W).depth
    both = np.isfinite(rectified) & np.isfinite(true)
    assert both.mean() > 0.95                 # p's pinhole sees only what the raw image covers
    # Nearest resampling twice moves a depth by up to a pixel: 5% on a floor seen at 64x48.
    close = np.abs(rectified[both] - true[both]) <= 0.05 * true[both]
    assert close.mean() > 0.95
    # Read with k and no undistortion, the same raw depth is off wherever the lens bends rays.
    naive = render(sim.scene, sim.K, sim.pose_at(time_to_ns(depth_msg.header.stamp)), H, W).depth
    raw = depth_image_to_metres(depth_msg)
    both_naive = np.isfinite(raw) & np.isfinite(naive)
    assert (np.abs(raw[both_naive] - naive[both_naive]) <= 0.05 * naive[both_naive]).mean() < close.mean() - 0.1


def test_an_unaligned_depth_camera_registers_onto_the_colour_cameras_truth():
    from viewseg_core.data.synth.render import render
    from viewseg_core.depth_registration import register_depth

    sim, pairs = frames_from(sensor=False, namespace="sim_unaligned", depth_encoding="32FC1", depth_baseline_m=0.05,
                             depth_hfov_deg=87.0)
    assert pairs
    image, depth_msg = pairs[0]
    assert depth_msg.header.frame_id == "camera_depth_optical" and image.header.frame_id == "camera_optical"
    stamp = time_to_ns(depth_msg.header.stamp)
    registered = register_depth(depth_image_to_metres(depth_msg), sim.depth_K, sim.K, (H, W), sim.colour_from_depth)
    true = render(sim.scene, sim.K, sim.pose_at(stamp), H, W).depth
    both = np.isfinite(registered) & np.isfinite(true)
    assert both.mean() > 0.9                        # the wider depth camera covers the colour view
    assert (np.abs(registered[both] - true[both]) <= 0.05 * true[both]).mean() > 0.95
    # Read as if it were registered already, the same depth is off at every edge the baseline moves.
    raw = depth_image_to_metres(depth_msg)
    both_raw = np.isfinite(raw) & np.isfinite(true)
    assert (np.abs(raw[both_raw] - true[both_raw]) <= 0.05 * true[both_raw]).mean() < 0.9


def test_transport_compressed_publishes_image_transports_topics():
    from sensor_msgs.msg import CompressedImage

    from viewseg_core.data.synth.render import render
    from viewseg_ros.conversions import compressed_depth_to_metres, compressed_image_to_rgb
    from viewseg_ros.sim_camera import SimCameraNode

    g = Graph()
    try:
        sim = g.add(SimCameraNode(context=g.context, namespace="sim_jpeg", parameter_overrides=params({
            "seed": 2, "rate": 5.0, "width": W, "height": H, "depth_sensor": False, "transport": "compressed"})))
        images, depths = [], []
        g.client.create_subscription(CompressedImage, "/sim_jpeg/image/compressed", images.append, qos_profile_sensor_data)
        g.client.create_subscription(CompressedImage, "/sim_jpeg/depth/compressedDepth", depths.append,
                                     qos_profile_sensor_data)
        stamps = lambda msgs: {time_to_ns(m.header.stamp) for m in msgs}  # noqa: E731
        wait_for(lambda: stamps(images) & stamps(depths), 20.0, "a compressed image and depth of one frame")
        sim.timer.cancel()
    finally:
        g.close()
    stamp = min(stamps(images) & stamps(depths))
    image = next(m for m in images if time_to_ns(m.header.stamp) == stamp)
    depth_msg = next(m for m in depths if time_to_ns(m.header.stamp) == stamp)
    assert image.format == "rgb8; jpeg compressed bgr8" and depth_msg.format == "16UC1; compressedDepth png"
    frame = render(sim.scene, sim.K, sim.pose_at(stamp), H, W)
    depth = compressed_depth_to_metres(depth_msg)
    both = np.isfinite(depth) & np.isfinite(frame.depth) & (frame.depth < 65.0)
    assert both.mean() > 0.9
    np.testing.assert_allclose(depth[both], frame.depth[both], atol=0.0005 + 1e-6)     # lossless to the millimetre
    rgb = compressed_image_to_rgb(image)
    assert rgb.shape == (H, W, 3) and np.abs(rgb.astype(int) - frame.rgb).mean() < 8  # JPEG's error only


def test_a_robot_with_two_cameras_publishes_each_in_its_namespace():
    """cameras 'front:0,rear:180': each camera on <name>/..., with its own optical frame, static
    mount and picture; the rear camera looks the opposite way and sees its own truth."""
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    from viewseg_core.data.synth.render import render
    from viewseg_ros.tf_buffer import make_transform
    from viewseg_ros.sim_camera import SimCameraNode, parse_cameras

    assert parse_cameras("") == [("", 0.0)]
    assert parse_cameras("front:0, rear:180") == [("front", 0.0), ("rear", 180.0)]
    for bad in ("front:x", "a/b:0", "front:0,front:90"):
        with pytest.raises(ValueError):
            parse_cameras(bad)
    g = Graph()
    try:
        sim = g.add(SimCameraNode(context=g.context, namespace="robot2", parameter_overrides=params({
            "seed": 2, "rate": 5.0, "width": W, "height": H, "depth_sensor": False, "cameras": "front:0,rear:180"})))
        got = {name: ([], []) for name in ("front", "rear")}
        for name, (images, depths) in got.items():
            g.client.create_subscription(Image, f"/robot2/{name}/image", images.append, qos_profile_sensor_data)
            g.client.create_subscription(Image, f"/robot2/{name}/depth", depths.append, qos_profile_sensor_data)
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        statics = []
        g.client.create_subscription(TFMessage, "/tf_static", statics.append, QoSProfile(
            depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: all(len(d) >= 2 for _, d in got.values()) and statics, 20.0, "frames from both cameras")
        sim.timer.cancel()
    finally:
        g.close()
    mounts = {t.child_frame_id: make_transform((t.transform.translation.x, t.transform.translation.y,
                                                t.transform.translation.z),
                                               (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                                                t.transform.rotation.w))
              for m in statics for t in m.transforms}
    front, rear = mounts["front_camera_optical"], mounts["rear_camera_optical"]
    np.testing.assert_allclose(front[:3, 3], rear[:3, 3], atol=1e-9)               # one place on the robot
    np.testing.assert_allclose(rear[:3, 2] * [-1, -1, 1], front[:3, 2], atol=1e-9)  # optical axes opposite in x, y
    for index, name in enumerate(("front", "rear")):
        images, depths = got[name]
        assert {m.header.frame_id for m in images + depths} == {f"{name}_camera_optical"}
        depth_msg = depths[-1]
        true = render(sim.scene, sim.K, sim.pose_at(time_to_ns(depth_msg.header.stamp), index), H, W).depth
        measured = depth_image_to_metres(depth_msg)
        both = np.isfinite(true) & (true < 65.0)
        np.testing.assert_allclose(measured[both], true[both], atol=6e-4)  # millimetres
    # The two cameras see different parts of the room.
    assert not np.allclose(depth_image_to_metres(got["front"][1][-1]), depth_image_to_metres(got["rear"][1][-1]),
                           equal_nan=True)


def test_drifting_odometry_under_a_simulated_slam_and_its_pose_graph():
    """odometry_drift: odom -> base_link is the truth seen through the drift walked so far,
    map -> odom is the SLAM correction of the last renewal, and each renewal publishes the true
    trajectory, one node a second, on pose_graph."""
    from nav_msgs.msg import Path
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.sim_camera import SimCameraNode, SimWorld, parse_drift
    from viewseg_ros.tf_buffer import make_transform

    assert parse_drift("") is None and parse_drift("0.05, 2") == (0.05, 2.0)
    for bad in ("0.05", "a,b", "-1,0"):
        with pytest.raises(ValueError, match="odometry_drift"):
            parse_drift(bad)
    world = SimWorld.create(2, period_s=10.0)
    length = float(np.sum(np.linalg.norm(np.diff(world.xy, axis=0), axis=1)))
    assert world.distance(0.0) == 0.0
    assert world.distance(5.0) == pytest.approx(length) and world.distance(10.0) == pytest.approx(2 * length)
    assert world.distance(12.5) == pytest.approx(2 * length + world.distance(2.5))
    np.testing.assert_allclose(world.odometry_drift(5.0, 0.1, 0.0)[:2, 3], [0.1 * length / np.sqrt(2)] * 2)

    g = Graph()
    try:
        sim = g.add(SimCameraNode(context=g.context, namespace="drift", parameter_overrides=params({
            "seed": 2, "rate": 5.0, "width": 16, "height": 12, "period_s": 10.0, "publish_depth": False,
            "odometry_drift": "0.05,2.0", "pose_graph_period_s": 1.0})))
        tf, graphs = [], []
        g.client.create_subscription(TFMessage, "/tf", tf.append, 100)
        g.client.create_subscription(Path, "/drift/pose_graph", graphs.append,
                                     QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: len(graphs) >= 2, 20.0, "two pose graphs")
        sim.timer.cancel()
        correction = sim.last_correction_ns
    finally:
        g.close()

    def matrix(t):
        return make_transform((t.transform.translation.x, t.transform.translation.y, t.transform.translation.z),
                              (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                               t.transform.rotation.w))

    for message in tf:
        by_child = {t.child_frame_id: t for t in message.transforms}
        assert set(by_child) == {"odom", "base_link"} and by_child["odom"].header.frame_id == "map"
        stamp = time_to_ns(by_child["base_link"].header.stamp)
        truth_pose = sim.world.base_pose((stamp - sim.start_ns) / 1e9)
        np.testing.assert_allclose(matrix(by_child["base_link"]), np.linalg.inv(sim.drift_at(stamp)) @ truth_pose,
                                   atol=1e-6)
    np.testing.assert_allclose(matrix(by_child["odom"]), sim.drift_at(correction), atol=1e-6)
    assert np.linalg.norm(sim.drift_at(correction)[:3, 3]) > 0.01   # the robot walked: odometry drifted
    nodes = graphs[-1].poses
    stamps = [time_to_ns(p.header.stamp) for p in nodes]
    assert len(nodes) >= 2 and all(b - a >= 10**9 for a, b in zip(stamps, stamps[1:]))
    for node, stamp in zip(nodes, stamps):
        truth_pose = sim.world.base_pose((stamp - sim.start_ns) / 1e9)
        np.testing.assert_allclose([node.pose.position.x, node.pose.position.y], truth_pose[:2, 3], atol=1e-9)


def test_a_lidar_above_the_camera_publishes_sweeps_that_register_onto_the_cameras_truth():
    """``lidar_beams``: one sweep per frame on ``points`` in ``lidar`` (level, 15 cm above the
    camera on /tf_static), which, moved into the camera and z-buffered as viewseg_node does,
    gives the ray-cast depth of the camera's view on the scan lines."""
    from sensor_msgs.msg import PointCloud2
    from tf2_msgs.msg import TFMessage
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from viewseg_core.data.synth.render import render
    from viewseg_core.depth_registration import register_points
    from viewseg_ros.conversions import point_cloud_xyz
    from viewseg_ros.sim_camera import SimCameraNode
    from viewseg_ros.tf_buffer import make_transform

    g = Graph()
    try:
        sim = g.add(SimCameraNode(context=g.context, namespace="sim_lidar", parameter_overrides=params({
            "seed": 2, "rate": 5.0, "width": W, "height": H, "lidar_beams": 16, "publish_depth": False})))
        clouds, statics = [], []
        g.client.create_subscription(PointCloud2, "/sim_lidar/points", clouds.append, qos_profile_sensor_data)
        g.client.create_subscription(TFMessage, "/tf_static", statics.append, QoSProfile(
            depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: clouds and statics, 20.0, "a sweep and the static TF")
        sim.timer.cancel()
    finally:
        g.close()
    cloud = clouds[0]
    assert cloud.header.frame_id == "lidar" and cloud.width > 16 * 300      # 16 x 360 firings, most return
    mount = {t.child_frame_id: make_transform([t.transform.translation.x, t.transform.translation.y,
                                               t.transform.translation.z],
                                              [t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                                               t.transform.rotation.w]) for m in statics for t in m.transforms}
    lidar_in_base = mount["lidar"]
    np.testing.assert_allclose(lidar_in_base[:3, :3], np.eye(3))              # level, REP 103 like base_link
    np.testing.assert_allclose(lidar_in_base[:3, 3], sim.mount[:3, 3] + [0, 0, 0.15], atol=1e-9)
    stamp = time_to_ns(cloud.header.stamp)
    depth = register_points(point_cloud_xyz(cloud), sim.K, (H, W), np.linalg.inv(sim.mount) @ lidar_in_base)
    true = render(sim.scene, sim.K, sim.pose_at(stamp), H, W).depth
    hit = np.isfinite(depth) & np.isfinite(true)
    assert 0.05 < hit.mean() < 0.5                                            # scan lines, not an image
    assert (np.abs(depth[hit] - true[hit]) <= 0.05 * true[hit]).mean() > 0.9


def test_a_lidar_sweep_over_time_carries_each_points_time_and_deskews_onto_the_truth():
    """``lidar_sweep_s``: the sweep takes 0.1 s from the frame's stamp while the robot walks,
    the cloud has a float32 ``time`` per point, and placed slice by slice with the robot's pose
    at those times (as viewseg_node does through TF) it registers onto the camera's ray-cast
    depth at the stamp."""
    from sensor_msgs.msg import PointCloud2

    from viewseg_core.data.synth.render import render
    from viewseg_core.depth_registration import register_points
    from viewseg_core.lidar_deskew import place_cloud
    from viewseg_ros.conversions import point_cloud_xyzt
    from viewseg_ros.sim_camera import SimCameraNode

    g = Graph()
    try:
        sim = g.add(SimCameraNode(context=g.context, namespace="sim_sweep", parameter_overrides=params({
            "seed": 2, "rate": 5.0, "width": W, "height": H, "lidar_beams": 16, "lidar_sweep_s": 0.1,
            "publish_depth": False})))
        clouds = []
        g.client.create_subscription(PointCloud2, "/sim_sweep/points", clouds.append, qos_profile_sensor_data)
        wait_for(lambda: clouds, 20.0, "a sweep")
        sim.timer.cancel()
    finally:
        g.close()
    cloud = clouds[0]
    stamp = time_to_ns(cloud.header.stamp)
    points, sweep = point_cloud_xyzt(cloud)
    offsets = sweep.offsets(stamp)
    assert sweep.field == "time" and 0.0 <= offsets.min() < 0.001 and 0.099 < offsets.max() < 0.1
    pose_at = lambda ns: sim.world.base_pose((ns - sim.start_ns) / 1e9) @ sim.lidar_mount  # noqa: E731
    placed, slices, why = place_cloud(points, offsets, stamp, pose_at)
    assert why is None and slices == 20
    camera = sim.pose_at(stamp)
    depth = register_points(placed, sim.K, (H, W), np.linalg.inv(camera))
    true = render(sim.scene, sim.K, camera, H, W).depth
    hit = np.isfinite(depth) & np.isfinite(true)
    assert 0.05 < hit.mean() < 0.5
    assert (np.abs(depth[hit] - true[hit]) <= 0.05 * true[hit]).mean() > 0.9
    rigid = register_points(place_cloud(points, None, stamp, pose_at)[0], sim.K, (H, W), np.linalg.inv(camera))
    both = hit & np.isfinite(rigid)
    # The walk moves the robot during the sweep: placed with the stamp's pose alone the same
    # points lie further off the truth than the deskewed ones, whose error is the 2 cm range
    # noise and the pixel grid.
    deskewed_error, rigid_error = np.abs(depth[both] - true[both]).mean(), np.abs(rigid[both] - true[both]).mean()
    assert deskewed_error < 0.6 * rigid_error, (deskewed_error, rigid_error)
    bad = Graph()
    try:
        with pytest.raises(Exception, match="lidar_sweep_s must be in"):
            bad.add(SimCameraNode(context=bad.context, namespace="sim_bad", parameter_overrides=params({
                "lidar_beams": 16, "lidar_sweep_s": 2.0})))
    finally:
        bad.close()


def test_a_walker_ahead_of_the_robot_is_in_the_images_depth():
    """``walker_lead_s``: a person walks the robot's walk 1.5 s ahead of it. Each frame's clean
    depth is the ray-cast truth of the room with the person where it stood at the frame's
    stamp (``scene_at``); in the first frames (the first 0.8 s of room 2's walk) the person is
    in view, metres nearer than the wall behind it. A lead of at least period_s is refused."""
    from viewseg_core.classes import CLASS_NAMES
    from viewseg_core.data.synth.render import render
    from viewseg_ros.sim_camera import WALKER_RADIUS_M, SimCameraNode

    sim, pairs = frames_from(sensor=False, count=2, namespace="sim_walker", walker_lead_s=1.5)
    assert pairs
    in_view = 0
    for _, depth_msg in pairs:
        stamp = time_to_ns(depth_msg.header.stamp)
        scene = sim.scene_at(stamp)
        assert scene.num_primitives == sim.scene.num_primitives + 1
        assert scene.label[-1] == CLASS_NAMES.index("person") and scene.half[-1, 0] == WALKER_RADIUS_M
        measured = depth_image_to_metres(depth_msg)
        true = render(scene, sim.K, sim.pose_at(stamp), H, W).depth
        both = np.isfinite(true) & (true < 65.0)
        np.testing.assert_allclose(measured[both], np.round(true[both] * 1000) / 1000, atol=1e-6)
        empty_room = render(sim.scene, sim.K, sim.pose_at(stamp), H, W).depth
        walker = both & (measured < empty_room - 0.5)
        in_view += walker.mean() > 0.05
    assert in_view, "the walker was in none of the first frames"
    g = Graph()
    try:
        with pytest.raises(ValueError, match=r"walker_lead_s must be in \[0, period_s\)"):
            SimCameraNode(context=g.context, namespace="sim_walker_bad", parameter_overrides=params({
                "walker_lead_s": 30.0}))
    finally:
        g.close()
