"""Depth guide: lifting source depth, the z-buffered splat and per-ray candidates, by hand.

Hand case: a source camera at the origin looking down +z (identity pose) sees a
fronto-parallel plane z = 2 m; K has f = 4 px, so a point at planar depth z moves by
f * t / z pixels when the camera translates sideways by t.
"""
from __future__ import annotations

import math

import pytest
import torch

from viewseg_core.model.depth_guide import (block_widths, camera_guides, depth_pixel_centres, grid_scale,
                                            grid_size, lift_source_depth, ray_guides, splat_depth)
from viewseg_core.rays import grid_rays

from .conftest import BoxRoom

NAN = math.nan
H, W = 4, 6


def _K(f=4.0, cx=2.5, cy=1.5) -> torch.Tensor:
    return torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _pose(tx=0.0, ty=0.0, tz=0.0) -> torch.Tensor:
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 3] = torch.tensor([tx, ty, tz], dtype=torch.float64)
    return c2w


def _splat(depths, source_poses, K_src, K_q, c2w_q, footprint, height=H, width=W, scale=1.0):
    depth = torch.stack(depths)[None]                                   # [1, V, h, w]
    V = depth.shape[1]
    pts, known = lift_source_depth(depth, K_src.expand(1, V, 3, 3), torch.stack(source_poses)[None], height, width)
    return splat_depth(pts, known, K_q[None, None], c2w_q[None, None], height, width, footprint, scale)[0, 0]


def _rows(*row):
    return torch.tensor([list(row)] * H, dtype=torch.float64)


def test_lift_planar_depth_at_depth_pixel_centres():
    # A 2x3 depth map covering a 4x6 image: depth pixel (0, 0) is centred on image (0.5, 0.5).
    assert depth_pixel_centres(4, 6, 2, 3, dtype=torch.float64)[:2].tolist() == [[0.5, 0.5], [2.5, 0.5]]
    depth = torch.tensor([[[[2.0, NAN, 0.0], [1.0, 3.0, -1.0]]]], dtype=torch.float64)
    pts, known = lift_source_depth(depth, _K()[None, None], _pose(1.0)[None, None], 4, 6)
    assert known[0].tolist() == [True, False, False, True, True, False]
    # (u, v) = (0.5, 0.5), z = 2: x = (0.5 - 2.5) * 2 / 4 = -1 (+1 m camera offset), y = (0.5 - 1.5) * 2 / 4
    torch.testing.assert_close(pts[0, 0], torch.tensor([0.0, -0.5, 2.0], dtype=torch.float64))
    # (u, v) = (2.5, 2.5), z = 3: x = 0 + 1, y = 1 * 3 / 4
    torch.testing.assert_close(pts[0, 4], torch.tensor([1.0, 0.75, 3.0], dtype=torch.float64))


def test_splat_sideways_shift_by_hand():
    """Query 0.375 m to the right: every point moves 4 * 0.375 / 2 = 0.75 px to the left."""
    plane = torch.full((H, W), 2.0, dtype=torch.float64)
    one = _splat([plane], [_pose()], _K(), _K(), _pose(0.375), footprint=1)
    # Column u lands at u - 0.75: the pixel holding it is u - 1 (column 0's point leaves the
    # image), so query column 5 gets nothing.
    torch.testing.assert_close(one, _rows(2, 2, 2, 2, 2, NAN), equal_nan=True)
    # 2x2: the two centres around u - 0.75, columns u - 1 and u: no hole.
    two = _splat([plane], [_pose()], _K(), _K(), _pose(0.375), footprint=2)
    torch.testing.assert_close(two, torch.full((H, W), 2.0, dtype=torch.float64))


