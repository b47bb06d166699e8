"""``viewseg eval``: ViewSeg and its baselines on one split, scored by one protocol.

    viewseg eval --checkpoint runs/synthetic_small/model.pt --data data/synthetic_small \\
        --split test --out runs/synthetic_small/eval --segmenter runs/segmenter_2d/segmenter.pt \\
        --baselines all

Every method predicts the full target image of every (sources, target) pair of the split;
the same :class:`~viewseg_core.metrics.SegmentationEvaluator` scores each one:

* ``dataset_miou``: mIoU from one confusion matrix summed over the whole split (detectron2's
  definition, what ViewSeg reported), ``miou_in_truth`` (the same over the classes the
  split's ground truth has: a class it never shows counts IoU 0 in ``dataset_miou`` once a
  method predicts one pixel of it), with fwIoU, pixel accuracy, mean class accuracy, the
  things / stuff (wall, floor, ceiling) per-class means (``miou_things``, ``miou_stuff``) and
  the paper's IoU_T / IoU_S (``iou_t_merged``, ``iou_s_merged``: every thing class merged into
  one class, wall/floor/ceiling into another, the IoU of each merged class);
* ``per_image_miou``: mIoU of each image's own confusion matrix, averaged over images (the
  Semantic-NeRF / S-Ray protocol; usually higher, since absent classes cannot hurt an image);
* depth L1 and AbsRel (all pixels, things, stuff) and the delta < 1.25^k accuracies, on
  pixels with true depth; pixels a method leaves empty are counted in
  ``depth_missing_fraction`` and are semantic errors (label 255 = "unknown");
* ViewSeg minus each baseline on the main scores, with a paired image-bootstrap interval
  (:func:`~viewseg_core.metrics.paired_bootstrap`; ``--bootstrap N`` resamples, 0 = none), so
  that "beats" is read against the noise of a small test split.

Writes ``metrics.json`` (every score, the comparisons, per-class IoU, per-example image mIoU, timings,
the data settings and the pairs file used),
``metrics.md`` (tables of every method), ``per_image_stats.npz`` (each method's per-image
confusion matrix and depth sums, so that any subset of the images can be re-scored and
re-compared without rendering again: ``scripts/compare_methods.py``) and ``panels/*.png`` (sources | true target RGB,
semantics, depth | ViewSeg's semantics, depth, confidence | each baseline's semantics, depth).

Nearest source view: ``nearest_view`` copies the 2D segmenter's labels of the nearest source
(needs ``--segmenter``); ``nearest_view_true_labels`` copies the nearest source's TRUE labels,
a stronger baseline no deployed system has. Without ``--segmenter``, ``--baselines all`` and
``nearest_view`` give ``nearest_view_true_labels`` (with a notice).

Data settings (image size, number of sources, pair mining) come from the checkpoint (a
training checkpoint's config, or the ``data`` a ``viewseg-model`` file carries), then
``--config YAML``, then ``data.key=value`` overrides; ``--data`` (or the config's root) sets
the root. A model file without data settings needs ``--config`` (the training YAML): eval
refuses rather than guess the image size. A ``--config`` that disagrees with the
checkpoint on ``image_size``, ``num_sources`` or ``pairs`` is refused; an explicit
``data.key=value`` override is taken as deliberate and recorded in the report. A training
pose noise (``data.pose_noise``) carried by the checkpoint is not applied: sources are exact
unless ``--pose-noise``, ``--config`` or an override asks for noise.

Pairs: ``pairs_<split>.json`` is read from ``--out`` when it matches the pair settings, else
from the data root (read only), else mined and written to ``--out``; nothing is written into
the data root. The report names the pairs file used.

Studies (ViewSeg only, no baselines; one study per run, not both at once):

* ``--num-sources 1,2,3,4`` (the paper's Table 4): the targets are mined once for the largest
  N (data.num_sources = max N), and ViewSeg is scored with every N on the same targets. Each
  N uses the first N sources of the example's stored order, which is the mined sources in
  their candidate order (most overlap with the target first): the sources of N are a subset
  of those of N + 1, so a row differs from the next only by views added, and fewer views keep
  the ones that see most of the target. Writes ``study_num_sources.json`` / ``.md``: a row
  per N and each N minus the largest N with a paired image-bootstrap interval.
* ``--pose-noise DEG,CM [DEG,CM ...]`` (the paper's Table 6): Gaussian noise of DEG degrees
  (rotation) and CM centimetres (translation) on the SOURCE poses only, seeded per source
  view; the targets, sources and images are the same at every level. One level is a normal
  evaluation with noisy sources (every requested baseline gets the same noisy poses);
  several levels write ``study_pose_noise.json`` / ``.md``: a row per level and each level
  minus the first.

Source depth (RGB-D keyframes): ``--source-depth sensor|clean|none`` says what depth camera
the sources had. ``sensor`` passes the true source depth through the data config's
``depth_sensor`` model (noise sigma = k z^2, millimetres, range, holes, edges), seeded per
source view (the same measurement for every method, on every run); ``clean`` is the true
depth; ``none`` is no depth camera. With source depth:

* an RGB-D ViewSeg (``model.source_depth``) reads it (an RGB model ignores it);
* ``cloudseg_input`` (in ``--baselines all``) lifts the 2D segmenter's labels with the SAME
  measured depth, holes and all;
* ``nearest_view`` (and ``nearest_view_true_labels``) copies the nearest source's measured depth
  (instead of its true depth);
* ``--rgb-checkpoint`` adds an RGB-only ViewSeg (``viewseg_rgb``) on the same examples.

The paired bootstrap compares ViewSeg with each of them. The default, ``auto``, is today's
behaviour for an RGB model (``none``) and, for an RGB-D model, the checkpoint's
``data.source_depth`` (``sensor`` when that is ``none``).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import math
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm import tqdm

from training.baselines import (DEFAULT_MAX_SPLAT, DEFAULT_ROTATION_WEIGHT, cloudseg, load_segmenter,
                                nearest_view, predicted_source_depth, segment)
from training.checkpoint import FORMAT as TRAIN_FORMAT, FORMAT_VERSION as TRAIN_FORMAT_VERSION
from training.config_io import apply_overrides, deep_merge, from_dict, read_config_dict, to_dict
from training.data import DataConfig, build_dataset
from training.panels import example_panel, full_target_truth, model_reads_depth, render_example
from viewseg_core.atomic_io import check_writable, write_bytes_atomic, write_text_atomic
from viewseg_core.cli import nonnegative_float, nonnegative_int, positive_int, resolve_device
from viewseg_core.classes import CLASS_NAMES, colorize
from viewseg_core.metrics import HIGHER_IS_BETTER, SegmentationEvaluator, paired_bootstrap
from viewseg_core.model.viewseg import ViewSeg
from viewseg_core.model.weights import FORMAT_VERSION, MODEL_FORMAT, model_from_checkpoint, read_weights_file
from viewseg_core.viz import colorize_depth, panel, save_png

METHOD_TITLES: dict[str, str] = {
    "viewseg": "ViewSeg",
    "viewseg_rgb": "ViewSeg (RGB only)",
    "cloudseg_pred": "CloudSeg (predicted depth)",
    "cloudseg_true": "CloudSeg (true depth)",
    "cloudseg_input": "CloudSeg (source depth input)",
    "nearest_view": "nearest source view",
    "nearest_view_true_labels": "nearest source view (true source labels)",
    "oracle": "oracle (2D segmenter on true target RGB)",
}
BASELINES: tuple[str, ...] = ("cloudseg_pred", "cloudseg_true", "cloudseg_input", "nearest_view",
                               "nearest_view_true_labels", "oracle")
NEEDS_SEGMENTER = ("cloudseg_pred", "cloudseg_true", "cloudseg_input", "nearest_view", "oracle")
# Never in ``--baselines all`` with a segmenter (name it to add it); without one, ``all`` is this alone.
TRUE_LABEL_BASELINES = ("nearest_view_true_labels",)
NEEDS_SOURCE_DEPTH = ("cloudseg_input",)
SOURCE_DEPTH_CHOICES = ("auto", "none", "clean", "sensor")
DEFAULT_BOOTSTRAP = 1000   # image resamples behind the ViewSeg-vs-baseline intervals
BOOTSTRAP_LEVEL = 0.95


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

def load_viewseg(path: str | Path) -> tuple[ViewSeg, dict | None]:
    """A ViewSeg from a ``viewseg-model`` file or a training checkpoint (either layout).

    Returns:
        (model on CPU, the training config dict; for a model file ``{"data": ...}`` when it
        carries its training data settings, else None).
    """
    obj = read_weights_file(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a viewseg model or training checkpoint")
    if obj.get("format") == MODEL_FORMAT:
        data = obj.get("data")
        return model_from_checkpoint(obj, str(path)), ({"data": dict(data)} if isinstance(data, Mapping) and data
                                                       else None)
    if obj.get("format") != TRAIN_FORMAT:
        raise ValueError(f"{path} is neither a viewseg model (format={MODEL_FORMAT!r}) nor a training "
                         f"checkpoint (format={TRAIN_FORMAT!r})")
    if obj.get("format_version", 0) > TRAIN_FORMAT_VERSION:
        raise ValueError(f"{path}: training checkpoint format_version {obj['format_version']} is newer than "
                         f"this viewseg understands ({TRAIN_FORMAT_VERSION})")
    inner = obj.get("model")
    if isinstance(inner, Mapping) and inner.get("format") == MODEL_FORMAT:
        model = model_from_checkpoint(inner, str(path))
    elif isinstance(inner, Mapping) and isinstance(obj.get("model_config"), Mapping):
        # Older layout: a bare state dict beside the model config.
        model = model_from_checkpoint({"format": MODEL_FORMAT, "format_version": FORMAT_VERSION,
                                       "config": obj["model_config"], "state_dict": inner}, str(path))
    else:
        raise ValueError(f"{path}: training checkpoint has no model (expected 'model' as a viewseg-model "
                         f"dict, or a state dict beside 'model_config')")
    config = obj.get("config")
    return model, dict(config) if isinstance(config, Mapping) else None


# Rays per render chunk on CPU: the field's per-view activations (rays x samples x views x
# hidden) then stay cache-sized; 2048-ray chunks measured 3x slower than 128 at 60x80.
CPU_CHUNK_SIZE = 128


def set_render_chunk(model: ViewSeg, chunk_size: int, device: torch.device) -> int:
    """Set the rays per render chunk (0: CPU_CHUNK_SIZE on CPU, the model's own on GPU)."""
    if chunk_size <= 0:
        chunk_size = CPU_CHUNK_SIZE if device.type == "cpu" else model.renderer.config.chunk_size
    model.renderer.config.chunk_size = int(chunk_size)
    return int(chunk_size)


# Data settings a --config may not change silently: they decide what the model sees.
PINNED_DATA_KEYS = ("image_size", "num_sources", "pairs")


def _pinned_value(cfg: DataConfig, key: str):
    """Comparable value of a pinned key (``pairs`` as the effective pair rules)."""
    if key == "image_size":
        return [int(x) for x in cfg.image_size]
    if key == "num_sources":
        return int(cfg.num_sources)
    try:
        from viewseg_core.data.pairs import PairConfig, _config_json
        rules = _config_json(PairConfig(**{**cfg.pairs, "num_sources": 1}))
        rules.pop("num_sources")
        return json.loads(json.dumps(rules))
    except TypeError:  # an unknown pair key: compare as written
        return dict(cfg.pairs)


def resolve_data_config(train_config: Mapping | None, config_path: str = "", overrides: list[str] | None = None,
                        data_root: str = "", source: str = "", record: dict | None = None,
                        config_flag: str = "--config") -> DataConfig:
    """Data settings: the checkpoint's (``train_config["data"]``) < ``--config`` YAML < ``data.*``
    overrides < ``--data``.

    Refuses (ValueError) when neither the checkpoint nor ``config_path`` gives data settings
    (``source`` names the checkpoint in the message), and when both do and disagree on a
    :data:`PINNED_DATA_KEYS` key that no override sets. ``record``, when given, receives where the settings came
    from, the overrides and every key that differs from the checkpoint's. ``config_flag`` is
    the calling command's name for ``config_path`` in that message.
    """
    overrides = list(overrides or [])
    bad = [o for o in overrides if not o.strip().startswith("data.")]
    if bad:
        raise ValueError(f"viewseg eval takes only data.* overrides (the model comes from the checkpoint), "
                         f"got {bad}")
    carried = (train_config or {}).get("data")
    carried = copy.deepcopy(dict(carried)) if isinstance(carried, Mapping) and carried else None
    if carried is None and not config_path:
        raise ValueError(f"{source or 'the checkpoint'} carries no data settings (image size, pair rules); "
                         f"pass {config_flag} <the training YAML>")
    doc: dict[str, Any] = {"data": copy.deepcopy(carried or {})}
    yaml_data: dict = {}
    if config_path:
        yaml_data = dict(read_config_dict(config_path).get("data") or {})
        doc = deep_merge(doc, {"data": yaml_data})
    ckpt_cfg = from_dict(DataConfig, copy.deepcopy(carried), "data.") if carried is not None else None
    if ckpt_cfg is not None and config_path:
        merged = from_dict(DataConfig, copy.deepcopy(doc["data"]), "data.")
        # a key the overrides set is deliberate, whatever the YAML said
        overridden = {o.strip()[len("data."):].split("=", 1)[0].split(".", 1)[0].strip() for o in overrides}
        differ = [(k, _pinned_value(ckpt_cfg, k), _pinned_value(merged, k)) for k in PINNED_DATA_KEYS
                  if k not in overridden and _pinned_value(ckpt_cfg, k) != _pinned_value(merged, k)]
        if differ:
            def shown(a, b):  # pair rules: only the rules that differ
                if isinstance(a, dict) and isinstance(b, dict):
                    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
                    return {k: a.get(k) for k in keys}, {k: b.get(k) for k in keys}
                return a, b
            raise ValueError(f"--config {config_path} disagrees with the data settings {source or 'the checkpoint'} "
                             f"was trained with: " + "; ".join("data.{} is {} in the checkpoint, {} in --config"
                                                              .format(k, *shown(a, b)) for k, a, b in differ)
                             + " (to evaluate differently on purpose, give data.key=value overrides)")
    # A mix of sensor densities or fields of view (depth_sensor.row_strides, row_bands) is a
    # training augmentation: evaluation measures one sensor (row_stride, row_band) unless the
    # YAML or an override asks for the mix.
    for mix in ("row_strides", "row_bands"):
        carried_mix = ((carried or {}).get("depth_sensor") or {}).get(mix) or []
        asked = mix in (yaml_data.get("depth_sensor") or {}) or any(
            o.strip().startswith(f"data.depth_sensor.{mix}") for o in overrides)
        if carried_mix and not asked:
            doc["data"]["depth_sensor"][mix] = []
            if record is not None:
                record[f"{mix}_dropped"] = list(carried_mix)
    apply_overrides(doc, overrides)
    cfg = from_dict(DataConfig, doc["data"], "data.")
    if data_root:
        cfg.root = str(data_root)
    if record is not None:
        record["from"] = " + ".join([*(["checkpoint"] if carried is not None else []),
                                     *([f"--config {config_path}"] if config_path else [])])
        record["overrides"] = overrides
        noise_from = ("override" if any(o.strip().startswith("data.pose_noise") for o in overrides) else
                      "config" if "pose_noise" in yaml_data else "checkpoint" if carried is not None and
                      "pose_noise" in carried else "default")
        record["pose_noise_from"] = noise_from
        if ckpt_cfg is not None:
            before, after = to_dict(ckpt_cfg), to_dict(cfg)
            record["changed_from_checkpoint"] = {k: {"checkpoint": before[k], "used": after[k]} for k in after
                                                 if k != "root" and before.get(k) != after[k]}
    return cfg


# --------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------

class ExampleContext:
    """One dataset example plus the inputs several methods share, computed once, on demand.

    ``timings`` records the seconds spent on each shared input, so that a method's own time
    excludes them (they are reported separately).
    """

    def __init__(self, example: dict, model: ViewSeg | None = None, segmenter=None,
                 device: torch.device | str = "cpu", rotation_weight: float = DEFAULT_ROTATION_WEIGHT,
                 max_splat: int = DEFAULT_MAX_SPLAT, rgb_model: ViewSeg | None = None) -> None:
        self.example = example
        self.model, self.segmenter, self.device = model, segmenter, torch.device(device)
        self.rgb_model = rgb_model
        self.rotation_weight, self.max_splat = rotation_weight, max_splat
        self.height, self.width = (int(x) for x in example["target_size"])
        truth = full_target_truth(example)
        if truth is None:
            raise ValueError("evaluation needs full-target examples (build_dataset(..., full_target=True))")
        self.truth = truth
        self.timings: dict[str, float] = {}
        self._cache: dict[str, Any] = {}

    def _cached(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in self._cache:
            t0 = time.perf_counter()
            self._cache[name] = fn()
            self.timings[name] = time.perf_counter() - t0
        return self._cache[name]

    def _need(self, what: str):
        obj = getattr(self, what)
        if obj is None:
            raise ValueError(f"this method needs a {what} (pass --{what if what != 'model' else 'checkpoint'})")
        return obj

    @property
    def source_labels_2d(self) -> torch.Tensor:
        """[V, H, W] the 2D segmenter's labels on the source images."""
        return self._cached("segment_sources", lambda: segment(self._need("segmenter"),
                                                               self.example["source_rgb"].to(self.device)).cpu())

    @property
    def source_depth_pred(self) -> torch.Tensor:
        """[V, H, W] the depth ViewSeg renders at the source cameras."""
        return self._cached("render_source_depth",
                            lambda: predicted_source_depth(self._need("model"), self.example, self.device))

    @property
    def source_depth_true(self) -> torch.Tensor:
        return self.example["source_depth"]

    @property
    def has_source_depth_input(self) -> bool:
        return self.example.get("source_depth_input") is not None

    @property
    def source_depth_input(self) -> torch.Tensor:
        """[V, H, W] the measured source depth the RGB-D model is given (NaN = no return)."""
        if not self.has_source_depth_input:
            raise ValueError("this method needs source depth (pass --source-depth clean or sensor)")
        return self.example["source_depth_input"]

    @property
    def source_depth_given(self) -> torch.Tensor:
        """The depth a depth camera gave (``source_depth_input``), else the true depth."""
        return self.source_depth_input if self.has_source_depth_input else self.source_depth_true

    @property
    def target_rgb(self) -> torch.Tensor:
        """[3, H, W] float true target image."""
        return self.example["target_rgb"].reshape(self.height, self.width, 3).permute(2, 0, 1)


Method = Callable[[ExampleContext], dict]


def _viewseg(ctx: ExampleContext) -> dict:
    return render_example(ctx._need("model"), ctx.example, ctx.device)


def _viewseg_rgb(ctx: ExampleContext) -> dict:
    if ctx.rgb_model is None:
        raise ValueError("method viewseg_rgb needs --rgb-checkpoint")
    return render_example(ctx.rgb_model, ctx.example, ctx.device)


def _cloudseg(depth_attr: str) -> Method:
    def run(ctx: ExampleContext) -> dict:
        ex = ctx.example
        return cloudseg(ctx.source_labels_2d, getattr(ctx, depth_attr), ex["source_K"], ex["source_c2w"],
                        ex["target_K"], ex["target_c2w"], ctx.height, ctx.width, ctx.max_splat)
    return run


def _nearest(ctx: ExampleContext) -> dict:
    """The nearest source's 2D segmenter labels (a method a robot could run)."""
    ex = ctx.example
    return nearest_view(ctx.source_labels_2d, ctx.source_depth_given, ex["source_c2w"], ex["target_c2w"],
                        ctx.rotation_weight)


def _nearest_true(ctx: ExampleContext) -> dict:
    """The nearest source's TRUE labels: a stronger baseline than :func:`_nearest`, never the same."""
    ex = ctx.example
    return nearest_view(ex["source_labels"], ctx.source_depth_given, ex["source_c2w"], ex["target_c2w"],
                        ctx.rotation_weight)


def _oracle(ctx: ExampleContext) -> dict:
    labels = segment(ctx._need("segmenter"), ctx.target_rgb[None].to(ctx.device))[0]
    return {"labels": labels.cpu().numpy(), "depth": None}


METHODS: dict[str, Method] = {"viewseg": _viewseg, "viewseg_rgb": _viewseg_rgb,
                              "cloudseg_pred": _cloudseg("source_depth_pred"),
                              "cloudseg_true": _cloudseg("source_depth_true"),
                              "cloudseg_input": _cloudseg("source_depth_input"), "nearest_view": _nearest,
                              "nearest_view_true_labels": _nearest_true, "oracle": _oracle}


def method_descriptions(names: list[str], with_segmenter: bool, source_depth: str = "none",
                        reads_depth: bool = False) -> dict[str, str]:
    given = {"sensor": "the source depth measured through the sensor model", "clean": "the true source depth "
             "given as input"}.get(source_depth, "")
    viewseg = "ViewSeg rendered at the target pose from the source views"
    if reads_depth:
        viewseg += f" and {given}" if given else " (an RGB-D model given no source depth: its no-depth behaviour)"
    text = {
        "viewseg": viewseg,
        "viewseg_rgb": "the RGB-only ViewSeg of --rgb-checkpoint on the same examples",
        "cloudseg_pred": "2D segmenter labels of the sources lifted with the depth ViewSeg renders at the "
                         "source cameras, z-buffered into the target",
        "cloudseg_true": "2D segmenter labels of the sources lifted with the true source depth, z-buffered "
                         "into the target",
        "cloudseg_input": f"2D segmenter labels of the sources lifted with {given or 'the source depth input'} "
                          "(the same depth ViewSeg is given), z-buffered into the target",
        "nearest_view": "2D segmenter labels and " + ("measured" if given else "true") + " depth of the "
                        "source closest in pose (translation + rotation), copied",
        "nearest_view_true_labels": "TRUE labels and " + ("measured" if given else "true") + " depth of the "
                                    "source closest in pose (translation + rotation), copied: a stronger "
                                    "baseline than nearest_view (no deployed system has true labels)",
        "oracle": "2D segmenter run on the true target RGB (semantic upper bound; no depth)",
    }
    return {n: text.get(n, n) for n in names}


# --------------------------------------------------------------------------------------
# The evaluation loop and its reports
# --------------------------------------------------------------------------------------

def _scores(evaluator: SegmentationEvaluator) -> dict:
    raw = evaluator.scores()
    out = {"dataset_miou": raw.pop("miou"), "per_image_miou": raw.pop("per_image_miou")}
    iou = raw.pop("iou_per_class")
    out.update(raw)
    out["iou_per_class"] = {name: v for name, v in zip(CLASS_NAMES, iou)}
    return out


def method_panel(example: dict, truth: dict, preds: Mapping[str, dict]) -> np.ndarray:
    """training.panels' panel for the first method, then a row per further method."""
    names = list(preds)
    first = preds[names[0]]
    H, W = truth["labels"].shape
    main = {"labels": first["labels"],
            "depth": first["depth"] if first.get("depth") is not None else np.full((H, W), np.nan, np.float32),
            "confidence": first.get("confidence", np.zeros((H, W), np.float32)),
            "rgb": first.get("rgb", np.zeros((H, W, 3), np.uint8))}
    image = example_panel(example, main, truth)
    finite = truth["depth"][np.isfinite(truth["depth"])]
    max_depth = float(np.percentile(finite, 99)) if finite.size else None
    rows = []
    for name in names[1:]:
        p = preds[name]
        row = [(f"{name} semantics", colorize(p["labels"]))]
        if p.get("depth") is not None:
            row.append((f"{name} depth", colorize_depth(p["depth"], max_depth)))
        rows.append(row)
    if not rows:
        return image
    extra = panel(rows, tile_height=150)
    width = max(image.shape[1], extra.shape[1])
    pad = lambda im: np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    return np.concatenate([pad(image), np.full((4, width, 3), 255, np.uint8), pad(extra)], axis=0)


def example_indices(n: int, max_examples: int = 0) -> list[int]:
    """All indices, or ``max_examples`` spread evenly over the split (every scene gets some)."""
    if max_examples <= 0 or max_examples >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_examples).round().astype(int).tolist()))


