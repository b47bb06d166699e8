"""Where along each query ray the source depth cameras measured a surface (RGB-D keyframes).

Depth-guided sampling (issue 15) needs, per query ray, a candidate distance to the first
surface. The sources' measured depth gives it directly:

1. **lift** every source depth pixel with a measurement to a world point
   (:func:`lift_source_depth`);
2. **splat** the points into the query camera with a z-buffer: each point fills a small
   ``footprint`` x ``footprint`` block of pixels around its projection (wider where the query
   magnifies the surface: "Footprint and grid" below); every pixel finds
   the nearest surface among the points that reach it and keeps the planar depth of the
   point on that surface that projects closest to its centre (:func:`splat_depth`: three
   ``scatter_reduce`` amin passes, pure PyTorch, no gradient: sample positions are not
   learned);
3. **look up** each ray's pixel in the splat of the camera it starts from and turn planar
   depth into ray distance, ``t = z / (d . optical axis)`` (:func:`ray_guides`).

Footprint and grid: a 1-pixel footprint leaves cracks wherever the query sees a surface a
little closer or more head-on than the source did (resampling a grid by a non-integer shift
misses pixels); a 2x2 block (the four pixel centres around the projection) closes them up
to a magnification of 2. Where the query camera has more pixels per radian than the depth
maps (a 320x240 query of 160x120 keyframes), the splat is done on a proportionally coarser
grid (``grid_scale``) and each ray reads the grid cell its pixel falls in, so the footprint
keeps its meaning whatever the query resolution. A query much closer to a surface than the
source was (a low robot camera beside furniture that keyframes saw from across the room)
magnifies it beyond 2 and the cracks come back; the adaptive footprint (``max_footprint``:
:func:`block_widths`) widens each point's block to reach halfway to where its neighbours in
its own depth map land in the query, along each image axis, so a magnified surface is
covered without a crack and a slanted one is not smeared along its depth gradient. A
neighbour across a silhouette (depth more than ``SAME_SURFACE`` apart) does not widen it, so
an object's block does not spill further over the background than a fixed block does, and
where nothing is magnified the block stays ``footprint`` wide. Why the closest projection and not the
plain minimum: a block collects points up to a pixel away, and on a slanted surface (a
floor seen at a grazing angle) the nearest of them lies in front of the pixel's own surface
point; the minimum put candidates up to a band width in front (on the 80x60 box room, 87%
within 0.1 m with a 2x2 block, against 97% for the closest projection on the nearest
surface, ``SAME_SURFACE`` = 10% of depth). The cost of a block is that a foreground point
also covers up to one grid cell of the background beside it (the nearest surface wins):
those rays get the foreground's distance, and only their stratified samples see the
background.

Measured empty space (:func:`measured_empty`, for the query presets): a point no source sees
has density zero in the field by construction (``unseen_points="empty"``; with
``"extrapolate"`` only a point in front of no source camera does); a point no depth camera
measured a surface at, that some depth camera's ray passed through (observed empty) or that lies behind the
query ray's own measured surface (hidden), contributes nothing the depth did not already
say. The presets may skip such points instead of evaluating them (``QueryPreset.skip_free``).

Silhouettes (``layers=2``): the block that closes cracks also hands the background rays
beside a foreground object the object's distance, so their band samples all lie in front of
the surface they see (on the synthetic test rooms the candidate's δ<1.25 is 84.6% at a true
depth edge against 96.6% elsewhere: docs/results.md). A second layer is a
second z-buffer with a 1-pixel footprint (the points that project into the cell itself):
where its nearest surface lies behind the block's (beyond ``SAME_SURFACE``), the cell gets
it as a second candidate. At a silhouette that is the background the ray really sees; in a
crack of a magnified surface it may be a surface the first candidate hides, which costs
band samples but not correctness, since the field's density at the first candidate then
takes the ray's weight. :func:`viewseg_core.sampling.guided_samples` splits the band samples
between the two candidates.

The z-buffer keeps one candidate per ray and layer: the nearest measured surface, which is
the visible one when the sources agree. A surface no source measured (an object hidden from
every keyframe, a window without return) is not a candidate; the stratified samples of
:func:`viewseg_core.sampling.guided_samples` are what sees it.
"""
from __future__ import annotations

