"""`viewseg confidence` end to end on the tiny synthetic split: it renders as the node answers,
bins every labelled pixel once, fits a map the node can load, scores a fitted map beside the
raw score, and refuses a map fitted for another checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest

from training.data import build_dataset
from training.evaluate import load_viewseg, resolve_data_config
from viewseg_core import cli
from viewseg_core.confidence import ConfidenceCalibration

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def labelled_pixels(checkpoint, root, split: str) -> int:
    _, config = load_viewseg(checkpoint)
    dataset = build_dataset(resolve_data_config(config, data_root=str(root)), split=split, full_target=True)
    return sum(int((dataset[i]["target_labels"] >= 0).sum()) for i in range(len(dataset)))


def test_fit_on_val_then_score_on_test(tiny_synth, tiny_files, tmp_path, capsys):
    checkpoint = tiny_files["with_data"]
    fitted = tmp_path / "model.confidence.json"
    assert cli.main(["confidence", "--checkpoint", str(checkpoint), "--data", str(tiny_synth), "--split", "val",
                     "--out", str(tmp_path / "val"), "--fit", str(fitted), "--bins", "10", "--threads", "1"]) == 0
    report = json.loads((tmp_path / "val" / "confidence.json").read_text())
    raw = report["raw"]
    # Every labelled pixel of every target is binned once or counted unknown.
    assert raw["answered"] + raw["abstained"] == labelled_pixels(checkpoint, tiny_synth, "val")
    assert sum(raw["count"]) == raw["answered"] and raw["bins"] == 10
    assert report["preset"].startswith("fast") and (tmp_path / "val" / "reliability.png").stat().st_size > 0
    calibration = ConfidenceCalibration.load(fitted)
    assert calibration.fitted_on["split"] == "val" and calibration.fitted_on["pixels"] == raw["answered"]
    calibration.check_checkpoint(checkpoint)

    assert cli.main(["confidence", "--checkpoint", str(checkpoint), "--data", str(tiny_synth), "--split", "test",
                     "--out", str(tmp_path / "test"), "--calibration", str(fitted), "--threads", "1"]) == 0
    report = json.loads((tmp_path / "test" / "confidence.json").read_text())
    assert report["calibrated"]["answered"] == report["raw"]["answered"]   # the map changes no label
    assert np.isfinite(report["calibrated"]["ece"])
    assert "| calibrated |" in (tmp_path / "test" / "confidence.md").read_text()
    capsys.readouterr()
    # A map fitted for this checkpoint is refused for another file.
    assert cli.main(["confidence", "--checkpoint", str(tiny_files["train"]), "--data", str(tiny_synth),
                     "--split", "test", "--out", str(tmp_path / "other"), "--calibration", str(fitted)]) == 2
    assert "fitted for checkpoint 'with_data.pt'" in capsys.readouterr().err
