"""``viewseg bag2scene``: turn a recorded ROS 2 bag into a scene folder that training reads.

Reads sqlite3 and mcap bags with rosbags (no ROS install needed: the TF core and the
message conversions are ROS-free). Three passes over the bag, so memory holds keyframes
being assembled, never the whole bag:

1. /tf, /tf_static and CameraInfo go into a :class:`TransformBuffer` with unlimited history.
2. For every image (by header stamp), the camera pose in the fixed frame is interpolated at
   the stamp; frames are subsampled with the node's keyframe rule
   (:func:`viewseg_ros.keyframes.admission_decision`, same thresholds as the keyframe buffer).
3. Images, semantic labels and depth of the admitted stamps are decoded, paired (nearest
   header stamp within ``--sync-tolerance``) and written with :class:`SceneFolderWriter`.
   A camera whose CameraInfo has lens distortion is undistorted onto the pinhole of its ``p``
   (colour bilinear; depth and labels, registered to it, nearest), as the node does
   (``--rectification``, :mod:`viewseg_core.rectify`); the scene stores that pinhole.

Labels come from ``--semantic-topic`` (class ids, or NYU40 ids with ``--semantic-format
nyu40``). Without one, a 2D segmenter checkpoint (``--segmenter``, a ``viewseg-encoder``
file from ``viewseg pretrain-2d``) predicts PSEUDO-LABELS: the output and the scene's
metadata say so, because training on them teaches the segmenter's mistakes.

Colour may be recorded compressed (image_transport's ``compressed``: JPEG or PNG) and depth as
``compressedDepth`` (PNG): both are decoded (:mod:`viewseg_ros.conversions`). Depth from a
camera of its own (``--depth-camera-info-topic``: its frame, size and intrinsics) is
registered into the colour camera through the bag's TF (:mod:`viewseg_core.depth_registration`).
Depth from a point cloud (``--pointcloud-topic``: a LiDAR, or a depth camera's points; one cloud
serves every camera) is paired within ``--pointcloud-sync-tolerance`` and registered the way
the node registers it: through the bag's TF from the cloud's frame at the cloud's stamp (at
each point's time where the cloud has per-point times: deskewed) into the camera at the
image's pose, one pixel per point. ``--pointcloud-accumulate S`` registers the other clouds
within S seconds of the paired one as well, as the node's ``pointcloud_accumulate_s`` does, so
that a model trained on the import sees the keyframe depth the node will give it; the points
the paired cloud contradicts (a trail of something that moved, a surface seen through a gap)
are left out, as the node's ``pointcloud_drop_stale`` does (``--pointcloud-keep-stale`` keeps
them).

``--change-share S`` (0 = off, the default) applies the node's scene-change rule
(``keyframes.change_share``) once every keyframe is written: in stamp order, each keyframe with
depth drops the earlier kept ones in which it saw through at least S of the measured points
(someone who walked away), so that no training pair shows the room in two states.

A recording of several cameras (``--cameras /front,/rear``) imports into one scene: the topic
flags are then relative names inside each camera's namespace (but ``--pointcloud-topic``, the
robot's: one LiDAR serves every camera, as in the node), each camera keeps its own
calibration, and keyframes are chosen as the node chooses them from several cameras (novel
against every camera's keyframes, the rate floor per camera).

A bad frame (an unsupported encoding, a malformed image, a size that does not match its
CameraInfo) is skipped and counted, not fatal. A bag whose file ends early (a recorder killed
mid-write, a copy cut short) is imported up to where it stops being readable, with a warning;
a bag that cannot be opened at all fails with a hint on how to salvage it. The scene is
assembled in a hidden ``.<out>.partial-*`` folder beside ``--out`` and renamed into place
only when complete, so ``--out`` is either the whole import or untouched.
"""
from __future__ import annotations

import argparse
import bisect
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from viewseg_core.classes import IGNORE_LABEL, NUM_CLASSES, nyu40_to_classes
from viewseg_core.cli import nonnegative_float, resolve_device
from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import publish_folder, staging_folder
from viewseg_core.depth_registration import (MAX_ACCUMULATE_S, MAX_OCCLUSION_RADIUS, accumulated_points,
                                             drop_occluded, register_depth, register_points)
from viewseg_core.lidar_deskew import place_cloud, sweep_origin
from viewseg_core.rectify import (RECTIFICATION_MODES, ResolvedCamera, Undistorter, image_camera_to_world,
                                  rotated_frame)
from viewseg_core.scene_change import (MAX_CHANGE_PIXELS, MAX_TESTED_PIXELS, grid_stride, measured_points,
                                      reach_box, scene_changes)
from viewseg_core.segmenter import PseudoLabeler
from viewseg_core.stale_points import MAX_CELL_DEG, STALE_CELL_DEG
from viewseg_ros.camera_input import camera_topic, parse_camera_namespaces
from viewseg_ros.conversions import (CAMERA_ENCODINGS, any_depth_to_metres, calibration_key, camera_info_to_pinhole,
                                     colour_image_to_numpy, image_to_numpy, is_compressed, point_cloud_sweep,
                                     time_to_ns)
from viewseg_ros.keyframes import KeyframeConfig, admission_decision
from viewseg_ros.tf_buffer import (
    NS_PER_S, ConnectivityError, ExtrapolationError, TransformBuffer, UnknownFrameError, add_tf_message)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"  # image_transport's compressed / compressedDepth
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
TF_TYPE = "tf2_msgs/msg/TFMessage"


