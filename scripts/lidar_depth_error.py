#!/usr/bin/env python3
"""How right the depth a keyframe gets from a LiDAR is: registered (and accumulated) sweeps
against the ray-cast truth, in the simulated robot's rooms.

    python scripts/lidar_depth_error.py --seeds 0,1,2 --windows 0,1,2,4

For each room (``viewseg_sim_camera``'s walk, ``--seed``), every ``--step`` seconds of the walk
a keyframe: the camera's true planar depth at the node's working size (``--size``, the demo
model's 80x60) against what the node registers into it (``viewseg_core.depth_registration``):
the sweep taken with the image, and with a window of W seconds also the sweeps of the W seconds
before it (one sweep per ``--cloud-period``; the node registers a keyframe when its image is
admitted, so later sweeps have not arrived). The LiDAR sits ``--lidar-height`` above the camera,
as the simulator mounts it, so it sees past edges the camera sees closed (parallax) as well as
from where the robot was. Sweeps are instantaneous and noise-free here (the test of geometry,
not of deskewing or range noise), so every error is a point that lands on a pixel whose camera
ray meets another surface.

Per window, over every keyframe: the share of the image with a measurement, the share of those
measurements more than ``--tolerance`` behind the true surface (a farther surface showing
through a gap of the nearer one; also its largest share in one keyframe) or in front of it,
and the median relative error; then the same
after ``depth_completion: columns`` (what the node does with point clouds by default), which can
carry a wrong measurement into the rows it fills. docs/ros.md ("Accumulating sweeps") quotes it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from viewseg_core.cameras import K_from_hfov  # noqa: E402
from viewseg_core.data.synth.lidar import LidarConfig, lidar_scan  # noqa: E402
from viewseg_core.data.synth.render import render  # noqa: E402
from viewseg_core.depth_completion import fill_columns  # noqa: E402
from viewseg_core.depth_registration import register_points  # noqa: E402


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
                    cloud_period_s: float, lidar_height_m: float, lidar: LidarConfig):
    """Yields (true depth, {window: registered depth}) for each keyframe of room ``seed``'s walk."""
    from viewseg_ros.sim_camera import SimWorld, lidar_mount

    height, width = size
    K = K_from_hfov(hfov_deg, width, height)
    world = SimWorld.create(seed)
    mount = lidar_mount(world.mount, lidar_height_m)
    sweeps: dict[int, np.ndarray] = {}

    def sweep(k: int) -> np.ndarray:
        """The sweep k cloud periods into the walk, in map."""
        if k not in sweeps:
            lidar_pose = world.base_pose(k * cloud_period_s) @ mount
            points = lidar_scan(world.scene, lidar_pose, lidar)
            sweeps[k] = points @ lidar_pose[:3, :3].T + lidar_pose[:3, 3]
        return sweeps[k]

    longest = max(windows)
    for t in np.arange(longest + step_s, world.period_s, step_s):
        k = int(round(t / cloud_period_s))
        c2w = world.camera_pose(k * cloud_period_s)
        truth = render(world.scene, K, c2w, height, width).depth
        registered = {}
        for window in windows:
            taken = range(k - int(round(window / cloud_period_s)), k + 1)
            registered[window] = register_points(np.concatenate([sweep(j) for j in taken]), K, size,
                                                 np.linalg.inv(c2w))
        yield truth, registered


def measure(args: argparse.Namespace) -> dict[tuple[float, str], ErrorCounts]:
    lidar = LidarConfig(beams=args.beams, range_noise_m=0.0)
    counts = {(w, c): ErrorCounts() for w in args.windows for c in ("as registered", "columns filled")}
    for seed in args.seeds:
        for truth, registered in keyframe_depths(seed, args.windows, args.size, args.hfov, args.step,
                                                 args.cloud_period, args.lidar_height, lidar):
            for window, depth in registered.items():
                counts[(window, "as registered")].add(depth, truth, args.tolerance)
                counts[(window, "columns filled")].add(fill_columns(depth), truth, args.tolerance)
    return counts


def table(counts: dict[tuple[float, str], ErrorCounts], tolerance: float) -> str:
    lines = [f"| sweeps registered | depth | measured (% of pixels) | behind the true surface by > {tolerance:.0%} "
             f"(% of measured) | the same, worst keyframe | in front by > {tolerance:.0%} | median relative error |",
             "|---|---|---|---|---|---|---|"]
    for (window, completion), count in counts.items():
        what = "the one taken with the image" if window == 0 else f"and those of the {window:g} s before"
        measured, behind, worst, in_front, median = count.row()
        lines.append(f"| {what} | {completion} | {measured:.1f} | {behind:.2f} | {worst:.1f} | {in_front:.2f} | "
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
    p.add_argument("--tolerance", type=float, default=0.05, help="relative depth error that counts as wrong")
    args = p.parse_args(argv)
    if any(w < 0 for w in args.windows) or args.step <= 0 or args.cloud_period <= 0:
        p.error("windows must be >= 0 and step, cloud-period > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(table(measure(args), args.tolerance))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
