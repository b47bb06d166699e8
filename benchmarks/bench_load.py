"""The viewseg node under load: concurrent clients while a camera-sized stream comes in (issue 17).

Three processes on one machine, as on a robot: the node (``python -m viewseg_ros.node`` with
config/viewseg.yaml, the demo checkpoint), a camera (``python -m viewseg_ros.camera_stream``,
640x480 rgb8 at 15 Hz, a new view every ``--frames-per-view`` frames) and this process, which
runs ``--clients`` client threads that call ``/viewseg/render_view`` back to back, each at
one of the last 8 views the camera has passed (read from its /tf). All three use config/fastdds_large_images.xml.

Two phases with the same stream:

1. **idle**: the camera streams for ``--idle`` seconds, nobody queries: the keyframe
   admission rate (new keyframes per new view) the node reaches on its own;
2. **load**: the camera streams on (views it has not shown before) for ``--duration``
   seconds while the clients query.

Reported (and appended as a row of the "Load" section of docs/benchmarks.md):

- requests answered with success, answered ``busy``, answered with another refusal, and
  **lost** (no answer within ``query.timeout_s`` + 10 s; target 0);
- latency p50 / p99 of the successful answers;
- keyframe admission under load as a share of the idle rate (target >= 80%);
- the node's RSS (from /proc) after warm-up (the first 10% of the load phase) and at the
  end, and its drift (target: within 10% over 10 minutes, ``--duration 600``). Part of that
  growth is bounded by design: the keyframe store fills up to ``keyframes.max_keyframes`` /
  ``max_bytes`` and the prepared-source cache up to ``query.prepared_cache`` entries, both
  read from /diagnostics each second. So the drift is also given less their growth (what a
  leak would show), and the growth over the last half of the load phase (a leak keeps
  growing; a cache that filled up does not). ``--series`` writes every sample as JSON,
  ``--plot`` draws them (RSS, keyframes, cache over time) as a PNG, and ``--plot-with``
  adds the RSS of earlier runs' series files to that chart;
- the node's CPU time (user + system, from /proc) per second of each phase, in cores: what
  keeping up with the camera costs a robot computer when nobody queries (per second of
  frames sent), and under load (where renders take whatever is left). The executor
  comparison needs it: rclpy's executor re-submits queued callbacks
  (viewseg_ros/executor.py), which costs CPU before it costs served queries.

    python benchmarks/bench_load.py --quick            # ~40 s: 2 clients, 8 s of load
    python benchmarks/bench_load.py                    # 4 clients, 60 s
    python benchmarks/bench_load.py --duration 600     # the 10-minute RSS target
    python benchmarks/bench_load.py --depth            # an RGB-D camera (aligned depth) and demo_rgbd.pt
    # its memory over time, beside an earlier run's (e.g. at another commit, written with --series):
    python benchmarks/bench_load.py --duration 600 --plot rss.png --plot-with earlier.json
    python benchmarks/bench_load.py --executor rclpy   # the node on rclpy's own MultiThreadedExecutor
    python benchmarks/bench_load.py --cameras 2        # two such cameras into one node (parameter cameras)

With ``--cameras N`` the node reads N camera streams (namespaces /cam0 ... /cam{N-1}, optical
frames cam{k}_optical) at the same size and rate, each showing views of its own (camera k's
are 10 km along the line from camera 0's, so every camera's views are new); the clients
query camera 0's views; admission counts the keyframes of all cameras against all their views.
"""
from __future__ import annotations

import argparse
import collections
import datetime as _dt
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

PROFILE = ROOT / "config" / "fastdds_large_images.xml"
CAMERA_HZ = 15.0  # the camera process's frame rate
# Before rclpy creates this process's participant: the profile and a private loopback domain.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(PROFILE))

from report import add_record_arguments, append_rows, cpu_name, cpu_seconds, line_chart, load_avg  # noqa: E402  (benchmarks/report.py)
from viewseg_ros.executor import DEFAULT_EXECUTOR, EXECUTORS  # noqa: E402

