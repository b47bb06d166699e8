"""A seeded depth-camera model: what a structured-light / active-stereo RGB-D camera would
have measured of a clean planar depth image.

``apply_sensor(depth, DepthSensorConfig(), rng)`` turns true planar depth (metres, NaN or
<= 0 = unknown) into a measurement with NaN where the camera returns nothing:

1. **edges**: a pixel whose 4-neighbour differs from it by more than ``edge_threshold``
   (relative: ``|d_n - d| > edge_threshold * min(d, d_n)``) lies on a depth discontinuity;
   each such pixel (both sides of the step) is dropped with probability ``edge_dropout``.
   Found on the clean depth, before noise.
2. **noise** that grows with distance: ``z + N(0, (noise_k * z^2)^2)`` (structured-light
   cameras: k about 0.001-0.003 per metre; the Kinect v1 / RealSense D400 "z^2" law).
3. **quantisation** to multiples of ``quantization_m`` (16UC1 millimetres: 0.001).
4. **range**: measured values beyond ``max_range_m`` (or below ``min_range_m``, or <= 0)
   are no return.
5. **holes**: random blobs (discs of radius ``hole_radius_px``) of missing pixels covering
   an expected ``hole_rate`` of the image: each pixel of the image padded by the radius is a
   blob centre with probability ``q = 1 - (1 - hole_rate)^(1 / A)`` (``A`` = pixels of the
   disc), so a pixel is missed by all ``A`` centres that could cover it with probability
   exactly ``1 - hole_rate`` (borders included).
6. **rows** (a sparse sensor, off by default): with ``row_stride`` s > 1 only image rows
   0, s, 2s, ... return anything, as when a scanning LiDAR's beams are projected into the
   camera (a rough stand-in: real beams fall on curves, not rows) or a sensor of lower
   vertical resolution is upsampled. It draws nothing, so the kept rows are the s = 1 rows bit
   for bit. ``row_strides`` (training a model for sensors of several densities) instead draws
   each image's stride uniformly from a list (1 = every row) and its first kept row uniformly
   from 0 .. s - 1, after every other draw of the image (an image drawn alone with the same seed
   has the same noise, holes and edges without it).
7. **band** (off by default): with ``row_band`` b < 1 only the central round(b H) rows return
   (at least one), as a LiDAR whose vertical field is narrower than the camera's leaves the rows
   above and below it without depth (a 30-degree LiDAR under a 55-degree camera: b about 0.55).
   ``row_bands`` draws each image's band from a list (1 = every row) after every other draw,
   row_strides' included.

Sizes are in pixels of the image the model is applied to (the dataset applies it after
resizing views to ``data.image_size``). All randomness comes from the generator passed in:
the same seed gives the same measurement, bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import cv2
import numpy as np
import torch

__all__ = ["DepthSensorConfig", "apply_sensor", "edge_mask", "hole_mask", "as_numpy_rng"]

RngLike = Union[np.random.Generator, int, torch.Generator, None]


@dataclass(frozen=True)
class DepthSensorConfig:
    """A depth camera's imperfections (see the module docstring for the model).

    Attributes:
        noise_k: sigma = noise_k * z^2 (metres; noise_k in 1/m). 0 = no noise.
        quantization_m: measured depths are multiples of this (0 = none).
        min_range_m: no return nearer than this (0 = none).
        max_range_m: no return beyond this (0 = unlimited).
        hole_rate: expected fraction of pixels lost to random hole blobs, in [0, 1).
        hole_radius_px: radius of a hole blob (a disc of the pixels within it), pixels.
        edge_threshold: relative depth jump to a 4-neighbour that marks a discontinuity.
        edge_dropout: probability that a pixel on a discontinuity returns nothing.
        row_stride: only every row_stride-th row returns (1 = every row: a depth camera).
        row_strides: when not empty, each image's row stride is drawn from these instead, with a
            random first row (a mix of sensor densities in training); ``row_stride`` must then be 1.
        row_band: only the central row_band of the rows returns (1 = every row; a LiDAR's
            vertical field under a wider camera's).
        row_bands: when not empty, each image's band is drawn from these instead (training for
            several fields of view); ``row_band`` must then be 1.
    """

    noise_k: float = 0.002
    quantization_m: float = 0.001
    min_range_m: float = 0.0
    max_range_m: float = 8.0
    hole_rate: float = 0.02
    hole_radius_px: float = 1.5
    edge_threshold: float = 0.1
    edge_dropout: float = 0.5
    row_stride: int = 1
    row_strides: tuple[int, ...] = ()
    row_band: float = 1.0
    row_bands: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.row_stride, bool) or not isinstance(self.row_stride, int) or self.row_stride < 1:
            raise ValueError(f"depth_sensor.row_stride must be an integer >= 1, got {self.row_stride!r}")
        if not isinstance(self.row_strides, (list, tuple)):
            raise ValueError(f"depth_sensor.row_strides must be a list of integers >= 1, got {self.row_strides!r}")
        object.__setattr__(self, "row_strides", tuple(self.row_strides))   # YAML gives a list
        for stride in self.row_strides:
            if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
                raise ValueError(f"depth_sensor.row_strides must be integers >= 1, got {self.row_strides!r}")
        if not isinstance(self.row_bands, (list, tuple)):
            raise ValueError(f"depth_sensor.row_bands must be a list of numbers in (0, 1], got {self.row_bands!r}")
        object.__setattr__(self, "row_bands", tuple(self.row_bands))
        for band in (self.row_band, *self.row_bands):
            if isinstance(band, bool) or not isinstance(band, (int, float)) or not 0.0 < band <= 1.0:
                raise ValueError(f"depth_sensor.row_band(s) must be numbers in (0, 1], got {band!r}")
        if self.row_bands and self.row_band != 1.0:
            raise ValueError(f"depth_sensor.row_band ({self.row_band}) and row_bands ({list(self.row_bands)}) both "
                             f"set: row_bands draws each image's band, set one of them")
        if self.row_strides and self.row_stride != 1:
            raise ValueError(f"depth_sensor.row_stride ({self.row_stride}) and row_strides ({list(self.row_strides)}) "
                             f"both set: row_strides draws each image's stride, set one of them")
        for name in ("noise_k", "quantization_m", "min_range_m", "max_range_m", "hole_radius_px",
                     "edge_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"depth_sensor.{name} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= self.hole_rate < 1.0:
            raise ValueError(f"depth_sensor.hole_rate must be in [0, 1), got {self.hole_rate!r}")
        if not 0.0 <= self.edge_dropout <= 1.0:
            raise ValueError(f"depth_sensor.edge_dropout must be in [0, 1], got {self.edge_dropout!r}")
        if self.max_range_m and self.max_range_m <= self.min_range_m:
            raise ValueError(f"depth_sensor.max_range_m ({self.max_range_m}) must exceed min_range_m "
                             f"({self.min_range_m}) (or be 0 = unlimited)")


def as_numpy_rng(rng: RngLike) -> np.random.Generator:
    """A numpy Generator from a Generator (used as is), an int seed, a torch.Generator (one
    draw from it seeds the numpy one) or None (seed 0: deterministic, never the clock)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=rng).item())
        return np.random.default_rng(seed)
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator, an int seed or a torch.Generator, got {type(rng).__name__}")


