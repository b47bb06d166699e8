"""Scene folder format: exact round trip, class-table remapping, and errors that name the file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from viewseg_core.classes import CLASS_NAMES, IGNORE_LABEL
from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import (FORMAT_VERSION, SceneFolder, find_scene_folders,
                                            write_scene_folder)


def _views(n=3, h=12, w=16, label_dtype=np.uint8):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        depth = rng.uniform(0.5, 9.0, (h, w)).astype(np.float32)
        depth[0, :3] = np.nan
        labels = rng.integers(0, 37, (h, w)).astype(label_dtype)
        labels[1, 1] = IGNORE_LABEL
        c2w = np.eye(4)
        a = 0.3 * i
        c2w[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        c2w[:3, 3] = [i * 0.5, 0.1, -1.0]
        K = np.array([[20.0 + i, 0.3, 7.5], [0, 21.0, 5.5], [1e-4, 0, 1.0]])
        out.append(View(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), K=K, c2w=c2w, labels=labels,
                        depth=depth, view_id=f"f{i:03d}", stamp=0.25 * i, meta={"k": i}))
    return out


def test_round_trip_is_exact(tmp_path):
    views = _views()
    views[2] = View(rgb=views[2].rgb, K=views[2].K, c2w=views[2].c2w, view_id="f002")   # no labels/depth
    folder = write_scene_folder(tmp_path / "scene", views, scene="kitchen", meta={"seed": np.int64(3)})
    doc = json.loads((tmp_path / "scene" / "cameras.json").read_text())
    assert doc["format_version"] == FORMAT_VERSION and doc["classes"]["names"] == list(CLASS_NAMES)
    assert doc["depth"]["encoding"] == "npy-float32"
    back = SceneFolder(tmp_path / "scene")
    assert back.name == "kitchen" and len(back) == 3 and back.meta["seed"] == 3
    assert back.view_ids == ["f000", "f001", "f002"]
    for a, i in zip(views, range(3)):
        b = back.load_view(i)
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.K, b.K)
        np.testing.assert_array_equal(a.c2w, b.c2w)
        assert b.stamp == a.stamp and b.view_id == a.view_id
        if a.labels is None:
            assert b.labels is None and b.depth is None
            continue
        np.testing.assert_array_equal(a.labels, b.labels)
        assert b.labels.dtype == np.uint8
        np.testing.assert_array_equal(a.depth, b.depth)        # NaN in the same places, bit-exact
        assert b.meta["k"] == a.meta["k"]
    cam = back.camera(1)
    assert (cam.height, cam.width) == (12, 16)
    assert find_scene_folders(tmp_path) == [tmp_path / "scene"]
    assert folder.index_of("f001") == 1


def test_uint16_labels_round_trip(tmp_path):
    views = _views(1, label_dtype=np.uint16)
    views[0].labels[2, 2] = 1000
    write_scene_folder(tmp_path / "s", views)
    lab = SceneFolder(tmp_path / "s").load_labels(0)
    assert lab.dtype == np.uint16
    np.testing.assert_array_equal(lab, views[0].labels)


def test_foreign_class_table_is_remapped_by_name(tmp_path):
    write_scene_folder(tmp_path / "s", _views(1))
    path = tmp_path / "s" / "cameras.json"
    doc = json.loads(path.read_text())
    # Pretend the folder was written with a 3-class table in another order.
    doc["classes"]["names"] = ["floor", "wall", "unicorn"]
    path.write_text(json.dumps(doc))
    stored = SceneFolder(tmp_path / "s")
    raw = _views(1)[0].labels
    lab = stored.load_labels(0)
    np.testing.assert_array_equal(lab[raw == 0], CLASS_NAMES.index("floor"))
    np.testing.assert_array_equal(lab[raw == 1], CLASS_NAMES.index("wall"))
    assert np.all(lab[(raw >= 2)] == IGNORE_LABEL)


@pytest.mark.parametrize("target", ["rgb/f001.png", "labels/f001.png", "depth/f001.npy"])
def test_truncated_files_name_the_file(tmp_path, target):
    write_scene_folder(tmp_path / "s", _views())
    p = tmp_path / "s" / target
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    folder = SceneFolder(tmp_path / "s")
    folder.load_view(0)                       # other frames still load
    with pytest.raises(ValueError, match=target.replace(".", r"\.")):
        folder.load_view(1)


def test_corrupt_or_inconsistent_metadata(tmp_path):
    write_scene_folder(tmp_path / "s", _views(2))
    cam = tmp_path / "s" / "cameras.json"
    good = cam.read_text()
    cam.write_text(good[:-40])
    with pytest.raises(ValueError, match="cameras.json"):
        SceneFolder(tmp_path / "s")
    doc = json.loads(good)
    doc["format_version"] = 99
    cam.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="format_version"):
        SceneFolder(tmp_path / "s")
    doc = json.loads(good)
    doc["frames"][1]["K"] = [[1, 0], [0, 1]]
    cam.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"frames\[1\]\.K"):
        SceneFolder(tmp_path / "s")
    doc = json.loads(good)
    doc["frames"][0]["width"] = 99
    cam.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="f000.png.*99x12"):
        SceneFolder(tmp_path / "s").load_rgb(0)
    doc = json.loads(good)
    del doc["frames"][0]["c2w"]
    cam.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="c2w"):
        SceneFolder(tmp_path / "s")
    cam.write_text(good)
    (tmp_path / "s" / "rgb" / "f001.png").unlink()
    with pytest.raises(ValueError, match="f001.png"):
        SceneFolder(tmp_path / "s").load_view(1)
    with pytest.raises(ValueError, match="cameras.json"):
        SceneFolder(tmp_path / "nowhere")


def test_writer_rejects_duplicate_and_unsafe_ids(tmp_path):
    v = _views(1)[0]
    with pytest.raises(ValueError, match="duplicate"):
        write_scene_folder(tmp_path / "a", [v, v])
    bad = View(rgb=v.rgb, K=v.K, c2w=v.c2w, view_id="../x")
    with pytest.raises(ValueError, match="file name"):
        write_scene_folder(tmp_path / "b", [bad])


def test_writer_removes_a_frame_with_its_files(tmp_path):
    from viewseg_core.data.scene_folder import SceneFolderWriter

    views = _views()
    writer = SceneFolderWriter(tmp_path / "scene", scene="s")
    for view in views:
        writer.add(view)
    writer.remove("f001")
    assert [entry["id"] for entry in writer.frames] == ["f000", "f002"]
    assert not (tmp_path / "scene" / "rgb" / "f001.png").exists()
    assert not (tmp_path / "scene" / "labels" / "f001.png").exists()
    assert not (tmp_path / "scene" / "depth" / "f001.npy").exists()
    with pytest.raises(KeyError, match="no frame 'f001'"):
        writer.remove("f001")
    with pytest.raises(ValueError, match="duplicate view id"):   # its id stays taken
        writer.add(views[1])
    back = writer.close()
    assert back.view_ids == ["f000", "f002"]
    np.testing.assert_array_equal(back.load_view(1).depth, views[2].depth)
