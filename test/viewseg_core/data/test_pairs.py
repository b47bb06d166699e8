"""Pair mining honours each threshold on hand-built camera sets (exact depth from the ray caster)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core import cameras
from viewseg_core.data.pairs import PairConfig, PairEntry, mine_pairs, read_pairs, rotation_angle_deg, write_pairs
from viewseg_core.data.records import View
from viewseg_core.data.source import CameraFrame
from viewseg_core.data.synth.render import render
from viewseg_core.data.synth.scene import SceneBuilder
from viewseg_core.data.synth.trajectory import look_c2w

H, W = 16, 64
K = cameras.K_from_hfov(60.0, W, H)
HALF_WIDTH_AT_WALL = 8.0 * math.tan(math.radians(30.0))    # target at x = 2 sees the wall x = 10


def _room(occluder: bool = False):
    b = SceneBuilder()
    m = b.material([0.6, 0.6, 0.6])
    for c, h in [([5, -0.1, 1.5], [5.2, 0.1, 1.7]), ([5, 10.1, 1.5], [5.2, 0.1, 1.7]),
                 ([-0.1, 5, 1.5], [0.1, 5.2, 1.7]), ([10.1, 5, 1.5], [0.1, 5.2, 1.7]),
                 ([5, 5, -0.1], [5.2, 5.2, 0.1]), ([5, 5, 3.1], [5.2, 5.2, 0.1])]:
        b.box(c, h, 0, m)
    if occluder:
        b.box([4.0, 7.3, 1.5], [0.2, 0.5, 1.4], 2, m)     # in front of the source, unseen by the target
    return b.build("room", 0, [[0, 0], [10, 0], [10, 10], [0, 10]], 3.0, 0.3)


class HandScene:
    """A SceneSource over hand-placed cameras in a rendered room."""

    def __init__(self, poses, depth=True, occluder=False, name="hand"):
        self.name, self.poses, self.depth = name, poses, depth
        self.scene = _room(occluder)

    def __len__(self):
        return len(self.poses)

    def camera(self, i):
        return CameraFrame(f"v{i}", K, self.poses[i], H, W)

    def load_depth(self, i):
        return render(self.scene, K, self.poses[i], H, W, precision=np.float64).depth if self.depth else None

    def load_view(self, i):
        r = render(self.scene, K, self.poses[i], H, W)
        return View(rgb=r.rgb, K=K, c2w=self.poses[i], labels=r.labels, depth=r.depth, view_id=f"v{i}")


def _target():
    return look_c2w([2.0, 5.0, 1.5], 0.0, 0.0)


def _candidates(entries, target="v0"):
    for e in entries:
        if e.target == target:
            return dict(e.candidates)
    return {}


def test_baseline_threshold_is_strict_and_honoured():
    yaw = math.radians(40)
    poses = [_target(), look_c2w([2.0, 5.0, 1.5], yaw, 0.0),      # same centre
             look_c2w([2.0, 5.6, 1.5], yaw, 0.0),                 # 0.6 m away
             look_c2w([2.0, 5.4, 1.5], yaw, 0.0),                 # 0.4 m away
             look_c2w([2.0, 5.5, 1.5], yaw, 0.0)]                 # exactly 0.5 m: not "more than"
    cfg = PairConfig(num_sources=1, min_overlap=0.05)
    cands = _candidates(mine_pairs(HandScene(poses), cfg))
    assert set(cands) == {"v2"}
    cands = _candidates(mine_pairs(HandScene(poses), PairConfig(num_sources=1, min_overlap=0.05, min_baseline=0.3)))
    assert set(cands) == {"v2", "v3", "v4"}


def test_rotation_threshold():
    poses = [_target(), look_c2w([2.0, 6.0, 1.5], math.radians(20), 0.0),
             look_c2w([2.0, 6.0, 1.5], math.radians(35), 0.0)]
    assert rotation_angle_deg(poses[0][:3, :3], poses[2][:3, :3]) == pytest.approx(35.0)
    cands = _candidates(mine_pairs(HandScene(poses), PairConfig(num_sources=1)))
    assert set(cands) == {"v2"}
    cands = _candidates(mine_pairs(HandScene(poses), PairConfig(num_sources=1, min_rotation_deg=10)))
    assert set(cands) == {"v1", "v2"}


def test_overlap_matches_the_geometry_and_threshold():
    # Same heading, shifted sideways by a quarter of the visible wall: 3/4 of it stays in view.
    shift = HALF_WIDTH_AT_WALL / 2
    poses = [_target(), look_c2w([2.0, 5.0 + shift, 1.5], 0.0, 0.0), look_c2w([3.0, 5.0, 1.5], math.pi, 0.0)]
    base = dict(num_sources=1, min_rotation_deg=0.0)
    cands = _candidates(mine_pairs(HandScene(poses), PairConfig(**base, min_overlap=0.1)))
    assert set(cands) == {"v1"}                      # the camera looking away sees nothing of it
    assert cands["v1"] == pytest.approx(0.75, abs=0.04)
    assert _candidates(mine_pairs(HandScene(poses), PairConfig(**base, min_overlap=0.7))) == cands
    assert _candidates(mine_pairs(HandScene(poses), PairConfig(**base, min_overlap=0.8))) == {}
    # Dropping near-duplicates with max_overlap.
    assert _candidates(mine_pairs(HandScene(poses), PairConfig(**base, max_overlap=0.5))) == {}


def test_occlusion_in_the_source_reduces_overlap():
    shift = HALF_WIDTH_AT_WALL / 2
    poses = [_target(), look_c2w([2.0, 5.0 + shift, 1.5], 0.0, 0.0)]
    cfg = PairConfig(num_sources=1, min_rotation_deg=0.0, min_overlap=0.0)
    free = _candidates(mine_pairs(HandScene(poses), cfg))["v1"]
    blocked = _candidates(mine_pairs(HandScene(poses, occluder=True), cfg))["v1"]
    assert blocked < free - 0.1


def test_frustum_sampling_without_depth():
    shift = HALF_WIDTH_AT_WALL / 2
    poses = [_target(), look_c2w([2.0, 5.0 + shift, 1.5], 0.0, 0.0),
             look_c2w([1.5, 5.0, 1.5], math.pi, 0.0),                      # behind it, looking away
             look_c2w([2.0, 5.0 + 4 * HALF_WIDTH_AT_WALL, 1.5], 0.0, 0.0)]   # frustums never meet
    cfg = PairConfig(num_sources=1, min_rotation_deg=0.0, min_overlap=0.0)
    cands = _candidates(mine_pairs(HandScene(poses, depth=False), cfg))
    # Samples at planar depth d span +-d tan(30 deg) sideways; the shifted source keeps a
    # fraction max(0, 1 - shift / (2 d tan 30)) of them: averaged over the sampled depths.
    expected = np.mean([max(0.0, 1 - shift / (2 * d * math.tan(math.radians(30)))) for d in cfg.frustum_depths])
    assert cands["v1"] == pytest.approx(expected, abs=0.03)
    assert cands.get("v2", 0.0) == 0.0 and cands.get("v3", 0.0) == 0.0


def test_sources_are_deterministic_and_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    poses = [look_c2w([rng.uniform(1, 9), rng.uniform(1, 9), 1.5], rng.uniform(-np.pi, np.pi), 0.0)
             for _ in range(10)]
    cfg = PairConfig(num_sources=2, min_overlap=0.05, seed=3)
    a = mine_pairs(HandScene(poses), cfg)
    b = mine_pairs(HandScene(poses), cfg)
    assert a and [e.__dict__ for e in a] == [e.__dict__ for e in b]
    for e in a:
        assert len(e.sources) == 2 and set(e.sources) <= {c for c, _ in e.candidates}
        ovs = [o for _, o in e.candidates]
        assert ovs == sorted(ovs, reverse=True)
    write_pairs(tmp_path / "pairs.json", a, cfg)
    back = read_pairs(tmp_path / "pairs.json")
    assert [(e.scene, e.target, e.sources) for e in back] == [(e.scene, e.target, e.sources) for e in a]
    (tmp_path / "bad.json").write_text('{"format_version": 1, "scenes": {"s": [{"target": "x"}]}}')
    with pytest.raises(ValueError, match="bad.json"):
        read_pairs(tmp_path / "bad.json")
    assert PairEntry("s", "t", ["a"]).candidates == []


def test_parallel_mining_equals_serial_over_scene_folders(tmp_path):
    from viewseg_core.data.pairs import mine_all
    from viewseg_core.data.scene_folder import SceneFolder
    from viewseg_core.data.synth.generate import SynthConfig, write_dataset

    write_dataset(tmp_path, 3, SynthConfig(width=32, height=24, views=8), seed=5, progress=False)
    folders = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    cfg = PairConfig(num_sources=2, min_overlap=0.05, min_baseline=0.2, min_rotation_deg=10.0, seed=2)
    serial = mine_all((SceneFolder(f) for f in folders), cfg)
    parallel = mine_all((SceneFolder(f) for f in folders), cfg, workers=3)
    assert len({e.scene for e in serial}) == 3
    assert [e.__dict__ for e in parallel] == [e.__dict__ for e in serial]
