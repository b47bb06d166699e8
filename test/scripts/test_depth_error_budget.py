"""scripts/depth_error_budget.py: the tables by hand, the oracle's choice of rays, and a run on tiny rooms."""
from __future__ import annotations

import math

import pytest
import torch

from viewseg_core.model.weights import save_model

from .conftest import tiny_viewseg

NAN = float("nan")


def test_budget_by_hand(load_script):
    """Five pixels: right, behind (AbsRel 1), none, none and empty, in front (AbsRel 0.25)."""
    eb = load_script("depth_error_budget")
    pixels = {"true": torch.tensor([1.0, 1.0, 2.0, 2.0, 4.0]),
              "pred": torch.tensor([1.0, 2.0, 2.0, NAN, 3.0]),
              "bin": torch.tensor([3, 2, 0, 0, 1]),
              "free": torch.tensor([1.0, 0.3, 0.95, NAN, 0.6]),
              "confidence": torch.tensor([0.9, 0.8, 0.1, 0.0, 0.95])}
    report = eb.budget(pixels)
    # As viewseg eval, δ and AbsRel are over the 4 filled pixels: AbsRel sum 1.25, δ misses the
    # behind pixel and the 4/3 one; the empty pixel counts in the shares of pixels only.
    assert report["all"] == pytest.approx((100.0, 50.0, 0.3125, 100.0, 100.0))
    assert report["empty"] == pytest.approx(20.0)
    assert report["bins"]["none"] == pytest.approx((40.0, 100.0, 0.0, 0.0, 0.0))
    assert report["bins"]["in front"] == pytest.approx((20.0, 0.0, 0.25, 20.0, 50.0))
    assert report["bins"]["behind"] == pytest.approx((20.0, 0.0, 1.0, 80.0, 50.0))
    assert report["bins"]["right"] == pytest.approx((20.0, 100.0, 0.0, 0.0, 0.0))
    assert report["free"]["at least 90%"] == pytest.approx((40.0, 100.0, 0.0, 0.0, 0.0))
    assert report["free"]["under 50%"] == pytest.approx((20.0, 0.0, 1.0, 80.0, 50.0))
    assert report["free"]["50-75%"] == pytest.approx((20.0, 0.0, 0.25, 20.0, 50.0))
    assert report["free"]["75-90%"][0] == 0.0 and math.isnan(report["free"]["75-90%"][1])
    assert report["distance"]["1-2 m"] == pytest.approx((40.0, 50.0, 0.5, 80.0, 50.0))
    assert report["distance"]["2-4 m"] == pytest.approx((40.0, 100.0, 0.0, 0.0, 0.0))
    assert report["distance"]["4 m and more"] == pytest.approx((20.0, 0.0, 0.25, 20.0, 50.0))
    # The worst 1% of 5 pixels is the one behind: 80% of the sum, the rest's AbsRel 0.25 / 4.
    assert report["worst"][1] == pytest.approx((80.0, 0.0625))
    # Depth kept where at least half the path was seen free: pixels 0, 2 and 4 (one δ miss);
    # the three most confident filled pixels are 4, 0 and 1 (two misses).
    assert report["keep"][0.5] == pytest.approx((60.0, 200 / 3, 0.25 / 3, 60.0, 100 / 3, 1.25 / 3))
    assert report["keep"][0.75] == pytest.approx((40.0, 100.0, 0.0, 40.0, 50.0, 0.125))
    assert report["keep"][0.9] == report["keep"][0.75]
    text = eb.format_report(report)
    assert "| 0.5 | 60.0% | 66.7 | 0.083 | 33.3 | 0.417 |" in text
    assert "| behind | 20.0% | 0.0 | 1.000 | 80.0% | 50.0% |" in text
    assert "the worst 1% of pixels carry 80.0% of the AbsRel sum" in text


@pytest.fixture(scope="module")
def rgbd_setup(tiny_rooms, tmp_path_factory):
    from training.config_io import load_config
    from training.data import build_dataset
    from training.train import TrainConfig

    _, config = tiny_rooms
    data = load_config(TrainConfig, config).data
    data.source_depth = "clean"
    dataset = build_dataset(data, "test", full_target=True, pairs_dir=tmp_path_factory.mktemp("pairs"))
    model = tiny_viewseg(source_depth=True, depth_guided=True, depth_evidence=True, guide_samples=4)
    return model, dataset, config, data


