#!/usr/bin/env python3
"""`make demo`: a simulated robot camera, the viewseg node and a client, as three processes.

1. Starts ``viewseg_ros.sim_camera`` (a synthetic room replayed as 640x480 Image,
   CameraInfo, aligned depth through the depth-camera model, and TF) and ``viewseg_ros.node``
   as children, on loopback in a private ROS domain: by default the RGB-D demo model
   (checkpoints/demo_rgbd.pt, reading the depth topic, ``query.preset`` rgbd) and, beside it
   in namespace ``/rgb``, the paper-faithful RGB demo model (checkpoints/demo.pt) on the same
   camera; ``--rgb-only`` runs the RGB model alone (the demo before RGB-D).
2. This process is the client: it waits (via /diagnostics) until the node holds keyframes
   from the camera's whole walk through the room, then calls ``/viewseg/render_view`` for
   poses the camera never took (beside its walk, turned away from where it looked).
3. For each query it ray-casts the true semantics and depth of the same camera in the same
   room, saves a panel (true vs predicted semantics and depth, confidence) to
   ``out/demo/query_NN.png`` and prints the query's mIoU, depth error and latency (for
   RGB-D and RGB, side by side); all panels together go to ``out/demo/demo.png``.

``--restart`` saves each node's keyframes once the walk is in (``~/save_keyframes``), stops
the camera and the nodes, and runs the queries on nodes restarted from the saved folders
(``keyframes.load_path``): what a robot gets after a reboot in a room it has mapped.

``--lidar BEAMS`` gives the simulated robot a spinning LiDAR (BEAMS channels) above its camera,
and the RGB-D node reads its keyframes' depth from the point cloud (``pointcloud_topic``)
instead of the depth camera: what a robot with a LiDAR and a plain camera gets. With
``--lidar-sweep 0.1`` each sweep takes a tenth of a second while the robot moves, its points
carry their times, and the node deskews them (``--no-deskew``: it places each sweep with its
stamp's pose). ``--lidar-accumulate S`` registers the clouds of S seconds around each
keyframe's image into it, not only the paired one. ``--lidar-occlusion R`` drops the registered
depth that a nearer measurement R pixels away hides (``pointcloud_occlusion_radius``).

``--drift T,R`` localises the simulated robot like SLAM on odometry that drifts T metres and
R degrees per metre walked, correcting every ``--graph-period`` seconds and publishing its
optimised trajectory; the nodes follow it (``pose_graph.topic``) unless ``--no-pose-graph``,
in which case their keyframes keep the poses TF gave them at admission.

Child logs: out/demo/logs/. Exit status 0 when every query succeeded.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIM_HFOV_DEG = 70.0  # the sim camera's; also the node's query camera, as a request here gives no K
sys.path.insert(0, str(REPO))  # runnable from a checkout without `pip install -e .`


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None,
                   help="model file (default: checkpoints/demo_rgbd.pt, or demo.pt with --rgb-only)")
    p.add_argument("--rgb-only", action="store_true",
                   help="the RGB (paper) demo model alone, no depth topic: the demo as it was before RGB-D")
    p.add_argument("--rgb-checkpoint", default=str(REPO / "checkpoints" / "demo.pt"),
                   help="the RGB model run beside the RGB-D one")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="synthetic room of the simulated camera")
    p.add_argument("--kind", default="human", choices=("human", "robot"), help="camera height class")
    p.add_argument("--camera-size", default="640x480", help="simulated camera WxH (the node resizes to its "
                                                             "working size)")
    p.add_argument("--render-scale", type=float, default=0.25,
                   help="the simulated camera renders at this fraction of its size and upsamples")
    p.add_argument("--query-size", default="160x120", help="rendered query WxH")
    p.add_argument("--rate", type=float, default=5.0, help="simulated camera frame rate (Hz)")
    p.add_argument("--period", type=float, default=20.0,
                   help="seconds for the camera's walk through the room and back")
    p.add_argument("--distortion", default="",
                   help="plumb_bob coefficients 'k1,k2,p1,p2,k3' of the simulated camera's lens (e.g. "
                        "'-0.3,0.1,0,0,0'): it then publishes raw, distorted frames with that CameraInfo")
    from viewseg_core.rectify import RECTIFICATION_MODES

    p.add_argument("--rectification", default="auto", choices=RECTIFICATION_MODES,
                   help="the nodes' rectification parameter ('none': use CameraInfo.k and ignore the distortion)")
    p.add_argument("--lidar", type=int, default=0, metavar="BEAMS",
                   help="the robot also carries a spinning LiDAR with BEAMS channels (30 degrees vertical, 1 degree "
                        "steps), and the RGB-D node takes its keyframes' depth from the point cloud "
                        "(pointcloud_topic) instead of the depth camera")
    p.add_argument("--lidar-sweep", type=float, default=0.0, metavar="SECONDS",
                   help="with --lidar: each sweep takes SECONDS (0.1: a 10 Hz sensor) while the robot moves, and its "
                        "points carry their times (the sim's lidar_sweep_s); the RGB-D node deskews them")
    p.add_argument("--lidar-accumulate", type=float, default=0.0, metavar="SECONDS",
                   help="with --lidar: the RGB-D node registers the clouds of SECONDS around each keyframe's image "
                        "into it, not only the paired one (pointcloud_accumulate_s)")
    p.add_argument("--lidar-occlusion", type=int, default=0, metavar="PIXELS",
                   help="with --lidar: the RGB-D node drops the registered depth a nearer measurement this many "
                        "pixels away hides (pointcloud_occlusion_radius; 0 = keeps it)")
    p.add_argument("--no-deskew", action="store_true",
                   help="the RGB-D node places each sweep with its stamp's pose (pointcloud_time_field '')")
    p.add_argument("--depth-completion", default="auto", choices=("auto", "none", "columns"),
                   help="the RGB-D node's depth_completion (auto: columns with --lidar, else none)")
    p.add_argument("--unaligned-depth", action="store_true",
                   help="the simulated depth camera is not registered to the colour one (5 cm beside it, 87 degrees, "
                        "its own CameraInfo): the RGB-D node registers it (depth_camera_info_topic)")
    p.add_argument("--compressed", action="store_true",
                   help="the simulated camera publishes image_transport's compressed topics (JPEG colour, PNG depth) "
                        "and the nodes read them (image_transport, depth_transport)")
    p.add_argument("--second-camera", type=float, default=None, metavar="YAW",
                   help="the robot carries a second camera turned YAW degrees from the first (180: looking back): "
                        "the sim publishes both in namespaces /front and /rear, and the nodes read both "
                        "(parameter cameras)")
    p.add_argument("--query-yaw", type=float, default=0.0,
                   help="turn every query pose this many degrees further (180: looking back along the walk, where "
                        "the first camera never looked)")
    p.add_argument("--restart", action="store_true",
                   help="once the walk is in, save each node's keyframes (~/save_keyframes), stop the camera and "
                        "the nodes, and query nodes restarted from the saved folders (keyframes.load_path)")
    p.add_argument("--drift", default="", metavar="T,R",
                   help="odometry drift of the simulated robot, metres and degrees per metre walked (e.g. 0.02,1); "
                        "the sim camera then corrects it like SLAM and publishes its pose graph")
    p.add_argument("--graph-period", type=float, default=10.0,
                   help="with --drift: seconds between the simulated SLAM's corrections (0 = never)")
    p.add_argument("--no-pose-graph", action="store_true",
                   help="with --drift: the nodes ignore the pose graph (keyframes keep their admission poses)")
    p.add_argument("--queries", type=int, default=4)
    p.add_argument("--preset", default="fast", choices=("fast", "paper", "checkpoint"),
                   help="the node's query.preset (sampling per ray)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for keyframes")
    p.add_argument("--out", default=str(REPO / "out" / "demo"))
    return p.parse_args(argv)


def size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def start(name: str, command: list[str], logs: Path, env: dict) -> subprocess.Popen:
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{name}.log", "w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                            start_new_session=True)


def stop(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.checkpoint is None:
        args.checkpoint = str(REPO / "checkpoints" / ("demo.pt" if args.rgb_only else "demo_rgbd.pt"))
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        print(f"demo: the checkpoint {checkpoint} does not exist. Train the demo model first (README, "
              f"'train the demo model') or pass --checkpoint PATH.", file=sys.stderr)
        return 2
    out = Path(args.out)
    logs = out / "logs"
    cam_w, cam_h = size(args.camera_size)
    query_w, query_h = size(args.query_size)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    # Camera-sized images need the shared-memory profile in the camera's process (docs/ros.md).
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_large_images.xml"))
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"],
                      FASTDDS_DEFAULT_PROFILES_FILE=env["FASTDDS_DEFAULT_PROFILES_FILE"])

    py = sys.executable
    # The RGB-D model reads the sim camera's depth and samples around it (query.preset rgbd).
    depth_args = [] if args.rgb_only else ["-p", "depth_topic:=depth"]
    if args.lidar and not args.rgb_only:
        depth_args = ["-p", "pointcloud_topic:=/points"]   # depth_topic stays the params file's ""
    if not args.rgb_only:
        depth_args += ["-p", f"depth_completion:={args.depth_completion}"]
    if args.unaligned_depth and not args.rgb_only:
        depth_args += ["-p", "depth_camera_info_topic:=depth/camera_info"]
    sim_args = ["-p", "depth_baseline_m:=0.05", "-p", "depth_hfov_deg:=87.0"] if args.unaligned_depth else []
    if args.lidar:
        sim_args += ["-p", f"lidar_beams:={args.lidar}", "-p", f"lidar_sweep_s:={args.lidar_sweep}"]
    if args.lidar and args.lidar_accumulate and not args.rgb_only:
        depth_args += ["-p", f"pointcloud_accumulate_s:={args.lidar_accumulate}"]
    if args.lidar and args.lidar_occlusion and not args.rgb_only:
        depth_args += ["-p", f"pointcloud_occlusion_radius:={args.lidar_occlusion}"]
    if args.lidar and args.no_deskew and not args.rgb_only:
        depth_args += ["-p", "pointcloud_time_field:=''"]
    transport_args = ["-p", "image_transport:=compressed"] if args.compressed else []
    if args.compressed:
        sim_args += ["-p", "transport:=compressed"]
        if not args.rgb_only:
            depth_args += ["-p", "depth_transport:=compressedDepth"]
    camera_args = []
    if args.drift:
        sim_args += ["-p", f"odometry_drift:={args.drift}", "-p", f"pose_graph_period_s:={args.graph_period}"]
        if not args.no_pose_graph:
            camera_args += ["-p", "pose_graph.topic:=/pose_graph"]
    if args.second_camera is not None:
        sim_args += ["-p", f"cameras:=front:0,rear:{args.second_camera:g}"]
        camera_args += ["-p", "cameras:=/front,/rear"]
    preset = args.preset if args.rgb_only or args.preset != "fast" else "rgbd"
    commands = {
        "sim_camera": [py, "-m", "viewseg_ros.sim_camera", "--ros-args",
                                           "-p", f"seed:={args.seed}", "-p", f"rate:={args.rate}",
                                           "-p", f"width:={cam_w}", "-p", f"height:={cam_h}",
                                           "-p", f"render_scale:={args.render_scale}",
                                           "-p", f"period_s:={args.period}", "-p", f"kind:={args.kind}",
                                           "-p", f"hfov_deg:={SIM_HFOV_DEG}",
                       "-p", f"distortion:='{args.distortion}'", *sim_args],
        "viewseg": [py, "-m", "viewseg_ros.node", "--ros-args", "--params-file",
                    str(REPO / "config" / "viewseg.yaml"), "-p", f"checkpoint:={checkpoint}",
                    "-p", f"device:={args.device}", "-p", f"query.preset:={preset}",
                    "-p", f"rectification:={args.rectification}", *transport_args, *depth_args, *camera_args],
    }
    if not args.rgb_only:  # the RGB model beside, on the same camera
        commands["viewseg_rgb"] = [
            py, "-m", "viewseg_ros.node", "--ros-args", "-r", "__ns:=/rgb", "-r", "image:=/image",
            "-r", "camera_info:=/camera_info", "--params-file", str(REPO / "config" / "viewseg.yaml"),
            "-p", f"checkpoint:={args.rgb_checkpoint}", "-p", f"device:={args.device}",
            "-p", f"query.preset:={args.preset}", "-p", f"rectification:={args.rectification}", *transport_args,
            *camera_args]
    procs = {name: start(name, command, logs, env) for name, command in commands.items()}
    print(f"demo: sim camera + viewseg node started (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, logs in {logs})")
    try:
        return run_client(args, procs, out, logs, (query_w, query_h), commands, env)
    except KeyboardInterrupt:
        return 130
    finally:
        stop(procs)


def run_client(args, procs, out: Path, logs: Path, query_size: tuple[int, int], commands: dict[str, list[str]],
               env: dict) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    from viewseg_core.cameras import K_from_hfov
    from viewseg_core.classes import IGNORE_LABEL, colorize
    from viewseg_core.data.synth.render import render
    from viewseg_core.metrics import SegmentationEvaluator
    from viewseg_core.viz import colorize_depth, colorize_scalar, panel, save_png
    from viewseg_interfaces.srv import RenderView, SaveKeyframes
    from viewseg_ros.conversions import image_to_numpy, matrix_to_pose_stamped
    from viewseg_ros.sim_camera import SimWorld

    rclpy.init()
    node = rclpy.create_node("viewseg_demo_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    status: dict[str, str] = {}
    cloud_status: dict[str, str] = {}   # the node that reads the LiDAR (both nodes report as "viewseg")

    def on_diagnostics(msg):
        for s in msg.status:
            if s.name.startswith("viewseg:"):
                values = {kv.key: kv.value for kv in s.values}
                status.update(values)
                if values.get("received_pointcloud", "0") != "0":
                    cloud_status.update(values)

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    # label -> service: the demo's model, and (RGB-D demo) the RGB model beside it
    services = ({"rgb": "/viewseg/render_view"} if args.rgb_only else
                {"rgbd": "/viewseg/render_view", "rgb": "/rgb/viewseg/render_view"})
    clients = {label: node.create_client(RenderView, name) for label, name in services.items()}

    def alive() -> None:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"demo: {name} exited with status {proc.returncode}; its log:\n"
                                 f"{tail(logs / f'{name}.log')}")

    # The node is ready once its service exists (it loads and warms up the model first);
    # the keyframes of the whole walk are in half a period after the first keyframe.
    t0 = time.monotonic()
    first_keyframe = None
    while True:
        alive()
        executor.spin_once(timeout_sec=0.1)
        count = int(status.get("keyframes", 0))
        if count and first_keyframe is None:
            first_keyframe = time.monotonic()
            print(f"demo: first keyframe after {first_keyframe - t0:.1f} s; waiting for the camera's walk "
                  f"({args.period / 2:.0f} s)")
        if first_keyframe is not None and time.monotonic() - first_keyframe >= args.period / 2 + 1.0 \
                and all(c.service_is_ready() for c in clients.values()):
            break
        if time.monotonic() - t0 > args.timeout:
            raise SystemExit(f"demo: no keyframes after {args.timeout:.0f} s (keyframes: {count}); "
                             f"node log:\n{tail(logs / 'viewseg.log')}")
    print(f"demo: {status.get('keyframes')} keyframes on {status.get('device')}; querying {args.queries} unseen poses")
    if args.lidar and not args.rgb_only:
        print(f"demo: point clouds received {cloud_status.get('received_pointcloud')}, deskewed "
              f"{cloud_status.get('pointclouds_deskewed')}, placed with their stamp's pose for want of TF or readable "
              f"times {cloud_status.get('deskew_skipped')}")
    if args.restart:
        # The node behind each service: save its keyframes, stop the camera and the nodes, and
        # run the queries on nodes restarted from the saved folders with no camera at all, one
        # after the other (two starting at once on a small CPU slow each other's start).
        process_of = {"/viewseg/render_view": "viewseg", "/rgb/viewseg/render_view": "viewseg_rgb"}
        folders = {}
        for label, name in services.items():
            saver = node.create_client(SaveKeyframes, name.replace("render_view", "save_keyframes"))
            folder = out / f"keyframes_{label}"
            future = saver.call_async(SaveKeyframes.Request(path=str(folder)))
            executor.spin_until_future_complete(future, timeout_sec=60)
            response = future.result()
            if response is None or not response.success:
                raise SystemExit(f"demo: saving the {label} node's keyframes failed: "
                                 f"{response.message if response else 'no response'}")
            print(f"demo: {label}: {response.message}")
            folders[label] = folder
        stop(procs)
        procs.clear()
        print("demo: camera and node(s) stopped")
        for label, name in services.items():
            process = process_of[name]
            procs[process] = start(f"{process}_restarted", [*commands[process], "-p",
                                                            f"keyframes.load_path:={folders[label]}"], logs, env)
            t_restart = time.monotonic()
            while not clients[label].service_is_ready():
                alive()
                executor.spin_once(timeout_sec=0.1)
                if time.monotonic() - t_restart > args.timeout:
                    raise SystemExit(f"demo: the restarted {label} node did not come up in {args.timeout:.0f} s; "
                                     f"log:\n{tail(logs / f'{process}_restarted.log')}")
            loaded = [line for line in tail(logs / f"{process}_restarted.log", 200).splitlines() if "loaded " in line]
            print(f"demo: {label}: restarted without a camera, ready after {time.monotonic() - t_restart:.1f} s "
                  f"(model load and warm-up included): "
                  f"{loaded[-1].split(']: ')[-1] if loaded else '(no load line in its log)'}")

    world = SimWorld.create(args.seed, args.kind, args.period)  # the sim camera's room and walk
    scene = world.scene
    evaluators = {label: SegmentationEvaluator() for label in clients}
    abs_rels: dict[str, list[float]] = {label: [] for label in clients}
    answered = {label: 0 for label in clients}
    empties: dict[str, list[float]] = {label: [] for label in clients}
    rows_all, ok = [], True
    print(f"{'query':>5} {'model':>5} {'mIoU':>6} {'AbsRel':>7} {'empty':>6} {'render ms':>10} {'service ms':>11} "
          f"{'round trip ms':>14}  keyframes")
    for i, c2w in enumerate(world.unseen_poses(args.queries, args.query_yaw)):
        truth, rows = None, []
        for label, query_client in clients.items():
            request = RenderView.Request()
            request.pose = matrix_to_pose_stamped(c2w, "map")
            request.camera_info.width, request.camera_info.height = query_size
            t_call = time.perf_counter()
            future = query_client.call_async(request)
            executor.spin_until_future_complete(future, timeout_sec=300)
            round_trip = time.perf_counter() - t_call
            response = future.result()
            w, h = query_size
            if response is None or not response.success:
                ok = False
                print(f"{i:>5} {label:>5} failed: {response.message if response else 'no response'}")
                # A refused query knows nothing: every pixel counts as unknown in the totals.
                if truth is None:
                    truth = render(scene, K_from_hfov(SIM_HFOV_DEG, w, h), c2w, h, w)
                evaluators[label].add(np.full(truth.labels.shape, IGNORE_LABEL, np.uint8), truth.labels)
                empties[label].append(float(np.mean(np.isfinite(truth.depth))))
                continue
            answered[label] += 1
            K = np.reshape(response.camera_info.k, (3, 3))
            if truth is None or not rows:
                truth = render(scene, K, c2w, h, w)
                max_depth = float(np.nanpercentile(truth.depth, 99)) if np.isfinite(truth.depth).any() else None
                rows.append([("camera view (true)", truth.rgb), ("semantics: true", colorize(truth.labels)),
                             ("depth: true", colorize_depth(truth.depth, max_depth))])
            labels = image_to_numpy(response.semantic)
            depth = image_to_numpy(response.depth)
            confidence = image_to_numpy(response.confidence)
            miou = evaluators[label].add(labels, truth.labels)
            both = np.isfinite(depth) & np.isfinite(truth.depth)
            abs_rel = (float(np.mean(np.abs(depth[both] - truth.depth[both]) / truth.depth[both])) if both.any()
                       else np.nan)
            empty = float(np.mean(~np.isfinite(depth) & np.isfinite(truth.depth)))
            abs_rels[label].append(abs_rel)
            empties[label].append(empty)
            print(f"{i:>5} {label:>5} {miou:6.3f} {abs_rel:7.3f} {empty:6.1%} {response.render_time * 1e3:10.1f} "
                  f"{response.total_time * 1e3:11.1f} {round_trip * 1e3:14.1f}  {list(response.keyframe_ids)}")
            if response.message:
                print(f"      {label}: {response.message}")
            rows.append([(f"semantics: {label}", colorize(labels)), (f"confidence: {label}", colorize_scalar(confidence)),
                         (f"depth: {label}", colorize_depth(depth, max_depth))])
        if rows:
            save_png(out / f"query_{i:02d}.png", panel(rows))
            rows_all += rows
    if rows_all:
        save_png(out / "demo.png", panel(rows_all, tile_height=120))
    for label, evaluator in evaluators.items():
        if not empties[label]:
            continue
        scores = evaluator.scores()
        finite = [value for value in abs_rels[label] if np.isfinite(value)]
        print(f"demo: {label}: answered {answered[label]} of {args.queries} queries; mIoU over all queries "
              f"{scores['miou']:.3f} (per image {scores['per_image_miou']:.3f}), AbsRel median "
              f"{np.median(finite) if finite else np.nan:.3f}, empty {np.mean(empties[label]):.1%} "
              f"(pixels with a true depth but none rendered, mean over all queries; a refused query renders none)")
    if args.drift:
        executor.spin_once(timeout_sec=0.5)
        print(f"demo: pose graph (one node's /diagnostics): {status.get('pose_graph', 'not followed (--no-pose-graph)')}")
    print(f"demo: panels in {out}/")
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
