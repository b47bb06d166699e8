"""Source selection on cameras whose overlaps are known by hand (half images, opposite views,
duplicates), the greedy redundancy rule, the penalties, and determinism."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from viewseg_core.cameras import project_points
from viewseg_core.data.records import View
from viewseg_core.source_selection import SourceSelectionConfig, frustum_points, select_sources, select_views

K = np.array([[50.0, 0, 49.5], [0, 50.0, 49.5], [0, 0, 1]])  # 100 x 100, 90 degree field of view
RIGHT_HALF_K = K - np.array([[0, 0, 50.0], [0, 0, 0], [0, 0, 0]])  # with width 50: the right half
CFG = SourceSelectionConfig(num_sources=2, grid=12, depth_samples=4, near=1.0, far=4.0)


def c2w(yaw_deg: float = 0.0, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = t
    return T


def test_frustum_points_reproject_to_the_grid_at_planar_depths():
    tilt = np.array([[60.0, 3.0, 40.0], [0.0, 55.0, 30.0], [1e-3, 2e-3, 1.0]])  # a general projective K
    pose = c2w(30.0, (1.0, 2.0, 3.0))
    points = frustum_points(torch.tensor(tilt), torch.tensor(pose), 60, 80, CFG)
    assert points.shape == (12 * 12 * 4, 3)
    uv, depth, in_front = project_points(torch.tensor(tilt), torch.tensor(pose), points)
    assert in_front.all()
    u = (np.arange(12) + 0.5) * 80 / 12 - 0.5
    v = (np.arange(12) + 0.5) * 60 / 12 - 0.5
    expected_uv = np.stack(np.meshgrid(u, v, indexing="xy"), -1).reshape(-1, 2)
    np.testing.assert_allclose(uv.reshape(4, 144, 2).numpy(), np.broadcast_to(expected_uv, (4, 144, 2)), atol=1e-9)
    np.testing.assert_allclose(depth.reshape(4, 144).numpy(), np.repeat([[1.0], [2.0], [3.0], [4.0]], 144, 1))


def test_overlap_by_hand():
    query = c2w()
    sources_K = np.stack([K, K, K, RIGHT_HALF_K])
    sources_c2w = np.stack([c2w(), c2w(), c2w(180.0), c2w()])
    hw = [(100, 100), (100, 50), (100, 100), (100, 50)]
    result = select_sources(K, query, (100, 100), sources_K, sources_c2w, hw, CFG)
    # Same camera: everything. Left half image: columns with u < 49.5, i.e. 6 of 12. Looking
    # backwards: nothing. Right-half crop: the other 6 columns.
    np.testing.assert_allclose(result.overlap.numpy(), [1.0, 0.5, 0.0, 0.5])
    np.testing.assert_allclose(result.angle_deg.numpy(), [0, 0, 180, 0], atol=1e-6)
    assert result.indices == [0, 1]  # ties between 1 and 3 go to the lower index
    assert result.scores[0] == pytest.approx(1.0)


def test_greedy_prefers_new_coverage():
    query = c2w()
    # Two copies of the left half and one right half: after the first left half, the second
    # copy only adds points worth 0.5 (gain 0.25); the right half adds fresh ones (gain 0.5).
    sources_K = np.stack([K, K, RIGHT_HALF_K])
    sources_c2w = np.stack([c2w()] * 3)
    hw = (100, 50)
    result = select_sources(K, query, (100, 100), sources_K, sources_c2w, hw, CFG)
    assert result.indices == [0, 2] and result.scores == pytest.approx([0.5, 0.5])
    plain = SourceSelectionConfig(**{**CFG.__dict__, "redundancy_decay": 1.0})
    assert select_sources(K, query, (100, 100), sources_K, sources_c2w, hw, plain).indices == [0, 1]


def test_penalties_rank_equal_overlaps():
    # Both cameras back off along -z and still see the whole frustum (overlap 1 each);
    # the nearer one loses less to the distance term: 0.1 * 1/4 against 0.1 * 2/4.
    sources_c2w = np.stack([c2w(t=(0, 0, -2.0)), c2w(t=(0, 0, -1.0))])
    result = select_sources(K, c2w(), (100, 100), np.stack([K, K]), sources_c2w, (100, 100), CFG)
    np.testing.assert_allclose(result.overlap.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(result.distance.numpy(), [2.0, 1.0])
    assert result.indices == [1, 0] and result.scores[0] == pytest.approx(1.0 - 0.1 * 1 / 4)
    # Angle: a camera turned 20 degrees pays 0.25 * 20/180 on top of what it cannot see.
    turned = select_sources(K, c2w(), (100, 100), K[None], c2w(20.0)[None], (100, 100), CFG)
    assert turned.angle_deg[0].item() == pytest.approx(20.0)
    assert turned.scores[0] == pytest.approx(turned.overlap[0].item() - 0.25 * 20 / 180)


def test_views_api_determinism_and_edge_cases():
    rng = np.random.default_rng(0)
    views = [View(rgb=np.zeros((100, 100, 3), np.uint8), K=K, c2w=c2w(float(rng.uniform(-60, 60)),
                  tuple(rng.uniform(-1, 1, 3)))) for _ in range(8)]
    first = select_views(K, c2w(), (100, 100), views, SourceSelectionConfig(num_sources=4))
    second = select_views(torch.tensor(K), torch.tensor(c2w()), (100, 100), views, SourceSelectionConfig(num_sources=4))
    assert first.indices == second.indices and len(set(first.indices)) == 4
    assert select_views(K, c2w(), (100, 100), views[:2], SourceSelectionConfig(num_sources=4)).indices.__len__() == 2
    assert select_views(K, c2w(), (100, 100), []).indices == []
    with pytest.raises(ValueError, match="near < far"):
        SourceSelectionConfig(near=2.0, far=1.0)
    with pytest.raises(ValueError, match="must be finite"):
        select_sources(K, np.full((4, 4), np.nan), (100, 100), K[None], c2w()[None], (100, 100))


def test_seen_mask_matches_project_points_and_in_image():
    """The NumPy visibility test equals cameras.project_points + in_image, general K included."""
    from viewseg_core.cameras import in_image
    from viewseg_core.source_selection import _seen

    rng = np.random.default_rng(3)
    poses, Ks = [], []
    for i in range(12):
        q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        q[:, 0] *= np.sign(np.linalg.det(q))
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = q, rng.uniform(-1, 1, 3)
        poses.append(T)
        Ks.append(np.array([[60.0, 3.0, 40.0], [0.0, 55.0, 30.0], [1e-3, 2e-3, 1.0]]) if i % 2 else K)
    sK, sT = np.stack(Ks), np.stack(poses)
    hw = np.array([[60.0, 80.0]] * 12)
    points = rng.uniform(-4, 4, (500, 3))
    uv, _, in_front = project_points(torch.tensor(sK), torch.tensor(sT), torch.tensor(points).expand(12, 500, 3))
    expected = (in_front & in_image(uv, 60, 80)).numpy()
    assert 0.05 < expected.mean() < 0.5  # both outcomes well represented
    np.testing.assert_array_equal(_seen(sK, sT, hw, points), expected)


# --------------------------------------------------------------------------- max_source_depth
# Query points at planar depths 1 and 5 m (two samples): half of them at each depth.
NEAR_FAR = dict(grid=12, depth_samples=2, near=1.0, far=5.0)


def test_max_source_depth_by_hand():
    query = c2w()
    same, behind = c2w(), c2w(t=(0.0, 0.0, -2.0))  # behind: the points lie at depths 3 and 7 m in it
    for source, limit, expected in (
        (same, None, 1.0), (same, 6.0, 1.0), (same, 4.0, 0.5), (same, 0.5, 0.0),
        # Depth is measured in the *source* camera: 5 m in the query is 7 m here.
        (behind, None, 1.0), (behind, 8.0, 1.0), (behind, 6.0, 0.5), (behind, 2.0, 0.0),
    ):
        config = SourceSelectionConfig(num_sources=1, max_source_depth=limit, **NEAR_FAR)
        result = select_sources(K, query, (100, 100), K[None], source[None], (100, 100), config)
        assert result.overlap[0].item() == pytest.approx(expected), (source[2, 3], limit)
        assert result.coverage == pytest.approx(expected)


def test_max_source_depth_single_point_at_5m():
    """A point 5 m in front of a source, at its image centre: seen under 6, not under 4."""
    from viewseg_core.source_selection import _seen

    point = np.array([[0.0, 0.0, 5.0]])
    sK, sT, hw = K[None], c2w()[None], np.array([[100.0, 100.0]])
    assert _seen(sK, sT, hw, point).tolist() == [[True]]
    assert _seen(sK, sT, hw, point, 6.0).tolist() == [[True]]
    assert _seen(sK, sT, hw, point, 4.0).tolist() == [[False]]
    # Outside the image stays unseen whatever the depth limit (x/z = 2 > 1: beyond the 90 degree view).
    assert _seen(sK, sT, hw, np.array([[10.0, 0.0, 5.0]]), 100.0).tolist() == [[False]]


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_max_source_depth_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_source_depth"):
        SourceSelectionConfig(max_source_depth=bad)
    SourceSelectionConfig(max_source_depth=1e-3)  # any positive value is fine


# --------------------------------------------------------------------------- coverage
def test_coverage_of_picked_views_by_hand():
    query = c2w()
    halves_K = np.stack([K, RIGHT_HALF_K])  # with width 50: left and right half of the query
    halves_c2w = np.stack([c2w(), c2w()])
    two = select_sources(K, query, (100, 100), halves_K, halves_c2w, (100, 50), CFG)
    assert sorted(two.indices) == [0, 1] and two.coverage == pytest.approx(1.0)
    one = select_sources(K, query, (100, 100), halves_K, halves_c2w, (100, 50),
                         SourceSelectionConfig(**{**CFG.__dict__, "num_sources": 1}))
    assert one.indices == [0] and one.coverage == pytest.approx(0.5)
    # Coverage counts *picked* views only: ranking by plain overlap picks the two left halves.
    three_K, three_c2w = np.stack([K, K, RIGHT_HALF_K]), np.stack([c2w()] * 3)
    plain = SourceSelectionConfig(**{**CFG.__dict__, "redundancy_decay": 1.0})
    picked = select_sources(K, query, (100, 100), three_K, three_c2w, (100, 50), plain)
    assert picked.indices == [0, 1] and picked.coverage == pytest.approx(0.5)
    # Depth samples 1, 2, 3, 4 m; a 2.5 m limit keeps the two nearest of each half.
    limited = SourceSelectionConfig(**{**CFG.__dict__, "max_source_depth": 2.5})
    near = select_sources(K, query, (100, 100), halves_K, halves_c2w, (100, 50), limited)
    np.testing.assert_allclose(near.overlap.numpy(), [0.25, 0.25])
    assert near.coverage == pytest.approx(0.5)
    # A view looking away covers nothing; no sources at all cover nothing.
    away = select_sources(K, query, (100, 100), K[None], c2w(180.0)[None], (100, 100), CFG)
    assert away.indices == [0] and away.coverage == 0.0
    assert select_sources(K, query, (100, 100), np.zeros((0, 3, 3)), np.zeros((0, 4, 4)), (100, 100)).coverage == 0.0


def test_coverage_equals_union_of_seen_points():
    """coverage = fraction of frustum points seen by >= 1 picked view, checked against _seen."""
    from viewseg_core.source_selection import _seen

    rng = np.random.default_rng(5)
    sK = np.stack([K] * 6)
    sT = np.stack([c2w(float(rng.uniform(-70, 70)), tuple(rng.uniform(-1, 1, 3))) for _ in range(6)])
    config = SourceSelectionConfig(num_sources=3, grid=10, depth_samples=3, near=1.0, far=4.0, max_source_depth=3.5)
    result = select_sources(K, c2w(), (100, 100), sK, sT, (100, 100), config)
    points = frustum_points(torch.tensor(K), torch.tensor(c2w()), 100, 100, config).numpy()
    seen = _seen(sK, sT, np.array([[100.0, 100.0]] * 6), points, 3.5)
    expected = seen[result.indices].any(axis=0).mean()
    assert 0.0 < expected < 1.0  # a case where the picks leave part of the frustum uncovered
    assert result.coverage == pytest.approx(expected)
    assert result.coverage >= max(result.overlap[i].item() for i in result.indices)


def test_far_query_is_not_covered_with_a_depth_limit():
    # The query camera floats 1e6 m ahead of the sources, looking the same way: every source
    # "sees" its whole frustum near the image centre, but from a million metres away.
    far_query = c2w(t=(0.0, 0.0, 1e6))
    sK, sT = np.stack([K, K]), np.stack([c2w(), c2w(t=(0.5, 0.0, 0.0))])
    unlimited = select_sources(K, far_query, (100, 100), sK, sT, (100, 100), CFG)
    assert unlimited.coverage > 0 and unlimited.coverage == pytest.approx(1.0)
    limited = select_sources(K, far_query, (100, 100), sK, sT, (100, 100),
                             SourceSelectionConfig(**{**CFG.__dict__, "max_source_depth": 20.0}))
    assert limited.coverage == 0.0 and limited.overlap.tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------- pixel_coverage
# A 8 x 4 query image at the origin, looking +z: pixel column u has x / z = (u - 3.5) / 4.
SMALL_K = np.array([[4.0, 0.0, 3.5], [0.0, 4.0, 1.5], [0.0, 0.0, 1.0]])


def test_pixel_coverage_by_hand():
    from viewseg_core.source_selection import pixel_coverage

    # A source with the same K and orientation, 1 m along +x: a point of column u at planar
    # depth z lands on source column u - 4 * 1 / z, inside when >= -0.5. At z = 2 m that is
    # u - 2 (columns 2..7 seen); at z = 4 m, u - 1 (columns 1..7 seen). Rows are unchanged.
    depth = np.full((4, 8), 2.0)
    depth[2:] = 4.0
    source = c2w(t=(1.0, 0.0, 0.0))
    mask = pixel_coverage(SMALL_K, c2w(), depth, SMALL_K[None], source[None], (4, 8))
    assert mask.shape == (4, 8) and mask.dtype == bool
    expected = np.zeros((4, 8), bool)
    expected[:2, 2:] = True
    expected[2:, 1:] = True
    np.testing.assert_array_equal(mask, expected)
    # The mirror source (1 m along -x) sees columns u + 2 < 7.5 at 2 m (0..5), u + 1 at 4 m (0..6);
    # with both, every pixel is seen by at least one.
    mirror = c2w(t=(-1.0, 0.0, 0.0))
    left = pixel_coverage(SMALL_K, c2w(), depth, SMALL_K[None], mirror[None], (4, 8))
    expected_left = np.zeros((4, 8), bool)
    expected_left[:2, :6] = True
    expected_left[2:, :7] = True
    np.testing.assert_array_equal(left, expected_left)
    both = pixel_coverage(SMALL_K, c2w(), depth, np.stack([SMALL_K] * 2), np.stack([source, mirror]), [(4, 8), (4, 8)])
    assert both.all()
    # NaN depth: no surface, never covered.
    holes = depth.copy()
    holes[0, 5] = holes[3, 7] = np.nan
    masked = pixel_coverage(SMALL_K, c2w(), holes, SMALL_K[None], source[None], (4, 8))
    expected_holes = expected.copy()
    expected_holes[0, 5] = expected_holes[3, 7] = False
    np.testing.assert_array_equal(masked, expected_holes)


def test_pixel_coverage_depth_limit_and_no_sources():
    from viewseg_core.source_selection import pixel_coverage

    depth = np.full((4, 8), 2.0)
    depth[2:] = 4.0
    source = c2w(t=(1.0, 0.0, 0.0))  # same orientation: the source's depth of the plane is the query's
    expected = np.zeros((4, 8), bool)
    expected[:2, 2:] = True
    # 3 m keeps the 2 m rows, drops the 4 m rows; below 2 m nothing is left.
    np.testing.assert_array_equal(
        pixel_coverage(SMALL_K, c2w(), depth, SMALL_K[None], source[None], (4, 8), max_source_depth=3.0), expected)
    assert not pixel_coverage(SMALL_K, c2w(), depth, SMALL_K[None], source[None], (4, 8), max_source_depth=1.5).any()
    empty = pixel_coverage(SMALL_K, c2w(), depth, np.zeros((0, 3, 3)), np.zeros((0, 4, 4)), (4, 8))
    assert empty.shape == (4, 8) and not empty.any()
    # A source looking back at the query sees none of the plane in front of the query.
    back = c2w(180.0, (0.0, 0.0, -1.0))
    assert not pixel_coverage(SMALL_K, c2w(), depth, SMALL_K[None], back[None], (4, 8)).any()
    # A source 2.8 m down the axis: a 2 m plane lies behind it, nothing is seen.
    ahead = c2w(t=(0.0, 0.0, 2.8))
    assert not pixel_coverage(SMALL_K, c2w(), np.full((4, 8), 2.0), SMALL_K[None], ahead[None], (4, 8)).any()
    # A 4 m plane is 1.2 m ahead of it: column u lands on (u - 3.5) * 4 / 1.2 + 3.5 and row v on
    # (v - 1.5) * 4 / 1.2 + 1.5. Inside [-0.5, 7.5) x [-0.5, 3.5): u = 3, 4 (1.83, 5.17; u = 2, 5
    # give -1.5, 8.5) and v = 1, 2 (-0.17, 3.17; v = 0, 3 give -3.5, 6.5).
    mask = pixel_coverage(SMALL_K, c2w(), np.full((4, 8), 4.0), SMALL_K[None], ahead[None], (4, 8))
    expected_ahead = np.zeros((4, 8), bool)
    expected_ahead[1:3, 3:5] = True
    np.testing.assert_array_equal(mask, expected_ahead)
