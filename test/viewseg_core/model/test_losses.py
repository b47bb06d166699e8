"""Losses (paper Eq. 6): hand-computed CE with ignore labels, MSE, depth L1, weighting."""
from __future__ import annotations

import math

import pytest
import torch

from viewseg_core.classes import IGNORE_LABEL, LOSS_IGNORE_INDEX
from viewseg_core.model.losses import (LossConfig, class_weights_from_counts, depth_l1, depth_robust_l1, distortion,
                                       photometric_mse, semantic_ce, viewseg_losses)
from viewseg_core.model.renderer import PassOutput, RayOutput


def test_ce_by_hand_with_ignore_labels():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]])
    labels = torch.tensor([0, 2, IGNORE_LABEL, LOSS_IGNORE_INDEX])
    lse0 = math.log(math.exp(2) + 2)
    lse1 = math.log(math.exp(1) + 2)
    expected = ((lse0 - 2.0) + (lse1 - 0.0)) / 2
    assert semantic_ce(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(semantic_ce(logits[:2], labels[:2]),
                               torch.nn.functional.cross_entropy(logits[:2], labels[:2]))


def test_all_ignored_is_zero_with_finite_gradient():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = semantic_ce(logits, torch.full((2, 3), IGNORE_LABEL))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all() and (logits.grad == 0).all()


def test_class_weighted_ce_by_hand_and_against_torch():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]])
    labels = torch.tensor([0, 2, IGNORE_LABEL, 2])
    weights = [0.5, 7.0, 2.0]
    nll = [math.log(math.exp(2) + 2) - 2.0, math.log(math.exp(1) + 2), math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3.0]
    expected = (0.5 * nll[0] + 2.0 * nll[1] + 2.0 * nll[2]) / (0.5 + 2.0 + 2.0)   # class 1 never labelled
    assert semantic_ce(logits, labels, weights).item() == pytest.approx(expected, rel=1e-6)
    keep = labels != IGNORE_LABEL
    torch.testing.assert_close(semantic_ce(logits, labels, weights),
                               torch.nn.functional.cross_entropy(logits[keep], labels[keep], weight=torch.tensor(weights)))
    assert semantic_ce(logits, labels, [1.0, 1.0, 1.0]).item() == pytest.approx(semantic_ce(logits, labels).item())
    with pytest.raises(ValueError, match="2 classes|3 classes"):
        semantic_ce(logits, labels, [1.0, 2.0])
    # All rays ignored: 0, with a finite gradient, as without weights.
    leaf = logits.clone().requires_grad_(True)
    loss = semantic_ce(leaf, torch.full((4,), IGNORE_LABEL), weights)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(leaf.grad).all()


def test_class_weights_from_counts_by_hand():
    # Shares 0.64, 0.32, 0.04, 0 (absent). Power 0.5: raw 1/0.8, 1/sqrt(0.32), 1/0.2, then
    # divided by Z = sum f raw = 0.64/0.8 + sqrt(0.32) + 0.04/0.2 = 1.0 + sqrt(0.32).
    w = class_weights_from_counts([64, 32, 4, 0], power=0.5, max_weight=100.0)
    z = 1.0 + math.sqrt(0.32)
    assert w == pytest.approx([1.25 / z, 1 / math.sqrt(0.32) / z, 5.0 / z, 1.0])
    assert sum(f * x for f, x in zip((0.64, 0.32, 0.04), w)) == pytest.approx(1.0)  # mean weight per pixel
    assert class_weights_from_counts([64, 32, 4, 0], power=0.5, max_weight=2.0)[2] == 2.0   # capped
    assert class_weights_from_counts([3, 1], power=0.0) == pytest.approx([1.0, 1.0])     # power 0: unweighted
    # Inverse frequency: every present class carries the same total weight.
    w = class_weights_from_counts([75, 25], power=1.0)
    assert 0.75 * w[0] == pytest.approx(0.25 * w[1]) and 0.75 * w[0] + 0.25 * w[1] == pytest.approx(1.0)
    for bad in ([0, 0], [], [-1, 5]):
        with pytest.raises(ValueError, match="counts"):
            class_weights_from_counts(bad, 0.5)


