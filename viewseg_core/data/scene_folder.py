"""viewseg's own on-disk scene format: a folder of posed RGB, label and depth images.

Layout (one folder per scene)::

    SCENE/
      cameras.json          format_version, class table, and K + c2w + size per frame
      rgb/<id>.png          [H, W, 3] 8-bit RGB
      labels/<id>.png       [H, W] class ids, uint8 (255 = ignore) or uint16 (same ids)
      depth/<id>.npy        [H, W] float32 planar depth in metres, NaN = unknown

Depth is stored as ``.npy`` float32, not a 16-bit PNG in millimetres and not EXR/TIFF:
it keeps planar metres bit-exact (no quantisation, no 65.5 m ceiling), NaN survives as
"unknown" without a sentinel, the header carries shape and dtype (so a truncated or wrong
file is caught before use), numpy reads it with no extra codec (OpenCV's EXR reader is off
by default) and it can be memory-mapped. The price is size: 4 bytes per pixel, uncompressed.

``cameras.json``::

    {"format_version": 1, "scene": "name",
     "classes": {"names": [...37 names...], "ignore_label": 255},
     "depth": {"kind": "planar", "units": "m", "encoding": "npy-float32", "unknown": "NaN"},
     "meta": {...},
     "frames": [{"id": "000000", "width": 320, "height": 240,
                 "K": [[...3x3...]], "c2w": [[...4x4...]], "stamp": 0.0,
                 "rgb": "rgb/000000.png", "labels": "labels/000000.png" | null,
                 "depth": "depth/000000.npy" | null, "meta": {...}}, ...]}

K is the general 3x3 OpenCV-pixel matrix and c2w the OpenCV optical frame's pose in metres
(viewseg_core.cameras). A folder written with another class table is remapped by class
name on read. Every malformed file raises ValueError naming the file.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from viewseg_core.atomic_io import write_bytes_atomic
from viewseg_core.classes import CLASS_NAMES, IGNORE_LABEL
from viewseg_core.data.records import View
from viewseg_core.data.source import CameraFrame

FORMAT_VERSION = 1
CAMERAS_FILE = "cameras.json"
DEPTH_INFO = {"kind": "planar", "units": "m", "encoding": "npy-float32", "unknown": "NaN"}


@dataclass(frozen=True)
class FrameEntry:
    """One frame of ``cameras.json``: its camera plus the relative paths of its files."""

    camera: CameraFrame
    rgb: str
    labels: str | None
    depth: str | None
    stamp: float = 0.0
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# File codecs: each error names the file
# --------------------------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from e


def read_png(path: str | os.PathLike, *, color: bool) -> np.ndarray:
    """Decode a PNG: [H, W, 3] uint8 RGB when ``color``, else [H, W] uint8/uint16 as stored."""
    path = Path(path)
    data = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    flags = cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise ValueError(f"{path}: not a readable image (corrupt or truncated)")
    if color:
        if img.dtype != np.uint8:
            raise ValueError(f"{path}: expected 8-bit RGB, got {img.dtype}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: expected a single-channel 8/16-bit label image, got "
                         f"shape {img.shape} {img.dtype}")
    return img


def write_png(path: str | os.PathLike, image: np.ndarray, *, compression: int = 1) -> None:
    """Write [H, W, 3] uint8 RGB or [H, W] uint8/uint16 as PNG (RGB order on disk)."""
    path = Path(path)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed for {image.shape} {image.dtype}")
    write_bytes_atomic(path, buf.tobytes())


def read_npy(path: str | os.PathLike, what: str = "") -> np.ndarray:
    """An array from ``.npy`` (no pickles); a corrupt or truncated file is a ValueError that
    names it (``what``: say what the file should hold, e.g. "depth map")."""
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy{' ' + what if what else ''} (corrupt or truncated): {e}") from e


def read_depth_npy(path: str | os.PathLike) -> np.ndarray:
    """[H, W] float32 planar depth from ``.npy``."""
    depth = read_npy(path, "depth map")
    if depth.ndim != 2 or depth.dtype != np.float32:
        raise ValueError(f"{path}: depth must be [H, W] float32, got {depth.shape} {depth.dtype}")
    return depth


def write_depth_npy(path: str | os.PathLike, depth: np.ndarray) -> None:
    path = Path(path)
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.dtype != np.float32:
        raise ValueError(f"{path}: depth must be [H, W] float32, got {depth.shape} {depth.dtype}")
    buffer = io.BytesIO()
    np.save(buffer, depth, allow_pickle=False)
    write_bytes_atomic(path, buffer.getvalue())


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        obj = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON (corrupt or truncated): {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object at top level, got {type(obj).__name__}")
    return obj


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 1) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=indent).encode("utf-8"))


# --------------------------------------------------------------------------------------
# cameras.json parsing
# --------------------------------------------------------------------------------------

def _field(obj: dict, key: str, where: str):
    if key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    return obj[key]


def _matrix(value, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: not a numeric matrix: {e}") from e
    if a.shape != shape or not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: expected a finite {shape[0]}x{shape[1]} matrix, got shape {a.shape}")
    return a


def _label_lut(names: list[str], where: str) -> np.ndarray | None:
    """Stored class id -> viewseg class id, by name; None when the tables already agree."""
    if list(names) == list(CLASS_NAMES):
        return None
    lut = np.full(65536, IGNORE_LABEL, dtype=np.uint16)
    for i, name in enumerate(names):
        if name in CLASS_NAMES:
            lut[i] = CLASS_NAMES.index(name)
        elif not isinstance(name, str):
            raise ValueError(f"{where}: class names must be strings, got {name!r}")
    return lut


def _parse_frame(obj: dict, index: int, cam_path: Path) -> FrameEntry:
    where = f"{cam_path}: frames[{index}]"
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object")
    view_id = str(_field(obj, "id", where))
    try:
        width, height = int(_field(obj, "width", where)), int(_field(obj, "height", where))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: width/height must be integers") from e
    if width <= 0 or height <= 0:
        raise ValueError(f"{where}: image size must be positive, got {width}x{height}")
    K = _matrix(_field(obj, "K", where), (3, 3), f"{where}.K")
    if abs(np.linalg.det(K)) < 1e-12:
        raise ValueError(f"{where}.K: matrix is singular")
    c2w = _matrix(_field(obj, "c2w", where), (4, 4), f"{where}.c2w")
    rgb = _field(obj, "rgb", where)
    if not isinstance(rgb, str):
        raise ValueError(f"{where}.rgb: expected a relative path")
    return FrameEntry(
        camera=CameraFrame(view_id=view_id, K=K, c2w=c2w, height=height, width=width),
        rgb=rgb, labels=obj.get("labels"), depth=obj.get("depth"),
        stamp=float(obj.get("stamp", 0.0)), meta=dict(obj.get("meta") or {}))


# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------

class SceneFolder:
    """Reader of one scene folder (a :class:`~viewseg_core.data.source.SceneSource`).

    Args:
        root: the scene folder (holding ``cameras.json``).
        name: scene name; defaults to ``cameras.json``'s ``scene`` or the folder name.
    """

    def __init__(self, root: str | os.PathLike, name: str | None = None):
        self.root = Path(root)
        self.cameras_path = self.root / CAMERAS_FILE
        if not self.cameras_path.is_file():
            raise ValueError(f"{self.cameras_path}: missing; {self.root} is not a viewseg scene folder")
        doc = read_json(self.cameras_path)
        version = _field(doc, "format_version", str(self.cameras_path))
        if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
            raise ValueError(f"{self.cameras_path}: unsupported format_version {version!r} "
                             f"(this reader knows 1..{FORMAT_VERSION})")
        self.name = name or str(doc.get("scene") or self.root.name)
        classes = _field(doc, "classes", str(self.cameras_path))
        names = _field(classes, "names", f"{self.cameras_path}: classes")
        if not isinstance(names, list):
            raise ValueError(f"{self.cameras_path}: classes.names must be a list")
        self.class_names: list[str] = names
        self._stored_ignore = int(classes.get("ignore_label", IGNORE_LABEL))
        self._lut = _label_lut(names, str(self.cameras_path))
        frames = _field(doc, "frames", str(self.cameras_path))
        if not isinstance(frames, list):
            raise ValueError(f"{self.cameras_path}: frames must be a list")
        self.frames: list[FrameEntry] = [_parse_frame(f, i, self.cameras_path) for i, f in enumerate(frames)]
        ids = [f.camera.view_id for f in self.frames]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.cameras_path}: duplicate frame ids")
        self._index = {vid: i for i, vid in enumerate(ids)}
        self.meta: dict = dict(doc.get("meta") or {})

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return f"SceneFolder({str(self.root)!r}, {len(self)} frames)"

    @property
    def view_ids(self) -> list[str]:
        return [f.camera.view_id for f in self.frames]

    def index_of(self, view_id: str) -> int:
        try:
            return self._index[view_id]
        except KeyError:
            raise KeyError(f"scene {self.name!r} has no view {view_id!r}") from None

    def camera(self, index: int) -> CameraFrame:
        return self.frames[index].camera

    def _check_size(self, image: np.ndarray, entry: FrameEntry, path: Path) -> None:
        cam = entry.camera
        if image.shape[:2] != (cam.height, cam.width):
            raise ValueError(f"{path}: image is {image.shape[1]}x{image.shape[0]}, but "
                             f"{self.cameras_path} says {cam.width}x{cam.height}")

    def load_rgb(self, index: int) -> np.ndarray:
        entry = self.frames[index]
        path = self.root / entry.rgb
        rgb = read_png(path, color=True)
        self._check_size(rgb, entry, path)
        return rgb

    def load_labels(self, index: int) -> np.ndarray | None:
        entry = self.frames[index]
        if entry.labels is None:
            return None
        path = self.root / entry.labels
        labels = read_png(path, color=False)
        self._check_size(labels, entry, path)
        if self._lut is not None:
            stored_ignore = labels == self._stored_ignore
            labels = self._lut[labels].astype(np.uint8)
            labels[stored_ignore] = IGNORE_LABEL
        elif self._stored_ignore != IGNORE_LABEL:
            labels = labels.copy()
            labels[labels == self._stored_ignore] = IGNORE_LABEL
        return labels

    def load_depth(self, index: int) -> np.ndarray | None:
        entry = self.frames[index]
        if entry.depth is None:
            return None
        path = self.root / entry.depth
        depth = read_depth_npy(path)
        self._check_size(depth, entry, path)
        return depth

    def load_view(self, index: int) -> View:
        entry = self.frames[index]
        cam = entry.camera
        try:
            return View(rgb=self.load_rgb(index), K=cam.K, c2w=cam.c2w, labels=self.load_labels(index),
                        depth=self.load_depth(index), view_id=cam.view_id, stamp=entry.stamp,
                        meta={"scene": self.name, **entry.meta})
        except ValueError as e:
            if str(self.root) in str(e):
                raise
            raise ValueError(f"{self.cameras_path}: frame {cam.view_id!r}: {e}") from e

    def views(self) -> Iterator[View]:
        for i in range(len(self)):
            yield self.load_view(i)


def is_scene_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / CAMERAS_FILE).is_file()


def find_scene_folders(root: str | os.PathLike) -> list[Path]:
    """Scene folders directly under ``root`` (or ``root`` itself), sorted by name."""
    root = Path(root)
    if is_scene_folder(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_scene_folder(p))


# --------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------

def _safe_id(view_id: str, where: str) -> str:
    if not view_id or any(c in view_id for c in "/\\\0") or view_id in (".", ".."):
        raise ValueError(f"{where}: view id {view_id!r} cannot be used as a file name")
    return view_id


class SceneFolderWriter:
    """Streams views into a scene folder; ``cameras.json`` is written (atomically) on close.

    Use as a context manager. Labels are stored as uint8 PNGs when every id fits (<= 255),
    else as uint16; depth as float32 ``.npy`` (see the module docstring for why).

    Args:
        root: the folder to create (may exist; existing frames are not read).
        scene: scene name stored in ``cameras.json``.
        meta: free-form metadata (e.g. the generator seed).
        png_compression: zlib level 0-9 for the PNGs (1: fast, ~10% bigger than 9).
    """

    def __init__(self, root: str | os.PathLike, scene: str | None = None, meta: dict | None = None,
                 png_compression: int = 1):
        self.root = Path(root)
        self.scene = scene or self.root.name
        self.meta = dict(meta or {})
        self.png_compression = png_compression
        self._frames: list[dict] = []
        self._ids: set[str] = set()
        for sub in ("rgb", "labels", "depth"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def add(self, view: View) -> None:
        view.validate()
        vid = _safe_id(view.view_id or f"{len(self._frames):06d}", f"{self.root}")
        if vid in self._ids:
            raise ValueError(f"{self.root}: duplicate view id {vid!r}")
        self._ids.add(vid)
        entry = {"id": vid, "width": view.width, "height": view.height,
                 "K": view.K.tolist(), "c2w": view.c2w.tolist(), "stamp": float(view.stamp),
                 "rgb": f"rgb/{vid}.png", "labels": None, "depth": None,
                 "meta": _jsonable(view.meta)}
        write_png(self.root / entry["rgb"], view.rgb, compression=self.png_compression)
        if view.labels is not None:
            labels = view.labels
            if labels.dtype == np.uint16 and int(labels.max(initial=0)) <= 255:
                labels = labels.astype(np.uint8)
            entry["labels"] = f"labels/{vid}.png"
            write_png(self.root / entry["labels"], labels, compression=self.png_compression)
        if view.depth is not None:
            entry["depth"] = f"depth/{vid}.npy"
            write_depth_npy(self.root / entry["depth"], view.depth)
        self._frames.append(entry)

    @property
    def frames(self) -> list[dict]:
        """The ``cameras.json`` entries written so far (copies), in the order added."""
        return [dict(entry) for entry in self._frames]

    def remove(self, view_id: str) -> None:
        """Take a frame added earlier out of the folder: its entry and its files. Its id stays taken."""
        matches = [entry for entry in self._frames if entry["id"] == view_id]
        if not matches:
            raise KeyError(f"{self.root}: no frame {view_id!r} was added")
        entry = matches[0]
        self._frames.remove(entry)
        for key in ("rgb", "labels", "depth"):
            if entry[key]:
                (self.root / entry[key]).unlink(missing_ok=True)

    def close(self) -> SceneFolder:
        doc = {"format_version": FORMAT_VERSION, "scene": self.scene,
               "classes": {"names": list(CLASS_NAMES), "ignore_label": IGNORE_LABEL},
               "depth": dict(DEPTH_INFO), "meta": _jsonable(self.meta), "frames": self._frames}
        write_json(self.root / CAMERAS_FILE, doc)
        return SceneFolder(self.root)

    def __enter__(self) -> "SceneFolderWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def write_scene_folder(root: str | os.PathLike, views: Iterable[View], scene: str | None = None,
                       meta: dict | None = None) -> SceneFolder:
    """Write ``views`` as a scene folder and return its reader."""
    writer = SceneFolderWriter(root, scene=scene, meta=meta)
    for v in views:
        writer.add(v)
    return writer.close()


def staging_folder(out_dir: str | os.PathLike, what: str = "output folder",
                   log: Callable[[str], None] | None = None) -> Path:
    """A fresh hidden folder beside ``out_dir`` to assemble a scene folder in, for
    :func:`publish_folder` to move in place.

    Checks ``out_dir`` first: replacing an earlier scene folder is fine, replacing anything
    else is not (ValueError naming ``what``). Stale staging folders of a writer killed while
    writing to the same ``out_dir`` are removed (and named to ``log``).
    """
    import tempfile

    from viewseg_core.atomic_io import ensure_dir

    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise ValueError(f"{what} {out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not is_scene_folder(out_dir):
            raise ValueError(f"{what} {out_dir} is a non-empty folder that is not a scene folder (no cameras.json); "
                             f"refusing to replace it")
    parent = ensure_dir(out_dir.parent)
    for stale in parent.glob(f".{out_dir.name}.partial-*"):
        if log is not None:
            log(f"removing {stale}, left by a write that did not finish")
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))


def publish_folder(staging: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Move a finished scene folder from :func:`staging_folder` in place of ``out_dir`` (an
    earlier scene folder there is replaced; a crash midway leaves one of the two complete)."""
    staging, out_dir = Path(staging), Path(out_dir)
    try:
        os.rename(staging, out_dir)  # atomic; also replaces an empty folder
        return
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    old = staging.with_name(staging.name.replace(".partial-", ".replaced-"))
    os.rename(out_dir, old)
    os.rename(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _jsonable(obj):
    """Metadata -> plain JSON types (numpy scalars/arrays become numbers/lists)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def meta_match(text: str) -> tuple[str, str]:
    """("key", "value") of a frame-meta selector ``KEY=VALUE`` (e.g. ``trajectory=robot``);
    ValueError when there is no '=' or no key."""
    key, sep, value = str(text).partition("=")
    if not sep or not key:
        raise ValueError(f"a frame meta selector must be KEY=VALUE, got {text!r}")
    return key, value


def frame_meta(source) -> dict[str, dict]:
    """{view id: its frame's ``meta``} of a scene (``cameras.json``'s per-frame meta, e.g. the
    synthetic rooms' ``trajectory``); ValueError for a scene source that keeps none (only
    scene folders do)."""
    frames = getattr(source, "frames", None)
    if frames is None:
        raise ValueError(f"scene {getattr(source, 'name', source)!r} keeps no frame meta (scene folders do)")
    return {f.camera.view_id: f.meta for f in frames}


__all__ = ["FORMAT_VERSION", "CAMERAS_FILE", "FrameEntry", "SceneFolder", "SceneFolderWriter", "frame_meta", "meta_match",
           "write_scene_folder", "staging_folder", "publish_folder", "is_scene_folder", "find_scene_folders", "read_png", "write_png",
           "read_depth_npy", "write_depth_npy", "read_json", "write_json"]
