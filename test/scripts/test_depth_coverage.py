"""scripts/depth_coverage.py on a tiny synthetic split: its rows against a direct computation."""
from __future__ import annotations

import math

import pytest
import torch

from viewseg_core.model.weights import save_model

from .conftest import tiny_viewseg


def test_parts_add_up_and_match_a_direct_computation(tmp_path, capsys, load_script, tiny_rooms):
    from training.config_io import load_config
    from training.data import build_dataset
    from training.train import TrainConfig

    dc = load_script("depth_coverage")
    _, config = tiny_rooms
    model = tiny_viewseg(source_depth=True, depth_guided=True, depth_evidence=True, guide_samples=4)
    data = load_config(TrainConfig, config).data
    data.source_depth = "clean"
    dataset = build_dataset(data, "test", full_target=True, pairs_dir=tmp_path)
    report = dc.depth_coverage(model, dataset, 2)

    from viewseg_core.source_selection import pixel_coverage

    preds, truths, outside, true_outside = [], [], [], []
    for i in dc.example_indices(len(dataset), 2):
        ex = dataset[i]
        H, W = (int(x) for x in ex["target_size"])
        rgb = ex["source_rgb"][None]
        src = model.make_sources(model.encode_sources(rgb), ex["source_K"][None], ex["source_c2w"][None], H, W,
                                 rgb=rgb, depth=ex["source_depth_input"][None])
        depth = ex["target_depth"].reshape(-1)
        known = torch.isfinite(depth) & (depth > 0)
        rendered = model.render(ex["target_K"], ex["target_c2w"], H, W, src).depth
        preds.append(rendered.reshape(-1)[known])
        truths.append(depth[known])
        covered = pixel_coverage(ex["target_K"].numpy(), ex["target_c2w"].numpy(), rendered.numpy(),
                                 ex["source_K"].numpy(), ex["source_c2w"].numpy(), (H, W), model.config.far)
        outside.append((torch.isfinite(rendered) & ~torch.from_numpy(covered)).reshape(-1)[known])
        true_covered = pixel_coverage(ex["target_K"].numpy(), ex["target_c2w"].numpy(), depth.reshape(H, W).numpy(),
                                      ex["source_K"].numpy(), ex["source_c2w"].numpy(), (H, W), model.config.far)
        true_outside.append(~torch.from_numpy(true_covered).reshape(-1)[known])
    pred, true = torch.cat(preds), torch.cat(truths)
    filled = torch.isfinite(pred)
    ratio = torch.maximum(pred[filled] / true[filled], true[filled] / pred[filled])
    n, empty, d1, absrel = report["all"]
    assert (n, empty) == (true.numel(), int((~filled).sum()))
    assert d1 == pytest.approx(float((ratio < 1.25).float().mean() * 100), abs=1e-3)
    assert absrel == pytest.approx(float(((pred[filled] - true[filled]).abs() / true[filled]).mean()), rel=1e-4)
    assert report["measured"][0] + report["not measured"][0] == n and report["measured"][0] > 0
    # With clean source depth the candidate surface is the true one, to the splat's footprint.
    guide = report["guide: measured"]
    assert guide[0] == report["measured"][0] and guide[2] > 90.0
    # The measured part splits into its depth-edge pixels and the rest.
    at_edge, elsewhere = report["measured, at a depth edge"], report["measured, elsewhere"]
    assert at_edge[0] + elsewhere[0] == report["measured"][0] and at_edge[0] > 0 and elsewhere[0] > 0
    assert report["guide: measured, at a depth edge"][0] == at_edge[0]
    # The edge pixels whose candidate is off: the share of all pixels, and of those the shares the
    # silhouette layer and the render get right.
    edge_guide = report["guide: measured, at a depth edge"]
    assert report["edge_candidate_off"] == pytest.approx(at_edge[0] * (100.0 - edge_guide[2]) / n, abs=1e-3)
    for key in ("edge_off_second_right", "edge_off_render_right"):
        assert math.isnan(report[key]) if report["edge_candidate_off"] == 0 else 0.0 <= report[key] <= 100.0
    assert "silhouette layer" in dc.format_table(report)
    assert 0.0 < report["seen_share"] <= 100.0
    assert 0.0 <= report["hidden_view_share"] <= 100.0 and 0.0 <= report["pooling_changed_share"] <= 100.0
    # The node's unknown pixels: filled by the render, outside every source frustum.
    unseen = report["rendered surface in no source's view"]
    assert unseen[0] == int(torch.cat(outside).sum()) and unseen[1] == 0
    # Pixels whose TRUE surface no source frustum holds: counted by the same test on the true depth.
    true_outside = torch.cat(true_outside)
    assert report["true surface in no source's view"][0] == int(true_outside.sum())
    assert report["true surface in no source's view"][1] == int((true_outside & ~filled).sum())
    # That row is empty for this model. Turned away from the sources, a field that extrapolates
    # with a dense bias stops its rays where no source looks: the row counts them.
    dense = tiny_viewseg(source_depth=True, depth_guided=True, guide_samples=4, unseen_points="extrapolate")
    with torch.no_grad():
        for field in (dense.renderer.coarse, dense.renderer.fine):
            field.rgb_density_head.out.bias[3] = 50.0
    turned = []  # the same targets, turned around: they look where the sources do not
    for i in dc.example_indices(len(dataset), 2):
        ex = dict(dataset[i])
        ex["target_c2w"] = ex["target_c2w"].clone()
        ex["target_c2w"][:3, :3] = ex["target_c2w"][:3, :3] @ torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
        turned.append(ex)
    dense_report = dc.depth_coverage(dense, turned, 2)
    dense_unseen = dense_report["rendered surface in no source's view"]
    assert unseen[0] == 0 and dense_unseen[1] == 0
    assert 0 < dense_unseen[0] <= dense_report["all"][0] - dense_report["all"][1]   # filled pixels only

    from training.config_io import to_dict
    path = save_model(model, tmp_path / "model.pt", data=to_dict(load_config(TrainConfig, config).data))
    assert dc.main(["--checkpoint", str(path), "--config", str(config), "--split", "test", "--max-examples", "2",
                    "--source-depth", "clean", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"| all | 100.0% | {d1:.1f} | {absrel:.3f} |" in out and "true surface seen by some source" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.pt", *[p.name for p in tmp_path.glob("pairs_*")]])


def test_depth_edges_by_hand(load_script):
    """A 1 m box in front of a 2 m wall, one unknown pixel: edges are the pixels within one
    pixel of the box's border (both sides); an unknown neighbour does not make an edge."""
    dc = load_script("depth_coverage")
    depth = torch.full((6, 7), 2.0)
    depth[2:4, 2:4] = 1.0
    depth[0, 6] = float("nan")
    depth[5, 0] = 0.0
    edges = dc.depth_edges(depth)
    want = torch.zeros(6, 7, dtype=torch.bool)
    want[1:5, 1:5] = True                       # the box and its one-pixel ring
    assert torch.equal(edges, want)
    assert not dc.depth_edges(torch.full((3, 3), 2.0)).any()
    slanted = torch.tensor([[1.0, 1.05, 1.1]])  # 5% per pixel: under the 10% ratio
    assert not dc.depth_edges(slanted).any() and dc.depth_edges(slanted, ratio=1.04).all()


def test_hidden_views_by_hand(load_script):
    """One target pixel row looking at a wall 2 m away; source 0 is the target camera itself
    with the wall measured (it sees every point, none hidden); source 1 is the same camera
    with a 1 m occluder measured over the left half (those points are hidden there) and
    nothing measured in the last column (unknown: not hidden)."""
    dc = load_script("depth_coverage")
    H, W = 2, 4
    K = torch.tensor([[2.0, 0.0, 2.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
    wall = torch.full((H, W), 2.0)
    measured = torch.stack([wall, wall.clone()])
    measured[1, :, :2] = 1.0
    measured[1, :, 3] = float("nan")
    example = {"target_size": torch.tensor([H, W]), "target_depth": wall, "target_K": K, "target_c2w": torch.eye(4),
               "source_K": K.expand(2, 3, 3), "source_c2w": torch.eye(4).expand(2, 4, 4),
               "source_depth": torch.stack([wall, wall]), "source_depth_input": measured}
    views, hidden = dc.hidden_views(example)
    assert views.tolist() == [2] * (H * W)
    assert hidden.reshape(H, W).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]
