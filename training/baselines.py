"""Baselines that ViewSeg is compared with, on exactly ViewSeg's evaluation (training/evaluate.py).

* **CloudSeg** (the paper's 3D baseline): segment every source view with a 2D segmenter,
  lift each labelled pixel to 3D with a depth map, and z-buffer the points into the target
  camera. Two variants, named by where the source depth comes from:
  ``cloudseg_pred`` uses the depth ViewSeg renders at the source cameras (no depth sensor,
  like ViewSeg), ``cloudseg_true`` the true source depth (a perfect depth sensor), and
  ``cloudseg_input`` the source depth an RGB-D ViewSeg is given (``viewseg eval
  --source-depth sensor|clean``: the same measurement, a fair fight).
  Target pixels no point reaches stay unknown (255, depth NaN) and count as errors.
* **nearest source view** (lower bound): copy the labels and the depth image of the source
  whose pose is closest to the target's (:func:`pose_distance`).
* **oracle** (semantic upper bound): the 2D segmenter run on the true target RGB.

Splatting: each lifted source pixel fills the target pixels that its own footprint covers,
so that adjacent source pixels tile a surface without holes even where the target sees it
closer or more head-on than the source did. The footprint is the box spanned by the target
projections of the pixel's neighbours (its slant and scale) that lie on the same surface
(depths within ``SAME_SURFACE_RATIO``), reaching the farther one on each axis so adjacent
points always meet; where a pixel has no such neighbour on an axis (a depth edge) it
falls back to ``(f_t / f_s) * (d_s / d_t)`` pixels square (``f`` = sqrt of the area scale of
``K``'s 2x2 block, ``d`` the planar depths in the source and the target). Footprints are at
least one pixel (the pixel holding the projection) and at most ``max_splat`` wide, and a
source pixel seen from its own pose lands on itself only.
"""
from __future__ import annotations

import numpy as np
import torch

from viewseg_core.cameras import pixels_to_rays, pixel_grid, project_points, ray_z_component
from viewseg_core.classes import IGNORE_LABEL, NUM_CLASSES
from viewseg_core.segmenter import load_segmenter, segment  # noqa: F401  (the baselines' 2D segmenter)

# Metres of camera travel that count as much as one radian of rotation in pose_distance:
# turning by 1 rad sweeps content at a typical 2 m indoor viewing distance about as far
# across the image as 2 m of sideways motion does.
DEFAULT_ROTATION_WEIGHT = 2.0
DEFAULT_MAX_SPLAT = 8
# Neighbouring source pixels whose depths differ by less than this factor are taken to lie
# on one surface (their projections then give the footprint).
SAME_SURFACE_RATIO = 1.1


# --------------------------------------------------------------------------------------
# Geometry: lifting depth images and z-buffered splatting
# --------------------------------------------------------------------------------------

