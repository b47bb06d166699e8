"""The keyframe buffer: which posed images the node keeps as source views, bounded in count and bytes.

Pure Python + numpy (no rclpy) so it is unit-tested without ROS and shared with bag import.

Admission (:meth:`KeyframeBuffer.should_admit`, thresholds in :class:`KeyframeConfig`):
1. A frame stamped less than ``min_interval_s`` after the newest keyframe of the same camera
   is refused (a rate floor: every keyframe costs an encoder pass; the default 0.01 s is well
   below common frame periods, so admission is decided by rule 2).
2. Otherwise it is admitted when its pose is *novel*: for every kept keyframe, the camera
   centre moved at least ``min_translation`` metres OR the optical frame turned at least
   ``min_rotation_deg`` degrees. An empty buffer admits the first frame.
3. A frame that is not novel is still admitted when every keyframe it duplicates is older
   than ``refresh_after_s`` (if set); those stale duplicates are dropped, so a changed
   scene replaces its old views instead of piling up next to them.

Eviction, after each admission, while the buffer holds more than ``max_keyframes`` or more
than ``max_bytes`` (images, labels, depth and cached features), never the new keyframe:
- ``"oldest"``: drop the keyframe with the oldest stamp;
- ``"redundant"`` (default): drop the keyframe closest in pose to another keyframe, with
  distance ``d = |dt| / min_translation + angle / min_rotation`` (both thresholds count as
  1); ties go to the older one. This keeps coverage of the places seen while a robot
  dwells, where "oldest" would forget the start of a room once it has been left.

The newest ``keep_recent`` keyframes (by admission) of each camera are the robot's
surroundings and are evicted only when nothing older is left (per camera, so that a front
camera on a long route does not push out the rear camera's view of what is behind):
"redundant" picks its victim among the older ones, by their distances to each other (against
the window, each keyframe leaving it would be the most redundant and go at once, and the older
set would freeze).
Why: a camera that keeps moving on (a corridor, a long route) makes its newest keyframes
the densest part of the buffer, every one a threshold away from the last, so without the
window "redundant" thins exactly the place the planner asks about. Measured on a straight
walk of 300 views, 0.5 m and 20 degrees apart, with 64 keyframes: without the window the
buffer kept 1 of the newest 16 views and spread the rest over the whole walk
(test/viewseg_ros/test_keyframes.py). ``keep_recent: 0`` is the pure coverage policy.

Scene change (``change_share`` > 0; :mod:`viewseg_core.scene_change`): a keyframe is a
snapshot, and a person who stood in it stays there for every later query. A new keyframe with
depth that saw through what an older one shows (the person walked away), in at least
``change_share`` of the older one's measured points, evicts it
(:meth:`KeyframeBuffer.evict_changed`), whatever the ``keep_recent`` window: it shows the room
as it was. A camera that stands still takes no new keyframe by rule 2; the node
checks such a frame against the keyframes it repeats (``Decision.duplicates``,
:meth:`KeyframeBuffer.changed_keyframes`) every so often and admits it when it shows a change.
Keyframes without depth are never judged: an RGB camera's keyframes wait for
``refresh_after_s``.
"""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from viewseg_core.data.records import View
from viewseg_core.scene_change import CHANGE_CELL_DEG, scene_changes
from viewseg_core.stale_points import MAX_CELL_DEG

NS_PER_S = 1_000_000_000
# The stamp a keyframe from before a clock reset counts with: older than anything, so it is
# never "the newest keyframe" (rule 1) and always stale (rule 3).
_PREVIOUS_EPOCH_NS = -(1 << 62)


