#!/usr/bin/env python3
"""Export a trained ViewSeg as a small demo checkpoint: a viewseg-model file with float16 weights.

    python scripts/export_demo.py --model runs/synthetic_small/model.pt --out checkpoints/demo.pt \\
        [--source-size 60x80] [--data-config training/configs/synthetic_small.yaml]

- Reads a ``viewseg-model`` file or a training checkpoint (``step_N.pt``, the model inside).
- Carries the data settings the model was trained with (the file's ``data``, or a training
  checkpoint's ``config['data']``) into the demo file's ``data``; ``--data-config YAML``
  sets them from a training config's ``data`` section (with its ``base:`` chain) instead,
  for models written before files recorded them. ``viewseg eval`` reads them.
- Re-exporting a demo file (``--model checkpoints/demo.pt --out checkpoints/demo.pt``) keeps
  every stored tensor bit for bit (float16 -> float32 -> float16 is exact) and the original
  ``export.from``; the command refuses to write if any stored tensor would change.
- ``--source-size HxW`` (height x width, as ``data.image_size`` and ``ModelConfig.source_size``)
  sets the size the encoder was trained at, for models trained before training recorded it;
  the ROS node resizes keyframes to it.
- Stores floating-point tensors as float16 (half the bytes), except small ones (< 4096
  elements: biases, norm statistics; a few KB in all) and any that float16 cannot hold
  (|x| > 65504), which stay float32. :func:`viewseg_core.model.weights.load_model` casts every
  tensor back to the module's dtype, so the loaded model computes in float32 as before.
- Checks before writing: the bytes reload with ``torch.load(weights_only=True)`` into a
  strict ViewSeg, and the reloaded model's argmax labels equal the float32 model's on at
  least ``--min-agreement`` (0.99) of the pixels of rendered test views (procedural room 0:
  4 keyframes along the simulated camera's walk, unseen query poses beside it), over all
  pixels and over the pixels the float32 model calls occupied. Refuses (exit 1, nothing
  written) a file over ``--max-mb`` (30 MB, 10^6 bytes) or a failed check.
- Writes atomically, then loads the written file with ``load_model`` once more.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without `pip install -e .`

import numpy as np  # noqa: E402
import torch  # noqa: E402

from viewseg_core.atomic_io import write_bytes_atomic  # noqa: E402
from viewseg_core.model.viewseg import ViewSeg  # noqa: E402
from viewseg_core.model.weights import (FP16_MAX, MODEL_FORMAT, SMALL_TENSOR, half_state_dict,  # noqa: E402,F401
                                        load_model, model_checkpoint, model_data, model_from_checkpoint,
                                        read_weights_file)

MB = 1_000_000
VERIFY_SIZE = (60, 80)  # (H, W) of the test views when the model has no source_size
VERIFY_QUERIES = 2
VERIFY_SOURCES = 4


def parse_hw(text: str) -> tuple[int, int]:
    """'60x80' -> (60, 80): height x width."""
    try:
        height, width = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--source-size {text!r}: expected HEIGHTxWIDTH, e.g. 60x80") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"--source-size {text!r}: height and width must be positive")
    return height, width


def read_data_config(path: Path) -> dict:
    """The ``data`` section of training config ``path`` (with its ``base:`` chain) as a full
    plain ``DataConfig`` dict, checked by the same reader that training uses."""
    from training.config_io import from_dict, read_config_dict, to_dict
    from training.data import DataConfig

    section = read_config_dict(path).get("data") or {}
    if not isinstance(section, dict):
        raise ValueError(f"config {path}: 'data' must be a mapping")
    return to_dict(from_dict(DataConfig, section, "data."))


def export_bytes(model: ViewSeg, source: str, data: dict | None = None, data_from: str = "") -> bytes:
    """The demo checkpoint's bytes: ``model_checkpoint(model, data)`` with float16 weights."""
    checkpoint = model_checkpoint(model, data)
    checkpoint["state_dict"], halved, kept = half_state_dict(checkpoint["state_dict"])
    checkpoint["export"] = {"from": source, "stored_dtype": "float16", "float16_tensors": halved,
                            "float32_tensors": kept}
    if data is not None and data_from:
        checkpoint["export"]["data_from"] = data_from
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def reload(data: bytes, source: str) -> ViewSeg:
    """What load_model does with a file holding ``data`` (weights_only=True, strict, cast to float32)."""
    return model_from_checkpoint(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), source)


