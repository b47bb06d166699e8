#!/usr/bin/env python3
"""Export a 2D segmenter (``viewseg pretrain-2d``) as a small float16 file for the baselines.

    python scripts/export_segmenter.py --segmenter runs/segmenter_2d/segmenter.pt \\
        --out checkpoints/segmenter_small.pt [--check-data data/synthetic_small --check-split test]

CloudSeg and the oracle (``viewseg eval --segmenter ...``, training/baselines.py) need the 2D
segmenter; the committed ``checkpoints/segmenter_small.pt`` lets them run from a clean clone.

- Reads a ``viewseg-encoder`` file (``torch.load(weights_only=True)``) and keeps all its
  metadata (encoder, feature_dim, num_classes, class names, training size and metrics).
- Stores floating-point tensors as float16, except small ones (< 4096 elements: biases,
  BatchNorm statistics) and any float16 cannot hold (|x| > 65504), which stay float32, and
  records what it did under ``export``. ``training.baselines.load_segmenter`` casts every
  tensor back to float32, so the segmenter computes in float32 as before.
- Checks before writing: the bytes load through ``load_segmenter``, and the argmax labels
  of the reloaded segmenter equal the float32 one's on at least ``--min-agreement`` (0.99) of
  the pixels of ``--check-views`` (20) images: views of ``--check-split`` of the scene folders
  under ``--check-data`` when given, otherwise views of procedural rooms rendered in memory
  (the generator of ``viewseg synth``, at the segmenter's training size). Refuses (exit 1,
  nothing written) a file over ``--max-mb`` (30 MB, 10^6 bytes) or a failed check.
- Writes atomically (viewseg_core.atomic_io), then loads the written file once more.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without `pip install -e .`

import numpy as np  # noqa: E402
import torch  # noqa: E402

from viewseg_core.atomic_io import check_writable, write_bytes_atomic  # noqa: E402
from viewseg_core.model.weights import half_state_dict, read_weights_file  # noqa: E402

MB = 1_000_000
CHECK_SEED = 20240  # procedural check rooms: not the seed of any shipped dataset
DEFAULT_SIZE = (60, 80)  # (H, W) when the segmenter does not record its training size


def export_bytes(raw: dict, source: str) -> bytes:
    """The float16 file's bytes: ``raw`` (a viewseg-encoder dict) with float16 weights."""
    out = dict(raw)
    out["state_dict"], halved, kept = half_state_dict(raw["state_dict"])
    out["export"] = {"from": source, "stored_dtype": "float16", "float16_tensors": halved,
                     "float32_tensors": kept}
    buffer = io.BytesIO()
    torch.save(out, buffer)
    return buffer.getvalue()


def folder_images(root: Path, split: str, count: int) -> np.ndarray:
    """[N, H, W, 3] uint8: ``count`` views spread evenly over the scenes of ``split`` under ``root``."""
    from viewseg_core.data.scene_folder import SceneFolder, find_scene_folders

    splits_file = root / "splits.json"
    if splits_file.is_file():
        splits = json.loads(splits_file.read_text()).get("splits", {})
        if split not in splits:
            raise ValueError(f"{splits_file} has no split {split!r} (has {', '.join(sorted(splits))})")
        folders = [root / name for name in splits[split]]
    else:
        folders = find_scene_folders(root)
    scenes = [SceneFolder(f) for f in folders]
    views = [(scene, i) for scene in scenes for i in range(len(scene))]
    if not views:
        raise ValueError(f"no views in split {split!r} under {root}")
    picks = np.linspace(0, len(views) - 1, min(count, len(views))).round().astype(int)
    return np.stack([views[j][0].load_rgb(views[j][1]) for j in picks])


