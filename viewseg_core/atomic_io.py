"""Atomic file writes: write a temporary file beside the target, fsync, rename over it.

A crash or a kill at any moment leaves either the old file or the complete new one under
the final name, never a torn file (checkpoints, scene metadata, label PNGs, depth maps,
metrics, configs, panels, point clouds). A kill between the write and the rename leaves a
``.<name>.<random>.tmp`` file beside the target; :func:`remove_stale_temps` clears those.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

TEMP_SUFFIX = ".tmp"


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create folder ``path`` (and parents); a file in the way is an error naming it.

    ``mkdir(exist_ok=True)`` reports a file in the way as 'File exists', which reads as if
    the folder were fine; say what is wrong instead.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(blocker)) from None
    return path


def _temp_beside(path: Path) -> tuple[int, str]:
    """An open temp file in ``path``'s folder (created), after checking ``path`` can be replaced."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        mode = None  # a file where a parent folder should be: ensure_dir names it
    # os.replace would swap a device (/dev/full), a FIFO or a socket for a regular file, and
    # fails on a folder with a bare 'Is a directory': refuse before writing anything.
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file path", str(path))
    if mode is not None and not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file (results are written by replacing the file)", str(path))
    ensure_dir(path.parent)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now, naming the path and the reason, if ``path`` could not be written later.

    Commands that compute for minutes before writing their result call this first. Creates
    the parent folder; leaves no file behind.
    """
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    os.unlink(tmp)
    return path


def _write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    path = Path(path)
    fd, tmp = _temp_beside(path)
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
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno is not None and error.filename in (None, tmp):
            # A full disk fails in write() or fsync(), whose error names no file (or the
            # temp file): name the file the caller asked for.
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    return _write_atomic(path, lambda f: torch.save(obj, f))


def remove_stale_temps(folder: str | os.PathLike, name_glob: str = "*") -> list[Path]:
    """Delete the temp files that killed atomic writes of ``name_glob`` files left in ``folder``.

    Returns what was deleted. Only call this where no other process is writing the same
    files (one training run per output folder): a live writer's temp file looks the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = sorted(p for p in folder.glob(f".{name_glob}.*{TEMP_SUFFIX}") if p.is_file())
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