def lift_depth(K: torch.Tensor, c2w: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """World points of every pixel of planar depth images.

    Args:
        K: [..., 3, 3]; c2w: [..., 4, 4]; depth: [..., H, W] planar depth (NaN allowed).
    Returns:
        [..., H*W, 3] world points, row-major (NaN where depth is NaN).
    """
    H, W = depth.shape[-2:]
    dtype = torch.promote_types(depth.dtype, torch.float32)
    uv = pixel_grid(H, W, device=depth.device, dtype=dtype)
    uv = uv.expand(*depth.shape[:-2], H * W, 2)
    origins, directions = pixels_to_rays(K.to(dtype), c2w.to(dtype), uv)
    z = ray_z_component(K, c2w.to(dtype), directions)
    distance = depth.to(dtype).reshape(*depth.shape[:-2], H * W) / z
    return origins + directions * distance[..., None]


def _focal(K: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [...] pixels per unit of normalised image plane (sqrt of the area scale)."""
    return torch.linalg.det(K[..., :2, :2]).abs().sqrt()


def splat(uv: torch.Tensor, depth: torch.Tensor, values: torch.Tensor, size: torch.Tensor,
          height: int, width: int, max_splat: int = DEFAULT_MAX_SPLAT) -> tuple[torch.Tensor, torch.Tensor]:
    """Z-buffer footprints into an image; each pixel takes the value of its nearest point.

    A point fills the pixels whose centres c satisfy u - s/2 < c <= u + s/2 on each axis
    (s clamped to [1, max_splat]), i.e. for s = 1 exactly the pixel whose area
    [c - 0.5, c + 0.5) holds u.

    Args:
        uv: [N, 2] pixel positions in the image; depth: [N] their planar depth (<= 0 or
            non-finite: dropped); values: [N] int64; size: [N, 2] footprint width (u, v), pixels.
    Returns:
        values [H, W] (``IGNORE_LABEL`` where no point lands) and planar depth [H, W] (NaN there).
    """
    dtype = torch.float64  # pixel rounding must not flip on float32 noise
    uv, depth, size = uv.to(dtype), depth.to(dtype), size.to(dtype)
    keep = (depth > 0) & torch.isfinite(depth) & torch.isfinite(uv).all(-1)
    size = torch.nan_to_num(size, nan=1.0).clamp(1.0, float(max_splat))
    uv, depth, values, size = uv[keep], depth[keep], values[keep], size[keep]
    lo = (torch.floor(uv - size / 2) + 1).long()
    hi = torch.maximum(torch.floor(uv + size / 2).long(), lo)
    n_pix = height * width
    out_values = torch.full((n_pix,), IGNORE_LABEL, dtype=torch.int64, device=uv.device)
    out_depth = torch.full((n_pix,), float("nan"), dtype=torch.float32, device=uv.device)
    if uv.shape[0] == 0:
        return out_values.reshape(height, width), out_depth.reshape(height, width)
    span = int((hi - lo).max().item()) + 1
    pix_list, depth_list, idx_list = [], [], []
    point_index = torch.arange(uv.shape[0], device=uv.device)
    for dv in range(span):
        for du in range(span):
            c, r = lo[:, 0] + du, lo[:, 1] + dv
            ok = (c <= hi[:, 0]) & (r <= hi[:, 1]) & (c >= 0) & (c < width) & (r >= 0) & (r < height)
            pix_list.append((r * width + c)[ok])
            depth_list.append(depth[ok])
            idx_list.append(point_index[ok])
    pix, dep, idx = torch.cat(pix_list), torch.cat(depth_list), torch.cat(idx_list)
    if pix.numel() == 0:
        return out_values.reshape(height, width), out_depth.reshape(height, width)
    zbuf = torch.full((n_pix,), float("inf"), dtype=dtype, device=pix.device)
    zbuf = zbuf.scatter_reduce(0, pix, dep, reduce="amin")
    front = dep == zbuf[pix]
    # Ties (equal depth) go to the lowest point index: deterministic whatever the scatter order.
    sentinel = uv.shape[0]
    winner = torch.full((n_pix,), sentinel, dtype=torch.int64, device=pix.device)
    winner = winner.scatter_reduce(0, pix[front], idx[front], reduce="amin")
    hit = winner < sentinel
    out_values[hit] = values[winner[hit]]
    out_depth[hit] = zbuf[hit].float()
    return out_values.reshape(height, width), out_depth.reshape(height, width)


def _shifted(x: torch.Tensor, dim: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x moved by ``step`` (+1: next, -1: previous) along ``dim``, and a [n] mask of where that
    neighbour exists (edges repeat themselves and are masked)."""
    n = x.shape[dim]
    index = torch.arange(n, device=x.device) + step
    exists = (index >= 0) & (index < n)
    return x.index_select(dim, index.clamp(0, n - 1)), exists


def footprints(uv: torch.Tensor, source_depth: torch.Tensor, target_depth: torch.Tensor,
               source_K: torch.Tensor, target_K: torch.Tensor) -> torch.Tensor:
    """Target-pixel footprint of every source pixel (see the module docstring).

    Along each source image axis the footprint reaches the farther of the two neighbours'
    projections that lie on the same surface, so adjacent points always meet (perspective
    makes the spacing uneven); with no such neighbour on an axis, the scale rule is used.

    Args:
        uv: [V, H, W, 2] target projections of the source pixels; source_depth: [V, H, W];
        target_depth: [V, H, W] their planar depth in the target; source_K: [V, 3, 3]; target_K: [3, 3].
    Returns:
        [V, H, W, 2] footprint widths (u, v) in target pixels (unclamped).
    """
    d = source_depth.to(torch.float64)
    uv = uv.to(torch.float64)
    scale = (_focal(target_K.double()) / _focal(source_K.double()))[:, None, None] * d / target_depth.double()
    extent = torch.zeros_like(uv)
    usable = torch.ones_like(d, dtype=torch.bool)
    for dim in (2, 1):  # neighbours along the source's columns, then its rows
        reach = torch.zeros_like(uv)
        found = torch.zeros_like(d, dtype=torch.bool)
        for step in (1, -1):
            dn, exists = _shifted(d, dim, step)
            shape = [1] * d.dim()
            shape[dim] = -1
            same = exists.reshape(shape) & (torch.maximum(dn / d, d / dn) < SAME_SURFACE_RATIO)  # NaN: False
            delta = (_shifted(uv, dim, step)[0] - uv).abs()
            reach = torch.where(same[..., None], torch.maximum(reach, delta), reach)
            found |= same
        extent += reach
        usable &= found
    return torch.where(usable[..., None], extent, scale[..., None].expand_as(extent))


def cloudseg(source_labels: torch.Tensor, source_depth: torch.Tensor, source_K: torch.Tensor,
             source_c2w: torch.Tensor, target_K: torch.Tensor, target_c2w: torch.Tensor,
             height: int, width: int, max_splat: int = DEFAULT_MAX_SPLAT) -> dict[str, np.ndarray]:
    """CloudSeg: lift labelled source pixels with depth, z-buffer them into the target.

    Args:
        source_labels: [V, H, W] int class ids (ids outside 0..NUM_CLASSES-1 are not lifted).
        source_depth: [V, H, W] planar depth (NaN/<=0: pixel not lifted).
        source_K: [V, 3, 3]; source_c2w: [V, 4, 4]; target_K: [3, 3]; target_c2w: [4, 4].
    Returns:
        {"labels": [height, width] int64 (255 = no point), "depth": [height, width] float32 (NaN)}.
    """
    V, H, W = source_depth.shape
    depth = source_depth.double()
    points = lift_depth(source_K.double(), source_c2w.double(), depth)  # [V, H*W, 3]
    uv, d_t, _ = project_points(target_K.double(), target_c2w.double(), points.reshape(-1, 3))
    uv, d_t = uv.reshape(V, H, W, 2), d_t.reshape(V, H, W)
    size = footprints(uv, depth, d_t, source_K, target_K)
    labels = source_labels.long()
    valid = torch.isfinite(depth) & (depth > 0) & (labels >= 0) & (labels < NUM_CLASSES)
    lab, dep = splat(uv[valid], d_t[valid], labels[valid], size[valid], height, width, max_splat)
    return {"labels": lab.cpu().numpy(), "depth": dep.cpu().numpy()}


# --------------------------------------------------------------------------------------
# Nearest source view
# --------------------------------------------------------------------------------------

def pose_distance(target_c2w: torch.Tensor, source_c2w: torch.Tensor,
                  rotation_weight: float = DEFAULT_ROTATION_WEIGHT) -> torch.Tensor:
    """Distance between poses: ||t_s - t_t|| (m) + rotation_weight * angle(R_s, R_t) (rad).

    Args:
        target_c2w: [4, 4]; source_c2w: [V, 4, 4].
    Returns:
        [V] float64.
    """
    t = target_c2w.double()
    s = source_c2w.double()
    translation = torch.linalg.norm(s[:, :3, 3] - t[:3, 3], dim=-1)
    R = s[:, :3, :3].transpose(-1, -2) @ t[:3, :3]
    # atan2(sin, cos) of the relative rotation: accurate at small angles, unlike arccos.
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    sin = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], -1).norm(dim=-1) / 2
    return translation + rotation_weight * torch.atan2(sin, cos)


