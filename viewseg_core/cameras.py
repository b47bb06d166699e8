"""Camera geometry: pixels <-> rays <-> points, intrinsics edits, and dataset conventions.

The one place where viewseg writes down its camera conventions (design.md, "Conventions"):

- Pixel convention (OpenCV/ROS): the centre of pixel (row r, column c) is the continuous
  point (u, v) = (c, r); a pixel covers [c - 0.5, c + 0.5) x [r - 0.5, r + 0.5).
- Camera frame: OpenCV optical (x right, y down, z forward). Poses are camera-to-world 4x4
  ``c2w`` matrices in metres.
- ``K`` is a general invertible 3x3 projective matrix taking a camera-frame point X to
  homogeneous pixels ``K @ X ~ (u, v, 1)``. A plain pinhole is the upper-triangular special
  case; tilt-shift cameras (Hypersim's ``M_cam_from_uv``) give a full 3x3 matrix. Nothing
  here assumes a focal length or principal point: rays always come from ``inv(K)``.
- Depth is planar depth: the camera-frame z of a point (REP 118), never the ray distance.

Torch functions batch over leading dimensions and broadcast ``K``/``c2w`` against the
points. Dataset conversions are numpy float64 in and out, each with its inverse.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# Homogeneous coordinates closer to zero than this are treated as "at infinity" when
# dividing; only points on the camera's principal plane (z ~ 0) get near it.
_HOMOGENEOUS_EPS = 1e-9

# Flips between OpenCV optical (x right, y down, z forward) and the OpenGL-style camera of
# Hypersim and Habitat (x right, y up, -z forward): X_gl = _FLIP_YZ @ X_cv (its own inverse).
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])
# pytorch3d camera (x left, y up, z forward): X_cv = _FLIP_XY @ X_p3d (its own inverse).
_FLIP_XY = np.diag([-1.0, -1.0, 1.0])


# --------------------------------------------------------------------------------------
# Pixels, rays and projection (torch, batched)
# --------------------------------------------------------------------------------------

def pixel_grid(height: int, width: int, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel centres of an image, row-major.

    Returns:
        [H*W, 2] (u, v) = (column, row); index ``r * W + c`` holds (c, r).
    """
    rows = torch.arange(height, device=device, dtype=dtype)
    cols = torch.arange(width, device=device, dtype=dtype)
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def _homogeneous(uv: torch.Tensor) -> torch.Tensor:
    return torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)


