"""Pictures of a scene folder: what its frames show and where they were taken.

``viewseg show-scene FOLDER`` answers "what did the robot keep?" for a folder of keyframes a
node saved (``~/save_keyframes``), a bag import (``viewseg bag2scene``) or a generated scene:

- :func:`scene_summary`: frame and camera counts, image sizes, how much of the depth is
  known, the depth range, the extent and path length of the camera centres, the stamps;
- :func:`contact_sheet`: a grid of frames (colour, depth as a colormap, labels in the class
  palette where present), each titled with its id and camera;
- :func:`top_down_map`: the camera centres seen from above, with each optical axis as a
  short line and a 1 m scale bar, coloured by camera.

"Above" is the world's up as the cameras say it: the mean of their image-up directions (the
optical frame's -y), so the map is right for a z-up ROS ``map`` and for a y-down dataset
frame alike, without knowing which convention the folder uses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from viewseg_core.classes import colorize
from viewseg_core.data.scene_folder import SceneFolder
from viewseg_core.viz import colorize_depth, panel

# Colours (RGB) of the cameras in the map, in order of first appearance.
CAMERA_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


def _camera_of(folder: SceneFolder, index: int) -> str:
    return str(folder.frames[index].meta.get("camera", "") or "")


def scene_summary(folder: SceneFolder) -> dict:
    """Counts and ranges of ``folder`` (reads every depth map once).

    Returns:
        dict with ``frames``, ``cameras`` {name: frames} ("" = unnamed), ``sizes`` {WxH:
        frames}, ``with_depth``, ``with_labels``, ``depth_known`` (share of depth pixels with a
        measurement, over the frames with depth), ``depth_range`` (5th and 95th percentile,
        metres), ``extent`` ([3] max - min of the camera centres), ``path_length`` (metres
        along the centres in frame order), ``stamps`` (first, last; seconds), ``fixed_frame``
        and ``source`` (from the folder's meta, "" when absent).
    """
    cameras: dict[str, int] = {}
    sizes: dict[str, int] = {}
    centres, stamps, depths = [], [], []
    known = total = with_labels = 0
    for i, entry in enumerate(folder.frames):
        cam = entry.camera
        cameras[_camera_of(folder, i)] = cameras.get(_camera_of(folder, i), 0) + 1
        key = f"{cam.width}x{cam.height}"
        sizes[key] = sizes.get(key, 0) + 1
        centres.append(np.asarray(cam.c2w, dtype=np.float64)[:3, 3])
        stamps.append(float(entry.stamp))
        with_labels += entry.labels is not None
        depth = folder.load_depth(i)
        if depth is not None:
            good = np.isfinite(depth) & (depth > 0)
            known += int(good.sum())
            total += depth.size
            depths.append(depth[good])
    centres_arr = np.stack(centres) if centres else np.zeros((0, 3))
    all_depth = np.concatenate(depths) if depths else np.zeros(0)
    return {
        "frames": len(folder), "cameras": cameras, "sizes": sizes, "with_depth": len(depths),
        "with_labels": with_labels, "depth_known": known / total if total else math.nan,
        "depth_range": tuple(float(x) for x in np.percentile(all_depth, [5, 95])) if all_depth.size else (math.nan,) * 2,
        "extent": (centres_arr.max(0) - centres_arr.min(0)) if len(centres_arr) else np.zeros(3),
        "path_length": float(np.linalg.norm(np.diff(centres_arr, axis=0), axis=1).sum()) if len(centres_arr) > 1 else 0.0,
        "stamps": (min(stamps), max(stamps)) if stamps else (math.nan, math.nan),
        "fixed_frame": str(folder.meta.get("fixed_frame", "") or ""), "source": str(folder.meta.get("source", "") or ""),
    }


def format_summary(folder: SceneFolder, summary: dict) -> str:
    """The summary as a few lines of text."""
    cams = ", ".join(f"{name or '(unnamed)'}: {n}" for name, n in summary["cameras"].items())
    sizes = ", ".join(f"{size}: {n}" for size, n in summary["sizes"].items())
    lines = [f"{folder.root}: scene {folder.name!r}, {summary['frames']} frames"
             + (f" from {summary['source']}" if summary["source"] else "")
             + (f", poses in {summary['fixed_frame']!r}" if summary["fixed_frame"] else ""),
             f"cameras: {cams}; image sizes: {sizes}",
             f"depth: {summary['with_depth']} frames, {100 * summary['depth_known']:.1f}% of their pixels measured, "
             f"5-95% range {summary['depth_range'][0]:.2f}-{summary['depth_range'][1]:.2f} m"
             if summary["with_depth"] else "depth: none",
             f"labels: {summary['with_labels']} frames",
             "camera centres: extent " + " x ".join(f"{x:.2f}" for x in summary["extent"])
             + f" m, path {summary['path_length']:.2f} m in frame order; stamps "
               f"{summary['stamps'][0]:.3f}-{summary['stamps'][1]:.3f} s"]
    return "\n".join(lines)


def frame_indices(count: int, max_frames: int) -> list[int]:
    """At most ``max_frames`` indices spread evenly over ``count`` frames, first and last included."""
    if count <= max_frames:
        return list(range(count))
    if max_frames <= 1:
        return [0]
    return sorted({round(i * (count - 1) / (max_frames - 1)) for i in range(max_frames)})


def contact_sheet(folder: SceneFolder, max_frames: int = 24, per_row: int = 4, tile_height: int = 120) -> np.ndarray:
    """[H, W, 3] uint8: ``per_row`` frames per row, each as colour, depth (turbo colormap, one
    scale for the whole sheet: the 95th percentile of the shown depths) and labels where the
    frame has them; up to ``max_frames`` frames spread over the folder."""
    if len(folder) == 0:
        raise ValueError(f"{folder.root}: no frames to show")
    chosen = frame_indices(len(folder), max_frames)
    views = [folder.load_view(i) for i in chosen]
    shown = [v.depth[np.isfinite(v.depth) & (v.depth > 0)] for v in views if v.depth is not None]
    shown = np.concatenate(shown) if shown else np.zeros(0)
    max_depth = float(np.percentile(shown, 95)) if shown.size else None
    tiles = []  # per frame: its colour, depth and label tiles
    for index, view in zip(chosen, views):
        camera = _camera_of(folder, index)
        frame = [(f"{view.view_id}" + (f" {camera}" if camera else ""), view.rgb)]
        if view.depth is not None:
            frame.append(("depth", colorize_depth(view.depth, max_depth)))
        if view.labels is not None:
            frame.append(("labels", colorize(view.labels)))
        tiles.append(frame)
    rows = [[tile for frame in tiles[i:i + per_row] for tile in frame] for i in range(0, len(tiles), per_row)]
    return panel(rows, tile_height=tile_height)


@dataclass
class MapProjection:
    """World point -> map pixel: ``pixel = (p - origin) @ axes.T * scale + offset``."""

    origin: np.ndarray   # [3] world
    axes: np.ndarray     # [2, 3] orthonormal, spanning the ground plane
    scale: float         # pixels per metre
    offset: np.ndarray   # [2] pixels

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """[..., 3] world -> [..., 2] pixel (x right, y down)."""
        return (np.asarray(points, dtype=np.float64) - self.origin) @ self.axes.T * self.scale + self.offset


def ground_axes(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(up [3], axes [2, 3]) for camera poses c2w [N, 4, 4]: up = the mean image-up direction
    (the optical frame's -y), and two orthonormal axes of the plane perpendicular to it, the
    first along the mean optical axis there (so the map shows the cameras looking "up" the
    image) when the cameras do not all look straight up or down."""
    up = -c2w[:, :3, 1].mean(0)
    if np.linalg.norm(up) < 1e-6:
        up = np.array([0.0, 0.0, 1.0])
    up = up / np.linalg.norm(up)
    forward = c2w[:, :3, 2].mean(0)
    forward = forward - up * (forward @ up)
    if np.linalg.norm(forward) < 1e-6:  # no common heading: any axis of the plane
        forward = np.eye(3)[int(np.argmin(np.abs(up)))]
        forward = forward - up * (forward @ up)
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    return up, np.stack([right, forward])


def top_down_map(folder: SceneFolder, size: int = 480, margin: int = 30) -> tuple[np.ndarray, MapProjection]:
    """The camera centres from above: ([size, size, 3] uint8 RGB, the projection used). Each
    frame is a dot with its optical axis as a line (0.3 m), coloured by camera; the path in
    frame order is grey; a 1 m scale bar sits bottom left."""
    if len(folder) == 0:
        raise ValueError(f"{folder.root}: no frames to show")
    c2w = np.stack([np.asarray(f.camera.c2w, dtype=np.float64) for f in folder.frames])
    _, axes = ground_axes(c2w)
    centres = c2w[:, :3, 3]
    flat = centres @ axes.T                                             # [N, 2] metres in the plane
    lo, hi = flat.min(0), flat.max(0)
    span = max(float((hi - lo).max()), 1.0)
    scale = (size - 2 * margin) / span
    # Map x = right, map up = forward (pixel y grows down, hence the sign).
    axes_px = np.stack([axes[0], -axes[1]])
    centre_world = centres.mean(0)
    projection = MapProjection(origin=centre_world, axes=axes_px, scale=scale, offset=np.array([size / 2, size / 2]))
    # Recentre on the box of the centres, not their mean.
    pixels = projection(centres)
    shift = np.array([size / 2, size / 2]) - (pixels.min(0) + pixels.max(0)) / 2
    projection.offset = projection.offset + shift
    pixels = pixels + shift
    image = np.full((size, size, 3), 255, np.uint8)
    tips = projection(centres + 0.3 * c2w[:, :3, 2])
    as_point = lambda p: (int(round(p[0])), int(round(p[1])))  # noqa: E731
    for a, b in zip(pixels[:-1], pixels[1:]):
        cv2.line(image, as_point(a), as_point(b), (200, 200, 200), 1, cv2.LINE_AA)
    names = list(dict.fromkeys(_camera_of(folder, i) for i in range(len(folder))))
    for i, (p, tip) in enumerate(zip(pixels, tips)):
        colour = CAMERA_COLOURS[names.index(_camera_of(folder, i)) % len(CAMERA_COLOURS)]
        cv2.line(image, as_point(p), as_point(tip), colour, 1, cv2.LINE_AA)
        cv2.circle(image, as_point(p), 3, colour, -1, cv2.LINE_AA)
    bar = int(round(scale))
    cv2.line(image, (margin // 2, size - margin // 2), (margin // 2 + bar, size - margin // 2), (0, 0, 0), 2)
    cv2.putText(image, "1 m", (margin // 2, size - margin // 2 - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    for k, name in enumerate(names):
        cv2.putText(image, name or "camera", (margin // 2, 14 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    CAMERA_COLOURS[k % len(CAMERA_COLOURS)], 1, cv2.LINE_AA)
    return image, projection


__all__ = ["scene_summary", "format_summary", "contact_sheet", "top_down_map", "ground_axes", "frame_indices",
           "MapProjection", "CAMERA_COLOURS"]
