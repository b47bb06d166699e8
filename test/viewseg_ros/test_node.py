"""The viewseg node with real rclpy nodes on loopback: keyframes from the simulated camera,
the render_view contract, topic mode, bad input, the console entry and the launch file.

Most tests share one graph (sim camera + node + client, in one process, a multi-threaded
executor) and a tiny random checkpoint: they check plumbing, not accuracy. The depth
accuracy test needs the trained demo checkpoint (checkpoints/demo.pt) and fails, loudly,
until it exists.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402  (a missing rclpy must fail, not skip)
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402

from viewseg_core.cameras import resize_intrinsics  # noqa: E402
from viewseg_core.classes import IGNORE_LABEL, NUM_CLASSES, colorize  # noqa: E402
from viewseg_ros.conversions import (image_to_numpy, make_camera_info, matrix_to_pose_stamped,  # noqa: E402
                                     numpy_to_image, time_to_ns)
from ros_graph import Graph, params, render_request, tiny_checkpoint, wait_for  # noqa: E402  (test/support)

REPO = Path(__file__).resolve().parents[2]
DEMO_CHECKPOINT = REPO / "checkpoints" / "demo.pt"
SIM_W, SIM_H = 64, 48
# Small thresholds + a fast loop: a keyframe every few frames of a 10 Hz camera.
KEYFRAME_PARAMS = {"keyframes.min_translation": 0.1, "keyframes.min_rotation_deg": 10.0,
                   "keyframes.min_interval_s": 0.1}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("viewseg_node") / "tiny.pt")


@pytest.fixture(scope="module")
def graph(checkpoint):
    from viewseg_ros.node import ViewSegNode
    from viewseg_ros.sim_camera import SimCameraNode

    g = Graph()
    try:
        g.node = g.add(ViewSegNode(context=g.context, parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "diagnostics_period_s": 0.2, **KEYFRAME_PARAMS})))
        g.sim = g.add(SimCameraNode(context=g.context, parameter_overrides=params({
            "seed": 3, "rate": 10.0, "width": SIM_W, "height": SIM_H, "period_s": 8.0})))
        try:
            wait_for(lambda: len(g.node.keyframes) >= 6, 30.0, "6 keyframes from the sim camera")
        except AssertionError as error:  # seen once in CI: say where the frames stopped
            raise AssertionError(f"{error}: sim published {g.sim.frames_published} frames, the node kept "
                                 f"{len(g.node.keyframes)} keyframes, drops {g.node.drops}, "
                                 f"last drops {g.node.last_drop}") from None
        # Freeze the camera: every test below sees the same keyframes (none evicted between a
        # response and its check), and the 2-core machine stops rendering frames.
        g.sim.timer.cancel()
        time.sleep(0.3)  # the last frame in flight lands (or not) before anyone looks
        yield g
    finally:
        g.close()


def unseen_pose(g: Graph) -> np.ndarray:
    return g.sim.world.unseen_poses(3)[0]


# --------------------------------------------------------------------------- keyframes
def test_keyframes_accumulate_from_sim_camera(graph):
    from diagnostic_msgs.msg import DiagnosticArray

    node, sim = graph.node, graph.sim
    keyframes = node.keyframes.snapshot()
    assert len(keyframes) >= 6
    ids = [k.id for k in keyframes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for k in keyframes:
        # The pose at the image stamp, through /tf + /tf_static, is the simulator's pose.
        np.testing.assert_allclose(k.c2w, sim.pose_at(k.stamp_ns), atol=1e-9)
        # Encoded once at admission: stride-4 features of the 64x48 image.
        assert k.features is not None and tuple(k.features.shape) == (16, SIM_H // 4, SIM_W // 4)
        assert (k.view.height, k.view.width) == (SIM_H, SIM_W)
    stamps = [k.stamp_ns for k in keyframes]
    assert min(np.diff(stamps)) >= 0.1e9  # keyframes.min_interval_s
    assert node.drops["tf"] == 0 and node.drops["camera_info"] == 0, (node.drops, node.last_drop)

    received = []
    graph.client.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)  # lives until close
    wait_for(lambda: received, 10.0, "/diagnostics")
    (status,) = received[-1].status
    values = {kv.key: kv.value for kv in status.values}
    # The camera keeps walking while we wait for /diagnostics: the count can only have grown.
    assert len(keyframes) <= int(values["keyframes"]) <= len(node.keyframes)
    assert values["device"] == "cpu" and values["ready"] == "True"
    assert "last_latency_ms" in values and status.hardware_id == "cpu"
    assert values["field_impl"].startswith("reference")   # auto on CPU: the PyTorch field (warm-up rendered)
    from viewseg_core.model.fast import cpu_has_native_bf16
    assert values["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")  # query.amp auto on this CPU
    from viewseg_core.cpu_allocator import status
    assert values["cpu_allocator"] == status()   # this test process built the node itself, not main()


# --------------------------------------------------------------------------- render_view
def test_render_view_follows_the_contract(graph):
    node = graph.node
    stamp_ns = 1_700_000_000_123_456_789
    response = graph.call("/viewseg/render_view", render_request(unseen_pose(graph), stamp_ns=stamp_ns))
    assert response.success, response.message
    assert response.message == ""
    expected = {"semantic": ("mono8", 1), "semantic_color": ("rgb8", 3), "depth": ("32FC1", 4),
                "confidence": ("32FC1", 4)}
    for name, (encoding, bytes_per_px) in expected.items():
        image = getattr(response, name)
        assert (image.width, image.height, image.encoding) == (40, 30, encoding), name
        assert image.step == 40 * bytes_per_px and len(image.data) == 30 * image.step, name
        assert image.header.frame_id == "viewseg_query_optical", name  # the pose names no frame
        assert time_to_ns(image.header.stamp) == stamp_ns, name
    info = response.camera_info
    assert (info.width, info.height, info.header.frame_id) == (40, 30, "viewseg_query_optical")
    assert time_to_ns(info.header.stamp) == stamp_ns
    # Zero K in the request: the keyframes' camera scaled to 40x30.
    reference = node.keyframes.snapshot()[-1].view
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)),
                               resize_intrinsics(reference.K, (SIM_H, SIM_W), (30, 40)), atol=1e-9)

    semantic = image_to_numpy(response.semantic)
    depth = image_to_numpy(response.depth)
    confidence = image_to_numpy(response.confidence)
    valid = semantic != IGNORE_LABEL
    assert np.all(semantic[valid] < NUM_CLASSES)
    np.testing.assert_array_equal(image_to_numpy(response.semantic_color), colorize(semantic))
    assert np.array_equal(np.isfinite(depth), valid)  # unknown class <=> empty ray <=> NaN depth
    assert np.all(depth[valid] > 0)
    assert np.all((confidence >= 0) & (confidence <= 1))

    kept = {k.id: k.stamp_ns for k in node.keyframes.snapshot()}
    ids = list(response.keyframe_ids)
    assert 1 <= len(ids) <= 4 and len(set(ids)) == len(ids)
    for kid, stamp in zip(ids, response.keyframe_stamps):
        assert kid in kept and time_to_ns(stamp) == kept[kid]
    assert 0 < response.render_time <= response.total_time
    # A CPU render hands its freed heap back (cpu_allocator.release_freed_memory), inside the
    # render's time: without it the node's RSS grows with every query (docs/benchmarks.md, "Load").
    assert 0 <= node.last_timings["release_memory"] <= node.last_timings["render"]


def test_render_view_is_the_library_render_with_the_query_preset(graph):
    """The service's images are exactly viewseg_core's render_query on the keyframes it names,
    with the preset built from query.preset=fast and the num_coarse/num_fine overrides."""
    import torch

    from viewseg_core.model.fast import QueryPreset, render_query

    node = graph.node
    assert node.preset == QueryPreset("fast", 8, 4, skip_weight=1e-3)
    c2w = unseen_pose(graph)
    response = graph.call("/viewseg/render_view", render_request(c2w))
    assert response.success, response.message
    # Built here, not with the node's keyframe_sources, so that the check stays independent.
    chosen = [node.keyframes.get(i) for i in response.keyframe_ids]
    rgb = torch.as_tensor(np.stack([k.view.rgb for k in chosen])).permute(0, 3, 1, 2)[None].float() / 255
    sources = node.model.make_sources(torch.stack([k.features for k in chosen])[None],
                                      torch.as_tensor(np.stack([k.view.K for k in chosen]))[None],
                                      torch.as_tensor(np.stack([k.c2w for k in chosen]))[None],
                                      chosen[0].view.height, chosen[0].view.width, rgb=rgb)
    K = torch.as_tensor(np.reshape(response.camera_info.k, (3, 3)))
    out = render_query(node.model, K, torch.as_tensor(c2w), 30, 40, sources, node.preset)
    # The keyframe colours matter to this model: other colours give other labels.
    other = replace(sources, rgb=1.0 - rgb)
    assert (render_query(node.model, K, torch.as_tensor(c2w), 30, 40, other, node.preset).labels
            != out.labels).any()
    # The node's one change to the render (docs/ros.md): a pixel whose rendered surface no chosen
    # keyframe sees is unknown. Usually none is here; a surface on a frustum's edge happens.
    from viewseg_core.source_selection import pixel_coverage

    labels, depth, confidence = out.labels.numpy().copy(), out.depth.numpy().copy(), out.confidence.numpy().copy()
    seen = pixel_coverage(K.numpy(), c2w, depth, np.stack([k.view.K for k in chosen]),
                          np.stack([k.c2w for k in chosen]), [(k.view.height, k.view.width) for k in chosen],
                          node.max_source_depth)
    labels[~seen], depth[~seen], confidence[~seen] = 255, np.nan, 0.0
    np.testing.assert_array_equal(image_to_numpy(response.semantic), labels)
    np.testing.assert_allclose(image_to_numpy(response.depth), depth, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(image_to_numpy(response.confidence), confidence, rtol=1e-5, atol=1e-7)



def test_queries_that_pick_the_same_keyframes_reuse_their_prepared_maps(graph):
    """Issue 19, item 3: a second query from the same keyframes takes their stacked sources and
    projected feature maps from the node's PreparedCache (a hit, the same images); once the
    keyframes' features are re-encoded (new tensors under the same ids) it is a miss again,
    still with the same images. /diagnostics-style counters say so."""
    node = graph.node
    c2w = unseen_pose(graph)
    first = graph.call("/viewseg/render_view", render_request(c2w))
    assert first.success, first.message
    before = node.prepared_cache.stats()
    again = graph.call("/viewseg/render_view", render_request(c2w))
    assert again.success and list(again.keyframe_ids) == list(first.keyframe_ids)
    after = node.prepared_cache.stats()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    assert 1 <= after.entries <= node.params["query.prepared_cache"] and after.nbytes > 0
    for name in ("semantic", "depth", "confidence"):
        np.testing.assert_array_equal(image_to_numpy(getattr(again, name)), image_to_numpy(getattr(first, name)))

    chosen = [node.keyframes.get(i) for i in first.keyframe_ids]
    for k in chosen:  # what a model reload does: the same keyframes, features encoded anew
        node.keyframes.set_features(k.id, k.features.clone())
    third = graph.call("/viewseg/render_view", render_request(c2w))
    assert third.success and list(third.keyframe_ids) == list(first.keyframe_ids)
    last = node.prepared_cache.stats()
    assert (last.hits, last.misses) == (after.hits, after.misses + 1)
    np.testing.assert_array_equal(image_to_numpy(third.semantic), image_to_numpy(first.semantic))
    assert f"{last.hits} hits, {last.misses} misses" in str(last)

def test_sampling_parameters(graph, checkpoint, tmp_path):
    """query.preset and its overrides become the node's QueryPreset; bad values fail at start."""
    import torch

    from viewseg_core.model.fast import PRESETS, QueryPreset
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    from viewseg_core.model.weights import save_model
    from viewseg_ros.node import ViewSegNode

    def preset_of(path, **overrides):
        node = ViewSegNode(context=graph.context, namespace="sampling", parameter_overrides=params({
            "checkpoint": str(path), "device": "cpu", "warmup": False, **overrides}))
        try:
            return node.preset
        finally:
            node.destroy_node()

    assert preset_of(checkpoint, **{"query.preset": "paper"}) == PRESETS["paper"]
    assert preset_of(checkpoint, **{"query.preset": "checkpoint"}) == QueryPreset("checkpoint", 8, 4)
    assert preset_of(checkpoint, **{"query.skip_weight": 0.0, "query.num_fine": 0,
                                    "query.point_budget": 4096}) == QueryPreset("fast", 8, 0, 0.0, "auto", 4096)
    torch.manual_seed(0)
    coarse_only = save_model(ViewSeg(ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=16, hidden_dim=32,
                                                 n_blocks=1, n_head_blocks=1, n_harmonic_xyz=2,
                                                 n_harmonic_dir=1, num_coarse=4, num_fine=0)),
                             tmp_path / "coarse_only.pt")
    assert preset_of(coarse_only).num_fine == 0  # the preset's coarse pass alone
    # rgbd_fine on a coarse-only checkpoint: no fine pass left, so nothing to restrict to unexplained rays.
    assert preset_of(coarse_only, **{"query.preset": "rgbd_fine"}) == \
        replace(PRESETS["rgbd_fine"], num_fine=0, fine_unexplained=False)
    # auto (the default): rgbd only for a depth-guided checkpoint that reads a depth topic.
    rgbd = tiny_checkpoint(tmp_path / "rgbd.pt", source_depth=True, depth_guided=True)
    assert preset_of(rgbd, depth_topic="depth") == PRESETS["rgbd"]
    assert preset_of(rgbd) == PRESETS["fast"]  # no depth to guide the samples
    assert preset_of(checkpoint, depth_topic="depth") == PRESETS["fast"]  # an RGB model
    assert preset_of(rgbd, depth_topic="depth", **{"query.num_coarse": 4}).label == "rgbd (4s+4b+0 free-skip)"
    # checkpoint: the samples it was trained with, band samples included (8 + 8 band + 4).
    assert preset_of(rgbd, depth_topic="depth", **{"query.preset": "checkpoint"}) == \
        QueryPreset("checkpoint", 8, 4, guide_samples=8)
    with pytest.raises(ValueError, match="query.preset must be one of"):
        preset_of(checkpoint, **{"query.preset": "fastest"})
    with pytest.raises(ValueError, match="parameter executor must be one of rclpy | submit_once"):
        preset_of(checkpoint, executor="multi")
    # query.amp: bf16 on CPU runs a bf16 copy of the field (viewseg_core.model.fast.low_precision_field).
    assert preset_of(checkpoint, **{"query.amp": "bf16"}) == replace(PRESETS["fast"], amp="bf16")
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        preset_of(checkpoint, **{"query.amp": "fp16"})
    with pytest.raises(ValueError, match="amp must be one of"):
        preset_of(checkpoint, **{"query.amp": "int8"})
    with pytest.raises(ValueError, match="no fine field"):
        preset_of(coarse_only, **{"query.num_fine": 4})
    with pytest.raises(ValueError, match="skip_weight"):
        preset_of(checkpoint, **{"query.skip_weight": 1.5})


