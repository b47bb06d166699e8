"""Bag import on bags written with rosbags (sqlite3 and mcap): poses interpolated from /tf and
/tf_static equal the analytic trajectory, keyframes subsample as the buffer would, labels and
depth pair by stamp, pseudo-labels say so, and bad bags fail with clear errors."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from viewseg_core.cli import main as cli_main
from viewseg_core.data.scene_folder import SceneFolder
from viewseg_ros.bag_import import COLOR_ENCODINGS, BagImportConfig, import_bag
from viewseg_ros.keyframes import KeyframeConfig

TS = get_typestore(Stores.ROS2_KILTED)
T0 = 1_700_000_000 * 10**9  # ns: a realistic wall-clock epoch
H, W = 12, 16
K = np.array([[20.0, 0.0, 7.5], [0.0, 20.0, 5.5], [0.0, 0.0, 1.0]])
IMAGE_TIMES = [0.05 + 0.2 * i for i in range(12)]  # s; the first precedes any TF: skipped
TF_TIMES = [0.1 * i for i in range(1, 31)]  # 10 Hz from 0.1 s to 3.0 s
# base_link -> camera_optical: 10 cm ahead, 50 cm up, optical axes (z forward, x right, y down).
DEPTH_FRAME = "depth_optical"
DEPTH_K = np.array([[10.0, 0.0, 3.5], [0.0, 10.0, 2.5], [0.0, 0.0, 1.0]])  # 8x6
COLOUR_FROM_DEPTH = np.eye(4)
COLOUR_FROM_DEPTH[0, 3] = 0.05
CAMERA_IN_BASE = np.array([[0, 0, 1, 0.1], [-1, 0, 0, 0], [0, -1, 0, 0.5], [0, 0, 0, 1]], float)


def base_in_map(t: float) -> np.ndarray:
    """Straight line at constant speed with a constant yaw rate: lerp + slerp reproduce it exactly."""
    yaw = 0.3 * t
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0, 1.0 + 0.5 * t], [s, c, 0, 0.2 * t], [0, 0, 1, 0], [0, 0, 0, 1]])


def expected_c2w(t: float) -> np.ndarray:
    return base_in_map(t) @ CAMERA_IN_BASE


def _stamp(t: float):
    ns = T0 + int(round(t * 1e9))
    return TS.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)


def _header(t: float, frame: str):
    return TS.types["std_msgs/msg/Header"](stamp=_stamp(t), frame_id=frame)


def _transform(matrix: np.ndarray, t: float, parent: str, child: str):
    from viewseg_ros.tf_buffer import matrix_to_quaternion

    types = TS.types
    q = matrix_to_quaternion(matrix[:3, :3])
    return types["geometry_msgs/msg/TransformStamped"](
        header=_header(t, parent), child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=matrix[0, 3], y=matrix[1, 3], z=matrix[2, 3]),
            rotation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))


def _image(array: np.ndarray, encoding: str, t: float, pad: int = 0):
    """rosbags Image from numpy, through the project's own rclpy-free byte layout."""
    itemsize = array.dtype.itemsize
    channels = 1 if array.ndim == 2 else array.shape[2]
    row = array.shape[1] * channels * itemsize
    rows = np.zeros((array.shape[0], row + pad), np.uint8)
    rows[:, :row] = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).view(np.uint8).reshape(
        array.shape[0], row)
    return TS.types["sensor_msgs/msg/Image"](
        header=_header(t, "camera_optical"), height=array.shape[0], width=array.shape[1], encoding=encoding,
        is_bigendian=0, step=row + pad, data=rows.reshape(-1))