@torch.no_grad()
def make_test_views(config_size: tuple[int, int]) -> tuple[list, list]:
    """(sources [(rgb, K, c2w)], queries [(K, c2w)]) in procedural room 0 at config_size (H, W)."""
    from viewseg_core.cameras import K_from_hfov
    from viewseg_core.data.synth.render import render
    from viewseg_ros.sim_camera import SimWorld  # the scene helpers are ROS-free

    height, width = config_size
    world = SimWorld.create(0, "human", 20.0)
    K = K_from_hfov(70.0, width, height)
    sources = []
    for i in range(VERIFY_SOURCES):  # spread along the first half of the walk, where the queries are
        c2w = world.camera_pose(0.5 * world.period_s * (i + 0.5) / VERIFY_SOURCES)
        sources.append((render(world.scene, K, c2w, height, width).rgb, K, c2w))
    return sources, [(K, c2w) for c2w in world.unseen_poses(VERIFY_QUERIES)]


@torch.no_grad()
def render_labels(model: ViewSeg, sources: list, queries: list, size: tuple[int, int]) -> list[dict]:
    model = model.eval()
    height, width = size
    rgb = torch.as_tensor(np.stack([s[0] for s in sources])).permute(0, 3, 1, 2)[None]
    features = model.encode_sources(rgb)
    views = model.make_sources(features, torch.as_tensor(np.stack([s[1] for s in sources]))[None],
                               torch.as_tensor(np.stack([s[2] for s in sources]))[None], height, width, rgb=rgb)
    outputs = []
    for K, c2w in queries:
        out = model.render(torch.as_tensor(K), torch.as_tensor(c2w), height, width, views)
        outputs.append({"labels": out.labels.numpy(), "probabilities": out.probabilities.float().numpy(),
                        "depth": out.depth.float().numpy(), "valid": out.valid.numpy()})
    return outputs


