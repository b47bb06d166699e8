"""Undoing a spinning LiDAR's motion within one sweep (deskewing), from its per-point times.

A sweep takes a tenth of a second. Placed with one pose (the cloud's stamp), a sweep taken by
a robot turning at 1 rad/s has its last points 0.1 rad (5.7 degrees) off: 30 cm at 3 m. Drivers
stamp every point: Velodyne a float32 ``time`` in seconds relative to the cloud's stamp, Ouster
a uint32 ``t`` in nanoseconds relative to it, Hesai and RoboSense a float64 ``timestamp`` in
absolute seconds, Livox a float64 ``timestamp`` in absolute nanoseconds.

:class:`SweepTimes` holds a cloud's raw per-point times and turns them into offsets from the
cloud's stamp (:meth:`SweepTimes.offsets`): the unit is nanoseconds for an integer field and
seconds for a float one (unless the values are too large for seconds, > 1e12: nanoseconds),
or what ``scale`` says; the times are relative to the stamp or absolute, whichever puts the
sweep's median nearer the stamp (a sweep lies within a fraction of a second of its stamp
either way; this holds on simulated clocks that start at 0 too). :func:`sweep_slices` cuts a
sweep into slices of at most ``step_s`` (5 ms: at 1 rad/s a point with times spread evenly
over its slice is then within 2.5 mrad, under 1 cm at 3 m, of where one pose per slice puts it),
and :func:`deskew_points` moves each slice with the sensor's pose at the slice's mean time,
which the caller looks up (TF), into one fixed frame. Every pose costs one lookup: 20 for a
10 Hz sweep. :func:`place_cloud` does both, or places the cloud with its stamp's pose where the
caller's lookup cannot give every slice's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# Per-point time fields of common drivers, tried in this order when the field is "auto".
TIME_FIELDS = ("time", "t", "timestamp", "time_stamp")
# A sweep is cut into slices no longer than this (seconds); each slice is placed with one pose.
DESKEW_STEP_S = 0.005
# Per-point offsets spanning more than this, or centred further than this from the stamp, are
# not one sweep's (a wrong unit or reference): refused, the cloud is placed without deskewing.
MAX_SWEEP_S = 1.0
# Float times above this cannot be seconds (31 700 years): they are nanoseconds.
SECONDS_LIMIT = 1e12


@dataclass(frozen=True)
class SweepTimes:
    """A cloud's raw per-point times: ``values`` [N] float64 as the field holds them, from the
    field ``field``, which is an integer type (``integer``) or a float one."""

    field: str
    values: np.ndarray
    integer: bool

    def offsets(self, stamp_ns: int, scale: float = 0.0) -> np.ndarray:
        """[N] float32 seconds of each point after the cloud's stamp (see the module docstring).

        Args:
            stamp_ns: the cloud's header stamp.
            scale: seconds per unit of the field; 0 = by its type and size (integer:
                nanoseconds; float: seconds, nanoseconds above SECONDS_LIMIT).
        Raises:
            ValueError: non-finite times, or offsets that are not one sweep's (MAX_SWEEP_S).
        """
        values = np.asarray(self.values, dtype=np.float64)
        if not len(values):
            return np.zeros(0, np.float32)
        if not np.isfinite(values).all():
            raise ValueError(f"per-point time field {self.field!r} holds non-finite values")
        if scale < 0 or not np.isfinite(scale):
            raise ValueError(f"a time scale must be a finite number >= 0, got {scale}")
        if scale == 0:
            scale = 1e-9 if self.integer or np.abs(values).max() > SECONDS_LIMIT else 1.0
        # Absolute times, as offsets: the stamp subtracted in the field's own unit keeps the
        # precision of nanosecond integers. The two readings differ by a constant, so one median
        # places both.
        stamp_in_units = stamp_ns * (1e-9 / scale)
        median = float(np.median(values))
        centre_rel, centre_abs = abs(median * scale), abs((median - stamp_in_units) * scale)
        offsets = values * scale if centre_rel <= centre_abs else (values - stamp_in_units) * scale
        span = float(offsets.max() - offsets.min())
        centre = min(centre_rel, centre_abs)
        if span > MAX_SWEEP_S or centre > MAX_SWEEP_S:
            raise ValueError(f"per-point time field {self.field!r} at {scale:g} s per unit spans {span:.3g} s, its "
                             f"median {centre:.3g} s from the cloud's stamp (relative or absolute): not the times of "
                             f"one sweep (at most {MAX_SWEEP_S} s); set the time scale")
        return offsets.astype(np.float32)


def sweep_slices(offsets: np.ndarray, step_s: float = DESKEW_STEP_S) -> tuple[np.ndarray, np.ndarray]:
    """Cut a sweep into slices of at most ``step_s`` seconds.

    Args:
        offsets: [N] seconds after the stamp (:meth:`SweepTimes.offsets`).
    Returns:
        times [K] float64, each non-empty slice's mean offset (its points' exact time when
        they share one), in increasing order; index [N] int64, each point's slice.
    """
    if not step_s > 0:
        raise ValueError(f"deskew step must be > 0 s, got {step_s}")
    offsets = np.asarray(offsets, dtype=np.float64)
    if not len(offsets):
        return np.zeros(0), np.zeros(0, np.int64)
    bins = np.floor((offsets - offsets.min()) / step_s).astype(np.int64)
    counts = np.bincount(bins)
    index = (np.cumsum(counts > 0) - 1)[bins]          # empty slices dropped, order kept
    times = np.bincount(index, weights=offsets) / np.bincount(index)
    return times, index


def deskew_points(points: np.ndarray, index: np.ndarray, fixed_from_sensor: np.ndarray) -> np.ndarray:
    """Each point moved into the fixed frame with its slice's sensor pose.

    Args:
        points: [N, 3] in the sensor's frame; index: [N] slice of each point
            (:func:`sweep_slices`); fixed_from_sensor: [K, 4, 4] the sensor's pose at each
            slice's time.
    Returns:
        [N, 3] float32 in the fixed frame.
    """
    points = np.asarray(points, dtype=np.float64)
    transforms = np.asarray(fixed_from_sensor, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or index.shape != points.shape[:1]:
        raise ValueError(f"deskew_points: points [N, 3] and index [N] needed, got {points.shape} and {index.shape}")
    if transforms.ndim != 3 or transforms.shape[1:] != (4, 4) or (len(index) and index.max() >= len(transforms)):
        raise ValueError(f"deskew_points: one [4, 4] pose per slice needed, got {transforms.shape} for "
                         f"{int(index.max()) + 1 if len(index) else 0} slices")
    if not np.isfinite(transforms).all():
        raise ValueError("deskew_points: a sensor pose is not finite")
    # Slice by slice (one [n, 3] x [3, 3] product each) instead of gathering a pose per point.
    # A stable sort of 16-bit keys is a radix sort in numpy: linear in the points.
    order = np.argsort(index.astype(np.int16 if len(transforms) < 1 << 15 else np.int64), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(index, minlength=len(transforms)))])
    # One gather into slice order and one scatter back: contiguous slices in between.
    by_slice = np.take(points, order, axis=0)
    for k, pose in enumerate(transforms):
        part = by_slice[bounds[k]:bounds[k + 1]]
        if len(part):
            part[:] = part @ pose[:3, :3].T + pose[:3, 3]
    placed = np.empty(points.shape, np.float32)
    placed[order] = by_slice
    return placed


def offset_ns(seconds: float) -> int:
    """An offset in whole microseconds, as ns: a float32 time field's 0.1 s is 0.1000000015 s,
    which would ask TF for a nanosecond past a pose stamped at the sweep's end."""
    return int(round(float(seconds) * 1e6)) * 1000


