"""A simulated robot camera: replays a procedural synthetic room as Image, CameraInfo and TF.

The scene is a pure function of ``seed`` (:func:`make_scene`) and the camera pose a pure
function of time (:func:`camera_pose`), so a test or the demo client can rebuild the ground
truth (labels, planar depth) for any pose the node is asked about.

Frames (REP 103/105): ``map -> base_link`` is the robot driving a closed loop through the
middle of the room, published on ``/tf`` with the image stamp; ``base_link -> camera_optical``
(camera ``height`` metres up, pitched down by ``pitch_deg``, OpenCV optical axes) is static
on ``/tf_static``. Images are rgb8 with ``header.frame_id = camera_optical``; CameraInfo
carries the pinhole K of ``hfov_deg`` and no distortion.

Run: ``python -m viewseg_ros.sim_camera --ros-args -p seed:=0 -p rate:=5.0 -p width:=160 -p height:=120``
(or the console script ``viewseg_sim_camera``).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from viewseg_core.cameras import K_from_hfov
from viewseg_core.data.synth import furniture as fu
from viewseg_core.data.synth.room import Room, rectilinear_outline
from viewseg_core.data.synth.scene import Scene, SceneBuilder

# OpenCV optical axes in a REP 103 body frame (x forward, y left, z up): columns are the
# optical x (right = -y), y (down = -z) and z (forward = +x) axes.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0],
                           [-1.0, 0.0, 0.0],
                           [0.0, -1.0, 0.0]])


# --------------------------------------------------------------------------- the scene
def make_scene(seed: int) -> Scene:
    """A furnished rectangular room, deterministic in ``seed`` (world: z up, floor at z = 0).

    Furniture stands against the walls and the middle stays free, so the camera loop of
    :func:`camera_pose` never enters a solid.
    """
    rng = np.random.default_rng(seed)
    builder = SceneBuilder()
    pal = fu.Palette(builder, rng)
    width, depth = rng.uniform(4.5, 6.0), rng.uniform(4.0, 5.5)
    height = rng.uniform(2.5, 2.9)
    room = Room(rectilinear_outline(rng, width, depth, "rect"), height)
    room.shell(builder, rng, pal.wall_paint(), pal.painted() if rng.random() < 0.5 else None, pal.floor(),
               builder.material([0.92, 0.92, 0.9]), {"wall": fu.C["wall"], "floor": fu.C["floor"],
                                                     "ceiling": fu.C["ceiling"]})
    # One object group per wall (walls 0..3 of a counter-clockwise rectangle: south, east,
    # north, west), each against its wall and facing into the room; the bed (2 m deep)
    # sits near a corner, outside the camera loop's x range.
    south, east, north, west = room.walls
    fu.bed(fu.Frame(builder, *south.point(0.2 * south.length, 1.02), yaw=south.yaw), 1.4, 2.0, pal, rng)
    fu.night_stand(fu.Frame(builder, *south.point(0.2 * south.length + 1.0, 0.22), yaw=south.yaw), pal, rng)
    fu.shelf_unit(fu.Frame(builder, *east.point(0.5 * east.length, 0.2), yaw=east.yaw), 1.2, 0.35, 1.8, pal, rng)
    fu.sofa(fu.Frame(builder, *north.point(0.5 * north.length, 0.45), yaw=north.yaw), 1.8, 0.85, pal, rng)
    fu.picture(fu.Frame(builder, *north.point(0.5 * north.length, 0.02), yaw=north.yaw, z=1.45), 0.9, 0.6, pal, rng)
    fu.desk(fu.Frame(builder, *west.point(0.4 * west.length, 0.35), yaw=west.yaw), 1.2, 0.6, pal, rng)
    fu.chair(fu.Frame(builder, *west.point(0.4 * west.length, 0.95), yaw=west.yaw + math.pi), pal, rng)
    fu.door(fu.Frame(builder, *west.point(0.85 * west.length, 0.01), yaw=west.yaw), 0.9, 2.05, pal, rng)
    builder.light([width / 2, depth / 2, height - 0.2], [1.0, 0.97, 0.9])
    return builder.build(f"sim_room_{seed}", seed, room.polygon, height, ambient=0.35)


# --------------------------------------------------------------------------- the trajectory
@dataclass
class Trajectory:
    """A closed loop in the room: an ellipse around its centre, the camera sweeping its gaze.

    ``base_pose(t)`` is T_map_base_link at ``t`` seconds; the robot's heading turns once per
    ``period_s`` and swings ``swing_deg`` either side of the outward normal of the loop, so
    consecutive keyframes see every wall from several places.
    """

    center: tuple[float, float]
    radii: tuple[float, float]
    period_s: float = 30.0
    swing_deg: float = 40.0

    @classmethod
    def for_scene(cls, scene: Scene, period_s: float = 30.0) -> "Trajectory":
        (x0, y0), (x1, y1) = scene.polygon.min(0), scene.polygon.max(0)
        # 0.12 x the room size keeps >= 1.3 m from any wall of a >= 4 m room (furniture: < 1.1 m).
        return cls(((x0 + x1) / 2, (y0 + y1) / 2), (0.12 * (x1 - x0), 0.12 * (y1 - y0)), period_s)

    def base_pose(self, t: float) -> np.ndarray:
        phase = 2.0 * math.pi * t / self.period_s
        x = self.center[0] + self.radii[0] * math.cos(phase)
        y = self.center[1] + self.radii[1] * math.sin(phase)
        yaw = phase + math.radians(self.swing_deg) * math.sin(3.0 * phase)
        return planar_pose(x, y, yaw)


def planar_pose(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """[4, 4] pose of a body at (x, y, z) turned ``yaw`` radians about +z."""
    c, s = math.cos(yaw), math.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = (x, y, z)
    return pose


def mount_pose(height: float = 1.3, pitch_deg: float = 10.0) -> np.ndarray:
    """T_base_link_camera_optical: ``height`` m up, pitched down ``pitch_deg`` (a rotation about +y)."""
    p = math.radians(pitch_deg)
    pitch = np.array([[math.cos(p), 0.0, math.sin(p)], [0.0, 1.0, 0.0], [-math.sin(p), 0.0, math.cos(p)]])
    pose = np.eye(4)
    pose[:3, :3] = pitch @ R_BODY_OPTICAL
    pose[:3, 3] = (0.0, 0.0, height)
    return pose


def camera_pose(trajectory: Trajectory, t: float, mount: np.ndarray | None = None) -> np.ndarray:
    """c2w of ``camera_optical`` in ``map`` at time ``t`` (seconds since the start)."""
    return trajectory.base_pose(t) @ (mount_pose() if mount is None else mount)


def unseen_poses(trajectory: Trajectory, count: int, mount: np.ndarray | None = None) -> list[np.ndarray]:
    """``count`` query poses off the loop: 0.25-0.35 m beside it and turned 20-30 degrees
    away from where the camera looked there, spread around the loop."""
    mount = mount_pose() if mount is None else mount
    poses = []
    for i in range(count):
        t = trajectory.period_s * (i + 0.37) / count
        base = trajectory.base_pose(t)
        side = 0.25 + 0.1 * (i % 2)
        turn = math.radians(20.0 + 10.0 * (i % 3)) * (1 if i % 2 else -1)
        offset = planar_pose(0.0, side * (1 if i % 2 else -1), turn)
        poses.append(base @ offset @ mount)
    return poses


# --------------------------------------------------------------------------- the node
def _make_node_class():
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from viewseg_core.data.synth.render import render
    from viewseg_ros.conversions import make_camera_info, matrix_to_transform_stamped, numpy_to_image

    class SimCameraNode(Node):
        """Publishes ``image``, ``camera_info``, ``/tf`` and ``/tf_static`` (see the module docstring)."""

        def __init__(self, **kwargs):
            super().__init__("viewseg_sim_camera", **kwargs)
            p = {name: self.declare_parameter(name, default).value for name, default in (
                ("seed", 0), ("rate", 5.0), ("width", 160), ("height", 120), ("hfov_deg", 70.0),
                ("period_s", 30.0), ("camera_height", 1.3), ("pitch_deg", 10.0), ("fixed_frame", "map"),
                ("base_frame", "base_link"), ("camera_frame", "camera_optical"))}
            if not (p["rate"] > 0 and p["width"] > 0 and p["height"] > 0 and p["period_s"] > 0):
                raise ValueError(f"viewseg_sim_camera: rate, width, height and period_s must be positive: {p}")
            self.params = p
            self.scene = make_scene(int(p["seed"]))
            self.trajectory = Trajectory.for_scene(self.scene, float(p["period_s"]))
            self.mount = mount_pose(float(p["camera_height"]), float(p["pitch_deg"]))
            self.K = K_from_hfov(float(p["hfov_deg"]), int(p["width"]), int(p["height"]))
            self.image_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
            self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
            self.tf_pub = self.create_publisher(TFMessage, "/tf", 100)
            static_qos = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                    reliability=ReliabilityPolicy.RELIABLE)
            self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", static_qos)
            self.tf_static_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(
                self.mount, p["base_frame"], p["camera_frame"], self.get_clock().now().nanoseconds)]))
            self.start_ns = self.get_clock().now().nanoseconds
            self.frames_published = 0
            self.timer = self.create_timer(1.0 / float(p["rate"]), self._tick)
            self.get_logger().info(f"replaying {self.scene.name} at {p['width']}x{p['height']}, {p['rate']} Hz")

        def pose_at(self, stamp_ns: int) -> np.ndarray:
            """c2w of the camera at a stamp this node published (or any stamp after its start)."""
            return camera_pose(self.trajectory, (stamp_ns - self.start_ns) / 1e9, self.mount)

        def _tick(self) -> None:
            p = self.params
            stamp_ns = self.get_clock().now().nanoseconds
            base = self.trajectory.base_pose((stamp_ns - self.start_ns) / 1e9)
            # TF and CameraInfo first: the node needs both the moment the image lands.
            self.tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(
                base, p["fixed_frame"], p["base_frame"], stamp_ns)]))
            frame = render(self.scene, self.K, base @ self.mount, int(p["height"]), int(p["width"]))
            self.info_pub.publish(make_camera_info(self.K, int(p["width"]), int(p["height"]),
                                                   frame_id=p["camera_frame"], stamp_ns=stamp_ns))
            self.image_pub.publish(numpy_to_image(frame.rgb, "rgb8", frame_id=p["camera_frame"], stamp_ns=stamp_ns))
            self.frames_published += 1

    return SimCameraNode


def __getattr__(name: str):
    # The node class needs rclpy; build it on first use so the scene helpers stay ROS-free.
    if name == "SimCameraNode":
        cls = _make_node_class()
        globals()["SimCameraNode"] = cls
        return cls
    raise AttributeError(name)


def main(args: list[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

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
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


__all__ = ["make_scene", "Trajectory", "planar_pose", "mount_pose", "camera_pose", "unseen_poses", "main",
           "R_BODY_OPTICAL"]

if __name__ == "__main__":
    sys.exit(main())
