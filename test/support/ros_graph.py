"""Helpers for tests that run real rclpy nodes: a background executor with a client node
(:class:`Graph`), polling with a deadline, parameter overrides, a tiny random checkpoint
and RenderView requests. On ``sys.path`` through pytest.ini's ``pythonpath``."""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from viewseg_ros.conversions import make_camera_info, matrix_to_pose_stamped
from viewseg_ros.executor import SubmitOnceExecutor


def params(mapping: dict) -> list[Parameter]:
    return [Parameter(name, value=value) for name, value in mapping.items()]


def lifecycle_transition(g: "Graph", label: str, name: str) -> bool:
    """Node ``name``'s ~/change_state with a transition label (configure, activate, deactivate,
    cleanup, shutdown), as nav2_lifecycle_manager drives it: whether it succeeded."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(label=label))
    return g.call(f"{name}/change_state", request, timeout=60.0, srv_type=ChangeState).success


def wait_for(predicate, timeout: float, what: str, poll: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Graph:
    """Nodes spinning in a background multi-threaded executor, plus a client node. The
    executor is the one ``viewseg_node`` runs on by default (viewseg_ros/executor.py).

    Entities made on the spun nodes (clients, test subscriptions and publishers) live until
    :meth:`close`: destroying one while the executor thread waits on it can kill that thread
    (rclpy raises InvalidHandle from ``add_to_wait_set``; seen in CI, after which every
    later service call timed out).
    """

    def __init__(self, domain_id: int | None = None):
        self.context = Context()
        self._clients = {}
        rclpy.init(context=self.context, domain_id=domain_id)
        self.executor = SubmitOnceExecutor(num_threads=4, context=self.context)
        self.client = Node("viewseg_test_client", context=self.context)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def add(self, node):
        self.executor.add_node(node)
        return node

    def call(self, service: str, request, timeout: float = 30.0, srv_type=None):
        """Call ``service`` (of ``srv_type``, default viewseg_interfaces/RenderView) and wait."""
        from viewseg_interfaces.srv import RenderView

        if service not in self._clients:
            self._clients[service] = self.client.create_client(srv_type or RenderView, service)
        client = self._clients[service]
        wait_for(client.service_is_ready, 10.0, f"service {service}")
        future = client.call_async(request)
        wait_for(future.done, timeout, f"a response from {service}")
        return future.result()

    def close(self):
        # The nodes are listed first: Executor.shutdown forgets them. The spin thread is joined
        # before the nodes and the context go; destroying them under a spin still waiting on
        # them raised "context is not valid" in that thread (a warning in a CI run).
        nodes = self.executor.get_nodes()
        self.executor.shutdown(timeout_sec=5)
        self.thread.join(timeout=10)
        for node in nodes:
            node.destroy_node()
        self.context.try_shutdown()


def resend(send, arrived, what: str, tries: int = 3, timeout: float = 5.0) -> bool:
    """``send(attempt)``, then wait up to ``timeout`` s for ``arrived()``; again, up to ``tries``
    times. Camera topics are best effort, and a loaded machine loses messages: a test that
    needs one to arrive sends it again instead of failing on transport. Whether it arrived."""
    for attempt in range(tries):
        send(attempt)
        try:
            wait_for(arrived, timeout, what)
            return True
        except AssertionError:
            continue
    return False


def diagnostics_values(g: Graph, checkpoint: str | None = None, until=None) -> dict[str, str]:
    """A /diagnostics status composed after this call, as a dict: the second one to arrive (the
    first may have been composed before the call, with the state the test just changed not yet
    in it; a clean-clone CI run read such a stale one). ``g.diagnostics`` is the list a
    subscription of the test fills. ``checkpoint``: only statuses of the node that loaded that
    file (/diagnostics is one topic for every node of the test's domain). ``until``: the first
    such status for which ``until(values)`` holds (a state the node reports over a time window)."""
    def as_dict(message) -> dict[str, str]:
        status = message.status[0]
        level = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)
        return {"level": level, "message": status.message, **{kv.key: kv.value for kv in status.values}}

    seen = len(g.diagnostics)
    found: list[dict[str, str]] = []

    def arrived() -> bool:
        found[:] = [d for d in map(as_dict, g.diagnostics[seen:])
                    if checkpoint is None or d.get("checkpoint") == checkpoint][1:]
        if until is not None:
            found[:] = [d for d in found if until(d)]
        return bool(found)

    wait_for(arrived, 10.0, "a /diagnostics status" + ("" if until is None else " with the expected state"))
    return found[0] if until is not None else found[-1]


def tiny_checkpoint(path: Path, **changes) -> Path:
    """A randomly initialised small ViewSeg saved with the model's own writer. It reads source
    colours (with non-zero colour weights), so the node's keyframe images take part.
    ``changes``: other ModelConfig values (e.g. ``unseen_points="extrapolate"``)."""
    import torch

    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    from viewseg_core.model.weights import save_model

    torch.manual_seed(0)
    config = ModelConfig(**{**dict(encoder="deeplabv3plus_resnet18", feature_dim=16, hidden_dim=32, n_blocks=1,
                                   n_head_blocks=1, n_harmonic_xyz=4, n_harmonic_dir=2, num_coarse=8, num_fine=4,
                                   view_pooling="mean_var", source_rgb=True), **changes})
    model = ViewSeg(config)
    with torch.no_grad():
        for field in (model.renderer.coarse, model.renderer.fine):
            field.colour_proj.weight.normal_(0.0, 1.0)
    return save_model(model, path)


def tiny_rgbd_checkpoint(path: Path) -> Path:
    """:func:`tiny_checkpoint` as an RGB-D model: it reads source depth, samples around it and
    lets it carve free space (the shipped RGB-D model's options)."""
    return tiny_checkpoint(path, source_depth=True, depth_guided=True, depth_evidence=True)


def render_request(c2w: np.ndarray, frame: str = "map", width: int = 40, height: int = 30, stamp_ns: int = 0,
                   K: np.ndarray | None = None, camera_frame: str = ""):
    from viewseg_interfaces.srv import RenderView

    request = RenderView.Request()
    request.pose = matrix_to_pose_stamped(c2w, frame, stamp_ns)
    if K is not None:
        request.camera_info = make_camera_info(K, width, height, frame_id=camera_frame)
    else:
        request.camera_info.width, request.camera_info.height = width, height
        request.camera_info.header.frame_id = camera_frame
    return request


def turned(c2w: np.ndarray, yaw_deg: float) -> np.ndarray:
    """``c2w`` turned ``yaw_deg`` about the world vertical through its own centre."""
    yaw = np.radians(yaw_deg)
    turn = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    out = c2w.copy()
    out[:3, :3] = turn @ c2w[:3, :3]
    return out


class PosedCamera:
    """A camera driven by a test: publishes TF (map -> ``frame``, on ``tf_topic``), CameraInfo,
    Image and, with ``depth_topic``, a depth image, at poses and stamps the test chooses, from
    the graph's client node. Waits until the node under test subscribes to each."""

    def __init__(self, graph: Graph, K: np.ndarray, frame: str, depth_topic: str = "", namespace: str = "",
                 tf_topic: str = "/tf"):
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage

        node = graph.client
        self.K, self.frame = np.asarray(K, dtype=np.float64), frame
        self.width, self.height = int(round(2 * (self.K[0, 2] + 0.5))), int(round(2 * (self.K[1, 2] + 0.5)))
        prefix = f"{namespace}/" if namespace else ""
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        self.tf = node.create_publisher(TFMessage, tf_topic, 100)
        self.info = node.create_publisher(CameraInfo, prefix + "camera_info", qos_profile_sensor_data)
        self.image = node.create_publisher(Image, prefix + "image", reliable)
        self.depth = node.create_publisher(Image, prefix + depth_topic, reliable) if depth_topic else None
        self.rng = np.random.default_rng(0)
        publishers = [self.tf, self.info, self.image] + ([self.depth] if self.depth else [])
        wait_for(lambda: all(pub.get_subscription_count() for pub in publishers), 10.0,
                 "the node to subscribe to the test camera")

    def publish(self, c2w: np.ndarray, stamp_ns: int, K_info: np.ndarray | None = None,
                depth: np.ndarray | None = None, depth_encoding: str = "32FC1", depth_frame: str | None = None,
                depth_delay_s: float = 0.0, rgb: np.ndarray | None = None, info_fields: dict | None = None,
                parent: str = "map") -> None:
        """TF (``parent`` -> the camera frame: ``c2w``), CameraInfo and a colour image (``rgb``,
        else random) at ``stamp_ns``; then ``depth`` (if given, after ``depth_delay_s``) with the
        same stamp. ``info_fields`` overrides CameraInfo fields (``d``, ``distortion_model``, ``p``...)."""
        import time

        from tf2_msgs.msg import TFMessage

        from viewseg_ros.conversions import matrix_to_transform_stamped, numpy_to_image

        self.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(c2w, parent, self.frame, stamp_ns)]))
        info = make_camera_info(self.K if K_info is None else K_info, self.width, self.height,
                                frame_id=self.frame, stamp_ns=stamp_ns)
        for name, value in (info_fields or {}).items():
            setattr(info, name, value)
        self.info.publish(info)
        if rgb is None:
            rgb = self.rng.integers(0, 256, (self.height, self.width, 3), dtype=np.uint8)
        self.image.publish(numpy_to_image(rgb, "rgb8", frame_id=self.frame, stamp_ns=stamp_ns))
        if depth is not None:
            time.sleep(depth_delay_s)
            self.depth.publish(numpy_to_image(depth, depth_encoding, frame_id=depth_frame or self.frame,
                                              stamp_ns=stamp_ns))


