"""``viewseg confidence``: how often the node's confident labels are right, and a calibration map.

Renders a split's targets as the node answers a query (:func:`viewseg_core.model.fast.render_query`
with the node's sampling preset, then pixels whose rendered surface no source view sees
answered "unknown" at confidence 0, :func:`viewseg_core.source_selection.pixel_coverage`) and
bins every labelled pixel by its confidence (:class:`viewseg_core.confidence.Reliability`):
the accuracy per bin, the expected calibration error (ECE) and, for a planner's thresholds,
the share of pixels kept and their accuracy.

``--fit FILE`` fits the monotone map from confidence to the probability of a right label on
these pixels (use rooms the model never trained on: the val split) and writes it for the
node's ``query.confidence_calibration``. ``--calibration FILE`` scores a fitted map on these
pixels beside the raw confidence (use other rooms again: the test split).

Writes ``confidence.json`` (bins, ECE, thresholds), ``confidence.md`` and
``reliability.png`` (accuracy against confidence, raw and calibrated) into ``--out``.

Differences from a query to the node: the sources are the split's mined source views, not
the node's keyframe selection, and the query camera is the target's.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from viewseg_core.atomic_io import write_text_atomic
from viewseg_core.classes import IGNORE_LABEL
from viewseg_core.cli import nonnegative_int, positive_int, resolve_device
from viewseg_core.confidence import THRESHOLDS, ConfidenceCalibration, Reliability, file_sha256
from viewseg_core.model.fast import PRESETS, QueryPreset, render_query, trained_preset
from viewseg_core.source_selection import pixel_coverage
from viewseg_core.viz import reliability_diagram, save_png


def node_preset(model, name: str, has_depth: bool) -> QueryPreset:
    """The preset the node would render with for ``query.preset: name`` (its auto rule)."""
    if name == "auto":
        name = "rgbd" if model.config.depth_guided and has_depth else "fast"
    if name == "checkpoint":
        return trained_preset(model.renderer)
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {['auto', 'checkpoint'] + sorted(PRESETS)}, got {name!r}")
    preset = PRESETS[name]
    if model.renderer.fine is None and preset.num_fine:
        preset = replace(preset, num_fine=0, fine_unexplained=False)
    return preset


@torch.no_grad()
def render_like_the_node(model, example: dict, preset: QueryPreset, device: torch.device
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels [H, W] with IGNORE_LABEL where unknown, raw confidence [H, W], unknown [H, W]
    bool) of one full-target example, as the node answers with ``query.unseen_pixels: unknown``."""
    H, W = (int(x) for x in example["target_size"])
    rgb = example["source_rgb"][None].to(device)
    depth = example.get("source_depth_input")
    sources = model.make_sources(model.encode_sources(rgb), example["source_K"][None].to(device),
                                 example["source_c2w"][None].to(device), H, W, rgb=rgb,
                                 depth=None if depth is None else depth[None].to(device))
    out = render_query(model, example["target_K"].to(device), example["target_c2w"].to(device), H, W, sources,
                       preset)
    labels = out.labels.cpu().numpy().astype(np.int64)
    rendered_depth = out.depth.float().cpu().numpy()
    confidence = out.confidence.float().cpu().numpy()
    source_hw = [tuple(example["source_rgb"].shape[-2:])] * example["source_rgb"].shape[0]
    seen = pixel_coverage(example["target_K"].numpy(), example["target_c2w"].numpy(), rendered_depth,
                          example["source_K"].numpy(), example["source_c2w"].numpy(), source_hw,
                          float(model.renderer.config.far))
    unknown = ~seen | ~np.isfinite(rendered_depth)
    labels[unknown] = IGNORE_LABEL
    confidence[unknown] = 0.0
    return labels, confidence, unknown