def _camera_info(t: float, d=None, new_K=None, K_override=None, size=(H, W), frame="camera_optical", rotation=None):
    """A calibrated camera: pinhole K (d = 0, p = [K | 0]) unless ``d`` and ``new_K`` say otherwise."""
    types = TS.types
    k = K if K_override is None else K_override
    p = np.concatenate([k if new_K is None else new_K, np.zeros((3, 1))], 1).reshape(-1)
    return types["sensor_msgs/msg/CameraInfo"](
        header=_header(t, frame), height=size[0], width=size[1], distortion_model="plumb_bob",
        d=np.zeros(5) if d is None else np.asarray(d, np.float64), k=k.reshape(-1),
        r=(np.eye(3) if rotation is None else np.asarray(rotation, np.float64)).reshape(-1), p=p,
        binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _compressed_image(rgb: np.ndarray, t: float):
    """image_transport's ``compressed`` (PNG: lossless) of an RGB frame."""
    import cv2

    return TS.types["sensor_msgs/msg/CompressedImage"](
        header=_header(t, "camera_optical"), format="rgb8; png compressed bgr8",
        data=np.frombuffer(cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes(), np.uint8))


def _compressed_depth(metres: np.ndarray, t: float):
    """image_transport's ``compressedDepth`` of 16UC1 millimetres: its 12-byte header, then a 16-bit PNG."""
    import struct

    import cv2

    mm = np.where(np.isfinite(metres) & (metres > 0), np.round(metres * 1000), 0).astype(np.uint16)
    payload = struct.pack("<iff", 0, 0.0, 0.0) + cv2.imencode(".png", mm)[1].tobytes()
    return TS.types["sensor_msgs/msg/CompressedImage"](header=_header(t, "camera_optical"),
                                                      format="16UC1; compressedDepth png",
                                                      data=np.frombuffer(payload, np.uint8))


def bayer_rggb(rgb: np.ndarray) -> np.ndarray:
    """[H, W] the raw sensor image of an RGGB Bayer camera that saw ``rgb``."""
    mosaic = rgb[:, :, 1].copy()
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return mosaic


def rgb_of(i: int) -> np.ndarray:
    return ((np.arange(H * W * 3).reshape(H, W, 3) * (i + 1)) % 256).astype(np.uint8)


def _bad_image(kind: str, i: int, t: float):
    """A colour image a real driver might emit that cannot be used: an encoding viewseg does not
    decode (``nv21``), or (``short``) fewer data bytes than step x height."""
    msg = _image(rgb_of(i), "rgb8", t, pad=3)
    if kind == "nv21":
        msg.encoding = "nv21"
        msg.step = W * 2
        msg.data = msg.data[: W * 2 * H]
    else:
        msg.data = msg.data[: len(msg.data) // 2]
    return msg


def write_bag(path: Path, storage: StoragePlugin, *, semantic=True, depth_encoding="32FC1",
              image_encoding="rgb8", bad: dict[int, str] | None = None, distortion=None, new_K=None,
              compressed: bool = False, unaligned: bool = False, depth_distortion=None, depth_new_K=None,
              rotation=None, depth_of: dict[int, np.ndarray] | None = None) -> Path:
    """A small robot recording: /tf (10 Hz), /tf_static once, images + CameraInfo + labels + depth at 5 Hz.

    ``bad``: image index -> kind of :func:`_bad_image` to record instead of that image;
    ``distortion``, ``new_K``: the CameraInfo's ``d`` and the pinhole of its ``p``; ``compressed``:
    colour and depth as image_transport's compressed (PNG) and compressedDepth record them;
    ``unaligned``: depth from a camera of its own (DEPTH_FRAME, DEPTH_K, 8x6, 5 cm to the right)
    with its CameraInfo on /camera/depth/camera_info, as a RealSense without align_depth;
    ``depth_distortion``, ``depth_new_K``: that CameraInfo's ``d`` and ``p`` (an Azure Kinect's raw depth);
    ``rotation``: the colour CameraInfo's ``r`` (a stereo pair's rectification rotation);
    ``depth_of``: image index -> [H, W] metres recorded instead of the flat 1 + i."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        def conn(topic, msgtype):
            return writer.add_connection(topic, msgtype, typestore=TS)

        tf, tf_static = conn("/tf", "tf2_msgs/msg/TFMessage"), conn("/tf_static", "tf2_msgs/msg/TFMessage")
        image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        image = conn("/camera/image", image_type)
        info = conn("/camera/camera_info", "sensor_msgs/msg/CameraInfo")
        labels = conn("/camera/semantic", "sensor_msgs/msg/Image") if semantic else None
        depth = conn("/camera/depth", image_type)
        statics = [_transform(CAMERA_IN_BASE, 0.0, "base_link", "camera_optical")]
        if unaligned:
            statics.append(_transform(COLOUR_FROM_DEPTH, 0.0, "camera_optical", DEPTH_FRAME))
            depth_info = conn("/camera/depth/camera_info", "sensor_msgs/msg/CameraInfo")
        events = [(0.0, tf_static, TS.types["tf2_msgs/msg/TFMessage"](transforms=statics))]
        events += [(t, tf, TS.types["tf2_msgs/msg/TFMessage"](
            transforms=[_transform(base_in_map(t), t, "map", "base_link")])) for t in TF_TIMES]
        for i, t in enumerate(IMAGE_TIMES):
            rgb = rgb_of(i)
            pixels = rgb[:, :, ::-1] if image_encoding == "bgr8" else bayer_rggb(rgb) if image_encoding == "bayer_rggb8" \
                else rgb
            colour = _bad_image(bad[i], i, t) if bad and i in bad else _image(pixels, image_encoding, t, pad=3)
            if compressed:
                colour = _compressed_image(rgb, t)
            events.append((t + 0.001, image, colour))
            events.append((t + 0.001, info, _camera_info(t, distortion, new_K, rotation=rotation)))
            if labels is not None:
                ids = np.full((H, W), i % 37, np.uint8)
                ids[0, :] = 255
                ids[1, 0] = 200  # not a class: becomes ignore
                events.append((t + 0.002, labels, _image(ids, "mono8", t)))
            metres = np.full((6, 8) if unaligned else (H, W), 1.0 + i, np.float32)
            metres[2, 2] = 0.0  # unknown
            if depth_of is not None:
                metres = depth_of[i]
            raw = metres if depth_encoding == "32FC1" else (metres * 1000).astype(np.uint16)
            depth_msg = _compressed_depth(metres, t + 0.004) if compressed else _image(raw, depth_encoding, t + 0.004)
            if unaligned:
                depth_msg.header.frame_id = DEPTH_FRAME
                events.append((t + 0.001, depth_info, _camera_info(t, depth_distortion, depth_new_K, K_override=DEPTH_K,
                                                                   size=(6, 8), frame=DEPTH_FRAME)))
            events.append((t + 0.003, depth, depth_msg))  # 4 ms off: paired
        for t, connection, msg in sorted(events, key=lambda e: e[0]):
            writer.write(connection, T0 + int(round(t * 1e9)), TS.serialize_cdr(msg, connection.msgtype))
    return path


def config(**changes) -> BagImportConfig:
    args = dict(image_topic="/camera/image", camera_info_topic="/camera/camera_info", fixed_frame="map",
                semantic_topic="/camera/semantic", depth_topic="/camera/depth",
                keyframes=KeyframeConfig(min_translation=0.0, min_rotation_deg=0.0, min_interval_s=0.0))
    args.update(changes)
    return BagImportConfig(**args)


def expected_labels_of(i: int) -> np.ndarray:
    ids = np.full((H, W), i % 37, np.uint8)
    ids[0, :] = 255
    ids[1, 0] = 255
    return ids


def expected_depth_of(i: int) -> np.ndarray:
    metres = np.full((H, W), 1.0 + i, np.float32)
    metres[2, 2] = np.nan
    return metres


@pytest.mark.parametrize("storage, depth_encoding, image_encoding", [
    (StoragePlugin.SQLITE3, "32FC1", "rgb8"), (StoragePlugin.MCAP, "16UC1", "bgr8")], ids=["sqlite3", "mcap"])
def test_poses_labels_depth_round_trip(tmp_path, storage, depth_encoding, image_encoding):
    bag = write_bag(tmp_path / "bag", storage, depth_encoding=depth_encoding, image_encoding=image_encoding)
    report = import_bag(bag, tmp_path / "scene", config())
    assert report.images == 12 and report.keyframes == 11
    assert list(report.skipped.values()) == [1] and "no TF" in next(iter(report.skipped))
    assert report.label_source == "topic:/camera/semantic" and not report.pseudo_labels
    scene = SceneFolder(tmp_path / "scene")
    assert len(scene) == 11 and scene.meta["pseudo_labels"] is False
    for index in range(len(scene)):
        i = index + 1  # image 0 had no TF
        view = scene.load_view(index)
        assert view.stamp == pytest.approx(T0 / 1e9 + IMAGE_TIMES[i], abs=1e-6)
        np.testing.assert_allclose(view.c2w, expected_c2w(IMAGE_TIMES[i]), atol=1e-9)
        np.testing.assert_array_equal(view.K, K)
        np.testing.assert_array_equal(view.rgb, rgb_of(i))
        np.testing.assert_array_equal(view.labels, expected_labels_of(i))
        np.testing.assert_allclose(view.depth, expected_depth_of(i), rtol=1e-6)
    assert "semantic ids >= 37 set to ignore" in report.summary()


# A LiDAR on the robot: 80 cm up, 10 cm ahead, level; its scans are stamped 30 ms after the
# images, and the robot moves (0.5 m/s, 0.3 rad/s) in between.
LIDAR_IN_BASE = np.array([[1, 0, 0, 0.1], [0, 1, 0, 0], [0, 0, 1, 0.8], [0, 0, 0, 1]], float)
SCAN_LAG_S = 0.03
SCAN_ROWS = range(0, H, 3)   # the pixel rows the scan's points fall on (centres), every column
SCAN_DEPTH = 2.0


def _cloud(points: np.ndarray, t: float, frame: str = "lidar", times_ns: np.ndarray | None = None):
    """rosbags PointCloud2 of [N, 3] points: x, y, z float32; with ``times_ns`` also an Ouster
    driver's uint32 ``t``, nanoseconds after the stamp."""
    types = TS.types
    names = ["x", "y", "z"] + ([] if times_ns is None else ["t"])
    fields = [types["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=6 if n == "t" else 7, count=1)
              for i, n in enumerate(names)]
    record = np.zeros(len(points), np.dtype([(n, "<u4" if n == "t" else "<f4") for n in names]))
    for i, n in enumerate("xyz"):
        record[n] = points[:, i]
    if times_ns is not None:
        record["t"] = times_ns
    data = record.view(np.uint8).reshape(-1)
    step = 4 * len(names)
    return types["sensor_msgs/msg/PointCloud2"](header=_header(t, frame), height=1, width=len(points), fields=fields,
                                                is_bigendian=False, point_step=step, row_step=step * len(points),
                                                data=data, is_dense=True)


SWEEP_TIMES_S = np.arange(11) * 0.01   # a swept scan's point times: 0 .. 0.1 s after its stamp


def write_lidar_bag(path: Path, frame: str = "lidar", swept: bool = False, scan_of=None, broken=()) -> Path:
    """TF, images and CameraInfo as write_bag (no labels, no depth image), and a LiDAR scan
    SCAN_LAG_S after each image whose points lie SCAN_DEPTH m ahead of the camera at the
    IMAGE's pose, on the centres of the SCAN_ROWS pixels (``scan_of(i, t)``: instead these
    [N, 4] points of map for image i at t), given in the LiDAR's frame at the SCAN's pose;
    ``swept``: each point taken at its own time after the scan's stamp (SWEEP_TIMES_S in turn,
    in the LiDAR's frame then, with those times in the cloud); the scans of the images in
    ``broken`` lack their z field (a driver's bug)."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        def conn(topic, msgtype):
            return writer.add_connection(topic, msgtype, typestore=TS)

        tf, tf_static = conn("/tf", "tf2_msgs/msg/TFMessage"), conn("/tf_static", "tf2_msgs/msg/TFMessage")
        image, info = conn("/camera/image", "sensor_msgs/msg/Image"), conn("/camera/camera_info",
                                                                          "sensor_msgs/msg/CameraInfo")
        points = conn("/lidar/points", "sensor_msgs/msg/PointCloud2")
        statics = [_transform(CAMERA_IN_BASE, 0.0, "base_link", "camera_optical"),
                   _transform(LIDAR_IN_BASE, 0.0, "base_link", "lidar")]
        events = [(0.0, tf_static, TS.types["tf2_msgs/msg/TFMessage"](transforms=statics))]
        events += [(t, tf, TS.types["tf2_msgs/msg/TFMessage"](
            transforms=[_transform(base_in_map(t), t, "map", "base_link")])) for t in TF_TIMES]
        v, u = np.meshgrid(np.array(SCAN_ROWS, float), np.arange(W, dtype=float), indexing="ij")
        rays = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=-1) @ np.linalg.inv(K).T
        camera_points = np.concatenate([rays * SCAN_DEPTH, np.ones((len(rays), 1))], axis=1)   # z = SCAN_DEPTH
        for i, t in enumerate(IMAGE_TIMES):
            events.append((t + 0.001, image, _image(rgb_of(i), "rgb8", t)))
            events.append((t + 0.001, info, _camera_info(t)))
            scan_t = t + SCAN_LAG_S
            world = camera_points @ expected_c2w(t).T if scan_of is None else scan_of(i, t)
            if not swept:
                in_lidar = world @ np.linalg.inv(base_in_map(scan_t) @ LIDAR_IN_BASE).T
                events.append((scan_t, points, _cloud(in_lidar[:, :3], scan_t, frame)))
                continue
            times = SWEEP_TIMES_S[np.arange(len(world)) % len(SWEEP_TIMES_S)]
            in_lidar = np.stack([np.linalg.inv(base_in_map(scan_t + tau) @ LIDAR_IN_BASE) @ point
                                 for point, tau in zip(world, times)])
            cloud = _cloud(in_lidar[:, :3], scan_t, frame, np.round(times * 1e9).astype(np.uint32))
            if i in broken:
                cloud.fields = [f for f in cloud.fields if f.name != "z"]
            events.append((scan_t, points, cloud))
        for t, connection, msg in sorted(events, key=lambda e: e[0]):
            writer.write(connection, T0 + int(round(t * 1e9)), TS.serialize_cdr(msg, connection.msgtype))
    return path


def test_a_lidar_scan_is_registered_into_each_keyframe_from_its_own_stamps_pose(tmp_path):
    bag = write_lidar_bag(tmp_path / "bag")
    report = import_bag(bag, tmp_path / "scene", config(semantic_topic=None, depth_topic=None, no_labels=True,
                                                        pointcloud_topic="/lidar/points"))
    assert report.keyframes == 11, report.summary()
    scene = SceneFolder(tmp_path / "scene")
    scanned = np.zeros((H, W), bool)
    scanned[list(SCAN_ROWS)] = True
    for index in range(len(scene)):
        depth = scene.load_view(index).depth
        np.testing.assert_array_equal(np.isfinite(depth), scanned)       # one pixel per point, nothing between
        # Moved with the pose at the scan's stamp, then into the camera at the image's: the plane
        # 2 m ahead to a micrometre. (Posed at the image's stamp instead, the 30 ms of driving at
        # 0.5 m/s and 0.3 rad/s would put it centimetres off.)
        np.testing.assert_allclose(depth[scanned], SCAN_DEPTH, atol=1e-5)


def test_a_sweep_with_per_point_times_is_deskewed_through_the_bags_tf(tmp_path):
    """Each point of the scan taken at its own time over 0.1 s (Ouster's uint32 ``t``) while
    the robot drives and turns: each time's points moved with TF at that time land on the
    plane to a micrometre; placed with the scan's stamp alone (``--pointcloud-time-field ''``)
    they miss it by centimetres."""
    bag = write_lidar_bag(tmp_path / "bag", swept=True)
    errors = {}
    for time_field in ("auto", ""):
        out = tmp_path / f"scene_{time_field or 'rigid'}"
        report = import_bag(bag, out, config(semantic_topic=None, depth_topic=None, no_labels=True,
                                             pointcloud_topic="/lidar/points", pointcloud_time_field=time_field))
        assert report.keyframes == 11 and not report.warnings, report.summary()
        scene = SceneFolder(out)
        errors[time_field] = max(np.nanmax(np.abs(scene.load_view(i).depth - SCAN_DEPTH)) for i in range(len(scene)))
    assert errors["auto"] < 1e-5 and errors[""] > 0.01, errors


WALL_X = 6.0   # m: the wall of write_wall_lidar_bag, the plane x = WALL_X of map


def wall_points(c2w: np.ndarray, rows) -> np.ndarray:
    """[N, 4] homogeneous points of map where the camera at ``c2w`` sees the wall x = WALL_X
    through the centres of ``rows``' pixels."""
    v, u = np.meshgrid(np.array(rows, float), np.arange(W, dtype=float), indexing="ij")
    directions = (np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=-1) @ np.linalg.inv(K).T) @ c2w[:3, :3].T
    reach = (WALL_X - c2w[0, 3]) / directions[:, 0]
    return np.concatenate([c2w[:3, 3] + reach[:, None] * directions, np.ones((len(reach), 1))], axis=1)


def write_wall_lidar_bag(path: Path, broken=()) -> tuple[Path, list[np.ndarray]]:
    """write_lidar_bag's robot, images and TF, with swept scans of a fixed wall: scan i
    returns the wall where image i sees it on the rows i % 3, i % 3 + 3, ... (each scan its own
    band, as a LiDAR's rings move over the wall while the robot drives). Returns the bag and
    each scan's points in map, [N, 4]."""
    scans = [wall_points(expected_c2w(t), range(i % 3, H, 3)) for i, t in enumerate(IMAGE_TIMES)]
    return write_lidar_bag(path, swept=True, scan_of=lambda i, t: scans[i], broken=broken), scans


@pytest.mark.parametrize("budget", [None, 100])
def test_accumulated_sweeps_are_registered_as_the_node_registers_them(tmp_path, monkeypatch, budget):
    """--pointcloud-accumulate 0.25: each keyframe takes the scans 0.2 s before and after its
    paired one besides it (0.4 s away: not), each deskewed through the bag's TF: the keyframe's
    depth is exactly the z-buffer of those scans' true wall points seen from the image's pose,
    three bands of rows instead of one. The first scan (before the first transform) is left
    out of the keyframe beside it, with a warning. With a budget for placed clouds of one
    scan's points (``budget``), clouds are placed again as needed, to the same result."""
    from viewseg_core.depth_registration import register_points
    from viewseg_ros import bag_import

    if budget is not None:
        monkeypatch.setattr(bag_import, "PLACED_POINTS_BUDGET", budget)

    bag, scans = write_wall_lidar_bag(tmp_path / "bag")
    out = tmp_path / "scene"
    report = import_bag(bag, out, config(semantic_topic=None, depth_topic=None, no_labels=True,
                                         pointcloud_topic="/lidar/points", pointcloud_accumulate_s=0.25))
    assert report.keyframes == 11, report.summary()
    assert list(report.warnings) == ["accumulated point cloud left out (no TF for the point cloud at its stamp)"]
    assert report.warnings["accumulated point cloud left out (no TF for the point cloud at its stamp)"][0] == 1
    scene = SceneFolder(out)
    assert scene.meta["pointcloud"] == {"topic": "/lidar/points", "accumulate_s": 0.25, "drop_stale": True,
                                        "stale_cell_deg": 2.0, "occlusion_radius": 0}
    assert report.stale_points == 0      # one wall, seen from nearly one place: nothing contradicts it
    for index in range(len(scene)):
        view = scene.load_view(index)
        i = index + 1   # image 0 precedes TF: skipped
        taken = [k for k in (i - 1, i, i + 1) if 1 <= k < len(scans)]
        expected = register_points(np.concatenate([scans[k][:, :3] for k in taken]), K, (H, W),
                                   np.linalg.inv(expected_c2w(IMAGE_TIMES[i])))
        np.testing.assert_array_equal(np.isfinite(view.depth), np.isfinite(expected))
        np.testing.assert_allclose(view.depth[np.isfinite(expected)], expected[np.isfinite(expected)], atol=1e-4)
        assert len(taken) >= 2 and np.isfinite(view.depth).sum() >= 1.5 * W * len(range(0, H, 3))   # one scan's
    paired_only = import_bag(bag, tmp_path / "paired", config(semantic_topic=None, depth_topic=None, no_labels=True,
                                                               pointcloud_topic="/lidar/points"))
    assert paired_only.keyframes == 11 and not paired_only.warnings
    assert max(np.isfinite(SceneFolder(tmp_path / "paired").load_view(j).depth).all(axis=1).sum()
               for j in range(11)) == 4


def test_a_trail_in_an_accumulated_scan_is_left_out_as_the_node_leaves_it(tmp_path):
    """Scan 5 also holds a ghost, half-way along each of scan 6's beams (what someone who
    walked through left). Keyframe 6 accumulates scan 5, but its own scan 6 passed through
    the ghost: its depth is the z-buffer of the three scans' true wall points, as without the
    ghost, and the report counts the ghost's points left out. With --pointcloud-keep-stale the
    ghost wins pixels of keyframe 6, metres in front of the wall."""
    from viewseg_core.depth_registration import register_points
    from viewseg_ros import bag_import

    scans = [wall_points(expected_c2w(t), range(i % 3, H, 3)) for i, t in enumerate(IMAGE_TIMES)]
    scan_t = IMAGE_TIMES[6] + SCAN_LAG_S + float(np.median(SWEEP_TIMES_S))   # scan 6's middle
    origin = (base_in_map(scan_t) @ LIDAR_IN_BASE)[:, 3]
    ghost = origin + 0.5 * (scans[6] - origin)
    bag = write_lidar_bag(tmp_path / "bag", swept=True,
                          scan_of=lambda i, t: np.concatenate([scans[i], ghost]) if i == 5 else scans[i])
    expected = register_points(np.concatenate([scans[k][:, :3] for k in (5, 6, 7)]), K, (H, W),
                               np.linalg.inv(expected_c2w(IMAGE_TIMES[6])))
    depths = {}
    for keep in (False, True):
        out = tmp_path / f"scene_{keep}"
        report = import_bag(bag, out, config(semantic_topic=None, depth_topic=None, no_labels=True,
                                             pointcloud_topic="/lidar/points", pointcloud_accumulate_s=0.25,
                                             pointcloud_drop_stale=not keep))
        assert report.keyframes == 11, report.summary()
        depths[keep] = SceneFolder(out).load_view(5).depth   # image 6 (image 0 precedes TF)
        if keep:
            assert report.stale_points == 0 and "stale" not in report.summary()
        else:
            assert report.stale_points >= len(ghost), report.summary()
            assert f"left out as stale (contradicted by the keyframe's own cloud): {report.stale_points}" in \
                report.summary()
    np.testing.assert_array_equal(np.isfinite(depths[False]), np.isfinite(expected))
    np.testing.assert_allclose(depths[False][np.isfinite(expected)], expected[np.isfinite(expected)], atol=1e-4)
    nearer = depths[True] < np.nan_to_num(expected, nan=np.inf) - 1.0
    assert nearer.sum() >= W, nearer.sum()
    with pytest.raises(ValueError, match=r"pointcloud_stale_cell_deg must be in \(0, 10\]"):
        config(depth_topic=None, pointcloud_topic="/lidar/points", pointcloud_stale_cell_deg=0.0)
    with pytest.raises(ValueError, match=r"pointcloud_occlusion_radius must be 0-8 pixels"):
        config(depth_topic=None, pointcloud_topic="/lidar/points", pointcloud_occlusion_radius=9)
    assert bag_import.STALE_CELL_DEG == 2.0


def test_a_broken_cloud_costs_its_own_keyframe_not_those_it_would_join(tmp_path):
    """Scan 5 lacks z: keyframe 5, whose paired cloud it is, is skipped; keyframes 4 and 6
    import without it (a warning each), their depth the z-buffer of the scans they keep."""
    from viewseg_core.depth_registration import register_points

    bag, scans = write_wall_lidar_bag(tmp_path / "bag", broken={5})
    report = import_bag(bag, tmp_path / "scene", config(semantic_topic=None, depth_topic=None, no_labels=True,
                                                        pointcloud_topic="/lidar/points", pointcloud_accumulate_s=0.25))
    assert report.keyframes == 10 and report.skipped["unusable point cloud"] == 1, report.summary()
    assert report.warnings["accumulated point cloud left out (unusable point cloud)"][0] == 2
    scene = SceneFolder(tmp_path / "scene")
    stamps = [round(scene.load_view(j).stamp - T0 / 1e9, 6) for j in range(len(scene))]
    for i in (4, 6):
        depth = scene.load_view(stamps.index(round(IMAGE_TIMES[i], 6))).depth
        expected = register_points(np.concatenate([scans[k][:, :3] for k in (i - 1, i, i + 1) if k != 5]), K, (H, W),
                                   np.linalg.inv(expected_c2w(IMAGE_TIMES[i])))
        np.testing.assert_array_equal(np.isfinite(depth), np.isfinite(expected))


def test_point_cloud_import_refusals(tmp_path):
    bag = write_lidar_bag(tmp_path / "bag", frame="nowhere")
    with pytest.raises(ValueError, match="no keyframes written.*'no TF for the point cloud at its stamp': 11"):
        import_bag(bag, tmp_path / "scene", config(semantic_topic=None, depth_topic=None, no_labels=True,
                                                   pointcloud_topic="/lidar/points"))
    with pytest.raises(ValueError, match="'no point cloud message within 0.02 s of the image': 11"):
        import_bag(write_lidar_bag(tmp_path / "bag2"), tmp_path / "scene2", config(
            semantic_topic=None, depth_topic=None, no_labels=True, pointcloud_topic="/lidar/points",
            pointcloud_sync_tolerance_s=0.02))       # the scans are 30 ms off: none pairs
    with pytest.raises(ValueError, match="both give the keyframes' depth"):
        config(pointcloud_topic="/lidar/points")
    with pytest.raises(ValueError, match="needs --pointcloud-topic"):
        config(pointcloud_accumulate_s=1.0)
    with pytest.raises(ValueError, match=r"pointcloud_accumulate_s must be in \[0, 8\] s"):
        config(depth_topic=None, pointcloud_topic="/lidar/points", pointcloud_accumulate_s=9.0)


def test_a_bayer_camera_imports_demosaiced(tmp_path):
    import cv2

    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP, image_encoding="bayer_rggb8")
    report = import_bag(bag, tmp_path / "scene", config())
    assert report.keyframes == 11 and not report.skipped.get(UNSUPPORTED)
    view = SceneFolder(tmp_path / "scene").load_view(0)
    np.testing.assert_array_equal(view.rgb, cv2.cvtColor(bayer_rggb(rgb_of(1)), cv2.COLOR_BayerBG2RGB))


@pytest.mark.parametrize("lens", ["pinhole", "distorted"])
def test_unaligned_depth_is_registered_through_the_bags_tf(tmp_path, lens):
    from viewseg_core.depth_registration import register_depth
    from viewseg_core.rectify import make_undistorter

    d, new_K = ([-0.3, 0.09, 0.0, 0.0, 0.0], np.array([[8.0, 0.0, 3.5], [0.0, 8.0, 2.5], [0.0, 0.0, 1.0]])) \
        if lens == "distorted" else (None, None)
    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP, unaligned=True, depth_distortion=d, depth_new_K=new_K)
    if lens == "pinhole":  # read as registered depth, every frame is refused for its size
        with pytest.raises(ValueError, match="no keyframes written.*'depth image size differs from the colour "
                                             "image': 11"):
            import_bag(bag, tmp_path / "refused", config())
    report = import_bag(bag, tmp_path / "scene", config(depth_camera_info_topic="/camera/depth/camera_info"))
    assert report.keyframes == 11, report.summary()
    scene = SceneFolder(tmp_path / "scene")
    for index in range(len(scene)):
        i, view = index + 1, scene.load_view(index)
        metres = np.full((6, 8), 1.0 + i, np.float32)
        metres[2, 2] = np.nan
        if lens == "distorted":  # undistorted onto p's pinhole first, by nearest neighbour
            metres = make_undistorter(DEPTH_K, d, "plumb_bob", 8, 6, new_K).depth(metres)
        expected = register_depth(metres, DEPTH_K if new_K is None else new_K, K, (H, W), COLOUR_FROM_DEPTH)
        np.testing.assert_array_equal(np.isnan(view.depth), np.isnan(expected))
        np.testing.assert_allclose(view.depth[np.isfinite(expected)], expected[np.isfinite(expected)], rtol=1e-6)
        assert np.isfinite(expected).mean() > 0.3


def test_compressed_colour_and_depth_import_as_the_raw_topics_do(tmp_path):
    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP, compressed=True)
    report = import_bag(bag, tmp_path / "scene", config())
    assert report.images == 12 and report.keyframes == 11
    scene = SceneFolder(tmp_path / "scene")
    for index in range(len(scene)):
        i, view = index + 1, scene.load_view(index)
        np.testing.assert_array_equal(view.rgb, rgb_of(i))
        np.testing.assert_array_equal(view.labels, expected_labels_of(i))
        np.testing.assert_allclose(view.depth, expected_depth_of(i), rtol=1e-6)


