"""``viewseg export-model``: a training checkpoint (``step_N.pt``) as a plain model file.

    viewseg export-model --checkpoint runs/synthetic_gpu2/checkpoints/step_1500.pt \\
        --out runs/synthetic_gpu2/model_step_1500.pt

A training checkpoint also holds the optimizer, scheduler and RNG states (about three times
the model's bytes); the node, ``viewseg eval`` and ``export-3d`` need only the model. The
output is the ``viewseg-model`` file that training writes as ``model.pt`` at its end (float32,
config and weights, nothing pickled), written atomically and read back before the command
reports success. ``scripts/export_demo.py`` makes the smaller float16 demo file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from viewseg_core.atomic_io import check_writable
from viewseg_core.model.weights import load_model, save_model


def export_model(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the model inside ``checkpoint`` (a training checkpoint or model file) to ``out``."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.resolve() == checkpoint.resolve():
        raise ValueError(f"--out {out} is the checkpoint itself: write the model file elsewhere")
    check_writable(out)
    model = load_model(checkpoint)
    save_model(model, out)
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
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    out = export_model(args.checkpoint, args.out)
    print(f"[export-model] wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from {args.checkpoint}")
    return 0
