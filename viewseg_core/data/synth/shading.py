"""Surface appearance of ray hits: normals, procedural textures and Lambertian lighting.

Deferred shading: the caster returns, per pixel, only the hit distance and primitive; this
module turns (hit point, primitive) into a colour with whole-image numpy operations. Textures
are functions of surface coordinates in metres (so a floor's tiles have a real size), with
an integer hash for noise so that the same point has the same colour in every view.
"""
from __future__ import annotations

import numpy as np

from viewseg_core.data.synth.scene import (BOX, FABRIC, FOLDS, PANELS, PICTURE, PLAIN, SLATS, SPECKLE,
                                           TILES, WOOD, Scene)


def _hash2(i: np.ndarray, j: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Integer lattice hash -> uniform [0, 1) (same value for the same cell, in any view)."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ (np.asarray(seed, np.int64) * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float64) / 65536.0


def value_noise(s: np.ndarray, t: np.ndarray, freq, seed) -> np.ndarray:
    """Smooth 2D value noise in [0, 1) at ``freq`` cells per metre."""
    x, y = s * freq, t * freq
    i, j = np.floor(x), np.floor(y)
    fx, fy = x - i, y - j
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = _hash2(i, j, seed), _hash2(i + 1, j, seed)
    c, d = _hash2(i, j + 1, seed), _hash2(i + 1, j + 1, seed)
    return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy


def surface(scene: Scene, prim: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outward normals and texture coordinates of hit points.

    Args:
        prim: [M] primitive index of each hit; points: [M, 3] hit points (world).
    Returns:
        normals [M, 3] unit (world), s [M], t [M] surface coordinates in metres.
    """
    c = scene.center[prim]
    h = scene.half[prim]
    yaw = np.where(scene.kind[prim] == BOX, scene.yaw[prim], 0.0)
    cy, sy = np.cos(yaw), np.sin(yaw)
    rel = points - c
    qx = cy * rel[:, 0] + sy * rel[:, 1]
    qy = -sy * rel[:, 0] + cy * rel[:, 1]
    qz = rel[:, 2]
    is_box = scene.kind[prim] == BOX

    # Boxes: the face is the axis where the point sits closest to the boundary.
    r = np.abs(np.stack([qx / h[:, 0], qy / h[:, 1], qz / h[:, 2]], axis=1))
    axis = np.argmax(r, axis=1)
    q = np.stack([qx, qy, qz], axis=1)
    sign = np.sign(q[np.arange(len(prim)), axis])
    n_local = np.zeros_like(q)
    n_local[np.arange(len(prim)), axis] = sign
    s_box = np.where(axis == 0, qy + h[:, 1], qx + h[:, 0])
    t_box = np.where(axis == 2, qy + h[:, 1], qz + h[:, 2])

    # Cylinders: side or cap, whichever boundary is nearer in relative terms.
    rho = np.sqrt(qx * qx + qy * qy)
    cap = np.abs(qz) / h[:, 2] > rho / h[:, 0]
    n_cyl = np.where(cap[:, None], np.stack([0 * qx, 0 * qx, np.sign(qz)], 1),
                     np.stack([qx, qy, 0 * qx], 1) / np.maximum(rho, 1e-12)[:, None])
    s_cyl = np.where(cap, qx, np.arctan2(qy, qx) * h[:, 0])
    t_cyl = np.where(cap, qy, qz + h[:, 2])

    n_local = np.where(is_box[:, None], n_local, n_cyl)
    nx = cy * n_local[:, 0] - sy * n_local[:, 1]
    ny = sy * n_local[:, 0] + cy * n_local[:, 1]
    normals = np.stack([nx, ny, n_local[:, 2]], axis=1)
    s = np.where(is_box, s_box, s_cyl)
    t = np.where(is_box, t_box, t_cyl)
    return normals, s, t


def albedo(scene: Scene, prim: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """[M, 3] linear albedo of each hit from its material's procedural texture."""
    mat = scene.material[prim]
    c1, c2 = scene.mat_color[mat], scene.mat_color2[mat]
    f = scene.mat_scale[mat]
    kind = scene.mat_texture[mat]
    seed = prim.astype(np.int64) + 7919 * scene.seed
    out = np.empty_like(c1)

    def sel(k):
        return np.nonzero(kind == k)[0]

    idx = sel(PLAIN)
    if idx.size:
        v = value_noise(s[idx], t[idx], 3.0, seed[idx])
        out[idx] = c1[idx] * (0.93 + 0.14 * v)[:, None]
    idx = sel(WOOD)
    if idx.size:
        warp = value_noise(s[idx], t[idx] * 6.0, 1.5, seed[idx])
        v = 0.5 + 0.5 * np.sin(2 * np.pi * (f[idx] * s[idx] + 2.0 * warp))
        out[idx] = c1[idx] + (c2[idx] - c1[idx]) * (v ** 3)[:, None]
    idx = sel(TILES)
    if idx.size:
        x, y = s[idx] * f[idx], t[idx] * f[idx]
        grout = ((x - np.floor(x)) < 0.04) | ((y - np.floor(y)) < 0.04)
        var = _hash2(np.floor(x), np.floor(y), seed[idx])
        out[idx] = np.where(grout[:, None], c2[idx], c1[idx] * (0.85 + 0.3 * var)[:, None])
    idx = sel(SLATS)
    if idx.size:
        y = t[idx] * f[idx]
        gap = (y - np.floor(y)) > 0.85
        out[idx] = np.where(gap[:, None], c2[idx], c1[idx] * (0.8 + 0.2 * (y - np.floor(y)))[:, None])
    idx = sel(FOLDS)
    if idx.size:
        v = 0.5 + 0.5 * np.sin(2 * np.pi * f[idx] * s[idx])
        out[idx] = c1[idx] * (0.65 + 0.35 * v)[:, None]
    idx = sel(FABRIC)
    if idx.size:
        v = value_noise(s[idx], t[idx], f[idx], seed[idx])
        weave = ((np.floor(s[idx] * 80) + np.floor(t[idx] * 80)) % 2) * 0.06
        out[idx] = (c1[idx] + (c2[idx] - c1[idx]) * v[:, None]) * (0.94 + weave)[:, None]
    idx = sel(PICTURE)
    if idx.size:
        x, y = np.floor(s[idx] * f[idx]), np.floor(t[idx] * f[idx] * 0.7)
        a = _hash2(x, y, seed[idx])
        b = _hash2(x + 17, y - 5, seed[idx])
        c3 = 1.0 - c1[idx]
        mix = c1[idx] + (c2[idx] - c1[idx]) * a[:, None]
        out[idx] = np.where((b > 0.75)[:, None], c3, mix)
    idx = sel(SPECKLE)
    if idx.size:
        v = _hash2(np.floor(s[idx] * f[idx]), np.floor(t[idx] * f[idx]), seed[idx])
        out[idx] = c1[idx] * (0.8 + 0.4 * v)[:, None]
    idx = sel(PANELS)
    if idx.size:
        x, y = s[idx] * f[idx], t[idx] * f[idx] * 1.5
        seam = ((x - np.floor(x)) < 0.03) | ((y - np.floor(y)) < 0.02)
        out[idx] = np.where(seam[:, None], c2[idx], c1[idx])
    return out


def shade(scene: Scene, prim: np.ndarray, points: np.ndarray, view_dirs: np.ndarray) -> np.ndarray:
    """[M, 3] linear radiance of hits: Lambertian point lights + ambient, or emission.

    Args:
        prim: [M]; points: [M, 3]; view_dirs: [M, 3] unit ray directions (camera -> point).
    """
    normals, s, t = surface(scene, prim, points)
    # A face seen from behind (thin slabs seen edge-on at grazing angles) is lit as its front.
    facing = np.sum(normals * view_dirs, axis=1) > 0
    normals[facing] *= -1
    alb = albedo(scene, prim, s, t)
    light = np.full((len(prim), 3), scene.ambient)
    light += 0.12 * (0.5 + 0.5 * normals[:, 2:3])      # sky-ish fill from above
    for lp, lc in zip(scene.light_pos, scene.light_color):
        L = lp - points
        d2 = np.sum(L * L, axis=1)
        cos = np.maximum(np.sum(normals * L, axis=1) / np.sqrt(d2 + 1e-12), 0.0)
        light += (cos / (1.0 + 0.12 * d2))[:, None] * lc
    rad = alb * light
    em = scene.mat_emissive[scene.material[prim]]
    glow = em > 0
    rad[glow] = alb[glow] * em[glow, None]
    return rad


def to_srgb8(radiance: np.ndarray, exposure: float = 1.0) -> np.ndarray:
    """Linear radiance -> 8-bit display values (clip, gamma 2.2)."""
    x = np.clip(radiance * exposure, 0.0, 1.0) ** (1 / 2.2)
    return (x * 255.0 + 0.5).astype(np.uint8)


__all__ = ["surface", "albedo", "shade", "to_srgb8", "value_noise"]
