"""RGB-D ViewSeg (issue 15): an RGB model's weights start the RGB-D model as the same function,
depth-guided sampling in training and in the query presets, and the dropout behaviour."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from viewseg_core.model.fast import PRESETS, render_query_stats
from viewseg_core.model.viewseg import ModelConfig, ViewSeg
from viewseg_core.model.weights import extend_model, load_state_strict, model_checkpoint, model_from_checkpoint
from viewseg_core.rays import grid_rays, random_rays

from .conftest import BoxRoom


def _rgb_model(make_config, **overrides) -> ViewSeg:
    """A tiny RGB model with every renderer weight random (so that every layer matters)."""
    torch.manual_seed(0)
    model = ViewSeg(make_config(**overrides)).eval()
    with torch.no_grad():
        for p in model.renderer.parameters():
            p.copy_(torch.randn_like(p) * (0.3 / max(1, p.shape[-1]) ** 0.5 if p.ndim > 1 else 0.1))
    return model


def _source_depth(room, holes: bool = True) -> torch.Tensor:
    """[1, 4, H, W] the room's exact source depth, with a NaN block and a zero block."""
    depth = torch.stack([d for _, _, d in room.source])[None].clone()
    if holes:
        depth[0, 0, 2:8, 3:12] = math.nan
        depth[0, 2, 10:14, 20:30] = 0.0
    return depth


def _sources(model, room, depth=None):
    rgb = room.source_rgb()
    with torch.no_grad():
        feats = model.encode_sources(rgb)
    return model.make_sources(feats, room.K.expand(1, 4, 3, 3), room.source_c2w[None], room.height, room.width,
                              rgb=rgb, depth=depth)


def _equal(a, b) -> bool:
    return all(torch.equal(torch.nan_to_num(x, nan=-1.0), torch.nan_to_num(y, nan=-1.0))
               for x, y in ((a.logits, b.logits), (a.depth, b.depth), (a.rgb, b.rgb), (a.opacity, b.opacity)))


def test_new_config_keys_default_off_and_old_checkpoints_load():
    cfg = ModelConfig()
    assert (cfg.source_depth, cfg.depth_guided, cfg.guide_samples, cfg.guide_band, cfg.guide_footprint) == \
        (False, False, 8, 0.1, 2)
    assert not cfg.reads_source_depth and ModelConfig(depth_guided=True).reads_source_depth
    for bad in ({"guide_band": 0.0}, {"guide_samples": 0}, {"guide_footprint": 0}):
        with pytest.raises(ValueError, match="must be positive"):
            ModelConfig(**bad)


def test_rgb_checkpoint_starts_the_rgbd_model_bit_identically(make_config, box_room):
    """A checkpoint written before these keys existed loads as RGB; extend_model adds the
    depth cue as a no-op: the same images, bit for bit, from the reference and the fast path."""
    rgb_model = _rgb_model(make_config, view_pooling="mean_var", source_rgb=True)
    ckpt = model_checkpoint(rgb_model)
    for key in ("source_depth", "depth_guided", "guide_samples", "guide_band", "guide_footprint"):
        del ckpt["config"][key]
    old = model_from_checkpoint(ckpt, "old.pt").eval()
    assert not old.config.source_depth and not old.config.depth_guided
    rgbd = extend_model(old, source_depth=True)
    assert rgbd.renderer.coarse.depth_embed is not None and not rgbd.training
    with pytest.raises(ValueError, match="missing 4: .*depth_embed"):
        load_state_strict(ViewSeg(rgbd.config), old.state_dict(), "old.pt")
    depth = _source_depth(box_room)
    H, W, K, c2w = box_room.height, box_room.width, box_room.K, box_room.target_c2w[0]
    with torch.no_grad():
        a = old.render(K, c2w, H, W, _sources(old, box_room))
        b = rgbd.render(K, c2w, H, W, _sources(rgbd, box_room, depth))
    assert _equal(a, b)
    fa, _ = render_query_stats(old, K, c2w, H, W, _sources(old, box_room), "fast")
    fb, _ = render_query_stats(rgbd, K, c2w, H, W, _sources(rgbd, box_room, depth), "fast")
    assert _equal(fa, fb)


