"""Reader for Hypersim (Roberts et al. 2021) in its release layout, as View records.

Layout read (per scene ``ai_VVV_NNN`` under ROOT)::

    ai_VVV_NNN/_detail/metadata_scene.csv                       meters_per_asset_unit
    ai_VVV_NNN/_detail/cam_XX/camera_keyframe_positions.hdf5     [N, 3] asset units
    ai_VVV_NNN/_detail/cam_XX/camera_keyframe_orientations.hdf5  [N, 3, 3] R_world_from_cam
    ai_VVV_NNN/images/scene_cam_XX_final_hdf5/frame.IIII.color.hdf5        HDR linear RGB
    ai_VVV_NNN/images/scene_cam_XX_final_preview/frame.IIII.tonemap.jpg     (alternative RGB)
    ai_VVV_NNN/images/scene_cam_XX_geometry_hdf5/frame.IIII.semantic.hdf5  NYU40 ids (-1: none)
    ai_VVV_NNN/images/scene_cam_XX_geometry_hdf5/frame.IIII.depth_meters.hdf5
    ai_VVV_NNN/images/scene_cam_XX_geometry_hdf5/frame.IIII.render_entity_id.hdf5 (tone-map mask)
    metadata_camera_parameters.csv      per-scene M_cam_from_uv + image size (Hypersim's
                                        contrib/mikeroberts3000 table; found in ROOT or a parent)
    metadata_images_split_scene_v1.csv  the official split (read by :func:`read_split_csv`)

Conversions (all through :mod:`viewseg_core.cameras`):

- camera: the scene's ``M_cam_from_uv`` (tilt-shift included) and image size -> general K;
  keyframe orientation/position (camera x right, y up, -z forward; asset units) -> OpenCV
  c2w in metres (``meters_per_asset_unit``). Never a fixed focal length.
- depth: ``depth_meters`` is the distance to the camera centre -> planar depth (camera z).
- colour: HDR ``color.hdf5`` tone-mapped as Hypersim's own ``scene_generate_images_tonemap.py``
  does (scale so that the 90th brightness percentile of valid pixels maps to 0.8 after
  gamma 1/2.2), or the released ``tonemap.jpg`` previews.
- labels: NYU40 -> the 37 viewseg classes (otherstructure/otherfurniture/otherprop and
  unlabeled -> 255) via :func:`viewseg_core.classes.nyu40_to_classes`.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewseg_core import cameras
from viewseg_core.classes import nyu40_to_classes
from viewseg_core.data.records import View
from viewseg_core.data.source import CameraFrame

CAMERA_TABLE = "metadata_camera_parameters.csv"
SPLIT_TABLE = "metadata_images_split_scene_v1.csv"

# Hypersim's tone-mapping constants (scene_generate_images_tonemap.py).
_TM_GAMMA = 1.0 / 2.2
_TM_PERCENTILE = 90
_TM_BRIGHTNESS_TARGET = 0.8
_TM_EPS = 1e-4


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------

def read_hdf5(path: str | os.PathLike, dataset: str = "dataset") -> np.ndarray:
    """The array ``dataset`` of a Hypersim HDF5 file; ValueError naming the file if unreadable."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: missing")
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise ValueError(f"{path}: no dataset {dataset!r} (has {sorted(f.keys())})")
            return np.asarray(f[dataset][()])
    except ValueError:
        raise
    except (OSError, KeyError, RuntimeError) as e:
        raise ValueError(f"{path}: not a readable HDF5 file (corrupt or truncated): {e}") from e


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ValueError(f"{path}: missing")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable CSV file: {e}") from e
    return rows


def read_meters_per_asset_unit(scene_dir: str | os.PathLike) -> float:
    """``_detail/metadata_scene.csv`` -> meters_per_asset_unit."""
    path = Path(scene_dir) / "_detail" / "metadata_scene.csv"
    for row in _read_csv_rows(path):
        if (row.get("parameter_name") or "").strip() == "meters_per_asset_unit":
            try:
                value = float(row.get("parameter_value", ""))
            except ValueError as e:
                raise ValueError(f"{path}: meters_per_asset_unit is not a number") from e
            if not value > 0:
                raise ValueError(f"{path}: meters_per_asset_unit must be positive, got {value}")
            return value
    raise ValueError(f"{path}: no 'meters_per_asset_unit' row")


