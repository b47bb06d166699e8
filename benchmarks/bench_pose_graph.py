"""What a SLAM pose graph costs the node: reading the nav_msgs/Path and re-posing the keyframes.

With ``pose_graph.topic`` every optimised trajectory the SLAM system publishes (RTAB-Map: about
once a second, the whole graph each time) is read whole (:func:`viewseg_ros.pose_graph.nodes_from_path`),
each node new to the node has its odometry pose looked up (a real
:class:`viewseg_ros.tf_buffer.TransformBuffer` holding 10 Hz odometry for the whole walk),
and the keyframes are re-posed (:func:`viewseg_ros.pose_graph.apply_pose_graph`). This times
those steps for graphs of ``--nodes`` nodes (one a second along a drifting walk) and 64
keyframes, one thread, median of ``--repeats`` runs:

- ``read``: the Path message to node poses;
- ``first graph``: ``update`` when every node is new (a lookup each), then re-posing;
- ``next graph``: the same graph again (every node's odometry remembered), then re-posing:
  what each message costs once the node has seen the graph;
- ``core at 1 Hz``: read + next graph as a share of one core at one graph a second.

A dated row per size, with the CPU name, is appended to the "Pose graph" section of
docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_pose_graph.py --quick     # a second or two
    python benchmarks/bench_pose_graph.py             # 1000 and 10000 nodes
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

import numpy as np  # noqa: E402

from report import add_record_arguments, cpu_name, median_ms, print_and_record  # noqa: E402  (benchmarks/report.py)
from viewseg_core.data.records import View  # noqa: E402
from viewseg_ros.conversions import matrix_to_pose_stamped  # noqa: E402
from viewseg_ros.keyframes import KeyframeBuffer, KeyframeConfig  # noqa: E402
from viewseg_ros.pose_graph import PoseGraphCorrector, apply_pose_graph, nodes_from_path  # noqa: E402
from viewseg_ros.tf_buffer import TransformBuffer, invert_transform, matrix_to_quaternion  # noqa: E402

S = 1_000_000_000
T0 = 1_000 * S   # the walk's first stamp (a stamp of 0 means "none" to a graph reader)
SECTION = "## Pose graph (viewseg_ros/pose_graph.py)"
INTRO = ("`python benchmarks/bench_pose_graph.py [--quick]` times what one optimised trajectory "
         "(nav_msgs/Path) costs the node with `pose_graph.topic`: reading it, looking up the odometry "
         "pose of each node new to the node (a real TransformBuffer of 10 Hz odometry), and re-posing 64 "
         "keyframes; one thread, median of the repeats. `next graph` is the steady state (every node seen "
         "before); `core at 1 Hz` is read + next graph at one graph a second.\n\n")
TABLE_HEADER = ("| date | CPU | nodes | keyframes | read ms | first graph ms | next graph ms | core at 1 Hz |\n"
                "|---|---|---|---|---|---|---|---|\n")
KEYFRAMES = 64


def planar(x: float, y: float, yaw: float) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    out[:3, 3] = [x, y, 0.0]
    return out


def walk(seconds: int):
    """True and odometry body poses at 10 Hz along a loop 0.5 m/s, odometry drifting 2 cm and
    0.5 degrees per metre."""
    true, odom = {}, {}
    for step in range(10 * seconds + 1):
        t = step / 10.0
        angle = 0.5 * t / 20.0   # a 20 m radius circle
        pose = planar(20 * math.sin(angle), 20 * (1 - math.cos(angle)), angle)
        drift = planar(0.01 * t, 0.01 * t, math.radians(0.25 * t))
        stamp = T0 + step * (S // 10)
        true[stamp], odom[stamp] = pose, invert_transform(drift) @ pose
    return true, odom


def measure(nodes: int, repeats: int) -> tuple[float, float, float]:
    """(read ms, first graph ms, next graph ms) for a graph of ``nodes`` nodes."""
    from nav_msgs.msg import Path as PathMessage

    true, odom = walk(nodes)
    tf = TransformBuffer(cache_time_s=None, max_history=None)
    for stamp, pose in odom.items():
        tf.add_transform("odom", "base_link", stamp, pose[:3, 3], matrix_to_quaternion(pose[:3, :3]))
    path = PathMessage()
    path.header.frame_id = "map"
    path.poses = [matrix_to_pose_stamped(true[T0 + t * S], "map", T0 + t * S) for t in range(nodes)]
    buffer = KeyframeBuffer(KeyframeConfig(min_translation=0.0, min_rotation_deg=0.0, min_interval_s=0.0,
                                           max_keyframes=KEYFRAMES, keep_recent=0))
    rgb, K = np.zeros((4, 4, 3), np.uint8), np.eye(3)
    for t in np.linspace(0.5, nodes - 1.5, KEYFRAMES):
        stamp = T0 + int(round(t * 10)) * (S // 10)
        buffer.add(View(rgb=rgb, K=K, c2w=odom[stamp]), stamp, force=True, odom_c2w=odom[stamp])

    def lookup(stamp_ns: int) -> np.ndarray:
        return tf.lookup("odom", "base_link", stamp_ns)

    graph_nodes = nodes_from_path(path, "map")
    read_ms = median_ms(lambda: nodes_from_path(path, "map"), repeats)

    def first() -> None:
        graph = PoseGraphCorrector(max_gap_s=5.0)
        graph.update(graph_nodes, lookup)
        apply_pose_graph(buffer, graph)

    first_ms = median_ms(first, repeats)
    graph = PoseGraphCorrector(max_gap_s=5.0)
    graph.update(graph_nodes, lookup)

    def next_graph() -> None:
        graph.update(graph_nodes, lookup)
        apply_pose_graph(buffer, graph)

    next_ms = median_ms(next_graph, repeats)
    return read_ms, first_ms, next_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 nodes, 2 repeats (for tests)")
    parser.add_argument("--nodes", default="1000,10000", help="graph sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    sizes = [200] if args.quick else [int(v) for v in args.nodes.split(",")]
    repeats = 2 if args.quick else args.repeats
    if repeats < 1 or min(sizes) < 10:
        parser.error("--repeats must be >= 1 and every --nodes >= 10")
    date, cpu = _dt.date.today().isoformat(), cpu_name()
    lines = []
    for nodes in sizes:
        read_ms, first_ms, next_ms = measure(nodes, repeats)
        lines.append(f"| {date} | {cpu} | {nodes} | {KEYFRAMES} | {read_ms:.1f} | {first_ms:.1f} | {next_ms:.1f} | "
                     f"{(read_ms + next_ms) / 1e3:.1%} |\n")
    print_and_record(args, SECTION, TABLE_HEADER, lines, intro=INTRO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
