"""What a LiDAR's point clouds cost the node: reading each cloud, registering one into a keyframe,
deskewing it, and filling the rows between its scan lines for a query.

``viewseg_node`` with ``pointcloud_topic`` reads every cloud that arrives (in the callback group
that also takes the images, so a slow read delays image intake): ``point_cloud_xyz`` decodes
only x, y, z. It registers one cloud per admitted keyframe (``register_points``: through TF,
z-buffered into the keyframe at its working size) and, with ``depth_completion``, fills the
columns of the query's source depth (``fill_columns``, four keyframes). This times each on
synthetic clouds laid out as a Velodyne driver publishes them (x, y, z, intensity, ring, time;
32-byte points) with ``--beams`` channels of ``--columns`` firings over a full turn in a room of
walls 2 to 8 m away; the camera sees about a fifth of the turn. Reference rows in the same run:
the generic reader (``point_cloud_to_numpy``: every field decoded, then x, y, z taken), and a
640x480 depth camera image registered into the same keyframe (``register_depth``, the
unaligned-depth path). A second table times deskewing (``viewseg_core/lidar_deskew.py``): reading
the points with their times (``point_cloud_xyzt``; the sweep's 0.1 s spread over the columns),
turning them into offsets, and placing the cloud in the fixed frame slice by slice with poses
looked up in the node's ``TransformBuffer`` (a 100 Hz odometry edge), against placing it with
the one pose at its stamp (``place_cloud`` without times: what the node did before). A third
times ``pointcloud_accumulate_s``: registering the placed points of 10 and 20 clouds (1 and 2 s
of a 10 Hz LiDAR) into one keyframe, against the paired cloud's alone. A fourth times the same
with the stale points left out first (``pointcloud_drop_stale``, the node's default with
accumulation: ``depth_registration.accumulated_points``, the earlier clouds culled to the image
and judged against the paired cloud, :mod:`viewseg_core.stale_points`), against registering
them all (the third table's figure). A fifth times ``pointcloud_occlusion_radius``
(``depth_registration.drop_occluded`` on the keyframe one cloud registers, radius 1 and 2).

A dated row per cloud size, with the CPU name, is appended to the "Point clouds" section of
docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_pointcloud.py --quick     # 16 x 64 points, a few repeats (seconds)
    python benchmarks/bench_pointcloud.py              # 16, 64 and 128 beams x 2048, 160x120 keyframes
"""
from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from report import add_record_arguments, cpu_name, print_and_record  # noqa: E402  (benchmarks/report.py)

SECTION = "## Point clouds (viewseg_ros/conversions.py, viewseg_core/depth_registration.py, depth_completion.py)"
INTRO = ("`python benchmarks/bench_pointcloud.py [--quick]` times what a LiDAR on `pointcloud_topic` costs the "
         "node, on synthetic Velodyne-layout clouds (32-byte points) of `beams` x `columns` firings in a room: "
         "reading one cloud (`point_cloud_xyz`, x, y, z only; every cloud that arrives) against the generic "
         "reader (`point_cloud_to_numpy`, every field), registering one into a keyframe (`register_points`; once "
         "per admitted keyframe) against a 640x480 depth image registered into the same keyframe "
         "(`register_depth`), and filling four keyframes' columns for a query (`fill_columns`); CPU, "
         "`--threads` torch threads, medians.\n\n")
ACCUMULATE_HEADER = ("| date | CPU | threads | cloud | clouds | points | keyframe | register ms | paired cloud "
                     "alone (reference) ms | ratio |\n"
                     "|---|---|---|---|---|---|---|---|---|---|\n")
ACCUMULATE_CLOUDS = (10, 20)
OCCLUSION_HEADER = ("| date | CPU | cloud | keyframe | measured pixels | drop occluded, radius 1 ms | radius 2 ms |\n"
                    "|---|---|---|---|---|---|---|\n")
STALE_HEADER = ("| date | CPU | threads | cloud | clouds | points | keyframe | drop stale + register ms "
                "| register all (reference) ms | ratio |\n"
                "|---|---|---|---|---|---|---|---|---|---|\n")
DESKEW_HEADER = ("| date | CPU | cloud | points | read xyz + times ms | offsets ms | slices | place, deskewed ms | "
                 "place, one pose (reference) ms | ratio |\n"
                 "|---|---|---|---|---|---|---|---|---|---|\n")
TABLE_HEADER = ("| date | CPU | threads | cloud | points | in the keyframe | read xyz ms | read all fields "
                "(reference) ms | ratio | register ms | depth image registered (reference) ms | keyframe | "
                "fill 4 keyframes ms |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
VELODYNE = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "time"],
                     "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f4"],
                     "offsets": [0, 4, 8, 16, 20, 24], "itemsize": 32})


