"""SLAM loop closures (real rclpy nodes on loopback): with ``pose_graph.topic`` the node keeps
each keyframe's pose in ``odom``, and an optimised trajectory (nav_msgs/Path) re-poses the
keyframes. Checked end to end: the keyframes land where the graph says, a render from the
corrected poses equals the render before the correction moved by the same transform (the
cached source views are not reused stale), a graph that agrees with TF moves nothing, and a
graph in the wrong frame is refused, counted and changes nothing."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_ros.conversions import image_to_numpy, matrix_to_transform_stamped  # noqa: E402
from ros_graph import Graph, WallWalk, diagnostics_values, lifecycle_transition, params, render_request, resend, \
    wait_for  # noqa: E402

W, H = WallWalk.W, WallWalk.H
FRAME = "slam_optical"
S = 1_000_000_000
# The loop closure: SLAM finds the map 0.4 m further along the walk, 0.1 m to the side and
# turned 3 degrees about the vertical.
YAW = np.radians(3.0)
CLOSURE = np.array([[np.cos(YAW), -np.sin(YAW), 0, 0.4], [np.sin(YAW), np.cos(YAW), 0, -0.1], [0, 0, 1, 0],
                    [0, 0, 0, 1]])


def stamp_of(index: int, attempt: int = 0) -> int:
    # Views 0.5 s apart: the graph's nodes must be inside the node's 10 s of TF history.
    return 100 * S + index * S // 2 + attempt * S // 10


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from nav_msgs.msg import Path
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    with WallWalk.rig(tmp_path_factory.mktemp("slam"), "slam", diagnostics=True, diagnostics_period_s=0.2,
                      **{"pose_graph.topic": "pose_graph", "pose_graph.body_frame": FRAME,
                         "pose_graph.odom_frame": "odom"}) as g:
        g.graph = g.client.create_publisher(Path, "/slam/pose_graph",
                                            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: g.graph.get_subscription_count(), 10.0, "the node to subscribe to the pose graph")
        yield g


def feed(g: Graph, index: int, map_from_odom: np.ndarray) -> None:
    """View ``index`` of the wall walk, posed by odometry (odom -> camera) under SLAM's current
    map -> odom, until the node keeps it."""
    from tf2_msgs.msg import TFMessage

    def send(attempt: int) -> None:
        stamp = stamp_of(index, attempt)
        g.camera.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(map_from_odom, "map", "odom", stamp)]))
        g.camera.publish(WallWalk.pose(index), stamp, depth=WallWalk.depth(index), parent="odom")

    assert resend(send, lambda: g.node.keyframes.admitted >= index, f"view {index} to become a keyframe",
                  timeout=3.0), f"view {index} never became a keyframe"


def publish_graph(g: Graph, map_from_odom, frame: str = "map", only_newest: bool = False) -> None:
    """The optimised trajectory: the camera's pose at every keyframe's stamp (``only_newest``:
    the newest keyframe's) under ``map_from_odom`` (a [4, 4], or a function of the view index)."""
    from nav_msgs.msg import Path

    from viewseg_ros.conversions import matrix_to_pose_stamped

    path = Path()
    path.header.frame_id = frame
    for keyframe in g.node.keyframes.snapshot()[-1:] if only_newest else g.node.keyframes:
        index = index_of(keyframe.stamp_ns)
        correction = map_from_odom(index) if callable(map_from_odom) else map_from_odom
        path.poses.append(matrix_to_pose_stamped(correction @ WallWalk.pose(index), frame, keyframe.stamp_ns))
    before = g.node.pose_graph_updates + g.node.drops["pose_graph"]
    g.graph.publish(path)
    wait_for(lambda: g.node.pose_graph_updates + g.node.drops["pose_graph"] > before, 10.0, "the graph to be read")


def index_of(stamp_ns: int) -> int:
    return next(i for i in range(1, 10) for attempt in range(3) if stamp_of(i, attempt) == stamp_ns)


def images(g: Graph, c2w: np.ndarray) -> dict[str, np.ndarray]:
    response = g.call("/slam/viewseg/render_view", render_request(c2w, width=W, height=H))
    assert response.success, response.message
    return {name: image_to_numpy(getattr(response, name)) for name in ("semantic", "depth", "confidence")}


def test_a_loop_closure_moves_the_keyframes_and_the_renders_with_them(rig):
    g = rig
    for index in range(1, 5):
        feed(g, index, np.eye(4))
    kept = g.node.keyframes.snapshot()
    assert len(kept) == 4 and all(k.odom_c2w is not None for k in kept)
    query = WallWalk.pose(2)
    query[0, 3] -= 0.5
    before = images(g, query)

    publish_graph(g, CLOSURE)
    for keyframe in g.node.keyframes:
        np.testing.assert_allclose(keyframe.c2w, CLOSURE @ WallWalk.pose(index_of(keyframe.stamp_ns)), atol=1e-9)
    assert g.node.last_pose_graph.startswith("4 of 4 keyframes the graph covers re-posed (up to 0.4")
    # Every keyframe moved rigidly: the same query moved with them sees what it saw before.
    moved = images(g, CLOSURE @ query)
    assert (moved["semantic"] == before["semantic"]).mean() >= 0.99
    np.testing.assert_allclose(moved["depth"], before["depth"], atol=1e-3)
    # ... and the old query pose now sees the wall where the corrected keyframes put it: 0.4 m further.
    stayed = images(g, query)
    finite = np.isfinite(stayed["depth"]) & np.isfinite(before["depth"])
    assert finite.mean() > 0.5 and 0.3 < np.median((stayed["depth"] - before["depth"])[finite]) < 0.5

    values = diagnostics_values(g, until=lambda d: d.get("pose_graph", "").startswith("1 graphs"))
    assert values["keyframes_without_odometry"] == "0" and values["dropped_pose_graph"] == "0"
    # ~/keyframe_poses (latched) shows the re-posed keyframes: a late subscriber gets them.
    from geometry_msgs.msg import PoseArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    shown = []
    g.client.create_subscription(PoseArray, "/slam/viewseg/keyframe_poses", shown.append, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    expected = np.array([(CLOSURE @ WallWalk.pose(index_of(k.stamp_ns)))[:3, 3] for k in g.node.keyframes])
    wait_for(lambda: shown and np.allclose([[p.position.x, p.position.y, p.position.z] for p in shown[-1].poses],
                                           expected, atol=1e-9), 5.0, "the re-posed keyframes on ~/keyframe_poses")
    assert shown[-1].header.frame_id == "map"


def test_a_graph_that_agrees_with_tf_moves_nothing_and_a_bad_one_changes_nothing(rig):
    g = rig
    if g.node.pose_graph_updates == 0:
        pytest.skip("needs the loop closure of the test above")   # pytest runs a module's tests in order
    # SLAM now publishes the corrected map -> odom: a new keyframe is posed right by TF.
    feed(g, 5, CLOSURE)
    newest = g.node.keyframes.snapshot()[-1]
    np.testing.assert_allclose(newest.c2w, CLOSURE @ WallWalk.pose(5), atol=1e-9)
    poses = {k.id: k.c2w.copy() for k in g.node.keyframes}
    publish_graph(g, CLOSURE)
    assert g.node.last_pose_graph.startswith("0 of 5 keyframes the graph covers re-posed")
    dropped = g.node.drops["pose_graph"]
    publish_graph(g, np.eye(4), frame="odom")
    assert g.node.drops["pose_graph"] == dropped + 1
    for keyframe in g.node.keyframes:
        np.testing.assert_array_equal(keyframe.c2w, poses[keyframe.id])
    values = diagnostics_values(g, until=lambda d: d.get("dropped_pose_graph") == str(dropped + 1))
    assert values["pose_graph"].startswith("2 graphs")


def test_a_graph_whose_nodes_tf_has_forgotten_is_read_from_the_odometry_trail(rig):
    """A SLAM system that publishes its graph only now and then: the nodes are older than TF's
    10 s of history when it comes, and the node's own odometry trail poses them."""
    from tf2_msgs.msg import TFMessage

    g = rig
    if g.node.pose_graph_updates < 2:
        pytest.skip("needs the keyframes of the tests above")
    # The graph forgets every node but the newest (so that the next one asks for them again) ...
    publish_graph(g, CLOSURE, only_newest=True)
    # ... and TF moves 30 s on: the keyframes' stamps leave its history.
    later = stamp_of(5) + 30 * S
    odom_pose = WallWalk.pose(5)
    odom_pose[0, 3] += 3.0
    g.camera.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(CLOSURE, "map", "odom", later),
                                              matrix_to_transform_stamped(odom_pose, "odom", FRAME, later)]))
    wait_for(lambda: g.node.odometry_trail.first_ns is not None and g.node.odometry_trail.at(later) is not None,
             5.0, "the trail to sample the new TF")
    assert not g.node.tf.buffer.can_transform("odom", FRAME, stamp_of(1))   # TF has forgotten the walk
    # A second loop closure that moves each view by its own amount (5 cm more each): every
    # keyframe follows its own node, which only the trail can pose (with the newest node alone,
    # all of them would get its correction).
    def correction(index: int) -> np.ndarray:
        shift = np.eye(4)
        shift[1, 3] = 0.05 * index
        return shift @ CLOSURE

    publish_graph(g, correction)
    assert g.node.last_pose_graph.startswith("5 of 5 keyframes the graph covers re-posed"), g.node.last_pose_graph
    assert g.node.last_pose_graph.endswith("from 5 of 5 graph nodes")
    for keyframe in g.node.keyframes:
        index = index_of(keyframe.stamp_ns)
        np.testing.assert_allclose(keyframe.c2w, correction(index) @ WallWalk.pose(index), atol=1e-6)


