#!/usr/bin/env python3
"""How right the depth a keyframe gets from a LiDAR is: registered (and accumulated) sweeps
against the ray-cast truth, in the simulated robot's rooms.

    python scripts/lidar_depth_error.py --seeds 0,1,2 --windows 0,1,2,4
    python scripts/lidar_depth_error.py --seeds 0,1,2 --windows 0,1,2,4 --walker 3

For each room (``viewseg_sim_camera``'s walk, ``--seed``), every ``--step`` seconds of the walk
a keyframe: the camera's true planar depth at the node's working size (``--size``, the demo
model's 80x60) against what the node registers into it (``viewseg_core.depth_registration``):
the sweep taken with the image, and with a window of W seconds also the sweeps of the W seconds
before it (one sweep per ``--cloud-period``; the node registers a keyframe when its image is
admitted, so later sweeps have not arrived). The LiDAR sits ``--lidar-height`` above the camera,
as the simulator mounts it, so it sees past edges the camera sees closed (parallax) as well as
from where the robot was. Sweeps are instantaneous and noise-free here (the test of geometry,
not of deskewing or range noise), so every error is a point that lands on a pixel whose camera
ray meets another surface. ``--walker LEAD_S`` puts a person in the room, walking the robot's
walk that many seconds ahead of it (``SimWorld.walker_lead_s``): earlier sweeps saw it where it
no longer is.

Every window of earlier sweeps is measured twice: as accumulated, and with the points the
keyframe's own sweep contradicts dropped (what the node's ``pointcloud_drop_stale`` does,
:mod:`viewseg_core.stale_points`). Per window, over every keyframe: the share of the image with a measurement, the share of those
measurements more than ``--tolerance`` behind the true surface (a farther surface showing
through a gap of the nearer one; also its largest share in one keyframe) or in front of it,
and the median relative error; then the same
after ``depth_completion: columns`` (what the node does with point clouds by default), which can
carry a wrong measurement into the rows it fills. docs/ros.md ("Accumulating sweeps") quotes it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from viewseg_core.cameras import K_from_hfov  # noqa: E402
from viewseg_core.data.synth.lidar import LidarConfig, lidar_scan  # noqa: E402
from viewseg_core.data.synth.render import render  # noqa: E402
from viewseg_core.depth_completion import fill_columns  # noqa: E402
from viewseg_core.depth_registration import accumulated_points, drop_occluded, register_points  # noqa: E402
from viewseg_core.stale_points import MAX_CELL_DEG, STALE_CELL_DEG  # noqa: E402

WALKER_CLEARANCE_M = 0.6   # keyframes with the walker nearer the camera than this are left out


@dataclass
class ErrorCounts:
    """Pixels of the keyframes so far: all, measured, and measured too far / too near."""

    pixels: int = 0
    measured: int = 0
    behind: int = 0
    in_front: int = 0
    worst_behind: float = 0.0   # the largest share of one keyframe's measurements behind, %
    relative_errors: list = field(default_factory=list)   # one array per keyframe

    def add(self, depth: np.ndarray, truth: np.ndarray, tolerance: float) -> None:
        known = np.isfinite(depth) & np.isfinite(truth) & (truth > 0)
        ratio = depth[known] / truth[known]
        self.pixels += depth.size
        self.measured += int(known.sum())
        behind = int((ratio > 1 + tolerance).sum())
        self.behind += behind
        self.worst_behind = max(self.worst_behind, 100 * behind / max(len(ratio), 1))
        self.in_front += int((ratio < 1 / (1 + tolerance)).sum())
        self.relative_errors.append(np.abs(ratio - 1))

    def row(self) -> tuple[float, float, float, float, float]:
        """(measured % of pixels, behind % of measured, the worst keyframe's, in front % of
        measured, median |rel. error|)."""
        errors = np.concatenate(self.relative_errors) if self.relative_errors else np.zeros(0)
        measured = max(self.measured, 1)
        return (100 * self.measured / max(self.pixels, 1), 100 * self.behind / measured, self.worst_behind,
                100 * self.in_front / measured, float(np.median(errors)) if len(errors) else float("nan"))


def keyframe_depths(seed: int, windows: list[float], size: tuple[int, int], hfov_deg: float, step_s: float,
                    cloud_period_s: float, lidar_height_m: float, lidar: LidarConfig, walker_lead_s: float = 0.0,
                    stale_cell_deg: float = STALE_CELL_DEG, kind: str = "human"):
    """Yields (true depth, {(window, stale dropped): registered depth}) for each keyframe of
    room ``seed``'s walk (stale dropped: the earlier sweeps' points that the keyframe's own
    sweep contradicts left out, as the node leaves them out:
    :func:`viewseg_core.depth_registration.accumulated_points` with cells of ``stale_cell_deg``;
    windows > 0 only). With a walker,
    the keyframes where it stands within WALKER_CLEARANCE_M of the camera are left out (the
    camera would be inside it)."""
    from viewseg_ros.sim_camera import SimWorld, lidar_mount

    height, width = size
    K = K_from_hfov(hfov_deg, width, height)
    world = replace(SimWorld.create(seed, kind=kind), walker_lead_s=walker_lead_s)
    mount = lidar_mount(world.mount, lidar_height_m)
    sweeps: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def sweep(k: int) -> tuple[np.ndarray, np.ndarray]:
        """(the sweep k cloud periods into the walk, in map; the LiDAR's position then)."""
        if k not in sweeps:
            lidar_pose = world.base_pose(k * cloud_period_s) @ mount
            points = lidar_scan(world.scene_at(k * cloud_period_s), lidar_pose, lidar)
            sweeps[k] = points @ lidar_pose[:3, :3].T + lidar_pose[:3, 3], lidar_pose[:3, 3]
        return sweeps[k]

    longest = max(windows)
    for t in np.arange(longest + step_s, world.period_s, step_s):
        k = int(round(t / cloud_period_s))
        walker = world.walker_xy(k * cloud_period_s)
        c2w = world.camera_pose(k * cloud_period_s)
        if walker is not None and np.linalg.norm(walker - c2w[:2, 3]) < WALKER_CLEARANCE_M:
            continue
        truth = render(world.scene_at(k * cloud_period_s), K, c2w, height, width).depth
        own, origin = sweep(k)
        registered = {}
        for window in windows:
            others = [sweep(j)[0] for j in range(k - int(round(window / cloud_period_s)), k)]
            earlier = np.concatenate(others) if others else np.zeros((0, 3), np.float32)
            registered[(window, False)] = register_points(np.concatenate([own, earlier]), K, size, np.linalg.inv(c2w))
            if window > 0:
                points, _ = accumulated_points(own, earlier, origin, K, size, np.linalg.inv(c2w), stale_cell_deg)
                registered[(window, True)] = register_points(points, K, size, np.linalg.inv(c2w))
        yield truth, registered


def measure(args: argparse.Namespace) -> dict[tuple[float, bool, str], ErrorCounts]:
    lidar = LidarConfig(beams=args.beams, range_noise_m=0.0)
    counts = {(w, dropped, c): ErrorCounts() for w in args.windows for dropped in ((False, True) if w else (False,))
              for c in ("as registered", "columns filled")}
    for seed in args.seeds:
        for truth, registered in keyframe_depths(seed, args.windows, args.size, args.hfov, args.step,
                                                 args.cloud_period, args.lidar_height, lidar, args.walker,
                                                 args.stale_cell, args.kind):
            for (window, dropped), depth in registered.items():
                if args.occlusion_radius:
                    depth = drop_occluded(depth, args.occlusion_radius)
                counts[(window, dropped, "as registered")].add(depth, truth, args.tolerance)
                counts[(window, dropped, "columns filled")].add(fill_columns(depth), truth, args.tolerance)
    return counts


def table(counts: dict[tuple[float, bool, str], ErrorCounts], tolerance: float) -> str:
    lines = [f"| sweeps registered | stale points dropped | depth | measured (% of pixels) | behind the true surface by > {tolerance:.0%} "
             f"(% of measured) | the same, worst keyframe | in front by > {tolerance:.0%} | median relative error |",
             "|---|---|---|---|---|---|---|---|"]
    for (window, dropped, completion), count in counts.items():
        what = "the one taken with the image" if window == 0 else f"and those of the {window:g} s before"
        measured, behind, worst, in_front, median = count.row()
        stale = "-" if window == 0 else ("yes" if dropped else "no")
        lines.append(f"| {what} | {stale} | {completion} | {measured:.1f} | {behind:.2f} | {worst:.1f} | {in_front:.2f} | "
                     f"{median:.4f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def floats(text: str) -> list[float]:
        return [float(x) for x in text.split(",") if x]

    def seeds(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x]

    def size(text: str) -> tuple[int, int]:
        width, height = (int(x) for x in text.lower().split("x"))
        return height, width

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=seeds, default=[0, 1, 2], help="rooms, comma-separated")
    p.add_argument("--windows", type=floats, default=[0.0, 1.0, 2.0, 4.0], help="seconds of earlier sweeps")
    p.add_argument("--size", type=size, default=(60, 80), help="keyframe size WxH (the node's working size)")
    p.add_argument("--hfov", type=float, default=70.0, help="camera horizontal field of view (the sim's), degrees")
    p.add_argument("--step", type=float, default=2.5, help="seconds of the walk between keyframes")
    p.add_argument("--cloud-period", type=float, default=0.2, help="seconds between sweeps (the sim's 5 Hz)")
    p.add_argument("--lidar-height", type=float, default=0.15, help="LiDAR above the camera, metres (the sim's)")
    p.add_argument("--beams", type=int, default=16)
    p.add_argument("--walker", type=float, default=0.0, metavar="LEAD_S",
                   help="a person walks the robot's walk this many seconds ahead of it (0 = a static room)")
    p.add_argument("--kind", choices=("human", "robot"), default="human",
                   help="the walk's camera height: human 1.45-1.65 m (the sim's default), robot 0.3-0.6 m (its LiDAR "
                        "then sees the floor a metre or two out)")
    p.add_argument("--stale-cell", type=float, default=STALE_CELL_DEG, metavar="DEG",
                   help="the stale-point test's cell (the node's pointcloud_stale_cell_deg)")
    p.add_argument("--occlusion-radius", type=int, default=0, metavar="PIXELS",
                   help="drop the measurements a nearer one within this many pixels hides (the node's "
                        "pointcloud_occlusion_radius); 0 = keep them")
    p.add_argument("--tolerance", type=float, default=0.05, help="relative depth error that counts as wrong")
    args = p.parse_args(argv)
    if any(w < 0 for w in args.windows) or args.step <= 0 or args.cloud_period <= 0 or args.walker < 0:
        p.error("windows and walker must be >= 0 and step, cloud-period > 0")
    if not 0 <= args.occlusion_radius <= 8:
        p.error("--occlusion-radius must be 0-8 pixels")
    if not 0 < args.stale_cell <= MAX_CELL_DEG:
        p.error(f"--stale-cell must be in (0, {MAX_CELL_DEG:g}] degrees")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(table(measure(args), args.tolerance))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