def test_oracle_replaces_only_the_rays_it_names(load_script, rgbd_setup):
    """On a real example's rays and candidates: 'behind' takes the truth where the candidate is
    more than 1.25x it, 'missing' where there is no candidate, 'all' wherever the truth is known."""
    from viewseg_core.rays import grid_rays

    eb = load_script("depth_error_budget")
    model, dataset, _, _ = rgbd_setup
    ex = dataset[0]
    H, W = (int(x) for x in ex["target_size"])
    rgb = ex["source_rgb"][None]
    sources = model.make_sources(model.encode_sources(rgb), ex["source_K"][None], ex["source_c2w"][None], H, W,
                                 rgb=rgb, depth=ex["source_depth_input"][None])
    K, c2w = ex["target_K"][None, None].float(), ex["target_c2w"][None, None].float()
    rays = grid_rays(K[:, 0], c2w[:, 0], H, W, near=model.config.near, far=model.config.far)
    real = model.renderer.guides(sources, K, c2w, H, W, rays)[0]
    has = torch.isfinite(real)
    assert has.any()
    # A truth half the candidate on even rays (behind), equal on odd ones, unknown on every 5th.
    index = torch.arange(real.numel())
    truth = torch.where(index % 2 == 0, real / 2, real)
    truth = torch.where(torch.isfinite(truth), truth, torch.full_like(truth, 3.0))
    truth[index % 5 == 0] = NAN
    for mode, pick in (("behind", has & (index % 2 == 0) & (index % 5 != 0)),
                       ("missing", ~has & (index % 5 != 0)),
                       ("all", index % 5 != 0)):
        got = eb.oracle_guides(model.renderer, truth, mode)(sources, K, c2w, H, W, rays)[0]
        want = torch.where(pick, truth, real)
        assert torch.equal(torch.nan_to_num(got, nan=-1.0), torch.nan_to_num(want, nan=-1.0)), mode


def test_collect_agrees_with_depth_coverage_and_guide_candidates(tmp_path, capsys, load_script, rgbd_setup):
    eb = load_script("depth_error_budget")
    dc = load_script("depth_coverage")
    gc = load_script("guide_candidates")
    model, dataset, config, data = rgbd_setup
    pixels = eb.collect(model, dataset, 2)
    report = eb.budget(pixels)
    n, empty, d1, absrel = dc.depth_coverage(model, dataset, 2)["all"]
    assert pixels["true"].numel() == n and report["empty"] == pytest.approx(100 * empty / n)
    assert report["all"][1] == pytest.approx(d1, abs=1e-3)
    assert report["all"][2] == pytest.approx(absrel, rel=1e-4)
    # The bins are guide_candidates' for the model's own footprints.
    bins = []
    for i in eb.example_indices(len(dataset), 2):
        ex = dataset[i]
        truth = ex["target_depth"].reshape(-1).float()
        known = torch.isfinite(truth) & (truth > 0)
        candidate = gc.planar_candidates(ex, model.config.guide_footprint, model.config.guide_max_footprint)
        bins.append(gc.candidate_bins(candidate, truth)[known])
    assert torch.equal(pixels["bin"], torch.cat(bins))
    # Every filled pixel has a share of its path seen free, in [0, 1]; with clean depth most paths are seen.
    filled = torch.isfinite(pixels["pred"])
    free = pixels["free"][filled]
    assert bool(((free >= 0) & (free <= 1)).all()) and torch.isnan(pixels["free"][~filled]).all()
    assert sum(row[0] for row in report["free"].values()) == pytest.approx(100 * float(filled.float().mean()))
    assert sum(row[3] for row in report["bins"].values()) == pytest.approx(100.0)
    # The oracle on every ray moves the render toward the truth and leaves the bins alone.
    oracle = eb.collect(model, dataset, 2, oracle="all")
    assert torch.equal(oracle["bin"], pixels["bin"]) and torch.equal(oracle["true"], pixels["true"])
    assert "guides" not in model.renderer.__dict__      # the renderer is itself again
    # By the target frames' trajectory (robot or person height): the same pixels, split.
    grouped = eb.collect(model, dataset, 2, group_by="trajectory", data_root=data.root)
    assert torch.equal(grouped["true"], pixels["true"]) and set(grouped["group_names"]) <= {"robot", "human"}
    parts = [eb.group_pixels(grouped, name) for name in grouped["group_names"]]
    assert sum(p["true"].numel() for p in parts) == pixels["true"].numel()
    assert pixels["group_names"] == ["all"] and bool((pixels["groups"] == 0).all())

    from training.config_io import load_config, to_dict
    from training.train import TrainConfig
    path = save_model(model, tmp_path / "model.pt", data=to_dict(load_config(TrainConfig, config).data))
    args = ["--checkpoint", str(path), "--config", str(config), "--split", "test", "--max-examples", "2",
            "--source-depth", "clean", "--threads", "1"]
    assert eb.main(args) == 0
    out = capsys.readouterr().out
    assert f"δ<1.25 {report['all'][1]:.1f}, AbsRel {report['all'][2]:.3f}" in out and "DIAGNOSIS" not in out
    assert eb.main(args + ["--oracle-candidates", "behind"]) == 0
    assert capsys.readouterr().out.startswith("DIAGNOSIS, not a result")
    rgb_only = save_model(tiny_viewseg(), tmp_path / "rgb.pt", data=to_dict(load_config(TrainConfig, config).data))
    with pytest.raises(SystemExit):
        eb.main(["--checkpoint", str(rgb_only), "--config", str(config), "--max-examples", "1"])
    assert "not a depth-guided RGB-D model" in capsys.readouterr().err
    assert eb.main(args + ["--group-by", "trajectory"]) == 0
    out = capsys.readouterr().out
    assert out.count("## targets with trajectory = ") == len(grouped["group_names"])
    with pytest.raises(SystemExit):
        eb.main(args + ["--group-by", "no_such_key"])
    assert "--group-by 'no_such_key'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eb.main(args + ["--max-examples", "-1"])
    assert "--max-examples must be >= 0" in capsys.readouterr().err