def procedural_images(count: int, size: tuple[int, int], seed: int = CHECK_SEED) -> np.ndarray:
    """[N, H, W, 3] uint8: ``count`` views of procedural rooms (4 views a room), rendered in memory."""
    from viewseg_core.data.synth.generate import SynthConfig, make_scene, render_views, scene_seed

    height, width = size
    per_room = 4
    config = SynthConfig(views=per_room, height=height, width=width)
    images = []
    for room in range((count + per_room - 1) // per_room):
        scene, cams = make_scene(scene_seed(seed, room), config)
        images += [view.rgb for view in render_views(scene, cams, config)]
    return np.stack(images[:count])


@torch.no_grad()
def agreement(reference: torch.nn.Module, exported: torch.nn.Module, images: np.ndarray) -> dict[str, float]:
    """Share of pixels whose argmax label is the same, and the largest probability change."""
    rgb = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    same, total, max_dp = 0, 0, 0.0
    for chunk in rgb.split(4):
        a, b = reference.segment(chunk), exported.segment(chunk)
        same += int((a.argmax(1) == b.argmax(1)).sum())
        total += a.shape[0] * a.shape[-2] * a.shape[-1]
        max_dp = max(max_dp, float((a.softmax(1) - b.softmax(1)).abs().max()))
    return {"pixels": float(total), "agreement": same / total, "max_probability_diff": max_dp}


def main(argv: list[str] | None = None) -> int:
    from training.baselines import load_segmenter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenter", required=True, type=Path, help="viewseg-encoder file (viewseg pretrain-2d)")
    parser.add_argument("--out", required=True, type=Path, help="float16 segmenter file to write")
    parser.add_argument("--check-data", type=Path, help="scene folders whose views the check segments "
                        "(default: procedural rooms rendered in memory)")
    parser.add_argument("--check-split", default="test", help="split of --check-data (default test)")
    parser.add_argument("--check-views", type=int, default=20, help="images in the check (default 20)")
    parser.add_argument("--max-mb", type=float, default=30.0, help="refuse a file larger than this (10^6 bytes)")
    parser.add_argument("--min-agreement", type=float, default=0.99,
                        help="least share of check pixels whose argmax label must not change")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a few small images; extra threads only contend on a shared machine
    if args.check_views < 1:
        parser.error("--check-views must be >= 1")

    try:
        if args.out.resolve() == args.segmenter.resolve():
            raise ValueError(f"--out {args.out} is the input itself: write the export elsewhere")
        check_writable(args.out)
        reference = load_segmenter(args.segmenter)  # one-line error for a file that is not a segmenter
        raw = read_weights_file(args.segmenter)
        size = tuple(int(x) for x in raw.get("size_hw", DEFAULT_SIZE))
        images = folder_images(args.check_data, args.check_split, args.check_views) if args.check_data \
            else procedural_images(args.check_views, size)
    except (FileNotFoundError, ValueError) as error:
        print(f"export_segmenter: {error}", file=sys.stderr)
        return 2
    if isinstance(raw.get("export"), dict) and raw["export"].get("stored_dtype") == "float16":
        print(f"export_segmenter: {args.segmenter} is already a float16 export (of "
              f"{raw['export'].get('from')}); export the float32 original", file=sys.stderr)
        return 2

    data = export_bytes(raw, str(args.segmenter))
    size_mb = len(data) / MB
    fp32_mb = sum(t.numel() * t.element_size() for t in raw["state_dict"].values()) / MB
    print(f"{args.segmenter}: {raw['encoder']} (feature_dim {raw['feature_dim']}, {raw['num_classes']} classes), "
          f"{fp32_mb:.1f} MB of tensors -> {size_mb:.1f} MB file")
    if len(data) > args.max_mb * MB:
        print(f"export_segmenter: refusing to write {args.out}: {size_mb:.1f} MB > --max-mb {args.max_mb:g} MB",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:  # the real loader on the exact bytes
        staged = Path(tmp) / args.out.name
        staged.write_bytes(data)
        exported = load_segmenter(staged)
    dtypes = {t.dtype for t in exported.state_dict().values() if t.is_floating_point()}
    if dtypes != {torch.float32}:
        print(f"export_segmenter: reloaded tensors are {dtypes}, expected float32 only", file=sys.stderr)
        return 1
    where = f"{args.check_split} views of {args.check_data}" if args.check_data else \
        f"views of procedural rooms (seed {CHECK_SEED})"
    check = agreement(reference, exported, images)
    print(f"fp16-stored vs fp32 on {len(images)} {where} ({int(check['pixels'])} pixels): labels equal on "
          f"{100 * check['agreement']:.3f}%, max |d probability| {check['max_probability_diff']:.2e}")
    if check["agreement"] < args.min_agreement:
        print(f"export_segmenter: refusing to write {args.out}: labels agree on less than "
              f"{100 * args.min_agreement:g}% of pixels", file=sys.stderr)
        return 1

    write_bytes_atomic(args.out, data)
    written = load_segmenter(args.out)
    for (name, a), b in zip(exported.state_dict().items(), written.state_dict().values()):
        if not torch.equal(a, b):
            raise RuntimeError(f"{args.out}: tensor {name} differs after reading the written file back")
    print(f"wrote {args.out} ({size_mb:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
