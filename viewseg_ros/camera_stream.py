"""A camera-sized test stream: ``views`` distinct posed views, each held for a few frames, at a
real camera's size and rate, then exit with a one-line JSON summary on stdout.

It stands in for a camera driver in delivery tests and load benchmarks (test_node_reliability.py, test_node_depth.py,
benchmarks/bench_load.py): what matters there is size, rate, QoS and pose novelty, not the
picture, so each view is a cheap textured image (a fixed noise texture, shifted per view).

View ``i`` puts ``camera_optical`` at x = i * ``spacing`` metres in ``fixed_frame``, turned
``turn_deg`` degrees per view about the vertical, so consecutive views differ by more than
the node's default keyframe thresholds (0.25 m, 15 deg). Every frame publishes, in this
order, ``fixed_frame -> camera_optical`` on ``/tf``, CameraInfo and Image (and, with
``depth_topic``, a 32FC1 depth image registered to it: the load an RGB-D camera's aligned
depth puts on the node), all with the frame's stamp. The depth is of one static world seen
from every view (:func:`corridor_depth`: a floor and a ceiling, no return beyond a range), so
the node's scene-change check finds nothing changed, as in a room nobody walks through. A
wall at the same depth ahead of every view would not be one world: each new keyframe would
see through the walls of the ones before it, and the node would rightly drop them. The
stream starts once the image, CameraInfo and /tf publishers (and the depth one) each have a
matched subscriber (best-effort writers drop what they publish before that, and a volatile
reader never gets it), waits ``start_delay_s`` more, then repeats the first view (lead-in
frames, not counted as stream frames) until every reliable reader has acknowledged one: a
reader drops what arrives before it has matched the writer in turn. The views follow at the
rate. ``start_stamp_s`` > 0 stamps the first lead-in frame with that time instead of now
(the summary's ``first_stamp_ns``: a run with the same value replays stamps from there, a
clock that jumps back). At the end it waits for reliable readers to acknowledge every frame.

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

CAMERA_HEIGHT_M = 1.2  # every view's camera centre above the floor (view_pose)

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
    "lead_in_timeout_s": (30.0, "seconds to wait for reliable readers to acknowledge the lead-in frames"),
    "ack_timeout_s": (5.0, "seconds to wait at the end for reliable readers to acknowledge every frame"),
    "fixed_frame": ("map", "parent frame of the camera on /tf"),
    "camera_frame": ("camera_optical", "the images' frame_id"),
    "depth_topic": ("", "also publish 32FC1 depth registered to the colour image on this topic, same stamp and "
                        "frame_id (empty = none)"),
    "ceiling_m": (2.5, "height of the ceiling the depth images show (the floor is at 0, the camera at "
                       f"{CAMERA_HEIGHT_M:g} m)"),
    "depth_range_m": (8.0, "depth images have no return (NaN) beyond this planar depth"),
}


def corridor_depth(K: np.ndarray, height: int, width: int, camera_height: float = CAMERA_HEIGHT_M,
                   ceiling: float = 2.5, max_range: float = 8.0) -> np.ndarray:
    """[height, width] float32 planar depth of an endless floor (z = 0) and ceiling (z =
    ``ceiling``) seen by a camera ``camera_height`` metres up with its optical axis horizontal
    (every :func:`view_pose`), NaN (no return) beyond ``max_range`` and at the horizon row.

    A pixel row v below the principal point meets the floor where its ray has dropped
    ``camera_height``: z = camera_height * fy / (v - cy); above it, the ceiling at
    z = (ceiling - camera_height) * fy / (cy - v). The image does not depend on where the
    camera stands or which way it turns, and every measured point lies on the floor or the
    ceiling, where any other view's ray to it ends too: one static world from every view.
    """
    if not 0.0 < camera_height < ceiling or not max_range > 0.0:
        raise ValueError(f"corridor_depth: need 0 < camera_height < ceiling and max_range > 0, got "
                         f"{camera_height}, {ceiling}, {max_range}")
    fy, cy = float(K[1, 1]), float(K[1, 2])
    below = np.arange(height, dtype=np.float64) - cy   # row r's centre is v = r; + = down (optical y)
    with np.errstate(divide="ignore"):
        rows = np.where(below > 0, camera_height * fy / below, (ceiling - camera_height) * fy / -below)
    rows = np.where(np.isfinite(rows) & (rows > 0) & (rows <= max_range), rows, np.nan)
    return np.ascontiguousarray(np.broadcast_to(rows[:, None], (height, width)), dtype=np.float32)


def view_pose(index: int, spacing: float, turn_deg: float) -> np.ndarray:
    """c2w [4, 4] of view ``index``: optical axis horizontal, turned ``index * turn_deg`` about +z."""
    yaw = math.radians(index * turn_deg)
    forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    right = np.cross(down, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2] = right, down, forward
    c2w[:3, 3] = (index * spacing, 0.0, CAMERA_HEIGHT_M)
    return c2w


def view_image(texture: np.ndarray, index: int, height: int, width: int) -> np.ndarray:
    """[height, width, 3] uint8: the texture shifted by a view-dependent offset."""
    return np.ascontiguousarray(np.roll(texture, (7 * index, 13 * index), axis=(0, 1))[:height, :width])


def main(args: list[str] | None = None) -> int:
    import rclpy
    from rclpy.duration import Duration
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
        depth_pub = node.create_publisher(Image, p["depth_topic"], qos) if p["depth_topic"] else None
        publishers = (image_pub, info_pub, tf_pub) + ((depth_pub,) if depth_pub is not None else ())
        width, height = int(p["width"]), int(p["height"])
        K = K_from_hfov(float(p["hfov_deg"]), width, height)
        try:
            depth = corridor_depth(K, height, width, ceiling=float(p["ceiling_m"]),
                                   max_range=float(p["depth_range_m"]))
        except ValueError as error:
            print(f"camera_stream: {error}", file=sys.stderr)
            return 2
        texture = np.random.default_rng(0).integers(0, 256, (height + 512, width + 1024, 3), dtype=np.uint8)
        # A best-effort writer drops what it publishes before a reader has matched, and a
        # volatile /tf reader never gets what came before its match; on a loaded machine
        # discovery can take longer than any fixed delay: wait for all three to match.
        waited = time.monotonic()
        timeout = float(p["subscriber_timeout_s"])
        while timeout > 0:
            unmatched = [pub.topic_name for pub in publishers if pub.get_subscription_count() == 0]
            if not unmatched:
                break
            if time.monotonic() - waited > timeout:
                print(f"camera_stream: no subscriber on {', '.join(unmatched)} after {timeout:g} s", file=sys.stderr)
                return 3
            time.sleep(0.05)
        waited = time.monotonic() - waited
        time.sleep(float(p["start_delay_s"]))
        period = 1.0 / float(p["rate"])
        clock_origin = clock_start = time.monotonic()
        stamp0 = int(p["start_stamp_s"] * 1e9) or node.get_clock().now().nanoseconds
        sent = 0

        def send(c2w: np.ndarray, rgb: np.ndarray) -> None:
            nonlocal sent
            due = clock_start + sent * period
            time.sleep(max(0.0, due - time.monotonic()))
            stamp = stamp0 + int((due - clock_origin) * 1e9)  # stamps follow the schedule
            tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(
                c2w, p["fixed_frame"], p["camera_frame"], stamp)]))
            info_pub.publish(make_camera_info(K, width, height, frame_id=p["camera_frame"], stamp_ns=stamp))
            image_pub.publish(numpy_to_image(rgb, "rgb8", frame_id=p["camera_frame"], stamp_ns=stamp))
            if depth_pub is not None:
                depth_pub.publish(numpy_to_image(depth, "32FC1", frame_id=p["camera_frame"], stamp_ns=stamp))
            sent += 1

        first = int(p["first_view"])
        # Lead-in: the writer matched the readers, but a reader ignores what arrives before it
        # has matched the writer in turn, and a volatile reader does not ask for it afterwards.
        # A reliable reader acknowledges only once it has matched: repeat the first view until
        # every reliable reader (/tf always) has acknowledged it. Its frames show the first
        # view again, so they add no view.
        lead_in_deadline = time.monotonic() + float(p["lead_in_timeout_s"])
        first_pose = view_pose(first, float(p["spacing"]), float(p["turn_deg"]))
        first_rgb = view_image(texture, first, height, width)
        while time.monotonic() < lead_in_deadline:
            send(first_pose, first_rgb)
            if all([pub.wait_for_all_acked(Duration(seconds=period)) for pub in publishers]):
                break
        else:
            print(f"camera_stream: readers did not acknowledge the lead-in frames in {p['lead_in_timeout_s']:g} s",
                  file=sys.stderr)
            return 3
        lead_in = sent
        # The acknowledgement wait put the schedule behind: restart it now rather than publish
        # the missed frames in a burst (a burst overflows a reader's queue, as a camera never does).
        stream_start = time.monotonic()
        clock_start = stream_start - sent * period
        published = 0
        for view in range(first, first + int(p["views"])):
            c2w = view_pose(view, float(p["spacing"]), float(p["turn_deg"]))
            rgb = view_image(texture, view, height, width)
            for _ in range(int(p["frames_per_view"])):
                send(c2w, rgb)
                published += 1
        elapsed = time.monotonic() - stream_start
        # A reliable sample lost in transport is sent again after the reader's NACK: wait until
        # every reliable reader has acknowledged all of them (/tf always; the images when
        # reliable), or the last frames die with this process. A fixed 0.5 s lost some under load.
        acked = all([pub.wait_for_all_acked(Duration(seconds=float(p["ack_timeout_s"]))) for pub in publishers])
        time.sleep(0.5)  # best-effort readers: nothing to acknowledge, but give them the last frames
        print(json.dumps({"views": int(p["views"]), "frames": published, "elapsed_s": round(elapsed, 3),
                          "achieved_rate": round(published / elapsed, 2) if elapsed > 0 else None,
                          "first_stamp_ns": stamp0, "waited_for_subscriber_s": round(waited, 3), "lead_in_frames": lead_in,
                          "all_acked": acked}), flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


__all__ = ["view_pose", "view_image", "main", "PARAMETERS"]

if __name__ == "__main__":
    sys.exit(main())
