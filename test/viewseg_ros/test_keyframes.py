"""Keyframe buffer: admission by translation/rotation/time, refresh, and both bounds with both
eviction policies, on poses whose distances are written by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from viewseg_core.data.records import View
from viewseg_ros.keyframes import KeyframeBuffer, KeyframeConfig, admission_decision, nbytes_of, pose_difference

import wall_scene  # test/support

SEC = 1_000_000_000
K = np.array([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]])


def pose(x: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]  # turn about the optical frame's y (down) axis
    T[0, 3] = x
    return T


def view(x=0.0, yaw=0.0, size=(12, 16)) -> View:
    return View(rgb=np.zeros((*size, 3), np.uint8), K=K, c2w=pose(x, yaw))


CFG = dict(min_translation=0.5, min_rotation_deg=20.0, min_interval_s=1.0)


def test_pose_difference_by_hand():
    translation, angle = pose_difference(pose(1.0, 10.0), pose(4.0, -25.0))
    assert translation == pytest.approx(3.0) and angle == pytest.approx(35.0)


def test_admission_rules():
    buffer = KeyframeBuffer(KeyframeConfig(**CFG))
    assert buffer.add(view(), 0).id == 0  # first frame
    assert buffer.add(view(x=2.0), SEC // 2) is None  # novel, but only 0.5 s after the last
    assert "min_interval_s" in buffer.should_admit(pose(2.0), SEC // 2).reason
    assert buffer.add(view(x=0.4, yaw=19.0), 2 * SEC) is None  # 0.4 m and 19 deg: both below
    assert "of keyframe 0" in buffer.should_admit(pose(0.4, 19.0), 2 * SEC).reason
    assert buffer.add(view(x=0.5), 2 * SEC).id == 1  # translation reaches the threshold
    assert buffer.add(view(x=0.25, yaw=21.0), 4 * SEC).id == 2  # rotation passes it
    assert [k.id for k in buffer] == [0, 1, 2] and buffer.get(2).stamp == 4.0
    # A frame close to keyframe 0 but far from 1 and 2 is still a duplicate (vs *every* keyframe).
    assert not buffer.should_admit(pose(0.1), 10 * SEC).admit


def test_rate_floor_is_per_camera_and_novelty_is_across_cameras():
    buffer = KeyframeBuffer(KeyframeConfig(**CFG))  # min_interval_s = 1 s
    assert buffer.add(view(0.0), 10 * SEC, stream="front").id == 0
    # Another camera at the same stamp (one trigger): its view is novel, so it is kept...
    side = buffer.add(view(0.0, yaw=90.0), 10 * SEC, stream="side")
    assert side is not None and side.stream == "side"
    # ...but the same camera 0.5 s later is refused however novel its pose.
    decision = buffer.should_admit(pose(5.0), 10 * SEC + SEC // 2, stream="front")
    assert (decision.admit, decision.kind) == (False, "too_soon")
    # Novelty counts every camera's keyframes: the side camera's view, seen again from the
    # front camera 2 s later, is a duplicate.
    decision = buffer.should_admit(pose(0.1, 85.0), 12 * SEC, stream="front")
    assert (decision.admit, decision.kind) == (False, "duplicate")
    assert "keyframe 1" in decision.reason
    # A third camera with no keyframe yet has no rate floor against the others.
    assert buffer.should_admit(pose(9.0), 10 * SEC, stream="rear").admit
    # Without streams (bag import, one camera) rule 1 still reads every keyframe.
    kept = [(k.id, k.stamp_ns, k.c2w) for k in buffer.snapshot()]
    assert admission_decision(pose(9.0), 10 * SEC, kept, buffer.config).kind == "too_soon"


def test_refresh_replaces_stale_duplicates():
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, refresh_after_s=30.0))
    buffer.add(view(), 0)
    buffer.add(view(x=3.0), 2 * SEC)
    assert buffer.add(view(x=0.1), 20 * SEC) is None  # keyframe 0 is only 20 s old
    fresh = buffer.add(view(x=0.1), 31 * SEC)
    assert fresh.id == 2 and [k.id for k in buffer] == [1, 2]


def test_count_bound_oldest():
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, max_keyframes=3, eviction="oldest"))
    for i in range(5):
        buffer.add(view(x=float(i)), i * 2 * SEC)
    assert [k.id for k in buffer] == [2, 3, 4] and buffer.evicted == 2


def test_count_bound_redundant_keeps_coverage():
    # Keyframes at x = 0, 5, 5.6, 5.9 m (each >= 0.25 m from the others). Nearest-neighbour
    # distances: 5, 0.6, 0.3, 0.3. The new one (5.9) is protected, so 5.6 goes, and the
    # oldest (x = 0), which "oldest" would have dropped, survives.
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.25, min_rotation_deg=20.0, min_interval_s=0,
                                           max_keyframes=3, eviction="redundant"))
    for i, x in enumerate((0.0, 5.0, 5.6, 5.9)):
        assert buffer.add(view(x=x), i * SEC) is not None
    assert [k.c2w[0, 3] for k in buffer] == [0.0, 5.0, 5.9]


def _walk(keep_recent: int, views: int = 300) -> list[int]:
    """Ids kept after a camera walked straight on: view i at x = 0.5 i m, turned 20 i degrees
    (bench_load's camera), 64 keyframes, redundant eviction."""
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.25, min_rotation_deg=15.0, min_interval_s=0,
                                           max_keyframes=64, eviction="redundant", keep_recent=keep_recent))
    for i in range(views):
        assert buffer.add(view(x=0.5 * i, yaw=20.0 * i), i * SEC).id == i  # every view is novel
    return [k.id for k in buffer]