def test_render_view_frames_and_explicit_camera(graph):
    """Identity pose in a TF frame: the output is in that frame, stamped with the TF time used.
    A CameraInfo with K and a frame_id: that K and that frame come back."""
    response = graph.call("/viewseg/render_view", render_request(np.eye(4), frame="camera_optical", width=16,
                                                                 height=12))
    assert response.success, response.message
    assert response.depth.header.frame_id == "camera_optical"
    assert response.camera_info.header.frame_id == "camera_optical"
    tf_stamp = time_to_ns(response.depth.header.stamp)
    assert tf_stamp > 0 and tf_stamp <= graph.sim.get_clock().now().nanoseconds

    K = np.array([[20.0, 0.0, 11.5], [0.0, 21.0, 8.0], [0.0, 0.0, 1.0]])
    base_pose = np.eye(4)
    base_pose[:3, :3] = graph.sim.mount[:3, :3]  # look forward from base_link at the floor's level
    base_pose[2, 3] = 1.0
    response = graph.call("/viewseg/render_view", render_request(base_pose, frame="base_link", width=24, height=18,
                                                                 K=K, camera_frame="planner_camera"))
    assert response.success, response.message
    assert response.semantic.header.frame_id == "planner_camera"
    assert (response.semantic.width, response.semantic.height) == (24, 18)
    np.testing.assert_allclose(np.reshape(response.camera_info.k, (3, 3)), K)

    # K given but size 0x0: that K at the keyframes' size.
    response = graph.call("/viewseg/render_view", render_request(base_pose, frame="base_link", width=0, height=0,
                                                                 K=K))
    assert response.success, response.message
    assert (response.depth.width, response.depth.height) == (SIM_W, SIM_H)
    np.testing.assert_allclose(np.reshape(response.camera_info.k, (3, 3)), K)


