"""scripts/depth_profile.py on a tiny synthetic split: its bands against a direct computation."""
from __future__ import annotations

import pytest
import torch

from viewseg_core.model.weights import save_model

from .conftest import tiny_viewseg


def test_bands_match_a_direct_computation(tmp_path, capsys, load_script, tiny_rooms):
    from training.config_io import load_config
    from training.data import build_dataset
    from training.train import TrainConfig

    dp = load_script("depth_profile")
    _, config = tiny_rooms
    model = tiny_viewseg(view_pooling="mean_var", source_rgb=True)
    dataset = build_dataset(load_config(TrainConfig, config).data, "test", full_target=True)
    rows, total = dp.depth_profile(model, dataset, 2)

    # The same pixels and errors through the library's image renderer.
    errors, truths = [], []
    for i in range(2):
        ex = dataset[i]
        H, W = (int(x) for x in ex["target_size"])
        rgb = ex["source_rgb"][None]
        src = model.make_sources(model.encode_sources(rgb), ex["source_K"][None], ex["source_c2w"][None], H, W,
                                 rgb=rgb)
        out = model.render(ex["target_K"], ex["target_c2w"], H, W, src)
        depth = ex["target_depth"].reshape(H, W)
        known = torch.isfinite(depth) & (depth > 0)
        errors.append((out.expected_depth - depth)[known])
        truths.append(depth[known])
    errors, truths = torch.cat(errors), torch.cat(truths)
    assert total.pixels == errors.numel() == sum(r.pixels for r in rows)
    assert total.l1 == pytest.approx(float(errors.abs().mean()), rel=1e-5)
    assert total.bias == pytest.approx(float(errors.mean()), rel=1e-4, abs=1e-6)
    near = truths < 1.5
    assert rows[0].pixels == int(near.sum())
    if rows[0].pixels:
        assert rows[0].l1 == pytest.approx(float(errors[near].abs().mean()), rel=1e-5)
    assert all(0.0 <= r.free_space_weight <= 1.0 for r in rows if r.pixels)

    path = save_model(model, tmp_path / "model.pt")
    assert dp.main(["--checkpoint", str(path), "--config", str(config), "--split", "test",
                    "--max-examples", "2", "--threads", "1"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert len(table) == 2 + len(dp.BANDS) + 1 and table[-1].startswith(f"| all | {total.pixels} |")