def compare(reference: ViewSeg, exported: ViewSeg) -> dict[str, float]:
    """Agreement of the exported model with the float32 one on the test views."""
    size = tuple(reference.config.source_size) if all(reference.config.source_size) else VERIFY_SIZE
    sources, queries = make_test_views(size)
    a = render_labels(reference, sources, queries, size)
    b = render_labels(exported, sources, queries, size)
    labels_a = np.concatenate([o["labels"].ravel() for o in a])
    labels_b = np.concatenate([o["labels"].ravel() for o in b])
    occupied = np.concatenate([o["valid"].ravel() for o in a])
    depth_a = np.concatenate([o["depth"].ravel() for o in a])
    depth_b = np.concatenate([o["depth"].ravel() for o in b])
    both = np.isfinite(depth_a) & np.isfinite(depth_b)
    return {
        "pixels": float(labels_a.size),
        "agreement": float(np.mean(labels_a == labels_b)),
        "occupied_share": float(occupied.mean()),
        "agreement_occupied": float(np.mean(labels_a[occupied] == labels_b[occupied])) if occupied.any() else 1.0,
        "max_probability_diff": float(max(np.abs(x["probabilities"] - y["probabilities"]).max()
                                          for x, y in zip(a, b))),
        "max_depth_diff_m": float(np.abs(depth_a[both] - depth_b[both]).max()) if both.any() else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="viewseg-model file or training checkpoint")
    parser.add_argument("--out", required=True, type=Path, help="demo checkpoint to write")
    parser.add_argument("--source-size", type=parse_hw, metavar="HxW",
                        help="size the encoder was trained at, HEIGHTxWIDTH (data.image_size), e.g. 60x80")
    parser.add_argument("--max-mb", type=float, default=30.0, help="refuse a file larger than this (10^6 bytes)")
    parser.add_argument("--min-agreement", type=float, default=0.99,
                        help="least share of test-view pixels whose argmax label must not change")
    parser.add_argument("--data-config", type=Path, metavar="YAML",
                        help="training config whose data section the model was trained with (default: the "
                             "data settings the input file carries)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a few small renders; extra threads only contend on a shared machine

    try:
        raw = read_weights_file(args.model)
        model = load_model(args.model).eval()
        settings = read_data_config(args.data_config) if args.data_config else model_data(raw)
    except (FileNotFoundError, ValueError) as error:
        print(f"export_demo: {error}", file=sys.stderr)
        return 2
    before = model.config.source_size
    if args.source_size is not None:
        model.config = dataclasses.replace(model.config, source_size=args.source_size)
    # A demo file re-exported (say, to add its data settings) keeps where its weights came from.
    previous = raw.get("export") if isinstance(raw, dict) and raw.get("format") == MODEL_FORMAT and \
        isinstance(raw.get("export"), dict) else None
    origin = str(previous["from"]) if isinstance(previous, dict) and previous.get("from") else str(args.model)
    data_from = str(args.data_config) if args.data_config else \
        str(previous.get("data_from", args.model)) if isinstance(previous, dict) else str(args.model)
    data = export_bytes(model, origin, settings, data_from)
    if previous is not None and isinstance(raw.get("state_dict"), dict):
        new_state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["state_dict"]
        changed = [k for k, v in raw["state_dict"].items()
                   if k not in new_state or new_state[k].dtype != v.dtype or not torch.equal(new_state[k], v)]
        if changed or new_state.keys() != raw["state_dict"].keys():
            print(f"export_demo: refusing to write {args.out}: re-exporting {args.model} would change stored "
                  f"tensors {changed[:5]}", file=sys.stderr)
            return 1
    size_mb = len(data) / MB
    fp32_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / MB
    print(f"{args.model}: {model.config.encoder}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
          f"parameters, {fp32_mb:.1f} MB of float32 tensors -> {size_mb:.1f} MB file; "
          f"source_size (H, W) {before} -> {model.config.source_size}; data settings: "
          f"{'none (viewseg eval will need --config)' if settings is None else data_from}")
    trained = tuple(settings.get("image_size", ())) if settings else ()
    if trained and all(model.config.source_size) and trained != tuple(model.config.source_size):
        print(f"export_demo: warning: data.image_size {list(trained)} differs from the model's source_size "
              f"{list(model.config.source_size)}", file=sys.stderr)
    if len(data) > args.max_mb * MB:
        print(f"export_demo: refusing to write {args.out}: {size_mb:.1f} MB > --max-mb {args.max_mb:g} MB",
              file=sys.stderr)
        return 1

    exported = reload(data, f"{args.out} (in memory)")
    dtypes = {t.dtype for t in exported.state_dict().values() if t.is_floating_point()}
    if dtypes != {torch.float32}:
        print(f"export_demo: reloaded tensors are {dtypes}, expected float32 only", file=sys.stderr)
        return 1
    check = compare(model, exported)
    print(f"fp16-stored vs fp32 on {int(check['pixels'])} pixels of {VERIFY_QUERIES} test views: labels equal on "
          f"{100 * check['agreement']:.2f}% ({100 * check['agreement_occupied']:.2f}% of the "
          f"{100 * check['occupied_share']:.0f}% occupied), max |d probability| {check['max_probability_diff']:.2e}, "
          f"max |d depth| {check['max_depth_diff_m']:.2e} m")
    if min(check["agreement"], check["agreement_occupied"]) < args.min_agreement:
        print(f"export_demo: refusing to write {args.out}: labels agree on less than "
              f"{100 * args.min_agreement:g}% of pixels", file=sys.stderr)
        return 1

    write_bytes_atomic(args.out, data)
    written = load_model(args.out)  # the real loader on the real file, once
    if dataclasses.asdict(written.config) != dataclasses.asdict(model.config):
        raise RuntimeError(f"{args.out}: config changed on reload: {written.config} != {model.config}")
    print(f"wrote {args.out} ({size_mb:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