@dataclass(frozen=True)
class HypersimCamera:
    """A scene's camera model from ``metadata_camera_parameters.csv``."""

    M_cam_from_uv: np.ndarray
    width: int
    height: int
    meters_per_asset_unit: float | None  # the table's settings_units_info_meters_scale, if any

    @property
    def K(self) -> np.ndarray:
        return cameras.hypersim_K(self.M_cam_from_uv, self.width, self.height)

    @property
    def tilt_shift(self) -> bool:
        return bool(abs(self.M_cam_from_uv[0, 2]) > 1e-9 or abs(self.M_cam_from_uv[1, 2]) > 1e-9)


def find_camera_table(start: str | os.PathLike) -> Path:
    """``metadata_camera_parameters.csv`` in ``start`` or one of its parents (or contrib/)."""
    start = Path(start).resolve()
    for d in [start, *start.parents]:
        for cand in (d / CAMERA_TABLE, d / "contrib" / "mikeroberts3000" / CAMERA_TABLE):
            if cand.is_file():
                return cand
    raise ValueError(f"{CAMERA_TABLE} not found (looked in {start} and its parents); pass "
                     f"camera_table=... (it ships in Hypersim's contrib/mikeroberts3000/)")


def read_camera_table(path: str | os.PathLike, scene: str) -> HypersimCamera:
    """One scene's row of ``metadata_camera_parameters.csv``."""
    path = Path(path)
    for row in _read_csv_rows(path):
        if row.get("scene_name") != scene:
            continue
        try:
            M = np.array([[float(row[f"M_cam_from_uv_{i}{j}"]) for j in range(3)] for i in range(3)])
            width = int(float(row["settings_output_img_width"]))
            height = int(float(row["settings_output_img_height"]))
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: row {scene!r}: missing or bad column ({e})") from e
        mpau = row.get("settings_units_info_meters_scale")
        return HypersimCamera(M, width, height, float(mpau) if mpau not in (None, "") else None)
    raise ValueError(f"{path}: no row for scene {scene!r}")


def read_split_csv(path: str | os.PathLike, public_only: bool = True) -> dict[str, list[tuple[str, str, int]]]:
    """The official split: {"train"|"val"|"test": [(scene, cam, frame), ...]}.

    Args:
        public_only: keep only images with ``included_in_public_release`` true.
    """
    path = Path(path)
    out: dict[str, list[tuple[str, str, int]]] = {}
    for i, row in enumerate(_read_csv_rows(path)):
        try:
            included = row["included_in_public_release"].strip().lower() in ("true", "1")
            split = row["split_partition_name"].strip()
            item = (row["scene_name"], row["camera_name"], int(row["frame_id"]))
        except (KeyError, ValueError, AttributeError) as e:
            raise ValueError(f"{path}: row {i + 2}: missing or bad column ({e})") from e
        if public_only and not included:
            continue
        out.setdefault(split, []).append(item)
    return out