def test_depth_guided_without_depth_is_the_rgb_coarse_pass(make_config, box_room):
    """Keyframes without depth (dropout behaviour): every ray gets num_coarse + guide_samples
    stratified samples, the RGB model with that many coarse samples."""
    rgb_model = _rgb_model(make_config, num_coarse=8, num_fine=8)
    guided = extend_model(rgb_model, source_depth=True, depth_guided=True, guide_samples=8)
    dense = extend_model(rgb_model, num_coarse=16)
    H, W, K, c2w = box_room.height, box_room.width, box_room.K, box_room.target_c2w[1]
    with torch.no_grad():
        a = dense.render(K, c2w, H, W, _sources(dense, box_room))
        b = guided.render(K, c2w, H, W, _sources(guided, box_room))
        nan = guided.render(K, c2w, H, W, _sources(guided, box_room, torch.full((1, 4, H, W), math.nan)))
    assert _equal(a, b) and _equal(a, nan)


def test_rgbd_preset_matches_the_reference_path(make_config, box_room, monkeypatch):
    """The rgbd_full preset (8 stratified + 8 band, one pass) renders what ViewSeg.render renders
    for a depth-guided model with those counts, to float rounding; 16 points per ray."""
    model = extend_model(_rgb_model(make_config, num_coarse=8, num_fine=0), source_depth=True,
                         depth_guided=True, guide_samples=8)
    with torch.no_grad():
        model.renderer.coarse.depth_embed.proj.weight.normal_(0, 0.3)
        model.renderer.coarse.depth_embed.unknown.normal_(0, 0.3)
    sources = _sources(model, box_room, _source_depth(box_room))
    H, W, K, c2w = box_room.height, box_room.width, box_room.K, box_room.target_c2w[0]
    fp32 = dataclasses.replace(PRESETS["rgbd_full"], amp="off")  # compared at float32 tolerance (auto: bf16 on some CPUs)
    fast, stats = render_query_stats(model, K, c2w, H, W, sources, fp32)
    assert PRESETS["rgbd_full"].label == "rgbd_full (8s+8b+0)"
    assert stats.points_per_ray == 16 and stats.fine_points == 0
    monkeypatch.setenv("VIEWSEG_COMPOSITING", "reference")
    model.set_projected_features(False)
    ref = model.render(K, c2w, H, W, sources)
    scale = float(ref.logits.abs().max())
    assert float((fast.logits - ref.logits).abs().max()) < 1e-4 * scale
    torch.testing.assert_close(fast.depth, ref.depth, rtol=1e-4, atol=1e-4, equal_nan=True)
    # The preset on an RGB model's sources without depth: the 16 samples are stratified.
    plain, st = render_query_stats(model, K, c2w, H, W, _sources(model, box_room), fp32)
    assert st.points_per_ray == 16 and not _equal(plain, fast)


def _training_batch(room, B=2, R=60, Rs=16, seed=0, depth=True):
    g = torch.Generator().manual_seed(seed)
    H, W = room.height, room.width
    tgt = room.target_c2w[torch.arange(B) % 2]
    rays, idx = random_rays(room.K.expand(B, 3, 3), tgt, H, W, R, g, near=0.1, far=6.0)
    srays, sidx = random_rays(room.K.expand(B, 4, 3, 3), room.source_c2w.expand(B, 4, 4, 4), H, W, Rs // 4, g,
                              near=0.1, far=6.0)
    batch = {"source_rgb": room.source_rgb().expand(B, -1, -1, -1, -1), "source_K": room.K.expand(B, 4, 3, 3),
             "source_c2w": room.source_c2w.expand(B, 4, 4, 4), "target_rays": rays,
             "source_rays": srays.reshape(B, -1), "target_K": room.K.expand(B, 3, 3), "target_c2w": tgt,
             "target_size": torch.tensor([H, W]).expand(B, 2)}
    if depth:
        batch["source_depth_input"] = _source_depth(room).expand(B, -1, -1, -1)
    truth = torch.stack([room.target[b % 2][2].reshape(-1)[idx[b]] for b in range(B)])          # [B, R]
    src_truth = torch.stack([torch.stack([room.source[v][2].reshape(-1)[sidx[b, v]] for v in range(4)])
                             for b in range(B)]).reshape(B, -1)                                     # [B, Rs]
    return batch, torch.cat([truth, src_truth], dim=1)


