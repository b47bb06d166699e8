"""The node drops keyframes that show what is no longer there (keyframes.change_share), real rclpy
nodes on loopback with a depth camera before a wall 4 m away (test/support/wall_scene.py):
- a keyframe with a person in it is evicted when a keyframe from a new pose sees the wall
  through where the person stood, counted as keyframes_changed on /diagnostics;
- a camera standing still has its repeated frames checked every keyframes.change_check_s and
  one admitted when the person has left (keyframes_admitted_for_change), while a person who
  walks *into* a kept view evicts nothing;
- with keyframes.change_share 0 the person stays.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from ros_graph import Graph, WallWalk, diagnostics_values, params, resend, wait_for  # noqa: E402
import wall_scene  # noqa: E402  (test/support)

W, H, K = WallWalk.W, WallWalk.H, WallWalk.K()   # the RGB-D node tests' camera; the wall here is wall_scene's
PERSON = (slice(6, 18), slice(18, 24))   # right of centre: inside the view of a camera 1 m to the right


def depth(c2w: np.ndarray, person: bool) -> np.ndarray:
    plain = wall_scene.wall_depth(c2w, K, W, H)
    return wall_scene.with_person(plain, *PERSON) if person else plain


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    with WallWalk.rig(tmp_path_factory.mktemp("change"), "change", diagnostics=True,
                      **{"tf_wait_s": 1.0, "keyframes.change_check_s": 2.0, "diagnostics_period_s": 0.2}) as g:
        g.stamp_ns = 700 * 10**9
        yield g


def send_until(g: Graph, c2w: np.ndarray, person: bool, arrived, what: str) -> None:
    """Publish a frame at ``c2w`` (a new stamp, 3 s after the last: a due change check) until ``arrived()``."""
    def send(_attempt: int) -> None:
        g.stamp_ns += 3 * 10**9
        g.camera.publish(c2w, g.stamp_ns, depth=depth(c2w, person))

    assert resend(send, arrived, what), what


def admitted(g: Graph, c2w: np.ndarray, person: bool):
    """Publish until a frame at ``c2w`` becomes a keyframe with depth; return it."""
    send_until(g, c2w, person, lambda: any(k.stamp_ns == g.stamp_ns and k.view.depth is not None
                                           for k in g.node.keyframes.snapshot()), "a keyframe with depth")
    return next(k for k in g.node.keyframes.snapshot() if k.stamp_ns == g.stamp_ns)


def test_a_new_view_through_a_persons_place_evicts_the_keyframe_that_shows_them(rig):
    node = rig.node
    node.clear_keyframes()
    before = node.events["keyframes_changed"]
    person = admitted(rig, wall_scene.yawed(0.0), person=True)
    newer = admitted(rig, wall_scene.yawed(0.0, centre=(1.0, 0.0, 0.0)), person=False)
    wait_for(lambda: person.id not in node.keyframes, 5.0, "the keyframe with the person to be evicted")
    assert [k.id for k in node.keyframes.snapshot()] == [newer.id]
    assert node.events["keyframes_changed"] == before + 1
    assert f"dropped keyframe(s) {person.id} (" in node.last_event["keyframes_changed"]
    values = diagnostics_values(rig, str(rig.node.checkpoint), until=lambda v: int(v["keyframes_changed"]) == before + 1)
    assert values["keyframes"] == "1"


def test_a_camera_standing_still_replaces_its_view_when_the_person_leaves(rig):
    node = rig.node
    node.clear_keyframes()
    here = wall_scene.yawed(0.0, centre=(0.0, 0.0, 0.5))
    empty = admitted(rig, here, person=False)
    duplicates = node.not_admitted["duplicate"]
    # Someone walks into the kept view: the keyframe misses them but shows nothing that is gone.
    send_until(rig, here, True, lambda: node.not_admitted["duplicate"] > duplicates, "a refused duplicate")
    assert [k.id for k in node.keyframes.snapshot()] == [empty.id]
    assert node.events["keyframes_admitted_for_change"] == 0
    # A keyframe with the person in it (a new pose), then the person leaves while the camera stays.
    there = wall_scene.yawed(0.0, centre=(0.0, 0.0, -0.5))
    with_person = admitted(rig, there, person=True)
    for_change = node.events["keyframes_admitted_for_change"]
    send_until(rig, there, False, lambda: with_person.id not in node.keyframes, "the person's keyframe replaced")
    kept = node.keyframes.snapshot()
    assert [k.id for k in kept][:1] == [empty.id] and len(kept) == 2
    np.testing.assert_allclose(kept[1].view.depth, depth(there, person=False), rtol=1e-6)
    assert node.events["keyframes_admitted_for_change"] == for_change + 1
    assert "shows the scene changed" in node.last_event["keyframes_admitted_for_change"]


def test_with_change_share_zero_the_person_stays(rig):
    node = rig.node
    node.clear_keyframes()
    node.set_parameters(params({"keyframes.change_share": 0.0}))
    try:
        person = admitted(rig, wall_scene.yawed(0.0), person=True)
        newer = admitted(rig, wall_scene.yawed(0.0, centre=(1.0, 0.0, 0.0)), person=False)
        assert [k.id for k in node.keyframes.snapshot()] == [person.id, newer.id]
    finally:
        node.set_parameters(params({"keyframes.change_share": 0.02}))
