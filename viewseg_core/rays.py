"""Ray sets: the RayBundle container, every ray of an image, and random training subsets.

A ray is ``origin + t * direction`` with a unit world-frame direction, so ``t`` is the
distance along the ray in metres; ``near``/``far`` bound ``t`` (global bounds, default
0.1 m and 20 m). ``z_axis`` is the direction's component along the camera's optical axis:
planar depth = ``t * z_axis`` (never report ``t`` itself as depth).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator

import torch

from viewseg_core.cameras import pixel_grid, pixels_to_rays, ray_z_component

DEFAULT_NEAR = 0.1
DEFAULT_FAR = 20.0


@dataclass
class RayBundle:
    """A batch of rays with shared leading shape ``[...]``.

    Attributes:
        origins: [..., 3] world, metres.
        directions: [..., 3] unit, world.
        near: [...] ray distance where sampling starts.
        far: [...] ray distance where sampling ends.
        z_axis: [...] optical-axis component of ``directions`` (planar depth = t * z_axis).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    z_axis: torch.Tensor

    def __post_init__(self) -> None:
        shape = self.origins.shape[:-1]
        if self.origins.shape[-1:] != (3,) or self.directions.shape != self.origins.shape:
            raise ValueError(f"RayBundle: origins {tuple(self.origins.shape)} and directions "
                             f"{tuple(self.directions.shape)} must both be [..., 3]")
        for name in ("near", "far", "z_axis"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"RayBundle.{name}: expected shape {tuple(shape)}, "
                                 f"got {tuple(getattr(self, name).shape)}")

    @property
    def shape(self) -> torch.Size:
        return self.origins.shape[:-1]

    @property
    def device(self) -> torch.device:
        return self.origins.device

    @property
    def dtype(self) -> torch.dtype:
        return self.origins.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def numel(self) -> int:
        return self.shape.numel()

    def _map(self, vec_fn, scalar_fn) -> "RayBundle":
        return RayBundle(vec_fn(self.origins), vec_fn(self.directions),
                         scalar_fn(self.near), scalar_fn(self.far), scalar_fn(self.z_axis))

    def reshape(self, *shape: int) -> "RayBundle":
        """New leading shape (like ``Tensor.reshape`` on ``[...]``)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        return self._map(lambda x: x.reshape(*shape, 3), lambda x: x.reshape(*shape))

    def flatten(self) -> "RayBundle":
        """[...] -> [N]."""
        return self.reshape(-1)

    def to(self, *args, **kwargs) -> "RayBundle":
        """Like ``Tensor.to`` (device and/or dtype) for every field."""
        f = lambda x: x.to(*args, **kwargs)  # noqa: E731
        return self._map(f, f)

    def detach(self) -> "RayBundle":
        f = lambda x: x.detach()  # noqa: E731
        return self._map(f, f)

    def __getitem__(self, index) -> "RayBundle":
        """Index the leading dims: ``rays[3]``, ``rays[:, idx]``, ``rays[mask]``."""
        return self._map(lambda x: x[index], lambda x: x[index])

    def points(self, t: torch.Tensor) -> torch.Tensor:
        """Points at distances t [..., S] -> [..., S, 3]."""
        return self.origins[..., None, :] + t[..., :, None] * self.directions[..., None, :]

    def chunks(self, size: int) -> Iterator["RayBundle"]:
        """Consecutive pieces of the flattened bundle of at most ``size`` rays (for rendering
        big images in bounded memory)."""
        flat = self.flatten()
        for start in range(0, flat.numel(), size):
            yield flat[start:start + size]

    @staticmethod
    def cat(bundles: list["RayBundle"], dim: int = 0) -> "RayBundle":
        """Concatenate bundles along leading dim ``dim`` (non-negative)."""
        vals = {f.name: torch.cat([getattr(b, f.name) for b in bundles], dim=dim)
                for f in fields(RayBundle)}
        return RayBundle(**vals)


def _bundle(K: torch.Tensor, c2w: torch.Tensor, uv: torch.Tensor, near, far) -> RayBundle:
    origins, directions = pixels_to_rays(K, c2w, uv)
    z_axis = ray_z_component(K, c2w, directions)
    shape, kw = z_axis.shape, dict(dtype=z_axis.dtype, device=z_axis.device)
    near_t = torch.as_tensor(near, **kw)
    far_t = torch.as_tensor(far, **kw)
    if near_t.ndim > 0:
        near_t = near_t[..., None]  # one bound per camera -> per ray
    if far_t.ndim > 0:
        far_t = far_t[..., None]
    near_t, far_t = near_t.expand(shape).contiguous(), far_t.expand(shape).contiguous()
    if not bool((far_t > near_t).all()) or not bool((near_t >= 0).all()):
        raise ValueError(f"ray bounds must satisfy 0 <= near < far, got near={near}, far={far}")
    return RayBundle(origins.contiguous(), directions.contiguous(), near_t, far_t, z_axis)


def _prepare(K: torch.Tensor, c2w: torch.Tensor, dtype: torch.dtype | None):
    if K.shape[-2:] != (3, 3) or c2w.shape[-2:] != (4, 4):
        raise ValueError(f"K must be [..., 3, 3] and c2w [..., 4, 4], got {tuple(K.shape)} "
                         f"and {tuple(c2w.shape)}")
    if dtype is None:
        dtype = torch.promote_types(K.dtype, c2w.dtype)
        if not dtype.is_floating_point:
            dtype = torch.get_default_dtype()
    batch = torch.broadcast_shapes(K.shape[:-2], c2w.shape[:-2])
    return K.to(dtype), c2w.to(device=K.device, dtype=dtype), batch, dtype


def grid_rays(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
              near: float | torch.Tensor = DEFAULT_NEAR, far: float | torch.Tensor = DEFAULT_FAR,
              dtype: torch.dtype | None = None) -> RayBundle:
    """Every pixel centre of an image.

    Args:
        K: [..., 3, 3]; c2w: [..., 4, 4]; near/far: floats or [...] per camera.
        dtype: of the rays (default: K's and c2w's promoted dtype).
    Returns:
        RayBundle [..., H*W], row-major (ray ``r * W + c`` goes through pixel (c, r));
        ``.reshape(*batch, H, W)`` gives image layout.
    """
    K, c2w, batch, dtype = _prepare(K, c2w, dtype)
    uv = pixel_grid(height, width, device=K.device, dtype=dtype).expand(*batch, height * width, 2)
    return _bundle(K, c2w, uv, near, far)


def rays_at_pixels(K: torch.Tensor, c2w: torch.Tensor, uv: torch.Tensor,
                   near: float | torch.Tensor = DEFAULT_NEAR, far: float | torch.Tensor = DEFAULT_FAR,
                   dtype: torch.dtype | None = None) -> RayBundle:
    """Rays through given pixel positions (e.g. the pixels a dataset sampled).

    Args:
        K: [..., 3, 3]; c2w: [..., 4, 4]; uv: [..., N, 2] continuous pixel coordinates.
    Returns:
        RayBundle [..., N].
    """
    K, c2w, _, dtype = _prepare(K, c2w, dtype)
    return _bundle(K, c2w, uv.to(device=K.device, dtype=dtype), near, far)


def random_rays(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int, num_rays: int,
                generator: torch.Generator | None = None,
                near: float | torch.Tensor = DEFAULT_NEAR, far: float | torch.Tensor = DEFAULT_FAR,
                mask: torch.Tensor | None = None,
                dtype: torch.dtype | None = None) -> tuple[RayBundle, torch.Tensor]:
    """A random subset of pixel-centre rays per camera (training).

    Pixels are drawn without replacement when there are enough of them (with replacement
    when ``mask`` leaves fewer than ``num_rays``). Pass a seeded ``generator`` for
    reproducible runs; it may live on any device.

    Args:
        K: [..., 3, 3]; c2w: [..., 4, 4].
        mask: optional [..., H*W] or [..., H, W] bool, pixels allowed (e.g. labelled ones).
    Returns:
        rays: RayBundle [..., num_rays]
        pixel_index: [..., num_rays] int64 flat index ``r * W + c`` into the [..., H*W]
            image, to gather targets: ``labels.reshape(*batch, -1).gather(-1, pixel_index)``.
    """
    K, c2w, batch, dtype = _prepare(K, c2w, dtype)
    if num_rays <= 0:
        raise ValueError(f"num_rays must be positive, got {num_rays}")
    n_pix = height * width
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if mask is None:
        weights = torch.ones(batch.numel(), n_pix, device=gen_device)
    else:
        weights = mask.to(gen_device, torch.float32).reshape(-1, n_pix).expand(batch.numel(), n_pix)
    counts = weights.sum(-1)
    if bool((counts == 0).any()):
        raise ValueError("random_rays: the pixel mask leaves no pixel to sample in some image")
    replacement = num_rays > int(counts.min())
    index = torch.multinomial(weights, num_rays, replacement=replacement, generator=generator)
    index = index.reshape(*batch, num_rays).to(K.device)
    uv = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], -1).to(dtype)
    return _bundle(K, c2w, uv, near, far), index


__all__ = ["RayBundle", "grid_rays", "rays_at_pixels", "random_rays", "DEFAULT_NEAR", "DEFAULT_FAR"]
