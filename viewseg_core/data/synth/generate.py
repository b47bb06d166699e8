"""Synthetic datasets: scenes + trajectories + renders, written as viewseg scene folders.

``write_dataset(out, num_scenes, config, seed)`` writes ``out/<scene>/`` folders (see
:mod:`viewseg_core.data.scene_folder`), each also holding ``scene.json`` (the primitives, so
any other camera can be rendered later with :func:`load_scene` + ``render``), and
``out/splits.json``. Scene ``i`` of a dataset depends only on (seed, i) and the config, so a
dataset is reproducible scene by scene, in any order and with any number of workers.

Scene ``i`` of a dataset drawn with ``seed`` is named ``synth_s<seed>_<i:05d>``
(:func:`scene_name`), so datasets of different seeds can be loaded and evaluated together.
A name only labels a scene: no random draw of the generator reads it, and datasets written
before names carried the seed (``synth_<i:05d>``) hold the same rooms, views, labels and depth.
Later stages do key random streams by scene name (pair mining's source choice, the simulated
depth sensor, pose noise), so ``legacy_names=True`` (``viewseg synth --legacy-names``) writes
the old names to reproduce such a dataset, its pairs files and its scores exactly.

Splits: by default 10% of the scenes (at least 1 from 3 scenes on, none below) go to ``val``
and as many to ``test``, the rest to ``train``, chosen by a permutation drawn from the seed.
``val_scenes`` / ``test_scenes`` (``viewseg synth --val-scenes N --test-scenes N``) set a count
exactly; a count left unset keeps its default, capped at the scenes the other count leaves.
``--scenes 3 --test-scenes 3`` is an evaluation-only set (train 0, val 0, test 3).
"""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from viewseg_core import cameras
from viewseg_core.atomic_io import ensure_dir
from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import SceneFolder, SceneFolderWriter, read_json, write_json
from viewseg_core.data.synth.layout import generate_scene
from viewseg_core.data.synth.render import render
from viewseg_core.data.synth.scene import Scene
from viewseg_core.data.synth.trajectory import TrajectoryConfig, trajectory

GENERATOR_VERSION = 1
SCENE_FILE = "scene.json"
SPLITS_FILE = "splits.json"


