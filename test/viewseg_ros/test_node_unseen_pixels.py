"""query.unseen_pixels (issue 15): a real node with a checkpoint that extrapolates past the
keyframes' images (model.unseen_points: extrapolate), called through the real service.

A module of its own: the reliability rig's node would otherwise share its camera topics.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from ros_graph import Graph, PosedCamera, params, render_request, tiny_checkpoint, wait_for  # noqa: E402
from .test_node_reliability import FRAME, H, K, W, line_pose, publish_next  # noqa: E402
from viewseg_ros.conversions import image_to_numpy  # noqa: E402


def test_extrapolated_pixels_keep_label_and_depth_with_zero_confidence(tmp_path):
    """query.unseen_pixels extrapolated, with a checkpoint that extrapolates (model.unseen_points):
    the half of the view no keyframe sees gets the model's labels and depth, and confidence 0;
    the covered half is what the default answers. A bad value is refused at start."""
    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_checkpoint(tmp_path / "extrapolating.pt", unseen_points="extrapolate")
    base = {"checkpoint": str(checkpoint), "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "query.num_sources": 2, "keyframes.min_translation": 0.1, "keyframes.min_interval_s": 0.0,
            "keyframes.width": W, "keyframes.height": H,
            # float32: this random tiny model's opacity sits near the 0.5 background threshold,
            # where bf16 rounding (query.amp auto on CPUs with native bf16) moves the shares below.
            "query.amp": "off"}
    g = Graph()
    try:
        with pytest.raises(ValueError, match="query.unseen_pixels must be one of"):
            ViewSegNode(context=g.context, namespace="refused",
                        parameter_overrides=params({**base, "query.unseen_pixels": "guess"}))
        g.node = g.add(ViewSegNode(context=g.context, parameter_overrides=params(
            {**base, "query.unseen_pixels": "extrapolated"})))
        g.camera = PosedCamera(g, K, FRAME)
        g.stamp_ns = 1_000 * 10**9
        for x in (0.0, 0.3, 0.6):
            publish_next(g, line_pose(x))
        wait_for(lambda: len(g.node.keyframes) >= 3, 20.0, "3 keyframes from the test camera")
        response = g.call("/viewseg/render_view", render_request(line_pose(0.0, 35.0), width=W, height=H))
        assert response.success, response.message
        share = g.node.last_unseen_share
    finally:
        g.close()
    confidence = image_to_numpy(response.confidence)
    labels = image_to_numpy(response.semantic)
    depth = image_to_numpy(response.depth)
    left, right = slice(0, int(0.4 * W)), slice(int(0.6 * W), W)
    assert (confidence[:, left] == 0).all()
    assert (labels[:, left] != 255).mean() > 0.8 and np.isfinite(depth[:, left]).mean() > 0.8
    assert (labels[:, right] != 255).mean() > 0.8 and confidence[:, right].max() > 0
    # The answer says how much of it is a guess: the pixels with confidence forced to 0 by the
    # coverage test, of those with a depth.
    assert 0.3 < share < 0.8
    assert response.message == f"{100 * share:.1f}% of the rendered pixels extrapolate past every keyframe's " \
                               f"view (confidence 0)"
