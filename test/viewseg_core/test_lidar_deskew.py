"""viewseg_core.lidar_deskew: per-point times of the common drivers read as offsets from the
cloud's stamp, sweeps cut into slices, and a sweep taken while turning and driving put back
where it was measured (against the analytic wall), to the slice's residual turn."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.lidar_deskew import (DESKEW_STEP_S, SweepTimes, deskew_points, offset_ns, place_cloud, sweep_origin,
                                       sweep_slices)

STAMP_NS = 1_700_000_000_123_456_789       # a system-clock stamp
SWEEP = np.linspace(0.0, 0.1, 11)          # seconds after the stamp


@pytest.mark.parametrize("driver, values, integer", [
    ("velodyne: float32 seconds, relative", SWEEP.astype(np.float32), False),
    ("ouster: uint32 nanoseconds, relative", np.round(SWEEP * 1e9).astype(np.uint32), True),
    ("hesai: float64 seconds, absolute", STAMP_NS / 1e9 + SWEEP, False),
    ("livox: float64 nanoseconds, absolute", STAMP_NS + SWEEP * 1e9, False),
])
def test_every_drivers_times_become_offsets_from_the_stamp(driver, values, integer):
    offsets = SweepTimes("t", np.asarray(values, np.float64), integer).offsets(STAMP_NS)
    assert offsets.dtype == np.float32
    # float64 absolute seconds near 1.7e9 hold 0.24 us; everything else is finer.
    np.testing.assert_allclose(offsets, SWEEP, atol=1e-6, err_msg=driver)


def test_a_simulated_clock_near_zero_still_tells_relative_from_absolute():
    # Stamp 0.5 s: a relative sweep centred on it (-50..+50 ms) is nearer 0 than 0.5 ...
    relative = SweepTimes("time", np.linspace(-0.05, 0.05, 5), False).offsets(500_000_000)
    np.testing.assert_allclose(relative, np.linspace(-0.05, 0.05, 5), atol=1e-7)
    # ... and absolute times on the same clock are nearer the stamp than 0.
    absolute = SweepTimes("time", 0.5 + np.linspace(0.0, 0.1, 5), False).offsets(500_000_000)
    np.testing.assert_allclose(absolute, np.linspace(0.0, 0.1, 5), atol=1e-7)


def test_an_explicit_scale_reads_microseconds():
    offsets = SweepTimes("t", np.array([0.0, 50_000.0, 100_000.0]), True).offsets(STAMP_NS, scale=1e-6)
    np.testing.assert_allclose(offsets, [0.0, 0.05, 0.1], atol=1e-7)


@pytest.mark.parametrize("values, scale, match", [
    (np.array([0.0, 5e4]), 0.0, "not the times of one sweep"),          # microseconds read as seconds
    (np.array([3.0, 3.1]), 0.0, "not the times of one sweep"),          # 3 s from the stamp either way
    (np.array([0.0, np.nan]), 0.0, "non-finite"),
    (np.array([0.0, 0.1]), -1.0, "finite number >= 0"),
])
def test_times_that_are_not_one_sweeps_are_refused(values, scale, match):
    with pytest.raises(ValueError, match=match):
        SweepTimes("time", values, False).offsets(STAMP_NS, scale)


def test_offsets_ask_tf_for_whole_microseconds():
    assert offset_ns(np.float32(0.1)) == 100_000_000      # not 100_000_001: a pose stamped at the sweep's end answers
    assert offset_ns(-0.0123456) == -12_346_000


def test_slices_are_no_longer_than_the_step_and_keep_each_points_slice():
    offsets = np.array([0.0, 0.001, 0.0049, 0.0051, 0.02, 0.0203])
    times, index = sweep_slices(offsets)
    np.testing.assert_array_equal(index, [0, 0, 0, 1, 2, 2])   # no empty slice between 0.01 and 0.02
    np.testing.assert_allclose(times, [0.0059 / 3, 0.0051, 0.02015])
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-0.05, 0.05, 5000)
    times, index = sweep_slices(offsets)
    assert np.all(np.diff(times) > 0)
    for k in range(len(times)):
        member = offsets[index == k]
        assert member.max() - member.min() <= DESKEW_STEP_S
        assert member.min() <= times[k] <= member.max()
    with pytest.raises(ValueError, match="step must be > 0"):
        sweep_slices(offsets, 0.0)


def planar_motion(t: float, yaw_rate: float, speed: float) -> np.ndarray:
    """The sensor's pose at time t: turning about z at ``yaw_rate`` while driving along x."""
    pose = np.eye(4)
    c, s = math.cos(yaw_rate * t), math.sin(yaw_rate * t)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[0, 3] = speed * t
    return pose


