"""A picture of a few synthetic scenes (RGB, labels, depth per view), for the README.

    python -m viewseg_core.data.synth.preview docs/images/synth_scenes.png --seeds 0 1 2 3
"""
from __future__ import annotations

import sys

import numpy as np

from viewseg_core.classes import colorize
from viewseg_core.cli import OneLineParser, nonnegative_int, positive_int
from viewseg_core.data.synth.generate import SynthConfig, make_scene
from viewseg_core.data.synth.render import render
from viewseg_core.viz import colorize_depth, panel, save_png


def preview_sheet(seeds: list[int], views: int = 2, width: int = 320, height: int = 240) -> np.ndarray:
    """[H, W, 3] uint8: one row per scene, (RGB, labels, depth) for a robot and a human view."""
    rows = []
    cfg = SynthConfig(views=2 * views, width=width, height=height)
    for seed in seeds:
        scene, cams = make_scene(seed, cfg)
        row = []
        for cam in cams[:: max(1, len(cams) // views)][:views]:
            r = render(scene, cam.K, cam.c2w, height, width)
            tag = f"{scene.meta['room_type']} {cam.kind} {cam.c2w[2, 3]:.2f} m"
            row += [(tag, r.rgb), ("labels", colorize(r.labels)), ("depth", colorize_depth(r.depth))]
        rows.append(row)
    return panel(rows, tile_height=height // 2)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--views", type=positive_int, default=2)
    args = p.parse_args(argv)
    save_png(args.out, preview_sheet(args.seeds, args.views))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