def test_query_topic_mode_publishes_all_outputs(graph):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image

    got: dict[str, object] = {}
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    subs = [graph.client.create_subscription(Image, f"/viewseg/{name}", lambda m, n=name: got.setdefault(n, m), qos)
            for name in ("semantic", "semantic_color", "depth", "confidence")]
    subs.append(graph.client.create_subscription(CameraInfo, "/viewseg/camera_info",
                                                 lambda m: got.setdefault("camera_info", m), qos))
    pub = graph.client.create_publisher(PoseStamped, "/viewseg/query", qos)  # these live until close
    wait_for(lambda: pub.get_subscription_count() > 0 and all(s.get_publisher_count() for s in subs), 10.0,
             "query topic discovery")
    pub.publish(matrix_to_pose_stamped(unseen_pose(graph), "map", 42_000_000_001))
    wait_for(lambda: len(got) == 5, 30.0, f"all five outputs (got {sorted(got)})")
    encodings = {"semantic": "mono8", "semantic_color": "rgb8", "depth": "32FC1", "confidence": "32FC1"}
    for name, msg in got.items():
        assert (msg.width, msg.height) == (SIM_W, SIM_H), name  # topic mode: the keyframes' size
        assert msg.header.frame_id == "viewseg_query_optical" and time_to_ns(msg.header.stamp) == 42_000_000_001
        if name in encodings:
            assert msg.encoding == encodings[name]


