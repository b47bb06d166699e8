"""2D pretraining of an encoder with its class head (``viewseg pretrain-2d``).

Trains a DeepLabv3+ (or any :data:`~viewseg_core.model.encoder.ENCODER_NAMES` encoder) on
images with label PNGs and writes a ``viewseg-encoder`` checkpoint that
:func:`~viewseg_core.model.weights.load_encoder_weights` (and so ``ModelConfig.encoder_weights``)
starts the field's encoder from. Layouts:

- ``ade20k``: ``ADEChallengeData2016/{images,annotations}/{training,validation}/*.{jpg,png}``;
  label 0 ("other") is ignored and label k becomes class k-1 (150 classes).
- ``folder``: ``images/*.{jpg,png}`` beside ``labels/*.png`` with the same stem; labels are
  class ids with 255 = ignore (37 viewseg classes unless ``--num-classes``).
- ``scenes``: a viewseg scene folder, or a folder of them (``viewseg synth`` output),
  read with :mod:`viewseg_core.data.scene_folder`; the 37 viewseg classes.
"""
from __future__ import annotations

import argparse
import functools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from viewseg_core.atomic_io import check_writable
from viewseg_core.classes import CLASS_NAMES, IGNORE_LABEL
from viewseg_core.cli import image_size, nonnegative_int, positive_float, positive_int, resolve_device
from viewseg_core.metrics import confusion_matrix, semantic_scores
from viewseg_core.model.encoder import ENCODER_NAMES, NORM_MODES, build_encoder
from viewseg_core.model.weights import load_encoder_weights, save_encoder

ADE20K_NUM_CLASSES = 150
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Sample:
    """One training image: an image and a label file, or view ``index`` of scene folder ``scene``
    (plain fields, so DataLoader workers can receive it under any start method)."""

    name: str
    image: Path | None = None
    label: Path | None = None
    scene: Path | None = None
    index: int = 0


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_label(path: Path) -> np.ndarray:
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise ValueError(f"cannot read label PNG {path}")
    if lab.ndim != 2:
        raise ValueError(f"label PNG {path} must be single-channel, got shape {lab.shape}")
    return lab


def ade20k_samples(root: Path, split: str) -> list[Sample]:
    """ADEChallengeData2016 pairs for split ``training`` or ``validation``."""
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    img_dir, ann_dir = root / "images" / split, root / "annotations" / split
    if not img_dir.is_dir() or not ann_dir.is_dir():
        raise ValueError(f"{root} is not an ADEChallengeData2016 folder: {img_dir} or {ann_dir} is missing")
    samples = []
    for img in sorted(img_dir.glob("*.jpg")):
        ann = ann_dir / f"{img.stem}.png"
        if not ann.is_file():
            raise ValueError(f"ADE20k image {img} has no annotation {ann}")
        samples.append(Sample(img.stem, img, ann))
    return samples


def ade20k_labels(lab: np.ndarray) -> np.ndarray:
    """ADE20k annotation (0 = other, 1..150) -> class ids 0..149, 255 = ignore."""
    lab = lab.astype(np.int64)
    return np.where((lab >= 1) & (lab <= ADE20K_NUM_CLASSES), lab - 1, IGNORE_LABEL).astype(np.uint8)


def folder_samples(root: Path) -> list[Sample]:
    """``images/NAME.{jpg,png}`` with ``labels/NAME.png``."""
    img_dir, lab_dir = root / "images", root / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise ValueError(f"{root} must hold images/ and labels/ folders for the 'folder' layout")
    samples = []
    for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
        lab = lab_dir / f"{img.stem}.png"
        if not lab.is_file():
            raise ValueError(f"image {img} has no label PNG {lab}")
        samples.append(Sample(img.stem, img, lab))
    return samples


def scene_samples(root: Path, split: str = "training") -> list[Sample]:
    """Every labelled view of the viewseg scene folders under ``root``.

    With a ``splits.json`` (``viewseg synth`` output) only the scenes of its ``train``
    (``split="training"``) or ``val`` (``"validation"``) split are used, so the 2D model
    never sees the scenes ViewSeg is evaluated on. Without one, every scene is training data.
    """
    from viewseg_core.data.scene_folder import find_scene_folders
    from viewseg_core.data.synth.generate import SPLITS_FILE, read_splits

    if (root / SPLITS_FILE).is_file():
        names = read_splits(root)["train" if split == "training" else "val"]
        scene_dirs = [root / n for n in names]
    elif split == "training":
        scene_dirs = find_scene_folders(root)
    else:
        return []
    if not scene_dirs:
        raise ValueError(f"no viewseg scene folders (cameras.json) under {root}")
    return [Sample(f"{d.name}/{i}", scene=d, index=i) for d in scene_dirs for i in range(len(_scene_folder(d)))]


