"""A camera-sized test stream: ``views`` distinct posed views, each held for a few frames, at a
real camera's size and rate, then exit with a one-line JSON summary on stdout.

It stands in for a camera driver in delivery tests and load benchmarks (test_node_camera.py,
benchmarks/bench_load.py): what matters there is size, rate, QoS and pose novelty, not the
picture, so each view is a cheap textured image (a fixed noise texture, shifted per view).

View ``i`` puts ``camera_optical`` at x = i * ``spacing`` metres in ``fixed_frame``, turned
``turn_deg`` degrees per view about the vertical, so consecutive views differ by more than
the node's default keyframe thresholds (0.25 m, 15 deg). Every frame publishes, in this
order, ``fixed_frame -> camera_optical`` on ``/tf``, CameraInfo and Image, all with the
frame's stamp. The stream starts once the image, CameraInfo and /tf publishers each have a
matched subscriber (best-effort writers drop what they publish before that, and a volatile
reader never gets it), then waits ``start_delay_s`` more (the readers' side of the match). ``start_stamp_s`` > 0 stamps the stream from that time instead of now (two
runs with the same value replay the same stamps: a clock that jumps back).

Run: ``python -m viewseg_ros.camera_stream --ros-args -p width:=640 -p height:=480 -p rate:=15.0``
with ``FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_images.xml`` for large images.
"""
from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from viewseg_core.cameras import K_from_hfov

PARAMETERS = {
    "views": (40, "distinct views"),
    "first_view": (0, "index of the first view (streams with disjoint ranges show disjoint views)"),
    "frames_per_view": (8, "frames published at each view"),
    "rate": (15.0, "frames per second"),
    "width": (640, "image width"),
    "height": (480, "image height"),
    "hfov_deg": (70.0, "horizontal field of view"),
    "reliability": ("best_effort", "best_effort | reliable (image and camera_info publishers)"),
    "spacing": (0.5, "metres between consecutive views"),
    "turn_deg": (20.0, "degrees turned between consecutive views"),
    "start_stamp_s": (0.0, "stamp of the first frame (0 = now)"),
    "subscriber_timeout_s": (30.0, "seconds to wait for image, camera_info and /tf subscribers to match "
                                    "(0 = do not wait)"),
    "start_delay_s": (1.0, "seconds to wait after the match before the first frame"),
    "fixed_frame": ("map", "parent frame of the camera on /tf"),
    "camera_frame": ("camera_optical", "the images' frame_id"),
}


def view_pose(index: int, spacing: float, turn_deg: float) -> np.ndarray:
    """c2w [4, 4] of view ``index``: optical axis horizontal, turned ``index * turn_deg`` about +z."""
    yaw = math.radians(index * turn_deg)
    forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    right = np.cross(down, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2] = right, down, forward
    c2w[:3, 3] = (index * spacing, 0.0, 1.2)
    return c2w


def view_image(texture: np.ndarray, index: int, height: int, width: int) -> np.ndarray:
    """[height, width, 3] uint8: the texture shifted by a view-dependent offset."""
    return np.ascontiguousarray(np.roll(texture, (7 * index, 13 * index), axis=(0, 1))[:height, :width])


def main(args: list[str] | None = None) -> int:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.conversions import make_camera_info, matrix_to_transform_stamped, numpy_to_image

    rclpy.init(args=args if args is not None else sys.argv)
    node = Node("viewseg_camera_stream")
    try:
        p = {name: node.declare_parameter(name, default).value for name, (default, _) in PARAMETERS.items()}
        if p["reliability"] not in ("best_effort", "reliable"):
            print(f"camera_stream: reliability must be best_effort or reliable, got {p['reliability']!r}",
                  file=sys.stderr)
            return 2
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT if p["reliability"] == "best_effort"
                         else ReliabilityPolicy.RELIABLE)
        image_pub = node.create_publisher(Image, "image", qos)
        info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
        tf_pub = node.create_publisher(TFMessage, "/tf", 100)
        width, height = int(p["width"]), int(p["height"])
        K = K_from_hfov(float(p["hfov_deg"]), width, height)
        texture = np.random.default_rng(0).integers(0, 256, (height + 512, width + 1024, 3), dtype=np.uint8)
        # A best-effort writer drops what it publishes before a reader has matched, and a
        # volatile /tf reader never gets what came before its match; on a loaded machine
        # discovery can take longer than any fixed delay: wait for all three to match.
        waited = time.monotonic()
        timeout = float(p["subscriber_timeout_s"])
        while timeout > 0:
            unmatched = [pub.topic_name for pub in (image_pub, info_pub, tf_pub) if pub.get_subscription_count() == 0]
            if not unmatched:
                break
            if time.monotonic() - waited > timeout:
                print(f"camera_stream: no subscriber on {', '.join(unmatched)} after {timeout:g} s", file=sys.stderr)
                return 3
            time.sleep(0.05)
        waited = time.monotonic() - waited
        time.sleep(float(p["start_delay_s"]))
        period = 1.0 / float(p["rate"])
        clock_start = time.monotonic()
        stamp0 = int(p["start_stamp_s"] * 1e9) or node.get_clock().now().nanoseconds
        published = 0
        first = int(p["first_view"])
        for view in range(first, first + int(p["views"])):
            c2w = view_pose(view, float(p["spacing"]), float(p["turn_deg"]))
            rgb = view_image(texture, view, height, width)
            for _ in range(int(p["frames_per_view"])):
                due = clock_start + published * period
                time.sleep(max(0.0, due - time.monotonic()))
                stamp = stamp0 + int(published * period * 1e9)
                tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(
                    c2w, p["fixed_frame"], p["camera_frame"], stamp)]))
                info_pub.publish(make_camera_info(K, width, height, frame_id=p["camera_frame"], stamp_ns=stamp))
                image_pub.publish(numpy_to_image(rgb, "rgb8", frame_id=p["camera_frame"], stamp_ns=stamp))
                published += 1
        elapsed = time.monotonic() - clock_start
        print(json.dumps({"views": int(p["views"]), "frames": published, "elapsed_s": round(elapsed, 3),
                          "achieved_rate": round(published / elapsed, 2) if elapsed > 0 else None,
                          "first_stamp_ns": stamp0, "waited_for_subscriber_s": round(waited, 3)}), flush=True)
        time.sleep(0.5)  # let reliable readers take the last frames before the writer goes
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


__all__ = ["view_pose", "view_image", "main", "PARAMETERS"]

if __name__ == "__main__":
    sys.exit(main())
