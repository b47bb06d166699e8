"""benchmarks/bench_pose_graph.py cannot rot: its --quick run reads, updates and applies a real
nav_msgs/Path and lands one dated row in its own table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_records_a_row(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_pose_graph.py"), "--quick",
                           "--output", str(page)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_pose_graph

    text = page.read_text()
    assert bench_pose_graph.SECTION in text and bench_pose_graph.TABLE_HEADER in text
    (row,) = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| 20")]
    assert row[2:4] == ["200", "64"] and all(float(v) > 0 for v in row[4:7]) and row[7].endswith("%")
