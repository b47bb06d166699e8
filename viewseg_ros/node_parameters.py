"""The viewseg node's parameters: each one's default and meaning, which of them change on a
running node, and the checks every value passes, at start and on a runtime change.

:data:`PARAMETERS` is the source of docs/ros.md's parameter table (``scripts/gen_ros_doc.py``)
and of what the node declares; :data:`LIVE_PARAMETERS` are those ``ros2 param set`` changes
while the node runs (:meth:`viewseg_ros.node.ViewSegNode._on_set_parameters`).
"""
from __future__ import annotations

import math
from typing import Any

from viewseg_core.depth_completion import DEPTH_COMPLETIONS
from viewseg_core.depth_registration import MAX_ACCUMULATE_S, MAX_OCCLUSION_RADIUS
from viewseg_core.rectify import RECTIFICATION_MODES
from viewseg_core.stale_points import MAX_CELL_DEG, STALE_CELL_DEG
from viewseg_ros.camera_input import PER_CAMERA_SETTINGS
from viewseg_ros.executor import DEFAULT_EXECUTOR, EXECUTORS

# name -> (default, description). Numbers are coerced (a YAML "1" for a float is fine).
PARAMETERS: dict[str, tuple[Any, str]] = {
    "image_topic": ("image", "sensor_msgs/Image topic (rgb8/bgr8/rgba8/bgra8; YUV 4:2:2 yuv422/uyvy and "
                             "yuv422_yuy2/yuyv, 8-bit Bayer bayer_*8: converted to RGB as cv_bridge does)"),
    "image_qos.reliability": ("best_effort", "image and depth subscriptions: best_effort (receives from "
                                             "best-effort and reliable cameras) | reliable (reliable cameras only)"),
    "image_qos.depth": (30, "image and depth subscription queue depth (keep last): frames that arrive while "
                            "the node's executor is busy wait here (30: 2 s of a 15 Hz camera)"),
    "depth_topic": ("", "sensor_msgs/Image depth registered to the colour camera (same frame_id and size, as "
                        "aligned_depth_to_color drivers publish; 32FC1 m or 16UC1 mm); empty = RGB only"),
    "image_transport": ("raw", "raw (sensor_msgs/Image on image_topic) | compressed (CompressedImage, JPEG or PNG, "
                               "on <image_topic>/compressed, as image_transport names it)"),
    "depth_transport": ("raw", "raw (Image on depth_topic) | compressedDepth (CompressedImage, PNG, on "
                               "<depth_topic>/compressedDepth)"),
    "depth_camera_info_topic": ("", "CameraInfo of the depth camera when depth is NOT registered to the colour camera "
                                    "(its own frame and size, e.g. a RealSense without align_depth): each keyframe's "
                                    "depth is then registered into the colour camera through TF between the two "
                                    "optical frames; empty = depth is registered already"),
    "depth_sync_tolerance_s": (0.02, "largest stamp difference pairing a depth image with a colour image"),
    "pointcloud_topic": ("", "sensor_msgs/PointCloud2 giving the keyframes' depth instead of depth_topic (a LiDAR, "
                             "or a depth camera's points; x, y, z in any frame TF knows): the cloud nearest each "
                             "image's stamp is moved through TF into the camera (from the cloud's stamp to the "
                             "image's) and z-buffered into the keyframe; one cloud serves every camera; "
                             "empty = none"),
    "depth_completion": ("auto", "auto (columns with a pointcloud_topic, else none) | none | columns: before the "
                                 "model reads the keyframes' depth, fill the rows a sparse sensor skips (a LiDAR's "
                                 "scan lines): per column, between two measurements at most 8 rows apart on one "
                                 "surface, exact on planes, never across a depth edge "
                                 "(viewseg_core/depth_completion.py); the kept depth is not changed"),
    "pointcloud_sync_tolerance_s": (0.1, "largest stamp difference pairing a point cloud with a colour image "
                                         "(a 10 Hz LiDAR's scans are 0.1 s apart)"),
    "pointcloud_accumulate_s": (0.0, "seconds of other point clouds registered into each keyframe besides the one "
                                     "paired with it (each placed through TF at its own time, deskewed): a "
                                     "LiDAR's narrow vertical field then covers more of the camera's view, from "
                                     "where the robot was; 0 = the paired cloud only; at most 8 (TF keeps 10 s); "
                                     "clouds are kept for it up to 4 M points"),
    "pointcloud_drop_stale": (True, "with pointcloud_accumulate_s, leave out the accumulated points the keyframe's "
                                    "paired cloud contradicts: in space its beams passed through (a trail of "
                                    "something that moved) or behind every return around them (a surface seen "
                                    "through a gap from elsewhere); viewseg_core/stale_points.py"),
    "pointcloud_occlusion_radius": (0, "drop the registered point cloud depth that a measurement this many pixels "
                                       "away (at the working size) hides by being nearer (10 cm or 5%): what a LiDAR "
                                       "above or beside the camera sees past the edge of something the camera sees "
                                       "(viewseg_core/depth_registration.py drop_occluded); 0 = keep it; 1-8"),
    "pointcloud_stale_cell_deg": (STALE_CELL_DEG, "the stale-point test's range-image cell in azimuth and "
                                                  "elevation, degrees, in (0, 10]: about the LiDAR's vertical beam "
                                                  "spacing (2 for 16 beams over 30 degrees)"),
    "pointcloud_time_field": ("auto", "per-point time field of the point clouds, for deskewing (each 5 ms slice of a "
                                      "sweep placed with TF at its own time, viewseg_core/lidar_deskew.py): auto (the "
                                      "first of time, t, timestamp, time_stamp the cloud has; none: not deskewed) | a "
                                      "field name | empty = never deskew"),
    "pointcloud_time_scale": (0.0, "seconds per unit of pointcloud_time_field; 0 = by its type (integer: "
                                   "nanoseconds, as Ouster's t; float: seconds, as Velodyne's time, or nanoseconds "
                                   "above 1e12); relative to the cloud's stamp or absolute is told from the values"),
    "camera_info_topic": ("camera_info", "sensor_msgs/CameraInfo topic of the same camera"),
    "cameras": ("", "namespaces of several cameras feeding one keyframe buffer, comma-separated (e.g. /front,/rear; "
                    "a YAML list also works): each camera's image_topic, camera_info_topic, depth_topic and "
                    "depth_camera_info_topic are those relative names inside its namespace, each camera keeps its "
                    "own calibration, and a query renders from the keyframes of any of them; camera.<name>.<setting> "
                    "sets one camera's topics, transports, rectification or stamp offset (<name>: the namespace's "
                    "last part); empty = one camera, the topics as given"),
    "rectification": ("auto", "auto (undistort images whose CameraInfo has distortion, except on an image_rect* "
                              "topic: already rectified) | undistort | rectified (pinhole of CameraInfo.p) | none "
                              "(CameraInfo.k, distortion ignored)"),
    "fixed_frame": ("map", "world frame of keyframe poses and rendering (map or odom)"),
    "checkpoint": ("", "viewseg-model file; empty = the demo checkpoint checkpoints/demo.pt"),
    "device": ("auto", "torch device: auto (cuda when available), cpu, cuda, cuda:1..."),
    "num_threads": (0, "torch CPU threads (0 = torch's default)"),
    "warmup": (True, "run one encode + render before reporting ready"),
    "managed": (False, "a managed (lifecycle) node: start unconfigured and wait for a lifecycle manager "
                       "(nav2_lifecycle_manager, `ros2 lifecycle set`) to configure and activate it; cleanup "
                       "frees the model and keyframes, and configure reads the parameters again; false = "
                       "configure and activate at start"),
    "tf_wait_s": (1.0, "how long an image is held (in a queue, not blocking intake) and a query waits for TF "
                       "at its stamp before giving up"),
    "tf_pending_max": (30, "images held at most while they wait for TF, per camera (older ones are dropped, counted)"),
    "image_stamp_offset_s": (0.0, "seconds from an image's header stamp to the moment it was exposed, at which its pose "
                                  "is looked up: a driver that stamps frames on arrival (many USB cameras) stamps "
                                  "them late by its latency, so give that latency negative (e.g. -0.05); 0 = the "
                                  "stamp is the exposure time (REP 7: drivers should stamp at acquisition)"),
    "clock_jump_s": (1.0, "a stamp on /tf or an image this many seconds before the newest one is a clock that "
                          "jumped back: TF history and keyframe time state are reset"),
    "camera_rate.window_s": (5.0, "diagnostics: window over which images are counted against CameraInfo"),
    "camera_rate.min_ratio": (0.5, "diagnostics: warn when fewer than this share of the camera's frames "
                                   "(counted by its CameraInfo) arrive as images"),
    "diagnostics_period_s": (1.0, "period of /diagnostics"),
    "keyframes.min_translation": (0.25, "metres between keyframe camera centres"),
    "keyframes.min_rotation_deg": (15.0, "degrees between keyframe optical frames"),
    "keyframes.min_interval_s": (0.01, "seconds between admitted keyframes at least (a floor: admission is by "
                                       "pose novelty)"),
    "keyframes.teleport_distance": (1.0, "flag in /diagnostics a camera pose that moved more than this many "
                                         "metres since the previous frame (a TF teleport; 0 = off)"),
    "keyframes.refresh_after_s": (0.0, "re-admit a seen pose when its keyframes are this old (0 = never)"),
    "keyframes.max_keyframes": (64, "keyframes kept at most"),
    "keyframes.max_bytes": (1 << 30, "bytes kept at most: images + cached features"),
    "keyframes.eviction": ("redundant", "redundant | oldest"),
    "keyframes.keep_recent": (16, "the newest keyframes of each camera, evicted only when nothing older is left "
                                  "(the robot's surroundings; 0 = pure coverage)"),
    "keyframes.change_share": (0.02, "a new keyframe with depth (a depth camera or point cloud) drops the older "
                                     "keyframes it shows changed: a surface they show that its depth sees through "
                                     "(a person who walked on), in at least this share of their measured points "
                                     "(0 = never; keyframes without depth are never judged)"),
    "keyframes.change_check_s": (1.0, "a camera standing still (its frames repeat kept poses) has one frame this "
                                      "often checked for a change against the keyframes it repeats, and admitted "
                                      "when it shows one (0 = only new poses are checked)"),
    "keyframes.load_path": ("", "a keyframe folder (~/save_keyframes, or bag2scene's output) to start with; "
                                "its poses must be in fixed_frame (\"\" = start empty)"),
    "keyframes.save_path": ("", "save the keyframes to this folder every keyframes.save_period_s while they change, "
                                "and when the node stops (point keyframes.load_path at it to resume after a "
                                "restart; \"\" = never)"),
    "keyframes.save_period_s": (60.0, "seconds between saves to keyframes.save_path (0 = only when the node stops)"),
    "pose_graph.topic": ("", "nav_msgs/Path of the SLAM system's optimised trajectory (body poses in fixed_frame, "
                             "stamped, e.g. RTAB-Map's mapPath): after a loop closure it re-poses the keyframes "
                             "it covers; empty = keyframes keep the pose TF gave them at admission"),
    "pose_graph.body_frame": ("base_link", "the frame whose poses pose_graph.topic holds"),
    "pose_graph.odom_frame": ("odom", "the odometry frame between fixed_frame and the robot (continuous, never "
                                      "jumps): each keyframe's pose in it is kept for the pose graph"),
    "pose_graph.max_gap_s": (5.0, "a keyframe farther than this (seconds) from every graph node keeps its pose"),
    "keyframes.width": (0, "resize keyframes to this width (0 = the model's trained source size, "
                           "else as received)"),
    "keyframes.height": (0, "resize keyframes to this height (0 = the model's trained source size, "
                            "else as received)"),
    "query.num_sources": (4, "keyframes used per query"),
    "query.selection_grid": (8, "source selection: query pixels sampled per image side"),
    "query.selection_depth_samples": (6, "source selection: depths sampled per pixel"),
    "query.preset": ("auto", "sampling: auto (rgbd for a depth-guided RGB-D checkpoint reading depth_topic, "
                             "else fast) | fast (8+8 samples, fine pass skips empty space) | paper (64+128) | "
                             "rgbd (8 stratified + 4 band samples around the keyframes' measured depth, skipping "
                             "what it accounts for as empty) | rgbd_full (8 + 8 band, nothing skipped) | "
                             "rgbd_fine (rgbd plus a 4-sample fine pass on the rays the measured depth does "
                             "not explain) | "
                             "checkpoint (the samples the model was trained with); see viewseg_core/model/fast.py"),
    "query.num_coarse": (-1, "coarse samples per ray (-1 = the preset's)"),
    "query.num_fine": (-1, "fine samples per ray (-1 = the preset's, 0 = coarse pass only)"),
    "query.skip_weight": (-1.0, "fine-pass occupancy threshold (-1 = the preset's, 0 = evaluate every sample)"),
    "query.field_impl": ("auto", "field implementation: auto (the fused Triton kernel on CUDA when it supports the "
                                 "model, else PyTorch) | fused | reference (PyTorch); env VIEWSEG_FIELD overrides"),
    "query.amp": ("auto", "MLP precision: auto (bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, else float32) "
                          "| off (float32) | bf16 (CUDA: autocast; CPU: a bf16 copy of the field's weights); "
                          "docs/benchmarks.md, \"CPU bf16\""),
    "query.point_budget": (0, "points per field call (0 = from the device: 3 MiB of one [points, views, hidden] "
                              "float32 activation on CPU, 3072 points at 4 views; a share of free GPU memory on "
                              "CUDA); on CPU 12288 renders the rgbd preset in 0.83-0.89x the time for about 100 MB "
                              "more under load, but an RGB model's node drifted +11% in 10 minutes with it "
                              "(docs/benchmarks.md, \"CPU point budget\"); a cancelled or timed-out render stops "
                              "at the next call"),
    "query.max_width": (1280, "largest query width accepted"),
    "query.max_height": (1024, "largest query height accepted"),
    "query.timeout_s": (30.0, "a query estimated to take longer is refused up front; a render that takes "
                              "longer is abandoned (success=false)"),
    "query.max_in_flight": (4, "queries served or waiting at once; more are answered 'busy' at once"),
    "executor": (DEFAULT_EXECUTOR, "submit_once (each ready callback handed to the thread pool once: "
                                "viewseg_ros/executor.py; about half the CPU of rclpy's while a camera streams, "
                                "docs/benchmarks.md 'Load') | rclpy (rclpy's MultiThreadedExecutor as it is: it "
                                "re-submits callbacks still queued in its pool, spending CPU while the pool is busy)"),
    "query.prepared_cache": (2, "keyframe sets whose stacked source views and projected feature maps are kept for "
                                "the next query that picks the same keyframes (0 = none; not counted in keyframes.max_bytes: "
                                "diagnostics prepared_cache says hits and memory)"),
    "query.min_coverage": (0.05, "refuse a query when less than this share of its frustum is seen by the "
                                 "selected keyframes"),
    "query.max_source_depth": (0.0, "a keyframe sees points at most this deep, metres (0 = the model's far "
                                    "plane)"),
    "query.unseen_pixels": ("unknown", "pixels whose rendered surface no selected keyframe sees: unknown (label "
                                      "unknown, depth NaN, confidence 0) | extrapolated (the model's label and depth, "
                                      "confidence 0; for checkpoints with model.unseen_points extrapolate)"),
    "query.min_free_path": (0.0, "depth pixels whose path from the camera to the rendered surface the selected "
                                 "keyframes' depth saw free for less than this share are unknown (depth NaN, left "
                                 "out of ~/points): an object no keyframe measured may stand on that path "
                                 "(0 = off; keyframes without depth see nothing free)"),
    "query.confidence_calibration": ("auto", "map from the confidence score to the probability that the label is "
                                             "right (viewseg confidence --fit): auto (<checkpoint stem>.confidence.json "
                                             "beside the checkpoint, when it exists and was fitted for it) | a file | "
                                             "none (the raw score)"),
    "query.width": (0, "topic mode image width (0 = the keyframes')"),
    "query.height": (0, "topic mode image height (0 = the keyframes')"),
    "query.frame_id": ("viewseg_query_optical", "output frame_id when the request names none"),
    "points.min_confidence": (0.0, "~/points holds only pixels of at least this confidence (a costmap fed from "
                                   "~/points then sees no guesses; 0 = every pixel with a depth)"),
    "points.on_service": (False, "also publish ~/points (PointCloud2) for every answered render_view call "
                                 "(topic-mode queries always publish it)"),
}


