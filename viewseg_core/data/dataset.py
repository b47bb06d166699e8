"""Training examples for ViewSeg: V source views + random rays of one target view.

``ViewSegDataset(scenes, pairs, DatasetConfig())[i]`` loads pair ``i``'s target and its
sources, resizes every view to ``config.image_size`` with the matching intrinsics
(:func:`viewseg_core.cameras.resize_intrinsics`; labels and depth by centre-aligned nearest
neighbour so no label or depth is invented), and samples rays. All randomness comes from a
generator seeded by (config.seed, epoch, index): the same example whatever the worker count
or order; call :meth:`ViewSegDataset.set_epoch` each epoch (with ``persistent_workers``
the workers keep the epoch they started with, so recreate the loader per epoch then).

Example dict (``collate`` stacks examples, adding a leading batch dim B; V = num_sources,
H x W = image_size, R = target_rays, Rs = source_rays):

====================  ================  ===========================================================
key                   shape / dtype     meaning
====================  ================  ===========================================================
source_rgb            [V, 3, H, W] f32  RGB in [0, 1]
source_K              [V, 3, 3] f32     intrinsics of the resized images (OpenCV pixels)
source_c2w            [V, 4, 4] f32     camera-to-world (OpenCV optical frame), metres
source_labels         [V, H, W] i64     class ids 0-36, ignore = LOSS_IGNORE_INDEX (-100)
source_depth          [V, H, W] f32     planar depth, metres, NaN = unknown (all NaN if none): the TRUTH
source_depth_input    [V, H, W] f32     (only when ``source_depth`` is not "none") what the depth camera
                                        measured: planar metres, NaN = no return (see below)
source_ray_index      [V, Rs] i64       flat pixel index r * W + c of each source ray
source_ray_uv         [V, Rs, 2] f32    its pixel centre (u, v) = (c, r)
source_ray_rgb        [V, Rs, 3] f32    RGB at those pixels
source_ray_labels     [V, Rs] i64       labels at those pixels (-100 = ignore)
source_ray_depth      [V, Rs] f32       depth at those pixels (NaN = unknown)
target_K              [3, 3] f32        target intrinsics (resized)
target_c2w            [4, 4] f32        target camera-to-world
target_size           [2] i64           (H, W) of the target image the rays index
target_ray_index      [R] i64           flat pixel index of each target ray (all pixels, row-major,
                                        when ``full_target``)
target_ray_uv         [R, 2] f32        its pixel centre (u, v)
target_rgb            [R, 3] f32        RGB in [0, 1] at the rays
target_labels         [R] i64           class ids at the rays (-100 = ignore)
target_depth          [R] f32           planar depth at the rays (NaN = unknown)
index                 [] i64            the example index
scene                 str               scene name (list of B strings after collate)
target_id             str               target view id
source_ids            list[str]         source view ids (list of B lists after collate)
====================  ================  ===========================================================

Source depth as a model input (RGB-D keyframes; ``DatasetConfig.source_depth``):

* ``none`` (default, the paper): no ``source_depth_input`` key at all.
* ``clean``: the true depth, unknown (NaN, 0, negative, inf) as NaN: a perfect depth camera.
* ``sensor``: the true depth through :func:`viewseg_core.data.depth_sensor.apply_sensor`
  (noise, millimetres, range, holes, edges). The measurement of a view is seeded by
  (seed, epoch, scene, view id): within an epoch a view measures the same whatever example
  it serves in; evaluation (epoch 0, one seed) always sees the same measurement.
* ``depth_completion`` ``columns``: the measurement's skipped rows (a sparse sensor's, e.g.
  ``depth_sensor.row_stride``) filled per column as viewseg_node's parameter of that name
  fills them (:mod:`viewseg_core.depth_completion`), before the dropout below.
* ``source_depth_dropout`` p: each source view's depth is dropped whole (all NaN) with
  probability p, seeded by (seed, epoch, index) (training only: the keyframe without depth).

Noisy source poses (the paper's appendix D; ``DatasetConfig.pose_noise = (deg, cm)``): each
source pose is rotated about its own camera centre by an angle ~ N(0, deg) about a uniformly
random axis, and moved by a translation with each world axis ~ N(0, cm / 100) metres. The
draw is seeded by (seed, epoch, scene, view id), like the depth measurement: one keyframe has
one (wrong) pose estimate in every example of an epoch, and evaluation always sees the same
one. Only ``source_c2w`` changes: the target pose, the images, labels and depth stay true,
so a model (and every baseline) renders the true target from miscalibrated sources.
With ``pose_noise_spread = "uniform"`` (a training recipe) each source view's two sigmas are
first scaled by one s ~ U(0, 2) from the same generator: the mean sigma is unchanged, but the
model sees near-exact, slightly wrong and badly wrong keyframes side by side, so it can learn
when to trust a view instead of learning one noise level.

None of these draws from the example's ray/source generator, so sources and rays are the same
with or without source depth or pose noise.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from viewseg_core import cameras
from viewseg_core.classes import IGNORE_LABEL, LOSS_IGNORE_INDEX, NUM_CLASSES
from viewseg_core.data.depth_sensor import DepthSensorConfig, apply_sensor
from viewseg_core.depth_completion import DEPTH_COMPLETIONS, complete
from viewseg_core.data.pairs import PairEntry
from viewseg_core.data.records import View
from viewseg_core.data.source import SceneSource, check_sources, index_by_id


@dataclass(frozen=True)
class DatasetConfig:
    """How examples are built.

    Attributes:
        num_sources: V, source views per example.
        image_size: (H, W) every view is resized to; None keeps native sizes (then all views
            must share one size for batching).
        target_rays: R, random target rays per example (ignored with ``full_target``).
        source_rays: Rs, random rays per source view (0: none).
        resample_sources: draw the V sources from the pair's candidates every epoch
            (training); False uses the pair's stored sources (evaluation).
        full_target: return every target pixel as a ray, in row-major order (evaluation).
        seed: base seed; example randomness is seeded by (seed, epoch, index).
        source_depth: "none" | "clean" | "sensor": whether and how examples carry
            ``source_depth_input`` (see the module docstring).
        depth_sensor: the sensor model of ``source_depth="sensor"``.
        source_depth_dropout: probability that a source view's input depth is all NaN.
        pose_noise: (degrees, centimetres) standard deviations of the source pose noise
            (see the module docstring); (0, 0) = true poses.
        pose_noise_spread: "fixed" (every source at ``pose_noise``) | "uniform" (each source
            view's sigmas scaled by its own s ~ U(0, 2); see the module docstring).
    """

    num_sources: int = 4
    image_size: tuple[int, int] | None = (240, 320)
    target_rays: int = 1024
    source_rays: int = 256
    resample_sources: bool = True
    full_target: bool = False
    seed: int = 0
    source_depth: str = "none"
    depth_sensor: DepthSensorConfig = field(default_factory=DepthSensorConfig)
    source_depth_dropout: float = 0.0
    depth_completion: str = "none"
    pose_noise: tuple[float, float] = (0.0, 0.0)
    pose_noise_spread: str = "fixed"

    def __post_init__(self) -> None:
        noise = tuple(float(x) for x in self.pose_noise)
        if len(noise) != 2 or not all(np.isfinite(noise)) or min(noise) < 0:
            raise ValueError(f"pose_noise must be (degrees, centimetres), both finite and >= 0, "
                             f"got {self.pose_noise!r}")
        object.__setattr__(self, "pose_noise", noise)
        if self.pose_noise_spread not in POSE_NOISE_SPREADS:
            raise ValueError(f"pose_noise_spread must be one of {' | '.join(POSE_NOISE_SPREADS)}, "
                             f"got {self.pose_noise_spread!r}")
        if self.source_depth not in SOURCE_DEPTH_MODES:
            raise ValueError(f"source_depth must be one of {' | '.join(SOURCE_DEPTH_MODES)}, "
                             f"got {self.source_depth!r}")
        if not 0.0 <= self.source_depth_dropout <= 1.0:
            raise ValueError(f"source_depth_dropout must be in [0, 1], got {self.source_depth_dropout!r}")
        if self.depth_completion not in DEPTH_COMPLETIONS:
            raise ValueError(f"depth_completion must be one of {' | '.join(DEPTH_COMPLETIONS)}, "
                             f"got {self.depth_completion!r}")


SOURCE_DEPTH_MODES = ("none", "clean", "sensor")
POSE_NOISE_SPREADS = ("fixed", "uniform")
# Tags that keep the source-depth generators apart from the example's own (and each other).
_SENSOR_TAG, _DROPOUT_TAG, _POSE_TAG = 0x5E45, 0xD409, 0x905E


def known_depth(depth: torch.Tensor) -> torch.Tensor:
    """Planar depth with every unknown value (NaN, inf, 0, negative) as NaN."""
    return torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.full_like(depth, float("nan")))


def _name_key(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def view_depth_rng(seed: int, epoch: int, scene: str, view_id: str) -> np.random.Generator:
    """The generator of the simulated depth measurement of view ``view_id`` of ``scene``."""
    return np.random.default_rng([int(seed), int(epoch), _name_key(scene), _name_key(view_id), _SENSOR_TAG])


def pose_noise_rng(seed: int, epoch: int, scene: str, view_id: str) -> np.random.Generator:
    """The generator of the pose noise of source view ``view_id`` of ``scene``."""
    return np.random.default_rng([int(seed), int(epoch), _name_key(scene), _name_key(view_id), _POSE_TAG])


def perturb_pose(c2w: np.ndarray, rotation_deg: float, translation_cm: float,
                 rng: np.random.Generator) -> np.ndarray:
    """``c2w`` [4, 4] rotated about its camera centre by N(0, rotation_deg) degrees about a
    uniform random axis and translated by N(0, translation_cm / 100) m on each world axis."""
    axis = rng.normal(size=3)
    axis /= max(float(np.linalg.norm(axis)), 1e-12)
    angle = np.deg2rad(rotation_deg) * rng.normal()
    noisy = np.array(c2w, dtype=np.float64, copy=True)
    noisy[:3, :3] = cv2.Rodrigues(axis * angle)[0] @ noisy[:3, :3]
    noisy[:3, 3] += rng.normal(scale=translation_cm / 100.0, size=3)
    return noisy.astype(np.asarray(c2w).dtype)


def measured_depth(depth: torch.Tensor, mode: str, sensor: DepthSensorConfig, scene: str, view_id: str,
                   seed: int = 0, epoch: int = 0) -> torch.Tensor:
    """What a depth camera measured of one view's true depth [H, W] (``mode`` clean or
    sensor; see the module docstring): the dataset's measurement of that view, bit for bit."""
    if mode == "sensor":
        return apply_sensor(depth, sensor, view_depth_rng(seed, epoch, scene, view_id))
    if mode == "clean":
        return known_depth(depth.clone())
    raise ValueError(f"measured_depth: mode must be clean or sensor, got {mode!r}")


