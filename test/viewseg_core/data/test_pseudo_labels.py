"""`viewseg pseudo-label` (viewseg_core/data/pseudo_labels.py, viewseg_core/segmenter.py) on real
files: a random 2D segmenter whose classes are named in another order labels a scene folder's
frames, mapped to viewseg's classes by name; frames with labels keep them; the input is never
touched."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewseg_core.classes import CLASS_NAMES, IGNORE_LABEL
from viewseg_core.cli import main
from viewseg_core.data.pseudo_labels import pseudo_label_folder
from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import SceneFolder, write_scene_folder
from viewseg_core.model.encoder import build_encoder
from viewseg_core.model.weights import save_encoder
from viewseg_core.segmenter import PseudoLabeler

K = np.array([[20.0, 0.0, 15.5], [0.0, 20.0, 11.5], [0.0, 0.0, 1.0]])
# The checkpoint's class order: viewseg's reversed, and one class viewseg does not have.
NAMES = ["spaceship", *reversed(CLASS_NAMES[1:])]


@pytest.fixture
def segmenter(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder("deeplabv3plus_resnet18", feature_dim=16, num_classes=len(NAMES))
    return save_encoder(encoder, tmp_path / "seg.pt", class_names=NAMES)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    views = []
    for i in range(3):
        c2w = np.eye(4)
        c2w[0, 3] = float(i)
        views.append(View(rgb=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), K=K, c2w=c2w,
                          depth=np.full((24, 32), 2.0 + i, np.float32), view_id=f"{i:03d}",
                          labels=np.full((24, 32), 5, np.uint8) if i == 1 else None, meta={"camera": "/front"}))
    return write_scene_folder(tmp_path / "kf", views, meta={"fixed_frame": "map", "source": "viewseg_node keyframes"})


def expected_labels(segmenter_path, rgb: np.ndarray) -> np.ndarray:
    """By hand: the segmenter's argmax class, renamed into viewseg's ids (ignore for 'spaceship')."""
    from viewseg_core.segmenter import load_segmenter

    encoder = load_segmenter(segmenter_path)
    with torch.no_grad():
        ids = encoder.segment(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0).argmax(1)[0].numpy()
    names = np.array(NAMES)[ids]
    return np.array([[CLASS_NAMES.index(n) if n in CLASS_NAMES else IGNORE_LABEL for n in row] for row in names],
                    np.uint8)


def test_frames_without_labels_get_the_segmenters_renamed_classes(folder, segmenter, tmp_path):
    before = (folder.root / "cameras.json").read_bytes()
    labeler = PseudoLabeler(segmenter)
    counts = pseudo_label_folder(folder.root, tmp_path / "labelled", labeler, progress=False)
    assert counts == {"frames": 3, "predicted": 2, "kept": 1}
    out = SceneFolder(tmp_path / "labelled")
    assert out.meta["pseudo_labels"] is True and out.meta["labels"] == f"pseudo:{segmenter}"
    assert out.meta["fixed_frame"] == "map" and out.meta["pseudo_labelled_from"] == str(folder.root)
    for index in range(3):
        a, b = folder.load_view(index), out.load_view(index)
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.c2w, b.c2w) and np.array_equal(a.depth, b.depth)
        assert b.meta["camera"] == "/front"
        if index == 1:
            assert np.array_equal(b.labels, a.labels)                       # its own labels are kept
        else:
            np.testing.assert_array_equal(b.labels, expected_labels(segmenter, a.rgb))
    assert (folder.root / "cameras.json").read_bytes() == before and folder.load_view(0).labels is None
    counts = pseudo_label_folder(folder.root, tmp_path / "labelled", labeler, relabel=True, progress=False)
    assert counts == {"frames": 3, "predicted": 3, "kept": 0}


def test_refusals_write_nothing(folder, segmenter, tmp_path, capsys):
    with pytest.raises(ValueError, match="the input folder is never modified"):
        pseudo_label_folder(folder.root, folder.root / "labelled", PseudoLabeler(segmenter), progress=False)
    assert not (folder.root / "labelled").exists()
    torch.save({"format": "viewseg-model"}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="is not a 2D segmenter checkpoint"):
        PseudoLabeler(tmp_path / "model.pt")
    assert main(["pseudo-label", str(folder.root), "--segmenter", str(segmenter), "--out", str(tmp_path / "cli"),
                 "--no-progress"]) == 0
    assert "2 labelled by the segmenter" in capsys.readouterr().out and SceneFolder(tmp_path / "cli").meta["pseudo_labels"]