def camera_directions(K: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Unit camera-frame ray directions through pixels, pointing forward (z > 0).

    Args:
        K: [..., 3, 3] general projective intrinsics.
        uv: [..., N, 2] pixel coordinates.
    Returns:
        [..., N, 3] unit directions in the OpenCV camera frame.
    """
    K_inv = torch.linalg.inv(K.to(uv.dtype))
    d = torch.einsum("...ij,...nj->...ni", K_inv, _homogeneous(uv))
    # inv(K) fixes a direction only up to sign (d and -d project to the same pixel);
    # the camera sees what lies in front of it, so pick z > 0.
    d = torch.where(d[..., 2:3] < 0, -d, d)
    return d / torch.linalg.norm(d, dim=-1, keepdim=True)


def pixels_to_rays(K: torch.Tensor, c2w: torch.Tensor,
                   uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World-frame rays through pixels.

    Args:
        K: [..., 3, 3] intrinsics; c2w: [..., 4, 4] camera-to-world; uv: [..., N, 2].
    Returns:
        origins [..., N, 3] (the camera centre, repeated), directions [..., N, 3] unit, world.
    """
    c2w = c2w.to(uv.dtype)
    d_cam = camera_directions(K, uv)
    R = c2w[..., :3, :3]
    directions = torch.einsum("...ij,...nj->...ni", R, d_cam)
    origins = c2w[..., None, :3, 3].expand(directions.shape)
    return origins, directions


def world_to_camera(c2w: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """[..., N, 3] world points -> [..., N, 3] OpenCV camera-frame points."""
    c2w = c2w.to(points.dtype)
    R = c2w[..., :3, :3]
    t = c2w[..., None, :3, 3]
    # R^T (p - t), written with einsum so leading dims broadcast.
    return torch.einsum("...ji,...nj->...ni", R, points - t)


def project_points(K: torch.Tensor, c2w: torch.Tensor,
                   points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project world points into a camera.

    Args:
        K: [..., 3, 3]; c2w: [..., 4, 4]; points: [..., N, 3] world, metres.
    Returns:
        uv [..., N, 2] pixels (finite everywhere; meaningless where ``in_front`` is False),
        depth [..., N] planar depth (camera-frame z),
        in_front [..., N] bool, depth > 0.
    """
    return project_camera_points(K, world_to_camera(c2w, points))


def project_camera_points(K: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`project_points` for points already in the camera frame, X [..., N, 3] (a caller
    that needs the camera-frame points too transforms them once)."""
    h = torch.einsum("...ij,...nj->...ni", K.to(X.dtype), X)
    w = h[..., 2:3]
    # Keep the division finite for points on the principal plane; they are masked anyway.
    w = torch.where(w.abs() < _HOMOGENEOUS_EPS, torch.full_like(w, _HOMOGENEOUS_EPS), w)
    uv = h[..., :2] / w
    depth = X[..., 2]
    return uv, depth, depth > 0


def in_image(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[..., N, 2] pixels -> [..., N] bool: inside the image area, -0.5 <= u < W - 0.5."""
    u, v = uv[..., 0], uv[..., 1]
    return (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)


def uv_to_grid(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[..., 2] pixels -> [..., 2] coordinates for ``F.grid_sample(..., align_corners=False)``.

    grid_sample's -1 and +1 are the outer image edges (-0.5 and W - 0.5 in pixels), so
    pixel centre c maps to (2c + 1) / W - 1 and sampling at a centre returns that pixel.
    """
    size = torch.tensor([width, height], dtype=uv.dtype, device=uv.device)
    return (2.0 * uv + 1.0) / size - 1.0


def ray_z_component(K: torch.Tensor | None, c2w: torch.Tensor,
                    directions: torch.Tensor) -> torch.Tensor:
    """Optical-axis component of unit world directions: planar depth = ray distance * this.

    ``K`` does not enter (the optical axis is the camera frame's z, whatever the
    projection); it is accepted so that callers pass one camera description everywhere.

    Args:
        c2w: [..., 4, 4]; directions: [..., N, 3] unit, world frame.
    Returns:
        [..., N]
    """
    z_axis = c2w.to(directions.dtype)[..., None, :3, 2]
    return (directions * z_axis).sum(-1)


# --------------------------------------------------------------------------------------
# Intrinsics follow image edits (numpy or torch, any leading dims)
# --------------------------------------------------------------------------------------

def _left_multiply(K, M: np.ndarray):
    """M @ K for a numpy or torch K (with leading dims)."""
    if isinstance(K, torch.Tensor):
        return torch.as_tensor(M, dtype=K.dtype, device=K.device) @ K
    return M @ np.asarray(K, dtype=np.float64)


def scale_intrinsics(K, sx: float, sy: float):
    """Intrinsics after scaling the image by (sx, sy) (new width = sx * old width).

    Pixel *areas* scale, so centres move as u' = (u + 0.5) * sx - 0.5: the -0.5 shift is
    what keeps the pixel-centre convention exact (a plain fx *= sx, cx *= sx is off by
    (sx - 1) / 2 pixels). Written as a left product so tilt-shift K stays exact too.
    """
    S = np.array([[sx, 0.0, 0.5 * sx - 0.5],
                  [0.0, sy, 0.5 * sy - 0.5],
                  [0.0, 0.0, 1.0]])
    return _left_multiply(K, S)


def resize_intrinsics(K, old_hw: Sequence[int], new_hw: Sequence[int]):
    """Intrinsics after resizing an image from (h0, w0) to (h1, w1) pixels."""
    (h0, w0), (h1, w1) = old_hw, new_hw
    return scale_intrinsics(K, w1 / w0, h1 / h0)


def crop_intrinsics(K, top: float, left: float):
    """Intrinsics after cropping an image so that its new pixel (0, 0) was (top, left)."""
    T = np.array([[1.0, 0.0, -float(left)],
                  [0.0, 1.0, -float(top)],
                  [0.0, 0.0, 1.0]])
    return _left_multiply(K, T)


# --------------------------------------------------------------------------------------
# Dataset / framework conversions (numpy float64)
# --------------------------------------------------------------------------------------

def _as_matrix(x, shape: tuple[int, ...], name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains non-finite values: {a!r}")
    return a


def _check_invertible(K: np.ndarray, name: str) -> None:
    if abs(np.linalg.det(K)) < 1e-12:
        # One line: this text ends up in a service response and a log line.
        raise ValueError(f"{name}: matrix is singular: {_one_line(K)}")


def _one_line(matrix: np.ndarray) -> str:
    return np.array2string(np.asarray(matrix), separator=", ", max_line_width=10**6).replace("\n", "")


# How far outside the image the principal point may lie, as a fraction of the image size.
# Real pinhole cameras put it within a few percent of the centre; a value far outside is a
# unit or size mix-up (K for another resolution), which would render a shifted world.
PRINCIPAL_POINT_MARGIN = 0.25


def check_pinhole(K: np.ndarray, width: int, height: int, name: str = "K") -> None:
    """ValueError (one line, naming ``name``) unless K is a usable pinhole for a width x height
    image: fx, fy > 0, last row [0, 0, 1], and the principal point inside the image grown by
    :data:`PRINCIPAL_POINT_MARGIN` of its size on every side."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise ValueError(f"{name}: need a finite 3x3 matrix, got {_one_line(K)}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (fx > 0 and fy > 0):
        raise ValueError(f"{name}: focal lengths must be positive, got fx={fx:g}, fy={fy:g}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        raise ValueError(f"{name}: not a pinhole matrix (third row must be [0, 0, 1], K[1][0] = 0): {_one_line(K)}")
    mx, my = PRINCIPAL_POINT_MARGIN * width, PRINCIPAL_POINT_MARGIN * height
    if not (-mx <= cx <= width + mx and -my <= cy <= height + my):
        raise ValueError(f"{name}: principal point ({cx:g}, {cy:g}) is far outside the {width}x{height} image "
                         f"(allowed: x in [{-mx:g}, {width + mx:g}], y in [{-my:g}, {height + my:g}])")


def _normalise_K(K: np.ndarray) -> np.ndarray:
    """Fix the projective scale of K: K[2, 2] = 1 when possible, else unit third row."""
    scale = K[2, 2] if abs(K[2, 2]) > 1e-12 else np.linalg.norm(K[2])
    return K / scale


def K_from_camera_info(k: Sequence[float]) -> np.ndarray:
    """ROS sensor_msgs/CameraInfo ``k`` (9 numbers, row-major) -> [3, 3] K.

    CameraInfo's K is already in the OpenCV optical frame and the same pixel convention.
    An all-zero ``k`` means "uncalibrated" in ROS and is rejected.
    """
    K = _as_matrix(np.asarray(k, dtype=np.float64).reshape(-1), (9,), "CameraInfo.k").reshape(3, 3)
    if not np.any(K):
        raise ValueError("CameraInfo.k is all zeros: the camera is uncalibrated")
    _check_invertible(K, "CameraInfo.k")
    return K.copy()


def camera_info_k_from_K(K) -> list[float]:
    """[3, 3] K -> the 9 row-major floats of CameraInfo ``k`` (inverse of K_from_camera_info)."""
    return [float(x) for x in _as_matrix(K, (3, 3), "K").reshape(-1)]


def K_from_hfov(hfov_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K with square pixels from a horizontal field of view (Habitat's ``hfov``).

    The field of view spans the full image extent (edge to edge, width pixels).
    """
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f"hfov must be in (0, 180) degrees, got {hfov_deg}")
    f = 0.5 * width / np.tan(0.5 * np.deg2rad(hfov_deg))
    return np.array([[f, 0.0, 0.5 * width - 0.5],
                     [0.0, f, 0.5 * height - 0.5],
                     [0.0, 0.0, 1.0]])


def _hypersim_uv_from_pixel(width: int, height: int) -> np.ndarray:
    """A with (u_ndc, v_ndc, 1) = A @ (u, v, 1): OpenCV pixels -> Hypersim image coords.

    Hypersim's normalised coordinates span the full image extent, u right, v up, with
    pixel centres at ((c + 0.5) / W * 2 - 1, 1 - (r + 0.5) / H * 2).
    """
    return np.array([[2.0 / width, 0.0, 1.0 / width - 1.0],
                     [0.0, -2.0 / height, 1.0 - 1.0 / height],
                     [0.0, 0.0, 1.0]])


def hypersim_K(M_cam_from_uv, width: int, height: int) -> np.ndarray:
    """Hypersim's per-scene ``M_cam_from_uv`` -> general [3, 3] K in the OpenCV frame.

    ``M_cam_from_uv`` maps Hypersim's normalised image coordinates (u_ndc, v_ndc, 1) to a
    ray direction in Hypersim's camera frame (x right, y up, -z forward). Composing
    pixels -> (u_ndc, v_ndc, 1) -> Hypersim ray -> OpenCV ray gives inv(K); tilt-shift
    scenes produce a K that is not upper triangular, and that is kept as is.
    """
    M = _as_matrix(M_cam_from_uv, (3, 3), "M_cam_from_uv")
    _check_invertible(M, "M_cam_from_uv")
    if width <= 0 or height <= 0:
        raise ValueError(f"hypersim_K: image size must be positive, got {width}x{height}")
    K_inv = _FLIP_YZ @ M @ _hypersim_uv_from_pixel(width, height)
    return _normalise_K(np.linalg.inv(K_inv))


def hypersim_M_cam_from_uv(K, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`hypersim_K`, normalised so that M[2, 2] = -1 (Hypersim's scale)."""
    K = _as_matrix(K, (3, 3), "K")
    _check_invertible(K, "K")
    M = _FLIP_YZ @ np.linalg.inv(K) @ np.linalg.inv(_hypersim_uv_from_pixel(width, height))
    scale = -M[2, 2] if abs(M[2, 2]) > 1e-12 else np.linalg.norm(M[:, 2])
    return M / scale


def hypersim_c2w(R_world_from_cam, t_world, meters_per_asset_unit: float) -> np.ndarray:
    """Hypersim camera pose (asset units, camera x right, y up, -z forward) -> OpenCV c2w.

    Args:
        R_world_from_cam: [3, 3] (Hypersim ``camera_keyframe_orientations``).
        t_world: [3] camera position in asset units (``camera_keyframe_positions``).
        meters_per_asset_unit: the scene's scale (``metadata_scene.csv``).
    """
    R = _as_matrix(R_world_from_cam, (3, 3), "R_world_from_cam")
    t = _as_matrix(np.asarray(t_world, dtype=np.float64).reshape(-1), (3,), "t_world")
    if not meters_per_asset_unit > 0:
        raise ValueError(f"meters_per_asset_unit must be positive, got {meters_per_asset_unit}")
    c2w = np.eye(4)
    c2w[:3, :3] = R @ _FLIP_YZ
    c2w[:3, 3] = t * meters_per_asset_unit
    return c2w


def opencv_c2w_to_hypersim(c2w, meters_per_asset_unit: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`hypersim_c2w`: -> (R_world_from_cam [3, 3], t_world [3] asset units)."""
    c2w = _as_matrix(c2w, (4, 4), "c2w")
    return c2w[:3, :3] @ _FLIP_YZ, c2w[:3, 3] / meters_per_asset_unit


def habitat_c2w_to_opencv(T) -> np.ndarray:
    """Habitat/OpenGL camera-to-world (camera x right, y up, -z forward) -> OpenCV c2w."""
    T = _as_matrix(T, (4, 4), "habitat c2w")
    out = T.copy()
    out[:3, :3] = T[:3, :3] @ _FLIP_YZ
    return out


def opencv_c2w_to_habitat(c2w) -> np.ndarray:
    """Inverse of :func:`habitat_c2w_to_opencv` (the flip is its own inverse)."""
    c2w = _as_matrix(c2w, (4, 4), "c2w")
    out = c2w.copy()
    out[:3, :3] = c2w[:3, :3] @ _FLIP_YZ
    return out


def pytorch3d_RT_to_opencv_c2w(R, T) -> np.ndarray:
    """pytorch3d world-to-view (R, T) -> OpenCV c2w.

    pytorch3d uses row vectors, X_view = X_world @ R + T, with a view frame x left, y up,
    z forward. As columns: X_view = R^T X_world + T, and X_cv = diag(-1, -1, 1) X_view.
    """
    R = _as_matrix(R, (3, 3), "pytorch3d R")
    T = _as_matrix(np.asarray(T, dtype=np.float64).reshape(-1), (3,), "pytorch3d T")
    R_w2c = _FLIP_XY @ R.T
    t_w2c = _FLIP_XY @ T
    c2w = np.eye(4)
    c2w[:3, :3] = R_w2c.T
    c2w[:3, 3] = -R_w2c.T @ t_w2c
    return c2w


def opencv_c2w_to_pytorch3d_RT(c2w) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pytorch3d_RT_to_opencv_c2w`: -> (R [3, 3], T [3])."""
    c2w = _as_matrix(c2w, (4, 4), "c2w")
    R_w2c = c2w[:3, :3].T
    t_w2c = -R_w2c @ c2w[:3, 3]
    return (_FLIP_XY @ R_w2c).T, _FLIP_XY @ t_w2c


def distance_to_planar_depth(distance, K) -> np.ndarray:
    """[H, W] distance to the camera centre (Hypersim ``depth_meters``) -> planar depth.

    Works for any K (tilt-shift included): planar depth = distance * z of the unit ray.
    NaN stays NaN.
    """
    distance = np.asarray(distance)
    if distance.ndim != 2:
        raise ValueError(f"distance must be [H, W], got shape {distance.shape}")
    h, w = distance.shape
    K_t = torch.as_tensor(_as_matrix(K, (3, 3), "K"))
    d = camera_directions(K_t, pixel_grid(h, w, dtype=torch.float64))
    z = d[:, 2].reshape(h, w).numpy()
    return (distance.astype(np.float64) * z).astype(distance.dtype)


def planar_depth_to_distance(depth, K) -> np.ndarray:
    """Inverse of :func:`distance_to_planar_depth`."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    h, w = depth.shape
    K_t = torch.as_tensor(_as_matrix(K, (3, 3), "K"))
    d = camera_directions(K_t, pixel_grid(h, w, dtype=torch.float64))
    z = d[:, 2].reshape(h, w).numpy()
    return (depth.astype(np.float64) / z).astype(depth.dtype)


__all__ = [
    "pixel_grid", "camera_directions", "pixels_to_rays", "world_to_camera", "project_points",
    "project_camera_points", "in_image", "uv_to_grid", "ray_z_component", "scale_intrinsics", "resize_intrinsics", "crop_intrinsics",
    "K_from_camera_info", "camera_info_k_from_K", "check_pinhole", "PRINCIPAL_POINT_MARGIN", "K_from_hfov", "hypersim_K",
    "hypersim_M_cam_from_uv", "hypersim_c2w", "opencv_c2w_to_hypersim",
    "habitat_c2w_to_opencv", "opencv_c2w_to_habitat", "pytorch3d_RT_to_opencv_c2w",
    "opencv_c2w_to_pytorch3d_RT", "distance_to_planar_depth", "planar_depth_to_distance",
]
