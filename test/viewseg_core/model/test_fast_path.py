"""The query fast path (viewseg_core/model/fast.py) renders what the reference path renders.

Reference = ``ViewSeg.render`` with per-point sampling of the raw feature maps
(``projected_features=False``), unfused PyTorch compositing, float32. Tolerances:

- fp32, nothing skipped: logits within 1e-4 of the reference relative to their largest
  magnitude (the paths differ only in summation order: projected maps, chunking);
- bf16 autocast (CPU here; the CUDA default): logits within 5e-2 relative to their largest
  magnitude (bf16 keeps 8 mantissa bits, ~4e-3 per rounding, through ~12 layers), and
  argmax labels equal on >= 99% of pixels.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import replace

import pytest
import torch

from viewseg_core.model import fast
from viewseg_core.model.fast import PRESETS, RAY_CHUNK_CALLS, QueryPreset, RenderCancelled, _eval_packed, \
    check_amp, low_precision_field, occupied_samples, render_query, render_query_stats
from viewseg_core.model.field import FieldConfig, ResBlock, SemanticField
from viewseg_core.model.viewseg import ViewSeg

from .conftest import BoxRoom

H, W = 24, 32


def _model(make_config, **overrides) -> ViewSeg:
    """A tiny model with every field weight random (fc1 starts at zero otherwise, making the
    blocks identities), scaled so the field has structure."""
    torch.manual_seed(0)
    model = ViewSeg(make_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.renderer.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 / max(1, p.shape[-1]) ** 0.5 if p.ndim > 1 else 0.1))
    return model


def _sources(model, room):
    with torch.no_grad():
        feats = model.encode_sources(room.source_rgb())
    return model.make_sources(feats, room.K.expand(1, 4, 3, 3), room.source_c2w[None], room.height, room.width)


def _reference(model, room, sources, monkeypatch, c2w):
    monkeypatch.setenv("VIEWSEG_COMPOSITING", "reference")
    model.set_projected_features(False)
    try:
        return model.render(room.K, c2w, room.height, room.width, sources)
    finally:
        model.set_projected_features(True)
        monkeypatch.delenv("VIEWSEG_COMPOSITING")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def test_fp32_fast_path_matches_reference(make_config, box_room, monkeypatch):
    model = _model(make_config)
    sources = _sources(model, box_room)
    c2w = box_room.target_c2w[0]
    ref = _reference(model, box_room, sources, monkeypatch, c2w)
    cfg = model.config
    # A small point budget forces several chunks and several fine calls.
    preset = QueryPreset("exact", cfg.num_coarse, cfg.num_fine, amp="off", point_budget=97)
    out, stats = render_query_stats(model, box_room.K, c2w, box_room.height, box_room.width, sources, preset)
    assert out.logits.shape == (box_room.height, box_room.width, cfg.num_classes)
    assert stats.field_calls > 2 and stats.fine_points == stats.fine_points_dense
    assert _rel(out.logits, ref.logits) < 1e-4
    assert _rel(out.rgb, ref.rgb) < 1e-4
    torch.testing.assert_close(out.opacity, ref.opacity, rtol=1e-4, atol=1e-5)
    assert torch.equal(out.valid, ref.valid)
    assert torch.equal(out.labels, ref.labels)


def test_bf16_within_documented_tolerance(make_config, box_room, monkeypatch):
    """amp=bf16 (on CPU: a bf16 copy of the field's weights) against the float32 reference."""
    model = _model(make_config)
    sources = _sources(model, box_room)
    c2w = box_room.target_c2w[1]
    ref = _reference(model, box_room, sources, monkeypatch, c2w)
    cfg = model.config
    out = render_query(model, box_room.K, c2w, box_room.height, box_room.width, sources,
                       QueryPreset("bf16", cfg.num_coarse, cfg.num_fine, amp="bf16"))
    assert out.logits.dtype == torch.float32      # compositing accumulates in float32
    assert _rel(out.logits, ref.logits) < 5e-2
    agree = (out.logits.argmax(-1) == ref.logits.argmax(-1)).float().mean()
    assert agree >= 0.99, f"bf16 argmax agrees on {100 * float(agree):.1f}% of pixels"


def test_cpu_bf16_runs_a_cached_bf16_copy_of_the_field(make_config, box_room):
    """On CPU amp=bf16 evaluates a bf16 copy of each field, made once, rebuilt when a weight
    of the original changes, never touching the original."""
    model = _model(make_config)
    sources = _sources(model, box_room)
    c2w = box_room.target_c2w[1]
    cfg = model.config
    preset = QueryPreset("bf16", cfg.num_coarse, cfg.num_fine, amp="bf16")
    coarse = model.renderer.coarse
    seen = []
    plain = SemanticField.forward
    try:
        SemanticField.forward = lambda self, *a: seen.append(self) or plain(self, *a)
        first = render_query(model, box_room.K, c2w, box_room.height, box_room.width, sources, preset)
    finally:
        SemanticField.forward = plain
    low = low_precision_field(coarse, torch.bfloat16)
    assert low is not coarse and low in seen and coarse not in seen
    assert all(p.dtype == torch.bfloat16 for p in low.parameters())
    assert all(p.dtype == torch.float32 for p in coarse.parameters())
    assert low_precision_field(coarse, torch.bfloat16) is low  # cached
    render_query(model, box_room.K, c2w, box_room.height, box_room.width, sources, preset)
    assert low_precision_field(coarse, torch.bfloat16) is low  # a query does not rebuild it
    with torch.no_grad():  # a training step changes the weights in place (version bump)
        coarse.lin_in.bias.add_(1.0)
    fresh = low_precision_field(coarse, torch.bfloat16)
    assert fresh is not low
    torch.testing.assert_close(fresh.lin_in.bias.float(), coarse.lin_in.bias.to(torch.bfloat16).float())
    changed = render_query(model, box_room.K, c2w, box_room.height, box_room.width, sources, preset)
    assert _rel(changed.logits, first.logits) > 1e-3  # the new weights are the ones used
    # float32 queries still run the original field.
    f32 = render_query(model, box_room.K, c2w, box_room.height, box_room.width, sources,
                       replace(preset, amp="off"))
    assert f32.logits.dtype == torch.float32


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16-cpu", "other-cpu"])
def test_auto_precision_on_cpu_follows_the_hardware(make_config, box_room, monkeypatch, native):
    """amp=auto on CPU: bf16 weights where the CPU multiplies bf16 natively (the same image as
    amp=bf16), float32 elsewhere (the same image as amp=off); the stats say which ran."""
    monkeypatch.setattr(fast, "cpu_has_native_bf16", lambda: native)
    model = _model(make_config)
    sources = _sources(model, box_room)
    c2w = box_room.target_c2w[1]
    cfg = model.config
    runs = {amp: render_query_stats(model, box_room.K, c2w, H, W, sources,
                                    QueryPreset("", cfg.num_coarse, cfg.num_fine, amp=amp))
            for amp in ("auto", "bf16", "off")}
    expected = "bf16" if native else "off"
    assert runs["auto"][1].precision == ("bf16" if native else "fp32")
    assert (runs["bf16"][1].precision, runs["off"][1].precision) == ("bf16", "fp32")
    assert torch.equal(runs["auto"][0].logits, runs[expected][0].logits)
    assert not torch.equal(runs["bf16"][0].logits, runs["off"][0].logits)


def test_batched_queries_equal_single_queries(make_config, box_room, monkeypatch):
    """B cameras in one call give each camera's image, and a field call holds at most the point
    budget in all, dense and packed (skipping) passes alike."""
    model = _model(make_config)
    sources = _sources(model, box_room)
    B = 2
    batched = model.make_sources(sources.features.expand(B, -1, -1, -1, -1), sources.K.expand(B, -1, -1, -1),
                                 sources.c2w.expand(B, -1, -1, -1), H, W)
    # CPU queries pad each call's rays to a bucket, a few points past the budget by design
    # (fast.call_bucket): switched off here, so that the budget is what is checked.
    monkeypatch.setattr(fast, "call_bucket", lambda rays, per_call=0: rays)
    preset = QueryPreset("skip", 8, 8, skip_weight=1e-3, point_budget=300)
    sizes = []
    plain = SemanticField.forward
    try:
        SemanticField.forward = lambda self, points, *a: sizes.append(points[..., 0].numel()) or plain(self, points, *a)
        both = render_query(model, box_room.K.expand(B, 3, 3), box_room.target_c2w, H, W, batched, preset)
    finally:
        SemanticField.forward = plain
    assert max(sizes) <= 300 and max(sizes) >= 200  # budget // B = 150 kept samples per camera
    assert both.logits.shape == (B, H, W, model.config.num_classes)
    for b in range(B):
        one = render_query(model, box_room.K, box_room.target_c2w[b], H, W, sources, preset)
        assert _rel(both.logits[b], one.logits) < 1e-5
        assert torch.equal(both.valid[b], one.valid)


def test_skipping_drops_points_and_keeps_the_image_close(make_config, box_room):
    model = _model(make_config)
    sources = _sources(model, box_room)
    c2w = box_room.target_c2w[0]
    exact, s0 = render_query_stats(model, box_room.K, c2w, H, W, sources, QueryPreset("", 8, 16))
    skipped, s1 = render_query_stats(model, box_room.K, c2w, H, W, sources, QueryPreset("", 8, 16, skip_weight=1e-2))
    assert s1.fine_points < s0.fine_points == s0.fine_points_dense == H * W * 24
    assert s1.coarse_points == s0.coarse_points == H * W * 8
    # Skipped samples carry < 1e-2 coarse weight; the fine image moves little.
    assert (skipped.labels == exact.labels).float().mean() > 0.9


def test_skipping_everything_gives_an_empty_image(make_config, box_room):
    model = _model(make_config)
    sources = _sources(model, box_room)
    out, stats = render_query_stats(model, box_room.K, box_room.target_c2w[0], H, W, sources,
                                    QueryPreset("", 8, 8, skip_weight=0.999999))
    assert stats.fine_points == 0
    assert (out.opacity == 0).all() and (out.labels == 255).all() and out.depth.isnan().all()


def test_packed_evaluation_equals_dense(make_config, box_room):
    """Packing kept samples (with padding across a batch of 2) and scattering back gives the
    dense field's values at kept samples and zeros elsewhere."""
    from viewseg_core.model.fast import QueryStats
    from viewseg_core.rays import grid_rays

    model = _model(make_config)
    sources = _sources(model, box_room)
    B = 2
    src = model.make_sources(sources.features.expand(B, -1, -1, -1, -1), sources.K.expand(B, -1, -1, -1),
                             sources.c2w.expand(B, -1, -1, -1), H, W)
    field = model.renderer.fine
    prepared = field.prepare(src)
    rays = grid_rays(box_room.K.expand(B, 3, 3), box_room.target_c2w, H, W, near=0.1, far=6.0)[:, :50]
    t = torch.linspace(0.5, 5.0, 6).expand(B, 50, 6)
    points = rays.points(t)
    keep = torch.rand(B, 50, 6, generator=torch.Generator().manual_seed(0)) < torch.tensor([0.3, 0.7])[:, None, None]
    with torch.no_grad():
        dense = field(points, rays.directions, prepared)
        packed = _eval_packed(field, prepared, points, rays.directions, keep, budget=37, stats=QueryStats())
    for name in ("density", "logits", "rgb", "num_visible"):
        d, p = getattr(dense, name), getattr(packed, name)
        k = keep.reshape(B, 50, 6, *([1] * (d.ndim - 3))).expand_as(d)
        torch.testing.assert_close(p[k], d[k].to(p.dtype), rtol=1e-4, atol=1e-5)  # matmul shapes differ
        assert (p[~k] == 0).all()


def test_occupied_samples_by_hand():
    t_c = torch.tensor([0.0, 1.0, 2.0, 3.0])
    w = torch.tensor([0.0, 0.5, 0.0, 0.0])
    t = torch.tensor([-0.5, 0.5, 1.5, 2.5, 3.5])
    # slots: before t0 -> w0 = 0; [0,1] -> 0.5; [1,2] -> 0.5; [2,3] -> 0; after -> w3 = 0
    assert occupied_samples(t_c, w, t, 0.1).tolist() == [False, True, True, False, False]
    w_last = torch.tensor([0.0, 0.0, 0.0, 0.2])
    assert occupied_samples(t_c, w_last, t, 0.1).tolist() == [False, False, False, True, True]


def test_inference_resblock_is_bit_exact():
    torch.manual_seed(0)
    block = ResBlock(16)
    torch.nn.init.normal_(block.fc1.weight)
    torch.nn.init.normal_(block.fc1.bias)
    x = torch.randn(5, 7, 16)
    with torch.enable_grad():
        trained_path = block(x)
    with torch.no_grad():
        inference_path = block(x)
    assert torch.equal(trained_path, inference_path)


def test_presets_and_validation():
    assert (PRESETS["paper"].num_coarse, PRESETS["paper"].num_fine, PRESETS["paper"].skip_weight) == (64, 128, 0.0)
    assert PRESETS["fast"].num_coarse + PRESETS["fast"].num_fine < 192
    with pytest.raises(ValueError, match="amp"):
        QueryPreset("x", 8, 8, amp="int8")
    with pytest.raises(ValueError, match="skip_weight"):
        QueryPreset("x", 8, 8, skip_weight=1.5)
    with pytest.raises(ValueError, match="num_coarse"):
        QueryPreset("x", 1, 8)
    # fp16 is CUDA autocast only: refused on CPU (a node checks it at start, a query at render).
    with pytest.raises(ValueError, match="amp fp16 needs CUDA"):
        check_amp(QueryPreset("x", 8, 8, amp="fp16"), "cpu")
    check_amp(QueryPreset("x", 8, 8, amp="fp16"), "cuda")
    check_amp(QueryPreset("x", 8, 8, amp="bf16"), "cpu")


# 16 points per ray (8 coarse + 8 fine, nothing skipped) and RAY_CHUNK_CALLS field calls of
# 1600 / RAY_CHUNK_CALLS points per chunk: 100 rays per chunk, so the 24 x 32 = 768 rays take 8
# chunks (starting at rays 0, 100, ..., 700). A chunk's coarse pass takes 4 calls of 25 rays x 8
# samples; its fine pass (coarse and fine samples, 16 per ray) takes 9 calls of up to 12 rays; the
# last chunk (68 rays) 3 + 6 calls.
CHUNKED = QueryPreset("chunked", 8, 8, amp="off", point_budget=1600 // RAY_CHUNK_CALLS)
CHUNKED_CALLS = 7 * (4 + 9) + 3 + 6


class _Counter:
    def __init__(self, stop_at: int | None):
        self.calls, self.stop_at = 0, stop_at

    def __call__(self) -> bool:
        self.calls += 1
        return self.stop_at is not None and self.calls >= self.stop_at


@pytest.mark.parametrize("stop_at, message, calls_done, rays_done", [
    (1, "after 0 of 768 rays (0 field calls)", 0, 0),
    (3, "after 0 of 768 rays (2 field calls)", 2, 0),        # inside the first chunk's coarse pass
    (6, "after 0 of 768 rays (5 field calls)", 5, 0),        # inside its fine pass
    (15, "after 100 of 768 rays (14 field calls)", 14, 100),  # chunk 0 done, one call of chunk 1
], ids=["first-call", "coarse", "fine", "second-chunk"])
def test_should_stop_is_asked_before_every_field_call(make_config, box_room, stop_at, message, calls_done,
                                                     rays_done):
    """A deadline stops the render before its next field call, not at the end of a ray chunk
    (8 field calls): the stats say what finished, and the point counters hold only finished
    chunks, like rays_done, so points per ray stays the render's (8 + 16 = 24 here)."""
    model = _model(make_config)
    sources = _sources(model, box_room)
    c2w = box_room.target_c2w[0]
    stop = _Counter(stop_at=stop_at)
    with pytest.raises(RenderCancelled, match=r"^render stopped " + re.escape(message) + "$") as caught:
        render_query(model, box_room.K, c2w, H, W, sources, CHUNKED, should_stop=stop)
    assert stop.calls == stop_at
    stats = caught.value.stats
    assert (stats.field_calls, stats.rays_done) == (calls_done, rays_done)
    chunks_done = rays_done // 100
    assert (stats.coarse_points, stats.fine_points) == (800 * chunks_done, 1600 * chunks_done)
    assert stats.points_per_ray == (24 if chunks_done else 0)
    assert issubclass(RenderCancelled, RuntimeError)


@pytest.mark.parametrize("preset", [QueryPreset("dense", 8, 8, amp="off", point_budget=150),
                                    QueryPreset("skip", 8, 8, skip_weight=1e-3, amp="off", point_budget=150)],
                         ids=["dense", "skipping"])
def test_ray_chunks_hold_several_calls_each_within_the_budget(make_config, box_room, monkeypatch, preset):
    """A ray chunk spans RAY_CHUNK_CALLS budgets of dense samples, yet no field call exceeds the
    budget, and the image is the one that one-call chunks render (to float rounding: a call
    holds other rays, and a GEMM's rounding may follow its row count)."""
    monkeypatch.setattr(fast, "call_bucket", lambda rays, per_call=0: rays)   # CPU padding off: the budget is checked
    model = _model(make_config)
    sources = _sources(model, box_room)
    c2w = box_room.target_c2w[0]
    sizes = []
    for f in (model.renderer.coarse, model.renderer.fine):
        plain = f.forward
        f.forward = lambda points, *a, _plain=plain: sizes.append(points.shape[1] * points.shape[2]) or _plain(points, *a)
    chunks = []
    render_rays = fast._render_rays
    monkeypatch.setattr(fast, "_render_rays", lambda renderer, rays, *a: chunks.append(rays.shape[1])
                        or render_rays(renderer, rays, *a))
    asked = _Counter(stop_at=None)
    out, stats = render_query_stats(model, box_room.K, c2w, H, W, sources, preset, should_stop=asked)
    assert max(sizes) <= 150 and len(sizes) == stats.field_calls == asked.calls
    dense = 8 if preset.skip_weight > 0 else 16
    rays_per_chunk = RAY_CHUNK_CALLS * 150 // dense
    assert len(chunks) == -(-H * W // rays_per_chunk) and max(chunks) == rays_per_chunk  # 768 rays, chunks of 75 or 150
    monkeypatch.setattr(fast, "_render_rays", render_rays)
    sizes.clear()
    monkeypatch.setattr(fast, "RAY_CHUNK_CALLS", 1)
    one, one_stats = render_query_stats(model, box_room.K, c2w, H, W, sources, preset)
    assert max(sizes) <= 150 and one_stats.field_calls > stats.field_calls
    assert dataclasses.replace(one_stats, field_calls=0) == dataclasses.replace(stats, field_calls=0)
    assert _rel(out.logits, one.logits) < 1e-5 and _rel(out.rgb, one.rgb) < 1e-5
    torch.testing.assert_close(out.depth, one.depth, rtol=1e-5, atol=1e-5, equal_nan=True)
    torch.testing.assert_close(out.opacity, one.opacity, rtol=1e-5, atol=1e-6)
    assert torch.equal(out.labels, one.labels)


def test_cpu_point_budget_holds_one_activation_within_the_byte_budget():
    """The CPU default: as many points as fit one [points, views, hidden] float32 activation in
    CPU_BUDGET_BYTES (3 MiB: 3072 points of 4 views at hidden 64); a preset's own budget wins."""
    field = SemanticField(16, FieldConfig(hidden_dim=64))
    cpu = torch.device("cpu")
    assert fast.point_budget(PRESETS["rgbd"], field, 4, cpu) == fast.CPU_BUDGET_BYTES // (4 * 4 * 64) == 3072
    assert fast.point_budget(PRESETS["rgbd"], field, 8, cpu) == 1536
    assert fast.point_budget(replace(PRESETS["rgbd"], point_budget=97), field, 4, cpu) == 97
    assert fast.point_budget(PRESETS["rgbd"], field, 10**9, cpu) == 1


def test_should_stop_false_changes_nothing(make_config, box_room):
    model = _model(make_config)
    sources = _sources(model, box_room)
    c2w = box_room.target_c2w[1]
    plain, plain_stats = render_query_stats(model, box_room.K, c2w, H, W, sources, CHUNKED)
    never = _Counter(stop_at=None)
    asked, asked_stats = render_query_stats(model, box_room.K, c2w, H, W, sources, CHUNKED, should_stop=never)
    assert never.calls == plain_stats.field_calls == CHUNKED_CALLS  # once per field call, never after the last
    assert asked_stats == plain_stats
    compared = 0
    for name in [f.name for f in dataclasses.fields(plain)] + ["labels"]:
        a, b = getattr(asked, name), getattr(plain, name)
        if b is None:
            assert a is None, name
            continue
        assert a.shape == b.shape and a.dtype == b.dtype, name
        # Bit-identical, NaN (background depth) in the same places.
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=name)
        compared += 1
    assert compared >= 8
    # The last call may stop it too: a deadline that passes before the final field call.
    with pytest.raises(RenderCancelled, match=f"after 700 of 768 rays \\({CHUNKED_CALLS - 1} field calls\\)"):
        render_query(model, box_room.K, c2w, H, W, sources, CHUNKED, should_stop=_Counter(stop_at=CHUNKED_CALLS))


@pytest.mark.gpu
@pytest.mark.parametrize("field_impl", ["reference", "fused"])
def test_cuda_fast_path_fused_and_bf16_match_reference(make_config, box_room, monkeypatch, field_impl):
    """On CUDA the fast path runs the fused compositing kernel (fp32: 1e-4) and, by default,
    the bf16 MLP (the documented bf16 tolerance), with either field implementation."""
    monkeypatch.delenv("VIEWSEG_FIELD", raising=False)
    model = _model(make_config).cuda()
    with torch.no_grad():
        feats = model.encode_sources(box_room.source_rgb().cuda())
    sources = model.make_sources(feats, box_room.K.expand(1, 4, 3, 3), box_room.source_c2w[None], H, W)
    K, c2w = box_room.K.cuda(), box_room.target_c2w[0].cuda()
    monkeypatch.setenv("VIEWSEG_COMPOSITING", "reference")
    model.set_projected_features(False)
    ref = model.render(K, c2w, H, W, sources)
    model.set_projected_features(True)
    monkeypatch.delenv("VIEWSEG_COMPOSITING")
    cfg = model.config
    exact, st = render_query_stats(model, K, c2w, H, W, sources,
                                   QueryPreset("fp32", cfg.num_coarse, cfg.num_fine, amp="off", field_impl=field_impl))
    assert st.field_impl == field_impl
    assert _rel(exact.logits, ref.logits) < 1e-4
    fast = render_query(model, K, c2w, H, W, sources,
                        QueryPreset("bf16", cfg.num_coarse, cfg.num_fine, field_impl=field_impl))
    assert _rel(fast.logits, ref.logits) < 5e-2
    assert (fast.logits.argmax(-1) == ref.logits.argmax(-1)).float().mean() >= 0.99


# --------------------------------------------------------------------------------------
# The field implementation: fused Triton kernel or PyTorch field (fast.py, item 5; issue 19)
# --------------------------------------------------------------------------------------
# CPU: the fused kernel runs under the triton interpreter (TRITON_INTERPRET=1 and a forced
# ``fused``), ~0.5 s per program of 64 points, so these queries are tiny: a 6 x 8 image
# (48 rays) of the box room's target 0 at 4 + 4 samples, 4 source views, hidden 32.
# Tolerances as in the module docstring: fp32 1e-4 of the largest logit; bf16 (emulated by
# the interpreter: bf16-rounded operands, float32 sums) 5e-2, argmax >= 99% of pixels.
SMALL_H, SMALL_W = 6, 8
SMALL_K = torch.tensor([[4.5, 0.0, 3.5], [0.0, 4.5, 2.5], [0.0, 0.0, 1.0]])


def _small_query(model, box_room, sources, preset):
    return render_query_stats(model, SMALL_K, box_room.target_c2w[0], SMALL_H, SMALL_W, sources, preset)


def _interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.delenv("VIEWSEG_FIELD", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def test_auto_field_is_the_pytorch_field_on_cpu(make_config, box_room, monkeypatch):
    """``auto`` never picks the interpreter, even with TRITON_INTERPRET=1 set; the stats say
    which ran and why; VIEWSEG_FIELD overrides the preset."""
    model = _model(make_config)
    sources = _sources(model, box_room)
    monkeypatch.delenv("VIEWSEG_FIELD", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    out, st = _small_query(model, box_room, sources, QueryPreset("", 4, 4))
    assert (st.field_impl, st.field_note.split(":")[0]) == ("reference", "device cpu")
    monkeypatch.setenv("VIEWSEG_FIELD", "reference")
    out2, st2 = _small_query(model, box_room, sources, QueryPreset("", 4, 4, field_impl="fused"))
    assert (st2.field_impl, st2.field_note) == ("reference", "")
    assert torch.equal(out.logits, out2.logits)
    monkeypatch.setenv("VIEWSEG_FIELD", "fastest")
    with pytest.raises(ValueError, match=r"VIEWSEG_FIELD='fastest': use one of auto, fused, reference"):
        _small_query(model, box_room, sources, QueryPreset("", 4, 4))
    with pytest.raises(ValueError, match="field_impl"):
        QueryPreset("x", 8, 8, field_impl="triton")


def test_forced_fused_field_that_cannot_run_is_one_clear_line(make_config, box_room, monkeypatch):
    from viewseg_core.model.fused_field import FusedFieldUnsupported

    pytest.importorskip("triton")
    model = _model(make_config)
    sources = _sources(model, box_room)
    monkeypatch.delenv("VIEWSEG_FIELD", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(FusedFieldUnsupported) as info:       # CPU, no interpreter asked for
        _small_query(model, box_room, sources, QueryPreset("", 4, 4, field_impl="fused"))
    assert str(info.value).startswith("field_impl='fused': device cpu: the fused kernel runs on CUDA")
    assert str(info.value).endswith("set TRITON_INTERPRET=1 to run it under the triton interpreter (tests only)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    ablation = _model(make_config, view_direction=False)
    ablation_sources = _sources(ablation, box_room)
    monkeypatch.setenv("VIEWSEG_FIELD", "fused")
    with pytest.raises(FusedFieldUnsupported) as info:
        _small_query(ablation, box_room, ablation_sources, QueryPreset("", 4, 4))
    assert str(info.value) == "VIEWSEG_FIELD=fused: view_direction=False (the no-direction ablation) is not fused"
    # auto on the same field: the PyTorch field, and the reason in the stats.
    monkeypatch.setenv("VIEWSEG_FIELD", "auto")
    _, st = _small_query(ablation, box_room, ablation_sources, QueryPreset("", 4, 4))
    assert st.field_impl == "reference" and st.field_note.startswith("view_direction=False")


def test_every_field_evaluation_goes_through_the_dispatch(make_config, box_room, monkeypatch):
    """Coarse (packed, measured-free skipping), its re-evaluation and the packed fine pass
    all call the chosen implementation: a stand-in 'fused' forward (the PyTorch field,
    counted) sees every field call and the image is unchanged."""
    import math

    import viewseg_core.model.fast as fast

    model = _model(make_config, depth_guided=True, guide_samples=4)
    rgb = box_room.source_rgb()
    depth = torch.stack([d for _, _, d in box_room.source])[None].clone()
    depth[0, 0, 2:8, 3:12] = math.nan
    with torch.no_grad():
        feats = model.encode_sources(rgb)
    sources = model.make_sources(feats, box_room.K.expand(1, 4, 3, 3), box_room.source_c2w[None], H, W, depth=depth)
    calls, redo = [], []
    monkeypatch.setattr(fast, "fused_supported", lambda *a, **k: (True, ""))
    monkeypatch.setattr(fast, "fused_field_forward", lambda f, p, d, prep, **k: calls.append(k) or f(p, d, prep))
    packed = fast._eval_packed
    monkeypatch.setattr(fast, "_eval_packed", lambda *a, **k: redo.append(k.get("count_as")) or packed(*a, **k))
    preset = QueryPreset("", 4, 8, skip_weight=1e-3, guide_samples=4, skip_free=True, amp="off", point_budget=300)
    monkeypatch.setenv("VIEWSEG_FIELD", "reference")
    ref, st_ref = render_query_stats(model, box_room.K, box_room.target_c2w[0], H, W, sources, preset)
    assert not calls
    redo.clear()
    monkeypatch.setenv("VIEWSEG_FIELD", "fused")
    out, st = render_query_stats(model, box_room.K, box_room.target_c2w[0], H, W, sources, preset)
    assert st.field_impl == "fused" and len(calls) == st.field_calls == st_ref.field_calls > 3
    assert all(k == {"precision": "fp32", "interpret": False} for k in calls)   # amp off: IEEE fp32 dots
    assert redo.count("coarse_points") > redo.count(None) >= 1    # the coarse re-evaluation ran too
    assert torch.equal(out.logits, ref.logits) and torch.equal(out.labels, ref.labels)


def test_auto_survives_a_kernel_that_fails_at_run_time(make_config, box_room, monkeypatch):
    """Under ``auto`` a fused kernel that fails when it runs (a compile error, no C compiler
    for triton's launcher) does not fail the query: the PyTorch field renders it, the stats
    say so, and later queries on that device do not try the kernel again. Forced ``fused``
    raises the error."""
    import viewseg_core.model.fast as fast

    model = _model(make_config)
    sources = _sources(model, box_room)
    ref, _ = _small_query(model, box_room, sources, QueryPreset("", 4, 4, field_impl="reference"))
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("failed to compile the launcher\nsecond line")

    monkeypatch.delenv("VIEWSEG_FIELD", raising=False)
    monkeypatch.setattr(fast, "fused_supported", lambda *a, **k: (True, ""))
    monkeypatch.setattr(fast, "fused_field_forward", broken)
    monkeypatch.setattr(fast, "_fused_failed", {})
    with pytest.warns(RuntimeWarning, match="fused field kernel failed on cpu"):
        out, st = _small_query(model, box_room, sources, QueryPreset("", 4, 4))
    assert (st.field_impl, len(calls)) == ("reference", 1)
    assert st.field_note == "the fused kernel failed (RuntimeError: failed to compile the launcher)"
    assert torch.equal(out.logits, ref.logits)
    assert fast.fused_failures() == {"cpu": "RuntimeError: failed to compile the launcher"}
    _, st2 = _small_query(model, box_room, sources, QueryPreset("", 4, 4))
    assert len(calls) == 1 and st2.field_impl == "reference" and "failed earlier on cpu" in st2.field_note
    with pytest.raises(RuntimeError, match="failed to compile"):
        _small_query(model, box_room, sources, QueryPreset("", 4, 4, field_impl="fused"))
    assert fast.fused_failures(clear=True) and not fast.fused_failures()


def _compare(out, ref, tol: float) -> float:
    assert _rel(out.logits, ref.logits) < tol
    assert _rel(out.rgb, ref.rgb) < tol
    torch.testing.assert_close(out.opacity, ref.opacity, rtol=tol, atol=tol)
    agree = float((out.labels == ref.labels).float().mean())
    assert agree >= 0.99, f"argmax agrees on {100 * agree:.1f}% of pixels"
    return agree


@pytest.mark.parametrize("source_rgb", [False, True], ids=["paper", "source-colours"])
def test_fused_field_query_matches_pytorch_field_fp32(make_config, box_room, monkeypatch, source_rgb):
    """The fused kernel (interpreter, IEEE fp32 dots) through the whole query, fine-pass
    skipping included: the PyTorch field's image to 1e-4 (also for a model that reads the
    source colours, as both shipped ones do)."""
    _interpreter(monkeypatch)
    model = _model(make_config, view_pooling="mean_var", source_rgb=True) if source_rgb else _model(make_config)
    sources = _sources(model, box_room)
    if source_rgb:
        sources = dataclasses.replace(sources, rgb=box_room.source_rgb())
    ref, st_ref = _small_query(model, box_room, sources, QueryPreset("", 4, 4, skip_weight=1e-3, amp="off",
                                                                     field_impl="reference"))
    out, st = _small_query(model, box_room, sources, QueryPreset("", 4, 4, skip_weight=1e-3, amp="off",
                                                                 field_impl="fused"))
    assert (st.field_impl, st_ref.field_impl) == ("fused", "reference")
    assert st.fine_points == st_ref.fine_points and st.field_calls == st_ref.field_calls
    _compare(out, ref, 1e-4)
    assert torch.equal(out.valid, ref.valid)


def test_fused_field_rgbd_query_matches_pytorch_field_fp32(make_config, box_room, monkeypatch):
    """The shipped RGB-D model's options (colours, depth cue, depth evidence, extrapolation,
    depth-guided samples) through the rgbd preset's query (band samples, measured-free
    skipping and its re-evaluation): the fused kernel gives the PyTorch field's image."""
    _interpreter(monkeypatch)
    model = _model(make_config, view_pooling="mean_var", source_rgb=True, source_depth=True, depth_evidence=True,
                   unseen_points="extrapolate", depth_guided=True, guide_samples=4, num_fine=0)
    rgb = box_room.source_rgb()
    depth = torch.stack([d for _, _, d in box_room.source])[None].clone()
    depth[0, 0, :6] = float("nan")                                             # a sensor hole
    sources = dataclasses.replace(_sources(model, box_room), rgb=rgb, depth=depth)
    preset = QueryPreset("", 4, 0, amp="off", guide_samples=4, skip_free=True)
    ref, st_ref = _small_query(model, box_room, sources, replace(preset, field_impl="reference"))
    out, st = _small_query(model, box_room, sources, replace(preset, field_impl="fused"))
    assert (st.field_impl, st_ref.field_impl) == ("fused", "reference")
    assert st.coarse_points == st_ref.coarse_points < 8 * SMALL_H * SMALL_W  # measured free space was skipped
    _compare(out, ref, 1e-4)
    assert torch.equal(out.valid, ref.valid)


def test_fused_field_query_bf16_within_documented_tolerance(make_config, box_room, monkeypatch):
    """amp=bf16 gives the fused kernel bf16 dots (emulated by the interpreter); against the
    float32 PyTorch field: 5e-2 of the largest logit, argmax on >= 99% of pixels."""
    _interpreter(monkeypatch)
    model = _model(make_config)
    sources = _sources(model, box_room)
    ref, _ = _small_query(model, box_room, sources, QueryPreset("", 4, 4, amp="off", field_impl="reference"))
    out, st = _small_query(model, box_room, sources, QueryPreset("", 4, 4, amp="bf16", field_impl="fused"))
    assert st.field_impl == "fused"
    _compare(out, ref, 5e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("preset_name", ["paper", "fast"])
def test_cuda_fused_field_query_at_paper_widths(preset_name, monkeypatch):
    """CUDA, the paper's field widths (256-d features, hidden 128, 37 classes, random field
    weights), 4 sources, an 80 x 60 query: ``auto`` picks the fused kernel; bf16 within 5e-2 of
    the float32 PyTorch field and argmax on >= 99% of the pixels whose reference top-2 margin
    exceeds 1e-2 of the largest logit (random weights leave near-ties, see test_fused_field)."""
    from viewseg_core.model.viewseg import ModelConfig

    monkeypatch.delenv("VIEWSEG_FIELD", raising=False)
    torch.manual_seed(0)
    model = ViewSeg(ModelConfig(near=0.1, far=8.0)).eval()
    with torch.no_grad():
        for p in model.renderer.parameters():
            p.copy_(torch.randn_like(p) * (0.5 / max(1, p.shape[-1]) ** 0.5 if p.ndim > 1 else 0.05))
    model = model.cuda()
    room = BoxRoom(height=60, width=80, focal=45.0)
    with torch.no_grad():
        feats = model.encode_sources(room.source_rgb().cuda())
    sources = model.make_sources(feats, room.K.expand(1, 4, 3, 3).cuda(), room.source_c2w[None].cuda(), 60, 80)
    K, c2w = room.K.cuda(), room.target_c2w[0].cuda()
    preset = PRESETS[preset_name]
    out, st = render_query_stats(model, K, c2w, 60, 80, sources, preset)
    ref, st_ref = render_query_stats(model, K, c2w, 60, 80, sources,
                                     dataclasses.replace(preset, amp="off", field_impl="reference"))
    assert (st.field_impl, st_ref.field_impl) == ("fused", "reference"), st.field_note
    assert _rel(out.logits, ref.logits) < 5e-2
    top2 = ref.logits.topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 1e-2 * ref.logits.abs().max()
    agree = float((out.labels == ref.labels)[clear].float().mean())
    assert agree >= 0.99, f"argmax agrees on {100 * agree:.2f}% of {int(clear.sum())} clear pixels"
    exact, _ = render_query_stats(model, K, c2w, 60, 80, sources,
                                  dataclasses.replace(preset, amp="off", field_impl="fused"))
    if preset.skip_weight == 0:   # (skipping may keep other samples where fp32 weights differ by rounding)
        assert _rel(exact.logits, ref.logits) < 1e-4


def test_ray_bucket_rounds_up_to_few_sizes():
    assert [fast.ray_bucket(n) for n in (1, 16, 17, 192, 511, 512, 513, 1023, 1025, 1536)] == \
        [16, 16, 32, 192, 512, 512, 544, 1024, 1088, 1536]
    sizes = {fast.ray_bucket(n) for n in range(1, 1537)}
    assert len(sizes) == 56                                     # what a 1536-ray budget can produce
    assert all(fast.ray_bucket(n) >= n for n in range(1, 5000))
    assert max((fast.ray_bucket(n) - n) / n for n in range(256, 20000)) <= 1 / 16
    with pytest.raises(ValueError, match="at least one ray"):
        fast.ray_bucket(0)


def test_call_bucket_gives_large_calls_eight_sizes_within_the_pass_cap():
    # 12288 rays per call: an eighth is 1536; above it, multiples of 1536 up to the cap.
    assert [fast.call_bucket(n, 12288) for n in (1, 1536, 1537, 3000, 3073, 12000, 12288)] == \
        [16, 1536, 3072, 3072, 4608, 12288, 12288]
    sizes = {fast.call_bucket(n, 12288) for n in range(1, 12289)}
    large = sorted(x for x in sizes if x > 1536)
    assert large == [1536 * k for k in range(2, 9)]             # 7 above the eighth, 1536 itself below
    assert len(sizes) == 8 + len({fast.ray_bucket(n) for n in range(1, 1537)}) - 1
    # ray_bucket alone gives this pass some 100 sizes.
    assert len({fast.ray_bucket(n) for n in range(1, 12289)}) > 100
    # Never below the call, never past the cap (a cap not divisible by 8 included).
    for cap in (12288, 1000, 7, 1):
        assert all(n <= fast.call_bucket(n, cap) <= max(cap, fast.ray_bucket(n) if n <= -(-cap // 8) else cap)
                   for n in range(1, cap + 1))
    assert fast.call_bucket(900, 1000) == 1000 and fast.call_bucket(126, 1000) == 250
    assert fast.call_bucket(3000) == fast.ray_bucket(3000)     # no cap known: ray_bucket


def test_padded_field_call_equals_the_plain_call(make_config, box_room):
    """The bf16 CPU path pads each call's rays to a bucket (fast.call_bucket): the real rays'
    outputs are the plain call's, and the field saw the bucketed shape."""
    model = _model(make_config)
    sources = _sources(model, box_room)
    field = low_precision_field(model.renderer.coarse, torch.bfloat16)
    with torch.no_grad():
        prepared = field.prepare(sources)
        gen = torch.Generator().manual_seed(0)
        rays, samples = 37, 5                                   # 37 -> 48 rays
        points = torch.rand(1, rays, samples, 3, generator=gen) * 2 - 1
        directions = torch.nn.functional.normalize(torch.randn(1, rays, 3, generator=gen), dim=-1)
        seen = []
        plain = SemanticField.forward
        try:
            SemanticField.forward = lambda self, p, *a: seen.append(p.shape) or plain(self, p, *a)
            padded = fast.padded_field_call(field, points, directions, prepared)
        finally:
            SemanticField.forward = plain
        reference = field(points, directions, prepared)
    assert seen == [torch.Size([1, 48, samples, 3])]
    for name in ("logits", "rgb", "density", "num_visible"):
        got, want = getattr(padded, name), getattr(reference, name)
        assert got.shape == want.shape, name
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=2e-2 * float(want.float().abs().max()) + 1e-6)
    assert torch.equal(padded.num_visible, reference.num_visible)


def test_cpu_queries_pad_rays_in_either_precision_and_training_does_not(make_config, box_room, monkeypatch):
    bucketed = []
    plain_bucket = fast.call_bucket
    monkeypatch.setattr(fast, "call_bucket", lambda rays, per_call=0: bucketed.append(plain_bucket(rays, per_call))
                        or bucketed[-1])
    model = _model(make_config)
    sources = _sources(model, box_room)
    cfg = model.config
    preset = QueryPreset("bf16", cfg.num_coarse, cfg.num_fine, amp="bf16")
    shapes = []
    plain = SemanticField.forward
    try:
        SemanticField.forward = lambda self, p, *a: shapes.append(p.shape[1]) or plain(self, p, *a)
        runs = {}
        for amp in ("bf16", "off"):
            # 23 x 31 = 713 rays: no bucket size, so only a padded call has a bucket's shape.
            render_query(model, box_room.K, box_room.target_c2w[1], 23, 31, sources, replace(preset, amp=amp))
            runs[amp], shapes[:] = list(shapes), []
        points = torch.rand(1, 37, 5, 3) * 2 - 1                    # a training step's field call
        directions = torch.nn.functional.normalize(torch.randn(1, 37, 3), dim=-1)
        with torch.enable_grad():
            fast.REFERENCE_FIELD(model.renderer.coarse, points, directions, model.renderer.coarse.prepare(sources))
        trained = list(shapes)
    finally:
        SemanticField.forward = plain
    for amp, rays in runs.items():   # every call the field saw had call_bucket's size
        assert rays and set(rays) <= set(bucketed), (amp, rays, bucketed)
    assert trained == [37]