def test_redundant_eviction_keeps_the_newest_window_on_a_walk():
    kept = _walk(keep_recent=16)
    assert len(kept) == 64 and kept[-16:] == list(range(284, 300))
    # The 48 older ones still cover the whole earlier walk, thinned by redundancy, not dropped
    # by age ("oldest" would keep only views 236-299): every third of it keeps at least 10.
    assert np.histogram(kept[:-16], bins=[0, 95, 190, 284])[0].min() >= 10
    # Without the window, "redundant" thins the newest part like any other (every new view is
    # one threshold from the last): of the newest 16 views only the new one survived.
    kept = _walk(keep_recent=0)
    assert len(kept) == 64 and set(kept) & set(range(284, 300)) == {299}


def test_keep_recent_window_and_redundancy_among_the_older():
    # x = 0, 5, 9.6, 10, then 20 (max 4). Without a window the closest pair is 9.6 / 10 and
    # its older member goes. With the newest two (10, 20) kept, the older three are compared
    # among themselves: 5 and 9.6 are the closest pair (4.6 m), so 5 goes and 9.6 stays.
    # A window as large as the buffer protects nothing (plain redundant, as without one).
    def kept(keep_recent: int) -> list[float]:
        buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.25, min_rotation_deg=20.0, min_interval_s=0,
                                               max_keyframes=4, eviction="redundant", keep_recent=keep_recent))
        for i, x in enumerate((0.0, 5.0, 9.6, 10.0, 20.0)):
            assert buffer.add(view(x=x), i * SEC) is not None
        return [float(k.c2w[0, 3]) for k in buffer]

    assert kept(0) == kept(16) == [0.0, 5.0, 10.0, 20.0]
    assert kept(2) == [0.0, 9.6, 10.0, 20.0]


def test_byte_bound_eviction_spares_the_window_when_an_old_keyframe_grows():
    # Caching features on the OLDEST keyframe pushes the bytes over: it is protected (it is
    # the one being cached) and the window (the newest 2) is spared, so the middle one goes.
    one_view = 12 * 16 * 3
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, max_bytes=4 * one_view + 100, eviction="oldest", keep_recent=2))
    for i in range(4):
        buffer.add(view(x=float(i)), 2 * i * SEC)
    buffer.set_features(0, torch.zeros(50))
    assert [k.id for k in buffer] == [0, 2, 3]