SECTION = "## Load: concurrent clients while a 640x480 camera streams (issue 17)"
DEPTH_TOPIC = "depth"   # --depth: the stream's aligned depth topic, and the node's depth_topic
TABLE_HEADER = ("| date | device | clients | load s | query | served | busy | refused | lost | p50 ms | p99 ms "
                "| render p50 ms | admission vs idle | RSS after warm-up MB | RSS end MB | RSS drift "
                "| keyframes (warm-up, end) | keyframes + cache growth MB | drift less keyframes + cache "
                "| RSS growth, last half | mean RSS, later vs earlier half | node CPU idle (cores) "
                "| node CPU load (cores) | load avg |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
INTRO = ("`python benchmarks/bench_load.py` (see its docstring). Node, camera and clients are three "
         "processes on the same machine with config/fastdds_large_images.xml. Targets: 0 lost, admission "
         ">= 80% of the idle rate, RSS drift within 10% over 10 minutes (`--duration 600`).\n\n")


@dataclass
class MemorySample:
    """One reading, ``t`` seconds into the load phase: the node's RSS, and what its bounded
    stores held (from its last /diagnostics message), all in MiB."""

    t: float
    rss_mb: float
    keyframes: int
    keyframe_mb: float
    cache_mb: float


def memory_summary(samples: list[MemorySample], load_s: float) -> dict[str, float]:
    """RSS drift from the end of warm-up (the first 10% of ``load_s``) to the last sample, the
    same drift less the growth of the keyframe store and the prepared cache (both bounded by
    parameters), the RSS growth over the last half of the load phase, and the mean RSS of the
    later half of the time after warm-up against the mean of the earlier half (``mean_growth``:
    a trend that a saw-tooth, such as the node's periodic heap release, does not decide by the
    phase its last sample falls in), each as a share of the RSS after warm-up. NaN where there
    is no sample to read."""
    warm = [s for s in samples if s.t >= 0.1 * load_s] or samples
    nan = float("nan")
    if not warm:
        return dict(rss_start=nan, rss_end=nan, drift=nan, keyframes_start=nan, keyframes_end=nan,
                    bounded_growth_mb=nan, drift_unbounded=nan, last_half_growth=nan, mean_growth=nan)
    start, end = warm[0], warm[-1]
    half = next((s for s in warm if s.t >= 0.5 * load_s), end)
    bounded = (end.keyframe_mb + end.cache_mb) - (start.keyframe_mb + start.cache_mb)
    middle = (start.t + end.t) / 2
    earlier = [s.rss_mb for s in warm if s.t < middle]
    later = [s.rss_mb for s in warm if s.t >= middle]
    mean_growth = ((sum(later) / len(later) - sum(earlier) / len(earlier)) / start.rss_mb
                   if earlier and later else nan)
    return dict(rss_start=start.rss_mb, rss_end=end.rss_mb, drift=(end.rss_mb - start.rss_mb) / start.rss_mb,
                keyframes_start=start.keyframes, keyframes_end=end.keyframes, bounded_growth_mb=bounded,
                drift_unbounded=(end.rss_mb - start.rss_mb - bounded) / start.rss_mb,
                last_half_growth=(end.rss_mb - half.rss_mb) / start.rss_mb, mean_growth=mean_growth)


CACHE_MIB = re.compile(r"([0-9.]+) MiB")


def stores_mb(diagnostics: dict[str, str]) -> tuple[int, float, float]:
    """(keyframes, keyframe MiB, prepared-cache MiB) from the node's /diagnostics values."""
    cache = CACHE_MIB.search(diagnostics.get("prepared_cache", ""))
    return (int(diagnostics.get("keyframes", 0)), int(diagnostics.get("keyframe_bytes", 0)) / 2**20,
            float(cache.group(1)) if cache else float("nan"))


def git_commit() -> str:
    """The short commit of this checkout, '+' when it has uncommitted changes ('' outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+" if commit and dirty else "")


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (NaN once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


VIEWS_APART = 20000  # view offset between cameras (10 km at 0.5 m a view): each camera's views are new


class Camera:
    """The camera process: ``views`` views from ``first_view``, ``frames_per_view`` frames each, at 15 Hz;
    camera ``index`` of several publishes in namespace /cam{index} with frame cam{index}_optical."""

    def __init__(self, first_view: int, views: int, frames_per_view: int, width: int, height: int,
                 depth_topic: str = "", index: int | None = None):
        self.first_view, self.views = first_view, views
        several = [] if index is None else ["-r", f"__ns:=/cam{index}", "-p", f"camera_frame:=cam{index}_optical"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "viewseg_ros.camera_stream", "--ros-args", "-p", f"first_view:={first_view}",
             "-p", f"views:={views}", "-p", f"frames_per_view:={frames_per_view}", "-p", f"rate:={CAMERA_HZ}",
             "-p", f"width:={width}", "-p", f"height:={height}", "-p", "start_delay_s:=0.5", *several]
            + (["-p", f"depth_topic:={depth_topic}"] if depth_topic else []),   # ROS cannot parse an empty value
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.started = time.monotonic()

    def finish(self) -> dict:
        out, err = self.process.communicate(timeout=120)
        if self.process.returncode != 0:
            raise RuntimeError(f"camera_stream failed: {err[-2000:]}")
        return json.loads(out.strip().splitlines()[-1])


def start_cameras(count: int, first_view: int, views: int, frames_per_view: int, width: int, height: int,
                  depth_topic: str) -> list[Camera]:
    """One camera as before (its topics in the root namespace), or ``count`` in /cam0, /cam1, ..."""
    if count == 1:
        return [Camera(first_view, views, frames_per_view, width, height, depth_topic)]
    return [Camera(first_view + k * VIEWS_APART, views, frames_per_view, width, height, depth_topic, index=k)
            for k in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of the idle phase")
    parser.add_argument("--query-size", default="160x120", help="WIDTHxHEIGHT of each query")
    parser.add_argument("--frames-per-view", type=int, default=6)
    parser.add_argument("--camera-size", default="640x480")
    parser.add_argument("--checkpoint", default="", help="model file (default: the demo checkpoint, "
                                                         "checkpoints/demo_rgbd.pt with --depth)")
    parser.add_argument("--depth", action="store_true",
                        help="an RGB-D camera: the stream also publishes aligned 32FC1 depth on 'depth', which the "
                             "node reads (depth_topic), and the node loads the RGB-D demo checkpoint")
    parser.add_argument("--cameras", type=int, default=1,
                        help="camera streams into the one node (its parameter cameras: /cam0, /cam1, ...)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--executor", choices=EXECUTORS, default=DEFAULT_EXECUTOR,
                        help="the node's executor parameter (submit_once: its default, viewseg_ros/executor.py; "
                             "rclpy: rclpy's MultiThreadedExecutor as it is)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="one more node parameter, as ros2 run's -p takes it (repeatable; e.g. "
                             "query.point_budget:=12288); the recorded row names it")
    parser.add_argument("--quick", action="store_true", help="2 clients, 10 s of load, 8 s idle, 80x60 queries")
    add_record_arguments(parser)
    parser.add_argument("--series", type=Path, help="write every memory sample of the load phase here (JSON)")
    parser.add_argument("--plot", type=Path, help="draw the memory samples here (PNG): RSS, keyframes, cache")
    parser.add_argument("--plot-with", type=Path, nargs="*", default=[], metavar="SERIES",
                        help="--series files of earlier runs (e.g. at another commit): their RSS in the same chart")
    args = parser.parse_args(argv)
    earlier = []
    for path in args.plot_with:   # checked now, not after a 10-minute run
        try:
            run = json.loads(path.read_text())
            if not all(isinstance(s["t"], (int, float)) and isinstance(s["rss_mb"], (int, float))
                       for s in run["samples"]):
                raise ValueError("a sample without a numeric t and rss_mb")
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--plot-with {path}: not a --series file ({type(error).__name__}: {error})")
        earlier.append((path, run))
    for param in args.param:
        name, sep, value = param.partition(":=")
        if not (sep and name.strip() and value.strip()) or " " in name:
            parser.error(f"--param {param!r}: use NAME:=VALUE, e.g. query.point_budget:=12288")
    if args.quick:
        args.clients, args.duration, args.idle, args.query_size = 2, 8.0, 6.0, "80x60"
    for name in ("clients", "duration", "idle", "frames_per_view", "cameras"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    try:
        qw, qh = (int(v) for v in args.query_size.lower().split("x"))
        cw, ch = (int(v) for v in args.camera_size.lower().split("x"))
    except ValueError:
        parser.error(f"--query-size and --camera-size are WIDTHxHEIGHT, got {args.query_size!r}, {args.camera_size!r}")

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node

    from viewseg_interfaces.srv import RenderView
    from tf2_msgs.msg import TFMessage

    from viewseg_ros.camera_stream import PARAMETERS as CAMERA_PARAMETERS
    from viewseg_ros.camera_stream import view_pose
    from viewseg_ros.conversions import matrix_to_pose_stamped

    node_cmd = [sys.executable, "-m", "viewseg_ros.node", "--ros-args", "--params-file",
                str(ROOT / "config" / "viewseg.yaml"), "-p", f"device:={args.device}",
                "-p", "diagnostics_period_s:=0.5", "-p", f"executor:={args.executor}"]
    depth_topic = DEPTH_TOPIC if args.depth else ""
    checkpoint = args.checkpoint or (str(ROOT / "checkpoints" / "demo_rgbd.pt") if args.depth else "")
    if checkpoint:
        node_cmd += ["-p", f"checkpoint:={checkpoint}"]
    if depth_topic:
        node_cmd += ["-p", f"depth_topic:={depth_topic}"]
    if args.cameras > 1:
        node_cmd += ["-p", "cameras:=" + ",".join(f"/cam{k}" for k in range(args.cameras))]
    for param in args.param:
        node_cmd += ["-p", param]
    node_log = open(os.devnull, "w")
    server = subprocess.Popen(node_cmd, cwd=ROOT, stdout=node_log, stderr=subprocess.STDOUT)
    rclpy.init()
    client_node = Node("viewseg_bench_load")
    diagnostics: dict[str, str] = {}
    client_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
        {kv.key: kv.value for kv in m.status[0].values}), 10)
    spacing, turn_deg = CAMERA_PARAMETERS["spacing"][0], CAMERA_PARAMETERS["turn_deg"][0]
    camera_frame = CAMERA_PARAMETERS["camera_frame"][0] if args.cameras == 1 else "cam0_optical"
    camera_view = [-1]  # the view the camera is at now: view i sits at x = i * spacing

    def on_tf(message) -> None:
        for transform in message.transforms:
            if transform.child_frame_id == camera_frame:
                camera_view[0] = round(transform.transform.translation.x / spacing)
    client_node.create_subscription(TFMessage, "/tf", on_tf, 100)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(client_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 120
        while "keyframes_admitted" not in diagnostics:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the node did not start (run it by hand: " + " ".join(node_cmd) + ")")
            time.sleep(0.2)
        timeout_s = 30.0 + 10.0

        def admitted() -> int:
            stamp = time.monotonic()
            seen = diagnostics.get("keyframes_admitted")
            while diagnostics.get("keyframes_admitted") == seen and time.monotonic() - stamp < 1.5:
                time.sleep(0.05)  # the next diagnostics message, so the count is current
            return int(diagnostics["keyframes_admitted"])

        # ---- idle phase
        idle_views = max(4, int(args.idle * CAMERA_HZ / args.frames_per_view))
        before = admitted()
        cpu0 = cpu_seconds(server.pid)
        cameras = start_cameras(args.cameras, 0, idle_views, args.frames_per_view, cw, ch, depth_topic)
        streamed = max((camera.finish() for camera in cameras), key=lambda summary: summary["elapsed_s"])
        # Per second of frames (lead-in included), not of the camera process's start-up, which
        # takes seconds and would dilute it.
        idle_cpu = (cpu_seconds(server.pid) - cpu0) / (streamed["elapsed_s"] + streamed["lead_in_frames"] / CAMERA_HZ)
        time.sleep(1.5)
        idle_rate = (admitted() - before) / (idle_views * args.cameras)
        print(f"idle: {idle_rate:.0%} of {idle_views} views became keyframes; the node used {idle_cpu:.2f} cores")

        # ---- load phase
        load_views = max(4, int(args.duration * CAMERA_HZ / args.frames_per_view))
        first = idle_views + 10
        before = admitted()
        results: list[tuple[str, float, float]] = []  # (outcome, seconds end to end, node's render_time)
        results_lock = threading.Lock()
        reasons: collections.Counter = collections.Counter()
        stop = threading.Event()
        cameras = start_cameras(args.cameras, first, load_views, args.frames_per_view, cw, ch, depth_topic)
        samples: list[MemorySample] = []

        def client_loop(index: int) -> None:
            client = client_node.create_client(RenderView, "/viewseg/render_view")
            client.wait_for_service(timeout_sec=10.0)
            rng = random.Random(index)
            while not stop.is_set():
                # One of the last 8 views the camera has passed, as a planner asks about the
                # robot's surroundings (the camera process takes a few seconds to start, so its
                # clock says nothing about where it is: its /tf does). Whether the node kept
                # keyframes near them is what the bench measures, not what picks the view.
                current = camera_view[0]
                if current < first:
                    time.sleep(0.05)
                    continue
                view = rng.randrange(max(first, current - 7), current + 1)
                request = RenderView.Request()
                request.pose = matrix_to_pose_stamped(view_pose(view, spacing, turn_deg), "map")
                request.camera_info.width, request.camera_info.height = qw, qh
                t0 = time.monotonic()
                future = client.call_async(request)
                while not future.done() and time.monotonic() - t0 < timeout_s:
                    time.sleep(0.005)
                elapsed = time.monotonic() - t0
                render = float("nan")
                if not future.done():
                    outcome = "lost"
                    client.remove_pending_request(future)
                else:
                    response = future.result()
                    outcome = ("served" if response.success else
                               "busy" if response.message.startswith("busy") else "refused")
                    render = response.render_time
                    if outcome == "refused":
                        with results_lock:
                            reasons[response.message.split(":")[0][:80]] += 1
                with results_lock:
                    results.append((outcome, elapsed, render))

        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(args.clients)]
        load_start, load_cpu0 = time.monotonic(), cpu_seconds(server.pid)
        for thread in threads:
            thread.start()
        while any(camera.process.poll() is None for camera in cameras):
            samples.append(MemorySample(time.monotonic() - load_start, rss_mb(server.pid), *stores_mb(diagnostics)))
            time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=timeout_s + 5)
        for camera in cameras:
            camera.finish()
        load_s = time.monotonic() - load_start
        load_cpu = (cpu_seconds(server.pid) - load_cpu0) / load_s
        time.sleep(1.5)
        load_rate = (admitted() - before) / (load_views * args.cameras)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        executor.shutdown()
        rclpy.try_shutdown()

    counts = {k: sum(1 for outcome, _, _ in results if outcome == k) for k in ("served", "busy", "refused", "lost")}
    served = [t for outcome, t, _ in results if outcome == "served"]
    renders = [r for outcome, _, r in results if outcome == "served"]
    memory = memory_summary(samples, load_s)
    rss_start, rss_end, drift = memory["rss_start"], memory["rss_end"], memory["drift"]
    admission = load_rate / idle_rate if idle_rate > 0 else float("nan")
    p50, p99 = percentile(served, 0.5) * 1e3, percentile(served, 0.99) * 1e3
    render_p50 = percentile(renders, 0.5) * 1e3
    print(f"load: {args.clients} clients for {load_s:.0f} s, queries {qw}x{qh}: {counts}; "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (the node's render_time p50 {render_p50:.0f} ms; the rest is "
          f"waiting behind other clients' renders)")
    if reasons:
        print("refusals:", "; ".join(f"{n} x {why}" for why, n in reasons.most_common(3)))
    print(f"keyframe admission: {load_rate:.0%} under load vs {idle_rate:.0%} idle ({admission:.0%} of idle)")
    if args.cameras > 1:   # /diagnostics "camera /camK": "N keyframes; images ... Hz, ..."
        print("cameras: " + "; ".join(f"{key[len('camera '):]} {value.split(';')[0]}"
                                      for key, value in sorted(diagnostics.items()) if key.startswith("camera ")))
    if args.depth:
        print(f"depth: {diagnostics.get('keyframes_with_depth', '?')} keyframes with depth, "
              f"{diagnostics.get('keyframes_without_depth', '?')} without; model reads depth: "
              f"{diagnostics.get('model_reads_depth', '?')}; sampling {diagnostics.get('sampling', '?')}; "
              f"{diagnostics.get('keyframes_changed', '?')} dropped as the scene changed (the stream's world is "
              "static: any is a false drop)")
    print(f"node RSS: {rss_start:.0f} MB after warm-up, {rss_end:.0f} MB at the end ({drift:+.1%}); keyframes "
          f"{memory['keyframes_start']:.0f} -> {memory['keyframes_end']:.0f}, keyframes + cache "
          f"{memory['bounded_growth_mb']:+.0f} MB, so {memory['drift_unbounded']:+.1%} less them; "
          f"{memory['last_half_growth']:+.1%} over the last half; mean RSS of the later half after warm-up "
          f"{memory['mean_growth']:+.1%} against the earlier half")
    commit = git_commit()
    if args.series:
        args.series.parent.mkdir(parents=True, exist_ok=True)
        args.series.write_text(json.dumps({"load_s": load_s, "executor": args.executor, "commit": commit,
                                           "date": _dt.date.today().isoformat(),
                                           "samples": [asdict(s) for s in samples]}, indent=1))
        print(f"memory samples written to {args.series}")
    if args.plot:
        times, this_run = [s.t for s in samples], f"node RSS at {commit}"
        xs = {this_run: times, "keyframes": times, "prepared cache": times}
        ys = {this_run: [s.rss_mb for s in samples],
              "keyframes": [s.keyframe_mb for s in samples], "prepared cache": [s.cache_mb for s in samples]}
        for path, run in earlier:
            name = f"node RSS at {run.get('commit') or path.stem}"
            xs[name] = [sample["t"] for sample in run["samples"]]
            ys[name] = [sample["rss_mb"] for sample in run["samples"]]
        line_chart(args.plot, xs, ys,
                   f"viewseg_node memory, {args.clients} clients, "
                   f"{'camera' if args.cameras == 1 else f'{args.cameras} cameras'} {cw}x{ch} at {CAMERA_HZ:g} Hz "
                   f"({_dt.date.today().isoformat()}, {cpu_name()})", "seconds of load", "MiB")
        print(f"memory chart written to {args.plot}")
    print(f"node CPU: {idle_cpu:.2f} cores idle (camera only), {load_cpu:.2f} under load")
    if not args.no_record:
        camera_kind = ", RGB-D camera, demo_rgbd.pt" if args.depth and not args.checkpoint else (
            ", RGB-D camera" if args.depth else "")
        camera_kind += f", {args.cameras} cameras" if args.cameras > 1 else ""
        camera_kind += "".join(f", {param}" for param in args.param)
        device = (f"{cpu_name()} ({args.device}, executor {args.executor}{camera_kind}, "
                  f"at {commit or 'unknown commit'})")
        row = (f"| {_dt.date.today().isoformat()} | {device} | {args.clients} | {load_s:.0f} | "
               f"{qw}x{qh} | {counts['served']} | {counts['busy']} | {counts['refused']} | {counts['lost']} | "
               f"{p50:.0f} | {p99:.0f} | {render_p50:.0f} | {admission:.0%} | {rss_start:.0f} | {rss_end:.0f} | "
               f"{drift:+.1%} | {memory['keyframes_start']:.0f}, {memory['keyframes_end']:.0f} | "
               f"{memory['bounded_growth_mb']:+.0f} | {memory['drift_unbounded']:+.1%} | "
               f"{memory['last_half_growth']:+.1%} | {memory['mean_growth']:+.1%} | {idle_cpu:.2f} | {load_cpu:.2f} | {load_avg():.1f} |\n")
        append_rows(args.output, SECTION, TABLE_HEADER, [row], INTRO)
        print(f"row appended to {args.output}")
    return 0 if counts["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