def test_class_weights_enter_the_semantic_terms():
    outputs = {"target": RayOutput(_pass(1.0, 0.0, 2.0), None)}
    gt = {"labels": torch.tensor([[0, 1, 1]]), "rgb": torch.zeros(1, 3, 3)}
    plain = viewseg_losses(outputs, {"target": gt}, LossConfig())["target/coarse/semantic"]
    weighted = viewseg_losses(outputs, {"target": gt}, LossConfig(class_weights=[4.0, 1.0, 1.0, 1.0]))
    ce0, ce1 = math.log(math.exp(1.0) + 3) - 1.0, math.log(math.exp(1.0) + 3)   # label 0 has logit 1
    assert plain.item() == pytest.approx((ce0 + 2 * ce1) / 3, rel=1e-5)
    assert weighted["target/coarse/semantic"].item() == pytest.approx((4 * ce0 + 2 * ce1) / 6, rel=1e-5)


def test_mse_and_depth_by_hand():
    assert photometric_mse(torch.tensor([[0.0, 0.5, 1.0]]), torch.tensor([[0.5, 0.5, 0.0]])).item() == \
        pytest.approx((0.25 + 0 + 1) / 3)
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    true = torch.tensor([1.5, float("nan"), 2.0, 0.0])  # NaN and 0 = unknown
    assert depth_l1(pred, true).item() == pytest.approx((0.5 + 1.0) / 2)


def test_robust_depth_ignores_unknown_pixels_by_hand():
    eps = 0.1
    pred = torch.tensor([1.0, float("nan"), 3.0, 4.0, 2.0], requires_grad=True)
    true = torch.tensor([1.5, float("nan"), 2.0, 0.0, float("inf")])  # NaN, 0 and inf = unknown
    loss = depth_robust_l1(pred, true, eps)
    # only pixels 0 (d = -0.5) and 2 (d = 1.0) count
    expected = ((math.sqrt(0.25 + eps ** 2) - eps) + (math.sqrt(1.0 + eps ** 2) - eps)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d rho / d pred = d / sqrt(d^2 + eps^2), divided by the 2 known pixels; nothing elsewhere,
    # not even NaN from the NaN prediction of an unknown pixel
    grad = [-0.5 / math.sqrt(0.25 + eps ** 2) / 2, 0.0, 1.0 / math.sqrt(1.0 + eps ** 2) / 2, 0.0, 0.0]
    torch.testing.assert_close(pred.grad, torch.tensor(grad), rtol=1e-6, atol=0)
    # robust: far from 0 it is |d| - eps (slope 1), within eps it is about d^2 / (2 eps)
    far = depth_robust_l1(torch.tensor([7.0]), torch.tensor([2.0]), 0.01)
    near = depth_robust_l1(torch.tensor([2.001]), torch.tensor([2.0]), 0.01)
    assert far.item() == pytest.approx(5.0 - 0.01, rel=1e-4)
    assert near.item() == pytest.approx(0.001 ** 2 / 0.02, rel=1e-2)
    # eps = 0 is the plain L1, and with nothing known the loss is 0 with a zero gradient
    assert depth_robust_l1(pred.detach(), true, 0.0).item() == pytest.approx(0.75)
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    empty = depth_robust_l1(p, torch.tensor([float("nan"), 0.0]))
    empty.backward()
    assert empty.item() == 0.0 and (p.grad == 0).all()
    # gradcheck of the smooth penalty on random known pixels
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(20, generator=g, dtype=torch.float64) * 4 + 0.5).requires_grad_(True)
    y = torch.rand(20, generator=g, dtype=torch.float64) * 4 + 0.5
    y[::3] = float("nan")
    assert torch.autograd.gradcheck(lambda x_: depth_robust_l1(x_, y, 0.05), (x,))