def test_training_samples_bracket_the_measured_surface(make_config):
    """Training forward of a depth-guided model: target rays are guided by the splat into the
    target camera, source rays by the splats into their own cameras; wherever a ray has a
    candidate, its 8 jittered band samples lie within 0.1 m of it, and the candidates are
    the true surface for nearly every ray."""
    room = BoxRoom(48, 64, 36.0)                                      # twice the fixture's resolution
    torch.manual_seed(0)
    model = ViewSeg(make_config(source_depth=True, depth_guided=True, guide_samples=8, num_coarse=4)).train()
    batch, truth = _training_batch(room)
    out = model(batch, generator=torch.Generator().manual_seed(0))
    t = torch.cat([out["target"].coarse.t, out["source"].coarse.t], dim=1)                           # [B, R+Rs, 12]
    rays = type(batch["target_rays"]).cat([batch["target_rays"], batch["source_rays"]], dim=1)
    sources = model.make_sources(torch.zeros(2, 4, 32, 12, 16), batch["source_K"], batch["source_c2w"], 48, 64,
                                 depth=batch["source_depth_input"])
    guide = model._training_guides(batch, sources, batch["target_rays"], batch["source_rays"])
    has = ~torch.isnan(guide)
    assert float(has.float().mean()) > 0.95
    in_band = ((t - guide[..., None]).abs() <= 0.1 + 1e-6).sum(-1)
    assert bool((in_band[has] >= 8).all())
    assert bool((t[..., 1:] >= t[..., :-1]).all())
    planar = guide * rays.z_axis
    err = (planar - truth)[has].abs()
    assert float((err < 0.1).float().mean()) > 0.95
    # The depth cue reaches the loss from the first step.
    out["target"].coarse.logits.square().mean().backward()
    assert model.renderer.coarse.depth_embed.proj.weight.grad.abs().sum() > 0


def test_training_batch_without_depth_or_target_camera(make_config, box_room):
    torch.manual_seed(0)
    model = ViewSeg(make_config(source_depth=True, depth_guided=True, num_coarse=4, guide_samples=4)).train()
    batch, _ = _training_batch(box_room, depth=False)                  # dropout behaviour: no candidates
    out = model(batch, perturb=False)
    rays = batch["target_rays"]
    from viewseg_core.sampling import stratified_samples
    assert torch.equal(out["target"].coarse.t, stratified_samples(rays, 8, perturb=False))
    batch, _ = _training_batch(box_room)
    for key in ("target_K", "target_c2w", "target_size"):
        del batch[key]
    with pytest.raises(ValueError, match=r"needs the target camera: it lacks \['target_K', 'target_c2w', "
                                         r"'target_size'\]"):
        model(batch)
    # An RGB model ignores source depth entirely.
    rgb = ViewSeg(dataclasses.replace(model.config, source_depth=False, depth_guided=False))
    batch, _ = _training_batch(box_room)
    rgb(batch)


def test_renderer_refuses_depth_without_guides(make_config, box_room):
    model = ViewSeg(make_config(depth_guided=True)).eval()
    sources = _sources(model, box_room, _source_depth(box_room))
    rays = grid_rays(box_room.K[None], box_room.target_c2w[:1], box_room.height, box_room.width)
    with pytest.raises(ValueError, match="needs guide distances"):
        model.renderer(rays, sources)


def test_skip_free_is_exact_without_depth_and_skips_with_it(make_config, box_room):
    """skip_free without source depth skips only what no source sees, where the field's
    density is 0 anyway: the same image as evaluating every sample. With the room's depth it
    evaluates fewer points."""
    from viewseg_core.model.fast import QueryPreset
    model = extend_model(_rgb_model(make_config, num_coarse=8, num_fine=0), source_depth=True,
                         depth_guided=True, guide_samples=8)
    H, W, K, c2w = box_room.height, box_room.width, box_room.K, box_room.target_c2w[1]
    full, skip = QueryPreset("full", 8, 0, guide_samples=8), QueryPreset("skip", 8, 0, guide_samples=8, skip_free=True)
    plain = _sources(model, box_room)
    a, sa = render_query_stats(model, K, c2w, H, W, plain, full)
    b, sb = render_query_stats(model, K, c2w, H, W, plain, skip)
    assert sb.points_per_ray < sa.points_per_ray == 16                  # target 1 sees past the sources
    torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.depth, a.depth, rtol=1e-5, atol=1e-5, equal_nan=True)
    with_depth = _sources(model, box_room, _source_depth(box_room))
    _, sd = render_query_stats(model, K, c2w, H, W, with_depth, skip)
    assert sd.points_per_ray < sb.points_per_ray
    assert PRESETS["rgbd"].skip_free and PRESETS["rgbd"].guide_samples == 4 and PRESETS["rgbd"].num_fine == 0


