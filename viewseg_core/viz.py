"""Pictures people look at: coloured semantics, depth and confidence maps, labelled panels."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from viewseg_core.classes import colorize

__all__ = ["colorize", "colorize_depth", "colorize_scalar", "panel", "save_png", "reliability_diagram"]


def colorize_depth(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """Turbo colormap of planar depth; near is red, far is blue, NaN/unknown is black.

    Args:
        depth: [H, W] float metres (NaN = unknown).
        max_depth: the depth mapped to the far end; defaults to the 99th percentile of the
            finite values, so one stray far pixel does not flatten the picture. Pass the
            ground truth's value to compare a prediction with it on one scale.
    Returns:
        [H, W, 3] uint8 RGB.
    """
    depth = np.asarray(depth, dtype=np.float32)
    finite = np.isfinite(depth) & (depth > 0)
    if max_depth is None:
        max_depth = float(np.percentile(depth[finite], 99)) if finite.any() else 1.0
    scaled = np.clip(depth / max(max_depth, 1e-6), 0.0, 1.0)
    return colorize_scalar(1.0 - scaled, finite)


def colorize_scalar(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Turbo colormap of values in [0, 1] (e.g. confidence); invalid pixels are black.

    Returns:
        [H, W, 3] uint8 RGB.
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    u8 = (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    if valid is not None:
        rgb[~np.asarray(valid, dtype=bool)] = 0
    return rgb


def panel(rows: list[list[tuple[str, np.ndarray]]], tile_height: int = 180) -> np.ndarray:
    """Lay out titled RGB tiles in rows, each tile scaled to ``tile_height``.

    Args:
        rows: rows of (title, [H, W, 3] uint8 RGB image). Rows may differ in length.
    Returns:
        [H_total, W_total, 3] uint8 RGB, white background, titles above each tile.
    """
    title_h, pad = 18, 4
    rendered_rows = []
    for row in rows:
        tiles = []
        for title, image in row:
            image = np.asarray(image)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            scale = tile_height / image.shape[0]
            width = max(1, int(round(image.shape[1] * scale)))
            tile = np.full((tile_height + title_h, width, 3), 255, np.uint8)
            tile[title_h:] = cv2.resize(image, (width, tile_height), interpolation=cv2.INTER_NEAREST)
            cv2.putText(tile, title, (2, title_h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                        cv2.LINE_AA)
            tiles.append(tile)
            tiles.append(np.full((tile.shape[0], pad, 3), 255, np.uint8))
        rendered_rows.append(np.concatenate(tiles[:-1], axis=1))
    width = max(r.shape[1] for r in rendered_rows)
    out = []
    for r in rendered_rows:
        filler = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        out += [np.concatenate([r, filler], axis=1), np.full((pad, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def reliability_diagram(reliabilities: dict, size: int = 320) -> np.ndarray:
    """Accuracy against confidence, one titled plot per :class:`viewseg_core.confidence.Reliability`
    (e.g. {"raw": ..., "calibrated": ...}): a bar per bin at its accuracy, the diagonal where
    confidence would be the probability of a right label, and under the bars a strip whose
    darkness is the bin's share of the pixels (log scale). Returns [H, W, 3] uint8 RGB."""
    margin, strip = 30, 14
    tiles = []
    for name, reliability in reliabilities.items():
        canvas = np.full((size + strip + margin, size + margin, 3), 255, np.uint8)
        x0, y0 = margin, size            # the origin; y grows down in the image

        def at(x: float, y: float) -> tuple[int, int]:
            return int(round(x0 + x * (size - 4))), int(round(y0 - y * (size - 4)))

        bins = reliability.bins
        for b, accuracy in enumerate(reliability.accuracy):
            if np.isfinite(accuracy):
                cv2.rectangle(canvas, at(b / bins, 0), at((b + 1) / bins, accuracy), (70, 110, 200), -1)
                cv2.rectangle(canvas, at(b / bins, 0), at((b + 1) / bins, accuracy), (30, 50, 120), 1)
        cv2.line(canvas, at(0, 0), at(1, 1), (200, 60, 60), 1, cv2.LINE_AA)
        cv2.line(canvas, at(0, 0), at(1, 0), (0, 0, 0), 1)
        cv2.line(canvas, at(0, 0), at(0, 1), (0, 0, 0), 1)
        shares = reliability.count / max(reliability.answered, 1)
        for b, share in enumerate(shares):
            grey = int(255 * (1.0 - min(1.0, np.log10(1.0 + 99.0 * share) / 2.0)))
            (left, _), (right, _) = at(b / bins, 0), at((b + 1) / bins, 0)
            cv2.rectangle(canvas, (left, y0 + 4), (right, y0 + strip), (grey, grey, grey), -1)
        for tick in (0.0, 0.5, 1.0):
            x, _ = at(tick, 0)
            cv2.putText(canvas, f"{tick:g}", (x - 6, y0 + strip + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1,
                        cv2.LINE_AA)
            _, y = at(0, tick)
            cv2.putText(canvas, f"{tick:g}", (2, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        title = f"{name}: ECE {reliability.ece():.3f}"
        tiles.append([(f"{title} (x confidence, y accuracy)", canvas)])
    return panel([[tile for row in tiles for tile in row]], tile_height=size + strip + margin)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG, atomically (a killed run leaves no torn panel),
    creating parent folders."""
    from viewseg_core.data.scene_folder import write_png  # the one PNG writer; lazy: no import cycle

    write_png(path, rgb)
    return Path(path)
