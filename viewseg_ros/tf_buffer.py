"""A TF buffer without tf2_ros: a pure numpy core (`TransformBuffer`) and a thin ROS listener.

tf2_ros has no PyPI wheel, so viewseg owns the little of it that it needs. The core imports
no ROS at all (bag import uses it with rosbags messages); only :class:`TfListener` touches
rclpy, and it imports rclpy lazily.

Conventions (as tf2):
- An edge ``parent -> child`` holds the pose of ``child`` in ``parent``: the 4x4 matrix
  ``T_parent_child`` maps points in child coordinates to parent coordinates.
- ``lookup(target, source, t)`` returns ``T_target_source`` (points in ``source`` ->
  points in ``target``); for a camera, ``lookup("map", "camera_optical", t)`` is its c2w.
- Quaternions are ``(x, y, z, w)`` (ROS order). Times are integer nanoseconds.
- Each frame has at most one parent (a tree). A transform that gives a child a new parent
  replaces the old edge and its history (tf2 keeps the parent per stamp; robots that
  reparent frames are rare, and keeping one parent makes chains unambiguous).
- Dynamic edges keep a bounded, time-sorted history and are valid only inside it
  (interpolated: lerp for translation, slerp for rotation); static edges hold one value
  valid at all times. A lookup at time 0 uses the latest time at which every dynamic edge
  of the chain is known ("latest common time", as tf2).
"""
from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# Same tolerance as tf2's BufferCore::setTransform (on |q|^2 - 1).
QUATERNION_NORMALIZATION_TOLERANCE = 1e-2
NS_PER_S = 1_000_000_000


# --------------------------------------------------------------------------- errors
class TransformError(LookupError):
    """Base class of every lookup failure of :class:`TransformBuffer`."""


class UnknownFrameError(TransformError):
    """A frame that no transform has ever mentioned."""


class ConnectivityError(TransformError):
    """Both frames are known but no chain of edges joins them (or the graph has a loop)."""


class ExtrapolationError(TransformError):
    """The requested time lies outside the history of an edge of the chain.

    Attributes:
        requested_ns: the time asked for (ns).
        available_ns: (oldest, newest) stamps (ns) the offending edge holds.
        edge: (parent, child) of that edge.
    """

    def __init__(self, message: str, requested_ns: int, available_ns: tuple[int, int], edge: tuple[str, str]):
        super().__init__(message)
        self.requested_ns = requested_ns
        self.available_ns = available_ns
        self.edge = edge


