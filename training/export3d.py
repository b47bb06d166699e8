"""``viewseg export-3d``: a coloured semantic point cloud of a scene, rendered by ViewSeg.

    viewseg export-3d --checkpoint runs/synthetic_small/model.pt --data data/synthetic_small \\
        --scene synth_00003 --out cloud.ply   # synth_s0_00003 for data made without --legacy-names

ViewSeg sees a few source views of the scene (``--views``, default: ``num_sources`` views
spread evenly over the scene's trajectory) and renders many query cameras around them:
each source pose turned by every (yaw, pitch) offset, and the same offsets at the pose
half-way between consecutive sources. Every rendered pixel with a depth and a confidence
of at least ``--min-confidence`` is lifted to a world point; the points are fused on a
voxel grid (mean position and colour, majority label per voxel) and written as a PLY with
``x y z`` (float32, metres, the scene's world frame), ``red green blue`` (uchar: the class
colour, or the rendered RGB with ``--color rgb``) and ``label`` (uchar class id, see
:data:`viewseg_core.classes.CLASS_NAMES`). ``--ascii`` writes ASCII instead of binary.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from training.baselines import lift_depth
from training.data import load_scenes
from training.evaluate import SOURCE_DEPTH_CHOICES, load_viewseg, resolve_data_config, resolve_source_depth, set_render_chunk
from training.panels import model_reads_depth
from viewseg_core.atomic_io import check_writable, write_bytes_atomic
from viewseg_core.classes import NUM_CLASSES, PALETTE
from viewseg_core.cli import fraction, nonnegative_float, nonnegative_int, positive_int, resolve_device
from viewseg_core.data.dataset import measured_depth, resize_view
from viewseg_core.data.source import SceneSource

PLY_PROPERTIES = (("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                  ("label", "u1"))
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_PLY_NAMES = {"<f4": "float", "u1": "uchar"}


# --------------------------------------------------------------------------------------
# PLY
# --------------------------------------------------------------------------------------

@dataclass
class PointCloud:
    """points [N, 3] float32 metres; colors [N, 3] uint8; labels [N] uint8 class ids."""

    points: np.ndarray
    colors: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.points)
        if self.points.shape != (n, 3) or self.colors.shape != (n, 3) or self.labels.shape != (n,):
            raise ValueError(f"PointCloud: points {self.points.shape}, colors {self.colors.shape} and labels "
                             f"{self.labels.shape} must be [N, 3], [N, 3] and [N]")

    def __len__(self) -> int:
        return len(self.points)


def write_ply(path: str | Path, cloud: PointCloud, binary: bool = True, comments: Sequence[str] = ()) -> Path:
    """Write ``x y z red green blue label`` vertices (binary little-endian or ASCII)."""
    rows = np.empty(len(cloud), dtype=list(PLY_PROPERTIES))
    for i, axis in enumerate("xyz"):
        rows[axis] = cloud.points[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        rows[channel] = cloud.colors[:, i]
    rows["label"] = cloud.labels
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
              *[f"comment {c}" for c in comments], f"element vertex {len(cloud)}",
              *[f"property {_PLY_NAMES[t]} {name}" for name, t in PLY_PROPERTIES], "end_header"]
    body = rows.tobytes() if binary else "".join(
        f"{r['x']:.6f} {r['y']:.6f} {r['z']:.6f} {r['red']} {r['green']} {r['blue']} {r['label']}\n"
        for r in rows).encode("ascii")
    return write_bytes_atomic(path, ("\n".join(header) + "\n").encode("ascii") + body)


def read_ply(path: str | Path) -> dict[str, np.ndarray]:
    """The vertex properties of a PLY (ASCII or binary little-endian) as {name: [N] array}."""
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path} is not a PLY file (no 'ply' magic / 'end_header')")
    fmt, count, props, element = None, 0, [], None
    for line in data[:end].decode("ascii").splitlines()[1:]:
        words = line.split()
        if not words or words[0] == "comment":
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
            elif props or count:
                raise ValueError(f"{path}: only a single 'vertex' element is supported, found {element!r}")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise ValueError(f"{path}: unsupported property {line!r}")
            props.append((words[2], _PLY_TYPES[words[1]]))
    body = data[end + len(b"end_header\n"):]
    if fmt == "binary_little_endian":
        dtype = np.dtype([(n, "<" + t) for n, t in props])
        if len(body) < count * dtype.itemsize:
            raise ValueError(f"{path}: {count} vertices need {count * dtype.itemsize} bytes, found {len(body)}")
        rows = np.frombuffer(body[:count * dtype.itemsize], dtype=dtype)
        return {n: rows[n].copy() for n, _ in props}
    if fmt == "ascii":
        lines = body.decode("ascii").split("\n")[:count]
        table = np.array([ln.split() for ln in lines], dtype=np.float64).reshape(count, len(props))
        return {n: table[:, i].astype(t) for i, (n, t) in enumerate(props)}
    raise ValueError(f"{path}: unsupported PLY format {fmt!r} (ascii or binary_little_endian)")


# --------------------------------------------------------------------------------------
# Query cameras and fusion
# --------------------------------------------------------------------------------------

def _rot(axis: str, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # y


def _axis_angle(R: np.ndarray) -> tuple[np.ndarray, float]:
    angle = float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    n = np.linalg.norm(v)
    if n < 1e-9:  # no rotation, or a half turn (no unique half-way rotation: keep the first)
        return np.array([0.0, 0.0, 1.0]), 0.0
    return v / n, angle


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def halfway_pose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The pose half-way between c2w ``a`` and ``b`` (mid position, half the relative rotation)."""
    axis, angle = _axis_angle(a[:3, :3].T @ b[:3, :3])
    out = np.eye(4)
    out[:3, :3] = a[:3, :3] @ _rodrigues(axis, angle / 2)
    out[:3, 3] = (a[:3, 3] + b[:3, 3]) / 2
    return out


