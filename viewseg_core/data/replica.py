"""Reader for Replica scenes rendered with Habitat (as the ViewSeg paper used them), plus the
mapping of Replica's semantic classes to the 37 viewseg classes and to NYU-13.

Folder layout read (one folder per rendered scene, e.g. ``ROOT/room_0``)::

    rgb/<id>.png|jpg           RGB
    semantic/<id>.npy|png      Replica class ids (the ``classes`` ids of info_semantic.json);
                               with ``semantic="instance"``, Habitat instance ids mapped to
                               classes through info_semantic.json's ``id_to_label``/``objects``
    depth/<id>.npy|png         Habitat depth sensor: planar z in metres (.npy float), or
                               uint16 in 1/depth_scale metres (.png, 0 = unknown)
    poses.txt | poses.npy | poses.json   Habitat camera-to-world per frame (camera x right,
                               y up, -z forward): 16 row-major numbers per line / [N, 4, 4] /
                               {"frames": [{"id", "c2w"} or {"id", "position", "rotation" wxyz}]}
    intrinsics.json            {"hfov": degrees} (Habitat's pinhole: horizontal field of view,
                               square pixels, principal point at the image centre) or
                               {"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]} (pixels), optional
                               "width"/"height". Required: without it the reader refuses the
                               scene unless it is given the field of view (``hfov_deg``, from
                               ``data.replica_hfov_deg``); it never assumes one.
    info_semantic.json         optional: its class table overrides the built-in ids (by name)

Splits (``training.data.load_scenes`` with ``data.kind: replica``): ``ROOT/splits.json`` names
the scene folders of each split, in the shape ``viewseg synth`` writes::

    {"splits": {"train": ["room_0", "office_0"], "val": ["room_1"], "test": ["office_3"]}}

or ``data.split_file`` names such a file elsewhere. Without either, loading refuses: no split
is invented (every scene in every split would score a model on its own training scenes).
``data.split_file: all`` is the explicit opt-in to every scene in every split, for evaluating
a model that never trained on these scenes.

Frame ids are the file stems of ``rgb/`` in sorted order; line/array ``i`` of the poses is
the ``i``-th frame. Poses become OpenCV c2w with
:func:`viewseg_core.cameras.habitat_c2w_to_opencv`; with ``z_up=True`` (default) the world is
also turned from Habitat's y-up to viewseg's z-up (x, y, z) -> (x, -z, y).

Class table: Replica's Habitat export numbers its classes 0-101 (0 = "other"/undefined;
the paper's "88 classes" are those that occur in the scenes). :data:`REPLICA_CLASSES` lists
all ids; :data:`REPLICA_TO_NYU40` maps every name to an NYU40 name (or None = unlabeled),
from which the 37-class id (:func:`viewseg_core.classes.nyu40_to_classes`) and the NYU-13 id
(:data:`NYU40_TO_NYU13`) follow. Mappings that needed a judgement call are commented.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from viewseg_core import cameras
from viewseg_core.classes import IGNORE_LABEL, NYU40_NAMES, nyu40_to_classes
from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import read_json, read_npy, read_png
from viewseg_core.data.source import CameraFrame

REPLICA_CLASSES: tuple[str, ...] = (
    "other", "backpack", "base-cabinet", "basket", "bathtub", "beam", "beanbag", "bed", "bench", "bike",
    "bin", "blanket", "blinds", "book", "bottle", "box", "bowl", "camera", "cabinet", "candle",
    "chair", "chopping-board", "clock", "cloth", "clothing", "coaster", "comforter", "computer-keyboard", "cup",
    "cushion", "curtain", "ceiling", "cooktop", "countertop", "desk", "desk-organizer", "desktop-computer", "door",
    "exercise-ball", "faucet", "floor", "handbag", "hair-dryer", "handrail", "indoor-plant", "knife-block",
    "kitchen-utensil", "lamp", "laptop", "major-appliance", "mat", "microwave", "monitor", "mouse", "nightstand",
    "pan", "panel", "paper-towel", "phone", "picture", "pillar", "pillow", "pipe", "plant-stand", "plate", "pot",
    "rack", "refrigerator", "remote-control", "scarf", "sculpture", "shelf", "shoe", "shower-stall", "sink",
    "small-appliance", "sofa", "stair", "stool", "switch", "table", "table-runner", "tablet", "tissue-paper",
    "toilet", "toothbrush", "towel", "tv-screen", "tv-stand", "umbrella", "utensil-holder", "vase", "vent", "wall",
    "wall-cabinet", "wall-plug", "wardrobe", "window", "rug", "logo", "bag", "set-of-clothing",
)
"""Replica class id ``i`` (Habitat export, info_semantic.json) is ``REPLICA_CLASSES[i]``."""

_OS, _OF, _OP = "otherstructure", "otherfurniture", "otherprop"
REPLICA_TO_NYU40: dict[str, str | None] = {
    "other": None, "backpack": "bag", "base-cabinet": "cabinet", "basket": _OP, "bathtub": "bathtub",
    "beam": _OS,
    "beanbag": "chair",             # a seat; NYU40 has no pouf class
    "bed": "bed", "bench": _OF, "bike": _OP, "bin": _OP,
    "blanket": _OP, "blinds": "blinds", "book": "books", "bottle": _OP, "box": "box", "bowl": _OP,
    "camera": _OP, "cabinet": "cabinet", "candle": _OP, "chair": "chair", "chopping-board": _OP, "clock": _OP,
    "cloth": "clothes", "clothing": "clothes", "coaster": _OP,
    "comforter": "bed",             # bedding on a bed reads as bed in NYU-style labelling
    "computer-keyboard": _OP, "cup": _OP, "cushion": "pillow", "curtain": "curtain", "ceiling": "ceiling",
    "cooktop": _OF, "countertop": "counter", "desk": "desk", "desk-organizer": _OP, "desktop-computer": _OP,
    "door": "door", "exercise-ball": _OP, "faucet": _OP, "floor": "floor", "handbag": "bag", "hair-dryer": _OP,
    "handrail": _OS, "indoor-plant": _OP, "knife-block": _OP, "kitchen-utensil": _OP, "lamp": "lamp",
    "laptop": _OP, "major-appliance": _OF, "mat": "floor mat", "microwave": _OP,
    "monitor": "television",        # a screen; NYU40 puts computer screens with televisions
    "mouse": _OP, "nightstand": "night stand", "pan": _OP,
    "panel": _OS,                   # wall panelling
    "paper-towel": _OP, "phone": _OP, "picture": "picture", "pillar": _OS, "pillow": "pillow", "pipe": _OS,
    "plant-stand": _OF, "plate": _OP, "pot": _OP,
    "rack": "shelves",              # open racks hold things like shelves do
    "refrigerator": "refrigerator", "remote-control": _OP, "scarf": "clothes", "sculpture": _OP,
    "shelf": "shelves", "shoe": _OP, "shower-stall": _OS, "sink": "sink", "small-appliance": _OP, "sofa": "sofa",
    "stair": _OS, "stool": "chair", "switch": _OP, "table": "table", "table-runner": _OP, "tablet": _OP,
    "tissue-paper": "paper", "toilet": "toilet", "toothbrush": _OP, "towel": "towel", "tv-screen": "television",
    "tv-stand": _OF, "umbrella": _OP, "utensil-holder": _OP, "vase": _OP, "vent": _OS, "wall": "wall",
    "wall-cabinet": "cabinet",
    "wall-plug": _OP,
    "wardrobe": "cabinet",          # a tall cabinet with doors
    "window": "window", "rug": "floor mat", "logo": _OP, "bag": "bag", "set-of-clothing": "clothes",
}

NYU13_NAMES: tuple[str, ...] = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
                                "picture", "sofa", "table", "tv", "wall", "window")
"""The NYU-13 classes (Couprie et al. 2013); id ``j`` (0-12) is ``NYU13_NAMES[j]``, 255 = ignore."""

# NYU40 id (1-40) -> NYU-13 name, the standard many-to-one grouping.
_NYU40_TO_NYU13_NAME = {
    "wall": "wall", "floor": "floor", "cabinet": "furniture", "bed": "bed", "chair": "chair", "sofa": "sofa",
    "table": "table", "door": "wall", "window": "window", "bookshelf": "furniture", "picture": "picture",
    "counter": "furniture", "blinds": "window", "desk": "table", "shelves": "furniture", "curtain": "window",
    "dresser": "furniture", "pillow": "objects", "mirror": "objects", "floor mat": "floor", "clothes": "objects",
    "ceiling": "ceiling", "books": "books", "refrigerator": "furniture", "television": "tv", "paper": "objects",
    "towel": "objects", "shower curtain": "objects", "box": "objects", "whiteboard": "objects",
    "person": "objects", "night stand": "furniture", "toilet": "objects", "sink": "objects", "lamp": "objects",
    "bathtub": "objects", "bag": "objects", "otherstructure": "objects", "otherfurniture": "furniture",
    "otherprop": "objects",
}
NYU40_TO_NYU13: np.ndarray = np.array(
    [IGNORE_LABEL] + [NYU13_NAMES.index(_NYU40_TO_NYU13_NAME[n]) for n in NYU40_NAMES], dtype=np.uint8)
"""[41] NYU40 id (0 = unlabeled) -> NYU-13 id (0-12, 255 = unlabeled)."""


def _nyu40_id(name: str | None) -> int:
    return 0 if name is None else NYU40_NAMES.index(name) + 1


def replica_lut(names: list[str] | tuple[str, ...] | dict[int, str] = REPLICA_CLASSES,
                size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Replica class id -> (37-class id, NYU-13 id) lookup tables, [size] uint8 each.

    Args:
        names: the class table (list indexed by id, or {id: name}); names not in
            :data:`REPLICA_TO_NYU40` raise ValueError (a new Replica class needs a decision).
    """
    items = names.items() if isinstance(names, dict) else enumerate(names)
    to37 = np.full(size, IGNORE_LABEL, dtype=np.uint8)
    to13 = np.full(size, IGNORE_LABEL, dtype=np.uint8)
    for i, name in items:
        key = name.strip().lower().replace(" ", "-").replace("_", "-")
        if key not in REPLICA_TO_NYU40:
            raise ValueError(f"Replica class {name!r} (id {i}) has no mapping in REPLICA_TO_NYU40")
        nyu = _nyu40_id(REPLICA_TO_NYU40[key])
        to37[i] = nyu40_to_classes(np.array([nyu]))[0]
        to13[i] = NYU40_TO_NYU13[nyu]
    return to37, to13


