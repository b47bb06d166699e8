"""Image/CameraInfo/pose/time conversions: round trips for every encoding, padded rows,
big-endian data, foreign (rosbags-style) messages, and the errors bad input must raise."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from viewseg_ros.conversions import (
    ENCODINGS, camera_info_to_K, camera_poses_to_pose_array, image_to_numpy, make_camera_info, matrix_to_pose, matrix_to_pose_stamped,
    matrix_to_transform, matrix_to_transform_stamped, ns_to_time, numpy_to_image, pose_to_matrix,
    sec_to_ns, sec_to_time, time_to_ns, time_to_sec)

RNG = np.random.default_rng(7)
H, W = 5, 7


def sample(encoding: str) -> np.ndarray:
    """What image_to_numpy returns for `encoding` (RGB for colour)."""
    if ENCODINGS[encoding].channels > 1:
        return RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if encoding in ("mono8", "8UC1"):
        return RNG.integers(0, 256, (H, W), dtype=np.uint8)
    if encoding in ("mono16", "16UC1"):
        return RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    values = RNG.normal(size=(H, W)).astype(np.float32)
    values[0, 0] = np.nan  # NaN = unknown depth must survive
    return values


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 13])
def test_image_round_trip(encoding, bigendian, pad):
    array = sample(encoding)
    bpp = ENCODINGS[encoding].channels * np.dtype(ENCODINGS[encoding].dtype).itemsize
    msg = numpy_to_image(array, encoding, frame_id="cam", stamp_ns=1_500_000_001,
                         step=W * bpp + pad, is_bigendian=bigendian)
    assert msg.step == W * bpp + pad and len(msg.data) == msg.step * H
    assert msg.header.frame_id == "cam" and time_to_ns(msg.header.stamp) == 1_500_000_001
    out = image_to_numpy(msg)
    assert out.dtype == array.dtype.newbyteorder("=") and out.dtype.isnative
    assert out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, array)


def test_byte_layouts_by_hand():
    """The bytes on the wire, written by hand, decode as the encoding says."""
    # One 2x1 bgr8 image with a 2-byte row pad: pixel 0 = (b=1, g=2, r=3), pixel 1 = (4, 5, 6).
    msg = SimpleNamespace(height=1, width=2, encoding="bgr8", step=8, is_bigendian=0,
                          data=bytes([1, 2, 3, 4, 5, 6, 99, 99]))
    np.testing.assert_array_equal(image_to_numpy(msg), [[[3, 2, 1], [6, 5, 4]]])
    # bgra8 drops alpha and reorders.
    msg = SimpleNamespace(height=1, width=1, encoding="bgra8", step=4, is_bigendian=0, data=bytes([1, 2, 3, 4]))
    np.testing.assert_array_equal(image_to_numpy(msg), [[[3, 2, 1]]])
    # 16UC1 value 0x0102 = 258: little-endian bytes 02 01, big-endian bytes 01 02.
    little = SimpleNamespace(height=1, width=1, encoding="16UC1", step=2, is_bigendian=0, data=bytes([2, 1]))
    big = SimpleNamespace(height=1, width=1, encoding="16UC1", step=2, is_bigendian=1, data=bytes([1, 2]))
    assert image_to_numpy(little)[0, 0] == 258 == image_to_numpy(big)[0, 0]
    # 32FC1 big-endian 1.5 = 0x3FC00000.
    msg = SimpleNamespace(height=1, width=1, encoding="32FC1", step=4, is_bigendian=1, data=bytes([0x3F, 0xC0, 0, 0]))
    assert image_to_numpy(msg)[0, 0] == np.float32(1.5)


def test_rosbags_style_numpy_data_and_rgba_with_alpha():
    """rosbags messages carry data as a numpy uint8 array; the reader takes it as is."""
    rgba = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    msg = numpy_to_image(rgba, "rgba8")
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(H, W, 4), rgba)  # alpha kept
    foreign = SimpleNamespace(height=H, width=W, encoding="rgba8", step=W * 4, is_bigendian=0,
                              data=np.frombuffer(bytes(msg.data), np.uint8).copy())
    np.testing.assert_array_equal(image_to_numpy(foreign), rgba[:, :, :3])
    # RGB input to an alpha encoding gets an opaque alpha.
    msg = numpy_to_image(rgba[:, :, :3], "bgra8")
    assert set(np.frombuffer(bytes(msg.data), np.uint8)[3::4]) == {255}


@pytest.mark.parametrize("change, match", [
    (dict(encoding="nv21"), "unsupported encoding 'nv21'"),
    (dict(step=W * 3 - 1), "step 20 is shorter than a row"),
    (dict(data=bytes(W * 3 * H - 1)), "data has 104 B but step 21 x height 5 = 105 B"),
    (dict(height=0, data=b""), "size 7x0 is outside"),
    (dict(width=100000), "size 100000x5 is outside"),
])
def test_image_errors(change, match):
    fields = dict(height=H, width=W, encoding="rgb8", step=W * 3, is_bigendian=0, data=bytes(W * 3 * H))
    fields.update(change)
    with pytest.raises(ValueError, match=match):
        image_to_numpy(SimpleNamespace(**fields), what="test image")


def _raw(encoding: str, width: int, height: int, data: bytes, step: int | None = None):
    return SimpleNamespace(height=height, width=width, encoding=encoding, step=step or len(data) // height,
                           is_bigendian=0, data=data)


def test_yuv422_byte_orders_by_hand():
    """Two pixels sharing U = V = 128 (no colour): a dark one (Y 50) and a bright one (Y 200).
    ROS's yuv422 / uyvy are U Y0 V Y1; yuv422_yuy2 / yuyv are Y0 U Y1 V."""
    for encoding, data in (("yuv422", [128, 50, 128, 200]), ("uyvy", [128, 50, 128, 200]),
                           ("yuv422_yuy2", [50, 128, 200, 128]), ("yuyv", [50, 128, 200, 128])):
        rgb = image_to_numpy(_raw(encoding, 2, 1, bytes(data)))
        assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
        dark, bright = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
        assert len(set(dark)) == 1 and len(set(bright)) == 1, (encoding, rgb)   # grey: R = G = B
        assert abs(dark[0] - 50) <= 10 and abs(bright[0] - 200) <= 25, (encoding, rgb)
    # V (red difference) high, U at 128: a red pixel pair; the wrong byte order reads other values.
    red = image_to_numpy(_raw("yuv422", 2, 1, bytes([128, 100, 230, 100])))[0, 0].astype(int)
    assert red[0] > red[1] + 80 and red[0] > red[2] + 80
    # A padded row is read up to its pixels only.
    padded = image_to_numpy(_raw("yuyv", 2, 2, bytes([50, 128, 200, 128, 9, 9] * 2), step=6))
    np.testing.assert_array_equal(padded[0], padded[1])
    with pytest.raises(ValueError, match="width must be even, got 3"):
        image_to_numpy(_raw("yuv422", 3, 1, bytes(6)))
    with pytest.raises(ValueError, match="data has 7 B"):
        image_to_numpy(_raw("yuyv", 2, 1, bytes(7), step=4))


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_colour_they_sample(pattern):
    """A uniform colour (R 200, G 100, B 50) sampled through each 2x2 pattern comes back."""
    colour = {"r": 200, "g": 100, "b": 50}
    tile = np.array([[colour[pattern[0]], colour[pattern[1]]], [colour[pattern[2]], colour[pattern[3]]]], np.uint8)
    mosaic = np.tile(tile, (4, 5))                                   # 8x10
    rgb = image_to_numpy(_raw(f"bayer_{pattern}8", 10, 8, mosaic.tobytes()))
    interior = rgb[2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.abs(interior - [200, 100, 50]).max() <= 1, (pattern, interior[:3])


def test_numpy_to_image_errors():
    with pytest.raises(ValueError, match="needs an \\[H, W\\] array"):
        numpy_to_image(np.zeros((2, 2, 3), np.uint8), "mono8")
    with pytest.raises(ValueError, match="needs \\[H, W, 3\\] RGB uint8"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="holds uint8 values, got a uint16"):
        numpy_to_image(np.zeros((2, 2), np.uint16), "mono8")
    with pytest.raises(ValueError, match="step 3 is shorter"):
        numpy_to_image(np.zeros((2, 2), np.uint16), "16UC1", step=3)


# --------------------------------------------------------------------------- camera info
def test_camera_info_round_trip_and_errors():
    K = np.array([[500.0, 0.5, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
    msg = make_camera_info(K, 640, 480, frame_id="cam", stamp_ns=42)
    np.testing.assert_array_equal(camera_info_to_K(msg), K)
    np.testing.assert_array_equal(np.reshape(msg.p, (3, 4))[:, :3], K)
    assert (msg.width, msg.height, msg.header.frame_id) == (640, 480, "cam")
    msg.k = [0.0] * 9
    with pytest.raises(ValueError, match="camera_info: CameraInfo.k is all zeros"):
        camera_info_to_K(msg)
    msg.k = [500.0, 0, 320, 0, math.nan, 240, 0, 0, 1]
    with pytest.raises(ValueError, match="non-finite"):
        camera_info_to_K(msg)
    msg.k = [1.0, 2, 3, 2, 4, 6, 0, 0, 1]  # rank 2
    with pytest.raises(ValueError, match="singular"):
        camera_info_to_K(msg)
    msg.k, msg.width = K.reshape(-1).tolist(), 0
    with pytest.raises(ValueError, match="size 0x480 must be positive"):
        camera_info_to_K(msg)



def test_camera_info_rejects_unusable_pinholes():
    K = np.array([[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])

    def refused(k, width=640, height=480, what="camera_info") -> str:
        msg = make_camera_info(np.asarray(k, dtype=np.float64), width, height)
        with pytest.raises(ValueError) as info:
            camera_info_to_K(msg, what)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{what}: CameraInfo.k: "), message
        return message

    flipped = K.copy()
    flipped[0, 0] = -500.0  # invertible (det < 0): only the pinhole check catches it
    assert "focal lengths must be positive, got fx=-500, fy=510" in refused(flipped, what="/left/camera_info")
    flipped = K.copy()
    flipped[1, 1] = -510.0
    assert "fy=-510" in refused(flipped)
    # Principal point: allowed x in [-160, 800], y in [-120, 600] for 640 x 480 (a quarter of the size).
    for cx, cy, ok in ((800.0, 240.0, True), (-160.0, -120.0, True), (320.0, 600.0, True),
                       (800.5, 240.0, False), (-161.0, 240.0, False), (320.0, 601.0, False), (320.0, -121.0, False)):
        shifted = K.copy()
        shifted[0, 2], shifted[1, 2] = cx, cy
        if ok:
            np.testing.assert_array_equal(camera_info_to_K(make_camera_info(shifted, 640, 480)), shifted)
        else:
            assert f"principal point ({cx:g}, {cy:g}) is far outside the 640x480 image" in refused(shifted)
    # K for 1280 x 720 sent with a 320 x 240 image (a resize that forgot to scale K).
    hd = np.array([[900.0, 0.0, 639.5], [0.0, 900.0, 359.5], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(camera_info_to_K(make_camera_info(hd, 1280, 720)), hd)
    assert "far outside the 320x240 image (allowed: x in [-80, 400], y in [-60, 300])" in refused(hd, 320, 240)
    # A projective third row is no pinhole either.
    tilted = K.copy()
    tilted[2, 0] = 1e-3
    assert "not a pinhole matrix" in refused(tilted)
    # Singular K: the message is one line too (it ends up in a service response).
    assert "singular: [[1., 2., 3.], [2., 4., 6.], [0., 0., 1.]]" in refused([[1.0, 2, 3], [2, 4, 6], [0, 0, 1]])


# --------------------------------------------------------------------------- poses
def random_rigid(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    x, y, z, w = q
    matrix = np.eye(4)
    matrix[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    matrix[:3, 3] = rng.normal(size=3) * 3
    return matrix


def test_pose_round_trips():
    rng = np.random.default_rng(3)
    for _ in range(20):
        T = random_rigid(rng)
        np.testing.assert_allclose(pose_to_matrix(matrix_to_pose(T)), T, atol=1e-12)
        np.testing.assert_allclose(pose_to_matrix(matrix_to_transform(T)), T, atol=1e-12)
        stamped = matrix_to_pose_stamped(T, "map", stamp_ns=7)
        assert stamped.header.frame_id == "map" and time_to_ns(stamped.header.stamp) == 7
        np.testing.assert_allclose(pose_to_matrix(stamped), T, atol=1e-12)
        tf = matrix_to_transform_stamped(T, "map", "cam", stamp_ns=9)
        assert (tf.header.frame_id, tf.child_frame_id) == ("map", "cam")
        np.testing.assert_allclose(pose_to_matrix(tf), T, atol=1e-12)
    # 180 degrees about x (trace = -1) goes through the non-trace branch of the quaternion.
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    np.testing.assert_allclose(pose_to_matrix(matrix_to_pose(flip)), flip, atol=1e-12)


def test_pose_by_hand():
    from geometry_msgs.msg import Pose

    msg = Pose()
    msg.position.x, msg.position.y, msg.position.z = 1.0, 2.0, 3.0
    s = math.sqrt(0.5)
    msg.orientation.z, msg.orientation.w = s, s  # +90 degrees about z
    expected = np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(pose_to_matrix(msg), expected, atol=1e-12)


def test_keyframe_poses_point_their_x_axis_along_the_optical_axis():
    # A camera 1 m up looking along world +y (optical z = +y, x = +x, y = -z).
    c2w = np.array([[1, 0, 0, 0.5], [0, 0, 1, 2.0], [0, -1, 0, 1.0], [0, 0, 0, 1]], float)
    msg = camera_poses_to_pose_array([c2w, np.eye(4)], "map", stamp_ns=3 * 10**9 + 7)
    assert msg.header.frame_id == "map" and time_to_ns(msg.header.stamp) == 3 * 10**9 + 7 and len(msg.poses) == 2
    shown = pose_to_matrix(msg.poses[0])
    np.testing.assert_allclose(shown[:3, 3], [0.5, 2.0, 1.0])
    np.testing.assert_allclose(shown[:3, 0], [0, 1, 0], atol=1e-12)    # x (RViz's arrow) = the optical axis
    np.testing.assert_allclose(shown[:3, 2], [0, 0, 1], atol=1e-12)    # z up: the image's up
    np.testing.assert_allclose(shown[:3, 1], [-1, 0, 0], atol=1e-12)   # y left: minus the image's right
    assert camera_poses_to_pose_array([], "odom").poses == []


def test_pose_errors_and_normalisation():
    from geometry_msgs.msg import Pose

    msg = Pose()
    msg.orientation.w = 1.004  # |q|^2 - 1 = 0.008: within tf2's tolerance, normalised
    np.testing.assert_allclose(pose_to_matrix(msg)[:3, :3], np.eye(3), atol=1e-12)
    msg.orientation.w = 1.1
    with pytest.raises(ValueError, match="query pose: quaternion .* is not normalised"):
        pose_to_matrix(msg, what="query pose")
    msg.orientation.w = 0.0  # the all-zero default quaternion
    with pytest.raises(ValueError, match="not normalised"):
        pose_to_matrix(msg)
    msg.orientation.w = math.nan
    with pytest.raises(ValueError, match="non-finite quaternion"):
        pose_to_matrix(msg)
    msg.orientation.w, msg.position.y = 1.0, math.inf
    with pytest.raises(ValueError, match="non-finite position"):
        pose_to_matrix(msg)
    with pytest.raises(ValueError, match="not a rotation"):
        matrix_to_pose(np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="is not a Pose"):
        pose_to_matrix(object())


# --------------------------------------------------------------------------- time
def test_time_helpers():
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_732_000_000_123_456_789):
        stamp = ns_to_time(ns)
        assert 0 <= stamp.nanosec < 1_000_000_000 and time_to_ns(stamp) == ns
    assert sec_to_ns(0.3) == 300_000_000  # rounded, not truncated (0.3 * 1e9 = 299999999.99...)
    assert time_to_ns(sec_to_time(12.25)) == 12_250_000_000
    assert time_to_sec(SimpleNamespace(sec=3, nanosec=500_000_000)) == 3.5


# --------------------------------------------------------------------------- compressed images
def _compressed(fmt: str, payload: bytes):
    """A rosbags sensor_msgs/CompressedImage, as bag import reads it."""
    from rosbags.typesys import Stores, get_typestore

    types = get_typestore(Stores.ROS2_KILTED).types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                          frame_id="camera_optical")
    return types["sensor_msgs/msg/CompressedImage"](header=header, format=fmt,
                                                    data=np.frombuffer(payload, np.uint8))


def _transport_depth(metres: np.ndarray, encoding: str, depth_max: float = 10.0, z0: float = 100.0) -> bytes:
    """What compressed_depth_image_transport publishes: its 12-byte header, then a 16-bit PNG of
    millimetres (16UC1) or of the quantised inverse depth A / d + B (32FC1), 0 = unknown."""
    import struct

    import cv2

    known = np.isfinite(metres) & (metres > 0)
    if encoding == "16UC1":
        q, a, b = np.where(known, np.round(metres * 1000), 0).astype(np.uint16), 0.0, 0.0
    else:
        a = z0 * (z0 + 1.0)
        b = 1.0 - a / depth_max
        q = np.where(known & (metres < depth_max), np.round(a / np.where(known, metres, 1.0) + b), 0).astype(np.uint16)
    ok, png = cv2.imencode(".png", q)
    assert ok
    return struct.pack("<iff", 0, a, b) + png.tobytes()


def test_compressed_colour_decodes_to_rgb():
    import cv2

    from viewseg_ros.conversions import colour_image_to_numpy, compressed_image_to_rgb

    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, np.arange(8) * 20, 30          # red-ish, a green ramp
    png_bgr = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()
    np.testing.assert_array_equal(compressed_image_to_rgb(_compressed("rgb8; png compressed bgr8", png_bgr)), rgb)
    np.testing.assert_array_equal(colour_image_to_numpy(_compressed("png", png_bgr)), rgb)  # bare format: bgr
    # A transport that compressed rgb8 stores red first.
    png_rgb = cv2.imencode(".png", rgb)[1].tobytes()
    np.testing.assert_array_equal(compressed_image_to_rgb(_compressed("rgb8; png compressed rgb8", png_rgb)), rgb)
    jpeg = cv2.imencode(".jpg", np.repeat(rgb, 4, 0).repeat(4, 1)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    decoded = compressed_image_to_rgb(_compressed("rgb8; jpeg compressed bgr8", jpeg.tobytes()))
    assert decoded.shape == (24, 32, 3) and np.abs(decoded.astype(int) - np.repeat(rgb, 4, 0).repeat(4, 1)).mean() < 3
    grey = compressed_image_to_rgb(_compressed("mono8; png compressed mono8", cv2.imencode(".png", rgb[..., 1])[1].tobytes()))
    np.testing.assert_array_equal(grey, np.repeat(rgb[..., 1:2], 3, axis=2))
    for fmt, payload, match in (("jpeg", b"", "no data"), ("jpeg", b"\xff\xd8 not a jpeg", "could not be decoded"),
                                ("16UC1; compressedDepth png", png_bgr, "compressed depth, not a colour")):
        with pytest.raises(ValueError, match=match):
            compressed_image_to_rgb(_compressed(fmt, payload), "cam")


def test_compressed_depth_decodes_to_metres():
    from viewseg_ros.conversions import any_depth_to_metres, compressed_depth_to_metres

    metres = np.array([[0.5, 1.234, 2.0, 7.9], [np.nan, 0.0, 3.3, 12.0]], np.float32)
    mm = compressed_depth_to_metres(_compressed("16UC1; compressedDepth png", _transport_depth(metres, "16UC1")))
    np.testing.assert_array_equal(np.isnan(mm), [[False] * 4, [True, True, False, False]])
    np.testing.assert_allclose(mm[np.isfinite(mm)], [0.5, 1.234, 2.0, 7.9, 3.3, 12.0], atol=1e-6)
    inverse = any_depth_to_metres(_compressed("32FC1; compressedDepth png", _transport_depth(metres, "32FC1")))
    # Beyond depth_max (10 m) the transport writes 0: unknown, as NaN and 0 are.
    np.testing.assert_array_equal(np.isnan(inverse), [[False] * 4, [True, True, False, True]])
    # Quantised inverse depth: the step at d is d^2 / A (A = 10100), under 0.4% at 8 m.
    finite = np.isfinite(inverse)
    np.testing.assert_allclose(inverse[finite], metres[finite], rtol=0.5 * 8.0 / 10100 + 1e-6)
    for fmt, payload, match in (
            ("16UC1; compressedDepth rvl", _transport_depth(metres, "16UC1"), "RVL is not supported"),
            ("16UC1; png compressed mono16", _transport_depth(metres, "16UC1"), "compressedDepth transport"),
            ("16UC1; compressedDepth png", b"\x00" * 12, "no longer than its 12-byte header"),
            ("8UC1; compressedDepth png", _transport_depth(metres, "16UC1"), "expected 16UC1"),
            ("16UC1; compressedDepth png", b"\x00" * 12 + b"garbage", "could not be decoded")):
        with pytest.raises(ValueError, match=match):
            compressed_depth_to_metres(_compressed(fmt, payload), "depth")


def test_decoded_images_never_share_the_message_buffer():
    """The module's promise, for the one layout where a view would have been free: rgb8 without
    row padding, from a bytes buffer (read-only) and from a writable one."""
    rgb = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    for data in (rgb.tobytes(), bytearray(rgb.tobytes())):
        out = image_to_numpy(SimpleNamespace(height=H, width=W, encoding="rgb8", step=W * 3, is_bigendian=0, data=data))
        assert out.flags.writeable and out.flags.owndata
        out[0, 0, 0] ^= 0xFF
        assert bytes(data)[0] == rgb[0, 0, 0]          # the message is untouched


def test_compressed_writers_round_trip_through_the_readers():
    from viewseg_ros.conversions import (compressed_depth_to_metres, compressed_image_to_rgb, numpy_to_compressed_depth,
                                         numpy_to_compressed_image)

    v, u = np.mgrid[0:24, 0:32]
    rgb = np.stack([u * 7, v * 9, (u + v) * 3], -1).astype(np.uint8)
    png = numpy_to_compressed_image(rgb, "png", frame_id="cam", stamp_ns=2_000_000_001)
    assert png.format == "rgb8; png compressed bgr8" and png.header.frame_id == "cam"
    assert time_to_ns(png.header.stamp) == 2_000_000_001
    np.testing.assert_array_equal(compressed_image_to_rgb(png), rgb)                      # lossless
    jpeg = compressed_image_to_rgb(numpy_to_compressed_image(rgb, "jpeg", quality=95))
    assert np.abs(jpeg.astype(int) - rgb).mean() < 3                                    # lossy, close
    metres = np.array([[0.5, 1.2344, np.nan], [0.0, 7.0, 65.6]], np.float32)
    back = compressed_depth_to_metres(numpy_to_compressed_depth(metres))
    np.testing.assert_array_equal(np.isnan(back), [[False, False, True], [True, False, False]])
    np.testing.assert_allclose(back[np.isfinite(back)], [0.5, 1.234, 7.0, 65.535], atol=1e-6)  # mm; clipped at 65.535
    with pytest.raises(ValueError, match="codec must be jpeg or png"):
        numpy_to_compressed_image(rgb, "webp")
    with pytest.raises(ValueError, match="needs \\[H, W, 3\\] RGB uint8"):
        numpy_to_compressed_image(rgb[..., 0], "png")


def test_camera_info_helpers_name_the_message_and_refuse_what_they_cannot_use():
    from viewseg_ros.conversions import calibration_key, camera_info_to_pinhole

    K = np.array([[50.0, 0.0, 31.5], [0.0, 50.0, 23.5], [0.0, 0.0, 1.0]])
    info = make_camera_info(K, 64, 48, frame_id="cam")
    np.testing.assert_array_equal(camera_info_to_pinhole(info, "auto", "/cam/depth/image_raw").K, K)
    assert camera_info_to_pinhole(info, "auto", "/cam/image").undistorter is None
    same = make_camera_info(K, 64, 48, frame_id="other", stamp_ns=5)
    assert calibration_key(same) == calibration_key(info)                 # frame and stamp do not matter
    info.d = [-0.2, 0.05, 0.0, 0.0, 0.0]
    assert calibration_key(same) != calibration_key(info)
    assert camera_info_to_pinhole(info, "auto", "/cam/image").undistorter is not None
    # A raw depth topic is undistorted like colour; image_rect* (a RealSense's depth) is rectified already.
    assert camera_info_to_pinhole(info, "auto", "/cam/depth/image_raw").undistorter is not None
    assert camera_info_to_pinhole(info, "auto", "/cam/depth/image_rect_raw").undistorter is None
    info.distortion_model = "fov"
    with pytest.raises(ValueError, match="^cam info: distortion model 'fov'"):
        camera_info_to_pinhole(info, "auto", "/cam/image", "cam info")


def _cloud(points: np.ndarray, layout: np.dtype, *, height: int = 1, row_pad: int = 0, datatypes=None, drop=(),
           values=None):
    """A PointCloud2 of ``points`` ([height * width, 3]) laid out as ``layout`` (x, y, z plus
    whatever else, ``values`` {field: [N]} filled, the rest 0), rows of width points each padded
    by ``row_pad`` bytes."""
    from sensor_msgs.msg import PointCloud2, PointField

    n = len(points)
    width = n // height
    data = np.zeros(n, dtype=layout)
    data["x"], data["y"], data["z"] = np.asarray(points).T
    for name, column in (values or {}).items():
        data[name] = column
    rows = data.tobytes()
    step = width * layout.itemsize
    padded = b"".join(rows[r * step:(r + 1) * step] + b"\xee" * row_pad for r in range(height))
    codes = {"<f4": PointField.FLOAT32, "<f8": PointField.FLOAT64, "<u2": PointField.UINT16, "u1": PointField.UINT8,
             "<i4": PointField.INT32, "<u4": PointField.UINT32}
    msg = PointCloud2()
    msg.height, msg.width = height, width
    msg.fields = [PointField(name=name, offset=layout.fields[name][1],
                             datatype=(datatypes or {}).get(name, codes[layout.fields[name][0].str.replace("|", "")]),
                             count=1) for name in layout.names if name not in drop]
    msg.is_bigendian, msg.point_step, msg.row_step = False, layout.itemsize, step + row_pad
    msg.data = padded
    return msg


def test_point_cloud_xyz_reads_any_driver_layout():
    from viewseg_ros.conversions import point_cloud_xyz

    pts = RNG.normal(size=(12, 3)).astype(np.float32)
    velodyne = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "time"],
                         "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f4"],
                         "offsets": [0, 4, 8, 16, 20, 24], "itemsize": 32})
    np.testing.assert_array_equal(point_cloud_xyz(_cloud(pts, velodyne)), pts)
    # Organised (3 rows of 4) with 8 padding bytes after each row, float64 coordinates after a
    # uint8 field, and a missing return (NaN) that is dropped.
    ouster = np.dtype({"names": ["ring", "z", "y", "x"], "formats": ["u1", "<f8", "<f8", "<f8"],
                       "offsets": [0, 8, 16, 24], "itemsize": 40})
    holed = pts.astype(np.float64)
    holed[5] = np.nan
    out = point_cloud_xyz(_cloud(holed, ouster, height=3, row_pad=8))
    np.testing.assert_array_equal(out, np.delete(pts, 5, axis=0))
    assert out.dtype == np.float32 and point_cloud_xyz(_cloud(pts[:0], velodyne)).shape == (0, 3)


def test_point_cloud_xyzt_reads_each_drivers_per_point_times_beside_the_points():
    from viewseg_ros.conversions import make_xyz_cloud, point_cloud_xyzt

    pts = RNG.normal(size=(12, 3)).astype(np.float32)
    times = np.linspace(0.0, 0.1, 12)
    stamp_ns = 1_700_000_000_000_000_000
    # Ouster: an organised cloud with a uint32 t in ns and padded rows; a missing return is
    # dropped from the points and the times alike.
    ouster = np.dtype({"names": ["x", "y", "z", "intensity", "t", "ring"], "formats": ["<f4"] * 4 + ["<u4", "<u2"],
                       "offsets": [0, 4, 8, 16, 20, 24], "itemsize": 32})
    holed = pts.copy()
    holed[5] = np.nan
    xyz, sweep = point_cloud_xyzt(_cloud(holed, ouster, height=3, row_pad=4,
                                         values={"t": np.round(times * 1e9).astype(np.uint32)}))
    np.testing.assert_array_equal(xyz, np.delete(pts, 5, axis=0))
    assert sweep.field == "t" and sweep.integer
    np.testing.assert_allclose(sweep.offsets(stamp_ns), np.delete(times, 5), atol=1e-7)
    # Hesai: float64 absolute seconds in "timestamp".
    hesai = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "timestamp"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"],
                      "offsets": [0, 4, 8, 12, 16, 24], "itemsize": 32})
    _, sweep = point_cloud_xyzt(_cloud(pts, hesai, values={"timestamp": stamp_ns / 1e9 + times}))
    assert sweep.field == "timestamp" and not sweep.integer
    np.testing.assert_allclose(sweep.offsets(stamp_ns), times, atol=1e-6)
    # What the simulator and the tests publish: a Velodyne-style float32 "time", round trip.
    xyz, sweep = point_cloud_xyzt(make_xyz_cloud(pts, frame_id="lidar", stamp_ns=stamp_ns, times=times))
    np.testing.assert_array_equal(xyz, pts)
    np.testing.assert_allclose(sweep.offsets(stamp_ns), times, atol=1e-7)
    # A field named explicitly wins over auto; "" reads no time; a cloud without one has none.
    _, sweep = point_cloud_xyzt(_cloud(pts, ouster, values={"intensity": times}), time_field="intensity")
    np.testing.assert_allclose(sweep.offsets(stamp_ns), times, atol=1e-7)
    assert point_cloud_xyzt(_cloud(pts, ouster), time_field="")[1] is None
    assert point_cloud_xyzt(make_xyz_cloud(pts))[1] is None


def test_point_cloud_xyzt_refuses_a_named_time_field_it_cannot_read():
    from viewseg_ros.conversions import make_xyz_cloud, point_cloud_xyzt

    msg = make_xyz_cloud(np.ones((4, 3)), times=np.zeros(4))
    with pytest.raises(ValueError, match="^cloud: no per-point time field 'stamp'"):
        point_cloud_xyzt(msg, "cloud", time_field="stamp")
    msg.fields[3].count = 2
    with pytest.raises(ValueError, match="per-point time field 'time' must be a number with count 1"):
        point_cloud_xyzt(msg, "cloud")


@pytest.mark.parametrize("change, match", [
    ("no_z", "no 'z' field"),
    ("int_x", "field 'x' must be FLOAT32 or FLOAT64"),
    ("short_data", "bytes for 1 rows"),
    ("big_endian", "big-endian"),
    ("outside", "lies outside the 12-byte point"),
    ("huge", "more than 4000000"),
    ("row_step", "row_step 4 is less than"),
])
def test_point_cloud_xyz_refuses_clouds_it_cannot_read(change, match):
    from viewseg_ros.conversions import point_cloud_xyz

    layout = np.dtype({"names": ["x", "y", "z"], "formats": ["<f4"] * 3, "offsets": [0, 4, 8], "itemsize": 12})
    msg = _cloud(np.ones((4, 3), np.float32), layout, drop=("z",) if change == "no_z" else (),
                 datatypes={"x": 5} if change == "int_x" else None)
    if change == "short_data":
        msg.data = msg.data[:-1]
    elif change == "big_endian":
        msg.is_bigendian = True
    elif change == "outside":
        msg.fields[2].offset = 10
    elif change == "huge":
        msg.width, msg.height = 4000, 1001
    elif change == "row_step":
        msg.row_step = 4
    with pytest.raises(ValueError, match=match):
        point_cloud_xyz(msg, "point cloud")


def test_point_cloud_sweep_keeps_the_points_when_their_times_cannot_be_read():
    from viewseg_ros.conversions import make_xyz_cloud, point_cloud_sweep

    pts = RNG.normal(size=(6, 3)).astype(np.float32)
    msg = make_xyz_cloud(pts, frame_id="lidar", stamp_ns=5_000_000_000, times=np.linspace(0.0, 0.1, 6))
    points, offsets, unread = point_cloud_sweep(msg, "cloud")
    np.testing.assert_array_equal(points, pts)
    np.testing.assert_allclose(offsets, np.linspace(0.0, 0.1, 6), atol=1e-7)
    assert unread is None
    points, offsets, unread = point_cloud_sweep(msg, "cloud", time_field="stamp")      # a field it lacks
    np.testing.assert_array_equal(points, pts)
    assert offsets is None and unread.startswith("cloud: no per-point time field 'stamp'")
    points, offsets, unread = point_cloud_sweep(msg, "cloud", time_scale=1e3)          # a wrong unit
    np.testing.assert_array_equal(points, pts)
    assert offsets is None and unread.startswith("cloud: per-point time field 'time'") and "one sweep" in unread
    assert point_cloud_sweep(make_xyz_cloud(pts), "cloud")[1:] == (None, None)
    msg.fields = msg.fields[:2] + msg.fields[3:]                                         # no z: refused
    with pytest.raises(ValueError, match="^cloud: no 'z' field"):
        point_cloud_sweep(msg, "cloud")
