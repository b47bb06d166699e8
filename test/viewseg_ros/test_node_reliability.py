"""The viewseg node under the conditions a robot produces (issue 17), with real rclpy nodes on
loopback and the real service: bounded and always-answered queries, intake during a render,
honest coverage and confidence, bad intrinsics, clock jumps, pose jumps, camera delivery
diagnostics; and, across processes, a camera-sized stream through the shipped Fast DDS profile.

The in-process tests drive the node with a test camera of their own (TF, CameraInfo and Image
at chosen poses and stamps) and a tiny random checkpoint: they check behaviour, not accuracy.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402

from viewseg_core.cameras import K_from_hfov  # noqa: E402
from viewseg_ros.camera_stream import view_pose  # noqa: E402
from viewseg_ros.conversions import image_to_numpy, make_camera_info  # noqa: E402
from ros_graph import Graph, PosedCamera, diagnostics_values, params, render_request, tiny_checkpoint, \
    wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
W, H = 64, 48
K = K_from_hfov(70.0, W, H)
FRAME = "test_camera_optical"
TIMEOUT_S = 2.0


def line_pose(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    """Camera at (x, 0, 1.2) looking horizontally, yaw_deg left of +x."""
    c2w = view_pose(1, 0.0, yaw_deg)
    c2w[:3, 3] = (x, 0.0, 1.2)
    return c2w


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from viewseg_ros.node import ViewSegNode

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("reliability") / "tiny.pt")
    g = Graph()
    try:
        g.node = g.add(ViewSegNode(context=g.context, parameter_overrides=params({
            "checkpoint": str(checkpoint), "device": "cpu", "query.num_coarse": 8, "query.num_fine": 4,
            "query.num_sources": 2, "query.timeout_s": TIMEOUT_S, "query.max_in_flight": 2,
            "keyframes.min_translation": 0.1, "keyframes.min_rotation_deg": 10.0, "keyframes.min_interval_s": 0.0,
            "keyframes.width": W, "keyframes.height": H, "keyframes.teleport_distance": 2.0,
            "keyframes.keep_recent": 7, "diagnostics_period_s": 0.2, "camera_rate.window_s": 1.0})))
        g.camera = PosedCamera(g, K, FRAME)
        from diagnostic_msgs.msg import DiagnosticArray

        g.diagnostics = []  # never destroyed while spinning (see Graph)
        g.client.create_subscription(DiagnosticArray, "/diagnostics", g.diagnostics.append, 10)
        g.stamp_ns = 1_000 * 10**9
        # Three keyframes at x = 0, 0.3, 0.6, all looking along +x.
        for x in (0.0, 0.3, 0.6):
            publish_next(g, line_pose(x))
        wait_for(lambda: len(g.node.keyframes) >= 3, 20.0, "3 keyframes from the test camera")
        yield g
    finally:
        g.close()


def publish_next(g: Graph, c2w: np.ndarray, step_s: float = 0.1, **kwargs) -> int:
    g.stamp_ns += int(step_s * 1e9)
    g.camera.publish(c2w, g.stamp_ns, **kwargs)
    time.sleep(0.05)
    return g.stamp_ns


# --------------------------------------------------------------------------- coverage
def test_a_far_pose_is_refused_with_the_coverage_found(rig):
    t0 = time.monotonic()
    response = rig.call("/viewseg/render_view", render_request(line_pose(1e6), width=W, height=H))
    assert not response.success
    assert "no keyframe sees this view" in response.message and "0.0% of its frustum" in response.message
    assert "\n" not in response.message
    assert time.monotonic() - t0 < 5.0  # no render: well under a second unless the machine is loaded


def test_half_covered_view_has_no_confidence_where_no_keyframe_sees(rig):
    # Turned 35 degrees (half the 70 degree field of view) left of the keyframes: the right
    # half of the image looks where they look, the left half where none does.
    response = rig.call("/viewseg/render_view", render_request(line_pose(0.0, 35.0), width=W, height=H))
    assert response.success, response.message
    confidence = image_to_numpy(response.confidence)
    labels = image_to_numpy(response.semantic)
    depth = image_to_numpy(response.depth)
    left, right = slice(0, int(0.4 * W)), slice(int(0.6 * W), W)
    assert confidence[:, left].max() < 0.1
    assert (labels[:, left] == 255).all() and np.isnan(depth[:, left]).all()
    # The covered half renders: known labels and finite depth on most of its pixels.
    assert (labels[:, right] != 255).mean() > 0.8
    assert np.isfinite(depth[:, right]).mean() > 0.8


# --------------------------------------------------------------------------- bounded queries
def test_every_concurrent_request_is_answered_busy_or_served(rig):
    from viewseg_interfaces.srv import RenderView

    client = rig.client.create_client(RenderView, "/viewseg/render_view")
    wait_for(client.service_is_ready, 10.0, "render_view")
    futures = [client.call_async(render_request(line_pose(0.3), width=W, height=H)) for _ in range(16)]
    wait_for(lambda: all(f.done() for f in futures), 60.0, "answers to 16 concurrent requests")
    responses = [f.result() for f in futures]
    served = [r for r in responses if r.success]
    busy = [r for r in responses if not r.success and r.message.startswith("busy (2 in flight")]
    assert len(served) + len(busy) == 16, [r.message for r in responses if not r.success]
    assert served and busy
    assert rig.node.in_flight == 0
    assert rig.node.events["busy"] >= len(busy)


def test_a_query_that_cannot_finish_in_time_is_refused_up_front(rig):
    # A real render first: the cost model refuses only while real renders keep it current.
    assert rig.call("/viewseg/render_view", render_request(line_pose(0.3), width=W, height=H)).success
    refused, renders = rig.node.events["refused_budget"], rig.node.last_render_s
    t0 = time.monotonic()
    response = rig.call("/viewseg/render_view", render_request(line_pose(0.3), width=1280, height=1024))
    assert not response.success
    assert "would take about" in response.message and f"query.timeout_s = {TIMEOUT_S:g} s" in response.message
    # Up front: counted as refused, nothing rendered. The round trip is normally well under a
    # second; the bound is loose because a loaded CI machine once took 1.16 s to schedule it
    # (the render it refuses would take minutes).
    assert rig.node.events["refused_budget"] == refused + 1 and rig.node.last_render_s == renders
    assert time.monotonic() - t0 < 5.0


def test_a_render_past_its_timeout_is_abandoned_and_intake_goes_on(rig):
    """The cost model is told renders are nearly free, so a 1280x1024 query starts and runs into
    its deadline; meanwhile new views arrive and must become keyframes during the render."""
    from viewseg_core.model import fast

    node = rig.node
    saved = node._seconds_per_point_view
    node._seconds_per_point_view = 1e-15
    # A spy on the real field-call path: when each call (and so each deadline check) began.
    checks: list[float] = []
    real_call = fast.FieldChoice.__call__

    def timed_call(self, *args, **kwargs):
        checks.append(time.monotonic())
        return real_call(self, *args, **kwargs)

    fast.FieldChoice.__call__ = timed_call
    try:
        from viewseg_interfaces.srv import RenderView

        client = rig.client.create_client(RenderView, "/viewseg/render_view")
        wait_for(client.service_is_ready, 10.0, "render_view")
        t0 = time.monotonic()
        future = client.call_async(render_request(line_pose(0.3), width=1280, height=1024))
        wait_for(lambda: node.in_flight == 1, 5.0, "the long render to start")
        before = len(node.keyframes)
        admitted_during = 0
        for i in range(5):
            publish_next(rig, line_pose(2.0 + 0.5 * i, 10.0 * i), step_s=0.2)
            time.sleep(0.1)
            if not future.done():
                admitted_during = len(node.keyframes) - before
        wait_for(future.done, 30.0, "the abandoned render's answer")
        elapsed = time.monotonic() - t0
        response = future.result()
    finally:
        fast.FieldChoice.__call__ = real_call
        node._seconds_per_point_view = saved
    assert not response.success and response.message.startswith("abandoned after"), response.message
    # The node checks its deadline before every field call and stops at the first check past
    # it, so it overruns by at most the interval between its last two checks (one field call
    # and the glue around it: tens of ms on an idle 2-core CPU, more on a loaded one; a fixed
    # bound here failed on a loaded VM). The message rounds to 0.1 s.
    abandoned_s = float(re.match(r"abandoned after ([0-9.]+) s", response.message).group(1))
    assert len(checks) >= 3, f"{len(checks)} field calls"
    last_interval = checks[-1] - checks[-2]
    assert TIMEOUT_S - 0.05 <= abandoned_s <= TIMEOUT_S + last_interval + 0.15, \
        f"{response.message}; last check interval {last_interval:.3f} s"
    assert int(re.search(r"\((\d+) field calls\)", response.message).group(1)) == len(checks) - 1
    # The abandoned render still teaches the cost model, with the points of the chunks it
    # finished over their rays: never more points per ray than the preset evaluates.
    p = node.preset
    assert 0 < node._points_per_ray <= p.coarse_samples + (p.coarse_samples + p.num_fine if p.num_fine else 0)
    assert elapsed - abandoned_s < 1.0, f"answer {elapsed:.2f} s after the call, render abandoned at {abandoned_s} s"
    assert admitted_during >= 3, f"{admitted_during} keyframes admitted during a {elapsed:.1f} s render"


# --------------------------------------------------------------------------- planner-facing output
def test_topic_mode_publishes_a_point_cloud_that_matches_depth_and_K(rig):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image, PointCloud2

    from viewseg_core.classes import colorize
    from viewseg_ros.conversions import matrix_to_pose_stamped, point_cloud_to_numpy, unpack_rgb

    got: dict[str, list] = {"points": [], "depth": [], "semantic": [], "confidence": []}
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    subs = [rig.client.create_subscription(PointCloud2, "/viewseg/points", got["points"].append, qos)]
    subs += [rig.client.create_subscription(Image, f"/viewseg/{name}", got[name].append, qos)
             for name in ("depth", "semantic", "confidence")]
    query = rig.client.create_publisher(PoseStamped, "/viewseg/query", QoSProfile(depth=1,
                                        reliability=ReliabilityPolicy.RELIABLE))
    wait_for(lambda: query.get_subscription_count() > 0, 5.0, "the node's ~/query subscription")
    query.publish(matrix_to_pose_stamped(line_pose(0.3), "map"))
    wait_for(lambda: all(got.values()), 20.0, "the topic-mode outputs")
    cloud_msg = got["points"][-1]
    depth, labels = image_to_numpy(got["depth"][-1]), image_to_numpy(got["semantic"][-1])
    confidence = image_to_numpy(got["confidence"][-1])
    assert cloud_msg.header == got["depth"][-1].header
    assert [f.name for f in cloud_msg.fields] == ["x", "y", "z", "rgb", "confidence", "label"]
    cloud = point_cloud_to_numpy(cloud_msg)
    v, u = np.nonzero(np.isfinite(depth))
    assert len(cloud) == len(v) > 0
    K_query = K  # the keyframes' camera at their size (the request left it open)
    np.testing.assert_allclose(cloud["z"], depth[v, u], rtol=1e-6)
    np.testing.assert_allclose(cloud["x"], (u - K_query[0, 2]) / K_query[0, 0] * depth[v, u], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cloud["y"], (v - K_query[1, 2]) / K_query[1, 1] * depth[v, u], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cloud["label"], labels[v, u])
    np.testing.assert_allclose(cloud["confidence"], confidence[v, u])
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), colorize(labels[v, u]))


def test_keyframe_parameters_reach_the_buffer(rig):
    config = rig.node.keyframes.config
    assert (config.keep_recent, config.eviction, config.min_translation, config.max_keyframes) == (7, "redundant", 0.1, 64)


def test_frames_that_are_not_keyframes_are_counted_by_reason(rig):
    node = rig.node
    before = dict(node.not_admitted)
    publish_next(rig, line_pose(0.0))  # the first keyframe's pose again: a duplicate
    wait_for(lambda: node.not_admitted["duplicate"] > before["duplicate"], 5.0, "a counted duplicate")
    values = diagnostics_values(rig)
    assert int(values["not_admitted_duplicate"]) >= 1 and "not_admitted_too_soon" in values


# --------------------------------------------------------------------------- bad input
def test_cameras_with_impossible_intrinsics_are_dropped(rig):
    node = rig.node
    for bad, reason in ((np.array([[-50.0, 0, 32], [0, 50, 24], [0, 0, 1]]), "focal lengths must be positive"),
                        (np.array([[50.0, 0, 5 * W], [0, 50, 24], [0, 0, 1]]), "principal point")):
        drops = node.drops["camera_info"]
        publish_next(rig, line_pose(30.0), K_info=bad)
        wait_for(lambda: node.drops["camera_info"] > drops, 5.0, f"a dropped CameraInfo ({reason})")
        assert reason in node.last_drop["camera_info"]
        assert "\n" not in node.last_drop["camera_info"]
    publish_next(rig, line_pose(30.0))  # a good CameraInfo again for the tests after this one
    wait_for(lambda: node.cameras[0].calibrated is not None and node.cameras[0].calibrated[0].K[0, 0] > 0, 5.0,
             "a valid camera again")


def test_singular_query_intrinsics_are_refused_in_one_line(rig):
    singular = np.array([[50.0, 0, 32], [0, 0, 24], [0, 0, 1]])
    response = rig.call("/viewseg/render_view", render_request(line_pose(0.3), width=W, height=H, K=singular))
    assert not response.success and "\n" not in response.message and "singular" in response.message


def test_a_clock_that_jumps_back_resets_and_intake_resumes(rig):
    """A stream replayed twice (the same stamps), the second time at new poses: the second
    pass is admitted, and one jump is counted."""
    node = rig.node
    jumps = node.events["clock_jumps"]
    start = rig.stamp_ns + 10**9
    for replay, x0 in enumerate((10.0, 20.0)):
        rig.stamp_ns = start
        before = node.keyframes.admitted
        t0 = time.monotonic()
        publish_next(rig, line_pose(x0, 0.0), step_s=0.3)
        try:
            # Intake resumes at once: the pass's first view is a keyframe within a few seconds
            # (each keyframe costs an encoder pass; a loaded 2-core CI machine is slow).
            wait_for(lambda: node.keyframes.admitted > before, 5.0, "the first view of the pass")
            first_s = time.monotonic() - t0
            for i in range(1, 5):
                publish_next(rig, line_pose(x0 + 0.5 * i, 12.0 * i), step_s=0.3)
            wait_for(lambda: node.keyframes.admitted - before >= 4, 20.0, "4 of 5 views admitted")
        except AssertionError as error:
            raise AssertionError(f"pass {replay}: {error} (drops {node.drops}, {node.last_drop}, not admitted "
                                 f"{node.not_admitted}, {len(node.cameras[0].pending)} waiting for TF, "
                                 f"events {node.events}, epoch {node.keyframes.epoch}, kept "
                                 f"{[(k.id, k.stamp_ns, k.epoch) for k in node.keyframes.snapshot()][-8:]}, "
                                 f"published up to {rig.stamp_ns})") from None
        if replay:
            assert first_s < 5.0
    assert node.events["clock_jumps"] == jumps + 1
    assert "clock_jumps" in node.last_event


def test_a_pose_that_jumps_is_flagged_in_diagnostics(rig):
    node = rig.node
    jumps = node.events["pose_jumps"]
    publish_next(rig, line_pose(40.0))  # (itself a jump from the previous test's last pose)
    publish_next(rig, line_pose(45.0))  # 5 m in 0.1 s, over keyframes.teleport_distance = 2 m
    wait_for(lambda: "moved 5.00 m" in node.last_event.get("pose_jumps", ""), 5.0, "a flagged 5 m pose jump")
    assert node.events["pose_jumps"] > jumps
    values = diagnostics_values(rig)
    assert int(values["pose_jumps"]) >= 1 and values["level"] >= 1 and "pose jump" in values["message"]


def test_diagnostics_warn_when_camera_info_arrives_without_images(rig):
    """A camera whose CameraInfo arrives and whose images do not (large images lost in
    transport) puts /diagnostics at WARN with the reason. CameraInfo keeps coming from a thread
    while the test reads the result: this process is shared with the node's executor, and a
    clean-clone CI run managed 11 publishes in 2 s of a 20 Hz loop, so no rate is assumed,
    only what the node received (it needs 2 in its window to judge)."""
    import threading

    from sensor_msgs.msg import CameraInfo

    node = rig.node
    info_only = rig.client.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    # Best effort: what is published before both sides have matched is lost.
    wait_for(lambda: info_only.get_subscription_count() > 0, 10.0, "the node's camera_info subscription")
    stop = threading.Event()

    def publish_camera_info() -> None:
        while not stop.is_set():
            info_only.publish(make_camera_info(K, W, H, frame_id=FRAME))
            time.sleep(0.05)

    publisher = threading.Thread(target=publish_camera_info, daemon=True)
    received_before = node.received["camera_info"]
    t0 = time.monotonic()
    publisher.start()
    try:
        # Longer than camera_rate.window_s (1 s) of CameraInfo without an image, and at least the
        # 2 CameraInfo in the window the node needs to judge (a loaded machine's executor can
        # deliver them in bursts, so the test waits for a window that has them).
        wait_for(lambda: time.monotonic() - t0 > 1.5 and node.received["camera_info"] - received_before >= 10
                 and node.camera_delivery()[1] >= 2, 30.0, "10 CameraInfo messages at the node, 2 in its window")
        images, infos, warning = node.camera_delivery()
        assert images == 0 and (infos < 2 or "fastdds_large_images.xml" in warning and
                                f"arrived {infos} times" in warning), warning
        values = diagnostics_values(rig, until=lambda v: float(v["camera_info_rate_hz"]) >= 2.0)
    finally:
        stop.set()
        publisher.join(timeout=5.0)
    assert values["level"] >= 1 and "lost in transport" in values["message"]
    assert float(values["image_rate_hz"]) == 0.0 and float(values["camera_info_rate_hz"]) >= 2.0


# --------------------------------------------------------------------------- a real camera's size
STREAM_VIEWS = 20


@pytest.fixture(scope="module")
def node_process(tmp_path_factory):
    """The viewseg node with the demo checkpoint in its own process, with the shipped Fast DDS
    profile, as `ros2 launch` runs it."""
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(random.randint(120, 220)),
               FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_large_images.xml"))
    log = tmp_path_factory.mktemp("camera") / "node.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "viewseg_ros.node", "--ros-args", "--params-file", str(REPO / "config" / "viewseg.yaml"),
             "-p", "device:=cpu", "-p", "diagnostics_period_s:=0.5", "-p", "keyframes.max_keyframes:=100"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        # Generous: the demo model loads and warms up in ~5 s on an idle 2-core machine, but a
        # loaded CI machine has been seen taking over a minute.
        wait_for(lambda: "ready:" in log.read_text() or process.poll() is not None, 180.0, "the node to be ready")
        assert process.poll() is None, log.read_text()
        yield env, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def node_diagnostics(env: dict) -> dict[str, str]:
    """The node's /diagnostics values, read in a child process of the same graph (this
    process's DDS participant may predate the profile variable). The second message heard is
    used: the first may have been published before the caller's last frames were handled."""
    script = ("import json, rclpy\n"
              "from rclpy.node import Node\n"
              "from diagnostic_msgs.msg import DiagnosticArray\n"
              "rclpy.init(); n = Node('read_diagnostics'); got = []\n"
              "n.create_subscription(DiagnosticArray, '/diagnostics', got.append, 10)\n"
              "import time; t = time.time()\n"
              "while len(got) < 2 and time.time() - t < 10: rclpy.spin_once(n, timeout_sec=0.1)\n"
              "print(json.dumps(dict((kv.key, kv.value) for kv in got[-1].status[0].values)))\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def counter_changes(before: dict[str, str], after: dict[str, str]) -> dict[str, float]:
    """The node's counters that changed between two /diagnostics reads (for failure messages:
    which frames were dropped or refused, and why)."""
    changes = {}
    for key, value in after.items():
        try:
            delta = float(value) - float(before.get(key, 0))
        except ValueError:
            continue
        if delta:
            changes[key] = delta
    return changes


@pytest.mark.parametrize("width, height, reliability", [(640, 480, "best_effort"), (640, 480, "reliable"),
                                                        (1280, 720, "best_effort")])
def test_camera_sized_stream_becomes_keyframes(node_process, width, height, reliability):
    """20 distinct views, 4 frames each, at 15 Hz: at least 75% become keyframes (the issue
    measured 10-17 of 40 with the default transport)."""
    env, log = node_process
    before = node_diagnostics(env)
    first = {(640, 480, "best_effort"): 0, (640, 480, "reliable"): 100, (1280, 720, "best_effort"): 200}[
        (width, height, reliability)]
    stream = subprocess.run(
        [sys.executable, "-m", "viewseg_ros.camera_stream", "--ros-args", "-p", f"width:={width}",
         "-p", f"height:={height}", "-p", f"reliability:={reliability}", "-p", f"views:={STREAM_VIEWS}",
         "-p", "frames_per_view:=4", "-p", "rate:=15.0", "-p", f"first_view:={first}"],
        env=env, capture_output=True, text=True, timeout=120)
    assert stream.returncode == 0, stream.stderr
    summary = json.loads(stream.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 4 * STREAM_VIEWS
    time.sleep(1.0)
    after = node_diagnostics(env)
    admitted = int(after["keyframes_admitted"]) - int(before["keyframes_admitted"])
    assert admitted >= 0.75 * STREAM_VIEWS, (f"{admitted} of {STREAM_VIEWS} views became keyframes at {width}x{height} "
                                             f"{reliability}; stream {summary}; node counters that changed "
                                             f"{counter_changes(before, after)}; node log:\n{log.read_text()[-3000:]}")


def test_a_5hz_camera_with_a_new_view_every_frame_keeps_every_view(node_process):
    """Issue 16: 20 distinct views at 5 Hz, one frame each, became 14 keyframes when the time
    floor (0.2 s) equalled the frame period; admission is by pose novelty now."""
    env, log = node_process
    before = node_diagnostics(env)
    stream = subprocess.run(
        [sys.executable, "-m", "viewseg_ros.camera_stream", "--ros-args", "-p", "width:=160", "-p", "height:=120",
         "-p", "reliability:=reliable", "-p", "views:=20", "-p", "frames_per_view:=1", "-p", "rate:=5.0",
         "-p", "first_view:=300"], env=env, capture_output=True, text=True, timeout=120)
    assert stream.returncode == 0, stream.stderr
    time.sleep(1.0)
    after = node_diagnostics(env)
    admitted = int(after["keyframes_admitted"]) - int(before["keyframes_admitted"])
    assert admitted >= 19, (f"{admitted} of 20 views became keyframes; stream {stream.stdout.strip()}; node counters "
                            f"that changed {counter_changes(before, after)}; node log:\n{log.read_text()[-3000:]}")
    received = int(after["received_image"]) - int(before["received_image"])
    sent = 20 + json.loads(stream.stdout.strip().splitlines()[-1])["lead_in_frames"]
    assert admitted <= received <= sent, f"received_image moved by {received} for {sent} images, {admitted} admitted"


def test_camera_stream_without_a_subscriber_says_so_and_publishes_nothing():
    """The stream waits for image, CameraInfo and /tf subscribers (a best-effort writer drops
    frames published before the match); with none it exits 3 after its timeout, naming them."""
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(random.randint(221, 232)))
    t0 = time.monotonic()
    stream = subprocess.run(
        [sys.executable, "-m", "viewseg_ros.camera_stream", "--ros-args", "-p", "width:=64", "-p", "height:=48",
         "-p", "views:=2", "-p", "subscriber_timeout_s:=1.0", "-r", "image:=nobody_listens"],
        env=env, capture_output=True, text=True, timeout=120)
    assert stream.returncode == 3, stream.stderr
    assert "no subscriber on /nobody_listens, /camera_info, /tf after 1 s" in stream.stderr
    assert stream.stdout.strip() == "" and time.monotonic() - t0 >= 1.0
