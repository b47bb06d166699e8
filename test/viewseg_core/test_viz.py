"""Colour maps and panels: fixed colours, black for unknown, exact layout sizes."""
from __future__ import annotations

import cv2
import numpy as np

from viewseg_core.classes import PALETTE, colorize
from viewseg_core.viz import colorize_depth, panel, save_png


def test_colorize_labels_uses_palette_and_black_for_ignore():
    labels = np.array([[0, 36], [255, 5]])
    rgb = colorize(labels)
    np.testing.assert_array_equal(rgb[0, 0], PALETTE[0])
    np.testing.assert_array_equal(rgb[0, 1], PALETTE[36])
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 0])
    assert len({tuple(c) for c in PALETTE}) == len(PALETTE)  # every class distinguishable


def test_depth_colormap_is_monotone_and_blacks_out_nan():
    depth = np.array([[1.0, 2.0, 4.0, np.nan]], np.float32)
    rgb = colorize_depth(depth, max_depth=4.0)
    np.testing.assert_array_equal(rgb[0, 3], [0, 0, 0])
    turbo = cv2.cvtColor(cv2.applyColorMap(np.array([[191, 128, 0]], np.uint8), cv2.COLORMAP_TURBO),
                         cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(rgb[0, :3], turbo[0])  # 1 m -> 0.75, 2 m -> 0.5, 4 m -> 0 of the map


def test_panel_layout_and_png_round_trip(tmp_path):
    a = np.zeros((10, 20, 3), np.uint8)
    b = np.full((20, 20, 3), 200, np.uint8)
    out = panel([[("a", a), ("b", b)], [("c", a)]], tile_height=40)
    # row 1: widths 80 + 4 + 40 = 124; heights (40 + 18 title) * 2 rows + 4 padding
    assert out.shape == (2 * 58 + 4, 124, 3)
    path = save_png(tmp_path / "sub" / "p.png", out)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, out)


def test_reliability_diagram_draws_each_bin_at_its_accuracy():
    from viewseg_core.confidence import Reliability
    from viewseg_core.viz import reliability_diagram

    r = Reliability(bins=2)
    # Bin 0 (confidence 0.25): 1 of 4 right; bin 1 (0.75): 4 of 4 right.
    r.add(np.array([0.25] * 4 + [0.75] * 4), np.array([1, 2, 2, 2, 1, 1, 1, 1]), np.ones(8, int), 255)
    image = reliability_diagram({"raw": r}, size=200)
    title_h, margin, size = 18, 30, 200
    bar = np.array([70, 110, 200])

    def filled(x: float, y: float) -> bool:   # is the plot point (confidence x, accuracy y) inside a bar?
        column, row = margin + int(x * (size - 4)), title_h + size - int(y * (size - 4))
        return bool(np.all(image[row, column] == bar))

    assert filled(0.25, 0.2) and not filled(0.25, 0.3)      # bin 0 up to 0.25
    assert filled(0.75, 0.95) and filled(0.75, 0.3)         # bin 1 up to 1.0
    assert image.shape[0] == title_h + size + 14 + margin and image.dtype == np.uint8