@dataclass(frozen=True)
class SynthConfig:
    """What one synthetic scene's views look like.

    Attributes:
        views: views per scene (the first ``robot_fraction`` of them from the robot walk).
        height, width: image size in pixels.
        hfov: range of the horizontal field of view in degrees (one camera per scene).
        room_type: force one room type (None: drawn per scene).
        frame_interval: seconds between consecutive frames (the ``stamp`` of each view).
    """

    views: int = 40
    height: int = 240
    width: int = 320
    hfov: tuple[float, float] = (60.0, 75.0)
    robot_fraction: float = 0.5
    room_type: str | None = None
    frame_interval: float = 0.5
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)

    def __post_init__(self) -> None:
        # Zero views or a zero-pixel image would "succeed" and write empty scene folders.
        for name in ("views", "height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"synth {name} must be an integer >= 1, got {value!r}")
        lo, hi = self.hfov
        if not 0 < lo <= hi < 180:
            raise ValueError(f"synth hfov must be a range within (0, 180) degrees, got {self.hfov!r}")
        if not 0 <= self.robot_fraction <= 1:
            raise ValueError(f"synth robot_fraction must be in [0, 1], got {self.robot_fraction!r}")
        if not self.frame_interval > 0:
            raise ValueError(f"synth frame_interval must be > 0 s, got {self.frame_interval!r}")


@dataclass(frozen=True)
class SynthCamera:
    view_id: str
    K: np.ndarray
    c2w: np.ndarray
    stamp: float
    kind: str


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` in a dataset drawn with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def scene_name(seed: int, index: int) -> str:
    """The folder name of scene ``index`` of a dataset drawn with ``seed``: ``synth_s<seed>_<index:05d>``."""
    return f"synth_s{int(seed)}_{int(index):05d}"


def legacy_scene_name(index: int) -> str:
    """The name scene ``index`` had before names carried the seed: ``synth_<index:05d>``."""
    return f"synth_{int(index):05d}"


def scene_cameras(scene: Scene, config: SynthConfig) -> list[SynthCamera]:
    """The camera poses of a scene's views (robot walk, then human walk)."""
    rng = np.random.default_rng([scene.seed, 0xCA3E])
    hfov = rng.uniform(*config.hfov)
    K = cameras.K_from_hfov(hfov, config.width, config.height)
    n_robot = int(round(config.views * config.robot_fraction))
    poses = [("robot", p) for p in trajectory(scene, n_robot, "robot", rng, config.trajectory)]
    poses += [("human", p) for p in trajectory(scene, config.views - n_robot, "human", rng, config.trajectory)]
    return [SynthCamera(f"{i:06d}", K, c2w, i * config.frame_interval, kind) for i, (kind, c2w) in enumerate(poses)]


def render_views(scene: Scene, cams: list[SynthCamera], config: SynthConfig) -> Iterator[View]:
    for cam in cams:
        r = render(scene, cam.K, cam.c2w, config.height, config.width)
        yield View(rgb=r.rgb, K=cam.K, c2w=cam.c2w, labels=r.labels, depth=r.depth, view_id=cam.view_id,
                   stamp=cam.stamp, meta={"trajectory": cam.kind})


def make_scene(seed: int, config: SynthConfig, name: str | None = None) -> tuple[Scene, list[SynthCamera]]:
    """A scene and its cameras from one seed (retrying the layout if it leaves no room to walk)."""
    last_error: Exception | None = None
    for attempt in range(4):
        s = seed if attempt == 0 else scene_seed(seed, 1000 + attempt)
        scene = generate_scene(s, config.room_type, name=name)
        try:
            return scene, scene_cameras(scene, config)
        except ValueError as e:       # no free floor space: draw another layout
            last_error = e
    raise ValueError(f"could not place cameras in scene seed {seed}: {last_error}")


def write_scene(root: str | os.PathLike, seed: int, config: SynthConfig, name: str | None = None,
                on_view: Callable[[], None] | None = None) -> SceneFolder:
    """Generate, render and write one scene folder (plus its ``scene.json``)."""
    root = Path(root)
    name = name or root.name
    scene, cams = make_scene(seed, config, name=name)
    meta = {"source": "viewseg.synth", "generator_version": GENERATOR_VERSION, "seed": int(seed),
            "scene_file": SCENE_FILE, "room_type": scene.meta.get("room_type"),
            "config": _config_dict(config)}
    writer = SceneFolderWriter(root, scene=name, meta=meta)
    write_json(root / SCENE_FILE, scene.to_dict(), indent=None)
    for view in render_views(scene, cams, config):
        writer.add(view)
        if on_view is not None:
            on_view()
    return writer.close()


def load_scene(folder: str | os.PathLike) -> Scene:
    """The primitives of a written synthetic scene folder (to render new cameras)."""
    path = Path(folder) / SCENE_FILE
    return Scene.from_dict(read_json(path), where=str(path))


def _count(value, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


def split_counts(num_scenes: int, val_scenes: int | None = None, test_scenes: int | None = None,
                 val_fraction: float = 0.1, test_fraction: float = 0.1) -> tuple[int, int]:
    """(val, test) scene counts of a dataset of ``num_scenes`` scenes.

    An explicit count is taken as is; an unset one is ``max(1, round(n * fraction))`` from 3
    scenes on (0 below), capped at the scenes the explicit count leaves. Raises ValueError
    when the counts do not fit in ``num_scenes``.
    """
    n = int(num_scenes)
    val, test = _count(val_scenes, "val scenes"), _count(test_scenes, "test scenes")
    for what, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"{what} must be in [0, 1], got {frac!r}")
    if (val or 0) + (test or 0) > n:
        raise ValueError(f"{val or 0} val + {test or 0} test scenes do not fit in {n} scene(s) "
                         f"(--val-scenes + --test-scenes must be <= --scenes)")
    default_val = max(1, int(round(n * val_fraction))) if n >= 3 else 0
    default_test = max(1, int(round(n * test_fraction))) if n >= 3 else 0
    if val is None and test is None:
        if default_val + default_test > n:
            raise ValueError(f"val_fraction {val_fraction} + test_fraction {test_fraction} leave no room "
                             f"in {n} scene(s)")
        return default_val, default_test
    if val is None:
        return min(default_val, n - test), test
    if test is None:
        return val, min(default_test, n - val)
    return val, test


def split_names(names: list[str], seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1,
                val_scenes: int | None = None, test_scenes: int | None = None) -> dict[str, list[str]]:
    """Deterministic train/val/test split of scene names (counts: :func:`split_counts`).

    Which scenes go where depends on the seed and the number of names only (a permutation of
    their positions), never on the names themselves.
    """
    rng = np.random.default_rng([int(seed), 0x5B1])
    order = [names[i] for i in rng.permutation(len(names))]
    n_val, n_test = split_counts(len(names), val_scenes, test_scenes, val_fraction, test_fraction)
    return {"train": sorted(order[n_val + n_test:]), "val": sorted(order[:n_val]),
            "test": sorted(order[n_val:n_val + n_test])}


def _config_dict(config: SynthConfig) -> dict:
    d = asdict(config)
    return json.loads(json.dumps(d))


def _worker(args) -> str:
    out, index, name, seed, config = args
    import torch
    torch.set_num_threads(1)        # one process per core; torch only builds the rays here
    write_scene(Path(out) / name, scene_seed(seed, index), config, name=name)
    return name


def write_dataset(out: str | os.PathLike, num_scenes: int, config: SynthConfig, seed: int = 0,
                  workers: int = 1, progress: bool = True, val_fraction: float = 0.1,
                  test_fraction: float = 0.1, val_scenes: int | None = None,
                  test_scenes: int | None = None, legacy_names: bool = False) -> dict[str, list[str]]:
    """Write ``num_scenes`` scene folders and ``splits.json`` under ``out``; returns the splits.

    Args:
        workers: processes (each renders whole scenes); 1 renders in this process.
        progress: show a tqdm bar counting views.
        val_scenes, test_scenes: exact split sizes (None: the default, see :func:`split_counts`);
            checked before anything is written.
        legacy_names: name scenes ``synth_<i>`` (no seed), as datasets written before were.
    """
    from tqdm import tqdm

    if isinstance(num_scenes, bool) or not isinstance(num_scenes, numbers.Integral) or num_scenes < 1:
        raise ValueError(f"number of scenes must be an integer >= 1, got {num_scenes!r}")
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    names = [legacy_scene_name(i) if legacy_names else scene_name(seed, i) for i in range(num_scenes)]
    split_counts(num_scenes, val_scenes, test_scenes, val_fraction, test_fraction)   # fail before rendering
    out = ensure_dir(out)
    bar = tqdm(total=num_scenes * config.views, unit="view", desc="synth", disable=not progress,
               dynamic_ncols=True)
    try:
        if workers <= 1:
            for i, name in enumerate(names):
                bar.set_postfix_str(name)
                write_scene(out / name, scene_seed(seed, i), config, name=name, on_view=lambda: bar.update(1))
        else:
            import multiprocessing as mp
            ctx = mp.get_context("spawn" if os.name != "posix" else "fork")
            with ctx.Pool(workers) as pool:
                jobs = [(str(out), i, names[i], seed, config) for i in range(num_scenes)]
                for name in pool.imap_unordered(_worker, jobs):
                    bar.set_postfix_str(name)
                    bar.update(config.views)
    finally:
        bar.close()
    splits = split_names(names, seed, val_fraction, test_fraction, val_scenes, test_scenes)
    write_json(out / SPLITS_FILE, {"format_version": 1, "source": "viewseg.synth", "seed": int(seed),
                                   "scenes": num_scenes, "views_per_scene": config.views,
                                   "size": [config.width, config.height], "splits": splits})
    return splits


def read_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    """``splits.json`` -> {"train": [...], "val": [...], "test": [...]}."""
    path = Path(path)
    if path.is_dir():
        path = path / SPLITS_FILE
    doc = read_json(path)
    splits = doc.get("splits")
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise ValueError(f"{path}: missing or malformed 'splits' (expected lists of scene names)")
    return {k: [str(n) for n in v] for k, v in splits.items()}


__all__ = ["SynthConfig", "SynthCamera", "scene_seed", "scene_name", "legacy_scene_name", "split_counts",
           "scene_cameras", "render_views", "make_scene",
           "write_scene", "load_scene", "write_dataset", "read_splits", "split_names", "GENERATOR_VERSION"]
