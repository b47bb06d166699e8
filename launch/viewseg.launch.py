"""Launch the viewseg node (and optionally the simulated camera) on a ROS 2 install.

    ros2 launch viewseg_ros viewseg.launch.py checkpoint:=/path/model.pt device:=cuda \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

Parameters come from ``params_file`` (default: the installed config/viewseg.yaml); the
``checkpoint`` and ``device`` arguments override it, and the topic arguments remap the
node's relative ``image`` / ``camera_info`` names. ``sim:=true`` also starts
``viewseg_sim_camera`` (a synthetic room on ``image``, ``camera_info`` and TF).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "viewseg_ros"


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("params_file", description="node parameters (YAML, viewseg: ros__parameters:)",
                              default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config",
                                                                  "viewseg.yaml"])),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="viewseg-model file; empty = the demo checkpoint"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("image_topic", default_value="image", description="camera image (rgb8/bgr8)"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera_info",
                              description="CameraInfo of the same camera"),
        DeclareLaunchArgument("sim", default_value="false", description="also start the simulated camera"),
    ]
    remappings = [("image", LaunchConfiguration("image_topic")),
                  ("camera_info", LaunchConfiguration("camera_info_topic"))]
    viewseg = Node(
        package=PACKAGE, executable="viewseg_node", name="viewseg", output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"checkpoint": LaunchConfiguration("checkpoint"), "device": LaunchConfiguration("device")}],
        remappings=remappings)
    sim_camera = Node(
        package=PACKAGE, executable="viewseg_sim_camera", name="viewseg_sim_camera", output="screen",
        remappings=remappings, condition=IfCondition(LaunchConfiguration("sim")))
    return LaunchDescription(arguments + [viewseg, sim_camera])