def test_a_camera_with_lens_distortion_is_undistorted_with_its_depth_and_labels(tmp_path):
    from viewseg_core.rectify import make_undistorter

    d = [-0.3, 0.1, 0.002, -0.001, 0.0]
    new_K = np.array([[17.0, 0.0, 7.5], [0.0, 17.0, 5.5], [0.0, 0.0, 1.0]])
    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP, distortion=d, new_K=new_K)
    undistorter = make_undistorter(K, d, "plumb_bob", W, H, new_K)
    report = import_bag(bag, tmp_path / "scene", config())
    assert report.keyframes == 11
    scene = SceneFolder(tmp_path / "scene")
    for index in range(len(scene)):
        i, view = index + 1, scene.load_view(index)
        np.testing.assert_array_equal(view.K, new_K)
        np.testing.assert_array_equal(view.rgb, undistorter.colour(rgb_of(i)))
        np.testing.assert_array_equal(view.labels, undistorter.labels(expected_labels_of(i)))
        np.testing.assert_array_equal(np.isnan(view.depth), np.isnan(undistorter.depth(expected_depth_of(i))))
        np.testing.assert_allclose(view.depth, undistorter.depth(expected_depth_of(i)), rtol=1e-6)
        assert not np.array_equal(view.rgb, rgb_of(i))
    # --rectification none keeps the raw images and k, as before the option existed.
    assert cli_main(["bag2scene", str(bag), "--out", str(tmp_path / "raw"), "--image-topic", "/camera/image",
                     "--camera-info-topic", "/camera/camera_info", "--no-labels", "--min-translation", "0",
                     "--min-rotation", "0", "--min-interval", "0", "--rectification", "none"]) == 0
    raw = SceneFolder(tmp_path / "raw").load_view(0)
    np.testing.assert_array_equal(raw.K, K)
    np.testing.assert_array_equal(raw.rgb, rgb_of(1))


