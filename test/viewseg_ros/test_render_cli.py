"""`viewseg render-view`: the node's answer from a keyframe folder, without a robot. A synthetic
room (a scene folder, as bag2scene writes) rendered by the shipped RGB-D model from one of its
own views' poses must show that view's labels and depth; bad requests end in one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_core import cli  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "checkpoints" / "demo_rgbd.pt"


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    from viewseg_core.data.synth.generate import SynthConfig, write_dataset

    root = tmp_path_factory.mktemp("render_room")
    write_dataset(root, 1, SynthConfig(views=12, height=60, width=80), seed=5, progress=False, val_scenes=0,
                  test_scenes=0)
    (scene,) = [p for p in root.iterdir() if (p / "cameras.json").is_file()]
    return scene


def test_a_view_rendered_from_its_own_pose_shows_its_labels_and_depth(room, tmp_path, capsys):
    from viewseg_core.data.scene_folder import SceneFolder

    out = tmp_path / "out"
    assert cli.main(["render-view", "--keyframes", str(room), "--checkpoint", str(CHECKPOINT), "--keyframe", "4",
                     "--keyframe", "9", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sampling rgbd" in printed and "view 01, keyframe 9" in printed
    scene = SceneFolder(room)
    for number, index in enumerate((4, 9)):
        result = np.load(out / f"view_{number:02d}.npz")
        view = scene.load_view(index)
        np.testing.assert_allclose(result["c2w"], view.c2w)
        labelled = view.labels != 255
        answered = labelled & (result["labels"] != 255)
        assert answered.sum() > 0.8 * labelled.sum()
        assert (result["labels"] == view.labels)[answered].mean() > 0.7           # the demo model, on its own view
        both = np.isfinite(result["depth"]) & np.isfinite(view.depth)
        assert np.median(np.abs(result["depth"][both] - view.depth[both]) / view.depth[both]) < 0.1
        assert (out / f"view_{number:02d}.png").stat().st_size > 0


def test_leave_one_out_renders_each_view_from_the_others_and_scores_it(room, tmp_path, capsys):
    out = tmp_path / "loo"
    assert cli.main(["render-view", "--keyframes", str(room), "--checkpoint", str(CHECKPOINT), "--keyframe", "all",
                     "--leave-out", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for index in range(12):   # the folder's views become keyframes 0..11, in order
        used = np.load(out / f"view_{index:02d}.npz")["keyframe_ids"].tolist()
        assert len(used) == 4 and index not in used
    (totals,) = [line for line in printed.splitlines() if "views scored" in line]
    assert totals.startswith(f"[render-view] {room.name}: 12 views scored against the folder's labels (each "
                             f"rendered without itself): ")
    scores = dict(part.rsplit(" ", 1) for part in totals.split("itself): ", 1)[1].split(", "))
    assert float(scores["pixel accuracy"]) > 0.6 and float(scores["delta<1.25"]) > 0.8   # novel views of a room


def test_several_folders_in_turn_and_their_totals(room, tmp_path, capsys):
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(room, twin)   # the same room again, under another name
    out = tmp_path / "both"
    assert cli.main(["render-view", "--keyframes", str(room), "--keyframes", str(twin), "--checkpoint",
                     str(CHECKPOINT), "--keyframe", "2", "--keyframe", "7", "--leave-out", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / room.name / "view_01.npz").is_file() and (out / "twin" / "view_01.npz").is_file()
    lines = [line for line in printed.splitlines() if "views scored" in line]
    assert [line.split(":")[0] for line in lines] == [f"[render-view] {room.name}", "[render-view] twin",
                                                      "[render-view] 2 folders"]
    assert "4 views scored" in lines[-1]
    # The twin answers as its original did, from keyframes of its own: the second folder replaced
    # the first one's (ids are never reused, so the twin's are 12 and up).
    for name in ("view_00.npz", "view_01.npz"):
        first, second = np.load(out / room.name / name), np.load(out / "twin" / name)
        np.testing.assert_array_equal(first["labels"], second["labels"])
        assert first["keyframe_ids"].max() < 12 <= second["keyframe_ids"].min()


def test_bad_requests_end_in_one_line(room, tmp_path, capsys):
    cases = [(["--keyframes", str(tmp_path / "missing")], "not a keyframe folder"),
             (["--keyframes", str(room), "--pose", "1,2,3"], "--pose takes seven numbers"),
             (["--keyframes", str(room), "--pose", "0,0,0,0,0,0,2"], "not normalised"),
             (["--keyframes", str(room), "--keyframe", "99"], "holds views 0 to 11"),
             (["--keyframes", str(room)], "nothing to render"),
             (["--keyframes", str(room), "--keyframe", "first"], "--keyframe takes a view index or 'all'"),
             (["--keyframes", str(room), "--pose", "0,0,0,0,0,0,1", "--leave-out"], "--pose has none"),
             (["--keyframes", str(room), "--keyframes", str(room), "--pose", "0,0,0,0,0,0,1"],
              "give one --keyframes with it"),
             (["--keyframes", str(room), "--keyframe", "0", "--param", "query.bogus=1"], "--param takes name=value"),
             (["--keyframes", str(room), "--keyframe", "0", "--param", "query.preset=fastest"],
              "query.preset must be one of")]
    for extra, message in cases:
        capsys.readouterr()
        assert cli.main(["render-view", "--checkpoint", str(CHECKPOINT), "--out", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
