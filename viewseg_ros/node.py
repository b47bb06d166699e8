"""The ``viewseg`` ROS 2 node: posed keyframes in, semantics and depth at any camera pose out.

Contract: design.md, "ROS 2 interface". In short:

- Subscribes ``image`` (QoS from ``image_qos.*``; best effort by default, which matches
  best-effort and reliable cameras; or its ``/compressed`` transport, ``image_transport``)
  + ``camera_info`` (sensor-data QoS) and ``/tf`` +
  ``/tf_static``. Each image's optical-frame pose in ``fixed_frame`` is looked up at its stamp;
  an image whose TF has not arrived yet waits in a bounded queue (``tf_pending_max``) for up to
  ``tf_wait_s`` without blocking the images behind it (under heavy image traffic TF was
  measured arriving ~1 s late). A camera whose CameraInfo has lens distortion is undistorted
  onto the pinhole of its ``p`` first (``rectification``, :mod:`viewseg_core.rectify`; colour
  bilinear, registered depth nearest). Frames that pass the keyframe rule
  (:mod:`viewseg_ros.keyframes`) are resized to the working size, encoded ONCE and kept with
  their encoder features: a query never re-encodes a keyframe. Encoding has its own lock:
  keyframe intake never waits for a render. Several cameras (``cameras``: their namespaces,
  :mod:`viewseg_ros.camera_input`) each get these subscriptions and their own calibration
  and TF queue, and feed the one keyframe buffer.
- Service ``~/render_view`` (viewseg_interfaces/srv/RenderView) and topic mode (``~/query``
  PoseStamped -> ``~/semantic``, ``~/semantic_color``, ``~/depth``, ``~/confidence``,
  ``~/camera_info``): transform the query pose into ``fixed_frame``, pick
  ``query.num_sources`` keyframes (:func:`viewseg_core.source_selection.select_views`), render
  with the ``query.preset`` sampling (:func:`viewseg_core.model.fast.render_query`; default
  ``fast``: 8 + 8 samples, the fine pass skipping empty space).
- Bounded queries. At most ``query.max_in_flight`` queries are served or waiting at once;
  one more is answered at once with ``success=false``, "busy (N in flight)". A query whose
  estimated cost (rays x points per ray x views x the measured seconds per point-view) exceeds
  ``query.timeout_s`` is refused before rendering; a render that outlives ``query.timeout_s``
  is abandoned before its next field call and answered with ``success=false``. Every request is answered.
- Honest confidence. A query whose frustum no keyframe sees (coverage below
  ``query.min_coverage``; a point deeper than ``query.max_source_depth`` in a keyframe does
  not count as seen) is refused with the coverage found. Pixels whose rendered surface no
  selected keyframe sees get confidence 0, label unknown and depth NaN (with
  ``query.unseen_pixels: extrapolated``, confidence 0 and the model's label and depth: a best
  guess a planner can tell from knowledge).
- ``/diagnostics``: keyframe count and bytes, device, last latency, drop and refusal counters,
  image delivery against the camera's CameraInfo rate, clock jumps and pose jumps.
- A lifecycle node (``managed``): unmanaged it configures and activates itself at start;
  managed it waits for a lifecycle manager, admits keyframes and answers queries only while
  active, and frees the model and keyframes at cleanup (docs/ros.md, "Lifecycle").
- SLAM loop closures (``pose_graph.topic``, :mod:`viewseg_ros.pose_graph`): each keyframe also
  keeps its pose in ``pose_graph.odom_frame``, and every optimised trajectory (nav_msgs/Path
  of body poses in ``fixed_frame``) re-poses the keyframes it covers with the ``map -> odom``
  it implies at their stamps.

Output frame and stamp. The query pose is that of the query camera's optical frame, which
has no name in TF of its own, so the output ``frame_id`` is, in order: the request's
``camera_info.header.frame_id`` when set (the client names its virtual camera); the pose's
``header.frame_id`` when the pose is the identity (the query camera IS that frame, e.g.
"render from camera_optical"); else the parameter ``query.frame_id``. The stamp is the
pose's stamp, or for stamp 0 ("latest") the TF time that was used (now, if all static).

Bad input never takes the node down: malformed images and CameraInfo that is uncalibrated or
no usable pinhole (fx, fy <= 0, principal point far outside the image) are dropped with a
throttled warning (and counted in /diagnostics); a bad query gets ``success=false`` and a
one-line message saying what was wrong. A clock that jumps back by more than
``clock_jump_s`` on /tf or the images (a bag loop, a simulator restart) resets the TF history
and the keyframe time state, logs once and is counted: intake resumes at once.

Run: ``python -m viewseg_ros.node --ros-args --params-file config/viewseg.yaml`` or
``viewseg_node``; the model is loaded and warmed up before the node logs "ready".
"""
from __future__ import annotations

import collections
import math
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from viewseg_core.cameras import K_from_camera_info, check_pinhole, resize_intrinsics
from viewseg_core.classes import IGNORE_LABEL, PALETTE, colorize
from viewseg_core.confidence import ConfidenceCalibration
from viewseg_core.cpu_allocator import HeapReleaser, keep_freed_memory, release_freed_memory, \
    status as cpu_allocator_status
from viewseg_core.data.records import View
from viewseg_core.depth_registration import accumulated_points, drop_occluded, register_depth, register_points
from viewseg_core.lidar_deskew import offset_ns, place_cloud, sweep_origin
from viewseg_core.model.fast import PRESETS, QueryPreset, RenderCancelled, check_amp, render_query, render_query_stats, \
    trained_preset
from viewseg_core.model.depth_guide import free_path_image
from viewseg_core.model.prepared_cache import PreparedCache
from viewseg_core.model.weights import load_model
from viewseg_core.rectify import image_camera_to_world, rotated_frame
from viewseg_core.source_selection import SourceSelectionConfig, pixel_coverage, select_views
from viewseg_ros.conversions import (COLOR_ENCODINGS, any_depth_to_metres, calibration_key, camera_info_to_pinhole,
                                     camera_poses_to_pose_array,
                                     colour_image_to_numpy, is_compressed, make_camera_info,
                                     make_point_cloud, numpy_to_image, ns_to_time, point_cloud_sweep,
                                     pose_to_matrix,
                                     time_to_ns)
from viewseg_ros.camera_input import (PER_CAMERA_SETTINGS, STREAM_TOPICS, CameraInput, PendingImage, camera_names,
                                     make_camera_inputs, nearest_by_stamp, parse_camera_namespaces)
from viewseg_ros.executor import SubmitOnceExecutor
from viewseg_ros.keyframe_store import SavedOdometry, odometry_usable, read_keyframes, read_odometry, save_keyframes
from viewseg_ros.keyframes import NS_PER_S, KeyframeBuffer, KeyframeConfig, is_novel, pose_difference
from viewseg_ros.node_parameters import (KEYFRAME_RULE_PARAMETERS, LIVE_PARAMETERS, PARAMETERS, SAMPLING_PARAMETERS,
                                         SELECTION_PARAMETERS, check_setting, coerce, validate)
from viewseg_ros.pose_graph import (OdometryTrail, OdometryUnavailable, PoseGraphCorrector, apply_pose_graph,
                                   nodes_from_path, samples_near_all)
from viewseg_ros.tf_buffer import ExtrapolationError, TfListener, TransformBuffer, TransformError

NODE_NAME = "viewseg"
KEYFRAME_POSES_PERIOD_S = 0.5  # how often ~/keyframe_poses is brought up to date
# Recent point clouds are kept for pairing with images by stamp for this long (seconds, beyond
# pointcloud_accumulate_s) ...
CLOUD_HISTORY_S = 2.0
# ... and at most this many of their points (the oldest go first; the newest cloud stays).
CLOUD_HISTORY_POINTS = 4_000_000
ODOMETRY_TRAIL_PERIOD_S = 0.1  # how often the body's odometry pose is sampled for the pose graph
# A keyframe folder keeps the odometry trail this much beyond pose_graph.max_gap_s around each
# keyframe (a node up to max_gap_s away may need it, and the trail interpolates across 1 s).
SAVED_ODOMETRY_MARGIN_S = 1.0
SAVED_ODOMETRY_MAX_SAMPLES = 1_000_000
REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = Path("checkpoints") / "demo.pt"
WARN_PERIOD_S = 5.0
MIN_COST_SAMPLE = 50_000  # point-views a render needs to update the cost model
# The cost model refuses queries only while a real render updated it this recently. A stale
# model (only the warm-up, or a machine that was loaded earlier) lets the next query run:
# it is abandoned at the deadline if it is really too slow, and either way updates the model,
# so a wrong estimate can never lock a query size out for good.
COST_MODEL_TTL_S = 120.0

def _field_impl_text(stats) -> str:
    """Which field implementation the last render used, with the reason ``auto`` fell back."""
    note = getattr(stats, "field_note", "")
    return f"{stats.field_impl} ({note})" if note else str(stats.field_impl)


class QueryError(ValueError):
    """A query the node refuses; the message goes to the client as is."""


@dataclass
class QueryResult:
    """One rendered query. Images are [height, width]."""

    labels: np.ndarray          # uint8/uint16 class ids, 255/65535 = unknown
    depth: np.ndarray           # float32 metres, NaN = empty
    confidence: np.ndarray      # float32 in [0, 1]
    K: np.ndarray               # [3, 3] of the query camera
    width: int
    height: int
    frame_id: str
    stamp_ns: int
    keyframe_ids: list[int]
    keyframe_stamps_ns: list[int]
    render_s: float
    total_s: float = 0.0
    timings: dict = field(default_factory=dict)
    note: str = ""  # a success with a caveat (an RGB-D model without some source depth)
    unseen_share: float = 0.0  # of the rendered pixels, those whose surface no selected keyframe sees
    unverified_share: float = 0.0  # of the rendered pixels, those query.min_free_path left without depth


def resolve_checkpoint(value: str) -> Path:
    """The checkpoint file for parameter ``checkpoint``; FileNotFoundError naming every place tried.

    Empty = the demo checkpoint ``checkpoints/demo.pt``, looked up in the working directory,
    the package's share folder in the ament index (a colcon install prefix), the source tree
    and ``<sys.prefix>/share/viewseg_ros``; a relative path is tried against the working
    directory, then the source tree.
    """
    if value:
        path = Path(value).expanduser()
        candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    else:
        candidates = [Path.cwd() / DEMO_CHECKPOINT]
        try:
            from ament_index_python.packages import get_package_share_directory

            candidates.append(Path(get_package_share_directory("viewseg_ros")) / DEMO_CHECKPOINT)
        except (ImportError, LookupError, OSError, ValueError):
            pass  # not installed through ament (a plain checkout): the places below
        candidates += [REPO_ROOT / DEMO_CHECKPOINT, Path(sys.prefix) / "share" / "viewseg_ros" / DEMO_CHECKPOINT]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    what = f"checkpoint {value!r}" if value else "the demo checkpoint (parameter checkpoint is empty)"
    raise FileNotFoundError(f"{what} not found; tried {', '.join(str(c) for c in dict.fromkeys(candidates))}. "
                            f"Train one (README: 'train the demo model') or set the checkpoint parameter "
                            f"to a viewseg-model file")


