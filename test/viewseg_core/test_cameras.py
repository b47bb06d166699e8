"""Camera conventions: projection round trips for every camera model, intrinsics edits, conversions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewseg_core import cameras as C


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _c2w(rng: np.random.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _rotation(rng)
    T[:3, 3] = rng.normal(size=3)
    return T


PINHOLE = np.array([[500.0, 0.0, 319.5], [0.0, 480.0, 239.5], [0.0, 0.0, 1.0]])
# A Hypersim-style tilt-shift matrix (shifted, sheared lens) and a fully projective K whose
# third row is not (0, 0, 1): the round trips must not assume an upper-triangular K.
TILT_M = np.array([[0.58, 0.03, 0.12], [0.0, 0.44, -0.21], [0.0, 0.0, -1.0]])
PROJECTIVE = np.array([[520.0, 12.0, 300.0], [-8.0, 505.0, 250.0], [2e-4, -1e-4, 1.0]])


def _camera_models():
    return {
        "pinhole": PINHOLE,
        "hypersim_tilt_shift": C.hypersim_K(TILT_M, 640, 480),
        "projective": PROJECTIVE,
        "habitat_hfov": C.K_from_hfov(90.0, 640, 480),
    }


def test_pixel_grid_is_row_major_pixel_centres():
    g = C.pixel_grid(2, 3)
    assert g.shape == (6, 2)
    assert g.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]


def test_pinhole_projection_hand_computed():
    K = torch.tensor(PINHOLE)
    c2w = torch.eye(4, dtype=torch.float64)
    pts = torch.tensor([[[1.0, -0.5, 2.0], [0.0, 0.0, -1.0]]], dtype=torch.float64)
    uv, depth, front = C.project_points(K, c2w, pts)
    assert uv[0, 0].tolist() == pytest.approx([500 * 0.5 + 319.5, 480 * -0.25 + 239.5])
    assert depth[0].tolist() == [2.0, -1.0]
    assert front[0].tolist() == [True, False]
    # The same from camera-frame points: a camera 1 m behind the origin sees them 1 m farther.
    c2w[2, 3] = -1.0
    uv_c, depth_c, front_c = C.project_camera_points(K, C.world_to_camera(c2w, pts))
    assert depth_c[0].tolist() == [3.0, 0.0] and front_c[0].tolist() == [True, False]
    assert uv_c[0, 0].tolist() == pytest.approx([500 * 1 / 3 + 319.5, 480 * -0.5 / 3 + 239.5])
    assert all(torch.equal(a, b) for a, b in zip((uv_c, depth_c, front_c), C.project_points(K, c2w, pts)))


@pytest.mark.parametrize("model", list(_camera_models()))
def test_pixel_ray_point_pixel_round_trip(model):
    """pixel -> ray -> point at a random distance -> pixel, batched over 3 cameras."""
    rng = np.random.default_rng(0)
    K = torch.tensor(_camera_models()[model]).expand(3, 3, 3)
    c2w = torch.tensor(np.stack([_c2w(rng) for _ in range(3)]))
    uv = torch.tensor(rng.uniform([-0.5, -0.5], [639.4, 479.4], size=(3, 50, 2)))
    origins, dirs = C.pixels_to_rays(K, c2w, uv)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(3, 50, dtype=torch.float64))
    assert torch.allclose(origins, c2w[:, None, :3, 3].expand(3, 50, 3))
    dist = torch.tensor(rng.uniform(0.2, 15.0, size=(3, 50, 1)))
    points = origins + dist * dirs
    uv2, depth, front = C.project_points(K, c2w, points)
    assert front.all()
    assert torch.allclose(uv2, uv, atol=1e-7)
    # planar depth = ray distance * optical-axis component of the direction
    z = C.ray_z_component(K, c2w, dirs)
    assert torch.allclose(depth, dist[..., 0] * z)
    assert C.in_image(uv2, 480, 640).all()


def test_round_trip_float32_is_subpixel():
    K = torch.tensor(C.hypersim_K(TILT_M, 640, 480), dtype=torch.float32)
    c2w = torch.tensor(_c2w(np.random.default_rng(1)), dtype=torch.float32)
    uv = C.pixel_grid(480, 640)[::97]
    o, d = C.pixels_to_rays(K, c2w, uv)
    uv2, _, _ = C.project_points(K, c2w, o + 7.0 * d)
    assert (uv2 - uv).abs().max() < 1e-2


def test_uv_to_grid_samples_pixel_centres_exactly():
    img = torch.arange(12.0).reshape(1, 1, 3, 4)
    uv = torch.tensor([[[[2.0, 1.0], [0.0, 0.0], [3.0, 2.0], [2.5, 1.0]]]])
    out = torch.nn.functional.grid_sample(img, C.uv_to_grid(uv, 3, 4), align_corners=False)
    assert out.flatten().tolist() == pytest.approx([6.0, 0.0, 11.0, 6.5], abs=1e-5)


def test_in_image_uses_pixel_area():
    uv = torch.tensor([[-0.5, -0.5], [-0.51, 0.0], [3.49, 1.49], [3.5, 0.0], [0.0, 1.5]])
    assert C.in_image(uv, 2, 4).tolist() == [True, False, True, False, False]


@pytest.mark.parametrize("as_torch", [False, True])
def test_resize_and_crop_follow_the_image(as_torch):
    """A point's pixel in the edited image = the edit applied to its pixel in the original."""
    K0 = C.hypersim_K(TILT_M, 640, 480)
    K = torch.tensor(K0) if as_torch else K0
    c2w = torch.eye(4, dtype=torch.float64)
    pts = torch.tensor(np.random.default_rng(2).uniform([-1, -1, 1], [1, 1, 5], size=(20, 3)))
    uv0, _, _ = C.project_points(torch.tensor(K0), c2w, pts)

    K_r = C.resize_intrinsics(K, (480, 640), (240, 160))
    assert isinstance(K_r, torch.Tensor) == as_torch
    uv_r, _, _ = C.project_points(torch.as_tensor(K_r), c2w, pts)
    expected = torch.stack([(uv0[:, 0] + 0.5) * 0.25 - 0.5, (uv0[:, 1] + 0.5) * 0.5 - 0.5], -1)
    assert torch.allclose(uv_r, expected)

    K_c = C.crop_intrinsics(K, top=10, left=30)
    uv_c, _, _ = C.project_points(torch.as_tensor(K_c), c2w, pts)
    assert torch.allclose(uv_c, uv0 - torch.tensor([30.0, 10.0], dtype=torch.float64))