@dataclass
class BagImportConfig:
    """Everything ``viewseg bag2scene`` takes besides the bag and the output folder."""

    image_topic: str
    camera_info_topic: str
    fixed_frame: str = "map"
    semantic_topic: str | None = None
    semantic_format: str = "classes"  # "classes": ids 0..36 (255 ignore); "nyu40": NYU40 ids
    depth_topic: str | None = None
    depth_camera_info_topic: str | None = None  # depth NOT registered to the images: register it through TF
    pointcloud_topic: str | None = None  # depth from a point cloud (a LiDAR) instead, registered through TF
    pointcloud_sync_tolerance_s: float = 0.1  # pairing image <-> point cloud (a 10 Hz LiDAR's period)
    pointcloud_time_field: str = "auto"  # per-point times for deskewing ("" = never; the node's parameter)
    pointcloud_time_scale: float = 0.0  # seconds per unit of that field (0 = by its type)
    pointcloud_accumulate_s: float = 0.0  # other clouds within this of the paired one, registered too (the node's)
    pointcloud_drop_stale: bool = True  # leave out the accumulated points the paired cloud contradicts (the node's)
    pointcloud_stale_cell_deg: float = STALE_CELL_DEG  # the stale-point test's cell (the node's)
    pointcloud_occlusion_radius: int = 0  # drop depth a nearer measurement this many pixels away hides (the node's)
    segmenter: str | None = None  # viewseg-encoder checkpoint for pseudo-labels
    no_labels: bool = False  # write RGB + depth only (no labels at all)
    camera_frame: str | None = None  # overrides the images' header.frame_id
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    sync_tolerance_s: float = 0.02  # pairing image <-> semantic/depth by header stamp
    image_stamp_offset_s: float = 0.0  # header stamp -> exposure time, where the pose is looked up (the node's)
    rectification: str = "auto"  # viewseg_core.rectify.RECTIFICATION_MODES, as the node's parameter
    keyframes: KeyframeConfig = field(default_factory=lambda: KeyframeConfig(max_keyframes=1 << 30,
                                                                             max_bytes=1 << 62))
    scene_name: str | None = None
    device: str = "cpu"  # for the segmenter
    # Namespaces of several cameras ("" = one camera, the topics as given): the topics above are
    # then relative names inside each.
    cameras: list[str] = field(default_factory=lambda: [""])

    def __post_init__(self) -> None:
        self.cameras = parse_camera_namespaces(self.cameras)
        if len(self.cameras) > 1 and self.camera_frame:
            raise ValueError("--camera-frame names one camera's frame: with several --cameras each image's "
                             "header.frame_id is used")
        if self.semantic_format not in ("classes", "nyu40"):
            raise ValueError(f"semantic_format must be 'classes' or 'nyu40', got {self.semantic_format!r}")
        if self.rectification not in RECTIFICATION_MODES:
            raise ValueError(f"rectification must be one of {', '.join(RECTIFICATION_MODES)}, "
                             f"got {self.rectification!r}")
        if not math.isfinite(self.image_stamp_offset_s):
            raise ValueError(f"image_stamp_offset_s must be a finite number, got {self.image_stamp_offset_s}")
        if not self.sync_tolerance_s >= 0:
            raise ValueError(f"sync_tolerance_s must be >= 0, got {self.sync_tolerance_s}")
        if not self.pointcloud_sync_tolerance_s >= 0:
            raise ValueError(f"pointcloud_sync_tolerance_s must be >= 0, got {self.pointcloud_sync_tolerance_s}")
        if not self.pointcloud_time_scale >= 0 or not math.isfinite(self.pointcloud_time_scale):
            raise ValueError(f"pointcloud_time_scale must be a finite number >= 0, got {self.pointcloud_time_scale}")
        if not 0.0 <= self.pointcloud_accumulate_s <= MAX_ACCUMULATE_S:
            raise ValueError(f"pointcloud_accumulate_s must be in [0, {MAX_ACCUMULATE_S:g}] s (the node's limit), "
                             f"got {self.pointcloud_accumulate_s}")
        if not 0 <= self.pointcloud_occlusion_radius <= MAX_OCCLUSION_RADIUS:
            raise ValueError(f"pointcloud_occlusion_radius must be 0-{MAX_OCCLUSION_RADIUS} pixels, "
                             f"got {self.pointcloud_occlusion_radius}")
        if not 0.0 < self.pointcloud_stale_cell_deg <= MAX_CELL_DEG:
            raise ValueError(f"pointcloud_stale_cell_deg must be in (0, {MAX_CELL_DEG:g}] degrees, "
                             f"got {self.pointcloud_stale_cell_deg}")
        if self.pointcloud_accumulate_s and not self.pointcloud_topic:
            raise ValueError("--pointcloud-accumulate needs --pointcloud-topic")
        if self.pointcloud_topic and self.depth_topic:
            raise ValueError("--depth-topic and --pointcloud-topic both give the keyframes' depth: choose one")
        if not self.semantic_topic and not self.segmenter and not self.no_labels:
            raise ValueError("no labels: give --semantic-topic, or --segmenter CKPT to make pseudo-labels "
                             "with a 2D segmenter (viewseg pretrain-2d writes one), or --no-labels")


@dataclass
class ImportReport:
    out_dir: Path
    images: int = 0
    keyframes: int = 0
    label_source: str = "none"  # "topic:<name>", "pseudo:<checkpoint>" or "none"
    skipped: dict[str, int] = field(default_factory=dict)
    skip_examples: dict[str, str] = field(default_factory=dict)  # reason -> first example
    warnings: dict[str, list] = field(default_factory=dict)  # kind -> [count, first example]
    truncated: bool = False  # the bag stopped being readable part-way (see warnings)
    stale_points: int = 0    # accumulated cloud points left out as stale (--pointcloud-accumulate)
    changed: list = field(default_factory=list)  # (stamp s, share) of keyframes a later one showed changed

    @property
    def pseudo_labels(self) -> bool:
        return self.label_source.startswith("pseudo:")

    def skip(self, reason: str, example: str | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if example is not None:
            self.skip_examples.setdefault(reason, example)

    def warn(self, kind: str, example: str) -> None:
        """Count a problem by kind, keeping its first example (a bag can repeat one 10^5 times)."""
        self.warnings.setdefault(kind, [0, example])[0] += 1

    def summary(self) -> str:
        lines = [f"wrote {self.keyframes} keyframes (of {self.images} images) to {self.out_dir}"]
        if self.pseudo_labels:
            lines.append(f"labels: PSEUDO-LABELS predicted by the 2D segmenter {self.label_source[7:]} "
                         f"(not ground truth; the scene's cameras.json records this)")
        elif self.label_source.startswith("topic:"):
            lines.append(f"labels: from topic {self.label_source[6:]}")
        else:
            lines.append("labels: none")
        for reason, count in sorted(self.skipped.items()):
            first = self.skip_examples.get(reason)
            lines.append(f"skipped {count} image(s): {reason}" + (f" (first: {first})" if first else ""))
        if self.changed:
            first = ", ".join(f"{stamp:.3f} s ({100 * share:.0f}%)" for stamp, share in self.changed[:3])
            lines.append(f"dropped {len(self.changed)} keyframe(s) that a later keyframe's depth showed changed "
                         f"(--change-share: the share of their measured points it saw through; the node's "
                         f"keyframes.change_share rule): {first}{', ...' if len(self.changed) > 3 else ''}")
        if self.stale_points:
            lines.append(f"accumulated point cloud points left out as stale (contradicted by the keyframe's own "
                         f"cloud): {self.stale_points}")
        lines.extend(f"warning: {kind} ({count}x), first: {example}"
                     for kind, (count, example) in self.warnings.items())
        return "\n".join(lines)


@dataclass
class _CameraInfo:
    stamp_ns: int
    K: np.ndarray  # the pinhole of the images as written (after undistortion)
    width: int
    height: int
    undistorter: Undistorter | None = None  # None: the images are pinholes already
    rotation: np.ndarray | None = None  # a rectified stereo image's r (viewseg_core.rectify.ResolvedCamera)


@dataclass
class _BagCamera:
    """One camera of the bag: its topics (absolute), their connections, and its calibration."""

    label: str  # namespace as given to --cameras; "" = the only camera
    image_topic: str
    camera_info_topic: str
    semantic_topic: str | None
    depth_topic: str | None
    depth_camera_info_topic: str | None
    pointcloud_topic: str | None
    connections: dict[str, list] = field(default_factory=dict)  # role -> rosbags connections
    infos: list[_CameraInfo] = field(default_factory=list)  # sorted by stamp after pass 1
    info_stamps: list[int] = field(default_factory=list)
    registration: "_Registration | None" = None

    @classmethod
    def of(cls, namespace: str, config: "BagImportConfig") -> "_BagCamera":
        root = "/" + namespace.strip("/") if namespace else ""

        def topic(value: str | None, flag: str) -> str | None:
            return camera_topic(root, value, flag) if value else value

        # The point cloud is the robot's, not a camera's (as viewseg_node subscribes to it once):
        # taken as given, never looked up in a camera's namespace.
        return cls(namespace, topic(config.image_topic, "--image-topic"),
                   topic(config.camera_info_topic, "--camera-info-topic"),
                   topic(config.semantic_topic, "--semantic-topic"), topic(config.depth_topic, "--depth-topic"),
                   topic(config.depth_camera_info_topic, "--depth-camera-info-topic") if config.depth_topic else None,
                   config.pointcloud_topic)


@dataclass
class _Pending:
    """A keyframe being assembled in pass 3."""

    index: int
    stamp_ns: int
    c2w: np.ndarray
    camera: _CameraInfo
    source: int = 0  # index of its _BagCamera
    rgb: np.ndarray | None = None
    parts: dict[str, tuple[int, Any]] = field(default_factory=dict)  # topic role -> (|dt| ns, message)
    # --pointcloud-accumulate: every cloud that may fall within the window of the paired one
    nearby_clouds: list[tuple[int, Any]] = field(default_factory=list)  # (stamp ns, message)


# --------------------------------------------------------------------------- reading
def _open(bag: Path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not bag.exists():
        raise ValueError(f"{bag}: no such bag (a ROS 2 bag folder with metadata.yaml, or its .db3/.mcap file)")
    try:
        reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED))
        reader.open()
    except Exception as error:  # rosbags raises its own ReaderError/AnyReaderError, apsw its own
        raise ValueError(f"{bag}: cannot read as a ROS 2 bag: {str(error).rstrip('.')}{_salvage_hint(bag, error)}") from error
    return reader