def place_cloud(points: np.ndarray, offsets: np.ndarray | None, stamp_ns: int,
                pose_at: Callable[[int], np.ndarray], recoverable: tuple[type[Exception], ...] = (Exception,)
                ) -> tuple[np.ndarray, int, Exception | None]:
    """A cloud's points in the fixed frame: deskewed (each slice with the sensor's pose at its
    time) where it has per-point ``offsets`` spanning some time and ``pose_at`` gives every
    slice's pose; else with the pose at its stamp.

    Args:
        points: [N, 3] in the sensor's frame; offsets: [N] seconds after ``stamp_ns`` or None.
        pose_at: ns -> [4, 4] fixed_from_sensor (TF); raises one of ``recoverable`` where it
            cannot: the cloud is then placed with the stamp's pose.
    Returns:
        ([N, 3] float32 fixed-frame points, slices used (0: placed with the stamp's pose), the
        error that stopped deskewing or None).
    Raises:
        what ``pose_at(stamp_ns)`` raises: the cloud cannot be placed at all.
    """
    why = None
    if offsets is not None and len(offsets) and float(offsets.max() - offsets.min()) > 0:
        times, index = sweep_slices(offsets)
        try:
            poses = np.stack([pose_at(stamp_ns + offset_ns(t)) for t in times])
        except recoverable as error:
            why = error
        else:
            return deskew_points(points, index, poses), len(times), None
    pose = np.asarray(pose_at(stamp_ns), dtype=np.float64)
    placed = np.asarray(points, dtype=np.float64) @ pose[:3, :3].T + pose[:3, 3]
    return placed.astype(np.float32), 0, why


def sweep_origin(offsets: np.ndarray | None, stamp_ns: int, pose_at: Callable[[int], np.ndarray],
                 recoverable: tuple[type[Exception], ...] = (Exception,)) -> np.ndarray:
    """[3] the sensor's position in the fixed frame at the middle of a cloud's sweep (the
    median of its per-point ``offsets``), or at its stamp where it has no times or ``pose_at``
    cannot give the middle: the origin its beams are cast from, to within half a sweep's
    motion (5 cm for a 0.1 s sweep at 1 m/s).

    Raises:
        what ``pose_at(stamp_ns)`` raises.
    """
    if offsets is not None and len(offsets):
        try:
            return np.asarray(pose_at(stamp_ns + offset_ns(np.median(offsets))), dtype=np.float64)[:3, 3]
        except recoverable:
            pass
    return np.asarray(pose_at(stamp_ns), dtype=np.float64)[:3, 3]


__all__ = ["SweepTimes", "sweep_slices", "deskew_points", "place_cloud", "sweep_origin", "offset_ns", "TIME_FIELDS", "DESKEW_STEP_S", "MAX_SWEEP_S",
           "SECONDS_LIMIT"]
