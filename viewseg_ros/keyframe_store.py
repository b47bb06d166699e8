"""The node's keyframes on disk: saved as a scene folder, read back after a restart.

A node that restarts (a reboot, a crash, a new launch) starts with no keyframes, and a robot
that walked a house must walk it again before it can answer a query there. The node's
``~/save_keyframes`` service writes its keyframe buffer as a viewseg scene folder
(:mod:`viewseg_core.data.scene_folder`: ``rgb/*.png``, ``depth/*.npy``, ``cameras.json``
with each keyframe's K, pose and stamp); ``~/load_keyframes`` and the parameter
``keyframes.load_path`` read one back. Being a scene folder, a saved set is also a dataset:
``viewseg bag2scene`` writes the same format, so keyframes recorded in a bag load into the
node, and saved keyframes can be inspected, evaluated or trained on like any scene.

Frames. Poses are stored in the node's ``fixed_frame`` and ``cameras.json`` records which
(``meta.fixed_frame``, as bag2scene does). A folder saved in another frame is refused: its
poses would be off by the transform between the two frames, which TF of the new run need
not know. A folder without the record (a synthetic scene) is taken to be in the node's frame,
and the load's message says so. The ``map`` frame of a SLAM system is only the same frame
across runs when the map is (a saved and reloaded map, or a localisation-only run on it).

Odometry (a node that follows a SLAM pose graph, viewseg_ros/pose_graph.py). Each frame's
``meta`` also keeps the camera's pose in the odometry frame at capture (``odom_c2w``), and
``odometry_trail.npz`` the body's odometry poses around the keyframes' stamps, so that keyframes
loaded after a restart follow the graph's later loop closures. ``cameras.json`` records the
odometry frame and the clock (``meta.odometry``: ``frame``, ``clock`` "system" or "sim",
``samples``); the loading node uses them only where its stamps compare (:func:`odometry_usable`).

Writing is atomic: the folder is assembled beside its destination and moved in place, an
earlier save there is replaced, and anything else at the path is refused
(:func:`viewseg_core.data.scene_folder.staging_folder`). Reading checks every file
(:class:`viewseg_core.data.scene_folder.SceneFolder` raises ValueError naming a malformed
one) before the node takes any keyframe, so a bad folder changes nothing.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import SceneFolder, SceneFolderWriter, publish_folder, staging_folder
from viewseg_ros.keyframes import NS_PER_S, Keyframe

# cameras.json meta.source of a folder written by save_keyframes.
SOURCE = "viewseg_node keyframes"
# The body's odometry poses around the keyframes' stamps (SavedOdometry), beside cameras.json.
ODOMETRY_FILE = "odometry_trail.npz"
CLOCKS = ("system", "sim")


@dataclass
class StoredKeyframe:
    """One keyframe read from a folder: its view (pose in the folder's frame), the stamp it
    was taken at (another run's clock) and the camera it came from ("" = unknown)."""

    view: View
    stamp_ns: int
    camera: str
    odom_c2w: np.ndarray | None = None   # [4, 4] the camera's pose in the odometry frame, if kept


@dataclass
class SavedOdometry:
    """What a pose graph needs of a run's odometry to re-pose its keyframes in a later run.

    Attributes:
        frame: the odometry frame (``pose_graph.odom_frame``).
        clock: "system" (ROS time on the system clock) or "sim" (a simulator's /clock).
        stamps: [N] int64 ns, sorted; poses: [N, 4, 4] T_odom_body at those stamps.
    """

    frame: str
    clock: str
    stamps: np.ndarray
    poses: np.ndarray


def odometry_usable(saved: SavedOdometry | None, odom_frame: str, clock: str) -> str:
    """"" when a node in ``odom_frame`` on ``clock`` can re-pose a folder's keyframes with its
    saved odometry, else why not (for the load's message). Stamps compare only on the system
    clock: a simulator's clock restarts with it, and an old stamp would meet a new graph node."""
    if saved is None:
        return "the folder kept no odometry"
    if saved.frame != odom_frame:
        return f"the folder's odometry is in {saved.frame!r}, this node's pose_graph.odom_frame is {odom_frame!r}"
    if saved.clock != "system" or clock != "system":
        return "saved or loaded on a simulator's clock, whose stamps do not compare across runs"
    return ""


def save_keyframes(keyframes: Sequence[Keyframe], path: str | Path, fixed_frame: str,
                   node_name: str = "viewseg", odometry: SavedOdometry | None = None) -> Path:
    """Write ``keyframes`` (a buffer snapshot) as the scene folder ``path``; returns the path.

    Each frame's ``meta`` keeps the camera (``camera``), the image's ``frame_id`` and the exact
    stamp in nanoseconds (``stamp_ns``; ``stamp`` in seconds is rounded by JSON's floats).
    With ``odometry`` (a node with a pose graph), also each keyframe's ``odom_c2w`` and the
    trail (the module docstring). Raises ValueError for a path that holds something other than
    a scene folder, or for an empty snapshot (an empty save would replace a good one with nothing).
    """
    if not keyframes:
        raise ValueError("no keyframes to save (an earlier save at the path is left as it is)")
    path = Path(path).expanduser()
    staging = staging_folder(path, "keyframe folder")
    try:
        meta = {"source": SOURCE, "fixed_frame": fixed_frame, "node": node_name,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "keyframes": len(keyframes)}
        if odometry is not None:
            if odometry.clock not in CLOCKS:
                raise ValueError(f"odometry clock must be one of {CLOCKS}, got {odometry.clock!r}")
            meta["odometry"] = {"frame": odometry.frame, "clock": odometry.clock, "samples": len(odometry.stamps),
                                "file": ODOMETRY_FILE}
            np.savez(staging / ODOMETRY_FILE, stamps_ns=np.asarray(odometry.stamps, dtype=np.int64),
                     odom_from_body=np.asarray(odometry.poses, dtype=np.float64).reshape(-1, 4, 4))
        with SceneFolderWriter(staging, scene=path.name, meta=meta) as writer:
            for keyframe in keyframes:
                view = keyframe.view
                frame_meta = {**(view.meta or {}), "stamp_ns": int(keyframe.stamp_ns), "camera": keyframe.stream,
                              "keyframe_id": keyframe.id}
                frame_meta.pop("odom_c2w", None)   # a restored keyframe's meta: only its current pose is written
                if odometry is not None and keyframe.odom_c2w is not None:
                    frame_meta["odom_c2w"] = np.asarray(keyframe.odom_c2w, dtype=np.float64).tolist()
                writer.add(View(rgb=view.rgb, K=view.K, c2w=view.c2w, depth=view.depth,
                                view_id=f"{keyframe.id:06d}", stamp=keyframe.stamp_ns / NS_PER_S, meta=frame_meta))
        publish_folder(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_keyframes(path: str | Path, fixed_frame: str) -> tuple[list[StoredKeyframe], str]:
    """Every view of the scene folder ``path`` as a keyframe to restore, and a note for the
    caller's message ("" or what was assumed).

    Raises ValueError (naming the path) when it is not a scene folder, a file in it is
    malformed, a pose is not finite, or ``cameras.json`` records a fixed frame other than
    ``fixed_frame``. Every view is read before returning: nothing is half-loaded.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ValueError(f"keyframe folder {path} does not exist or is not a folder")
    folder = SceneFolder(path)
    saved_frame = folder.meta.get("fixed_frame") if isinstance(folder.meta, dict) else None
    note = ""
    if saved_frame is None:
        note = f"{path} records no fixed frame: its poses are taken to be in {fixed_frame!r}"
    elif saved_frame != fixed_frame:
        raise ValueError(f"keyframe folder {path} holds poses in {saved_frame!r}, but this node's fixed_frame is "
                         f"{fixed_frame!r}: its poses would be off by the transform between the two frames")
    if len(folder) == 0:
        raise ValueError(f"keyframe folder {path} holds no frames")
    stored = []
    for index in range(len(folder)):
        view = folder.load_view(index)
        if not (np.isfinite(view.c2w).all() and np.isfinite(view.K).all()):
            raise ValueError(f"keyframe folder {path}: frame {view.view_id!r} has a pose or K that is not finite")
        meta = view.meta or {}
        stamp_ns = meta.get("stamp_ns")
        if not isinstance(stamp_ns, int):
            stamp_ns = int(round(view.stamp * NS_PER_S)) if math.isfinite(view.stamp) else 0
        odom_c2w = meta.get("odom_c2w")
        if odom_c2w is not None:
            odom_c2w = _rigid(odom_c2w, f"keyframe folder {path}: frame {view.view_id!r} odom_c2w")
        stored.append(StoredKeyframe(view, stamp_ns, str(meta.get("camera", "")), odom_c2w))
    return stored, note


def _rigid(value, where: str) -> np.ndarray:
    """A finite [4, 4] rigid transform from JSON or an array, or ValueError naming ``where``."""
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: not a 4x4 matrix of numbers") from None
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise ValueError(f"{where}: must be a finite 4x4 matrix, got shape {matrix.shape}")
    rotation = matrix[:3, :3]
    if (not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) or not np.isclose(np.linalg.det(rotation), 1.0, atol=1e-4)
            or not np.allclose(matrix[3], (0, 0, 0, 1))):
        raise ValueError(f"{where}: not a rigid transform (rotation not orthonormal, or last row not 0 0 0 1)")
    return matrix


def read_odometry(path: str | Path) -> SavedOdometry | None:
    """The odometry a keyframe folder kept (:func:`save_keyframes` with ``odometry``), or None
    for a folder without it. Raises ValueError (naming the path) for a malformed record or
    trail file: checked whole before the caller takes anything."""
    path = Path(path).expanduser()
    meta = SceneFolder(path).meta
    record = meta.get("odometry") if isinstance(meta, dict) else None
    if record is None:
        return None
    where = f"keyframe folder {path}: odometry"
    if not isinstance(record, dict) or not isinstance(record.get("frame"), str) or record.get("clock") not in CLOCKS:
        raise ValueError(f"{where}: cameras.json meta.odometry must name a frame and a clock in {CLOCKS}, got {record!r}")
    trail = path / ODOMETRY_FILE
    try:
        with np.load(trail, allow_pickle=False) as arrays:
            stamps, poses = arrays["stamps_ns"], arrays["odom_from_body"]
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{where}: cannot read {trail.name}: {error}") from None
    if (stamps.ndim != 1 or stamps.dtype != np.int64 or poses.shape != (len(stamps), 4, 4)
            or not np.isfinite(poses).all()):
        raise ValueError(f"{where}: {trail.name} must hold int64 stamps_ns [N] and finite odom_from_body [N, 4, 4], "
                         f"got {stamps.dtype} {stamps.shape} and {poses.shape}")
    if len(stamps) > 1 and not (np.diff(stamps) > 0).all():
        raise ValueError(f"{where}: {trail.name} stamps are not strictly increasing")
    return SavedOdometry(record["frame"], record["clock"], stamps, poses)


__all__ = ["SOURCE", "ODOMETRY_FILE", "StoredKeyframe", "SavedOdometry", "save_keyframes", "read_keyframes",
           "read_odometry", "odometry_usable"]