def test_byte_bound_and_feature_cache():
    one_view = 12 * 16 * 3  # bytes of one rgb image
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, max_bytes=3 * one_view + 100, eviction="oldest"))
    for i in range(3):
        buffer.add(view(x=float(i)), 2 * i * SEC)
    assert len(buffer) == 3 and buffer.nbytes == 3 * one_view
    # Caching 200 B of features on keyframe 2 goes over the byte bound: the oldest goes.
    features = {"feat": torch.zeros(50, dtype=torch.float32), "extra": [np.zeros(0)]}
    assert nbytes_of(features) == 200
    buffer.set_features(2, features)
    assert [k.id for k in buffer] == [1, 2] and buffer.get(2).features is features
    assert buffer.nbytes == 2 * one_view + 200
    with pytest.raises(ValueError, match="exceeds max_bytes"):
        buffer.add(view(x=9.0, size=(100, 100)), 100 * SEC)
    with pytest.raises(ValueError, match="push it over max_bytes"):
        buffer.set_features(2, torch.zeros(10_000))
    assert buffer.get(2).features is None  # the refused cache is not kept
    buffer.map_features(lambda k: torch.zeros(1))
    assert all(k.features is not None for k in buffer)


def test_shared_decision_function_and_config_errors():
    config = KeyframeConfig(**CFG)
    kept = [(0, 0, pose()), (1, 5 * SEC, pose(3.0))]
    assert admission_decision(pose(1.5), 7 * SEC, kept, config).admit
    assert not admission_decision(pose(3.2), 7 * SEC, kept, config).admit
    for bad in (dict(min_translation=-1), dict(max_keyframes=0), dict(eviction="random"),
                dict(refresh_after_s=0), dict(keep_recent=-1)):
        with pytest.raises(ValueError):
            KeyframeConfig(**bad)


# --------------------------------------------------------------------------- clock resets
def _three_at_100s(**config) -> KeyframeBuffer:
    """Keyframes 0, 1, 2 at x = 0, 2, 4 m, stamped 100, 101, 102 s."""
    buffer = KeyframeBuffer(KeyframeConfig(**{**CFG, **config}))
    for i in range(3):
        assert buffer.add(view(x=2.0 * i), (100 + i) * SEC).id == i
    return buffer


def test_reset_clock_lets_a_new_timeline_in():
    buffer = _three_at_100s()
    decision = buffer.should_admit(pose(6.0), 5 * SEC)  # novel, but "97 s before the newest"
    assert not decision.admit and "-97.000 s after the newest keyframe" in decision.reason
    assert buffer.add(view(x=6.0), 5 * SEC) is None
    assert buffer.epoch == 0
    buffer.reset_clock()
    assert buffer.epoch == 1 and len(buffer) == 3  # kept keyframes stay
    decision = buffer.should_admit(pose(6.0), 5 * SEC)
    assert decision.admit and decision.reason == "novel pose"
    new = buffer.add(view(x=6.0), 5 * SEC)
    assert new.id == 3 and new.epoch == 1 and buffer.get(0).epoch == 0
    # Rule 1 now counts the new timeline only: 0.5 s after keyframe 3 is too soon, 1 s is not.
    assert "min_interval_s" in buffer.should_admit(pose(8.0), int(5.5 * SEC)).reason
    assert buffer.should_admit(pose(8.0), 6 * SEC).admit
    # Rule 2 still compares against every kept pose: old keyframes keep their places.
    decision = buffer.should_admit(pose(2.1), 6 * SEC)
    assert not decision.admit and "of keyframe 1" in decision.reason
    assert [k.id for k in buffer] == [0, 1, 2, 3]


def test_reset_clock_old_duplicates_are_stale_only_with_refresh():
    # refresh_after_s = 30: keyframe 0 (stamped 100 s, old timeline) counts as stale at 5 s.
    buffer = _three_at_100s(refresh_after_s=30.0)
    assert buffer.add(view(x=0.1), 105 * SEC) is None  # same timeline: keyframe 0 is only 5 s old
    buffer.reset_clock()
    decision = buffer.should_admit(pose(0.1), 5 * SEC)
    assert decision.admit and decision.replaces == [0]
    fresh = buffer.add(view(x=0.1), 5 * SEC)
    assert fresh.id == 3 and [k.id for k in buffer] == [1, 2, 3] and buffer.evicted == 1
    # The replacement belongs to the new timeline: 20 s later it is not stale yet, 30 s later it is.
    assert buffer.add(view(x=0.2), 25 * SEC) is None
    assert buffer.should_admit(pose(0.2), 35 * SEC).replaces == [3]

    # Without refresh_after_s an old-timeline duplicate is refused like any duplicate.
    buffer = _three_at_100s()
    buffer.reset_clock()
    decision = buffer.should_admit(pose(0.1), 5 * SEC)
    assert not decision.admit and decision.replaces == [] and "of keyframe 0" in decision.reason
    assert buffer.add(view(x=0.1), 5 * SEC) is None and len(buffer) == 3 and buffer.evicted == 0