class WallWalk:
    """A depth camera walking towards a wall (the RGB-D node tests): views 1 m apart along
    their optical axis (+x), each one novel, a 32x24 camera with a 70 degree hfov, and the
    wall across the path at x = WALL_X, facing them."""

    W, H = 32, 24
    WALL_X = 6.0

    @classmethod
    def K(cls) -> np.ndarray:
        from viewseg_core.cameras import K_from_hfov

        return K_from_hfov(70.0, cls.W, cls.H)

    @staticmethod
    def pose(index: int) -> np.ndarray:
        from viewseg_ros.camera_stream import view_pose

        return view_pose(index, 1.0, 0.0)

    @classmethod
    def depth(cls, index: int) -> np.ndarray:
        """What view ``index``'s depth camera measures: the wall (planar depth WALL_X - x), with
        a sensor hole."""
        depth = np.full((cls.H, cls.W), cls.WALL_X - cls.pose(index)[0, 3], np.float32)
        depth[:3, -3:] = np.nan
        return depth

    @classmethod
    def feed(cls, g: Graph, views: int, depth: bool, first: int = 1, stamp_offset_s: int = 0) -> None:
        """Publish views ``first``..``views`` on ``g.camera`` (with the wall's depth when ``depth``),
        stamped ``stamp_offset_s + 100 * index`` s (+ the attempt), until ``g.node`` has admitted
        each as a keyframe (each sent at most 3 times)."""
        for index in range(first, views + 1):
            before = g.node.keyframes.admitted
            assert resend(lambda attempt: g.camera.publish(cls.pose(index),
                                                           (stamp_offset_s + 100 * index + attempt) * 10**9,
                                                           depth=cls.depth(index) if depth else None),
                          lambda: g.node.keyframes.admitted > before, f"view {index} to become a keyframe",
                          timeout=3.0), f"view {index} never became a keyframe (sent 3 times)"

    @classmethod
    @contextlib.contextmanager
    def rig(cls, folder: Path, namespace: str, views: int = 0, diagnostics: bool = False, **node_params):
        """A Graph with an RGB-D ``viewseg`` node in ``namespace`` (a tiny RGB-D checkpoint in
        ``folder``, keyframes at the walk's camera size, no coverage floor, ``node_params`` on
        top) and its wall-walk camera (``g.camera``, frame ``<namespace>_optical``), fed
        ``views`` views; with ``diagnostics``, ``g.diagnostics`` collects /diagnostics. Closed
        on exit."""
        from diagnostic_msgs.msg import DiagnosticArray

        from viewseg_ros.node import ViewSegNode

        g = Graph()
        try:
            g.checkpoint = node_params.pop("checkpoint", None) or tiny_rgbd_checkpoint(Path(folder) / "rgbd.pt")
            g.node = g.add(ViewSegNode(context=g.context, namespace=namespace, parameter_overrides=params({
                "checkpoint": str(g.checkpoint), "device": "cpu", "depth_topic": "depth", "keyframes.width": cls.W,
                "keyframes.height": cls.H, "query.min_coverage": 0.0, **node_params})))
            if diagnostics:
                g.diagnostics = []
                g.client.create_subscription(DiagnosticArray, "/diagnostics", g.diagnostics.append, 10)
            g.camera = PosedCamera(g, cls.K(), f"{namespace}_optical", depth_topic=node_params.get("depth_topic", "depth"),
                                   namespace=namespace)
            cls.feed(g, views, depth=bool(node_params.get("depth_topic", "depth")))
            yield g
        finally:
            g.close()