UNSEEN_PIXEL_MODES = ("unknown", "extrapolated")

# Parameters a running node takes from `ros2 param set` (or a parameter client); every other one
# is read once at start, and a change to it is refused with that reason instead of being
# accepted and ignored. Each of these is read at use, or rebuilds the one object made from it.
SAMPLING_PARAMETERS = ("query.preset", "query.num_coarse", "query.num_fine", "query.skip_weight",
                       "query.point_budget", "query.field_impl", "query.amp")
SELECTION_PARAMETERS = ("query.num_sources", "query.selection_grid", "query.selection_depth_samples",
                        "query.max_source_depth")
KEYFRAME_RULE_PARAMETERS = ("keyframes.min_translation", "keyframes.min_rotation_deg", "keyframes.min_interval_s",
                            "keyframes.refresh_after_s", "keyframes.max_keyframes", "keyframes.max_bytes",
                            "keyframes.eviction", "keyframes.keep_recent", "keyframes.change_share")
LIVE_PARAMETERS = frozenset(SAMPLING_PARAMETERS + SELECTION_PARAMETERS + KEYFRAME_RULE_PARAMETERS + (
    "query.confidence_calibration", "query.min_coverage", "query.unseen_pixels", "query.min_free_path",
    "query.timeout_s",
    "query.max_width", "query.max_height", "query.width", "query.height", "query.frame_id", "points.on_service",
    "points.min_confidence",
    "keyframes.teleport_distance", "keyframes.change_check_s", "pointcloud_accumulate_s", "pointcloud_drop_stale", "pointcloud_stale_cell_deg",
    "pointcloud_occlusion_radius"))