def test_skip_free_never_empties_a_pixel_the_full_pass_fills(make_config, box_room, monkeypatch):
    """Rays that come out below the opacity threshold with samples skipped (plenty, with
    random weights) are evaluated again at every sample: they equal the full pass, and every
    pixel the full pass fills is filled."""
    import viewseg_core.model.fast as fast
    from viewseg_core.model.fast import QueryPreset
    model = extend_model(_rgb_model(make_config, num_coarse=8, num_fine=0), source_depth=True,
                         depth_guided=True, guide_samples=8)
    sources = _sources(model, box_room, _source_depth(box_room))
    H, W, K = box_room.height, box_room.width, box_room.K
    one_chunk = dict(guide_samples=8, point_budget=10**6)
    full, skip = QueryPreset("full", 8, 0, **one_chunk), QueryPreset("skip", 8, 0, skip_free=True, **one_chunk)
    masks = []
    packed = fast._eval_packed
    monkeypatch.setattr(fast, "_eval_packed", lambda *a, **k: masks.append(a[4]) or packed(*a, **k))
    for c2w in box_room.target_c2w:
        masks.clear()
        a, _ = render_query_stats(model, K, c2w, H, W, sources, full)
        b, st = render_query_stats(model, K, c2w, H, W, sources, skip)
        assert len(masks) == 2                                          # the skipping pass, the redo
        redone = masks[1].any(-1).reshape(H, W)
        assert 0 < int(redone.sum()) < H * W and st.points_per_ray < 16
        assert bool((b.valid | ~a.valid).all())
        torch.testing.assert_close(b.logits[redone], a.logits[redone], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b.depth[redone], a.depth[redone], rtol=1e-5, atol=1e-5, equal_nan=True)


def test_fine_pass_only_where_the_measured_depth_does_not_explain_the_ray(make_config, box_room):
    """fine_unexplained: rays whose coarse depth lies within EXPLAINED_BANDS band half-widths of
    their candidate surface keep the coarse pass (exactly the coarse-only preset there); the
    others get the fine pass (the full fine preset there), and only their points are evaluated."""
    from viewseg_core.model.fast import EXPLAINED_BANDS, QueryPreset, explained_rays
    model = extend_model(_rgb_model(make_config, num_coarse=8, num_fine=4), source_depth=True, depth_guided=True,
                         guide_samples=4, depth_evidence=True)
    sources = _sources(model, box_room, _source_depth(box_room))
    H, W, K = box_room.height, box_room.width, box_room.K
    common = dict(guide_samples=4, skip_free=True, point_budget=10**6, amp="off")
    coarse_only = QueryPreset("coarse", 8, 0, **common)
    full_fine = QueryPreset("fine", 8, 4, skip_weight=1e-3, **common)
    selective = dataclasses.replace(full_fine, name="selective", fine_unexplained=True)
    for c2w in box_room.target_c2w:
        c, _ = render_query_stats(model, K, c2w, H, W, sources, coarse_only)
        f, sf = render_query_stats(model, K, c2w, H, W, sources, full_fine)
        s, ss = render_query_stats(model, K, c2w, H, W, sources, selective)
        rays = grid_rays(K[None], c2w[None], H, W, near=model.config.near, far=model.config.far)
        guide = model.renderer.guides(sources, K[None, None], c2w[None, None], H, W, rays)
        explained = explained_rays(c.map(lambda x: x.reshape(1, H * W, *x.shape[2:])), rays, guide,
                                   EXPLAINED_BANDS * model.config.guide_band).reshape(H, W)
        assert 0 < int(explained.sum()) < H * W
        assert 0 < ss.fine_points < sf.fine_points
        for name in ("logits", "depth", "opacity", "confidence", "rgb"):
            a, b = getattr(s, name), getattr(c, name)
            assert torch.equal(torch.nan_to_num(a[explained], nan=-1.0), torch.nan_to_num(b[explained], nan=-1.0))
            torch.testing.assert_close(a[~explained], getattr(f, name)[~explained], rtol=1e-5, atol=1e-5,
                                       equal_nan=True)
    assert "fine-unexplained" in selective.label and PRESETS["rgbd_fine"].fine_unexplained
    for bad in (dict(guide_samples=0), dict(num_fine=0)):
        with pytest.raises(ValueError, match="fine_unexplained needs band samples and a fine pass"):
            dataclasses.replace(selective, **bad)


