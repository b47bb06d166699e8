"""benchmarks/bench_pointcloud.py cannot rot: its --quick run reads, registers and fills a
synthetic Velodyne-layout cloud, deskews it, registers 10 and 20 of them into one keyframe, and
again with the stale points left out, drops occluded depth, and lands its dated rows in each of
its five tables."""
from __future__ import annotations


def test_quick_run_records_a_row(tmp_path, quick_rows):
    row, deskew, *accumulated, occlusion = quick_rows("bench_pointcloud", tmp_path)
    assert row[3] == "16 x 64" and row[4] == "1024" and row[11] == "40x30"
    share = float(row[5].rstrip("%"))
    xyz_ms, all_ms, ratio, register_ms, image_ms, fill_ms = (float(row[i].rstrip("x")) for i in (6, 7, 8, 9, 10, 12))
    assert 5 < share < 60                                   # the camera sees part of the turn, on scan lines
    assert min(xyz_ms, all_ms, register_ms, image_ms, fill_ms) > 0
    # The ratio is of the two medians shown, which are rounded to 0.01 ms.
    assert (all_ms - 0.005) / (xyz_ms + 0.005) - 0.01 <= ratio <= (all_ms + 0.005) / max(xyz_ms - 0.005, 1e-3) + 0.01
    # Deskewing: the sweep's 0.1 s in 5 ms slices, each placed with a pose from the TF buffer.
    assert deskew[2] == "16 x 64" and deskew[3] == "1024" and deskew[6] == "20"
    xyzt_ms, offsets_ms, deskew_ms, rigid_ms, deskew_ratio = (float(deskew[i].rstrip("x")) for i in (4, 5, 7, 8, 9))
    assert min(xyzt_ms, offsets_ms, deskew_ms) > 0 and rigid_ms >= 0 and deskew_ratio > 1
    # Accumulation: 10 and 20 clouds' points (16 x 64 each) into one keyframe, against one cloud.
    assert [(r[4], r[5]) for r in accumulated] == [("10", "10240"), ("20", "20480")] * 2
    assert all(float(r[7]) > 0 and float(r[8]) > 0 for r in accumulated)
    # The stale rows' reference is the accumulation row's own figure, from the same run.
    assert [r[8] for r in accumulated[2:]] == [r[7] for r in accumulated[:2]]
    # Occlusion: the keyframe of the first table's registration, radius 1 and 2.
    assert occlusion[2] == "16 x 64" and occlusion[3] == "40x30" and int(occlusion[4]) > 0
    assert float(occlusion[5]) > 0 and float(occlusion[6]) > 0