def test_depth_term_in_the_losses_is_the_robust_one_for_both_passes():
    outputs = {"target": RayOutput(_pass(1.0, 0.2, 2.5), _pass(3.0, 0.4, 1.0))}
    depth = torch.tensor([[2.0, float("nan"), 0.0]])  # one known ray
    gt = {"labels": torch.zeros(1, 3, dtype=torch.long), "rgb": torch.zeros(1, 3, 3), "depth": depth}
    losses = viewseg_losses(outputs, {"target": gt}, LossConfig(depth_weight=0.1))
    rho = lambda d: math.sqrt(d * d + 0.01 ** 2) - 0.01  # noqa: E731  the default eps, 1 cm
    assert losses["target/coarse/depth"].item() == pytest.approx(rho(0.5), rel=1e-5)
    assert losses["target/fine/depth"].item() == pytest.approx(rho(1.0), rel=1e-5)
    plain = viewseg_losses(outputs, {"target": gt})
    assert (losses["total"] - plain["total"]).item() == pytest.approx(0.1 * (rho(0.5) + rho(1.0)), rel=1e-5)


def test_relative_depth_penalises_the_error_as_a_share_of_the_true_depth():
    """d / true instead of d: 0.5 m off at 1 m weighs what 2 m off at 4 m does (and four times
    0.5 m off at 4 m); unknown pixels still count for nothing; the loss config reaches it."""
    eps = 0.01
    pred = torch.tensor([1.5, 6.0, 4.5, 9.0], requires_grad=True)
    true = torch.tensor([1.0, 4.0, 4.0, float("nan")])
    loss = depth_robust_l1(pred, true, eps, relative=True)
    rho = lambda d: math.sqrt(d * d + eps * eps) - eps  # noqa: E731
    assert loss.item() == pytest.approx((rho(0.5) + rho(0.5) + rho(0.125)) / 3, rel=1e-6)
    loss.backward()
    grads = [0.5 / math.sqrt(0.25 + eps ** 2) / 1.0 / 3, 0.5 / math.sqrt(0.25 + eps ** 2) / 4.0 / 3,
             0.125 / math.sqrt(0.125 ** 2 + eps ** 2) / 4.0 / 3, 0.0]
    torch.testing.assert_close(pred.grad, torch.tensor(grads), rtol=1e-5, atol=0)
    assert depth_robust_l1(pred.detach(), true, 0.0, relative=True).item() == pytest.approx((0.5 + 0.5 + 0.125) / 3)
    outputs = {"target": RayOutput(_pass(1.0, 0.2, 2.5), _pass(3.0, 0.4, 1.0))}
    gt = {"labels": torch.zeros(1, 3, dtype=torch.long), "rgb": torch.zeros(1, 3, 3),
          "depth": torch.tensor([[2.0, float("nan"), 0.0]])}
    losses = viewseg_losses(outputs, {"target": gt}, LossConfig(depth_weight=0.1, depth_relative=True))
    assert losses["target/coarse/depth"].item() == pytest.approx(rho(0.25), rel=1e-5)
    assert losses["target/fine/depth"].item() == pytest.approx(rho(0.5), rel=1e-5)


def test_rays_no_measurement_guided_weigh_more_in_the_depth_term():
    """depth_unmeasured_weight w: a weighted mean, w for the rays without a splatted candidate."""
    eps = 0.01
    rho = lambda d: math.sqrt(d * d + eps * eps) - eps  # noqa: E731
    pred, true = torch.tensor([2.5, 3.0, 9.0]), torch.tensor([2.0, 2.0, float("nan")])
    weighted = depth_robust_l1(pred, true, eps, weights=torch.tensor([1.0, 3.0, 3.0]))
    assert weighted.item() == pytest.approx((rho(0.5) + 3 * rho(1.0)) / 4, rel=1e-6)   # the unknown ray counts nothing
    outputs = {"target": RayOutput(_pass(1.0, 0.2, 2.5), _pass(3.0, 0.4, 1.0),
                                   measured=torch.tensor([[True, False, True]]))}
    gt = {"labels": torch.zeros(1, 3, dtype=torch.long), "rgb": torch.zeros(1, 3, 3),
          "depth": torch.tensor([[2.0, 3.0, float("nan")]])}
    plain = viewseg_losses(outputs, {"target": gt}, LossConfig(depth_weight=0.1))
    assert plain["target/coarse/depth"].item() == pytest.approx((rho(0.5) + rho(0.5)) / 2, rel=1e-5)
    losses = viewseg_losses(outputs, {"target": gt}, LossConfig(depth_weight=0.1, depth_unmeasured_weight=4.0))
    # fine pass: ray 0 (measured) off by 1.0, ray 1 (unmeasured) off by 2.0
    assert losses["target/fine/depth"].item() == pytest.approx((rho(1.0) + 4 * rho(2.0)) / 5, rel=1e-5)