def coerce(name: str, value: Any) -> Any:
    """``value`` as the type of the parameter's default (a YAML 1 for a double is fine)."""
    default = PARAMETERS[name][0]
    if isinstance(default, bool) and isinstance(value, str):
        # bool("false") is True: a bool that arrives as text (a launch argument, a YAML string)
        # must say which.
        if value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValueError(f"parameter {name}: expected a bool, got {value!r}")
    try:
        return bool(value) if isinstance(default, bool) else type(default)(value)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name}: expected a {type(default).__name__}, got {value!r}") from None


def check_setting(name: str, setting: str, value: Any) -> None:
    """The rules of a camera ``setting`` (:data:`PER_CAMERA_SETTINGS`) for the parameter
    ``name`` that holds it: the node's own (``name == setting``) or ``camera.<name>.<setting>``."""
    modes = {"image_transport": ("raw", "compressed"), "depth_transport": ("raw", "compressedDepth"),
             "rectification": tuple(RECTIFICATION_MODES)}
    if setting in modes and value not in modes[setting]:
        raise ValueError(f"parameter {name} must be one of {' | '.join(modes[setting])}, got {value!r}")
    if setting == "image_stamp_offset_s" and not math.isfinite(value):
        raise ValueError(f"parameter {name} must be a finite number, got {value}")


