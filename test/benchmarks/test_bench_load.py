"""benchmarks/bench_load.py: its memory accounting (RSS drift less the bounded stores, growth over
the last half) by hand, and its --quick run end to end: three real processes, a row in the
"Load" table, the JSON samples and the chart."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_load.py"


def report_colours(bench):
    return sys.modules["report"].CHART_COLOURS            # benchmarks/report.py, as bench_load imported it


def test_memory_summary_separates_store_growth_from_the_rest(load_benchmark):
    bench = load_benchmark("bench_load")
    S = bench.MemorySample
    samples = [S(0.0, 500.0, 2, 10.0, 0.0),      # warm-up (t < 10% of 100 s): not the start
               S(10.0, 1000.0, 10, 100.0, 20.0),  # start
               S(40.0, 1100.0, 30, 180.0, 20.0),
               S(50.0, 1150.0, 40, 200.0, 20.0),  # first sample at half time
               S(100.0, 1200.0, 64, 250.0, 30.0)]  # end
    m = bench.memory_summary(samples, 100.0)
    assert (m["rss_start"], m["rss_end"]) == (1000.0, 1200.0)
    assert m["drift"] == pytest.approx(0.20)
    assert (m["keyframes_start"], m["keyframes_end"]) == (10, 64)
    assert m["bounded_growth_mb"] == pytest.approx(160.0)          # (250 + 30) - (100 + 20)
    assert m["drift_unbounded"] == pytest.approx(40.0 / 1000.0)    # 200 MB of RSS, 160 of it the stores
    assert m["last_half_growth"] == pytest.approx(50.0 / 1000.0)   # 1200 - 1150
    # After warm-up, t = 10..100: earlier half (t < 55) 1000, 1100, 1150; later half 1200.
    assert m["mean_growth"] == pytest.approx((1200.0 - 3250.0 / 3) / 1000.0)
    # A saw-tooth with no trend reads 0 whichever phase it ends in; the two-point drift does not.
    tooth = [S(float(t), 1000.0 + 100.0 * ((t - 10) % 4), 64, 5.0, 3.0) for t in range(10, 99)]
    trough, peak = bench.memory_summary(tooth, 100.0), bench.memory_summary(tooth[:-1], 100.0)
    assert trough["drift"] == pytest.approx(0.0) and peak["drift"] == pytest.approx(0.3)   # ends at 1000 / 1300
    assert abs(trough["mean_growth"]) < 0.01 and abs(peak["mean_growth"]) < 0.01
    empty = bench.memory_summary([], 10.0)
    assert all(math.isnan(v) for v in empty.values())


def test_stores_are_read_from_the_nodes_diagnostics_values(load_benchmark):
    bench = load_benchmark("bench_load")
    values = {"keyframes": "12", "keyframe_bytes": str(3 * 2**20),
              "prepared_cache": "4 hits, 2 misses, 2 entries, 17.5 MiB"}
    assert bench.stores_mb(values) == (12, 3.0, 17.5)
    count, kf, cache = bench.stores_mb({})
    assert (count, kf) == (0, 0.0) and math.isnan(cache)


def test_quick_run_records_a_row_the_samples_and_the_chart(tmp_path, ros_subprocess_env, load_benchmark):
    import cv2

    bench = load_benchmark("bench_load")
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# viewseg benchmarks\n\n{bench.SECTION}\n\nintro\n\n{bench.TABLE_HEADER}\nNotes stay below.\n")
    series, chart, earlier = tmp_path / "series.json", tmp_path / "rss.png", tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"commit": "abc1234", "samples": [{"t": 0.0, "rss_mb": 900.0},
                                                                    {"t": 8.0, "rss_mb": 1900.0}]}))
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--output", str(page), "--series", str(series),
                           "--plot", str(chart), "--plot-with", str(earlier),
                           "--param", "query.point_budget:=4096"], cwd=REPO, env=dict(ros_subprocess_env, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "less them" in done.stdout and "over the last half" in done.stdout
    text = page.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 20")]
    assert len(rows) == 1 and text.index(rows[0]) < text.index("Notes stay below.")
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == bench.TABLE_HEADER.splitlines()[0].count("|") - 1
    assert cells[8] == "0"                                       # lost
    assert cells[1].endswith(", query.point_budget:=4096, at " + cells[1].rsplit(" at ", 1)[1])  # --param named
    recorded = json.loads(series.read_text())
    assert recorded["commit"] and recorded["executor"] == "submit_once"
    samples = recorded["samples"]
    assert len(samples) >= 5 and all(s["rss_mb"] > 100 for s in samples)   # a node with torch and a model
    assert all(s["keyframes"] >= 1 and s["keyframe_mb"] > 0 for s in samples[len(samples) // 2:])
    image = cv2.imread(str(chart))
    assert image is not None and image.shape == (400, 800, 3)
    purple = np.array(report_colours(bench)[3][::-1])              # the earlier run's line (BGR)
    assert (np.abs(image.astype(int) - purple).sum(-1) < 60).sum() > 200


@pytest.mark.parametrize("content, why", [("not json", "JSONDecodeError"), ('{"commit": "x"}', "KeyError"),
                                          ('{"samples": [{"t": 0}]}', "KeyError"),
                                          ('{"samples": [{"t": "a", "rss_mb": 1}]}', "numeric t and rss_mb")])
def test_a_bad_plot_with_file_is_refused_before_the_run(tmp_path, content, why):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    done = subprocess.run([sys.executable, str(SCRIPT), "--plot-with", str(bad),
                           "--no-record"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"--plot-with {bad}: not a --series file" in done.stderr and why in done.stderr, done.stderr


@pytest.mark.parametrize("param", ["query.point_budget", "query.point_budget=5", ":=5", "query.point_budget:="])
def test_a_malformed_param_is_refused_before_the_run(param):
    done = subprocess.run([sys.executable, str(SCRIPT), "--param", param, "--no-record"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"--param {param!r}: use NAME:=VALUE" in done.stderr, done.stderr


def test_quick_run_with_an_rgbd_camera_serves_from_keyframes_with_depth(ros_subprocess_env):
    # --depth: the stream publishes aligned 32FC1 depth, the node reads it (depth_topic) with
    # the RGB-D demo checkpoint; every keyframe keeps its depth and the queries are served. The
    # stream's depth is one static world, so the node's scene-change check drops nothing (a wall
    # ahead of every view made each keyframe drop older ones, and queries were refused).
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--depth", "--no-record"], cwd=REPO,
                          env=dict(ros_subprocess_env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    depth = re.search(r"depth: (\d+) keyframes with depth, (\d+) without; model reads depth: True; sampling rgbd"
                      r".*; (\d+) dropped as the scene changed", done.stdout)
    assert depth and int(depth.group(1)) > 0 and int(depth.group(2)) == 0, done.stdout[-2000:]
    assert int(depth.group(3)) == 0, done.stdout[-2000:]
    load = re.search(r"'served': (\d+), 'busy': \d+, 'refused': (\d+), 'lost': (\d+)", done.stdout)
    assert load and int(load.group(1)) > 0 and int(load.group(2)) == 0 and int(load.group(3)) == 0, done.stdout[-2000:]


def test_quick_run_with_two_cameras_keeps_keyframes_of_both(ros_subprocess_env):
    # --cameras 2: two 640x480 streams in /cam0 and /cam1 into one node (parameter cameras);
    # both cameras' views become keyframes and the queries are served.
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--cameras", "2", "--no-record"], cwd=REPO,
                          env=dict(ros_subprocess_env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    kept = re.search(r"cameras: /cam0 (\d+) keyframes; /cam1 (\d+) keyframes", done.stdout)
    assert kept and int(kept.group(1)) > 0 and int(kept.group(2)) > 0, done.stdout[-2000:]
    load = re.search(r"'served': (\d+), 'busy': \d+, 'refused': (\d+), 'lost': (\d+)", done.stdout)
    assert load and int(load.group(1)) > 0 and int(load.group(3)) == 0, done.stdout[-2000:]
