"""scripts/union_splits.py over two real `viewseg synth` datasets that reuse scene names."""
from __future__ import annotations

import json

from viewseg_core.data.synth.generate import SynthConfig, read_splits, write_dataset


def test_union_keeps_every_train_split_and_one_val_split(tmp_path, capsys, load_script):
    union = load_script("union_splits")
    config = SynthConfig(width=16, height=12, views=2)
    a = tmp_path / "set_a"
    b = tmp_path / "set_b"
    splits_a = write_dataset(a, 10, config, seed=0, progress=False)
    splits_b = write_dataset(b, 10, config, seed=1, progress=False)
    assert set(splits_a["train"]) & set(splits_b["train"])      # the names collide, the rooms do not

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
