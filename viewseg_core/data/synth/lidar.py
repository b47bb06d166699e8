"""A scanning LiDAR in a synthetic room: the points its beams return, for the simulated robot.

``lidar_scan(scene, pose, LidarConfig(), rng)`` casts every beam of one sweep (``beams``
channels spread evenly over ``vfov_deg`` of elevation, one firing every ``hres_deg`` of
azimuth over the full turn, as a 16-channel spinning LiDAR) from the sensor's pose
(:func:`viewseg_core.data.synth.raycast.cast_rays`) and returns the hits within ``max_range_m``
in the sensor's frame (REP 103: x forward, y left, z up), each moved along its beam by Gaussian
range noise of ``range_noise_m``, in one instant. ``lidar_sweep`` takes the sweep over
``sweep_s`` instead (a real sensor turns for a tenth of a second), each azimuth column from the
sensor's pose at its firing time, and returns each point's time, for deskewing
(:mod:`viewseg_core.lidar_deskew`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from viewseg_core.data.synth.raycast import cast_rays
from viewseg_core.data.synth.scene import Scene


@dataclass(frozen=True)
class LidarConfig:
    """One sweep of a spinning LiDAR (defaults: a 16-channel sensor, 30 degrees vertical)."""

    beams: int = 16
    vfov_deg: float = 30.0
    hres_deg: float = 1.0
    max_range_m: float = 30.0
    range_noise_m: float = 0.02

    def __post_init__(self) -> None:
        if self.beams < 1 or not 0 <= self.vfov_deg < 180 or not 0 < self.hres_deg <= 360:
            raise ValueError(f"lidar: beams >= 1, vfov_deg in [0, 180) and hres_deg in (0, 360] needed, got {self}")
        if not self.max_range_m > 0 or self.range_noise_m < 0:
            raise ValueError(f"lidar: max_range_m > 0 and range_noise_m >= 0 needed, got {self}")


def beam_directions(config: LidarConfig) -> np.ndarray:
    """[beams * firings, 3] unit directions in the sensor frame, beam by beam."""
    elevations = np.radians(np.linspace(-config.vfov_deg / 2, config.vfov_deg / 2, config.beams)
                            if config.beams > 1 else np.zeros(1))
    azimuths = np.radians(np.arange(0.0, 360.0, config.hres_deg))
    e, a = np.meshgrid(elevations, azimuths, indexing="ij")
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)


def lidar_scan(scene: Scene, world_from_lidar: np.ndarray, config: LidarConfig | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """[N, 3] float32 points of one sweep in the sensor frame (see the module docstring).

    Args:
        world_from_lidar: [4, 4] the sensor's pose in the scene.
        rng: the range noise's generator (None: no noise).
    """
    return lidar_sweep(scene, lambda _: world_from_lidar, config, rng, 0.0)[0]


def lidar_sweep(scene: Scene, world_from_lidar_at: Callable[[float], np.ndarray], config: LidarConfig | None = None,
                rng: np.random.Generator | None = None, sweep_s: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """One sweep that takes ``sweep_s`` while the sensor moves: azimuth column j fires at
    ``sweep_s * j / columns`` seconds after the sweep's start, from the sensor's pose then, and
    its points are in the sensor's frame at that time (what a driver that does not deskew
    publishes, with per-point times).

    Args:
        world_from_lidar_at: seconds after the sweep's start -> [4, 4] the sensor's pose.
        rng: the range noise's generator (None: no noise).
    Returns:
        points [N, 3] float32, times [N] float32 (seconds after the sweep's start).
    """
    config = config or LidarConfig()
    if not sweep_s >= 0:
        raise ValueError(f"lidar: sweep_s must be >= 0, got {sweep_s}")
    local = beam_directions(config)
    columns = len(local) // config.beams
    fired = sweep_s * (np.arange(len(local)) % columns) / columns       # beam by beam, column by column
    origins, directions = np.empty_like(local), np.empty_like(local)
    for tau in np.unique(fired):
        pose = world_from_lidar_at(float(tau))
        at = fired == tau
        origins[at], directions[at] = pose[:3, 3], local[at] @ pose[:3, :3].T
    t, _ = cast_rays(scene, origins, directions)
    if rng is not None and config.range_noise_m > 0:
        t = t + rng.normal(0.0, config.range_noise_m, t.shape)
    hit = np.isfinite(t) & (t > 0) & (t <= config.max_range_m)
    return (local[hit] * t[hit, None]).astype(np.float32), fired[hit].astype(np.float32)


__all__ = ["LidarConfig", "beam_directions", "lidar_scan", "lidar_sweep"]
