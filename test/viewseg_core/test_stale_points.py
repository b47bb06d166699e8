"""viewseg_core.stale_points: which accumulated points a keyframe's own sweep contradicts,
against hand-placed returns."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.stale_points import STALE_MARGIN_M, stale_points


def ray(azimuth_deg: float, elevation_deg: float, distance: float, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.asarray(origin) + distance * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a),
                                                     math.sin(e)])


def sweep(distance_of, azimuths=np.arange(-179.5, 180.0, 1.0), elevations=np.arange(-15.0, 15.1, 2.0),
          origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[N, 3]: a beam every 1 degree of azimuth and 2 of elevation, each returning at
    ``distance_of(azimuth, elevation)`` (None: no return)."""
    points = [ray(a, e, distance_of(a, e), origin) for a in azimuths for e in elevations
              if distance_of(a, e) is not None]
    return np.array(points)


def test_in_front_of_a_return_is_seen_through_behind_it_hidden_on_it_kept():
    """A room 5 m round: a point 3 m along a beam was passed through, one 7 m along it is
    behind the wall, one on the wall (2 cm behind its return: range noise) is kept, and one
    up where no beam went is no evidence either way."""
    origin = np.array([1.0, -2.0, 0.5])
    reference = sweep(lambda a, e: 5.0, origin=origin)
    points = np.array([ray(10.0, 1.0, 3.0, origin), ray(10.0, 1.0, 7.0, origin), ray(10.0, 1.0, 5.02, origin),
                       ray(10.0, 60.0, 1.0, origin)])
    np.testing.assert_array_equal(stale_points(points, reference, origin), [True, True, False, False])
    np.testing.assert_array_equal(stale_points(points, reference, origin, hidden=False), [True, False, False, False])


def test_a_point_beside_a_nearer_return_stays():
    """A post 2 m away fills azimuths 0-3 degrees, a wall 5 m away the rest. A point 3 m away at
    azimuth 6.5 (two cells of 2 degrees from the post) has only the wall around it: stale. At
    4.5 degrees its 3 x 3 cells reach the post's nearer returns: it may be what the post's
    edge hides from the beam, so it stays."""
    reference = sweep(lambda a, e: 2.0 if 0.0 <= a <= 3.0 else 5.0)
    points = np.array([ray(6.5, 1.0, 3.0), ray(4.5, 1.0, 3.0)])
    np.testing.assert_array_equal(stale_points(points, reference, np.zeros(3)), [True, False])
    # Behind a wider post (0-10 degrees): a point 3 m away at its edge has the wall's farther
    # returns around it (the camera beside the LiDAR may see it past the edge) and stays; one
    # in the middle, with only the post around it, is hidden.
    reference = sweep(lambda a, e: 2.0 if 0.0 <= a <= 10.0 else 5.0)
    points = np.array([ray(1.5, 1.0, 3.0), ray(5.5, 1.0, 3.0)])
    np.testing.assert_array_equal(stale_points(points, reference, np.zeros(3)), [False, True])
    np.testing.assert_array_equal(stale_points(points, reference, np.zeros(3), hidden=False), [False, False])


def test_azimuth_wraps_around_the_back():
    """The cells at -180 and +180 degrees are neighbours: a post just past -180 keeps a point
    just short of +180 (3 m, in front of the wall) from being called stale, and without the
    post the same point is."""
    with_post = sweep(lambda a, e: 2.0 if a < -178.0 else 5.0)
    point = np.array([ray(179.5, 1.0, 3.0)])
    assert not stale_points(point, with_post, np.zeros(3))[0]
    assert stale_points(point, sweep(lambda a, e: 5.0), np.zeros(3))[0]


def test_a_cell_with_no_return_is_no_evidence():
    """A window (no return at azimuths 20-40) says nothing: a point 1 m out there stays."""
    reference = sweep(lambda a, e: None if 20.0 <= a <= 40.0 else 5.0)
    assert not stale_points(np.array([ray(30.5, 1.0, 1.0)]), reference, np.zeros(3))[0]
    assert stale_points(np.array([ray(60.5, 1.0, 1.0)]), reference, np.zeros(3))[0]