@dataclass
class KeyframeConfig:
    """Keyframe admission and bounds (node parameters ``keyframes.*``; bag import flags)."""

    min_translation: float = 0.25  # metres between camera centres
    min_rotation_deg: float = 15.0  # degrees between optical frames
    # A floor only (each keyframe costs an encoder pass): well below a 30 Hz frame period, so
    # clock jitter never refuses a new view (0.2 s refused 6 of 20 views of a 5 Hz camera).
    min_interval_s: float = 0.01
    refresh_after_s: float | None = None  # re-admit a seen pose when its keyframes are this old
    max_keyframes: int = 64
    max_bytes: int = 1 << 30  # 1 GiB: images + labels + depth + cached features
    eviction: str = "redundant"  # or "oldest"
    # The newest keyframes evicted only when nothing older is left (see the module docstring).
    keep_recent: int = 16
    # A keyframe with depth evicts the older ones it shows changed in at least this share of
    # their measured points (see "Scene change" in the module docstring); 0 = never.
    change_share: float = 0.0
    change_cell_deg: float = CHANGE_CELL_DEG

    def __post_init__(self) -> None:
        if not (self.min_translation >= 0 and self.min_rotation_deg >= 0 and self.min_interval_s >= 0):
            raise ValueError(f"keyframe thresholds must be >= 0: {self}")
        if self.refresh_after_s is not None and not self.refresh_after_s > 0:
            raise ValueError(f"refresh_after_s must be > 0 or None, got {self.refresh_after_s}")
        if self.max_keyframes < 1 or self.max_bytes < 1:
            raise ValueError(f"max_keyframes and max_bytes must be >= 1: {self}")
        if self.keep_recent < 0:
            raise ValueError(f"keep_recent must be >= 0, got {self.keep_recent}")
        if self.eviction not in ("redundant", "oldest"):
            raise ValueError(f"eviction must be 'redundant' or 'oldest', got {self.eviction!r}")
        if not 0.0 <= self.change_share <= 1.0:
            raise ValueError(f"change_share must be in [0, 1] (0 = off), got {self.change_share}")
        if not 0.0 < self.change_cell_deg <= MAX_CELL_DEG:
            raise ValueError(f"change_cell_deg must be in (0, {MAX_CELL_DEG:g}], got {self.change_cell_deg}")


def pose_difference(c2w_a: np.ndarray, c2w_b: np.ndarray) -> tuple[float, float]:
    """(distance between camera centres in metres, rotation angle between them in degrees)."""
    translation = float(np.linalg.norm(c2w_a[:3, 3] - c2w_b[:3, 3]))
    relative = c2w_a[:3, :3].T @ c2w_b[:3, :3]
    cos_angle = (np.trace(relative) - 1.0) / 2.0
    return translation, math.degrees(math.acos(min(1.0, max(-1.0, cos_angle))))


def is_novel(c2w: np.ndarray, others: Sequence[np.ndarray], config: KeyframeConfig) -> bool:
    """True when ``c2w`` differs from every pose in ``others`` by a threshold (rule 2)."""
    return not _duplicates(c2w, others, config)


def _duplicates(c2w: np.ndarray, others: Sequence[np.ndarray], config: KeyframeConfig) -> list[int]:
    found = []
    for index, other in enumerate(others):
        translation, angle = pose_difference(c2w, other)
        if translation < config.min_translation and angle < config.min_rotation_deg:
            found.append(index)
    return found


@dataclass
class Decision:
    admit: bool
    reason: str
    replaces: list[int] = field(default_factory=list)  # ids of stale duplicates (rule 3)
    kind: str = ""  # first | novel | refresh (admitted); too_soon | duplicate (refused)
    duplicates: list[int] = field(default_factory=list)  # ids of the keyframes a refused duplicate repeats


def admission_decision(c2w: np.ndarray, stamp_ns: int, kept: Sequence[tuple[int, int, np.ndarray]],
                       config: KeyframeConfig, stream_stamps: Sequence[int] | None = None) -> Decision:
    """Rules 1-3 of the module docstring for a frame against ``kept`` = [(id, stamp_ns, c2w)].

    ``stream_stamps``: the stamps of the kept keyframes from the frame's own camera (None: all
    of ``kept`` are). Rule 1 is a rate floor per camera: two cameras triggered together stamp
    their frames alike, and the second one's view is as new as the first's.

    Shared by :class:`KeyframeBuffer` and bag import, so a bag subsamples exactly as the
    node would.
    """
    if not kept:
        return Decision(True, "first keyframe", kind="first")
    own = [stamp for _, stamp, _ in kept] if stream_stamps is None else list(stream_stamps)
    newest = max(own, default=None)
    if newest is not None and stamp_ns - newest < config.min_interval_s * NS_PER_S:
        return Decision(False, f"{(stamp_ns - newest) / NS_PER_S:.3f} s after the newest keyframe "
                               f"(min_interval_s = {config.min_interval_s})", kind="too_soon")
    duplicates = [kept[i] for i in _duplicates(c2w, [pose for _, _, pose in kept], config)]
    if not duplicates:
        return Decision(True, "novel pose", kind="novel")
    if config.refresh_after_s is not None and all(
            stamp_ns - stamp >= config.refresh_after_s * NS_PER_S for _, stamp, _ in duplicates):
        return Decision(True, f"refreshes {len(duplicates)} stale keyframe(s)", [i for i, _, _ in duplicates],
                        kind="refresh")
    return Decision(False, f"within {config.min_translation} m and {config.min_rotation_deg} deg "
                           f"of keyframe {duplicates[0][0]}", kind="duplicate", duplicates=[i for i, _, _ in duplicates])


