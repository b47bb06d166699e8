"""A simulated robot camera: replays a procedural synthetic room as Image, CameraInfo and TF.

The room is the project's procedural scene for ``seed`` (:mod:`viewseg_core.data.synth`, the
generator the models train on) and the camera walks the generator's own collision-free
trajectory through it (:func:`viewseg_core.data.synth.trajectory.trajectory`), forth and
back, once per ``period_s``. Scene and motion are pure functions of the parameters
(:class:`SimWorld`), so a test or the demo client rebuilds the ground truth (labels, planar
depth) for any pose it asks the node about.

With ``publish_depth`` (default) it also publishes ``depth``: planar depth registered to
the colour image (same frame, size and stamp; 16UC1 millimetres by default, 0 = no return),
through the depth-camera model of :mod:`viewseg_core.data.depth_sensor` (noise growing with
z^2, millimetre steps, no return beyond 8 m, holes, missing edges; ``depth_sensor:=false``
for clean depth), seeded by ``seed`` and the frame number.

Frames (REP 103/105): ``map -> base_link`` is the robot's planar pose (x, y, heading along
the walk's gaze), published on ``/tf`` with each image's stamp; ``base_link ->
camera_optical`` is static on ``/tf_static``: the camera at the walk's median height and
pitch, OpenCV optical axes. Images are rgb8 with ``header.frame_id = camera_optical``;
CameraInfo carries the pinhole K of ``hfov_deg`` and no distortion.

With ``depth_baseline_m`` > 0 the depth is not registered to the image: it comes from a
depth camera of its own (optical frame ``depth_frame``, that far along the colour camera's +x
on ``/tf_static``, field of view ``depth_hfov_deg``, CameraInfo on ``depth/camera_info``), as
a RealSense publishes without ``align_depth``.

With ``transport: compressed`` it publishes image_transport's topics instead of the raw ones:
``image/compressed`` (JPEG at ``jpeg_quality``) and ``depth/compressedDepth`` (PNG, 16UC1).

With ``distortion`` (plumb_bob coefficients "k1,k2,p1,p2,k3", e.g. "-0.3,0.1,0,0,0" for a
wide-angle webcam) the camera is a raw, distorted one instead: K of ``hfov_deg`` with those
coefficients, and CameraInfo ``p`` the pinhole that keeps only valid pixels (OpenCV's optimal
new camera matrix at alpha 0, as camera calibration publishes). Each frame is rendered as a
pinhole wide enough to cover the whole raw image and warped by the lens model
(:func:`viewseg_core.rectify.distortion_maps`; depth nearest, so planar depth stays exact).

With ``cameras`` ("front:0,rear:180": name and yaw in degrees, counter-clockwise from the
robot's heading) the robot carries several such cameras at the same height and pitch: each
publishes ``<name>/image``, ``<name>/camera_info`` and ``<name>/depth`` (and the rest above)
with optical frame ``<name>_<camera_frame>``, as identical drivers launched in namespaces do.

With ``odometry_drift`` ("T,R": T metres and R degrees of error per metre travelled) the robot
localises like a SLAM system on drifting odometry: ``odom -> base_link`` is the odometry (the
true pose seen through a drift that grows with the distance walked), and ``map -> odom`` is
SLAM's correction, which it renews every ``pose_graph_period_s`` seconds (0 = never: pure
odometry). At each renewal it also publishes its optimised trajectory on ``pose_graph``
(nav_msgs/Path in ``fixed_frame``): the true ``base_frame`` pose once a second since the
start, as RTAB-Map's ``mapPath`` does after a loop closure. Between renewals, TF's ``map``
pose of the robot drifts away from the truth by the drift walked since the last one, and the
keyframes a node admitted then are off by it until the graph re-poses them.

With ``lidar_beams`` > 0 the robot also carries a spinning LiDAR ``lidar_height_m`` above the
camera (frame ``lidar_frame``, level, REP 103 axes, on ``/tf_static`` from ``base_frame``) and
publishes one sweep per frame on ``points`` (sensor_msgs/PointCloud2, x, y, z, the frame's
stamp): ``lidar_beams`` channels over ``lidar_vfov_deg``, one firing every ``lidar_hres_deg``,
2 cm of range noise (:mod:`viewseg_core.data.synth.lidar`). With ``lidar_sweep_s`` > 0 a sweep
takes that long from the frame's stamp, each column fired from the robot's pose at its time, and
the cloud carries each point's time (a float32 ``time`` field, seconds after the stamp, as a
Velodyne driver's): what a node must deskew.

With ``walker_lead_s`` > 0 a person (a grey cylinder 0.5 m wide and 1.7 m tall, class
"person") walks the robot's walk that many seconds ahead of it, in the images, the depth and
the LiDAR's sweeps alike: something that moves, for what keyframes and accumulated sweeps
make of it (``SimWorld.scene_at``). Where the walk turns back, the person walks back through
the robot: for about twice the lead, around each turn, it passes close to or over the camera
(scripts/lidar_depth_error.py leaves such keyframes out).

Run: ``python -m viewseg_ros.sim_camera --ros-args -p seed:=0 -p rate:=5.0 -p width:=160 -p height:=120``
(or the console script ``viewseg_sim_camera``).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from viewseg_core.cameras import K_from_hfov
from viewseg_core.data.synth.generate import SynthConfig, make_scene
from viewseg_core.classes import CLASS_NAMES
from viewseg_core.data.synth.scene import CYLINDER, PLAIN, Scene
from viewseg_core.data.synth.trajectory import TrajectoryConfig, free_cells, look_c2w, trajectory

WALK_POSES = 60  # poses of the generator's walk; the camera interpolates between them
GRAPH_NODES_MAX = 3600  # the simulated SLAM keeps this many trajectory nodes (an hour at one a second)
WALKER_RADIUS_M = 0.25  # the walking person of SimWorld.walker_lead_s: a cylinder this wide ...
WALKER_HEIGHT_M = 1.7   # ... and this tall
LIDAR_STREAM = 1000     # the LiDAR's range noise: its own random stream per frame, beside the depth camera's


def planar_pose(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """[4, 4] pose of a body at (x, y, z) turned ``yaw`` radians about +z."""
    c, s = math.cos(yaw), math.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = (x, y, z)
    return pose


def lidar_mount(camera_mount: np.ndarray, height_m: float) -> np.ndarray:
    """T_base_link_lidar of the simulated LiDAR: level (REP 103 axes, like base_link's),
    ``height_m`` above the camera mounted at ``camera_mount``."""
    mount = np.eye(4)
    mount[:3, 3] = camera_mount[:3, 3] + (0.0, 0.0, float(height_m))
    return mount


@dataclass
class SimWorld:
    """The simulated room and the robot's motion through it.

    Attributes:
        scene: the procedural room (world = ``map``: z up, floor at z = 0).
        xy: [N, 2] the walk's floor positions; yaw: [N] its headings (unwrapped, radians).
        mount: [4, 4] T_base_link_camera_optical (static).
        period_s: seconds for one walk forth and back.
        walker_lead_s: > 0 puts a person in the room who walks the robot's walk this many
            seconds ahead of it (:meth:`scene_at`); 0 = the room is static.
    """

    scene: Scene
    xy: np.ndarray
    yaw: np.ndarray
    mount: np.ndarray
    period_s: float
    walker_lead_s: float = 0.0

    @classmethod
    def create(cls, seed: int, kind: str = "human", period_s: float = 30.0, room_type: str | None = None
               ) -> "SimWorld":
        """Room ``seed`` (a layout the generator can walk; it redraws one that it cannot) and a walk
        of ``kind`` "robot" (0.3-0.6 m) or "human" (1.45-1.65 m height)."""
        scene, _ = make_scene(int(seed), SynthConfig(views=2, room_type=room_type or None))
        poses = trajectory(scene, WALK_POSES, kind, np.random.default_rng([int(seed), 0x51A]))
        forward = np.stack([p[:3, 2] for p in poses])
        yaw = np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))
        height = float(np.median([p[2, 3] for p in poses]))
        pitch = float(np.median(np.arcsin(np.clip(forward[:, 2], -1.0, 1.0))))
        mount = look_c2w([0.0, 0.0, height], 0.0, pitch)  # the camera in base_link (yaw 0 = +x)
        return cls(scene, np.stack([p[:2, 3] for p in poses]), yaw, mount, float(period_s))

    def walker_xy(self, t: float) -> np.ndarray | None:
        """[2] where the walking person stands at ``t`` seconds (None: no walker)."""
        return self.base_pose(t + self.walker_lead_s)[:2, 3] if self.walker_lead_s > 0 else None

    def scene_at(self, t: float) -> Scene:
        """The room at ``t`` seconds: ``scene``, with the walker (a "person" cylinder of
        WALKER_RADIUS_M and WALKER_HEIGHT_M, plain grey) where it stands then."""
        where = self.walker_xy(t)
        if where is None:
            return self.scene
        scene = self.scene
        material = len(scene.mat_color)
        centre = np.array([[where[0], where[1], WALKER_HEIGHT_M / 2]])
        half = np.array([[WALKER_RADIUS_M, WALKER_RADIUS_M, WALKER_HEIGHT_M / 2]])

        def grown(array: np.ndarray, row) -> np.ndarray:
            return np.concatenate([array, np.asarray(row, dtype=array.dtype).reshape((1,) + array.shape[1:])])

        return replace(
            scene, kind=grown(scene.kind, CYLINDER), center=grown(scene.center, centre), half=grown(scene.half, half),
            yaw=grown(scene.yaw, 0.0), label=grown(scene.label, CLASS_NAMES.index("person")),
            material=grown(scene.material, material), mat_color=grown(scene.mat_color, [0.35, 0.3, 0.3]),
            mat_color2=grown(scene.mat_color2, [0.35, 0.3, 0.3]), mat_texture=grown(scene.mat_texture, PLAIN),
            mat_scale=grown(scene.mat_scale, 1.0), mat_emissive=grown(scene.mat_emissive, 0.0))

    def base_pose(self, t: float) -> np.ndarray:
        """T_map_base_link at ``t`` seconds: along the walk in the first half period, back in the second."""
        phase = (t / self.period_s) % 1.0
        s = (2.0 * phase if phase < 0.5 else 2.0 - 2.0 * phase) * (len(self.xy) - 1)
        i = min(int(s), len(self.xy) - 2)
        a = s - i
        x, y = (1.0 - a) * self.xy[i] + a * self.xy[i + 1]
        return planar_pose(x, y, (1.0 - a) * self.yaw[i] + a * self.yaw[i + 1])

    def distance(self, t: float) -> float:
        """Metres walked by ``t`` seconds (forth and back, period after period)."""
        steps = np.linalg.norm(np.diff(self.xy, axis=0), axis=1)
        along = np.concatenate([[0.0], np.cumsum(steps)])
        periods, phase = divmod(max(t, 0.0) / self.period_s, 1.0)
        s = (2.0 * phase if phase < 0.5 else 2.0 - 2.0 * phase) * (len(self.xy) - 1)
        i = min(int(s), len(self.xy) - 2)
        here = along[i] + (s - i) * steps[i]
        return float(periods * 2.0 * along[-1] + (here if phase < 0.5 else 2.0 * along[-1] - here))

    def odometry_drift(self, t: float, metres_per_m: float, degrees_per_m: float) -> np.ndarray:
        """T_map_odom that makes the odometry's pose wrong by the drift walked by ``t``: a
        translation of ``metres_per_m`` per metre (along the map's (1, 1) diagonal) and a turn
        about z of ``degrees_per_m`` per metre. Odometry reports ``drift^-1 @ base_pose(t)``."""
        d = self.distance(t)
        step = metres_per_m * d / math.sqrt(2.0)
        return planar_pose(step, step, math.radians(degrees_per_m * d))

    def camera_pose(self, t: float) -> np.ndarray:
        """c2w of ``camera_optical`` in ``map`` at ``t`` seconds."""
        return self.base_pose(t) @ self.mount

    def turned_mount(self, yaw_deg: float) -> np.ndarray:
        """T_base_link_camera_optical of a camera ``yaw_deg`` counter-clockwise from the heading."""
        return planar_pose(0.0, 0.0, math.radians(yaw_deg)) @ self.mount

    def _median_depth(self, c2w: np.ndarray) -> float:
        from viewseg_core.cameras import K_from_hfov
        from viewseg_core.data.synth.render import render

        depth = render(self.scene, K_from_hfov(60.0, 16, 12), c2w, 12, 16).depth
        finite = depth[np.isfinite(depth)]
        return float(np.median(finite)) if finite.size else 0.0

    def unseen_poses(self, count: int, yaw_deg: float = 0.0) -> list[np.ndarray]:
        """``count`` camera poses the walk never takes: up to 0.3 m beside it (on free floor) and
        turned 10-30 degrees away from where the camera looked there, spread along the walk,
        preferring poses whose view has a median depth of at least 1 m. ``yaw_deg`` turns every
        pose further (180: looking back along the walk, where a forward camera never looked)."""
        mount = self.turned_mount(yaw_deg)
        free, centres = free_cells(self.scene, TrajectoryConfig())
        free_xy = centres[free]
        poses = []
        for i in range(count):
            base = self.base_pose(0.5 * self.period_s * (i + 0.5) / count)
            sign = 1.0 if i % 2 else -1.0
            turn = sign * math.radians(20.0 + 10.0 * (i % 3))
            # The first candidate on free floor that looks into the room (median depth >= 1 m)
            # rather than at a nearby surface no source view sees; else the deepest-looking one.
            best, best_depth = base, -1.0
            for side in (0.3, -0.3, 0.15, -0.15, 0.0):
                for t in (turn, 0.5 * turn, -turn, -0.5 * turn):
                    moved = base @ planar_pose(0.0, sign * side, t)
                    if np.min(np.linalg.norm(free_xy - moved[:2, 3], axis=1)) > 0.1:
                        continue
                    depth = self._median_depth(moved @ mount)
                    if depth > best_depth:
                        best, best_depth = moved, depth
                    if depth >= 1.0:
                        break
                if best_depth >= 1.0:
                    break
            chosen = best
            poses.append((chosen if chosen is not None else base) @ mount)
        return poses


# --------------------------------------------------------------------------- the node
@dataclass
class SimRig:
    """One camera on the simulated robot: T_base_link_camera, its optical frames and publishers."""

    name: str
    mount: np.ndarray
    frame: str
    depth_frame: str
    image_pub: Any
    info_pub: Any
    depth_pub: Any = None
    depth_info_pub: Any = None


def parse_cameras(text: str) -> list[tuple[str, float]]:
    """The ``cameras`` parameter: "" (one camera, no namespace) or "name:yaw_deg,..." -> [(name, yaw)]."""
    if not text.strip():
        return [("", 0.0)]
    cameras = []
    for item in text.split(","):
        name, _, yaw = item.strip().partition(":")
        try:
            cameras.append((name.strip(), float(yaw or 0.0)))
        except ValueError:
            raise ValueError(f"viewseg_sim_camera: cameras takes 'name:yaw_deg,...', got {item.strip()!r}") from None
        if not name.strip() or "/" in name:
            raise ValueError(f"viewseg_sim_camera: camera name {name.strip()!r} in {text!r} must be a plain name")
    if len({name for name, _ in cameras}) != len(cameras):
        raise ValueError(f"viewseg_sim_camera: a camera name repeats in {text!r}")
    return cameras


def parse_distortion(text: str) -> np.ndarray | None:
    """The ``distortion`` parameter: "" (a pinhole) or five plumb_bob coefficients "k1,k2,p1,p2,k3"."""
    if not text.strip():
        return None
    try:
        d = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        d = np.array([])
    if d.size != 5 or not np.all(np.isfinite(d)):
        raise ValueError(f"viewseg_sim_camera: distortion must be five plumb_bob coefficients 'k1,k2,p1,p2,k3', "
                         f"got {text!r}")
    return d if np.any(d) else None


def parse_drift(text: str) -> tuple[float, float] | None:
    """The ``odometry_drift`` parameter: "" (none) or "T,R" (metres and degrees per metre)."""
    if not text.strip():
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"viewseg_sim_camera: odometry_drift must be 'metres_per_m,degrees_per_m' (both >= 0), "
                         f"got {text!r}")
    return values[0], values[1]


def _make_node_class():
    from nav_msgs.msg import Path as PathMessage
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    import cv2

    from viewseg_core.cameras import resize_intrinsics
    from viewseg_core.data.depth_sensor import DepthSensorConfig, apply_sensor
    from viewseg_core.data.synth.lidar import LidarConfig, lidar_sweep
    from viewseg_core.data.synth.render import render
    from viewseg_core.rectify import distortion_maps
    from viewseg_ros.conversions import (make_camera_info, make_xyz_cloud, matrix_to_pose_stamped,
                                         matrix_to_transform_stamped, numpy_to_compressed_depth,
                                         numpy_to_compressed_image, numpy_to_image)

    class SimCameraNode(Node):
        """Publishes ``image``, ``camera_info``, ``/tf`` and ``/tf_static`` (see the module docstring)."""

        def __init__(self, **kwargs):
            super().__init__("viewseg_sim_camera", **kwargs)
            p = {name: self.declare_parameter(name, default).value for name, default in (
                ("seed", 0), ("rate", 5.0), ("width", 160), ("height", 120), ("render_scale", 1.0), ("hfov_deg", 70.0),
                ("period_s", 30.0), ("kind", "human"), ("room_type", ""), ("fixed_frame", "map"),
                ("publish_depth", True), ("depth_encoding", "16UC1"), ("depth_sensor", True),
                ("base_frame", "base_link"), ("camera_frame", "camera_optical"), ("distortion", ""),
                ("depth_baseline_m", 0.0), ("depth_hfov_deg", 0.0), ("depth_frame", "camera_depth_optical"),
                ("transport", "raw"), ("jpeg_quality", 95), ("cameras", ""), ("odometry_drift", ""),
                ("odom_frame", "odom"), ("pose_graph_period_s", 10.0), ("lidar_beams", 0), ("lidar_vfov_deg", 30.0),
                ("lidar_hres_deg", 1.0), ("lidar_frame", "lidar"), ("lidar_height_m", 0.15), ("lidar_sweep_s", 0.0),
                ("walker_lead_s", 0.0))}
            if not (p["rate"] > 0 and p["width"] > 0 and p["height"] > 0 and p["period_s"] > 0):
                raise ValueError(f"viewseg_sim_camera: rate, width, height and period_s must be positive: {p}")
            if not 0 < p["render_scale"] <= 1:
                raise ValueError(f"viewseg_sim_camera: render_scale must be in (0, 1], got {p['render_scale']}")
            if p["depth_encoding"] not in ("16UC1", "32FC1"):
                raise ValueError(f"viewseg_sim_camera: depth_encoding must be 16UC1 or 32FC1, got {p['depth_encoding']!r}")
            self.params = p
            # The ray caster costs ~1 s per 640x480 frame on a 2-core CPU: render smaller and
            # upsample, so that the camera keeps a real camera's size AND its rate.
            self.render_hw = (max(1, round(p["height"] * p["render_scale"])),
                              max(1, round(p["width"] * p["render_scale"])))
            if not 0.0 <= p["walker_lead_s"] < p["period_s"]:
                raise ValueError(f"viewseg_sim_camera: walker_lead_s must be in [0, period_s), got {p['walker_lead_s']}")
            self.world = replace(SimWorld.create(int(p["seed"]), p["kind"], float(p["period_s"]), p["room_type"]),
                                 walker_lead_s=float(p["walker_lead_s"]))
            self.scene, self.mount = self.world.scene, self.world.mount
            self.K = K_from_hfov(float(p["hfov_deg"]), int(p["width"]), int(p["height"]))
            self.d = parse_distortion(p["distortion"])
            # The pinhole each frame is rendered with (K itself, or one covering the raw image) and
            # CameraInfo's p; with distortion, the maps from the render to the raw image.
            self.render_K, self.P_K, self.lens_maps = self.K, self.K, None
            if self.d is not None:
                size_wh = (int(p["width"]), int(p["height"]))
                self.render_K = cv2.getOptimalNewCameraMatrix(self.K, self.d, size_wh, 1.0)[0]
                self.P_K = cv2.getOptimalNewCameraMatrix(self.K, self.d, size_wh, 0.0)[0]
                self.lens_maps = distortion_maps(self.K, self.d, "plumb_bob", *size_wh, self.render_K)
            if p["transport"] not in ("raw", "compressed"):
                raise ValueError(f"viewseg_sim_camera: transport must be raw or compressed, got {p['transport']!r}")
            # transport compressed: image_transport's topics and messages (JPEG colour, PNG depth) instead
            self.compressed = p["transport"] == "compressed"
            # An unaligned depth camera (depth_baseline_m > 0): its own optical frame, beside the
            # colour one on /tf_static, its own K (depth_hfov_deg) and CameraInfo.
            self.unaligned = bool(p["publish_depth"]) and float(p["depth_baseline_m"]) > 0
            self.depth_K = K_from_hfov(float(p["depth_hfov_deg"]) or float(p["hfov_deg"]), int(p["width"]),
                                       int(p["height"]))
            self.colour_from_depth = np.eye(4)
            self.colour_from_depth[0, 3] = float(p["depth_baseline_m"])
            self.drift = parse_drift(p["odometry_drift"])
            if not p["pose_graph_period_s"] >= 0:
                raise ValueError(f"viewseg_sim_camera: pose_graph_period_s must be >= 0, got {p['pose_graph_period_s']}")
            # The simulated SLAM: its current map -> odom, the stamps of its trajectory nodes
            # (one a second) and when it last corrected.
            self.map_from_odom = np.eye(4)
            self.graph_stamps: list[int] = []
            self.last_correction_ns = None
            self.graph_pub = (self.create_publisher(PathMessage, "pose_graph", QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE)) if self.drift is not None else None)
            self.rigs = [self._make_rig(name, yaw) for name, yaw in parse_cameras(p["cameras"])]
            self.mount = self.rigs[0].mount
            self.lidar = None
            if int(p["lidar_beams"]) > 0:
                self.lidar = LidarConfig(beams=int(p["lidar_beams"]), vfov_deg=float(p["lidar_vfov_deg"]),
                                         hres_deg=float(p["lidar_hres_deg"]))
                self.lidar_mount = lidar_mount(self.mount, p["lidar_height_m"])   # above the (first) camera
                self.lidar_sweep_s = float(p["lidar_sweep_s"])
                if not 0.0 <= self.lidar_sweep_s <= 1.0:
                    raise ValueError(f"viewseg_sim_camera: lidar_sweep_s must be in [0, 1] s, got {self.lidar_sweep_s}")
                self.points_pub = self.create_publisher(PointCloud2, "points", qos_profile_sensor_data)
            self.tf_pub = self.create_publisher(TFMessage, "/tf", 100)
            static_qos = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                    reliability=ReliabilityPolicy.RELIABLE)
            self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", static_qos)
            now_ns = self.get_clock().now().nanoseconds
            statics = []
            for rig in self.rigs:
                statics.append(matrix_to_transform_stamped(rig.mount, p["base_frame"], rig.frame, now_ns))
                if self.unaligned:
                    statics.append(matrix_to_transform_stamped(self.colour_from_depth, rig.frame, rig.depth_frame,
                                                               now_ns))
            if self.lidar is not None:
                statics.append(matrix_to_transform_stamped(self.lidar_mount, p["base_frame"], p["lidar_frame"], now_ns))
            self.tf_static_pub.publish(TFMessage(transforms=statics))
            self.start_ns = self.get_clock().now().nanoseconds
            self.frames_published = 0
            self.timer = self.create_timer(1.0 / float(p["rate"]), self._tick)
            self.get_logger().info(f"replaying {self.scene.name} ({self.scene.meta.get('room_type')}) at "
                                   f"{p['width']}x{p['height']}, {p['rate']} Hz, one walk forth and back per "
                                   f"{p['period_s']} s")

        def _make_rig(self, name: str, yaw_deg: float) -> SimRig:
            """One camera of the robot: its mount and frames, and its publishers (in namespace
            ``name`` when the robot has several)."""
            p = self.params
            prefix = f"{name}/" if name else ""
            frame = f"{name}_{p['camera_frame']}" if name else p["camera_frame"]
            depth_frame = f"{name}_{p['depth_frame']}" if name else p["depth_frame"]
            image_pub = (self.create_publisher(CompressedImage, prefix + "image/compressed", qos_profile_sensor_data)
                         if self.compressed else self.create_publisher(Image, prefix + "image", qos_profile_sensor_data))
            # Depth registered to the colour camera (same frame, size and stamp), as an RGB-D
            # driver's aligned_depth_to_color topic; through the depth sensor model by default.
            depth_pub = (None if not p["publish_depth"] else
                         self.create_publisher(CompressedImage, prefix + "depth/compressedDepth", qos_profile_sensor_data)
                         if self.compressed else self.create_publisher(Image, prefix + "depth", qos_profile_sensor_data))
            info_pub = self.create_publisher(CameraInfo, prefix + "camera_info", qos_profile_sensor_data)
            depth_info_pub = (self.create_publisher(CameraInfo, prefix + "depth/camera_info", qos_profile_sensor_data)
                              if self.unaligned else None)
            return SimRig(name, self.world.turned_mount(yaw_deg), frame, depth_frame, image_pub, info_pub, depth_pub,
                          depth_info_pub)

        def pose_at(self, stamp_ns: int, camera: int = 0) -> np.ndarray:
            """c2w of camera ``camera`` at a stamp this node published (or any stamp after its start)."""
            return self.world.base_pose((stamp_ns - self.start_ns) / 1e9) @ self.rigs[camera].mount

        def scene_at(self, stamp_ns: int) -> Scene:
            """The room at a stamp this node published: with its walker then (walker_lead_s)."""
            return self.world.scene_at((stamp_ns - self.start_ns) / 1e9)

        def _tick(self) -> None:
            p = self.params
            stamp_ns = self.get_clock().now().nanoseconds
            base = self.world.base_pose((stamp_ns - self.start_ns) / 1e9)
            scene = self.scene_at(stamp_ns)
            # TF first: the node needs it the moment the image lands.
            if self.drift is None:
                self.tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(
                    base, p["fixed_frame"], p["base_frame"], stamp_ns)]))
            else:
                transforms, graph = self._localise(base, stamp_ns)
                self.tf_pub.publish(TFMessage(transforms=transforms))
                if graph is not None:  # after the TF of its newest node
                    self.graph_pub.publish(graph)
            for rig in self.rigs:
                self._publish_frame(rig, scene, base, stamp_ns)
            if self.lidar is not None:
                rng = np.random.default_rng([int(p["seed"]), self.frames_published, LIDAR_STREAM])
                start_s = (stamp_ns - self.start_ns) / 1e9
                points, times = lidar_sweep(scene, lambda t: self.world.base_pose(start_s + t) @ self.lidar_mount,
                                            self.lidar, rng, self.lidar_sweep_s)
                self.points_pub.publish(make_xyz_cloud(points, frame_id=p["lidar_frame"], stamp_ns=stamp_ns,
                                                       times=times if self.lidar_sweep_s > 0 else None))
            self.frames_published += 1

        def drift_at(self, stamp_ns: int) -> np.ndarray:
            """The odometry's drift (T_map_odom that would make it right) at a stamp of this node."""
            return self.world.odometry_drift((stamp_ns - self.start_ns) / 1e9, *self.drift)

        def _localise(self, base: np.ndarray, stamp_ns: int) -> tuple[list, Any]:
            """(TF of drifting odometry under the simulated SLAM, the optimised trajectory to
            publish or None): every pose_graph_period_s the SLAM corrects (module docstring)."""
            p = self.params
            if not self.graph_stamps or stamp_ns - self.graph_stamps[-1] >= 1_000_000_000:
                self.graph_stamps = (self.graph_stamps + [stamp_ns])[-GRAPH_NODES_MAX:]
            period_ns, path = int(p["pose_graph_period_s"] * 1e9), None
            if period_ns and stamp_ns - (self.last_correction_ns or self.start_ns) >= period_ns:
                self.last_correction_ns = stamp_ns
                self.map_from_odom = self.drift_at(stamp_ns)
                path = PathMessage()
                path.header.frame_id = p["fixed_frame"]
                path.header.stamp = self.get_clock().now().to_msg()
                path.poses = [matrix_to_pose_stamped(self.world.base_pose((t - self.start_ns) / 1e9),
                                                     p["fixed_frame"], t) for t in self.graph_stamps]
            odometry = np.linalg.inv(self.drift_at(stamp_ns)) @ base
            return [matrix_to_transform_stamped(self.map_from_odom, p["fixed_frame"], p["odom_frame"], stamp_ns),
                    matrix_to_transform_stamped(odometry, p["odom_frame"], p["base_frame"], stamp_ns)], path

        def _publish_frame(self, rig: SimRig, scene: Scene, base: np.ndarray, stamp_ns: int) -> None:
            p = self.params
            size = (int(p["height"]), int(p["width"]))
            if self.render_hw == size:
                frame = render(scene, self.render_K, base @ rig.mount, *size)
                rgb, depth = frame.rgb, frame.depth
            else:
                small = render(scene, resize_intrinsics(self.render_K, size, self.render_hw), base @ rig.mount,
                               *self.render_hw)
                rgb = cv2.resize(small.rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                depth = cv2.resize(small.depth, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
            info = make_camera_info(self.K, int(p["width"]), int(p["height"]), frame_id=rig.frame, stamp_ns=stamp_ns)
            if self.lens_maps is not None:
                map_x, map_y = self.lens_maps
                rgb = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                depth = cv2.remap(depth.astype(np.float32), map_x, map_y, cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
                info.d = self.d.tolist()
                info.p = np.concatenate([self.P_K, np.zeros((3, 1))], axis=1).reshape(-1).tolist()
            # CameraInfo before the image: the node needs both the moment the image lands.
            rig.info_pub.publish(info)
            rig.image_pub.publish(
                numpy_to_compressed_image(rgb, "jpeg", quality=int(p["jpeg_quality"]), frame_id=rig.frame,
                                          stamp_ns=stamp_ns) if self.compressed else
                numpy_to_image(rgb, "rgb8", frame_id=rig.frame, stamp_ns=stamp_ns))
            depth_frame = rig.frame
            if self.unaligned:  # the depth camera's own view, beside the colour camera
                depth_frame = rig.depth_frame
                depth_pose = base @ rig.mount @ self.colour_from_depth
                small = render(scene, resize_intrinsics(self.depth_K, size, self.render_hw), depth_pose,
                               *self.render_hw)
                depth = cv2.resize(small.depth, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
                rig.depth_info_pub.publish(make_camera_info(self.depth_K, size[1], size[0], frame_id=depth_frame,
                                                            stamp_ns=stamp_ns))
            if rig.depth_pub is not None:
                if p["depth_sensor"]:
                    # One noise stream per camera and frame (the first camera's is the one-camera stream).
                    index = self.rigs.index(rig)
                    key = [int(p["seed"]), self.frames_published] + ([index] if index else [])
                    depth = apply_sensor(depth, DepthSensorConfig(), np.random.default_rng(key))
                if self.compressed:
                    rig.depth_pub.publish(numpy_to_compressed_depth(depth, frame_id=depth_frame, stamp_ns=stamp_ns))
                else:
                    if p["depth_encoding"] == "16UC1":  # millimetres, 0 = no return (REP 118)
                        depth = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0).clip(0, 65535).astype(
                            np.uint16)
                    rig.depth_pub.publish(numpy_to_image(depth, p["depth_encoding"], frame_id=depth_frame,
                                                         stamp_ns=stamp_ns))

    return SimCameraNode


def __getattr__(name: str):
    # The node class needs rclpy; build it on first use so the scene helpers stay ROS-free.
    if name == "SimCameraNode":
        cls = _make_node_class()
        globals()["SimCameraNode"] = cls
        return cls
    raise AttributeError(name)


def main(args: list[str] | None = None) -> int:
    """``viewseg_sim_camera``: status 0 when stopped by SIGINT/SIGTERM, 2 for a bad parameter."""
    import signal

    import rclpy
    from rclpy.executors import ExternalShutdownException

    # rclpy's handlers stop the spin; a Python KeyboardInterrupt could instead land in
    # destroy_node on the second SIGINT that a non-interactive `ros2 launch` forwards.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = __getattr__("SimCameraNode")()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as error:
        print(f"viewseg_sim_camera: {error}", file=sys.stderr)
        return 2
    except Exception:
        # SIGINT shuts the context down from the signal handler; a frame that was being
        # rendered then fails to publish ("publisher's context is invalid"). That is the
        # stop that was asked for, not a crash: `ros2 launch` must see status 0.
        if node is None or node.context.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


__all__ = ["SimWorld", "lidar_mount", "planar_pose", "main", "WALK_POSES"]

if __name__ == "__main__":
    sys.exit(main())