def query_poses(source_c2w: np.ndarray, yaw_deg: Sequence[float], pitch_deg: Sequence[float],
                halfway: bool = True) -> np.ndarray:
    """[Q, 4, 4] cameras around the sources [V, 4, 4]: each anchor turned by every (yaw, pitch)
    offset about its own axes (yaw about the camera's y, pitch about its x)."""
    anchors = list(source_c2w)
    if halfway:
        anchors += [halfway_pose(source_c2w[i], source_c2w[i + 1]) for i in range(len(source_c2w) - 1)]
    poses = []
    for c2w in anchors:
        for yaw in yaw_deg:
            for pitch in pitch_deg:
                p = np.array(c2w, dtype=np.float64, copy=True)
                p[:3, :3] = p[:3, :3] @ _rot("y", yaw) @ _rot("x", pitch)
                poses.append(p)
    return np.stack(poses)


def fuse(K: torch.Tensor, c2w: torch.Tensor, depth: torch.Tensor, labels: torch.Tensor, rgb: torch.Tensor,
         confidence: torch.Tensor, min_confidence: float = 0.5, voxel: float = 0.02,
         color: str = "semantic") -> PointCloud:
    """Rendered views -> one fused point cloud.

    Args:
        K: [Q, 3, 3]; c2w: [Q, 4, 4]; depth: [Q, H, W] planar (NaN = empty); labels: [Q, H, W]
        (255 = unknown); rgb: [Q, H, W, 3] uint8; confidence: [Q, H, W].
        voxel: grid size in metres (<= 0: no fusion, every pixel is a point).
        color: "semantic" (class palette) or "rgb" (rendered colour).
    """
    if color not in ("semantic", "rgb"):
        raise ValueError(f"color must be 'semantic' or 'rgb', got {color!r}")
    points = lift_depth(K.double(), c2w.double(), depth.double()).reshape(-1, 3)
    labels = labels.reshape(-1).long()
    keep = (torch.isfinite(depth.reshape(-1)) & (labels >= 0) & (labels < NUM_CLASSES)
            & (confidence.reshape(-1) >= min_confidence) & torch.isfinite(points).all(-1))
    points, labels = points[keep], labels[keep]
    colors = rgb.reshape(-1, 3)[keep].double()
    if voxel > 0 and len(points):
        cells = torch.floor(points / voxel).long()
        _, inverse = torch.unique(cells, dim=0, return_inverse=True)
        m = int(inverse.max()) + 1
        count = torch.bincount(inverse, minlength=m).double()[:, None]
        points = torch.zeros(m, 3, dtype=torch.float64).index_add_(0, inverse, points) / count
        colors = torch.zeros(m, 3, dtype=torch.float64).index_add_(0, inverse, colors) / count
        votes = torch.bincount(inverse * NUM_CLASSES + labels, minlength=m * NUM_CLASSES)
        labels = votes.reshape(m, NUM_CLASSES).argmax(1)
    lab = labels.numpy().astype(np.uint8)
    cols = PALETTE[lab] if color == "semantic" else np.clip(colors.numpy() + 0.5, 0, 255).astype(np.uint8)
    return PointCloud(points.numpy().astype(np.float32), np.ascontiguousarray(cols, dtype=np.uint8), lab)