@functools.lru_cache(maxsize=32)
def _scene_folder(scene: Path):
    """One parsed cameras.json per scene and process (workers each build their own)."""
    from viewseg_core.data.scene_folder import SceneFolder

    return SceneFolder(scene)


def _load_scene_view(scene: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    folder = _scene_folder(scene)
    labels = folder.load_labels(index)
    if labels is None:
        raise ValueError(f"scene {scene} view {index}: no labels to pretrain on")
    return folder.load_rgb(index), labels


def detect_layout(root: Path) -> str:
    if (root / "ADEChallengeData2016").is_dir() or (root / "annotations").is_dir():
        return "ade20k"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "folder"
    from viewseg_core.data.scene_folder import find_scene_folders

    if find_scene_folders(root):
        return "scenes"
    raise ValueError(f"cannot tell the layout of {root}: expected ADEChallengeData2016, images/+labels/, "
                     f"or scene folders with cameras.json")


class SegmentationDataset(Dataset):
    """Resized (image bilinear, labels nearest) pairs, optionally flipped at random."""

    def __init__(self, samples: Sequence[Sample], size_hw: tuple[int, int], ade20k: bool,
                 augment: bool, num_classes: int) -> None:
        if not samples:
            raise ValueError("no training images found")
        self.samples, self.size_hw, self.ade20k = list(samples), size_hw, ade20k
        self.augment, self.num_classes = augment, num_classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.samples[i]
        if s.scene is not None:
            rgb, lab = _load_scene_view(s.scene, s.index)
        else:
            rgb, lab = _read_rgb(s.image), _read_label(s.label)
        if rgb.shape[:2] != lab.shape[:2]:
            raise ValueError(f"{s.name}: image {rgb.shape[:2]} and labels {lab.shape[:2]} differ in size")
        lab = ade20k_labels(lab) if self.ade20k else lab.astype(np.int64)
        h, w = self.size_hw
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab.astype(np.uint16), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)
        lab[(lab < 0) | (lab >= self.num_classes)] = IGNORE_LABEL
        if self.augment and random.random() < 0.5:
            rgb, lab = rgb[:, ::-1], lab[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
        return x, torch.from_numpy(np.ascontiguousarray(lab))


@dataclass
class PretrainConfig:
    data: str
    out: str
    layout: str = "auto"
    encoder: str = "deeplabv3plus_resnet50"
    norm: str = "bn"
    feature_dim: int = 256
    num_classes: int = 0            # 0: from the layout (150 for ADE20k, 37 otherwise)
    size_hw: tuple[int, int] = (240, 320)
    epochs: int = 1
    max_steps: int = 0              # 0: no limit beyond epochs
    batch_size: int = 8
    lr: float = 0.01
    weight_decay: float = 1e-4
    init: str = ""                  # local backbone / encoder weights to start from
    workers: int = 2
    device: str = "auto"
    seed: int = 0
    progress: bool = True


def _samples(cfg: PretrainConfig, split: str) -> tuple[list[Sample], str]:
    root = Path(cfg.data)
    if not root.is_dir():
        raise ValueError(f"--data {root} is not a folder")
    layout = detect_layout(root) if cfg.layout == "auto" else cfg.layout
    if layout == "ade20k":
        return ade20k_samples(root, split), layout
    if layout == "scenes":
        return scene_samples(root, split), layout
    if split != "training":
        return [], layout  # an images/labels folder has no validation split
    if layout == "folder":
        return folder_samples(root), layout
    raise ValueError(f"unknown layout {layout!r}; choose auto, ade20k, folder or scenes")


def evaluate(encoder: torch.nn.Module, loader: DataLoader, num_classes: int, device: torch.device) -> dict:
    """mIoU and pixel accuracy of ``encoder.segment`` over ``loader``."""
    encoder.eval()
    conf = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    with torch.no_grad():
        for x, y in loader:
            pred = encoder.segment(x.to(device)).argmax(1).cpu().numpy()
            conf += confusion_matrix(pred, y.numpy(), num_classes)
    scores = semantic_scores(conf)
    return {"miou": float(scores["miou"]), "pacc": float(scores["pacc"])}


def pretrain(cfg: PretrainConfig) -> dict:
    """Train and save; returns a summary dict (steps, first/last loss, metrics, path)."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    check_writable(cfg.out)  # before training, not after it
    train_samples, layout = _samples(cfg, "training")
    val_samples, _ = _samples(cfg, "validation")
    num_classes = cfg.num_classes or (ADE20K_NUM_CLASSES if layout == "ade20k" else len(CLASS_NAMES))
    class_names = [f"ade20k_{i + 1}" for i in range(num_classes)] if layout == "ade20k" else \
        list(CLASS_NAMES[:num_classes])
    if cfg.norm == "bn" and cfg.batch_size < 2:
        raise ValueError("--batch-size must be >= 2 with BatchNorm ('bn'): ASPP's image-pooling branch "
                         "normalises a 1x1 map; use --norm frozen_bn for batch size 1")
    encoder = build_encoder(cfg.encoder, feature_dim=cfg.feature_dim, num_classes=num_classes,
                            norm=cfg.norm)
    if cfg.init:
        # The class head of an initialising checkpoint rarely matches the new label set.
        load_encoder_weights(encoder, cfg.init, include_head=False)
    encoder.to(device)

    ds = SegmentationDataset(train_samples, cfg.size_hw, layout == "ade20k", True, num_classes)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=len(ds) >= cfg.batch_size,
                        num_workers=cfg.workers, generator=gen, pin_memory=device.type == "cuda")
    total = cfg.epochs * len(loader)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    # DeepLab's recipe: SGD with momentum and a poly(0.9) learning-rate decay.
    opt = torch.optim.SGD(encoder.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - min(s, total - 1) / max(total, 1)) ** 0.9)
    losses: list[float] = []
    step, t0 = 0, time.time()
    bar = tqdm(total=total, desc="pretrain-2d", disable=not cfg.progress, unit="step")
    encoder.train()
    while step < total:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = encoder.segment(x)
            loss = F.cross_entropy(logits, y, ignore_index=IGNORE_LABEL)
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite loss at step {step} (are all labels ignored?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if step >= total:
                break
    bar.close()
    metrics = {}
    if val_samples:
        val = DataLoader(SegmentationDataset(val_samples, cfg.size_hw, layout == "ade20k", False, num_classes),
                         batch_size=cfg.batch_size, num_workers=cfg.workers)
        metrics = evaluate(encoder, val, num_classes, device)
    path = save_encoder(encoder.cpu(), cfg.out, class_names,
                        extra={"layout": layout, "steps": step, "norm": cfg.norm,
                               "size_hw": list(cfg.size_hw), "metrics": metrics})
    return {"steps": step, "first_loss": losses[0] if losses else math.nan,
            "last_loss": losses[-1] if losses else math.nan, "metrics": metrics, "path": str(path),
            "seconds": time.time() - t0}


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrain-2d", help="train the 2D encoder + class head on labelled images",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="ADEChallengeData2016 root, images/+labels/ folder, "
                                                 "or a folder of viewseg scene folders")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--layout", default="auto", choices=("auto", "ade20k", "folder", "scenes"))
    p.add_argument("--encoder", default="deeplabv3plus_resnet50", choices=ENCODER_NAMES)
    p.add_argument("--norm", default="bn", choices=NORM_MODES)
    p.add_argument("--feature-dim", type=positive_int, default=256)
    p.add_argument("--num-classes", type=nonnegative_int, default=0, help="0: 150 for ADE20k, 37 otherwise")
    p.add_argument("--size", type=image_size, default=(320, 240), help="training size WIDTHxHEIGHT (320x240)")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--max-steps", type=nonnegative_int, default=0, help="0: no limit beyond --epochs")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--lr", type=positive_float, default=0.01)
    p.add_argument("--init", default="", help="local ImageNet backbone or encoder weights to start from")
    p.add_argument("--workers", type=nonnegative_int, default=2, help="data loader processes (0: in process)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = PretrainConfig(data=args.data, out=args.out, layout=args.layout, encoder=args.encoder,
                         norm=args.norm, feature_dim=args.feature_dim, num_classes=args.num_classes,
                         size_hw=args.size[::-1], epochs=args.epochs, max_steps=args.max_steps,
                         batch_size=args.batch_size, lr=args.lr, init=args.init, workers=args.workers,
                         device=args.device, seed=args.seed)
    summary = pretrain(cfg)
    print(f"pretrain-2d: {summary['steps']} steps, loss {summary['first_loss']:.3f} -> "
          f"{summary['last_loss']:.3f}, metrics {summary['metrics']}, wrote {summary['path']}")
    return 0
