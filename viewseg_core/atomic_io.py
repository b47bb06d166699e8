"""Atomic file writes: write a temporary file beside the target, fsync, rename over it.

A crash or a kill at any moment leaves either the old file or the complete new one under
the final name, never a torn file (checkpoints, scene metadata, label PNGs).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, BinaryIO


def _write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _write_atomic(path, lambda f: f.write(data))


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    return _write_atomic(path, lambda f: torch.save(obj, f))
