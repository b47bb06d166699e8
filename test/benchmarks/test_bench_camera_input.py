"""benchmarks/bench_camera_input.py cannot rot: its --quick run times every input and lands one
dated row per input in its own table, each against the plain path of the same run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_records_a_row_per_input(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_camera_input.py"), "--quick",
                           "--output", str(page)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_camera_input

    text = page.read_text()
    assert bench_camera_input.SECTION in text and bench_camera_input.TABLE_HEADER in text
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| 20")]
    inputs = [row[3] for row in rows]
    assert inputs == ["plain: rgb8 + resize", "rgb8", "bgr8", "yuv422_yuy2", "bayer_rggb8", "compressed jpeg",
                      "compressed png", "plain: 16UC1 + resize", "compressedDepth png", "undistort colour",
                      "undistort depth", "register depth -> 80x60", "register depth -> 160x120"]
    for row in rows:
        assert row[2] == "160x120" and float(row[4]) >= 0 and row[5].endswith("x") and row[6].endswith("%")
    assert {row[5] for row in rows if row[3].startswith("plain")} == {"1.0x"}