def tonemap(color: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Hypersim's documented tone mapping of an HDR frame -> [H, W, 3] uint8.

    Args:
        color: [H, W, 3] linear HDR. valid: [H, W] bool pixels that count for exposure
            (``render_entity_id != -1``); default all finite pixels.
    """
    color = np.nan_to_num(np.asarray(color, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if valid is None:
        valid = np.ones(color.shape[:2], dtype=bool)
    if not valid.any():
        scale = 1.0
    else:
        brightness = 0.3 * color[..., 0] + 0.59 * color[..., 1] + 0.11 * color[..., 2]
        current = np.percentile(brightness[valid], _TM_PERCENTILE)
        scale = 0.0 if current < _TM_EPS else np.power(_TM_BRIGHTNESS_TARGET, 1.0 / _TM_GAMMA) / current
    out = np.clip(np.power(np.maximum(scale * color, 0.0), _TM_GAMMA), 0.0, 1.0)
    return (out * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Scene reader
# --------------------------------------------------------------------------------------

_FRAME_RE = re.compile(r"^frame\.(\d{4})\.")


class HypersimScene:
    """One Hypersim scene as a :class:`~viewseg_core.data.source.SceneSource`.

    Args:
        root: the directory holding ``ai_VVV_NNN`` scene folders.
        scene: scene name (``ai_001_001``).
        cams: camera names to use (default: every ``_detail/cam_XX``).
        frames: restrict to these (cam, frame) pairs (e.g. one split of :func:`read_split_csv`).
        camera_table: path of ``metadata_camera_parameters.csv`` (default: searched upward).
        rgb: "auto" (HDF5 if present, else the preview JPG), "hdf5" or "jpg".
        require_rgb: list only frames with an RGB file (False: frames with geometry suffice).
    """

    def __init__(self, root: str | os.PathLike, scene: str, cams: list[str] | None = None,
                 frames: list[tuple[str, int]] | None = None, camera_table: str | os.PathLike | None = None,
                 rgb: str = "auto", require_rgb: bool = True):
        if rgb not in ("auto", "hdf5", "jpg"):
            raise ValueError(f"rgb must be 'auto', 'hdf5' or 'jpg', got {rgb!r}")
        self.root = Path(root)
        self.name = scene
        self.dir = self.root / scene
        if not self.dir.is_dir():
            raise ValueError(f"{self.dir}: missing Hypersim scene directory")
        self.rgb_source = rgb
        table = Path(camera_table) if camera_table is not None else find_camera_table(self.root)
        self.camera_model = read_camera_table(table, scene)
        try:
            self.meters_per_asset_unit = read_meters_per_asset_unit(self.dir)
        except ValueError:
            if self.camera_model.meters_per_asset_unit is None:
                raise
            self.meters_per_asset_unit = self.camera_model.meters_per_asset_unit
        self.K = self.camera_model.K
        detail = self.dir / "_detail"
        if cams is None:
            cams = sorted(p.name for p in detail.glob("cam_*") if p.is_dir())
        wanted = None if frames is None else set((c, int(f)) for c, f in frames)
        self._poses: dict[str, tuple[np.ndarray, np.ndarray, dict[int, int]]] = {}
        self._frames: list[tuple[str, int]] = []
        for cam in cams:
            positions, orientations, index_of = self._read_keyframes(cam)
            self._poses[cam] = (positions, orientations, index_of)
            for frame in sorted(index_of):
                if wanted is not None and (cam, frame) not in wanted:
                    continue
                if require_rgb and self._rgb_path(cam, frame) is None:
                    continue
                if not require_rgb and not (self.geometry_path(cam, frame, "depth_meters").is_file()
                                            or self._rgb_path(cam, frame) is not None):
                    continue
                self._frames.append((cam, frame))

    def _read_keyframes(self, cam: str):
        d = self.dir / "_detail" / cam
        pos = read_hdf5(d / "camera_keyframe_positions.hdf5").astype(np.float64)
        rot = read_hdf5(d / "camera_keyframe_orientations.hdf5").astype(np.float64)
        if pos.ndim != 2 or pos.shape[1] != 3 or rot.shape != (len(pos), 3, 3):
            raise ValueError(f"{d}: keyframe positions {pos.shape} / orientations {rot.shape} "
                             f"must be [N, 3] / [N, 3, 3]")
        idx_path = d / "camera_keyframe_frame_indices.hdf5"
        if idx_path.is_file():
            idx = read_hdf5(idx_path).astype(np.int64).reshape(-1)
            if len(idx) != len(pos):
                raise ValueError(f"{idx_path}: {len(idx)} frame indices for {len(pos)} keyframes")
            index_of = {int(f): i for i, f in enumerate(idx)}
        else:
            index_of = {i: i for i in range(len(pos))}
        return pos, rot, index_of

    # paths ------------------------------------------------------------------------------
    def geometry_path(self, cam: str, frame: int, kind: str) -> Path:
        return self.dir / "images" / f"scene_{cam}_geometry_hdf5" / f"frame.{frame:04d}.{kind}.hdf5"

    def _rgb_path(self, cam: str, frame: int) -> Path | None:
        h5 = self.dir / "images" / f"scene_{cam}_final_hdf5" / f"frame.{frame:04d}.color.hdf5"
        jpg = self.dir / "images" / f"scene_{cam}_final_preview" / f"frame.{frame:04d}.tonemap.jpg"
        order = {"auto": (h5, jpg), "hdf5": (h5,), "jpg": (jpg,)}[self.rgb_source]
        for p in order:
            if p.is_file():
                return p
        return None

    # SceneSource --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._frames)

    def __repr__(self) -> str:
        return f"HypersimScene({self.name!r}, {len(self)} frames)"

    def frame_key(self, index: int) -> tuple[str, int]:
        return self._frames[index]

    def index_of(self, cam: str, frame: int) -> int:
        try:
            return self._frames.index((cam, int(frame)))
        except ValueError:
            raise KeyError(f"{self.name}: no frame {cam}/{frame:04d}") from None

    def c2w(self, cam: str, frame: int) -> np.ndarray:
        """OpenCV camera-to-world (metres) of a keyframe."""
        pos, rot, index_of = self._poses[cam] if cam in self._poses else self._read_keyframes(cam)
        if frame not in index_of:
            raise ValueError(f"{self.dir / '_detail' / cam}: no keyframe for frame {frame}")
        i = index_of[frame]
        return cameras.hypersim_c2w(rot[i], pos[i], self.meters_per_asset_unit)

    def camera(self, index: int) -> CameraFrame:
        cam, frame = self._frames[index]
        return CameraFrame(view_id=f"{cam}/{frame:04d}", K=self.K, c2w=self.c2w(cam, frame),
                           height=self.camera_model.height, width=self.camera_model.width)

    def _check_hw(self, arr: np.ndarray, path: Path) -> None:
        hw = (self.camera_model.height, self.camera_model.width)
        if arr.shape[:2] != hw:
            raise ValueError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, but {CAMERA_TABLE} "
                             f"says {hw[1]}x{hw[0]} for {self.name}")

    def load_depth_frame(self, cam: str, frame: int) -> np.ndarray:
        """[H, W] float32 planar depth (metres, NaN = no geometry) of one frame."""
        path = self.geometry_path(cam, frame, "depth_meters")
        dist = read_hdf5(path)
        if dist.ndim != 2:
            raise ValueError(f"{path}: depth_meters must be [H, W], got {dist.shape}")
        self._check_hw(dist, path)
        dist = dist.astype(np.float64)
        dist[~(np.isfinite(dist) & (dist > 0))] = np.nan          # no geometry behind the pixel
        return cameras.distance_to_planar_depth(dist, self.K).astype(np.float32)

    def load_labels_frame(self, cam: str, frame: int) -> np.ndarray | None:
        path = self.geometry_path(cam, frame, "semantic")
        if not path.is_file():
            return None
        sem = read_hdf5(path)
        if sem.ndim != 2 or not np.issubdtype(sem.dtype, np.integer):
            raise ValueError(f"{path}: semantic must be [H, W] integers, got {sem.shape} {sem.dtype}")
        self._check_hw(sem, path)
        return nyu40_to_classes(sem)

    def load_rgb_frame(self, cam: str, frame: int) -> np.ndarray:
        path = self._rgb_path(cam, frame)
        if path is None:
            raise ValueError(f"{self.dir / 'images'}: no colour image for {cam} frame {frame:04d}")
        if path.suffix == ".jpg":
            import cv2
            data = np.fromfile(path, dtype=np.uint8)
            img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            if img is None:
                raise ValueError(f"{path}: not a readable JPEG (corrupt or truncated)")
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        else:
            color = read_hdf5(path)
            if color.ndim != 3 or color.shape[2] != 3:
                raise ValueError(f"{path}: color must be [H, W, 3], got {color.shape}")
            ent_path = self.geometry_path(cam, frame, "render_entity_id")
            valid = read_hdf5(ent_path) != -1 if ent_path.is_file() else None
            rgb = tonemap(color, valid)
        self._check_hw(rgb, path)
        return rgb

    def load_depth(self, index: int) -> np.ndarray | None:
        cam, frame = self._frames[index]
        if not self.geometry_path(cam, frame, "depth_meters").is_file():
            return None
        return self.load_depth_frame(cam, frame)

    def load_view(self, index: int) -> View:
        cam, frame = self._frames[index]
        info = self.camera(index)
        return View(rgb=self.load_rgb_frame(cam, frame), K=info.K, c2w=info.c2w,
                    labels=self.load_labels_frame(cam, frame), depth=self.load_depth(index),
                    view_id=info.view_id, meta={"scene": self.name, "cam": cam, "frame": frame})


def list_scenes(root: str | os.PathLike) -> list[str]:
    """Hypersim scene names (``ai_*`` directories) under ``root``."""
    return sorted(p.name for p in Path(root).glob("ai_*") if p.is_dir())


def split_scenes(root: str | os.PathLike, split_csv: str | os.PathLike,
                 split: str) -> dict[str, list[tuple[str, int]]]:
    """{scene: [(cam, frame), ...]} of one official split, for the scenes present under ``root``.

    Pass each item to ``HypersimScene(root, scene, frames=frames)`` (or use :func:`load_split`).
    """
    table = read_split_csv(split_csv)
    if split not in table:
        raise ValueError(f"{split_csv}: no split {split!r} (has {sorted(table)})")
    present = set(list_scenes(root))
    by_scene: dict[str, list[tuple[str, int]]] = {}
    for scene, cam, frame in table[split]:
        if scene in present:
            by_scene.setdefault(scene, []).append((cam, frame))
    return dict(sorted(by_scene.items()))


def load_split(root: str | os.PathLike, split_csv: str | os.PathLike, split: str,
               **kwargs) -> list[HypersimScene]:
    """The scenes of one official split, each restricted to that split's public frames."""
    return [HypersimScene(root, s, frames=f, **kwargs) for s, f in split_scenes(root, split_csv, split).items()]


def inspect_frame(root: str | os.PathLike, scene: str, cam: str, frame: int,
                  camera_table: str | os.PathLike | None = None) -> dict:
    """Camera model, pose and planar-depth statistics of one frame (geometry files suffice)."""
    hs = HypersimScene(root, scene, cams=[cam], camera_table=camera_table, require_rgb=False)
    depth = hs.load_depth_frame(cam, int(frame))
    h, w = depth.shape
    finite = depth[np.isfinite(depth)]
    stats = {"valid_fraction": float(finite.size / depth.size)}
    if finite.size:
        stats.update(min=float(finite.min()), median=float(np.median(finite)), max=float(finite.max()))
    centre = depth[h // 2, w // 2]
    stats["center"] = float(centre) if np.isfinite(centre) else None
    stats["center_pixel_rc"] = [h // 2, w // 2]
    return {"scene": scene, "cam": cam, "frame": int(frame),
            "width": hs.camera_model.width, "height": hs.camera_model.height,
            "K": hs.K.tolist(), "M_cam_from_uv": hs.camera_model.M_cam_from_uv.tolist(),
            "tilt_shift": hs.camera_model.tilt_shift, "meters_per_asset_unit": hs.meters_per_asset_unit,
            "c2w_opencv_m": hs.c2w(cam, int(frame)).tolist(), "planar_depth_m": stats}


__all__ = ["HypersimScene", "HypersimCamera", "read_hdf5", "read_meters_per_asset_unit", "read_camera_table",
           "find_camera_table", "read_split_csv", "tonemap", "list_scenes", "split_scenes", "load_split",
           "inspect_frame"]