def test_a_rectified_stereo_image_takes_the_pose_turned_by_r(tmp_path):
    from viewseg_core.rectify import rotated_frame

    c, s = math.cos(math.radians(4.0)), math.sin(math.radians(4.0))
    R = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    bag = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, rotation=R)
    import_bag(bag, tmp_path / "scene", config(rectification="rectified"))
    scene = SceneFolder(tmp_path / "scene")
    for index in range(len(scene)):
        view = scene.load_view(index)
        np.testing.assert_allclose(view.c2w, expected_c2w(IMAGE_TIMES[index + 1]) @ np.linalg.inv(rotated_frame(R)),
                                   atol=1e-9)
    # Undistorted (no rotation in the map), the same images keep their frame's pose.
    import_bag(bag, tmp_path / "raw", config(rectification="undistort"))
    np.testing.assert_allclose(SceneFolder(tmp_path / "raw").load_view(0).c2w, expected_c2w(IMAGE_TIMES[1]), atol=1e-9)


def test_a_stamp_offset_takes_the_pose_at_exposure(tmp_path):
    """--image-stamp-offset -0.05: images stamped 50 ms after exposure get the pose of 50 ms
    earlier (lerp + slerp reproduce the analytic motion exactly); their stamps stay the header's."""
    bag = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3)
    import_bag(bag, tmp_path / "scene", config(image_stamp_offset_s=-0.05))
    scene = SceneFolder(tmp_path / "scene")
    for index in range(len(scene)):
        i, view = index + 1, scene.load_view(index)
        np.testing.assert_allclose(view.c2w, expected_c2w(IMAGE_TIMES[i] - 0.05), atol=1e-9)
        assert view.stamp == pytest.approx(T0 / 1e9 + IMAGE_TIMES[i], abs=1e-6)
    with pytest.raises(ValueError, match="image_stamp_offset_s must be a finite number"):
        config(image_stamp_offset_s=float("nan"))


