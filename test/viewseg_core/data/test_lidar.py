"""viewseg_core/data/synth/lidar.py: a LiDAR sweep in an empty box room, against ranges worked
out from the room's six planes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.classes import CLASS_NAMES
from viewseg_core.data.synth.lidar import LidarConfig, beam_directions, lidar_scan
from viewseg_core.data.synth.scene import SceneBuilder

W, D, H = 6.0, 5.0, 3.0


def empty_room():
    """Walls, floor and ceiling of a 6 x 5 x 3 m room, 0.2 m thick boxes outside it."""
    b = SceneBuilder()
    m = b.material([0.7, 0.7, 0.7])
    wall, th = CLASS_NAMES.index("wall"), 0.2
    b.box([W / 2, -th / 2, H / 2], [W / 2 + th, th / 2, H / 2 + th], wall, m)
    b.box([W / 2, D + th / 2, H / 2], [W / 2 + th, th / 2, H / 2 + th], wall, m)
    b.box([-th / 2, D / 2, H / 2], [th / 2, D / 2 + th, H / 2 + th], wall, m)
    b.box([W + th / 2, D / 2, H / 2], [th / 2, D / 2 + th, H / 2 + th], wall, m)
    b.box([W / 2, D / 2, -th / 2], [W / 2 + th, D / 2 + th, th / 2], CLASS_NAMES.index("floor"), m)
    b.box([W / 2, D / 2, H + th / 2], [W / 2 + th, D / 2 + th, th / 2], CLASS_NAMES.index("ceiling"), m)
    return b.build("empty", 0, [[0, 0], [W, 0], [W, D], [0, D]], H, ambient=0.3)


def pose(x: float, y: float, z: float, yaw_deg: float) -> np.ndarray:
    yaw = math.radians(yaw_deg)
    out = np.eye(4)
    out[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    out[:3, 3] = (x, y, z)
    return out


def room_exit(origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance along each world direction from inside the room to its boundary."""
    lows, highs = np.zeros(3), np.array([W, D, H])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(directions > 0, (highs - origin) / directions, np.where(directions < 0, (lows - origin) / directions,
                                                                               np.inf))
    return t.min(axis=1)


def test_every_beam_returns_the_rooms_boundary_in_the_sensor_frame():
    world_from_lidar = pose(1.0, 2.0, 1.2, 30.0)
    config = LidarConfig(beams=16, vfov_deg=30.0, hres_deg=2.0)
    points = lidar_scan(empty_room(), world_from_lidar, config)        # no rng: no noise
    local = beam_directions(config)
    assert points.shape == (16 * 180, 3) and points.dtype == np.float32   # a closed room: every beam hits
    expected = room_exit(world_from_lidar[:3, 3], local @ world_from_lidar[:3, :3].T)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), expected, rtol=1e-5)
    np.testing.assert_allclose(points / np.linalg.norm(points, axis=1, keepdims=True), local, atol=1e-6)
    # The beams: 16 elevations from -15 to +15 degrees, the first firing of each straight ahead.
    elevations = np.degrees(np.arcsin(local[::180, 2]))
    np.testing.assert_allclose(elevations, np.linspace(-15.0, 15.0, 16), atol=1e-9)
    np.testing.assert_allclose(local[0], [math.cos(math.radians(15)), 0.0, -math.sin(math.radians(15))], atol=1e-12)


def test_range_noise_and_the_maximum_range():
    world_from_lidar = pose(3.0, 2.5, 1.5, 0.0)
    config = LidarConfig(beams=8, hres_deg=1.0, range_noise_m=0.02)
    clean = np.linalg.norm(lidar_scan(empty_room(), world_from_lidar, config), axis=1)
    noisy = np.linalg.norm(lidar_scan(empty_room(), world_from_lidar, config, np.random.default_rng(3)), axis=1)
    residual = noisy - clean
    assert abs(residual.mean()) < 0.002 and residual.std() == pytest.approx(0.02, rel=0.08)
    near = lidar_scan(empty_room(), world_from_lidar, LidarConfig(beams=8, hres_deg=1.0, max_range_m=2.6))
    kept = np.linalg.norm(near, axis=1)
    assert kept.max() <= 2.6 and len(near) == int((clean <= 2.6).sum()) and 0 < len(near) < len(clean)


def test_config_checks():
    for bad in (dict(beams=0), dict(vfov_deg=180.0), dict(hres_deg=0.0), dict(max_range_m=0.0), dict(range_noise_m=-1)):
        with pytest.raises(ValueError, match="lidar"):
            LidarConfig(**bad)


def test_a_sweep_over_time_fires_each_column_from_the_pose_of_its_time():
    """``lidar_sweep``: column j fires at sweep_s * j / columns from the pose then (here turning
    at 1 rad/s and driving at 1 m/s); each point is in the sensor frame of its own time, so
    moved with that pose it lands on the room's boundary, and deskewed by
    viewseg_core.lidar_deskew with the same poses it does too."""
    from viewseg_core.data.synth.lidar import lidar_sweep
    from viewseg_core.lidar_deskew import deskew_points, sweep_slices

    config = LidarConfig(beams=4, vfov_deg=20.0, hres_deg=10.0)
    moving = lambda t: pose(2.0 + 1.0 * t, 2.5, 1.2, math.degrees(1.0 * t))  # noqa: E731
    points, times = lidar_sweep(empty_room(), moving, config, sweep_s=0.1)
    assert points.shape == (4 * 36, 3) and times.dtype == np.float32
    local = beam_directions(config)
    np.testing.assert_allclose(times, 0.1 * (np.arange(4 * 36) % 36) / 36, atol=1e-7)
    for tau in np.unique(times):
        at = times == tau
        world_pose = moving(float(tau))
        np.testing.assert_allclose(np.linalg.norm(points[at], axis=1),
                                   room_exit(world_pose[:3, 3], local[at] @ world_pose[:3, :3].T), rtol=1e-5)
    slice_times, index = sweep_slices(times, step_s=1e-4)             # one slice per firing time
    world = deskew_points(points, index, np.stack([moving(float(t)) for t in slice_times]))
    on_boundary = np.min(np.abs(np.concatenate([world, np.array([W, D, H]) - world], axis=1)), axis=1)
    assert on_boundary.max() < 1e-4
    # In one instant (sweep_s 0) it is lidar_scan's sweep, every time 0.
    still, zero = lidar_sweep(empty_room(), lambda t: moving(0.0), config, sweep_s=0.0)
    np.testing.assert_array_equal(still, lidar_scan(empty_room(), moving(0.0), config))
    assert not zero.any()
    with pytest.raises(ValueError, match="sweep_s must be >= 0"):
        lidar_sweep(empty_room(), moving, config, sweep_s=-1.0)
