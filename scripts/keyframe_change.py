#!/usr/bin/env python3
"""What the node's keyframes show that is no longer there, with and without scene-change eviction.

    python scripts/keyframe_change.py --seeds 0,1,2 --walker 3 --shares 0,0.01,0.02,0.05
    python scripts/keyframe_change.py --seeds 0,1,2 --walker 0 --shares 0,0.01,0.02,0.05 --pose-noise 1,2

For each room (``viewseg_sim_camera``'s walk, ``--seed``; two walks forth and back), a depth
camera at ``--rate`` frames a second offers every frame to the node's keyframe buffer
(:class:`viewseg_ros.keyframes.KeyframeBuffer`, the node's defaults) as the node does: a novel
pose is admitted and then evicts the older keyframes it shows changed
(``keyframes.change_share``, :mod:`viewseg_core.scene_change`); a frame that repeats kept poses is
checked against them every ``--check-every`` seconds and admitted when it shows a change
(``keyframes.change_check_s``). Depth goes through the sensor model (noise, holes, edge
dropout), or with ``--lidar BEAMS`` is the simulated LiDAR's sweep registered into the
keyframe (sparse: the node's keyframes keep it so), and ``--pose-noise DEG,CM`` puts a random localisation error on every frame, so a
static room (``--walker 0``) measures false alarms. ``--walker LEAD_S`` puts a person in the
room, walking the robot's walk that many seconds ahead of it (``SimWorld.walker_lead_s``).

Every ``--eval-every`` seconds, against the truth at that moment (ray-cast, noise-free):
- **ghost**: the share of the kept keyframes' pixels that show a surface nearer than what is
  there now (by more than max(10 cm, 5%)): a person who has walked on;
- **keyframes with a ghost**: the share of kept keyframes with a ghost in at least 1% of their
  pixels;
- **query pixels with a ghost in front**: ``--probes`` query poses the walk never takes
  (``SimWorld.unseen_poses``); the share of their pixels where a kept keyframe's ghost lands in
  front of what is there now (what a render from those keyframes could show as a phantom);
- **query pixels shown right**: the same query poses; the share of their pixels whose surface, as it is now, some kept
  keyframe shows (it projects into the keyframe, and the keyframe's depth there was within the
  margin of it). Eviction that removes a ghost raises it; eviction that removes coverage lowers it;
- the keyframes kept, on average, and how many the change check evicted.

With ``--model CHECKPOINT``, every ``--query-every``-th evaluation also renders the probes with
the model from the kept keyframes as the node does (its source selection, cached encoder
features, the checkpoint's preset) and scores them against the truth of that moment: mIoU,
depth AbsRel and delta < 1.25, the same two with the pixels where the person stands at that
moment left out (no keyframe can show where someone is now: the check acts on where someone
was), and, there too, the share of pixels rendered nearer than the true surface (a phantom, or
the model's own error); each setting minus the check off, with paired bootstrap intervals over
the queries (1000 resamples). ``--panel PNG`` draws the three query poses the check changed the
most (each at its moment of the largest change).
docs/ros.md ("People in keyframes") quotes it.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from viewseg_core.cameras import K_from_hfov  # noqa: E402
from viewseg_core.classes import IGNORE_LABEL  # noqa: E402
from viewseg_core.data.depth_sensor import apply_sensor  # noqa: E402
from viewseg_core.data.records import View  # noqa: E402
from viewseg_core.data.synth.lidar import LidarConfig, lidar_scan  # noqa: E402
from viewseg_core.data.synth.render import render  # noqa: E402
from viewseg_core.depth_registration import register_points  # noqa: E402
from viewseg_core.scene_change import CHANGE_CELL_DEG, measured_points  # noqa: E402
from viewseg_core.stale_points import MAX_CELL_DEG  # noqa: E402
from viewseg_ros.keyframes import NS_PER_S, KeyframeBuffer, KeyframeConfig  # noqa: E402

MARGIN_M, MARGIN_REL = 0.10, 0.05   # a depth off by more than max(these) is a different surface
GHOST_KEYFRAME_SHARE = 0.01         # a keyframe "has a ghost" from this share of its pixels
LIDAR_HEIGHT_M = 0.15               # the simulator's LiDAR above its camera


def _off(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where depth ``a`` is nearer than ``b`` by more than the margin (NaN compares False)."""
    with np.errstate(invalid="ignore"):
        return a < b - np.maximum(MARGIN_M, MARGIN_REL * b)