def wall_sweep(yaw_rate: float, speed: float, firings: int = 200, wall_x: float = 4.0):
    """A level 16-beam sweep of azimuths -60..60 degrees fired over 0.1 s towards the wall
    x = ``wall_x``: (points in the sensor frame at each firing's time [N, 3], times [N])."""
    points, times = [], []
    for j, azimuth in enumerate(np.radians(np.linspace(-60.0, 60.0, firings))):
        t = 0.1 * j / (firings - 1)
        pose = planar_motion(t, yaw_rate, speed)
        for elevation in np.radians(np.linspace(-15.0, 15.0, 16)):
            local = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                              math.sin(elevation)])
            direction = pose[:3, :3] @ local
            points.append(local * (wall_x - pose[0, 3]) / direction[0])
            times.append(t)
    return np.array(points), np.array(times)


def test_a_turning_driving_sweep_lands_back_on_the_wall():
    """1 rad/s and 1 m/s during a 0.1 s sweep: with one pose the wall's points scatter by
    tens of centimetres; per 5 ms slice they are off by at most what 2.5 ms of motion does."""
    points, times = wall_sweep(yaw_rate=1.0, speed=1.0)
    pose_at = lambda ns: planar_motion(ns * 1e-9, 1.0, 1.0)  # noqa: E731  (stamp 0: the sweep's first firing)
    placed, slices, why = place_cloud(points, times, 0, pose_at)
    assert why is None and slices == 21           # 5 ms slices of 0.1 s, the last firing at 0.1 s in its own
    # Off the wall by the slice's residual turn: up to 2.5 mrad x ~8 m of range at 60 degrees.
    off = np.abs(placed[:, 0] - 4.0)
    assert off.max() < 0.03 and np.median(off) < 0.01, (off.max(), np.median(off))
    # One slice per firing time: exact.
    times_exact, index = sweep_slices(times, step_s=1e-4)
    exact = deskew_points(points, index, np.stack([pose_at(offset_ns(t)) for t in times_exact]))
    np.testing.assert_allclose(exact[:, 0], 4.0, atol=1e-4)
    # The same sweep with the stamp's pose only.
    rigid, slices, why = place_cloud(points, None, 0, pose_at)
    assert slices == 0 and why is None
    assert np.abs(rigid[:, 0] - 4.0).max() > 0.3


def test_a_sweep_tf_does_not_cover_is_placed_with_the_stamps_pose_and_says_why():
    points, times = wall_sweep(yaw_rate=1.0, speed=0.0, firings=20)

    def pose_at(ns: int) -> np.ndarray:
        if ns > 50_000_000:
            raise LookupError(f"no pose at {ns} ns yet")
        return planar_motion(ns * 1e-9, 1.0, 0.0)

    placed, slices, why = place_cloud(points, times, 0, pose_at, (LookupError,))
    assert slices == 0 and isinstance(why, LookupError) and "no pose at" in str(why)
    np.testing.assert_allclose(placed, points, atol=1e-6)          # the stamp's pose is the identity
    with pytest.raises(KeyError):                                   # an error that is not recoverable propagates
        place_cloud(points, times, 0, lambda ns: {}[ns], (LookupError,))


def test_a_sweeps_origin_is_the_sensor_at_its_middle():
    """1 m/s along x: a sweep whose times run 0-0.1 s has its origin where the sensor was at
    their median (0.05 s: 5 cm along); without times, or where TF has no pose then, at its
    stamp."""
    pose_at = lambda ns: planar_motion(ns * 1e-9, 0.0, 1.0)  # noqa: E731
    times = np.linspace(0.0, 0.1, 101)
    np.testing.assert_allclose(sweep_origin(times, 0, pose_at), [0.05, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(sweep_origin(None, 200_000_000, pose_at), [0.2, 0.0, 0.0], atol=1e-9)

    def stamp_only(ns: int) -> np.ndarray:
        if ns:
            raise LookupError("only the stamp's pose")
        return pose_at(ns)

    np.testing.assert_allclose(sweep_origin(times, 0, stamp_only, (LookupError,)), [0.0, 0.0, 0.0])
    with pytest.raises(LookupError):
        sweep_origin(times, 1, stamp_only, (LookupError,))


def test_deskew_points_refuses_mismatched_slices():
    points = np.zeros((3, 3))
    with pytest.raises(ValueError, match="one \\[4, 4\\] pose per slice"):
        deskew_points(points, np.array([0, 1, 2]), np.stack([np.eye(4)] * 2))
    with pytest.raises(ValueError, match="not finite"):
        deskew_points(points, np.array([0, 0, 0]), np.full((1, 4, 4), np.nan))
