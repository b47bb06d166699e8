"""The viewseg node with an RGB-D checkpoint (issue 15, item 5), real rclpy nodes on loopback:
the keyframes' depth reaches the model (the service's images are the library's render of those
keyframes with their depth, and other depth gives other images), ``query.preset: auto`` samples
around it (``rgbd``), and a node without a depth topic renders on the no-depth behaviour and
says so in the response.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_ros.conversions import image_to_numpy  # noqa: E402
from ros_graph import Graph, PosedCamera, WallWalk, diagnostics_values, params, render_request, \
    tiny_rgbd_checkpoint  # noqa: E402

W, H, WALL_X = WallWalk.W, WallWalk.H, WallWalk.WALL_X
K = WallWalk.K()
FRAME = "rgbd_test_optical"
VIEWS = 4
pose = WallWalk.pose


def start(g: Graph, checkpoint, namespace: str, depth_topic: str) -> None:
    from diagnostic_msgs.msg import DiagnosticArray

    from viewseg_ros.node import ViewSegNode

    g.node = g.add(ViewSegNode(context=g.context, namespace=namespace, parameter_overrides=params({
        "checkpoint": str(checkpoint), "device": "cpu", "depth_topic": depth_topic, "image_topic": "image",
        "camera_info_topic": "camera_info", "keyframes.width": W, "keyframes.height": H, "tf_wait_s": 1.0,
        "diagnostics_period_s": 0.2})))
    g.diagnostics = []  # never destroyed while spinning (see Graph)
    g.client.create_subscription(DiagnosticArray, "/diagnostics", g.diagnostics.append, 10)
    g.camera = PosedCamera(g, K, FRAME, depth_topic=depth_topic, namespace=namespace)
    WallWalk.feed(g, VIEWS, depth=bool(depth_topic))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_rgbd_checkpoint(tmp_path_factory.mktemp("rgbd") / "rgbd.pt")


@pytest.fixture(scope="module")
def rig(checkpoint):
    g = Graph()
    try:
        start(g, checkpoint, "rgbd_model", depth_topic="depth")
        yield g
    finally:
        g.close()


def test_keyframe_depth_reaches_the_model_through_the_rgbd_preset(rig):
    import torch

    from viewseg_core.model.fast import PRESETS, render_query
    from viewseg_core.source_selection import pixel_coverage

    node = rig.node
    assert node.uses_depth and node.preset == PRESETS["rgbd"]  # query.preset auto
    assert node.depth_completion == "none"   # auto: a depth camera's depth goes to the model as measured
    c2w = pose(2)
    response = rig.call("/rgbd_model/viewseg/render_view", render_request(c2w, width=W, height=H))
    assert response.success, response.message
    assert response.message == ""  # every keyframe has its depth: nothing to say
    chosen = [node.keyframes.get(i) for i in response.keyframe_ids]
    assert len(chosen) == VIEWS and all(k.view.depth is not None for k in chosen)
    rgb = torch.as_tensor(np.stack([k.view.rgb for k in chosen])).permute(0, 3, 1, 2)[None].float() / 255
    depth = torch.as_tensor(np.stack([k.view.depth for k in chosen]))[None]
    sources = node.model.make_sources(torch.stack([k.features for k in chosen])[None],
                                      torch.as_tensor(np.stack([k.view.K for k in chosen]))[None],
                                      torch.as_tensor(np.stack([k.c2w for k in chosen]))[None], H, W,
                                      rgb=rgb, depth=depth)
    Kq = torch.as_tensor(np.reshape(response.camera_info.k, (3, 3)))
    out = render_query(node.model, Kq, torch.as_tensor(c2w), H, W, sources, node.preset)
    labels, rendered = out.labels.numpy().copy(), out.depth.numpy().copy()
    seen = pixel_coverage(Kq.numpy(), c2w, rendered, np.stack([k.view.K for k in chosen]),
                          np.stack([k.c2w for k in chosen]), [(H, W)] * len(chosen), node.max_source_depth)
    labels[~seen], rendered[~seen] = 255, np.nan
    assert seen.mean() > 0.5
    np.testing.assert_array_equal(image_to_numpy(response.semantic), labels)
    np.testing.assert_allclose(image_to_numpy(response.depth), rendered, rtol=1e-6, equal_nan=True)
    # The depth evidence puts the surface where the keyframes measured it (the wall, 4 m ahead of
    # view 2), not where the random field's fog would.
    answered = image_to_numpy(response.depth)
    assert np.median(np.abs(answered[np.isfinite(answered)] - (WALL_X - c2w[0, 3]))) < 0.25
    values = diagnostics_values(rig, checkpoint=str(rig.node.checkpoint))
    assert values["sampling"] == "rgbd (8s+4b+0 free-skip)" and values["model_reads_depth"] == "True"
    assert values["keyframes_with_depth"] == str(VIEWS) and values["keyframes_without_depth"] == "0"
    assert "depth" not in values["message"]
    # Other measured depth gives another render: the node's answer depends on it.
    moved = render_query(node.model, Kq, torch.as_tensor(c2w), H, W, replace(sources, depth=depth + 1.0),
                         node.preset)
    assert not torch.allclose(moved.depth.nan_to_num(0.0), out.depth.nan_to_num(0.0), atol=0.1)


def test_without_a_depth_topic_the_response_says_the_model_runs_without_depth(checkpoint, tmp_path):
    import shutil

    from viewseg_core.model.fast import PRESETS

    checkpoint = shutil.copy(checkpoint, tmp_path / "rgbd_no_depth.pt")  # tells its /diagnostics apart
    g = Graph()
    try:
        start(g, checkpoint, "rgbd_no_depth", depth_topic="")
        assert g.node.preset == PRESETS["fast"]  # auto: nothing to guide the samples
        response = g.call("/rgbd_no_depth/viewseg/render_view",
                          render_request(pose(2), width=W, height=H))
        assert response.success, response.message
        assert f"{VIEWS} of {VIEWS} source keyframes have no depth (parameters depth_topic and pointcloud_topic are empty)" \
            in response.message
        assert all(k.view.depth is None for k in g.node.keyframes.snapshot())
        values = diagnostics_values(g, checkpoint=str(checkpoint))
        assert values["level"] == 1 and values["sampling"] == "fast (8+8 skip<0.001)"  # WARN
        assert "RGB-D checkpoint without depth_topic or pointcloud_topic: every render runs on its no-depth behaviour" \
            in values["message"]
    finally:
        g.close()


def test_min_free_path_withholds_depth_whose_path_no_keyframe_saw(rig):
    """query.min_free_path (live): from view 2 the keyframes' depth saw its whole path to the
    wall free; from 2 m behind the origin, the first 3 m of every path lie behind every keyframe
    camera. The withheld pixels are exactly those whose share of the path seen free (the
    library's, for the depth the node answers with the parameter off) is under the threshold, and
    the response and /diagnostics say how many."""
    import torch
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from viewseg_core.model.depth_guide import observed_free_share
    from viewseg_core.rays import grid_rays

    node, service = rig.node, "/rgbd_model/viewseg/render_view"

    def set_min_free_path(value: float):
        request = SetParameters.Request(parameters=[Parameter("query.min_free_path", value=value).to_parameter_msg()])
        (result,) = rig.call("/rgbd_model/viewseg/set_parameters", request, srv_type=SetParameters).results
        return result

    withheld = {}
    try:
        for name, c2w in (("inside", pose(2)), ("behind", pose(-2))):
            off = rig.call(service, render_request(c2w, width=W, height=H))
            assert off.success and off.message == "", off.message
            assert "free_path" not in node.last_timings    # off: the check does not run
            assert set_min_free_path(0.8).successful
            on = rig.call(service, render_request(c2w, width=W, height=H))
            # It runs after the render lock is released, timed on its own.
            assert 0 < node.last_timings["free_path"] < node.last_timings["total"]
            assert set_min_free_path(0.0).successful
            assert on.success and list(on.keyframe_ids) == list(off.keyframe_ids)
            depth = image_to_numpy(off.depth)
            sources = node.keyframe_sources([node.keyframes.get(i) for i in off.keyframe_ids])
            rays = grid_rays(torch.as_tensor(K, dtype=torch.float32)[None],
                             torch.as_tensor(c2w, dtype=torch.float32)[None], H, W)
            share = observed_free_share(rays.origins, rays.directions,
                                        torch.as_tensor(depth).reshape(1, -1) / rays.z_axis, sources.depth,
                                        sources.K, sources.c2w, sources.height, sources.width).reshape(H, W).numpy()
            want = np.where(share >= 0.8, depth, np.nan)
            np.testing.assert_array_equal(image_to_numpy(on.depth), want)
            # Labels and confidence are the label's business: unchanged.
            np.testing.assert_array_equal(image_to_numpy(on.semantic), image_to_numpy(off.semantic))
            rendered = np.isfinite(depth)
            withheld[name] = float((rendered & ~(share >= 0.8)).sum() / rendered.sum())
            if withheld[name] > 0:
                assert on.message == f"{100 * withheld[name]:.1f}% of the rendered pixels have no depth: keyframe " \
                                     f"depth saw less than 0.8 of their path to the surface free (query.min_free_path)"
            assert node.last_unverified_share == pytest.approx(withheld[name])
        assert withheld["inside"] < 0.2 and withheld["behind"] > 0.8, withheld
        values = diagnostics_values(rig, checkpoint=str(node.checkpoint))
        assert float(values["last_unverified_share"]) == pytest.approx(withheld["behind"], abs=1e-4)
        refused = set_min_free_path(1.5)
        assert not refused.successful and "query.min_free_path must be in [0, 1]" in refused.reason
    finally:
        set_min_free_path(0.0)
