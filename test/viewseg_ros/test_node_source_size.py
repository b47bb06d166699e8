"""Keyframes at the model's trained source size (ModelConfig.source_size) in the viewseg node.

keyframes.width/height = 0 and a checkpoint with a non-zero source_size: every keyframe is
resized to source_size (K rescaled with it); explicit keyframes.width/height win; a
checkpoint without source_size ((0, 0)) keeps the camera's size. The node is driven through
its callbacks in one process (no spinning): a CameraInfo, a TF edge and an rgb8 Image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

from rclpy.parameter import Parameter  # noqa: E402  (a missing rclpy must fail, not skip)

from viewseg_core.cameras import K_from_hfov, resize_intrinsics  # noqa: E402
from viewseg_ros.conversions import make_camera_info, numpy_to_image  # noqa: E402

CAMERA_W, CAMERA_H = 64, 48
STAMP_NS = 5_000_000_000


def tiny_checkpoint(path: Path, source_size: tuple[int, int]) -> Path:
    import torch

    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    from viewseg_core.model.weights import save_model

    torch.manual_seed(0)
    config = ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=8, hidden_dim=16, n_blocks=1,
                         n_head_blocks=1, n_harmonic_xyz=2, n_harmonic_dir=1, num_coarse=4, num_fine=0,
                         source_size=source_size)
    return save_model(ViewSeg(config), path)


def first_keyframe(context, checkpoint: Path, **overrides):
    """Build a node, feed it one posed 64x48 image, return (node, its keyframe)."""
    from viewseg_ros.node import ViewSegNode

    parameters = {"checkpoint": str(checkpoint), "device": "cpu", "warmup": False, **overrides}
    node = ViewSegNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
    try:
        K = K_from_hfov(70.0, CAMERA_W, CAMERA_H)
        # map -> camera_optical, static: the image's pose is this at any stamp.
        node.tf.buffer.add_transform("map", "camera_optical", 0, (1.0, 2.0, 0.5), (0.0, 0.0, 0.0, 1.0), static=True)
        camera = node.cameras[0]
        node._on_camera_info(camera, make_camera_info(K, CAMERA_W, CAMERA_H, frame_id="camera_optical",
                                                      stamp_ns=STAMP_NS))
        rgb = np.random.default_rng(0).integers(0, 256, (CAMERA_H, CAMERA_W, 3), dtype=np.uint8)
        node._on_image(camera, numpy_to_image(rgb, "rgb8", frame_id="camera_optical", stamp_ns=STAMP_NS))
        assert sum(node.drops.values()) == 0, node.last_drop
        (keyframe,) = node.keyframes.snapshot()
        return node, keyframe, K
    except BaseException:
        node.destroy_node()
        raise


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("source_size")
    return {"trained": tiny_checkpoint(root / "trained.pt", (24, 32)),
            "unknown": tiny_checkpoint(root / "unknown.pt", (0, 0))}


def test_keyframes_take_the_trained_source_size(rclpy_context, checkpoints):
    node, keyframe, K = first_keyframe(rclpy_context, checkpoints["trained"])
    try:
        assert (keyframe.view.height, keyframe.view.width) == (24, 32)
        assert keyframe.view.rgb.shape == (24, 32, 3)
        # Half the size: fx, fy, cx + 0.5, cy + 0.5 all halve (pixel-centre convention).
        np.testing.assert_allclose(keyframe.view.K, resize_intrinsics(K, (CAMERA_H, CAMERA_W), (24, 32)))
        np.testing.assert_allclose(keyframe.view.K[0, 0], K[0, 0] / 2)
        np.testing.assert_allclose(keyframe.view.K[0, 2] + 0.5, (K[0, 2] + 0.5) / 2)
        assert tuple(keyframe.features.shape) == (8, 6, 8)  # stride 4 of 24x32
        # The topic-mode / 0x0-request default size follows the keyframes.
        result = node.render_query(_pose_in_map(), None)
        assert (result.height, result.width) == (24, 32)
    finally:
        node.destroy_node()


def test_explicit_keyframe_size_wins_over_source_size(rclpy_context, checkpoints):
    node, keyframe, _ = first_keyframe(rclpy_context, checkpoints["trained"],
                                       **{"keyframes.width": 40, "keyframes.height": 20})
    try:
        assert (keyframe.view.height, keyframe.view.width) == (20, 40)
    finally:
        node.destroy_node()


def test_unknown_source_size_keeps_the_camera_size(rclpy_context, checkpoints):
    node, keyframe, K = first_keyframe(rclpy_context, checkpoints["unknown"])
    try:
        assert (keyframe.view.height, keyframe.view.width) == (CAMERA_H, CAMERA_W)
        np.testing.assert_array_equal(keyframe.view.K, K)
    finally:
        node.destroy_node()


def _pose_in_map():
    from viewseg_ros.conversions import matrix_to_pose_stamped

    c2w = np.eye(4)
    c2w[:3, 3] = (1.0, 2.0, 0.3)
    return matrix_to_pose_stamped(c2w, "map")
