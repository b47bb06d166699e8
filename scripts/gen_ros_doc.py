#!/usr/bin/env python3
"""Write the parameter tables of docs/ros.md from the parameters the nodes declare.

docs/ros.md is hand-written except for blocks between ``<!-- BEGIN gen_ros_doc: NAME -->``
and ``<!-- END gen_ros_doc: NAME -->``, which this script owns:

- ``viewseg parameters``: :data:`viewseg_ros.node.PARAMETERS` (the node declares exactly
  these: name, default, description), type from the default, YAML default as in
  config/viewseg.yaml;
- ``sim camera parameters``: the parameters a real ``viewseg_sim_camera`` node declares
  (built in a private rclpy context, never spun), with the descriptions in
  :data:`SIM_CAMERA_DESCRIPTIONS`; a declared parameter without a description is an error.

    python scripts/gen_ros_doc.py            # rewrite the blocks in place
    python scripts/gen_ros_doc.py --check    # exit 1 (and show what differs) if out of date
"""
from __future__ import annotations

import argparse
import difflib
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without `pip install -e .`
DOC = REPO / "docs" / "ros.md"

# rclpy adds these to every node; they are not the node's own interface.
ROS_BUILTIN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})
ROS_TYPES = {bool: "bool", int: "int", float: "double", str: "string"}

SIM_CAMERA_DESCRIPTIONS = {
    "seed": "procedural room (viewseg_core.data.synth) replayed; the same seed is the same room and walk",
    "rate": "frames per second (Hz): one TF, CameraInfo and Image per frame",
    "width": "image width in pixels",
    "height": "image height in pixels",
    "publish_depth": "also publish depth (registered to the image: same frame, size and stamp)",
    "depth_encoding": "16UC1 (millimetres, 0 = no return) or 32FC1 (metres, NaN = no return)",
    "depth_sensor": "pass depth through the depth-camera model (viewseg_core.data.depth_sensor: z^2 noise, mm steps, "
                    "8 m range, holes, missing edges); false = exact depth",
    "render_scale": "render at this fraction of width x height and upsample (bilinear): a camera-sized stream "
                    "at its rate on a CPU (1 = render every pixel)",
    "hfov_deg": "horizontal field of view (degrees) of the pinhole camera",
    "period_s": "seconds for one walk through the room and back",
    "kind": "camera height class: human (1.45-1.65 m) or robot (0.3-0.6 m)",
    "room_type": "room type to generate (empty = the generator's choice for the seed)",
    "fixed_frame": "parent frame of the robot's pose on /tf",
    "base_frame": "the robot's body frame (child of fixed_frame)",
    "camera_frame": "optical frame of the camera (child of base_frame on /tf_static); images' frame_id",
    "depth_baseline_m": "0: depth registered to the image; > 0: depth from a camera of its own this far along the "
                        "colour camera's +x (frame depth_frame on /tf_static, CameraInfo on depth/camera_info)",
    "depth_hfov_deg": "horizontal field of view of that depth camera (0 = hfov_deg)",
    "depth_frame": "optical frame of that depth camera",
    "transport": "raw (Image on image and depth) | compressed (CompressedImage on image/compressed, JPEG, and "
                 "depth/compressedDepth, PNG, as image_transport publishes them)",
    "jpeg_quality": "JPEG quality of transport compressed (image_transport's default: 95)",
    "cameras": "several cameras on the robot: 'name:yaw_deg,...' (e.g. 'front:0,rear:180'; yaw counter-clockwise from "
               "the heading), each publishing <name>/image, <name>/camera_info and <name>/depth with optical frame "
               "<name>_<camera_frame>; empty = one camera on image, camera_info and depth",
    "distortion": "lens distortion: empty = a pinhole; 'k1,k2,p1,p2,k3' (plumb_bob) = raw, distorted frames with "
                  "that CameraInfo d, and p the pinhole of valid pixels (depth warped nearest)",
    "odometry_drift": "empty = the true pose on TF (fixed_frame -> base_frame); 'T,R' = localised like SLAM on "
                      "odometry that drifts T metres and R degrees per metre walked: odom_frame -> base_frame is the "
                      "odometry, fixed_frame -> odom_frame SLAM's correction, renewed every pose_graph_period_s",
    "odom_frame": "odometry frame between fixed_frame and base_frame (with odometry_drift)",
    "pose_graph_period_s": "with odometry_drift: seconds between SLAM corrections, each publishing the optimised "
                           "trajectory (the true base_frame pose once a second) on pose_graph, nav_msgs/Path in "
                           "fixed_frame (0 = never: pure odometry)",
    "lidar_beams": "0 = no LiDAR; > 0 = a spinning LiDAR with this many channels lidar_height_m above the camera, "
                   "one sweep per frame on points (PointCloud2 in lidar_frame, x, y, z, the frame's stamp; 2 cm range "
                   "noise)",
    "lidar_vfov_deg": "the LiDAR's vertical field of view (degrees), its channels spread evenly over it",
    "lidar_hres_deg": "degrees of azimuth between two firings of a channel (a full turn per sweep)",
    "lidar_frame": "the LiDAR's frame (level, REP 103 axes; child of base_frame on /tf_static)",
    "lidar_height_m": "how far above the (first) camera the LiDAR sits",
    "lidar_sweep_s": "0 = each sweep in one instant; > 0 = a sweep takes this long from the frame's stamp, each column "
                     "fired from the robot's pose at its time, with a float32 time field (seconds after the stamp) "
                     "for the node to deskew",
    "walker_lead_s": "0 = a static room; > 0 = a person (a grey cylinder 0.5 m wide, 1.7 m tall, class person) walks "
                     "the robot's walk this many seconds ahead of it, in the images, depth and LiDAR sweeps: something "
                     "that moves; less than period_s",
}