def _disc(radius: float) -> np.ndarray:
    r = int(math.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ((xx * xx + yy * yy) <= radius * radius + 1e-9).astype(np.uint8)


def hole_mask(shape: tuple[int, int], rate: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """[H, W] bool, True inside random disc blobs covering an expected ``rate`` of the pixels."""
    H, W = shape
    if rate <= 0:
        return np.zeros((H, W), bool)
    kernel = _disc(radius)
    area = int(kernel.sum())
    q = 1.0 - (1.0 - rate) ** (1.0 / area)
    r = kernel.shape[0] // 2
    centres = (rng.random((H + 2 * r, W + 2 * r)) < q).astype(np.uint8)
    if r == 0:
        return centres.astype(bool)
    grown = cv2.dilate(centres, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return grown[r:r + H, r:r + W].astype(bool)


def edge_mask(depth: np.ndarray, threshold: float) -> np.ndarray:
    """[H, W] bool: pixels with a 4-neighbour deeper or shallower by more than ``threshold``
    times the nearer of the two (unknown pixels are never edges, nor count as neighbours)."""
    d = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float64)
    out = np.zeros(d.shape, bool)
    with np.errstate(invalid="ignore"):
        for axis in (0, 1):
            a = d.take(np.arange(d.shape[axis] - 1), axis=axis)
            b = d.take(np.arange(1, d.shape[axis]), axis=axis)
            jump = np.abs(a - b) > threshold * np.fmin(a, b)   # NaN compares False
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(0, -1), slice(1, None)
            out[tuple(lo)] |= jump
            out[tuple(hi)] |= jump
    return out


def _apply_one(depth: np.ndarray, cfg: DepthSensorConfig, rng: np.random.Generator) -> np.ndarray:
    d = depth.astype(np.float64)
    known = np.isfinite(d) & (d > 0)
    d = np.where(known, d, np.nan)
    drop = ~known
    # The draws happen in a fixed order and shape whatever the content: one stream per image.
    edge_u = rng.random(d.shape)
    noise = rng.standard_normal(d.shape)
    holes = hole_mask(d.shape, cfg.hole_rate, cfg.hole_radius_px, rng)
    if cfg.edge_dropout > 0:
        drop |= edge_mask(d, cfg.edge_threshold) & (edge_u < cfg.edge_dropout)
    with np.errstate(invalid="ignore"):
        z = d + cfg.noise_k * d * d * noise
        if cfg.quantization_m > 0:
            z = np.round(z / cfg.quantization_m) * cfg.quantization_m
        drop |= ~(z > 0) | (z < cfg.min_range_m)
        if cfg.max_range_m > 0:
            drop |= z > cfg.max_range_m
    drop |= holes
    stride, first = cfg.row_stride, 0
    if cfg.row_strides:   # drawn last: the draws above are those of the same seed without it
        stride = int(cfg.row_strides[rng.integers(len(cfg.row_strides))])
        first = int(rng.integers(stride))
    if stride > 1:
        drop[(np.arange(d.shape[0]) - first) % stride != 0] = True
    band = cfg.row_band
    if cfg.row_bands:     # drawn after the strides: the draws above stay those of the same seed
        band = float(cfg.row_bands[rng.integers(len(cfg.row_bands))])
    if band < 1.0:
        height = d.shape[0]
        keep = max(1, int(round(band * height)))
        top = (height - keep) // 2
        drop[:top] = True
        drop[top + keep:] = True
    return np.where(drop, np.nan, z).astype(np.float32)


def apply_sensor(depth, config: DepthSensorConfig | None = None, rng: RngLike = None):
    """Simulate a depth camera's measurement of clean planar depth.

    Args:
        depth: [H, W] or [..., H, W] planar depth in metres (numpy or torch; NaN or <= 0 =
            unknown). Leading dimensions are independent images, drawn in order from ``rng``.
        config: the sensor (default :class:`DepthSensorConfig`).
        rng: numpy Generator, int seed or torch.Generator (see :func:`as_numpy_rng`).
    Returns:
        float32 depth of the same shape and kind (torch: same device), NaN = no return.
    """
    cfg = config or DepthSensorConfig()
    gen = as_numpy_rng(rng)
    is_torch = isinstance(depth, torch.Tensor)
    array = depth.detach().cpu().numpy() if is_torch else np.asarray(depth)
    if array.ndim < 2:
        raise ValueError(f"apply_sensor: depth must be [..., H, W], got shape {array.shape}")
    flat = array.reshape(-1, *array.shape[-2:])
    out = np.stack([_apply_one(img, cfg, gen) for img in flat]).reshape(array.shape) if flat.shape[0] else \
        np.zeros(array.shape, np.float32)
    if is_torch:
        return torch.from_numpy(out).to(depth.device)
    return out
