"""Replica: class tables cover every id; Habitat-rendered folders read into OpenCV records."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from viewseg_core.classes import CLASS_NAMES, IGNORE_LABEL, NYU40_NAMES
from viewseg_core.data.replica import (NYU13_NAMES, NYU40_TO_NYU13, REPLICA_CLASSES, REPLICA_TO_NYU40,
                                       ReplicaScene, replica_lut, replica_to_classes, replica_to_nyu13)


def test_mapping_covers_every_replica_class_id():
    assert len(REPLICA_CLASSES) == 102 and len(set(REPLICA_CLASSES)) == 102
    assert set(REPLICA_TO_NYU40) == set(REPLICA_CLASSES)
    assert all(v is None or v in NYU40_NAMES for v in REPLICA_TO_NYU40.values())
    ids = np.arange(len(REPLICA_CLASSES))
    to37, to13 = replica_to_classes(ids), replica_to_nyu13(ids)
    for i, name in enumerate(REPLICA_CLASSES):
        nyu = REPLICA_TO_NYU40[name]
        if nyu is None:
            assert to37[i] == IGNORE_LABEL and to13[i] == IGNORE_LABEL
        elif nyu in CLASS_NAMES:
            assert CLASS_NAMES[to37[i]] == nyu
            assert to13[i] < len(NYU13_NAMES)
        else:                                          # other{structure,furniture,prop}
            assert to37[i] == IGNORE_LABEL and to13[i] < len(NYU13_NAMES)
    # A few anchors of the mapping.
    name = dict(zip(REPLICA_CLASSES, range(102)))
    assert CLASS_NAMES[to37[name["nightstand"]]] == "night stand"
    assert CLASS_NAMES[to37[name["tv-screen"]]] == "television"
    assert NYU13_NAMES[to13[name["tv-screen"]]] == "tv"
    assert NYU13_NAMES[to13[name["wall-cabinet"]]] == "furniture"
    assert NYU13_NAMES[to13[name["book"]]] == "books"
    # Out-of-range ids are ignored, not wrapped.
    assert replica_to_classes(np.array([-1, 102, 5000])).tolist() == [IGNORE_LABEL] * 3
    assert NYU40_TO_NYU13.shape == (41,) and NYU40_TO_NYU13[0] == IGNORE_LABEL


def test_unknown_class_name_is_an_error():
    with pytest.raises(ValueError, match="hoverboard"):
        replica_lut({0: "wall", 7: "hoverboard"})


def _habitat_pose(position, yaw):
    """Habitat camera-to-world: world y up; the camera looks along its -z, rotated by yaw about y."""
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = position
    return T


@pytest.fixture
def replica_folder(tmp_path):
    d = tmp_path / "room_0"
    for sub in ("rgb", "semantic", "depth"):
        (d / sub).mkdir(parents=True)
    h, w = 6, 8
    poses = [_habitat_pose([1.0, 1.5, 2.0], 0.0), _habitat_pose([0.0, 1.2, -1.0], np.pi / 2)]
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(d / "rgb" / f"{i:06d}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        np.save(d / "semantic" / f"{i:06d}.npy", rng.integers(0, 102, (h, w)).astype(np.int32))
        depth_mm = rng.integers(500, 5000, (h, w)).astype(np.uint16)
        depth_mm[0, 0] = 0
        cv2.imwrite(str(d / "depth" / f"{i:06d}.png"), depth_mm)
    (d / "poses.txt").write_text("\n".join(" ".join(f"{v:.9f}" for v in T.reshape(-1)) for T in poses))
    (d / "intrinsics.json").write_text(json.dumps({"hfov": 90.0}))
    return d


def test_reader_converts_poses_depth_and_labels(replica_folder):
    sc = ReplicaScene(replica_folder)
    assert len(sc) == 2 and sc.name == "room_0"
    cam = sc.camera(0)
    # hfov 90 over 8 pixels: f = 4, principal point at the image centre (3.5, 2.5).
    np.testing.assert_allclose(cam.K, [[4, 0, 3.5], [0, 4, 2.5], [0, 0, 1]])
    # Habitat camera looking along world -z (y up) -> OpenCV z forward; in viewseg's z-up
    # world (x, y, z) -> (x, -z, y): forward (0, 0, -1) becomes (0, 1, 0), camera down -> -z.
    np.testing.assert_allclose(cam.c2w[:3, 2], [0, 1, 0], atol=1e-9)
    np.testing.assert_allclose(cam.c2w[:3, 1], [0, 0, -1], atol=1e-9)
    np.testing.assert_allclose(cam.c2w[:3, 3], [1.0, -2.0, 1.5], atol=1e-9)
    view = sc.load_view(1)
    raw = np.load(replica_folder / "semantic" / "000001.npy")
    np.testing.assert_array_equal(view.labels, replica_to_classes(raw))
    np.testing.assert_array_equal(sc.load_labels_nyu13(1), replica_to_nyu13(raw))
    mm = cv2.imread(str(replica_folder / "depth" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert np.isnan(view.depth[0, 0])
    np.testing.assert_allclose(view.depth[mm > 0], mm[mm > 0] / 1000.0, rtol=1e-6)
    # Without the z-up turn the Habitat world is kept.
    np.testing.assert_allclose(ReplicaScene(replica_folder, z_up=False).camera(0).c2w[:3, 3], [1.0, 1.5, 2.0])


def test_instance_ids_and_scene_class_table(replica_folder):
    info = {"classes": [{"id": 0, "name": "other"}, {"id": 1, "name": "wall"}, {"id": 2, "name": "sofa"}],
            "id_to_label": [0, 1, 2, 2, -1]}
    (replica_folder / "info_semantic.json").write_text(json.dumps(info))
    inst = np.array([[0, 1, 2, 3, 4, 7, 1, 1]] * 6, dtype=np.int32)
    np.save(replica_folder / "semantic" / "000000.npy", inst)
    lab = ReplicaScene(replica_folder, semantic="instance").load_labels(0)
    wall, sofa = CLASS_NAMES.index("wall"), CLASS_NAMES.index("sofa")
    assert lab[0].tolist() == [IGNORE_LABEL, wall, sofa, sofa, IGNORE_LABEL, IGNORE_LABEL, wall, wall]


def test_json_poses_with_quaternions(replica_folder):
    (replica_folder / "poses.txt").unlink()
    frames = [{"id": "000000", "position": [1.0, 1.5, 2.0], "rotation": [1, 0, 0, 0]},
              {"id": "000001", "position": [0.0, 1.2, -1.0],
               "rotation": [np.cos(np.pi / 4), 0, np.sin(np.pi / 4), 0]}]
    (replica_folder / "poses.json").write_text(json.dumps({"frames": frames}))
    sc = ReplicaScene(replica_folder)
    ref_yaw = _habitat_pose([0.0, 1.2, -1.0], np.pi / 2)
    from viewseg_core.cameras import habitat_c2w_to_opencv
    np.testing.assert_allclose(sc.camera(1).c2w[:3, :3],
                               (np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]) @ habitat_c2w_to_opencv(ref_yaw)[:3, :3]),
                               atol=1e-9)


def test_broken_folders_name_the_file(replica_folder):
    p = replica_folder / "semantic" / "000001.npy"
    p.write_bytes(p.read_bytes()[:60])
    with pytest.raises(ValueError, match="000001.npy"):
        ReplicaScene(replica_folder).load_view(1)
    (replica_folder / "poses.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="poses.txt"):
        ReplicaScene(replica_folder)


def test_corrupt_npy_files_name_the_file_and_what_they_hold(replica_folder):
    """Depth, labels and poses as .npy: truncated, or a pickled object array (never unpickled)."""
    sc = ReplicaScene(replica_folder)
    depth = replica_folder / "depth" / "000000.npy"
    (replica_folder / "depth" / "000000.png").unlink()
    np.save(depth, np.full((6, 8), 2.0, np.float32))
    assert np.allclose(ReplicaScene(replica_folder).load_view(0).depth, 2.0)
    depth.write_bytes(depth.read_bytes()[:70])
    with pytest.raises(ValueError, match=r"000000\.npy: not a readable \.npy depth map \(corrupt or truncated\)"):
        ReplicaScene(replica_folder).load_view(0)
    labels = replica_folder / "semantic" / "000001.npy"
    np.save(labels, np.array([{"not": "ids"}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"000001\.npy: not a readable \.npy \(corrupt or truncated\)"):
        sc.load_view(1)
    (replica_folder / "poses.txt").unlink()
    poses = replica_folder / "poses.npy"
    np.save(poses, np.stack([np.eye(4)] * 2))
    assert len(ReplicaScene(replica_folder)) == 2
    poses.write_bytes(poses.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"poses\.npy: not a readable \.npy"):
        ReplicaScene(replica_folder)


# --- no assumed field of view, no invented split (issue 18) -----------------------------------

def test_missing_intrinsics_is_refused_unless_the_fov_is_given(replica_folder):
    (replica_folder / "intrinsics.json").unlink()
    with pytest.raises(ValueError) as exc:
        ReplicaScene(replica_folder)
    msg = str(exc.value)
    assert str(replica_folder / "intrinsics.json") in msg and "missing" in msg
    assert '{"hfov": <horizontal field of view, degrees>}' in msg and '"K"' in msg
    assert "data.replica_hfov_deg" in msg
    # Given explicitly: hfov 60 over 8 pixels, f = 4 / tan(30 deg).
    K = ReplicaScene(replica_folder, hfov_deg=60.0).camera(0).K
    np.testing.assert_allclose(K, [[4 / np.tan(np.pi / 6), 0, 3.5], [0, 4 / np.tan(np.pi / 6), 2.5], [0, 0, 1]])
    for bad in (0.0, 180.0, -5.0):
        with pytest.raises(ValueError, match="hfov_deg .*must be in \\(0, 180\\)"):
            ReplicaScene(replica_folder, hfov_deg=bad)


def test_intrinsics_file_wins_and_must_say_something(replica_folder):
    intr = replica_folder / "intrinsics.json"
    # The file's hfov 90 (f = 4) and an agreeing config value.
    np.testing.assert_allclose(ReplicaScene(replica_folder, hfov_deg=90.0).camera(0).K[0, 0], 4.0)
    with pytest.raises(ValueError, match="intrinsics.json: horizontal field of view 90.0000 degrees disagrees "
                                         "with data.replica_hfov_deg 70"):
        ReplicaScene(replica_folder, hfov_deg=70.0)
    # A K in the file is used as is.
    intr.write_text(json.dumps({"K": [[5.0, 0, 3.5], [0, 5.0, 2.5], [0, 0, 1]]}))
    np.testing.assert_allclose(ReplicaScene(replica_folder).camera(1).K[0, 0], 5.0)
    # Size only: no field of view any more (it used to mean 90 degrees).
    intr.write_text(json.dumps({"width": 8, "height": 6}))
    with pytest.raises(ValueError, match="intrinsics.json: has neither 'hfov' nor 'K'"):
        ReplicaScene(replica_folder)
    intr.write_text(json.dumps({"K": [[5.0, 0, 3.5], [0, 5.0, 2.5]]}))
    with pytest.raises(ValueError, match="intrinsics.json: K must be 3x3"):
        ReplicaScene(replica_folder)


@pytest.fixture
def replica_root(replica_folder):
    """ROOT with room_0, room_1 (no intrinsics.json) and office_0, and no splits.json."""
    import shutil

    root = replica_folder.parent
    shutil.copytree(replica_folder, root / "room_1")
    (root / "room_1" / "intrinsics.json").unlink()
    shutil.copytree(replica_folder, root / "office_0")
    return root


def test_load_scenes_refuses_to_invent_a_replica_split(replica_root, tmp_path):
    from training.data import DataConfig, load_scenes

    cfg = DataConfig(root=str(replica_root), kind="replica")
    with pytest.raises(ValueError) as exc:
        load_scenes(cfg, "test")
    msg = str(exc.value)
    assert msg.startswith(f"{replica_root / 'splits.json'}: missing; data.kind=replica does not invent a split")
    assert '{"splits": {"train": [scene folder names], "val": [...], "test": [...]}}' in msg
    assert "data.split_file" in msg

    # With splits.json: exactly the listed scenes, per split.
    doc = {"splits": {"train": ["room_0", "office_0"], "val": ["office_0"], "test": ["room_1"]}}
    (replica_root / "splits.json").write_text(json.dumps(doc))
    assert [s.name for s in load_scenes(cfg, "train")] == ["room_0", "office_0"]
    # room_1 has no intrinsics.json: refused, unless the config gives the field of view.
    with pytest.raises(ValueError, match="room_1/intrinsics.json: missing"):
        load_scenes(cfg, "test")
    (sc,) = load_scenes(DataConfig(root=str(replica_root), kind="replica", replica_hfov_deg=60.0), "test")
    np.testing.assert_allclose(sc.camera(0).K[0, 0], 4 / np.tan(np.pi / 6))

    # A split file elsewhere, named by the config, and the explicit "every scene everywhere".
    other = tmp_path / "my_split.json"
    other.write_text(json.dumps({"splits": {"train": ["office_0"], "val": [], "test": ["room_0"]}}))
    (replica_root / "splits.json").unlink()
    assert [s.name for s in load_scenes(DataConfig(root=str(replica_root), kind="replica",
                                                   split_file=str(other)), "test")] == ["room_0"]
    every = DataConfig(root=str(replica_root), kind="replica", split_file="all", replica_hfov_deg=90.0)
    assert [s.name for s in load_scenes(every, "val")] == ["office_0", "room_0", "room_1"]

    # Split files that cannot be honoured.
    with pytest.raises(ValueError, match="data.split_file .*nope.json: no such file"):
        load_scenes(DataConfig(root=str(replica_root), kind="replica", split_file=str(tmp_path / "nope.json")), "test")
    other.write_text(json.dumps({"splits": {"test": ["room_9"]}}))
    with pytest.raises(ValueError, match="my_split.json: split 'test' lists 'room_9', which is not a folder under"):
        load_scenes(DataConfig(root=str(replica_root), kind="replica", split_file=str(other)), "test")
    other.write_text(json.dumps({"train": ["room_0"]}))
    with pytest.raises(ValueError, match="my_split.json: unreadable splits file"):
        load_scenes(DataConfig(root=str(replica_root), kind="replica", split_file=str(other)), "test")
    with pytest.raises(ValueError, match="data.split_file is for kind scene_folders or replica"):
        load_scenes(DataConfig(root=str(replica_root), kind="hypersim", split_csv="x.csv", split_file="all"), "test")


def test_replica_options_read_from_a_config_file(tmp_path):
    from training.config_io import from_dict
    from training.data import DataConfig

    cfg = from_dict(DataConfig, {"kind": "replica", "split_file": "all", "replica_hfov_deg": 90})
    assert cfg.replica_hfov_deg == 90.0 and cfg.split_file == "all"
    assert from_dict(DataConfig, {"replica_hfov_deg": None}).replica_hfov_deg is None