def report_markdown(report: dict) -> str:
    lines = [f"# Confidence of {report['checkpoint']} ({report['preset']})", "",
             f"{report['data']} / {report['split']}, {report['targets']} targets, "
             f"{report['seconds']:.0f} s; pixels with a true label: answered "
             f"{report['raw']['answered']}, unknown {report['raw']['abstained']}.", "",
             "| confidence | ECE | accuracy of answered pixels | "
             + " | ".join(f">= {t:g}: kept / right" for t in THRESHOLDS) + " |",
             "|---|---|---|" + "---|" * len(THRESHOLDS)]
    for name in ("raw", "calibrated"):
        if name not in report:
            continue
        r = report[name]
        cells = [f"{100 * r['above'][f'{t:g}']['coverage']:.1f}% / {100 * r['above'][f'{t:g}']['accuracy']:.1f}%"
                 for t in THRESHOLDS]
        lines.append(f"| {name} | {r['ece']:.3f} | {100 * r['accuracy']:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from training.data import build_dataset
    from training.evaluate import example_indices, load_viewseg, resolve_data_config

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    calibration = ConfidenceCalibration.load(args.calibration) if args.calibration else None
    if calibration is not None:
        calibration.check_checkpoint(args.checkpoint)
    model, train_config = load_viewseg(args.checkpoint)
    model = model.to(device).eval()
    data_cfg = resolve_data_config(train_config, args.config, data_root=args.data, source=str(args.checkpoint))
    out = Path(args.out)
    dataset = build_dataset(data_cfg, split=args.split, seed=0, full_target=True, pairs_dir=out)
    indices = example_indices(len(dataset), args.max_examples)
    if not indices:
        raise ValueError(f"{data_cfg.root} / {args.split}: no examples")
    preset = node_preset(model, args.preset, data_cfg.source_depth not in ("", "none"))
    raw, calibrated = Reliability(args.bins), Reliability(args.bins)
    t0 = time.perf_counter()
    for index in tqdm(indices, desc="confidence", dynamic_ncols=True):
        example = dataset[index]
        H, W = (int(x) for x in example["target_size"])
        truth = example["target_labels"].reshape(H, W).numpy().astype(np.int64)
        truth[truth < 0] = IGNORE_LABEL
        labels, confidence, unknown = render_like_the_node(model, example, preset, device)
        raw.add(confidence, labels, truth, IGNORE_LABEL)
        if calibration is not None:   # as the node applies it: pixels no source sees stay at 0
            calibrated.add(np.where(unknown, 0.0, calibration(confidence)), labels, truth, IGNORE_LABEL)
    report = {"checkpoint": str(args.checkpoint), "preset": preset.label, "data": str(data_cfg.root),
              "split": args.split, "targets": len(indices), "seconds": time.perf_counter() - t0,
              "raw": raw.to_dict()}
    diagrams = {"raw": raw}
    if calibration is not None:
        report["calibration"] = str(args.calibration)
        report["calibrated"] = calibrated.to_dict()
        diagrams["calibrated"] = calibrated
    if args.fit:
        fitted = ConfidenceCalibration.fit(raw, fitted_on={
            "checkpoint": Path(args.checkpoint).name, "checkpoint_sha256": file_sha256(args.checkpoint),
            "preset": preset.label, "data": str(data_cfg.root), "split": args.split, "targets": len(indices),
            "ece_raw": raw.ece()})
        fitted.save(args.fit)
        report["fitted"] = str(args.fit)
    write_text_atomic(out / "confidence.json", json.dumps(report, indent=1) + "\n")
    write_text_atomic(out / "confidence.md", report_markdown(report))
    save_png(out / "reliability.png", reliability_diagram(diagrams))
    print(report_markdown(report))
    if args.fit:
        print(f"[confidence] wrote the calibration {args.fit} (fitted on {raw.answered} pixels)")
    print(f"[confidence] wrote {out}/confidence.json, confidence.md, reliability.png")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("confidence", help="reliability of the node's confidence; fit a calibration map",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model file (the node's checkpoint)")
    p.add_argument("--data", default="", help="data root (default: the checkpoint's data.root)")
    p.add_argument("--split", default="val", help="split to render (default val; fit on val, check on test)")
    p.add_argument("--config", default="", help="training YAML for a checkpoint that carries no data settings")
    p.add_argument("--preset", default="auto",
                   help="the node's query.preset (auto: rgbd for an RGB-D model given source depth, else fast)")
    p.add_argument("--max-examples", type=nonnegative_int, default=0, help="targets at most (0 = all)")
    p.add_argument("--bins", type=positive_int, default=20, help="confidence bins (20: thresholds on bin edges)")
    p.add_argument("--fit", default="", metavar="FILE", help="write the calibration fitted on these pixels here")
    p.add_argument("--calibration", default="", metavar="FILE", help="score this fitted calibration as well")
    p.add_argument("--out", required=True, help="output folder for the report")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=nonnegative_int, default=0, help="torch CPU threads (0 = torch's default)")
    p.set_defaults(func=run)
