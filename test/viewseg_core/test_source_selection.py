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