def resolve_device(value: str) -> torch.device:
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError as error:
        raise ValueError(f"parameter device: {value!r} is not a torch device ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"parameter device: {value!r} asked for, but CUDA is not available")
    return device


# PALETTE as a 256-entry table (ids 37-255 black): one np.take instead of colorize's masked
# indexing, 10x faster on the 76800 pixels of a 320x240 query (what the service adds counts).
_COLOR_LUT = np.zeros((256, 3), np.uint8)
_COLOR_LUT[:len(PALETTE)] = PALETTE


def colorize_fast(labels: np.ndarray) -> np.ndarray:
    """:func:`viewseg_core.classes.colorize` for uint8 labels via a lookup table; other dtypes go to it."""
    if labels.dtype != np.uint8:
        return colorize(labels)
    return np.take(_COLOR_LUT, labels, axis=0)


def _is_identity(matrix: np.ndarray) -> bool:
    return bool(np.allclose(matrix, np.eye(4), atol=1e-9))


class ViewSegNode(LifecycleNode):
    """See the module docstring. ``kwargs`` go to rclpy's Node (e.g. parameter_overrides).

    A lifecycle node either way. With ``managed: false`` (the default) it configures and
    activates itself here, raising what configuring raised (a bad parameter, a missing
    checkpoint), so that it is serving when constructed. With ``managed: true`` it stays
    unconfigured until a lifecycle manager asks: configure loads the model and keyframes and
    creates every subscription, service and timer; activate admits keyframes and answers
    queries; deactivate stops both (and waits for renders in flight); cleanup saves to
    ``keyframes.save_path``, then frees the model and keyframes and destroys what configure made.
    """

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._declared_defaults: dict[str, Any] = {}
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description, dynamic_typing=True))
        # Read and checked now in both modes, so that a bad value stops the process at start;
        # configure reads them again (a manager may have set some while unconfigured).
        self.params = self._read_parameters()
        self.managed = self.params["managed"]
        self.ready = False   # configured: model, keyframe buffer and ROS interfaces exist
        self.active = False  # admitting keyframes and answering queries
        self.lifecycle_state = "unconfigured"
        self._configure_error: BaseException | None = None
        self._configured_entities: list = []
        self._parameter_callback = None
        self._gate = threading.Lock()   # ready and the count of guarded callbacks running (_guarded)
        self._gate_users = 0
        # One /diagnostics publisher for the node's life: while not configured it still says so (the
        # configured node's status has its own timer, made at configure).
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.params["diagnostics_period_s"], self._publish_lifecycle_status,
                          callback_group=MutuallyExclusiveCallbackGroup())
        if self.managed:
            self.get_logger().info("unconfigured (managed: true): waiting for a lifecycle manager to configure "
                                   "and activate the node")
        else:
            # Judged by what the callbacks did, not by the transitions' result: a SIGINT during
            # start (ros2 launch's Ctrl-C) makes the state machine's bookkeeping fail after a
            # callback succeeded, and the node must then still exist to save its keyframes.
            self.trigger_configure()
            if not self.ready:
                error = self._configure_error
                self._configure_error = None
                raise error if error is not None else RuntimeError("configure failed")
            self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: Any) -> Any:
        self._configure_error = None
        before = {id(entity) for entity in self._entities()}
        try:
            self.params = self._read_parameters()
            self._configure(self.params)
        except Exception as error:
            self._configure_error = error
        # What configure made, all of it or up to a failure: cleanup (or the release below) destroys it.
        self._configured_entities = [entity for entity in self._entities() if id(entity) not in before]
        if self._configure_error is not None:
            self._release()
            if self.managed:
                self.get_logger().error(f"configure failed, still unconfigured: {self._configure_error}")
            return TransitionCallbackReturn.FAILURE
        self.lifecycle_state = "inactive"
        if self.managed:
            self.get_logger().info("configured (inactive): activate to admit keyframes and answer queries")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: Any) -> Any:
        self.active = True
        self.lifecycle_state = "active"
        self._log_ready()
        if self.managed:
            self.get_logger().info("active: admitting keyframes and answering queries")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: Any) -> Any:
        self._stop_serving()
        self.lifecycle_state = "inactive"
        self.get_logger().info("inactive: keyframe intake and queries stopped (kept keyframes stay)")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: Any) -> Any:
        self._close_gate()   # no callback runs from here on: the save below is the only one
        self.autosave("at cleanup")
        self._release()
        self.get_logger().info("cleaned up (unconfigured): model and keyframes freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: Any) -> Any:
        if self.ready:
            self._stop_serving()
            self._close_gate()
            self.autosave("at shutdown")
            self._release()
        self.lifecycle_state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: Any) -> Any:
        self.get_logger().error(f"a lifecycle transition from {state.label!r} failed: freeing the model and "
                                f"keyframes, back to unconfigured")
        self._stop_serving()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _guarded(self, callback: Callable, service: bool = False) -> Callable:
        """``callback`` as configure registers it: it runs only while the node is configured, and
        cleanup waits for the runs in progress before it frees what they use. A callback the
        executor had already queued when cleanup destroyed its entity would otherwise meet a
        freed model (an exception that stops the executor). A service is answered
        ``success=false`` instead."""
        def run(*args):
            with self._gate:
                if not self.ready:
                    if service:
                        response = args[-1]
                        response.success = False
                        response.message = f"not configured (lifecycle state {self.lifecycle_state!r})"
                        return response
                    return None
                self._gate_users += 1
            try:
                return callback(*args)
            finally:
                with self._gate:
                    self._gate_users -= 1
        return run

    def _publish_lifecycle_status(self) -> None:
        """/diagnostics while unconfigured or finalized: level WARN, the lifecycle state (the
        configured node publishes its full status instead)."""
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        with self._gate:
            if self.ready:
                return
        status = DiagnosticStatus(level=DiagnosticStatus.WARN, name=f"{self.get_name()}: keyframes and queries",
                                  message=f"{self.lifecycle_state} (lifecycle): no model loaded, no keyframes, no "
                                          f"queries; a lifecycle manager must configure and activate the node")
        status.values = [KeyValue(key="lifecycle", value=self.lifecycle_state), KeyValue(key="ready", value="False")]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def _entities(self) -> list:
        return [*self.subscriptions, *self.publishers, *self.services, *self.timers, *self.clients]

    def _stop_serving(self) -> None:
        """No new keyframe or query from now; a render in flight is let finish (it has its
        deadline), so that cleanup never frees a model under it."""
        self.active = False
        if not hasattr(self, "_stats_lock"):
            return   # never configured
        limit = time.monotonic() + self.params["query.timeout_s"] + 5.0
        while time.monotonic() < limit:
            with self._stats_lock:
                if self.in_flight == 0:
                    return
            time.sleep(0.01)
        self.get_logger().warning("stopped waiting for a render in flight")

    def _close_gate(self) -> None:
        """Not configured from now on for every guarded callback (:meth:`_guarded`); returns once
        those already running have finished."""
        self.active = False
        with self._gate:
            self.ready = False
        waited = time.monotonic()
        while True:
            with self._gate:
                if self._gate_users == 0:
                    return
            if time.monotonic() - waited > 5.0:
                self.get_logger().info("cleanup waits for a callback in progress", throttle_duration_sec=5.0)
            time.sleep(0.005)

    def _release(self) -> None:
        """Undo configure: the set-parameters check, every entity configure made, the model,
        keyframes, caches and camera queues. The declared parameters stay (configure reads
        them again)."""
        self._close_gate()
        self.lifecycle_state = "unconfigured"
        if self._parameter_callback is not None:
            self.remove_on_set_parameters_callback(self._parameter_callback)
            self._parameter_callback = None
        destroy = {"Subscription": self.destroy_subscription, "Publisher": self.destroy_publisher,
                   "Service": self.destroy_service, "Timer": self.destroy_timer, "Client": self.destroy_client}
        for entity in reversed(self._configured_entities):
            for kind, method in destroy.items():
                if any(cls.__name__ == kind for cls in type(entity).__mro__):
                    method(entity)
                    break
        self._configured_entities = []
        had_cuda = getattr(self, "device", None) is not None and self.device.type == "cuda"
        for name in ("model", "keyframes", "prepared_cache", "tf", "pubs", "points_pub", "calibration", "cameras",
                     "odometry_trail", "saved_odometry", "pose_graph", "clouds"):
            if hasattr(self, name):
                setattr(self, name, None)
        if had_cuda:
            torch.cuda.empty_cache()
        # viewseg_node keeps freed memory for reuse (keep_freed_memory): hand it back, or the
        # freed model and keyframes would stay in the resident set.
        import gc

        gc.collect()
        release_freed_memory()

    def _configure(self, p: dict[str, Any]) -> None:
        """Everything the node serves with: the model, the keyframe buffer (and
        ``keyframes.load_path``), and every subscription, service, publisher and timer."""
        self._warned: dict[str, float] = {}
        # Counters are written from several executor threads: every update holds _stats_lock.
        self._stats_lock = threading.Lock()
        self.drops: dict[str, int] = {"image": 0, "camera_info": 0, "tf": 0, "query": 0, "depth": 0,
                                      "keyframe_save": 0, "pose_graph": 0}
        self.last_drop: dict[str, str] = {}
        self.events: dict[str, int] = {"busy": 0, "timeouts": 0, "refused_budget": 0, "refused_coverage": 0,
                                       "clock_jumps": 0, "pose_jumps": 0, "keyframe_saves": 0, "keyframe_loads": 0,
                                       "keyframe_clears": 0, "refused_inactive": 0, "pointclouds_deskewed": 0,
                                       "deskew_skipped": 0, "accumulated_clouds_unplaced": 0,
                                       "accumulated_points_stale": 0, "keyframes_changed": 0,
                                       "keyframes_admitted_for_change": 0}
        self.keyframes_restored = 0  # taken from keyframe folders since start
        self._autosaved: tuple[int, ...] | None = None  # keyframe ids of the last save to keyframes.save_path
        self.last_event: dict[str, str] = {}
        self.not_admitted: dict[str, int] = {"too_soon": 0, "duplicate": 0}  # frames posed but not kept
        self.warnings_logged = 0
        self.queries = 0
        self.in_flight = 0
        self._last_clock_jump = -math.inf  # monotonic time of the last reset (TF and images both see one)
        self.keyframes_without_depth = 0
        # Point clouds (pointcloud_topic) for pairing by stamp: (stamp_ns, frame_id, [N, 3] xyz,
        # [N] seconds of each point after stamp_ns or None: lidar_deskew).
        self.clouds: collections.deque = collections.deque()
        # (stamp_ns, frame_id) -> [N, 3] a kept cloud's points in fixed_frame, once TF placed all of
        # it (a cloud is placed once, whatever number of keyframes it serves).
        self._placed_clouds: dict[tuple[int, str], np.ndarray] = {}
        self.received_pointcloud = 0
        # SLAM corrections: the graph is read and applied under one lock (a clock jump resets it).
        self.pose_graph = PoseGraphCorrector(p["pose_graph.max_gap_s"]) if p["pose_graph.topic"] else None
        self.odometry_trail = OdometryTrail()
        # The odometry trail loaded keyframe folders kept (their graph nodes are older than this
        # run): apart from the live trail, whose hour-long window would push them out.
        self.saved_odometry = OdometryTrail(max_samples=SAVED_ODOMETRY_MAX_SAMPLES)
        self._pose_graph_lock = threading.Lock()
        self.pose_graph_updates = 0
        self.last_pose_graph = "no graph received yet"
        self.keyframes_without_odometry = 0
        window = max(1, int(p["camera_rate.window_s"] * 200))  # arrival times, bounded at 200 Hz
        self.cameras: list[CameraInput] = make_camera_inputs(p["cameras"], p, self.resolve_topic_name, window,
                                                             p["camera_overrides"])
        self._started = time.monotonic()
        self.last_latency_s = float("nan")
        self.last_render_s = float("nan")
        self.last_unseen_share = float("nan")
        self.last_unverified_share = float("nan")
        self.field_impl = "not yet rendered"
        self.precision = "not yet rendered"
        self.last_timings: dict[str, float] = {}
        self._working_hw: tuple[int, int] | None = (
            (p["keyframes.height"], p["keyframes.width"]) if p["keyframes.width"] and p["keyframes.height"] else None)

        # The model: loaded once, sample counts set once (never mutated while serving).
        if p["num_threads"] > 0:
            torch.set_num_threads(p["num_threads"])
        self.device = resolve_device(p["device"])
        self.checkpoint = resolve_checkpoint(p["checkpoint"])
        self.model = load_model(self.checkpoint, map_location=self.device).eval()
        if self._working_hw is None and all(self.model.config.source_size):
            # keyframes.width/height left at 0: the size the encoder was trained at, so that
            # features keep their trained scale (a camera of another size is resized to it).
            self._working_hw = tuple(self.model.config.source_size)
        self.preset = self._sampling_preset(p)
        self.selection, self.max_source_depth = self._selection_config(p)
        self.calibration, self.confidence_meaning = self._load_calibration(p["query.confidence_calibration"],
                                                                           self.preset)
        # Seconds per (point x view) of the field and points per ray: the cost model that refuses
        # a query that cannot finish in time. Seeded by the warm-up, then a running average of
        # real renders (a render's fixed overhead makes it err on the slow side for small ones).
        self._seconds_per_point_view = 0.0
        self._cost_updated = -math.inf  # monotonic time of the last update from a real render
        self._points_per_ray = self._dense_points_per_ray(self.preset)
        self.prepared_cache = PreparedCache(p["query.prepared_cache"])
        self.heap_releaser = HeapReleaser()
        self.keyframes = KeyframeBuffer(self._keyframe_config(p))
        # One render at a time (no oversubscribed CPU, bounded memory), and one encode at a
        # time; the two are separate so keyframe intake never waits behind a render.
        self._render_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        if p["warmup"]:
            self._warm_up()
        if p["keyframes.load_path"]:
            try:
                count, message = self.load_keyframes(p["keyframes.load_path"], replace=True)
            except ValueError as error:
                raise ValueError(f"parameter keyframes.load_path: {error}") from None
            self.get_logger().info(message)

        # ROS interfaces, only once the model is ready. Callback groups: TF never waits
        # behind an image that waits for TF, and a long render never blocks keyframes.
        from geometry_msgs.msg import PoseArray, PoseStamped
        from rclpy.qos import DurabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from std_srvs.srv import Trigger

        from viewseg_interfaces.srv import LoadKeyframes, RenderView, SaveKeyframes

        self._tf_group = MutuallyExclusiveCallbackGroup()
        self._frames_group = MutuallyExclusiveCallbackGroup()
        self._info_group = MutuallyExclusiveCallbackGroup()
        # Reentrant: a request beyond max_in_flight is answered 'busy' while others render, and
        # requests are taken off the middleware queue at once (a full queue loses them silently).
        self._query_group = ReentrantCallbackGroup()
        self.tf = TfListener(self, TransformBuffer(jump_back_s=p["clock_jump_s"]), callback_group=self._tf_group,
                             on_time_jump=self._guarded(lambda what: self._on_clock_jump("/tf", what)))
        image_qos = QoSProfile(depth=p["image_qos.depth"], history=HistoryPolicy.KEEP_LAST,
                               reliability=ReliabilityPolicy.BEST_EFFORT
                               if p["image_qos.reliability"] == "best_effort" else ReliabilityPolicy.RELIABLE)
        for camera in self.cameras:
            self._subscribe(camera, image_qos)
        if p["pointcloud_topic"]:   # one cloud for every camera: a LiDAR sees around the robot
            self.create_subscription(PointCloud2, p["pointcloud_topic"], self._guarded(self._on_pointcloud), image_qos,
                                     callback_group=self._frames_group)
        self.create_timer(0.02, self._guarded(self._retry_pending), callback_group=self._frames_group)
        service_qos = QoSProfile(depth=max(64, 4 * p["query.max_in_flight"]), history=HistoryPolicy.KEEP_LAST,
                                 reliability=ReliabilityPolicy.RELIABLE)
        self.create_service(RenderView, "~/render_view", self._guarded(self._on_render_view, service=True),
                            qos_profile=service_qos, callback_group=self._query_group)
        # Saving, loading and clearing keyframes: one at a time, never in the way of queries or intake.
        self._keyframe_io_group = MutuallyExclusiveCallbackGroup()
        self.create_service(SaveKeyframes, "~/save_keyframes", self._guarded(self._on_save_keyframes, service=True),
                            callback_group=self._keyframe_io_group)
        self.create_service(LoadKeyframes, "~/load_keyframes", self._guarded(self._on_load_keyframes, service=True),
                            callback_group=self._keyframe_io_group)
        self.create_service(Trigger, "~/clear_keyframes", self._guarded(self._on_clear_keyframes, service=True),
                            callback_group=self._keyframe_io_group)
        if p["keyframes.save_path"] and p["keyframes.save_period_s"] > 0:
            self.create_timer(p["keyframes.save_period_s"], self._guarded(lambda: self.autosave("periodic")),
                              callback_group=self._keyframe_io_group)
        latest = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        if self.pose_graph is not None:
            from nav_msgs.msg import Path as PathMessage

            self.create_subscription(PathMessage, p["pose_graph.topic"], self._guarded(self._on_pose_graph), latest,
                                     callback_group=MutuallyExclusiveCallbackGroup())
            self.create_timer(ODOMETRY_TRAIL_PERIOD_S, self._guarded(self._sample_odometry),
                              callback_group=self._tf_group)
        self.create_subscription(PoseStamped, "~/query", self._guarded(self._on_query), latest,
                                 callback_group=self._query_group)
        out_qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {name: self.create_publisher(Image, f"~/{name}", out_qos)
                     for name in ("semantic", "semantic_color", "depth", "confidence")}
        self.pubs["camera_info"] = self.create_publisher(CameraInfo, "~/camera_info", out_qos)
        self.points_pub = self.create_publisher(PointCloud2, "~/points", out_qos)
        self.create_timer(p["diagnostics_period_s"], self._guarded(self.publish_diagnostics),
                          callback_group=self._info_group)
        # Latched, so that RViz started later still shows where the keyframes are.
        self.keyframe_poses_pub = self.create_publisher(PoseArray, "~/keyframe_poses", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._shown_keyframes: list[tuple[int, View]] = []
        self.create_timer(KEYFRAME_POSES_PERIOD_S, self._guarded(self.publish_keyframe_poses),
                          callback_group=self._info_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._parameter_callback = self._on_set_parameters
        with self._gate:
            self.ready = True

    def _log_ready(self) -> None:
        """The "ready:" line, once the node serves (launch files and tests wait for it)."""
        p = self.params
        self.get_logger().info(
            f"ready: {self.model.config.encoder} from {self.checkpoint} on {self.device}, "
            f"sampling {self.preset.label}, "
            f"fixed frame {p['fixed_frame']!r}, images on {', '.join(c.image_subscription_topic for c in self.cameras)}"
            + (f", keyframe depth from point clouds on {self.resolve_topic_name(p['pointcloud_topic'])} "
               f"(depth_completion {self.depth_completion})" if p["pointcloud_topic"] else "")
            + (f", keyframes re-posed by the pose graph on {self.resolve_topic_name(p['pose_graph.topic'])} "
               f"(odometry frame {p['pose_graph.odom_frame']!r})" if self.pose_graph is not None else ""))

    def _subscribe(self, camera: CameraInput, image_qos: QoSProfile) -> None:
        """The topics of one camera; every callback is told which camera it serves."""
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        guarded = self._guarded
        self.create_subscription(CompressedImage if camera.image_transport == "compressed" else Image,
                                 camera.image_subscription_topic, guarded(lambda msg: self._on_image(camera, msg)),
                                 image_qos, callback_group=self._frames_group)
        if camera.depth_topic:
            self.create_subscription(CompressedImage if camera.depth_transport == "compressedDepth" else Image,
                                     camera.depth_subscription_topic, guarded(lambda msg: self._on_depth(camera, msg)),
                                     image_qos, callback_group=self._frames_group)
        if camera.depth_camera_info_topic:
            self.create_subscription(CameraInfo, camera.depth_camera_info_topic,
                                     guarded(lambda msg: self._on_depth_camera_info(camera, msg)),
                                     qos_profile_sensor_data, callback_group=self._info_group)
        self.create_subscription(CameraInfo, camera.camera_info_topic,
                                 guarded(lambda msg: self._on_camera_info(camera, msg)),
                                 qos_profile_sensor_data, callback_group=self._info_group)

    # ------------------------------------------------------------------ setup
    def _read_parameters(self) -> dict[str, Any]:
        """The node's parameters, typed and checked (ValueError naming the first bad one)."""
        values = {name: coerce(name, self.get_parameter(name).value) for name in PARAMETERS}
        values["cameras"] = parse_camera_namespaces(self.get_parameter("cameras").value)
        validate(values)
        values["camera_overrides"] = self._read_camera_overrides(values)
        return values

    def _read_camera_overrides(self, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """``camera.<name>.<setting>`` of each of several cameras (:mod:`viewseg_ros.camera_input`),
        declared with the node's own value as default: camera name -> the settings it changes.
        Checked as the node's own are, with the parameter's full name in the error."""
        overrides: dict[str, dict[str, Any]] = {}
        names = camera_names(values["cameras"])
        for name in names:
            if not name:
                continue
            own = {}
            for setting in PER_CAMERA_SETTINGS:
                default = values[setting]
                full = f"camera.{name}.{setting}"
                if self.has_parameter(full):
                    value = self.get_parameter(full).value
                    if value == self._declared_defaults.get(full):
                        value = default   # never set: it follows the node's value, which may have changed
                else:
                    descriptor = ParameterDescriptor(description=f"{setting} of camera {name} (default: the node's)",
                                                     dynamic_typing=True)
                    value = self.declare_parameter(full, default, descriptor).value
                    self._declared_defaults[full] = default
                try:
                    value = type(default)(value)
                except (TypeError, ValueError):
                    raise ValueError(f"parameter {full}: expected a {type(default).__name__}, got {value!r}") from None
                if value != default:
                    check_setting(full, setting, value)
                    own[setting] = value
            if own:
                overrides[name] = own
        return overrides

    @property
    def executor_threads(self) -> int:
        """Threads a MultiThreadedExecutor needs so that TF, images and a 'busy' answer always
        find a free one while max_in_flight queries wait or render."""
        return self.params["query.max_in_flight"] + 4

    @staticmethod
    def _dense_points_per_ray(preset: QueryPreset) -> float:
        """The cost model's points per ray before a render measures them: nothing skipped."""
        coarse = preset.coarse_samples
        return float(coarse + (coarse + preset.num_fine if preset.num_fine else 0))

    def _selection_config(self, p: dict[str, Any]) -> tuple[SourceSelectionConfig, float]:
        """(source selection settings, the depth up to which a keyframe sees) of parameters ``p``."""
        max_source_depth = p["query.max_source_depth"] or float(self.model.renderer.config.far)
        # 8 x 8 pixels x 6 depths (the library's default is 12 x 12 x 8): the cost grows with
        # keyframes x points, and at 64 keyframes this cuts selection from ~3.2 to ~1.5 ms on
        # one CPU core; the picked set differs only among near-tied views.
        try:
            return SourceSelectionConfig(num_sources=p["query.num_sources"], grid=p["query.selection_grid"],
                                         depth_samples=p["query.selection_depth_samples"],
                                         max_source_depth=max_source_depth), max_source_depth
        except ValueError as error:
            raise ValueError(f"parameters query.num_sources / query.selection_*: {error}") from None

    @staticmethod
    def _keyframe_config(p: dict[str, Any]) -> KeyframeConfig:
        return KeyframeConfig(
            min_translation=p["keyframes.min_translation"], min_rotation_deg=p["keyframes.min_rotation_deg"],
            min_interval_s=p["keyframes.min_interval_s"], refresh_after_s=p["keyframes.refresh_after_s"] or None,
            max_keyframes=p["keyframes.max_keyframes"], max_bytes=p["keyframes.max_bytes"],
            eviction=p["keyframes.eviction"], keep_recent=p["keyframes.keep_recent"],
            change_share=p["keyframes.change_share"])

    def _sampling_preset(self, p: dict[str, Any]) -> QueryPreset:
        """The QueryPreset every render uses: ``query.preset`` with the query.* overrides applied."""
        renderer = self.model.renderer
        name = p["query.preset"]
        if name == "auto":  # the guided preset needs the depth the model was trained to sample around
            name = "rgbd" if self.model.config.depth_guided and self.depth_sources else "fast"
        if name == "checkpoint":
            base = trained_preset(renderer)
        elif name in PRESETS:
            base = PRESETS[name]
        else:
            raise ValueError(f"parameter query.preset must be one of {['auto', 'checkpoint'] + sorted(PRESETS)}, "
                             f"got {name!r}")
        changes: dict[str, Any] = {}
        if p["query.num_coarse"] >= 0:
            if p["query.num_coarse"] == 0:
                raise ValueError("parameter query.num_coarse must be >= 1 (or -1 for the preset's)")
            changes["num_coarse"] = p["query.num_coarse"]
        if p["query.num_fine"] >= 0:
            if p["query.num_fine"] > 0 and renderer.fine is None:
                raise ValueError("parameter query.num_fine > 0, but the checkpoint has no fine field")
            changes["num_fine"] = p["query.num_fine"]
        elif renderer.fine is None and base.num_fine > 0:
            changes["num_fine"] = 0  # a coarse-only checkpoint: the preset's coarse pass alone
        if changes.get("num_fine") == 0:
            changes["fine_unexplained"] = False   # no fine pass left to restrict
        if p["query.skip_weight"] >= 0:
            changes["skip_weight"] = p["query.skip_weight"]
        if p["query.point_budget"] > 0:
            changes["point_budget"] = p["query.point_budget"]
        changes["field_impl"] = p["query.field_impl"]
        changes["amp"] = p["query.amp"]
        try:
            preset = replace(base, **changes)
            check_amp(preset, self.device)
        except ValueError as error:
            raise ValueError(f"parameters query.*: {error}") from None
        return preset

    def _on_set_parameters(self, parameters: list) -> Any:
        """A runtime change (`ros2 param set`, a parameter client): parameters of
        LIVE_PARAMETERS are checked as at start, then applied together; any other one of the
        node's is refused, naming it, since the node reads it once at start. A refused request
        changes nothing."""
        from rcl_interfaces.msg import SetParametersResult

        changes = {}
        for parameter in parameters:
            name = parameter.name
            if name not in PARAMETERS and not name.startswith("camera."):
                continue   # rclpy's own (use_sim_time, ...)
            if name not in LIVE_PARAMETERS:
                return SetParametersResult(successful=False, reason=(
                    f"{name} is read once at start: restart the node to change it (changeable while running: "
                    f"the parameters marked (live) in docs/ros.md, 'Parameters'; a managed node reads them all "
                    f"again at configure: cleanup, set, configure)"))
            try:
                changes[name] = coerce(name, parameter.value)
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
        if not changes:
            return SetParametersResult(successful=True)
        values = {**self.params, **changes}
        try:
            validate(values)
            preset = self._sampling_preset(values) if set(changes) & set(SAMPLING_PARAMETERS) else self.preset
            selection = self._selection_config(values) if set(changes) & set(SELECTION_PARAMETERS) else None
            keyframe_config = (self._keyframe_config(values) if set(changes) & set(KEYFRAME_RULE_PARAMETERS)
                               else None)
            calibration = (self._load_calibration(values["query.confidence_calibration"], preset)
                           if "query.confidence_calibration" in changes else None)
        except ValueError as error:
            reason = str(error)
            if "must both be" in reason:   # `ros2 param set` changes one at a time: say how to change both
                reason += " (on a running node: set both in one set_parameters_atomically request)"
            return SetParametersResult(successful=False, reason=reason)
        # Every new object is built: swap them in (a render in flight keeps what it took).
        if preset is not self.preset:
            self.preset, self._points_per_ray = preset, self._dense_points_per_ray(preset)
        if selection is not None:
            self.selection, self.max_source_depth = selection
        if keyframe_config is not None:
            self.keyframes.reconfigure(keyframe_config)
        if calibration is not None:
            self.calibration, self.confidence_meaning = calibration
        self.params = values
        self.get_logger().info("parameters changed: " + ", ".join(f"{k} = {v!r}" for k, v in changes.items())
                               + (f"; sampling {self.preset.label}" if set(changes) & set(SAMPLING_PARAMETERS) else ""))
        return SetParametersResult(successful=True)

    def _load_calibration(self, value: str, preset: QueryPreset) -> tuple[ConfidenceCalibration | None, str]:
        """(the confidence calibration of ``query.confidence_calibration``, what the confidence
        image means, for /diagnostics), for renders with ``preset``. A named file that is
        missing, malformed or fitted for another checkpoint is refused (ValueError: at start
        the node stops); with ``auto`` a stale file beside the checkpoint is skipped with a
        warning."""
        if value == "none":
            return None, "raw score (query.confidence_calibration: none)"
        path = self.checkpoint.with_name(f"{self.checkpoint.stem}.confidence.json") if value == "auto" else Path(value)
        if value == "auto" and not path.is_file():
            return None, f"raw score (no {path.name} beside the checkpoint)"
        try:
            calibration = ConfidenceCalibration.load(path)
            calibration.check_checkpoint(self.checkpoint)
        except (FileNotFoundError, ValueError) as error:
            if value != "auto":
                raise ValueError(f"parameter query.confidence_calibration: {error}") from None
            self.get_logger().warning(f"{path} not used, confidence is the raw score: {error}")
            return None, f"raw score ({path.name} not used: fitted for another checkpoint or unreadable)"
        fitted = calibration.fitted_on
        if fitted.get("preset") and fitted["preset"] != preset.label:
            self.get_logger().warning(f"{path} was fitted with sampling {fitted['preset']}; this node renders with "
                                      f"{preset.label}, whose confidence may be distributed otherwise")
        return calibration, (f"probability of a right label, calibrated by {path} (fitted on {fitted.get('targets', '?')} "
                             f"targets of {fitted.get('data', '?')} / {fitted.get('split', '?')}, "
                             f"{fitted.get('preset', '?')})")

    @torch.no_grad()
    def _warm_up(self) -> None:
        """One encode and one small render, so the first real query pays no first-call costs."""
        height, width = self._working_hw or (48, 64)
        t0 = time.perf_counter()
        features = self._encode(np.zeros((height, width, 3), np.uint8))
        K = np.array([[width, 0.0, width / 2 - 0.5], [0.0, width, height / 2 - 0.5], [0.0, 0.0, 1.0]])
        c2w = torch.eye(4, dtype=torch.float64)
        rgb = torch.zeros((1, 1, 3, height, width), device=self.device)
        extra = {"depth": torch.full((1, 1, height, width), 2.0)} if self.uses_depth else {}
        sources = self.model.make_sources(features[None, None], torch.as_tensor(K)[None, None], c2w[None, None],
                                          height, width, rgb=rgb if self.model.config.source_rgb else None, **extra)
        render_query(self.model, torch.as_tensor(K), c2w, min(height, 16), min(width, 16), sources, self.preset)
        # A seed for /diagnostics only: the cost model refuses queries only once real renders
        # have measured the machine (COST_MODEL_TTL_S), never from this small render's rate.
        t1 = time.perf_counter()
        _, stats = render_query_stats(self.model, torch.as_tensor(K), c2w, min(height, 32), min(width, 32),
                                      sources, self.preset)
        self._sync()
        self._record_cost(stats.coarse_points + stats.fine_points, 1, time.perf_counter() - t1,
                          stats.points_per_ray, real=False)
        self.field_impl, self.precision = _field_impl_text(stats), stats.precision
        self.get_logger().info(f"warm-up took {time.perf_counter() - t0:.2f} s "
                               f"({self._seconds_per_point_view * 1e9:.0f} ns per point and view)")

    def _record_cost(self, points: int, views: int, seconds: float, points_per_ray: float,
                     real: bool = True) -> None:
        """Fold one render into the cost model (a running average; the first render sets it).
        Renders under MIN_COST_SAMPLE point-views are skipped: their fixed overhead (selection,
        chunk setup) would make the model refuse large queries that fit."""
        if seconds <= 0 or points <= 0 or (real and points * views < MIN_COST_SAMPLE):
            return
        rate = seconds / (points * views)
        with self._stats_lock:
            if self._seconds_per_point_view == 0.0 or (real and self._cost_updated == -math.inf):
                self._seconds_per_point_view = rate  # the first real render replaces the warm-up's seed
            else:
                self._seconds_per_point_view = 0.7 * self._seconds_per_point_view + 0.3 * rate
            if real:
                self._points_per_ray = 0.7 * self._points_per_ray + 0.3 * points_per_ray
                self._cost_updated = time.monotonic()

    def estimate_render_s(self, width: int, height: int, views: int) -> float:
        """Seconds a render of width x height from ``views`` keyframes is expected to take."""
        return width * height * self._points_per_ray * views * self._seconds_per_point_view

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ warnings
    def _warn(self, key: str, message: str) -> None:
        """At most one warning per ``key`` every WARN_PERIOD_S (rclpy's throttle is per call site)."""
        now = time.monotonic()
        with self._stats_lock:
            if now - self._warned.get(key, -math.inf) < WARN_PERIOD_S:
                return
            self._warned[key] = now
            self.warnings_logged += 1
        self.get_logger().warning(message)

    def _drop(self, kind: str, message: str) -> None:
        with self._stats_lock:
            self.drops[kind] += 1
            self.last_drop[kind] = message
            count = self.drops[kind]
        self._warn(kind, f"dropped {kind}: {message} ({count} dropped so far)")

    def _event(self, kind: str, message: str, count: int = 1) -> int:
        with self._stats_lock:
            self.events[kind] += count
            self.last_event[kind] = message
            return self.events[kind]

    # ------------------------------------------------------------------ TF
    def _lookup(self, target: str, source: str, stamp_ns: int) -> tuple[np.ndarray, int]:
        """(T_target_source, stamp used), waiting up to tf_wait_s for TF to reach ``stamp_ns``.

        Raises TransformError when it does not arrive in time (or can never arrive: a stamp
        older than the buffer's history).
        """
        if target == source:
            return np.eye(4), stamp_ns
        deadline = time.monotonic() + self.params["tf_wait_s"]
        while True:
            try:
                found = self.tf.buffer.lookup_transform(target, source, stamp_ns)
                return found.matrix, found.stamp_ns
            except ExtrapolationError as error:
                if error.requested_ns < error.available_ns[0] or time.monotonic() >= deadline:
                    raise
            except TransformError:  # unknown frame: /tf_static may still be on its way
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.002)

    # ------------------------------------------------------------------ keyframes in
    def _on_camera_info(self, camera: CameraInput, msg: Any) -> None:
        self._arrived(camera, "camera_info")
        calibration = calibration_key(msg)
        if calibration == camera.calibration and camera.calibrated is not None:  # 15 Hz of the same: maps kept
            return
        try:
            resolved = camera_info_to_pinhole(msg, camera.rectification_mode, camera.image_topic)
        except ValueError as error:
            self._drop("camera_info", str(error))
            return
        if resolved.description != camera.rectification:
            self.get_logger().info(f"camera {camera.label} {int(msg.width)}x{int(msg.height)}: {resolved.description} "
                                   f"(rectification: {camera.rectification_mode})")
        camera.calibration = calibration
        camera.calibrated = (resolved, int(msg.width), int(msg.height))

    def _on_depth_camera_info(self, camera: CameraInput, msg: Any) -> None:
        """An unaligned depth camera's calibration; a lens with distortion (an Azure Kinect's
        or Orbbec Femto's raw depth) is undistorted before registration, as colour is."""
        calibration = calibration_key(msg)
        if calibration == camera.depth_calibration and camera.depth_calibrated is not None:
            return
        try:
            resolved = camera_info_to_pinhole(msg, camera.rectification_mode, camera.depth_topic,
                                              f"depth camera_info on {camera.depth_camera_info_topic}")
        except ValueError as error:
            self._drop("depth", str(error))
            return
        camera.depth_calibration = calibration
        camera.depth_calibrated = (resolved, int(msg.width), int(msg.height))

    def _arrived(self, camera: CameraInput, topic: str) -> None:
        with self._stats_lock:
            camera.arrived(topic)

    @property
    def received(self) -> dict[str, int]:
        """Messages taken since start per kind (image, camera_info, depth), all cameras together."""
        with self._stats_lock:
            return {topic: sum(c.received[topic] for c in self.cameras) for topic in STREAM_TOPICS}

    @property
    def depth_topics(self) -> list[str]:
        """The depth topics of the cameras that have one (``depth_topic``, per camera when several)."""
        return [c.depth_topic for c in self.cameras if c.depth_topic]

    @property
    def depth_completion(self) -> str:
        """``depth_completion`` resolved: auto fills the rows a point cloud's scan lines skip
        (measured: docs/results.md, "How much source depth the RGB-D model needs") and leaves a
        depth camera's depth as it is."""
        mode = self.params["depth_completion"]
        if mode == "auto":
            return "columns" if self.params["pointcloud_topic"] else "none"
        return mode

    @property
    def depth_sources(self) -> list[str]:
        """Where keyframes get their depth: the depth topics and the ``pointcloud_topic``."""
        return self.depth_topics + ([self.params["pointcloud_topic"]] if self.params["pointcloud_topic"] else [])

    @property
    def rectification(self) -> str:
        """How the images are read: CameraInfo ``k``, ``p``, or undistorted (per camera when several)."""
        if len(self.cameras) == 1:
            return self.cameras[0].rectification
        return "; ".join(f"{c.label}: {c.rectification}" for c in self.cameras)

    def _on_image(self, camera: CameraInput, msg: Any) -> None:
        if not self.active:
            return   # inactive (lifecycle): no keyframe intake
        self._arrived(camera, "image")
        self._admit_guarded(camera, msg)

    def _admit_guarded(self, camera: CameraInput, msg: Any) -> None:
        try:
            self._admit_image(camera, msg)
        except Exception as error:  # a bad frame must never take the node down
            self._drop("image", f"unexpected {type(error).__name__}: {error}")

    def _admit_image(self, camera: CameraInput, msg: Any) -> None:
        if not is_compressed(msg) and msg.encoding not in COLOR_ENCODINGS:
            self._drop("image", f"encoding {msg.encoding!r} is not a colour encoding "
                                f"({', '.join(sorted(COLOR_ENCODINGS))})")
            return
        try:
            rgb = colour_image_to_numpy(msg, "image")
        except ValueError as error:
            self._drop("image", str(error))
            return
        frame, stamp_ns = msg.header.frame_id, time_to_ns(msg.header.stamp)
        if not frame:
            self._drop("image", "header.frame_id is empty: the camera's optical frame is needed for its pose")
            return
        calibrated = camera.calibrated
        if calibrated is None:
            # The first image of a stream often races its CameraInfo: keep the latest one
            # (bounded: one) and take it when a CameraInfo arrives; count the one it replaces.
            held, camera.held_for_info = camera.held_for_info, msg
            if held is not None:
                self._drop("image", f"no valid CameraInfo yet on {camera.camera_info_topic} (only the latest image "
                                    f"is held)")
            return
        resolved, info_width, info_height = calibrated
        K, undistorter = resolved.K, resolved.undistorter
        if (info_width, info_height) != (rgb.shape[1], rgb.shape[0]):
            self._drop("image", f"image on {camera.image_subscription_topic} is {rgb.shape[1]}x{rgb.shape[0]} but "
                                f"CameraInfo says {info_width}x{info_height}")
            return
        newest = camera.newest_image_ns
        if newest is not None and stamp_ns < newest - self.params["clock_jump_s"] * 1e9:
            self._on_clock_jump(camera.image_topic,
                                f"image stamped {stamp_ns / 1e9:.3f} s, {(newest - stamp_ns) / 1e9:.3f} s before the "
                                f"newest", stamp_ns)
            newest = None
        camera.newest_image_ns = stamp_ns if newest is None else max(newest, stamp_ns)
        received_hw = rgb.shape[:2]
        if undistorter is None:  # shrink what waits for TF; undistortion (a full-size remap) waits for admission
            rgb, K = self._to_working_size(rgb, K)
        camera.pending.append(PendingImage(time.monotonic(), rgb, K, frame, stamp_ns, received_hw, undistorter,
                                           rotation=resolved.rotation))
        while len(camera.pending) > self.params["tf_pending_max"]:
            old = camera.pending.popleft()
            self._drop("tf", f"no pose for image at {old.stamp_ns / 1e9:.3f} s: {self.params['tf_pending_max']} newer "
                             f"images wait for TF (tf_pending_max){'; ' + old.waiting_for if old.waiting_for else ''}")
        self._retry_camera(camera)

    def _retry_pending(self) -> None:
        """Every camera's images waiting for TF (the 20 ms timer)."""
        if not self.active:
            return
        for camera in self.cameras:
            self._retry_camera(camera)

    def _retry_camera(self, camera: CameraInput) -> None:
        """Pose, and admit or refuse, one camera's images waiting for TF, oldest first. An image
        leaves the queue when its pose is known, when TF can never give it (a stamp older than
        the TF history), or after tf_wait_s. Runs in the images' callback group: no lock needed."""
        held = camera.held_for_info
        if held is not None and camera.calibrated is not None:
            camera.held_for_info = None
            self._admit_guarded(camera, held)
            return  # admitting it retried the queue
        fixed = self.params["fixed_frame"]
        wait_s = self.params["tf_wait_s"]
        offset_ns = int(round(camera.stamp_offset_s * 1e9))
        while camera.pending:
            image = camera.pending[0]
            try:
                # The pose at exposure; stamps (depth pairing, keyframe stamps) stay the header's.
                c2w = self._lookup_now(fixed, image.frame, image.stamp_ns + offset_ns)
            except TransformError as error:
                never = isinstance(error, ExtrapolationError) and error.requested_ns < error.available_ns[0]
                if never or time.monotonic() - image.arrived >= wait_s:
                    camera.pending.popleft()
                    self._drop("tf", f"no pose for image at {image.stamp_ns / 1e9:.3f} s after "
                                     f"{time.monotonic() - image.arrived:.2f} s: {error}")
                    continue
                # Images are stamped in order: if this one must wait, later ones must too.
                image.waiting_for = str(error)
                return
            c2w = image_camera_to_world(c2w, image.rotation)
            depth, depth_frame, cloud = None, "", None
            if camera.depth_topic:
                depth, depth_frame, wait = self._match_depth(camera, image.stamp_ns, image.frame, image.received_hw)
                if depth is None and wait and time.monotonic() - image.arrived < wait_s:
                    return  # its depth image may still be on its way
            elif self.params["pointcloud_topic"]:
                cloud, wait = self._match_cloud(image.stamp_ns)
                if (cloud is None and wait or cloud is not None and self._sweep_pending(cloud)) \
                        and time.monotonic() - image.arrived < wait_s:
                    return  # its point cloud, or TF to the end of the cloud's sweep, may still be on its way
            camera.pending.popleft()
            try:
                self._admit_posed(camera, image, c2w, depth, depth_frame, cloud)
            except Exception as error:  # one bad frame must not wedge the queue
                self._drop("image", f"unexpected {type(error).__name__}: {error}")

    def _lookup_now(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        if target == source:
            return np.eye(4)
        return self.tf.buffer.lookup_transform(target, source, stamp_ns).matrix

    def _on_depth(self, camera: CameraInput, msg: Any) -> None:
        if not self.active:
            return
        self._arrived(camera, "depth")
        what = f"depth on {camera.depth_subscription_topic}"
        try:
            depth = any_depth_to_metres(msg, what)
        except ValueError as error:
            self._drop("depth", str(error))
            return
        if not np.isfinite(depth).any():
            self._drop("depth", f"{what}: every pixel is unknown (0 or NaN)")
            return
        camera.depths.append((time_to_ns(msg.header.stamp), msg.header.frame_id, depth))

    def _on_pointcloud(self, msg: Any) -> None:
        if not self.active:
            return
        with self._stats_lock:
            self.received_pointcloud += 1
        what = f"point cloud on {self.params['pointcloud_topic']}"
        stamp_ns = time_to_ns(msg.header.stamp)
        try:
            points, offsets, unread = point_cloud_sweep(msg, what, self.params["pointcloud_time_field"],
                                                        self.params["pointcloud_time_scale"])
        except ValueError as error:
            self._drop("depth", str(error))
            return
        if unread is not None:
            self._skip_deskew(unread)
        if not len(points):
            self._drop("depth", f"{what}: no point with finite coordinates")
            return
        if not msg.header.frame_id:
            self._drop("depth", f"{what}: an empty frame_id (TF must place the points)")
            return
        self.clouds.append((stamp_ns, msg.header.frame_id, points, offsets))
        # Kept while within the window of the newest cloud's stamp (either side: after a clock
        # jump back the old ones lie ahead of it) and the points budget (placed copies included).
        keep_ns = int((CLOUD_HISTORY_S + self.params["pointcloud_accumulate_s"]) * 1e9)
        held = sum(len(cloud[2]) for cloud in self.clouds) + sum(len(p) for p in self._placed_clouds.values())
        while len(self.clouds) > 1 and (abs(self.clouds[0][0] - stamp_ns) > keep_ns or held > CLOUD_HISTORY_POINTS):
            old = self.clouds.popleft()
            held -= len(old[2]) + len(self._placed_clouds.pop((old[0], old[1]), ()))

    def _skip_deskew(self, message: str) -> None:
        count = self._event("deskew_skipped", message)
        self._warn("deskew", f"point cloud placed with its stamp's pose only (not deskewed): {message} "
                             f"({count} so far)")

    def _match_cloud(self, stamp_ns: int) -> tuple[tuple | None, bool]:
        """(the point cloud nearest ``stamp_ns`` within pointcloud_sync_tolerance_s as (stamp_ns,
        frame_id, [N, 3], offsets), or None; whether a match may still come)."""
        return nearest_by_stamp(self.clouds, stamp_ns, int(self.params["pointcloud_sync_tolerance_s"] * 1e9))

    def _sweep_pending(self, cloud: tuple) -> bool:
        """Whether TF has yet to reach the end of a cloud's sweep (its last point's time), so
        that the cloud can be deskewed once it does."""
        stamp_ns, frame, _, offsets = cloud
        if offsets is None or not len(offsets):
            return False
        try:
            self._lookup_now(self.params["fixed_frame"], frame, stamp_ns + offset_ns(offsets.max()))
        except ExtrapolationError as error:
            return error.requested_ns > error.available_ns[1]
        except TransformError:
            return False
        return False

    def _cloud_in_fixed_frame(self, cloud: tuple, unskewed_ok: bool = True) -> np.ndarray | None:
        """[N, 3] points of a cloud in fixed_frame: deskewed (lidar_deskew.place_cloud) where
        it has per-point times and TF covers its sweep, else with TF at its stamp (counted,
        warned where TF fell short of the sweep; None then unless ``unskewed_ok``). Raises
        TransformError when TF cannot place it at all."""
        stamp_ns, frame, points, offsets = cloud
        cached = self._placed_clouds.get((stamp_ns, frame))
        if cached is not None:
            return cached
        fixed = self.params["fixed_frame"]
        placed, slices, why = place_cloud(points, offsets, stamp_ns, lambda t: self._lookup_now(fixed, frame, t),
                                          (TransformError,))
        if why is not None:   # not kept: TF may yet cover the sweep for the next keyframe it serves
            if not unskewed_ok:
                return None
            self._skip_deskew(f"point cloud at {stamp_ns / 1e9:.3f} s: no TF from {frame!r} to {fixed!r} across its "
                              f"{float(offsets.max() - offsets.min()) * 1e3:.0f} ms sweep: {why}")
            return placed
        if slices:
            self._event("pointclouds_deskewed", f"point cloud at {stamp_ns / 1e9:.3f} s in {slices} slices")
        if any(c[0] == stamp_ns and c[1] == frame for c in self.clouds):
            self._placed_clouds[(stamp_ns, frame)] = placed
        return placed

    def _accumulated(self, cloud: tuple) -> np.ndarray | None:
        """An accumulated cloud's points in fixed_frame, or None (counted) where TF cannot place
        it, or not across its whole sweep (a later cloud whose sweep TF has not reached yet):
        one of pointcloud_accumulate_s's clouds is a bonus, its loss costs the keyframe nothing."""
        try:
            placed = self._cloud_in_fixed_frame(cloud, unskewed_ok=False)
        except TransformError as error:
            placed, why = None, str(error)
        else:
            why = "TF does not cover its sweep yet"
        if placed is None:
            self._event("accumulated_clouds_unplaced", f"point cloud at {cloud[0] / 1e9:.3f} s: {why}")
        return placed

    def _paired_origin(self, cloud: tuple) -> np.ndarray | None:
        """[3] where the paired ``cloud``'s sensor was at the middle of its sweep, in
        fixed_frame, for pointcloud_drop_stale (viewseg_core/stale_points.py); None where that
        is off or TF cannot say (every accumulated point is then kept)."""
        if not self.params["pointcloud_drop_stale"]:
            return None
        stamp_ns, frame, _, offsets = cloud
        fixed = self.params["fixed_frame"]
        try:
            return sweep_origin(offsets, stamp_ns, lambda t: self._lookup_now(fixed, frame, t), (TransformError,))
        except TransformError:
            return None

    def _register_cloud(self, cloud: tuple, c2w: np.ndarray, K: np.ndarray) -> np.ndarray | None:
        """A point cloud -> planar depth in the keyframe (working size, pinhole ``K``, pose ``c2w``
        in fixed_frame), through TF at the cloud's own stamp (or, deskewed, at each point's
        time): the robot may have moved between the scan and the exposure, and both poses are
        in fixed_frame. None (counted) where TF cannot place the cloud or none of its points
        lands in the image."""
        stamp_ns, frame, points, _ = cloud
        fixed = self.params["fixed_frame"]
        try:
            in_fixed = self._cloud_in_fixed_frame(cloud)
        except TransformError as error:
            self._drop("depth", f"point cloud at {stamp_ns / 1e9:.3f} s: no TF from {frame!r} to {fixed!r} at its "
                                f"stamp: {error}")
            return None
        window_ns = int(self.params["pointcloud_accumulate_s"] * 1e9)
        camera_from_fixed = np.linalg.inv(c2w)
        if window_ns > 0:
            others = [self._accumulated(other) for other in list(self.clouds)
                      if other is not cloud and abs(other[0] - stamp_ns) <= window_ns]
            others = [placed for placed in others if placed is not None]
            if others:
                in_fixed, stale = accumulated_points(in_fixed, np.concatenate(others), self._paired_origin(cloud), K,
                                                     self._working_hw, camera_from_fixed,
                                                     self.params["pointcloud_stale_cell_deg"])
                if stale:
                    self._event("accumulated_points_stale",
                                f"point cloud at {stamp_ns / 1e9:.3f} s: {stale} accumulated points contradicted by it",
                                stale)
        depth = register_points(in_fixed, K, self._working_hw, camera_from_fixed)
        if self.params["pointcloud_occlusion_radius"]:
            depth = drop_occluded(depth, self.params["pointcloud_occlusion_radius"])
        if not np.isfinite(depth).any():
            self._drop("depth", f"point cloud at {stamp_ns / 1e9:.3f} s in {frame!r}: none of its {len(points)} "
                                f"points lands in the camera's image")
            return None
        return depth

    def _match_depth(self, camera: CameraInput, stamp_ns: int, frame: str, received_hw: tuple[int, int]
                     ) -> tuple[np.ndarray | None, str, bool]:
        """(the depth image paired with a colour image of ``camera``, as received, or None; its
        frame; whether a match may still come).

        Pairs by nearest stamp within depth_sync_tolerance_s. Registered depth (no
        depth_camera_info_topic) must have the colour image's frame and size, else the pair is
        dropped and counted (it has the colour image's distortion, and is undistorted with it:
        _admit_posed). Unaligned depth must have its CameraInfo's size; it is registered on
        admission.
        """
        best, may_come = nearest_by_stamp(camera.depths, stamp_ns, int(self.params["depth_sync_tolerance_s"] * 1e9))
        if best is None:
            return None, "", may_come
        depth_stamp, depth_frame, depth = best
        if camera.depth_camera_info_topic:
            depth_camera = camera.depth_calibrated
            topic = camera.depth_camera_info_topic
            if depth_camera is None:
                self._drop("depth", f"depth at {depth_stamp / 1e9:.3f} s: no valid CameraInfo on {topic} yet, "
                                    f"needed to register it")
                return None, "", False
            if depth.shape != (depth_camera[2], depth_camera[1]) or not depth_frame:
                self._drop("depth", f"depth at {depth_stamp / 1e9:.3f} s is {depth_frame!r} "
                                    f"{depth.shape[1]}x{depth.shape[0]} but {topic} says "
                                    f"{depth_camera[1]}x{depth_camera[2]} (and a frame_id is needed for TF)")
                return None, "", False
            return depth, depth_frame, False
        if depth_frame != frame or depth.shape != tuple(received_hw):
            self._drop("depth", f"depth at {depth_stamp / 1e9:.3f} s is {depth_frame!r} {depth.shape[1]}x{depth.shape[0]}"
                                f" but its colour image is {frame!r} {received_hw[1]}x{received_hw[0]}: publish depth "
                                f"registered to the colour camera (aligned_depth_to_color), or set "
                                f"depth_camera_info_topic to have the node register it")
            return None, "", False
        return depth, depth_frame, False

    def _admit_posed(self, camera: CameraInput, image: PendingImage, c2w: np.ndarray,
                     depth: np.ndarray | None = None, depth_frame: str = "",
                     cloud: tuple | None = None) -> None:
        """Admit a posed frame of ``camera`` if the keyframe rule takes it (see
        :class:`PendingImage` for its colour); ``depth`` is as received: registered to the raw
        colour image, or (with depth_camera_info_topic) the depth camera's own in
        ``depth_frame``, registered here; ``cloud`` (pointcloud_topic) is registered here too."""
        frame, stamp_ns = image.frame, image.stamp_ns
        teleport = self.params["keyframes.teleport_distance"]
        previous, camera.previous_pose = camera.previous_pose, c2w
        if teleport > 0 and previous is not None:
            moved, _ = pose_difference(previous, c2w)
            if moved > teleport:
                message = (f"camera {frame!r} moved {moved:.2f} m between consecutive frames (at {stamp_ns / 1e9:.3f} s; "
                           f"keyframes.teleport_distance = {teleport} m): a TF teleport or relocalisation?")
                count = self._event("pose_jumps", message)
                self._warn("pose_jump", f"{message} ({count} so far)")
        stream = camera.label
        decision = self.keyframes.should_admit(c2w, stamp_ns, stream)
        changed_check = not decision.admit and self._change_check_due(camera, decision, stamp_ns)
        if not (decision.admit or changed_check):  # decided from the pose alone: no encoder pass for a redundant frame
            self._not_admitted(decision)
            return
        rgb, K, depth = self._working_frame(camera, image, c2w, depth, depth_frame, cloud)
        if changed_check:
            # A camera that stands still: is what its kept views show still there?
            probe = View(rgb=rgb, K=K, c2w=c2w, depth=depth, view_id=f"{stamp_ns}", stamp=stamp_ns / 1e9)
            if depth is None or not self.keyframes.changed_keyframes(probe, stamp_ns, among=decision.duplicates):
                self._not_admitted(decision)
                return
        features = self._encode(rgb)
        view = View(rgb=rgb, K=K, c2w=c2w, depth=depth, view_id=f"{stamp_ns}", stamp=stamp_ns / 1e9,
                    meta={"frame_id": frame, "camera": stream})
        odom_c2w = self._odometry_pose(camera, image) if self.pose_graph is not None else None
        try:
            keyframe = self.keyframes.add(view, stamp_ns, features=features, stream=stream, odom_c2w=odom_c2w,
                                          force=changed_check)
        except ValueError as error:  # one keyframe larger than max_bytes
            self._drop("image", str(error))
            return
        if keyframe is None:  # another frame was admitted meanwhile and made this one redundant
            self._not_admitted(self.keyframes.should_admit(c2w, stamp_ns, stream))
        if keyframe is not None and depth is None and (camera.depth_topic or self.params["pointcloud_topic"]):
            with self._stats_lock:
                self.keyframes_without_depth += 1
        if keyframe is not None:
            if changed_check:
                self._event("keyframes_admitted_for_change",
                            f"a frame of {stream!r} at {stamp_ns / 1e9:.3f} s repeats keyframe(s) "
                            f"{decision.duplicates} but shows the scene changed")
            self._evict_changed(keyframe)
            self.get_logger().debug(f"keyframe {keyframe.id} from {stream} at {stamp_ns / 1e9:.3f} s "
                                    f"({len(self.keyframes)} kept)")

    def _working_frame(self, camera: CameraInput, image: PendingImage, c2w: np.ndarray, depth: np.ndarray | None,
                       depth_frame: str, cloud: tuple | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(rgb, K, depth) of a posed frame at the working size, rectified, its depth registered to
        it (see :meth:`_admit_posed` for the arguments)."""
        rgb, K, undistorter = image.rgb, image.K, image.undistorter
        if undistorter is not None:
            rgb, K = self._to_working_size(undistorter.colour(rgb), K)
        if depth is not None and camera.depth_camera_info_topic:
            depth = self._register_depth(camera, depth, depth_frame, image.frame, image.stamp_ns, K, image.rotation)
        elif depth is not None:
            depth = self._depth_to_working_size(depth if undistorter is None else undistorter.depth(depth))
        elif cloud is not None:
            depth = self._register_cloud(cloud, c2w, K)
        return rgb, K, depth

    def _change_check_due(self, camera: CameraInput, decision: Any, stamp_ns: int) -> bool:
        """Whether a refused frame that repeats kept poses is checked for a scene change now
        (keyframes.change_share, at most every keyframes.change_check_s per camera; cameras with
        depth or a point cloud only)."""
        every_s = self.params["keyframes.change_check_s"]
        if (decision.kind != "duplicate" or not self.params["keyframes.change_share"] or not every_s
                or not (camera.depth_topic or self.params["pointcloud_topic"])):
            return False
        last = camera.last_change_check_ns
        if last is not None and 0 <= stamp_ns - last < every_s * 1e9:
            return False
        camera.last_change_check_ns = stamp_ns
        return True

    def _evict_changed(self, keyframe: Any) -> None:
        """Drop the older keyframes the new one shows changed (keyframes.change_share); counted
        as keyframes_changed in /diagnostics."""
        dropped = self.keyframes.evict_changed(keyframe)
        if dropped:
            shares = ", ".join(f"{keyframe_id} ({100 * share:.0f}%)" for keyframe_id, share in dropped)
            message = (f"keyframe {keyframe.id} ({keyframe.stream!r}, {keyframe.stamp:.3f} s) shows the scene changed: "
                       f"dropped keyframe(s) {shares} (the share of their measured points it saw through)")
            count = self._event("keyframes_changed", message, count=len(dropped))
            self.get_logger().info(f"{message}; {count} so far", throttle_duration_sec=5.0)

    def _odometry_pose(self, camera: CameraInput, image: PendingImage) -> np.ndarray | None:
        """The image's camera pose in pose_graph.odom_frame (for :mod:`viewseg_ros.pose_graph`),
        or None, counted and warned, when TF cannot give it."""
        odom = self.params["pose_graph.odom_frame"]
        stamp_ns = image.stamp_ns + int(round(camera.stamp_offset_s * 1e9))
        try:
            pose = image_camera_to_world(self._lookup_now(odom, image.frame, stamp_ns), image.rotation)
            self.odometry_trail.add(stamp_ns, self._lookup_now(odom, self.params["pose_graph.body_frame"], stamp_ns))
            return pose
        except TransformError as error:
            with self._stats_lock:
                self.keyframes_without_odometry += 1
            self._warn("odometry_pose", f"keyframe at {image.stamp_ns / 1e9:.3f} s has no pose in {odom!r} "
                                        f"(pose_graph.odom_frame): the pose graph cannot re-pose it: {error}")
            return None

    def _sample_odometry(self) -> None:
        """The body's latest odometry pose into the trail (for graph nodes older than TF's history)."""
        try:
            found = self.tf.buffer.lookup_transform(self.params["pose_graph.odom_frame"],
                                                    self.params["pose_graph.body_frame"], 0)
        except TransformError:
            return
        if found.stamp_ns:   # 0: an all-static chain has no time to sample
            self.odometry_trail.add(found.stamp_ns, found.matrix)

    def _on_pose_graph(self, msg: Any) -> None:
        """A SLAM system's optimised trajectory: re-pose the keyframes it covers
        (:func:`viewseg_ros.pose_graph.apply_pose_graph`). A graph that cannot be read is
        dropped whole, counted, and changes nothing."""
        p = self.params
        try:
            nodes = nodes_from_path(msg, p["fixed_frame"])
        except ValueError as error:
            self._drop("pose_graph", f"pose graph on {p['pose_graph.topic']}: {error}")
            return
        odom, body = p["pose_graph.odom_frame"], p["pose_graph.body_frame"]

        def odometry_at(stamp_ns: int) -> np.ndarray | None:
            try:
                return self._lookup_now(odom, body, stamp_ns)
            except TransformError as error:
                kept = self.odometry_trail.at(stamp_ns)   # older than TF's history: the node's own
                if kept is None:
                    kept = self.saved_odometry.at(stamp_ns)   # older than this run: a loaded folder's
                if kept is not None:
                    return kept
                first = self.odometry_trail.first_ns
                if (isinstance(error, ExtrapolationError) and error.requested_ns < error.available_ns[0]
                        and (first is None or stamp_ns < first)):
                    raise OdometryUnavailable(str(error)) from None
                return None   # newer than TF so far, or in a gap: asked again with the next graph

        with self._pose_graph_lock:
            self.pose_graph.update(nodes, odometry_at)
            update = apply_pose_graph(self.keyframes, self.pose_graph)
        summary = update.describe()
        with self._stats_lock:
            self.pose_graph_updates += 1
            self.last_pose_graph = summary
        if nodes and not update.nodes_with_odometry:
            self._warn("pose_graph_odometry", f"pose graph on {p['pose_graph.topic']}: none of its {len(nodes)} "
                                              f"nodes has a pose of {body!r} in {odom!r} in TF at its stamp "
                                              f"(pose_graph.body_frame / odom_frame); keyframes keep their poses")
        if update.max_shift_m > 0.05 or update.max_turn_deg > 1.0:
            self.get_logger().info(f"pose graph: {summary}")

    def _not_admitted(self, decision: Any) -> None:
        """Count a frame that did not become a keyframe by reason; log each reason once (info)."""
        kind = decision.kind or "other"
        with self._stats_lock:
            self.not_admitted[kind] = self.not_admitted.get(kind, 0) + 1
            first = self.not_admitted[kind] == 1
        if first:
            self.get_logger().info(f"a frame was not made a keyframe: {decision.reason} (counted as "
                                   f"not_admitted_{kind} in /diagnostics; logged once)")

    def _on_clock_jump(self, where: str, what: str, stamp_ns: int | None = None) -> None:
        """Time went back (bag loop, simulator restart): a new timeline for TF and keyframes.
        TF and the images both notice one jump; it is counted and logged once.

        ``stamp_ns`` None: /tf noticed, and the TF buffer has already replaced the old timeline
        with the new one's first pose; nothing else changes yet, because images of the old
        timeline may still be queued. The image stream (in order, in one callback group) then
        notices the jump at its first new-timeline image (``stamp_ns``): the keyframes' time
        state resets there, and TF is cleared only if it still holds the old timeline. Every
        camera starts its new timeline then, so a second camera does not reset it again."""
        if stamp_ns is not None:
            newest_tf = self.tf.buffer.newest_dynamic_stamp()
            if newest_tf is not None and newest_tf > stamp_ns + self.params["clock_jump_s"] * 1e9:
                self.tf.buffer.clear_dynamic()
            self.keyframes.reset_clock()
            if self.pose_graph is not None:
                with self._pose_graph_lock:
                    self.pose_graph.reset()
                    self.odometry_trail.reset()
                    self.saved_odometry.reset()
            for camera in self.cameras:
                camera.newest_image_ns = None
                camera.previous_pose = None
            # Clouds of the old timeline (same group as the clouds' callback: no race) must not
            # pair with, or be accumulated into, keyframes of the new one.
            self.clouds.clear()
            self._placed_clouds.clear()
        now = time.monotonic()
        with self._stats_lock:
            first = now - self._last_clock_jump > 2.0
            self._last_clock_jump = now
        if first:
            count = self._event("clock_jumps", f"{where}: {what}")
            self.get_logger().warning(f"clock jumped back on {where} ({what}): TF history and keyframe time "
                                      f"state reset, keyframes kept ({count} jump(s) so far)")

    def _to_working_size(self, rgb: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All keyframes share one size (the model batches their features): resize to it."""
        if self._working_hw is None:
            self._working_hw = (rgb.shape[0], rgb.shape[1])
        height, width = self._working_hw
        if rgb.shape[:2] == (height, width):
            return rgb, K
        resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return resized, resize_intrinsics(K, rgb.shape[:2], (height, width))

    def _register_depth(self, camera: CameraInput, depth: np.ndarray, depth_frame: str, frame: str, stamp_ns: int,
                        K: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray | None:
        """Unaligned depth -> planar depth in the colour keyframe (working size, pinhole ``K``,
        turned by ``rotation`` from ``frame`` for a rectified stereo image), through TF from the
        depth optical frame to the colour one at the stamp; None (counted) where TF cannot say."""
        try:
            colour_from_depth = rotated_frame(rotation) @ self._lookup_now(frame, depth_frame, stamp_ns)
        except TransformError as error:
            self._drop("depth", f"depth at {stamp_ns / 1e9:.3f} s: no TF from {depth_frame!r} to {frame!r} to register "
                                f"it: {error}")
            return None
        depth_camera = camera.depth_calibrated[0]
        if depth_camera.undistorter is not None:
            depth = depth_camera.undistorter.depth(depth)
        return register_depth(depth, depth_camera.K, K, self._working_hw, colour_from_depth)

    def _depth_to_working_size(self, depth: np.ndarray) -> np.ndarray:
        height, width = self._working_hw
        if depth.shape == (height, width):
            return depth
        # Nearest, not area: averaging would invent depths between a foreground edge and the wall.
        return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)

    @torch.no_grad()
    def _encode(self, rgb: np.ndarray) -> torch.Tensor:
        """[H, W, 3] uint8 -> features [C, h, w] on the model's device."""
        image = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None, None]
        with self._encode_lock:
            features = self.model.encode_sources(image)[0, 0]
            self._sync()
        return features

    # ------------------------------------------------------------------ keyframes on disk
    def save_keyframes(self, path: str) -> tuple[int, str]:
        """Write the keyframe buffer as the scene folder ``path`` (:mod:`viewseg_ros.keyframe_store`);
        (keyframes written, message). ValueError says what is wrong; nothing is written then."""
        if not path.strip():
            raise ValueError("an empty path: name the folder to write")
        keyframes = self.keyframes.snapshot()
        odometry = self._odometry_to_save(keyframes)
        written = save_keyframes(keyframes, path, self.params["fixed_frame"], self.get_fully_qualified_name(),
                                 odometry=odometry)
        message = f"saved {len(keyframes)} keyframes to {written}"
        if odometry is not None:
            message += (f" ({sum(k.odom_c2w is not None for k in keyframes)} with their odometry pose, "
                        f"{len(odometry.stamps)} odometry samples: the pose graph re-poses them after a restart)")
        self._event("keyframe_saves", message)
        return len(keyframes), message

    def _clock_kind(self) -> str:
        """"sim" on a simulator's /clock (use_sim_time), else "system" (keyframe_store.CLOCKS)."""
        return "sim" if self.get_clock().ros_time_is_active else "system"

    def _odometry_to_save(self, keyframes: list) -> SavedOdometry | None:
        """With a pose graph: the odometry frame, the clock and the trail samples (live and
        loaded) within max_gap_s + a margin of the keyframes' stamps, for a keyframe folder."""
        if self.pose_graph is None:
            return None
        p = self.params
        stamps = [k.stamp_ns for k in keyframes if k.odom_c2w is not None]
        window = int((p["pose_graph.max_gap_s"] + SAVED_ODOMETRY_MARGIN_S) * NS_PER_S)
        with self._pose_graph_lock:   # a stamp in both trails: this run's sample
            trail_stamps, trail_poses = samples_near_all((self.odometry_trail, self.saved_odometry), stamps, window)
        return SavedOdometry(p["pose_graph.odom_frame"], self._clock_kind(), trail_stamps, trail_poses)

    def load_keyframes(self, path: str, replace: bool) -> tuple[int, str]:
        """Restore the keyframes of the scene folder ``path`` (:meth:`KeyframeBuffer.restore_all`),
        first dropping the current ones with ``replace`` (without it, a saved view of a pose a kept
        keyframe has is skipped); (keyframes taken, message). The folder is
        read whole first: ValueError (a missing or malformed folder, another fixed frame)
        leaves the buffer as it was. Each image is resized to the working size and encoded once."""
        if not path.strip():
            raise ValueError("an empty path: name the folder to read")
        t0 = time.perf_counter()
        stored, note = read_keyframes(path, self.params["fixed_frame"])
        saved_odometry = read_odometry(path)
        odometry_note = ""
        if self.pose_graph is not None:
            odometry_note = odometry_usable(saved_odometry, self.params["pose_graph.odom_frame"], self._clock_kind())
        with_odometry = self.pose_graph is not None and not odometry_note
        prepared = []
        for item in stored:
            view = item.view
            rgb, K = self._to_working_size(view.rgb, view.K)
            depth = None
            if view.depth is not None and self.uses_depth:
                depth = self._depth_to_working_size(view.depth)
            prepared.append((View(rgb=rgb, K=K, c2w=view.c2w, depth=depth, view_id=view.view_id, stamp=view.stamp,
                                  meta=view.meta), item))
        # Added to kept keyframes: a saved view of a pose a kept keyframe already has (within
        # min_translation and min_rotation_deg) would only cost an encoder pass and memory.
        kept_poses = [] if replace else [k.c2w for k in self.keyframes.snapshot()]
        novel = [(view, item) for view, item in prepared if is_novel(view.c2w, kept_poses, self.keyframes.config)]
        # Encoded before the buffer changes, then swapped in at once: queries meanwhile see the
        # keyframes they saw before, never an empty buffer.
        items = [(view, item.stamp_ns, self._encode(view.rgb), item.camera, item.odom_c2w if with_odometry else None)
                 for view, item in novel]
        if with_odometry:
            with self._pose_graph_lock:
                self.saved_odometry.merge(saved_odometry.stamps, saved_odometry.poses)
                self.pose_graph.forget_unavailable()   # nodes TF could never give: the folder may
        restored, refused = self.keyframes.restore_all(items, replace=replace)
        if replace:
            self.prepared_cache.clear()
        for reason in refused:  # a keyframe larger than max_bytes
            self._drop("image", f"{path}: {reason}")
        taken = len(restored)
        with self._stats_lock:
            self.keyframes_restored += taken
        with_depth = sum(1 for k in restored if k.view.depth is not None)
        skipped = len(prepared) - len(novel)
        if self.pose_graph is not None:
            anchored = sum(1 for k in restored if k.odom_c2w is not None)
            odometry_note = (f"{anchored} follow the pose graph" if with_odometry else
                             f"they keep their poses under the pose graph: {odometry_note}")
        message = (f"loaded {taken} keyframes ({with_depth} with depth) from {path}"
                   + (", replacing the buffer" if replace else "")
                   + (f" ({skipped} skipped: a kept keyframe has their pose)" if skipped else "")
                   + f" in {time.perf_counter() - t0:.2f} s; {len(self.keyframes)} keyframes now kept"
                   + (f"; {odometry_note}" if odometry_note else "")
                   + (f"; {note}" if note else ""))
        self._event("keyframe_loads", message)
        return taken, message

    def autosave(self, when: str) -> None:
        """Save to ``keyframes.save_path`` when the kept keyframes changed since the last save
        (an empty buffer is never saved: it would replace a good save with nothing); a failure
        is logged and counted, and the node goes on."""
        path = self.params["keyframes.save_path"]
        if getattr(self, "keyframes", None) is None:
            return   # unconfigured (lifecycle): no keyframes to save
        ids = tuple(k.id for k in self.keyframes.snapshot())
        if not path or not ids or ids == self._autosaved:
            return
        try:
            _, message = self.save_keyframes(path)
            self._autosaved = ids
            self.get_logger().info(f"{message} ({when})")
        except Exception as error:  # a timer callback or the node's stop: never take the node down
            reason = str(error) if isinstance(error, (ValueError, OSError)) else f"{type(error).__name__}: {error}"
            self._drop("keyframe_save", f"{when} save to keyframes.save_path {path}: {reason}")

    def clear_keyframes(self) -> int:
        """Drop every keyframe (and the prepared maps of recent keyframe sets); how many were kept."""
        count = len(self.keyframes)
        self.keyframes.clear()
        self.prepared_cache.clear()
        self._event("keyframe_clears", f"cleared {count} keyframes")
        return count

    def _keyframe_io_response(self, response: Any, what: str, run: Callable[[], tuple[int, str]]) -> Any:
        """Fill a save/load response from ``run``; a refusal (ValueError, OSError), or any other
        error, becomes ``success = false`` with the reason in one line, and the node goes on."""
        try:
            response.count, response.message = run()
            response.success = True
        except Exception as error:  # never let a request take the node down
            reason = str(error) if isinstance(error, (ValueError, OSError)) else \
                f"internal error: {type(error).__name__}: {error}"
            response.success, response.message = False, " ".join(f"keyframes not {what}: {reason}".split())
            self._warn(f"keyframes {what}", response.message)
        return response

    def _on_save_keyframes(self, request: Any, response: Any) -> Any:
        return self._keyframe_io_response(response, "saved", lambda: self.save_keyframes(request.path))

    def _on_load_keyframes(self, request: Any, response: Any) -> Any:
        return self._keyframe_io_response(response, "loaded", lambda: self.load_keyframes(request.path, request.replace))

    def _on_clear_keyframes(self, request: Any, response: Any) -> Any:
        response.success, response.message = True, f"cleared {self.clear_keyframes()} keyframes"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ queries
    def render_query(self, pose: Any, camera_info: Any | None, deadline: float | None = None) -> QueryResult:
        """Render a PoseStamped (+ optional CameraInfo); QueryError says what is wrong with it.

        ``deadline`` (time.monotonic) defaults to now + query.timeout_s: a query expected to
        take longer is refused before rendering, one that takes longer is abandoned.
        """
        t0 = time.perf_counter()
        timeout_s = self.params["query.timeout_s"]
        if deadline is None:
            deadline = time.monotonic() + timeout_s
        timings = {}
        p = self.params
        frame = pose.header.frame_id
        if not frame:
            raise QueryError("pose.header.frame_id is empty: name the TF frame the pose is expressed in "
                             f"(e.g. {p['fixed_frame']!r})")
        try:
            pose_matrix = pose_to_matrix(pose, "pose")
        except ValueError as error:
            raise QueryError(str(error)) from None
        stamp_ns = time_to_ns(pose.header.stamp)
        t_tf = time.perf_counter()
        try:
            T_fixed_frame, tf_stamp_ns = self._lookup(p["fixed_frame"], frame, stamp_ns)
        except TransformError as error:
            raise QueryError(f"cannot express the pose (frame {frame!r}) in the fixed frame "
                             f"{p['fixed_frame']!r}: {error}") from None
        timings["tf"] = time.perf_counter() - t_tf  # part of "prepare"
        c2w = T_fixed_frame @ pose_matrix

        keyframes = self.keyframes.snapshot()
        if not keyframes and self.events["keyframe_clears"] and self.keyframes.admitted:
            raise QueryError(f"the keyframe buffer is empty: {self.last_event['keyframe_clears']} (~/clear_keyframes) "
                             "and no posed image has become a keyframe since")
        if not keyframes:
            raise QueryError("the keyframe buffer is empty: no posed image has been received yet (check "
                             f"{', '.join(c.image_subscription_topic for c in self.cameras)}, "
                             f"{', '.join(c.camera_info_topic for c in self.cameras)} and TF from "
                             f"{p['fixed_frame']!r} to the camera frame)")
        # The query camera a request leaves open is the first camera's: with several cameras of
        # different lenses, "the newest keyframe's" would change with whichever camera admitted last.
        first = self.cameras[0].label
        reference = next((k for k in reversed(keyframes) if k.stream == first), keyframes[-1])
        K, width, height = self._query_camera(camera_info, reference.view)
        timings["prepare"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        selection = select_views(K, c2w, (height, width), [k.view for k in keyframes], self.selection)
        chosen = [keyframes[i] for i in selection.indices]
        timings["select"] = time.perf_counter() - t1
        if selection.coverage < p["query.min_coverage"]:
            count = self._event("refused_coverage", f"coverage {selection.coverage:.3f}")
            raise QueryError(
                f"no keyframe sees this view: the {len(chosen)} best of {len(keyframes)} keyframes cover "
                f"{100 * selection.coverage:.1f}% of its frustum (best single keyframe "
                f"{100 * float(selection.overlap.max()):.1f}%), below query.min_coverage = "
                f"{100 * p['query.min_coverage']:.1f}% (points deeper than {self.max_source_depth:g} m in a keyframe "
                f"do not count; {count} such refusals so far)")
        estimate = self.estimate_render_s(width, height, len(chosen))
        if estimate > timeout_s and time.monotonic() - self._cost_updated < COST_MODEL_TTL_S:
            self._event("refused_budget", f"{width}x{height}: {estimate:.1f} s")
            side = math.sqrt(timeout_s / max(estimate, 1e-12))
            raise QueryError(
                f"{width}x{height} from {len(chosen)} keyframes would take about {estimate:.1f} s on {self.device} "
                f"({self._points_per_ray:.1f} points per ray at {self._seconds_per_point_view * 1e9:.0f} ns per point "
                f"and view), over query.timeout_s = {timeout_s:g} s; ask for at most about "
                f"{max(1, int(width * side))}x{max(1, int(height * side))}")

        t2 = time.perf_counter()
        note = self.depth_note(chosen)
        if not self._render_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self._event("timeouts", "waiting for the renderer")
            raise QueryError(f"timed out after {timeout_s:g} s (query.timeout_s) waiting behind other renders")
        try:
            t_render = time.perf_counter()
            sources, prepared = self.prepared_sources(chosen)
            try:
                out, stats = render_query_stats(self.model, torch.as_tensor(K), torch.as_tensor(c2w), height, width,
                                                sources, self.preset, prepared=prepared,
                                                should_stop=lambda: time.monotonic() > deadline)
            except RenderCancelled as error:
                self._event("timeouts", str(error))
                self._record_cost(error.stats.coarse_points + error.stats.fine_points, len(chosen),
                                  time.perf_counter() - t_render, error.stats.points_per_ray)
                raise QueryError(f"abandoned after {time.perf_counter() - t0:.1f} s, over query.timeout_s = "
                                 f"{timeout_s:g} s ({error}); ask for a smaller image or raise query.timeout_s"
                                 ) from None
            # The argmax is part of rendering semantics (on the model's device); freeing the
            # [H, W, C] logits and probabilities is the render's cost too (tens of MB at 320x240).
            labels, depth, confidence = out.labels, out.depth, out.confidence
            # The free path check (query.min_free_path) reads only the sources' depth and poses, so it
            # runs after the lock is released (below): the next render need not wait for it.
            if p["query.min_free_path"] <= 0:
                sources = None
            del out, prepared
            self._sync()
            self._record_cost(stats.coarse_points + stats.fine_points, len(chosen), time.perf_counter() - t_render,
                              stats.points_per_ray)
            self.field_impl, self.precision = _field_impl_text(stats), stats.precision
            if self.device.type == "cpu":
                # Hand freed heap back once the node has grown by cpu_allocator.RELEASE_GROWTH_MIB
                # (HeapReleaser), under the lock, so that no render is running, and
                # after the cost model's reading, which it would skew. CPU only: a GPU
                # render's tensors are not malloc's.
                t_release = time.perf_counter()
                self.heap_releaser.maybe_release()
                timings["release_memory"] = time.perf_counter() - t_release
        finally:
            self._render_lock.release()
        render_s = time.perf_counter() - t2

        t3 = time.perf_counter()
        num_classes = self.model.config.num_classes
        if num_classes < 255:
            labels = labels.to(torch.uint8)
        else:  # mono16, 65535 = unknown
            labels = torch.where(labels == IGNORE_LABEL, 65535, labels).to(torch.int32)
        labels = labels.cpu().numpy()
        if num_classes >= 255:
            labels = labels.astype(np.uint16)
        depth = depth.float().cpu().numpy()
        confidence = confidence.float().cpu().numpy()
        # What no selected keyframe sees is not known, whatever the field made of it: confidence 0,
        # and label and depth unknown unless the user asked for the field's guess.
        seen = pixel_coverage(K, c2w, depth, np.stack([k.view.K for k in chosen]), np.stack([k.c2w for k in chosen]),
                              [(k.view.height, k.view.width) for k in chosen], self.max_source_depth)
        rendered = np.isfinite(depth)
        unseen_share = int((rendered & ~seen).sum()) / max(int(rendered.sum()), 1)
        if self.calibration is not None:
            confidence = self.calibration(confidence)
        confidence[~seen] = 0.0
        if p["query.unseen_pixels"] == "unknown":
            labels[~seen] = 65535 if labels.dtype == np.uint16 else IGNORE_LABEL
            depth[~seen] = np.nan
        unverified_share = 0.0
        if sources is not None:
            t_free = time.perf_counter()
            free_path = free_path_image(torch.from_numpy(depth).to(self.device), torch.as_tensor(K),
                                        torch.as_tensor(c2w), sources).cpu().numpy()
            del sources
            unverified = np.isfinite(depth) & ~(free_path >= p["query.min_free_path"])
            unverified_share = int(unverified.sum()) / max(int(rendered.sum()), 1)
            depth[unverified] = np.nan
            timings["free_path"] = time.perf_counter() - t_free
        if camera_info is not None and camera_info.header.frame_id:
            out_frame = camera_info.header.frame_id
        elif _is_identity(pose_matrix):
            out_frame = frame
        else:
            out_frame = p["query.frame_id"]
        out_stamp = stamp_ns or tf_stamp_ns or self.get_clock().now().nanoseconds
        timings["outputs"] = time.perf_counter() - t3
        return QueryResult(labels, depth, confidence, K, width, height, out_frame, out_stamp,
                           [k.id for k in chosen], [k.stamp_ns for k in chosen], render_s, timings=timings,
                           note=note, unseen_share=unseen_share, unverified_share=unverified_share)

    def prepared_sources(self, chosen: list) -> tuple[Any, Any]:
        """(SourceViews, both fields' prepared maps) of the picked keyframes, from
        ``self.prepared_cache`` when the last queries picked the same ones (same ids, same
        feature tensors and views), else built and kept."""
        owners = [obj for k in chosen for obj in (k.features, k.view)]

        def prepare(sources: Any) -> Any:
            with torch.no_grad():
                return self.model.renderer.prepare(sources)

        sources, prepared, _ = self.prepared_cache.get(tuple(k.id for k in chosen), owners,
                                                       lambda: self.keyframe_sources(chosen), prepare)
        return sources, prepared

    def keyframe_sources(self, chosen: list) -> Any:
        """SourceViews (batch 1) of kept keyframes, from their cached encoder features
        (:meth:`ViewSeg.sources_of_views`)."""
        return self.model.sources_of_views([k.features for k in chosen], [k.view for k in chosen],
                                           self.depth_completion)

    @property
    def uses_depth(self) -> bool:
        """The checkpoint reads source depth (an RGB-D model)."""
        return bool(getattr(self.model.config, "source_depth", False))

    def unseen_text(self, result: QueryResult) -> str:
        """'' or, under ``query.unseen_pixels: extrapolated``, how much of the answer is the model's
        guess (the service says it; topic mode does not warn about a mode the user chose)."""
        if self.params["query.unseen_pixels"] != "extrapolated" or result.unseen_share <= 0:
            return ""
        return f"{100 * result.unseen_share:.1f}% of the rendered pixels extrapolate past every keyframe's view " \
               f"(confidence 0)"

    def unverified_text(self, result: QueryResult) -> str:
        """'' or, under ``query.min_free_path``, how much of the depth it withheld."""
        if result.unverified_share <= 0:
            return ""
        return f"{100 * result.unverified_share:.1f}% of the rendered pixels have no depth: keyframe depth saw less " \
               f"than {self.params['query.min_free_path']:g} of their path to the surface free (query.min_free_path)"

    def depth_note(self, chosen: list) -> str:
        """'' or why an RGB-D model rendered without some source depth (it never does so silently)."""
        if not self.uses_depth:
            return ""
        missing = sum(1 for k in chosen if k.view.depth is None)
        if not missing:
            return ""
        why = ("parameters depth_topic and pointcloud_topic are empty" if not self.depth_sources
               else "no depth image or point cloud was paired with them")
        return (f"{missing} of {len(chosen)} source keyframes have no depth ({why}): rendered with the RGB-D "
                f"model's no-depth behaviour, expect lower depth accuracy")

    def _query_camera(self, info: Any | None, reference: View) -> tuple[np.ndarray, int, int]:
        """(K, width, height) of the query camera; the keyframes' camera where the request leaves it open."""
        p = self.params
        if info is None:
            width, height = p["query.width"], p["query.height"]
            k = None
        else:
            width, height, k = int(info.width), int(info.height), info.k
        if width == 0 and height == 0:
            width, height = reference.width, reference.height
        if width <= 0 or height <= 0:
            raise QueryError(f"camera_info size {width}x{height}: give both width and height, or neither")
        if width > p["query.max_width"] or height > p["query.max_height"]:
            raise QueryError(f"requested {width}x{height} exceeds the maximum query size "
                             f"{p['query.max_width']}x{p['query.max_height']} (parameters query.max_width, "
                             f"query.max_height)")
        if k is None or not np.any(np.asarray(k, dtype=np.float64)):
            K = resize_intrinsics(reference.K, (reference.height, reference.width), (height, width))
        else:  # K as given, for width x height (the keyframes' size when the request left it 0x0)
            try:
                K = K_from_camera_info(np.asarray(k, dtype=np.float64))
                check_pinhole(K, width, height, "CameraInfo.k")
            except ValueError as error:
                raise QueryError(f"camera_info: {error}") from None
        return K, width, height

    def _finish(self, result: QueryResult, t0: float) -> None:
        result.total_s = time.perf_counter() - t0
        with self._stats_lock:
            self.queries += 1
        self.last_latency_s, self.last_render_s = result.total_s, result.render_s
        self.last_unseen_share = result.unseen_share
        self.last_unverified_share = result.unverified_share
        self.last_timings = dict(result.timings, render=result.render_s, total=result.total_s)

    def images_of(self, result: QueryResult) -> dict[str, Any]:
        """The four output images and their CameraInfo, all with the result's frame and stamp."""
        stamp, frame = result.stamp_ns, result.frame_id
        mono = "mono8" if result.labels.dtype == np.uint8 else "mono16"
        return {
            "semantic": numpy_to_image(result.labels, mono, frame_id=frame, stamp_ns=stamp),
            "semantic_color": numpy_to_image(colorize_fast(result.labels), "rgb8", frame_id=frame, stamp_ns=stamp),
            "depth": numpy_to_image(result.depth, "32FC1", frame_id=frame, stamp_ns=stamp),
            "confidence": numpy_to_image(result.confidence, "32FC1", frame_id=frame, stamp_ns=stamp),
            "camera_info": make_camera_info(result.K, result.width, result.height, frame_id=frame, stamp_ns=stamp),
        }

    def _enter(self) -> int:
        """Take an in-flight slot: the number in flight before, or -1 (and nothing taken) when full."""
        with self._stats_lock:
            if self.in_flight >= self.params["query.max_in_flight"]:
                return -1
            self.in_flight += 1
            return self.in_flight - 1

    def _leave(self) -> None:
        with self._stats_lock:
            self.in_flight -= 1

    def _inactive_message(self) -> str:
        count = self._event("refused_inactive", "a query while inactive")
        return (f"inactive: the node's lifecycle state is {self.lifecycle_state!r}; a lifecycle manager must "
                f"activate it before it answers ({count} queries refused so)")

    def _busy_message(self) -> str:
        limit = self.params["query.max_in_flight"]
        count = self._event("busy", f"{limit} in flight")
        return f"busy ({limit} in flight, query.max_in_flight = {limit}; {count} busy answers so far): retry later"

    def points_of(self, result: QueryResult) -> Any:
        """sensor_msgs/PointCloud2 of the pixels with a depth and at least ``points.min_confidence``:
        x, y, z in the query camera's optical frame (z = planar depth), the class colour,
        confidence and label; same header as the images."""
        depth = result.depth
        keep = np.isfinite(depth)
        if self.params["points.min_confidence"] > 0:
            keep &= result.confidence >= self.params["points.min_confidence"]
        v, u = np.nonzero(keep)
        z = depth[v, u].astype(np.float64)
        rays = np.stack([u, v, np.ones_like(u)], axis=-1).astype(np.float64) @ np.linalg.inv(result.K).T
        labels = result.labels[v, u]
        return make_point_cloud(rays * z[:, None], colorize_fast(labels) if labels.dtype == np.uint8 else colorize(labels),
                                result.confidence[v, u], labels.astype(np.uint16),
                                frame_id=result.frame_id, stamp_ns=result.stamp_ns)

    def _on_render_view(self, request: Any, response: Any) -> Any:
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.params["query.timeout_s"]
        if self._enter() < 0:
            return self._fail(response, self._busy_message(), t0, count=False)
        if not self.active:   # checked after taking the slot: deactivation waits for taken slots
            self._leave()
            return self._fail(response, self._inactive_message(), t0, count=False)
        try:
            result = self.render_query(request.pose, request.camera_info, deadline)
            t_images = time.perf_counter()
            images = self.images_of(result)
            result.timings["to_msg"] = time.perf_counter() - t_images
        except QueryError as error:
            return self._fail(response, str(error), t0)
        except Exception as error:  # never let a query take the node down
            return self._fail(response, f"internal error: {type(error).__name__}: {error}", t0)
        finally:
            self._leave()
        t_respond = time.perf_counter()
        for name, msg in images.items():
            setattr(response, name, msg)
        response.success, response.message = True, "; ".join(filter(None, [result.note, self.unseen_text(result),
                                                                         self.unverified_text(result)]))
        if self.params["points.on_service"]:
            try:  # the answer must go out whatever happens to the extra cloud
                self.points_pub.publish(self.points_of(result))
            except Exception as error:
                self._warn("points", f"~/points not published: {type(error).__name__}: {error}")
        response.keyframe_ids = result.keyframe_ids
        response.keyframe_stamps = [ns_to_time(s) for s in result.keyframe_stamps_ns]
        result.timings["respond"] = time.perf_counter() - t_respond
        self._finish(result, t0)
        response.render_time, response.total_time = float(result.render_s), float(result.total_s)
        return response

    def _fail(self, response: Any, message: str, t0: float, count: bool = True) -> Any:
        message = " ".join(message.split())  # one line, whatever an exception's text held
        if count:
            with self._stats_lock:
                self.drops["query"] += 1
        self._warn("query:" + message[:40], f"query refused: {message}")
        response.success, response.message = False, message
        response.total_time = float(time.perf_counter() - t0)
        return response

    def _on_query(self, pose: Any) -> None:
        t0 = time.perf_counter()
        if self._enter() < 0:
            self._warn("topic_query_busy", f"query on {self.resolve_topic_name('~/query')} dropped: "
                                           f"{self._busy_message()}")
            return
        if not self.active:
            self._leave()
            self._warn("topic_query_inactive", f"query on {self.resolve_topic_name('~/query')} dropped: "
                                               f"{self._inactive_message()}")
            return
        try:
            result = self.render_query(pose, None)
            images = self.images_of(result)
        except Exception as error:
            with self._stats_lock:
                self.drops["query"] += 1
            self._warn("topic_query", f"query on {self.resolve_topic_name('~/query')} refused: {error}")
            return
        finally:
            self._leave()
        if result.note:
            self._warn("topic_query_note", f"query on {self.resolve_topic_name('~/query')}: {result.note}")
        for name, msg in images.items():
            self.pubs[name].publish(msg)
        self.points_pub.publish(self.points_of(result))
        self._finish(result, t0)

    # ------------------------------------------------------------------ diagnostics
    def camera_delivery(self, camera: CameraInput | None = None) -> tuple[int, int, str]:
        """(images, CameraInfo messages) of ``camera`` (default: the first) received in the last
        camera_rate.window_s, and a warning ('' when none): a driver publishes one CameraInfo per
        image, and CameraInfo is small enough to arrive when large images are lost in
        transport, so it stands for the camera's publish rate."""
        camera = camera or self.cameras[0]
        p = self.params
        window = p["camera_rate.window_s"]
        now = time.monotonic()
        with self._stats_lock:
            images = camera.count_since("image", window, now)
            infos = camera.count_since("camera_info", window, now)
        if now - self._started < window:
            return images, infos, ""  # not a whole window yet
        image_topic = camera.image_subscription_topic
        if infos >= 2 and images < p["camera_rate.min_ratio"] * infos:
            return images, infos, (
                f"{image_topic} delivered {images} images in {window:g} s while its CameraInfo arrived {infos} times: "
                f"large images are being lost in transport (docs/ros.md, 'Large images and Fast DDS': the camera's "
                f"process needs FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_images.xml)")
        if images == 0:
            publishers = self.count_publishers(image_topic)
            if publishers:
                return images, infos, (f"no image on {image_topic} for {window:g} s although {publishers} publisher(s) "
                                       f"exist (QoS mismatch? a reliable subscription ignores best-effort cameras)")
        return images, infos, ""

    def publish_keyframe_poses(self) -> None:
        """``~/keyframe_poses`` when the kept keyframes changed: admitted, evicted, re-posed by
        the pose graph, loaded or cleared (a re-posed keyframe has a new View)."""
        kept = [(k.id, k.view) for k in self.keyframes.snapshot()]
        shown = self._shown_keyframes
        if len(kept) == len(shown) and all(a == b and u is v for (a, u), (b, v) in zip(kept, shown)):
            return
        self.keyframe_poses_pub.publish(camera_poses_to_pose_array(
            [view.c2w for _, view in kept], self.params["fixed_frame"], self.get_clock().now().nanoseconds))
        self._shown_keyframes = kept

    def publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        count = len(self.keyframes)
        window = self.params["camera_rate.window_s"]
        deliveries = [self.camera_delivery(camera) for camera in self.cameras]
        for camera, (_, _, warning) in zip(self.cameras, deliveries):
            if warning:
                self._warn(f"camera_delivery {camera.label}", warning)
        delivery = "; ".join(warning for _, _, warning in deliveries if warning)
        images, infos = sum(d[0] for d in deliveries), sum(d[1] for d in deliveries)
        received = self.received
        with self._stats_lock:
            drops, events, in_flight = dict(self.drops), dict(self.events), self.in_flight
            depth_counts = [c.count_since("depth", window) for c in self.cameras]
            recent_jump = time.monotonic() - self._last_clock_jump < 10.0
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: keyframes and queries"
        status.hardware_id = str(self.device)
        depth_warning = ""
        if self.uses_depth and not self.depth_sources:
            depth_warning = ("RGB-D checkpoint without depth_topic or pointcloud_topic: every render runs on its "
                             "no-depth behaviour")
        elif self.depth_sources and self.keyframes_without_depth:
            depth_warning = f"{self.keyframes_without_depth} keyframe(s) admitted without a paired depth image or cloud"
        problems = [text for text in (
            "" if count else "no keyframes yet", delivery, depth_warning,
            "clock jumped back in the last 10 s" if recent_jump else "",
            f"{events['pose_jumps']} pose jump(s): {self.last_event.get('pose_jumps', '')}" if events["pose_jumps"]
            else "") if text]
        if not self.active:
            # Images are not read while inactive, so delivery and keyframe warnings would mislead.
            problems = [f"inactive (lifecycle state {self.lifecycle_state!r}): no keyframe intake, queries refused"]
        status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        status.message = "; ".join(problems) if problems else f"{count} keyframes"
        keyframes = self.keyframes.snapshot()
        values = {"keyframes": count, "keyframes_admitted": self.keyframes.admitted,
                  "keyframe_bytes": self.keyframes.nbytes, "device": str(self.device),
                  "rectification": self.rectification,
                  "checkpoint": str(self.checkpoint), "ready": self.ready, "lifecycle": self.lifecycle_state,
                  "queries": self.queries,
                  "in_flight": in_flight, "tf_pending": sum(len(c.pending) for c in self.cameras),
                  "image_rate_hz": round(images / window, 3), "camera_info_rate_hz": round(infos / window, 3),
                  "depth_rate_hz": round(sum(depth_counts) / window, 3),
                  "keyframes_with_depth": sum(1 for k in keyframes if k.view.depth is not None),
                  "keyframes_without_depth": self.keyframes_without_depth, "model_reads_depth": self.uses_depth,
                  "received_pointcloud": self.received_pointcloud,
                  "keyframes_restored": self.keyframes_restored,
                  "last_latency_ms": round(self.last_latency_s * 1e3, 3),
                  "last_render_ms": round(self.last_render_s * 1e3, 3),
                  "last_overhead_ms": round((self.last_latency_s - self.last_render_s) * 1e3, 3),
                  "ns_per_point_view": round(self._seconds_per_point_view * 1e9, 3),
                  "field_impl": self.field_impl, "precision": self.precision, "sampling": self.preset.label,
                  "cpu_allocator": cpu_allocator_status(), "heap_releases": self.heap_releaser.releases,
                  "prepared_cache": str(self.prepared_cache.stats()),
                  "last_unseen_share": round(self.last_unseen_share, 4),
                  "last_unverified_share": round(self.last_unverified_share, 4), "confidence": self.confidence_meaning}
        if self.pose_graph is not None:
            with self._stats_lock:
                values["pose_graph"] = f"{self.pose_graph_updates} graphs; last: {self.last_pose_graph}"
                values["keyframes_without_odometry"] = self.keyframes_without_odometry
        values.update({f"received_{topic}": n for topic, n in received.items()})
        if len(self.cameras) > 1:
            values["cameras"] = len(self.cameras)
            for camera, (camera_images, camera_infos, _), depth_count in zip(self.cameras, deliveries, depth_counts):
                kept = sum(1 for k in keyframes if k.stream == camera.label)
                values[f"camera {camera.label}"] = (
                    f"{kept} keyframes; images {camera_images / window:.3g} Hz, camera_info {camera_infos / window:.3g} Hz"
                    + (f", depth {depth_count / window:.3g} Hz" if camera.depth_topic else "")
                    + f"; received {camera.received['image']} images; {camera.rectification}")
        values.update({f"dropped_{kind}": n for kind, n in drops.items()})
        values.update(events)
        with self._stats_lock:
            values.update({f"not_admitted_{kind}": n for kind, n in self.not_admitted.items()})
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    """``viewseg_node``: status 0 when stopped by SIGINT/SIGTERM (however many arrive), 2 with one
    FATAL line for a missing checkpoint or a bad parameter, 1 with a traceback for anything else."""
    import signal

    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    # rclpy's handlers (installed by init, chained to this one) shut the context down and wake
    # the executor. Python's default handler would also raise KeyboardInterrupt wherever the
    # process is, e.g. inside destroy_node when `ros2 launch` forwards a second SIGINT.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    keep_freed_memory()   # a policy of this process: queries reuse freed memory (cpu_allocator)
    rclpy.init(args=args if args is not None else sys.argv)
    node = executor = None
    try:
        try:
            node = ViewSegNode()
        except (FileNotFoundError, ValueError) as error:
            rclpy.logging.get_logger(NODE_NAME).fatal(str(error))
            return 2
        executor = (SubmitOnceExecutor if node.params["executor"] == "submit_once" else MultiThreadedExecutor)(
            num_threads=node.executor_threads)
        node.get_logger().info(f"executor: {type(executor).__name__} ({node.params['executor']}), "
                               f"{node.executor_threads} threads")
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # A signal while the model loaded: the node was asked to stop, not broken.
    finally:
        if executor is not None:
            executor.shutdown()  # lets a render in flight finish before its node goes away
        if node is not None:
            node.autosave("at stop")  # after the executor: no keyframe arrives during the save
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


__all__ = ["ViewSegNode", "QueryError", "QueryResult", "PARAMETERS", "resolve_checkpoint", "resolve_device",
           "main"]

if __name__ == "__main__":
    sys.exit(main())
