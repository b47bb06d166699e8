"""Source-target pair mining: for each target view, the views that can explain it.

A source ``j`` qualifies for target ``i`` when (all thresholds in :class:`PairConfig`):

- overlap: at least ``min_overlap`` of the target's sample points are seen by the source.
  With target depth, the points are the target's pixels (every ``stride``-th) lifted to 3D
  by their planar depth; a point counts when it projects inside the source image in front
  of it and, when the source has depth too, is not occluded there (its depth agrees with the
  source's depth within ``occlusion_tolerance``). Without target depth, the points sample
  the target frustum (the same pixel grid at ``frustum_depths``) and count when they fall
  inside the source frustum (in front, in the image, nearer than ``frustum_far``);
- baseline: camera centres more than ``min_baseline`` metres apart;
- rotation: relative rotation angle at least ``min_rotation_deg`` degrees.

The result is deterministic: candidates are sorted by (overlap desc, view id), and the
``num_sources`` sources kept for a target are drawn from its best ``max_candidates`` with a
generator seeded by (seed, scene, target). The pairs file (JSON) stores both, so training
can redraw sources every epoch while evaluation uses the stored ones.
"""
from __future__ import annotations

import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from viewseg_core import cameras
from viewseg_core.data.scene_folder import read_json, write_json
from viewseg_core.data.source import SceneSource

PAIRS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PairConfig:
    """Pair mining thresholds (metres, degrees, fractions)."""

    num_sources: int = 4
    min_sources: int | None = None          # targets with fewer candidates are dropped (None: num_sources)
    min_overlap: float = 0.10
    max_overlap: float = 1.0                # < 1 drops near-duplicate views
    min_baseline: float = 0.5               # strict: the centres must be farther apart than this
    max_baseline: float = math.inf
    min_rotation_deg: float = 30.0
    max_candidates: int = 16
    stride: int = 8                         # pixel step of the sample grid
    occlusion_tolerance: float = 0.05       # relative depth difference still counted as visible
    frustum_depths: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
    frustum_far: float = 6.0
    seed: int = 0