def test_reset_clock_oldest_eviction_drops_the_old_timeline_first():
    buffer = _three_at_100s(max_keyframes=3, eviction="oldest")
    buffer.reset_clock()
    # New stamps (1, 3 s) are smaller than the old ones (100-102 s), but the old ones go first.
    buffer.add(view(x=6.0), 1 * SEC)
    assert [k.id for k in buffer] == [1, 2, 3]
    buffer.add(view(x=8.0), 3 * SEC)
    assert [k.id for k in buffer] == [2, 3, 4]  # plain stamp order would have dropped keyframe 3 (1 s)
    buffer.add(view(x=10.0), 5 * SEC)
    assert [k.id for k in buffer] == [3, 4, 5]
    buffer.add(view(x=12.0), 7 * SEC)  # now the new timeline's own order
    assert [k.id for k in buffer] == [4, 5, 6] and buffer.evicted == 4
    # A second reset: everything kept so far counts as the previous timeline.
    buffer.reset_clock()
    buffer.add(view(x=14.0), 0)
    assert [k.id for k in buffer] == [5, 6, 7] and buffer.epoch == 2


def test_reset_clock_redundant_eviction_ties_go_to_the_old_timeline():
    # x = 0, 1 (old, stamps 100, 101 s), then x = 3, 4 (new, 1, 2 s); each keyframe's nearest
    # neighbour is 1 m away (2 thresholds), keyframe at x = 4 is protected. The tie among
    # 0, 1 and 3 goes to the old timeline, then its older stamp: x = 0 goes.
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, max_keyframes=3, eviction="redundant"))
    buffer.add(view(x=0.0), 100 * SEC)
    buffer.add(view(x=1.0), 101 * SEC)
    buffer.reset_clock()
    buffer.add(view(x=3.0), 1 * SEC)
    buffer.add(view(x=4.0), 2 * SEC)
    assert [k.c2w[0, 3] for k in buffer] == [1.0, 3.0, 4.0]


def test_restored_keyframes_come_from_another_clock():
    """restore(): no admission rule applies; the stamp never counts as the newest (rule 1);
    a live view replaces restored keyframes of its pose; restored keyframes go before live
    ones in admission order (so outside keep_recent) and are the oldest for eviction; bounds
    still hold."""
    buf = KeyframeBuffer(KeyframeConfig(**CFG, max_keyframes=3, eviction="oldest"))   # refresh_after_s unset
    live = buf.add(view(x=0.0), 100 * SEC)
    # The same pose as the live keyframe, and a stamp far in the "future" of this run's clock.
    a = buf.restore(view(x=0.0), 10_000 * SEC, stream="front")
    b = buf.restore(view(x=5.0), 20_000 * SEC, stream="front")
    assert [k.id for k in buf.snapshot()] == [a.id, b.id, live.id]           # restored first, in their order
    assert a.stream == "front" and a.stamp_ns == 10_000 * SEC
    # Rule 1 against the live keyframe only: 1.5 s after it is admitted although the restored
    # stamps are later (with them as the newest, 100.5 s would be "before" them).
    assert buf.should_admit(pose(x=10.0), int(101.5 * SEC)).admit
    # A live frame duplicating only the restored keyframe at x = 5 replaces it, though
    # refresh_after_s is unset and its stamp is "older" than the restored one's ...
    decision = buf.should_admit(pose(x=5.0), int(101.5 * SEC))
    assert decision.admit and decision.replaces == [b.id] and "restored" in decision.reason
    # ... but one duplicating a live keyframe too (x = 0: the live one and restored a) is refused.
    assert buf.should_admit(pose(x=0.1), int(101.5 * SEC)).kind == "duplicate"
    # Eviction "oldest": a fourth keyframe pushes out a restored one, never the live ones.
    newer = buf.add(view(x=10.0), 102 * SEC)
    assert len(buf) == 3 and a.id not in buf and {live.id, newer.id} <= {k.id for k in buf}
    with pytest.raises(ValueError, match="exceeds max_bytes"):
        KeyframeBuffer(KeyframeConfig(max_bytes=10)).restore(view(), 0)