def _jitter(c2w: np.ndarray, degrees: float, cm: float, rng: np.random.Generator) -> np.ndarray:
    """``c2w`` turned ``degrees`` about a random axis and moved ``cm`` in a random direction."""
    if not degrees and not cm:
        return c2w
    axis, step = rng.normal(size=3), rng.normal(size=3)
    axis, step = axis / np.linalg.norm(axis), step / np.linalg.norm(step)
    angle = math.radians(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    turn = np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross
    out = c2w.copy()
    out[:3, :3] = turn @ c2w[:3, :3]
    out[:3, 3] += step * cm / 100.0
    return out


@dataclass
class Tally:
    """Sums over the evaluations of one setting."""

    evaluations: int = 0
    keyframe_pixels: int = 0
    ghost_pixels: int = 0
    keyframes: int = 0
    keyframes_with_ghost: int = 0
    probe_pixels: int = 0
    probe_shown: int = 0
    probe_haunted: int = 0
    admitted: int = 0
    evicted_changed: int = 0
    admitted_changed: int = 0
    # --model: the queries rendered from the kept keyframes against the truth at that moment
    # (a SegmentationEvaluator), and per query its pixels with a true surface and those rendered nearer
    evaluator: Any = None
    # the same with the pixels where the person stands at that moment left out (no keyframe can
    # show where someone is now; what the check changes is where someone was)
    evaluator_away: Any = None
    query_pixels: list = field(default_factory=list)
    query_nearer: list = field(default_factory=list)
    answers: list = field(default_factory=list)   # per query: ((room, probe), truth Rendering, labels, depth), --panel

    def model_row(self) -> tuple[float, float, float, float, float, float, int]:
        """(mIoU %, depth AbsRel, delta < 1.25 %, the same two away from the person, pixels
        rendered nearer than the truth %, queries)."""
        scores, away = self.evaluator.scores(), self.evaluator_away.scores()
        return (100 * scores["miou"], scores["depth_absrel"], 100 * scores["delta1"], away["depth_absrel"],
                100 * away["delta1"], 100 * sum(self.query_nearer) / max(sum(self.query_pixels), 1),
                len(self.query_pixels))

    def row(self) -> tuple[float, float, float, float, float, int, int, int]:
        return (100 * self.ghost_pixels / max(self.keyframe_pixels, 1),
                100 * self.keyframes_with_ghost / max(self.keyframes, 1),
                100 * self.probe_haunted / max(self.probe_pixels, 1),
                100 * self.probe_shown / max(self.probe_pixels, 1),
                self.keyframes / max(self.evaluations, 1), self.admitted, self.evicted_changed,
                self.admitted_changed)


class Room:
    """One room's walk, its frames and truth renders (cached: every setting sees the same frames)."""

    def __init__(self, seed: int, args: argparse.Namespace):
        from viewseg_ros.sim_camera import SimWorld, lidar_mount

        self.world = replace(SimWorld.create(seed, kind=args.kind), walker_lead_s=args.walker)
        self.height, self.width = args.size
        self.K = K_from_hfov(args.hfov, self.width, self.height)
        self.args = args
        self.seed = seed
        self.times = np.arange(0.0, 2 * self.world.period_s, 1.0 / args.rate)
        self.probes = self.world.unseen_poses(args.probes)
        self._truth: dict[tuple[str, int, int], Any] = {}
        self.lidar = LidarConfig(beams=args.lidar) if args.lidar else None
        self.lidar_mount = lidar_mount(self.world.mount, LIDAR_HEIGHT_M)
        self._frames: dict[int, View] = {}

    def rendering(self, what: str, index: int, at: int):
        """The ray-cast truth (:class:`Rendering`) of frame ``index`` (what="frame") or probe ``index``
        ("probe") at frame time ``at``."""
        key = (what, index, at)
        if key not in self._truth:
            pose = self.world.camera_pose(self.times[index]) if what == "frame" else self.probes[index]
            self._truth[key] = render(self.world.scene_at(self.times[at]), self.K, pose, self.height, self.width)
        return self._truth[key]

    def truth(self, what: str, index: int, at: int) -> np.ndarray:
        """The true depth of :meth:`rendering`."""
        return self.rendering(what, index, at).depth

    def frame(self, index: int) -> View:
        """Frame ``index`` as the node receives it: sensor depth (or the LiDAR's sweep registered into
        it), and the pose with its localisation error."""
        if index not in self._frames:
            rng = np.random.default_rng([self.seed, index, 0xC4A])
            true_c2w = self.world.camera_pose(self.times[index])
            if self.args.lidar:
                lidar_pose = self.world.base_pose(self.times[index]) @ self.lidar_mount
                points = lidar_scan(self.world.scene_at(self.times[index]), lidar_pose, self.lidar)
                points = points @ lidar_pose[:3, :3].T + lidar_pose[:3, 3]
                depth = register_points(points, self.K, (self.height, self.width), np.linalg.inv(true_c2w))
            else:
                depth = apply_sensor(self.truth("frame", index, index), rng=rng)
            c2w = _jitter(true_c2w, *self.args.pose_noise, rng)
            self._frames[index] = View(rgb=self.rendering("frame", index, index).rgb, K=self.K, c2w=c2w,
                                       depth=depth, view_id=str(index), stamp=float(self.times[index]))
        return self._frames[index]

    def _project(self, world: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pixel rows, pixel columns, inside [N] bool, ...) of world points [N, 3] in camera ``c2w``,
        with their depth along its axis: (rows, cols, inside, z)."""
        camera = (world - c2w[:3, 3]) @ c2w[:3, :3]
        z = camera[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = camera @ self.K.T
            u, v = np.round(uv[:, 0] / uv[:, 2]), np.round(uv[:, 1] / uv[:, 2])
        inside = (z > 0.05) & (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height)
        return np.where(inside, v, 0).astype(int), np.where(inside, u, 0).astype(int), inside, z

    def probe_pixels(self, probe: int, at: int, kept: list[int]) -> tuple[int, int, int]:
        """For query ``probe`` at frame time ``at``: (pixels whose surface as it is then one of the
        ``kept`` frames showed, pixels where one of them shows a ghost in front of it, its pixels
        with a surface)."""
        depth = self.truth("probe", probe, at)
        world = measured_points(depth, self.K, self.probes[probe])
        seen = np.zeros(len(world), dtype=bool)
        haunted = np.zeros(depth.shape, dtype=bool)
        for index in kept:
            c2w = self.world.camera_pose(self.times[index])
            captured_depth = self.truth("frame", index, index)
            rows, cols, inside, z = self._project(world, c2w)
            captured = np.where(inside, captured_depth[rows, cols], np.nan)
            with np.errstate(invalid="ignore"):
                seen |= inside & (np.abs(captured - z) <= np.maximum(MARGIN_M, MARGIN_REL * z))
            ghosts = _off(captured_depth, self.truth("frame", index, at))
            if ghosts.any():   # where the keyframe's ghost lands in the query, in front of what is there
                ghost_points = measured_points(np.where(ghosts, captured_depth, np.nan), self.K, c2w)
                rows, cols, inside, z = self._project(ghost_points, self.probes[probe])
                haunted[rows[inside], cols[inside]] |= _off(z[inside], depth[rows[inside], cols[inside]])
        return int(seen.sum()), int(haunted.sum()), len(world)


class QueryModel:
    """The node's query path on the kept keyframes: its source selection (query.num_sources = 4,
    its 8 x 8 x 6 grid), cached encoder features, source depth completed as the node would
    (columns for a LiDAR), and the checkpoint's own preset (``rgbd`` for an RGB-D model)."""

    def __init__(self, checkpoint: Path, lidar: bool):
        import torch

        from viewseg_core.model.weights import load_model
        from viewseg_core.source_selection import SourceSelectionConfig

        torch.set_num_threads(2)
        self.model = load_model(checkpoint).eval()
        self.preset = "rgbd" if getattr(self.model.config, "source_depth", False) else "fast"
        self.completion = "columns" if lidar else "none"
        self.selection = SourceSelectionConfig(num_sources=4, grid=8, depth_samples=6,
                                               max_source_depth=float(self.model.renderer.config.far))
        self._features: dict[tuple[int, int], Any] = {}

    def features(self, room: "Room", index: int):
        import torch

        key = (room.seed, index)
        if key not in self._features:
            image = torch.from_numpy(room.frame(index).rgb).permute(2, 0, 1)[None, None]
            with torch.no_grad():
                self._features[key] = self.model.encode_sources(image)[0, 0]
        return self._features[key]

    def render(self, room: "Room", kept: list[int], probe: int) -> tuple[np.ndarray, np.ndarray]:
        """(class ids [H, W], planar depth [H, W], NaN = background) of query ``probe`` from the ``kept`` frames."""
        import torch

        from viewseg_core.model.fast import render_query
        from viewseg_core.source_selection import select_views

        views = [room.frame(i) for i in kept]
        pose = room.probes[probe]
        chosen = select_views(room.K, pose, (room.height, room.width), views, self.selection).indices
        sources = self.model.sources_of_views([self.features(room, kept[i]) for i in chosen],
                                              [views[i] for i in chosen], self.completion)
        with torch.no_grad():
            out = render_query(self.model, torch.as_tensor(room.K), torch.as_tensor(pose), room.height, room.width,
                               sources, self.preset)
        labels = out.logits.argmax(-1).numpy()
        return np.where(out.valid.numpy(), labels, -1), out.depth.numpy()