import math

import torch

from viewseg_core.cameras import in_image, project_points
from viewseg_core.rays import grid_rays

# Points closer to a camera than this (metres, planar) are not splatted into it: the
# projection divides by the depth.
MIN_SPLAT_DEPTH = 1e-4
# Points within this fraction of a cell's nearest depth count as the same surface (the splat
# then takes the one projecting closest to the cell centre, see splat_depth).
SAME_SURFACE = 0.1
# Points along a ray's path that observed_free_share puts to the sources.
FREE_PATH_SAMPLES = 32
# A ray belongs to the camera whose centre is within this distance of its origin (metres).
ORIGIN_TOLERANCE = 1e-4


def known_depth(depth: torch.Tensor) -> torch.Tensor:
    """[...] bool: a measurement (finite and > 0; NaN, 0 and inf mean no return)."""
    return torch.isfinite(depth) & (depth > 0)


def depth_pixel_centres(height: int, width: int, depth_height: int, depth_width: int,
                        device=None, dtype=torch.float32) -> torch.Tensor:
    """Centres of a depth map's pixels in the source IMAGE's pixel coordinates.

    A depth map of any size covers the image (like the source colours): depth pixel (j, i)
    spans image columns [i W / W', (i + 1) W / W') - 0.5, so its centre is at
    ``(i + 0.5) W / W' - 0.5``.
    Returns:
        [H' * W', 2] (u, v), row-major.
    """
    cols = (torch.arange(depth_width, device=device, dtype=dtype) + 0.5) * (width / depth_width) - 0.5
    rows = (torch.arange(depth_height, device=device, dtype=dtype) + 0.5) * (height / depth_height) - 0.5
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def lift_source_depth(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, height: int,
                      width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World points of every measured source depth pixel.

    Args:
        depth: [B, V, H', W'] planar metres (NaN / <= 0 = unknown), covering images of
            (height, width) that ``K`` [B, V, 3, 3] refers to; c2w: [B, V, 4, 4].
    Returns:
        points [B, V * H' * W', 3] world (unknown pixels hold a finite dummy), known
        [B, V * H' * W'] bool.
    """
    B, V, Hd, Wd = depth.shape
    dtype = torch.promote_types(depth.dtype, torch.float32)
    uv = depth_pixel_centres(height, width, Hd, Wd, depth.device, dtype)                 # [N, 2]
    homog = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=-1)                          # [N, 3]
    rays = torch.einsum("bvij,nj->bvni", torch.linalg.inv(K.to(dtype)), homog)            # [B, V, N, 3]
    # Planar depth z is the camera-frame z: X = z * r / r_z (a general K may not give r_z = 1).
    rays = rays / rays[..., 2:3]
    z = depth.to(dtype).reshape(B, V, Hd * Wd)
    known = known_depth(z)
    x_cam = rays * torch.where(known, z, 0.0)[..., None]
    c2w = c2w.to(dtype)
    pts = torch.einsum("bvij,bvnj->bvni", c2w[..., :3, :3], x_cam) + c2w[:, :, None, :3, 3]
    return pts.reshape(B, V * Hd * Wd, 3), known.reshape(B, V * Hd * Wd)


def focal_pixels(K: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [...] pixels per unit of the normalised image plane (sqrt of the area
    scale of K's 2x2 block: a pinhole's focal length, also for skewed or tilt-shift K)."""
    return torch.linalg.det(K[..., :2, :2].double()).abs().sqrt()


def grid_scale(query_K: torch.Tensor, source_K: torch.Tensor, height: int, width: int,
               depth_height: int, depth_width: int) -> float:
    """Splat grid / query image size: 1, or less where the query has more pixels per radian
    than the coarsest source depth map (so that footprints of adjacent measurements meet).

    Args:
        query_K: [..., 3, 3] for the query image; source_K: [..., 3, 3] for source images
            of (height, width) whose depth maps are (depth_height, depth_width).
    """
    depth_focal = focal_pixels(source_K).min() * math.sqrt(depth_height * depth_width / (height * width))
    return float(min(1.0, float(depth_focal / focal_pixels(query_K).max())))


def grid_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The splat grid of an image of (height, width) at ``scale`` (at least 1x1)."""
    return max(1, math.ceil(height * scale)), max(1, math.ceil(width * scale))


def block_widths(grid: torch.Tensor, z: torch.Tensor, ok: torch.Tensor, layout: tuple[int, int, int],
                 footprint: int, max_footprint: int) -> torch.Tensor | None:
    """Each point's splat block size in grid pixels, (columns, rows): ceil of how far any of
    its four neighbours in its depth map (left, right, up, down) lands from it in this camera,
    along each image axis, so that blocks meet halfway between neighbours; at least
    ``footprint``, at most ``max_footprint``. Per axis, because a surface seen at a slant is
    magnified along one axis only: a square block would spill along the other, where the
    depth changes fastest. None where blocks are fixed (``max_footprint`` <= ``footprint``).

    Args:
        grid: [B, C, N, 2] grid positions (u, v) of the points in C cameras; z: [B, C, N]
            planar depth there; ok: [B, C, N] splatted; layout: (V, H', W') with
            N = V * H' * W' in :func:`lift_source_depth`'s order. Neighbours whose depths
            differ by more than ``SAME_SURFACE`` (a silhouette) or that are not splatted do
            not widen a block.
    Returns:
        [B, C, N, 2] long (columns, rows).
    """
    if max_footprint <= footprint:
        return None
    B, C, N = z.shape
    g = grid.reshape(B, C, *layout, 2)
    zz = z.reshape(B, C, *layout)
    okk = ok.reshape(B, C, *layout)
    extent = torch.zeros_like(g)

    def widen(a: tuple, b: tuple) -> None:
        reach = (g[a] - g[b]).abs()
        same = okk[a] & okk[b] & ((zz[a] - zz[b]).abs() <= SAME_SURFACE * torch.minimum(zz[a], zz[b]))
        reach = torch.where(same[..., None], reach, 0.0)
        extent[a] = torch.maximum(extent[a], reach)
        extent[b] = torch.maximum(extent[b], reach)

    every = slice(None)
    widen((every, every, every, every, slice(1, None)), (every, every, every, every, slice(None, -1)))
    widen((every, every, every, slice(1, None), every), (every, every, every, slice(None, -1), every))
    widths = torch.ceil(extent).clamp(footprint, max_footprint).reshape(B, C, N, 2)
    return torch.where(ok[..., None], widths, footprint).long()


def splat_depth(points: torch.Tensor, known: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
                height: int, width: int, footprint: int = 2, scale: float = 1.0, layers: int = 1,
                max_footprint: int = 0, layout: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Z-buffer world points into cameras: per grid pixel, the planar depth of the nearest
    surface, read at the point of it that projects closest to the cell centre.

    Per cell: 1. the minimum depth z0 of the points that reach it; 2. among the points
    within ``SAME_SURFACE`` of it (z <= z0 (1 + SAME_SURFACE)), the smallest squared distance
    from projection to cell centre; 3. the depth of that point (the nearest, on ties).

    A point projecting to image pixel position u (grid position g = (u + 0.5) s - 0.5 at
    ``scale`` s) fills the ``footprint`` grid columns starting at floor(g + 1 - f / 2) (f = 1:
    the pixel holding g; f = 2: the two centres around g; f = 3: round(g) -+ 1), likewise
    for rows.

    Args:
        points: [B, N, 3] world; known: [B, N] bool (False: not splatted).
        K: [B, C, 3, 3] intrinsics of C cameras per batch element for images of (height,
            width); c2w: [B, C, 4, 4].
        footprint: block width in grid pixels (>= 1).
        scale: grid size / image size (see :func:`grid_scale`).
        layers: 1, or 2 for a second candidate behind the first (the module docstring's
            "Silhouettes": the nearest surface of a 1-pixel footprint where it lies more than
            ``SAME_SURFACE`` behind the first layer; NaN elsewhere).
        max_footprint: <= ``footprint``: every block ``footprint`` wide; else each point's
            block widens to reach its neighbours' projections, up to this (:func:`block_widths`).
        layout: (V, H', W'), the depth maps the points were lifted from
            (:func:`lift_source_depth`'s order); needed where ``max_footprint`` > ``footprint``.
    Returns:
        [B, C, h, w] planar depth in each camera (metres), NaN where no point lands;
        (h, w) = :func:`grid_size` (height, width, scale). With ``layers=2``
        [B, C, h, w, 2], the first layer as above.
    """
    if footprint < 1:
        raise ValueError(f"splat footprint must be >= 1 pixel, got {footprint}")
    if layers not in (1, 2):
        raise ValueError(f"splat layers must be 1 or 2, got {layers}")
    if max_footprint > footprint and (layout is None or math.prod(layout) != points.shape[1]):
        raise ValueError(f"an adaptive splat footprint (max_footprint > footprint) needs the depth maps' layout "
                         f"(V, H', W') of the {points.shape[1]} points, got {layout}")
    if layers == 2:
        front = splat_depth(points, known, K, c2w, height, width, footprint, scale,
                            max_footprint=max_footprint, layout=layout)
        # A 1-pixel footprint's cells lie inside the block's, so it lands only where the block did.
        exact = splat_depth(points, known, K, c2w, height, width, 1, scale)
        behind = torch.where(exact > front * (1.0 + SAME_SURFACE), exact, math.nan)
        return torch.stack([front, behind], dim=-1)
    B, N, _ = points.shape
    C = K.shape[1]
    h, w = grid_size(height, width, scale)
    dtype = torch.promote_types(points.dtype, torch.float32)
    pts = points.to(dtype)[:, None].expand(B, C, N, 3)
    uv, z, _ = project_points(K.to(dtype), c2w.to(dtype), pts)                  # [B, C, N, 2], [B, C, N]
    ok = known[:, None] & torch.isfinite(z) & (z > MIN_SPLAT_DEPTH) & torch.isfinite(uv).all(-1)
    grid = (torch.where(ok[..., None], uv, 0.0) + 0.5) * scale - 0.5
    widths = block_widths(grid, z, ok, layout, footprint, max_footprint)        # [B, C, N, 2] or None
    half = footprint / 2.0 if widths is None else widths / 2.0
    start = torch.floor(grid + 1.0 - half).long().reshape(-1, 2)                # [B*C*N, 2]
    cam = torch.arange(B * C, device=points.device).reshape(B, C, 1).expand(B, C, N).reshape(-1)
    grid, ok = grid.reshape(-1, 2), ok.reshape(-1)
    dump = B * C * h * w                     # one extra slot takes everything that misses
    flat_z = z.reshape(-1)

    def cells(points_of, du: int, dv: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the points ``points_of`` = (start, grid, ok, cam, z, block widths or None), each
        one's planar depth, the flat cell index of its (du, dv) block cell (``dump`` where it
        misses or its block is narrower) and the squared distance from the cell centre to its
        projection."""
        first, g, inside, camera, depth, sizes = points_of
        col, row = first[:, 0] + du, first[:, 1] + dv
        inside = inside & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        if sizes is not None:
            inside = inside & (sizes[:, 0] > du) & (sizes[:, 1] > dv)
        dist2 = (col - g[:, 0]) ** 2 + (row - g[:, 1]) ** 2
        return depth, torch.where(inside, (camera * h + row) * w + col, dump), dist2

    # The three passes below share the cells.
    everyone = (start, grid, ok, cam, flat_z, None)
    block = [cells(everyone, du, dv) for dv in range(footprint) for du in range(footprint)]
    if widths is not None:
        # Cells beyond the fixed block belong to the magnified points only: sorted by their
        # wider side, the points wider than k are a suffix, so a wide block costs in
        # proportion to the points that need it.
        flat_widths = widths.reshape(-1, 2)
        widest = flat_widths.amax(-1)
        wide = (widest > footprint).nonzero().squeeze(1)
        wide = wide[torch.argsort(widest[wide], stable=True)]
        sorted_widest = widest[wide]
        for k in range(footprint, int(sorted_widest.max()) if wide.numel() else footprint):
            chosen = wide[int(torch.searchsorted(sorted_widest, k, right=True)):]      # wider than k
            subset = tuple(x[chosen] for x in (start, grid, ok, cam, flat_z, flat_widths))
            # The cells of the (k+1)-wide block not in the k-wide one: column k and row k
            # (each point's block is its own width by its own height within them).
            block += [cells(subset, k, dv) for dv in range(k + 1)]
            block += [cells(subset, du, k) for du in range(k)]

    def reduce(values_of) -> torch.Tensor:
        buf = torch.full((dump + 1,), math.inf, dtype=dtype, device=points.device)
        for zs, index, dist2 in block:
            buf.scatter_reduce_(0, index, values_of(zs, index, dist2), reduce="amin")
        return buf

    # 1. the nearest surface per cell; 2. on it (within SAME_SURFACE of the nearest depth),
    # the point projecting closest to the cell centre; 3. that point's depth.
    zmin = reduce(lambda zs, index, dist2: zs)
    front = lambda zs, index: zs <= zmin[index] * (1.0 + SAME_SURFACE)  # noqa: E731
    dmin = reduce(lambda zs, index, dist2: torch.where(front(zs, index), dist2, math.inf))
    zbuf = reduce(lambda zs, index, dist2: torch.where(front(zs, index) & (dist2 <= dmin[index]), zs, math.inf))
    zbuf = zbuf[:dump].reshape(B, C, h, w)
    return torch.where(torch.isinf(zbuf), math.nan, zbuf)


def ray_guides(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
               scale: float, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Candidate surface distance along each ray from splats into the cameras rays start from.

    Each ray belongs to the camera whose centre is its origin (within ORIGIN_TOLERANCE; a
    ray that starts at none of them gets no candidate). Its pixel is the projection of
    ``origin + direction`` into that camera, its grid cell floor((u + 0.5) s), and the
    planar depth z there becomes the ray distance z / (direction . optical axis).

    Args:
        images: [B, C, h, w] from :func:`splat_depth` (same K, c2w, height, width, scale),
            or [B, C, h, w, L] with L candidate layers.
        origins, directions: [B, R, 3] world rays (unit directions).
    Returns:
        [B, R] ray distances in metres, NaN = no candidate; [B, R, L] for layered images.
    """
    if images.ndim == 5:
        return torch.stack([ray_guides(images[..., i], K, c2w, height, width, scale, origins, directions)
                            for i in range(images.shape[-1])], dim=-1)
    B, C, h, w = images.shape
    R = origins.shape[1]
    dtype = torch.promote_types(origins.dtype, torch.float32)
    origins, directions = origins.to(dtype), directions.to(dtype)
    K, c2w = K.to(dtype), c2w.to(dtype)
    gap = torch.linalg.norm(origins[:, :, None] - c2w[:, None, :, :3, 3], dim=-1)     # [B, R, C]
    best_gap, cam = gap.min(dim=-1)                                                  # [B, R]
    K_r = K.gather(1, cam[..., None, None].expand(B, R, 3, 3))
    c2w_r = c2w.gather(1, cam[..., None, None].expand(B, R, 4, 4))
    uv, _, in_front = project_points(K_r, c2w_r, (origins + directions)[:, :, None])  # [B, R, 1, ...]
    uv, in_front = uv[:, :, 0], in_front[:, :, 0]
    cell = torch.floor((torch.where(in_front[..., None], uv, 0.0) + 0.5) * scale).long()
    col, row = cell[..., 0], cell[..., 1]
    inside = in_front & (col >= 0) & (col < w) & (row >= 0) & (row < h) & (best_gap <= ORIGIN_TOLERANCE)
    flat = torch.where(inside, (cam * h + row.clamp(0, h - 1)) * w + col.clamp(0, w - 1), 0)
    z = images.reshape(B, C * h * w).gather(1, flat)
    axis_cos = (directions * c2w_r[..., :3, 2]).sum(-1)
    return torch.where(inside & (axis_cos > 0), z / axis_cos.clamp_min(1e-12), math.nan)


def camera_guides(depth: torch.Tensor | None, source_K: torch.Tensor, source_c2w: torch.Tensor,
                  source_height: int, source_width: int, K: torch.Tensor, c2w: torch.Tensor,
                  height: int, width: int, origins: torch.Tensor, directions: torch.Tensor,
                  footprint: int = 2, valid: torch.Tensor | None = None, layers: int = 1,
                  max_footprint: int = 0) -> torch.Tensor:
    """Lift, splat into C cameras and look up rays, in one call (see the module docstring).

    Args:
        depth: [B, V, H', W'] measured source depth (NaN / <= 0 = unknown) or None (no
            candidates); source_K [B, V, 3, 3], source_c2w [B, V, 4, 4] for images of
            (source_height, source_width).
        K: [B, C, 3, 3], c2w: [B, C, 4, 4] the cameras the rays start from, images of
            (height, width); origins, directions: [B, R, 3].
        valid: optional [B, V] bool, False = a padding view (its depth is not splatted).
        layers: candidates per ray (1, or 2 with the silhouette layer: :func:`splat_depth`).
        max_footprint: <= ``footprint`` (every block ``footprint`` wide), or the widest
            block of the adaptive footprint (:func:`block_widths`).
    Returns:
        [B, R] candidate ray distances, NaN = none; [B, R, 2] with ``layers=2`` (the
        nearest first).
    """
    B, R = origins.shape[:2]
    if depth is None:
        return torch.full((B, R) if layers == 1 else (B, R, layers), math.nan, dtype=torch.promote_types(origins.dtype, torch.float32),
                          device=origins.device)
    points, known = lift_source_depth(depth, source_K, source_c2w, source_height, source_width)
    if valid is not None:
        known = known & valid.to(known.device).repeat_interleave(depth.shape[-2] * depth.shape[-1], dim=1)
    scale = grid_scale(K, source_K, height, width, depth.shape[-2], depth.shape[-1])
    images = splat_depth(points, known, K, c2w, height, width, footprint, scale, layers, max_footprint,
                         layout=tuple(depth.shape[1:]))
    return ray_guides(images, K, c2w, height, width, scale, origins, directions)


def measured_empty(points: torch.Tensor, depth: torch.Tensor | None, K: torch.Tensor, c2w: torch.Tensor,
                   height: int, width: int, margin: float, valid: torch.Tensor | None = None,
                   behind: torch.Tensor | None = None, extrapolate: bool = False) -> torch.Tensor:
    """Which points the source depth cameras account for as empty or hidden (see the module
    docstring): the points a query may skip.

    Each view v that sees a point (in front of the camera, inside its image: the field's
    visibility rule) classifies it by its planar depth z against the depth D that v measured
    at the nearest depth pixel, with m = max(margin, 5% of D) (noise grows with distance):
    *unknown* (no measurement there), *surface* (|z - D| <= m), *free* (z < D - m: v's depth
    ray passed the point) or *hidden* (z > D + m). A point is skipped when

    - no view sees it (the field gives it density 0: exact); with ``extrapolate`` (a field
      with ``unseen_points="extrapolate"``) only when it lies in front of no view, or
    - no view calls it surface or unknown, and either some view saw through it (free), or
      it lies ``behind`` the query ray's own measured surface (hidden from every source
      that sees it, and from the query by that surface).

    A point any view calls surface or unknown is always kept: nothing is skipped where a
    surface was measured or where nothing is known.

    Args:
        points: [B, ..., 3] world; depth: [B, V, H', W'] measured (NaN / <= 0 = unknown) or
            None (then only unseen points are skipped); K: [B, V, 3, 3] for images of
            (height, width); c2w: [B, V, 4, 4]; valid: optional [B, V] bool (padding views).
        behind: optional [B, ...] bool, the point lies beyond the query ray's candidate
            surface (plus the band).
        extrapolate: the field evaluates unseen points in front of a view (see above).
    Returns:
        [B, ...] bool, True = skip.
    """

    shape = points.shape[:-1]
    B = K.shape[0]
    in_front, seen, free, hidden = source_verdicts(points, depth, K, c2w, height, width, margin, valid)
    unseen = ~(in_front if extrapolate else seen).any(dim=1)
    if depth is None:
        return unseen.reshape(shape)
    keep = (seen & ~free & ~hidden).any(dim=1)                                       # surface or unknown
    empty = free.any(dim=1)
    if behind is not None:
        empty = empty | behind.reshape(B, -1)
    return (unseen | (~keep & empty)).reshape(shape)


def source_verdicts(points: torch.Tensor, depth: torch.Tensor | None, K: torch.Tensor, c2w: torch.Tensor,
                    height: int, width: int, margin: float, valid: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, ...]:
    """What each source view says about each point (the rule of :func:`measured_empty`).

    Args: as :func:`measured_empty` (``points`` [B, ..., 3]).
    Returns:
        in_front, seen, free, hidden: [B, V, N] bool, N the points flattened. ``seen``: in
        front of view v and inside its image; ``free``: seen, v measured depth D there and the
        point lies more than m = max(margin, 5% of D) in front of it; ``hidden``: more than m
        behind it. ``free`` and ``hidden`` are all False without ``depth``.
    """
    B = K.shape[0]
    dtype = torch.promote_types(points.dtype, torch.float32)
    uv, z, in_front = project_points(K.to(dtype), c2w.to(dtype), points.to(dtype).reshape(B, 1, -1, 3))
    return _verdicts(uv, z, in_front, depth, height, width, margin, valid)


def _verdicts(uv: torch.Tensor, z: torch.Tensor, in_front: torch.Tensor, depth: torch.Tensor | None,
              height: int, width: int, margin: float, valid: torch.Tensor | None
              ) -> tuple[torch.Tensor, ...]:
    """:func:`source_verdicts` of points already projected: uv [B, V, N, 2], z and in_front [B, V, N]."""
    B, V = z.shape[:2]
    if valid is not None:
        in_front = in_front & valid[:, :, None]
    seen = in_front & in_image(uv, height, width)
    if depth is None:
        return in_front, seen, torch.zeros_like(seen), torch.zeros_like(seen)
    Hd, Wd = depth.shape[-2:]
    uv = torch.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0)
    col = torch.floor((uv[..., 0] + 0.5) * (Wd / width)).clamp(0, Wd - 1).long()
    row = torch.floor((uv[..., 1] + 0.5) * (Hd / height)).clamp(0, Hd - 1).long()
    measured = depth.to(z.dtype).reshape(B, V, Hd * Wd).gather(2, row * Wd + col)     # [B, V, N]
    known = known_depth(measured)
    m = torch.clamp(0.05 * measured, min=margin)
    return in_front, seen, seen & known & (z < measured - m), seen & known & (z > measured + m)