def test_restore_all_swaps_the_buffer_in_one_step():
    """restore_all(replace=True): the old keyframes go and the saved ones come under one lock
    (a reader never sees an empty buffer between); an item over max_bytes is skipped and named."""
    buf = KeyframeBuffer(KeyframeConfig(**CFG, max_bytes=10_000))
    live = buf.add(view(x=0.0), 100 * SEC)
    big = View(rgb=np.zeros((100, 100, 3), np.uint8), K=K, c2w=pose(x=9.0), view_id="big")
    kept, refused = buf.restore_all([(view(x=3.0), 5 * SEC, None, "front"), (big, 6 * SEC, None, "front"),
                                     (view(x=6.0), 7 * SEC, None, "front")], replace=True)
    assert [k.stamp_ns for k in kept] == [5 * SEC, 7 * SEC] and live.id not in buf and len(buf) == 2
    assert len(refused) == 1 and "'big'" in refused[0] and "exceeds max_bytes" in refused[0]
    kept, _ = buf.restore_all([(view(x=12.0), 8 * SEC, None, "")])             # replace=False adds
    assert len(buf) == 3 and all(k.restored for k in buf.snapshot())
    # More than max_keyframes: the bounds thin them, and only those kept are returned.
    small = KeyframeBuffer(KeyframeConfig(**CFG, max_keyframes=2))
    kept, refused = small.restore_all([(view(x=3.0 * i), i * SEC, None, "") for i in range(4)])
    assert len(small) == 2 and not refused and sorted(k.id for k in kept) == sorted(k.id for k in small.snapshot())


def test_set_aside_takes_keyframes_out_for_a_block_and_back_in_their_places():
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.1, keep_recent=0))
    for index in range(4):
        c2w = np.eye(4)
        c2w[0, 3] = index
        buffer.add(View(rgb=np.zeros((2, 2, 3), np.uint8), K=np.eye(3), c2w=c2w), (index + 1) * 10**9)
    with buffer.set_aside([1, 2, 99]) as aside:
        assert [k.id for k in aside] == [1, 2] and [k.id for k in buffer] == [0, 3]
        late = np.eye(4)
        late[0, 3] = 9
        buffer.add(View(rgb=np.zeros((2, 2, 3), np.uint8), K=np.eye(3), c2w=late), 9 * 10**9)
    assert [k.id for k in buffer] == [0, 1, 2, 3, 4] and buffer.get(1) is aside[0]


@pytest.mark.parametrize("eviction", ["oldest", "redundant"])
def test_keep_recent_keeps_each_cameras_newest(eviction):
    """Two cameras: the rear one admits two keyframes (then sees nothing new), the front one a
    new view every second. With keep_recent 2 and room for 5, the rear camera's two stay (what
    is behind the robot now) beside the front's newest three. Counted over both cameras, the
    window would hold only front keyframes, and the rear ones, the oldest and the closest pair,
    would go first."""
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.25, min_rotation_deg=20.0, min_interval_s=0,
                                           max_keyframes=5, eviction=eviction, keep_recent=2))
    for i, x in enumerate((-10.0, -10.3)):        # 0.3 m apart: the buffer's most redundant pair
        assert buffer.add(view(x=x), i * SEC, stream="rear") is not None
    for i in range(10):
        assert buffer.add(view(x=float(i)), (2 + i) * SEC, stream="front") is not None
    kept = {(k.stream, float(k.c2w[0, 3])) for k in buffer}
    assert {("rear", -10.0), ("rear", -10.3), ("front", 8.0), ("front", 9.0)} <= kept and len(kept) == 5


# ---------------------------------------------------------------------- scene change
W_DEPTH, H_DEPTH = 16, 12   # view()'s size, K's principal point at its centre
PERSON_BLOCK = (slice(3, 9), slice(6, 10))   # 24 of the 192 pixels: 12.5%


