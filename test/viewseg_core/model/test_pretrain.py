"""2D pretraining on tiny folders written here: ADE20k layout, images/labels, scene folders."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from viewseg_core.cli import main
from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import write_scene_folder
from viewseg_core.model import build_encoder, load_encoder_weights
from viewseg_core.model.weights import read_weights_file
from viewseg_core.pretrain import PretrainConfig, ade20k_labels, pretrain


def _image_and_labels(rng, h=24, w=32, classes=(1, 2, 3)):
    """Left/right halves of two colours with matching labels, so a few steps learn something."""
    a, b = rng.choice(classes, 2, replace=False)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (40 * a) % 256
    img[:, w // 2:] = (70 * b) % 256
    lab = np.zeros((h, w), np.uint8)
    lab[:, : w // 2], lab[:, w // 2:] = a, b
    return img, lab


def _write_ade(root, n_train=4, n_val=2):
    rng = np.random.default_rng(0)
    for split, n in (("training", n_train), ("validation", n_val)):
        (root / "ADEChallengeData2016" / "images" / split).mkdir(parents=True)
        (root / "ADEChallengeData2016" / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            img, lab = _image_and_labels(rng)
            lab[0, 0] = 0  # ADE20k "other": ignored
            name = f"ADE_{split[:5]}_{i:08d}"
            cv2.imwrite(str(root / "ADEChallengeData2016" / "images" / split / f"{name}.jpg"), img[:, :, ::-1])
            cv2.imwrite(str(root / "ADEChallengeData2016" / "annotations" / split / f"{name}.png"), lab)


def test_ade20k_label_mapping():
    assert ade20k_labels(np.array([0, 1, 150, 151])).tolist() == [255, 0, 149, 255]


def test_pretrain_ade20k_and_reload(tmp_path):
    _write_ade(tmp_path / "ade")
    cfg = PretrainConfig(data=str(tmp_path / "ade"), out=str(tmp_path / "enc.pt"), encoder="deeplabv3plus_resnet18",
                         feature_dim=16, size_hw=(24, 32), epochs=3, batch_size=2, lr=0.01, workers=0,
                         progress=False)
    summary = pretrain(cfg)
    assert summary["steps"] == 6 and np.isfinite(summary["last_loss"])
    assert set(summary["metrics"]) == {"miou", "pacc"}
    ckpt = read_weights_file(tmp_path / "enc.pt")
    assert ckpt["format"] == "viewseg-encoder" and ckpt["num_classes"] == 150 and ckpt["layout"] == "ade20k"
    # The field's encoder (37 classes) starts from it without the 150-class head.
    enc = build_encoder("deeplabv3plus_resnet18", feature_dim=16)
    load_encoder_weights(enc, tmp_path / "enc.pt", include_head=False)
    assert torch.equal(enc.backbone.conv1.weight, ckpt["state_dict"]["backbone.conv1.weight"])


def test_cli_folder_layout_learns(tmp_path, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "labels").mkdir()
    for i in range(4):
        img, lab = _image_and_labels(rng)
        cv2.imwrite(str(tmp_path / "d" / "images" / f"{i}.png"), img[:, :, ::-1])
        cv2.imwrite(str(tmp_path / "d" / "labels" / f"{i}.png"), lab)
    out = tmp_path / "folder.pt"
    rc = main(["pretrain-2d", "--data", str(tmp_path / "d"), "--out", str(out), "--encoder", "deeplabv3plus_resnet18",
               "--feature-dim", "16", "--size", "32x24", "--epochs", "15", "--batch-size", "4", "--lr", "0.1",
               "--workers", "0"])
    assert rc == 0 and out.is_file()
    printed = capsys.readouterr().out
    first, last = (float(x) for x in printed.split("loss ")[1].split(",")[0].split(" -> "))
    assert last < first / 4, printed  # seen: 3.86 -> 0.17
    assert read_weights_file(out)["num_classes"] == 37


def test_scene_folders(tmp_path):
    rng = np.random.default_rng(2)
    K = np.array([[20.0, 0, 15.5], [0, 20.0, 11.5], [0, 0, 1]])
    views = []
    for i in range(2):
        img, lab = _image_and_labels(rng)
        views.append(View(rgb=img, K=K, c2w=np.eye(4), labels=lab, view_id=f"{i:03d}"))
    write_scene_folder(tmp_path / "scenes" / "s0", views, scene="s0")
    summary = pretrain(PretrainConfig(data=str(tmp_path / "scenes"), out=str(tmp_path / "s.pt"),
                                      encoder="deeplabv3plus_resnet18", feature_dim=16, size_hw=(24, 32),
                                      epochs=1, batch_size=2, workers=0, progress=False))
    assert summary["steps"] == 1 and read_weights_file(tmp_path / "s.pt")["layout"] == "scenes"


def test_bad_data(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        pretrain(PretrainConfig(data=str(tmp_path / "nope"), out=str(tmp_path / "x.pt")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell the layout"):
        pretrain(PretrainConfig(data=str(tmp_path / "empty"), out=str(tmp_path / "x.pt")))
    with pytest.raises(ValueError, match="batch-size must be >= 2"):
        _write_ade(tmp_path / "ade", 2, 0)
        pretrain(PretrainConfig(data=str(tmp_path / "ade"), out=str(tmp_path / "x.pt"), batch_size=1,
                                encoder="deeplabv3plus_resnet18", feature_dim=16))