def test_resize_maps_image_extent_to_image_extent():
    K = C.resize_intrinsics(PINHOLE, (480, 640), (120, 160))
    # the old image's outer corner (-0.5, -0.5) stays the new image's outer corner
    h = K @ np.linalg.inv(PINHOLE) @ np.array([-0.5, -0.5, 1.0])
    assert h[:2] / h[2] == pytest.approx([-0.5, -0.5])
    assert K[0, 0] == pytest.approx(125.0) and K[0, 2] == pytest.approx(79.5)


def test_camera_info_round_trip_and_errors():
    k = [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]
    K = C.K_from_camera_info(k)
    assert K.dtype == np.float64 and K[0, 2] == 319.5
    assert C.camera_info_k_from_K(K) == k
    with pytest.raises(ValueError, match="uncalibrated"):
        C.K_from_camera_info([0.0] * 9)
    with pytest.raises(ValueError, match="CameraInfo.k"):
        C.K_from_camera_info([1.0] * 8)


def test_hypersim_K_matches_M_cam_from_uv_at_pixel_centres():
    W, H = 64, 48
    K = C.hypersim_K(TILT_M, W, H)
    assert abs(K[0, 1]) > 1.0  # the lens shear survives: not a plain pinhole
    for r, c in [(0, 0), (H - 1, W - 1), (10, 50), (31, 7)]:
        u_ndc, v_ndc = (c + 0.5) / W * 2 - 1, 1 - (r + 0.5) / H * 2
        d_hyp = TILT_M @ np.array([u_ndc, v_ndc, 1.0])
        d_cv = np.array([d_hyp[0], -d_hyp[1], -d_hyp[2]])  # y up -> down, -z fwd -> +z fwd
        d = C.camera_directions(torch.tensor(K), torch.tensor([[float(c), float(r)]], dtype=torch.float64))
        assert d[0].numpy() == pytest.approx(d_cv / np.linalg.norm(d_cv))
    assert C.hypersim_M_cam_from_uv(K, W, H) == pytest.approx(TILT_M)


