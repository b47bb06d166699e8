"""scripts/depth_profile.py on a tiny synthetic split: its bands against a direct computation."""
from __future__ import annotations

import pytest
import torch

from viewseg_core.model.viewseg import ModelConfig, ViewSeg
from viewseg_core.model.weights import save_model


def test_bands_match_a_direct_computation(tmp_path, capsys, load_script):
    from training.config_io import load_config
    from training.data import build_dataset
    from training.train import TrainConfig
    from viewseg_core.data.synth.generate import SynthConfig, write_dataset

    dp = load_script("depth_profile")
    data = tmp_path / "data"
    write_dataset(data, 3, SynthConfig(views=10, height=30, width=40), seed=5, progress=False)
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  root: {data}\n  image_size: [30, 40]\n  num_sources: 3\n"
                      "  pairs: {min_rotation_deg: 10.0, min_baseline: 0.2, min_overlap: 0.05}\n")
    torch.manual_seed(0)
    model = ViewSeg(ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=16, hidden_dim=16, n_blocks=1,
                                n_head_blocks=1, n_harmonic_xyz=4, n_harmonic_dir=2, num_coarse=8, num_fine=4,
                                view_pooling="mean_var", source_rgb=True, far=8.0)).eval()
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