_LUT37, _LUT13 = replica_lut()


def replica_to_classes(ids: np.ndarray) -> np.ndarray:
    """[...] Replica class ids (0-101) -> [...] uint8 viewseg class ids (255 = ignore)."""
    ids = np.asarray(ids)
    out = np.full(ids.shape, IGNORE_LABEL, dtype=np.uint8)
    ok = (ids >= 0) & (ids < len(REPLICA_CLASSES))
    out[ok] = _LUT37[ids[ok]]
    return out


def replica_to_nyu13(ids: np.ndarray) -> np.ndarray:
    """[...] Replica class ids -> [...] uint8 NYU-13 ids (255 = ignore)."""
    ids = np.asarray(ids)
    out = np.full(ids.shape, IGNORE_LABEL, dtype=np.uint8)
    ok = (ids >= 0) & (ids < len(REPLICA_CLASSES))
    out[ok] = _LUT13[ids[ok]]
    return out


# Habitat world (y up) -> viewseg world (z up): (x, y, z) -> (x, -z, y).
_Y_UP_TO_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


def _quat_wxyz_to_R(q) -> np.ndarray:
    w, x, y, z = (float(v) for v in q)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    if n < 1e-12:
        raise ValueError("zero quaternion")
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def read_habitat_poses(folder: str | os.PathLike) -> list[np.ndarray]:
    """Habitat camera-to-world [4, 4] matrices from poses.txt / poses.npy / poses.json."""
    folder = Path(folder)
    txt, npy, js = folder / "poses.txt", folder / "poses.npy", folder / "poses.json"
    if txt.is_file():
        try:
            rows = [line.split() for line in txt.read_text().splitlines() if line.strip()]
            mats = [np.array([float(v) for v in r]).reshape(4, 4) for r in rows]
        except ValueError as e:
            raise ValueError(f"{txt}: each line must hold 16 numbers (a row-major 4x4 matrix): {e}") from e
        return mats
    if npy.is_file():
        arr = read_npy(npy)
        if arr.ndim != 3 or arr.shape[1:] != (4, 4):
            raise ValueError(f"{npy}: expected [N, 4, 4], got {arr.shape}")
        return [a.astype(np.float64) for a in arr]
    if js.is_file():
        frames = read_json(js).get("frames")
        if not isinstance(frames, list):
            raise ValueError(f"{js}: expected {{'frames': [...]}}")
        mats = []
        for i, fr in enumerate(frames):
            try:
                if "c2w" in fr:
                    mats.append(np.asarray(fr["c2w"], dtype=np.float64).reshape(4, 4))
                else:
                    T = np.eye(4)
                    T[:3, :3] = _quat_wxyz_to_R(fr["rotation"])
                    T[:3, 3] = np.asarray(fr["position"], dtype=np.float64).reshape(3)
                    mats.append(T)
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{js}: frames[{i}]: need 'c2w' or 'position' + 'rotation' (w, x, y, z): {e}") from e
        return mats
    raise ValueError(f"{folder}: no poses.txt, poses.npy or poses.json")