# --------------------------------------------------------------------------- quaternion maths
def normalize_quaternion(q: Sequence[float], what: str = "quaternion") -> np.ndarray:
    """Return ``q`` (x, y, z, w) as a unit float64 [4] array.

    Raises ValueError for non-finite values and for norms too far from 1 (|q|^2 - 1 beyond
    :data:`QUATERNION_NORMALIZATION_TOLERANCE`, as tf2): a quaternion that far off is a bug
    upstream, not rounding, and silently normalising it would hide a wrong pose.
    """
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (4,):
        raise ValueError(f"{what}: expected 4 values (x, y, z, w), got {q.shape[0]}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"{what}: non-finite quaternion {q.tolist()}")
    norm2 = float(q @ q)
    if abs(norm2 - 1.0) > QUATERNION_NORMALIZATION_TOLERANCE:
        raise ValueError(f"{what}: quaternion {q.tolist()} is not normalised (|q| = {math.sqrt(norm2):.6f}; "
                         f"tolerance on |q|^2 - 1 is {QUATERNION_NORMALIZATION_TOLERANCE})")
    return q / math.sqrt(norm2)


def _rotation_entries(x, y, z, w) -> tuple:
    """The rows of the rotation matrix of the quaternion (x, y, z, w): scalars, or arrays of them."""
    return ((1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
            (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
            (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)))


def quaternion_to_matrix(q: Sequence[float] | np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> [3, 3] rotation matrix (float64); a [..., 4] array of
    them -> [..., 3, 3] (a pose graph's nodes at once). One quaternion is the TF lookups' hot
    path, and stays a plain array build (stacking costs ~7x there)."""
    q = np.asarray(q, dtype=np.float64)
    if q.ndim == 1:
        return np.array(_rotation_entries(*q))
    rows = _rotation_entries(*np.moveaxis(q, -1, 0))
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """[3, 3] rotation matrix -> unit quaternion (x, y, z, w) with w >= 0.

    Shepperd's method: branch on the largest diagonal term so the square root never sees a
    tiny number (the naive w-first formula loses precision near 180 degree turns).
    """
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def slerp(q0: np.ndarray, q1: np.ndarray, ratio: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions along the shorter arc (ratio in [0, 1])."""
    dot = float(q0 @ q1)
    if dot < 0.0:  # q and -q are the same rotation: take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: lerp is exact to ~1e-7 and avoids dividing by sin(~0)
        q = q0 + ratio * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(dot, 1.0))
    sin_theta = math.sin(theta)
    return (math.sin((1.0 - ratio) * theta) * q0 + math.sin(ratio * theta) * q1) / sin_theta


def make_transform(translation: Sequence[float], quaternion: Sequence[float]) -> np.ndarray:
    """Translation [3] + unit quaternion (x, y, z, w) -> [4, 4] homogeneous matrix."""
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(quaternion)
    matrix[:3, 3] = translation
    return matrix


def invert_transform(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a rigid [4, 4] transform (uses R^T rather than a general inverse); of each of
    an [N, 4, 4] batch too (a pose graph's nodes at once)."""
    if matrix.ndim == 3:
        inverse = np.zeros_like(matrix)
        rotation_t = np.swapaxes(matrix[:, :3, :3], 1, 2)
        inverse[:, :3, :3] = rotation_t
        inverse[:, :3, 3] = -np.einsum("nij,nj->ni", rotation_t, matrix[:, :3, 3])
        inverse[:, 3, 3] = 1.0
        return inverse
    inverse = np.eye(4)
    rotation_t = matrix[:3, :3].T
    inverse[:3, :3] = rotation_t
    inverse[:3, 3] = -rotation_t @ matrix[:3, 3]
    return inverse


def format_ns(stamp_ns: int) -> str:
    return f"{stamp_ns / NS_PER_S:.9f} s"


# --------------------------------------------------------------------------- the core buffer
@dataclass
class StampedTransform:
    """Result of a lookup: ``matrix`` = T_target_source at ``stamp_ns`` (resolved for time 0)."""

    matrix: np.ndarray
    stamp_ns: int
    target_frame: str
    source_frame: str


class _Edge:
    """History of one parent -> child edge: time-sorted stamps with (translation, quaternion)."""

    __slots__ = ("parent", "static", "stamps", "values")

    def __init__(self, parent: str, static: bool):
        self.parent = parent
        self.static = static
        self.stamps: list[int] = []
        self.values: list[tuple[np.ndarray, np.ndarray]] = []

    def insert(self, stamp_ns: int, translation: np.ndarray, quaternion: np.ndarray) -> None:
        if self.static:  # one value for all time: the latest message wins
            self.stamps, self.values = [stamp_ns], [(translation, quaternion)]
            return
        index = bisect.bisect_left(self.stamps, stamp_ns)
        if index < len(self.stamps) and self.stamps[index] == stamp_ns:
            self.values[index] = (translation, quaternion)  # a republished stamp replaces
        else:
            self.stamps.insert(index, stamp_ns)
            self.values.insert(index, (translation, quaternion))

    def prune(self, max_history: int | None, cache_time_ns: int | None) -> None:
        drop = 0
        if cache_time_ns is not None:
            drop = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_time_ns)
        if max_history is not None:
            drop = max(drop, len(self.stamps) - max_history)
        if drop:
            del self.stamps[:drop]
            del self.values[:drop]

    def at(self, stamp_ns: int, child: str) -> np.ndarray:
        """T_parent_child at ``stamp_ns`` (already resolved; never 0 for a dynamic edge)."""
        if self.static:
            return make_transform(*self.values[0])
        stamps = self.stamps
        if stamp_ns < stamps[0] or stamp_ns > stamps[-1]:
            raise ExtrapolationError(
                f"lookup of {self.parent} -> {child} at {format_ns(stamp_ns)} would extrapolate: "
                f"data available from {format_ns(stamps[0])} to {format_ns(stamps[-1])}",
                stamp_ns, (stamps[0], stamps[-1]), (self.parent, child))
        index = bisect.bisect_left(stamps, stamp_ns)
        if stamps[index] == stamp_ns:
            return make_transform(*self.values[index])
        t0, t1 = stamps[index - 1], stamps[index]
        (p0, q0), (p1, q1) = self.values[index - 1], self.values[index]
        ratio = (stamp_ns - t0) / (t1 - t0)
        return make_transform(p0 + ratio * (p1 - p0), slerp(q0, q1, ratio))


class TransformBuffer:
    """Thread-safe store of a TF tree with time interpolation (no ROS imports).

    Args:
        cache_time_s: how much history each dynamic edge keeps, measured back from its
            newest stamp (tf2's default is 10 s). None keeps everything (bag import).
        max_history: upper bound on stored stamps per edge, whatever their times (protects
            memory against a publisher at absurd rates). None = unbounded.
        jump_back_s: a dynamic transform stamped more than this before its edge's newest
            stamp means the clock jumped back (a bag loop, a simulator restart): every dynamic
            edge is cleared (static ones stay), ``time_jumps`` counts it and ``last_jump``
            describes it. Without this, new poses would interpolate against the old timeline.
            None = insert late data as it comes (bag import reads in order).
    """

    def __init__(self, cache_time_s: float | None = 10.0, max_history: int | None = 10_000,
                 jump_back_s: float | None = None):
        if cache_time_s is not None and not cache_time_s > 0:
            raise ValueError(f"cache_time_s must be > 0 or None, got {cache_time_s}")
        if max_history is not None and max_history < 2:
            raise ValueError(f"max_history must be >= 2 (interpolation needs two stamps), got {max_history}")
        self.cache_time_ns = None if cache_time_s is None else int(round(cache_time_s * NS_PER_S))
        self.max_history = max_history
        if jump_back_s is not None and not jump_back_s > 0:
            raise ValueError(f"jump_back_s must be > 0 or None, got {jump_back_s}")
        self.jump_back_ns = None if jump_back_s is None else int(round(jump_back_s * NS_PER_S))
        self.time_jumps = 0
        self.last_jump = ""
        self._edges: dict[str, _Edge] = {}  # child frame -> its edge to its parent
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writing
    def add_transform(self, parent: str, child: str, stamp_ns: int, translation: Sequence[float],
                      quaternion: Sequence[float], static: bool = False) -> None:
        """Record T_parent_child at ``stamp_ns``.

        Raises ValueError (naming the edge) for empty or equal frame ids, a negative stamp,
        a non-finite translation, or a quaternion that is non-finite or not normalised
        within tolerance. Leading '/' in frame ids is dropped (ROS 1 style names).
        """
        parent, child = _clean_frame(parent), _clean_frame(child)
        what = f"transform {parent!r} -> {child!r}"
        if not parent or not child:
            raise ValueError(f"{what}: frame ids must be non-empty")
        if parent == child:
            raise ValueError(f"{what}: parent and child are the same frame")
        stamp_ns = int(stamp_ns)
        if stamp_ns < 0:
            raise ValueError(f"{what}: negative stamp {stamp_ns} ns")
        translation = np.asarray(translation, dtype=np.float64).reshape(-1)
        if translation.shape != (3,) or not np.all(np.isfinite(translation)):
            raise ValueError(f"{what}: translation must be 3 finite values, got {translation.tolist()}")
        quaternion = normalize_quaternion(quaternion, what)
        with self._lock:
            edge = self._edges.get(child)
            if (self.jump_back_ns is not None and not static and edge is not None and not edge.static
                    and edge.stamps and stamp_ns < edge.stamps[-1] - self.jump_back_ns):
                self.time_jumps += 1
                self.last_jump = (f"{what} stamped {format_ns(stamp_ns)}, {(edge.stamps[-1] - stamp_ns) / NS_PER_S:.3f} s "
                                  f"before its newest; dynamic transforms cleared")
                self._clear_dynamic()
                edge = None
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent, static)
            edge.insert(stamp_ns, translation, quaternion)
            if not static:
                edge.prune(self.max_history, self.cache_time_ns)

    def clear(self) -> None:
        with self._lock:
            self._edges.clear()

    def newest_dynamic_stamp(self) -> int | None:
        """The newest stamp of any dynamic edge (None when there is none)."""
        with self._lock:
            stamps = [edge.stamps[-1] for edge in self._edges.values() if not edge.static and edge.stamps]
        return max(stamps) if stamps else None

    def clear_dynamic(self) -> None:
        """Forget every dynamic edge, keep the static ones (a new timeline starts)."""
        with self._lock:
            self._clear_dynamic()

    def _clear_dynamic(self) -> None:
        self._edges = {name: edge for name, edge in self._edges.items() if edge.static}

    # ------------------------------------------------------------------ reading
    def frames(self) -> set[str]:
        """Every frame that appears as a parent or a child."""
        with self._lock:
            return set(self._edges) | {edge.parent for edge in self._edges.values()}

    def parent_of(self, frame: str) -> str | None:
        with self._lock:
            edge = self._edges.get(_clean_frame(frame))
            return edge.parent if edge else None

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int = 0) -> bool:
        try:
            self.lookup_transform(target_frame, source_frame, stamp_ns)
        except TransformError:
            return False
        return True

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int = 0) -> np.ndarray:
        """T_target_source [4, 4] at ``stamp_ns`` (0 = latest common time)."""
        return self.lookup_transform(target_frame, source_frame, stamp_ns).matrix

    def latest_common_time(self, target_frame: str, source_frame: str) -> int:
        """Newest stamp at which every dynamic edge of the chain is known; 0 if all are static."""
        with self._lock:
            chain = self._chain(_clean_frame(target_frame), _clean_frame(source_frame))
            return self._latest_common(chain)

    def lookup_transform(self, target_frame: str, source_frame: str, stamp_ns: int = 0) -> StampedTransform:
        """Like :meth:`lookup`, also reporting the resolved stamp.

        Raises UnknownFrameError, ConnectivityError or ExtrapolationError (all TransformError).
        """
        target, source = _clean_frame(target_frame), _clean_frame(source_frame)
        stamp_ns = int(stamp_ns)
        with self._lock:
            up_source, up_target = self._chain(target, source)
            if stamp_ns == 0:
                stamp_ns = self._latest_common((up_source, up_target))
            # T_common_source = T_common_p ... T_p1_source, and likewise for the target.
            common_from_source = self._compose(up_source, stamp_ns)
            common_from_target = self._compose(up_target, stamp_ns)
        matrix = invert_transform(common_from_target) @ common_from_source
        return StampedTransform(matrix, stamp_ns, target, source)

    # ------------------------------------------------------------------ internals (lock held)
    def _known(self, frame: str) -> bool:
        return frame in self._edges or any(edge.parent == frame for edge in self._edges.values())

    def _path_to_root(self, frame: str) -> list[str]:
        path = [frame]
        while frame in self._edges:
            frame = self._edges[frame].parent
            if frame in path:
                raise ConnectivityError(f"TF tree has a loop through {frame!r}: {' -> '.join(path + [frame])}")
            path.append(frame)
        return path

    def _chain(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Frames from source up to the common ancestor, and from target up to it (inclusive)."""
        for frame, role in ((target, "target"), (source, "source")):
            if not frame:
                raise UnknownFrameError(f"empty {role} frame id")
            if not self._known(frame):
                known = sorted(set(self._edges) | {e.parent for e in self._edges.values()})
                raise UnknownFrameError(f"{role} frame {frame!r} does not exist in the TF tree "
                                        f"(known frames: {', '.join(known) or 'none'})")
        source_path = self._path_to_root(source)
        target_path = self._path_to_root(target)
        target_set = set(target_path)
        for index, frame in enumerate(source_path):
            if frame in target_set:
                return source_path[: index + 1], target_path[: target_path.index(frame) + 1]
        raise ConnectivityError(
            f"cannot connect {target!r} and {source!r}: they are in different trees "
            f"(roots {target_path[-1]!r} and {source_path[-1]!r})")

    def _latest_common(self, chain: tuple[list[str], list[str]]) -> int:
        newest = [self._edges[child].stamps[-1]
                  for path in chain for child in path[:-1] if not self._edges[child].static]
        return min(newest) if newest else 0

    def _compose(self, path: list[str], stamp_ns: int) -> np.ndarray:
        matrix = np.eye(4)
        for child in path[:-1]:  # the last frame is the common ancestor
            matrix = self._edges[child].at(stamp_ns, child) @ matrix
        return matrix


def _clean_frame(frame: str) -> str:
    return str(frame).lstrip("/")


# --------------------------------------------------------------------------- ROS listener
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"


def add_tf_message(buffer: TransformBuffer, message: Any, static: bool) -> list[str]:
    """Feed every TransformStamped of a tf2_msgs/TFMessage (rclpy or rosbags) into ``buffer``.

    Bad transforms are skipped, not raised, so one broken publisher cannot stop the rest of
    the tree; the returned list says what was skipped and why.
    """
    problems = []
    for stamped in message.transforms:
        stamp = stamped.header.stamp
        translation = stamped.transform.translation
        rotation = stamped.transform.rotation
        try:
            buffer.add_transform(
                stamped.header.frame_id, stamped.child_frame_id,
                int(stamp.sec) * NS_PER_S + int(stamp.nanosec),
                (translation.x, translation.y, translation.z),
                (rotation.x, rotation.y, rotation.z, rotation.w), static=static)
        except ValueError as error:
            problems.append(str(error))
    return problems


class TfListener:
    """Subscribes a node to /tf and /tf_static and fills a :class:`TransformBuffer`.

    QoS as tf2_ros: /tf reliable, volatile, keep last 100; /tf_static reliable, transient
    local, keep last 100 (so late joiners still receive every static transform).
    """

    def __init__(self, node: Any, buffer: TransformBuffer | None = None, *, qos_depth: int = 100,
                 tf_topic: str = TF_TOPIC, tf_static_topic: str = TF_STATIC_TOPIC,
                 callback_group: Any = None, on_time_jump: Any = None):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        self.node = node
        self.buffer = buffer if buffer is not None else TransformBuffer()
        self.on_time_jump = on_time_jump  # called with buffer.last_jump after a backward jump
        dynamic_qos = QoSProfile(depth=qos_depth, history=HistoryPolicy.KEEP_LAST,
                                 reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.VOLATILE)
        static_qos = QoSProfile(depth=qos_depth, history=HistoryPolicy.KEEP_LAST,
                                reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subscriptions = [
            node.create_subscription(TFMessage, tf_topic, lambda msg: self._on_message(msg, False),
                                     dynamic_qos, callback_group=callback_group),
            node.create_subscription(TFMessage, tf_static_topic, lambda msg: self._on_message(msg, True),
                                     static_qos, callback_group=callback_group),
        ]

    def _on_message(self, message: Any, static: bool) -> None:
        jumps = self.buffer.time_jumps
        for problem in add_tf_message(self.buffer, message, static):
            self.node.get_logger().warning(f"dropped TF: {problem}", throttle_duration_sec=5.0)
        if self.buffer.time_jumps != jumps and self.on_time_jump is not None:
            self.on_time_jump(self.buffer.last_jump)

    def destroy(self) -> None:
        """Remove the two subscriptions from the node.

        Call it while no executor is spinning the node in another thread (after
        ``executor.shutdown()`` or ``remove_node``): rclpy may raise ``InvalidHandle`` in a
        spinning executor's wait set for an entity destroyed under it (seen with clients in
        test_node). The node itself never calls this; destroying the node removes them too.
        """
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._subscriptions = []


__all__ = [
    "TransformBuffer", "TfListener", "StampedTransform", "TransformError", "UnknownFrameError",
    "ConnectivityError", "ExtrapolationError", "add_tf_message", "normalize_quaternion",
    "quaternion_to_matrix", "matrix_to_quaternion", "slerp", "make_transform", "invert_transform",
    "QUATERNION_NORMALIZATION_TOLERANCE", "NS_PER_S",
]
