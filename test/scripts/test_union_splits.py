"""scripts/union_splits.py over real `viewseg synth` datasets (of different seeds, and of one seed)."""
from __future__ import annotations

import json

import pytest

from viewseg_core.data.synth.generate import SynthConfig, read_splits, write_dataset


def test_union_keeps_every_train_split_and_one_val_split(tmp_path, capsys, load_script):
    union = load_script("union_splits")
    config = SynthConfig(width=16, height=12, views=2)
    a = tmp_path / "set_a"
    b = tmp_path / "set_b"
    splits_a = write_dataset(a, 10, config, seed=0, progress=False)
    splits_b = write_dataset(b, 10, config, seed=1, progress=False)
    assert not set(splits_a["train"]) & set(splits_b["train"])  # names carry the seed: no clash

    out = tmp_path / "union"
    assert union.main([str(a), str(b), "--out", str(out), "--val-from", str(a)]) == 0
    counts = json.loads(capsys.readouterr().out)
    splits = read_splits(out)
    assert splits["train"] == [f"set_a__{n}" for n in splits_a["train"]] + [f"set_b__{n}" for n in splits_b["train"]]
    assert splits["val"] == [f"set_a__{n}" for n in splits_a["val"]]
    assert splits["test"] == [f"set_a__{n}" for n in splits_a["test"]]
    assert counts == {k: len(v) for k, v in splits.items()}
    for name in splits["train"]:
        dataset, scene = name.split("__")
        assert (out / name).resolve() == (tmp_path / dataset / scene).resolve()
        assert (out / name / "cameras.json").is_file()

    # Idempotent: a second run over the same roots changes nothing.
    assert union.main([str(a), str(b), "--out", str(out), "--val-from", str(a)]) == 0
    assert read_splits(out) == splits


def test_union_refuses_a_link_to_another_room_and_a_missing_scene(tmp_path, capsys, load_script):
    union = load_script("union_splits")
    a = tmp_path / "set_a"
    splits = write_dataset(a, 10, SynthConfig(width=16, height=12, views=2), seed=0, progress=False)
    out = tmp_path / "union"
    out.mkdir()
    first = splits["train"][0]
    (out / f"set_a__{first}").symlink_to(a / splits["train"][1])
    assert union.main([str(a), "--out", str(out)]) == 1
    assert "already points to" in capsys.readouterr().err

    doc = json.loads((a / "splits.json").read_text())
    doc["splits"]["train"].append("synth_99999")
    (a / "splits.json").write_text(json.dumps(doc))
    assert union.main([str(a), "--out", str(tmp_path / "union2")]) == 1
    assert "synth_99999" in capsys.readouterr().err


def test_union_of_two_seeds_loads_for_training_and_one_seed_twice_is_refused(tmp_path, capsys, load_script):
    from training.data import DataConfig, load_scenes

    union = load_script("union_splits")
    config = SynthConfig(width=16, height=12, views=2)
    for name, seed in (("s1", 1), ("s2", 2), ("s2_copy", 2)):   # s2_copy repeats s2's scene names
        write_dataset(tmp_path / name, 3, config, seed=seed, progress=False, val_scenes=0, test_scenes=1)
    out = tmp_path / "union"
    assert union.main([str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    scenes = load_scenes(DataConfig(root=str(out)), "train")
    assert sorted(s.name for s in scenes) == sorted(
        n for seed in (1, 2) for n in read_splits(tmp_path / f"s{seed}")["train"])
    assert len(scenes) == 4 and len({s.name for s in scenes}) == 4

    out2 = tmp_path / "union2"
    assert union.main([str(tmp_path / "s2"), str(tmp_path / "s2_copy"), "--out", str(out2)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: 2 scene name(s) occur in more than one root") and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="duplicate scene name 'synth_s2_0000.' in split 'train'.*s2__synth_s2.*"
                                         "s2_copy__synth_s2"):
        load_scenes(DataConfig(root=str(out2)), "train")
