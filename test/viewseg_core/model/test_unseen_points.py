"""unseen_points="extrapolate" (issue 15): points no source sees are evaluated from the image
borders of the views they lie in front of; everything a view sees is unchanged, the depth
evidence does not vote there, the query presets do not skip them, and confidence counts
only the opacity gathered where some view looked."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from viewseg_core.model.depth_guide import measured_empty
from viewseg_core.model.fast import PRESETS, render_query_stats
from viewseg_core.model.field import FieldConfig, SemanticField, SourceViews
from viewseg_core.model.fused_field import field_reason
from viewseg_core.model.renderer import Renderer, RendererConfig
from viewseg_core.model.viewseg import ModelConfig
from viewseg_core.model.weights import extend_model
from viewseg_core.rays import RayBundle

from .test_field import CAMS, K0, H, W, _field, _points, _sources
from .test_rgbd import _rgb_model, _source_depth
from .test_rgbd import _sources as _room_sources


def _pair(**kw) -> tuple[SemanticField, SemanticField]:
    """The same random field in both modes."""
    empty = _field(**kw)
    extra = _field(unseen_points="extrapolate", **kw)
    extra.load_state_dict(empty.state_dict())
    return empty, extra


def _identity_view(C=16, seed=1, depth=None) -> SourceViews:
    """One camera at the origin looking down +z with K0 (f = 20, c = (15.5, 11.5))."""
    feats = torch.randn(1, 1, C, H // 4, W // 4, generator=torch.Generator().manual_seed(seed))
    return SourceViews(feats, K0[None, None].clone(), torch.eye(4)[None, None], H, W, depth=depth)


def _at_pixels(uvz) -> torch.Tensor:
    """[1, R, 1, 3] points of the identity camera at pixel (u, v) and depth z."""
    return torch.tensor([[(u - 15.5) * z / 20.0, (v - 11.5) * z / 20.0, z] for u, v, z in uvz])[None, :, None]


def test_config_values_are_checked():
    assert FieldConfig().unseen_points == "empty" and ModelConfig().unseen_points == "empty"
    with pytest.raises(ValueError, match="unseen_points must be one of"):
        FieldConfig(unseen_points="border")
    with pytest.raises(ValueError, match="unseen_points must be one of"):
        ModelConfig(unseen_points="zero")
    assert field_reason(_field(unseen_points="extrapolate")) is None  # the fused kernel extrapolates too


def test_seen_points_are_unchanged_and_unseen_ones_in_front_of_a_view_get_density():
    """Random points around three cameras: where a view sees the point both modes agree bit
    for bit (and pool the same views); a point no view sees gets density 0 in "empty" and
    the MLP's (> 0, softplus) in "extrapolate" when it lies in front of some camera, 0 when it
    lies behind all of them; num_visible counts seeing views in both."""
    empty, extra = _pair()
    src = _sources(CAMS)
    pts, dirs = _points(B=2, R=40, S=8)
    pts = pts * 6.0                      # many points leave every image
    pts[0, -1] = pts[0, -1] * 0.1 + torch.tensor([0.0, 0.0, -10.0])      # behind all three cameras
    pts[1, -1] = pts[1, -1] * 0.1 + torch.tensor([0.0, -20.0, -30.0])
    a, b = empty(pts, dirs, empty.prepare(src)), extra(pts, dirs, extra.prepare(src))
    seen = a.num_visible > 0
    assert torch.equal(a.num_visible, b.num_visible)
    for name in ("logits", "rgb", "density"):
        assert torch.equal(getattr(a, name)[seen], getattr(b, name)[seen]), name
    z = torch.stack([(torch.linalg.inv(src.c2w[i])[:, None, None, :3, :3] @ pts[i][None, ..., None])[..., 0]
                     + torch.linalg.inv(src.c2w[i])[:, None, None, :3, 3] for i in range(2)])[..., 2]  # [B, V, R, S]
    in_front = (z > 0).any(dim=1)
    outside = ~seen & in_front
    behind = ~seen & ~in_front
    assert int(outside.sum()) > 20 and int(behind.sum()) > 5 and int(seen.sum()) > 20
    assert (a.density[~seen] == 0).all()
    assert (b.density[outside] > 0).all() and (b.density[behind] == 0).all()
    assert torch.isfinite(b.logits).all() and torch.isfinite(b.rgb).all()


def test_an_unseen_point_reads_the_nearest_border_pixel():
    """With the position and direction weights zeroed the field depends on the sampled
    feature alone: a point beyond the right edge (u = 40) or the bottom-left corner reads the
    feature at the nearest border feature-pixel centre (u = 4 * 7 + 1.5 = 29.5 for the last
    column of the stride-4 map, v = 21.5 for the last row, u = 1.5 for the first column), so
    it matches the visible point there."""
    _, field = _pair()
    with torch.no_grad():
        field.lin_in.weight[:, :field.xyz_dim + field.dir_dim] = 0.0
    src = _identity_view()
    pts = _at_pixels([(40.0, 5.5, 2.0), (29.5, 5.5, 3.0), (-20.0, 50.0, 1.5), (1.5, 21.5, 2.5)])
    out = field(pts, F.normalize(torch.ones(1, 4, 3), dim=-1), field.prepare(src))
    assert out.num_visible[0, :, 0].tolist() == [0, 1, 0, 1]
    torch.testing.assert_close(out.logits[0, 0], out.logits[0, 1])
    torch.testing.assert_close(out.density[0, 0], out.density[0, 1])
    torch.testing.assert_close(out.logits[0, 2], out.logits[0, 3])
    assert not torch.allclose(out.logits[0, 0], out.logits[0, 2])


def test_an_unseen_point_pools_only_the_views_it_is_in_front_of():
    """A point outside camera 1's image, behind camera 2: the field with both cameras gives
    what the field with camera 1 alone gives."""
    _, field = _pair()
    src = _sources([[(0, 0, -3), (0, 0, 3)]])               # camera 2 looks back at camera 1
    one = SourceViews(src.features[:, :1], src.K[:, :1], src.c2w[:, :1], H, W)
    p = torch.tensor([10.0, 0.0, 4.0]).reshape(1, 1, 1, 3)  # 7 m in front of camera 1, right of its image; behind 2
    d = F.normalize(torch.ones(1, 1, 3), dim=-1)
    both_out, one_out = field(p, d, field.prepare(src)), field(p, d, field.prepare(one))
    assert both_out.num_visible.item() == 0 and both_out.density.item() > 0
    torch.testing.assert_close(both_out.logits, one_out.logits)
    torch.testing.assert_close(both_out.density, one_out.density)


def test_depth_evidence_does_not_vote_on_unseen_points():
    """The camera measured 1 m everywhere. A point at 0.5 m inside the image is seen through
    (carved: density 0); the same depth outside the image keeps the MLP's density, the same as
    the field without evidence."""
    kw = dict(source_depth=True, unseen_points="extrapolate")
    plain = _field(**kw)
    ev = _field(depth_evidence=True, **kw)
    with torch.no_grad():
        plain.depth_embed.proj.weight.normal_(0, 0.3)
    ev.load_state_dict(plain.state_dict(), strict=False)
    src = _identity_view(depth=torch.ones(1, 1, H, W))
    pts = _at_pixels([(10.5, 5.5, 0.5), (45.0, 5.5, 0.5)])
    d = F.normalize(torch.ones(1, 2, 3), dim=-1)
    a, b = plain(pts, d, plain.prepare(src)), ev(pts, d, ev.prepare(src))
    assert b.num_visible[0, :, 0].tolist() == [1, 0]
    assert b.density[0, 0, 0].item() == 0.0 and a.density[0, 0, 0].item() > 0
    assert b.density[0, 1, 0].item() > 0
    torch.testing.assert_close(b.density[0, 1], a.density[0, 1])


def test_measured_empty_keeps_unseen_points_in_front_of_a_view():
    """Without depth: the query presets skip every unseen point of an "empty" field (exact),
    but of an "extrapolate" field only those behind every camera."""
    src = _identity_view()
    pts = _at_pixels([(10.5, 5.5, 2.0), (45.0, 5.5, 2.0)]).reshape(1, 2, 3)
    pts = torch.cat([pts, torch.tensor([[[0.0, 0.0, -1.0]]])], dim=1)     # behind the camera
    args = (None, src.K, src.c2w, H, W, 0.05)
    assert measured_empty(pts, *args).tolist() == [[False, True, True]]
    assert measured_empty(pts, *args, extrapolate=True).tolist() == [[False, False, True]]


def test_confidence_counts_only_observed_opacity():
    """A ray whose samples no view sees, in front of the camera: "extrapolate" makes it
    opaque, but its confidence is 0. A ray through seen space has the same confidence in both
    modes (bit for bit)."""
    torch.manual_seed(0)
    cfg = RendererConfig(num_coarse=16, num_fine=0, near=0.5, far=4.0)
    empty = Renderer(16, FieldConfig(hidden_dim=32), cfg)
    extra = Renderer(16, FieldConfig(hidden_dim=32, unseen_points="extrapolate"), cfg)
    with torch.no_grad():
        empty.coarse.rgb_density_head.out.bias[3] = 5.0     # dense everywhere it is evaluated
    extra.load_state_dict(empty.state_dict())
    src = _identity_view()
    origins = torch.zeros(1, 2, 3)
    directions = F.normalize(torch.tensor([[[0.0, 0.0, 1.0], [3.0, 0.0, 1.0]]]), dim=-1)  # centre; 71.6 deg off-axis
    rays = RayBundle(origins, directions, torch.full((1, 2), 0.5), torch.full((1, 2), 4.0),
                     directions[..., 2])
    a, b = empty(rays, src).final, extra(rays, src).final
    assert a.opacity[0, 0] > 0.99 and a.opacity[0, 1] == 0 and a.confidence[0, 1] == 0
    assert b.opacity[0, 1] > 0.99 and b.confidence[0, 1] == 0
    assert torch.equal(a.confidence[0, 0], b.confidence[0, 0]) and a.confidence[0, 0] > 0


def test_query_presets_render_an_extrapolating_model_like_the_reference(make_config, box_room, monkeypatch):
    """rgbd_full (no skipping) matches ViewSeg.render; rgbd (free-space skipping) keeps the
    unseen points in front of a source, so it fills the same pixels."""
    model = extend_model(_rgb_model(make_config, num_coarse=8, num_fine=0), source_depth=True, depth_guided=True,
                         guide_samples=8, depth_evidence=True, unseen_points="extrapolate")
    assert model.renderer.coarse.config.unseen_points == "extrapolate"
    sources = _room_sources(model, box_room, _source_depth(box_room))
    H_, W_, K, c2w = box_room.height, box_room.width, box_room.K, box_room.target_c2w[0]
    monkeypatch.setenv("VIEWSEG_COMPOSITING", "reference")
    ref = model.render(K, c2w, H_, W_, sources)
    # amp off: compared at float32 tolerance (auto is bf16 on CPUs with native bf16)
    full, _ = render_query_stats(model, K, c2w, H_, W_, sources, dataclasses.replace(PRESETS["rgbd_full"], amp="off"))
    torch.testing.assert_close(full.depth, ref.depth, rtol=1e-4, atol=1e-4, equal_nan=True)
    torch.testing.assert_close(full.confidence, ref.confidence, rtol=1e-4, atol=1e-4)
    skip, _ = render_query_stats(model, K, c2w, H_, W_, sources, dataclasses.replace(PRESETS["rgbd"], amp="off"))
    assert torch.equal(torch.isfinite(skip.depth), torch.isfinite(ref.depth))
    assert not math.isnan(float(ref.confidence.mean()))
