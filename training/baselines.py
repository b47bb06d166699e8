"""Baselines that ViewSeg is compared with, on exactly ViewSeg's evaluation (training/evaluate.py).

* **CloudSeg** (the paper's 3D baseline): segment every source view with a 2D segmenter,
  lift each labelled pixel to 3D with a depth map, and z-buffer the points into the target
  camera. Two variants, named by where the source depth comes from:
  ``cloudseg_pred`` uses the depth ViewSeg renders at the source cameras (no depth sensor,
  like ViewSeg), ``cloudseg_true`` the true source depth (a perfect depth sensor).
  Target pixels no point reaches stay unknown (255, depth NaN) and count as errors.
* **nearest source view** (lower bound): copy the labels and the depth image of the source
  whose pose is closest to the target's (:func:`pose_distance`).
* **oracle** (semantic upper bound): the 2D segmenter run on the true target RGB.

Splatting: a source pixel at planar depth ``d_s`` covers a patch of the surface that the
target sees ``scale = (f_t / f_s) * (d_s / d_t)`` target pixels wide (``f`` = sqrt of the
area scale of ``K``'s 2x2 block, ``d_t`` its target depth), so each point fills the target
pixels whose centres fall in that square around its projection (at least its own pixel, at
most ``max_splat`` wide). Adjacent source pixels then tile a surface without holes when
the target is closer than the source, and a point at the same pose lands on its own pixel
only. Surface slant is ignored, as in a fixed-radius point renderer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from viewseg_core.cameras import pixels_to_rays, pixel_grid, project_points, ray_z_component
from viewseg_core.classes import IGNORE_LABEL, NUM_CLASSES
from viewseg_core.model.encoder import Encoder, build_encoder
from viewseg_core.model.weights import ENCODER_FORMAT, load_encoder_weights, read_weights_file

# Metres of camera travel that count as much as one radian of rotation in pose_distance:
# turning by 1 rad sweeps content at a typical 2 m indoor viewing distance about as far
# across the image as 2 m of sideways motion does.
DEFAULT_ROTATION_WEIGHT = 2.0
DEFAULT_MAX_SPLAT = 6


# --------------------------------------------------------------------------------------
# 2D segmenter (from `viewseg pretrain-2d`)
# --------------------------------------------------------------------------------------

def load_segmenter(path: str | Path, device: torch.device | str = "cpu") -> Encoder:
    """A ``viewseg-encoder`` checkpoint (``viewseg pretrain-2d``) as an eval-mode segmenter."""
    obj = read_weights_file(path)
    if not isinstance(obj, Mapping) or obj.get("format") != ENCODER_FORMAT:
        raise ValueError(f"{path} is not a 2D segmenter checkpoint (no format={ENCODER_FORMAT!r}; "
                         f"write one with `viewseg pretrain-2d`)")
    for key in ("encoder", "feature_dim", "num_classes"):
        if key not in obj:
            raise ValueError(f"{path}: segmenter checkpoint lacks {key!r}")
    # sync_bn needs a process group; at evaluation it is plain BatchNorm with running stats.
    norm = {"sync_bn": "bn"}.get(str(obj.get("norm", "bn")), str(obj.get("norm", "bn")))
    encoder = build_encoder(str(obj["encoder"]), feature_dim=int(obj["feature_dim"]),
                            num_classes=int(obj["num_classes"]), norm=norm)
    load_encoder_weights(encoder, path, include_head=True)
    return encoder.to(device).eval()


@torch.no_grad()
def segment(encoder: Encoder, rgb: torch.Tensor) -> torch.Tensor:
    """2D semantic labels.

    Args:
        rgb: [N, 3, H, W] float in [0, 1].
    Returns:
        [N, H, W] int64 argmax class ids (on rgb's device).
    """
    encoder.eval()
    dev = next(encoder.parameters()).device
    return encoder.segment(rgb.to(dev, torch.float32)).argmax(1).to(rgb.device)


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


def splat(points: torch.Tensor, values: torch.Tensor, point_depth: torch.Tensor, point_focal: torch.Tensor,
          K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
          max_splat: int = DEFAULT_MAX_SPLAT) -> tuple[torch.Tensor, torch.Tensor]:
    """Z-buffer points into one camera; each pixel takes the value of its nearest point.

    Args:
        points: [N, 3] world points (finite).
        values: [N] int64 per-point values (labels).
        point_depth: [N] planar depth of each point in the camera it came from.
        point_focal: [N] focal scale (:func:`_focal`) of that camera.
        K: [3, 3]; c2w: [4, 4] target camera; height, width: target image size.
    Returns:
        values [H, W] (``IGNORE_LABEL`` where no point lands) and planar depth [H, W] (NaN there).
    """
    dtype = torch.float64  # pixel rounding must not flip on float32 noise
    uv, depth, in_front = project_points(K.to(dtype), c2w.to(dtype), points.to(dtype))
    keep = in_front & torch.isfinite(uv).all(-1)
    uv, depth, values = uv[keep], depth[keep], values[keep]
    scale = _focal(K.to(dtype)) / point_focal.to(dtype)[keep] * point_depth.to(dtype)[keep] / depth
    size = scale.clamp(1.0, float(max_splat))
    # Pixels c whose area [c - 0.5, c + 0.5) meets the footprint's centre band, i.e. centres
    # u - size/2 < c <= u + size/2; for size 1 that is exactly the pixel containing u.
    lo = torch.floor(uv - size[:, None] / 2) + 1
    hi = torch.maximum(torch.floor(uv + size[:, None] / 2), lo)
    lo, hi = lo.long(), hi.long()
    span = int((hi - lo).max().item()) + 1 if uv.shape[0] else 0
    pix_list, depth_list, idx_list = [], [], []
    point_index = torch.arange(uv.shape[0], device=uv.device)
    for dv in range(span):
        for du in range(span):
            c, r = lo[:, 0] + du, lo[:, 1] + dv
            ok = (c <= hi[:, 0]) & (r <= hi[:, 1]) & (c >= 0) & (c < width) & (r >= 0) & (r < height)
            pix_list.append((r * width + c)[ok])
            depth_list.append(depth[ok])
            idx_list.append(point_index[ok])
    n_pix = height * width
    out_values = torch.full((n_pix,), IGNORE_LABEL, dtype=torch.int64, device=points.device)
    out_depth = torch.full((n_pix,), float("nan"), dtype=torch.float32, device=points.device)
    if not pix_list or sum(p.numel() for p in pix_list) == 0:
        return out_values.reshape(height, width), out_depth.reshape(height, width)
    pix, dep, idx = torch.cat(pix_list), torch.cat(depth_list), torch.cat(idx_list)
    zbuf = torch.full((n_pix,), float("inf"), dtype=dtype, device=pix.device)
    zbuf = zbuf.scatter_reduce(0, pix, dep, reduce="amin")
    front = dep == zbuf[pix]
    # Ties (equal depth) go to the lowest point index: deterministic whatever the scatter order.
    sentinel = idx.numel() + uv.shape[0] + 1
    winner = torch.full((n_pix,), sentinel, dtype=torch.int64, device=pix.device)
    winner = winner.scatter_reduce(0, pix[front], idx[front], reduce="amin")
    hit = winner < sentinel
    out_values[hit] = values[winner[hit]]
    out_depth[hit] = zbuf[hit].float()
    return out_values.reshape(height, width), out_depth.reshape(height, width)


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
    V = source_labels.shape[0]
    points = lift_depth(source_K, source_c2w, source_depth).reshape(-1, 3)
    d = source_depth.reshape(-1).float()
    labels = source_labels.reshape(-1).long()
    valid = torch.isfinite(d) & (d > 0) & (labels >= 0) & (labels < NUM_CLASSES) & torch.isfinite(points).all(-1)
    focal = _focal(source_K.double())[:, None].expand(V, source_depth[0].numel()).reshape(-1)
    lab, dep = splat(points[valid], labels[valid], d[valid], focal[valid], target_K, target_c2w,
                     height, width, max_splat)
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
    """The depth ViewSeg renders at each source camera of a dataset example.

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
    sources = model.make_sources(feats.expand(V, *feats.shape[1:]), K[None].expand(V, V, 3, 3),
                                 c2w[None].expand(V, V, 4, 4), H, W)
    out = model.render(K, c2w, H, W, sources)
    return out.depth.float().cpu()


__all__ = ["load_segmenter", "segment", "lift_depth", "splat", "cloudseg", "pose_distance",
           "nearest_source", "nearest_view", "predicted_source_depth", "DEFAULT_ROTATION_WEIGHT",
           "DEFAULT_MAX_SPLAT"]
