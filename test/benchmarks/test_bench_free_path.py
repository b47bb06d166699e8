"""benchmarks/bench_free_path.py cannot rot: its --quick run times the free path share against its
pointwise reference on the simulator's room (the run itself fails if the two disagree), and lands a
dated row whose ratio is of the figures beside it."""
from __future__ import annotations

import pytest


def test_quick_run_records_a_row(tmp_path, quick_rows):
    (row,) = quick_rows("bench_free_path", tmp_path)
    assert row[2] == "2" and row[3] == "80x60" and row[4] == "4" and row[5] == "32"
    reference_ms, fast_ms, ratio = (float(row[i]) for i in (6, 7, 8))
    assert min(reference_ms, fast_ms) > 0
    assert (reference_ms - 0.05) / (fast_ms + 0.05) - 0.01 <= ratio <= (reference_ms + 0.05) / (fast_ms - 0.05) + 0.01
    # A low robot camera among person-height keyframes: part of most paths is seen free, part not.
    mean_share, under_half = float(row[9]), float(row[10].rstrip("%"))
    assert 0.0 < mean_share < 1.0 and 0.0 < under_half < 100.0


@pytest.mark.gpu
def test_quick_run_on_cuda_names_the_card(tmp_path, quick_rows):
    """--device cuda (scripts/gpu_session.sh): the check and its reference agree on the GPU too
    (the run fails otherwise), and the row names the card."""
    import torch

    (row,) = quick_rows("bench_free_path", tmp_path, args=("--device", "cuda"))
    assert row[1] == torch.cuda.get_device_name() and float(row[7]) > 0
