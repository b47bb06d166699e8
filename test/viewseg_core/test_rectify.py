"""viewseg_core.rectify: undistortion against the distortion models written out by hand, and
which pinhole each rectification mode gives."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.rectify import (distortion_maps, has_distortion, make_undistorter, rectification_rotation,
                                   rectified_K, resolve_camera, rotated_frame)

W, H = 160, 120
K = np.array([[100.0, 0.0, 81.0], [0.0, 102.0, 58.5], [0.0, 0.0, 1.0]])
# The rectified camera (CameraInfo.p): a little wider, so the raw image covers all of it.
NEW_K = np.array([[80.0, 0.0, 79.5], [0.0, 80.0, 59.5], [0.0, 0.0, 1.0]])
P = np.concatenate([NEW_K, np.zeros((3, 1))], axis=1)
PLUMB_BOB = [-0.28, 0.09, 0.0012, -0.0008, -0.012]       # k1, k2, p1, p2, k3: a wide-angle webcam
EQUIDISTANT = [0.05, -0.02, 0.004, -0.001]              # k1..k4


def distort_plumb_bob(x: float, y: float, d) -> tuple[float, float]:
    """Normalised pinhole coordinates -> distorted ones (the CameraInfo / OpenCV model)."""
    k1, k2, p1, p2, k3 = d
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def distort_equidistant(x: float, y: float, d) -> tuple[float, float]:
    r = math.hypot(x, y)
    theta = math.atan(r)
    theta_d = theta * (1 + d[0] * theta ** 2 + d[1] * theta ** 4 + d[2] * theta ** 6 + d[3] * theta ** 8)
    scale = theta_d / r if r > 0 else 1.0
    return x * scale, y * scale


def blob_image(u: float, v: float, sigma: float = 1.2) -> np.ndarray:
    """[H, W, 3] uint8: a Gaussian spot centred at raw pixel (u, v)."""
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    spot = 255.0 * np.exp(-((uu - u) ** 2 + (vv - v) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.round(spot).astype(np.uint8)[:, :, None], 3, axis=2)


def centroid(image: np.ndarray) -> tuple[float, float]:
    weight = image[..., 0].astype(np.float64)
    weight = np.where(weight > 0.2 * weight.max(), weight, 0.0)
    vv, uu = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    return float((uu * weight).sum() / weight.sum()), float((vv * weight).sum() / weight.sum())


@pytest.mark.parametrize("model, d, distort", [("plumb_bob", PLUMB_BOB, distort_plumb_bob),
                                               ("equidistant", EQUIDISTANT, distort_equidistant)])
def test_a_point_lands_where_the_pinhole_of_p_puts_it(model, d, distort):
    undistorter = make_undistorter(K, d, model, W, H, NEW_K)
    # Rays to the centre, half-way out and near a corner of the rectified image.
    for x, y in [(0.0, 0.0), (0.25, -0.1), (-0.6, 0.45), (0.7, 0.5)]:
        xd, yd = distort(x, y, d)
        raw_u, raw_v = K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]
        want_u, want_v = NEW_K[0, 0] * x + NEW_K[0, 2], NEW_K[1, 1] * y + NEW_K[1, 2]
        got_u, got_v = centroid(undistorter.colour(blob_image(raw_u, raw_v)))
        assert abs(got_u - want_u) < 0.35 and abs(got_v - want_v) < 0.35, (x, y, got_u, got_v, want_u, want_v)
        if x * x + y * y > 0.3 and model == "plumb_bob":
            # Away from the centre, ignoring the distortion (the pinhole K on the raw image) misses by pixels.
            naive_u, naive_v = NEW_K[0, 0] * (raw_u - K[0, 2]) / K[0, 0] + NEW_K[0, 2], \
                NEW_K[1, 1] * (raw_v - K[1, 2]) / K[1, 1] + NEW_K[1, 2]
            assert math.hypot(naive_u - want_u, naive_v - want_v) > 2.0


def test_depth_and_labels_take_nearest_values_and_mark_uncovered_pixels():
    # A rectified camera wider than the raw one: its corners look past the raw image.
    undistorter = make_undistorter(K, PLUMB_BOB, "plumb_bob", W, H, np.array([[55.0, 0.0, 79.5], [0.0, 55.0, 59.5], [0.0, 0.0, 1.0]]))
    depth = np.full((H, W), 3.0, np.float32)
    depth[:, : W // 2] = 1.0
    depth[10:20, 10:20] = np.nan
    out = undistorter.depth(depth)
    assert out.dtype == np.float32 and out.shape == (H, W)
    assert set(np.unique(out[np.isfinite(out)]).tolist()) == {1.0, 3.0}      # no value between the two
    assert np.isnan(out[0, 0]) and np.isnan(out[-1, -1])                     # no raw pixel there
    assert out[H // 2, W // 2 + 5] == 3.0 and out[H // 2, W // 2 - 5] == 1.0
    labels = np.where(depth > 2.0, 4, 7).astype(np.uint8)
    lab = undistorter.labels(labels)
    assert lab[0, 0] == 255 and set(np.unique(lab).tolist()) <= {4, 7, 255}
    rgb = undistorter.colour(np.full((H, W, 3), 200, np.uint8))
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[H // 2, W // 2].tolist() == [200, 200, 200]
    with pytest.raises(ValueError, match="80x60, the calibration 160x120"):
        undistorter.depth(np.ones((60, 80), np.float32))


def test_modes_choose_the_pinhole():
    zero = [0.0] * 5
    auto_plain = resolve_camera(K, zero, "plumb_bob", P, W, H, "auto", "/camera/image_raw")
    assert auto_plain.undistorter is None and np.array_equal(auto_plain.K, K)
    assert resolve_camera(K, [], "", P, W, H).undistorter is None            # d left empty: a pinhole
    raw = resolve_camera(K, PLUMB_BOB, "plumb_bob", P, W, H, "auto", "/camera/image_raw")
    assert raw.undistorter is not None and np.array_equal(raw.K, NEW_K) and "plumb_bob" in raw.description
    # image_pipeline's rectified topics come with the raw camera's CameraInfo: use p, undistort nothing.
    for topic in ("/camera/image_rect", "/camera/image_rect_color", "image_rect_color/"):
        rect = resolve_camera(K, PLUMB_BOB, "plumb_bob", P, W, H, "auto", topic)
        assert rect.undistorter is None and np.array_equal(rect.K, NEW_K), topic
    ignored = resolve_camera(K, PLUMB_BOB, "plumb_bob", P, W, H, "none")
    assert ignored.undistorter is None and np.array_equal(ignored.K, K) and "ignoring" in ignored.description
    forced = resolve_camera(K, PLUMB_BOB, "plumb_bob", P, W, H, "undistort", "/camera/image_rect")
    assert forced.undistorter is not None
    assert resolve_camera(K, zero, "plumb_bob", P, W, H, "undistort").undistorter is None
    # An unset p (all zero, as some drivers leave it) or one that is no pinhole: k.
    assert np.array_equal(resolve_camera(K, zero, "plumb_bob", np.zeros(12), W, H, "rectified").K, K)
    assert np.array_equal(rectified_K(-P, K, W, H), K)
    assert has_distortion([0, 0, 1e-9]) and not has_distortion([]) and not has_distortion([0.0, -0.0])


def about_y(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def test_a_rectified_stereo_image_is_turned_by_r():
    """A stereo pair's rectified image looks along r's rotated axis: X_rect = r X_frame. Only the
    rectified reading turns the pose; undistortion (no rotation in its map) keeps the frame's."""
    R = about_y(3.0)
    assert rectification_rotation(np.eye(3).reshape(-1)) is None
    assert rectification_rotation(np.zeros(9)) is None and rectification_rotation([]) is None
    np.testing.assert_array_equal(rectification_rotation(R.reshape(-1)), R)
    with pytest.raises(ValueError, match="not a rotation"):
        rectification_rotation((2.0 * np.eye(3)).reshape(-1))
    rect = resolve_camera(K, PLUMB_BOB, "plumb_bob", P, W, H, "auto", "/left/image_rect_color", R.reshape(-1))
    np.testing.assert_array_equal(rect.rotation, R)
    assert rect.undistorter is None and "turned 3.00 deg by r" in rect.description
    raw = resolve_camera(K, PLUMB_BOB, "plumb_bob", P, W, H, "auto", "/left/image_raw", R.reshape(-1))
    assert raw.rotation is None and raw.undistorter is not None
    # The image's camera: a point straight ahead of it (on its optical axis) lies, in the
    # frame_id, along r^T's z axis; its camera-to-world is the frame's times inv(T).
    T = rotated_frame(R)
    ahead_in_frame = np.linalg.inv(T) @ np.array([0.0, 0.0, 2.0, 1.0])
    np.testing.assert_allclose(ahead_in_frame[:3], 2.0 * R.T[:, 2])
    assert ahead_in_frame[0] == pytest.approx(-2.0 * math.sin(math.radians(3.0)))  # turned 3 degrees to the left
    np.testing.assert_array_equal(rotated_frame(None), np.eye(4))


