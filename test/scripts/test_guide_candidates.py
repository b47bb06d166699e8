"""scripts/guide_candidates.py: the bins by hand, and on tiny rooms its counts against the truth."""
from __future__ import annotations

import math

import pytest
import torch


def test_candidate_bins_by_hand(load_script):
    gc = load_script("guide_candidates")
    truth = torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    candidate = torch.tensor([math.nan, 1.5, 1.61, 2.4, 2.6, 2.0])
    # none; 2 / 1.5 > 1.25: in front; 1.61 within 1.25; 2.4 within; 2.6 / 2 > 1.25: behind; right.
    assert [gc.BINS[i] for i in gc.candidate_bins(candidate, truth)] == \
        ["none", "in front", "right", "right", "behind", "right"]


def test_counts_cover_every_pixel_with_true_depth(tmp_path, capsys, load_script, tiny_rooms):
    from training.data import build_dataset
    from training.evaluate import resolve_data_config

    gc = load_script("guide_candidates")
    root, config = tiny_rooms
    data = resolve_data_config(None, str(config), [])
    data.source_depth = "clean"
    dataset = build_dataset(data, "test", seed=0, full_target=True, pairs_dir=tmp_path)
    counts, times = gc.tally(dataset, [0, 6], 2, 3, "", root)
    known = 0
    for i in gc.example_indices(len(dataset), 3):
        depth = dataset[i]["target_depth"]
        known += int((torch.isfinite(depth) & (depth > 0)).sum())
    for widest in (0, 6):
        total = sum(int(c.sum()) for (m, _, _), c in counts.items() if m == widest)
        assert total == known
        assert times[widest] > 0
    none, right = gc.BINS.index("none"), gc.BINS.index("right")
    fixed = sum(c for (m, _, _), c in counts.items() if m == 0)
    adaptive = sum(c for (m, _, _), c in counts.items() if m == 6)
    # Clean source depth: what has a candidate is mostly the true surface; wider blocks fill,
    # they do not empty.
    assert adaptive[none] <= fixed[none]
    assert fixed[right] > 0.8 * (fixed.sum() - fixed[none])
    table = gc.format_table(counts, times, 2)
    assert "| 2 (fixed) | all | things |" in table and "| 6 | all | stuff |" in table
    with pytest.raises(ValueError, match="--group-by 'no_such_key'.*has no such meta key"):
        gc.tally(dataset, [0], 2, 1, "no_such_key", root)
    with pytest.raises(ValueError, match="source depth"):
        data.source_depth = "none"
        gc.tally(build_dataset(data, "test", seed=0, full_target=True, pairs_dir=tmp_path), [0], 2, 1, "", root)