def resize_view(view: View, size: tuple[int, int] | None) -> View:
    """A view resized to (H, W), with K moved to match; labels/depth by nearest neighbour."""
    if size is None or (view.height, view.width) == tuple(size):
        return view
    h1, w1 = size
    h0, w0 = view.height, view.width
    interp = cv2.INTER_AREA if (h1 < h0 and w1 < w0) else cv2.INTER_LINEAR
    rgb = cv2.resize(view.rgb, (w1, h1), interpolation=interp)
    # Centre-aligned nearest neighbour: new pixel centre c maps to old (c + 0.5) * w0 / w1 - 0.5,
    # the same map resize_intrinsics applies to K.
    rows = np.minimum(((np.arange(h1) + 0.5) * h0 / h1).astype(np.int64), h0 - 1)
    cols = np.minimum(((np.arange(w1) + 0.5) * w0 / w1).astype(np.int64), w0 - 1)
    labels = None if view.labels is None else view.labels[rows[:, None], cols[None, :]]
    depth = None if view.depth is None else view.depth[rows[:, None], cols[None, :]]
    K = cameras.resize_intrinsics(view.K, (h0, w0), (h1, w1))
    return View(rgb=rgb, K=K, c2w=view.c2w, labels=labels, depth=depth, view_id=view.view_id,
                stamp=view.stamp, meta=view.meta)