def validate(values: dict[str, Any]) -> None:
    """ValueError naming the first parameter of ``values`` (every node parameter) that is
    out of range or inconsistent with another; at start and for every runtime change."""
    for setting in PER_CAMERA_SETTINGS:  # the node's own values; a camera's are checked alike
        check_setting(setting, setting, values[setting])
    positive = ("keyframes.max_keyframes", "keyframes.max_bytes", "query.num_sources", "query.max_width",
                "query.max_height", "tf_wait_s", "diagnostics_period_s", "query.timeout_s", "query.max_in_flight",
                "image_qos.depth", "tf_pending_max", "clock_jump_s", "camera_rate.window_s", "pointcloud_sync_tolerance_s")
    for name in positive:
        if not values[name] > 0 and not (name == "tf_wait_s" and values[name] == 0):
            raise ValueError(f"parameter {name} must be positive, got {values[name]}")
    for name in ("keyframes.width", "keyframes.height", "query.width", "query.height", "query.point_budget",
                 "keyframes.save_period_s",
                 "query.max_source_depth", "keyframes.teleport_distance", "query.prepared_cache",
                 "keyframes.change_check_s"):
        if values[name] < 0:
            raise ValueError(f"parameter {name} must be >= 0, got {values[name]}")
    if bool(values["keyframes.width"]) != bool(values["keyframes.height"]):
        raise ValueError("parameters keyframes.width and keyframes.height must both be 0 or both be set")
    if bool(values["query.width"]) != bool(values["query.height"]):
        raise ValueError("parameters query.width and query.height must both be 0 or both be set")
    if not values["fixed_frame"]:
        raise ValueError("parameter fixed_frame must not be empty")
    if values["pose_graph.topic"]:
        for name in ("pose_graph.body_frame", "pose_graph.odom_frame"):
            if not values[name]:
                raise ValueError(f"parameter {name} must not be empty with pose_graph.topic set")
        if values["pose_graph.odom_frame"] == values["fixed_frame"]:
            raise ValueError(f"parameter pose_graph.odom_frame is fixed_frame ({values['fixed_frame']!r}): keyframes "
                             f"posed in the odometry frame move with it, a pose graph has nothing to correct")
        if not values["pose_graph.max_gap_s"] > 0:
            raise ValueError(f"parameter pose_graph.max_gap_s must be positive, got {values['pose_graph.max_gap_s']}")
    if values["executor"] not in EXECUTORS:
        raise ValueError(f"parameter executor must be one of {' | '.join(EXECUTORS)}, got {values['executor']!r}")
    if values["image_qos.reliability"] not in ("best_effort", "reliable"):
        raise ValueError(f"parameter image_qos.reliability must be best_effort or reliable, "
                         f"got {values['image_qos.reliability']!r}")
    if values["depth_completion"] not in ("auto", *DEPTH_COMPLETIONS):
        raise ValueError(f"parameter depth_completion must be one of {' | '.join(('auto', *DEPTH_COMPLETIONS))}, "
                         f"got {values['depth_completion']!r}")
    if values["query.unseen_pixels"] not in UNSEEN_PIXEL_MODES:
        raise ValueError(f"parameter query.unseen_pixels must be one of {UNSEEN_PIXEL_MODES}, "
                         f"got {values['query.unseen_pixels']!r}")
    if not 0.0 <= values["pointcloud_accumulate_s"] <= MAX_ACCUMULATE_S:
        raise ValueError(f"parameter pointcloud_accumulate_s must be in [0, {MAX_ACCUMULATE_S:g}] s (TF keeps 10 s), "
                         f"got {values['pointcloud_accumulate_s']}")
    if not 0 <= values["pointcloud_occlusion_radius"] <= MAX_OCCLUSION_RADIUS:
        raise ValueError(f"parameter pointcloud_occlusion_radius must be 0-{MAX_OCCLUSION_RADIUS} pixels, "
                         f"got {values['pointcloud_occlusion_radius']}")
    if not 0.0 < values["pointcloud_stale_cell_deg"] <= MAX_CELL_DEG:
        raise ValueError(f"parameter pointcloud_stale_cell_deg must be in (0, {MAX_CELL_DEG:g}] degrees, "
                         f"got {values['pointcloud_stale_cell_deg']}")
    if not values["pointcloud_time_scale"] >= 0 or not math.isfinite(values["pointcloud_time_scale"]):
        raise ValueError(f"parameter pointcloud_time_scale must be a finite number >= 0, "
                         f"got {values['pointcloud_time_scale']}")
    for name in ("query.min_coverage", "camera_rate.min_ratio", "points.min_confidence", "keyframes.change_share",
                 "query.min_free_path"):
        if not 0.0 <= values[name] <= 1.0:
            raise ValueError(f"parameter {name} must be in [0, 1], got {values[name]}")


__all__ = ["PARAMETERS", "MAX_ACCUMULATE_S", "UNSEEN_PIXEL_MODES", "SAMPLING_PARAMETERS", "SELECTION_PARAMETERS",
           "KEYFRAME_RULE_PARAMETERS", "LIVE_PARAMETERS", "coerce", "check_setting", "validate"]