SWEEP_S = 0.1   # a 10 Hz LiDAR's sweep


def room_scan(beams: int, columns: int, rng: np.random.Generator) -> np.ndarray:
    """[beams * columns, 3] points of one sweep (30 degrees of elevation) in a box room whose
    walls are 2-8 m away, LiDAR frame (x forward, z up)."""
    elevation = np.radians(np.linspace(-15.0, 15.0, beams))[:, None]
    azimuth = np.radians(np.linspace(0.0, 360.0, columns, endpoint=False))[None, :]
    directions = np.stack(np.broadcast_arrays(np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                              np.sin(elevation) + 0 * azimuth), axis=-1).reshape(-1, 3)
    half = np.array([rng.uniform(2, 8), rng.uniform(2, 8), 1.5])             # half extents: x, y, z (up)
    with np.errstate(divide="ignore"):
        t = np.min(np.abs(half / np.where(directions == 0, 1e-12, directions)), axis=1)
    return (directions * t[:, None]).astype(np.float32)


def velodyne_cloud(points: np.ndarray, beams: int):
    """sensor_msgs/PointCloud2 (rclpy) laid out as a Velodyne driver's, organised beams x columns."""
    from sensor_msgs.msg import PointCloud2, PointField

    data = np.zeros(len(points), VELODYNE)
    data["x"], data["y"], data["z"] = points.T
    data["ring"] = np.repeat(np.arange(beams), len(points) // beams)
    columns = len(points) // beams
    data["time"] = np.tile(np.arange(columns) * (SWEEP_S / columns), beams)     # seconds after the stamp
    codes = {"<f4": PointField.FLOAT32, "<u2": PointField.UINT16}
    msg = PointCloud2()
    msg.header.frame_id = "lidar"
    msg.height, msg.width = beams, len(points) // beams
    msg.fields = [PointField(name=n, offset=VELODYNE.fields[n][1], datatype=codes[VELODYNE.fields[n][0].str], count=1)
                  for n in VELODYNE.names]
    msg.is_bigendian, msg.point_step, msg.row_step = False, VELODYNE.itemsize, VELODYNE.itemsize * msg.width
    msg.data = data.tobytes()
    return msg


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 x 64 points, 40x30 keyframe, 3 repeats (for tests)")
    parser.add_argument("--beams", default="16,64,128", help="comma-separated channel counts")
    parser.add_argument("--columns", type=int, default=2048, help="firings per channel and turn")
    parser.add_argument("--size", default="160x120", help="keyframe (working) size WxH")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from viewseg_core.cameras import K_from_hfov
    from viewseg_core.depth_completion import fill_columns
    from viewseg_core.depth_registration import accumulated_points, drop_occluded, register_depth, register_points
    from viewseg_core.lidar_deskew import place_cloud
    from viewseg_ros.conversions import point_cloud_to_numpy, point_cloud_xyz, point_cloud_xyzt
    from viewseg_ros.tf_buffer import TransformBuffer

    # The LiDAR turning at 1 rad/s in map, on a 100 Hz odometry edge, as the node's TF holds it.
    tf = TransformBuffer()
    for k in range(30):
        yaw = 0.01 * k
        tf.add_transform("map", "lidar", k * 10_000_000, [0.01 * k, 0.0, 0.0],
                         [0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
    pose_at = lambda ns: tf.lookup("map", "lidar", ns)  # noqa: E731
    stamp_ns = 50_000_000

    beams_list = [16] if args.quick else [int(b) for b in args.beams.split(",")]
    columns = 64 if args.quick else args.columns
    width, height = (int(v) for v in ("40x30" if args.quick else args.size).split("x"))
    repeats = 3 if args.quick else args.repeats
    if repeats < 1 or columns < 1 or min(beams_list) < 1:
        parser.error("--repeats, --columns and --beams must be >= 1")
    rng = np.random.default_rng(0)
    K = K_from_hfov(70.0, width, height)
    # The camera looks along the LiDAR's x (optical z = forward, x = -y, y = -z), 15 cm below it.
    colour_from_lidar = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.15], [1.0, 0.0, 0.0, 0.0],
                                  [0.0, 0.0, 0.0, 1.0]])
    big_K = K_from_hfov(87.0, 640, 480)
    depth_image = rng.uniform(2.0, 8.0, (480, 640)).astype(np.float32)
    depth_image_s, _ = timed(lambda: register_depth(depth_image, big_K, K, (height, width), np.eye(4)), repeats)
    rows, deskew_rows, accumulate_rows, stale_rows, occlusion_rows = [], [], [], [], []
    for beams in beams_list:
        points = room_scan(beams, columns, rng)
        msg = velodyne_cloud(points, beams)
        xyz_s, xyz = timed(lambda: point_cloud_xyz(msg), repeats)

        def every_field():
            cloud = point_cloud_to_numpy(msg)
            stacked = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)
            return stacked[np.isfinite(stacked).all(axis=1)]

        all_s, reference = timed(every_field, repeats)
        assert np.array_equal(xyz, reference), "the two readers disagree"
        register_s, depth = timed(lambda: register_points(xyz, K, (height, width), colour_from_lidar), repeats)
        occluded_s = [timed(lambda: drop_occluded(depth, radius), repeats)[0] for radius in (1, 2)]
        occlusion_rows.append(f"| {_dt.date.today().isoformat()} | {cpu_name()} | {beams} x {columns} | "
                              f"{width}x{height} | {int(np.isfinite(depth).sum())} | {1e3 * occluded_s[0]:.2f} | "
                              f"{1e3 * occluded_s[1]:.2f} |\n")
        sources = np.stack([depth] * 4)
        fill_s, _ = timed(lambda: fill_columns(sources), repeats)
        xyzt_s, (_, sweep) = timed(lambda: point_cloud_xyzt(msg), repeats)
        offsets_s, offsets = timed(lambda: sweep.offsets(stamp_ns), repeats)
        deskew_s, (_, slices, why) = timed(lambda: place_cloud(xyz, offsets, stamp_ns, pose_at), repeats)
        assert why is None and slices > 1, why
        rigid_s, _ = timed(lambda: place_cloud(xyz, None, stamp_ns, pose_at), repeats)
        for clouds in ACCUMULATE_CLOUDS:
            # Each earlier cloud from a pose 5 cm further back (the node's are in fixed_frame).
            stacked = np.concatenate([xyz - np.float32([0.05 * k, 0.0, 0.0]) for k in range(clouds)])
            many_s, _ = timed(lambda: register_points(stacked, K, (height, width), colour_from_lidar), repeats)
            one_s, _ = timed(lambda: register_points(xyz, K, (height, width), colour_from_lidar), repeats)
            accumulate_rows.append(f"| {_dt.date.today().isoformat()} | {cpu_name()} | {args.threads} | {beams} x "
                                   f"{columns} | {clouds} | {len(stacked)} | {width}x{height} | {1e3 * many_s:.2f} | "
                                   f"{1e3 * one_s:.2f} | {many_s / one_s:.2f}x |\n")
            earlier = stacked[len(xyz):]

            def drop_stale_and_register():
                # The earlier clouds here are the paired one shifted, not one room: how many are
                # stale means nothing, the cost does (it does not depend on the verdicts).
                kept, _ = accumulated_points(xyz, earlier, np.zeros(3), K, (height, width), colour_from_lidar)
                return register_points(kept, K, (height, width), colour_from_lidar)

            stale_s, _ = timed(drop_stale_and_register, repeats)
            stale_rows.append(f"| {_dt.date.today().isoformat()} | {cpu_name()} | {args.threads} | {beams} x "
                              f"{columns} | {clouds} | {len(stacked)} | {width}x{height} | "
                              f"{1e3 * stale_s:.2f} | {1e3 * many_s:.2f} | {stale_s / many_s:.2f}x |\n")
        deskew_rows.append(f"| {_dt.date.today().isoformat()} | {cpu_name()} | {beams} x {columns} | {len(xyz)} | "
                           f"{1e3 * xyzt_s:.2f} | {1e3 * offsets_s:.2f} | {slices} | {1e3 * deskew_s:.2f} | "
                           f"{1e3 * rigid_s:.2f} | {deskew_s / rigid_s:.2f}x |\n")
        rows.append(f"| {_dt.date.today().isoformat()} | {cpu_name()} | {args.threads} | {beams} x {columns} | "
                    f"{len(xyz)} | {100 * np.isfinite(depth).mean():.1f}% | {1e3 * xyz_s:.2f} | {1e3 * all_s:.2f} | "
                    f"{all_s / xyz_s:.2f}x | {1e3 * register_s:.2f} | {1e3 * depth_image_s:.2f} | {width}x{height} | "
                    f"{1e3 * fill_s:.2f} |\n")
    print_and_record(args, SECTION, TABLE_HEADER, rows, intro=INTRO)
    print_and_record(args, SECTION, DESKEW_HEADER, deskew_rows)
    print_and_record(args, SECTION, ACCUMULATE_HEADER, accumulate_rows)
    print_and_record(args, SECTION, STALE_HEADER, stale_rows)
    print_and_record(args, SECTION, OCCLUSION_HEADER, occlusion_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
