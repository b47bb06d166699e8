"""benchmarks/bench_call_shapes.py cannot rot: its --quick run renders in one process per padding
rule (and one that interleaves them for the time ratio) and lands a row per rule in its own
table; the query poses are seeded and distinct."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_quick_run_records_a_row_per_rule(tmp_path, quick_rows):
    rows = quick_rows("bench_call_shapes", tmp_path, timeout=240.0)
    assert [row[7] for row in rows] == ["ray", "call"]
    for row in rows:
        assert row[3] == "tiny (--quick)" and row[5] == "40x30" and row[6] == "3 x 2"
        assert int(row[8]) > 0 and float(row[11]) > 0
    kept = [[float(x) for x in row[9].split(" / ")] for row in rows]
    assert rows[0][10] == ""
    if rows[1][10]:   # the ratio of the unrounded kept MiB: within the rounding of the two shown
        shown = kept[1][1] / kept[0][1]
        assert abs(float(rows[1][10]) - shown) <= 0.5 / kept[0][1] * (1 + shown) + 0.005
    assert rows[0][12] == "" and 0.2 < float(rows[1][12]) < 5.0     # the interleaved time ratio, call vs ray


def test_query_poses_are_seeded_distinct_and_rigid(load_benchmark):
    bench = load_benchmark("bench_call_shapes")
    base = torch.eye(4)[None].repeat(2, 1, 1)
    base[1, 0, 3] = 5.0
    poses = bench.query_poses(base, 5, seed=3)
    assert poses.shape == (5, 4, 4) and torch.equal(poses, bench.query_poses(base, 5, seed=3))
    assert len({tuple(p.flatten().tolist()) for p in poses}) == 5
    for i, pose in enumerate(poses):
        R = pose[:3, :3]
        assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
        assert torch.allclose(R[:, 1], base[i % 2, :3, 1], atol=1e-6)             # turned about its own y axis
        assert (pose[:3, 3] - base[i % 2, :3, 3]).abs().max() <= 0.2 + 1e-6   # moved at most 0.2 m per axis


def test_an_unknown_rule_is_refused():
    done = subprocess.run([sys.executable, str(BENCH / "bench_call_shapes.py"), "--rules", "ray,tiles", "--no-record"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--rules takes ray, call" in done.stderr