def score_queries(room: "Room", model: QueryModel, kept: list[int], at: int, tally: Tally) -> None:
    """Render every probe from the ``kept`` frames and score it against the truth at frame time ``at``."""
    from viewseg_core.metrics import SegmentationEvaluator

    if tally.evaluator is None:
        tally.evaluator, tally.evaluator_away = SegmentationEvaluator(), SegmentationEvaluator()
    walker = len(room.world.scene.kind)   # SimWorld.scene_at appends the person after the room's primitives
    for probe in range(len(room.probes)):
        truth = room.rendering("probe", probe, at)
        labels, depth = model.render(room, kept, probe)
        tally.evaluator.add(labels, truth.labels, depth, truth.depth)
        person_now = truth.primitive == walker
        tally.evaluator_away.add(labels, np.where(person_now, IGNORE_LABEL, truth.labels), depth,
                                 np.where(person_now, np.nan, truth.depth))
        known = np.isfinite(truth.depth) & ~person_now
        tally.query_pixels.append(int(known.sum()))
        tally.query_nearer.append(int((known & _off(depth, truth.depth)).sum()))
        tally.answers.append(((room.seed, probe), truth, labels, depth))


def run_setting(room: Room, share: float, tally: Tally, model: QueryModel | None = None) -> None:
    args = room.args
    buffer = KeyframeBuffer(KeyframeConfig(change_share=share, change_cell_deg=args.cell))
    eval_every = max(1, round(args.eval_every * args.rate))
    check_every = max(1, round(args.check_every * args.rate)) if args.check_every > 0 else 0
    last_check = -(1 << 30)
    index_of: dict[int, int] = {}   # keyframe id -> frame index
    for index in range(len(room.times)):
        view = room.frame(index)
        stamp_ns = int(round(room.times[index] * NS_PER_S))
        decision = buffer.should_admit(view.c2w, stamp_ns)
        force = False
        if (not decision.admit and decision.kind == "duplicate" and share and check_every
                and index - last_check >= check_every):
            last_check = index
            force = bool(buffer.changed_keyframes(view, stamp_ns, among=decision.duplicates))
        if decision.admit or force:
            keyframe = buffer.add(view, stamp_ns, force=force)
            if keyframe is not None:
                index_of[keyframe.id] = index
                tally.admitted += 1
                tally.admitted_changed += int(force)
                tally.evicted_changed += len(buffer.evict_changed(keyframe))
        if index % eval_every or index < eval_every:
            continue
        kept = [index_of[k.id] for k in buffer.snapshot()]
        tally.evaluations += 1
        for frame in kept:
            ghost = int(_off(room.truth("frame", frame, frame), room.truth("frame", frame, index)).sum())
            tally.keyframe_pixels += room.height * room.width
            tally.ghost_pixels += ghost
            tally.keyframes += 1
            tally.keyframes_with_ghost += int(ghost >= GHOST_KEYFRAME_SHARE * room.height * room.width)
        for probe in range(len(room.probes)):
            shown, haunted, pixels = room.probe_pixels(probe, index, kept)
            tally.probe_shown += shown
            tally.probe_haunted += haunted
            tally.probe_pixels += pixels
        if model is not None and tally.evaluations % args.query_every == 0:
            score_queries(room, model, kept, index, tally)