def _salvage_hint(bag: Path, error: Exception) -> str:
    """How to get at the readable part of a bag whose file was cut short or damaged."""
    text = str(error).lower()
    if "magic" in text or "footer" in text or "summary" in text:
        return ("; the MCAP file has no valid end (recording cut short?): rebuild it with "
                "`mcap recover IN.mcap -o OUT.mcap` (the mcap CLI) and import OUT.mcap")
    if "malformed" in text or "not a database" in text or "missing tables" in text:
        return ("; the sqlite3 file is damaged or truncated: salvage its readable rows with "
                "`sqlite3 IN.db3 .dump | sqlite3 OUT.db3` and import OUT.db3")
    return ""


def _messages(reader, connections: list, report: ImportReport, bag: Path, stage: str):
    """``reader.messages`` that stops, with a warning, where the file stops being readable.

    A truncated or damaged bag raises from deep inside rosbags (ReaderError, apsw.CorruptError,
    struct.error, a decompressor's error...) at the first bad record; what came before it is
    good, so the import keeps it instead of failing.
    """
    iterator = reader.messages(connections=connections)
    count = 0
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # noqa: BLE001 -- see the docstring: the types vary by storage
            report.warn("the bag is unreadable from here on (truncated or damaged); imported what came before",
                        f"{bag}: {stage}, after {count} message(s): {type(error).__name__}: {error}")
            report.truncated = True
            return
        count += 1
        yield item


def _deserialize(reader, conn, raw: bytes, report: ImportReport, bag: Path, log_ns: int):
    """The message, or None (counted) when its bytes do not decode as its type."""
    try:
        return reader.deserialize(raw, conn.msgtype)
    except Exception as error:  # noqa: BLE001 -- CDR decoding of cut bytes raises struct/Index/ValueError
        report.warn("dropped undecodable messages", f"{bag}: {conn.topic} at {log_ns / NS_PER_S:.3f} s: "
                                                    f"{type(error).__name__}: {error}")
        return None


def _connections(reader, topic: str | None, msgtypes: tuple[str, ...], what: str, bag: Path) -> list:
    if not topic:
        return []
    found = [c for c in reader.connections if c.topic == topic]
    if not found:
        topics = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections)
        raise ValueError(f"{bag}: no topic {topic!r} for {what}; the bag has: {topics}")
    wrong = [c.msgtype for c in found if c.msgtype not in msgtypes]
    if wrong:
        raise ValueError(f"{bag}: topic {topic!r} ({what}) has type {wrong[0]}, expected {' or '.join(msgtypes)}")
    return found


def _header_ns(msg: Any, log_ns: int, report: ImportReport) -> int:
    stamp = time_to_ns(msg.header.stamp)
    if stamp == 0:  # unstamped publisher: the recording time is the best we have
        report.warn("header stamp 0, used the bag's record time", f"{msg.header.frame_id!r} at {log_ns} ns")
        return log_ns
    return stamp


def _nearest_camera_info(infos: list[_CameraInfo], stamps: list[int], stamp_ns: int) -> _CameraInfo:
    index = bisect.bisect_right(stamps, stamp_ns)  # the latest at or before the image...
    return infos[max(index - 1, 0)]  # ...or the first one, for images before any CameraInfo


# --------------------------------------------------------------------------- labels and depth
def _labels(msg: Any, config: BagImportConfig, report: ImportReport, what: str) -> np.ndarray:
    if msg.encoding not in ("mono8", "8UC1", "mono16", "16UC1"):
        raise ValueError(f"{what}: semantic images must be mono8/mono16/16UC1 class ids, got {msg.encoding!r}")
    ids = image_to_numpy(msg, what)
    if config.semantic_format == "nyu40":
        return nyu40_to_classes(ids)
    out = ids.astype(np.uint16)
    bad = (out >= NUM_CLASSES) & (out != IGNORE_LABEL)
    if bad.any():
        report.warn(f"semantic ids >= {NUM_CLASSES} set to ignore", f"{what}: {int(bad.sum())} pixels")
        out[bad] = IGNORE_LABEL
    return out.astype(np.uint8)




# --------------------------------------------------------------------------- import
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", *CAMERA_ENCODINGS)


