"""benchmarks/bench_pose_graph.py cannot rot: its --quick run reads, updates and applies a real
nav_msgs/Path and lands one dated row in its own table."""
from __future__ import annotations


def test_quick_run_records_a_row(tmp_path, quick_rows):
    (row,) = quick_rows("bench_pose_graph", tmp_path, timeout=120)
    assert row[2:4] == ["200", "64"] and all(float(v) > 0 for v in row[4:7]) and row[7].endswith("%")