def test_keyframes_loaded_after_a_restart_follow_the_pose_graph(rig, tmp_path):
    """A restart of the node (here a lifecycle cleanup and configure: the keyframes, the odometry
    trail, TF and the graph are all gone) while SLAM runs on: the keyframes loaded from the saved
    folder follow the next loop closure, from the odometry the folder kept. TF cannot give
    it (the stamps are older than this run), and neither can the node's new trail."""
    from viewseg_interfaces.srv import LoadKeyframes, SaveKeyframes

    g = rig
    if g.node.pose_graph_updates < 3:
        pytest.skip("needs the keyframes of the tests above")
    folder = tmp_path / "keyframes"
    saved = g.call("/slam/viewseg/save_keyframes", SaveKeyframes.Request(path=str(folder)), srv_type=SaveKeyframes)
    assert saved.success and "5 with their odometry pose" in saved.message, saved.message
    for label in ("deactivate", "cleanup", "configure", "activate"):
        assert lifecycle_transition(g, label, "/slam/viewseg"), label
    assert len(g.node.keyframes) == 0 and len(g.node.odometry_trail) == 0
    wait_for(lambda: g.graph.get_subscription_count(), 10.0, "the node to subscribe to the pose graph again")
    loaded = g.call("/slam/viewseg/load_keyframes", LoadKeyframes.Request(path=str(folder), replace=True),
                    srv_type=LoadKeyframes)
    assert loaded.success and "5 follow the pose graph" in loaded.message, loaded.message
    assert all(k.restored and k.odom_c2w is not None for k in g.node.keyframes)

    def closure(index: int) -> np.ndarray:   # a third loop closure: 8 cm less along the walk per view
        shift = np.eye(4)
        shift[0, 3] = -0.08 * index
        return shift @ CLOSURE

    publish_graph(g, closure)
    assert g.node.last_pose_graph.startswith("5 of 5 keyframes the graph covers re-posed"), g.node.last_pose_graph
    for keyframe in g.node.keyframes:
        index = index_of(keyframe.stamp_ns)
        np.testing.assert_allclose(keyframe.c2w, closure(index) @ WallWalk.pose(index), atol=1e-6)


