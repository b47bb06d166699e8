"""Procedural scenes: exact geometry, cross-view label consistency, determinism, coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewseg_core.classes import CLASS_NAMES, IGNORE_LABEL
from viewseg_core.data.synth import SynthConfig, generate_scene, load_scene, make_scene, render, write_scene
from viewseg_core.data.synth.raycast import cast_rays
from viewseg_core.data.synth.scene import BOX, Scene, SceneBuilder
from viewseg_core.data.synth.trajectory import look_c2w, room_of

CLS = {n: i for i, n in enumerate(CLASS_NAMES)}


def _box_room() -> tuple[Scene, dict]:
    """A 6 x 5 x 3 m room (walls as boxes) with an axis-aligned box, a yawed box and a cylinder."""
    b = SceneBuilder()
    m = b.material([0.7, 0.7, 0.7])
    W, D, H, th = 6.0, 5.0, 3.0, 0.2
    b.box([W / 2, -th / 2, H / 2], [W / 2 + th, th / 2, H / 2 + th], CLS["wall"], m)
    b.box([W / 2, D + th / 2, H / 2], [W / 2 + th, th / 2, H / 2 + th], CLS["wall"], m)
    b.box([-th / 2, D / 2, H / 2], [th / 2, D / 2 + th, H / 2 + th], CLS["wall"], m)
    b.box([W + th / 2, D / 2, H / 2], [th / 2, D / 2 + th, H / 2 + th], CLS["wall"], m)
    b.box([W / 2, D / 2, -th / 2], [W / 2 + th, D / 2 + th, th / 2], CLS["floor"], m)
    b.box([W / 2, D / 2, H + th / 2], [W / 2 + th, D / 2 + th, th / 2], CLS["ceiling"], m)
    objects = {
        "aabb": dict(center=np.array([4.0, 1.8, 0.5]), half=np.array([0.4, 0.3, 0.5]), yaw=0.0, label=CLS["cabinet"]),
        "yawed": dict(center=np.array([4.2, 3.4, 0.4]), half=np.array([0.5, 0.25, 0.4]), yaw=0.6, label=CLS["sofa"]),
    }
    for o in objects.values():
        b.box(o["center"], o["half"], o["label"], m, yaw=o["yaw"])
    b.cylinder([3.0, 2.5, 0.6], 0.3, 0.6, CLS["lamp"], m)
    scene = b.build("box_room", 0, [[0, 0], [W, 0], [W, D], [0, D]], H, ambient=0.3)
    return scene, objects


def _analytic_box_s(o, dirs, center, half, yaw):
    """Ray parameter s of the first hit of rays o + s * dirs with a yawed box: face by face."""
    c, s_ = math.cos(yaw), math.sin(yaw)
    Rz = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]])
    ol = Rz.T @ (o - center)
    dl = dirs @ Rz                       # (Rz^T d) for each row
    best = np.full(len(dirs), np.inf)
    for axis in range(3):
        for sign in (-1, 1):
            with np.errstate(divide="ignore", invalid="ignore"):
                s = (sign * half[axis] - ol[axis]) / dl[:, axis]
            p = ol + s[:, None] * dl
            others = [k for k in range(3) if k != axis]
            inside = np.all(np.abs(p[:, others]) <= half[others] + 1e-9, axis=1) & (s > 0)
            best = np.where(inside & (s < best), s, best)
    return best


@pytest.mark.parametrize("K", [
    np.array([[220.0, 0.0, 79.5], [0.0, 220.0, 59.5], [0.0, 0.0, 1.0]]),                 # pinhole
    np.array([[230.0, 4.0, 84.0], [0.0, 225.0, 52.0], [2e-4, -3e-4, 1.0]]),              # general 3x3
], ids=["pinhole", "general-K"])
def test_depth_equals_analytic_ray_box_hit(K):
    scene, objects = _box_room()
    c2w = look_c2w([1.0, 2.5, 1.2], yaw=0.15, pitch=-0.25, roll=0.05)
    H, W = 120, 160
    r = render(scene, K, c2w, H, W, precision=np.float64)
    assert not np.isnan(r.depth).any() and (r.labels != IGNORE_LABEL).all()
    # Independent rays: camera-frame d = K^-1 (u, v, 1) with z > 0; a hit at o + s * R d has
    # planar depth s * d_z.
    v, u = np.mgrid[0:H, 0:W]
    d_cam = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).astype(np.float64) @ np.linalg.inv(K).T
    d_cam *= np.sign(d_cam[:, 2:3])
    dirs = d_cam @ c2w[:3, :3].T
    o = c2w[:3, 3]
    depth = r.depth.reshape(-1).astype(np.float64)
    checked = 0
    for name, obj in objects.items():
        mask = r.primitive.reshape(-1) == [i for i in range(scene.num_primitives)
                                           if np.allclose(scene.center[i], obj["center"])][0]
        assert mask.sum() > 50, f"{name} not visible"
        s = _analytic_box_s(o, dirs[mask], obj["center"], obj["half"], obj["yaw"])
        np.testing.assert_allclose(depth[mask], s * d_cam[mask, 2], rtol=1e-5, atol=1e-5)
        checked += mask.sum()
    # Far wall (primitive 3, inner face x = 6): planar depth from the plane equation.
    wall = r.primitive.reshape(-1) == 3
    assert wall.sum() > 100 and (r.labels.reshape(-1)[wall] == CLS["wall"]).all()
    s = (6.0 - o[0]) / dirs[wall, 0]
    np.testing.assert_allclose(depth[wall], s * d_cam[wall, 2], rtol=1e-6)
    # Float32 working precision agrees to well below a millimetre.
    r32 = render(scene, K, c2w, H, W, precision=np.float32)
    np.testing.assert_allclose(r32.depth, r.depth, rtol=1e-5, atol=1e-4)
    assert checked > 0


def test_cylinder_hit_is_on_its_surface():
    scene, _ = _box_room()
    K = np.array([[200.0, 0, 63.5], [0, 200.0, 47.5], [0, 0, 1]])
    c2w = look_c2w([1.0, 2.5, 1.5], yaw=0.0, pitch=-0.3)
    r = render(scene, K, c2w, 96, 128, precision=np.float64)
    cyl = np.nonzero(scene.kind != BOX)[0][0]
    mask = r.primitive == cyl
    assert mask.sum() > 20
    from viewseg_core.data.synth.render import camera_rays
    dirs, _ = camera_rays(K, c2w, 96, 128)
    p = c2w[:3, 3] + r.distance[mask][:, None] * dirs[mask]
    rho = np.hypot(p[:, 0] - 3.0, p[:, 1] - 2.5)
    on_side = np.abs(rho - 0.3) < 1e-7
    on_top = np.abs(p[:, 2] - 1.2) < 1e-7
    assert np.all(on_side | (on_top & (rho <= 0.3 + 1e-7)))


def test_label_of_a_3d_point_agrees_across_views():
    scene, cams = make_scene(11, SynthConfig(views=8, width=96, height=72))
    rng = np.random.default_rng(0)
    agree = total = 0
    from viewseg_core.data.synth.render import camera_rays
    renders = [render(scene, c.K, c.c2w, 72, 96) for c in cams]
    for a in range(len(cams)):
        dirs, _ = camera_rays(cams[a].K, cams[a].c2w, 72, 96)
        pix = rng.choice(72 * 96, 200, replace=False)
        X = cams[a].c2w[:3, 3] + renders[a].distance.reshape(-1)[pix, None] * dirs.reshape(-1, 3)[pix]
        lab_a = renders[a].labels.reshape(-1)[pix]
        for b in range(len(cams)):
            if b == a:
                continue
            ob = cams[b].c2w[:3, 3]
            t, prim = cast_rays(scene, np.broadcast_to(ob, X.shape), X - ob)
            # t is in units of |X - ob|: the point is seen by b iff b's ray stops at it.
            seen = np.abs(t - 1.0) < 1e-6
            total += seen.sum()
            agree += (scene.label[prim[seen]] == lab_a[seen]).sum()
    assert total > 500
    assert agree == total


def test_cast_camera_matches_brute_force_cast_rays():
    scene, cams = make_scene(3, SynthConfig(views=2, width=64, height=48))
    from viewseg_core.data.synth.render import camera_rays
    cam = cams[0]
    r = render(scene, cam.K, cam.c2w, 48, 64, precision=np.float64)
    dirs, _ = camera_rays(cam.K, cam.c2w, 48, 64)
    t, prim = cast_rays(scene, np.broadcast_to(cam.c2w[:3, 3], (48 * 64, 3)), dirs.reshape(-1, 3))
    np.testing.assert_allclose(r.distance.reshape(-1), t, rtol=1e-9)
    assert (r.primitive.reshape(-1) == prim).mean() > 0.999   # ties on shared faces may differ


def test_generation_is_deterministic_per_seed():
    a, cams_a = make_scene(5, SynthConfig(views=4, width=48, height=36))
    b, cams_b = make_scene(5, SynthConfig(views=4, width=48, height=36))
    assert a.to_dict() == b.to_dict()
    for ca, cb in zip(cams_a, cams_b):
        np.testing.assert_array_equal(ca.c2w, cb.c2w)
        ra, rb = render(a, ca.K, ca.c2w, 36, 48), render(b, cb.K, cb.c2w, 36, 48)
        np.testing.assert_array_equal(ra.rgb, rb.rgb)
        np.testing.assert_array_equal(ra.labels, rb.labels)
    assert generate_scene(6).to_dict() != a.to_dict()


def test_rooms_vary_and_cover_at_least_15_classes():
    classes, types, shapes = set(), set(), set()
    for seed in range(24):
        s = generate_scene(seed)
        labs = set(s.label.tolist())
        assert {CLS["wall"], CLS["floor"], CLS["ceiling"], CLS["door"]} <= labs
        classes |= labs
        types.add(s.meta["room_type"])
        shapes.add(s.meta["shape"])
    assert len(classes) >= 15, sorted(CLASS_NAMES[c] for c in classes)
    assert len(types) == 5 and shapes == {"rect", "L", "alcove"}
    assert CLS["window"] in classes


def test_trajectories_at_robot_and_human_height_in_free_space():
    cfg = SynthConfig(views=12, width=32, height=24)
    for seed in (0, 1, 2):
        scene, cams = make_scene(seed, cfg)
        room = room_of(scene)
        for cam in cams:
            p = cam.c2w[:3, 3]
            lo, hi = cfg.trajectory.robot_height if cam.kind == "robot" else cfg.trajectory.human_height
            assert lo - 1e-9 <= p[2] <= hi + 1e-9
            assert room.rect_inside((p[0], p[1], p[0], p[1]))
            for f in room.footprints:     # not inside any furniture footprint
                assert not (f[0] < p[0] < f[2] and f[1] < p[1] < f[3])
            pitch = math.degrees(math.asin(cam.c2w[2, 2]))
            lo_p, hi_p = cfg.trajectory.robot_pitch if cam.kind == "robot" else cfg.trajectory.human_pitch
            assert lo_p - 1e-6 <= pitch <= hi_p + 1e-6
        assert sum(c.kind == "robot" for c in cams) == 6
        # It looks around: the gaze turns by a good angle over the walk.
        yaws = [math.atan2(c.c2w[1, 2], c.c2w[0, 2]) for c in cams]
        assert max(abs(math.remainder(y - yaws[0], 2 * math.pi)) for y in yaws) > math.radians(30)


def test_written_scene_rerenders_any_camera(tmp_path):
    folder = write_scene(tmp_path / "s", 4, SynthConfig(views=3, width=40, height=30))
    scene = load_scene(tmp_path / "s")
    view = folder.load_view(1)
    r = render(scene, view.K, view.c2w, 30, 40)
    np.testing.assert_array_equal(r.labels, view.labels)
    np.testing.assert_array_equal(r.rgb, view.rgb)
    np.testing.assert_allclose(r.depth, view.depth)
    # A camera the dataset never had: another size and intrinsics.
    K2 = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    r2 = render(scene, K2, view.c2w, 48, 64)
    assert r2.rgb.shape == (48, 64, 3) and np.isfinite(r2.depth).all()


def test_scene_json_rejects_malformed(tmp_path):
    scene = generate_scene(0)
    d = scene.to_dict()
    d["half"] = d["half"][:-1]
    with pytest.raises(ValueError, match="center/half"):
        Scene.from_dict(d, where="x.json")
    bad = tmp_path / "scene.json"
    bad.write_text('{"name": "a", "seed"')
    with pytest.raises(ValueError, match="scene.json"):
        load_scene(tmp_path)


# --- dataset names and splits (issue 18) -------------------------------------------------------

def _content_hash(folder) -> str:
    """RGB, labels, depth (mm) and cameras of every view of a scene folder."""
    import hashlib

    h = hashlib.sha256()
    for i in range(len(folder)):
        v = folder.load_view(i)
        h.update(v.rgb.tobytes())
        h.update(v.labels.astype(np.uint8).tobytes())
        h.update(np.round(np.nan_to_num(v.depth) * 1000).astype(np.int64).tobytes())
        h.update(np.round(v.c2w, 6).tobytes())
        h.update(np.round(v.K, 6).tobytes())
    return h.hexdigest()[:16]


# Written by the generator before names carried the seed (folders synth_00000..2, seed 0 and
# 3, 16x12, 2 views): a scene's content must not change with its name.
_BEFORE = {0: ["2c037e96e3f91d4c", "e1d0f0cd5f9f362f", "ef3c6b253bdab2fd"],
           3: ["068229404b09ee02", "c3d093b097ddbd2e", "4cb781e4728afa83"]}


def test_scene_names_carry_the_seed_and_content_is_as_before(tmp_path):
    from viewseg_core.data.scene_folder import SceneFolder
    from viewseg_core.data.synth import scene_name, scene_seed, write_dataset

    cfg = SynthConfig(width=16, height=12, views=2)
    for seed, before in _BEFORE.items():
        splits = write_dataset(tmp_path / f"s{seed}", 3, cfg, seed=seed, progress=False)
        names = [scene_name(seed, i) for i in range(3)]
        assert names == [f"synth_s{seed}_{i:05d}" for i in range(3)]
        assert sorted(sum(splits.values(), [])) == names
        assert [_content_hash(SceneFolder(tmp_path / f"s{seed}" / n)) for n in names] == before
    # The old name, written directly: byte-identical images, labels and depth.
    old = write_scene(tmp_path / "synth_00001", scene_seed(0, 1), cfg, name="synth_00001")
    new = tmp_path / "s0" / "synth_s0_00001"
    assert old.name == "synth_00001" and SceneFolder(new).name == "synth_s0_00001"
    files = sorted(p.relative_to(new) for p in new.rglob("*") if p.suffix in (".png", ".npy"))
    assert len(files) >= 6
    for rel in files:
        assert (new / rel).read_bytes() == (old.root / rel).read_bytes(), rel


def test_legacy_names_reproduce_a_dataset_written_before(tmp_path):
    import json

    from viewseg_core.data.pairs import PairConfig, mine_all
    from viewseg_core.data.scene_folder import SceneFolder
    from viewseg_core.data.synth import write_dataset

    cfg = SynthConfig(width=16, height=12, views=2)
    splits = write_dataset(tmp_path / "old", 3, cfg, seed=0, progress=False, legacy_names=True)
    assert splits == {"train": ["synth_00001"], "val": ["synth_00000"], "test": ["synth_00002"]}
    assert [_content_hash(SceneFolder(tmp_path / "old" / f"synth_{i:05d}")) for i in range(3)] == _BEFORE[0]
    assert json.loads((tmp_path / "old" / "synth_00000" / "cameras.json").read_text())["scene"] == "synth_00000"
    # Why the old names matter: pair mining draws each target's sources from a stream keyed by
    # the scene name, so the same room under another name gets other sources.
    big = SynthConfig(width=32, height=24, views=12)
    rooms = [write_scene(tmp_path / n, 123, big, name=n) for n in ("synth_00000", "synth_s0_00000")]
    a, b = (mine_all([r], PairConfig(num_sources=2, min_rotation_deg=10), progress=False) for r in rooms)
    assert [e.target for e in a] == [e.target for e in b] and len(a) >= 4
    assert any(x.sources != y.sources for x, y in zip(a, b))


def test_datasets_of_two_seeds_load_together(tmp_path):
    from viewseg_core.data.scene_folder import SceneFolder
    from viewseg_core.data.source import check_sources
    from viewseg_core.data.synth import write_dataset

    cfg = SynthConfig(width=16, height=12, views=2)
    a = write_dataset(tmp_path / "a", 3, cfg, seed=1, progress=False, test_scenes=3)
    b = write_dataset(tmp_path / "b", 3, cfg, seed=2, progress=False, test_scenes=3)
    folders = [SceneFolder(tmp_path / d / n) for d, splits in (("a", a), ("b", b)) for n in splits["test"]]
    by_name = check_sources(folders)
    assert sorted(by_name) == [f"synth_s{s}_{i:05d}" for s in (1, 2) for i in range(3)]
    # Folders named as before (synth_<i>) clash: the error this naming removes.
    from viewseg_core.data.synth import scene_seed
    old = [write_scene(tmp_path / d / "synth_00000", scene_seed(seed, 0), cfg) for d, seed in (("c", 1), ("e", 2))]
    with pytest.raises(ValueError, match="duplicate scene name 'synth_00000'"):
        check_sources(old)


def test_split_counts_defaults_and_explicit():
    from viewseg_core.data.synth.generate import split_counts

    # Defaults (today's sizes): 10% each, at least 1 from 3 scenes, none below.
    assert [split_counts(n) for n in (1, 2, 3, 10, 30, 240, 960)] == \
        [(0, 0), (0, 0), (1, 1), (1, 1), (3, 3), (24, 24), (96, 96)]
    # Explicit counts are exact; an unset one keeps its default, capped at what is left.
    assert split_counts(3, test_scenes=3) == (0, 3)          # evaluation-only set
    assert split_counts(1, test_scenes=1) == (0, 1)
    assert split_counts(30, test_scenes=5) == (3, 5)
    assert split_counts(30, val_scenes=0) == (0, 3)
    assert split_counts(2, val_scenes=1, test_scenes=1) == (1, 1)
    assert split_counts(5, val_scenes=0, test_scenes=0) == (0, 0)
    for kwargs, msg in [(dict(val_scenes=2, test_scenes=2), "2 val \\+ 2 test scenes do not fit in 3"),
                        (dict(test_scenes=4), "0 val \\+ 4 test scenes do not fit in 3"),
                        (dict(val_scenes=-1), "val scenes must be an integer >= 0"),
                        (dict(test_scenes=1.5), "test scenes must be an integer >= 0"),
                        (dict(test_scenes=True), "test scenes must be an integer >= 0"),
                        (dict(val_fraction=0.7, test_fraction=0.7), "leave no room")]:
        with pytest.raises(ValueError, match=msg):
            split_counts(3, **kwargs)


def test_split_of_synthetic_small_is_unchanged():
    from viewseg_core.data.synth import scene_name
    from viewseg_core.data.synth.generate import split_names

    # data/synthetic_small (--scenes 30 --seed 0), as written before names carried the seed.
    splits = split_names([scene_name(0, i) for i in range(30)], 0)
    idx = {k: [int(n[-5:]) for n in v] for k, v in splits.items()}
    assert idx["val"] == [0, 10, 25] and idx["test"] == [3, 22, 28]
    assert idx["train"] == sorted(set(range(30)) - {0, 10, 25, 3, 22, 28})
    # Explicit counts draw from the same permutation: val first, then test.
    assert split_names([scene_name(0, i) for i in range(30)], 0, val_scenes=3, test_scenes=3) == splits
    only_test = split_names([scene_name(0, i) for i in range(3)], 0, test_scenes=3)
    assert only_test == {"train": [], "val": [], "test": [scene_name(0, i) for i in range(3)]}


def test_write_dataset_checks_split_counts_before_writing(tmp_path):
    from viewseg_core.data.synth import write_dataset

    with pytest.raises(ValueError, match="do not fit in 2 scene"):
        write_dataset(tmp_path / "x", 2, SynthConfig(width=16, height=12, views=2), val_scenes=1, test_scenes=2,
                      progress=False)
    assert not (tmp_path / "x").exists()
