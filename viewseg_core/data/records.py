"""The View record: how one posed image travels through viewseg, whatever its source."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewseg_core.classes import IGNORE_LABEL


@dataclass
class View:
    """One posed RGB view with optional labels and depth (design.md, "Data flow").

    Pixel convention (OpenCV/ROS): the centre of pixel (row r, column c) is the continuous
    point (u, v) = (c, r). ``K`` is the general 3x3 projective matrix mapping a point in the
    camera's optical frame (x right, y down, z forward) to homogeneous pixels; for a plain
    pinhole it is the usual upper-triangular intrinsics, for tilt-shift cameras (Hypersim)
    it is a full 3x3 matrix.

    Attributes:
        rgb: [H, W, 3] uint8.
        K: [3, 3] float64, pixels.
        c2w: [4, 4] float64 camera-to-world pose of the optical frame, metres.
        labels: [H, W] uint8 or uint16 class ids, :data:`IGNORE_LABEL` (255) = ignore; or None.
        depth: [H, W] float32 planar depth along the optical axis in metres, NaN = unknown;
            or None.
        view_id: a name unique within its scene (e.g. a frame index or a bag stamp).
        stamp: capture time in seconds (0 when the source has none).
    """

    rgb: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    labels: np.ndarray | None = None
    depth: np.ndarray | None = None
    view_id: str = ""
    stamp: float = 0.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.c2w = np.asarray(self.c2w, dtype=np.float64)
        self.validate()

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def validate(self) -> None:
        """Raise ValueError naming the first field that breaks the record's contract."""
        name = f"view {self.view_id!r}"
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"{name}: rgb must be [H, W, 3] uint8, got {self.rgb.shape} {self.rgb.dtype}")
        if self.K.shape != (3, 3) or not np.all(np.isfinite(self.K)) or abs(np.linalg.det(self.K)) < 1e-12:
            raise ValueError(f"{name}: K must be a finite invertible 3x3 matrix, got {self.K!r}")
        if self.c2w.shape != (4, 4) or not np.all(np.isfinite(self.c2w)):
            raise ValueError(f"{name}: c2w must be a finite 4x4 matrix")
        rot = self.c2w[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
            raise ValueError(f"{name}: c2w rotation is not a proper rotation (orthonormal, det +1)")
        if not np.allclose(self.c2w[3], [0, 0, 0, 1]):
            raise ValueError(f"{name}: c2w last row must be [0, 0, 0, 1]")
        hw = self.rgb.shape[:2]
        if self.labels is not None:
            if self.labels.shape != hw or self.labels.dtype not in (np.uint8, np.uint16):
                raise ValueError(f"{name}: labels must be [H, W] uint8/uint16 matching rgb {hw}, "
                                 f"got {self.labels.shape} {self.labels.dtype}")
        if self.depth is not None:
            if self.depth.shape != hw or self.depth.dtype != np.float32:
                raise ValueError(f"{name}: depth must be [H, W] float32 matching rgb {hw}, "
                                 f"got {self.depth.shape} {self.depth.dtype}")


__all__ = ["View", "IGNORE_LABEL"]