@pytest.mark.parametrize("wall, in_front, stale", [
    (1.0, 0.08, False),   # within the 10 cm floor of the margin
    (1.0, 0.12, True),
    (10.0, 0.45, False),  # within 5% of the point's range (about 0.48 m)
    (10.0, 0.60, True),
])
def test_the_margin(wall, in_front, stale):
    reference = sweep(lambda a, e: wall)
    point = np.array([ray(0.5, 1.0, wall - in_front)])
    assert stale_points(point, reference, np.zeros(3))[0] == stale
    assert STALE_MARGIN_M == pytest.approx(0.10)


def test_empty_inputs_and_bad_arguments():
    reference = sweep(lambda a, e: 5.0)
    assert stale_points(np.zeros((0, 3)), reference, np.zeros(3)).shape == (0,)
    np.testing.assert_array_equal(stale_points(np.ones((2, 3)), np.zeros((0, 3)), np.zeros(3)), [False, False])
    with pytest.raises(ValueError, match="points must be finite"):
        stale_points(np.ones((2, 2)), reference, np.zeros(3))
    with pytest.raises(ValueError, match="reference must be finite"):
        stale_points(np.ones((2, 3)), np.full((4, 3), np.inf), np.zeros(3))
    with pytest.raises(ValueError, match="origin must be 3 finite"):
        stale_points(np.ones((2, 3)), reference, np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="cell_deg"):
        stale_points(np.ones((2, 3)), reference, np.zeros(3), cell_deg=0.0)
    with pytest.raises(ValueError, match="cell_deg"):
        stale_points(np.ones((2, 3)), reference, np.zeros(3), cell_deg=float("nan"))


def test_a_point_between_two_beams_is_judged_by_both_when_the_cell_matches_their_spacing():
    """Beams every 4 degrees of elevation (-14, -10, ...), a point at -12 degrees 3 m out in
    front of a wall 5 m away: with 2-degree cells the beams above and below are in its 3 x 3
    cells and both passed beyond it; with 1-degree cells neither is, and it stays (no
    evidence). A ghost exactly on a cell border, nudged by rounding, is judged alike."""
    reference = sweep(lambda a, e: 5.0, elevations=np.arange(-14.0, 15.0, 4.0))
    point = np.array([ray(0.5, -12.0, 3.0)])
    assert stale_points(point, reference, np.zeros(3), cell_deg=2.0)[0]
    assert not stale_points(point, reference, np.zeros(3), cell_deg=1.0)[0]
    on_border = sweep(lambda a, e: 5.0, azimuths=np.arange(-50.0, 50.1, 2.0), elevations=(-12.0, -6.0, 0.0, 6.0))
    ghosts = 0.5 * on_border * (1 + np.array([1e-9, -1e-9, 1e-9]))
    assert stale_points(ghosts, on_border, np.zeros(3)).all()


def test_a_floor_point_below_a_beam_is_not_judged_by_that_beam_alone():
    """The floor 1 m below the sensor, one beam at -10 degrees (returns 5.76 m out): a floor
    point another sweep saw at -11.5 degrees is 5.01 m out, nearer than the beam's return by
    more than the margin, but the floor there is nearer too: with returns on one side of it
    only, it is not judged. With a beam at -14 degrees as well (4.13 m), it lies between the
    two and stays; a point half-way to that floor point is stale."""
    floor = lambda a, e: 1.0 / math.sin(math.radians(-e)) if e < 0 else None  # noqa: E731
    one_beam = sweep(floor, elevations=(-10.0,))
    point = np.array([ray(0.5, -11.5, 1.0 / math.sin(math.radians(11.5)))])
    assert not stale_points(point, one_beam, np.zeros(3))[0]
    two_beams = sweep(floor, elevations=(-14.0, -10.0))
    assert not stale_points(point, two_beams, np.zeros(3))[0]
    assert stale_points(0.5 * point, two_beams, np.zeros(3))[0]
