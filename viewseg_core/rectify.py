"""Pinhole images from a calibrated camera: which intrinsics a frame has, and undistortion.

The model, the keyframes and the scene folders all assume a pinhole camera ``K``. A real
camera publishes CameraInfo with a distortion model and coefficients ``d`` (REP 104 / the
CameraInfo definition): ``k`` and ``d`` describe the *raw* image, and ``p`` the *rectified*
one that image_proc publishes as ``image_rect``. Using ``k`` for a raw image with distortion
puts every pixel away from the centre on the wrong ray (a wide-angle lens by tens of pixels),
so depth and semantics land in the wrong place with nothing to say so.

:func:`resolve_camera` decides per camera (``mode``):

- ``none``: the images are pinholes with ``k``; ``d`` is ignored (what viewseg did before);
- ``rectified``: the images are already rectified (``image_rect``): their pinhole is ``p``'s
  left 3x3 (``k`` where ``p`` is unset);
- ``undistort``: the images are raw: undistort them (:class:`Undistorter`, OpenCV's maps) onto
  ``p``'s pinhole (``k`` where ``p`` is unset); with all-zero ``d`` nothing needs doing;
- ``auto``: ``undistort`` when ``d`` has a non-zero coefficient, except for a topic whose last
  name starts with ``image_rect`` (image_pipeline's name for rectified images, which come with
  the raw camera's CameraInfo): ``rectified`` there; all-zero ``d``: ``k`` as it is.

Undistortion removes the distortion only (OpenCV's map with no rotation), so an undistorted
image keeps the orientation of its ``header.frame_id``, the frame TF gives the pose of. A
*rectified* image of a stereo pair is also turned by the CameraInfo's rectification rotation
``r`` (X_rect = r X_frame, so that epipolar lines are rows): its camera is the frame_id's
turned by ``r``, and :attr:`ResolvedCamera.rotation` says so, for the pose to follow it. A
monocular camera's ``r`` is the identity. Depth registered to the colour camera (planar
metres) is resampled on the same map by nearest neighbour: without a rotation the planar depth
of a surface point is the same in both images, and averaging would invent depths at edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from viewseg_core.cameras import check_pinhole

RECTIFICATION_MODES = ("auto", "undistort", "rectified", "none")
# CameraInfo distortion models OpenCV can invert, with the coefficient counts ROS uses.
DISTORTION_MODELS = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (8, 12, 14), "equidistant": (4,)}


@dataclass(frozen=True)
class Undistorter:
    """Maps from a raw camera's (height, width) pixels onto the pinhole ``K``: [H, W] float32
    source coordinates per output pixel (OpenCV's ``initUndistortRectifyMap``)."""

    K: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images it takes and gives."""
        return self.map_x.shape

    def _check(self, image: np.ndarray, what: str) -> None:
        if image.shape[:2] != self.size:
            raise ValueError(f"{what} is {image.shape[1]}x{image.shape[0]}, the calibration "
                             f"{self.size[1]}x{self.size[0]}")

    def colour(self, image: np.ndarray) -> np.ndarray:
        """[H, W(, C)] uint8 -> the same, bilinear; pixels no raw pixel covers are 0."""
        self._check(image, "image")
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """[H, W] float32 planar metres -> the same, nearest; uncovered pixels are NaN (unknown)."""
        self._check(depth, "depth")
        return cv2.remap(np.asarray(depth, np.float32), self.map_x, self.map_y, cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))

    def labels(self, labels: np.ndarray, ignore: int = 255) -> np.ndarray:
        """[H, W] class ids (uint8 or uint16) -> the same, nearest; uncovered pixels are ``ignore``."""
        self._check(labels, "labels")
        return cv2.remap(labels, self.map_x, self.map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=ignore)


@dataclass(frozen=True)
class ResolvedCamera:
    """What a frame of one CameraInfo is: the pinhole ``K`` the model should use, the
    undistortion to apply first (None: the images are pinholes already), a one-line
    description for logs and diagnostics, and ``rotation``: [3, 3] the rectification rotation
    of a rectified stereo image (X_image_camera = rotation X_frame_id; the image's camera-to-world
    is the frame_id's times rotation^T), None when the image keeps its frame_id's orientation."""

    K: np.ndarray
    undistorter: Undistorter | None
    description: str
    rotation: np.ndarray | None = None


def rotated_frame(rotation: np.ndarray | None) -> np.ndarray:
    """[4, 4] T_image_frame: coordinates in a frame_id -> in its rectified image's camera
    (X_rect = rotation X_frame; the identity for None). The image's camera-to-world is then
    ``frame_to_world @ inv(T)``, and a point in the frame_id goes into the image with ``T``."""
    turn = np.eye(4)
    if rotation is not None:
        turn[:3, :3] = rotation
    return turn


def image_camera_to_world(frame_to_world: np.ndarray, rotation: np.ndarray | None) -> np.ndarray:
    """[4, 4] camera-to-world of an image from its frame_id's (as TF gives it): the frame's own
    for ``rotation`` None, else the frame turned by a rectified stereo image's ``r``."""
    if rotation is None:
        return frame_to_world
    return frame_to_world @ np.linalg.inv(rotated_frame(rotation))


def has_distortion(d) -> bool:
    """Some coefficient is non-zero (an empty ``d`` is none)."""
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    return bool(d.size) and bool(np.any(d != 0))


def rectification_rotation(R) -> np.ndarray | None:
    """CameraInfo ``r`` as [3, 3] when it is a rotation other than the identity; None for the
    identity or an unset (all-zero, empty) ``r``. ValueError for one that is not a rotation."""
    R = np.asarray(R if R is not None else [], dtype=np.float64).reshape(-1)
    if R.size == 0 or not np.any(R):
        return None
    if R.size != 9 or not np.all(np.isfinite(R)):
        raise ValueError(f"CameraInfo.r must be 9 finite numbers (a rotation), got {R.tolist()}")
    R = R.reshape(3, 3)
    if not (np.allclose(R @ R.T, np.eye(3), atol=1e-4) and np.linalg.det(R) > 0):
        raise ValueError(f"CameraInfo.r is not a rotation matrix: {R.tolist()}")
    return None if np.allclose(R, np.eye(3), atol=1e-9) else R


def rectified_K(P, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """The rectified images' pinhole: ``P``'s left 3x3 when it is one, else ``K``.

    Args:
        P: 12 numbers (row-major 3x4) or [3, 4]; all zero where the driver leaves it unset.
    """
    P = np.asarray(P, dtype=np.float64).reshape(-1)
    if P.size != 12 or not np.any(P):
        return np.asarray(K, dtype=np.float64)
    left = P.reshape(3, 4)[:, :3]
    try:
        check_pinhole(left, width, height, "CameraInfo.p")
    except ValueError:
        return np.asarray(K, dtype=np.float64)
    return left.copy()


def make_undistorter(K: np.ndarray, d, model: str, width: int, height: int, new_K: np.ndarray) -> Undistorter:
    """Maps that undistort a raw ``width`` x ``height`` image of (K, d, model) onto ``new_K``.

    Raises:
        ValueError: a model OpenCV cannot invert, or a coefficient count the model does not have.
    """
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if model not in DISTORTION_MODELS:
        raise ValueError(f"distortion model {model!r} with non-zero coefficients cannot be undistorted here "
                         f"(supported: {', '.join(DISTORTION_MODELS)}); publish rectified images (image_proc) "
                         f"and set rectification to 'rectified'")
    if d.size not in DISTORTION_MODELS[model] or not np.all(np.isfinite(d)):
        raise ValueError(f"distortion model {model!r} takes {' or '.join(map(str, DISTORTION_MODELS[model]))} "
                         f"finite coefficients, got {d.size}: {d.tolist()}")
    K = np.asarray(K, dtype=np.float64)
    new_K = np.asarray(new_K, dtype=np.float64)
    if model == "equidistant":
        map_x, map_y = cv2.fisheye.initUndistortRectifyMap(K, d, np.eye(3), new_K, (width, height), cv2.CV_32FC1)
    else:
        map_x, map_y = cv2.initUndistortRectifyMap(K, d, np.eye(3), new_K, (width, height), cv2.CV_32FC1)
    return Undistorter(K=new_K, map_x=map_x, map_y=map_y)


def distortion_maps(K: np.ndarray, d, model: str, width: int, height: int, pinhole_K: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`make_undistorter`: per pixel of a raw ``width`` x ``height`` image
    of (K, d, model), where it lies in a pinhole image of ``pinhole_K`` (float32 [H, W] x and y
    maps for ``cv2.remap``). A simulated camera makes its raw, distorted frames with it."""
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if model not in DISTORTION_MODELS or d.size not in DISTORTION_MODELS[model]:
        raise ValueError(f"distortion_maps: unsupported model {model!r} with {d.size} coefficients")
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    raw = np.stack([u.reshape(-1), v.reshape(-1)], axis=-1)[:, None, :]
    K, pinhole_K = np.asarray(K, np.float64), np.asarray(pinhole_K, np.float64)
    if model == "equidistant":
        points = cv2.fisheye.undistortPoints(raw, K, d, R=np.eye(3), P=pinhole_K)
    else:
        points = cv2.undistortPoints(raw, K, d, R=np.eye(3), P=pinhole_K,
                                     criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-9))
    points = points.reshape(height, width, 2).astype(np.float32)
    return np.ascontiguousarray(points[..., 0]), np.ascontiguousarray(points[..., 1])


def resolve_camera(K: np.ndarray, d, model: str, P, width: int, height: int, mode: str = "auto",
                   topic: str = "", R=None) -> ResolvedCamera:
    """The pinhole and undistortion for frames of one CameraInfo (see the module docstring).

    Args:
        K: [3, 3] the ``k`` of the CameraInfo (checked by the caller); d, model, P, R: its ``d``,
            ``distortion_model``, ``p`` and ``r`` (``r`` matters for rectified images only);
            width, height: its size.
        mode: one of :data:`RECTIFICATION_MODES`.
        topic: the image topic, for ``auto``'s ``image_rect`` rule.
    Raises:
        ValueError: an unknown mode, distortion that ``undistort`` cannot remove, or (for
            rectified images) an ``r`` that is not a rotation.
    """
    if mode not in RECTIFICATION_MODES:
        raise ValueError(f"rectification must be one of {', '.join(RECTIFICATION_MODES)}, got {mode!r}")
    K = np.asarray(K, dtype=np.float64)
    distorted = has_distortion(d)
    if mode == "auto":
        if not distorted:
            return ResolvedCamera(K, None, "pinhole (no distortion in CameraInfo)")
        rect_topic = topic.rstrip("/").rsplit("/", 1)[-1].startswith("image_rect")
        mode = "rectified" if rect_topic else "undistort"
    if mode == "none":
        return ResolvedCamera(K, None, "pinhole k" + (f" (ignoring {model} distortion)" if distorted else ""))
    if mode == "rectified":
        rotation = rectification_rotation(R)
        if rotation is None:
            return ResolvedCamera(rectified_K(P, K, width, height), None, "rectified images (pinhole of p)")
        angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)))
        return ResolvedCamera(rectified_K(P, K, width, height), None,
                              f"rectified images (pinhole of p, turned {angle:.2f} deg by r)", rotation)
    if not distorted:
        return ResolvedCamera(K, None, "pinhole (no distortion in CameraInfo)")
    new_K = rectified_K(P, K, width, height)
    return ResolvedCamera(new_K, make_undistorter(K, d, model, width, height, new_K), f"undistorting {model}")


__all__ = ["RECTIFICATION_MODES", "DISTORTION_MODELS", "Undistorter", "ResolvedCamera", "has_distortion",
           "rectification_rotation", "rotated_frame", "image_camera_to_world", "rectified_K", "make_undistorter", "distortion_maps", "resolve_camera"]
