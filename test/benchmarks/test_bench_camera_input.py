"""benchmarks/bench_camera_input.py cannot rot: its --quick run times every input and lands one
dated row per input in its own table, each against the plain path of the same run."""
from __future__ import annotations


def test_quick_run_records_a_row_per_input(tmp_path, quick_rows):
    rows = quick_rows("bench_camera_input", tmp_path, timeout=120)
    inputs = [row[3] for row in rows]
    assert inputs == ["plain: rgb8 + resize", "rgb8", "bgr8", "yuv422_yuy2", "bayer_rggb8", "compressed jpeg",
                      "compressed png", "plain: 16UC1 + resize", "compressedDepth png", "undistort colour",
                      "undistort depth", "register depth -> 80x60", "register depth -> 160x120"]
    for row in rows:
        assert row[2] == "160x120" and float(row[4]) >= 0 and row[5].endswith("x") and row[6].endswith("%")
    assert {row[5] for row in rows if row[3].startswith("plain")} == {"1.0x"}