def _labels_tensor(view: View) -> torch.Tensor:
    if view.labels is None:
        return torch.full((view.height, view.width), LOSS_IGNORE_INDEX, dtype=torch.int64)
    lab = torch.from_numpy(view.labels.astype(np.int64))
    return torch.where((lab >= NUM_CLASSES) | (lab == IGNORE_LABEL), torch.tensor(LOSS_IGNORE_INDEX), lab)


def _depth_tensor(view: View) -> torch.Tensor:
    if view.depth is None:
        return torch.full((view.height, view.width), float("nan"), dtype=torch.float32)
    return torch.from_numpy(np.ascontiguousarray(view.depth, dtype=np.float32))


def _rgb_tensor(view: View) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(view.rgb)).permute(2, 0, 1).float() / 255.0


def _ray_uv(index: np.ndarray, width: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([index % width, index // width], axis=-1).astype(np.float32))


class ViewSegDataset(Dataset):
    """(V sources, target rays) examples over pairs of any :class:`SceneSource` scenes.

    Args:
        scenes: the scenes the pairs refer to (matched by ``name``).
        pairs: pair entries (see :mod:`viewseg_core.data.pairs`); entries whose scene is not
            among ``scenes`` raise ValueError.
    """

    def __init__(self, scenes: Sequence[SceneSource], pairs: Sequence[PairEntry],
                 config: DatasetConfig = DatasetConfig()):
        self.config = config
        self.scenes = check_sources(scenes)
        self._ids = {name: index_by_id(s) for name, s in self.scenes.items()}
        self.pairs = list(pairs)
        for p in self.pairs:
            if p.scene not in self.scenes:
                raise ValueError(f"pair for target {p.target!r} refers to unknown scene {p.scene!r}")
            ids = self._ids[p.scene]
            for v in [p.target, *p.sources, *(c for c, _ in p.candidates)]:
                if v not in ids:
                    raise ValueError(f"scene {p.scene!r} has no view {v!r} (named by a pair)")
            if len(p.sources) < config.num_sources and len(p.candidates) < config.num_sources:
                raise ValueError(f"pair {p.scene}/{p.target} has fewer than {config.num_sources} sources")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([int(self.config.seed), self.epoch, int(index)])

    def view_depth_rng(self, scene: str, view_id: str) -> np.random.Generator:
        """The generator of a view's simulated depth measurement (seed, epoch, scene, view)."""
        return view_depth_rng(self.config.seed, self.epoch, scene, view_id)

    def source_depth_input(self, scene: str, source_ids: Sequence[str], depth: torch.Tensor,
                           index: int) -> torch.Tensor:
        """[V, H, W] what the depth camera measured of the true source ``depth`` [V, H, W]."""
        cfg = self.config
        measured = torch.stack([measured_depth(d, cfg.source_depth, cfg.depth_sensor, scene, v, cfg.seed, self.epoch)
                                for d, v in zip(depth, source_ids)])
        if cfg.depth_completion != "none":   # a sparse sensor's skipped rows, filled as viewseg_node does
            measured = torch.from_numpy(complete(measured.numpy(), cfg.depth_completion))
        if cfg.source_depth_dropout > 0:
            rng = np.random.default_rng([int(cfg.seed), self.epoch, int(index), _DROPOUT_TAG])
            drop = torch.from_numpy(rng.random(len(source_ids)) < cfg.source_depth_dropout)
            measured[drop] = float("nan")
        return measured

    def source_pose(self, scene: str, view: View) -> np.ndarray:
        """The c2w a source view is given: the true pose, or it with ``pose_noise``."""
        deg, cm = self.config.pose_noise
        if deg == 0 and cm == 0:
            return view.c2w
        rng = pose_noise_rng(self.config.seed, self.epoch, scene, view.view_id)
        if self.config.pose_noise_spread == "uniform":
            scale = rng.uniform(0.0, 2.0)
            deg, cm = deg * scale, cm * scale
        return perturb_pose(view.c2w, deg, cm, rng)

    def _choose_sources(self, pair: PairEntry, rng: np.random.Generator) -> list[str]:
        V = self.config.num_sources
        if self.config.resample_sources and len(pair.candidates) >= V:
            pool = [c for c, _ in pair.candidates]
            return [pool[i] for i in sorted(rng.choice(len(pool), size=V, replace=False).tolist())]
        if len(pair.sources) >= V:
            return list(pair.sources[:V])
        return [c for c, _ in pair.candidates[:V]]

    def _load(self, scene: str, view_id: str) -> View:
        src = self.scenes[scene]
        return resize_view(src.load_view(self._ids[scene][view_id]), self.config.image_size)

    def __getitem__(self, index: int) -> dict:
        cfg = self.config
        pair = self.pairs[index]
        rng = self.rng(index)
        source_ids = self._choose_sources(pair, rng)
        target = self._load(pair.scene, pair.target)
        sources = [self._load(pair.scene, v) for v in source_ids]
        H, W = target.height, target.width
        for s in sources:
            if (s.height, s.width) != (H, W):
                raise ValueError(f"scene {pair.scene!r}: view {s.view_id!r} is {s.width}x{s.height}, target "
                                 f"{pair.target!r} is {W}x{H}; set DatasetConfig.image_size to batch them")

        t_rgb = _rgb_tensor(target).reshape(3, -1).T
        t_lab = _labels_tensor(target).reshape(-1)
        t_dep = _depth_tensor(target).reshape(-1)
        if cfg.full_target:
            t_idx = np.arange(H * W, dtype=np.int64)
        else:
            t_idx = rng.choice(H * W, size=cfg.target_rays, replace=cfg.target_rays > H * W).astype(np.int64)
        ti = torch.from_numpy(t_idx)

        s_rgb = torch.stack([_rgb_tensor(s) for s in sources])
        s_lab = torch.stack([_labels_tensor(s) for s in sources])
        s_dep = torch.stack([_depth_tensor(s) for s in sources])
        Rs = cfg.source_rays
        s_idx = np.stack([rng.choice(H * W, size=Rs, replace=Rs > H * W) for _ in sources]).astype(np.int64) \
            if Rs > 0 else np.zeros((len(sources), 0), dtype=np.int64)
        si = torch.from_numpy(s_idx)
        flat_rgb = s_rgb.reshape(len(sources), 3, -1)
        example = {
            "source_rgb": s_rgb,
            "source_K": torch.from_numpy(np.stack([s.K for s in sources])).float(),
            "source_c2w": torch.from_numpy(np.stack([self.source_pose(pair.scene, s) for s in sources])).float(),
            "source_labels": s_lab,
            "source_depth": s_dep,
        }
        if cfg.source_depth != "none":
            example["source_depth_input"] = self.source_depth_input(pair.scene, source_ids, s_dep, index)
        return {
            **example,
            "source_ray_index": si,
            "source_ray_uv": _ray_uv(s_idx, W),
            "source_ray_rgb": torch.gather(flat_rgb, 2, si[:, None, :].expand(-1, 3, -1)).permute(0, 2, 1),
            "source_ray_labels": torch.gather(s_lab.reshape(len(sources), -1), 1, si),
            "source_ray_depth": torch.gather(s_dep.reshape(len(sources), -1), 1, si),
            "target_K": torch.from_numpy(target.K).float(),
            "target_c2w": torch.from_numpy(target.c2w).float(),
            "target_size": torch.tensor([H, W], dtype=torch.int64),
            "target_ray_index": ti,
            "target_ray_uv": _ray_uv(t_idx, W),
            "target_rgb": t_rgb[ti],
            "target_labels": t_lab[ti],
            "target_depth": t_dep[ti],
            "index": torch.tensor(index, dtype=torch.int64),
            "scene": pair.scene,
            "target_id": pair.target,
            "source_ids": source_ids,
        }


def collate(batch: list[dict]) -> dict:
    """Stack example dicts: tensors gain a leading batch dim, strings/lists become lists."""
    if not batch:
        raise ValueError("collate: empty batch")
    out = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        if isinstance(values[0], torch.Tensor):
            try:
                out[key] = torch.stack(values)
            except RuntimeError as e:
                raise ValueError(f"collate: {key!r} has different shapes across the batch "
                                 f"({[tuple(v.shape) for v in values]})") from e
        else:
            out[key] = values
    return out


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy/random from torch's per-worker seed.

    Example randomness does not depend on it (it is seeded per index); this only keeps any
    other library-level randomness in workers distinct and reproducible.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


__all__ = ["DatasetConfig", "ViewSegDataset", "collate", "seed_worker", "resize_view", "known_depth",
           "measured_depth", "view_depth_rng", "SOURCE_DEPTH_MODES", "perturb_pose", "pose_noise_rng", "POSE_NOISE_SPREADS"]