# --------------------------------------------------------------------------- bad queries
def _bad_requests(g: Graph):
    pose = unseen_pose(g)
    cases = []

    def case(expected: str, mutate):
        request = render_request(pose)
        mutate(request)
        cases.append((expected, request))

    def set_quat(q):
        def mutate(r):
            o = r.pose.pose.orientation
            o.x, o.y, o.z, o.w = q
        return mutate

    case("non-finite quaternion", set_quat((math.nan, 0.0, 0.0, 1.0)))
    case("not normalised", set_quat((0.0, 0.0, 0.0, 2.0)))
    case("not normalised", set_quat((0.0, 0.0, 0.0, 0.0)))  # a PoseStamped left at its defaults
    case("non-finite position", lambda r: setattr(r.pose.pose.position, "x", math.inf))
    case("'no_such_frame' does not exist", lambda r: setattr(r.pose.header, "frame_id", "no_such_frame"))
    case("frame_id is empty", lambda r: setattr(r.pose.header, "frame_id", ""))
    case("exceeds the maximum query size", lambda r: (setattr(r.camera_info, "width", 4000),
                                                     setattr(r.camera_info, "height", 3000)))
    case("give both width and height", lambda r: setattr(r.camera_info, "height", 0))
    case("singular", lambda r: setattr(r.camera_info, "k", [1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0]))
    return cases