# --------------------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------------------

@dataclass
class ExportConfig:
    checkpoint: str
    scene: str
    out: str
    data: str = ""
    config: str = ""
    overrides: list[str] = field(default_factory=list)
    views: tuple[str, ...] = ()          # source view ids; () = num_sources spread over the scene
    yaw_deg: tuple[float, ...] = (-30.0, 0.0, 30.0)
    pitch_deg: tuple[float, ...] = (-15.0, 0.0, 15.0)
    halfway: bool = True
    min_confidence: float = 0.5
    voxel: float = 0.02
    color: str = "semantic"
    binary: bool = True
    batch: int = 4                       # query cameras per render call
    chunk_size: int = 0                  # rays per render chunk (0: 128 on CPU, the model's own on GPU)
    device: str = "auto"
    threads: int = 0
    source_depth: str = "auto"           # RGB-D models: auto | none | clean | sensor (as viewseg eval)


def find_scene(data_cfg, scene: str) -> SceneSource:
    """A scene folder path, a scene folder under the data root, or a scene name in any split."""
    from viewseg_core.data.scene_folder import SceneFolder, is_scene_folder

    for candidate in (Path(scene), Path(data_cfg.root) / scene):
        if is_scene_folder(candidate):
            return SceneFolder(candidate)
    seen: list[str] = []
    for split in dict.fromkeys((data_cfg.train_split, data_cfg.val_split, data_cfg.eval_split)):
        try:
            scenes = load_scenes(data_cfg, split)
        except (ValueError, FileNotFoundError):
            continue
        for s in scenes:
            if s.name == scene:
                return s
            seen.append(s.name)
    raise ValueError(f"no scene {scene!r} under {data_cfg.root} (scenes: {sorted(set(seen))[:20]})")


