"""scripts/keyframe_change.py: its helpers by hand, and short runs in room 0 (a walking person
leaves ghosts that the change check removes; a static room loses no keyframe; the model's queries
are scored)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.classes import CLASS_NAMES


def test_nearer_by_the_margin_and_the_pose_error_by_hand(load_script):
    kc = load_script("keyframe_change")
    # margin max(10 cm, 5%): at 1 m 10 cm, at 4 m 20 cm; NaN is never nearer
    assert kc._off(np.array([0.89, 0.91, 3.79, 3.81, np.nan]), np.array([1.0, 1.0, 4.0, 4.0, 1.0])).tolist() == \
        [True, False, True, False, False]
    c2w = np.eye(4)
    moved = kc._jitter(c2w, 2.0, 5.0, np.random.default_rng(0))
    angle = math.degrees(math.acos((np.trace(moved[:3, :3]) - 1) / 2))
    assert angle == pytest.approx(2.0) and np.linalg.norm(moved[:3, 3]) == pytest.approx(0.05)
    assert kc._jitter(c2w, 0.0, 0.0, np.random.default_rng(0)) is c2w


def _run(kc, *argv):
    args = kc.parse_args(["--seeds", "0", "--rate", "2", "--eval-every", "5", "--probes", "2", *argv])
    room = kc.Room(0, args)
    tallies = {share: kc.Tally() for share in args.shares}
    for share in args.shares:
        kc.run_setting(room, share, tallies[share])
    return tallies


def test_a_walking_person_leaves_ghosts_that_the_check_removes(load_script):
    kc = load_script("keyframe_change")
    off, on = (tally.row() for tally in _run(kc, "--walker", "3", "--shares", "0,0.02").values())
    ghost_off, _, haunted_off, _, _, _, evicted_off, forced_off = off
    ghost_on, _, haunted_on, _, _, _, evicted_on, _ = on
    assert ghost_off > 5.0 and haunted_off > 1.0 and evicted_off == forced_off == 0
    assert ghost_on < ghost_off / 3 and haunted_on < haunted_off / 2 and evicted_on > 0


def test_a_static_room_loses_no_keyframe(load_script):
    kc = load_script("keyframe_change")
    (tally,) = _run(kc, "--walker", "0", "--shares", "0.02").values()
    ghost, with_ghost, haunted, shown, kept, admitted, evicted, forced = tally.row()
    assert (ghost, with_ghost, haunted, evicted, forced) == (0.0, 0.0, 0.0, 0, 0)
    assert admitted > 10 and 50 < shown <= 100


def test_the_models_queries_are_scored(load_script):
    from pathlib import Path

    kc = load_script("keyframe_change")
    checkpoint = Path(__file__).resolve().parents[2] / "checkpoints" / "demo_rgbd.pt"
    args = kc.parse_args(["--seeds", "0", "--rate", "1", "--eval-every", "20", "--probes", "1", "--walker", "3",
                          "--query-every", "1", "--shares", "0"])
    room, model = kc.Room(0, args), kc.QueryModel(checkpoint, lidar=False)
    tallies = {0.0: kc.Tally(), 0.5: kc.Tally()}
    for share, tally in tallies.items():
        kc.run_setting(room, share, tally, model)
    miou, absrel, delta, absrel_away, delta_away, nearer, queries = tallies[0.0].model_row()
    assert queries == tallies[0.0].evaluations == 2
    assert 0 < miou <= 100 and 0 < absrel and 0 < delta <= 100 and 0 <= nearer <= 100
    assert 0 < absrel_away and 0 < delta_away <= 100
    lines = kc.model_table(tallies, resamples=50).splitlines()
    assert lines[2].startswith("| 0 (off) | 2 |") and lines[3].startswith("| 0.5 | 2 |")
    # The paired differences: the second setting minus the first, with an interval around each.
    assert lines[-1].startswith("| 0.5 | ") and lines[-1].count("[") == 6
    # The picture: a row of seven 120-pixel tiles per query pose; the two queries here are of one
    # pose (room 0, probe 0) at two moments, so one row.
    assert [where for where, *_ in tallies[0.0].answers] == [(0, 0), (0, 0)]
    picture = kc.panel_of(tallies)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3 and 120 < picture.shape[0] < 2 * 120
    with pytest.raises(SystemExit):
        kc.parse_args(["--panel", "x.png", "--shares", "0,0.02"])   # no --model


def test_the_person_is_the_primitive_after_the_rooms(load_script):
    """score_queries leaves out the pixels of primitive len(scene.kind): the walker SimWorld.scene_at adds."""
    kc = load_script("keyframe_change")
    room = kc.Room(0, kc.parse_args(["--seeds", "0", "--walker", "3", "--probes", "1"]))
    walker = len(room.world.scene.kind)
    # The camera follows the person's walk 3 s behind: it sees them at some frame of the first seconds.
    seen = [int((room.rendering("frame", i, i).primitive == walker).sum()) for i in range(0, 50, 5)]
    assert max(seen) > 0
    first = room.rendering("frame", int(np.argmax(seen)) * 5, int(np.argmax(seen)) * 5)
    assert (first.labels[first.primitive == walker] == CLASS_NAMES.index("person")).all()
