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


@dataclass
class StoredKeyframe:
    """One keyframe read from a folder: its view (pose in the folder's frame), the stamp it
    was taken at (another run's clock) and the camera it came from ("" = unknown)."""

    view: View
    stamp_ns: int
    camera: str


def save_keyframes(keyframes: Sequence[Keyframe], path: str | Path, fixed_frame: str,
                   node_name: str = "viewseg") -> Path:
    """Write ``keyframes`` (a buffer snapshot) as the scene folder ``path``; returns the path.

    Each frame's ``meta`` keeps the camera (``camera``), the image's ``frame_id`` and the exact
    stamp in nanoseconds (``stamp_ns``; ``stamp`` in seconds is rounded by JSON's floats).
    Raises ValueError for a path that holds something other than a scene folder, or for an
    empty snapshot (an empty save would replace a good one with nothing).
    """
    if not keyframes:
        raise ValueError("no keyframes to save (an earlier save at the path is left as it is)")
    path = Path(path).expanduser()
    staging = staging_folder(path, "keyframe folder")
    try:
        meta = {"source": SOURCE, "fixed_frame": fixed_frame, "node": node_name,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "keyframes": len(keyframes)}
        with SceneFolderWriter(staging, scene=path.name, meta=meta) as writer:
            for keyframe in keyframes:
                view = keyframe.view
                frame_meta = {**(view.meta or {}), "stamp_ns": int(keyframe.stamp_ns), "camera": keyframe.stream,
                              "keyframe_id": keyframe.id}
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
        stored.append(StoredKeyframe(view, stamp_ns, str(meta.get("camera", ""))))
    return stored, note


__all__ = ["SOURCE", "StoredKeyframe", "save_keyframes", "read_keyframes"]