def test_keyframe_thresholds_subsample(tmp_path):
    # Images are 0.2 s apart: the camera moves ~0.11 m (0.539 m/s plus its lever arm) and turns
    # 3.4 deg between images, so a 0.3 m threshold (90 deg: rotation never decides) keeps every
    # third image of those that have TF: images 1, 4, 7, 10.
    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP)
    kf = KeyframeConfig(min_translation=0.3, min_rotation_deg=90.0, min_interval_s=0.0)
    report = import_bag(bag, tmp_path / "scene", config(keyframes=kf, depth_topic=None))
    scene = SceneFolder(tmp_path / "scene")
    stamps = [scene.frames[j].stamp for j in range(len(scene))]
    np.testing.assert_allclose(stamps, [T0 / 1e9 + IMAGE_TIMES[i] for i in (1, 4, 7, 10)], atol=1e-6)
    assert scene.load_depth(0) is None and report.skipped[
        "not a keyframe (too close in pose or time to an earlier one)"] == 7


def test_pseudo_labels_from_a_segmenter(tmp_path, capsys):
    from viewseg_core.model.encoder import build_encoder
    from viewseg_core.model.weights import save_encoder

    ckpt = save_encoder(build_encoder("deeplabv3plus_resnet18", feature_dim=16), tmp_path / "seg.pt")
    bag = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, semantic=False)
    code = cli_main(["bag2scene", str(bag), "--out", str(tmp_path / "scene"), "--image-topic", "/camera/image",
                     "--camera-info-topic", "/camera/camera_info", "--fixed-frame", "map",
                     "--segmenter", str(ckpt), "--min-translation", "0.3"])
    out = capsys.readouterr().out
    assert code == 0 and "PSEUDO-LABELS" in out and "wrote 4 keyframes (of 12 images)" in out
    scene = SceneFolder(tmp_path / "scene")
    assert scene.meta["pseudo_labels"] is True and scene.meta["labels"] == f"pseudo:{ckpt}"
    labels = scene.load_labels(0)
    assert labels.shape == (H, W) and labels.max() < 37


