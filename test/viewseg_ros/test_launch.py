"""`ros2 launch viewseg_ros viewseg.launch.py` for real, as a user runs it: from a directory
outside the repository, against the package `make setup` registered in the venv's prefix (or a
colcon-style install into a temporary prefix), stopped with SIGINT.

The launch tests need the `ros2` command and the launch stack: a system ROS 2, or the vendored
upstream stack that `make setup` installs from ../shared/vendor/ros2-launch-kilted. Without
them they skip, saying so. Every launch gets its own random ROS_DOMAIN_ID on loopback.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "viewseg_ros"
PREFIX = Path(sys.prefix)
ROS2 = shutil.which("ros2", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
LAUNCH_STACK = ROS2 is not None and importlib.util.find_spec("ros2launch") is not None
needs_launch = pytest.mark.skipif(
    not LAUNCH_STACK, reason="`ros2 launch` needs a system ROS 2 or the vendored launch stack "
                             "(../shared/vendor/ros2-launch-kilted, installed by `make setup`)")
START_TIMEOUT = 120.0  # seconds to "ready:" (torch import + model load on a busy 2-core machine)


# --------------------------------------------------------------------------- helpers
def ros_env(prefixes: list[Path] = (), pythonpath: Path | None = None) -> dict[str, str]:
    """This environment on loopback with a fresh random domain; ``prefixes`` go first on
    AMENT_PREFIX_PATH (the venv's prefix is always on it, as activation puts it there)."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(102, 232))  # Fast DDS refuses > 232
    ament = [str(p) for p in prefixes] + [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if str(PREFIX) not in ament:
        ament.append(str(PREFIX))
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(dict.fromkeys(ament))
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _default_sigint() -> None:
    # A process started in the background of a non-interactive shell inherits SIGINT as
    # ignored; `ros2 launch` must see SIGINT as a terminal's Ctrl-C would deliver it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def group_members(pgid: int) -> list[str]:
    """'pid: command' of every live (non-zombie) process in process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(f"{stat.parent.name}: {cmdline.strip()}")
    return members


class Launch:
    """One `ros2 launch viewseg_ros viewseg.launch.py ARGS` in its own process group (like a
    shell job), stdin not a terminal (so launch forwards SIGINT to the nodes: with a Ctrl-C
    to the whole group they get two), output in a file."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([ROS2, "launch", PACKAGE, "viewseg.launch.py", *args], cwd=cwd, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_default_sigint)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} from the launch (status {self.proc.poll()}); its output:\n"
                             f"{self.output()}")

    def interrupt(self, timeout: float = 10.0) -> tuple[int, float]:
        """Ctrl-C to the whole group; (exit status, seconds until ros2 launch exited)."""
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ros2 launch still running {timeout:.0f} s after SIGINT; output:\n"
                                 f"{self.output()}") from None
        return status, time.monotonic() - t0

    def leftovers(self, grace: float = 2.0) -> list[str]:
        deadline = time.monotonic() + grace
        while (members := group_members(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return members

    def kill(self) -> None:
        for member in group_members(self.proc.pid):
            try:
                os.kill(int(member.split(":")[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def assert_clean(launch: Launch) -> None:
    text = launch.output()
    for bad in ("Traceback", "KeyboardInterrupt", "[ERROR]", "process has died", "XMLPARSER"):
        assert bad not in text, f"{bad!r} in the launch output:\n{text}"
    assert launch.leftovers() == [], f"processes left behind:\n{launch.leftovers()}\n{text}"


@contextlib.contextmanager
def stopped_cleanly(args: list[str], tmp_path: Path):
    """A Launch of ``args`` for the with-block; at its end Ctrl-C must stop it with status 0 and
    nothing left behind (assert_clean). Killed if the block fails."""
    launch = Launch(args, tmp_path, ros_env(), tmp_path / "launch.log")
    try:
        yield launch
        status, _ = launch.interrupt()
        assert status == 0, launch.output()
        assert_clean(launch)
    finally:
        if launch.proc.poll() is None:
            launch.kill()


CLIENT = textwrap.dedent("""
    import sys, time
    import rclpy
    from rcl_interfaces.srv import GetParameters
    from viewseg_interfaces.srv import RenderView

    rclpy.init()
    node = rclpy.create_node("viewseg_launch_test_client")
    render = node.create_client(RenderView, "/viewseg/render_view")
    params = node.create_client(GetParameters, "/viewseg/get_parameters")
    deadline = time.monotonic() + float(sys.argv[1])

    def call(client, request):
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=max(1.0, deadline - time.monotonic()))
        return future.result()

    for client in (render, params):
        while not client.wait_for_service(timeout_sec=0.5):
            if time.monotonic() > deadline:
                sys.exit(f"no service {client.srv_name}")
    got = call(params, GetParameters.Request(names=["query.preset"]))
    print("query.preset:", got.values[0].string_value if got else None, flush=True)
    request = RenderView.Request()
    request.pose.header.frame_id = "camera_optical"  # identity in the camera's frame: where it is now
    request.pose.pose.orientation.w = 1.0
    request.camera_info.width, request.camera_info.height = 40, 30
    while True:  # the first keyframes arrive a few frames after the node is ready
        response = call(render, request)
        if response is not None and response.success:
            print(f"success: {response.depth.width}x{response.depth.height} from keyframes "
                  f"{list(response.keyframe_ids)}", flush=True)
            break
        print("not yet:", response.message if response is not None else "no response", flush=True)
        if time.monotonic() > deadline:
            sys.exit("render_view never succeeded")
        time.sleep(0.3)
    node.destroy_node()
    rclpy.try_shutdown()
""")


def configured_preset() -> str:
    config = yaml.safe_load((REPO / "config" / "viewseg.yaml").read_text())["viewseg"]["ros__parameters"]
    return config["query"]["preset"] if "query" in config else config["query.preset"]


# --------------------------------------------------------------------------- registration (no launch stack needed)
def test_setup_registers_the_package_like_colcon_symlink_install():
    index = PREFIX / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    assert index.is_file(), f"{index} missing: run `make setup`"
    share = PREFIX / "share" / PACKAGE
    for folder in ("launch", "config", "checkpoints"):  # real folders: ros2launch does not follow a link
        assert (share / folder).is_dir() and not (share / folder).is_symlink(), share / folder
    for name in ("package.xml", "launch/viewseg.launch.py", "config/viewseg.yaml", "checkpoints/demo.pt"):
        assert (share / name).is_file(), share / name
        assert (share / name).resolve() == (REPO / Path(name).name if name == "package.xml" else REPO / name)
    for executable in ("viewseg_node", "viewseg_sim_camera"):
        path = PREFIX / "lib" / PACKAGE / executable
        assert path.is_file() and os.access(path, os.X_OK), path


def test_activation_puts_the_venv_on_ament_prefix_path_once():
    activate = PREFIX / "bin" / "activate"
    script = 'for i in 1 2; do . "$1"; done; printf %s "$AMENT_PREFIX_PATH"'
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "VIRTUAL_ENV")}
    alone = subprocess.run(["bash", "-c", script, "_", str(activate)], env=env, capture_output=True, text=True)
    assert alone.stdout == str(PREFIX), alone.stderr
    env["AMENT_PREFIX_PATH"] = "/opt/ros/other"
    both = subprocess.run(["bash", "-c", script, "_", str(activate)], env=env, capture_output=True, text=True)
    assert both.stdout == f"{PREFIX}:/opt/ros/other", both.stderr


# --------------------------------------------------------------------------- one launched sim, several clients
@pytest.fixture(scope="module")
def sim_launch(tmp_path_factory):
    """`ros2 launch viewseg_ros viewseg.launch.py sim:=true` from a folder outside the repo,
    shared by the tests below; the last of them stops it with SIGINT."""
    if not LAUNCH_STACK:
        pytest.skip(needs_launch.kwargs["reason"])
    cwd = tmp_path_factory.mktemp("launch_sim")
    launch = Launch(["sim:=true", "device:=cpu"], cwd, ros_env(), cwd / "launch.log")
    try:
        launch.wait_for(r"\[viewseg\]: ready:")
        launch.wait_for(r"\[viewseg_sim_camera\]: replaying")
        yield launch
    finally:
        if launch.proc.poll() is None:
            launch.kill()


@needs_launch
def test_launched_node_answers_a_separate_client(sim_launch):
    assert sim_launch.proc.poll() is None, sim_launch.output()
    client = subprocess.run([sys.executable, "-c", CLIENT, "60"], env=sim_launch.env, capture_output=True,
                            text=True, timeout=90, cwd=sim_launch.log.parent)
    assert client.returncode == 0 and "success: 40x30" in client.stdout, (
        f"client: {client.stdout}{client.stderr}\nlaunch:\n{sim_launch.output()}")
    assert f"query.preset: {configured_preset()}" in client.stdout
    assert "Traceback" not in client.stderr, client.stderr


@needs_launch
def test_ros2_node_list_sees_both_nodes(sim_launch):
    assert sim_launch.proc.poll() is None, sim_launch.output()
    for _ in range(6):  # discovery on a busy machine can miss a node within one spin time (seen 1 in 3)
        listed = subprocess.run([ROS2, "node", "list", "--no-daemon", "--spin-time", "3"], env=sim_launch.env,
                                capture_output=True, text=True, timeout=60)
        if {"/viewseg", "/viewseg_sim_camera"} <= set(listed.stdout.split()):
            break
    assert {"/viewseg", "/viewseg_sim_camera"} <= set(listed.stdout.split()), listed.stdout + listed.stderr


@needs_launch
def test_nodes_get_the_fastdds_profile(sim_launch):
    profile = PREFIX / "share" / PACKAGE / "config" / "fastdds_large_images.xml"
    nodes = [m.split(":")[0] for m in group_members(sim_launch.proc.pid) if f"lib/{PACKAGE}/" in m]
    assert len(nodes) == 2, group_members(sim_launch.proc.pid)
    for pid in nodes:
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item)
        assert environ.get("FASTDDS_DEFAULT_PROFILES_FILE") == str(profile)
        # Fast DDS 3 (the Kilted wheels) would load the file a second time through the old name.
        assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in environ or "FASTRTPS_DEFAULT_PROFILES_FILE" in os.environ


@needs_launch
def test_ros2_param_get_reads_the_running_node(sim_launch):
    if importlib.util.find_spec("ros2param") is None:
        pytest.skip("`ros2 param` (ros2param) is not in the vendored launch stack; the separate client reads "
                    "query.preset through the node's get_parameters service instead")
    got = subprocess.run([ROS2, "param", "get", "/viewseg", "query.preset"], env=sim_launch.env,
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and configured_preset() in got.stdout, got.stdout + got.stderr


@needs_launch
def test_sigint_ends_the_launch_cleanly(sim_launch):
    """Ctrl-C to the group: every node gets SIGINT twice (the group's and the one launch
    forwards) and still exits 0 without a traceback; ros2 launch exits 0 within 10 s."""
    assert sim_launch.proc.poll() is None, sim_launch.output()
    status, seconds = sim_launch.interrupt(timeout=10.0)
    assert status == 0, f"ros2 launch exited {status}:\n{sim_launch.output()}"
    assert seconds < 10.0
    assert sim_launch.output().count("process has finished cleanly") == 2, sim_launch.output()
    assert_clean(sim_launch)


# --------------------------------------------------------------------------- failures must show
@needs_launch
# Both take the same path (any error exit of a required node); the second launch costs ~6 s.
@pytest.mark.parametrize("kind", ["missing", pytest.param("corrupt", marks=pytest.mark.slow)])
def test_a_bad_checkpoint_fails_the_launch(tmp_path, kind):
    checkpoint = tmp_path / f"{kind}.pt"
    if kind == "corrupt":
        checkpoint.write_bytes(b"not a viewseg-model file\n")
    launch = Launch([f"checkpoint:={checkpoint}", "device:=cpu"], tmp_path, ros_env(), tmp_path / "launch.log")
    try:
        status = launch.proc.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        launch.kill()
        raise AssertionError(f"ros2 launch still running with a {kind} checkpoint:\n{launch.output()}") from None
    text = launch.output()
    assert status != 0, f"ros2 launch exited 0 with a {kind} checkpoint:\n{text}"
    assert str(checkpoint) in text and "viewseg_node exited with status" in text, text
    if kind == "missing":
        assert "not found" in text and "viewseg_node exited with status 2" in text, text
    assert launch.leftovers() == []


# --------------------------------------------------------------------------- several cameras
def launch_lines(args: list[str], tmp_path: Path, patterns: list[str]) -> list[str]:
    """`ros2 launch device:=cpu ARGS`: the first output line matching each of ``patterns``, in
    order; then Ctrl-C ends the launch with status 0."""
    launch = Launch(["device:=cpu", *args], tmp_path, ros_env(), tmp_path / "launch.log")
    try:
        found = [launch.wait_for(pattern).group(0) for pattern in patterns]
        status, _ = launch.interrupt()
        assert status == 0, launch.output()
        return found
    finally:
        if launch.proc.poll() is None:
            launch.kill()


def assert_images_on(args: list[str], tmp_path: Path, topics: str) -> None:
    """The node's "ready:" line lists ``topics`` as its image subscriptions."""
    (ready,) = launch_lines(args, tmp_path, [r"\[viewseg\]: ready:.*"])
    assert f"images on {topics}" in ready, ready


@needs_launch
def test_several_cameras_subscribe_in_their_namespaces(tmp_path):
    """With ``cameras`` the topic arguments are relative names inside each camera's namespace
    (parameters, not remappings: a remapping of ``image`` would not reach /front/image)."""
    assert_images_on(["cameras:=/robot/front,/robot/rear", "image_topic:=color/image_raw",
                      "camera_info_topic:=color/camera_info"], tmp_path,
                     "/robot/front/color/image_raw, /robot/rear/color/image_raw")


@needs_launch
def test_a_params_file_keeps_what_the_arguments_leave_unset(tmp_path):
    """Launch arguments left at their defaults do not overwrite the params file: its cameras
    and topics stand (a default "" used to replace them, and a checkpoint set in the file alike)."""
    params = tmp_path / "robot.yaml"
    params.write_text(textwrap.dedent("""
        viewseg:
          ros__parameters:
            cameras: "/robot/left,/robot/right"
            image_topic: color/image_raw
            camera_info_topic: color/camera_info
    """))
    assert_images_on([f"params_file:={params}"], tmp_path, "/robot/left/color/image_raw, /robot/right/color/image_raw")


@needs_launch
def test_load_keyframes_starts_the_node_with_a_saved_folder(tmp_path):
    """``load_keyframes:=FOLDER`` reaches the node as keyframes.load_path: it logs the keyframes
    it took before "ready"."""
    import numpy as np

    from viewseg_core.data.records import View
    from viewseg_ros.keyframe_store import save_keyframes
    from viewseg_ros.keyframes import Keyframe

    K = np.array([[60.0, 0.0, 39.5], [0.0, 60.0, 29.5], [0.0, 0.0, 1.0]])
    views = []
    for i in range(2):
        c2w = np.eye(4)
        c2w[0, 3] = float(i)
        views.append(Keyframe(i, i * 10**9, View(rgb=np.full((60, 80, 3), 40 * i, np.uint8), K=K, c2w=c2w)))
    folder = save_keyframes(views, tmp_path / "house", "map")
    loaded, _ = launch_lines([f"load_keyframes:={folder}"], tmp_path,
                             [r"\[viewseg\]: loaded \d+ keyframes .*", r"\[viewseg\]: ready:.*"])
    assert f"loaded 2 keyframes (0 with depth) from {folder}, replacing the buffer" in loaded


@needs_launch
def test_pose_graph_topic_reaches_the_node(tmp_path):
    """``pose_graph_topic:=`` reaches the node as pose_graph.topic: its "ready:" line names the graph."""
    (ready,) = launch_lines(["pose_graph_topic:=/rtabmap/mapPath"], tmp_path, [r"\[viewseg\]: ready:.*"])
    assert "keyframes re-posed by the pose graph on /rtabmap/mapPath (odometry frame 'odom')" in ready, ready


@needs_launch
def test_pointcloud_topic_reaches_the_node(tmp_path):
    """``pointcloud_topic:=`` reaches the node: its "ready:" line names the cloud and the depth
    completion ``auto`` resolved to for it."""
    (ready,) = launch_lines(["pointcloud_topic:=/lidar/points"], tmp_path, [r"\[viewseg\]: ready:.*"])
    assert "keyframe depth from point clouds on /lidar/points (depth_completion columns)" in ready, ready


# --------------------------------------------------------------------------- colcon-style install
@needs_launch
def test_colcon_style_install_into_a_prefix_launches(tmp_path):
    """What colcon's ament_python build runs (`setup.py ... install --single-version-externally-
    managed`), into a temporary prefix; then `ros2 launch` from that prefix, outside the repo."""
    prefix = tmp_path / "install"
    install = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path), "build", "--build-base",
         str(tmp_path / "build"), "install", "--prefix", str(prefix), "--single-version-externally-managed",
         "--record", str(tmp_path / "installed_files.txt")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    share = prefix / "share" / PACKAGE
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    for name in ("package.xml", "launch/viewseg.launch.py", "config/viewseg.yaml", "checkpoints/demo.pt"):
        assert (share / name).is_file(), share / name
    for executable in ("viewseg_node", "viewseg_sim_camera"):  # setup.cfg: lib/<package>, not bin/
        assert os.access(prefix / "lib" / PACKAGE / executable, os.X_OK), executable
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert (site / PACKAGE / "node.py").is_file()

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    launch = Launch(["device:=cpu"], cwd, ros_env([prefix], pythonpath=site), cwd / "launch.log")
    try:
        ready = launch.wait_for(r"\[viewseg\]: ready: .* from (\S+) on ")
        commands = "\n".join(group_members(launch.proc.pid))
        assert str(prefix / "lib" / PACKAGE / "viewseg_node") in commands, commands
        status, seconds = launch.interrupt(timeout=10.0)
    finally:
        if launch.proc.poll() is None:
            launch.kill()
    assert status == 0, launch.output()
    assert_clean(launch)
    loaded = ready.group(1)
    assert loaded.startswith(str(prefix)), f"the node loaded {loaded}, not the installed checkpoint under {prefix}"


LIFECYCLE_CLIENT = textwrap.dedent("""
    import sys, time
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    rclpy.init()
    node = rclpy.create_node("viewseg_lifecycle_test_client")
    change = node.create_client(ChangeState, "/viewseg/change_state")
    get = node.create_client(GetState, "/viewseg/get_state")
    for client in (change, get):
        if not client.wait_for_service(timeout_sec=float(sys.argv[1])):
            sys.exit(f"no service {client.srv_name}")

    def call(client, request):
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=60.0)
        return future.result()

    print("state:", call(get, GetState.Request()).current_state.label, flush=True)
    for label in ("configure", "activate"):
        print(label + ":", call(change, ChangeState.Request(transition=Transition(label=label))).success, flush=True)
    print("state:", call(get, GetState.Request()).current_state.label, flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
""")


@needs_launch
def test_managed_launch_waits_for_a_lifecycle_manager(tmp_path):
    """``managed:=true``: the launched node starts unconfigured (no model loaded, no "ready:"
    line) and serves once a separate process configures and activates it through its lifecycle
    services, as nav2_lifecycle_manager does; Ctrl-C then ends the launch cleanly."""
    with stopped_cleanly(["device:=cpu", "managed:=true"], tmp_path) as launch:
        launch.wait_for(r"\[viewseg\]: unconfigured \(managed: true\)")
        assert "ready:" not in launch.output()
        client = subprocess.run([sys.executable, "-c", LIFECYCLE_CLIENT, "60"], env=launch.env, capture_output=True,
                                text=True, timeout=120, cwd=tmp_path)
        assert client.returncode == 0, f"client: {client.stdout}{client.stderr}\nlaunch:\n{launch.output()}"
        assert client.stdout.split() == ["state:", "unconfigured", "configure:", "True", "activate:", "True",
                                         "state:", "active"], client.stdout
        launch.wait_for(r"\[viewseg\]: active: admitting keyframes and answering queries")
        assert "ready:" in launch.output()


@needs_launch
def test_namespace_and_namespaced_tf_serve_one_robot(tmp_path):
    """``namespace:=robot1 namespaced_tf:=true sim:=true``: both nodes start in /robot1, the sim
    publishes its TF on /robot1/tf, the node reads it there, and a separate client's query to
    /robot1/viewseg/render_view is answered from keyframes posed by it."""
    # A robot's own params file, written for the node `viewseg` as usual: it must apply in the
    # namespace too (ROS alone would read `viewseg:` as /viewseg and ignore it for /robot1/viewseg).
    config = yaml.safe_load((REPO / "config" / "viewseg.yaml").read_text())
    config["viewseg"]["ros__parameters"]["query"]["preset"] = "fast"   # the shipped file's is "auto"
    params = tmp_path / "robot1.yaml"
    params.write_text(yaml.safe_dump(config))
    args = ["sim:=true", "device:=cpu", "namespace:=robot1", "namespaced_tf:=true", f"params_file:={params}"]
    with stopped_cleanly(args, tmp_path) as launch:
        ready = launch.wait_for(r"\[robot1\.viewseg\]: ready:.*").group(0)
        assert "images on /robot1/image" in ready, ready
        launch.wait_for(r"\[robot1\.viewseg_sim_camera\]: replaying")
        client_code = CLIENT.replace('"/viewseg/', '"/robot1/viewseg/')
        client = subprocess.run([sys.executable, "-c", client_code, "60"], env=launch.env, capture_output=True,
                                text=True, timeout=90, cwd=tmp_path)
        assert client.returncode == 0 and "success: 40x30" in client.stdout, (
            f"client: {client.stdout}{client.stderr}\nlaunch:\n{launch.output()}")
        assert "query.preset: fast" in client.stdout, client.stdout
        graph = subprocess.run([sys.executable, "-c", TF_GRAPH], env=launch.env, capture_output=True, text=True,
                               timeout=60, cwd=tmp_path)
        # The sim publishes on /robot1/tf and viewseg reads it there; nothing on the global /tf.
        assert graph.stdout.split() == ["/robot1/tf", "1", "1", "/tf", "0", "0"], graph.stdout + graph.stderr


TF_GRAPH = textwrap.dedent("""
    import time
    import rclpy

    rclpy.init()
    node = rclpy.create_node("viewseg_tf_graph_probe")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (node.count_publishers("/robot1/tf") and
                                               node.count_subscribers("/robot1/tf")):
        rclpy.spin_once(node, timeout_sec=0.2)
    time.sleep(1.0)   # discovery of anything on /tf as well
    for topic in ("/robot1/tf", "/tf"):
        print(topic, node.count_publishers(topic), node.count_subscribers(topic))
    node.destroy_node()
    rclpy.try_shutdown()
""")


PARAMETER_PROBE = textwrap.dedent("""
    import sys
    import rclpy
    from rcl_interfaces.srv import GetParameters

    rclpy.init()
    node = rclpy.create_node("viewseg_parameter_probe")
    client = node.create_client(GetParameters, "/viewseg/get_parameters")
    if not client.wait_for_service(timeout_sec=30.0):
        sys.exit("no /viewseg/get_parameters")
    future = client.call_async(GetParameters.Request(names=sys.argv[1:]))
    rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
    for name, value in zip(sys.argv[1:], future.result().values):
        print(name, value.type, value.bool_value)
    node.destroy_node()
    rclpy.try_shutdown()
""")


@needs_launch
def test_use_sim_time_and_managed_reach_the_node_as_bools(tmp_path):
    """``use_sim_time:=true`` (the node's clock follows /clock) and ``managed:=true`` arrive as
    bool parameters (type 1), not as the text "true"."""
    with stopped_cleanly(["device:=cpu", "use_sim_time:=true", "managed:=true"], tmp_path) as launch:
        launch.wait_for(r"\[viewseg\]: unconfigured \(managed: true\)")
        probe = subprocess.run([sys.executable, "-c", PARAMETER_PROBE, "use_sim_time", "managed"], env=launch.env,
                               capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert probe.stdout.split() == ["use_sim_time", "1", "True", "managed", "1", "True"], (
            probe.stdout + probe.stderr + launch.output())