def test_splat_forward_move_magnifies_and_the_footprint_closes_the_cracks():
    """Query 1 m forward, plane now 1 m away: u_q - 2 = 2 (u - 2) with cx = cy = 2."""
    K = _K(cx=2.0, cy=2.0)
    plane = torch.full((H, W), 2.0, dtype=torch.float64)
    one = _splat([plane], [_pose()], K, K, _pose(tz=1.0), footprint=1)
    # Columns 1, 2, 3 land on 0, 2, 4 (0 and 4, 5 leave the image); rows 1, 2 on 0, 2.
    expect = torch.full((H, W), NAN, dtype=torch.float64)
    expect[0::2, 0::2] = 1.0                                              # planar depth 2 - 1
    torch.testing.assert_close(one, expect, equal_nan=True)
    two = _splat([plane], [_pose()], K, K, _pose(tz=1.0), footprint=2)
    torch.testing.assert_close(two, torch.full((H, W), 1.0, dtype=torch.float64))


def test_zbuffer_keeps_the_nearest_of_two_surfaces():
    """Source B sits at the query's pose: its pixels land on themselves. It measured a box at
    1 m (row 1, columns 2-3, in front of A's plane) and a far point at 3 m (row 2, column 1,
    behind the plane); elsewhere nothing."""
    plane = torch.full((H, W), 2.0, dtype=torch.float64)
    b = torch.full((H, W), NAN, dtype=torch.float64)
    b[1, 2:4] = 1.0
    b[2, 1] = 3.0
    out = _splat([plane, b], [_pose(), _pose(0.375)], _K(), _K(), _pose(0.375), footprint=1)
    expect = _rows(2, 2, 2, 2, 2, NAN)
    expect[1, 2:4] = 1.0                                                  # nearer: B's box wins
    torch.testing.assert_close(out, expect, equal_nan=True)               # (2, 1): A's 2 m beats B's 3 m
    # Order of the sources does not matter.
    swapped = _splat([b, plane], [_pose(0.375), _pose()], _K(), _K(), _pose(0.375), footprint=1)
    torch.testing.assert_close(swapped, out, equal_nan=True)


def test_points_behind_the_query_and_unknown_depth_are_not_splatted():
    plane = torch.full((H, W), 2.0, dtype=torch.float64)
    plane[:, :3] = NAN
    plane[0, 3] = 0.0
    behind = _splat([plane], [_pose()], _K(), _K(), _pose(tz=2.5), footprint=3)
    assert torch.isnan(behind).all()
    same = _splat([plane], [_pose()], _K(), _K(), _pose(), footprint=1)
    expect = plane.clone()
    expect[0, 3] = NAN
    torch.testing.assert_close(same, expect, equal_nan=True)


def test_ray_candidates_are_ray_distances():
    """Planar 2 m at every pixel; the ray through (u, v) has z-component 1 / |((u - cx) / f,
    (v - cy) / f, 1)|, so its candidate distance is 2 |(...)|."""
    plane = torch.full((H, W), 2.0, dtype=torch.float64)
    K, c2w = _K(), _pose(0.375)
    rays = grid_rays(K[None], c2w[None], H, W)                            # [1, H*W]
    depth = plane[None, None]
    t = camera_guides(depth, K.expand(1, 1, 3, 3), _pose().expand(1, 1, 4, 4), H, W, K[None, None],
                      c2w[None, None], H, W, rays.origins, rays.directions, footprint=1)
    u = torch.arange(W, dtype=torch.float64).repeat(H)
    v = torch.arange(H, dtype=torch.float64).repeat_interleave(W)
    expect = 2.0 * torch.sqrt(((u - 2.5) / 4) ** 2 + ((v - 1.5) / 4) ** 2 + 1.0)
    expect[u == 5] = NAN                                                  # column 5: no point (see above)
    torch.testing.assert_close(t[0], expect, equal_nan=True)
    # No depth at all: no candidates.
    none = camera_guides(None, K.expand(1, 1, 3, 3), _pose().expand(1, 1, 4, 4), H, W, K[None, None],
                         c2w[None, None], H, W, rays.origins, rays.directions)
    assert none.shape == (1, H * W) and torch.isnan(none).all()


