"""Image panels during training: one held-out example rendered in full, logged to
TensorBoard and saved as PNG (sources | target RGB, semantics, depth | predictions)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from viewseg_core.classes import colorize
from viewseg_core.viz import colorize_depth, colorize_scalar, panel, save_png


def _rgb_u8(chw: torch.Tensor) -> np.ndarray:
    return (chw.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def model_reads_depth(model) -> bool:
    """The model uses measured source depth (``model.source_depth`` or ``model.depth_guided``)."""
    cfg = model.config
    return bool(getattr(cfg, "reads_source_depth", getattr(cfg, "source_depth", False)))


def source_depth_kwargs(model, example: dict, device: torch.device, batch: int = 1) -> dict:
    """``{"depth": [batch, V, H, W]}`` for ``make_sources`` when the model reads source depth
    (:func:`model_reads_depth`) and the example carries ``source_depth_input``; else ``{}`` (an
    RGB model, or an RGB-D model left to its no-depth behaviour)."""
    depth = example.get("source_depth_input")
    if depth is None or not model_reads_depth(model):
        return {}
    return {"depth": depth[None].expand(batch, *depth.shape).to(device)}


@torch.no_grad()
def render_example(model, example: dict, device: torch.device) -> dict[str, np.ndarray]:
    """Render the full target of one dataset example (any ``full_target`` setting); an RGB-D
    model gets the example's ``source_depth_input`` when it has one.

    Returns numpy images: labels [H, W] (255 = unknown), depth [H, W] (NaN = empty),
    confidence [H, W], rgb [H, W, 3] uint8.
    """
    model.eval()
    H, W = (int(x) for x in example["target_size"])
    rgb = example["source_rgb"][None].to(device)
    sources = model.make_sources(model.encode_sources(rgb), example["source_K"][None].to(device),
                                 example["source_c2w"][None].to(device), H, W, rgb=rgb,
                                 **source_depth_kwargs(model, example, device))
    out = model.render(example["target_K"].to(device), example["target_c2w"].to(device), H, W, sources)
    labels = out.labels.cpu().numpy().astype(np.int64)
    depth = out.depth.float().cpu().numpy()
    labels[~np.isfinite(depth)] = 255
    return {"labels": labels, "depth": depth, "confidence": out.confidence.float().cpu().numpy(),
            "rgb": (out.rgb.float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)}


def example_panel(example: dict, pred: dict[str, np.ndarray], gt: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """sources | true target RGB, semantics, depth | predicted semantics, depth, confidence."""
    rows = [[(f"source {i}", _rgb_u8(rgb)) for i, rgb in enumerate(example["source_rgb"])]]
    max_depth = None
    if gt is not None:
        finite = gt["depth"][np.isfinite(gt["depth"])]
        max_depth = float(np.percentile(finite, 99)) if finite.size else None
        rows.append([("target RGB", gt["rgb"]), ("true semantics", colorize(gt["labels"])),
                     ("true depth", colorize_depth(gt["depth"], max_depth))])
    rows.append([("predicted RGB", pred["rgb"]), ("predicted semantics", colorize(pred["labels"])),
                 ("predicted depth", colorize_depth(pred["depth"], max_depth)),
                 ("confidence", colorize_scalar(pred["confidence"]))])
    return panel(rows, tile_height=150)


def full_target_truth(example: dict) -> dict[str, np.ndarray] | None:
    """Ground-truth images of an example built with ``full_target`` (else None)."""
    H, W = (int(x) for x in example["target_size"])
    if example["target_labels"].numel() != H * W:
        return None
    labels = example["target_labels"].reshape(H, W).numpy().copy()
    labels[labels < 0] = 255
    return {"labels": labels, "depth": example["target_depth"].reshape(H, W).numpy(),
            "rgb": (example["target_rgb"].reshape(H, W, 3).numpy() * 255 + 0.5).astype(np.uint8)}


def log_panel(writer, model, dataset, step: int, device: torch.device, out_dir: Path) -> Path:
    """Render example 0 of ``dataset``, log it to TensorBoard and save ``step_N.png``."""
    example = dataset[0]
    image = example_panel(example, render_example(model, example, device), full_target_truth(example))
    writer.add_image("panel", image, step, dataformats="HWC")
    return save_png(Path(out_dir) / f"step_{step}.png", image)
