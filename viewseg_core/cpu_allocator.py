"""Keep freed CPU memory in the process (glibc malloc), so that tensors do not page-fault anew.

A CPU query allocates and frees tensors of a few MiB (the field's [views, points, hidden]
activations) hundreds of times. glibc serves allocations above its mmap threshold with a
fresh ``mmap`` and returns them on ``free``, and trims freed memory off the top of the heap
once more than its trim threshold lies there; either way the next tensor of that size
touches new pages, and the kernel zeroes every 4 KiB page on its first touch.
docs/benchmarks.md ("Fused epilogues and the CPU allocator") measures it: in a process that
renders only ``rgbd`` queries, float32 queries took 0.77-0.88x the time with freed memory
kept (bf16 ones, with half-size tensors, no gain; nor did a process whose larger tensors had
already raised glibc's adaptive threshold). PyTorch's CPU tuning guides reach the same end
with jemalloc or tcmalloc through ``LD_PRELOAD``; raising glibc's two thresholds with
``mallopt`` needs no extra library and works however the process was started.

:func:`keep_freed_memory` is called by the process entry points (``viewseg_node``, the
``viewseg`` command, ``benchmarks/bench_query.py``), not on import: it is a policy of the whole
process. The cost is that the process keeps up to ``trim_threshold`` of freed memory (its
peak working set, e.g. after a large query) instead of returning it at once. It leaves the
allocator alone with ``VIEWSEG_MALLOC=default``, when the glibc tunables
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` are set (the user's choice), and where
the C library is not glibc.

:func:`release_freed_memory` is the other half, for a process that lives for hours (the
node): it hands the heap's free pages back to the kernel (glibc ``malloc_trim(0)``), and
:class:`HeapReleaser` calls it only once the process has grown by a set amount since the
last release. The node asks it after every CPU render. Most of a query's growth is gone at
its source (its field calls have bucketed shapes, ``viewseg_core.model.fast.ray_bucket``);
the release bounds what is left, such as outputs of many different image sizes. Releasing
after every query costs the next query its page faults again, and the cost was within the
noise of a 2-core VM. The threshold keeps that rare anyway.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import warnings

ENV = "VIEWSEG_MALLOC"                 # keep (default) | default (leave malloc as it is)
MMAP_THRESHOLD_MIB = 32                # allocations up to this size come from the heap
TRIM_THRESHOLD_MIB = 128               # free memory kept at the heap's top before trimming
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameters (malloc.h)
GLIBC_TUNABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_lock = threading.Lock()
_status = "process default (keep_freed_memory not called)"


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):   # musl, macOS, Windows: no glibc malloc to tune
        return None


def keep_freed_memory(mmap_threshold_mib: int = MMAP_THRESHOLD_MIB, trim_threshold_mib: int = TRIM_THRESHOLD_MIB) -> str:
    """Raise glibc's mmap and trim thresholds for this process (module docstring); returns what
    it did (also :func:`status`). Idempotent; safe from any thread. A bad ``VIEWSEG_MALLOC``
    warns and changes nothing; bad thresholds (a programming error) raise ValueError."""
    global _status
    if not 0 < mmap_threshold_mib <= trim_threshold_mib < 2048:
        raise ValueError(f"keep_freed_memory: need 0 < mmap threshold <= trim threshold < 2048 MiB, got "
                         f"{mmap_threshold_mib} and {trim_threshold_mib}")
    with _lock:
        mode = os.environ.get(ENV, "keep").strip().lower() or "keep"
        tunables = [name for name in GLIBC_TUNABLES if name in os.environ]
        libc = None if mode != "keep" or tunables else _glibc()
        if mode not in ("keep", "default"):
            # A typo in a speed setting must not stop a robot's node: say so, change nothing.
            _status = f"process default ({ENV}={mode!r} is neither keep nor default)"
            warnings.warn(f"{ENV}={mode!r}: use keep or default; malloc left as it is", RuntimeWarning, stacklevel=2)
        elif mode == "default":
            _status = f"process default ({ENV}=default)"
        elif tunables:
            _status = f"process default ({', '.join(tunables)} set in the environment)"
        elif libc is None:
            _status = "process default (not glibc)"
        elif (libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mib << 20) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold_mib << 20) == 1):
            _status = f"keeps freed memory (glibc mmap threshold {mmap_threshold_mib} MiB, trim {trim_threshold_mib} MiB)"
        else:
            _status = "process default (glibc refused mallopt)"
        return _status


_libc_for_trim: list[ctypes.CDLL | None] = []   # looked up once; [None] where there is no glibc


def release_freed_memory() -> bool:
    """Return the free pages of every malloc arena to the kernel (glibc ``malloc_trim(0)``);
    memory in use is untouched. True if glibc released any; False where it had nothing to
    release or the C library is not glibc. Safe from any thread (glibc locks each arena).
    Unlike :func:`keep_freed_memory` it ignores ``VIEWSEG_MALLOC``: it bounds memory, it does
    not tune speed."""
    with _lock:
        if not _libc_for_trim:
            libc = _glibc()
            if libc is not None:
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.malloc_trim.restype = ctypes.c_int
            _libc_for_trim.append(libc)
    libc = _libc_for_trim[0]
    return libc is not None and libc.malloc_trim(0) == 1


# HeapReleaser's default growth of the resident set that triggers a release. 256 MiB left the
# node in a 256 MiB saw-tooth over 10 minutes of load (docs/benchmarks.md, "Load"); 128 is
# TRIM_THRESHOLD_MIB, the freed memory malloc itself would keep at the heap's top.
RELEASE_GROWTH_MIB = 128


def resident_mib() -> float:
    """This process's resident set in MiB (/proc/self/statm; NaN where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


class HeapReleaser:
    """Calls :func:`release_freed_memory` when the resident set has grown by ``growth_mib``
    since the last release (or since it was made). ``maybe_release`` costs one read of
    /proc/self/statm otherwise. Thread-safe."""

    def __init__(self, growth_mib: float = RELEASE_GROWTH_MIB) -> None:
        if not growth_mib > 0:
            raise ValueError(f"HeapReleaser: growth_mib must be > 0, got {growth_mib}")
        self.growth_mib = float(growth_mib)
        self.releases = 0
        self._lock = threading.Lock()
        self._baseline = resident_mib()

    def maybe_release(self) -> bool:
        """Release if the process has grown past the threshold; True if it released."""
        with self._lock:
            now = resident_mib()
            if not now > self._baseline + self.growth_mib:   # NaN (no /proc) never releases
                return False
            release_freed_memory()
            self.releases += 1
            self._baseline = resident_mib()
            return True


def status() -> str:
    """What :func:`keep_freed_memory` did in this process (or that it was not called)."""
    return _status


__all__ = ["ENV", "GLIBC_TUNABLES", "MMAP_THRESHOLD_MIB", "RELEASE_GROWTH_MIB", "TRIM_THRESHOLD_MIB", "HeapReleaser",
           "keep_freed_memory", "release_freed_memory", "resident_mib", "status"]