def _markdown_value(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value == "" else f"`{value}`"
    return f"`{value}`"


def _table(rows: list[tuple[str, Any, str]]) -> str:
    lines = ["| parameter | type | default | meaning |", "|---|---|---|---|"]
    for name, default, description in rows:
        kind = ROS_TYPES.get(type(default), type(default).__name__)
        lines.append(f"| `{name}` | {kind} | {_markdown_value(default)} | {description.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def viewseg_parameters() -> str:
    """The node's parameters; those a running node takes (``LIVE_PARAMETERS``) marked "(live)"."""
    from viewseg_ros.node_parameters import LIVE_PARAMETERS, PARAMETERS

    return _table([(name, default, ("(live) " if name in LIVE_PARAMETERS else "") + description)
                   for name, (default, description) in PARAMETERS.items()])


def declared_parameters(node: Any) -> dict[str, Any]:
    """name -> value of every parameter ``node`` declared itself (rclpy's built-ins left out)."""
    return {name: parameter.value for name, parameter in node._parameters.items()
            if name not in ROS_BUILTIN_PARAMETERS}


def sim_camera_declared() -> dict[str, Any]:
    """The parameters (and defaults) a freshly built ``viewseg_sim_camera`` node declares."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    import rclpy
    from rclpy.context import Context

    from viewseg_ros.sim_camera import SimCameraNode

    context = Context()
    rclpy.init(context=context)
    try:
        node = SimCameraNode(context=context)
        try:
            return declared_parameters(node)
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()


def sim_camera_parameters() -> str:
    declared = sim_camera_declared()
    missing = sorted(set(declared) - set(SIM_CAMERA_DESCRIPTIONS))
    if missing:
        raise SystemExit(f"gen_ros_doc: viewseg_sim_camera declares {missing} but SIM_CAMERA_DESCRIPTIONS in "
                         f"{Path(__file__).name} has no description for them: add one")
    return _table([(name, value, SIM_CAMERA_DESCRIPTIONS[name]) for name, value in declared.items()])


BLOCKS = {"viewseg parameters": viewseg_parameters, "sim camera parameters": sim_camera_parameters}


def render(text: str, blocks: dict[str, str]) -> str:
    """``text`` with every generated block replaced; ValueError naming a missing marker."""
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- BEGIN gen_ros_doc: {re.escape(name)} -->\n).*?"
                             rf"(<!-- END gen_ros_doc: {re.escape(name)} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"{DOC}: no '<!-- BEGIN gen_ros_doc: {name} -->' ... "
                             f"'<!-- END gen_ros_doc: {name} -->' block")
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that docs/ros.md is up to date")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    current = args.doc.read_text()
    wanted = render(current, {name: make() for name, make in BLOCKS.items()})
    if current == wanted:
        print(f"{args.doc}: up to date")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), wanted.splitlines(True),
                                                   str(args.doc), "generated"))
        print(f"{args.doc} is out of date: run python scripts/gen_ros_doc.py", file=sys.stderr)
        return 1
    args.doc.write_text(wanted)
    print(f"{args.doc}: parameter tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
