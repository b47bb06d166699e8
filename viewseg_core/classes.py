"""The one class table of viewseg: 37 NYU40-derived classes, their names, colours and groups.

NYU40 minus ``otherstructure``, ``otherfurniture`` and ``otherprop`` leaves 37 classes,
numbered 0-36 here (NYU40 id minus one). In label images, :data:`IGNORE_LABEL` (255)
marks pixels without a usable class; in losses the same pixels carry
:data:`LOSS_IGNORE_INDEX` (-100, PyTorch's default).
"""
from __future__ import annotations

import numpy as np

NYU40_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refrigerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)
"""NYU40 class names; NYU40 id ``i`` (1-based) is ``NYU40_NAMES[i - 1]``."""

CLASS_NAMES: tuple[str, ...] = NYU40_NAMES[:37]
NUM_CLASSES: int = len(CLASS_NAMES)
IGNORE_LABEL: int = 255
LOSS_IGNORE_INDEX: int = -100

# "Stuff" in the paper's things-vs-stuff split: the room's structure.
STUFF_CLASSES: tuple[int, ...] = tuple(CLASS_NAMES.index(n) for n in ("wall", "floor", "ceiling"))
THING_CLASSES: tuple[int, ...] = tuple(c for c in range(NUM_CLASSES) if c not in STUFF_CLASSES)

# ScanNet's NYU40 colour palette (the colours readers of indoor-scene papers expect),
# one RGB triple per class id 0-36. Unknown/ignore renders black.
PALETTE: np.ndarray = np.array([
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
    (196, 156, 148), (23, 190, 207), (178, 76, 76), (247, 182, 210), (66, 188, 102),
    (219, 219, 141), (140, 57, 197), (202, 185, 52), (51, 176, 203), (200, 54, 131),
    (92, 193, 61), (78, 71, 183), (172, 114, 82), (255, 127, 14), (91, 163, 138),
    (153, 98, 156), (140, 153, 101), (158, 218, 229), (100, 125, 154), (178, 127, 135),
    (120, 185, 128), (146, 111, 194), (44, 160, 44), (112, 128, 144), (96, 207, 209),
    (227, 119, 194), (213, 92, 176),
], dtype=np.uint8)
IGNORE_COLOR = np.zeros(3, dtype=np.uint8)


def nyu40_to_classes(nyu40: np.ndarray) -> np.ndarray:
    """Map NYU40 ids (1-40; 0 or negative = unlabeled) to class ids 0-36, others to 255.

    Args:
        nyu40: [...] integer NYU40 ids.
    Returns:
        [...] uint8 class ids, :data:`IGNORE_LABEL` where there is no class.
    """
    nyu40 = np.asarray(nyu40)
    if not np.issubdtype(nyu40.dtype, np.integer):
        raise TypeError(f"NYU40 labels must be integers, got {nyu40.dtype}")
    out = np.full(nyu40.shape, IGNORE_LABEL, dtype=np.uint8)
    valid = (nyu40 >= 1) & (nyu40 <= NUM_CLASSES)
    out[valid] = (nyu40[valid] - 1).astype(np.uint8)
    return out


def colorize(labels: np.ndarray) -> np.ndarray:
    """Colour a label image with :data:`PALETTE`.

    Args:
        labels: [H, W] integer class ids; ids outside 0-36 (255, 65535, -100) become black.
    Returns:
        [H, W, 3] uint8 RGB.
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape + (3,), dtype=np.uint8)
    valid = (labels >= 0) & (labels < NUM_CLASSES)
    out[valid] = PALETTE[labels[valid]]
    return out