def test_bad_queries_fail_with_a_clear_message(graph):
    for expected, request in _bad_requests(graph):
        response = graph.call("/viewseg/render_view", request)
        assert not response.success, expected
        assert expected in response.message, (expected, response.message)
        assert len(response.keyframe_ids) == 0
    # The node is still serving.
    response = graph.call("/viewseg/render_view", render_request(unseen_pose(graph), width=8, height=6))
    assert response.success, response.message


def test_bad_inputs_are_dropped_with_throttled_warnings(graph, checkpoint):
    """A second node (namespace /bad) that never gets a usable frame."""
    from sensor_msgs.msg import CameraInfo, Image

    from viewseg_ros.node import ViewSegNode

    node = graph.add(ViewSegNode(context=graph.context, namespace="bad", parameter_overrides=params({
        "checkpoint": str(checkpoint), "device": "cpu", "warmup": False})))
    image_pub = graph.client.create_publisher(Image, "/bad/image", qos_profile_sensor_data)
    info_pub = graph.client.create_publisher(CameraInfo, "/bad/camera_info", qos_profile_sensor_data)
    wait_for(lambda: image_pub.get_subscription_count() and info_pub.get_subscription_count(), 10.0,
             "the /bad node's subscriptions")
    def image(kind="rgb8", **changes):
        pixels = np.zeros((SIM_H, SIM_W) if kind == "mono8" else (SIM_H, SIM_W, 3), np.uint8)
        msg = numpy_to_image(pixels, kind, frame_id="camera_optical")
        for key, value in changes.items():
            setattr(msg, key, value)
        return msg

    zero_k = make_camera_info(np.eye(3), SIM_W, SIM_H, frame_id="camera_optical")
    zero_k.k = [0.0] * 9
    cases = [  # (publisher, message, drop kind, expected reason)
        (info_pub, zero_k, "camera_info", "all zeros"),
        (image_pub, image(step=SIM_W * 3 - 1), "image", "is shorter than a row"),
        (image_pub, image(height=SIM_H + 1), "image", "data has"),
        (image_pub, image(encoding="nv21"), "image", "'nv21'"),
        (image_pub, image("mono8"), "image", "not a colour encoding"),
        (image_pub, image(), "image", "no valid CameraInfo"),  # well formed, but zero K was dropped
    ]
    for pub, msg, kind, reason in cases:
        before = node.drops[kind]

        def dropped():
            pub.publish(msg)  # best effort: publish until it lands
            # ... and until this case's drop is the last one: a late copy of the previous case's
            # message can land first. (A well-formed image before any CameraInfo is held, not
            # dropped; the next one replaces it and is counted.)
            return node.drops[kind] > before and reason in node.last_drop[kind]

        wait_for(dropped, 10.0, f"a dropped {kind} ({reason})", poll=0.1)
        assert reason in node.last_drop[kind], (reason, node.last_drop[kind])
    for _ in range(10):  # a burst of bad input: the warnings stay throttled
        for pub, msg, _, _ in cases:
            pub.publish(msg)
    time.sleep(0.3)
    assert len(node.keyframes) == 0
    # One warning per kind (image, camera_info) per 5 s, however many drops.
    assert node.warnings_logged <= 2, node.warnings_logged

    response = graph.call("/bad/viewseg/render_view", render_request(np.eye(4)))
    assert not response.success and "keyframe buffer is empty" in response.message


