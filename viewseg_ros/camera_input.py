"""One camera feeding the node's keyframes: its topics and the state of its stream.

A robot often carries several cameras (front and rear, or a ring of them). Parameter
``cameras`` of the node lists their namespaces; each camera's topics are the node's
``image_topic``, ``camera_info_topic``, ``depth_topic`` and ``depth_camera_info_topic``
resolved in its namespace, as identical drivers launched under ``camera_namespace`` publish
them. Every camera keeps its own calibration, TF queue, depth pairing and delivery counts;
all of them feed one keyframe buffer, so a query renders from whichever keyframes see it.

Cameras of different makes differ in more than their namespace: a depth camera in front and
a plain USB camera behind, one read through ``compressed``. Each setting of
:data:`PER_CAMERA_SETTINGS` can therefore be set for one camera as ``camera.<name>.<setting>``
(``<name>``: the last part of its namespace, e.g. ``camera.rear.depth_topic: ""``), as ROS 2
plugins take their parameters; left unset it is the node's own.

Pure Python (no rclpy): topic names are resolved by the node's ``resolve_topic_name``.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from viewseg_core.rectify import ResolvedCamera, Undistorter

STREAM_TOPICS = ("image", "camera_info", "depth")
# Node parameters a camera of several may override as ``camera.<name>.<setting>``.
PER_CAMERA_SETTINGS = ("image_topic", "camera_info_topic", "depth_topic", "depth_camera_info_topic",
                       "image_transport", "depth_transport", "rectification", "image_stamp_offset_s")
DEPTH_QUEUE = 30  # recent depth images kept for pairing by stamp (2 s of a 15 Hz camera)


@dataclass
class PendingImage:
    """A colour frame waiting for its pose (and depth): at the working size with its pinhole
    ``K``, or raw when ``undistorter`` is set (undistorted and resized once admitted)."""

    arrived: float                 # time.monotonic() at arrival
    rgb: np.ndarray
    K: np.ndarray
    frame: str
    stamp_ns: int
    received_hw: tuple[int, int]   # the size it arrived at (its depth must match)
    undistorter: Undistorter | None = None
    waiting_for: str = ""          # the last TF error, for the message when it is dropped
    rotation: np.ndarray | None = None  # a rectified stereo image's r: its camera is the frame's turned by it


def nearest_by_stamp(items: Sequence[tuple], stamp_ns: int, tolerance_ns: int) -> tuple[tuple | None, bool]:
    """Pairing by stamp (depth images, point clouds): the item of ``items`` (tuples whose first
    element is a stamp in ns) nearest ``stamp_ns`` if within ``tolerance_ns``, else None; and,
    when None, whether a match may still come (nothing newer than the window has arrived yet)."""
    best = min(items, key=lambda item: abs(item[0] - stamp_ns), default=None)
    if best is None or abs(best[0] - stamp_ns) > tolerance_ns:
        newest = max((item[0] for item in items), default=None)
        return None, newest is None or newest < stamp_ns + tolerance_ns
    return best, False


def parse_camera_namespaces(value: Any) -> list[str]:
    """The ``cameras`` parameter: a comma- or space-separated string, or a YAML list of
    strings, -> namespaces without a trailing slash; ``[""]`` (one camera, the topics as
    given) when empty. Raises ValueError for a repeated or malformed namespace."""
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    names = [str(item).strip().rstrip("/") for item in items if str(item).strip()]
    if not names:
        return [""]
    for name in names:
        if not name or name.startswith("~") or any(c.isspace() for c in name):
            raise ValueError(f"parameter cameras: {name or '/'!r} is not a camera namespace (e.g. /front or front)")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"parameter cameras: {', '.join(repeated)} listed twice")
    return names


def camera_topic(namespace: str, topic: str, setting: str) -> str:
    """``topic`` (given as ``setting``: "parameter image_topic", "--image-topic") inside camera
    ``namespace``; unresolved (the node resolves it against its own namespace). An absolute or
    private topic cannot be put in a namespace: ValueError naming the setting."""
    if not namespace or not topic:
        return topic
    if topic.startswith(("/", "~")):
        raise ValueError(f"{setting} is {topic!r}: with several cameras it must be relative, e.g. "
                         f"color/image_raw, and is looked up in each camera's namespace")
    return f"{namespace}/{topic}"


@dataclass
class CameraInput:
    """One camera's topics (resolved) and stream state. The node's frames callback group
    serialises every callback that touches the stream state; counters are guarded by the
    node's stats lock."""

    namespace: str                 # as listed in ``cameras``; "" = the node's own
    image_topic: str
    camera_info_topic: str
    depth_topic: str               # "" = no depth
    depth_camera_info_topic: str   # "" = depth registered to the colour camera already
    image_transport: str = "raw"
    depth_transport: str = "raw"
    arrivals_kept: int = 1000      # arrival times kept per topic (the rate window)
    rectification_mode: str = "auto"  # how its CameraInfo is read (the node's parameter rectification)
    stamp_offset_s: float = 0.0       # header stamp -> exposure (the node's image_stamp_offset_s)

    # How its images are read (pinhole K, undistortion, stereo rotation) and the CameraInfo's
    # width, height; one tuple, replaced whole, so the images' callbacks never see half of a new
    # calibration. None: no valid CameraInfo yet.
    calibrated: tuple[ResolvedCamera, int, int] | None = None
    calibration: tuple | None = None  # the CameraInfo fields ``calibrated`` was resolved from
    depth_calibrated: tuple[ResolvedCamera, int, int] | None = None  # the same, of an unaligned depth camera
    depth_calibration: tuple | None = None
    pending: collections.deque = field(default_factory=collections.deque)  # PendingImage, oldest first
    held_for_info: Any = None      # the latest image that came before any valid CameraInfo
    depths: collections.deque = field(default_factory=lambda: collections.deque(maxlen=DEPTH_QUEUE))
    newest_image_ns: int | None = None
    previous_pose: np.ndarray | None = None
    last_change_check_ns: int | None = None  # the stamp of the last refused frame checked for a scene change
    arrivals: dict[str, collections.deque] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # since start: compare with what the camera sent

    def __post_init__(self) -> None:
        self.arrivals = {topic: collections.deque(maxlen=self.arrivals_kept) for topic in STREAM_TOPICS}
        self.received = {topic: 0 for topic in STREAM_TOPICS}

    @property
    def rectification(self) -> str:
        """How its images are read, for logs and /diagnostics."""
        calibrated = self.calibrated
        return calibrated[0].description if calibrated is not None else "no CameraInfo yet"

    @property
    def label(self) -> str:
        """How messages and /diagnostics name the camera."""
        return self.namespace or self.image_topic

    @property
    def image_subscription_topic(self) -> str:
        """The colour topic as subscribed: ``image_topic``, or its ``/compressed`` transport."""
        return self.image_topic + "/compressed" if self.image_transport == "compressed" else self.image_topic

    @property
    def depth_subscription_topic(self) -> str:
        return self.depth_topic + "/compressedDepth" if self.depth_transport == "compressedDepth" else self.depth_topic

    def arrived(self, topic: str, now: float | None = None) -> None:
        self.arrivals[topic].append(time.monotonic() if now is None else now)
        self.received[topic] += 1

    def count_since(self, topic: str, window_s: float, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        return sum(1 for t in self.arrivals[topic] if now - t <= window_s)


def camera_names(namespaces: Sequence[str]) -> list[str]:
    """The ``<name>`` of each camera's ``camera.<name>.<setting>`` parameters: the last part of
    its namespace ("" for the node's own camera, which has none). Raises ValueError when two
    cameras share a name or a name is not a parameter name part."""
    names = [namespace.rstrip("/").rsplit("/", 1)[-1] for namespace in namespaces]
    for namespace, name in zip(namespaces, names):
        if namespace and not (name.replace("_", "a").isalnum() and name.isascii()):
            raise ValueError(f"parameter cameras: {namespace!r} ends in {name!r}, which cannot name its "
                             f"camera.<name>.* parameters (letters, digits and _ only)")
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise ValueError(f"parameter cameras: several namespaces end in {', '.join(repeated)}; the last part of each "
                         f"names its camera.<name>.* parameters and must differ")
    return names


def camera_settings(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """One camera's :data:`PER_CAMERA_SETTINGS`: its ``overrides`` (setting -> value, those set),
    else the node's ``params``."""
    return {name: overrides.get(name, params[name]) for name in PER_CAMERA_SETTINGS}


def make_camera_inputs(namespaces: Sequence[str], params: dict[str, Any], resolve: Callable[[str], str],
                       arrivals_kept: int, overrides: dict[str, dict[str, Any]] | None = None) -> list[CameraInput]:
    """One :class:`CameraInput` per namespace, its settings from the node's parameters ``params``
    and the camera's ``overrides`` (camera name -> setting -> value, :func:`camera_settings`),
    topics resolved by ``resolve`` (the node's ``resolve_topic_name``)."""
    cameras = []
    for namespace, name in zip(namespaces, camera_names(namespaces)):
        own = (overrides or {}).get(name, {}) if name else {}
        settings = camera_settings(params, own)

        def topic(setting: str) -> str:
            named = f"parameter camera.{name}.{setting}" if setting in own else f"parameter {setting}"
            value = camera_topic(namespace, settings[setting], named)
            return resolve(value) if value else ""

        cameras.append(CameraInput(
            namespace=namespace, image_topic=topic("image_topic"), camera_info_topic=topic("camera_info_topic"),
            depth_topic=topic("depth_topic"),
            depth_camera_info_topic=topic("depth_camera_info_topic") if settings["depth_topic"] else "",
            image_transport=settings["image_transport"], depth_transport=settings["depth_transport"],
            rectification_mode=settings["rectification"], stamp_offset_s=float(settings["image_stamp_offset_s"]),
            arrivals_kept=arrivals_kept))
    return cameras


__all__ = ["CameraInput", "PendingImage", "PER_CAMERA_SETTINGS", "camera_names", "camera_settings", "camera_topic",
           "make_camera_inputs", "nearest_by_stamp", "parse_camera_namespaces"]
