"""scripts/export_segmenter.py and training.baselines.load_segmenter: the baselines' 2D segmenter
stored in float16 loads as a float32 segmenter whose labels match the original's, and the
committed checkpoints/segmenter_small.pt is such a file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.baselines import load_segmenter
from viewseg_core.model.encoder import build_encoder
from viewseg_core.model.weights import ENCODER_FORMAT, SMALL_TENSOR, read_weights_file, save_encoder, save_model

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "checkpoints" / "segmenter_small.pt"


@pytest.fixture(scope="module")
def tiny_segmenter(tmp_path_factory, tiny_rooms):
    """A small DeepLabv3+ whose BatchNorm statistics come from rendered room views (not a
    trained segmenter, but one with realistic activations and varied labels)."""
    from viewseg_core.data.scene_folder import SceneFolder, find_scene_folders

    torch.manual_seed(0)
    encoder = build_encoder("deeplabv3plus_resnet18", feature_dim=16)
    images = np.stack([SceneFolder(f).load_rgb(i) for f in find_scene_folders(tiny_rooms[0]) for i in range(4)])
    for module in encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the batches below
    with torch.no_grad():
        encoder.train()(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0)
    path = tmp_path_factory.mktemp("segmenter") / "segmenter.pt"
    save_encoder(encoder.eval(), path, extra={"norm": "bn", "size_hw": [30, 40], "metrics": {"miou": 0.1}})
    return path


def _labels(segmenter, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return segmenter.segment(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0).argmax(1)


def test_float16_export_loads_and_agrees(tiny_segmenter, tiny_rooms, tmp_path, capsys, load_script):
    module = load_script("export_segmenter")
    out = tmp_path / "ckpt" / "segmenter_small.pt"
    data, _ = tiny_rooms
    assert module.main(["--segmenter", str(tiny_segmenter), "--out", str(out), "--check-data", str(data),
                        "--check-split", "test", "--check-views", "6"]) == 0
    printed = capsys.readouterr().out
    assert f"6 test views of {data}" in printed and f"wrote {out}" in printed
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # atomic: no temporary left

    original, raw = read_weights_file(tiny_segmenter), read_weights_file(out)
    assert raw["format"] == ENCODER_FORMAT and raw["export"]["stored_dtype"] == "float16"
    for key in ("encoder", "feature_dim", "num_classes", "class_names", "norm", "size_hw", "metrics"):
        assert raw[key] == original[key], key
    halved = 0
    for name, value in original["state_dict"].items():
        stored = raw["state_dict"][name]
        if value.is_floating_point() and value.numel() >= SMALL_TENSOR:
            assert stored.dtype == torch.float16 and torch.equal(stored, value.half()), name
            halved += 1
        else:
            assert stored.dtype == value.dtype and torch.equal(stored, value), name
    assert halved >= 10 and out.stat().st_size < 0.6 * tiny_segmenter.stat().st_size

    fp32, fp16 = load_segmenter(tiny_segmenter), load_segmenter(out)
    assert all(t.dtype == torch.float32 for t in fp16.state_dict().values() if t.is_floating_point())
    assert not fp16.training
    # Labels on real (rendered) room views: procedural rooms the export never saw.
    images = module.procedural_images(8, (30, 40), seed=99)
    a, b = _labels(fp32, images), _labels(fp16, images)
    assert len(torch.unique(a)) >= 3  # a non-trivial labelling
    assert (a == b).float().mean().item() >= 0.99


def test_export_refusals(tiny_segmenter, tmp_path, capsys, load_script):
    module = load_script("export_segmenter")
    out = tmp_path / "seg.pt"
    assert module.main(["--segmenter", str(tiny_segmenter), "--out", str(out), "--max-mb", "0.01",
                        "--check-views", "1"]) == 1
    assert "> --max-mb 0.01 MB" in capsys.readouterr().err and not out.exists()
    assert module.main(["--segmenter", str(tiny_segmenter), "--out", str(tiny_segmenter)]) == 2
    assert "is the input itself" in capsys.readouterr().err
    # An export is not exported again (it would be labelled float16-from-float16).
    assert module.main(["--segmenter", str(tiny_segmenter), "--out", str(out), "--check-views", "1"]) == 0
    capsys.readouterr()
    assert module.main(["--segmenter", str(out), "--out", str(tmp_path / "again.pt"), "--check-views", "1"]) == 2
    assert "already a float16 export" in capsys.readouterr().err


def test_load_segmenter_refuses_other_files_in_one_line(tmp_path):
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg

    model = save_model(ViewSeg(ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=16, hidden_dim=16)),
                       tmp_path / "model.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    for path, expected in ((model, "a 'viewseg-model' file"), (plain, "no format='viewseg-encoder'"),
                           (garbage, "refusing weights file"), (tmp_path / "absent.pt", "does not exist")):
        with pytest.raises((ValueError, FileNotFoundError)) as error:
            load_segmenter(path)
        assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_committed_segmenter():
    """checkpoints/segmenter_small.pt: float16, small, and a working segmenter of rendered rooms."""
    assert COMMITTED.is_file(), f"{COMMITTED} is missing (scripts/export_segmenter.py writes it)"
    assert COMMITTED.stat().st_size <= 30_000_000
    raw = read_weights_file(COMMITTED)
    assert raw["export"]["stored_dtype"] == "float16" and raw["export"]["from"] == "runs/segmenter_2d/segmenter.pt"
    assert (raw["encoder"], raw["feature_dim"], list(raw["size_hw"])) == ("deeplabv3plus_resnet18", 64, [60, 80])
    segmenter = load_segmenter(COMMITTED)
    assert all(t.dtype == torch.float32 for t in segmenter.state_dict().values() if t.is_floating_point())

    from viewseg_core.data.synth.generate import SynthConfig, make_scene, render_views, scene_seed
    config = SynthConfig(views=4, height=60, width=80)
    views = [v for room in range(2) for v in render_views(*make_scene(scene_seed(7, room), config), config)]
    predicted = _labels(segmenter, np.stack([v.rgb for v in views]))
    truth = torch.as_tensor(np.stack([v.labels for v in views])).long()
    known = truth != 255
    accuracy = (predicted[known] == truth[known]).float().mean().item()
    assert accuracy > 0.5, accuracy  # the float32 original: 0.67-0.72 on these rooms; chance is far below