def observed_free_share(origins: torch.Tensor, directions: torch.Tensor, distance: torch.Tensor,
                        depth: torch.Tensor | None, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
                        margin: float = 0.1, samples: int = FREE_PATH_SAMPLES, valid: torch.Tensor | None = None,
                        chunk: int = 4096) -> torch.Tensor:
    """How much of each ray's path to its surface some source depth camera saw through.

    The path is the ray from its origin to ``1 - SAME_SURFACE`` of ``distance`` (the
    surface's own neighbourhood is not path); ``samples`` points at its interval midpoints are
    put to the sources (the rule of :func:`source_verdicts`) and the share of them some view
    calls free is returned. A share near 1 means the sources' depth vouches that nothing
    stands between the camera and the surface; a low share means part of the path is
    unobserved (outside every source frustum, behind what the sources measured, or where they
    measured nothing), so an object there could be missing from the render
    (docs/results.md, "Where the remaining depth error lies").

    A ray's points are affine in their distance t in every source's homogeneous image
    coordinates, ``K R^T (o - c) + t K R^T d``, so each (ray, view) pair is transformed once and
    its samples cost a multiply-add each (no per-point matrix product).

    Args:
        origins, directions: [B, R, 3] world rays; distance: [B, R] ray distance of the surface
            (NaN: none). depth, K, c2w, height, width, margin, valid: the sources, as
            :func:`measured_empty` (``margin``: metres; the depth guide's band by default).
    Returns:
        [B, R] share in [0, 1], NaN where ``distance`` is not finite and positive.
    """
    if samples < 1:
        raise ValueError(f"observed_free_share needs samples >= 1, got {samples}")
    B, R = distance.shape
    dtype = torch.promote_types(origins.dtype, torch.float32)
    dev = origins.device
    fractions = (torch.arange(samples, device=dev, dtype=dtype) + 0.5) / samples * (1 - SAME_SURFACE)
    share = torch.full((B, R), math.nan, device=dev, dtype=dtype)
    K, c2w = K.to(dev, dtype), c2w.to(dev, dtype)
    w2c_rot = c2w[..., :3, :3].transpose(-1, -2)                                          # [B, V, 3, 3]
    to_image = K @ w2c_rot                                                                # K R^T
    centre = c2w[..., :3, 3]                                                              # [B, V, 3]
    for start in range(0, R, chunk):
        sl = slice(start, start + chunk)
        d = distance[:, sl].to(dtype)
        ok = torch.isfinite(d) & (d > 0)
        t = torch.where(ok, d, torch.zeros_like(d))[..., None] * fractions                   # [B, r, S]
        rel = origins[:, None, sl].to(dtype) - centre[:, :, None]                           # [B, V, r, 3]
        h0 = torch.einsum("bvij,bvrj->bvri", to_image, rel)                                  # [B, V, r, 3]
        dh = torch.einsum("bvij,brj->bvri", to_image, directions[:, sl].to(dtype))
        z0 = torch.einsum("bvj,bvrj->bvr", w2c_rot[..., 2, :], rel)                           # camera z
        dz = torch.einsum("bvj,brj->bvr", w2c_rot[..., 2, :], directions[:, sl].to(dtype))
        h = h0[..., None, :] + t[:, None, ..., None] * dh[..., None, :]                     # [B, V, r, S, 3]
        z = z0[..., None] + t[:, None] * dz[..., None]                                      # [B, V, r, S]
        w = h[..., 2]
        w = torch.where(w.abs() < 1e-9, torch.full_like(w, 1e-9), w)    # as project_points: finite, masked anyway
        uv = h[..., :2] / w[..., None]
        V = uv.shape[1]
        _, _, free, _ = _verdicts(uv.reshape(B, V, -1, 2), z.reshape(B, V, -1), z.reshape(B, V, -1) > 0, depth,
                                  height, width, margin, valid)
        seen_free = free.any(dim=1).reshape(B, -1, samples).to(dtype).mean(dim=-1)
        share[:, sl] = torch.where(ok, seen_free, torch.full_like(seen_free, math.nan))
    return share