def test_the_training_forward_says_which_rays_measured_depth_guided():
    """ViewSeg.forward marks, per target and source ray, whether a candidate was splatted."""
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    from viewseg_core.rays import grid_rays

    torch.manual_seed(0)
    model = ViewSeg(ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=16, hidden_dim=16, n_blocks=1,
                                n_head_blocks=1, n_harmonic_xyz=4, n_harmonic_dir=2, num_coarse=4, num_fine=0,
                                far=8.0, source_depth=True, depth_guided=True, guide_samples=2)).eval()
    H, W = 6, 8
    K = torch.tensor([[8.0, 0.0, 4.0], [0.0, 8.0, 3.0], [0.0, 0.0, 1.0]])
    c2w = torch.eye(4)
    depth = torch.full((1, 1, H, W), 2.0)
    depth[..., :, : W // 2] = float("nan")            # the source measured only its right half
    rays = grid_rays(K[None], c2w[None], H, W)
    batch = {"source_rgb": torch.rand(1, 1, 3, H, W), "source_K": K[None, None], "source_c2w": c2w[None, None],
             "source_depth_input": depth, "target_rays": rays, "target_K": K[None], "target_c2w": c2w[None],
             "target_size": torch.tensor([[H, W]])}
    out = model(batch, perturb=False)["target"]
    measured = out.measured.reshape(H, W)
    assert measured[:, W // 2 + 1:].all() and not measured[:, : W // 2 - 1].any()


def _pass(logit_value: float, rgb_value: float, depth: float, R: int = 3) -> PassOutput:
    logits = torch.zeros(1, R, 4)
    logits[..., 0] = logit_value
    z = torch.zeros(1, R)
    return PassOutput(logits=logits, probabilities=logits.softmax(-1), rgb=torch.full((1, R, 3), rgb_value),
                      depth=z + depth, expected_depth=z + depth, opacity=z + 1, confidence=z,
                      valid=torch.ones(1, R, dtype=torch.bool))


def test_weighted_total_by_hand():
    outputs = {"target": RayOutput(_pass(1.0, 0.2, 2.0), _pass(3.0, 0.4, 2.5)),
               "source": RayOutput(_pass(0.0, 0.0, 1.0), _pass(2.0, 0.1, 1.0))}
    gt = {"labels": torch.zeros(1, 3, dtype=torch.long), "rgb": torch.zeros(1, 3, 3), "depth": torch.full((1, 3), 2.0)}
    cfg = LossConfig(semantic_weight=0.04, rgb_weight=1.0, depth_weight=0.5, depth_eps=0.0, source_weight=0.25,
                     coarse_weight=0.5)
    losses = viewseg_losses(outputs, {"target": gt, "source": gt}, cfg)
    ce = lambda a: math.log(math.exp(a) + 3) - a  # noqa: E731  label 0 has logit a, three others 0
    expected = 0.0
    for split, sw, passes in (("target", 1.0, ((1.0, 0.2, 2.0), (3.0, 0.4, 2.5))),
                              ("source", 0.25, ((0.0, 0.0, 1.0), (2.0, 0.1, 1.0)))):
        for name, pw, (a, c, d) in zip(("coarse", "fine"), (0.5, 1.0), passes):
            assert losses[f"{split}/{name}/semantic"].item() == pytest.approx(ce(a), rel=1e-5)
            assert losses[f"{split}/{name}/rgb"].item() == pytest.approx(c * c, rel=1e-5)
            assert losses[f"{split}/{name}/depth"].item() == pytest.approx(abs(d - 2.0), rel=1e-5)
            expected += sw * pw * (0.04 * ce(a) + 1.0 * c * c + 0.5 * abs(d - 2.0))
    assert losses["total"].item() == pytest.approx(expected, rel=1e-5)
    # Defaults: no depth term at all, and missing targets are errors.
    assert not any(k.endswith("/depth") for k in viewseg_losses(outputs, {"target": gt, "source": gt}))
    with pytest.raises(ValueError, match="split 'source'"):
        viewseg_losses(outputs, {"target": gt})
    with pytest.raises(ValueError, match="no 'depth'"):
        viewseg_losses({"target": outputs["target"]}, {"target": {"labels": gt["labels"], "rgb": gt["rgb"]}},
                       LossConfig(depth_weight=1.0))


def _distortion_brute_force(w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The definition, summed pair by pair in float64."""
    w, t = w.double(), t.double()
    delta = torch.cat([t[..., 1:] - t[..., :-1], t[..., -1:] - t[..., -2:-1]], dim=-1)
    mid = t + delta / 2
    pair = (w[..., :, None] * w[..., None, :] * (mid[..., :, None] - mid[..., None, :]).abs()).sum((-2, -1))
    return (pair + (w * w * delta).sum(-1) / 3).mean()


def test_distortion_by_hand_and_against_the_pairwise_sum():
    # One sample holds all the weight: only its own interval counts, delta / 3.
    t = torch.tensor([[1.0, 1.5, 2.5, 3.0]])
    assert distortion(torch.tensor([[0.0, 1.0, 0.0, 0.0]]), t).item() == pytest.approx(1.0 / 3)
    # Half the weight at each end: midpoints 1.25 and 3.25 (the last interval repeats 0.5):
    # 2 * 0.25 * 2.0 + (0.25 * 0.5 + 0.25 * 0.5) / 3.
    assert distortion(torch.tensor([[0.5, 0.0, 0.0, 0.5]]), t).item() == pytest.approx(1.0 + 0.25 / 3)
    # Random sorted samples, several batch dims, against the O(S^2) definition; gradients too.
    g = torch.Generator().manual_seed(0)
    t = torch.sort(12 * torch.rand(2, 7, 24, generator=g, dtype=torch.float64), dim=-1).values
    w = torch.rand(2, 7, 24, generator=g, dtype=torch.float64) / 12
    torch.testing.assert_close(distortion(w, t), _distortion_brute_force(w, t))
    assert torch.autograd.gradcheck(lambda w_: distortion(w_, t), (w.clone().requires_grad_(True),))
    # Fog (the same total weight spread along the ray) costs more than a surface.
    ray = torch.linspace(0.1, 12, 64)[None]
    fog = torch.full((1, 64), 0.9 / 64)
    surface = torch.zeros(1, 64)
    surface[0, 30:32] = 0.45
    assert distortion(fog, ray) > 10 * distortion(surface, ray)
    with pytest.raises(ValueError, match="one shape"):
        distortion(w[..., :3], t)


def test_distortion_term_enters_the_total():
    out = _pass(1.0, 0.2, 2.0)
    t = torch.tensor([[[1.0, 1.5, 2.5, 3.0]]]).expand(1, 3, 4)
    out.weights, out.t = torch.tensor([[[0.5, 0.0, 0.0, 0.5]]]).expand(1, 3, 4), t
    gt = {"labels": torch.zeros(1, 3, dtype=torch.long), "rgb": torch.zeros(1, 3, 3)}
    plain = viewseg_losses({"target": RayOutput(out, None)}, {"target": gt})
    assert "target/coarse/distortion" not in plain
    losses = viewseg_losses({"target": RayOutput(out, None)}, {"target": gt}, LossConfig(distortion_weight=0.1))
    assert losses["target/coarse/distortion"].item() == pytest.approx(1.0 + 0.25 / 3)
    assert (losses["total"] - plain["total"]).item() == pytest.approx(0.1 * (1.0 + 0.25 / 3), rel=1e-5)
    out.weights = None
    with pytest.raises(ValueError, match="render weights"):
        viewseg_losses({"target": RayOutput(out, None)}, {"target": gt}, LossConfig(distortion_weight=0.1))