def test_errors(tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, semantic=False)
    with pytest.raises(ValueError, match="no topic '/nope' for --image-topic; the bag has: .*/camera/image"):
        import_bag(bag, tmp_path / "a", config(image_topic="/nope", semantic_topic=None, no_labels=True))
    with pytest.raises(ValueError, match="has type sensor_msgs/msg/Image, expected sensor_msgs/msg/CameraInfo"):
        import_bag(bag, tmp_path / "b", config(camera_info_topic="/camera/image", semantic_topic=None, no_labels=True))
    with pytest.raises(ValueError, match="cannot place camera frame 'camera_optical' in 'odom'"):
        import_bag(bag, tmp_path / "c", config(fixed_frame="odom", semantic_topic=None, no_labels=True))
    with pytest.raises(ValueError, match="no labels: give --semantic-topic, or --segmenter"):
        config(semantic_topic=None)
    with pytest.raises(ValueError, match="no such bag"):
        import_bag(tmp_path / "missing", tmp_path / "d", config())
    code = cli_main(["bag2scene", str(bag), "--out", str(tmp_path / "e"), "--image-topic", "/camera/image",
                     "--camera-info-topic", "/camera/camera_info"])
    assert code == 2 and "no labels" in capsys.readouterr().err
    code = cli_main(["bag2scene", str(bag), "--out", str(tmp_path / "f"), "--image-topic", "/camera/image",
                     "--camera-info-topic", "/camera/camera_info", "--segmenter", str(tmp_path / "none.pt")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- several cameras
REAR_IN_BASE = np.diag([-1.0, -1.0, 1.0, 1.0]) @ CAMERA_IN_BASE  # turned 180 degrees about base_link's z
REAR_K = np.array([[14.0, 0.0, 4.5], [0.0, 14.0, 3.5], [0.0, 0.0, 1.0]])  # 10x8, another lens


LIDAR_RANGES = {"front": 2.0, "rear": 3.0}   # m: where write_two_camera_bag's scans meet each camera's axis


def write_two_camera_bag(path: Path, lidar: bool = False) -> Path:
    """A robot with a front and a rear camera on one trigger (identical stamps), each with labels
    and depth in its namespace (/robot/front/..., /robot/rear/...), poses from /tf as above;
    ``lidar``: also one LiDAR on /lidar/points, a scan with each image holding a point on each
    camera's optical axis, LIDAR_RANGES ahead of it."""
    rear_hw = (8, 10)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        def conn(topic, msgtype):
            return writer.add_connection(topic, msgtype, typestore=TS)

        tf, tf_static = conn("/tf", "tf2_msgs/msg/TFMessage"), conn("/tf_static", "tf2_msgs/msg/TFMessage")
        events = [(0.0, tf_static, TS.types["tf2_msgs/msg/TFMessage"](transforms=[
            _transform(CAMERA_IN_BASE, 0.0, "base_link", "front_optical"),
            _transform(REAR_IN_BASE, 0.0, "base_link", "rear_optical"),
            _transform(LIDAR_IN_BASE, 0.0, "base_link", "lidar")]))]
        if lidar:
            points = conn("/lidar/points", "sensor_msgs/msg/PointCloud2")
            for t in IMAGE_TIMES:
                on_axes = np.stack([base_in_map(t) @ mount @ [0.0, 0.0, LIDAR_RANGES[name], 1.0]
                                    for name, mount in (("front", CAMERA_IN_BASE), ("rear", REAR_IN_BASE))])
                in_lidar = on_axes @ np.linalg.inv(base_in_map(t) @ LIDAR_IN_BASE).T
                events.append((t + 0.002, points, _cloud(in_lidar[:, :3], t)))
        events += [(t, tf, TS.types["tf2_msgs/msg/TFMessage"](
            transforms=[_transform(base_in_map(t), t, "map", "base_link")])) for t in TF_TIMES]
        for name, K_cam, hw in (("front", K, (H, W)), ("rear", REAR_K, rear_hw)):
            topics = {kind: conn(f"/robot/{name}/{kind}", "sensor_msgs/msg/" + ("CameraInfo" if kind == "camera_info"
                                                                                  else "Image"))
                      for kind in ("image", "camera_info", "semantic", "depth")}
            for i, t in enumerate(IMAGE_TIMES):
                rgb, ids, metres = camera_frame_of(name, i, hw)
                messages = {"image": _image(rgb, "rgb8", t), "semantic": _image(ids, "mono8", t),
                            "depth": _image(metres, "32FC1", t + 0.004),
                            "camera_info": _camera_info(t, K_override=K_cam, size=hw, frame=f"{name}_optical")}
                for kind, msg in messages.items():
                    msg.header.frame_id = f"{name}_optical"
                    events.append((t + 0.001, topics[kind], msg))
        for t, connection, msg in sorted(events, key=lambda e: e[0]):
            writer.write(connection, T0 + int(round(t * 1e9)), TS.serialize_cdr(msg, connection.msgtype))
    return path


def camera_frame_of(name: str, i: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, class ids, depth in metres) camera ``name`` recorded at image ``i``: different per camera."""
    offset = 0 if name == "front" else 100
    rgb = ((np.arange(hw[0] * hw[1] * 3).reshape(*hw, 3) * (i + 1) + offset) % 256).astype(np.uint8)
    ids = np.full(hw, (i + (0 if name == "front" else 20)) % 37, np.uint8)
    metres = np.full(hw, 1.0 + i + (0.0 if name == "front" else 0.5), np.float32)
    return rgb, ids, metres


def test_two_cameras_on_one_trigger_import_into_one_scene(tmp_path):
    bag = write_two_camera_bag(tmp_path / "bag")
    # A rate floor of 0.1 s: the rear camera's frames share the front's stamps, and would be
    # refused as too soon if the floor were not per camera.
    two = dict(cameras="/robot/front,/robot/rear", image_topic="image", camera_info_topic="camera_info",
               semantic_topic="semantic", depth_topic="depth",
               keyframes=KeyframeConfig(min_translation=0.0, min_rotation_deg=0.0, min_interval_s=0.1))
    report = import_bag(bag, tmp_path / "scene", config(**two))
    assert report.images == 24 and report.keyframes == 22, report.summary()  # image 0 of each: no TF yet
    scene = SceneFolder(tmp_path / "scene")
    assert scene.meta["cameras"] == ["/robot/front", "/robot/rear"]
    seen = {"front": 0, "rear": 0}
    for index in range(len(scene)):
        view = scene.load_view(index)
        name = view.meta["camera"].rsplit("/", 1)[-1]
        seen[name] += 1
        i = IMAGE_TIMES.index(min(IMAGE_TIMES, key=lambda t: abs(T0 / 1e9 + t - view.stamp)))
        mount = CAMERA_IN_BASE if name == "front" else REAR_IN_BASE
        np.testing.assert_allclose(view.c2w, base_in_map(IMAGE_TIMES[i]) @ mount, atol=1e-9)
        np.testing.assert_array_equal(view.K, K if name == "front" else REAR_K)
        rgb, ids, metres = camera_frame_of(name, i, view.rgb.shape[:2])
        np.testing.assert_array_equal(view.rgb, rgb)
        np.testing.assert_array_equal(view.labels, ids)
        np.testing.assert_allclose(view.depth, metres)
    assert seen == {"front": 11, "rear": 11}
    # From the command line, and an absolute topic with --cameras is refused by name.
    code = cli_main(["bag2scene", str(bag), "--out", str(tmp_path / "cli"), "--cameras", "/robot/front,/robot/rear",
                     "--image-topic", "image", "--camera-info-topic", "camera_info", "--no-labels",
                     "--min-translation", "0", "--min-rotation", "0", "--min-interval", "0.1"])
    assert code == 0 and len(SceneFolder(tmp_path / "cli")) == 22
    with pytest.raises(ValueError, match="--image-topic is '/robot/front/image': with several cameras it must be "
                                         "relative"):
        import_bag(bag, tmp_path / "bad", config(**{**two, "image_topic": "/robot/front/image"}))


def test_one_lidar_gives_every_camera_its_depth(tmp_path):
    """With several --cameras the point cloud topic is the robot's, as the node's is: taken as
    given (absolute), and each camera's keyframes get the scan's point on their own axis."""
    bag = write_two_camera_bag(tmp_path / "bag", lidar=True)
    report = import_bag(bag, tmp_path / "scene", config(
        cameras="/robot/front,/robot/rear", image_topic="image", camera_info_topic="camera_info",
        semantic_topic=None, depth_topic=None, no_labels=True, pointcloud_topic="/lidar/points",
        keyframes=KeyframeConfig(min_translation=0.0, min_rotation_deg=0.0, min_interval_s=0.1)))
    assert report.keyframes == 22, report.summary()
    scene = SceneFolder(tmp_path / "scene")
    for index in range(len(scene)):
        view = scene.load_view(index)
        name = view.meta["camera"].rsplit("/", 1)[-1]
        known = np.isfinite(view.depth)
        assert known.sum() == 1, (name, known.sum())             # the other camera's point is behind it
        row, col = np.argwhere(known)[0]
        cx, cy = view.K[0, 2], view.K[1, 2]
        assert abs(row - cy) <= 0.5 and abs(col - cx) <= 0.5        # the principal point's pixel (or its tie)
        assert view.depth[row, col] == pytest.approx(LIDAR_RANGES[name], abs=1e-5)


# --------------------------------------------------------------------------- bad frames, partial output, damaged bags
UNSUPPORTED = f"unsupported colour encoding 'nv21' (supported: {', '.join(COLOR_ENCODINGS)})"


def test_bad_frames_are_skipped_and_counted(tmp_path):
    bag = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, bad={3: "nv21", 6: "short"})
    report = import_bag(bag, tmp_path / "scene", config())
    # 12 images: 0 has no TF, 3 and 6 are bad: 9 keyframes, the others intact.
    assert report.images == 12 and report.keyframes == 9
    assert report.skipped[UNSUPPORTED] == 1 and report.skipped["malformed colour image"] == 1
    summary = report.summary()
    assert f"skipped 1 image(s): {UNSUPPORTED}" in summary
    assert "skipped 1 image(s): malformed colour image (first: " in summary and "data has" in summary
    scene = SceneFolder(tmp_path / "scene")
    expected = [i for i in range(1, 12) if i not in (3, 6)]
    np.testing.assert_allclose([f.stamp for f in scene.frames], [T0 / 1e9 + IMAGE_TIMES[i] for i in expected],
                               atol=1e-6)
    for index, i in enumerate(expected):
        np.testing.assert_array_equal(scene.load_view(index).rgb, rgb_of(i))


def test_an_undecodable_frame_does_not_shadow_the_next_keyframe(tmp_path):
    # With a 0.3 m threshold the keyframes are images 1, 4, 7, 10 (see above). Image 4 cannot be
    # decoded: image 5 takes its place, and the rest shift to 8 and 11.
    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP, bad={4: "nv21"})
    kf = KeyframeConfig(min_translation=0.3, min_rotation_deg=90.0, min_interval_s=0.0)
    report = import_bag(bag, tmp_path / "scene", config(keyframes=kf, depth_topic=None))
    scene = SceneFolder(tmp_path / "scene")
    np.testing.assert_allclose([f.stamp for f in scene.frames], [T0 / 1e9 + IMAGE_TIMES[i] for i in (1, 5, 8, 11)],
                               atol=1e-6)
    assert report.skipped[UNSUPPORTED] == 1


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_output_folder_is_whole_or_absent(tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3)
    out = tmp_path / "scene"
    # A failed import (every image unusable) leaves no folder under any name.
    all_bad = write_bag(tmp_path / "all_bad", StoragePlugin.SQLITE3, bad={i: "nv21" for i in range(12)})
    with pytest.raises(ValueError, match="no keyframes written"):
        import_bag(all_bad, out, config())
    assert not out.exists() and _hidden(tmp_path) == []

    # A killed import's staging folder is removed, with a line saying so, and the import completes.
    stale = tmp_path / ".scene.partial-k1ll3d"
    (stale / "rgb").mkdir(parents=True)
    (stale / "rgb" / "000000.png").write_bytes(b"half")
    assert import_bag(bag, out, config()).keyframes == 11
    assert f"removing {stale}, left by a write that did not finish" in capsys.readouterr().err
    assert _hidden(tmp_path) == [] and len(SceneFolder(out)) == 11

    # Importing again replaces the earlier import entirely (no stale frames from it survive).
    kf = KeyframeConfig(min_translation=0.3, min_rotation_deg=90.0, min_interval_s=0.0)
    assert import_bag(bag, out, config(keyframes=kf)).keyframes == 4
    assert len(SceneFolder(out)) == 4 and len(list((out / "rgb").iterdir())) == 4
    assert _hidden(tmp_path) == []

    # Anything that is not an earlier import is not replaced.
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a scene folder .* refusing to replace it"):
        import_bag(bag, other, config())
    assert [p.name for p in other.iterdir()] == ["todo.txt"]
    code = cli_main(["bag2scene", str(bag), "--out", str(other / "todo.txt"), "--image-topic", "/camera/image",
                     "--camera-info-topic", "/camera/camera_info", "--no-labels"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "exists and is not a folder" in err and "Traceback" not in err


def _cut(bag: Path, tmp_path: Path, name: str, keep) -> Path:
    """A copy of ``bag`` whose storage file lost its end (a recorder killed, a copy cut short)."""
    import shutil

    copy = tmp_path / name
    shutil.copytree(bag, copy)
    (storage,) = [p for p in copy.iterdir() if p.suffix in (".db3", ".mcap")]
    data = storage.read_bytes()
    storage.write_bytes(data[: keep(len(data))])
    return copy


def test_a_bag_that_ends_early_imports_what_is_readable(tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3)
    # The last half page of the sqlite file is gone: the header still opens, reading stops there.
    cut = _cut(bag, tmp_path, "cut", lambda n: n - 2048)
    code = cli_main(["bag2scene", str(cut), "--out", str(tmp_path / "scene"), "--image-topic", "/camera/image",
                     "--camera-info-topic", "/camera/camera_info", "--no-labels", "--min-translation", "0",
                     "--min-rotation", "0", "--min-interval", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning: the bag is unreadable from here on (truncated or damaged); imported what came before" in captured.out
    scene = SceneFolder(tmp_path / "scene")
    assert 1 <= len(scene) <= 11
    for index in range(len(scene)):  # what was imported is right, not approximately right
        i = IMAGE_TIMES.index(min(IMAGE_TIMES, key=lambda t: abs(T0 / 1e9 + t - scene.frames[index].stamp)))
        np.testing.assert_allclose(scene.load_view(index).c2w, expected_c2w(IMAGE_TIMES[i]), atol=1e-9)
        np.testing.assert_array_equal(scene.load_view(index).rgb, rgb_of(i))


@pytest.mark.parametrize("storage, hint", [(StoragePlugin.MCAP, "mcap recover IN.mcap -o OUT.mcap"),
                                           (StoragePlugin.SQLITE3, "sqlite3 IN.db3 .dump | sqlite3 OUT.db3")],
                         ids=["mcap", "sqlite3"])
def test_a_bag_that_cannot_be_opened_fails_with_a_salvage_hint(storage, hint, tmp_path, capsys):
    cut = _cut(write_bag(tmp_path / "bag", storage), tmp_path, "cut", lambda n: n // 2)
    code = cli_main(["bag2scene", str(cut), "--out", str(tmp_path / "scene"), "--image-topic", "/camera/image",
                     "--camera-info-topic", "/camera/camera_info", "--no-labels"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"viewseg bag2scene: error: {cut}: cannot read as a ROS 2 bag: ") and hint in err
    assert not (tmp_path / "scene").exists() and _hidden(tmp_path) == []


def test_an_imported_bag_loads_as_node_keyframes(tmp_path):
    """A bag2scene folder is a keyframe folder (viewseg_ros/keyframe_store.py): it records its
    fixed frame, so a node in that frame takes its views with their poses and exact stamps and
    a node in another frame refuses it."""
    from viewseg_ros.keyframe_store import read_keyframes

    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP)
    report = import_bag(bag, tmp_path / "scene", config())
    stored, note = read_keyframes(tmp_path / "scene", "map")
    assert note == "" and len(stored) == report.keyframes == 11
    for index, item in enumerate(stored):
        i = index + 1  # image 0 had no TF
        assert item.stamp_ns == T0 + round(IMAGE_TIMES[i] * 1e9)
        np.testing.assert_allclose(item.view.c2w, expected_c2w(IMAGE_TIMES[i]), atol=1e-9)
        np.testing.assert_allclose(item.view.depth, expected_depth_of(i), rtol=1e-6)
    with pytest.raises(ValueError, match="holds poses in 'map', but this node's fixed_frame is 'odom'"):
        read_keyframes(tmp_path / "scene", "odom")


def test_an_occlusion_radius_drops_what_a_nearer_measurement_hides_as_the_node_does(tmp_path):
    """--pointcloud-occlusion-radius 1 on scans of a wall that also hold a board 1 m away over
    a few pixels of one scan line: each keyframe's depth is its --pointcloud-occlusion-radius
    0 depth through drop_occluded (the node's order: register, then drop): the wall pixels
    either side of the board on its scan line go (the next scan line is 3 rows away), and where
    the robot has turned and sees the wall slanted, the last pixel of a scan line (the cost)."""
    from viewseg_core.depth_registration import drop_occluded

    def scan_of(i, t):
        c2w = expected_c2w(t)
        near = wall_points(c2w, [SCAN_ROWS[0]])[4:9]                 # five pixels of the first scan line
        near[:, :3] = c2w[:3, 3] + (near[:, :3] - c2w[:3, 3]) * (1.0 / (WALL_X - c2w[0, 3]))
        return np.concatenate([wall_points(c2w, SCAN_ROWS), near])

    bag = write_lidar_bag(tmp_path / "bag", scan_of=scan_of)
    depths = {}
    for radius in (0, 1):
        out = tmp_path / f"scene_{radius}"
        report = import_bag(bag, out, config(semantic_topic=None, depth_topic=None, no_labels=True,
                                             pointcloud_topic="/lidar/points", pointcloud_occlusion_radius=radius))
        assert report.keyframes == 11, report.summary()
        assert SceneFolder(out).meta["pointcloud"]["occlusion_radius"] == radius
        depths[radius] = [SceneFolder(out).load_view(j).depth for j in range(11)]
    for kept, dropped in zip(depths[0], depths[1]):
        np.testing.assert_array_equal(dropped, drop_occluded(kept, 1))
        gone = np.isfinite(kept) & ~np.isfinite(dropped)
        assert gone[SCAN_ROWS[0], [3, 9]].all()               # the wall either side of the board
        gone[SCAN_ROWS[0], [3, 9]] = False
        assert not gone[:, 1:-1].any()                         # else only a slanted wall's last pixel


# --------------------------------------------------------------------------- scene change
WALL_X = 5.0                                       # m: a wall across the room, ahead of the robot
PERSON = dict(x=3.5, y=(-0.2, 1.2), z=(0.0, 1.0))  # a panel 1.5 m in front of it, where someone stands
PERSON_IMAGES = (3, 4, 5)                          # the images taken while they stood there


def room_depth(c2w: np.ndarray, person: bool) -> np.ndarray:
    """[H, W] planar depth of the wall (and the person) ray-cast from the camera ``c2w``."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T      # planar: z = 1
    world = rays @ c2w[:3, :3].T
    origin = c2w[:3, 3]
    depth = (WALL_X - origin[0]) / world[..., 0]
    if person:
        t = (PERSON["x"] - origin[0]) / world[..., 0]
        hit = origin + t[..., None] * world
        inside = ((hit[..., 1] >= PERSON["y"][0]) & (hit[..., 1] <= PERSON["y"][1]) & (hit[..., 2] >= PERSON["z"][0])
                  & (hit[..., 2] <= PERSON["z"][1]) & (t > 0))
        depth = np.where(inside, t, depth)
    return depth.astype(np.float32)


def test_a_keyframe_a_later_one_shows_changed_is_dropped_as_the_node_drops_it(tmp_path, capsys):
    """Someone stands in front of the wall in images 3-5 and has left by image 6, whose depth sees
    the wall through where they stood: --change-share drops those three keyframes (and their
    files), as the node's keyframes.change_share evicts them, and no other; 0 keeps all."""
    depth_of = {i: room_depth(expected_c2w(t), i in PERSON_IMAGES) for i, t in enumerate(IMAGE_TIMES)}
    person_share = [float((depth_of[i] < WALL_X - 1).mean()) for i in PERSON_IMAGES]
    assert min(person_share) > 0.05, person_share          # the person is in view of every one of them
    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP, depth_of=depth_of)
    kept_all = import_bag(bag, tmp_path / "all", config())
    assert kept_all.keyframes == 11 and not kept_all.changed
    args = ["bag2scene", str(bag), "--image-topic", "/camera/image", "--camera-info-topic", "/camera/camera_info",
            "--fixed-frame", "map", "--semantic-topic", "/camera/semantic", "--depth-topic", "/camera/depth",
            "--min-translation", "0", "--min-rotation", "0", "--min-interval", "0"]
    assert cli_main(args + ["--out", str(tmp_path / "scene"), "--change-share", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "wrote 8 keyframes (of 12 images)" in out and "dropped 3 keyframe(s) that a later keyframe's depth" in out
    scene = SceneFolder(tmp_path / "scene")
    kept = [int(round((scene.frames[j].stamp - T0 / 1e9 - 0.05) / 0.2)) for j in range(len(scene))]
    assert kept == [1, 2, 6, 7, 8, 9, 10, 11]
    assert scene.meta["keyframes"]["change_share"] == 0.02
    dropped = scene.meta["changed_keyframes"]                            # what was dropped, and why
    assert [round((d["stamp"] - T0 / 1e9 - 0.05) / 0.2) for d in dropped] == list(PERSON_IMAGES)
    assert all(0.3 < d["share"] <= 1 for d in dropped), dropped
    assert len(list((tmp_path / "scene" / "depth").iterdir())) == 8      # the dropped frames' files are gone
    for j, i in enumerate(kept):
        np.testing.assert_allclose(scene.load_depth(j), depth_of[i], rtol=1e-6)
    # The node's keyframe buffer, handed the same keyframes, keeps the same ones.
    from viewseg_ros.keyframes import KeyframeBuffer
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.0, min_rotation_deg=0.0, min_interval_s=0.0,
                                           change_share=0.02))
    every = SceneFolder(tmp_path / "all")
    for j in range(len(every)):
        buffer.evict_changed(buffer.add(every.load_view(j), int(round(every.frames[j].stamp * 1e9))))
    assert [int(round((k.stamp_ns / 1e9 - T0 / 1e9 - 0.05) / 0.2)) for k in buffer.snapshot()] == kept
    assert cli_main(args + ["--out", str(tmp_path / "bad"), "--change-share", "1.5"]) == 2
    assert "change_share must be in [0, 1]" in capsys.readouterr().err


def test_an_earlier_keyframe_is_kept_as_the_grid_the_change_check_reads():
    """_decimated keeps every stride-th row and column with the pinhole of that grid: its
    measured points are those scene_change reads from the full image at that stride (the
    grid of a 640x480 camera is every 12th pixel), at 1/stride^2 of the memory."""
    from viewseg_core.scene_change import MAX_TESTED_PIXELS, grid_stride, measured_points
    from viewseg_ros.bag_import import _decimated

    rng = np.random.default_rng(3)
    depth = rng.uniform(0.5, 6.0, (480, 640)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = np.nan
    camera = np.array([[520.0, 0.0, 319.5], [0.0, 515.0, 241.0], [0.0, 0.0, 1.0]])
    c2w = expected_c2w(1.0)
    stride = grid_stride(480, 640, MAX_TESTED_PIXELS)
    assert stride == 12
    grid, grid_K = _decimated(depth, camera, stride)
    assert grid.shape == (40, 54) and grid.size <= MAX_TESTED_PIXELS
    np.testing.assert_allclose(measured_points(grid, grid_K, c2w), measured_points(depth, camera, c2w, stride),
                               rtol=1e-12, atol=1e-12)
