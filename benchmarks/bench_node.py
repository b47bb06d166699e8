"""What the viewseg node's ``~/render_view`` service adds to the render (issue 8, section 3).

One process, no DDS: a :class:`viewseg_ros.node.ViewSegNode` is built with its real
parameters, its keyframe buffer is filled from the simulated room (sim room 0, the walk
of :class:`viewseg_ros.sim_camera.SimWorld`, keyframes encoded by the node), its TF buffer
holds the robot's walk (``map -> base_link`` at 10 Hz, static ``base_link ->
camera_optical``), and the service callback is called directly for poses the walk never
took. Each query pose is expressed in ``camera_optical`` at a stamp between two TF samples,
so every call pays a real TF lookup (a two-edge chain with interpolation).

Per call:

- service ms: wall time of the service callback (``ViewSegNode._on_render_view``);
- render ms: the node's own ``render_time`` of the same call (stacking the cached keyframe
  features, ``render_query`` with the node's ``query.preset``, the argmax, freeing the
  render's tensors);
- overhead ms = service - render: pose checks, TF, keyframe snapshot, source selection,
  labels/depth/confidence to numpy, the four output Images + CameraInfo, the response.
  The issue's target is < 5 ms.
- breakdown (medians over calls): ``tf`` (the lookup), ``select`` (source selection),
  ``to numpy`` (device -> numpy outputs), ``messages`` (Images + CameraInfo), ``other`` =
  the call's overhead minus those four (pose checks, keyframe snapshot, the response, and
  on a loaded machine the time the process waited for a core).

Also printed (not recorded): ``render_query`` alone with the same sources and preset, timed separately.
The first round of calls is warm-up and not counted. The machine's 1-minute load average
is recorded next to each row (the development machine is shared: on a loaded machine the
p10 is the closest to an idle one). DDS transport (serialising ~1 MB of images at 320x240
and the client round trip) is not included.

    python benchmarks/bench_node.py --quick      # ~20 s on 2 loaded cores, a tiny random model
    python benchmarks/bench_node.py              # 160x120 and 320x240, 20 and 64 keyframes
    python benchmarks/bench_node.py --checkpoint checkpoints/demo.pt --device cuda

Rows go to the "Node latency" section of docs/benchmarks.md (``--no-record`` to skip).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

# Loopback only and a private domain: the node creates real publishers and subscriptions.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from report import add_record_arguments, append_rows, cpu_name, load_avg  # noqa: E402  (benchmarks/report.py)

SECTION = "## Node latency: what the render_view service adds to the render (issue 8, section 3)"
TABLE_HEADER = ("| date | device | load avg | model | size | keyframes | calls | render p10 / median / p90 ms "
                "| service p10 / median / p90 ms | overhead p10 / median / p90 ms | tf | select | to numpy "
                "| messages | other | overhead < 5 ms |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
INTRO = ("`python benchmarks/bench_node.py [--quick]` (see its docstring). Columns: service = the "
         "`~/render_view` callback's wall time; render = the node's `render_time` of the same call; "
         "overhead = service - render; tf / select / to numpy / messages / other = median ms of the "
         "overhead's parts. DDS transport is not included.\n\n")
TF_RATE_HZ = 10.0
QUERY_POSES = 4
BREAKDOWN = (("tf", "tf"), ("select", "select"), ("to numpy", "outputs"), ("messages", "to_msg"))


def device_name(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)} (CPU {cpu_name()}, {os.cpu_count()} cores)"
    return f"CPU {cpu_name()}, {os.cpu_count()} cores, {threads} thread{'s' if threads != 1 else ''}"


def tiny_checkpoint(path: Path) -> Path:
    """A random small ViewSeg (the overhead does not depend on the weights)."""
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    from viewseg_core.model.weights import save_model

    torch.manual_seed(0)
    config = ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=16, hidden_dim=32, n_blocks=1,
                         n_head_blocks=1, n_harmonic_xyz=4, n_harmonic_dir=2, num_coarse=8, num_fine=0)
    return save_model(ViewSeg(config), path)


def percentiles(values_s: list[float]) -> tuple[float, float, float]:
    """(p10, median, p90) in milliseconds."""
    ms = np.asarray(values_s) * 1e3
    return tuple(float(np.percentile(ms, q)) for q in (10, 50, 90))


def fill_tf(node, world, duration_s: float) -> None:
    """The robot's walk into the node's TF buffer: map -> base_link at TF_RATE_HZ, base_link -> camera_optical."""
    from viewseg_ros.tf_buffer import matrix_to_quaternion

    buffer = node.tf.buffer
    mount = world.mount
    buffer.add_transform("base_link", "camera_optical", 0, mount[:3, 3], matrix_to_quaternion(mount[:3, :3]),
                         static=True)
    for i in range(int(duration_s * TF_RATE_HZ) + 1):
        t = i / TF_RATE_HZ
        base = world.base_pose(t)
        buffer.add_transform("map", "base_link", int(round(t * 1e9)), base[:3, 3],
                             matrix_to_quaternion(base[:3, :3]))


def fill_keyframes(node, world, count: int, width: int, height: int) -> None:
    """``count`` keyframes along the walk, rendered at width x height, admitted as the node does
    (resized to its working size, encoded once), bypassing only the admission thresholds."""
    from viewseg_core.cameras import K_from_hfov
    from viewseg_core.data.records import View
    from viewseg_core.data.synth.render import render

    node.keyframes.clear()
    K = K_from_hfov(70.0, width, height)
    for i in range(count):
        t = 0.5 * world.period_s * i / count  # one pass along the walk
        c2w = world.camera_pose(t)
        rgb, K_kf = node._to_working_size(render(world.scene, K, c2w, height, width).rgb, K)
        stamp_ns = int(round(t * 1e9))
        node.keyframes.add(View(rgb=rgb, K=K_kf, c2w=c2w, view_id=str(stamp_ns), stamp=t), stamp_ns,
                           features=node._encode(rgb), force=True)


def query_requests(node, world, width: int, height: int) -> list:
    """Requests for QUERY_POSES unseen poses, each in camera_optical at a stamp between TF samples."""
    from viewseg_interfaces.srv import RenderView
    from viewseg_ros.conversions import matrix_to_pose_stamped

    requests = []
    for i, c2w in enumerate(world.unseen_poses(QUERY_POSES)):
        stamp_ns = int(round((0.5 * world.period_s * (i + 0.5) / QUERY_POSES + 0.5 / TF_RATE_HZ) * 1e9))
        T_map_cam = node.tf.buffer.lookup_transform("map", "camera_optical", stamp_ns).matrix
        request = RenderView.Request()
        request.pose = matrix_to_pose_stamped(np.linalg.inv(T_map_cam) @ c2w, "camera_optical", stamp_ns)
        request.camera_info.width, request.camera_info.height = width, height
        requests.append((request, c2w))
    return requests


def pure_render_s(node, response, c2w: np.ndarray, width: int, height: int) -> float:
    """``render_query`` alone with the sources and preset the service used (for reference)."""
    from viewseg_core.model.fast import render_query

    sources = node.keyframe_sources([node.keyframes.get(i) for i in response.keyframe_ids])
    K = torch.as_tensor(np.reshape(response.camera_info.k, (3, 3)))
    node._sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        render_query(node.model, K, torch.as_tensor(c2w), height, width, sources, node.preset)
    node._sync()
    return time.perf_counter() - t0


def measure(node, world, width: int, height: int, num_keyframes: int, rounds: int) -> dict:
    """One case: ``rounds`` x QUERY_POSES timed calls after one warm-up round."""
    from viewseg_interfaces.srv import RenderView

    fill_keyframes(node, world, num_keyframes, width, height)
    requests = query_requests(node, world, width, height)
    service, render, parts, pure = [], [], {key: [] for _, key in BREAKDOWN}, []
    for round_index in range(rounds + 1):
        for request, c2w in requests:
            t0 = time.perf_counter()
            response = node._on_render_view(request, RenderView.Response())
            elapsed = time.perf_counter() - t0
            if not response.success:
                raise RuntimeError(f"render_view failed: {response.message}")
            if round_index == 0:
                pure_render_s(node, response, c2w, width, height)  # warm-up
                continue
            service.append(elapsed)
            render.append(node.last_render_s)  # the response's float32, unrounded
            for _, key in BREAKDOWN:
                parts[key].append(node.last_timings[key])
            if round_index <= 2:
                pure.append(pure_render_s(node, response, c2w, width, height))
    overhead = [s - r for s, r in zip(service, render)]
    breakdown = {label: 1e3 * float(np.median(parts[key])) for label, key in BREAKDOWN}
    # Per call, what the four timed parts leave of the overhead (its median, not a difference
    # of medians: under load the parts' tails land in different calls).
    rest = [o - sum(parts[key][i] for _, key in BREAKDOWN) for i, o in enumerate(overhead)]
    breakdown["other"] = 1e3 * float(np.median(rest))
    return {"size": f"{width}x{height}", "keyframes": len(node.keyframes), "calls": len(service),
            "render": percentiles(render), "service": percentiles(service), "overhead": percentiles(overhead),
            "breakdown": breakdown, "pure_render_ms": 1e3 * float(np.median(pure)), "load": load_avg()}


def verdict(overhead: tuple[float, float, float]) -> str:
    p10, median, p90 = overhead
    if p90 < 5.0:
        return "p90 met"
    if median < 5.0:
        return "median met"
    return "p10 only" if p10 < 5.0 else "missed"


def triple(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="80x60, 8 keyframes, 2 rounds (~20 s)")
    parser.add_argument("--checkpoint", default="", help="viewseg-model file (default: a tiny random model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (node parameter num_threads)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", help="query (= keyframe) sizes WIDTHxHEIGHT")
    parser.add_argument("--keyframes", type=int, nargs="+", help="keyframe counts")
    parser.add_argument("--rounds", type=int, help=f"timed rounds of {QUERY_POSES} query poses")
    parser.add_argument("--preset", default="fast", help="node query.preset: fast, paper or checkpoint")
    parser.add_argument("--num-coarse", type=int, default=-1, help="node query.num_coarse (-1 = the preset's)")
    parser.add_argument("--num-fine", type=int, default=-1, help="node query.num_fine (-1 = the preset's)")
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    sizes = args.sizes or ([(80, 60)] if args.quick else [(160, 120), (320, 240)])
    counts = args.keyframes or ([8] if args.quick else [20, 64])
    rounds = args.rounds or (2 if args.quick else 8)

    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from viewseg_ros.node import ViewSegNode
    from viewseg_ros.sim_camera import SimWorld

    world = SimWorld.create(0, "human", 20.0)
    context = Context()
    rclpy.init(context=context)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_node_") as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(Path(tmp) / "tiny.pt")
        model_label = checkpoint.name if args.checkpoint else "tiny random"
        overrides = {"checkpoint": str(checkpoint), "device": args.device, "num_threads": args.threads,
                     "query.preset": args.preset, "query.num_coarse": args.num_coarse, "query.num_fine": args.num_fine,
                     "keyframes.max_keyframes": max(counts), "tf_wait_s": 0.0}
        node = ViewSegNode(context=context,
                           parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        try:
            fill_tf(node, world, 0.5 * world.period_s)  # one pass along the walk (TF keeps 10 s)
            model_label = f"{model_label}, {node.preset.label} samples"
            device = device_name(node.device, torch.get_num_threads())
            today = _dt.date.today().isoformat()
            print(f"device: {device}   model: {model_label}   load {load_avg():.1f}")
            print(f"{'size':>8} {'kf':>3} {'calls':>5}  {'render p10/med/p90 ms':>24}  "
                  f"{'service p10/med/p90 ms':>24}  {'overhead p10/med/p90 ms':>24}  "
                  f"{'tf':>5} {'select':>6} {'numpy':>5} {'msgs':>5} {'other':>5}  {'render_query':>12}  load")
            for width, height in sizes:
                for count in counts:
                    r = measure(node, world, width, height, count, rounds)
                    b = r["breakdown"]
                    print(f"{r['size']:>8} {r['keyframes']:>3} {r['calls']:>5}  {triple(r['render']):>24}  "
                          f"{triple(r['service']):>24}  {triple(r['overhead']):>24}  "
                          f"{b['tf']:5.2f} {b['select']:6.2f} {b['to numpy']:5.2f} {b['messages']:5.2f} "
                          f"{b['other']:5.2f}  {r['pure_render_ms']:10.1f} ms  {r['load']:.1f}", flush=True)
                    size = r["size"] + (" (quick)" if args.quick else "")
                    rows.append(f"| {today} | {device} | {r['load']:.1f} | {model_label} | {size} | {r['keyframes']} "
                                f"| {r['calls']} | {triple(r['render'])} | {triple(r['service'])} "
                                f"| {triple(r['overhead'])} | {b['tf']:.2f} | {b['select']:.2f} "
                                f"| {b['to numpy']:.2f} | {b['messages']:.2f} | {b['other']:.2f} "
                                f"| {verdict(r['overhead'])} |\n")
        finally:
            node.destroy_node()
            context.try_shutdown()
    if not args.no_record:
        append_rows(args.output, SECTION, TABLE_HEADER, rows, intro=INTRO)
        print(f"appended {len(rows)} row(s) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