def test_rays_read_the_splat_of_the_camera_they_start_from():
    """Two cameras in one call: camera 0 sees the plane at 2 m, camera 1 (1 m forward) at
    1 m; a ray from neither gets no candidate."""
    plane = torch.full((H, W), 2.0, dtype=torch.float64)
    pts, known = lift_source_depth(plane[None, None], _K()[None, None], _pose()[None, None], H, W)
    Ks = _K().expand(1, 2, 3, 3)
    poses = torch.stack([_pose(), _pose(tz=1.0)])[None]
    images = splat_depth(pts, known, Ks, poses, H, W, footprint=2)
    assert images.shape == (1, 2, H, W)
    origins = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.0, 0.0]]], dtype=torch.float64)
    directions = torch.tensor([[[0.0, 0.0, 1.0]] * 3], dtype=torch.float64)
    t = ray_guides(images, Ks, poses, H, W, 1.0, origins, directions)
    torch.testing.assert_close(t[0, :2], torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert math.isnan(float(t[0, 2]))


def test_coarse_grid_for_queries_finer_than_the_depth_maps():
    """A query with twice the focal length of the 4x6 depth maps splats on a half-size grid,
    and each ray reads the cell its pixel falls in."""
    assert grid_scale(_K(f=8.0), _K(f=4.0), H, W, H, W) == 0.5
    assert grid_scale(_K(f=4.0), _K(f=4.0), H, W, 2 * H, 2 * W) == 1.0  # denser depth: never above 1
    assert grid_scale(_K(f=4.0), _K(f=4.0), H, W, H // 2, W // 2) == 0.5
    assert grid_size(H * 2, W * 2, 0.5) == (H, W)
    plane = torch.full((H, W), 2.0, dtype=torch.float64)
    K_q = _K(f=8.0, cx=5.5, cy=3.5)                                       # an 8x12 image of the same view
    rays = grid_rays(K_q[None], _pose()[None], 2 * H, 2 * W)
    t = camera_guides(plane[None, None], _K().expand(1, 1, 3, 3), _pose().expand(1, 1, 4, 4), H, W,
                      K_q[None, None], _pose()[None, None], 2 * H, 2 * W, rays.origins, rays.directions,
                      footprint=1)
    assert not torch.isnan(t).any()                                      # 1 px footprint, no crack
    torch.testing.assert_close(t * rays.z_axis, torch.full_like(t, 2.0))


def test_true_depth_guides_land_on_the_true_surface():
    """The box room's exact source depth (80x60), splatted into the two targets between the
    sources: nearly every pixel gets a candidate, and nearly every candidate is within the
    default 0.1 m band of the target's true planar depth (the misses are depth edges, where
    the footprint lets the foreground cover a cell of the background beside it)."""
    room = BoxRoom(60, 80, 45.0)
    depth = torch.stack([d for _, _, d in room.source])[None]           # [1, 4, H, W]
    for i, c2w_t in enumerate(room.target_c2w):
        rays = grid_rays(room.K[None], c2w_t[None], room.height, room.width)
        t = camera_guides(depth, room.K.expand(1, 4, 3, 3), room.source_c2w[None], room.height, room.width,
                          room.K[None, None], c2w_t[None, None], room.height, room.width, rays.origins,
                          rays.directions, footprint=2)
        planar = (t * rays.z_axis)[0]
        truth = room.target[i][2].reshape(-1)
        has = ~torch.isnan(planar)
        err = (planar[has] - truth[has]).abs()
        assert float(has.float().mean()) > 0.98
        assert float(err.median()) < 0.01
        assert float((err < 0.1).float().mean()) > 0.96
        # Blocks widened to the neighbours' projections (the models' default): no fewer candidates,
        # and as many on the true surface.
        wide = camera_guides(depth, room.K.expand(1, 4, 3, 3), room.source_c2w[None], room.height, room.width,
                             room.K[None, None], c2w_t[None, None], room.height, room.width, rays.origins,
                             rays.directions, footprint=2, max_footprint=6)
        wide_planar = (wide * rays.z_axis)[0]
        wide_has = ~torch.isnan(wide_planar)
        assert bool((wide_has | ~has).all())
        wide_err = (wide_planar[wide_has] - truth[wide_has]).abs()
        assert float((wide_err < 0.1).float().mean()) > 0.96


def test_measured_empty_by_hand():
    """Camera A at the origin looking down +z measured 2 m everywhere but a hole (NaN) in
    columns 0-1; margin 0.1 m (5% of 2 m is also 0.1)."""
    from viewseg_core.model.depth_guide import measured_empty
    K = _K()[None, None].float()
    depth = torch.full((1, 1, H, W), 2.0)
    depth[..., :2] = NAN
    pose = _pose()[None, None].float()
    at = lambda u, v, z: [(u - 2.5) * z / 4, (v - 1.5) * z / 4, z]  # noqa: E731
    pts = torch.tensor([[at(3, 1, 1.0),      # free: A's ray passed it                -> skip
                         at(3, 1, 2.05),     # on the surface                         -> keep
                         at(3, 1, 3.0),      # hidden behind the surface              -> keep
                         at(0, 1, 1.0),      # in the hole: unknown                   -> keep
                         at(9, 1, 1.0),      # outside the image: unseen              -> skip
                         [0.0, 0.0, -1.0]]])  # behind the camera: unseen             -> skip
    skip = measured_empty(pts, depth, K, pose, H, W, margin=0.1)
    assert skip[0].tolist() == [True, False, False, False, True, True]
    # Behind the query's own candidate: the hidden point goes too, nothing else changes.
    behind = torch.tensor([[False, True, True, True, False, False]])
    assert measured_empty(pts, depth, K, pose, H, W, 0.1, behind=behind)[0].tolist() == \
        [True, False, True, False, True, True]
    # No depth at all: only what no source sees.
    assert measured_empty(pts, None, K, pose, H, W, 0.1)[0].tolist() == [False] * 4 + [True, True]
    # A padding view sees nothing.
    assert bool(measured_empty(pts, depth, K, pose, H, W, 0.1, valid=torch.tensor([[False]])).all())


def test_measured_empty_needs_every_view_to_agree():
    """Camera B, 1 m to the right of A and looking the same way, measured a surface at 1 m
    in front of it everywhere: a point one view calls surface is kept whatever the other
    says; free in one view and hidden in the other is empty (a depth ray passed it)."""
    from viewseg_core.model.depth_guide import measured_empty
    K = _K().expand(1, 2, 3, 3).float()
    poses = torch.stack([_pose(), _pose(1.0)])[None].float()
    depth = torch.stack([torch.full((H, W), 2.0), torch.full((H, W), 1.0)])[None]
    pts = torch.tensor([[[0.5, 0.0, 1.0],     # A: free (1 < 2 - 0.1), B: surface (1 = 1)  -> keep
                         [0.5, 0.0, 1.5],     # A: free, B: hidden (1.5 > 1.1)             -> skip
                         [0.5, 0.0, 2.0]]])   # A: surface, B: hidden                      -> keep
    assert measured_empty(pts, depth, K, poses, H, W, margin=0.1)[0].tolist() == [False, True, False]


def test_observed_free_share_by_hand():
    """Camera A at the origin looking down +z measured 2 m everywhere but a hole (NaN) in
    columns 0-1. The path of a ray is its first 90% (1 - SAME_SURFACE) to the surface, put to
    A at 32 midpoints; A calls a point free when it lies more than max(0.1 m, 5%) in front of
    the 2 m it measured, i.e. at z < 1.9."""
    from viewseg_core.model.depth_guide import FREE_PATH_SAMPLES, observed_free_share
    assert FREE_PATH_SAMPLES == 32
    K = _K()[None, None].float()
    depth = torch.full((1, 1, H, W), 2.0)
    depth[..., :2] = NAN
    pose = _pose()[None, None].float()
    through = lambda u, v: torch.tensor([(u - 2.5) / 4, (v - 1.5) / 4, 1.0])  # noqa: E731

    def ray(origin, direction):
        d = torch.as_tensor(direction, dtype=torch.float32)
        return torch.as_tensor(origin, dtype=torch.float32), d / d.norm()

    rays = [ray([0, 0, 0], through(3, 1)),       # to A's wall: all of the path seen free
            ray([0, 0, 0], through(0, 1)),       # through the hole: nothing known
            ray([0, 0, -2], [0, 0, 1]),          # starts 2 m behind A: only the part past A is seen
            ray([0, 0, 0], [0, 0, 1]),           # to a surface behind A's wall: the part beyond is hidden
            ray([0, 0, 0], [0, 0, 1])]           # no surface: no path
    origins = torch.stack([o for o, _ in rays])[None]
    directions = torch.stack([d for _, d in rays])[None]
    wall = 2.0 * float(through(3, 1).norm())     # A's wall along the first ray
    distance = torch.tensor([[wall, 2.0, 4.0, 3.0, NAN]])
    share = observed_free_share(origins, directions, distance, depth, K, pose, H, W)[0]
    t = lambda k, d: (k + 0.5) / 32 * 0.9 * d     # noqa: E731  (the k-th path point's distance)
    behind_a = sum(t(k, 4.0) - 2.0 > 0 for k in range(32)) / 32                    # z = t - 2 > 0: 14 of 32
    before_wall = sum(t(k, 3.0) < 1.9 for k in range(32)) / 32                      # 23 of 32
    assert (behind_a, before_wall) == (14 / 32, 23 / 32)
    assert share[:4].tolist() == pytest.approx([1.0, 0.0, behind_a, before_wall])
    assert math.isnan(float(share[4]))
    # Without depth nothing is ever seen free; chunks of rays give the same answer.
    assert observed_free_share(origins, directions, distance, None, K, pose, H, W)[0, :4].tolist() == [0.0] * 4
    chunked = observed_free_share(origins, directions, distance, depth, K, pose, H, W, chunk=2)
    assert torch.equal(torch.nan_to_num(chunked, nan=-1.0), torch.nan_to_num(share[None], nan=-1.0))
    with pytest.raises(ValueError, match="samples >= 1"):
        observed_free_share(origins, directions, distance, depth, K, pose, H, W, samples=0)


def test_free_path_image_by_hand():
    """The node's per-pixel check (query.min_free_path) with A of the test above as both the
    source and the query camera: A's own 2 m wall is all seen free, the hole (columns 0-1)
    nothing, a surface 3 m away behind the wall its first 23 of 32 path points (as above, the
    planar depth scales every point of a ray alike), and a pixel without depth stays NaN and
    is never put to the sources."""
    from types import SimpleNamespace

    from viewseg_core.model.depth_guide import free_path_image, observed_free_share
    K, pose = _K()[None, None].float(), _pose()[None, None].float()
    source_depth = torch.full((1, 1, H, W), 2.0)
    source_depth[..., :2] = NAN
    sources = SimpleNamespace(depth=source_depth, K=K, c2w=pose, height=H, width=W, valid=None)
    rendered = torch.full((H, W), 2.0)
    rendered[1, 3] = 3.0
    rendered[2, 4] = NAN
    share = free_path_image(rendered, K[0, 0], pose[0, 0], sources)
    expected = torch.ones(H, W)
    expected[:, :2] = 0.0
    expected[1, 3] = 23 / 32
    expected[2, 4] = NAN
    assert torch.allclose(share, expected, equal_nan=True)
    # The same as putting every pixel's ray to observed_free_share.
    rays = grid_rays(K[0], pose[0], H, W)
    full = observed_free_share(rays.origins, rays.directions, rendered.reshape(1, -1) / rays.z_axis, source_depth,
                               K, pose, H, W)
    assert torch.allclose(share, full.reshape(H, W), equal_nan=True)


def test_padding_views_are_not_splatted():
    plane = torch.full((H, W), 2.0, dtype=torch.float64)
    near = torch.full((H, W), 1.0, dtype=torch.float64)
    depth = torch.stack([plane, near])[None]
    rays = grid_rays(_K()[None], _pose()[None], H, W)
    args = (_K().expand(1, 2, 3, 3), _pose().expand(1, 2, 4, 4), H, W, _K()[None, None], _pose()[None, None],
            H, W, rays.origins, rays.directions)
    both = camera_guides(depth, *args, footprint=1) * rays.z_axis
    padded = camera_guides(depth, *args, footprint=1, valid=torch.tensor([[True, False]])) * rays.z_axis
    torch.testing.assert_close(both, torch.full_like(both, 1.0))
    torch.testing.assert_close(padded, torch.full_like(padded, 2.0))


def _pole_and_wall() -> torch.Tensor:
    """Source at the origin: a wall at 2 m, and a pole at 1 m in column 2 (every row)."""
    depth = torch.full((H, W), 2.0, dtype=torch.float64)
    depth[:, 2] = 1.0
    return depth


def test_silhouette_layer_by_hand():
    """Query 0.375 m to the right: the wall moves 0.75 px left (column u to u - 0.75), the pole
    1.5 px (column 2 to 0.5). The 2x2 block of the pole's point reaches cells 0 and 1, so both
    take its 1 m (the nearest surface), although the points landing in cell 0 itself (the
    1-pixel footprint) are the wall's: cell 0 gets the wall as its second candidate. Cell 1's
    own point is the pole's (no second); the other cells see only the wall."""
    one = _splat([_pole_and_wall()], [_pose()], _K(), _K(), _pose(0.375), footprint=2)
    torch.testing.assert_close(one, _rows(1, 1, 2, 2, 2, 2))
    depth = _pole_and_wall()[None, None]
    pts, known = lift_source_depth(depth, _K()[None, None], _pose()[None, None], H, W)
    two = splat_depth(pts, known, _K()[None, None], _pose(0.375)[None, None], H, W, footprint=2, layers=2)[0, 0]
    assert two.shape == (H, W, 2)
    assert torch.equal(two[..., 0], one)                                 # the first layer is unchanged
    torch.testing.assert_close(two[..., 1], _rows(2, NAN, NAN, NAN, NAN, NAN), equal_nan=True)
    # With a 1-pixel footprint the block and the cell are the same: never a second layer.
    exact = splat_depth(pts, known, _K()[None, None], _pose(0.375)[None, None], H, W, footprint=1, layers=2)
    assert torch.isnan(exact[..., 1]).all()


def test_silhouette_layer_is_a_second_ray_candidate():
    K, c2w = _K(), _pose(0.375)
    rays = grid_rays(K[None], c2w[None], H, W)
    args = (_pole_and_wall()[None, None], K.expand(1, 1, 3, 3), _pose().expand(1, 1, 4, 4), H, W, K[None, None],
            c2w[None, None], H, W, rays.origins, rays.directions)
    single = camera_guides(*args, footprint=2)
    layered = camera_guides(*args, footprint=2, layers=2)
    assert single.shape == (1, H * W) and layered.shape == (1, H * W, 2)
    assert torch.equal(layered[..., 0], single)
    planar = layered[0] * rays.z_axis[0, :, None]
    column = torch.arange(W).repeat(H)
    torch.testing.assert_close(planar[column == 0, 1], torch.full((H,), 2.0, dtype=torch.float64))
    assert torch.isnan(planar[column != 0, 1]).all()
    # No depth: no candidates, in the layered shape.
    none = camera_guides(None, *args[1:], layers=2)
    assert none.shape == (1, H * W, 2) and torch.isnan(none).all()
    with pytest.raises(ValueError, match="layers must be 1 or 2"):
        camera_guides(*args, layers=3)


def test_block_widths_reach_the_neighbours_projections():
    """One 2x3 depth map: row 0's points land at u = 0, 3 and 4.5, row 1's 2.5 below each.
    A block is as wide (tall) as the farthest same-surface neighbour is far along u (v), ceil,
    within [footprint, max_footprint]; a neighbour across a silhouette or not splatted does not
    count."""
    u = torch.tensor([0.0, 3.0, 4.5, 0.0, 3.0, 4.5], dtype=torch.float64)
    v = torch.tensor([0.0, 0.0, 0.0, 2.5, 2.5, 2.5], dtype=torch.float64)
    grid = torch.stack([u, v], dim=-1)[None, None]                     # [1, 1, 6, 2]
    z = torch.ones(1, 1, 6, dtype=torch.float64)
    ok = torch.ones(1, 1, 6, dtype=torch.bool)

    def sizes(*args):
        return [tuple(x) for x in block_widths(*args)[0, 0].tolist()]

    # Columns: 3, max(3, 1.5), 1.5 -> 2; rows: 2.5 -> 3 for every point.
    assert sizes(grid, z, ok, (1, 2, 3), 2, 8) == [(3, 3), (3, 3), (2, 3)] * 2
    assert block_widths(grid, z, ok, (1, 2, 3), 2, 2) is None           # fixed blocks
    # Point 0 at 1.5 m: more than SAME_SURFACE from its neighbours, so neither widens the other.
    z_edge = z.clone()
    z_edge[0, 0, 0] = 1.5
    assert sizes(grid, z_edge, ok, (1, 2, 3), 2, 8) == [(2, 2), (2, 3), (2, 3), (3, 2), (3, 3), (2, 3)]
    # Row 1's middle point not splatted: it keeps the footprint and widens nobody.
    ok_hole = ok.clone()
    ok_hole[0, 0, 4] = False
    assert sizes(grid, z, ok_hole, (1, 2, 3), 2, 8) == [(3, 3), (3, 2), (2, 3), (2, 3), (2, 2), (2, 3)]
    # The widest block is max_footprint.
    far = grid * 10.0
    assert sizes(far, z, ok, (1, 2, 3), 2, 6) == [(6, 6)] * 6


def test_a_slanted_surface_widens_its_blocks_along_one_axis_only():
    """A 1-row depth map whose points land 4 px apart along u and on one row: 4-wide, 2-tall
    blocks fill the row between them and leave the rows above and below alone."""
    h, w = 5, 12
    grid = torch.tensor([[[[1.5, 2.0], [5.5, 2.0], [9.5, 2.0]]]], dtype=torch.float64)
    z = torch.ones(1, 1, 3, dtype=torch.float64)
    ok = torch.ones(1, 1, 3, dtype=torch.bool)
    assert block_widths(grid, z, ok, (1, 1, 3), 2, 6)[0, 0].tolist() == [[4, 2], [4, 2], [4, 2]]
    # The same through splat_depth: camera at the origin with f = 1 and the principal point
    # at 0, points at planar depth 2 with image positions (u, v) = grid.
    K = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    points = torch.cat([grid[0, 0] * 2.0, torch.full((3, 1), 2.0, dtype=torch.float64)], dim=-1)[None]
    image = splat_depth(points, torch.ones(1, 3, dtype=torch.bool), K[None, None], _pose()[None, None], h, w,
                        footprint=2, max_footprint=6, layout=(1, 1, 3))[0, 0]
    filled = ~torch.isnan(image)
    # A 2-tall block at v = 2 starts at row floor(2 + 1 - 1) = 2: rows 2 and 3; the 4-wide blocks
    # at u = 1.5, 5.5, 9.5 start at columns 0, 4 and 8: columns 0-11 without a gap.
    assert filled.nonzero()[:, 0].unique().tolist() == [2, 3]
    assert bool(filled[2:4, 0:12].all())
    torch.testing.assert_close(image[filled], torch.full((24,), 2.0, dtype=torch.float64))


def test_adaptive_footprint_closes_cracks_a_fixed_block_leaves():
    """A plane 4 m from the source seen from 3 m closer: magnification 4. The 2x2 block leaves
    cracks; blocks as wide as the magnification cover every pixel with the plane's 1 m."""
    h, w = 8, 8
    K8 = _K(cx=3.5, cy=3.5)
    plane = torch.full((1, 1, h, w), 4.0, dtype=torch.float64)
    pts, known = lift_source_depth(plane, K8[None, None], _pose()[None, None], h, w)
    query = (K8[None, None], _pose(tz=3.0)[None, None], h, w)
    fixed = splat_depth(pts, known, *query, footprint=2)[0, 0]
    adaptive = splat_depth(pts, known, *query, footprint=2, max_footprint=4, layout=(1, h, w))[0, 0]
    # The points 1 m apart land at u = 1.5 and 5.5 (4 px apart): 2x2 blocks fill columns 1-2
    # and 5-6 only; 4-wide blocks fill 0-3 and 4-7.
    expect = torch.full((w,), NAN, dtype=torch.float64)
    expect[[1, 2, 5, 6]] = 1.0
    torch.testing.assert_close(fixed[1], expect, equal_nan=True)
    torch.testing.assert_close(adaptive, torch.full((h, w), 1.0, dtype=torch.float64))
    # Where nothing is magnified the adaptive splat is the fixed one.
    same = (K8[None, None], _pose()[None, None], h, w)
    torch.testing.assert_close(splat_depth(pts, known, *same, footprint=2, max_footprint=4, layout=(1, h, w)),
                               splat_depth(pts, known, *same, footprint=2), equal_nan=True)
    with pytest.raises(ValueError, match="layout"):
        splat_depth(pts, known, *query, footprint=2, max_footprint=4)
    with pytest.raises(ValueError, match="layout"):
        splat_depth(pts, known, *query, footprint=2, max_footprint=4, layout=(1, h, w + 1))


def test_observed_free_share_matches_the_pointwise_rule():
    """The per-(ray, view) affine projection gives the share that projecting each path point
    and asking source_verdicts gives, for random rays and three posed sources with holes."""
    from viewseg_core.model.depth_guide import SAME_SURFACE, observed_free_share, source_verdicts
    g = torch.Generator().manual_seed(3)
    V, R, S = 3, 200, 16
    K = _K().expand(1, V, 3, 3).float()
    poses = torch.stack([_pose(0.0), _pose(0.4, 0.1), _pose(-0.3, 0.0, 0.5)])[None].float()
    depth = 1.0 + 3.0 * torch.rand(1, V, H, W, generator=g)
    depth[torch.rand(1, V, H, W, generator=g) < 0.2] = NAN
    origins = torch.randn(1, R, 3, generator=g) * 0.5
    directions = torch.nn.functional.normalize(torch.randn(1, R, 3, generator=g) * 0.4 + torch.tensor([0, 0, 1.0]),
                                               dim=-1)
    distance = 0.5 + 4.0 * torch.rand(1, R, generator=g)
    share = observed_free_share(origins, directions, distance, depth, K, poses, H, W, samples=S, chunk=64)
    t = (torch.arange(S) + 0.5) / S * (1 - SAME_SURFACE) * distance[..., None]            # [1, R, S]
    points = origins[:, :, None] + directions[:, :, None] * t[..., None]
    _, _, free, _ = source_verdicts(points, depth, K, poses, H, W, margin=0.1)
    want = free.any(dim=1).reshape(1, R, S).float().mean(dim=-1)
    assert torch.allclose(share, want, atol=1e-6)
    assert 0.05 < float(share.mean()) < 0.95       # the case is not all-free or all-unknown