def run_evaluation(dataset, methods: Mapping[str, Method], *, indices: list[int] | None = None,
                   model: ViewSeg | None = None, segmenter=None, device: torch.device | str = "cpu",
                   out_dir: str | Path | None = None, panels: int = 0,
                   rotation_weight: float = DEFAULT_ROTATION_WEIGHT, max_splat: int = DEFAULT_MAX_SPLAT,
                   progress: bool = True, bootstrap: int = DEFAULT_BOOTSTRAP,
                   stats_meta: Mapping[str, str] | None = None, rgb_model: ViewSeg | None = None) -> dict:
    """Score every method on ``dataset[indices]`` (full-target examples); with ``out_dir``,
    also write the per-image statistics (:func:`write_image_stats`, with ``stats_meta``).

    Returns:
        {"methods": {name: scores}, "comparisons": :func:`compare_to_baselines` (``bootstrap``
        resamples), "per_example": [...], "seconds": {...}, "num_examples": n}.
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    if not indices:
        raise ValueError("nothing to evaluate: the split has no examples")
    evaluators = {name: SegmentationEvaluator() for name in methods}
    seconds = {name: 0.0 for name in methods}
    shared: dict[str, float] = {}
    per_example = []
    for n, index in enumerate(tqdm(indices, desc="eval", disable=not progress, dynamic_ncols=True)):
        example = dataset[index]
        ctx = ExampleContext(example, model, segmenter, device, rotation_weight, max_splat, rgb_model)
        preds: dict[str, dict] = {}
        row = {"index": int(index), "scene": example["scene"], "target_id": example["target_id"],
               "source_ids": list(example["source_ids"]), "image_miou": {}}
        for name, fn in methods.items():
            before = sum(ctx.timings.values())
            t0 = time.perf_counter()
            pred = fn(ctx)
            seconds[name] += time.perf_counter() - t0 - (sum(ctx.timings.values()) - before)
            depth = pred.get("depth")
            row["image_miou"][name] = evaluators[name].add(
                pred["labels"], ctx.truth["labels"], depth, None if depth is None else ctx.truth["depth"])
            if "source" in pred:
                row.setdefault("nearest_source", pred["source"])
            preds[name] = pred
        for key, value in ctx.timings.items():
            shared[key] = shared.get(key, 0.0) + value
        if out_dir is not None and n < panels:
            name = f"{n:03d}_{example['scene']}_{example['target_id']}.png".replace("/", "_")
            save_png(Path(out_dir) / "panels" / name, method_panel(example, ctx.truth, preds))
        per_example.append(row)
    count = len(indices)
    if out_dir is not None:
        write_image_stats(Path(out_dir) / IMAGE_STATS_FILE, evaluators, indices, len(dataset), stats_meta)
    return {"num_examples": count, **score_methods(evaluators, bootstrap),
            "seconds_per_image": {name: s / count for name, s in seconds.items()},
            "shared_input_seconds_per_image": {k: v / count for k, v in shared.items()},
            "per_example": per_example}


def score_methods(evaluators: Mapping[str, SegmentationEvaluator], bootstrap: int = DEFAULT_BOOTSTRAP,
                  seed: int = 0) -> dict:
    """{"methods": {name: scores}, "comparisons": :func:`compare_to_baselines`} of a report."""
    return {"methods": {name: _scores(ev) for name, ev in evaluators.items()},
            "comparisons": compare_to_baselines(evaluators, bootstrap, seed)}


IMAGE_STATS_FILE = "per_image_stats.npz"
META = "meta"  # key prefix of the evaluation's description in IMAGE_STATS_FILE


def write_image_stats(path: Path, evaluators: Mapping[str, SegmentationEvaluator], indices: list[int],
                      examples_in_split: int, meta: Mapping[str, str] | None = None) -> None:
    """Every method's per-image statistics (``SegmentationEvaluator.image_arrays``) as one .npz:
    ``<method>/conf``, ``<method>/depth``, ``<method>/missing``, plus ``index`` (dataset index of
    each row), ``examples_in_split`` and ``meta/<key>`` strings (checkpoint, data, split,
    segmenter); :func:`read_image_stats` reads it back."""
    arrays = {"index": np.asarray(indices, dtype=np.int64), "examples_in_split": np.int64(examples_in_split)}
    arrays.update({f"{META}/{key}": np.asarray(str(value)) for key, value in (meta or {}).items()})
    for name, ev in evaluators.items():
        arrays.update({f"{name}/{key}": value for key, value in ev.image_arrays().items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def read_image_stats(path: str | Path) -> tuple[dict[str, SegmentationEvaluator], np.ndarray, int, dict[str, str]]:
    """(evaluators by method, dataset index of each image, examples in the split, meta) from
    :func:`write_image_stats`'s file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read per-image statistics {path}: {exc}") from exc
    if "index" not in arrays or "examples_in_split" not in arrays:
        raise ValueError(f"{path} is not a viewseg eval {IMAGE_STATS_FILE} (no 'index' / 'examples_in_split')")
    meta = {key.split("/", 1)[1]: str(value) for key, value in arrays.items() if key.startswith(META + "/")}
    methods = list(dict.fromkeys(key.split("/")[0] for key in arrays if "/" in key and not key.startswith(META + "/")))
    evaluators = {}
    for name in methods:
        try:
            evaluators[name] = SegmentationEvaluator.from_image_arrays(
                arrays[f"{name}/conf"], arrays[f"{name}/depth"], arrays[f"{name}/missing"])
        except KeyError as exc:
            raise ValueError(f"{path}: method {name!r} lacks {exc.args[0]!r}") from None
    if "nearest_view" in evaluators and not meta.get("segmenter"):
        # Written before the names were split: without a segmenter that method copied TRUE labels.
        evaluators = {("nearest_view_true_labels" if n == "nearest_view" else n): ev for n, ev in evaluators.items()}
    return evaluators, arrays["index"], int(arrays["examples_in_split"]), meta