class ReplicaScene:
    """One Habitat-rendered Replica scene folder as a :class:`~viewseg_core.data.source.SceneSource`.

    Args:
        folder: the scene folder (layout in the module docstring).
        semantic: "class" (ids are Replica classes) or "instance" (map through info_semantic.json).
        depth_scale: units per metre of 16-bit depth PNGs (1000 = millimetres).
        z_up: rotate Habitat's y-up world to viewseg's z-up.
        hfov_deg: horizontal field of view (degrees) for a scene without ``intrinsics.json``
            (None: such a scene is an error). A scene's own ``intrinsics.json`` wins; one that
            disagrees with ``hfov_deg`` by more than 0.01 degrees is an error.
    """

    def __init__(self, folder: str | os.PathLike, name: str | None = None, semantic: str = "class",
                 depth_scale: float = 1000.0, z_up: bool = True, hfov_deg: float | None = None):
        if semantic not in ("class", "instance"):
            raise ValueError(f"semantic must be 'class' or 'instance', got {semantic!r}")
        if hfov_deg is not None and not 0.0 < float(hfov_deg) < 180.0:
            raise ValueError(f"Replica hfov_deg (data.replica_hfov_deg) must be in (0, 180) degrees, got {hfov_deg!r}")
        self.hfov_deg = None if hfov_deg is None else float(hfov_deg)
        self.dir = Path(folder)
        self.name = name or self.dir.name
        self.depth_scale = float(depth_scale)
        rgb_dir = self.dir / "rgb"
        if not rgb_dir.is_dir():
            raise ValueError(f"{rgb_dir}: missing (not a Habitat-rendered Replica folder)")
        self._rgb = sorted(p for p in rgb_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        self._ids = [p.stem for p in self._rgb]
        poses = read_habitat_poses(self.dir)
        if len(poses) != len(self._rgb):
            raise ValueError(f"{self.dir}: {len(poses)} poses for {len(self._rgb)} RGB frames")
        world = _Y_UP_TO_Z_UP if z_up else np.eye(4)
        self._c2w = [world @ cameras.habitat_c2w_to_opencv(T) for T in poses]
        self.height, self.width = self._probe_size()
        self.K = self._read_intrinsics()
        self._lut37, self._lut13 = self._class_luts(semantic)

    def _probe_size(self) -> tuple[int, int]:
        intr = self.dir / "intrinsics.json"
        if intr.is_file():
            d = read_json(intr)
            if "width" in d and "height" in d:
                return int(d["height"]), int(d["width"])
        if not self._rgb:
            raise ValueError(f"{self.dir / 'rgb'}: no frames")
        img = read_png(self._rgb[0], color=True) if self._rgb[0].suffix == ".png" else self._read_jpg(self._rgb[0])
        return img.shape[0], img.shape[1]

    def _read_intrinsics(self) -> np.ndarray:
        intr = self.dir / "intrinsics.json"
        fmt = ('{"hfov": <horizontal field of view, degrees>} or {"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]} '
               '(pixels), optionally with "width" and "height"')
        if not intr.is_file():
            if self.hfov_deg is None:
                raise ValueError(f"{intr}: missing, and no field of view was given; the Replica reader assumes "
                                 f"none. Write it as {fmt}, or set data.replica_hfov_deg (ReplicaScene(hfov_deg=...)) "
                                 f"to the hfov the scenes were rendered with")
            return cameras.K_from_hfov(self.hfov_deg, self.width, self.height)
        d = read_json(intr)
        if not isinstance(d, dict) or ("K" not in d and "hfov" not in d):
            raise ValueError(f"{intr}: has neither 'hfov' nor 'K'; expected {fmt}")
        try:
            if "K" in d:
                K = np.asarray(d["K"], dtype=np.float64)
                if K.shape != (3, 3) or not np.isfinite(K).all():
                    raise ValueError("K must be 3x3 finite numbers")
            else:
                K = cameras.K_from_hfov(float(d["hfov"]), self.width, self.height)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{intr}: {e}") from e
        if self.hfov_deg is not None:
            own = math.degrees(2.0 * math.atan(0.5 * self.width / K[0, 0]))
            if abs(own - self.hfov_deg) > 0.01:
                raise ValueError(f"{intr}: horizontal field of view {own:.4f} degrees disagrees with "
                                 f"data.replica_hfov_deg {self.hfov_deg:g}")
        return K

    def _class_luts(self, semantic: str) -> tuple[np.ndarray, np.ndarray]:
        info_path = self.dir / "info_semantic.json"
        info = read_json(info_path) if info_path.is_file() else None
        if info is not None and isinstance(info.get("classes"), list):
            names = {int(c["id"]): str(c["name"]) for c in info["classes"]}
            to37, to13 = replica_lut(names)
        else:
            to37, to13 = _LUT37, _LUT13
        if semantic == "instance":
            if info is None:
                raise ValueError(f"{info_path}: needed to map instance ids to classes")
            if "id_to_label" in info:
                inst_to_class = np.asarray(info["id_to_label"], dtype=np.int64)
            elif "objects" in info:
                objs = info["objects"]
                inst_to_class = np.full(max(int(o["id"]) for o in objs) + 1, -1, dtype=np.int64)
                for o in objs:
                    inst_to_class[int(o["id"])] = int(o["class_id"])
            else:
                raise ValueError(f"{info_path}: has neither 'id_to_label' nor 'objects'")
            safe = np.where(inst_to_class >= 0, inst_to_class, 0)
            to37 = np.where(inst_to_class >= 0, to37[safe], IGNORE_LABEL).astype(np.uint8)
            to13 = np.where(inst_to_class >= 0, to13[safe], IGNORE_LABEL).astype(np.uint8)
        return to37, to13

    @staticmethod
    def _read_jpg(path: Path) -> np.ndarray:
        data = np.fromfile(path, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None:
            raise ValueError(f"{path}: not a readable image (corrupt or truncated)")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def _file(self, sub: str, index: int, exts: tuple[str, ...]) -> Path | None:
        for ext in exts:
            p = self.dir / sub / f"{self._ids[index]}{ext}"
            if p.is_file():
                return p
        return None

    def _check_hw(self, a: np.ndarray, path: Path) -> None:
        if a.shape[:2] != (self.height, self.width):
            raise ValueError(f"{path}: image is {a.shape[1]}x{a.shape[0]}, expected {self.width}x{self.height}")

    # SceneSource --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def camera(self, index: int) -> CameraFrame:
        return CameraFrame(self._ids[index], self.K, self._c2w[index], self.height, self.width)

    def load_rgb(self, index: int) -> np.ndarray:
        p = self._rgb[index]
        rgb = read_png(p, color=True) if p.suffix.lower() == ".png" else self._read_jpg(p)
        self._check_hw(rgb, p)
        return rgb

    def _raw_semantic(self, index: int) -> tuple[np.ndarray, Path] | None:
        p = self._file("semantic", index, (".npy", ".png"))
        if p is None:
            return None
        if p.suffix == ".npy":
            ids = read_npy(p)
        else:
            ids = read_png(p, color=False)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{p}: semantic ids must be [H, W] integers, got {ids.shape} {ids.dtype}")
        self._check_hw(ids, p)
        return ids.astype(np.int64), p

    def _map(self, ids: np.ndarray, lut: np.ndarray) -> np.ndarray:
        out = np.full(ids.shape, IGNORE_LABEL, dtype=np.uint8)
        ok = (ids >= 0) & (ids < len(lut))
        out[ok] = lut[ids[ok]]
        return out

    def load_labels(self, index: int) -> np.ndarray | None:
        raw = self._raw_semantic(index)
        return None if raw is None else self._map(raw[0], self._lut37)

    def load_labels_nyu13(self, index: int) -> np.ndarray | None:
        raw = self._raw_semantic(index)
        return None if raw is None else self._map(raw[0], self._lut13)

    def load_depth(self, index: int) -> np.ndarray | None:
        p = self._file("depth", index, (".npy", ".png"))
        if p is None:
            return None
        if p.suffix == ".npy":
            depth = read_npy(p, "depth map")
            if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
                raise ValueError(f"{p}: depth must be [H, W] floating point, got {depth.shape} {depth.dtype}")
        else:
            raw = read_png(p, color=False)
            depth = raw.astype(np.float32) / self.depth_scale
            depth[raw == 0] = np.nan
        self._check_hw(depth, p)
        depth = depth.astype(np.float32)
        depth[~(depth > 0)] = np.nan
        return depth

    def load_view(self, index: int) -> View:
        cam = self.camera(index)
        return View(rgb=self.load_rgb(index), K=cam.K, c2w=cam.c2w, labels=self.load_labels(index),
                    depth=self.load_depth(index), view_id=cam.view_id, meta={"scene": self.name})


__all__ = ["REPLICA_CLASSES", "REPLICA_TO_NYU40", "NYU13_NAMES", "NYU40_TO_NYU13", "replica_lut",
           "replica_to_classes", "replica_to_nyu13", "read_habitat_poses", "ReplicaScene"]
