"""The confidence calibration in the node (real rclpy nodes on loopback): the map beside the
checkpoint is applied to every confidence image (pixels no keyframe sees keep 0, the mark of
"unknown"), /diagnostics says what the confidence means, and a map for another checkpoint is
refused when named and skipped when found beside it."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_core.confidence import ConfidenceCalibration, file_sha256  # noqa: E402
from viewseg_ros.conversions import image_to_numpy  # noqa: E402
from ros_graph import WallWalk, diagnostics_values, params, render_request, tiny_checkpoint, \
    tiny_rgbd_checkpoint  # noqa: E402

W, H = WallWalk.W, WallWalk.H


def constant_map(checkpoint, value: float) -> ConfidenceCalibration:
    """A calibration that says every answered pixel is right with probability ``value``."""
    return ConfidenceCalibration([1e-3, 1.0], [value, value], {"checkpoint": checkpoint.name,
                                                               "checkpoint_sha256": file_sha256(checkpoint)})


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibrated")
    checkpoint = tiny_rgbd_checkpoint(folder / "rgbd.pt")
    sidecar = constant_map(checkpoint, 0.5).save(folder / "rgbd.confidence.json")
    with WallWalk.rig(folder, "calibrated", views=3, diagnostics=True, checkpoint=checkpoint,
                      diagnostics_period_s=0.2) as g:
        g.sidecar = sidecar
        yield g


def test_the_map_beside_the_checkpoint_is_applied_and_unknown_pixels_keep_zero(rig):
    g = rig
    query = WallWalk.pose(2)
    query[0, 3] -= 0.5
    response = g.call("/calibrated/viewseg/render_view", render_request(query, width=W, height=H))
    assert response.success, response.message
    confidence = image_to_numpy(response.confidence)
    labels = image_to_numpy(response.semantic)
    assert set(np.unique(confidence).tolist()) <= {0.0, 0.5} and (confidence == 0.5).mean() > 0.5
    np.testing.assert_array_equal(confidence == 0.0, labels == 255)   # unknown pixels keep confidence 0
    values = diagnostics_values(g, checkpoint=str(g.checkpoint))
    assert values["confidence"].startswith(f"probability of a right label, calibrated by {g.sidecar}")


def test_a_map_for_another_checkpoint_is_refused_when_named_and_skipped_when_beside(rig, tmp_path):
    from viewseg_ros.node import ViewSegNode

    other = tiny_checkpoint(tmp_path / "other.pt")   # an RGB model: another file than the rig's
    stale = constant_map(rig.checkpoint, 0.5)   # fitted for the rig's checkpoint, not this one
    named = stale.save(tmp_path / "named.json")

    def start(checkpoint, **overrides):
        return ViewSegNode(context=rig.context, namespace="calibration_checks", parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "warmup": False, **overrides}))

    with pytest.raises(ValueError, match="query.confidence_calibration: confidence calibration fitted for "
                                         "checkpoint 'rgbd.pt'"):
        start(other, **{"query.confidence_calibration": str(named)})
    with pytest.raises(ValueError, match="no such confidence calibration file"):
        start(other, **{"query.confidence_calibration": str(tmp_path / "missing.json")})
    shutil.copy(named, tmp_path / "other.confidence.json")   # a stale map beside the checkpoint
    node = start(other)
    try:
        assert node.calibration is None and "other.confidence.json not used" in node.confidence_meaning
    finally:
        node.destroy_node()
    node = start(rig.checkpoint, **{"query.confidence_calibration": "none"})
    try:
        assert node.calibration is None and node.confidence_meaning.startswith("raw score")
    finally:
        node.destroy_node()
