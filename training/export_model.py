"""``viewseg export-model``: a training checkpoint (``step_N.pt``) as a plain model file.

    viewseg export-model --checkpoint runs/synthetic_gpu2/checkpoints/step_1500.pt \\
        --out runs/synthetic_gpu2/model_step_1500.pt

A training checkpoint also holds the optimizer, scheduler and RNG states (about three times
the model's bytes); the node, ``viewseg eval`` and ``export-3d`` need only the model. The
output is the ``viewseg-model`` file that training writes as ``model.pt`` at its end (float32,
config and weights, nothing pickled), written atomically and read back before the command
reports success. It carries the run's data settings (the checkpoint's ``config['data']``,
or the ``data`` of a model file) under ``data``, which ``viewseg eval`` reads;
``--data-config YAML`` takes them from a training config's ``data`` section instead.
``scripts/export_demo.py`` makes the smaller float16 demo file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.config_io import from_dict, read_config_dict, to_dict
from training.data import DataConfig
from viewseg_core.atomic_io import check_writable
from viewseg_core.model.weights import load_model, model_data, read_weights_file, save_model


def data_settings(config: str | Path) -> dict:
    """The ``data`` section of training config ``config`` (``base:`` chain included) as a full
    plain ``DataConfig`` dict, checked as training checks it."""
    section = read_config_dict(config).get("data") or {}
    if not isinstance(section, dict):
        raise ValueError(f"config {config}: 'data' must be a mapping")
    return to_dict(from_dict(DataConfig, section, "data."))


def export_model(checkpoint: str | Path, out: str | Path, data_config: str | Path | None = None) -> Path:
    """Write the model inside ``checkpoint`` (a training checkpoint or model file) to ``out``,
    with the data settings it carries (or those of ``data_config``'s ``data`` section)."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.resolve() == checkpoint.resolve():
        raise ValueError(f"--out {out} is the checkpoint itself: write the model file elsewhere")
    check_writable(out)
    data = data_settings(data_config) if data_config else model_data(read_weights_file(checkpoint))
    if data is not None:
        data = to_dict(from_dict(DataConfig, data, "data."))  # what eval will accept, or a clear error now
    model = load_model(checkpoint)
    save_model(model, out, data=data)
    reloaded = load_model(out)
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        if not torch.equal(a, b):
            raise RuntimeError(f"{out}: tensor {name} differs after reading the written file back")
    return out


def register(subparsers) -> None:
    p = subparsers.add_parser("export-model", help="a training checkpoint as a plain model file",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training checkpoint step_N.pt (or a model file)")
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--data-config", metavar="YAML",
                   help="training config whose data section to record (default: the checkpoint's own)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    out = export_model(args.checkpoint, args.out, args.data_config)
    has_data = "data" in read_weights_file(out)
    print(f"[export-model] wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from {args.checkpoint}"
          f"{'' if has_data else '; no data settings recorded (viewseg eval will need --config)'}")
    return 0
