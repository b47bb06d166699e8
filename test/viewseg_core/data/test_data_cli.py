"""`viewseg synth` / `viewseg mine-pairs`: folders, splits, pairs, determinism across worker counts."""
from __future__ import annotations

import json

import pytest

from viewseg_core.cli import main
from viewseg_core.data.pairs import read_pairs
from viewseg_core.data.scene_folder import SceneFolder
from viewseg_core.data.synth import read_splits


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_writes_scene_folders_splits_and_pairs(tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["synth", "--out", str(out), "--scenes", "3", "--views", "8", "--size", "48x36",
                 "--seed", "7"]) == 0
    captured = capsys.readouterr()
    assert "view" in captured.err and "24/24" in captured.err          # the tqdm bar counted views
    splits = read_splits(out)
    assert sorted(sum(splits.values(), [])) == ["synth_s7_00000", "synth_s7_00001", "synth_s7_00002"]
    assert all(len(v) == 1 for v in splits.values())
    assert json.loads(captured.out) == {"train": 1, "val": 1, "test": 1}
    folder = SceneFolder(out / "synth_s7_00001")
    assert folder.name == "synth_s7_00001"
    assert len(folder) == 8 and folder.camera(0).width == 48 and folder.camera(0).height == 36
    assert folder.meta["source"] == "viewseg.synth" and folder.meta["config"]["views"] == 8
    view = folder.load_view(5)
    assert view.rgb.shape == (36, 48, 3) and view.depth is not None and view.meta["trajectory"] == "human"
    doc = json.loads((out / "pairs.json").read_text())
    assert doc["config"]["min_overlap"] == 0.1
    for e in read_pairs(out / "pairs.json"):
        assert len(e.sources) == 4

    # Same seed, two worker processes, no pairs: byte-identical scene folders.
    out2 = tmp_path / "b"
    assert main(["synth", "--out", str(out2), "--scenes", "3", "--views", "8", "--size", "48x36",
                 "--seed", "7", "--workers", "2", "--no-pairs", "--no-progress"]) == 0
    a, b = _tree(out), _tree(out2)
    a.pop("pairs.json")
    assert a == b


def test_synth_split_controls(tmp_path, capsys):
    tiny = ["--views", "2", "--size", "16x12", "--no-pairs", "--no-progress"]
    # An evaluation-only set: every scene in test.
    out = tmp_path / "eval"
    assert main(["synth", "--out", str(out), "--scenes", "3", "--test-scenes", "3", "--seed", "4"] + tiny) == 0
    assert json.loads(capsys.readouterr().out) == {"train": 0, "val": 0, "test": 3}
    assert read_splits(out) == {"train": [], "val": [], "test": ["synth_s4_00000", "synth_s4_00001", "synth_s4_00002"]}
    # One scene can make a test split now (the default gives it to train).
    assert main(["synth", "--out", str(tmp_path / "one"), "--scenes", "1", "--test-scenes", "1"] + tiny) == 0
    assert json.loads(capsys.readouterr().out) == {"train": 0, "val": 0, "test": 1}
    assert main(["synth", "--out", str(tmp_path / "one_default"), "--scenes", "1"] + tiny) == 0
    assert json.loads(capsys.readouterr().out) == {"train": 1, "val": 0, "test": 0}
    # Both counts exact; the rest is train.
    assert main(["synth", "--out", str(tmp_path / "five"), "--scenes", "5", "--val-scenes", "2",
                 "--test-scenes", "0"] + tiny) == 0
    assert json.loads(capsys.readouterr().out) == {"train": 3, "val": 2, "test": 0}
    # --legacy-names: the names datasets had before they carried the seed.
    assert main(["synth", "--out", str(tmp_path / "legacy"), "--scenes", "3", "--legacy-names"] + tiny) == 0
    capsys.readouterr()
    assert sorted(sum(read_splits(tmp_path / "legacy").values(), [])) == ["synth_00000", "synth_00001", "synth_00002"]
    assert SceneFolder(tmp_path / "legacy" / "synth_00002").name == "synth_00002"
    # Too many, or negative: one-line errors, exit 2, nothing written.
    bad = tmp_path / "bad"
    assert main(["synth", "--out", str(bad), "--scenes", "2", "--val-scenes", "1", "--test-scenes", "2"] + tiny) == 2
    err = capsys.readouterr().err
    assert err == ("viewseg synth: error: 1 val + 2 test scenes do not fit in 2 scene(s) "
                   "(--val-scenes + --test-scenes must be <= --scenes)\n")
    assert not bad.exists()
    with pytest.raises(SystemExit) as exc:          # a usage error, from argparse
        main(["synth", "--out", str(bad), "--scenes", "2", "--test-scenes", "-1"] + tiny)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "argument --test-scenes: expected an integer >= 0" in err
    assert not bad.exists()


def test_mine_pairs_command(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["synth", "--out", str(out), "--scenes", "1", "--views", "10", "--size", "32x24",
                 "--no-pairs", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["mine-pairs", str(out), "--out", str(tmp_path / "p.json"), "--sources", "2",
                 "--min-rotation", "10"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenes"] == 1 and summary["pairs"] == len(read_pairs(tmp_path / "p.json"))
    assert main(["mine-pairs", str(tmp_path / "empty"), "--out", str(tmp_path / "q.json")]) == 2
    assert capsys.readouterr().err == f"viewseg mine-pairs: error: {tmp_path / 'empty'}: No such file or directory\n"
    (tmp_path / "empty").mkdir()
    assert main(["mine-pairs", str(tmp_path / "empty"), "--out", str(tmp_path / "q.json")]) == 2
    assert "no scene folders (cameras.json) under" in capsys.readouterr().err


def test_bad_size_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--size", "320by240"])