def depth_view(yaw: float = 0.0, person: bool = False, x: float = 0.0) -> View:
    """view() with the depth of a wall 4 m ahead (wall_scene), and a person in front of it."""
    c2w = wall_scene.yawed(yaw, centre=(x, 0.0, 0.0))
    depth = wall_scene.wall_depth(c2w, K, W_DEPTH, H_DEPTH)
    if person:
        depth = wall_scene.with_person(depth, *PERSON_BLOCK)
    return View(rgb=np.zeros((H_DEPTH, W_DEPTH, 3), np.uint8), K=K, c2w=c2w, depth=depth)


def test_a_new_keyframe_that_sees_through_an_older_ones_person_evicts_it():
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, change_share=0.1))
    with_person = buffer.add(depth_view(person=True), 0)
    rgb_only = buffer.add(view(x=-1.0), 2 * SEC)                      # no depth: never judged
    newer = buffer.add(depth_view(x=0.6), 4 * SEC)                    # novel: 0.6 m to the right
    assert buffer.changed_keyframes(newer.view, newer.stamp_ns) == [(with_person.id, pytest.approx(24 / 192))]
    assert buffer.evict_changed(newer) == [(with_person.id, pytest.approx(24 / 192))]
    assert [k.id for k in buffer] == [rgb_only.id, newer.id]
    assert buffer.changed == 1 and buffer.evicted == 1
    # Nothing else to evict: the wall it shows is still there.
    assert buffer.evict_changed(newer) == []


def test_the_change_check_needs_a_share_and_looks_only_at_older_keyframes():
    # 12.5% of the older keyframe's points are gone: below a 20% share nothing is evicted.
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, change_share=0.2))
    buffer.add(depth_view(person=True), 0)
    newer = buffer.add(depth_view(x=0.6), 4 * SEC)
    assert buffer.evict_changed(newer) == [] and len(buffer) == 2
    # Off (the default): no check at all.
    buffer = KeyframeBuffer(KeyframeConfig(**CFG))
    buffer.add(depth_view(person=True), 0)
    assert buffer.evict_changed(buffer.add(depth_view(x=0.6), 4 * SEC)) == [] and len(buffer) == 2
    # A keyframe stamped after the one admitted (another camera's late frame) is newer: not judged by it.
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, change_share=0.1))
    buffer.add(depth_view(person=True), 10 * SEC, stream="front")
    late = buffer.add(depth_view(x=0.6), 9 * SEC, stream="side")
    assert buffer.evict_changed(late) == [] and len(buffer) == 2


def test_a_camera_standing_still_checks_the_keyframes_it_repeats():
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, change_share=0.1))
    with_person = buffer.add(depth_view(person=True), 0)
    elsewhere = buffer.add(depth_view(person=True, x=3.0), 2 * SEC)
    decision = buffer.should_admit(depth_view().c2w, 4 * SEC)
    assert (decision.admit, decision.kind, decision.duplicates) == (False, "duplicate", [with_person.id])
    # The person walked away: the same pose now sees the wall.
    assert buffer.changed_keyframes(depth_view(), 4 * SEC, among=decision.duplicates) == \
        [(with_person.id, pytest.approx(24 / 192))]
    # Still there: nothing changed. And the keyframe 3 m away is not among those it repeats.
    assert buffer.changed_keyframes(depth_view(person=True), 4 * SEC, among=decision.duplicates) == []
    forced = buffer.add(depth_view(), 4 * SEC, force=True)
    assert buffer.evict_changed(forced) == [(with_person.id, pytest.approx(24 / 192))]
    assert [k.id for k in buffer] == [elsewhere.id, forced.id]


def test_change_config_errors():
    with pytest.raises(ValueError, match="change_share"):
        KeyframeConfig(change_share=1.5)
    with pytest.raises(ValueError, match="change_cell_deg"):
        KeyframeConfig(change_cell_deg=0.0)


def test_a_live_keyframe_drops_a_restored_one_whose_scene_changed():
    """A keyframe folder saved earlier (another run's clock) counts as older than any live view."""
    buffer = KeyframeBuffer(KeyframeConfig(**CFG, change_share=0.1))
    restored = buffer.restore(depth_view(person=True), 10**6 * SEC)   # a stamp far ahead of this run's
    live = buffer.add(depth_view(x=0.6), 5 * SEC)
    assert buffer.evict_changed(live) == [(restored.id, pytest.approx(24 / 192))]
    assert [k.id for k in buffer] == [live.id]
