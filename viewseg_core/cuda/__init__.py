"""Build-on-first-use loader of viewseg's fused compositing CUDA extension.

The sources next to this file (``compositing.cpp``, ``compositing_kernel.cu``) are compiled
with ``torch.utils.cpp_extension.load`` (ninja) the first time a CUDA tensor is composited.
torch caches the build in ``$TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions/<python>_<cuda>/viewseg_compositing``) and rebuilds only when
the sources or flags change; in one process the module is loaded once. A failed build
raises :class:`CompositingBuildError` (and is not retried in that process); set
``VIEWSEG_COMPOSITING=reference`` to run the PyTorch reference instead.
``VIEWSEG_CUDA_VERBOSE=1`` prints the compiler output.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from types import ModuleType

EXTENSION_NAME = "viewseg_compositing"
SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = [SOURCE_DIR / "compositing.cpp", SOURCE_DIR / "compositing_kernel.cu"]
# No --use_fast_math: the kernel must agree with the reference up to ordinary rounding.
EXTRA_CUDA_CFLAGS = ["-O3", "-lineinfo"]
EXTRA_CFLAGS = ["-O3"]
# Architectures for building on a machine without a GPU (torch otherwise asks the device):
# H100/H200 (9.0) plus PTX for newer cards.
FALLBACK_ARCH_LIST = "9.0+PTX"

_lock = threading.Lock()
_module: ModuleType | None = None
_error: Exception | None = None


class CompositingBuildError(RuntimeError):
    """The fused compositing kernel could not be built or loaded."""


def cuda_toolkit() -> str | None:
    """Path of the CUDA toolkit torch will compile with, or None (no nvcc)."""
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME


def load_extension(verbose: bool | None = None) -> ModuleType:
    """The compiled extension module (``forward``/``backward``), built on first use.

    Raises:
        CompositingBuildError: no CUDA toolkit, or the compiler/loader failed.
    """
    global _module, _error
    if _module is not None:
        return _module
    with _lock:
        if _module is not None:
            return _module
        if _error is not None:
            raise CompositingBuildError(str(_error)) from _error
        if verbose is None:
            verbose = os.environ.get("VIEWSEG_CUDA_VERBOSE", "") not in ("", "0")
        try:
            _module = _build(verbose)
        except Exception as exc:  # noqa: BLE001 - any failure becomes one clear error
            _error = CompositingBuildError(
                f"building the fused compositing CUDA kernel ({', '.join(p.name for p in SOURCES)}) "
                f"failed: {type(exc).__name__}: {exc}\n"
                "Set VIEWSEG_CUDA_VERBOSE=1 to see the compiler output, or "
                "VIEWSEG_COMPOSITING=reference to use the PyTorch reference path.")
            raise _error from exc
        return _module


def _build(verbose: bool) -> ModuleType:
    import torch
    from torch.utils.cpp_extension import load

    if cuda_toolkit() is None:
        raise RuntimeError("no CUDA toolkit found (nvcc); install one or set CUDA_HOME")
    env_changed = False
    if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        # Compile-only (no device to query): pick the architectures explicitly.
        os.environ["TORCH_CUDA_ARCH_LIST"] = FALLBACK_ARCH_LIST
        env_changed = True
    try:
        return load(name=EXTENSION_NAME, sources=[str(p) for p in SOURCES],
                    extra_cflags=EXTRA_CFLAGS, extra_cuda_cflags=EXTRA_CUDA_CFLAGS,
                    extra_ldflags=_cudart_ldflags(), verbose=verbose)
    finally:
        if env_changed:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)


def _cudart_ldflags() -> list[str]:
    """-L for libcudart when torch's guessed CUDA_HOME lacks it.

    torch derives CUDA_HOME from the first ``nvcc`` on PATH; a wrapper script such as
    /usr/local/bin/nvcc makes that /usr/local, which compiles but cannot link -lcudart.
    """
    home = Path(cuda_toolkit() or "")
    if any((home / d / "libcudart.so").exists() for d in ("lib64", "lib")):
        return []
    for candidate in (Path("/usr/local/cuda/lib64"), Path("/usr/local/cuda/lib")):
        if (candidate / "libcudart.so").exists():
            return [f"-L{candidate}"]
    return []


def is_built() -> bool:
    """True once the extension is loaded in this process."""
    return _module is not None


__all__ = ["CompositingBuildError", "load_extension", "cuda_toolkit", "is_built", "EXTENSION_NAME"]