def test_keyframes_from_a_folder_without_odometry_keep_their_poses(rig, tmp_path):
    """The same folder with its odometry removed (a node without a pose graph saved it): loaded,
    its keyframes stay where they are under a loop closure, and the load says why."""
    import json
    import shutil

    from viewseg_interfaces.srv import LoadKeyframes, SaveKeyframes

    from viewseg_ros.keyframe_store import ODOMETRY_FILE

    g = rig
    if not all(k.restored for k in g.node.keyframes) or not len(g.node.keyframes):
        pytest.skip("needs the restored keyframes of the test above")
    folder = tmp_path / "keyframes"
    assert g.call("/slam/viewseg/save_keyframes", SaveKeyframes.Request(path=str(folder)),
                  srv_type=SaveKeyframes).success
    cameras = json.loads((folder / "cameras.json").read_text())
    del cameras["meta"]["odometry"]
    (folder / "cameras.json").write_text(json.dumps(cameras))
    (folder / ODOMETRY_FILE).unlink()
    loaded = g.call("/slam/viewseg/load_keyframes", LoadKeyframes.Request(path=str(folder), replace=True),
                    srv_type=LoadKeyframes)
    assert loaded.success and "keep their poses under the pose graph: the folder kept no odometry" in loaded.message
    poses = {k.id: k.c2w.copy() for k in g.node.keyframes}
    publish_graph(g, np.eye(4))
    assert g.node.last_pose_graph.startswith("0 of 0 keyframes"), g.node.last_pose_graph
    for keyframe in g.node.keyframes:
        np.testing.assert_array_equal(keyframe.c2w, poses[keyframe.id])
    shutil.rmtree(folder)


