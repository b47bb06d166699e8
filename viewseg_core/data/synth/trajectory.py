"""Camera trajectories through a synthetic room, at robot (~0.3-0.6 m) and human (~1.5 m) height.

A trajectory walks through free floor space (a 10 cm occupancy grid, kept away from walls
and furniture) along shortest grid paths between spread-out waypoints, and looks around:
its gaze turns smoothly between points of interest (furniture, the room's far side) while
pitch follows the height class (a robot camera looks level or slightly up, a person looks
down at the room). Everything is drawn from the given generator.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from viewseg_core.data.synth.room import Room, points_in_polygon
from viewseg_core.data.synth.scene import Scene

_NEIGHBOURS = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]


@dataclass(frozen=True)
class TrajectoryConfig:
    """Camera placement rules (metres, degrees)."""

    robot_height: tuple[float, float] = (0.3, 0.6)
    human_height: tuple[float, float] = (1.45, 1.65)
    robot_pitch: tuple[float, float] = (-10.0, 15.0)     # + looks up
    human_pitch: tuple[float, float] = (-40.0, -5.0)
    max_roll: float = 3.0
    cell: float = 0.1
    wall_margin: float = 0.35
    object_margin: float = 0.25
    min_gaze_distance: float = 1.2                      # look at things at least this far away
    waypoints: int = 5


def look_c2w(position, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """OpenCV camera-to-world looking along (yaw, pitch) from ``position`` (world z up).

    Args:
        yaw: heading about +z from +x, radians. pitch: radians, positive looks up.
        roll: rotation about the viewing direction, radians.
    """
    f = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.cross(f, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    cr, sr = math.cos(roll), math.sin(roll)
    right, down = cr * right + sr * down, -sr * right + cr * down
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, f, position
    return c2w


def room_of(scene: Scene) -> Room:
    """The placement bookkeeping of a generated scene (outline + furniture footprints)."""
    room = Room(scene.polygon, scene.height)
    room.footprints = [tuple(r) for r in scene.meta.get("footprints", [])]
    return room


def _largest_component(free: np.ndarray) -> np.ndarray:
    comp = np.full(free.shape, -1, dtype=np.int32)
    best, best_size, label = -1, 0, 0
    ny, nx = free.shape
    for start in zip(*np.nonzero(free)):
        if comp[start] >= 0:
            continue
        comp[start] = label
        queue, size = deque([start]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for dy, dx in _NEIGHBOURS[:4]:
                v, u = y + dy, x + dx
                if 0 <= v < ny and 0 <= u < nx and free[v, u] and comp[v, u] < 0:
                    comp[v, u] = label
                    queue.append((v, u))
        if size > best_size:
            best, best_size = label, size
        label += 1
    return comp == best


def _grid_path(free: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Shortest 8-connected path of free cells from a to b (BFS; both in one component)."""
    ny, nx = free.shape
    prev = -np.ones(free.shape + (2,), dtype=np.int32)
    prev[a] = a
    queue = deque([a])
    while queue:
        cur = queue.popleft()
        if cur == b:
            break
        y, x = cur
        for dy, dx in _NEIGHBOURS:
            v, u = y + dy, x + dx
            # Diagonal steps must not cut a blocked corner.
            if (0 <= v < ny and 0 <= u < nx and free[v, u] and prev[v, u, 0] < 0
                    and free[y, u] and free[v, x]):
                prev[v, u] = (y, x)
                queue.append((v, u))
    path = [b]
    while path[-1] != a:
        path.append(tuple(int(i) for i in prev[path[-1]]))
    return path[::-1]


def _resample(points: np.ndarray, n: int) -> np.ndarray:
    """n points evenly spaced by arc length along a polyline [M, 2]."""
    if len(points) == 1:
        return np.repeat(points, n, axis=0)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(targets, s, points[:, k]) for k in range(2)], axis=1)


def _smooth(points: np.ndarray, window: int = 5) -> np.ndarray:
    if len(points) <= window:
        return points
    kernel = np.ones(window) / window
    pad = window // 2
    padded = np.pad(points, ((pad, pad), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(2)], axis=1)


def free_cells(scene: Scene, cfg: TrajectoryConfig) -> tuple[np.ndarray, np.ndarray]:
    """Boolean grid of camera-safe cells (largest connected region) and their centres."""
    room = room_of(scene)
    for relax in (1.0, 0.7, 0.5):
        free, centres = room.free_grid(cfg.cell, cfg.wall_margin * relax, cfg.object_margin * relax)
        if free.sum() >= 20:
            break
    if free.sum() == 0:
        raise ValueError(f"scene {scene.name!r}: no free floor space for a camera")
    return _largest_component(free), centres


