"""Dataset subcommands of ``viewseg``: ``synth``, ``inspect-hypersim``, ``mine-pairs``, ``show-scene`` and
``pseudo-label``."""
from __future__ import annotations

import argparse
import json
import sys

from viewseg_core.atomic_io import check_writable
from viewseg_core.cli import fraction, image_size, nonnegative_float, nonnegative_int, positive_int


def _run_synth(args) -> int:
    from viewseg_core.data.synth.generate import SynthConfig, write_dataset

    width, height = args.size
    config = SynthConfig(views=args.views, width=width, height=height, room_type=args.room_type)
    splits = write_dataset(args.out, args.scenes, config, seed=args.seed, workers=args.workers,
                           progress=not args.no_progress, val_scenes=args.val_scenes,
                           test_scenes=args.test_scenes, legacy_names=args.legacy_names)
    if args.pairs:
        from pathlib import Path

        from viewseg_core.data.pairs import PairConfig, mine_all, write_pairs
        from viewseg_core.data.scene_folder import SceneFolder

        cfg = PairConfig(seed=args.seed)
        names = sorted(n for v in splits.values() for n in v)
        entries = mine_all((SceneFolder(Path(args.out) / n) for n in names), cfg, progress=not args.no_progress,
                           workers=args.workers)
        write_pairs(Path(args.out) / "pairs.json", entries, cfg)
        print(f"{len(entries)} source-target pairs -> {Path(args.out) / 'pairs.json'}", file=sys.stderr)
    print(json.dumps({k: len(v) for k, v in splits.items()}))
    return 0


def _run_inspect_hypersim(args) -> int:
    from viewseg_core.data.hypersim import inspect_frame

    info = inspect_frame(args.root, args.scene, args.cam, args.frame, camera_table=args.camera_table)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        d = info["planar_depth_m"]
        print(f"{info['scene']} {info['cam']} frame {info['frame']}: {info['width']}x{info['height']}, "
              f"tilt-shift={info['tilt_shift']}, meters_per_asset_unit={info['meters_per_asset_unit']}")
        print("K =", json.dumps(info["K"]))
        print("c2w (OpenCV, m) =", json.dumps(info["c2w_opencv_m"]))
        print(f"planar depth: min {d.get('min')} median {d.get('median')} max {d.get('max')} "
              f"centre {d.get('center')}")
    return 0


