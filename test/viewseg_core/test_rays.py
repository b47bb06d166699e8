"""Ray sets: grid order, random subsets that match their pixel indices, the RayBundle container."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewseg_core import cameras as C
from viewseg_core.rays import DEFAULT_FAR, DEFAULT_NEAR, RayBundle, grid_rays, random_rays

K = torch.tensor(C.hypersim_K(np.array([[0.6, 0.02, 0.1], [0.0, 0.45, -0.2], [0.0, 0.0, -1.0]]), 16, 12))


def _pose(yaw: float, pitch: float, t=(0.5, -1.0, 2.0)) -> torch.Tensor:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    T = np.eye(4)
    T[:3, :3] = Ry @ Rx
    T[:3, 3] = t
    return torch.tensor(T)


def test_grid_rays_row_major_and_bounds():
    c2w = torch.stack([_pose(0.3, -0.4), _pose(-1.0, 0.2)])
    rays = grid_rays(K, c2w, 12, 16)
    assert rays.shape == (2, 192) and rays.dtype == torch.float64
    assert torch.all(rays.near == DEFAULT_NEAR) and torch.all(rays.far == DEFAULT_FAR)
    assert torch.allclose(rays.directions.norm(dim=-1), torch.ones(2, 192, dtype=torch.float64))
    # ray r*W + c goes through pixel (c, r)
    uv, depth, _ = C.project_points(K, c2w, rays.points(torch.full((2, 192, 1), 3.0))[..., 0, :])
    assert torch.allclose(uv, C.pixel_grid(12, 16, dtype=torch.float64).expand(2, -1, -1), atol=1e-8)
    assert torch.allclose(depth, 3.0 * rays.z_axis)
    img = rays.reshape(2, 12, 16)
    assert torch.equal(img.directions[1, 5, 7], rays.directions[1, 5 * 16 + 7])


def test_grid_rays_per_camera_bounds_and_dtype():
    c2w = torch.stack([_pose(0.0, 0.0), _pose(0.1, 0.1)])
    rays = grid_rays(K, c2w, 12, 16, near=torch.tensor([0.5, 1.0]), far=8.0, dtype=torch.float32)
    assert rays.dtype == torch.float32
    assert rays.near[0].unique().tolist() == [0.5] and rays.near[1].unique().tolist() == [1.0]
    with pytest.raises(ValueError, match="near < far"):
        grid_rays(K, c2w, 12, 16, near=5.0, far=1.0)


def test_random_rays_match_their_pixels_and_are_seeded():
    c2w = torch.stack([_pose(0.3, -0.4), _pose(-1.0, 0.2), _pose(2.0, 0.0)])
    rays, idx = random_rays(K, c2w, 12, 16, 50, generator=torch.Generator().manual_seed(7))
    assert rays.shape == (3, 50) and idx.shape == (3, 50) and idx.dtype == torch.int64
    grid = grid_rays(K, c2w, 12, 16)
    expected = grid.directions.gather(1, idx[..., None].expand(-1, -1, 3))
    assert torch.allclose(rays.directions, expected)
    for row in idx:  # without replacement
        assert row.unique().numel() == 50
    _, idx2 = random_rays(K, c2w, 12, 16, 50, generator=torch.Generator().manual_seed(7))
    _, idx3 = random_rays(K, c2w, 12, 16, 50, generator=torch.Generator().manual_seed(8))
    assert torch.equal(idx, idx2) and not torch.equal(idx, idx3)


def test_random_rays_respect_mask():
    mask = torch.zeros(12, 16, dtype=torch.bool)
    mask[3, 4] = mask[7, 9] = True
    _, idx = random_rays(K, _pose(0, 0), 12, 16, 10, generator=torch.Generator().manual_seed(0), mask=mask)
    assert set(idx.tolist()) <= {3 * 16 + 4, 7 * 16 + 9}  # with replacement: only 2 allowed
    with pytest.raises(ValueError, match="no pixel"):
        random_rays(K, _pose(0, 0), 12, 16, 10, mask=torch.zeros(12, 16, dtype=torch.bool))


def test_ray_bundle_container_ops():
    rays = grid_rays(K, _pose(0.2, 0.1), 12, 16)
    assert len(rays) == 192 and rays.numel() == 192
    sub = rays[torch.tensor([0, 5, 9])]
    assert sub.shape == (3,) and torch.equal(sub.origins[1], rays.origins[5])
    pts = sub.points(torch.tensor([[1.0, 2.0]] * 3, dtype=torch.float64))
    assert pts.shape == (3, 2, 3)
    assert torch.allclose(pts[2, 1], sub.origins[2] + 2.0 * sub.directions[2])
    parts = list(rays.chunks(50))
    assert [p.numel() for p in parts] == [50, 50, 50, 42]
    assert torch.equal(RayBundle.cat(parts).directions, rays.directions)
    assert rays.to(torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="RayBundle.far"):
        RayBundle(rays.origins, rays.directions, rays.near, rays.far[:3], rays.z_axis)