@dataclass
class PairEntry:
    """One target view and the source views chosen for it (view ids of one scene)."""

    scene: str
    target: str
    sources: list[str]
    candidates: list[tuple[str, float]] = field(default_factory=list)   # (view id, overlap), best first


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle of the relative rotation R_a^T R_b, degrees."""
    c = (np.trace(R_a.T @ R_b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _grid(height: int, width: int, stride: int) -> torch.Tensor:
    """[P, 2] float64 pixel centres on a stride grid, offset to sample the image evenly."""
    rows = torch.arange(stride // 2, height, stride, dtype=torch.float64)
    cols = torch.arange(stride // 2, width, stride, dtype=torch.float64)
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def _target_points(cam, depth: np.ndarray | None, cfg: PairConfig) -> np.ndarray:
    """[P, 3] world sample points of the target (depth reprojection, or frustum samples)."""
    uv = _grid(cam.height, cam.width, cfg.stride)
    K = torch.as_tensor(cam.K, dtype=torch.float64)
    c2w = torch.as_tensor(cam.c2w, dtype=torch.float64)
    origins, dirs = cameras.pixels_to_rays(K, c2w, uv)
    z = cameras.ray_z_component(K, c2w, dirs)
    if depth is not None:
        cols, rows = uv[:, 0].long().numpy(), uv[:, 1].long().numpy()
        d = torch.as_tensor(depth[rows, cols].astype(np.float64))
        ok = torch.isfinite(d) & (d > 0)
        pts = origins + (d / z)[:, None] * dirs
        return pts[ok].numpy()
    planar = torch.as_tensor(cfg.frustum_depths, dtype=torch.float64)
    pts = origins[None] + (planar[:, None, None] / z[None, :, None]) * dirs[None]
    return pts.reshape(-1, 3).numpy()


def overlap_fractions(target_points: np.ndarray, cams: Sequence, depths: Sequence[np.ndarray | None],
                      cfg: PairConfig, frustum: bool) -> np.ndarray:
    """[S] fraction of target sample points that each source camera sees."""
    if len(target_points) == 0 or len(cams) == 0:
        return np.zeros(len(cams))
    pts = torch.as_tensor(target_points, dtype=torch.float64)
    out = np.zeros(len(cams))
    for j, cam in enumerate(cams):
        uv, z, front = cameras.project_points(torch.as_tensor(cam.K, dtype=torch.float64),
                                              torch.as_tensor(cam.c2w, dtype=torch.float64), pts)
        seen = front & cameras.in_image(uv, cam.height, cam.width)
        if frustum:
            seen &= z <= cfg.frustum_far
        elif depths[j] is not None:
            # Occlusion test at the nearest source pixel (pixel centres are integers).
            col = torch.clamp(torch.round(uv[:, 0]), 0, cam.width - 1).long().numpy()
            row = torch.clamp(torch.round(uv[:, 1]), 0, cam.height - 1).long().numpy()
            d_src = torch.as_tensor(depths[j][row, col].astype(np.float64))
            visible = torch.isfinite(d_src) & (z <= d_src * (1.0 + cfg.occlusion_tolerance))
            seen &= visible
        out[j] = float(seen.double().mean())
    return out


def _rng_for(seed: int, scene: str, target: str) -> np.random.Generator:
    key = zlib.crc32(f"{scene}\0{target}".encode())
    return np.random.default_rng([int(seed), key])


def mine_pairs(source: SceneSource, cfg: PairConfig = PairConfig(), progress: bool = False) -> list[PairEntry]:
    """Pairs of one scene (every view as a target; those without enough sources dropped)."""
    n = len(source)
    cams = [source.camera(i) for i in range(n)]
    depths = [source.load_depth(i) for i in range(n)]
    centres = np.array([c.c2w[:3, 3] for c in cams]).reshape(n, 3)
    min_sources = cfg.num_sources if cfg.min_sources is None else cfg.min_sources
    entries = []
    it = range(n)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"pairs {source.name}", leave=False)
    for i in it:
        ti = cams[i]
        base = np.linalg.norm(centres - centres[i], axis=1)
        rot = np.array([rotation_angle_deg(ti.c2w[:3, :3], c.c2w[:3, :3]) for c in cams])
        geo_ok = (base > cfg.min_baseline) & (base <= cfg.max_baseline) & (rot >= cfg.min_rotation_deg)
        geo_ok[i] = False
        idx = np.nonzero(geo_ok)[0]
        if len(idx) < max(1, min_sources):
            continue
        pts = _target_points(ti, depths[i], cfg)
        ov = overlap_fractions(pts, [cams[j] for j in idx], [depths[j] for j in idx], cfg,
                               frustum=depths[i] is None)
        keep = (ov >= cfg.min_overlap) & (ov <= cfg.max_overlap)
        cand = sorted(((cams[j].view_id, float(o)) for j, o in zip(idx[keep], ov[keep])),
                      key=lambda x: (-x[1], x[0]))[:cfg.max_candidates]
        if len(cand) < max(1, min_sources):
            continue
        rng = _rng_for(cfg.seed, source.name, ti.view_id)
        k = min(cfg.num_sources, len(cand))
        chosen = sorted(rng.choice(len(cand), size=k, replace=False).tolist())
        entries.append(PairEntry(source.name, ti.view_id, [cand[c][0] for c in chosen],
                                 [(v, round(o, 4)) for v, o in cand]))
    return entries


def _mine_one(args: tuple[SceneSource, PairConfig]) -> list[PairEntry]:
    return mine_pairs(*args)


def mine_all(sources: Iterable[SceneSource], cfg: PairConfig = PairConfig(),
             progress: bool = False, workers: int = 1) -> list[PairEntry]:
    """Pairs of every scene, in scene order.

    Args:
        workers: processes mining whole scenes in parallel (each scene draws from its own
            seeded RNG, so the result equals the serial one); 1 mines in this process.
    """
    sources = list(sources)
    if workers <= 1 or len(sources) <= 1:
        out: list[PairEntry] = []
        for s in sources:
            out += mine_pairs(s, cfg, progress=progress)
        return out
    import multiprocessing as mp
    from tqdm import tqdm

    out = []
    with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(min(workers, len(sources))) as pool:
        jobs = pool.imap(_mine_one, [(s, cfg) for s in sources])
        for entries in tqdm(jobs, total=len(sources), unit="scene", desc="pairs", disable=not progress):
            out += entries
    return out


def _config_json(cfg: PairConfig) -> dict:
    d = asdict(cfg)
    d["frustum_depths"] = list(cfg.frustum_depths)
    d["max_baseline"] = None if math.isinf(cfg.max_baseline) else cfg.max_baseline
    return d


def write_pairs(path: str | os.PathLike, entries: Sequence[PairEntry], cfg: PairConfig | None = None) -> None:
    """Write a pairs file: {"format_version", "config", "scenes": {scene: [entry, ...]}}."""
    scenes: dict[str, list[dict]] = {}
    for e in entries:
        scenes.setdefault(e.scene, []).append({"target": e.target, "sources": list(e.sources),
                                               "candidates": [[v, o] for v, o in e.candidates]})
    doc = {"format_version": PAIRS_FORMAT_VERSION, "config": _config_json(cfg) if cfg else None, "scenes": scenes}
    write_json(path, doc, indent=None)


def read_pairs(path: str | os.PathLike) -> list[PairEntry]:
    """Entries of a pairs file, in file order; ValueError naming the file on any malformation."""
    path = Path(path)
    doc = read_json(path)
    if doc.get("format_version") != PAIRS_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported pairs format_version {doc.get('format_version')!r}")
    scenes = doc.get("scenes")
    if not isinstance(scenes, dict):
        raise ValueError(f"{path}: 'scenes' must be an object of scene -> entries")
    out = []
    for scene, items in scenes.items():
        if not isinstance(items, list):
            raise ValueError(f"{path}: scenes[{scene!r}] must be a list")
        for k, it in enumerate(items):
            try:
                out.append(PairEntry(str(scene), str(it["target"]), [str(s) for s in it["sources"]],
                                     [(str(v), float(o)) for v, o in it.get("candidates", [])]))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}: scenes[{scene!r}][{k}]: malformed entry ({e!r})") from e
    return out


__all__ = ["PairConfig", "PairEntry", "mine_pairs", "mine_all", "write_pairs", "read_pairs",
           "overlap_fractions", "rotation_angle_deg"]