def export_3d(cfg: ExportConfig) -> tuple[Path, PointCloud, int]:
    """Render, fuse and write; returns (path, cloud, number of rendered views)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    check_writable(cfg.out)  # before rendering, not after it
    model, train_config = load_viewseg(cfg.checkpoint)
    model = model.to(device).eval()
    set_render_chunk(model, cfg.chunk_size, device)
    data_cfg = resolve_data_config(train_config, cfg.config, cfg.overrides, cfg.data)
    source = find_scene(data_cfg, cfg.scene)
    ids = [source.camera(i).view_id for i in range(len(source))]
    if cfg.views:
        missing = [v for v in cfg.views if v not in ids]
        if missing:
            raise ValueError(f"scene {source.name!r} has no views {missing}")
        chosen = [ids.index(v) for v in cfg.views]
    else:
        n = min(data_cfg.num_sources, len(ids))
        chosen = sorted(set(np.linspace(0, len(ids) - 1, n).round().astype(int).tolist()))
    views = [resize_view(source.load_view(i), tuple(data_cfg.image_size) if data_cfg.image_size else None)
             for i in chosen]
    H, W = views[0].height, views[0].width
    rgb = torch.stack([torch.from_numpy(np.ascontiguousarray(v.rgb)).permute(2, 0, 1) for v in views])
    src_K = torch.from_numpy(np.stack([v.K for v in views])).float().to(device)
    src_c2w = torch.from_numpy(np.stack([v.c2w for v in views])).float().to(device)
    depth = None  # [1, V, H, W] for an RGB-D model: what the depth camera measured of each source
    mode = resolve_source_depth(cfg.source_depth, model_reads_depth(model), data_cfg.source_depth)
    if model_reads_depth(model) and mode != "none":
        depth = torch.stack([
            measured_depth(torch.from_numpy(v.depth) if v.depth is not None else torch.full((H, W), float("nan")),
                           mode, data_cfg.depth_sensor, source.name, v.view_id) for v in views])[None].to(device)
    poses = query_poses(np.stack([v.c2w for v in views]), cfg.yaw_deg, cfg.pitch_deg, cfg.halfway)
    K_q = src_K[:1].expand(len(poses), 3, 3).cpu()  # the first source's camera for every query
    c2w_q = torch.from_numpy(poses).float()
    with torch.no_grad():
        feats = model.encode_sources(rgb[None].to(device))
        outs = []
        for start in range(0, len(poses), cfg.batch):
            B = min(cfg.batch, len(poses) - start)
            sources = model.make_sources(feats.expand(B, *feats.shape[1:]), src_K[None].expand(B, -1, 3, 3),
                                         src_c2w[None].expand(B, -1, 4, 4), H, W,
                                         rgb=rgb[None].to(device).expand(B, *rgb.shape),
                                         **({} if depth is None else {"depth": depth.expand(B, *depth.shape[1:])}))
            outs.append(model.render(K_q[start:start + B], c2w_q[start:start + B], H, W, sources).map(
                lambda x: x.float().cpu() if x.is_floating_point() else x.cpu()))
    cat = lambda name: torch.cat([getattr(o, name) for o in outs])  # noqa: E731
    rendered_rgb = (cat("rgb").clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    labels = torch.cat([o.labels for o in outs])  # 255 where the ray is background
    cloud = fuse(K_q, c2w_q, cat("depth"), labels, rendered_rgb, cat("confidence"), cfg.min_confidence,
                 cfg.voxel, cfg.color)
    comments = [f"viewseg export-3d of scene {source.name} from views {[ids[i] for i in chosen]}",
                "x y z: metres in the scene's world frame; label: viewseg class id (0-36)",
                f"{len(poses)} rendered views, voxel {cfg.voxel} m, min confidence {cfg.min_confidence}, "
                f"colour {cfg.color}"]
    path = write_ply(cfg.out, cloud, binary=cfg.binary, comments=comments)
    return path, cloud, len(poses)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):  # no offsets would render no views
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser("export-3d", help="render views around the sources into a semantic point "
                                                "cloud (PLY)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model.pt or a training checkpoint")
    p.add_argument("--data", default="", help="data root (default: the checkpoint's / config's)")
    p.add_argument("--scene", required=True, help="scene name under --data, or a scene folder path")
    p.add_argument("--out", required=True, help="PLY file to write")
    p.add_argument("--config", default="", help="YAML whose data section sets image size and num_sources")
    p.add_argument("--views", default="", help="comma-separated source view ids (default: spread evenly)")
    p.add_argument("--yaw", type=_floats, default=ExportConfig.yaw_deg, help="yaw offsets, degrees, comma-separated; write --yaw=-30,0,30 when the first is negative")
    p.add_argument("--pitch", type=_floats, default=ExportConfig.pitch_deg, help="pitch offsets, degrees")
    p.add_argument("--no-halfway", action="store_true", help="no query cameras between consecutive sources")
    p.add_argument("--min-confidence", type=fraction, default=0.5)
    p.add_argument("--voxel", type=nonnegative_float, default=0.02, help="fusion voxel size, metres (0 = no fusion)")
    p.add_argument("--color", choices=("semantic", "rgb"), default="semantic")
    p.add_argument("--ascii", action="store_true", help="ASCII PLY (default: binary little-endian)")
    p.add_argument("--batch", type=positive_int, default=4, help="query cameras per render call")
    p.add_argument("--chunk-size", type=nonnegative_int, default=0, help="rays per render chunk (0: 128 on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=nonnegative_int, default=0)
    p.add_argument("--source-depth", choices=SOURCE_DEPTH_CHOICES, default="auto",
                   help="RGB-D models: the sources' depth (sensor model, clean = as stored, none); auto: the "
                        "checkpoint's data.source_depth, or sensor")
    p.add_argument("overrides", nargs="*", help="data.key=value overrides")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = ExportConfig(checkpoint=args.checkpoint, scene=args.scene, out=args.out, data=args.data,
                       config=args.config, overrides=list(args.overrides),
                       views=tuple(v.strip() for v in args.views.split(",") if v.strip()),
                       yaw_deg=tuple(args.yaw), pitch_deg=tuple(args.pitch), halfway=not args.no_halfway,
                       min_confidence=args.min_confidence, voxel=args.voxel, color=args.color,
                       binary=not args.ascii, batch=args.batch, chunk_size=args.chunk_size, device=args.device,
                       threads=args.threads, source_depth=args.source_depth)
    path, cloud, n_views = export_3d(cfg)
    print(f"[export-3d] {n_views} views rendered, {len(cloud)} points -> {path}")
    return 0
