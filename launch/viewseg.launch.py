"""Launch the viewseg node (and optionally the simulated camera) on a ROS 2 install.

    ros2 launch viewseg_ros viewseg.launch.py checkpoint:=/path/model.pt device:=cuda \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

Parameters come from ``params_file`` (default: the installed config/viewseg.yaml); the
``checkpoint``, ``device``, ``depth_topic``, ``depth_camera_info_topic``, ``pointcloud_topic``, ``cameras``,
``load_keyframes`` (the node's ``keyframes.load_path``), ``pose_graph_topic`` (its
``pose_graph.topic``) and ``managed`` (a lifecycle node that waits for its manager) arguments override it when given (left at their defaults, the file's values stand), and the
topic arguments remap the node's relative ``image`` / ``camera_info`` names. ``sim:=true`` also starts
``viewseg_sim_camera`` (a synthetic room on ``image``, ``camera_info`` and TF).

Several cameras feed one node with ``cameras:=/front,/rear``: the topic arguments are then
relative names that every camera publishes in its namespace, passed as the node's
parameters (a remapping of ``image`` would not reach ``/front/image``)::

    ros2 launch viewseg_ros viewseg.launch.py cameras:=/camera/front,/camera/rear \
        image_topic:=color/image_raw camera_info_topic:=color/camera_info

``fastdds_profile`` (default: the installed config/fastdds_large_images.xml) is exported as
``FASTDDS_DEFAULT_PROFILES_FILE`` (and, for Fast DDS 2.x, ``FASTRTPS_DEFAULT_PROFILES_FILE``)
to the nodes this file starts; ``fastdds_profile:=`` (empty) leaves the environment as it is.

Several robots on one network: ``namespace:=robot1`` starts the nodes as /robot1/viewseg
(and /robot1/viewseg_sim_camera), their relative topics inside the namespace, and
``namespaced_tf:=true`` reads TF from /robot1/tf and /robot1/tf_static, as Nav2's multi-robot
launch files remap it. The params file's ``viewseg:`` section is then applied to
/robot1/viewseg (ROS would read it as /viewseg only).

Both nodes are required: when either exits, the launch shuts down, and when it exits with an
error (a missing checkpoint, a bad parameter) ``ros2 launch`` exits non-zero.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "viewseg_ros"


def _fastdds_profile(context):
    """SetEnvironmentVariable actions for the Fast DDS profile; none when the argument is empty."""
    path = LaunchConfiguration("fastdds_profile").perform(context)
    if not path:
        return []
    if not os.path.isfile(path):
        raise FileNotFoundError(f"launch argument fastdds_profile: {path!r} is not a file "
                                f"(fastdds_profile:= keeps the environment's Fast DDS settings)")
    actions = [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", path)]
    if not _fast_dds_3():
        # Fast DDS 2.x (Humble, Jazzy) reads only the old name. Fast DDS 3 reads both and would
        # load the file twice ("There is other transport with the same id").
        actions.append(SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", path))
    return actions


def _fast_dds_3() -> bool:
    """Fast DDS 3 installs share/fastdds; 2.x installs share/fastrtps."""
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    return any(os.path.isdir(os.path.join(prefix, "share", "fastdds")) for prefix in prefixes if prefix)


def _required(executable: str):
    """on_exit for a node the launch cannot run without: any exit shuts the launch down, and an
    error exit makes ``ros2 launch`` exit non-zero (launch returns 1 when an action raises;
    a plain Shutdown would end it with status 0)."""
    def on_exit(event, context):
        if event.returncode != 0:
            raise RuntimeError(f"{executable} exited with status {event.returncode} (its output is above); "
                               f"shutting down")
        return [Shutdown(reason=f"{executable} exited")]
    return on_exit


# Launch arguments that override the params file, and the value that means "not given".
OVERRIDES = {"checkpoint": "", "device": "auto", "depth_topic": "", "depth_camera_info_topic": "",
             "pointcloud_topic": "", "cameras": "",
             "load_keyframes": "", "pose_graph_topic": "", "managed": "false", "use_sim_time": "false"}
BOOL_ARGUMENTS = {"managed", "use_sim_time"}
# The node parameter of an argument whose name differs from it.
PARAMETER_OF = {"load_keyframes": "keyframes.load_path", "pose_graph_topic": "pose_graph.topic"}


def _viewseg_node(context):
    """The viewseg node. The arguments of OVERRIDES replace the params file's values only when
    given: a default would otherwise overwrite what the file says (a checkpoint set in the
    file would silently become the demo's). One camera: the topic arguments remap its relative
    names. Several (``cameras``): they are its parameters, resolved inside each camera's namespace."""
    given = {PARAMETER_OF.get(name, name): _typed(name, value) for name, unset in OVERRIDES.items()
             if (value := LaunchConfiguration(name).perform(context).strip()) != unset}
    remappings = _remappings()
    if given.get("cameras"):
        given.update(image_topic=LaunchConfiguration("image_topic").perform(context),
                     camera_info_topic=LaunchConfiguration("camera_info_topic").perform(context))
        remappings = []
    params_file = _params_file_in_namespace(LaunchConfiguration("params_file").perform(context),
                                            LaunchConfiguration("namespace").perform(context))
    return [Node(
        package=PACKAGE, executable="viewseg_node", name="viewseg", output="screen",
        namespace=LaunchConfiguration("namespace"),
        parameters=[params_file, given] if given else [params_file],
        remappings=remappings + _tf_remappings(context), on_exit=_required("viewseg_node"))]


def _typed(argument: str, value: str):
    """A launch argument's text as its parameter's type: launch hands parameters given in a dict
    over as strings, and rclpy refuses the text "true" for a bool (use_sim_time)."""
    if argument not in BOOL_ARGUMENTS:
        return value
    if value.lower() not in ("true", "false"):
        raise ValueError(f"launch argument {argument}: expected true or false, got {value!r}")
    return value.lower() == "true"


def _params_file_in_namespace(path: str, namespace: str) -> str:
    """``path``, or with a ``namespace`` a copy of it whose ``viewseg:`` section is keyed
    ``/<namespace>/viewseg``: ROS reads a plain ``viewseg:`` key as the node /viewseg, so in a
    namespace the file would silently not apply (Nav2's launch files re-root theirs alike).
    Other keys (``/**:``, ``/**/viewseg:``, ``/robot1/viewseg:``) already say which nodes they
    mean and stay as they are."""
    namespace = namespace.strip().strip("/")
    if not namespace or not os.path.isfile(path):
        return path   # a missing file: the node's own error names it
    import tempfile

    import yaml

    with open(path) as stream:
        data = yaml.safe_load(stream)
    if not isinstance(data, dict) or not {"viewseg", "/viewseg"} & set(data):
        return path
    rooted = {(f"/{namespace}/viewseg" if key in ("viewseg", "/viewseg") else key): value
              for key, value in data.items()}
    with tempfile.NamedTemporaryFile("w", prefix="viewseg_params_", suffix=".yaml", delete=False) as out:
        yaml.safe_dump(rooted, out)
    return out.name


def _remappings() -> list:
    return [("image", LaunchConfiguration("image_topic")), ("camera_info", LaunchConfiguration("camera_info_topic"))]


def _tf_remappings(context) -> list:
    """With ``namespaced_tf``, /tf and /tf_static inside the namespace (/robot1/tf): the
    multi-robot convention of Nav2's launch files, one TF tree per robot."""
    if LaunchConfiguration("namespaced_tf").perform(context).strip().lower() not in ("true", "1", "yes"):
        return []
    return [("/tf", "tf"), ("/tf_static", "tf_static")]


def _sim_camera(context):
    return [Node(
        package=PACKAGE, executable="viewseg_sim_camera", name="viewseg_sim_camera", output="screen",
        namespace=LaunchConfiguration("namespace"), remappings=_remappings() + _tf_remappings(context),
        condition=IfCondition(LaunchConfiguration("sim")), on_exit=_required("viewseg_sim_camera"))]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument("params_file", description="node parameters (YAML, viewseg: ros__parameters:)",
                              default_value=PathJoinSubstitution([share, "config", "viewseg.yaml"])),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="viewseg-model file; empty = the params file's (default: the demo "
                                          "checkpoint)"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="auto, cpu, cuda or cuda:N; auto = the params file's (default: auto)"),
        DeclareLaunchArgument("image_topic", default_value="image", description="camera image (rgb8/bgr8/rgba8/bgra8, YUV 4:2:2, 8-bit Bayer)"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera_info",
                              description="CameraInfo of the same camera"),
        DeclareLaunchArgument("depth_topic", default_value="",
                              description="depth registered to the colour camera (32FC1 m / 16UC1 mm) for an RGB-D "
                                          "checkpoint; empty = the params file's (default: RGB only; with sim:=true, "
                                          "'depth' is the sim's)"),
        DeclareLaunchArgument("depth_camera_info_topic", default_value="",
                              description="CameraInfo of an UNALIGNED depth camera (its own frame and size): the node "
                                          "registers its depth through TF; empty = depth_topic is registered already"),
        DeclareLaunchArgument("pointcloud_topic", default_value="",
                              description="PointCloud2 (a LiDAR, or a depth camera's points, in any frame TF knows) "
                                          "giving the keyframes' depth instead of depth_topic; empty = the params "
                                          "file's (default: none)"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="namespaces of several cameras feeding one keyframe buffer, comma-separated "
                                          "(e.g. /front,/rear); the topic arguments are then relative names inside "
                                          "each; empty = the params file's (default: one camera)"),
        DeclareLaunchArgument("load_keyframes", default_value="",
                              description="start with the keyframes of this folder (~/save_keyframes wrote it; "
                                          "the node's keyframes.load_path)"),
        DeclareLaunchArgument("pose_graph_topic", default_value="",
                              description="nav_msgs/Path of the SLAM system's optimised trajectory (e.g. "
                                          "/rtabmap/mapPath): loop closures re-pose the keyframes (the node's "
                                          "pose_graph.topic; pose_graph.body_frame / odom_frame in the params file)"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="true: a lifecycle node that starts unconfigured and waits for a lifecycle "
                                          "manager (nav2_lifecycle_manager with node_names [viewseg]) to configure "
                                          "and activate it; false = the params file's (default: serving at start)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true: the node's clock follows /clock (Gazebo, Isaac Sim, a bag played "
                                          "with --clock); false = the params file's (default: the system clock)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="the robot's namespace (e.g. robot1): the node becomes /robot1/viewseg, its "
                                          "services /robot1/viewseg/render_view, and relative topics (image, "
                                          "camera_info) resolve inside it; empty = none"),
        DeclareLaunchArgument("namespaced_tf", default_value="false",
                              description="true: read TF from <namespace>/tf and <namespace>/tf_static (one TF tree "
                                          "per robot, as Nav2's multi-robot launch files remap it); false = /tf"),
        DeclareLaunchArgument("sim", default_value="false", description="also start the simulated camera"),
        DeclareLaunchArgument("fastdds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_large_images.xml"]),
                              description="Fast DDS XML profile for the started nodes "
                                          "(FASTDDS_DEFAULT_PROFILES_FILE); empty = leave the environment as it is"),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=function)
                                          for function in (_fastdds_profile, _viewseg_node, _sim_camera)])