def _run_mine_pairs(args) -> int:
    from viewseg_core.data.pairs import PairConfig, mine_all, write_pairs
    from viewseg_core.data.scene_folder import SceneFolder, find_scene_folders

    check_writable(args.out)  # before mining, not after it
    folders = find_scene_folders(args.root)
    if not folders:
        raise ValueError(f"no scene folders (cameras.json) under {args.root}")
    cfg = PairConfig(num_sources=args.sources, min_overlap=args.min_overlap, min_baseline=args.min_baseline,
                     min_rotation_deg=args.min_rotation, seed=args.seed)
    entries = mine_all((SceneFolder(f) for f in folders), cfg, progress=True, workers=args.workers)
    write_pairs(args.out, entries, cfg)
    print(json.dumps({"scenes": len(folders), "pairs": len(entries), "out": str(args.out)}))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate procedural indoor scenes (scene folders + splits)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--scenes", type=positive_int, default=10, help="number of scenes")
    p.add_argument("--views", type=positive_int, default=40, help="views per scene (half robot, half human height)")
    p.add_argument("--size", type=image_size, default=(320, 240), help="image size WIDTHxHEIGHT (default 320x240)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="dataset seed (scene i depends only on seed and i; it is named synth_s<seed>_<i>)")
    p.add_argument("--val-scenes", type=nonnegative_int, default=None, metavar="N",
                   help="scenes in the val split (default: 10%% of --scenes, at least 1 from 3 scenes, "
                        "capped at what --test-scenes leaves)")
    p.add_argument("--test-scenes", type=nonnegative_int, default=None, metavar="N",
                   help="scenes in the test split (default as --val-scenes); "
                        "--scenes N --test-scenes N writes an evaluation-only set")
    p.add_argument("--legacy-names", action="store_true",
                   help="name scenes synth_<i> (no seed) as before: reproduces a dataset written then, with its "
                        "pairs files (pair sources and noise streams are keyed by scene name)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes rendering scenes in parallel")
    p.add_argument("--room-type", default=None, help="force one room type (bedroom, living, office, ...)")
    p.add_argument("--pairs", action=argparse.BooleanOptionalAction, default=True,
                   help="also mine source-target pairs into OUT/pairs.json (default on)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_synth)

    p = subparsers.add_parser("inspect-hypersim", help="camera, pose and depth statistics of a Hypersim frame")
    p.add_argument("root", help="directory holding the ai_VVV_NNN scene folders")
    p.add_argument("--scene", required=True)
    p.add_argument("--cam", default="cam_00")
    p.add_argument("--frame", type=nonnegative_int, default=0)
    p.add_argument("--camera-table", default=None, help="metadata_camera_parameters.csv (default: searched)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_run_inspect_hypersim)

    p = subparsers.add_parser("mine-pairs", help="mine source-target pairs over scene folders")
    p.add_argument("root", help="a scene folder or a directory of scene folders")
    p.add_argument("--out", required=True, help="pairs file to write (JSON)")
    p.add_argument("--sources", type=positive_int, default=4)
    p.add_argument("--min-overlap", type=fraction, default=0.10)
    p.add_argument("--min-baseline", type=nonnegative_float, default=0.5, help="metres")
    p.add_argument("--min-rotation", type=nonnegative_float, default=30.0, help="degrees")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--workers", type=positive_int, default=1, help="processes mining scenes in parallel (same result)")
    p.set_defaults(func=_run_mine_pairs)
    p = subparsers.add_parser("show-scene", help="a scene folder as pictures: its frames and a top-down map of "
                                                 "its cameras (saved keyframes, bag imports, datasets)")
    p.add_argument("folder", help="a scene folder (cameras.json)")
    p.add_argument("--out", default="", help="folder for the PNGs (default: ./<scene>_sheet); never the scene folder")
    p.add_argument("--max-frames", type=positive_int, default=24, help="frames on the contact sheet, spread evenly")
    p.add_argument("--per-row", type=positive_int, default=4, help="frames per row of the contact sheet")
    p.add_argument("--tile-height", type=positive_int, default=120, help="pixels per tile")
    p.set_defaults(func=_run_show_scene)

    p = subparsers.add_parser("pseudo-label", help="a copy of a scene folder with labels from a 2D segmenter "
                                                   "(saved keyframes or unlabelled bags as training data)")
    p.add_argument("folder", help="a scene folder (cameras.json); never modified")
    p.add_argument("--segmenter", required=True, help="2D segmenter checkpoint (viewseg pretrain-2d, or "
                                                      "checkpoints/segmenter_small.pt)")
    p.add_argument("--out", required=True, help="the labelled copy (a new folder, or an earlier copy to replace)")
    p.add_argument("--relabel", action="store_true", help="also replace labels the frames already have")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_pseudo_label)


def _run_show_scene(args) -> int:
    from pathlib import Path

    from viewseg_core.data.scene_folder import SceneFolder
    from viewseg_core.data.scene_sheet import contact_sheet, format_summary, scene_summary, top_down_map
    from viewseg_core.viz import save_png

    folder = SceneFolder(args.folder)
    out = Path(args.out) if args.out else Path(f"{folder.name}_sheet")
    if out.resolve() == folder.root.resolve() or folder.root.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} is inside the scene folder {folder.root}: pictures never go into a dataset")
    print(format_summary(folder, scene_summary(folder)))
    frames = save_png(out / "frames.png", contact_sheet(folder, args.max_frames, args.per_row, args.tile_height))
    cameras = save_png(out / "cameras.png", top_down_map(folder)[0])
    print(f"pictures: {frames} (frames), {cameras} (cameras from above)")
    return 0


def _run_pseudo_label(args) -> int:
    from viewseg_core.cli import resolve_device
    from viewseg_core.data.pseudo_labels import pseudo_label_folder
    from viewseg_core.segmenter import PseudoLabeler

    labeler = PseudoLabeler(args.segmenter, resolve_device(args.device))
    counts = pseudo_label_folder(args.folder, args.out, labeler, relabel=args.relabel, progress=not args.no_progress)
    print(f"{args.out}: {counts['frames']} frames, {counts['predicted']} labelled by the segmenter {args.segmenter} "
          f"(PSEUDO-LABELS), {counts['kept']} kept their own")
    return 0


__all__ = ["register"]
