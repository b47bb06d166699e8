"""From a data config to training/evaluation examples: scenes of a split, their mined
source-target pairs (kept in the run's or evaluation's folder, never written into the data
root: :func:`find_pairs`), and the model's input batch.

Supported ``kind`` values:

* ``scene_folders``: a folder of viewseg scene folders (``viewseg synth`` output, bag
  imports, converted datasets); ``splits.json`` (or ``split_file``) picks the scenes of a
  split, otherwise every scene is used for every split (a one-scene bag import is used for
  everything).
* ``hypersim``: the Hypersim release under ``root``; ``split_csv`` is the official split file.
* ``replica``: Habitat-rendered Replica scene folders under ``root``; a split file is required
  (``<root>/splits.json`` or ``split_file``; ``split_file: all`` = every scene in every split),
  and ``replica_hfov_deg`` gives the field of view of scenes without ``intrinsics.json``
  (:mod:`viewseg_core.data.replica`).

A split file has the shape ``viewseg synth`` writes: ``{"splits": {"train": [scene folder
names under root], "val": [...], "test": [...]}}``.

Source depth (RGB-D keyframes, issue 15): ``source_depth: none | clean | sensor`` decides
whether batches carry ``source_depth_input`` (what a depth camera measured of each source
view: none = the paper's RGB-only input, clean = the true depth, sensor = the true depth
through the ``depth_sensor`` model); ``source_depth_dropout`` drops a source view's whole
depth with that probability in training (never in evaluation or panels);
``depth_completion: columns`` fills a sparse sensor's skipped rows first, as the node can. The true
``source_depth`` is always there as well (baselines, metrics).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.config_io import check_bounds
from viewseg_core.data.dataset import POSE_NOISE_SPREADS, SOURCE_DEPTH_MODES, DatasetConfig, ViewSegDataset, collate
from viewseg_core.data.depth_sensor import DepthSensorConfig
from viewseg_core.depth_completion import DEPTH_COMPLETIONS
from viewseg_core.data.pairs import PairConfig, mine_all, read_pairs, write_pairs
from viewseg_core.data.scene_folder import frame_meta, meta_match
from viewseg_core.data.source import SceneSource
from viewseg_core.model.viewseg import ModelConfig
from viewseg_core.rays import rays_at_pixels

__all__ = ["DataConfig", "load_scenes", "build_dataset", "collate", "to_model_batch"]

KINDS = ("scene_folders", "hypersim", "replica")


@dataclass
class DataConfig:
    root: str = "data/synthetic"
    kind: str = "scene_folders"            # scene_folders | hypersim | replica
    split_csv: str = ""                    # hypersim: metadata_images_split_scene_v1.csv
    train_split: str = "train"
    val_split: str = "val"                 # training-time panels
    eval_split: str = "test"
    image_size: tuple[int, int] = (240, 320)   # (H, W)
    num_sources: int = 4
    target_rays: int = 1024
    source_rays: int = 256
    num_workers: int = 0
    pairs: dict = field(default_factory=dict)  # PairConfig overrides, e.g. {min_rotation_deg: 20}
    source_depth: str = "none"             # none (the paper) | clean | sensor: source depth as a model input
    depth_sensor: DepthSensorConfig = field(default_factory=DepthSensorConfig)  # for source_depth: sensor
    source_depth_dropout: float = 0.0      # training: probability a source view's input depth is all NaN
    depth_completion: str = "none"         # none | columns: fill a sparse sensor's skipped rows (depth_completion.py)
    pose_noise: tuple[float, float] = (0.0, 0.0)  # source pose noise sigma (degrees, cm); paper appendix D
    pose_noise_spread: str = "fixed"       # fixed | uniform: each source view's sigma scaled by U(0, 2)
    split_file: str = ""                   # scene_folders/replica: splits file instead of <root>/splits.json
    #                                        ("all": every scene in every split)
    replica_hfov_deg: float | None = None  # replica: hfov (degrees) of scenes without intrinsics.json (None: refuse)
    # Training: each pair whose target frame's meta has KEY=VALUE comes N times an epoch, e.g.
    # {"trajectory=robot": 2} (scene folders only: their cameras.json frame meta).
    repeat_targets: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"config key data.kind: unknown kind {self.kind!r} ({' | '.join(KINDS)})")
        if self.source_depth not in SOURCE_DEPTH_MODES:
            raise ValueError(f"config key data.source_depth: unknown mode {self.source_depth!r} "
                             f"({' | '.join(SOURCE_DEPTH_MODES)})")
        if not 0.0 <= self.source_depth_dropout <= 1.0:
            raise ValueError(f"config key data.source_depth_dropout must be in [0, 1], "
                             f"got {self.source_depth_dropout!r}")
        if self.depth_completion not in DEPTH_COMPLETIONS:
            raise ValueError(f"config key data.depth_completion: unknown mode {self.depth_completion!r} "
                             f"({' | '.join(DEPTH_COMPLETIONS)})")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"config key data.image_size must be [H, W] with both >= 1, got {self.image_size!r}")
        if len(self.pose_noise) != 2 or min(float(x) for x in self.pose_noise) < 0:
            raise ValueError(f"config key data.pose_noise must be [degrees, centimetres], both >= 0, "
                             f"got {self.pose_noise!r}")
        self.pose_noise = tuple(float(x) for x in self.pose_noise)
        if self.pose_noise_spread not in POSE_NOISE_SPREADS:
            raise ValueError(f"config key data.pose_noise_spread: unknown spread {self.pose_noise_spread!r} "
                             f"({' | '.join(POSE_NOISE_SPREADS)})")
        check_bounds(self, "data", at_least={"num_sources": 1, "target_rays": 1, "source_rays": 0, "num_workers": 0})
        for rule, times in dict(self.repeat_targets).items():
            try:
                meta_match(rule)
                valid = isinstance(times, int) and not isinstance(times, bool) and times >= 1
            except ValueError:
                valid = False
            if not valid:
                raise ValueError(f"config key data.repeat_targets: each entry must be 'KEY=VALUE': N with N an "
                                 f"integer >= 1, got {rule!r}: {times!r}")


SPLIT_SHAPE = '{"splits": {"train": [scene folder names], "val": [...], "test": [...]}}'
ALL_SCENES = "all"                         # data.split_file: every scene in every split


def _split_names(root: Path, split: str, split_file: str = "") -> list[str] | None:
    """Scene folder names of ``split`` from ``split_file`` (or ``<root>/splits.json``); None when
    there is no split file (or ``split_file`` is ``all``): every scene."""
    if split_file == ALL_SCENES:
        return None
    path = Path(split_file) if split_file else root / "splits.json"
    if not path.is_file():
        if split_file:
            raise ValueError(f"data.split_file {split_file}: no such file (expected {SPLIT_SHAPE})")
        return None
    try:
        splits = json.loads(path.read_text())["splits"]
        if not isinstance(splits, dict):
            raise ValueError("'splits' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable splits file ({exc}; expected {SPLIT_SHAPE})") from exc
    if split not in splits:
        raise ValueError(f"{path} has no split {split!r} (it has {sorted(splits)})")
    names = splits[split]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: split {split!r} must be a list of scene folder names")
    for n in names:
        if not (root / n).is_dir():
            raise ValueError(f"{path}: split {split!r} lists {n!r}, which is not a folder under {root}")
    return list(names)


def load_scenes(cfg: DataConfig, split: str) -> list[SceneSource]:
    """The scenes of ``split`` as SceneSources."""
    root = Path(cfg.root)
    if not root.exists():
        raise FileNotFoundError(f"data root {root} does not exist (for synthetic data run "
                                f"`viewseg synth --out {root} ...` first)")
    if cfg.kind == "scene_folders":
        from viewseg_core.data.scene_folder import SceneFolder, find_scene_folders
        names = _split_names(root, split, cfg.split_file)
        folders = [root / n for n in names] if names is not None else find_scene_folders(root)
        scenes: list[SceneSource] = [SceneFolder(f) for f in folders]
    elif cfg.kind == "replica":
        from viewseg_core.data.replica import ReplicaScene
        if not cfg.split_file and not (root / "splits.json").is_file():
            raise ValueError(f"{root / 'splits.json'}: missing; data.kind=replica does not invent a split "
                             f"(every scene in every split would test on training scenes). Write it as "
                             f"{SPLIT_SHAPE} (folder names under {root}), or set data.split_file to such a "
                             f"file, or data.split_file={ALL_SCENES} to use every scene in every split")
        names = _split_names(root, split, cfg.split_file)
        folders = [root / n for n in names] if names is not None else sorted(p for p in root.iterdir() if (p / "rgb").is_dir())
        scenes = [ReplicaScene(f, hfov_deg=cfg.replica_hfov_deg) for f in folders]
    elif cfg.kind == "hypersim":
        from viewseg_core.data.hypersim import HypersimScene, split_scenes
        if cfg.split_file:
            raise ValueError("data.split_file is for kind scene_folders or replica; "
                             "hypersim's split is data.split_csv")
        if not cfg.split_csv:
            raise ValueError("data.kind=hypersim needs data.split_csv (the official split CSV)")
        scenes = [HypersimScene(root, name, frames=frames) for name, frames in split_scenes(root, cfg.split_csv, split).items()]
    else:
        raise ValueError(f"unknown data.kind {cfg.kind!r} ({' | '.join(KINDS)})")
    if not scenes:
        raise ValueError(f"no scenes for split {split!r} under {root}")
    seen: dict[str, SceneSource] = {}
    for s in scenes:
        if s.name in seen:
            raise ValueError(f"duplicate scene name {s.name!r} in split {split!r} of {root} (folders "
                             f"{_where(seen[s.name])} and {_where(s)}): scene names must be unique. Two "
                             f"`viewseg synth` datasets of one seed, or written before names carried the seed "
                             f"(synth_<i>, now synth_s<seed>_<i>), repeat them: regenerate one of them")
        seen[s.name] = s
    return scenes


def _where(scene: SceneSource) -> str:
    return str(getattr(scene, "root", None) or getattr(scene, "dir", None) or scene.name)


PAIRS_ORIGINS = ("pairs_dir", "data_root", "mined")


def find_pairs(cfg: DataConfig, split: str, scenes: list[SceneSource], pairs_dir: str | Path | None = None):
    """Mined pairs of a split and where they came from: ``(pairs, path or None, origin)``.

    ``pairs_<split>.json`` is used when its pair config matches, looked for first in
    ``pairs_dir`` (a run's or an evaluation's output folder), then in the data root (read
    only: e.g. the pairs handed to a machine with the data); otherwise the pairs are mined
    and written to ``pairs_dir`` (not written at all when it is None). Nothing is ever
    written into the data root: a dataset is read by many runs with different pair rules.
    ``origin`` is one of :data:`PAIRS_ORIGINS`; a file found in the data root is also copied
    into ``pairs_dir``, so that the results sit beside the pairs they were scored on.
    """
    if pairs_dir is not None and Path(pairs_dir).resolve() == Path(cfg.root).resolve():
        pairs_dir = None  # an output folder that is the data root: still never written
    pair_cfg = PairConfig(**{**cfg.pairs, "num_sources": cfg.num_sources})
    wanted = json.loads(json.dumps(_pair_cfg_json(pair_cfg)))
    name = f"pairs_{split}.json"
    places = [("pairs_dir", Path(pairs_dir))] if pairs_dir is not None else []
    for origin, folder in [*places, ("data_root", Path(cfg.root))]:
        path = folder / name
        if not path.is_file():
            continue
        try:
            matches = json.loads(path.read_text()).get("config") == wanted
        except (OSError, ValueError, AttributeError):
            matches = False  # unreadable: not these pairs (a pairs_dir copy is rewritten below)
        if matches:
            pairs = read_pairs(path)
            if origin == "data_root" and pairs_dir is not None:
                write_pairs(Path(pairs_dir) / name, pairs, pair_cfg)
            return pairs, path, origin
    pairs = mine_all(scenes, pair_cfg, progress=False, workers=max(1, cfg.num_workers))
    if not pairs:
        raise ValueError(f"pair mining found no target with {cfg.num_sources} sources in split {split!r} "
                         f"of {cfg.root}; relax data.pairs (e.g. min_rotation_deg) or add views")
    if pairs_dir is None:
        return pairs, None, "mined"
    path = Path(pairs_dir) / name
    write_pairs(path, pairs, pair_cfg)
    return pairs, path, "mined"


def load_pairs(cfg: DataConfig, split: str, scenes: list[SceneSource], pairs_dir: str | Path | None = None):
    """Mined pairs of a split (:func:`find_pairs` without where they came from)."""
    return find_pairs(cfg, split, scenes, pairs_dir)[0]


def _pair_cfg_json(pair_cfg: PairConfig) -> dict:
    from viewseg_core.data.pairs import _config_json
    return _config_json(pair_cfg)


def build_dataset(cfg: DataConfig, split: str, seed: int = 0, full_target: bool = False,
                  pairs_dir: str | Path | None = None) -> ViewSegDataset:
    """The examples of ``split``; pairs from :func:`find_pairs` (``pairs_dir``: where a run or an
    evaluation keeps its pairs file). The dataset's ``pairs_file`` (path or None) and
    ``pairs_origin`` say which pairs it holds."""
    scenes = load_scenes(cfg, split)
    pairs, pairs_file, pairs_origin = find_pairs(cfg, split, scenes, pairs_dir)
    ds_cfg = DatasetConfig(num_sources=cfg.num_sources, image_size=tuple(cfg.image_size),
                           target_rays=cfg.target_rays, source_rays=0 if full_target else cfg.source_rays,
                           resample_sources=not full_target, full_target=full_target, seed=seed,
                           source_depth=cfg.source_depth, depth_sensor=cfg.depth_sensor,
                           source_depth_dropout=0.0 if full_target else cfg.source_depth_dropout,
                           depth_completion=cfg.depth_completion,
                           pose_noise=tuple(cfg.pose_noise), pose_noise_spread=cfg.pose_noise_spread)
    dataset = ViewSegDataset(scenes, pairs, ds_cfg)
    dataset.pairs_file = None if pairs_file is None else str(pairs_file)
    dataset.pairs_origin = pairs_origin
    return dataset


def repeat_targets(dataset: ViewSegDataset, rules: dict) -> ViewSegDataset:
    """``dataset`` with each pair whose target frame's meta has KEY=VALUE (a key of ``rules``)
    repeated ``rules[KEY=VALUE]`` times (the largest where several match); the order is kept,
    the repeats follow their pair. Raises ValueError for a scene without frame meta (only scene
    folders keep it)."""
    if not rules:
        return dataset
    wanted = [(*meta_match(rule), int(times)) for rule, times in rules.items()]
    meta_of: dict[str, dict[str, dict]] = {}
    pairs = []
    for pair in dataset.pairs:
        if pair.scene not in meta_of:
            try:
                meta_of[pair.scene] = frame_meta(dataset.scenes[pair.scene])
            except ValueError as error:
                raise ValueError(f"data.repeat_targets: {error}") from None
        meta = meta_of[pair.scene][pair.target]
        pairs += [pair] * max([times for key, value, times in wanted if str(meta.get(key)) == value], default=1)
    repeated = ViewSegDataset(list(dataset.scenes.values()), pairs, dataset.config)
    repeated.pairs_file, repeated.pairs_origin = dataset.pairs_file, dataset.pairs_origin
    return repeated


# Views whose labels class balancing counts at most (spread evenly over the scenes' views): a
# frequency estimate, seconds on any dataset.
CLASS_BALANCE_VIEWS = 4096


def label_counts(scenes: list[SceneSource], num_classes: int, max_views: int = CLASS_BALANCE_VIEWS) -> np.ndarray:
    """[num_classes] int64 pixel counts of each class in the scenes' label images (labels
    outside 0..num_classes-1 are not counted), over at most ``max_views`` views taken evenly
    from all of them (every view when there are fewer)."""
    views = [(scene, i) for scene in scenes for i in range(len(scene))]
    if not views:
        raise ValueError("label_counts: the scenes hold no views")
    step = max(1, -(-len(views) // max_views))
    counts = np.zeros(num_classes, dtype=np.int64)
    for scene, i in tqdm(views[::step], desc="class balance: counting labels", unit="view", leave=False):
        labels = scene.load_view(i).labels
        if labels is None:
            continue
        flat = np.asarray(labels).reshape(-1).astype(np.int64)
        flat = flat[(flat >= 0) & (flat < num_classes)]
        counts += np.bincount(flat, minlength=num_classes)
    return counts


def to_model_batch(batch: dict[str, Any], device: torch.device, model_cfg: ModelConfig):
    """Collated dataset batch -> (``ViewSeg.forward`` inputs, loss targets) on ``device``."""
    def dev(x):
        return x.to(device, non_blocking=True)

    near, far = model_cfg.near, model_cfg.far
    target_rays = rays_at_pixels(dev(batch["target_K"]), dev(batch["target_c2w"]), dev(batch["target_ray_uv"]),
                                 near=near, far=far)
    model_batch = {"source_rgb": dev(batch["source_rgb"]), "source_K": dev(batch["source_K"]),
                   "source_c2w": dev(batch["source_c2w"]), "target_rays": target_rays}
    if "source_depth_input" in batch:  # RGB-D keyframes: what the depth camera measured (NaN = none)
        model_batch["source_depth_input"] = dev(batch["source_depth_input"])
        # A depth-guided model splats the source depth into the target camera to place its samples.
        model_batch.update(target_K=dev(batch["target_K"]), target_c2w=dev(batch["target_c2w"]),
                           target_size=batch["target_size"])
    targets = {"target": {"labels": dev(batch["target_labels"]), "rgb": dev(batch["target_rgb"]),
                          "depth": dev(batch["target_depth"])}}
    if batch["source_ray_uv"].shape[-2] > 0:
        B, V, Rs = batch["source_ray_uv"].shape[:3]
        src_rays = rays_at_pixels(dev(batch["source_K"]), dev(batch["source_c2w"]), dev(batch["source_ray_uv"]),
                                  near=near, far=far)
        model_batch["source_rays"] = src_rays.reshape(B, V * Rs)
        targets["source"] = {"labels": dev(batch["source_ray_labels"]).reshape(B, V * Rs),
                             "rgb": dev(batch["source_ray_rgb"]).reshape(B, V * Rs, 3),
                             "depth": dev(batch["source_ray_depth"]).reshape(B, V * Rs)}
    return model_batch, targets