def nbytes_of(value: Any) -> int:
    """Bytes held by arrays/tensors in ``value`` (nested dicts, lists, tuples, dataclasses)."""
    if value is None:
        return 0
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if hasattr(value, "element_size") and hasattr(value, "numel"):  # a torch.Tensor, without importing torch
        return int(value.element_size() * value.numel())
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes_of(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(nbytes_of(getattr(value, name)) for name in value.__dataclass_fields__)
    return 0


@dataclass
class Keyframe:
    """One kept view. ``features`` caches the encoder output so a query never re-encodes."""

    id: int
    stamp_ns: int
    view: View
    features: Any = None
    nbytes: int = 0
    epoch: int = 0  # clock epoch (see KeyframeBuffer.reset_clock) the stamp belongs to
    stream: str = ""  # the camera it came from (rule 1 is per camera)
    restored: bool = False  # from a keyframe folder (KeyframeBuffer.restore), not seen in this run
    # [4, 4] the camera's pose in the odometry frame at capture, for re-posing from a SLAM pose
    # graph (viewseg_ros/pose_graph.py); None = not recorded.
    odom_c2w: np.ndarray | None = None
    # The clock epoch the pose graph may compare the stamp in: ``epoch`` for a live keyframe; for
    # a restored one the epoch it was restored in when its folder kept its odometry pose on the
    # same clock (a graph node at its stamp is then the same instant), else None.
    odom_epoch: int | None = None

    @property
    def c2w(self) -> np.ndarray:
        return self.view.c2w

    @property
    def stamp(self) -> float:
        return self.stamp_ns / NS_PER_S

    def recount(self) -> int:
        view = self.view
        self.nbytes = (nbytes_of(view.rgb) + nbytes_of(view.labels) + nbytes_of(view.depth)
                       + nbytes_of(self.features))
        return self.nbytes


class KeyframeBuffer:
    """Thread-safe bounded set of keyframes (see the module docstring for the policy).

    Ids are assigned from 0 upwards and never reused, so a response's keyframe ids stay
    meaningful after evictions.
    """

    def __init__(self, config: KeyframeConfig | None = None):
        self.config = config or KeyframeConfig()
        self._keyframes: dict[int, Keyframe] = {}  # insertion order = admission order
        self._next_id = 0
        self._lock = threading.RLock()
        self.evicted = 0
        self.changed = 0   # of those evicted, for a newer keyframe showing the scene changed
        self.epoch = 0

    def reconfigure(self, config: KeyframeConfig) -> None:
        """New admission rules and bounds (a runtime parameter change); tighter bounds evict
        at once, by the eviction rule."""
        with self._lock:
            self.config = config
            self._enforce_bounds(protect=-1)

    def reset_clock(self) -> None:
        """The stamp clock jumped back (a bag loop, a simulator restart): stamps of kept
        keyframes no longer compare with new ones. Kept keyframes stay (their poses and images
        are still valid), but they stop counting for rule 1 (the newest stamp) and count as
        stale for rule 3; eviction by age treats them as older than any new keyframe."""
        with self._lock:
            self.epoch += 1

    # ------------------------------------------------------------------ admission
    def should_admit(self, c2w: np.ndarray, stamp_ns: int, stream: str = "") -> Decision:
        """Decide on a frame of camera ``stream`` from its pose alone, before paying for image
        conversion/encoding. Novelty is against every keyframe, of any camera; the rate floor
        (rule 1) against the same camera's."""
        with self._lock:
            kept = [(k.id, k.stamp_ns if k.epoch == self.epoch else _PREVIOUS_EPOCH_NS, k.c2w)
                    for k in self._keyframes.values()]
            own = [stamp for (_, stamp, _), k in zip(kept, self._keyframes.values()) if k.stream == stream]
            restored = {k.id for k in self._keyframes.values() if k.restored}
        decision = admission_decision(c2w, stamp_ns, kept, self.config, stream_stamps=own)
        if decision.kind == "duplicate" and restored:
            # A live view supersedes a saved one of the same pose: it shows the room as it is now.
            duplicates = [kept[i][0] for i in _duplicates(c2w, [pose for _, _, pose in kept], self.config)]
            if all(i in restored for i in duplicates):
                return Decision(True, f"replaces {len(duplicates)} restored keyframe(s) with a live view", duplicates,
                                kind="refresh")
        return decision

    def add(self, view: View, stamp_ns: int, features: Any = None, force: bool = False,
            stream: str = "", odom_c2w: np.ndarray | None = None) -> Keyframe | None:
        """Admit ``view`` from camera ``stream`` if :meth:`should_admit` says so (or ``force``);
        evict to stay in bounds. ``odom_c2w``: the view's pose in the odometry frame, kept for
        :meth:`repose`.

        Returns the new keyframe, or None when refused. Raises ValueError when a single
        keyframe is larger than ``max_bytes`` (no eviction could make room for it).
        """
        with self._lock:
            decision = self.should_admit(view.c2w, stamp_ns, stream)
            if not (decision.admit or force):
                return None
            keyframe = Keyframe(self._next_id, int(stamp_ns), view, features, epoch=self.epoch, stream=stream,
                                odom_c2w=odom_c2w, odom_epoch=self.epoch)
            if keyframe.recount() > self.config.max_bytes:
                raise ValueError(f"keyframe of {keyframe.nbytes} B exceeds max_bytes = {self.config.max_bytes}")
            self._next_id += 1
            for stale in decision.replaces:
                self._remove(stale)
            self._keyframes[keyframe.id] = keyframe
            self._enforce_bounds(protect=keyframe.id)
            return keyframe

    def restore(self, view: View, stamp_ns: int, features: Any = None, stream: str = "",
                odom_c2w: np.ndarray | None = None) -> Keyframe:
        """Add a keyframe saved by an earlier run (:mod:`viewseg_ros.keyframe_store`), without
        the admission rules (the saved set was chosen by them already). Its stamp is of another
        run's clock, so it counts like a keyframe from before a clock reset: never the newest
        (rule 1), always stale (rule 3), the oldest for eviction, and outside the ``keep_recent``
        window (in admission order it goes after earlier restored keyframes and before every
        live one). A live frame that duplicates only restored keyframes replaces them, whatever
        ``refresh_after_s`` says: it shows the room as it is now, the saved view as it was.
        Bounds are enforced as for any admission, the restored keyframe included.

        ``odom_c2w``: the pose in the odometry frame the folder kept, given only when its stamp
        is on this run's clock (the caller checks: viewseg_ros/keyframe_store.py); the pose graph
        then re-poses the keyframe like a live one until the clock jumps.

        Raises ValueError when the keyframe alone is larger than ``max_bytes``.
        """
        with self._lock:
            keyframe = Keyframe(self._next_id, int(stamp_ns), view, features, epoch=self.epoch - 1, stream=stream,
                                restored=True, odom_c2w=odom_c2w,
                                odom_epoch=None if odom_c2w is None else self.epoch)
            if keyframe.recount() > self.config.max_bytes:
                raise ValueError(f"keyframe of {keyframe.nbytes} B exceeds max_bytes = {self.config.max_bytes}")
            self._next_id += 1
            order = list(self._keyframes.values())
            at = next((i for i, k in enumerate(order) if k.epoch >= self.epoch), len(order))
            order.insert(at, keyframe)   # after earlier restored ones, before every live one
            self._keyframes = {k.id: k for k in order}
            self._enforce_bounds(protect=-1)
            return keyframe

    def restore_all(self, items: Sequence[tuple], replace: bool = False) -> tuple[list[Keyframe], list[str]]:
        """:meth:`restore` every (view, stamp_ns, features, stream[, odom_c2w]) of ``items`` under one hold
        of the lock, first dropping every keyframe with ``replace``: a reader sees the old
        buffer or the new one, never an empty one between. Returns the restored keyframes still
        kept once the bounds thinned them, and, for an item larger than ``max_bytes`` (skipped), why."""
        kept, refused = [], []
        with self._lock:
            if replace:
                self._keyframes.clear()
            for index, (view, stamp_ns, features, stream, *odom) in enumerate(items):
                try:
                    kept.append(self.restore(view, stamp_ns, features, stream, *odom))
                except ValueError as error:
                    refused.append(f"item {index} ({view.view_id!r}): {error}")
            kept = [k for k in kept if k.id in self._keyframes]   # the bounds may have thinned them
        return kept, refused

    def repose(self, poses: dict[int, np.ndarray]) -> int:
        """Give the keyframes with the ids of ``poses`` those camera-to-world poses (a SLAM
        correction: viewseg_ros/pose_graph.py); ids no longer kept are skipped. Each one is
        replaced by a new Keyframe with a new View, in its place in admission order, so a
        query holding a snapshot renders from the poses it picked, and cached source views
        keyed on the old View are not reused. Returns how many were re-posed."""
        with self._lock:
            count = 0
            for keyframe_id, c2w in poses.items():
                keyframe = self._keyframes.get(keyframe_id)
                if keyframe is None:
                    continue
                view = replace(keyframe.view, c2w=np.array(c2w, dtype=np.float64))
                self._keyframes[keyframe_id] = replace(keyframe, view=view)
                count += 1
            return count

    @contextlib.contextmanager
    def set_aside(self, ids: Sequence[int]) -> Iterator[list[Keyframe]]:
        """Take the keyframes ``ids`` out for the ``with`` block and put them back in their
        places after it: a leave-one-out query (``viewseg render-view --leave-out``) renders a
        view from the other keyframes only. Yields the keyframes set aside."""
        with self._lock:
            before = list(self._keyframes)
            aside = {i: self._keyframes.pop(i) for i in ids if i in self._keyframes}
        try:
            yield list(aside.values())
        finally:
            with self._lock:
                now = self._keyframes
                merged = {i: aside.get(i, now.get(i)) for i in before if i in aside or i in now}
                merged.update((i, k) for i, k in now.items() if i not in merged)   # admitted meanwhile
                self._keyframes = merged

    def set_features(self, keyframe_id: int, features: Any) -> None:
        """Cache encoder output for a keyframe (re-checks the byte bound; others may be evicted)."""
        with self._lock:
            keyframe = self._keyframes.get(keyframe_id)
            if keyframe is None:
                return  # evicted meanwhile: nothing to cache
            keyframe.features = features
            if keyframe.recount() > self.config.max_bytes:
                keyframe.features = None
                keyframe.recount()
                raise ValueError(f"features of keyframe {keyframe_id} push it over max_bytes = {self.config.max_bytes}")
            self._enforce_bounds(protect=keyframe_id)

    def drop_features(self) -> None:
        """Forget every cached feature (e.g. after the model changes)."""
        with self._lock:
            for keyframe in self._keyframes.values():
                keyframe.features = None
                keyframe.recount()

    # ------------------------------------------------------------------ scene change
    def changed_keyframes(self, view: View, stamp_ns: int, among: Sequence[int] | None = None,
                          epoch: int | None = None) -> list[tuple[int, float]]:
        """(id, changed share) of the kept keyframes older than ``view`` (taken at ``stamp_ns``
        in clock ``epoch``, default the current one) that it shows changed: at least
        ``change_share`` of their measured points seen through
        (:func:`viewseg_core.scene_change.scene_changes`); only keyframes with depth, and only
        those of ``among`` when given. Empty when the check is off or ``view``
        has no depth. Runs without the lock held (one range image of ``view``, every older
        keyframe's points judged against it): a keyframe evicted meanwhile may still be named."""
        config = self.config
        if not config.change_share or view.depth is None:
            return []
        with self._lock:
            when = (self.epoch if epoch is None else epoch, stamp_ns)
            candidates = [k for k in self._keyframes.values()
                          if k.view.depth is not None and (among is None or k.id in among)
                          and (k.epoch, k.stamp_ns) < when]
        evidence = scene_changes([(k.view.depth, k.view.K, k.view.c2w) for k in candidates],
                                 (view.depth, view.K, view.c2w), config.change_cell_deg)
        return [(k.id, e.share) for k, e in zip(candidates, evidence) if e.share >= config.change_share]

    def evict_changed(self, keyframe: Keyframe) -> list[tuple[int, float]]:
        """Drop the kept keyframes older than ``keyframe`` that it shows changed
        (:meth:`changed_keyframes`, whatever the ``keep_recent`` window: they show the room as
        it was). Returns the (id, changed share) of those dropped."""
        changed = self.changed_keyframes(keyframe.view, keyframe.stamp_ns, epoch=keyframe.epoch)
        dropped = []
        with self._lock:
            if keyframe.id not in self._keyframes:   # itself evicted meanwhile: its view is no evidence kept
                return []
            for keyframe_id, share in changed:
                if keyframe_id in self._keyframes:
                    self._remove(keyframe_id)
                    self.changed += 1
                    dropped.append((keyframe_id, share))
        return dropped

    # ------------------------------------------------------------------ eviction
    def _remove(self, keyframe_id: int) -> None:
        if self._keyframes.pop(keyframe_id, None) is not None:
            self.evicted += 1

    def _over_bounds(self) -> bool:
        return len(self._keyframes) > self.config.max_keyframes or self.nbytes > self.config.max_bytes

    def _enforce_bounds(self, protect: int) -> None:
        while self._over_bounds():
            candidates = [k for k in self._keyframes.values() if k.id != protect]
            if not candidates:
                break
            recent = self._recent_window()
            older = [k for k in candidates if k.id not in recent]
            if recent and older:   # the older keyframes thin among themselves
                victim = self._victim(older, pool=older)
            else:                  # no window, or nothing older than it: the pure coverage rule
                victim = self._victim(candidates, pool=list(self._keyframes.values()))
            self._remove(victim.id)

    def _recent_window(self) -> set[int]:
        """Ids of each camera's newest ``keep_recent`` keyframes (admission order is insertion
        order, whatever the stamps' clock did)."""
        if not self.config.keep_recent:
            return set()
        by_stream: dict[str, list[int]] = {}
        for keyframe in self._keyframes.values():
            by_stream.setdefault(keyframe.stream, []).append(keyframe.id)
        return {i for ids in by_stream.values() for i in ids[-self.config.keep_recent:]}

    def _victim(self, candidates: list[Keyframe], pool: list[Keyframe]) -> Keyframe:
        """The keyframe to evict among ``candidates``; "redundant" measures each one's nearest
        neighbour within ``pool`` (the older keyframes among themselves, so that those leaving
        the recent window, each a threshold from the next, do not all go at once)."""
        if self.config.eviction == "oldest" or len(pool) < 2:
            return min(candidates, key=lambda k: (k.epoch, k.stamp_ns, k.id))
        cfg = self.config
        scale_t = cfg.min_translation or 1.0  # a zero threshold would divide by zero; metres then
        scale_r = cfg.min_rotation_deg or 1.0

        def nearest(k: Keyframe) -> float:
            distances = []
            for other in pool:
                if other.id != k.id:
                    translation, angle = pose_difference(k.c2w, other.c2w)
                    distances.append(translation / scale_t + angle / scale_r)
            return min(distances)

        return min(candidates, key=lambda k: (nearest(k), k.epoch, k.stamp_ns, k.id))

    # ------------------------------------------------------------------ reading
    @property
    def admitted(self) -> int:
        """Keyframes admitted since the buffer was made (ids are never reused), evicted or not."""
        return self._next_id

    def __len__(self) -> int:
        with self._lock:
            return len(self._keyframes)

    def __iter__(self) -> Iterator[Keyframe]:
        return iter(self.snapshot())

    def __contains__(self, keyframe_id: int) -> bool:
        with self._lock:
            return keyframe_id in self._keyframes

    def get(self, keyframe_id: int) -> Keyframe | None:
        with self._lock:
            return self._keyframes.get(keyframe_id)

    def snapshot(self) -> list[Keyframe]:
        """The keyframes in admission order (a list copy: safe while callbacks add more)."""
        with self._lock:
            return list(self._keyframes.values())

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(k.nbytes for k in self._keyframes.values())

    def clear(self) -> None:
        with self._lock:
            self._keyframes.clear()

    def map_features(self, fn: Callable[[Keyframe], Any]) -> None:
        """Fill missing feature caches with ``fn(keyframe)`` (e.g. after loading the model)."""
        for keyframe in self.snapshot():
            if keyframe.features is None:
                self.set_features(keyframe.id, fn(keyframe))


__all__ = ["KeyframeConfig", "Keyframe", "KeyframeBuffer", "Decision", "admission_decision", "pose_difference",
           "is_novel", "nbytes_of"]
