"""ViewSeg end to end on CPU: shapes, gradients, determinism, chunked rendering, losses wiring."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from viewseg_core.classes import IGNORE_LABEL, NUM_CLASSES
from viewseg_core.model import LossConfig, ViewSeg, viewseg_losses
from viewseg_core.rays import grid_rays, random_rays


def _batch(room, B=2, R=40, Rs=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    H, W = room.height, room.width
    K = room.K.expand(B, 3, 3)
    tgt = room.target_c2w[torch.arange(B) % 2]
    rays, idx = random_rays(K, tgt, H, W, R, g, near=0.1, far=6.0)
    srays, _ = random_rays(room.K.expand(B, 4, 3, 3), room.source_c2w.expand(B, 4, 4, 4), H, W, Rs // 4, g,
                           near=0.1, far=6.0)
    return {"source_rgb": room.source_rgb().expand(B, -1, -1, -1, -1),
            "source_K": room.K.expand(B, 4, 3, 3), "source_c2w": room.source_c2w.expand(B, 4, 4, 4),
            "target_rays": rays, "source_rays": srays.reshape(B, -1)}, idx


@pytest.fixture
def model(make_config):
    torch.manual_seed(0)
    return ViewSeg(make_config())


def test_forward_shapes(model, box_room):
    batch, _ = _batch(box_room)
    out = model(batch)
    assert set(out) == {"target", "source"}
    for split, R in (("target", 40), ("source", 12)):
        for name, p in out[split].passes().items():
            S = 8 if name == "coarse" else 16  # the fine pass sees coarse + fine samples
            assert p.logits.shape == (2, R, NUM_CLASSES) and p.logits.dtype == torch.float32
            assert p.probabilities.shape == (2, R, NUM_CLASSES)
            torch.testing.assert_close(p.probabilities.sum(-1), torch.ones(2, R))
            assert p.rgb.shape == (2, R, 3)
            for t in (p.depth, p.expected_depth, p.opacity, p.confidence):
                assert t.shape == (2, R) and t.dtype == torch.float32
            assert p.valid.shape == (2, R) and p.valid.dtype == torch.bool
            assert p.weights.shape == (2, R, S) and p.t.shape == (2, R, S)
            assert p.labels.dtype == torch.int64
            assert torch.isnan(p.depth[~p.valid]).all() and torch.isfinite(p.depth[p.valid]).all()


def test_gradients_reach_encoder_and_both_fields(model, box_room):
    batch, idx = _batch(box_room)
    out = model(batch, generator=torch.Generator().manual_seed(0))
    rgb, labels, _ = box_room.target[0]
    targets = {"target": {"labels": labels.reshape(-1)[idx], "rgb": rgb.reshape(-1, 3)[idx]},
               "source": {"labels": torch.zeros(2, 12, dtype=torch.long), "rgb": torch.rand(2, 12, 3)}}
    losses = viewseg_losses(out, targets, LossConfig())
    losses["total"].backward()
    params = {"encoder.conv1": model.encoder.backbone.conv1.weight,
              "encoder.decoder": model.encoder.decoder[1][0].weight}
    for name in ("coarse", "fine"):
        field = getattr(model.renderer, name)
        params[f"{name}.lin_in"] = field.lin_in.weight
        params[f"{name}.block"] = field.blocks[0].fc1.weight
        params[f"{name}.semantic"] = field.semantic_head.out.weight
        params[f"{name}.rgb_density"] = field.rgb_density_head.out.weight
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # The class head is for 2D pretraining only: the field never uses it.
    assert model.encoder.head.weight.grad is None and not model.encoder.head.weight.requires_grad
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused  # DDP-ready without find_unused_parameters


def test_eval_is_deterministic_and_chunk_independent(model, box_room):
    model.eval()
    batch, _ = _batch(box_room)
    a, b = model(batch)["target"].fine, model(batch)["target"].fine
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert torch.equal(x.nan_to_num(), y.nan_to_num()), f.name
    H, W = box_room.height, box_room.width
    with torch.no_grad():
        src = model.make_sources(model.encode_sources(box_room.source_rgb()), box_room.K[None].expand(1, 4, 3, 3),
                                 box_room.source_c2w[None], H, W)
    r1 = model.render(box_room.K, box_room.target_c2w[0], H, W, src, chunk_size=97)
    r2 = model.render(box_room.K, box_room.target_c2w[0], H, W, src, chunk_size=10_000)
    assert r1.probabilities.shape == (H, W, NUM_CLASSES) and r1.depth.shape == (H, W)
    assert r1.labels.shape == (H, W)
    torch.testing.assert_close(r1.probabilities, r2.probabilities, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r1.depth, r2.depth, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert torch.equal(r1.labels[~r1.valid], torch.full_like(r1.labels[~r1.valid], IGNORE_LABEL))
    # render == forward on the same grid rays (eval: no jitter).
    rays = grid_rays(box_room.K[None], box_room.target_c2w[:1], H, W, near=0.1, far=6.0)
    fwd = model({"source_rgb": box_room.source_rgb(), "source_K": box_room.K.expand(1, 4, 3, 3),
                 "source_c2w": box_room.source_c2w[None], "target_rays": rays})["target"].fine
    torch.testing.assert_close(fwd.logits.reshape(H, W, -1), r1.logits, rtol=1e-5, atol=1e-5)


def test_training_jitter_is_seeded(model, box_room):
    batch, _ = _batch(box_room)
    model.eval()  # BatchNorm statistics fixed; perturb explicitly
    a = model(batch, perturb=True, generator=torch.Generator().manual_seed(3))["target"].fine
    b = model(batch, perturb=True, generator=torch.Generator().manual_seed(3))["target"].fine
    c = model(batch, perturb=True, generator=torch.Generator().manual_seed(4))["target"].fine
    assert torch.equal(a.t, b.t) and torch.equal(a.logits, b.logits) and not torch.equal(a.t, c.t)


def test_projected_and_naive_render_agree(model, box_room):
    model.eval()
    H, W = box_room.height, box_room.width
    with torch.no_grad():
        src = model.make_sources(model.encode_sources(box_room.source_rgb()), box_room.K[None].expand(1, 4, 3, 3),
                                 box_room.source_c2w[None], H, W)
    fast = model.render(box_room.K, box_room.target_c2w[1], H, W, src)
    model.set_projected_features(False)
    ref = model.render(box_room.K, box_room.target_c2w[1], H, W, src)
    model.set_projected_features(True)
    torch.testing.assert_close(fast.logits, ref.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.expected_depth, ref.expected_depth, rtol=1e-5, atol=1e-5)


def test_coarse_only_and_bad_batch(box_room, make_config):
    model = ViewSeg(make_config(num_fine=0)).eval()
    batch, _ = _batch(box_room)
    out = model(batch)["target"]
    assert out.fine is None and out.final is out.coarse and list(out.passes()) == ["coarse"]
    with pytest.raises(ValueError, match="lacks"):
        model({"source_rgb": batch["source_rgb"]})
    with pytest.raises(ValueError, match=r"\[B, V, 3, H, W\]"):
        model.encode_sources(batch["source_rgb"][0])