def test_hypersim_pose_round_trip_and_forward_axis():
    rng = np.random.default_rng(3)
    R, t, mpau = _rotation(rng), rng.normal(size=3), 0.0254
    c2w = C.hypersim_c2w(R, t, mpau)
    assert c2w[:3, 3] == pytest.approx(t * mpau)
    # a point on the Hypersim camera's -z axis is straight ahead in the OpenCV frame
    p_world = t * mpau + R @ np.array([0.0, 0.0, -2.0])
    X = C.world_to_camera(torch.tensor(c2w), torch.tensor(p_world)[None])[0].numpy()
    assert X == pytest.approx([0.0, 0.0, 2.0])
    R2, t2 = C.opencv_c2w_to_hypersim(c2w, mpau)
    assert R2 == pytest.approx(R) and t2 == pytest.approx(t)
    with pytest.raises(ValueError, match="meters_per_asset_unit"):
        C.hypersim_c2w(R, t, 0.0)


def test_habitat_round_trip_and_axes():
    T = _c2w(np.random.default_rng(4))
    c2w = C.habitat_c2w_to_opencv(T)
    assert C.opencv_c2w_to_habitat(c2w) == pytest.approx(T)
    # Habitat camera: up (+y) and forward (-z) -> OpenCV: -y and +z
    p_world = T[:3, 3] + T[:3, :3] @ np.array([0.0, 1.0, -3.0])
    X = C.world_to_camera(torch.tensor(c2w), torch.tensor(p_world)[None])[0].numpy()
    assert X == pytest.approx([0.0, -1.0, 3.0])


def test_pytorch3d_round_trip_and_row_vector_convention():
    rng = np.random.default_rng(5)
    R, T = _rotation(rng), rng.normal(size=3)
    c2w = C.pytorch3d_RT_to_opencv_c2w(R, T)
    pts = rng.normal(size=(10, 3))
    X_p3d = pts @ R + T  # pytorch3d: x left, y up, z forward
    X_cv = C.world_to_camera(torch.tensor(c2w), torch.tensor(pts)).numpy()
    assert X_cv == pytest.approx(X_p3d * np.array([-1.0, -1.0, 1.0]))
    R2, T2 = C.opencv_c2w_to_pytorch3d_RT(c2w)
    assert R2 == pytest.approx(R) and T2 == pytest.approx(T)


def test_distance_planar_depth_round_trip():
    K = C.hypersim_K(TILT_M, 8, 6)
    dist = np.full((6, 8), 3.0, dtype=np.float32)
    dist[0, 0] = np.nan
    depth = C.distance_to_planar_depth(dist, K)
    assert depth.dtype == np.float32 and np.isnan(depth[0, 0])
    d = C.camera_directions(torch.tensor(K), torch.tensor([[5.0, 4.0]], dtype=torch.float64))[0]
    assert depth[4, 5] == pytest.approx(3.0 * float(d[2]))
    assert np.all(depth[1:] < 3.0)
    back = C.planar_depth_to_distance(depth, K)
    assert np.allclose(back[1:], 3.0) and np.isnan(back[0, 0])


# --------------------------------------------------------------------------------------
# Pinhole validation (camera_info_to_K in the node; messages end up in one log line)
# --------------------------------------------------------------------------------------

def _pinhole_error(K, width=640, height=480, name="cam_K") -> str:
    with pytest.raises(ValueError) as info:
        C.check_pinhole(K, width, height, name)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name}: "), message
    return message


def _with(K: np.ndarray, **entries) -> np.ndarray:
    """A copy of K with entries named like ``r0c2`` (row 0, column 2) replaced."""
    K = np.array(K, dtype=np.float64)
    for key, value in entries.items():
        K[int(key[1]), int(key[3])] = value
    return K