# --------------------------------------------------------------------------- processes and launch
@pytest.mark.parametrize("node_executor", ["", "rclpy"])   # "": the params file's (submit_once)
def test_node_runs_as_a_module_with_the_params_file(checkpoint, ros_subprocess_env, rclpy_context, node_executor):
    from viewseg_interfaces.srv import RenderView

    command = [sys.executable, "-m", "viewseg_ros.node", "--ros-args", "--params-file", str(REPO / "config" /
                                                                                           "viewseg.yaml")]
    chosen = ["-p", f"executor:={node_executor}"] if node_executor else []
    good = subprocess.Popen(command + ["-r", "__ns:=/cli", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu",
                                       *chosen],
                            env=ros_subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    missing = subprocess.run(command + ["-r", "__ns:=/cli_missing", "-p", "checkpoint:=/nonexistent/model.pt"],
                             env=ros_subprocess_env, capture_output=True, text=True, timeout=60, cwd=REPO)
    try:
        assert missing.returncode == 2
        assert "checkpoint '/nonexistent/model.pt' not found" in missing.stderr + missing.stdout

        node = Node("viewseg_cli_client", context=rclpy_context)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        client = node.create_client(RenderView, "/cli/viewseg/render_view")
        deadline = time.monotonic() + 60
        while not client.service_is_ready():
            assert good.poll() is None, good.stdout.read().decode()
            assert time.monotonic() < deadline, "the node process never offered its service"
            executor.spin_once(timeout_sec=0.1)
        future = client.call_async(render_request(np.eye(4)))
        # The answer is immediate once the node spins; a loaded 2-core CI machine has taken
        # over 20 s to deliver it (a full-suite run on 2026-12-07), so wait as long as for startup.
        executor.spin_until_future_complete(future, timeout_sec=60)
        response = future.result()
        assert response is not None and not response.success, "no answer in 60 s"
        assert "keyframe buffer is empty" in response.message
    finally:
        good.terminate()
        good.wait(timeout=20)
    log = good.stdout.read().decode()
    assert "ready:" in log and "warm-up took" in log
    expected = "MultiThreadedExecutor (rclpy)" if node_executor == "rclpy" else "SubmitOnceExecutor (submit_once)"
    assert f"executor: {expected}" in log, log


def test_launch_file():
    path = REPO / "launch" / "viewseg.launch.py"
    source = path.read_text()
    if importlib.util.find_spec("launch_ros") is not None:
        spec = importlib.util.spec_from_file_location("viewseg_launch", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
        names = {a.name for a in description.get_launch_arguments()}
        assert {"checkpoint", "device", "image_topic", "camera_info_topic"} <= names
        return
    # No launch_ros wheel: the file must at least compile and name only things that exist.
    tree = ast.parse(compile(source, str(path), "exec", flags=ast.PyCF_ONLY_AST))
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {"checkpoint", "device", "image_topic", "camera_info_topic"} <= strings
    assert "generate_launch_description" in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert (REPO / "config" / "viewseg.yaml").is_file() and {"config", "viewseg.yaml"} <= strings
    setup = (REPO / "setup.py").read_text()
    for executable in ("viewseg_node", "viewseg_sim_camera"):
        assert executable in strings and f'"{executable} = ' in setup, executable
    assert "viewseg_ros" in strings and "<name>viewseg_ros</name>" in (REPO / "package.xml").read_text()
    import yaml

    config = yaml.safe_load((REPO / "config" / "viewseg.yaml").read_text())
    assert set(config) == {"viewseg"} and "ros__parameters" in config["viewseg"]


def test_params_file_matches_the_node_parameters():
    """Every key of config/viewseg.yaml is a node parameter, with the node's default."""
    import yaml

    from viewseg_ros.node import PARAMETERS

    def flatten(d, prefix=""):
        for key, value in d.items():
            if isinstance(value, dict):
                yield from flatten(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    config = dict(flatten(yaml.safe_load((REPO / "config" / "viewseg.yaml").read_text())["viewseg"]
                          ["ros__parameters"]))
    assert set(config) == set(PARAMETERS)
    for name, value in config.items():
        assert value == PARAMETERS[name][0], name


# --------------------------------------------------------------------------- accuracy (demo checkpoint)
# The committed demo checkpoint scores test-split AbsRel 0.39 (docs/results.md) and 0.17-0.24 on
# the poses of `make demo`. The bounds catch a wrong frame or convention (AbsRel well above 1,
# little coverage), not a weak model.
DEPTH_MEDIAN_ABS_REL = 0.5      # median over poses of each pose's median |pred - true| / true
DEPTH_WORST_ABS_REL = 1.2       # no single pose worse than this
DEPTH_COVERAGE = 0.6            # at least this share of true-depth pixels gets a finite prediction


def test_depth_matches_true_geometry_with_the_demo_checkpoint():
    """render_view depth from the trained demo model against the ray-cast truth of the sim room."""
    if not DEMO_CHECKPOINT.is_file():
        pytest.fail(f"{DEMO_CHECKPOINT} does not exist yet: this test needs the trained demo checkpoint "
                    f"(the lead trains it; see the README's demo section). It is not skipped on purpose.")
    from viewseg_core.data.synth.render import render
    from viewseg_ros.node import ViewSegNode
    from viewseg_ros.sim_camera import SimCameraNode

    # A domain of its own: its sim camera must not feed the shared graph's node (TF is global).
    g = Graph(domain_id=(int(os.environ["ROS_DOMAIN_ID"]) + 50) % 100 + 1)
    try:
        node = g.add(ViewSegNode(context=g.context, parameter_overrides=params({
            "checkpoint": str(DEMO_CHECKPOINT), "device": "cpu", "query.num_sources": 4,
            "keyframes.min_translation": 0.2, "keyframes.min_rotation_deg": 12.0,
            "keyframes.min_interval_s": 0.1})))
        sim = g.add(SimCameraNode(context=g.context, parameter_overrides=params({
            "seed": 0, "rate": 10.0, "width": 96, "height": 72, "period_s": 6.0})))
        # The camera's whole walk (half a period), so every query pose has keyframes around it.
        wait_for(lambda: sim.frames_published >= 32 and len(node.keyframes) >= 8,
                 60.0, "keyframes of the camera's whole walk")
        errors, coverage = [], []
        for c2w in sim.world.unseen_poses(4):
            response = g.call("/viewseg/render_view", render_request(c2w, width=48, height=36), timeout=120)
            assert response.success, response.message
            K = np.reshape(response.camera_info.k, (3, 3))
            truth = render(sim.scene, K, c2w, 36, 48).depth
            pred = image_to_numpy(response.depth)
            both = np.isfinite(truth) & np.isfinite(pred)
            coverage.append(both.sum() / np.isfinite(truth).sum())
            errors.append(float(np.median(np.abs(pred[both] - truth[both]) / truth[both])))
        assert min(coverage) >= DEPTH_COVERAGE, coverage
        assert float(np.median(errors)) <= DEPTH_MEDIAN_ABS_REL, errors
        assert max(errors) <= DEPTH_WORST_ABS_REL, errors
    finally:
        g.close()


def test_colorize_fast_matches_the_palette():
    from viewseg_ros.node import colorize_fast

    labels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(colorize_fast(labels), colorize(labels))
    wide = np.array([[0, 36, 37, 65535]], np.uint16)
    np.testing.assert_array_equal(colorize_fast(wide), colorize(wide))


def test_package_xml_declares_every_ros_package_the_code_imports():
    """Every ROS interface package the node, sim camera, launch file and bag import use (``from
    X.msg import``, ``X.srv``) is an exec_depend of package.xml, so that rosdep and colcon
    install it on a robot (std_srvs, rcl_interfaces and lifecycle_msgs were used before they were declared)."""
    import re

    declared = set(re.findall(r"<exec_depend>([\w]+)</exec_depend>", (REPO / "package.xml").read_text()))
    sources = [*(REPO / "viewseg_ros").glob("*.py"), *(REPO / "launch").glob("*.py")]
    used = set()
    for path in sources:
        text = path.read_text()
        used |= set(re.findall(r"^\s*(?:from|import) (\w+)\.(?:msg|srv|action)\b", text, re.M))
        if re.search(r"^\s*from rclpy\.lifecycle import", text, re.M):
            used.add("lifecycle_msgs")   # rclpy's lifecycle node serves lifecycle_msgs services
    assert {"sensor_msgs", "lifecycle_msgs", "std_srvs", "viewseg_interfaces"} <= used   # the scan finds them
    assert used - declared == set(), f"imported but not in package.xml: {sorted(used - declared)}"
