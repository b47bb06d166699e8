"""Overfitting the analytic box room on CPU: the model can learn semantics and geometry.

Training uses only the paper's losses (semantic CE + photometric MSE; no depth loss) on
rays of the two target views and the four source views, with the four source views as
inputs. Numbers seen when this was written (torch 2.14 CPU, one thread, seed 0), over the
two full target images: fine-pass CE 3.56 -> 0.060 and mean relative depth error
0.44 -> 0.14 after 400 steps (the slow test, ~170 s on a busy 2-core machine); CE
3.57 -> 0.58 after 40 small steps (the quick test, ~7 s).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from viewseg_core.model import LossConfig, ViewSeg, viewseg_losses
from viewseg_core.rays import random_rays


def _train(room, config, steps: int, rays_per_view: int, lr: float = 2e-3):
    torch.manual_seed(0)
    model = ViewSeg(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    H, W = room.height, room.width
    views = room.target + room.source
    poses = torch.cat([room.target_c2w, room.source_c2w])
    rgb = torch.stack([v[0] for v in views]).reshape(len(views), -1, 3)
    labels = torch.stack([v[1] for v in views]).reshape(len(views), -1)
    sources = {"source_rgb": room.source_rgb(), "source_K": room.K.expand(1, 4, 3, 3),
               "source_c2w": room.source_c2w[None]}
    gen = torch.Generator().manual_seed(0)

    def evaluate():
        """Fine-pass CE and mean relative depth error over the full target images."""
        model.eval()
        with torch.no_grad():
            src = model.make_sources(model.encode_sources(sources["source_rgb"]), sources["source_K"],
                                     sources["source_c2w"], H, W)
            out = model.render(room.K.expand(2, 3, 3), room.target_c2w, H, W, src.__class__(
                src.features.expand(2, -1, -1, -1, -1), src.K.expand(2, -1, -1, -1),
                src.c2w.expand(2, -1, -1, -1), H, W))
        model.train()
        true_labels = torch.stack([v[1] for v in room.target])
        true_depth = torch.stack([v[2] for v in room.target])
        ce = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), true_labels.reshape(-1))
        rel = ((out.expected_depth - true_depth).abs() / true_depth).mean()
        return float(ce), float(rel)

    before = evaluate()
    for _ in range(steps):
        rays, idx = random_rays(room.K.expand(len(views), 3, 3), poses, H, W, rays_per_view, gen,
                                near=config.near, far=config.far)
        out = model({**sources, "target_rays": rays.reshape(1, -1)}, generator=gen)
        targets = {"target": {"labels": labels.gather(1, idx).reshape(1, -1),
                              "rgb": torch.stack([rgb[i, idx[i]] for i in range(len(views))]).reshape(1, -1, 3)}}
        loss = viewseg_losses(out, targets, LossConfig())["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, evaluate()


def test_semantics_fall_quickly(box_room, make_config):
    (ce0, _), (ce1, _) = _train(box_room, make_config(num_coarse=8, num_fine=8), steps=40, rays_per_view=16)
    assert ce0 > 3.0  # ~log(37) at the start
    assert ce1 < ce0 / 4, (ce0, ce1)  # seen: 3.57 -> 0.58


@pytest.mark.slow
def test_overfit_semantics_and_depth(box_room, make_config):
    (ce0, rel0), (ce1, rel1) = _train(box_room, make_config(num_coarse=16, num_fine=16), steps=400,
                                      rays_per_view=48)
    assert ce1 < ce0 / 20, (ce0, ce1)           # CE falls by more than 20x
    assert rel1 < 0.25 and rel1 < rel0 / 2, (rel0, rel1)  # fine depth within 25% of the truth on average