def test_explained_rays_by_hand():
    """A ray explained: rendered depth (planar) / z_axis within the tolerance of its candidate."""
    from viewseg_core.model.fast import explained_rays
    from viewseg_core.model.renderer import PassOutput
    from viewseg_core.rays import RayBundle
    depth = torch.tensor([[2.0, 2.0, float("nan"), 2.0, 2.0]])
    z_axis = torch.tensor([[1.0, 0.5, 1.0, 1.0, 1.0]])
    guide = torch.tensor([[2.1, 4.1, 2.0, float("nan"), 2.5]])      # ray distances
    zeros = torch.zeros(1, 5)
    coarse = PassOutput(zeros[..., None], zeros[..., None], zeros[..., None].expand(1, 5, 3), depth, depth, zeros,
                        zeros, torch.isfinite(depth))
    rays = RayBundle(origins=torch.zeros(1, 5, 3), directions=torch.zeros(1, 5, 3), near=zeros, far=zeros + 10,
                     z_axis=z_axis)
    got = explained_rays(coarse, rays, guide, tolerance=0.2)
    assert got.tolist() == [[True, True, False, False, False]]   # 0.1 off, 0.1 off (4.0 along the ray), NaN, NaN, 0.5


def test_explained_rays_and_skipping_read_every_candidate_layer():
    """With two candidates a ray is explained by either; the farthest bounds what lies behind."""
    from viewseg_core.model.fast import explained_rays, farthest_candidate
    from viewseg_core.model.renderer import PassOutput
    from viewseg_core.rays import RayBundle
    nan = float("nan")
    depth = torch.tensor([[2.0, 3.0, 3.0, nan]])
    guide = torch.tensor([[[2.1, 3.05], [2.0, 3.1], [2.0, nan], [2.0, 3.0]]])
    zeros = torch.zeros(1, 4)
    coarse = PassOutput(zeros[..., None], zeros[..., None], zeros[..., None].expand(1, 4, 3), depth, depth, zeros,
                        zeros, torch.isfinite(depth))
    rays = RayBundle(origins=torch.zeros(1, 4, 3), directions=torch.zeros(1, 4, 3), near=zeros, far=zeros + 10,
                     z_axis=torch.ones(1, 4))
    assert explained_rays(coarse, rays, guide, tolerance=0.2).tolist() == [[True, True, False, False]]
    far = farthest_candidate(guide, rays)
    torch.testing.assert_close(far, torch.tensor([[3.05, 3.1, 2.0, 3.0]]))
    assert torch.isnan(farthest_candidate(torch.full((1, 4, 2), nan), rays)).all()
    assert torch.equal(farthest_candidate(guide[..., 0], rays), guide[..., 0])


def test_two_guide_layers_render_through_every_path(make_config, box_room):
    """guide_layers 2: a config key that old checkpoints lack (they load with 1); the model's
    own samples, the rgbd presets and a training step all take the layered candidates; rays
    without a second candidate render as in the one-layer model, the others differently."""
    from viewseg_core.model.fast import render_query
    assert ModelConfig().guide_layers == 1
    with pytest.raises(ValueError, match="guide_layers must be 1 or 2"):
        ModelConfig(guide_layers=3)
    model = extend_model(_rgb_model(make_config, num_coarse=8, num_fine=4), source_depth=True, depth_guided=True,
                         guide_samples=4, depth_evidence=True)
    ckpt = model_checkpoint(model)
    del ckpt["config"]["guide_layers"]
    assert model_from_checkpoint(ckpt, "old.pt").config.guide_layers == 1
    layered = extend_model(model, guide_layers=2)
    assert layered.renderer.config.guide_layers == 2
    depth = _source_depth(box_room)
    sources = _sources(model, box_room, depth)
    H, W, K = box_room.height, box_room.width, box_room.K
    c2w = box_room.target_c2w[0]
    rays = grid_rays(K[None], c2w[None], H, W, near=model.config.near, far=model.config.far)
    guide = layered.renderer.guides(sources, K[None, None], c2w[None, None], H, W, rays)
    assert guide.shape == (1, H * W, 2)
    second = torch.isfinite(guide[..., 1]).reshape(H, W)
    assert 0 < int(second.sum()) < H * W // 4                          # the table's silhouette, not the walls
    for render in (lambda m: m.render(K, c2w, H, W, sources), lambda m: render_query(m, K, c2w, H, W, sources, "rgbd"),
                   lambda m: render_query(m, K, c2w, H, W, sources, "rgbd_fine")):
        a, b = render(model), render(layered)
        assert torch.isfinite(b.logits).all()
        torch.testing.assert_close(b.depth[~second], a.depth[~second], rtol=1e-5, atol=1e-5, equal_nan=True)
        assert not torch.allclose(b.depth[second], a.depth[second], equal_nan=True)
    batch, _ = _training_batch(box_room)
    out = layered.train()(batch, generator=torch.Generator().manual_seed(0))
    assert out["target"].coarse.t.shape[-1] == 8 + 4
    out["target"].coarse.logits.square().mean().backward()