def nearest_source(target_c2w: torch.Tensor, source_c2w: torch.Tensor,
                   rotation_weight: float = DEFAULT_ROTATION_WEIGHT) -> int:
    """Index of the source pose closest to the target (ties: the lower index)."""
    return int(torch.argmin(pose_distance(target_c2w, source_c2w, rotation_weight)))


def nearest_view(source_labels: torch.Tensor, source_depth: torch.Tensor, source_c2w: torch.Tensor,
                 target_c2w: torch.Tensor, rotation_weight: float = DEFAULT_ROTATION_WEIGHT) -> dict:
    """Copy the labels and depth image of the nearest source (same image size as the target).

    Returns:
        {"labels": [H, W] int64 (255 = ignore), "depth": [H, W] float32, "source": its index}.
    """
    i = nearest_source(target_c2w, source_c2w, rotation_weight)
    labels = source_labels[i].long().clone()
    labels[(labels < 0) | (labels >= NUM_CLASSES)] = IGNORE_LABEL
    return {"labels": labels.cpu().numpy(), "depth": source_depth[i].float().cpu().numpy(), "source": i}


# --------------------------------------------------------------------------------------
# ViewSeg's own depth at the source cameras (CloudSeg with predicted depth)
# --------------------------------------------------------------------------------------

@torch.no_grad()
def predicted_source_depth(model, example: dict, device: torch.device | str) -> torch.Tensor:
    """The depth ViewSeg renders at each source camera of a dataset example (an RGB-D model
    also sees the example's ``source_depth_input``).

    Returns:
        [V, H, W] float32 planar depth (NaN where the model renders background), on CPU.
    """
    model.eval()
    rgb = example["source_rgb"][None].to(device)
    V, _, H, W = example["source_rgb"].shape
    feats = model.encode_sources(rgb)
    K = example["source_K"].to(device)
    c2w = example["source_c2w"].to(device)
    # One batch of V queries, each seeing all V sources.
    from training.panels import source_depth_kwargs

    sources = model.make_sources(feats.expand(V, *feats.shape[1:]), K[None].expand(V, V, 3, 3),
                                 c2w[None].expand(V, V, 4, 4), H, W, rgb=rgb.expand(V, *rgb.shape[1:]),
                                 **source_depth_kwargs(model, example, device, batch=V))
    out = model.render(K, c2w, H, W, sources)
    return out.depth.float().cpu()


__all__ = ["load_segmenter", "segment", "lift_depth", "splat", "footprints", "cloudseg", "pose_distance",
           "nearest_source", "nearest_view", "predicted_source_depth", "DEFAULT_ROTATION_WEIGHT",
           "DEFAULT_MAX_SPLAT"]
