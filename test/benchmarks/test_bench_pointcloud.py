"""benchmarks/bench_pointcloud.py cannot rot: its --quick run reads, registers and fills a
synthetic Velodyne-layout cloud and lands one dated row in its own table."""
from __future__ import annotations


def test_quick_run_records_a_row(tmp_path, quick_rows):
    (row,) = quick_rows("bench_pointcloud", tmp_path)
    assert row[3] == "16 x 64" and row[4] == "1024" and row[11] == "40x30"
    share = float(row[5].rstrip("%"))
    xyz_ms, all_ms, ratio, register_ms, image_ms, fill_ms = (float(row[i].rstrip("x")) for i in (6, 7, 8, 9, 10, 12))
    assert 5 < share < 60                                   # the camera sees part of the turn, on scan lines
    assert min(xyz_ms, all_ms, register_ms, image_ms, fill_ms) > 0
    # The ratio is of the two medians shown, which are rounded to 0.01 ms.
    assert (all_ms - 0.005) / (xyz_ms + 0.005) - 0.01 <= ratio <= (all_ms + 0.005) / max(xyz_ms - 0.005, 1e-3) + 0.01
