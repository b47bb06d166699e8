"""benchmarks/bench_keyframe_change.py cannot rot: its --quick run times one scene-change pair, the
check of a new keyframe against a buffer along the simulator's walk and the encoder pass it is
compared with, and lands a dated row whose ratio is of the figures beside it."""
from __future__ import annotations


def test_quick_run_records_a_row(tmp_path, quick_rows):
    (row,) = quick_rows("bench_keyframe_change", tmp_path)
    assert row[2] == "2" and row[3] == "80x60" and row[4] == "8"
    pair_ms, whole_ms, encoder_ms, ratio = (float(row[i]) for i in (5, 6, 7, 8))
    assert min(pair_ms, whole_ms, encoder_ms) > 0
    # The whole check is one range image per overlapping keyframe: at least one pair's worth.
    assert whole_ms >= 0.5 * pair_ms
    # The ratio is of the two medians shown (rounded to 0.1 ms).
    assert (whole_ms - 0.05) / (encoder_ms + 0.05) - 0.01 <= ratio <= (whole_ms + 0.05) / (encoder_ms - 0.05) + 0.01