def trajectory(scene: Scene, n: int, kind: str, rng: np.random.Generator,
               cfg: TrajectoryConfig = TrajectoryConfig()) -> list[np.ndarray]:
    """n camera-to-world poses along one walk through the room.

    Args:
        kind: "robot" or "human" (height and pitch ranges).
    """
    if kind not in ("robot", "human"):
        raise ValueError(f"trajectory kind must be 'robot' or 'human', got {kind!r}")
    if n <= 0:
        return []
    free, centres = free_cells(scene, cfg)
    cells = np.argwhere(free)
    # Spread-out waypoints: farthest-point sampling from a random start.
    picks = [cells[int(rng.integers(len(cells)))]]
    for _ in range(cfg.waypoints - 1):
        d = np.min(np.stack([np.abs(cells - p).sum(1) for p in picks]), axis=0)
        far = np.argsort(d)[-max(1, len(cells) // 10):]             # among the farthest 10%
        picks.append(cells[int(rng.choice(far))])
    order = [tuple(int(i) for i in p) for p in picks]
    path: list[tuple[int, int]] = [order[0]]
    for a, b in zip(order[:-1], order[1:]):
        path += _grid_path(free, a, b)[1:]
    xy = np.array([centres[c] for c in path])
    xy = _resample(_smooth(xy), n)
    # Smoothing can pull a point off the free region at tight corners: snap such points back.
    bad = ~points_in_polygon(xy, scene.polygon)
    if bad.any():
        free_xy = centres[free]
        for i in np.nonzero(bad)[0]:
            xy[i] = free_xy[np.argmin(np.linalg.norm(free_xy - xy[i], axis=1))]

    lo, hi = cfg.robot_height if kind == "robot" else cfg.human_height
    base_h = rng.uniform(lo, hi)
    heights = np.clip(base_h + 0.03 * np.sin(np.linspace(0, rng.uniform(2, 8), n) + rng.uniform(0, 6)), lo, hi)
    pitch_lo, pitch_hi = cfg.robot_pitch if kind == "robot" else cfg.human_pitch

    # Points of interest: furniture centres and random points in the room, at object heights.
    interest = [((f[0] + f[2]) / 2, (f[1] + f[3]) / 2) for f in scene.meta.get("footprints", [])]
    x0, y0 = scene.polygon.min(0)
    x1, y1 = scene.polygon.max(0)
    rand_pts = np.stack([rng.uniform(x0, x1, 12), rng.uniform(y0, y1, 12)], 1)
    interest += [tuple(p) for p in rand_pts[points_in_polygon(rand_pts, scene.polygon)]]
    interest = np.array(interest) if interest else scene.polygon.mean(0, keepdims=True)

    # A gaze target every few frames; yaw is interpolated (shortest way round) in between.
    step = max(2, n // 6)
    keys = list(range(0, n, step)) + ([n - 1] if (n - 1) % step else [])
    key_yaw, key_target_h = [], []
    for k in keys:
        d = np.linalg.norm(interest - xy[k], axis=1)
        ok = np.nonzero(d >= cfg.min_gaze_distance)[0]
        if ok.size:
            t = interest[int(rng.choice(ok))]
            key_yaw.append(math.atan2(t[1] - xy[k, 1], t[0] - xy[k, 0]))
        else:
            key_yaw.append(rng.uniform(-math.pi, math.pi))
        key_target_h.append(rng.uniform(0.2, 1.2))
    key_yaw = np.unwrap(np.array(key_yaw))
    yaws = np.interp(np.arange(n), keys, key_yaw)
    target_h = np.interp(np.arange(n), keys, key_target_h)

    poses = []
    for i in range(n):
        dist = max(cfg.min_gaze_distance, 2.5)
        pitch = math.degrees(math.atan2(target_h[i] - heights[i], dist))
        pitch = float(np.clip(pitch + rng.uniform(-4, 4), pitch_lo, pitch_hi))
        roll = rng.uniform(-cfg.max_roll, cfg.max_roll)
        poses.append(look_c2w([xy[i, 0], xy[i, 1], heights[i]], float(yaws[i]), math.radians(pitch),
                              math.radians(roll)))
    return poses


__all__ = ["TrajectoryConfig", "trajectory", "look_c2w", "free_cells", "room_of"]