def free_path_image(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, sources) -> torch.Tensor:
    """:func:`observed_free_share` of every pixel of a rendered image: planar ``depth`` [H, W]
    (NaN: none) seen by a pinhole camera ``K`` [3, 3], ``c2w`` [4, 4]; ``sources`` the
    SourceViews (batch 1) it was rendered from. -> [H, W] share (NaN where no depth): what
    the node's ``query.min_free_path`` compares."""
    height, width = depth.shape
    dev = depth.device
    rays = grid_rays(K.to(dev, torch.float32)[None], c2w.to(dev, torch.float32)[None], height, width)
    distance = depth.reshape(1, -1).float() / rays.z_axis
    # Only the pixels with a depth are put to the sources: the node has already cleared those no
    # keyframe sees (query.unseen_pixels), often a tenth of the image.
    keep = (torch.isfinite(distance) & (distance > 0))[0].nonzero().squeeze(-1)
    share = torch.full((height * width,), math.nan, device=dev, dtype=torch.float32)
    with torch.no_grad():
        share[keep] = observed_free_share(rays.origins[:, keep], rays.directions[:, keep], distance[:, keep],
                                          sources.depth, sources.K, sources.c2w, sources.height, sources.width,
                                          valid=sources.valid)[0].float()
    return share.reshape(height, width)


__all__ = ["measured_empty", "source_verdicts", "observed_free_share", "free_path_image", "FREE_PATH_SAMPLES",
           "known_depth", "lift_source_depth", "block_widths", "splat_depth", "ray_guides",
           "camera_guides", "grid_scale", "grid_size", "depth_pixel_centres", "focal_pixels", "MIN_SPLAT_DEPTH",
           "ORIGIN_TOLERANCE", "SAME_SURFACE"]
