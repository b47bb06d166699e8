"""Hierarchical sampling: stratified bins, inverse-CDF importance samples, determinism and seeds."""
from __future__ import annotations

import pytest
import torch

from viewseg_core.rays import RayBundle
from viewseg_core.sampling import (hierarchical_samples, importance_samples, merge_samples,
                                   stratified_samples)


def _rays(n: int, near: float = 1.0, far: float = 5.0) -> RayBundle:
    o = torch.zeros(n, 3, dtype=torch.float64)
    d = torch.zeros(n, 3, dtype=torch.float64)
    d[:, 2] = 1.0
    full = lambda v: torch.full((n,), v, dtype=torch.float64)  # noqa: E731
    return RayBundle(o, d, full(near), full(far), full(1.0))


def test_stratified_eval_is_bin_centres():
    t = stratified_samples(_rays(2), 4, perturb=False)
    assert t.tolist() == [[1.5, 2.5, 3.5, 4.5]] * 2


def test_stratified_perturbed_one_per_bin_and_seeded():
    rays = _rays(100)
    t = stratified_samples(rays, 8, perturb=True, generator=torch.Generator().manual_seed(1))
    lower = 1.0 + 0.5 * torch.arange(8, dtype=torch.float64)
    assert torch.all(t >= lower) and torch.all(t < lower + 0.5)
    t2 = stratified_samples(rays, 8, perturb=True, generator=torch.Generator().manual_seed(1))
    t3 = stratified_samples(rays, 8, perturb=True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(t, t2) and not torch.equal(t, t3)


def test_stratified_lindisp_is_uniform_in_disparity():
    t = stratified_samples(_rays(1, 1.0, 4.0), 3, perturb=False, lindisp=True)
    # disparity from 1 to 0.25 in 3 bins of 0.25: centres at 0.875, 0.625, 0.375
    assert torch.allclose(1.0 / t[0], torch.tensor([0.875, 0.625, 0.375], dtype=torch.float64))


def test_importance_uniform_weights_give_even_quantiles():
    t = torch.linspace(0.0, 4.0, 5, dtype=torch.float64)[None]
    fine = importance_samples(t, torch.ones_like(t), 3, perturb=False)
    assert torch.allclose(fine, torch.tensor([[2 / 3, 2.0, 10 / 3]], dtype=torch.float64))


def test_importance_covers_both_intervals_around_the_weight():
    """w on sample 2 only: bins [1, 2] and [2, 3] get max(w) = 1 each, the rest PDF_EPS."""
    t = torch.linspace(0.0, 4.0, 5, dtype=torch.float64)[None]
    w = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    fine = importance_samples(t, w, 4, perturb=False)
    assert torch.allclose(fine, torch.tensor([[1.25, 1.75, 2.25, 2.75]], dtype=torch.float64), atol=1e-4)


def test_importance_concentrates_on_the_peak():
    t = torch.linspace(0.0, 10.0, 21, dtype=torch.float64).expand(3, 21)
    w = torch.zeros(3, 21, dtype=torch.float64)
    w[:, 12] = 1.0  # t = 6: the intervals on either side, [5.5, 6.5]
    for perturb in (False, True):
        fine = importance_samples(t, w, 64, perturb, generator=torch.Generator().manual_seed(0))
        inside = ((fine >= 5.5) & (fine <= 6.5)).double().mean()
        assert inside > 0.99
        assert torch.all(fine[:, 1:] >= fine[:, :-1])  # sorted


def test_importance_empty_ray_spreads_evenly_and_is_deterministic():
    t = torch.linspace(1.0, 5.0, 9, dtype=torch.float64)[None]
    fine = importance_samples(t, torch.zeros_like(t), 4, perturb=False)
    # all-zero weights: PDF_EPS in every bin, so the quantiles spread evenly over [1, 5]
    assert torch.allclose(fine, torch.tensor([[1.5, 2.5, 3.5, 4.5]], dtype=torch.float64))
    assert torch.equal(fine, importance_samples(t, torch.zeros_like(t), 4, perturb=False))


def test_merge_and_hierarchical_are_sorted_without_grad():
    rays = _rays(5)
    tc = stratified_samples(rays, 16, perturb=True, generator=torch.Generator().manual_seed(3))
    w = torch.rand(5, 16, dtype=torch.float64, requires_grad=True)
    t = hierarchical_samples(tc, w, 32, perturb=True, generator=torch.Generator().manual_seed(4))
    assert t.shape == (5, 48) and not t.requires_grad
    assert torch.all(t[:, 1:] >= t[:, :-1])
    assert torch.equal(merge_samples(torch.tensor([[3.0, 1.0]]), torch.tensor([[2.0]])),
                       torch.tensor([[1.0, 2.0, 3.0]]))


# --------------------------------------------------------------------------------------
# Depth-guided samples
# --------------------------------------------------------------------------------------

def test_guided_samples_bracket_a_known_surface():
    """A surface at 3 m, band 0.1 m: 8 band samples at the bin centres of [2.9, 3.1] plus 4
    stratified over [1, 5] (1.5, 2.5, 3.5, 4.5: none in the band), sorted, in [near, far]."""
    from viewseg_core.sampling import guided_samples
    rays = _rays(3)
    guide = torch.full((3,), 3.0, dtype=torch.float64)
    t = guided_samples(rays, guide, num_stratified=4, num_band=8, band=0.1, perturb=False)
    assert t.shape == (3, 12)
    band = 3.0 + 0.1 * (2 * (torch.arange(8, dtype=torch.float64) + 0.5) / 8 - 1)
    expect = torch.sort(torch.cat([torch.tensor([1.5, 2.5, 3.5, 4.5], dtype=torch.float64), band])).values
    torch.testing.assert_close(t, expect.expand(3, 12))
    # Training: still exactly 8 samples within 0.1 m, one per 2.5 cm bin, sorted, seeded.
    rays = _rays(200)
    guide = 1.0 + 4.0 * torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = guided_samples(rays, guide, 4, 8, 0.1, perturb=True, generator=torch.Generator().manual_seed(3))
    assert bool((t[:, 1:] >= t[:, :-1]).all()) and bool((t >= 1.0).all()) and bool((t <= 5.0).all())
    offset = t - guide[:, None]
    inside = offset.abs() <= 0.1
    near_edge = (guide - 0.1 < 1.0) | (guide + 0.1 > 5.0)          # clipped bands may collect more
    assert bool((inside.sum(-1)[~near_edge] >= 8).all())
    for k in range(8):                                                  # one jittered sample per bin
        lo, hi = -0.1 + 0.025 * k, -0.1 + 0.025 * (k + 1)
        assert bool((((offset >= lo) & (offset < hi)).sum(-1)[~near_edge] >= 1).all())
    again = guided_samples(rays, guide, 4, 8, 0.1, perturb=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(t, again)


def test_guided_samples_without_a_candidate_are_stratified():
    """NaN, or a candidate whose band misses [near, far]: num_stratified + num_band
    stratified samples, exactly the RGB coarse pass at that count."""
    from viewseg_core.sampling import guided_samples
    rays = _rays(4)
    guide = torch.tensor([float("nan"), 0.5, 5.2, 3.0], dtype=torch.float64)
    t = guided_samples(rays, guide, 4, 4, 0.1, perturb=False)
    flat = stratified_samples(rays, 8, perturb=False)
    assert torch.equal(t[:3], flat[:3]) and not torch.equal(t[3], flat[3])
    # Band partly outside the bounds: clipped to [near, far], still sorted.
    t = guided_samples(_rays(1), torch.tensor([1.02], dtype=torch.float64), 2, 4, 0.1, perturb=False)
    torch.testing.assert_close(t[0], torch.tensor([1.0, 1.0, 1.045, 1.095, 2.0, 4.0], dtype=torch.float64))
    # Band samples only.
    t = guided_samples(_rays(1), torch.tensor([2.0], dtype=torch.float64), 0, 2, 0.1, perturb=False)
    assert torch.allclose(t[0], torch.tensor([1.95, 2.05], dtype=torch.float64))
    with pytest.raises(ValueError, match="num_band > 0"):
        guided_samples(_rays(1), torch.tensor([2.0], dtype=torch.float64), 2, 0, 0.1, perturb=False)
    with pytest.raises(ValueError, match="guide"):
        guided_samples(_rays(2), torch.tensor([2.0], dtype=torch.float64), 2, 2, 0.1, perturb=False)


def test_guided_samples_split_the_band_between_two_candidates():
    """Candidates at 3 m and 4 m, 5 band samples: 3 at the bin centres of [2.9, 3.1], 2 of
    [3.9, 4.1], plus 2 stratified over [1, 5] (2 and 4 m); a ray whose second candidate is
    NaN gets exactly the single-candidate samples."""
    from viewseg_core.sampling import guided_samples
    rays = _rays(2)
    guide = torch.tensor([[3.0, 4.0], [3.0, float("nan")]], dtype=torch.float64)
    t = guided_samples(rays, guide, num_stratified=2, num_band=5, band=0.1, perturb=False)
    first = 3.0 + 0.1 * (2 * (torch.arange(3, dtype=torch.float64) + 0.5) / 3 - 1)
    second = 4.0 + 0.1 * (2 * (torch.arange(2, dtype=torch.float64) + 0.5) / 2 - 1)
    expect = torch.sort(torch.cat([torch.tensor([2.0, 4.0], dtype=torch.float64), first, second])).values
    torch.testing.assert_close(t[0], expect)
    single = guided_samples(rays, guide[:, 0], 2, 5, 0.1, perturb=False)
    assert torch.equal(t[1], single[1])
    # A layer dimension of 1 is the plain candidate.
    assert torch.equal(guided_samples(rays, guide[:, :1], 2, 5, 0.1, perturb=False), single)
    # Band samples only, overlapping bands: still sorted.
    t = guided_samples(_rays(1), torch.tensor([[2.0, 2.05]], dtype=torch.float64), 0, 4, 0.1, perturb=False)
    torch.testing.assert_close(t[0], torch.tensor([1.95, 2.0, 2.05, 2.1], dtype=torch.float64))
    # Training: jittered, sorted, seeded, each candidate keeps its share inside its own band.
    rays = _rays(100)
    gen = torch.Generator().manual_seed(0)
    front = 1.5 + 2.0 * torch.rand(100, generator=gen, dtype=torch.float64)
    guide = torch.stack([front, front + 1.0], dim=-1)
    t = guided_samples(rays, guide, 2, 8, 0.1, perturb=True, generator=torch.Generator().manual_seed(1))
    assert bool((t[:, 1:] >= t[:, :-1]).all())
    assert bool(((t - front[:, None]).abs() <= 0.1).sum(-1).ge(4).all())
    assert bool(((t - front[:, None] - 1.0).abs() <= 0.1).sum(-1).ge(4).all())
    with pytest.raises(ValueError, match="candidate layers"):
        guided_samples(_rays(2), torch.full((2, 3), 2.0, dtype=torch.float64), 2, 2, 0.1, perturb=False)
