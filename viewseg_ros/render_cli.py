"""``viewseg render-view``: what the node would answer, from a keyframe folder, without a robot.

Starts the real ``viewseg`` node in this process, with no camera and nothing spinning, its
``keyframes.load_path`` the folder (``~/save_keyframes`` or ``viewseg bag2scene`` wrote it),
and renders each requested pose through the same call as ``~/render_view``
(:meth:`viewseg_ros.node.ViewSegNode.render_query`): the same keyframe selection, sampling
preset, unknown pixels and confidence calibration. So a planner's query can be replayed at a
desk, a parameter tried (``--param query.preset=rgbd_fine``) and a model compared on the
robot's own keyframes.

Poses are of the query camera's optical frame (x right, y down, z forward) in the folder's
fixed frame (``cameras.json`` ``meta.fixed_frame``, else ``map``):

- ``--pose x,y,z,qx,qy,qz,qw`` (repeatable);
Several ``--keyframes`` folders (the rooms of a dataset, the saved sets of a fleet) are taken
in turn, each replacing the keyframes of the last (as ``~/load_keyframes`` does), their
outputs in ``--out/<folder name>``, and the scores summed over all of them at the end.

- ``--keyframe I``: the pose of the folder's view I (0-based, in ``cameras.json`` order;
  ``all`` = every view), so the answer can be set beside the image the camera took there;
  ``--back M`` moves each such pose M metres back along its optical axis.

``--leave-out`` renders each ``--keyframe`` pose from the other keyframes only (the view itself
set aside: :meth:`viewseg_ros.keyframes.KeyframeBuffer.set_aside`): a novel view of a room the
robot saw. Where the folder has labels (a synthetic scene, ``viewseg pseudo-label``'s output)
and depth, each such answer is scored against them, as ``viewseg eval`` scores (unknown
pixels count as wrong), and the run ends with the totals: how well the model does in this
robot's rooms.

Writes for each pose N into ``--out``: ``view_NN.png`` (a panel: the keyframe's image with
``--keyframe``, class colours, depth colormap, confidence), ``view_NN.npz`` (``labels``,
``depth``, ``confidence``, ``K``, ``c2w``, ``keyframe_ids``), and prints the keyframes used, the time and the
node's message. Size: ``--size WxH`` (default the keyframes'). ``view_NN.npz`` also holds the ``keyframe_ids`` used.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from viewseg_core.cli import image_size, nonnegative_float


def parse_pose(text: str) -> np.ndarray:
    """'x,y,z,qx,qy,qz,qw' -> [4, 4] camera-to-world (the quaternion must be normalised)."""
    from viewseg_ros.tf_buffer import make_transform, normalize_quaternion

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 7 or not np.all(np.isfinite(values)):
        raise ValueError(f"--pose takes seven numbers x,y,z,qx,qy,qz,qw, got {text!r}")
    return make_transform(values[:3], normalize_quaternion(values[3:], f"--pose {text}"))


def parse_params(items: list[str]) -> dict[str, Any]:
    """``name=value`` node parameters; the value is read as YAML (1 is an int, 1.5 a float)."""
    import yaml

    from viewseg_ros.node_parameters import PARAMETERS

    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in PARAMETERS:
            raise ValueError(f"--param takes name=value with a viewseg node parameter name (docs/ros.md), "
                             f"got {item!r}")
        params[name] = yaml.safe_load(value)
    return params


def keyframe_indices(items: list[str], count: int, folder: Path) -> list[int]:
    """The view indices of ``--keyframe`` values (integers, or ``all``)."""
    indices: list[int] = []
    for item in items:
        if item.strip() == "all":
            indices.extend(range(count))
            continue
        try:
            index = int(item)
        except ValueError:
            raise ValueError(f"--keyframe takes a view index or 'all', got {item!r}") from None
        if not 0 <= index < count:
            raise ValueError(f"--keyframe {index}: {folder} holds views 0 to {count - 1}")
        indices.append(index)
    return indices


def folder_queries(folder: Path, args: argparse.Namespace) -> tuple[Any, list[tuple[str, np.ndarray, Any]]]:
    """(the scene folder, its [(what, c2w, view or None)] queries) of one ``--keyframes`` folder."""
    from viewseg_core.data.scene_folder import SceneFolder

    if not (folder / "cameras.json").is_file():
        raise ValueError(f"{folder}: not a keyframe folder (no cameras.json); ~/save_keyframes or viewseg "
                         f"bag2scene writes one")
    scene = SceneFolder(folder)
    queries: list[tuple[str, np.ndarray, Any]] = [(f"--pose {text}", parse_pose(text), None) for text in args.pose]
    back = np.eye(4)
    back[2, 3] = -args.back
    for index in keyframe_indices(args.keyframe, len(scene), folder):
        view = scene.load_view(index)
        queries.append((f"keyframe {index} ({view.view_id})", view.c2w @ back, view))
    return scene, queries


def run(args: argparse.Namespace) -> int:
    folders = [Path(text).expanduser() for text in args.keyframes]
    if len(folders) > 1 and args.pose:
        raise ValueError("--pose names a pose in one folder's frame: give one --keyframes with it")
    if args.leave_out and args.pose:
        raise ValueError("--leave-out sets aside the view of each --keyframe; --pose has none")
    work = [(folder, *folder_queries(folder, args)) for folder in folders]   # every folder checked first
    if not any(queries for _, _, queries in work):
        raise ValueError("nothing to render: give --pose or --keyframe")
    first = work[0][1]
    fixed_frame = (first.meta.get("fixed_frame") if isinstance(first.meta, dict) else None) or "map"
    overrides = {"checkpoint": args.checkpoint, "device": args.device, "keyframes.load_path": str(folders[0]),
                 "fixed_frame": fixed_frame, "query.timeout_s": 3600.0}
    if len(first) and first.load_depth(0) is not None:
        # Keyframes with depth: as a node that had a depth camera (query.preset auto picks rgbd
        # for an RGB-D checkpoint, which reads the keyframes' depth). The topic itself stays silent.
        overrides["depth_topic"] = "depth"
    overrides.update(parse_params(args.param))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")   # it talks to nobody
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from viewseg_core.metrics import SegmentationEvaluator
    from viewseg_ros.node import ViewSegNode

    context = Context()
    rclpy.init(context=context, args=[])
    node = None
    try:
        node = ViewSegNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        print(f"[render-view] sampling {node.preset.label}; confidence: {node.confidence_meaning}")
        total = SegmentationEvaluator(num_classes=node.model.config.num_classes)
        failed = 0
        for number, (folder, _, queries) in enumerate(work):
            if number:   # the next folder replaces the keyframes, as ~/load_keyframes does
                node.load_keyframes(str(folder), replace=True)
            out = Path(args.out) / folder.name if len(work) > 1 else Path(args.out)
            print(f"[render-view] {len(node.keyframes)} keyframes from {folder} (fixed frame {fixed_frame!r})")
            failed += render_folder(node, folder.name, queries, fixed_frame, out, args, total)
        if len(work) > 1 and total.per_image_miou:
            print(summary(total, f"{len(work)} folders", args.leave_out))
        return 1 if failed else 0
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()


def summary(evaluator: Any, what: str, leave_out: bool) -> str:
    totals = evaluator.scores()
    return (f"[render-view] {what}: {totals['num_images']} views scored against the folder's labels"
            f"{' (each rendered without itself)' if leave_out else ''}: mIoU {totals['miou']:.3f}, "
            f"per-image mIoU {totals['per_image_miou']:.3f}, pixel accuracy {totals['pacc']:.3f}, "
            f"depth AbsRel {totals['depth_absrel']:.3f}, delta<1.25 {totals['delta1']:.3f}")


def render_folder(node: Any, name: str, queries: list[tuple[str, np.ndarray, Any]], fixed_frame: str, out: Path,
                  args: argparse.Namespace, total: Any) -> int:
    """Render the queries of folder ``name`` on ``node`` (its keyframes loaded), write and print
    each, add scored views to ``total`` too; returns how many were refused."""
    from viewseg_core.metrics import SegmentationEvaluator
    from viewseg_core.viz import colorize_depth, colorize_scalar, panel, save_png
    from viewseg_ros.conversions import make_camera_info, matrix_to_pose_stamped
    from viewseg_ros.node import QueryError, colorize_fast

    failed = 0
    evaluator = SegmentationEvaluator(num_classes=node.model.config.num_classes)
    ids = {k.view.view_id: k.id for k in node.keyframes}
    for number, (what, c2w, view) in enumerate(queries):
        info = make_camera_info(np.zeros((3, 3)), *args.size) if args.size else None
        aside = [ids[view.view_id]] if args.leave_out and view.view_id in ids else []
        t0 = time.perf_counter()
        try:
            with node.keyframes.set_aside(aside):
                result = node.render_query(matrix_to_pose_stamped(c2w, fixed_frame), info)
        except QueryError as error:
            failed += 1
            print(f"[render-view] view {number:02d}, {what}: refused: {error}")
            continue
        seconds = time.perf_counter() - t0
        valid = np.isfinite(result.depth)
        tiles = ([("keyframe image", view.rgb)] if view is not None else []) + [
            ("semantics", colorize_fast(result.labels)), ("depth", colorize_depth(result.depth)),
            ("confidence", colorize_scalar(result.confidence, valid | (result.confidence > 0)))]
        save_png(out / f"view_{number:02d}.png", panel([tiles]))
        np.savez_compressed(out / f"view_{number:02d}.npz", labels=result.labels, depth=result.depth,
                            confidence=result.confidence, K=result.K, c2w=c2w,
                            keyframe_ids=np.asarray(result.keyframe_ids, dtype=np.int64))
        score = ""
        if view is not None and view.labels is not None and not args.size and not args.back:
            labels = result.labels.astype(np.int64)
            labels[labels == (65535 if result.labels.dtype == np.uint16 else 255)] = 255
            miou = evaluator.add(labels, view.labels, result.depth, view.depth)
            total.add(labels, view.labels, result.depth, view.depth)
            labelled = view.labels != 255
            score = (f"; against its labels: mIoU {miou:.3f}, pixels right "
                     f"{100 * (labels == view.labels)[labelled].mean():.1f}%")
        unseen = node.unseen_text(result)
        print(f"[render-view] view {number:02d}, {what}: {result.width}x{result.height} in {seconds:.2f} s from "
              f"keyframes {result.keyframe_ids}" + (" (itself set aside)" if aside else "")
              + f"; {100 * valid.mean():.1f}% of pixels with a depth" + score
              + (f"; {result.note}" if result.note else "") + (f"; {unseen}" if unseen else ""))
    if evaluator.per_image_miou:
        print(summary(evaluator, name, args.leave_out))
    print(f"[render-view] wrote {out}/view_NN.png and .npz")
    return failed


def register(subparsers) -> None:
    p = subparsers.add_parser("render-view", help="render poses from a keyframe folder as the node would answer",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keyframes", required=True, action="append",
                   help="keyframe folder (~/save_keyframes, viewseg bag2scene); repeatable: each in turn, outputs in "
                        "--out/<folder name>, and the totals of all")
    p.add_argument("--checkpoint", default="", help="viewseg-model file (default: the node's, the demo model)")
    p.add_argument("--pose", action="append", default=[], metavar="x,y,z,qx,qy,qz,qw",
                   help="query camera pose (optical frame) in the folder's fixed frame; repeatable")
    p.add_argument("--keyframe", action="append", default=[], metavar="I",
                   help="render from the pose of the folder's view I (0-based; 'all' = every view); repeatable")
    p.add_argument("--leave-out", action="store_true",
                   help="render each --keyframe pose without that view among the sources (a novel view), and score "
                        "it against the folder's labels and depth")
    p.add_argument("--back", type=nonnegative_float, default=0.0,
                   help="move each --keyframe pose this many metres back along its optical axis")
    p.add_argument("--size", type=image_size, default=None, help="WxH of the query (default: the keyframes')")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a node parameter, e.g. query.preset=rgbd_fine; repeatable")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)
