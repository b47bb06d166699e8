"""benchmarks/bench_splat.py cannot rot: its --quick run times the depth guide's splat with fixed and
adaptive blocks on the simulator's room, and lands a dated row whose ratio is of the figures beside it
and whose adaptive splat leaves no more pixels without a candidate than the fixed one."""
from __future__ import annotations

import pytest


def test_quick_run_records_a_row(tmp_path, quick_rows):
    (row,) = quick_rows("bench_splat", tmp_path)
    assert row[2] == "2" and row[3] == "80x60" and row[4] == "4" and row[5] == "6"
    fixed_ms, adaptive_ms, ratio = (float(row[i]) for i in (6, 7, 8))
    assert min(fixed_ms, adaptive_ms) > 0
    assert (adaptive_ms - 0.05) / (fixed_ms + 0.05) - 0.01 <= ratio <= (adaptive_ms + 0.05) / (fixed_ms - 0.05) + 0.01
    empty_fixed, empty_adaptive = (float(row[i].rstrip("%")) for i in (9, 10))
    # The low query of this room sees surfaces the keyframes measured from farther away: the
    # wider blocks fill cracks the 2x2 blocks leave, and never open new ones.
    assert 0.0 < empty_adaptive < empty_fixed < 100.0


@pytest.mark.gpu
def test_quick_run_on_cuda_names_the_card(tmp_path, quick_rows):
    """--device cuda (scripts/gpu_session.sh): the same comparison on the GPU, the row naming the card."""
    import torch

    (row,) = quick_rows("bench_splat", tmp_path, args=("--device", "cuda"))
    assert row[1] == torch.cuda.get_device_name()
    empty_fixed, empty_adaptive = (float(row[i].rstrip("%")) for i in (9, 10))
    assert 0.0 < empty_adaptive < empty_fixed < 100.0