def test_distortion_it_cannot_remove_is_refused_by_name():
    with pytest.raises(ValueError, match="'fov'.*rectified"):
        resolve_camera(K, [0.1], "fov", P, W, H)
    with pytest.raises(ValueError, match="takes 4 finite coefficients, got 5"):
        resolve_camera(K, PLUMB_BOB, "equidistant", P, W, H)
    with pytest.raises(ValueError, match="finite"):
        resolve_camera(K, [math.nan, 0, 0, 0, 0], "plumb_bob", P, W, H)
    with pytest.raises(ValueError, match="rectification must be one of"):
        resolve_camera(K, PLUMB_BOB, "plumb_bob", P, W, H, "rectify")
    # A model it cannot invert is fine when nothing needs inverting.
    assert resolve_camera(K, [0.0], "fov", P, W, H).undistorter is None


@pytest.mark.parametrize("model, d, distort", [("plumb_bob", PLUMB_BOB, distort_plumb_bob),
                                               ("equidistant", EQUIDISTANT, distort_equidistant)])
def test_distortion_maps_invert_the_model(model, d, distort):
    """A raw pixel's map entry is the pinhole pixel whose ray the model sends there."""
    map_x, map_y = distortion_maps(K, d, model, W, H, NEW_K)
    for x, y in [(0.0, 0.0), (0.3, 0.2), (-0.55, -0.4)]:
        xd, yd = distort(x, y, d)
        raw_u, raw_v = K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]
        # bilinear read of the maps at the (fractional) raw pixel
        u0, v0 = int(math.floor(raw_u)), int(math.floor(raw_v))
        fu, fv = raw_u - u0, raw_v - v0

        def read(m):
            return ((1 - fu) * (1 - fv) * m[v0, u0] + fu * (1 - fv) * m[v0, u0 + 1]
                    + (1 - fu) * fv * m[v0 + 1, u0] + fu * fv * m[v0 + 1, u0 + 1])
        assert read(map_x) == pytest.approx(NEW_K[0, 0] * x + NEW_K[0, 2], abs=0.05)
        assert read(map_y) == pytest.approx(NEW_K[1, 1] * y + NEW_K[1, 2], abs=0.05)
    # Distorting a pinhole image and undistorting it again gives it back where both cover it.
    vv, uu = np.mgrid[0:H, 0:W]
    smooth = (127 + 100 * np.sin(uu / 9.0) * np.cos(vv / 7.0)).astype(np.uint8)[..., None].repeat(3, axis=2)
    import cv2
    raw = cv2.remap(smooth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    back = make_undistorter(K, d, model, W, H, NEW_K).colour(raw)
    centre = (slice(H // 4, 3 * H // 4), slice(W // 4, 3 * W // 4))
    assert np.abs(back[centre].astype(int) - smooth[centre].astype(int)).max() <= 6
