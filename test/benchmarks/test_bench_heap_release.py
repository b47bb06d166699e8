"""benchmarks/bench_heap_release.py cannot rot: its --quick run renders in pairs around a real
malloc_trim and lands one dated row in its own table."""
from __future__ import annotations


def test_quick_run_records_a_row(tmp_path, quick_rows):
    (row,) = quick_rows("bench_heap_release", tmp_path)
    assert row[3] == "small (--quick)" and row[5] == "40x30" and row[6] == "3"
    release_ms, released, after, without, ratio = map(float, row[7:12])
    assert release_ms > 0 and after > 0 and without > 0
    assert abs(ratio - after / without) < 0.02 + 0.01 * ratio   # the ratio is of the two medians shown
