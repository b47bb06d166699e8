"""cpu_allocator: glibc keeps freed memory in the heap once asked, and is left alone otherwise.

Each case runs in a fresh interpreter (the setting is process-wide) and asks glibc itself
(mallinfo2) whether a new 8 MiB tensor came from mmap."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from viewseg_core import cpu_allocator

PROBE = """
import ctypes, json, sys
import torch
from viewseg_core import cpu_allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
said = cpu_allocator.keep_freed_memory() if sys.argv[1] == "call" else cpu_allocator.status()
before = libc.mallinfo2().hblkhd
x = torch.empty(8 << 20, dtype=torch.uint8)
x.fill_(1)
mmapped = libc.mallinfo2().hblkhd - before
del x
y = torch.empty(8 << 20, dtype=torch.uint8)
print(json.dumps({"status": said, "mmapped_mib": mmapped / 2**20}))
"""


def _probe(call: bool, **env) -> dict:
    import json
    full = {k: v for k, v in os.environ.items() if k not in (cpu_allocator.ENV, *cpu_allocator.GLIBC_TUNABLES)}
    done = subprocess.run([sys.executable, "-c", PROBE, "call" if call else "no"], env={**full, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or cpu_allocator._glibc() is None,
                           reason="glibc malloc only")


@glibc
def test_keep_freed_memory_serves_large_tensors_from_the_heap():
    default = _probe(call=False)
    assert default["status"].startswith("process default (keep_freed_memory not called)")
    assert default["mmapped_mib"] >= 8                   # glibc's default: a fresh mmap per 8 MiB tensor
    kept = _probe(call=True)
    assert kept["status"] == "keeps freed memory (glibc mmap threshold 32 MiB, trim 128 MiB)"
    assert kept["mmapped_mib"] == 0


@glibc
@pytest.mark.parametrize("env, why", [({"VIEWSEG_MALLOC": "default"}, "VIEWSEG_MALLOC=default"),
                                      ({"MALLOC_MMAP_THRESHOLD_": "131072"}, "MALLOC_MMAP_THRESHOLD_ set")])
def test_the_user_can_keep_the_default(env, why):
    out = _probe(call=True, **env)
    assert why in out["status"] and out["status"].startswith("process default")
    assert out["mmapped_mib"] >= 8


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="mmap threshold <= trim threshold"):
        cpu_allocator.keep_freed_memory(64, 32)


@glibc
def test_a_bad_environment_value_warns_and_changes_nothing():
    out = _probe(call=True, VIEWSEG_MALLOC="sometimes")
    assert out["status"] == "process default (VIEWSEG_MALLOC='sometimes' is neither keep nor default)"
    assert out["mmapped_mib"] >= 8


RELEASE_PROBE = """
import json, sys
import torch
from viewseg_core import cpu_allocator
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
cpu_allocator.keep_freed_memory()         # freed blocks up to 128 MiB stay in the heap
base = rss_mib()
big = [torch.ones(4 << 20, dtype=torch.uint8) for _ in range(32)]   # 128 MiB, touched
pin = torch.ones(1024, dtype=torch.uint8)                          # above them: the heap cannot shrink from the top
grown = rss_mib()
del big
freed = rss_mib()
released = cpu_allocator.release_freed_memory()
print(json.dumps({"grown": grown - base, "after_free": freed - base, "after_release": rss_mib() - base,
                  "released": released}))
"""


@glibc
def test_release_freed_memory_returns_the_heaps_free_pages():
    full = {k: v for k, v in os.environ.items() if k not in (cpu_allocator.ENV, *cpu_allocator.GLIBC_TUNABLES)}
    done = subprocess.run([sys.executable, "-c", RELEASE_PROBE], env=full, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    import json
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["grown"] >= 120, out                  # the 128 MiB became resident
    assert out["after_free"] >= 120, out             # freed, but kept by the heap (and counted in RSS)
    assert out["released"] is True
    assert out["after_release"] <= out["after_free"] - 110, out   # handed back to the kernel


def test_release_freed_memory_is_harmless_anywhere():
    assert cpu_allocator.release_freed_memory() in (True, False)


def test_heap_releaser_releases_only_after_the_set_growth(monkeypatch):
    rss = [1000.0]
    released = []
    monkeypatch.setattr(cpu_allocator, "resident_mib", lambda: rss[0])
    monkeypatch.setattr(cpu_allocator, "release_freed_memory", lambda: released.append(rss[0]) or True)
    releaser = cpu_allocator.HeapReleaser(growth_mib=256)
    rss[0] = 1256.0
    assert not releaser.maybe_release()            # grown by exactly the threshold: not past it
    rss[0] = 1300.0
    assert releaser.maybe_release() and released == [1300.0] and releaser.releases == 1
    # The baseline is what is resident after the release (here unchanged: 1300), not 1000.
    rss[0] = 1500.0
    assert not releaser.maybe_release()
    rss[0] = 1557.0
    assert releaser.maybe_release() and releaser.releases == 2
    rss[0] = float("nan")                          # no /proc: never releases
    assert not releaser.maybe_release()
    with pytest.raises(ValueError, match="growth_mib"):
        cpu_allocator.HeapReleaser(0)


def test_resident_mib_reads_this_process():
    import torch
    before = cpu_allocator.resident_mib()
    block = torch.ones(64 << 20, dtype=torch.uint8)     # 64 MiB, touched
    assert cpu_allocator.resident_mib() - before >= 60
    del block