# Scores compared between ViewSeg and each baseline (see paired_bootstrap).
COMPARED_SCORES = ("miou", "miou_in_truth", "pacc", "iou_t_merged", "iou_s_merged", "depth_l1", "depth_absrel", "depth_l1_stuff",
                   "delta1", "delta2", "delta3")


def compare_to_baselines(evaluators: Mapping[str, SegmentationEvaluator], resamples: int = 1000,
                         seed: int = 0) -> dict:
    """ViewSeg minus each other method, with paired image-bootstrap intervals.

    Returns {"resamples": n, "level": 0.95, "against": {baseline: {score: {difference, low,
    high, a_better}}}}; empty "against" without ViewSeg, another method or ``resamples`` > 0.
    """
    out = {"resamples": int(resamples), "level": BOOTSTRAP_LEVEL, "seed": int(seed), "against": {}}
    if "viewseg" not in evaluators or resamples <= 0:
        return out
    for name, ev in evaluators.items():
        if name != "viewseg":
            out["against"][name] = paired_bootstrap(evaluators["viewseg"], ev, COMPARED_SCORES,
                                                    resamples=resamples, level=BOOTSTRAP_LEVEL, seed=seed)
    return out


def _plain(obj):
    """JSON-safe: NaN/inf -> None (strict JSON has no NaN), numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _pct(v) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def _num(v, digits: int = 3) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


IOU_T_TITLE, IOU_S_TITLE = "IoU_T (paper: things merged)", "IoU_S (paper: stuff merged)"
MIOU_THINGS_TITLE, MIOU_STUFF_TITLE = "mIoU things (per-class mean)", "mIoU stuff (per-class mean)"
# The dataset mIoU over the classes that occur in the split's ground truth only (miou_in_truth).
MIOU_IN_TRUTH_TITLE = "mIoU (classes in the truth)"
MERGED_NOTE = ("IoU_T / IoU_S are the paper's: every thing class merged into one class \"thing\" and wall, floor "
               "and ceiling into one class \"stuff\", then the IoU of each (a chair called a table is right "
               "there); the per-class means average the IoU of each thing (stuff) class.")


def _settings_lines(report: Mapping) -> list[str]:
    """Data settings, overrides and the pairs file of a report (nothing for an older report)."""
    lines = []
    data = report.get("data_settings") or {}
    if data.get("from"):
        lines.append(f"- data settings from: {data['from']}")
    if data.get("overrides"):
        lines.append("- data overrides: " + ", ".join(f"`{o}`" for o in data["overrides"]))
    for key, change in (data.get("changed_from_checkpoint") or {}).items():
        lines.append(f"- data.{key}: {change['used']} (the checkpoint was trained with {change['checkpoint']})")
    noise = report.get("pose_noise")
    if noise and any(noise):
        lines.append(f"- source pose noise: σ = {noise[0]:g}° rotation, {noise[1]:g} cm translation "
                     f"(sources only, seeded per source view)")
    pairs = report.get("pairs") or {}
    if pairs.get("origin"):
        where = {"pairs_dir": "read from the output folder", "data_root": "read from the data root",
                 "mined": "mined now"}.get(pairs["origin"], pairs["origin"])
        lines.append(f"- pairs: `{pairs.get('file') or 'not written'}` ({where})")
    for notice in report.get("notices") or []:
        lines.append(f"- note: {notice}")
    return lines


def metrics_markdown(report: dict) -> str:
    """The markdown tables of :func:`write_reports`."""
    methods = report["methods"]
    titles = {n: (report.get("titles") or {}).get(n) or METHOD_TITLES.get(n, n) for n in methods}
    lines = [f"# Evaluation: {report.get('split', '')} split of {report.get('data', '')}", "",
             f"- checkpoint: `{report.get('checkpoint', '')}`",
             f"- segmenter: `{report.get('segmenter') or 'none'}`",
             *([f"- RGB-only checkpoint: `{report['rgb_checkpoint']}`"] if report.get("rgb_checkpoint") else []),
             *([f"- source depth: {report['source_depth']}"] if report.get("source_depth") else []),
             f"- examples (target images): {report['num_examples']}",
             *_settings_lines(report), "",
             "mIoU (dataset) is computed from one confusion matrix over the whole split; mIoU (per image) "
             "averages each image's own mIoU (Semantic-NeRF / S-Ray protocol); mIoU (classes in the truth) "
             "is the dataset mIoU over the classes the split's ground truth has (a class it never shows "
             "counts 0 in mIoU (dataset) once a method predicts a pixel of it). Pixels a method leaves "
             "empty count as wrong. Semantic scores are percentages; depth errors are in metres "
             "(AbsRel unitless) over pixels that have a prediction, and 'empty' is the share of pixels "
             "with true depth that got none.", "",
             MERGED_NOTE, "",
             "## Semantics", "",
             f"| method | mIoU (dataset) | mIoU (per image) | {MIOU_IN_TRUTH_TITLE} | fwIoU | pixel acc. "
             f"| mean class acc. | {IOU_T_TITLE} | {IOU_S_TITLE} | {MIOU_THINGS_TITLE} | {MIOU_STUFF_TITLE} |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, s in methods.items():
        lines.append(f"| {titles[n]} | {_pct(s['dataset_miou'])} | {_pct(s['per_image_miou'])} | "
                     f"{_pct(s.get('miou_in_truth'))} | "
                     f"{_pct(s['fwiou'])} | {_pct(s['pacc'])} | {_pct(s['macc'])} | "
                     f"{_pct(s.get('iou_t_merged'))} | {_pct(s.get('iou_s_merged'))} | "
                     f"{_pct(s['miou_things'])} | {_pct(s['miou_stuff'])} |")
    lines += ["", "## Depth", "",
              "| method | L1 | AbsRel | L1 things | L1 stuff | AbsRel things | AbsRel stuff "
              "| δ<1.25 | δ<1.25² | δ<1.25³ | empty |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, s in methods.items():
        lines.append(f"| {titles[n]} | {_num(s['depth_l1'])} | {_num(s['depth_absrel'])} | "
                     f"{_num(s['depth_l1_things'])} | {_num(s['depth_l1_stuff'])} | "
                     f"{_num(s['depth_absrel_things'])} | {_num(s['depth_absrel_stuff'])} | "
                     f"{_pct(s['delta1'])} | {_pct(s['delta2'])} | {_pct(s['delta3'])} | "
                     f"{_pct(s['depth_missing_fraction'])} |")
    if "viewseg" in methods and "oracle" in methods:
        gap = methods["oracle"]["dataset_miou"] - methods["viewseg"]["dataset_miou"]
        if math.isfinite(gap):
            # Above the "oracle" means the 2D segmenter is the weaker model (say, trained on
            # fewer rooms than ViewSeg), not an upper bound: say so rather than print "-2.9 below".
            side = "below" if gap >= 0 else "above"
            lines += ["", f"Gap to the oracle: ViewSeg's dataset mIoU is {100 * abs(gap):.1f} points {side} the "
                          f"2D segmenter's on the true target images."]
            if gap < 0:
                lines += ["The segmenter is no upper bound here: train it on the rooms ViewSeg saw."]
    lines += comparison_markdown(report.get("comparisons", {}), titles)
    present = [c for c in CLASS_NAMES if any(s["iou_per_class"].get(c) is not None for s in methods.values())]
    lines += ["", "## IoU per class", "", "| class | " + " | ".join(titles[n] for n in methods) + " |",
              "|---|" + "---|" * len(methods)]
    for c in present:
        lines.append(f"| {c} | " + " | ".join(_pct(s["iou_per_class"].get(c)) for s in methods.values()) + " |")
    timing = report.get("seconds_per_image", {})
    if timing:
        lines += ["", "## Time per target image (s)", "",
                  "| " + " | ".join(titles[n] for n in timing) + " |", "|" + "---|" * len(timing),
                  "| " + " | ".join(_num(v, 2) for v in timing.values()) + " |"]
        shared = report.get("shared_input_seconds_per_image", {})
        if shared:
            lines += ["", "Shared inputs (not in the method times): " +
                      ", ".join(f"{k} {v:.2f} s" for k, v in shared.items())]
    lines += ["", "## Methods", ""] + [f"- **{titles[n]}** (`{n}`): {d}" for n, d in
                                       report.get("descriptions", {}).items()]
    return "\n".join(lines) + "\n"


_COMPARED_TITLES = {"miou": ("mIoU (dataset)", "points"), "miou_in_truth": (MIOU_IN_TRUTH_TITLE, "points"),
                    "pacc": ("pixel acc.", "points"),
                    "iou_t_merged": (IOU_T_TITLE, "points"), "iou_s_merged": (IOU_S_TITLE, "points"),
                    "depth_l1": ("depth L1", "m"), "depth_absrel": ("AbsRel", ""),
                    "depth_l1_stuff": ("depth L1 stuff", "m"), "delta1": ("δ<1.25", "points"),
                    "delta2": ("δ<1.25²", "points"), "delta3": ("δ<1.25³", "points")}


def comparison_markdown(comparisons: Mapping, titles: Mapping[str, str]) -> list[str]:
    """Lines of the ViewSeg-minus-baseline table (none without comparisons)."""
    against = comparisons.get("against") or {}
    if not against:
        return []
    level = 100 * comparisons.get("level", BOOTSTRAP_LEVEL)
    lines = ["", "## ViewSeg against each method (paired image bootstrap)", "",
             f"ViewSeg's score minus the method's on the same images, with the {level:.0f}% percentile "
             f"interval over {comparisons.get('resamples')} resamples of the images (the same draw for both) "
             "and the share of resamples in which ViewSeg is better. Images of one scene are correlated: "
             "with few scenes these intervals are narrower than scene-level ones.", "",
             "| method | score | ViewSeg − method | interval | ViewSeg better in |", "|---|---|---|---|---|"]
    def signed(v, unit: str) -> str:
        if v is None or not math.isfinite(v):
            return "—"
        return f"{100 * v:+.1f}" if unit == "points" else f"{v:+.3f}"

    for name, scores in against.items():
        for score, c in scores.items():
            diff = c.get("difference")
            if diff is None or not math.isfinite(diff):
                continue
            label, unit = _COMPARED_TITLES.get(score, (score, ""))
            direction = "higher" if HIGHER_IS_BETTER.get(score, True) else "lower"
            lines.append(f"| {titles.get(name, name)} | {label} ({unit + ', ' if unit else ''}{direction} is better) "
                         f"| {signed(diff, unit)} | [{signed(c.get('low'), unit)}, {signed(c.get('high'), unit)}] "
                         f"| {100 * c['a_better']:.0f}% |")
    return lines


def write_reports(out_dir: str | Path, report: dict) -> tuple[Path, Path]:
    out = Path(out_dir)
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    write_text_atomic(json_path, json.dumps(_plain(report), indent=1, allow_nan=False) + "\n")
    write_text_atomic(md_path, metrics_markdown(report))
    return json_path, md_path


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

@dataclass
class EvalConfig:
    checkpoint: str
    out: str
    data: str = ""                   # data root (overrides the config's data.root)
    split: str = "test"
    config: str = ""                 # YAML whose data section is used
    overrides: list[str] = field(default_factory=list)   # data.key=value
    baselines: tuple[str, ...] = ()  # names from BASELINES
    segmenter: str = ""              # viewseg-encoder checkpoint from `viewseg pretrain-2d`
    max_examples: int = 0            # 0 = the whole split
    panels: int = 8
    device: str = "auto"
    threads: int = 0
    rotation_weight: float = DEFAULT_ROTATION_WEIGHT
    max_splat: int = DEFAULT_MAX_SPLAT
    chunk_size: int = 0              # rays per render chunk (0: 128 on CPU, the model's own on GPU)
    progress: bool = True
    bootstrap: int = DEFAULT_BOOTSTRAP  # image resamples for the ViewSeg-vs-baseline intervals (0: none)
    source_depth: str = "auto"       # auto | none | clean | sensor (see the module docstring)
    rgb_checkpoint: str = ""         # an RGB-only ViewSeg scored beside (method viewseg_rgb)
    num_sources: tuple[int, ...] = ()  # --num-sources study: ViewSeg with each N on the same targets
    pose_noise: tuple[tuple[float, float], ...] = ()  # --pose-noise levels (degrees, cm); 2+ = a study
    guide_max_footprint: int = -1    # RGB-D sampling: the splat's widest block (-1: the model's own)


def source_counts(text: str) -> tuple[int, ...]:
    """argparse type of ``--num-sources``: ``1,2,3,4`` -> (1, 2, 3, 4), each >= 1, no repeats."""
    try:
        counts = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of source counts, "
                                         f"e.g. 1,2,3,4") from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"{text!r}: source counts must be >= 1 and each listed once")
    return counts


def pose_noise_level(text: str) -> tuple[float, float] | str:
    """argparse type of a ``--pose-noise`` word: ``DEG,CM`` -> (degrees, cm), both finite and >= 0.
    A ``data.key=value`` word is handed back as is (an override typed after the levels)."""
    if "=" in text:
        return text
    parts = text.split(",")
    try:
        level = tuple(float(x) for x in parts)
    except ValueError:
        level = ()
    if len(level) != 2 or not all(math.isfinite(x) and x >= 0 for x in level):
        raise argparse.ArgumentTypeError(f"{text!r} is not DEG,CM (rotation sigma in degrees, translation sigma "
                                         f"in centimetres, both >= 0), e.g. 2,5")
    return level


def parse_baselines(items: list[str] | tuple[str, ...], source_depth: bool = False, with_segmenter: bool = True,
                    notices: list[str] | None = None) -> tuple[str, ...]:
    """Baseline names from ``--baselines`` words.

    ``all`` holds ``cloudseg_input`` only with ``source_depth`` (which naming it explicitly
    requires). Without a segmenter (``with_segmenter`` False), ``all`` and ``nearest_view``
    give ``nearest_view_true_labels`` (the nearest source's TRUE labels), and a one-line
    notice is appended to ``notices``; ``nearest_view`` always means segmenter labels.
    """
    names: list[str] = []
    requested: list[str] = []
    for item in items:
        for name in (x.strip() for x in item.split(",")):
            if not name:
                continue
            if name == "all":
                if with_segmenter:
                    requested += [b for b in BASELINES if b not in TRUE_LABEL_BASELINES
                                  and (source_depth or b not in NEEDS_SOURCE_DEPTH)]
                else:
                    requested.append("nearest_view_true_labels")
                    if notices is not None:
                        notices.append("no --segmenter: --baselines all is nearest_view_true_labels only (the "
                                       "nearest source's TRUE labels, a stronger baseline than segmenter labels); "
                                       "CloudSeg, the oracle and nearest_view need --segmenter")
                continue
            if name not in BASELINES:
                raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)} or 'all'")
            if name == "nearest_view" and not with_segmenter:
                name = "nearest_view_true_labels"
                if notices is not None:
                    notices.append("no --segmenter: nearest_view is scored as nearest_view_true_labels (the nearest "
                                   "source's TRUE labels, a stronger baseline than segmenter labels)")
            if name in NEEDS_SOURCE_DEPTH and not source_depth:
                raise ValueError(f"baseline {name} needs source depth: pass --source-depth clean or sensor")
            requested.append(name)
    for n in requested:
        if n not in names:
            names.append(n)
    return tuple(names)


def resolve_source_depth(choice: str, reads_depth: bool, data_source_depth: str) -> str:
    """``--source-depth``: an explicit none/clean/sensor as given; ``auto`` is ``none`` for an
    RGB model and, for an RGB-D one, the data config's mode (``sensor`` when that is ``none``)."""
    if choice not in SOURCE_DEPTH_CHOICES:
        raise ValueError(f"--source-depth must be one of {', '.join(SOURCE_DEPTH_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice
    if not reads_depth:
        return "none"
    return data_source_depth if data_source_depth != "none" else "sensor"


STUDY_KINDS = ("num_sources", "pose_noise")


def study_kind(cfg: "EvalConfig") -> str | None:
    """The study ``cfg`` asks for (None: a plain evaluation); ValueError for flags it cannot take.

    ``--num-sources`` (any count) and ``--pose-noise`` with several levels are studies: they
    score ViewSeg only and take neither each other nor baselines, a segmenter or an RGB model.
    One ``--pose-noise`` level is a plain evaluation with noisy sources.
    """
    if cfg.num_sources and cfg.pose_noise:
        raise ValueError("--num-sources and --pose-noise are separate studies; run one at a time "
                         "(each scores ViewSeg only, on its own targets)")
    kind = "num_sources" if cfg.num_sources else "pose_noise" if len(cfg.pose_noise) > 1 else None
    if kind is None:
        return None
    flag = "--num-sources" if kind == "num_sources" else "--pose-noise with several levels"
    extra = [name for name, given in (("--baselines", bool(cfg.baselines)), ("--segmenter", bool(cfg.segmenter)),
                                      ("--rgb-checkpoint", bool(cfg.rgb_checkpoint))) if given]
    if extra:
        raise ValueError(f"{flag} is a study of ViewSeg alone and takes no {', '.join(extra)}; "
                         f"evaluate the baselines in a separate run")
    if any(n < 1 for n in cfg.num_sources):
        raise ValueError(f"--num-sources must be counts >= 1, got {list(cfg.num_sources)}")
    return kind


def set_guide_max_footprint(model: ViewSeg, max_footprint: int) -> None:
    """Where a depth-guided model's band samples go: the splat's widest block
    (:func:`viewseg_core.model.depth_guide.block_widths`). Sampling only, no weights: models
    trained before the adaptive footprint existed (fixed 2x2 blocks) take either."""
    if max_footprint < 0:
        raise ValueError(f"--guide-max-footprint must be >= 0, got {max_footprint}")
    model.config.guide_max_footprint = int(max_footprint)
    model.renderer.config.guide_max_footprint = int(max_footprint)


def _notice(notices: list[str], text: str) -> None:
    notices.append(text)
    print(f"[eval] {text}", file=sys.stderr)


def evaluate(cfg: EvalConfig) -> dict:
    """Run ``viewseg eval``; returns the report written to ``cfg.out`` (a study's report for
    ``--num-sources`` or several ``--pose-noise`` levels)."""
    if cfg.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0 (0 = no comparison table), got {cfg.bootstrap}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.source_depth not in SOURCE_DEPTH_CHOICES:
        raise ValueError(f"--source-depth must be one of {', '.join(SOURCE_DEPTH_CHOICES)}, got {cfg.source_depth!r}")
    kind = study_kind(cfg)
    device = resolve_device(cfg.device)
    # before the evaluation, not after it
    check_writable(Path(cfg.out) / ("metrics.json" if kind is None else f"study_{kind}.json"))
    model, train_config = load_viewseg(cfg.checkpoint)
    model = model.to(device).eval()
    chunk = set_render_chunk(model, cfg.chunk_size, device)
    notices: list[str] = []
    if cfg.guide_max_footprint >= 0:
        set_guide_max_footprint(model, cfg.guide_max_footprint)
    if model.config.depth_guided:
        widest, footprint = model.config.guide_max_footprint, model.config.guide_footprint
        blocks = (f"{footprint}x{footprint} px, widening to reach their neighbours up to {widest} px" if widest > footprint
                  else f"fixed {footprint}x{footprint} px")
        source = "--guide-max-footprint" if cfg.guide_max_footprint >= 0 else "the model's guide_max_footprint"
        _notice(notices, f"depth guide: splat blocks {blocks} ({source})")
    data_record: dict = {}
    data_cfg = resolve_data_config(train_config, cfg.config, cfg.overrides, cfg.data, source=str(cfg.checkpoint),
                                   record=data_record)
    if data_record.get("pose_noise_from") == "checkpoint" and any(data_cfg.pose_noise) and not cfg.pose_noise:
        _notice(notices, f"the checkpoint was trained with source pose noise {list(data_cfg.pose_noise)} "
                         f"(degrees, cm), a training augmentation: evaluating with exact source poses "
                         f"(--pose-noise to add noise)")
        data_cfg.pose_noise = (0.0, 0.0)
    if data_record.get("row_strides_dropped"):
        _notice(notices, f"the checkpoint was trained with depth_sensor.row_strides {data_record['row_strides_dropped']} "
                         f"(a mix of sensor densities, a training augmentation): evaluating one sensor, "
                         f"depth_sensor.row_stride {data_cfg.depth_sensor.row_stride} (data.depth_sensor.row_strides "
                         f"to evaluate the mix)")
    if data_record.get("row_bands_dropped"):
        _notice(notices, f"the checkpoint was trained with depth_sensor.row_bands {data_record['row_bands_dropped']} "
                         f"(a mix of sensor fields of view, a training augmentation): evaluating one sensor, "
                         f"depth_sensor.row_band {data_cfg.depth_sensor.row_band} (data.depth_sensor.row_bands "
                         f"to evaluate the mix)")
    if cfg.pose_noise:
        data_cfg.pose_noise = tuple(float(x) for x in cfg.pose_noise[0])
    if (cfg.pose_noise or any(data_cfg.pose_noise)) and data_cfg.pose_noise_spread != "fixed":
        # A noise level is one sigma for every source; a spread is a training recipe.
        _notice(notices, f"data.pose_noise_spread {data_cfg.pose_noise_spread!r} is a training recipe: "
                         f"each noise level is evaluated with every source at that sigma (fixed)")
        data_cfg.pose_noise_spread = "fixed"
    if cfg.num_sources:
        data_cfg.num_sources = max(cfg.num_sources)
    data_cfg.source_depth = resolve_source_depth(cfg.source_depth, model_reads_depth(model), data_cfg.source_depth)
    with_depth = data_cfg.source_depth != "none"
    depth_line = {"none": "none (RGB keyframes)", "clean": "clean (the true depth as input)",
                  "sensor": f"sensor ({data_cfg.depth_sensor}, seeded per source view)"}[data_cfg.source_depth]
    if model_reads_depth(model):
        depth_line += "; ViewSeg is an RGB-D model and reads it" if with_depth else \
            "; ViewSeg is an RGB-D model and gets none (its no-depth behaviour)"
    common = {"checkpoint": str(cfg.checkpoint), "data": data_cfg.root, "split": cfg.split, "device": str(device),
              "image_size": list(data_cfg.image_size), "num_sources": data_cfg.num_sources,
              "source_depth": depth_line, "source_depth_mode": data_cfg.source_depth,
              "depth_sensor": to_dict(data_cfg.depth_sensor) if data_cfg.source_depth == "sensor" else None,
              "pose_noise": list(data_cfg.pose_noise), "data_settings": data_record}
    if kind is not None:
        return run_study(kind, cfg, model, data_cfg, device, common, notices, chunk)
    baseline_notices: list[str] = []
    baselines = parse_baselines(cfg.baselines, with_depth, with_segmenter=bool(cfg.segmenter),
                                notices=baseline_notices)
    for text in baseline_notices:
        _notice(notices, text)
    needs = [b for b in baselines if b in NEEDS_SEGMENTER]
    if needs and not cfg.segmenter:
        raise ValueError(f"baselines {needs} need --segmenter (a `viewseg pretrain-2d` checkpoint)")
    rgb_model = None
    if cfg.rgb_checkpoint:
        rgb_model, _ = load_viewseg(cfg.rgb_checkpoint)
        if model_reads_depth(rgb_model):
            raise ValueError(f"--rgb-checkpoint {cfg.rgb_checkpoint} is an RGB-D model (it reads source depth); "
                             f"give an RGB-only one")
        rgb_model = rgb_model.to(device).eval()
        set_render_chunk(rgb_model, cfg.chunk_size, device)
    segmenter = load_segmenter(cfg.segmenter, device) if cfg.segmenter else None
    dataset = build_dataset(data_cfg, split=cfg.split, seed=0, full_target=True, pairs_dir=cfg.out)
    indices = example_indices(len(dataset), cfg.max_examples)
    names = ["viewseg", *(["viewseg_rgb"] if rgb_model is not None else []), *baselines]
    t0 = time.perf_counter()
    noise = ",".join(f"{x:g}" for x in data_cfg.pose_noise) if any(data_cfg.pose_noise) else ""
    result = run_evaluation(dataset, {n: METHODS[n] for n in names}, indices=indices, model=model,
                            segmenter=segmenter, device=device, out_dir=cfg.out, panels=cfg.panels,
                            rotation_weight=cfg.rotation_weight, max_splat=cfg.max_splat, progress=cfg.progress,
                            bootstrap=cfg.bootstrap, rgb_model=rgb_model,
                            stats_meta={"checkpoint": cfg.checkpoint, "segmenter": cfg.segmenter,
                                        "data": data_cfg.root, "split": cfg.split,
                                        **({"source_depth": data_cfg.source_depth} if with_depth else {}),
                                        **({"pose_noise": noise} if noise else {}),
                                        **({"rgb_checkpoint": cfg.rgb_checkpoint} if cfg.rgb_checkpoint else {})})
    report = {**common, "segmenter": str(cfg.segmenter), "examples_in_split": len(dataset),
              **({"titles": {"viewseg": "ViewSeg RGB-D"}} if model_reads_depth(model) else {}),
              **({"rgb_checkpoint": str(cfg.rgb_checkpoint)} if cfg.rgb_checkpoint else {}),
              "pairs": {"file": dataset.pairs_file, "origin": dataset.pairs_origin}, "notices": notices,
              "descriptions": method_descriptions(names, segmenter is not None, data_cfg.source_depth,
                                                  model_reads_depth(model)),
              "settings": {"rotation_weight_m_per_rad": cfg.rotation_weight, "max_splat_px": cfg.max_splat,
                           "render_chunk_rays": chunk, "threads": torch.get_num_threads()},
              "wall_seconds": time.perf_counter() - t0, **result}
    write_reports(cfg.out, report)
    return report


# --------------------------------------------------------------------------------------
# Studies: ViewSeg under several settings on the same targets (--num-sources, --pose-noise)
# --------------------------------------------------------------------------------------

# Scores of a study row, and those compared with the reference row by the paired bootstrap
# (per-image mIoU has no bootstrap: its difference is the plain one).
STUDY_SCORES = (("dataset_miou", "mIoU (dataset)", "points"), ("per_image_miou", "mIoU (per image)", "points"),
                ("pacc", "pixel acc.", "points"), ("iou_t_merged", IOU_T_TITLE, "points"),
                ("iou_s_merged", IOU_S_TITLE, "points"), ("depth_l1", "depth L1", "m"),
                ("depth_absrel", "AbsRel", ""), ("delta1", "δ<1.25", "points"))
_BOOTSTRAP_NAME = {"dataset_miou": "miou"}


def source_subset(example: Mapping, n: int) -> dict:
    """The example with only its first ``n`` sources (every ``source_*`` tensor and the ids)."""
    ids = list(example["source_ids"])
    if not 1 <= n <= len(ids):
        raise ValueError(f"cannot take {n} of the example's {len(ids)} sources")
    out = dict(example)
    for key, value in example.items():
        if key.startswith("source_") and torch.is_tensor(value) and value.ndim and value.shape[0] == len(ids):
            out[key] = value[:n]
    out["source_ids"] = ids[:n]
    return out


def pose_noise_datasets(dataset, levels) -> list:
    """One dataset per (degrees, cm) level: the same scenes and pairs (so the same targets and
    sources at every index), only ``pose_noise`` differs."""
    from viewseg_core.data.dataset import ViewSegDataset

    return [ViewSegDataset(list(dataset.scenes.values()), dataset.pairs,
                           dataclasses.replace(dataset.config, pose_noise=tuple(float(x) for x in level)))
            for level in levels]


def score_variants(examples_of: Callable[[int], Mapping[str, dict]], labels: list[str], indices: list[int],
                   model: ViewSeg, device: torch.device | str = "cpu", progress: bool = True, desc: str = "study"
                   ) -> tuple[dict[str, SegmentationEvaluator], list[dict], dict[str, float]]:
    """ViewSeg on every variant (label) of every target: ``examples_of(index)`` gives
    {label: example}, all of one target. Returns (evaluators, per-example rows, seconds)."""
    evaluators = {label: SegmentationEvaluator() for label in labels}
    seconds = {label: 0.0 for label in labels}
    per_example = []
    for index in tqdm(indices, desc=desc, disable=not progress, dynamic_ncols=True):
        variants = examples_of(index)
        first = variants[labels[0]]
        row = {"index": int(index), "scene": first["scene"], "target_id": first["target_id"],
               "source_ids": {}, "image_miou": {}}
        for label in labels:
            example = variants[label]
            if (example["scene"], example["target_id"]) != (row["scene"], row["target_id"]):
                raise RuntimeError(f"study variant {label} has target {example['target_id']} at index {index}, "
                                   f"not {row['target_id']}")
            truth = full_target_truth(example)
            if truth is None:
                raise ValueError("a study needs full-target examples (build_dataset(..., full_target=True))")
            t0 = time.perf_counter()
            pred = render_example(model, example, device)
            seconds[label] += time.perf_counter() - t0
            row["image_miou"][label] = evaluators[label].add(pred["labels"], truth["labels"], pred["depth"],
                                                             truth["depth"])
            row["source_ids"][label] = list(example["source_ids"])
        per_example.append(row)
    return evaluators, per_example, seconds


def study_rows(evaluators: Mapping[str, SegmentationEvaluator], reference: str, bootstrap: int = DEFAULT_BOOTSTRAP,
               seed: int = 0) -> list[dict]:
    """A row per variant: its scores and, except for ``reference``, its scores minus the
    reference's (with the paired image-bootstrap interval when ``bootstrap`` > 0)."""
    scores = {label: _scores(ev) for label, ev in evaluators.items()}
    ref = scores[reference]
    rows = []
    for label, ev in evaluators.items():
        row: dict[str, Any] = {"label": label, "scores": scores[label]}
        if label != reference:
            names = tuple(_BOOTSTRAP_NAME.get(k, k) for k, _, _ in STUDY_SCORES if k != "per_image_miou")
            boot = paired_bootstrap(ev, evaluators[reference], names, resamples=bootstrap, level=BOOTSTRAP_LEVEL,
                                    seed=seed) if bootstrap > 0 else {}
            diff = {}
            for key, _, _ in STUDY_SCORES:
                d = {"difference": scores[label][key] - ref[key]}
                d.update({k: v for k, v in boot.get(_BOOTSTRAP_NAME.get(key, key), {}).items() if k != "difference"})
                diff[key] = d
            row["minus_reference"] = diff
        rows.append(row)
    return rows


def study_stats_file(kind: str) -> str:
    """The per-image statistics a study writes beside ``study_<kind>.json`` (rows as methods)."""
    return f"study_{kind}_per_image.npz"


STUDY_TITLES = {"num_sources": "number of source views (the paper's Table 4)",
                "pose_noise": "noisy source poses (the paper's Table 6)"}


def run_study(kind: str, cfg: "EvalConfig", model: ViewSeg, data_cfg: DataConfig, device: torch.device,
              common: Mapping, notices: list[str], chunk: int) -> dict:
    """The ``--num-sources`` or ``--pose-noise`` study; writes ``study_<kind>.json`` / ``.md``
    and each row's per-image statistics (:func:`study_stats_file`)."""
    dataset = build_dataset(data_cfg, split=cfg.split, seed=0, full_target=True, pairs_dir=cfg.out)
    indices = example_indices(len(dataset), cfg.max_examples)
    if kind == "num_sources":
        counts = sorted(set(int(n) for n in cfg.num_sources))
        labels = [f"N={n}" for n in counts]
        values = {label: n for label, n in zip(labels, counts)}
        reference = labels[-1]

        def examples_of(index: int) -> dict[str, dict]:
            example = dataset[index]  # loaded once, its first N sources for every N
            return {label: source_subset(example, n) for label, n in values.items()}
    else:
        levels = [tuple(float(x) for x in level) for level in cfg.pose_noise]
        labels = list(dict.fromkeys(f"{deg:g}°, {cm:g} cm" for deg, cm in levels))
        if len(labels) != len(levels):
            raise ValueError(f"--pose-noise lists a level twice: {[list(level) for level in levels]}")
        values = {label: list(level) for label, level in zip(labels, levels)}
        reference = labels[0]
        noisy = dict(zip(labels, pose_noise_datasets(dataset, levels)))

        def examples_of(index: int) -> dict[str, dict]:
            return {label: ds[index] for label, ds in noisy.items()}
    t0 = time.perf_counter()
    evaluators, per_example, seconds = score_variants(examples_of, labels, indices, model, device, cfg.progress,
                                                      desc=kind.replace("_", " "))
    rows = study_rows(evaluators, reference, cfg.bootstrap)
    for row in rows:
        row[kind] = values[row["label"]]
        row["seconds_per_image"] = seconds[row["label"]] / len(indices)
    report = {**common, "study": kind, "reference": reference, "num_examples": len(indices),
              "examples_in_split": len(dataset), "pairs": {"file": dataset.pairs_file, "origin": dataset.pairs_origin},
              "notices": notices, "settings": {"render_chunk_rays": chunk, "threads": torch.get_num_threads()},
              "resamples": cfg.bootstrap, "level": BOOTSTRAP_LEVEL,
              "wall_seconds": time.perf_counter() - t0, "rows": rows, "per_example": per_example}
    if kind == "num_sources":
        report["source_order"] = ("each N uses the first N sources of the example's stored order (the mined "
                                  "sources in candidate order, most overlap with the target first), so every N's "
                                  "sources are a subset of the next N's")
    out = Path(cfg.out)
    # Each row's per-image statistics, keyed by row label, so that a study's drops can be
    # resampled in any score, not only the per-image mIoU the JSON keeps (compare_studies.py).
    write_image_stats(out / study_stats_file(kind), evaluators, indices, len(dataset),
                      {"checkpoint": report.get("checkpoint", ""), "study": kind, "split": cfg.split})
    write_text_atomic(out / f"study_{kind}.json", json.dumps(_plain(report), indent=1, allow_nan=False) + "\n")
    write_text_atomic(out / f"study_{kind}.md", study_markdown(report))
    return report


def study_markdown(report: Mapping) -> str:
    """The markdown of a study report (:func:`run_study`)."""
    kind, reference = report["study"], report["reference"]
    what = {"num_sources": "N (sources)", "pose_noise": "pose noise (σ rotation, σ translation)"}[kind]
    lines = [f"# Study: {STUDY_TITLES[kind]}, ViewSeg only", "",
             f"- checkpoint: `{report.get('checkpoint', '')}`",
             f"- data: `{report.get('data', '')}`, split {report.get('split', '')}, image size "
             f"{report.get('image_size')}",
             f"- examples (target images): {report['num_examples']}, the same targets in every row",
             *([f"- source depth: {report['source_depth']}"] if report.get("source_depth_mode", "none") != "none"
               else []),
             *_settings_lines({k: v for k, v in report.items() if k != "pose_noise"}), ""]
    if kind == "num_sources":
        lines += [f"Targets mined once for the largest N ({report['num_sources']} sources). "
                  f"{report['source_order'][0].upper()}{report['source_order'][1:]}: a row differs from the "
                  f"next only by the views added, and fewer views keep those that see most of the target.", ""]
    else:
        lines += ["Gaussian noise on the SOURCE poses only (rotation σ in degrees about a random axis, "
                  "translation σ in centimetres), seeded per source view; targets, sources and images are the "
                  "same at every level.", ""]
    lines += ["Baselines are not scored in a study (run `viewseg eval --baselines ...` separately). "
              "Semantic scores are percentages, depth errors metres (AbsRel unitless). " + MERGED_NOTE, "",
              "## Scores", "",
              f"| {what} | " + " | ".join(title for _, title, _ in STUDY_SCORES) + " | s / image |",
              "|---|" + "---|" * (len(STUDY_SCORES) + 1)]
    for row in report["rows"]:
        s = row["scores"]
        cells = [_pct(s[k]) if unit == "points" else _num(s[k]) for k, _, unit in STUDY_SCORES]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {_num(row.get('seconds_per_image'), 2)} |")

    def signed(v, unit: str) -> str:
        if v is None or not math.isfinite(v):
            return "—"
        return f"{100 * v:+.1f}" if unit == "points" else f"{v:+.3f}"

    others = [row for row in report["rows"] if "minus_reference" in row]
    if others:
        resamples = report.get("resamples", 0)
        interval = (f", with the {100 * report.get('level', BOOTSTRAP_LEVEL):.0f}% paired image-bootstrap interval "
                    f"over {resamples} resamples (mIoU per image: the difference only)") if resamples else ""
        lines += ["", f"## Each row minus {reference}", "",
                  f"The row's score minus {reference}'s on the same images{interval}. Images of one scene are "
                  "correlated: with few scenes these intervals are narrower than scene-level ones.", "",
                  f"| {what} | " + " | ".join(title for _, title, _ in STUDY_SCORES) + " |",
                  "|---|" + "---|" * len(STUDY_SCORES)]
        for row in others:
            cells = []
            for key, _, unit in STUDY_SCORES:
                d = row["minus_reference"][key]
                cell = signed(d.get("difference"), unit)
                if d.get("low") is not None and cell != "—":
                    cell += f" [{signed(d['low'], unit)}, {signed(d['high'], unit)}]"
                cells.append(cell)
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate ViewSeg and baselines on a split (metrics + panels)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model.pt or a training checkpoint step_N.pt")
    p.add_argument("--data", default="", help="data root (default: the checkpoint's / config's data.root)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", default="", help="the training YAML whose data section sets image size, sources, "
                                                "pairs: needed when the checkpoint carries no data settings; "
                                                "refused when it disagrees with the checkpoint's")
    p.add_argument("--baselines", nargs="*", default=[],
                   help=f"any of {', '.join(BASELINES)} (space or comma separated), or 'all'. nearest_view "
                        f"copies segmenter labels; without --segmenter, all / nearest_view give "
                        f"nearest_view_true_labels (TRUE source labels)")
    p.add_argument("--segmenter", default="", help="2D segmenter checkpoint (`viewseg pretrain-2d`) for "
                                                   "CloudSeg, the oracle and nearest-view labels")
    p.add_argument("--max-examples", type=nonnegative_int, default=0, help="evaluate this many targets, spread over the "
                                                               "split (0 = all)")
    p.add_argument("--panels", type=nonnegative_int, default=8, help="PNG panels to write (first N examples)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=nonnegative_int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--rotation-weight", type=nonnegative_float, default=DEFAULT_ROTATION_WEIGHT,
                   help="nearest view: metres of travel equal to one radian of rotation")
    p.add_argument("--max-splat", type=positive_int, default=DEFAULT_MAX_SPLAT, help="CloudSeg: largest point "
                                                                            "footprint, pixels")
    p.add_argument("--chunk-size", type=nonnegative_int, default=0, help="rays per render chunk (0: 128 on CPU, the "
                                                             "model's own on GPU)")
    p.add_argument("--bootstrap", type=nonnegative_int, default=DEFAULT_BOOTSTRAP,
                   help="image resamples for the ViewSeg-vs-baseline intervals (0: no comparison table)")
    p.add_argument("--source-depth", choices=SOURCE_DEPTH_CHOICES, default="auto",
                   help="the sources' depth camera: sensor = true depth through the data config's depth_sensor "
                        "model (seeded per source view), clean = true depth, none = RGB only. An RGB-D ViewSeg "
                        "reads it, CloudSeg gets the same depth (cloudseg_input, in --baselines all), the nearest "
                        "view copies it. auto (default): none for an RGB model, the checkpoint's data.source_depth "
                        "(or sensor) for an RGB-D one")
    p.add_argument("--rgb-checkpoint", default="",
                   help="an RGB-only ViewSeg to score beside the checkpoint on the same examples (viewseg_rgb), "
                        "e.g. checkpoints/demo.pt beside an RGB-D model")
    p.add_argument("--num-sources", type=source_counts, default=(), metavar="N,N,...",
                   help="view-count study (paper Table 4), ViewSeg only: targets mined once for the largest N, "
                        "ViewSeg scored with each N (the first N of each target's sources) on the same targets; "
                        "writes study_num_sources.json/.md. Takes no baselines, and not --pose-noise")
    p.add_argument("--pose-noise", nargs="+", type=pose_noise_level, default=[], metavar="DEG,CM",
                   help="source pose noise (paper Table 6): sigma in degrees and centimetres on the source poses "
                        "only, seeded per view. One level: a normal evaluation with noisy sources (baselines "
                        "too). Several: a study of ViewSeg only on the same targets, each level minus the first; "
                        "writes study_pose_noise.json/.md. Not with --num-sources")
    p.add_argument("--guide-max-footprint", type=nonnegative_int, default=-1, metavar="N",
                   help="RGB-D models: the widest block of the depth guide's adaptive splat (0: fixed "
                        "model.guide_footprint blocks, as before 2026-12-07; default: the model's own, 6)")
    p.add_argument("overrides", nargs="*", help="data.key=value overrides, e.g. data.image_size=[60,80]")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # `--baselines a b data.x=1` hands the override to --baselines (both take many words).
    overrides = [b for b in args.baselines if "=" in b] + [x for x in args.pose_noise if isinstance(x, str)] \
        + list(args.overrides)
    baselines = tuple(b for b in args.baselines if "=" not in b)
    pose_noise = tuple(x for x in args.pose_noise if not isinstance(x, str))
    cfg = EvalConfig(checkpoint=args.checkpoint, out=args.out, data=args.data, split=args.split,
                     config=args.config, overrides=overrides, baselines=baselines,
                     segmenter=args.segmenter, max_examples=args.max_examples, panels=args.panels,
                     device=args.device, threads=args.threads, rotation_weight=args.rotation_weight,
                     max_splat=args.max_splat, chunk_size=args.chunk_size, bootstrap=args.bootstrap,
                     source_depth=args.source_depth, rgb_checkpoint=args.rgb_checkpoint,
                     num_sources=tuple(args.num_sources), pose_noise=pose_noise,
                     guide_max_footprint=args.guide_max_footprint)
    report = evaluate(cfg)
    if "study" in report:
        print(study_markdown(report).rstrip())
        print(f"[eval] wrote {Path(cfg.out) / ('study_' + report['study'] + '.json')} and .md")
        return 0
    print(metrics_markdown(report).split("## IoU per class")[0].rstrip())
    print(f"[eval] wrote {Path(cfg.out) / 'metrics.json'}, {Path(cfg.out) / 'metrics.md'} and panels")
    return 0
