"""The viewseg node with a depth camera (issue 15, item 5), real rclpy nodes on loopback: depth
registered to the colour camera is paired by stamp (32FC1 metres and 16UC1 millimetres, 0/NaN
unknown), kept with the keyframe (and counted in its bytes), resized with the keyframe; bad
depth (encoding, size, frame, all unknown) is dropped and counted and the node keeps serving.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_core.cameras import K_from_hfov  # noqa: E402
from viewseg_ros.camera_stream import view_pose  # noqa: E402
from ros_graph import Graph, PosedCamera, params, render_request, resend, tiny_checkpoint  # noqa: E402

W, H = 64, 48
K = K_from_hfov(70.0, W, H)
FRAME = "depth_test_optical"
WORK_W, WORK_H = 32, 24  # the node's working size: depth is resized with the image


def pose(index: int) -> np.ndarray:
    """Views 1 m apart: each one novel."""
    return view_pose(index, 1.0, 0.0)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("depth") / "tiny.pt")
    g = Graph()
    try:
        g.node = g.add(ViewSegNode(context=g.context, namespace="rgbd", parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "depth_topic": "depth", "image_topic": "image", "camera_info_topic": "camera_info",
            "keyframes.width": WORK_W, "keyframes.height": WORK_H, "tf_wait_s": 1.0})))
        g.camera = PosedCamera(g, K, FRAME, depth_topic="depth", namespace="rgbd")
        g.index, g.stamp_ns = 0, 500 * 10**9
        yield g
    finally:
        g.close()


def next_view(g: Graph, arrived=None, **depth_kwargs):
    """Publish the next novel view (with depth options); return the keyframe it became, or None.

    The camera topics are best effort: on a loaded machine a message can be lost, so a view that
    did not become a keyframe, or did but without ``arrived()`` (e.g. its depth counted) being
    true, is sent again as the next novel view, up to three times."""
    before = [0]

    def send(_attempt: int) -> None:
        g.index += 1
        g.stamp_ns += 10**9
        before[0] = g.node.keyframes.admitted
        g.camera.publish(pose(g.index), g.stamp_ns, **depth_kwargs)

    if not resend(send, lambda: g.node.keyframes.admitted > before[0] and (arrived is None or arrived()),
                  "a novel view to become a keyframe"):
        return None
    return next(k for k in g.node.keyframes.snapshot() if k.stamp_ns == g.stamp_ns)


def kept_with_depth(g: Graph):
    """``next_view``'s ``arrived``: the view just sent became a keyframe with its depth."""
    return lambda: any(k.stamp_ns == g.stamp_ns and k.view.depth is not None for k in g.node.keyframes.snapshot())


def test_32fc1_depth_is_kept_with_its_keyframe_resized_nearest(rig):
    depth = np.full((H, W), 2.5, np.float32)
    depth[:, W // 2:] = 4.0          # two walls
    depth[:4, :4] = np.nan           # unknown
    keyframe = next_view(rig, arrived=kept_with_depth(rig), depth=depth)
    assert keyframe is not None and keyframe.view.depth is not None
    kept = keyframe.view.depth
    assert kept.shape == (WORK_H, WORK_W) and kept.dtype == np.float32
    # Nearest resizing: only measured values (or NaN), never a blend of the two walls.
    assert set(np.unique(kept[np.isfinite(kept)])) == {2.5, 4.0}
    assert np.isnan(kept[0, 0])
    assert keyframe.nbytes >= kept.nbytes + keyframe.view.rgb.nbytes


def test_16uc1_millimetres_with_zeros_unknown(rig):
    depth = np.full((H, W), 1234, np.uint16)
    depth[10:20, 10:20] = 0
    keyframe = next_view(rig, arrived=kept_with_depth(rig), depth=depth, depth_encoding="16UC1")
    assert keyframe is not None and keyframe.view.depth is not None
    kept = keyframe.view.depth
    finite = kept[np.isfinite(kept)]
    np.testing.assert_allclose(finite, 1.234, rtol=1e-6)
    assert np.isnan(kept[5:10, 5:10]).all()  # the zero block at half size


def test_depth_arriving_after_its_image_is_still_paired(rig):
    keyframe = next_view(rig, arrived=kept_with_depth(rig), depth=np.full((H, W), 3.0, np.float32),
                         depth_delay_s=0.15)
    assert keyframe is not None and keyframe.view.depth is not None
    np.testing.assert_allclose(keyframe.view.depth, 3.0)


@pytest.mark.parametrize("case, kwargs, reason", [
    ("encoding", {"depth": np.zeros((H, W, 3), np.uint8), "depth_encoding": "rgb8"}, "must be 32FC1"),
    ("all unknown", {"depth": np.full((H, W), np.nan, np.float32)}, "every pixel is unknown"),
    ("size", {"depth": np.ones((H // 2, W // 2), np.float32)}, "registered to the colour camera"),
    ("frame", {"depth": np.ones((H, W), np.float32), "depth_frame": "some_other_optical"},
     "registered to the colour camera"),
])
def test_bad_depth_is_dropped_counted_and_the_node_keeps_serving(rig, case, kwargs, reason):
    node = rig.node
    drops = node.drops["depth"]
    keyframe = next_view(rig, arrived=lambda: node.drops["depth"] > drops, **kwargs)
    assert node.drops["depth"] > drops, f"no dropped depth image ({case}) in three views"
    assert reason in node.last_drop["depth"] and "\n" not in node.last_drop["depth"]
    # The colour image still becomes a keyframe, without depth.
    assert keyframe is not None and keyframe.view.depth is None
    response = rig.call("/rgbd/viewseg/render_view", render_request(pose(rig.index), width=W, height=H))
    assert response.success, response.message


def test_an_rgb_model_ignores_depth_and_says_nothing(rig):
    assert not rig.node.uses_depth
    response = rig.call("/rgbd/viewseg/render_view", render_request(pose(1), width=W, height=H))
    assert response.success and response.message == ""
    time.sleep(0.1)
