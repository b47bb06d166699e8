"""Training checkpoints: written atomically, loaded without unpickling code, resumed exactly.

A checkpoint holds the model, optimizer and scheduler states, the step, the config it was
trained with, and every RNG state a step consumes (Python, NumPy legacy, torch CPU and each
CUDA device), so that resuming gives the same weights as never stopping. Everything is
stored as tensors, numbers, strings, lists and dicts, which ``torch.load(weights_only=True)``
accepts; a file holding anything else (a pickled object with code) is refused.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewseg_core.atomic_io import torch_save_atomic as save_atomic  # noqa: F401  (re-exported)

FORMAT = "viewseg-train-checkpoint"
FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Snapshot of every RNG a training step draws from, in weights_only-safe types."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True``; clear errors for foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise ValueError(f"checkpoint {path} is corrupt or holds objects other than tensors and "
                         f"plain containers (refused by weights_only=True): {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a viewseg training checkpoint (no format={FORMAT!r} field)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {ckpt['format_version']}, newer than this "
                         f"viewseg understands ({FORMAT_VERSION})")
    return ckpt


def list_checkpoints(directory: str | Path) -> list[Path]:
    """The ``step_N.pt`` files in ``directory``, oldest (smallest N) first."""
    found = [p for p in Path(directory).glob("step_*.pt") if p.stem.split("_", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.stem.split("_", 1)[1]))


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest ``step_*.pt`` in ``directory`` by step number, or None."""
    candidates = list_checkpoints(directory)
    return candidates[-1] if candidates else None


def load_latest_readable(directory: str | Path, map_location: str | torch.device = "cpu",
                         warn=print) -> tuple[Path, dict[str, Any]] | tuple[None, None]:
    """The newest checkpoint in ``directory`` that loads, skipping unreadable ones with a warning.

    A torn or corrupt newest file (a disk that filled, a copy cut short) should cost the steps
    since the previous checkpoint, not the run. The bad file is left where it is, for a look
    and because the run rewrites that step's file when it gets there. If no checkpoint loads,
    that is an error: starting from scratch over a run's checkpoints must be a decision.
    """
    candidates = list_checkpoints(directory)
    problems = []
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path, map_location=map_location)
        except ValueError as exc:
            problems.append(str(exc))
            older = "an older one" if path != candidates[0] else "none older"
            warn(f"[train] warning: skipping unreadable checkpoint {path} ({exc}); trying {older}")
    if candidates:
        raise ValueError(f"no checkpoint in {directory} can be read ({len(candidates)} tried; newest: "
                         f"{problems[0]}); move them away to start this run over")
    return None, None
