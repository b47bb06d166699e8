"""Keyframe poses that follow a SLAM pose graph: loop closures move the keyframes with the map.

Pure Python + numpy (no rclpy), like :mod:`viewseg_ros.keyframes`, so it is unit-tested
without ROS.

Why: a keyframe's pose is looked up in ``fixed_frame`` (``map``) once, when it is admitted.
A SLAM system that closes a loop re-optimises its whole trajectory: the robot's past poses
move, but TF only ever publishes the *current* ``map -> odom``, so the kept keyframes stay
where the old estimate put them and a query renders from misplaced views. TF cannot say where
the past poses went; the pose graph can. Many SLAM systems publish their optimised trajectory
as a ``nav_msgs/Path`` of stamped body poses in ``map`` (RTAB-Map's ``mapPath``, Isaac ROS
Visual SLAM's ``slam_path``), and this module re-poses keyframes from it.

How, per keyframe (the correction SLAM itself publishes as ``map -> odom``, but taken at the
keyframe's own time):
1. At admission the node also records the keyframe's pose in the odometry frame,
   ``A_k = T_odom_cam(t_k)``. Odometry drifts but never jumps, so ``A_k`` stays meaningful
   whatever the map does later.
2. For each graph node i (stamp ``t_i``, optimised body pose ``P_i = T_map_body(t_i)``) the
   node looks up the body's odometry pose ``O_i = T_odom_body(t_i)`` once, the first time the
   node appears: from TF (seconds of history), else from the node's own :class:`OdometryTrail`
   (the body's odometry pose sampled from TF ten times a second and at every keyframe's
   stamp, and kept, so a graph published only now and then still finds its nodes).
   ``C_i = P_i O_i^-1`` is the ``map -> odom`` the latest optimisation implies at ``t_i``.
3. The keyframe's pose becomes ``C(t_k) A_k``, with ``C(t_k)`` interpolated between the nodes
   on either side of ``t_k`` (translation linearly, rotation by slerp), or the nearest node's
   ``C`` before the first or after the last node. A keyframe farther than ``max_gap_s`` from
   every node with an odometry pose keeps its pose: the graph says nothing about it.

Every update starts again from ``A_k`` and the newest graph, so corrections never accumulate.
Keyframes without an odometry pose (admitted while TF had no ``odom`` frame, or restored from
a folder that did not keep theirs) keep their poses.

Restarts. A saved keyframe folder (viewseg_ros/keyframe_store.py) keeps each keyframe's
``A_k`` and the odometry trail around its stamp, so keyframes loaded after a restart of the
node (or a lifecycle cleanup and configure) follow the graph too: TF no longer has the
odometry at their nodes' stamps, the saved trail does. Only where stamps compare: both runs
on the system clock (a simulator's clock restarts with it) and the same odometry frame.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from viewseg_ros.keyframes import KeyframeBuffer, pose_difference
from viewseg_ros.tf_buffer import (NS_PER_S, QUATERNION_NORMALIZATION_TOLERANCE, invert_transform,
                                   matrix_to_quaternion, normalize_quaternion, quaternion_to_matrix, slerp)


# A graph republished with the same poses re-poses nothing: re-posing a keyframe drops the
# queries' prepared source views of the sets it is in (viewseg_core/model/prepared_cache.py).
UNMOVED_M = 1e-4
UNMOVED_DEG = 1e-3


class OdometryUnavailable(LookupError):
    """TF can never give the odometry pose at this stamp (older than its history)."""


@dataclass
class PoseGraphUpdate:
    """What one pose graph message did (for the log and /diagnostics)."""

    nodes: int = 0                # poses in the message
    nodes_with_odometry: int = 0  # of those, with an odometry pose (usable)
    covered: int = 0              # keyframes the graph gives a pose (within max_gap_s of a node)
    moved: int = 0                # of those, re-posed (they moved more than a rounding error)
    uncovered: int = 0            # keyframes with an odometry pose but no node within max_gap_s
    unanchored: int = 0           # keyframes without an odometry pose (restored, or no odom frame)
    max_shift_m: float = 0.0      # largest move of a keyframe's camera centre by this update
    max_turn_deg: float = 0.0     # largest turn of a keyframe's optical frame by this update

    def describe(self) -> str:
        text = (f"{self.moved} of {self.covered} keyframes the graph covers re-posed (up to {self.max_shift_m:.3f} m, "
                f"{self.max_turn_deg:.2f} deg) from {self.nodes_with_odometry} of {self.nodes} graph nodes")
        if self.uncovered:
            text += f"; {self.uncovered} with no node within max_gap_s kept their poses"
        if self.unanchored:
            text += f"; {self.unanchored} without an odometry pose on this clock (from a folder that kept none, from before a clock jump, or unposed in odom) kept theirs"
        return text


def interpolate_transform(a: np.ndarray, b: np.ndarray, ratio: float) -> np.ndarray:
    """The rigid transform ``ratio`` of the way from ``a`` to ``b`` (0 = a, 1 = b): translation
    linearly, rotation along the shorter arc."""
    out = np.eye(4)
    out[:3, 3] = (1.0 - ratio) * a[:3, 3] + ratio * b[:3, 3]
    out[:3, :3] = quaternion_to_matrix(slerp(matrix_to_quaternion(a[:3, :3]), matrix_to_quaternion(b[:3, :3]),
                                             ratio))
    return out


class OdometryTrail:
    """The body's odometry pose over time, sampled by the node, for graph nodes older than the
    TF history. Between two samples at most ``max_step_s`` apart it interpolates (translation
    linearly, rotation by slerp); across a longer gap (TF stalled) or outside the samples it
    says None. Keeps the newest ``max_samples`` (an hour at 10 Hz by default). Thread-safe:
    the node samples in one callback group and reads in another."""

    def __init__(self, max_samples: int = 36_000, max_step_s: float = 1.0):
        self.max_samples = max_samples
        self.max_step_ns = int(max_step_s * NS_PER_S)
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, odom_from_body: np.ndarray) -> None:
        """A sample, in stamp order (a keyframe's may be older than the timer's latest); a stamp
        held already is kept as it was (TF's latest had not moved on)."""
        with self._lock:
            index = bisect.bisect_left(self._stamps, stamp_ns)
            if index < len(self._stamps) and self._stamps[index] == stamp_ns:
                return
            self._stamps.insert(index, int(stamp_ns))
            self._poses.insert(index, np.asarray(odom_from_body, dtype=np.float64))
            if len(self._stamps) > self.max_samples:
                del self._stamps[0], self._poses[0]

    @property
    def first_ns(self) -> int | None:
        with self._lock:
            return self._stamps[0] if self._stamps else None

    def at(self, stamp_ns: int) -> np.ndarray | None:
        with self._lock:
            index = bisect.bisect_left(self._stamps, stamp_ns)
            if index < len(self._stamps) and self._stamps[index] == stamp_ns:
                return self._poses[index]
            if index == 0 or index >= len(self._stamps):
                return None
            t0, t1 = self._stamps[index - 1], self._stamps[index]
            pose0, pose1 = self._poses[index - 1], self._poses[index]
        if t1 - t0 > self.max_step_ns:
            return None
        return interpolate_transform(pose0, pose1, (stamp_ns - t0) / (t1 - t0))

    def reset(self) -> None:
        with self._lock:
            self._stamps, self._poses = [], []

    def samples_near(self, stamps_ns: Sequence[int], window_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """The samples within ``window_ns`` of any of ``stamps_ns``: stamps [N] int64 and poses
        [N, 4, 4], sorted (what a keyframe folder keeps: the odometry its keyframes' graph nodes
        will need after a restart)."""
        with self._lock:
            stamps = np.array(self._stamps, dtype=np.int64)
            poses = np.array(self._poses, dtype=np.float64).reshape(-1, 4, 4)
        keys = np.sort(np.asarray(list(stamps_ns), dtype=np.int64))
        if not len(stamps) or not len(keys):
            return np.zeros(0, dtype=np.int64), np.zeros((0, 4, 4))
        after = np.searchsorted(keys, stamps).clip(0, len(keys) - 1)
        before = (after - 1).clip(0, len(keys) - 1)
        gap = np.minimum(np.abs(keys[after] - stamps), np.abs(keys[before] - stamps))
        near = gap <= window_ns
        return stamps[near], poses[near]

    def merge(self, stamps_ns: np.ndarray, poses: np.ndarray) -> None:
        """Add saved samples (:meth:`samples_near` of an earlier run), keeping stamps held already."""
        for stamp_ns, pose in zip(np.asarray(stamps_ns).tolist(), np.asarray(poses)):
            self.add(int(stamp_ns), pose)


def samples_near_all(trails: Sequence[OdometryTrail], stamps_ns: Sequence[int], window_ns: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`OdometryTrail.samples_near` of several trails together: stamps [N] sorted, one sample
    per stamp (the earlier trail's where two share one), and poses [N, 4, 4]."""
    parts = [trail.samples_near(stamps_ns, window_ns) for trail in trails]
    stamps = np.concatenate([part[0] for part in parts])
    poses = np.concatenate([part[1] for part in parts]).reshape(-1, 4, 4)
    unique, first = np.unique(stamps, return_index=True)   # first occurrence: the earlier trail's
    return unique, poses[first]


@dataclass
class GraphNodes:
    """A pose graph's nodes: ``stamps`` [N] int64 ns, sorted, and ``poses`` [N, 4, 4] T_fixed_body."""

    stamps: np.ndarray
    poses: np.ndarray

    @classmethod
    def of(cls, nodes: Sequence[tuple[int, np.ndarray]]) -> "GraphNodes":
        """From [(stamp_ns, T_fixed_body)], sorted here."""
        order = sorted(range(len(nodes)), key=lambda i: nodes[i][0])
        return cls(np.array([int(nodes[i][0]) for i in order], dtype=np.int64),
                   np.array([nodes[i][1] for i in order], dtype=np.float64).reshape(-1, 4, 4))

    def __len__(self) -> int:
        return len(self.stamps)


def nodes_from_path(msg: Any, fixed_frame: str) -> GraphNodes:
    """The nodes of a nav_msgs/Path, sorted by stamp.

    Raises ValueError, naming the problem, for a path in another frame than ``fixed_frame``,
    a pose without a stamp or with a non-finite position or a non-normalised quaternion (as
    :func:`viewseg_ros.tf_buffer.normalize_quaternion` judges one): a graph that cannot be
    read is not half applied. Reads field by field and checks in bulk: graphs of SLAM systems
    hold thousands of nodes and come every second (benchmarks/bench_pose_graph.py).
    """
    frame = msg.header.frame_id.lstrip("/")
    if frame != fixed_frame:
        raise ValueError(f"pose graph is in frame {msg.header.frame_id!r}, keyframes in fixed_frame "
                         f"{fixed_frame!r}: publish the optimised path in {fixed_frame!r}")
    count = len(msg.poses)
    stamps = np.empty(count, dtype=np.int64)
    values = np.empty((count, 7), dtype=np.float64)   # x, y, z, qx, qy, qz, qw
    for index, stamped in enumerate(msg.poses):
        header, pose = stamped.header, stamped.pose
        if header.frame_id and header.frame_id.lstrip("/") != fixed_frame:
            raise ValueError(f"pose graph node {index} is in frame {header.frame_id!r}, not {fixed_frame!r}")
        stamps[index] = header.stamp.sec * NS_PER_S + header.stamp.nanosec
        p, q = pose.position, pose.orientation
        values[index] = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)

    def first(bad: np.ndarray) -> int:
        return int(np.flatnonzero(bad)[0])

    if (stamps <= 0).any():
        raise ValueError(f"pose graph node {first(stamps <= 0)} has no stamp: nodes are matched to keyframes by time")
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        index = first(~finite)
        if not np.isfinite(values[index, :3]).all():
            raise ValueError(f"pose graph node {index}: non-finite position {values[index, :3].tolist()}")
        normalize_quaternion(values[index, 3:], f"pose graph node {index}")   # raises, naming it
    norm2 = (values[:, 3:] ** 2).sum(axis=1)
    off = np.abs(norm2 - 1.0) > QUATERNION_NORMALIZATION_TOLERANCE
    if off.any():
        normalize_quaternion(values[first(off), 3:], f"pose graph node {first(off)}")   # raises, naming it
    order = np.argsort(stamps, kind="stable")
    stamps, values = stamps[order], values[order]
    poses = np.zeros((count, 4, 4))
    poses[:, :3, :3] = quaternion_to_matrix(values[:, 3:] / np.sqrt(norm2[order])[:, None])
    poses[:, :3, 3] = values[:, :3]
    poses[:, 3, 3] = 1.0
    return GraphNodes(stamps, poses)


class PoseGraphCorrector:
    """The latest pose graph's ``map -> odom`` at any time (see the module docstring).

    Not thread-safe: the node calls it under one lock.
    """

    def __init__(self, max_gap_s: float = 5.0):
        if not max_gap_s > 0:
            raise ValueError(f"max_gap_s must be > 0, got {max_gap_s}")
        self.max_gap_ns = int(max_gap_s * NS_PER_S)
        # T_odom_body at each node stamp, looked up once; None = TF never had it.
        self._odometry: dict[int, np.ndarray | None] = {}
        self._stamps = np.zeros(0, dtype=np.int64)         # [N] nodes with an odometry pose, sorted
        self._fixed_from_odom = np.zeros((0, 4, 4))         # [N] C_i = P_i O_i^-1
        self.nodes = 0

    def reset(self) -> None:
        """Forget the graph (the clock jumped back: node stamps no longer compare)."""
        self.__init__(self.max_gap_ns / NS_PER_S)

    def forget_unavailable(self) -> None:
        """Ask again for the odometry of nodes it was unavailable for (a keyframe folder's saved
        trail has just been loaded: the next graph finds them there)."""
        self._odometry = {stamp: pose for stamp, pose in self._odometry.items() if pose is not None}

    @property
    def usable_nodes(self) -> int:
        return len(self._stamps)

    @property
    def usable_stamps(self) -> list[int]:
        """Stamps of the current graph's nodes that have an odometry pose, sorted."""
        return [int(stamp) for stamp in self._stamps]

    def update(self, nodes: GraphNodes | Sequence[tuple[int, np.ndarray]],
               odometry_at: Callable[[int], np.ndarray | None]) -> None:
        """Take a new graph (:class:`GraphNodes`, or [(stamp_ns, T_fixed_body)]); it replaces
        the previous graph whole, as SLAM republishes it. ``odometry_at(stamp_ns)`` gives
        T_odom_body, None when TF cannot say yet (asked again with the next graph), or raises
        :class:`OdometryUnavailable` when it never will. A stamp repeated in the graph counts
        once (its first pose)."""
        if not isinstance(nodes, GraphNodes):
            nodes = GraphNodes.of(nodes)
        odometry: dict[int, np.ndarray | None] = {}
        usable = np.zeros(len(nodes), dtype=bool)
        odom_from_body = np.zeros((len(nodes), 4, 4))
        previous = None
        for index, stamp_ns in enumerate(nodes.stamps.tolist()):
            if stamp_ns == previous:
                continue
            previous = stamp_ns
            if stamp_ns in self._odometry:
                pose = self._odometry[stamp_ns]
            else:
                try:
                    pose = odometry_at(stamp_ns)
                except OdometryUnavailable:
                    pose = None
                else:
                    if pose is None:
                        continue  # not known yet: not remembered, so the next graph asks again
            odometry[stamp_ns] = pose
            if pose is not None:
                usable[index] = True
                odom_from_body[index] = pose
        self._odometry = odometry  # nodes the graph dropped are forgotten
        self._stamps = nodes.stamps[usable]
        self._fixed_from_odom = nodes.poses[usable] @ invert_transform(odom_from_body[usable])
        self.nodes = len(nodes)

    def fixed_from_odom(self, stamp_ns: int) -> np.ndarray | None:
        """The graph's ``map -> odom`` at ``stamp_ns``, or None when no node is within max_gap_s."""
        stamps = self._stamps
        if not len(stamps):
            return None
        after = int(np.searchsorted(stamps, stamp_ns, side="left"))
        if after < len(stamps) and stamps[after] == stamp_ns:
            return self._fixed_from_odom[after]
        before = after - 1
        gaps = [abs(stamp_ns - int(stamps[i])) for i in (before, after) if 0 <= i < len(stamps)]
        if min(gaps) > self.max_gap_ns:
            return None
        if before < 0:
            return self._fixed_from_odom[0]
        if after >= len(stamps):
            return self._fixed_from_odom[-1]
        ratio = (stamp_ns - int(stamps[before])) / (int(stamps[after]) - int(stamps[before]))
        return interpolate_transform(self._fixed_from_odom[before], self._fixed_from_odom[after], ratio)

    def correct(self, stamp_ns: int, odom_from_camera: np.ndarray) -> np.ndarray | None:
        """The keyframe's ``T_fixed_camera`` from the graph, or None when the graph does not cover it."""
        fixed_from_odom = self.fixed_from_odom(stamp_ns)
        return None if fixed_from_odom is None else fixed_from_odom @ odom_from_camera


def apply_pose_graph(buffer: KeyframeBuffer, corrector: PoseGraphCorrector) -> PoseGraphUpdate:
    """Re-pose every keyframe that has an odometry pose on the buffer's current clock epoch
    (``Keyframe.odom_epoch``: live ones, and restored ones whose folder kept it) from
    ``corrector``'s graph (:meth:`KeyframeBuffer.repose`: in-flight queries keep the keyframes
    they picked). Keyframes from before a clock jump are counted as unanchored: their stamps
    do not compare with the graph's."""
    update = PoseGraphUpdate(nodes=corrector.nodes, nodes_with_odometry=corrector.usable_nodes)
    poses = {}
    for keyframe in buffer.snapshot():
        if keyframe.odom_c2w is None or keyframe.odom_epoch != buffer.epoch:
            update.unanchored += 1
            continue
        corrected = corrector.correct(keyframe.stamp_ns, keyframe.odom_c2w)
        if corrected is None:
            update.uncovered += 1
            continue
        update.covered += 1
        shift, turn = pose_difference(keyframe.c2w, corrected)
        update.max_shift_m = max(update.max_shift_m, shift)
        update.max_turn_deg = max(update.max_turn_deg, turn)
        if shift > UNMOVED_M or turn > UNMOVED_DEG:
            poses[keyframe.id] = corrected
    update.moved = buffer.repose(poses)
    return update


__all__ = ["PoseGraphCorrector", "PoseGraphUpdate", "OdometryUnavailable", "OdometryTrail", "samples_near_all",
           "GraphNodes", "nodes_from_path", "interpolate_transform", "apply_pose_graph"]
