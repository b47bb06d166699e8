"""Triton kernels of viewseg, loaded compiled (CUDA) or interpreted (CPU, for tests).

triton decides between compiling and interpreting a kernel when ``@triton.jit`` runs, that
is when the kernel's module is imported, from ``TRITON_INTERPRET``. :func:`load` therefore
imports a kernel module normally for the GPU and, for the interpreter, executes a private
copy of the same source with ``TRITON_INTERPRET=1`` set for the duration of the import (so
one process can hold both: CPU parity tests and GPU tests in one pytest run).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from types import ModuleType

_lock = threading.Lock()
_interpreted: dict[str, ModuleType] = {}


class TritonUnavailable(RuntimeError):
    """triton cannot be imported here."""


def triton_available() -> tuple[bool, str]:
    """(True, version) if triton imports, else (False, why)."""
    try:
        import triton
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        return False, f"triton does not import: {type(exc).__name__}: {exc}"
    return True, str(getattr(triton, "__version__", "?"))


def interpret_requested() -> bool:
    """True when the environment asks for the triton interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def load(name: str, interpret: bool) -> ModuleType:
    """The kernel module ``viewseg_core.kernels.<name>``, compiled or interpreted.

    ``interpret=True`` always returns the private interpreted copy (so that a test never
    turns the shared module into an interpreted one); ``interpret=False`` the normal module,
    which triton interprets anyway if ``TRITON_INTERPRET=1`` was set when it was imported.
    """
    ok, why = triton_available()
    if not ok:
        raise TritonUnavailable(why)
    qualified = f"{__name__}.{name}"
    if not interpret:
        return importlib.import_module(qualified)
    with _lock:
        mod = _interpreted.get(name)
        if mod is not None:
            return mod
        spec = importlib.util.find_spec(qualified)
        if spec is None or spec.origin is None:
            raise ImportError(f"no kernel module {qualified}")
        private = f"{qualified}__interpreted"
        spec = importlib.util.spec_from_file_location(private, spec.origin)
        mod = importlib.util.module_from_spec(spec)
        before = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1"
        try:
            sys.modules[private] = mod  # triton resolves globals through the module
            spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(private, None)
            raise
        finally:
            if before is None:
                os.environ.pop("TRITON_INTERPRET", None)
            else:
                os.environ["TRITON_INTERPRET"] = before
        _interpreted[name] = mod
        return mod


__all__ = ["TritonUnavailable", "triton_available", "interpret_requested", "load"]