class _BadFrame(ValueError):
    """One keyframe cannot be used; the import skips it, counted under ``reason``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass
class _Registration:
    """What registering an unaligned depth camera needs: its pinhole and size, TF, and the
    undistortion of its raw images (None: pinholes already)."""

    K: np.ndarray
    width: int
    height: int
    buffer: TransformBuffer
    undistorter: Undistorter | None = None


def _register(depth: np.ndarray, msg: Any, colour_frame: str, colour_K: np.ndarray, colour_hw: tuple[int, int],
              registration: _Registration, what: str, rotation: np.ndarray | None = None) -> np.ndarray:
    if depth.shape != (registration.height, registration.width):
        raise _BadFrame("depth image size differs from its CameraInfo",
                        f"{what}: depth is {depth.shape[1]}x{depth.shape[0]}, its CameraInfo "
                        f"{registration.width}x{registration.height}")
    try:
        colour_from_depth = rotated_frame(rotation) @ registration.buffer.lookup(colour_frame, msg.header.frame_id,
                                                                                time_to_ns(msg.header.stamp))
    except (ExtrapolationError, UnknownFrameError, ConnectivityError) as error:
        raise _BadFrame("no TF between the depth and colour cameras",
                        f"{what}: {msg.header.frame_id!r} -> {colour_frame!r}: {error}") from error
    if registration.undistorter is not None:
        depth = registration.undistorter.depth(depth)
    return register_depth(depth, registration.K, colour_K, colour_hw, colour_from_depth)


# Points of placed clouds kept for the keyframes they may serve next (the node's budget).
PLACED_POINTS_BUDGET = 4_000_000


class _PlacedClouds:
    """Point clouds placed in fixed_frame (deskewed where they carry per-point times), each once
    however many keyframes it serves; the newest are remembered up to ``max_points`` points
    (the node's budget: a few seconds of a 128-beam LiDAR), a forgotten one is placed again."""

    def __init__(self, config: BagImportConfig, buffer: TransformBuffer, report: ImportReport):
        self.config, self.buffer, self.report = config, buffer, report
        self.max_points = PLACED_POINTS_BUDGET
        # (stamp ns, frame) -> (points or None, what went wrong or None, its _BadFrame reason or
        # None, the sensor's origin at mid-sweep or None)
        self._placed: dict[tuple[int, str], tuple[np.ndarray | None, str | None, str | None, np.ndarray | None]] = {}
        self._points = 0

    def place(self, msg: Any, what: str, paired: bool) -> np.ndarray | None:
        """[N, 3] points of ``msg`` in fixed_frame. The keyframe's paired cloud falls back to
        its stamp's pose (a warning) where its times cannot be read or TF does not cover its
        sweep, and raises _BadFrame where it is unusable or TF cannot place it at all; an
        accumulated cloud is left out (None, a warning) in each of those cases, as the node
        leaves it out."""
        stamp_ns, frame = time_to_ns(msg.header.stamp), msg.header.frame_id
        key = (stamp_ns, frame)
        if key not in self._placed:
            self._placed[key] = self._place(msg, what, stamp_ns, frame)
            self._points += self._size(key)
            while self._points > self.max_points and len(self._placed) > 1:
                oldest = next(iter(self._placed))
                self._points -= self._size(oldest)
                del self._placed[oldest]
        placed, why, bad, _ = self._placed[key]
        if why is None:
            return placed
        if not paired:
            self.report.warn(f"accumulated point cloud left out ({bad or 'TF does not cover its sweep'})", why)
            return None
        if bad is not None:
            raise _BadFrame(bad, why)
        self.report.warn("point cloud not deskewed (TF does not cover its sweep)", why)
        return placed

    def origin(self, msg: Any) -> np.ndarray | None:
        """[3] where a placed cloud's sensor was at the middle of its sweep, in fixed_frame (None:
        TF could not say; call after :meth:`place`)."""
        return self._placed.get((time_to_ns(msg.header.stamp), msg.header.frame_id), (None,) * 4)[3]

    def _size(self, key: tuple[int, str]) -> int:
        placed = self._placed[key][0]
        return 0 if placed is None else len(placed)

    def _place(self, msg: Any, what: str, stamp_ns: int, frame: str
               ) -> tuple[np.ndarray | None, str | None, str | None, np.ndarray | None]:
        """(points in fixed_frame or None, why they are not deskewed or not placed (None = all
        well), for a cloud that cannot be used at all the reason a keyframe is skipped, and the
        sensor's origin at mid-sweep for the stale-point test, or None where no test needs it)."""
        config = self.config
        try:
            points, offsets, unread = point_cloud_sweep(msg, what, config.pointcloud_time_field,
                                                        config.pointcloud_time_scale)
        except ValueError as error:
            return None, str(error), "unusable point cloud", None
        if unread is not None:
            self.report.warn("point cloud not deskewed (per-point times unreadable)", unread)
        lookup_errors = (ExtrapolationError, UnknownFrameError, ConnectivityError)

        def pose_at(t: int) -> np.ndarray:
            return self.buffer.lookup(config.fixed_frame, frame, t)

        try:
            placed, _, why = place_cloud(points, offsets, stamp_ns, pose_at, lookup_errors)
            # Only a paired cloud with others accumulated around it is judged from its origin.
            origin = (sweep_origin(offsets, stamp_ns, pose_at, lookup_errors)
                      if config.pointcloud_accumulate_s and config.pointcloud_drop_stale else None)
        except lookup_errors as error:
            return (None, f"{what}: {frame!r} -> {config.fixed_frame!r}: {error}", "no TF for the point cloud at its stamp",
                    None)
        return placed, None if why is None else f"{what}: {why}", None, origin


def _cloud_depth(item: _Pending, rgb_hw: tuple[int, int], config: BagImportConfig, clouds: _PlacedClouds,
                 what: str) -> np.ndarray:
    """A point cloud registered into the keyframe's (undistorted) pinhole: through TF from the
    cloud's frame into fixed_frame, at each point's time where the cloud has per-point times
    (deskewed, :mod:`viewseg_core.lidar_deskew`; else at its stamp), then into the camera at
    the image's pose (the robot's motion between scan and exposure compensated), one pixel per
    point; with ``pointcloud_accumulate_s``, the other clouds within that many seconds of the
    paired one's stamp too, less the points the paired cloud contradicts
    (``pointcloud_drop_stale``, :mod:`viewseg_core.stale_points`). A time field that cannot be
    read, or a sweep TF does not cover, is a warning: the paired cloud is placed with its
    stamp's pose, an accumulated one left out."""
    msg = item.parts["cloud"][1]
    stamp_ns = time_to_ns(msg.header.stamp)
    paired = clouds.place(msg, what, paired=True)
    origin = clouds.origin(msg)   # now: placing the others may forget the paired cloud
    window_ns = int(round(config.pointcloud_accumulate_s * NS_PER_S))
    others = [clouds.place(other, f"{what} (accumulated cloud at {other_ns / NS_PER_S:.9f} s)", paired=False)
              for other_ns, other in item.nearby_clouds if other is not msg and abs(other_ns - stamp_ns) <= window_ns]
    others = [p for p in others if p is not None]
    points = paired
    if others:
        # origin is None with --pointcloud-keep-stale (_PlacedClouds does not look it up): all kept.
        points, stale = accumulated_points(paired, np.concatenate(others), origin, item.camera.K, rgb_hw,
                                           np.linalg.inv(item.c2w), config.pointcloud_stale_cell_deg)
        clouds.report.stale_points += stale
    depth = register_points(points, item.camera.K, rgb_hw, np.linalg.inv(item.c2w))
    if config.pointcloud_occlusion_radius:
        depth = drop_occluded(depth, config.pointcloud_occlusion_radius)
    if not np.isfinite(depth).any():
        raise _BadFrame("no point of the point cloud lands in the image", f"{what}: {len(points)} points")
    return depth


def _decode_keyframe(item: _Pending, config: BagImportConfig, report: ImportReport, segmenter,
                     what: str, registration: _Registration | None = None,
                     clouds: _PlacedClouds | None = None) -> View:
    """The scene-folder view of a complete keyframe; _BadFrame for anything frame-specific.
    ``clouds``: point clouds placed through the bag's TF."""
    rgb_msg = item.parts["rgb"][1]
    try:
        rgb = colour_image_to_numpy(rgb_msg, what)
    except ValueError as error:
        raise _BadFrame("malformed colour image", str(error)) from error
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if (item.camera.height, item.camera.width) != rgb.shape[:2]:
        raise _BadFrame("image size differs from its CameraInfo (binning/ROI are not supported)",
                        f"{what}: CameraInfo is {item.camera.width}x{item.camera.height} but the image is "
                        f"{rgb.shape[1]}x{rgb.shape[0]}")
    labels = depth = None
    try:
        if "semantic" in item.parts:
            labels = _labels(item.parts["semantic"][1], config, report, what + " semantic")
    except ValueError as error:
        raise _BadFrame("unusable semantic image", str(error)) from error
    try:
        if "depth" in item.parts:
            depth = any_depth_to_metres(item.parts["depth"][1], what + " depth")
    except ValueError as error:
        raise _BadFrame("unusable depth image", str(error)) from error
    for name, image in (("semantic", labels), ("depth", None if registration else depth)):
        if image is not None and image.shape != rgb.shape[:2]:
            raise _BadFrame(f"{name} image size differs from the colour image",
                            f"{what}: {name} is {image.shape[1]}x{image.shape[0]}, "
                            f"image is {rgb.shape[1]}x{rgb.shape[0]}")
    undistorter = item.camera.undistorter
    if undistorter is not None:  # depth and labels are registered to the raw colour image: the same map
        rgb = undistorter.colour(rgb)
        depth = None if depth is None or registration else undistorter.depth(depth)
        labels = None if labels is None else undistorter.labels(labels, IGNORE_LABEL)
    if depth is not None and registration is not None:  # into the (undistorted) colour pinhole
        colour_frame = config.camera_frame or rgb_msg.header.frame_id
        depth = _register(depth, item.parts["depth"][1], colour_frame, item.camera.K, rgb.shape[:2], registration,
                          what + " depth", item.camera.rotation)
    if "cloud" in item.parts:
        depth = _cloud_depth(item, rgb.shape[:2], config, clouds, what + " point cloud")
    if labels is None and segmenter is not None:
        labels = segmenter(rgb)
    meta = {"stamp_ns": item.stamp_ns, "label_source": report.label_source}
    if len(config.cameras) > 1:
        meta["camera"] = config.cameras[item.source]
    return View(rgb=rgb, K=item.camera.K, c2w=item.c2w, labels=labels, depth=depth,
                view_id=f"{item.index:06d}", stamp=item.stamp_ns / NS_PER_S, meta=meta)


def import_bag(bag: str | Path, out_dir: str | Path, config: BagImportConfig) -> ImportReport:
    """Import ``bag`` into the scene folder ``out_dir`` (see the module docstring)."""
    import shutil

    from viewseg_core.data.scene_folder import SceneFolderWriter

    bag, out_dir = Path(bag), Path(out_dir)
    report = ImportReport(out_dir)
    segmenter = None
    if not config.semantic_topic and not config.no_labels:
        # Before reading a big bag: the device, then the checkpoint.
        segmenter = PseudoLabeler(config.segmenter, resolve_device(config.device))
        report.label_source = f"pseudo:{config.segmenter}"
    elif config.semantic_topic:
        report.label_source = f"topic:{config.semantic_topic}"
    kf_config = config.keyframes
    tolerance_ns = int(round(config.sync_tolerance_s * NS_PER_S))

    reader = _open(bag)
    staging = None
    try:
        # Checks --out before the passes over the bag.
        staging = staging_folder(out_dir, "--out", log=lambda line: print(f"viewseg bag2scene: {line}", file=sys.stderr))
        sources = [_BagCamera.of(namespace, config) for namespace in config.cameras]
        for cam in sources:
            cam.connections = {
                "rgb": _connections(reader, cam.image_topic, (IMAGE_TYPE, COMPRESSED_TYPE), "--image-topic", bag),
                "info": _connections(reader, cam.camera_info_topic, (CAMERA_INFO_TYPE,), "--camera-info-topic", bag),
                "depth_info": _connections(reader, cam.depth_camera_info_topic, (CAMERA_INFO_TYPE,),
                                           "--depth-camera-info-topic", bag),
                "semantic": _connections(reader, cam.semantic_topic, (IMAGE_TYPE,), "--semantic-topic", bag),
                "depth": _connections(reader, cam.depth_topic, (IMAGE_TYPE, COMPRESSED_TYPE), "--depth-topic", bag),
                "cloud": _connections(reader, cam.pointcloud_topic, (POINT_CLOUD_TYPE,), "--pointcloud-topic", bag)}
        # rosbags connection id -> [(camera index, role)]: one LiDAR's cloud serves every camera
        roles: dict[int, list[tuple[int, str]]] = {}
        for index, cam in enumerate(sources):
            for role, conns in cam.connections.items():
                for c in conns:
                    roles.setdefault(c.id, []).append((index, role))
        tf_conns = [c for c in reader.connections if c.topic == config.tf_topic and c.msgtype == TF_TYPE]
        static_conns = [c for c in reader.connections if c.topic == config.tf_static_topic and c.msgtype == TF_TYPE]
        if not tf_conns and not static_conns:
            raise ValueError(f"{bag}: no {config.tf_topic} or {config.tf_static_topic} ({TF_TYPE}): "
                             f"camera poses come from the bag's TF")

        def conns_of(*wanted: str) -> list:   # once each: a shared topic (a LiDAR's) is every camera's
            return list({c.id: c for cam in sources for role in wanted for c in cam.connections[role]}.values())

        # Pass 1: TF and camera calibration.
        buffer = TransformBuffer(cache_time_s=None, max_history=None)
        resolved: dict[tuple, ResolvedCamera] = {}
        for conn, log_ns, raw in _messages(reader, tf_conns + static_conns + conns_of("info", "depth_info"), report,
                                           bag, "reading TF and CameraInfo"):
            msg = _deserialize(reader, conn, raw, report, bag, log_ns)
            if msg is None:
                continue
            if conn.msgtype == TF_TYPE:
                for problem in add_tf_message(buffer, msg, static=conn.topic == config.tf_static_topic):
                    report.warn("dropped invalid TF transforms", f"at {log_ns / NS_PER_S:.3f} s: {problem}")
                continue
            index, role = roles[conn.id][0]   # calibration topics are each one camera's
            cam = sources[index]
            what = f"{bag}: {conn.topic} at {log_ns / NS_PER_S:.3f} s"
            key = (index, role, calibration_key(msg))
            try:
                if key not in resolved:  # a bag repeats one calibration: the maps are made once
                    topic = cam.depth_topic if role == "depth_info" else cam.image_topic
                    resolved[key] = camera_info_to_pinhole(msg, config.rectification, topic, what)
            except ValueError as error:
                report.warn("dropped invalid depth CameraInfo" if role == "depth_info" else "dropped invalid CameraInfo",
                            str(error))
                continue
            camera = resolved[key]
            if role == "depth_info":
                cam.registration = _Registration(camera.K, int(msg.width), int(msg.height), buffer, camera.undistorter)
                continue
            cam.infos.append(_CameraInfo(_header_ns(msg, log_ns, report), camera.K, int(msg.width), int(msg.height),
                                         camera.undistorter, camera.rotation))
        for cam in sources:
            if not cam.infos:
                raise ValueError(f"{bag}: no valid CameraInfo on {cam.camera_info_topic}")
            if cam.connections["depth_info"] and cam.registration is None:
                raise ValueError(f"{bag}: no valid CameraInfo on {cam.depth_camera_info_topic}: the depth camera's "
                                 f"intrinsics are needed to register its depth")
            cam.infos.sort(key=lambda info: info.stamp_ns)
            cam.info_stamps = [info.stamp_ns for info in cam.infos]

        # Pass 2: poses at image stamps and keyframe subsampling (headers only; nothing decoded).
        candidates = []
        for conn, log_ns, raw in _messages(reader, conns_of("rgb"), report, bag, "reading image headers"):
            msg = _deserialize(reader, conn, raw, report, bag, log_ns)
            if msg is None:
                continue
            report.images += 1
            stamp_ns = _header_ns(msg, log_ns, report)
            if not is_compressed(msg) and msg.encoding not in COLOR_ENCODINGS:
                # Before admission: a frame that cannot be decoded must not keep a good
                # neighbour out as "too close to an earlier keyframe".
                report.skip(f"unsupported colour encoding {msg.encoding!r} (supported: {', '.join(COLOR_ENCODINGS)})",
                            f"{bag}: image at {stamp_ns / NS_PER_S:.9f} s")
                continue
            candidates.append((stamp_ns, roles[conn.id][0][0], config.camera_frame or msg.header.frame_id))
        candidates.sort(key=lambda c: c[:2])
        kept: list[tuple[int, int, np.ndarray]] = []
        own_stamps: list[list[int]] = [[] for _ in sources]  # each camera's keyframe stamps (its rate floor)
        offset_ns = int(round(config.image_stamp_offset_s * NS_PER_S))  # the pose at exposure
        pending: dict[tuple[int, int], _Pending] = {}  # (camera index, stamp) -> keyframe being assembled
        for stamp_ns, source, frame in candidates:
            if (source, stamp_ns) in pending:
                report.skip("another image has the same stamp")
                continue
            if not frame:
                raise ValueError(f"{bag}: images on {sources[source].image_topic} have no header.frame_id; "
                                 f"pass --camera-frame")
            try:
                c2w = buffer.lookup(config.fixed_frame, frame, stamp_ns + offset_ns)
            except ExtrapolationError:
                report.skip("no TF at the image stamp (before the first or after the last transform)")
                continue
            except (UnknownFrameError, ConnectivityError) as error:
                raise ValueError(f"{bag}: cannot place camera frame {frame!r} in {config.fixed_frame!r}: "
                                 f"{error}") from error
            cam = sources[source]
            info = _nearest_camera_info(cam.infos, cam.info_stamps, stamp_ns)
            c2w = image_camera_to_world(c2w, info.rotation)
            if not admission_decision(c2w, stamp_ns, kept, kf_config, stream_stamps=own_stamps[source]).admit:
                report.skip("not a keyframe (too close in pose or time to an earlier one)")
                continue
            index = len(kept)
            kept.append((index, stamp_ns, c2w))
            own_stamps[source].append(stamp_ns)
            pending[(source, stamp_ns)] = _Pending(index, stamp_ns, c2w, info, source)
        keyframe_stamps = [sorted(s for c, s in pending if c == source) for source in range(len(sources))]

        # Pass 3: decode and pair the keyframes' images, labels and depth; write as they complete.
        needed = [sorted(role for role in ("rgb", "semantic", "depth", "cloud") if cam.connections[role])
                  for cam in sources]
        cloud_tolerance_ns = int(round(config.pointcloud_sync_tolerance_s * NS_PER_S))
        # A cloud within the accumulation window of the paired one lies within both of the image.
        nearby_ns = cloud_tolerance_ns + int(round(config.pointcloud_accumulate_s * NS_PER_S))
        window = {"rgb": 0, "semantic": tolerance_ns, "depth": tolerance_ns, "cloud": cloud_tolerance_ns}
        # How far past a keyframe's stamp each topic may still bring something it takes.
        reach = dict(window, cloud=nearby_ns if config.pointcloud_accumulate_s else cloud_tolerance_ns)
        clouds = _PlacedClouds(config, buffer, report)
        newest_seen = {(source, role): -1 for source in range(len(sources)) for role in needed[source]}
        meta = {"source": "rosbag2", "bag": str(bag), "fixed_frame": config.fixed_frame,
                "image_topic": config.image_topic, "camera_info_topic": config.camera_info_topic,
                "labels": report.label_source, "pseudo_labels": segmenter is not None,
                "keyframes": asdict(kf_config)}
        if len(sources) > 1:
            meta["cameras"] = list(config.cameras)
        if config.pointcloud_topic:
            meta["pointcloud"] = {"topic": config.pointcloud_topic, "accumulate_s": config.pointcloud_accumulate_s,
                                  "drop_stale": config.pointcloud_drop_stale,
                                  "stale_cell_deg": config.pointcloud_stale_cell_deg,
                                  "occlusion_radius": config.pointcloud_occlusion_radius}
        writer = SceneFolderWriter(staging, scene=config.scene_name or bag.stem, meta=meta)

        def finish(item: _Pending) -> None:
            del pending[(item.source, item.stamp_ns)]
            what = f"{bag}: keyframe at {item.stamp_ns / NS_PER_S:.9f} s"
            if len(sources) > 1:
                what += f" of camera {sources[item.source].label}"
            missing = [role for role in needed[item.source] if role not in item.parts]
            if missing:
                names = {"cloud": "point cloud"}
                report.skip(f"no {'/'.join(names.get(role, role) for role in missing)} message within "
                            f"{config.pointcloud_sync_tolerance_s if missing == ['cloud'] else config.sync_tolerance_s}"
                            f" s of the image")
                return
            try:
                view = _decode_keyframe(item, config, report, segmenter, what, sources[item.source].registration,
                                        clouds)
            except _BadFrame as bad:
                report.skip(bad.reason, str(bad))
                return
            writer.add(view)
            report.keyframes += 1

        def closed(source: int, stamp: int) -> bool:
            """No topic of the camera can still bring a closer message (per-topic stamps only grow,
            so a stamp past a topic's pairing window closes it for that topic)."""
            return all(stamp + max(reach[role], tolerance_ns) < newest_seen[(source, role)] for role in needed[source])

        for conn, log_ns, raw in _messages(reader, conns_of("rgb", "semantic", "depth", "cloud"), report, bag,
                                           "reading images"):
            if not pending:
                break
            msg = _deserialize(reader, conn, raw, report, bag, log_ns)
            if msg is None:
                continue
            stamp_ns = _header_ns(msg, log_ns, report)
            for source, role in roles[conn.id]:
                newest_seen[(source, role)] = max(newest_seen[(source, role)], stamp_ns)
                # The camera's keyframe nearest in stamp; a closer message later on the topic replaces it.
                stamps = keyframe_stamps[source]
                at = bisect.bisect_left(stamps, stamp_ns)
                near = [s for s in stamps[max(at - 1, 0): at + 1] if (source, s) in pending]
                if near:
                    target = pending[(source, min(near, key=lambda s: abs(s - stamp_ns)))]
                    dt = abs(target.stamp_ns - stamp_ns)
                    part = target.parts.get(role)
                    if dt <= window[role] and (part is None or dt < part[0]):  # the image itself: exact stamp
                        target.parts[role] = (dt, msg)
                if role == "cloud" and config.pointcloud_accumulate_s:
                    for s in stamps[bisect.bisect_left(stamps, stamp_ns - nearby_ns):
                                    bisect.bisect_right(stamps, stamp_ns + nearby_ns)]:
                        if (source, s) in pending:
                            pending[(source, s)].nearby_clouds.append((stamp_ns, msg))
                for key in [k for k in pending if k[0] == source and closed(*k)]:
                    finish(pending[key])
        for key in sorted(pending, key=lambda k: (k[1], k[0])):
            finish(pending[key])
        if kf_config.change_share:
            _drop_changed(writer, kf_config, report)
            writer.meta["changed_keyframes"] = [{"stamp": stamp, "share": round(share, 4)}
                                                for stamp, share in report.changed]
        if report.keyframes == 0:
            hint = " (the bag ends early: see the warning)" if report.truncated else ""
            raise ValueError(f"{bag}: no keyframes written ({report.images} images; skipped: "
                             f"{report.skipped}){hint}")
        writer.close()
        publish_folder(staging, out_dir)
        staging = None
    finally:
        reader.close()
        if staging is not None:  # failed: nothing half-written is left under any name
            shutil.rmtree(staging, ignore_errors=True)
    return report


def _decimated(depth: np.ndarray, K: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(every ``stride``-th row and column of ``depth``, the pinhole of that grid): the same
    points as :func:`viewseg_core.scene_change.measured_points` at ``stride``, at 1/stride^2 of
    the memory."""
    scale = np.diag([1.0 / stride, 1.0 / stride, 1.0])
    return np.ascontiguousarray(depth[::stride, ::stride]), scale @ K


def _drop_changed(writer: Any, config: KeyframeConfig, report: ImportReport) -> None:
    """The node's scene-change rule (``keyframes.change_share``, :meth:`KeyframeBuffer.evict_changed`)
    over the written keyframes in stamp order: each keyframe with depth drops the earlier kept
    ones it shows changed (at least ``change_share`` of their measured points seen through:
    someone who walked away, a chair moved), so that no training pair shows the room in two
    states. Each depth is read back once; an earlier keyframe is kept as the grid that
    :func:`scene_changes` tests (at most ``MAX_TESTED_PIXELS`` pixels)."""
    from viewseg_core.data.scene_folder import read_depth_npy

    frames = sorted((entry for entry in writer.frames if entry["depth"]), key=lambda entry: entry["stamp"])
    # (entry, its grid as scene_changes reads an older keyframe, the box of its measured points)
    kept: list[tuple[dict, tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray | None]] = []
    for entry in frames:
        depth = read_depth_npy(writer.root / entry["depth"])
        K, c2w = np.asarray(entry["K"], dtype=np.float64), np.asarray(entry["c2w"], dtype=np.float64)
        reach = reach_box(measured_points(depth, K, c2w, grid_stride(*depth.shape, MAX_CHANGE_PIXELS)), c2w)
        # An older keyframe none of whose points lies within the newer one's reach cannot be
        # seen through (it keeps the check's cost to the keyframes around each place on a long drive).
        olders = [(i, view) for i, (older, view, box) in enumerate(kept)
                  if older["stamp"] < entry["stamp"] and box is not None and reach is not None
                  and bool(np.all(box[0] <= reach[1]) and np.all(reach[0] <= box[1]))]
        if olders:
            largest = max(view[0].size for _, view in olders)   # each older grid read whole: the node's points
            evidence = scene_changes([view for _, view in olders], (depth, K, c2w), config.change_cell_deg,
                                     max_tested=largest)
            gone = {i: e.share for (i, _), e in zip(olders, evidence) if e.share >= config.change_share}
            for i, share in gone.items():
                writer.remove(kept[i][0]["id"])
                report.changed.append((kept[i][0]["stamp"], share))
                report.keyframes -= 1
            kept = [item for i, item in enumerate(kept) if i not in gone]
        grid, grid_K = _decimated(depth, K, grid_stride(*depth.shape, MAX_TESTED_PIXELS))
        points = measured_points(grid, grid_K, c2w)
        kept.append((entry, (grid, grid_K, c2w), np.stack([points.min(0), points.max(0)]) if len(points) else None))


# --------------------------------------------------------------------------- CLI
def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bag2scene", help="import a ROS 2 bag (sqlite3 or mcap) as a scene folder",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bag", help="bag folder (with metadata.yaml) or its .db3/.mcap file")
    parser.add_argument("--out", required=True, help="scene folder to write")
    parser.add_argument("--image-topic", required=True,
                        help="colour topic: sensor_msgs/Image, or CompressedImage (JPEG/PNG, e.g. "
                             ".../image_raw/compressed)")
    parser.add_argument("--camera-info-topic", required=True, help="sensor_msgs/CameraInfo topic of the images")
    parser.add_argument("--cameras", default="",
                        help="namespaces of several cameras recorded together, comma-separated (e.g. /front,/rear): "
                             "the topic flags are then relative names inside each (but --pointcloud-topic, which "
                             "serves every camera), and every camera's keyframes go into the one scene")
    parser.add_argument("--fixed-frame", default="map", help="world frame of the poses")
    parser.add_argument("--camera-frame", default=None, help="optical frame (default: the images' header.frame_id)")
    parser.add_argument("--semantic-topic", default=None, help="class-id images (mono8/mono16/16UC1) at image stamps")
    parser.add_argument("--semantic-format", default="classes", choices=("classes", "nyu40"),
                        help="ids on --semantic-topic: viewseg's 37 classes or NYU40 ids")
    parser.add_argument("--depth-topic", default=None,
                        help="depth registered to the images: Image (32FC1 m or 16UC1 mm) or compressedDepth "
                             "CompressedImage (PNG)")
    parser.add_argument("--depth-camera-info-topic", default=None,
                        help="CameraInfo of the depth camera when --depth-topic is NOT registered to the images (its "
                             "own frame and size): its depth is registered into the colour camera through the bag's TF")
    parser.add_argument("--pointcloud-topic", default=None,
                        help="sensor_msgs/PointCloud2 giving the keyframes' depth instead of --depth-topic (a LiDAR, "
                             "or a depth camera's points; x, y, z in any frame of the bag's TF): the cloud nearest "
                             "each keyframe is moved through TF from its stamp into the camera at the image's and "
                             "z-buffered, one pixel per point")
    parser.add_argument("--pointcloud-sync-tolerance", type=nonnegative_float, default=0.1,
                        help="max stamp difference (s) pairing an image with its point cloud")
    parser.add_argument("--pointcloud-time-field", default="auto",
                        help="per-point time field for deskewing (each 5 ms of a sweep moved with TF at its time): "
                             "auto (the first of time, t, timestamp, time_stamp the cloud has) | a field name | '' = "
                             "never deskew")
    parser.add_argument("--pointcloud-time-scale", type=nonnegative_float, default=0.0,
                        help="seconds per unit of the time field; 0 = by its type (integer: ns, float: s)")
    parser.add_argument("--pointcloud-accumulate", type=nonnegative_float, default=0.0, metavar="S",
                        help="also register the other point clouds within S seconds of each keyframe's paired "
                             "one (each placed through TF at its own time), as viewseg_node's "
                             f"pointcloud_accumulate_s does; 0 = the paired cloud only; at most {MAX_ACCUMULATE_S:g}")
    parser.add_argument("--pointcloud-keep-stale", action="store_true",
                        help="with --pointcloud-accumulate, keep the accumulated points the paired cloud contradicts "
                             "(by default left out, as viewseg_node's pointcloud_drop_stale does: a trail of "
                             "something that moved, a surface seen through a gap from elsewhere)")
    parser.add_argument("--pointcloud-stale-cell", type=float, default=STALE_CELL_DEG, metavar="DEG",
                        help="the stale-point test's cell in degrees (viewseg_node's pointcloud_stale_cell_deg): about "
                             "the LiDAR's vertical beam spacing")
    parser.add_argument("--pointcloud-occlusion-radius", type=int, default=0, metavar="PIXELS",
                        help="drop the registered depth that a measurement this many pixels away hides by being "
                             "nearer (a LiDAR above the camera sees past the top of things the camera sees), as "
                             f"viewseg_node's pointcloud_occlusion_radius; 0 = keep it; at most {MAX_OCCLUSION_RADIUS}")
    parser.add_argument("--segmenter", default=None,
                        help="viewseg-encoder checkpoint for PSEUDO-LABELS when there is no --semantic-topic")
    parser.add_argument("--no-labels", action="store_true", help="write images (and depth) without labels")
    defaults = KeyframeConfig()
    parser.add_argument("--min-translation", type=nonnegative_float, default=defaults.min_translation,
                        help="keyframe threshold (m), as the node's keyframe buffer")
    parser.add_argument("--min-rotation", type=nonnegative_float, default=defaults.min_rotation_deg,
                        help="keyframe threshold (deg)")
    parser.add_argument("--min-interval", type=nonnegative_float, default=defaults.min_interval_s,
                        help="keyframe threshold (s)")
    parser.add_argument("--change-share", type=nonnegative_float, default=0.0, metavar="SHARE",
                        help="drop a keyframe once a later keyframe's depth saw through at least this share of its "
                             "measured points (someone walked away, a chair moved), as the node's "
                             "keyframes.change_share (its default: 0.02); 0 = keep every keyframe (default)")
    parser.add_argument("--sync-tolerance", type=nonnegative_float, default=0.02,
                        help="max stamp difference (s) pairing an image with its semantic/depth image")
    parser.add_argument("--image-stamp-offset", type=float, default=0.0,
                        help="seconds from an image's header stamp to its exposure, where its pose is looked up (a "
                             "driver that stamps on arrival stamps late: give its latency negative, e.g. -0.05)")
    parser.add_argument("--rectification", default="auto", choices=RECTIFICATION_MODES,
                        help="lens distortion in the CameraInfo: auto (undistort, except on an image_rect* topic: "
                             "already rectified) | undistort | rectified (pinhole of CameraInfo.p) | none (ignore it)")
    parser.add_argument("--tf-topic", default="/tf")
    parser.add_argument("--tf-static-topic", default="/tf_static")
    parser.add_argument("--scene-name", default=None, help="scene name (default: the bag's name)")
    parser.add_argument("--device", default="cpu", help="torch device for --segmenter (auto, cpu, cuda, cuda:N)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Errors (ValueError, OSError) become one line and exit 2 in viewseg_core.cli.main.
    config = BagImportConfig(
        image_topic=args.image_topic, camera_info_topic=args.camera_info_topic, fixed_frame=args.fixed_frame,
        semantic_topic=args.semantic_topic, semantic_format=args.semantic_format, depth_topic=args.depth_topic,
        depth_camera_info_topic=args.depth_camera_info_topic, pointcloud_topic=args.pointcloud_topic,
        pointcloud_sync_tolerance_s=args.pointcloud_sync_tolerance,
        pointcloud_time_field=args.pointcloud_time_field, pointcloud_time_scale=args.pointcloud_time_scale,
        pointcloud_accumulate_s=args.pointcloud_accumulate, pointcloud_drop_stale=not args.pointcloud_keep_stale,
        pointcloud_stale_cell_deg=args.pointcloud_stale_cell, pointcloud_occlusion_radius=args.pointcloud_occlusion_radius,
        segmenter=args.segmenter, no_labels=args.no_labels, camera_frame=args.camera_frame,
        tf_topic=args.tf_topic, tf_static_topic=args.tf_static_topic, sync_tolerance_s=args.sync_tolerance,
        rectification=args.rectification, image_stamp_offset_s=args.image_stamp_offset,
        keyframes=KeyframeConfig(min_translation=args.min_translation, min_rotation_deg=args.min_rotation,
                                 min_interval_s=args.min_interval, max_keyframes=1 << 30, max_bytes=1 << 62,
                                 change_share=args.change_share),
        scene_name=args.scene_name, device=args.device, cameras=args.cameras)
    print(import_bag(args.bag, args.out, config).summary())
    return 0


__all__ = ["BagImportConfig", "ImportReport", "import_bag", "register", "run"]
