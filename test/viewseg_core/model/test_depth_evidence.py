"""Depth evidence (issue 15): measured source depth carves the free space a camera saw through
and adds density at the surfaces it measured (``model.depth_evidence``)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from viewseg_core.model.fast import PRESETS, render_query_stats
from viewseg_core.model.field import (EVIDENCE_ALPHA_INIT, EVIDENCE_FREE_SIGMAS, EVIDENCE_SIGMA_M, DepthEvidence,
                                      FieldConfig)
from viewseg_core.model.viewseg import ModelConfig, ViewSeg
from viewseg_core.model.weights import extend_model, load_state_strict

from .test_rgbd import _equal, _rgb_model, _source_depth, _sources


def _views(*columns):
    """[1, V, N] tensors from per-view rows of (diff, measured, known, visible) per point."""
    diff, measured, known, visible = (torch.tensor([[list(row) for row in col]]) for col in columns)
    return diff.float(), measured.float(), known.bool(), visible.bool()


def _step(z: float, sigma: float) -> float:
    """The surface density of one view for alpha = 1: sigmoid(4 (z + 0.5)) / sigma."""
    return 1.0 / (1.0 + math.exp(-4.0 * (z + 0.5))) / sigma


def test_hand_computed_carving_and_surface_density():
    """Two views, four points; D = 2 m, so the tolerance is max(2 cm, 4 cm) = 4 cm."""
    evidence = DepthEvidence()
    mlp = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    # point 0: both views saw through it (diff -1 m): carved.
    # point 1: on the surface in view 0 (diff 0), hidden in view 1 (diff +1 m).
    # point 2: 1 tolerance in front in view 0, no measurement in view 1.
    # point 3: free in view 0, on the surface in view 1: one vote each, kept.
    diff, measured, known, visible = _views(
        [(-1.0, 0.0, -0.04, -1.0), (-1.0, 1.0, 0.0, 0.0)],
        [(2.0, 2.0, 2.0, 2.0), (2.0, 2.0, 0.0, 2.0)],
        [(1, 1, 1, 1), (1, 1, 0, 1)],
        [(1, 1, 1, 1), (1, 1, 1, 1)])
    out = evidence(mlp, diff, measured, known, visible)
    a = EVIDENCE_ALPHA_INIT
    expected = torch.tensor([[0.0, 3.0 + a * _step(0, 0.04), 3.0 + a * _step(-1, 0.04), 3.0 + a * _step(0, 0.04)]])
    torch.testing.assert_close(out, expected)
    # Far away the tolerance grows with the measurement: 0.2 m in front of a 10 m wall is one
    # tolerance (0.2 m) in front.
    diff, measured, known, visible = _views([(-0.2,)], [(10.0,)], [(1,)], [(1,)])
    torch.testing.assert_close(evidence(torch.zeros(1, 1), diff, measured, known, visible),
                               torch.tensor([[a * _step(-1, 0.2)]]))
    # A view that does not see the point, or measured nothing there, says nothing.
    for k, v in ((0, 1), (1, 0)):
        diff, measured, known, visible = _views([(-1.0,)], [(2.0,)], [(k,)], [(v,)])
        assert torch.equal(evidence(torch.full((1, 1), 3.0), diff, measured, known, visible),
                           torch.full((1, 1), 3.0))
    assert EVIDENCE_FREE_SIGMAS * EVIDENCE_SIGMA_M < 0.1  # free space starts within a guide band


def test_a_ray_through_the_step_stops_at_the_measurement():
    """Why a step: a ray marched through the density of one view's measurement at D (fine
    samples) has its expected depth at D within a quarter tolerance, at 1 m and at 6 m."""
    evidence = DepthEvidence()
    for D in (1.0, 6.0):
        sigma = max(EVIDENCE_SIGMA_M, 0.02 * D)
        t = torch.linspace(D - 10 * sigma, D + 10 * sigma, 4001)
        diff = (t - D)[None, None]
        dens = evidence(torch.zeros(1, t.numel()), diff, torch.full_like(diff, D), torch.ones_like(diff, dtype=torch.bool),
                        torch.ones_like(diff, dtype=torch.bool))[0].detach()
        delta = t[1] - t[0]
        alpha = 1 - torch.exp(-dens * delta)
        trans = torch.cumprod(torch.cat([torch.ones(1), 1 - alpha[:-1]]), 0)
        w = trans * alpha
        assert float(w.sum()) > 0.99
        assert abs(float((w * t).sum() / w.sum()) - D) < 0.25 * sigma, D


def test_majority_of_views_carves():
    """Two views see through a point that a third calls surface: carved; one against one: kept."""
    evidence = DepthEvidence()
    two_free = _views([(-1.0,), (-1.0,), (0.0,)], [(2.0,)] * 3, [(1,)] * 3, [(1,)] * 3)
    one_free = _views([(-1.0,), (0.0,)], [(2.0,)] * 2, [(1,)] * 2, [(1,)] * 2)
    assert float(evidence(torch.ones(1, 1), *two_free).detach()) == 0.0
    assert float(evidence(torch.ones(1, 1), *one_free).detach()) == pytest.approx(
        1.0 + EVIDENCE_ALPHA_INIT * _step(0, 0.04))


def test_alpha_is_learned():
    evidence = DepthEvidence()
    diff, measured, known, visible = _views([(0.01,)], [(2.0,)], [(1,)], [(1,)])
    mlp = torch.ones(1, 1, requires_grad=True)
    evidence(mlp, diff, measured, known, visible).sum().backward()
    assert evidence.log_alpha.grad is not None
    # d/d log(alpha) of alpha * step = alpha * step; 1 cm behind a 2 m measurement: z = 0.25
    torch.testing.assert_close(evidence.log_alpha.grad, torch.tensor(EVIDENCE_ALPHA_INIT * _step(0.25, 0.04)))
    assert float(mlp.grad) == 1.0


def test_config_needs_source_depth():
    with pytest.raises(ValueError, match="depth_evidence needs source_depth"):
        ModelConfig(depth_evidence=True)
    with pytest.raises(ValueError, match="depth_evidence needs source_depth"):
        FieldConfig(depth_evidence=True)


def test_random_field_renders_the_measured_depth(make_config, box_room):
    """A field with random weights knows nothing; with the evidence its depth is the box room's
    on the pixels the sources measured (exact source depth), and without it it is not."""
    rgb_model = _rgb_model(make_config, num_coarse=8, num_fine=8)
    plain = extend_model(rgb_model, source_depth=True, depth_guided=True, guide_samples=8)
    model = extend_model(rgb_model, source_depth=True, depth_guided=True, guide_samples=8, depth_evidence=True)
    H, W, K = box_room.height, box_room.width, box_room.K
    depth = _source_depth(box_room, holes=False)
    rel_errors = {}
    for name, m in (("plain", plain), ("evidence", model)):
        errs = []
        for i, c2w in enumerate(box_room.target_c2w):
            with torch.no_grad():
                out = m.render(K, c2w, H, W, _sources(m, box_room, depth))
                guide = m.renderer.guides(_sources(m, box_room, depth), K[None, None], c2w[None, None], H, W,
                                          _rays(m, K, c2w, H, W))
            true = box_room.target[i][2]
            measured = torch.isfinite(guide.reshape(H, W))
            assert measured.float().mean() > 0.5
            rel = ((out.depth - true).abs() / true)[measured]
            errs.append(torch.nan_to_num(rel, nan=1.0))
        rel_errors[name] = torch.cat(errs)
    # 8 stratified + 8 band (2.5 cm apart) + 8 fine samples: a median error of 2% (measured
    # 2.3%) is about one band spacing at 2-3 m; the random field alone is off by 44%.
    within = {k: float((v < 0.10).float().mean()) for k, v in rel_errors.items()}
    median = {k: float(v.median()) for k, v in rel_errors.items()}
    assert within["evidence"] > 0.9 and median["evidence"] < 0.035, (within, median)
    assert within["plain"] < 0.3 and median["plain"] > 0.2, (within, median)


def _rays(model, K, c2w, H, W):
    from viewseg_core.rays import grid_rays
    return grid_rays(K[None], c2w[None], H, W, near=model.config.near, far=model.config.far)


def test_rgbd_checkpoint_gains_the_evidence_and_keyframes_without_depth_are_unchanged(make_config, box_room):
    """extend_model adds log_alpha at its initial value (strict loading names it otherwise); a
    keyframe set without depth renders what the model without evidence renders, bit for bit."""
    rgbd = extend_model(_rgb_model(make_config), source_depth=True, depth_guided=True)
    with pytest.raises(ValueError, match="missing 2: .*depth_evidence.log_alpha"):
        load_state_strict(ViewSeg(ModelConfig(**{**rgbd.config.__dict__, "depth_evidence": True})),
                          rgbd.state_dict(), "rgbd.pt")
    model = extend_model(rgbd, depth_evidence=True)
    assert float(model.renderer.coarse.depth_evidence.log_alpha.detach().exp()) == pytest.approx(EVIDENCE_ALPHA_INIT)
    H, W, K, c2w = box_room.height, box_room.width, box_room.K, box_room.target_c2w[0]
    with torch.no_grad():
        a = rgbd.render(K, c2w, H, W, _sources(rgbd, box_room))
        b = model.render(K, c2w, H, W, _sources(model, box_room))
        c = model.render(K, c2w, H, W, _sources(model, box_room, torch.full((1, 4, H, W), math.nan)))
    assert _equal(a, b) and _equal(a, c)


def test_query_preset_applies_the_evidence_like_the_reference_path(make_config, box_room, monkeypatch):
    """The node's rgbd_full preset renders an evidence model as ViewSeg.render does (the field
    applies it, whichever path calls the field), and rgbd (free-space skipping) agrees on depth
    where the sources measured the surface."""
    model = extend_model(_rgb_model(make_config, num_coarse=8, num_fine=0), source_depth=True, depth_guided=True,
                         guide_samples=8, depth_evidence=True)
    depth = _source_depth(box_room)
    sources = _sources(model, box_room, depth)
    H, W, K, c2w = box_room.height, box_room.width, box_room.K, box_room.target_c2w[0]
    # amp off: compared at float32 tolerance (auto is bf16 on CPUs with native bf16)
    fast, _ = render_query_stats(model, K, c2w, H, W, sources, dataclasses.replace(PRESETS["rgbd_full"], amp="off"))
    monkeypatch.setenv("VIEWSEG_COMPOSITING", "reference")
    ref = model.render(K, c2w, H, W, sources)
    torch.testing.assert_close(fast.depth, ref.depth, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert float((fast.logits - ref.logits).abs().max()) < 1e-4 * float(ref.logits.abs().max())
    true = box_room.target[0][2]
    rel = ((fast.depth - true).abs() / true)
    assert float(torch.nan_to_num(rel, nan=1.0).median()) < 0.05
