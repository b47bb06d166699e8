"""Changing parameters of a running node (real rclpy nodes on loopback, through the node's own
set_parameters service, as `ros2 param set` calls it): query and keyframe-rule parameters take
effect at once, checked as at start; a bad value or a parameter read once at start is refused
with the reason and changes nothing, and a request is applied whole or not at all."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)
from rclpy.parameter import Parameter  # noqa: E402

from ros_graph import Graph, WallWalk, render_request  # noqa: E402

W, H = WallWalk.W, WallWalk.H
SERVICE = "/live/viewseg/set_parameters"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    with WallWalk.rig(tmp_path_factory.mktemp("live"), "live", views=4) as g:
        yield g


def set_parameters(g: Graph, atomically: bool = False, **values):
    """The node's set_parameters service (``atomically``: set_parameters_atomically), one
    request for all of ``values`` (dots as __); the results."""
    from rcl_interfaces.srv import SetParameters, SetParametersAtomically

    srv = SetParametersAtomically if atomically else SetParameters
    request = srv.Request(parameters=[Parameter(name.replace("__", "."), value=value).to_parameter_msg()
                                      for name, value in values.items()])
    response = g.call(SERVICE + ("_atomically" if atomically else ""), request, srv_type=srv)
    return [response.result] if atomically else response.results


def query(g: Graph):
    pose = WallWalk.pose(2)
    pose[0, 3] -= 0.5
    response = g.call("/live/viewseg/render_view", render_request(pose, width=W, height=H))
    assert response.success, response.message
    return response


def test_query_parameters_take_effect_at_once(rig):
    from viewseg_core.model.fast import PRESETS

    g = rig
    assert len(query(g).keyframe_ids) == 4
    (result,) = set_parameters(g, query__num_sources=2)
    assert result.successful, result.reason
    assert len(query(g).keyframe_ids) == 2 and g.node.get_parameter("query.num_sources").value == 2
    (result,) = set_parameters(g, query__preset="rgbd_full")
    assert result.successful and g.node.preset == PRESETS["rgbd_full"]
    assert query(g).success
    (result,) = set_parameters(g, query__unseen_pixels="extrapolated")
    assert result.successful and g.node.params["query.unseen_pixels"] == "extrapolated"


def test_refused_changes_say_why_and_change_nothing(rig):
    g = rig
    preset, sources = g.node.preset, g.node.selection.num_sources
    cases = [({"query__preset": "fastest"}, "query.preset must be one of"),
             ({"fixed_frame": "odom"}, "fixed_frame is read once at start: restart the node"),
             ({"query__num_sources": "many"}, "query.num_sources: expected a int"),
             ({"query__confidence_calibration": "/no/such.json"}, "no such confidence calibration file")]
    for values, reason in cases:
        results = set_parameters(g, **values)
        assert not any(r.successful for r in results), values
        assert reason in results[0].reason, (values, results[0].reason)
    (result,) = set_parameters(g, query__width=64)   # query.height is 0: the pair changes together
    assert not result.successful and "set both in one set_parameters_atomically request" in result.reason
    (result,) = set_parameters(g, atomically=True, query__width=64, query__height=48)
    assert result.successful and (g.node.params["query.width"], g.node.params["query.height"]) == (64, 48)
    # One request with a good and a bad value, atomically: nothing applied, not even the good one.
    (result,) = set_parameters(g, atomically=True, query__num_sources=3, query__timeout_s=-1.0)
    assert not result.successful and "query.timeout_s must be positive" in result.reason
    assert g.node.preset is preset and g.node.selection.num_sources == sources
    assert g.node.get_parameter("fixed_frame").value == "map" and g.node.get_parameter("query.num_sources").value == sources


def test_tighter_keyframe_bounds_evict_at_once(rig):
    g = rig
    assert len(g.node.keyframes) == 4
    (result,) = set_parameters(g, atomically=True, keyframes__max_keyframes=2, keyframes__keep_recent=0)
    assert result.successful, result.reason
    assert len(g.node.keyframes) == 2 and g.node.keyframes.config.max_keyframes == 2
    # Views 1 m apart are equally redundant, and ties go to the older ones: the newest two stay.
    np.testing.assert_allclose([k.c2w[0, 3] for k in g.node.keyframes], [3.0, 4.0])


def test_points_min_confidence_keeps_only_confident_pixels_in_the_cloud(rig):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from ros_graph import wait_for
    from viewseg_ros.conversions import image_to_numpy, point_cloud_to_numpy

    g = rig
    clouds = []
    g.client.create_subscription(PointCloud2, "/live/viewseg/points", clouds.append,
                                 QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
    threshold = 0.0
    for _ in range(2):   # every pixel with a depth first; then the rendered pixels' median confidence
        results = set_parameters(g, atomically=True, points__on_service=True, points__min_confidence=threshold)
        assert results[0].successful, results[0].reason
        before = len(clouds)
        response = query(g)
        wait_for(lambda: len(clouds) > before, 10.0, "~/points of the query")
        cloud = point_cloud_to_numpy(clouds[-1])
        depth, confidence = image_to_numpy(response.depth), image_to_numpy(response.confidence)
        kept = np.isfinite(depth) & (confidence >= threshold)
        assert len(cloud) == int(kept.sum()) > 0 and (cloud["confidence"] >= threshold).all()
        threshold = float(np.median(confidence[np.isfinite(depth)]))
    assert int(kept.sum()) < int(np.isfinite(depth).sum())   # the median left some rendered pixels out
    (result,) = set_parameters(g, points__min_confidence=1.5)
    assert not result.successful and "points.min_confidence must be in [0, 1]" in result.reason