def test_pose_graph_parameters_are_checked_at_start(rig):
    from viewseg_ros.node import ViewSegNode

    for overrides, match in [({"pose_graph.odom_frame": "map"}, "odom_frame is fixed_frame"),
                             ({"pose_graph.body_frame": ""}, "body_frame must not be empty"),
                             ({"pose_graph.max_gap_s": 0.0}, "max_gap_s must be positive")]:
        with pytest.raises(ValueError, match=match):
            ViewSegNode(context=rig.context, namespace="slam_bad", parameter_overrides=params({
                "device": "cpu", "warmup": False, "pose_graph.topic": "pose_graph", **overrides}))


def test_the_sim_cameras_slam_puts_drifted_keyframes_back_on_the_true_poses(tmp_path):
    """End to end with the simulated robot: odometry that drifts 5 cm and 2 degrees per metre,
    SLAM correcting every second and publishing its trajectory. Keyframes admitted under a
    stale correction are off by the drift since; once a graph covers them they are on the
    sim's true camera poses."""
    from viewseg_ros.keyframes import pose_difference
    from viewseg_ros.node import ViewSegNode
    from viewseg_ros.sim_camera import SimCameraNode
    from ros_graph import tiny_checkpoint

    g = Graph()
    try:
        # The node first: it hears the sim's TF from the first frame, so every graph node is usable.
        node = g.add(ViewSegNode(context=g.context, namespace="drifting", parameter_overrides=params({
            "checkpoint": str(tiny_checkpoint(tmp_path / "rgb.pt")), "device": "cpu", "keyframes.width": 32,
            "keyframes.height": 24, "keyframes.min_translation": 0.1, "keyframes.min_rotation_deg": 5.0,
            "pose_graph.topic": "pose_graph"})))
        sim = g.add(SimCameraNode(context=g.context, namespace="drifting", parameter_overrides=params({
            "seed": 3, "rate": 5.0, "width": 32, "height": 24, "period_s": 12.0, "depth_sensor": False,
            "odometry_drift": "0.05,2.0", "pose_graph_period_s": 1.0})))
        wait_for(lambda: node.pose_graph_updates >= 3 and len(node.keyframes) >= 4, 30.0,
                 "keyframes and three pose graphs")
        sim.timer.cancel()
        with node._pose_graph_lock:
            nodes = node.pose_graph.usable_stamps
            kept = node.keyframes.snapshot()
    finally:
        g.close()
    # Between the graph's first and last usable nodes, and admitted well before the last graph came.
    covered = [k for k in kept if nodes[0] <= k.stamp_ns < nodes[-1] - S // 2]
    assert len(nodes) >= 3 and len(covered) >= 3, ([k.stamp_ns for k in kept], nodes)
    drifted = 0.0
    for keyframe in covered:
        true_pose = sim.pose_at(keyframe.stamp_ns)
        shift, turn = pose_difference(keyframe.c2w, true_pose)
        assert shift < 0.01 and turn < 0.1, (shift, turn)
        # Odometry alone has it off by the whole drift walked by then.
        drifted = max(drifted, pose_difference(keyframe.odom_c2w, true_pose)[0])
        np.testing.assert_allclose(sim.drift_at(keyframe.stamp_ns) @ keyframe.odom_c2w, true_pose, atol=1e-6)
    assert drifted > 0.1
    assert "re-posed" in node.last_pose_graph and node.drops["pose_graph"] == 0