def test_check_pinhole_accepts_usable_matrices():
    assert C.check_pinhole(PINHOLE, 640, 480) is None
    C.check_pinhole(torch.tensor(PINHOLE), 640, 480)  # any array-like
    C.check_pinhole(_with(PINHOLE, r0c1=2.5), 640, 480)  # skew is allowed
    C.check_pinhole(C.K_from_hfov(90.0, 64, 48), 64, 48)
    C.check_pinhole(PINHOLE.tolist(), 640, 480)


@pytest.mark.parametrize("entries, fragment", [
    (dict(r0c0=0.0), "focal lengths must be positive, got fx=0, fy=480"),
    (dict(r0c0=-500.0), "focal lengths must be positive, got fx=-500, fy=480"),
    (dict(r1c1=0.0), "focal lengths must be positive, got fx=500, fy=0"),
    (dict(r1c1=-480.0), "fy=-480"),
    (dict(r0c1=np.nan), "need a finite 3x3 matrix"),
    (dict(r2c2=np.inf), "need a finite 3x3 matrix"),
    (dict(r2c2=2.0), "not a pinhole matrix"),
    (dict(r2c0=1e-3), "not a pinhole matrix"),
    (dict(r2c1=-1e-3), "not a pinhole matrix"),
    (dict(r1c0=0.5), "not a pinhole matrix"),
])
def test_check_pinhole_rejects(entries, fragment):
    assert fragment in _pinhole_error(_with(PINHOLE, **entries))


def test_check_pinhole_shape_and_default_name():
    assert "need a finite 3x3 matrix" in _pinhole_error(np.eye(4), name="K4")
    with pytest.raises(ValueError, match=r"^K: focal lengths"):
        C.check_pinhole(_with(PINHOLE, r0c0=-1.0), 640, 480)


def test_check_pinhole_principal_point_margin_boundary():
    """Allowed: cx in [-m W, W + m W], cy in [-m H, H + m H] (m = PRINCIPAL_POINT_MARGIN)."""
    m = C.PRINCIPAL_POINT_MARGIN
    assert m == 0.25
    lo_x, hi_x, lo_y, hi_y = -m * 640, 640 + m * 640, -m * 480, 480 + m * 480
    assert (lo_x, hi_x, lo_y, hi_y) == (-160.0, 800.0, -120.0, 600.0)
    for cx, cy in ((lo_x, 239.5), (hi_x, 239.5), (319.5, lo_y), (319.5, hi_y), (lo_x, lo_y), (hi_x, hi_y)):
        C.check_pinhole(_with(PINHOLE, r0c2=cx, r1c2=cy), 640, 480)  # exactly at the boundary: inside
    for cx, cy in ((np.nextafter(lo_x, -np.inf), 239.5), (np.nextafter(hi_x, np.inf), 239.5),
                   (319.5, np.nextafter(lo_y, -np.inf)), (319.5, np.nextafter(hi_y, np.inf)),
                   (hi_x + 1, 239.5), (319.5, -1000.0)):
        message = _pinhole_error(_with(PINHOLE, r0c2=cx, r1c2=cy))
        assert "principal point" in message and "far outside the 640x480 image" in message
        assert "allowed: x in [-160, 800], y in [-120, 600]" in message
    # K of a 1280x960 camera given for a 320x240 image: the unit/size mix-up it exists for.
    big = np.array([[1000.0, 0.0, 639.5], [0.0, 1000.0, 479.5], [0.0, 0.0, 1.0]])
    C.check_pinhole(big, 1280, 960)
    assert "(639.5, 479.5)" in _pinhole_error(big, 320, 240)


def test_singular_camera_info_message_is_one_line():
    with pytest.raises(ValueError) as info:
        C.K_from_camera_info([1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0])  # rank 2
    message = str(info.value)
    assert "\n" not in message
    assert message == "CameraInfo.k: matrix is singular: [[1., 2., 3.], [2., 4., 6.], [0., 0., 1.]]"