def model_table(tallies: dict[float, Tally], resamples: int = 1000) -> str:
    """The queries' scores per setting; with the check off among them, every other setting minus
    it, with paired bootstrap intervals over the queries (the same probes at the same moments)."""
    from viewseg_core.metrics import bootstrap_counts, paired_bootstrap, percentile_interval

    lines = ["| keyframes.change_share | queries | mIoU against the truth of the moment (%) | depth AbsRel | "
             "delta < 1.25 (%) | AbsRel away from the person | delta < 1.25 away from the person (%) | "
             "query pixels rendered nearer than the true surface by > max(10 cm, 5%), away from the person (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for share, tally in tallies.items():
        miou, absrel, delta, absrel_away, delta_away, nearer, queries = tally.model_row()
        lines.append(f"| {share:g}{' (off)' if not share else ''} | {queries} | {miou:.1f} | {absrel:.3f} | "
                     f"{delta:.1f} | {absrel_away:.3f} | {delta_away:.1f} | {nearer:.2f} |")
    off = tallies.get(0.0)
    if off is None:
        return "\n".join(lines)
    lines += ["", "| keyframes.change_share minus off | mIoU | depth AbsRel | delta < 1.25 | AbsRel away from the person | "
              "delta < 1.25 away | pixels rendered nearer |", "|---|---|---|---|---|---|---|"]
    counts = bootstrap_counts(len(off.query_pixels), resamples)
    for share, tally in tallies.items():
        if share == 0.0:
            continue
        diff = paired_bootstrap(tally.evaluator, off.evaluator, ("miou", "depth_absrel", "delta1"), counts=counts)
        away = paired_bootstrap(tally.evaluator_away, off.evaluator_away, ("depth_absrel", "delta1"), counts=counts)

        def nearer(t: Tally) -> np.ndarray:
            return 100 * (counts @ np.asarray(t.query_nearer, float)) / (counts @ np.asarray(t.query_pixels, float))

        gap = nearer(tally) - nearer(off)
        low, high = percentile_interval(gap)
        whole = tally.model_row()[5] - off.model_row()[5]

        def cell(d: dict, scale: float, digits: int) -> str:
            return (f"{scale * d['difference']:+.{digits}f} [{scale * d['low']:+.{digits}f}, "
                    f"{scale * d['high']:+.{digits}f}]")

        cells = [cell(diff["miou"], 100, 1), cell(diff["depth_absrel"], 1, 3), cell(diff["delta1"], 100, 1),
                 cell(away["depth_absrel"], 1, 3), cell(away["delta1"], 100, 1),
                 f"{whole:+.2f} [{low:+.2f}, {high:+.2f}]"]
        lines.append(f"| {share:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def panel_of(tallies: dict[float, Tally], count: int = 3) -> np.ndarray:
    """A picture of ``count`` queries, each of another query pose, whose pixels rendered nearer
    than the truth fell the most from the check off to the first setting with it on (an
    illustration, chosen for the change): per row the truth of the moment (colour, semantics,
    depth) and each setting's answer."""
    from viewseg_core.viz import colorize, colorize_depth, panel

    off = tallies[0.0]
    on_share, on = next((share, t) for share, t in tallies.items() if share)
    fell = np.asarray(off.query_nearer) - np.asarray(on.query_nearer)
    rows, shown = [], set()
    for q in np.argsort(-fell, kind="stable"):
        where, truth, off_labels, off_depth = off.answers[q]
        if where in shown:
            continue
        shown.add(where)
        _, _, on_labels, on_depth = on.answers[q]
        far = float(np.nanpercentile(truth.depth, 99))
        rows.append([(f"room {where[0]}, query {where[1]}: now", truth.rgb), ("true semantics", colorize(truth.labels)),
                     ("true depth", colorize_depth(truth.depth, far)),
                     ("check off: semantics", colorize(np.where(off_labels < 0, 255, off_labels))),
                     ("check off: depth", colorize_depth(off_depth, far)),
                     (f"share {on_share:g}: semantics", colorize(np.where(on_labels < 0, 255, on_labels))),
                     (f"share {on_share:g}: depth", colorize_depth(on_depth, far))])
        if len(rows) == count:
            break
    return panel(rows, tile_height=120)


def table(tallies: dict[float, Tally]) -> str:
    lines = ["| keyframes.change_share | ghost (% of keyframe pixels) | keyframes with a ghost (%) | "
             "query pixels with a ghost in front (%) | query pixels shown right (%) | keyframes kept (mean) | "
             "admitted | evicted for a change | admitted for a change |", "|---|---|---|---|---|---|---|---|---|"]
    for share, tally in tallies.items():
        ghost, with_ghost, haunted, shown, kept, admitted, evicted, forced = tally.row()
        lines.append(f"| {share:g}{' (off)' if not share else ''} | {ghost:.2f} | {with_ghost:.1f} | {haunted:.2f} | "
                     f"{shown:.1f} | "
                     f"{kept:.1f} | {admitted} | {evicted} | {forced} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def floats(text: str) -> list[float]:
        return [float(x) for x in text.split(",") if x]

    def size(text: str) -> tuple[int, int]:
        width, height = (int(x) for x in text.lower().split("x"))
        return height, width

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",") if x], default=[0, 1, 2])
    p.add_argument("--shares", type=floats, default=[0.0, 0.01, 0.02, 0.05], help="keyframes.change_share values")
    p.add_argument("--walker", type=float, default=3.0, metavar="LEAD_S",
                   help="a person walks the robot's walk this many seconds ahead of it (0 = a static room)")
    p.add_argument("--cell", type=float, default=CHANGE_CELL_DEG, metavar="DEG",
                   help="the change test's range-image cell (keyframes.change_cell_deg)")
    p.add_argument("--kind", choices=("human", "robot"), default="human", help="the walk's camera height")
    p.add_argument("--lidar", type=int, default=0, metavar="BEAMS",
                   help="keyframe depth from a LiDAR of this many beams, 15 cm above the camera (its sweep at the "
                        "frame's time registered into the keyframe, noise-free); 0 = the depth camera")
    p.add_argument("--pose-noise", type=floats, default=[0.0, 0.0], metavar="DEG,CM",
                   help="a random localisation error on every frame: a turn of DEG about a random axis, CM of shift")
    p.add_argument("--size", type=size, default=(60, 80), help="keyframe size WxH (the demo model's working size)")
    p.add_argument("--hfov", type=float, default=70.0, help="camera horizontal field of view (the sim's), degrees")
    p.add_argument("--rate", type=float, default=5.0, help="frames a second offered to the buffer")
    p.add_argument("--check-every", type=float, default=1.0, metavar="S",
                   help="a repeated pose is checked for a change at most this often (keyframes.change_check_s; 0 = never)")
    p.add_argument("--eval-every", type=float, default=1.0, metavar="S", help="seconds between evaluations")
    p.add_argument("--probes", type=int, default=8, help="query poses the walk never takes")
    p.add_argument("--model", type=Path, default=None, metavar="CHECKPOINT",
                   help="also render the probes with this model from the kept keyframes, as the node would "
                        "(e.g. checkpoints/demo_rgbd.pt), and score them against the truth of the moment")
    p.add_argument("--query-every", type=int, default=5, metavar="N",
                   help="with --model: render the probes at every N-th evaluation")
    p.add_argument("--panel", type=Path, default=None, metavar="PNG",
                   help="with --model and --shares holding 0 and another share: a picture of the three query "
                        "poses the check changed the most (truth, then each setting's semantics and depth)")
    args = p.parse_args(argv)
    if len(args.pose_noise) != 2 or min(args.pose_noise) < 0:
        p.error("--pose-noise takes DEG,CM, both >= 0")
    if args.lidar < 0:
        p.error("--lidar must be >= 0 beams")
    if args.query_every < 1:
        p.error("--query-every must be >= 1")
    if args.panel is not None and (args.model is None or 0.0 not in args.shares or not any(args.shares)):
        p.error("--panel needs --model and --shares with 0 and another share")
    if args.walker < 0 or args.rate <= 0 or args.eval_every <= 0 or args.check_every < 0 or args.probes < 1:
        p.error("--walker and --check-every must be >= 0; --rate, --eval-every and --probes > 0")
    if any(not 0 <= share <= 1 for share in args.shares):
        p.error("--shares must be in [0, 1]")
    if not 0 < args.cell <= MAX_CELL_DEG:
        p.error(f"--cell must be in (0, {MAX_CELL_DEG:g}] degrees")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tallies = {share: Tally() for share in args.shares}
    model = QueryModel(args.model, bool(args.lidar)) if args.model is not None else None
    for seed in args.seeds:
        room = Room(seed, args)
        for share in args.shares:
            run_setting(room, share, tallies[share], model)
    print(table(tallies))
    if model is not None:
        print()
        print(model_table(tallies))
    if args.panel is not None:
        from viewseg_core.viz import save_png

        print(f"panel: {save_png(args.panel, panel_of(tallies))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
