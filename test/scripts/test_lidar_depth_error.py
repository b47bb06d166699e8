"""scripts/lidar_depth_error.py: its counts against a hand computation, and a short run."""
from __future__ import annotations

import math

import numpy as np
import pytest


def test_counts_by_hand(load_script):
    lde = load_script("lidar_depth_error")
    counts = lde.ErrorCounts()
    truth = np.array([[2.0, 2.0, 4.0, np.nan]])
    # measured: 2.0 right, 2.2 behind (+10%), 3.0 in front (-25%); the last pixel has no truth
    counts.add(np.array([[2.0, 2.2, 3.0, 1.0]]), truth, tolerance=0.05)
    counts.add(np.array([[np.nan, 2.02, np.nan, np.nan]]), truth, tolerance=0.05)   # 1% off: right
    measured, behind, worst, in_front, median = counts.row()
    assert measured == pytest.approx(100 * 4 / 8)
    assert behind == pytest.approx(25.0) and in_front == pytest.approx(25.0)
    assert worst == pytest.approx(100 / 3)          # the first keyframe: 1 of its 3 measurements
    assert median == pytest.approx(np.median([0.0, 0.1, 0.25, 0.01]))


def test_a_short_run_registers_more_with_earlier_sweeps(load_script, capsys):
    """Two keyframes of room 0: the earlier second of sweeps adds measured pixels, most of
    them right (the median error stays under 1%), and the table has a row per window and
    completion."""
    lde = load_script("lidar_depth_error")
    args = lde.parse_args(["--seeds", "0", "--windows", "0,1", "--step", "12"])
    counts = lde.measure(args)
    alone, accumulated = counts[(0.0, False, "as registered")].row(), counts[(1.0, False, "as registered")].row()
    assert accumulated[0] > 1.5 * alone[0] > 0
    assert accumulated[4] < 0.01 and alone[4] < 0.01
    filled = counts[(0.0, False, "columns filled")].row()
    assert filled[0] > alone[0]                      # the rows between scan lines
    assert (0.0, True, "as registered") not in counts  # nothing accumulated, nothing to drop
    assert lde.main(["--seeds", "0", "--windows", "0", "--step", "20"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and "the one taken with the image" in lines[2] and "columns filled" in lines[3]
    assert all(math.isfinite(float(cell)) for cell in lines[2].split("|")[4:-1])
    for bad in (["--windows", "-1"], ["--walker", "-1"], ["--stale-cell", "0"], ["--stale-cell", "11"]):
        with pytest.raises(SystemExit):
            lde.parse_args(bad)


def test_a_walkers_trail_is_mostly_dropped_as_stale(load_script):
    """Room 0 with a person walking 3 s ahead of the robot: a second of earlier sweeps puts
    measurements in front of the true surface (where the person was) and behind it (where the
    person is now); dropping the points the keyframe's own sweep contradicts removes over a
    third of those errors (about 40% in this run), at a cost of under 3% of the measurements."""
    lde = load_script("lidar_depth_error")
    counts = lde.measure(lde.parse_args(["--seeds", "0", "--windows", "1", "--walker", "3", "--step", "2.5"]))
    kept, dropped = counts[(1.0, False, "as registered")].row(), counts[(1.0, True, "as registered")].row()
    assert kept[3] > 2.0 and kept[1] > 1.0, kept          # in front by > 5% (the trail), behind
    assert dropped[3] < kept[3] and dropped[1] < kept[1], (kept, dropped)
    assert dropped[1] + dropped[3] < 0.65 * (kept[1] + kept[3]), (kept, dropped)
    assert dropped[0] > 0.97 * kept[0], (kept, dropped)


def test_an_occlusion_radius_drops_most_of_what_the_camera_cannot_see(load_script):
    """A low robot in room 0 (``--kind robot``): the LiDAR 15 cm above the camera sees past
    low furniture, so some of the paired sweep's measurements lie behind the surface the camera
    sees; ``--occlusion-radius 1`` drops over half of those, and keeps over 80% of the
    measurements."""
    lde = load_script("lidar_depth_error")
    rows = {}
    for radius in ("0", "1"):
        counts = lde.measure(lde.parse_args(["--seeds", "0", "--windows", "0", "--kind", "robot", "--step", "2.5",
                                             "--occlusion-radius", radius]))
        rows[radius] = counts[(0.0, False, "as registered")].row()
    assert rows["0"][1] > 1.0, rows                      # behind by > 5%, % of measured
    assert rows["1"][1] < 0.5 * rows["0"][1], rows
    assert rows["1"][0] > 0.8 * rows["0"][0], rows
    with pytest.raises(SystemExit):
        lde.parse_args(["--occlusion-radius", "9"])
