"""Keyframes to and from a scene folder (viewseg_ros/keyframe_store.py), on real files: an
exact round trip, the frame check, atomic replacement and every refusal leaving things as
they were."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import write_scene_folder
from viewseg_ros.keyframe_store import SOURCE, read_keyframes, save_keyframes
from viewseg_ros.keyframes import Keyframe

K = np.array([[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]])


def _keyframes(n: int = 3) -> list[Keyframe]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        c2w = np.eye(4)
        c2w[:3, 3] = (0.1 * i + 1e-9 * i, -0.2, 1.0 / 3.0)       # values JSON must keep exactly
        depth = rng.uniform(0.5, 4.0, (24, 32)).astype(np.float32)
        depth[0, :5] = np.nan
        view = View(rgb=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), K=K, c2w=c2w,
                    depth=depth if i != 1 else None, meta={"frame_id": "cam_optical", "camera": "/front"})
        out.append(Keyframe(id=10 + i, stamp_ns=1_700_000_000_123_456_789 + i, view=view, stream="/front"))
    return out


def test_round_trip_is_exact(tmp_path):
    keyframes = _keyframes()
    path = save_keyframes(keyframes, tmp_path / "kf", "map", node_name="/robot/viewseg")
    meta = json.loads((path / "cameras.json").read_text())["meta"]
    assert meta["source"] == SOURCE and meta["fixed_frame"] == "map" and meta["keyframes"] == 3
    stored, note = read_keyframes(path, "map")
    assert note == "" and len(stored) == 3
    for original, back in zip(keyframes, stored):
        assert back.stamp_ns == original.stamp_ns and back.camera == "/front"
        assert np.array_equal(back.view.rgb, original.view.rgb)
        assert np.array_equal(back.view.c2w, original.view.c2w) and np.array_equal(back.view.K, K)
        if original.view.depth is None:
            assert back.view.depth is None
        else:
            np.testing.assert_array_equal(back.view.depth, original.view.depth)   # NaN where NaN
        assert back.view.meta["frame_id"] == "cam_optical"


def test_another_fixed_frame_is_refused_and_a_plain_scene_is_assumed_in_ours(tmp_path):
    path = save_keyframes(_keyframes(1), tmp_path / "kf", "odom")
    with pytest.raises(ValueError, match="holds poses in 'odom', but this node's fixed_frame is 'map'"):
        read_keyframes(path, "map")
    bare = _keyframes(1)[0].view
    plain = write_scene_folder(tmp_path / "synth", [View(rgb=bare.rgb, K=bare.K, c2w=bare.c2w)]).root
    stored, note = read_keyframes(plain, "map")
    assert len(stored) == 1 and "records no fixed frame" in note and "'map'" in note
    assert stored[0].camera == "" and stored[0].stamp_ns == 0


def test_saving_replaces_an_earlier_save_and_refuses_anything_else(tmp_path):
    path = save_keyframes(_keyframes(3), tmp_path / "kf", "map")
    save_keyframes(_keyframes(2), path, "map")
    assert len(read_keyframes(path, "map")[0]) == 2
    assert not list(tmp_path.glob(".kf.*"))                                 # no staging folder left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a scene folder"):
        save_keyframes(_keyframes(1), other, "map")
    assert (other / "todo.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="no keyframes to save"):
        save_keyframes([], path, "map")
    assert len(read_keyframes(path, "map")[0]) == 2


def test_bad_folders_are_refused_whole(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_keyframes(tmp_path / "missing", "map")
    path = save_keyframes(_keyframes(3), tmp_path / "kf", "map")
    (path / "rgb" / "000012.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ValueError, match="000012"):
        read_keyframes(path, "map")
    path = save_keyframes(_keyframes(2), tmp_path / "kf2", "map")
    doc = json.loads((path / "cameras.json").read_text())
    doc["frames"][1]["c2w"][0][3] = math.nan
    (path / "cameras.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="not finite|finite"):
        read_keyframes(path, "map")


def _odometry(n: int = 5):
    from viewseg_ros.keyframe_store import SavedOdometry

    poses = np.repeat(np.eye(4)[None], n, axis=0)
    poses[:, 0, 3] = np.arange(n) * 0.25
    return SavedOdometry("odom", "system", np.arange(n, dtype=np.int64) * 100_000_000 + 1_700_000_000_000_000_000, poses)


def test_odometry_round_trips_exactly_and_only_with_a_pose_graph(tmp_path):
    from viewseg_ros.keyframe_store import ODOMETRY_FILE, read_odometry

    keyframes = _keyframes()
    odom = np.eye(4)
    odom[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    odom[:3, 3] = (0.3, 1.0 / 7.0, -2.0)
    keyframes[0].odom_c2w = odom                     # keyframes 1 and 2 have none (unposed in odom)
    saved = _odometry()
    path = save_keyframes(keyframes, tmp_path / "kf", "map", odometry=saved)
    meta = json.loads((path / "cameras.json").read_text())["meta"]
    assert meta["odometry"] == {"frame": "odom", "clock": "system", "samples": 5, "file": ODOMETRY_FILE}
    stored, _ = read_keyframes(path, "map")
    np.testing.assert_array_equal(stored[0].odom_c2w, odom)
    assert stored[1].odom_c2w is None and stored[2].odom_c2w is None
    back = read_odometry(path)
    assert (back.frame, back.clock) == ("odom", "system")
    np.testing.assert_array_equal(back.stamps, saved.stamps)
    np.testing.assert_array_equal(back.poses, saved.poses)
    # Saved again from the restored keyframes without a pose graph: no odometry of the old run is left over.
    again = [Keyframe(id=i, stamp_ns=s.stamp_ns, view=s.view, odom_c2w=s.odom_c2w) for i, s in enumerate(stored)]
    plain = save_keyframes(again, tmp_path / "plain", "map")
    assert read_odometry(plain) is None and not (plain / ODOMETRY_FILE).exists()
    assert all(s.odom_c2w is None for s in read_keyframes(plain, "map")[0])


def test_odometry_is_used_only_where_stamps_compare():
    from viewseg_ros.keyframe_store import SavedOdometry, odometry_usable

    saved = _odometry()
    assert odometry_usable(saved, "odom", "system") == ""
    assert "kept no odometry" in odometry_usable(None, "odom", "system")
    assert "in 'odom', this node's pose_graph.odom_frame is 'wheel_odom'" in odometry_usable(saved, "wheel_odom", "system")
    assert "simulator's clock" in odometry_usable(saved, "odom", "sim")
    sim = SavedOdometry("odom", "sim", saved.stamps, saved.poses)
    assert "simulator's clock" in odometry_usable(sim, "odom", "system")


@pytest.mark.parametrize("damage, match", [
    ("no_file", "cannot read odometry_trail.npz"),
    ("not_npz", "cannot read odometry_trail.npz"),
    ("unsorted", "not strictly increasing"),
    ("nan_pose", "finite odom_from_body"),
    ("bad_clock", "must name a frame and a clock"),
    ("bad_odom_c2w", "odom_c2w: not a rigid transform"),
    ("short_odom_c2w", "odom_c2w: must be a finite 4x4 matrix"),
])
def test_malformed_odometry_is_refused_naming_it(tmp_path, damage, match):
    from viewseg_ros.keyframe_store import ODOMETRY_FILE, read_odometry

    keyframes = _keyframes(1)
    keyframes[0].odom_c2w = np.eye(4)
    path = save_keyframes(keyframes, tmp_path / "kf", "map", odometry=_odometry())
    trail = path / ODOMETRY_FILE
    cameras = json.loads((path / "cameras.json").read_text())
    if damage == "no_file":
        trail.unlink()
    elif damage == "not_npz":
        trail.write_bytes(b"not a zip file")
    elif damage in ("unsorted", "nan_pose"):
        saved = _odometry()
        stamps, poses = saved.stamps.copy(), saved.poses.copy()
        if damage == "unsorted":
            stamps[[1, 2]] = stamps[[2, 1]]
        else:
            poses[3, 1, 3] = np.nan
        np.savez(trail, stamps_ns=stamps, odom_from_body=poses)
    elif damage == "bad_clock":
        cameras["meta"]["odometry"]["clock"] = "gps"
    elif damage == "bad_odom_c2w":
        cameras["frames"][0]["meta"]["odom_c2w"] = (2 * np.eye(4)).tolist()
    else:
        cameras["frames"][0]["meta"]["odom_c2w"] = [[1, 0, 0, 0]]
    (path / "cameras.json").write_text(json.dumps(cameras))
    with pytest.raises(ValueError, match=match):
        read_keyframes(path, "map")
        read_odometry(path)
