"""Every result file is replaced whole or not at all: when the disk fills in the middle of a
write, the previous file is still there byte for byte, the new one is not half there, and no
temp file is left. Covers metrics.json/.md (eval), panels (PNG), PLY (export-3d), depth .npy
(synth and bag imports) and config.yaml (train, through the same helper).

The 'full disk' is real: RLIMIT_FSIZE makes write() fail with EFBIG past a size, exactly where
ENOSPC would; SIGXFSZ is ignored so the error reaches Python instead of killing pytest.
"""
from __future__ import annotations

import contextlib
import errno
import resource
import signal

import numpy as np
import pytest

from training.evaluate import write_reports
from training.export3d import PointCloud, write_ply
from viewseg_core.atomic_io import write_text_atomic
from viewseg_core.data.scene_folder import write_depth_npy
from viewseg_core.viz import save_png

LIMIT = 64 * 1024


@contextlib.contextmanager
def disk_fills_at(limit: int):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _cloud(n: int) -> PointCloud:
    rng = np.random.default_rng(0)
    return PointCloud(rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 255, (n, 3), dtype=np.uint8),
                      rng.integers(0, 37, n, dtype=np.uint8))


def _report(rows: int) -> dict:
    return {"methods": {}, "comparisons": {}, "num_examples": rows, "per_example": [{"i": i} for i in range(rows)]}


# name -> (path in tmp_path, write a small result, write one larger than LIMIT)
WRITERS = {
    "metrics.json": ("eval/metrics.json", lambda p: write_reports(p.parent, _report(3)),
                     lambda p: write_reports(p.parent, _report(20000))),
    "panel png": ("panels/step_10.png", lambda p: save_png(p, np.zeros((8, 8, 3), np.uint8)),
                  lambda p: save_png(p, np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8))),
    "ply": ("cloud.ply", lambda p: write_ply(p, _cloud(10)), lambda p: write_ply(p, _cloud(20000))),
    "depth npy": ("depth/000000.npy", lambda p: write_depth_npy(p, np.ones((4, 4), np.float32)),
                  lambda p: write_depth_npy(p, np.ones((160, 120), np.float32))),
    "config.yaml": ("run/config.yaml", lambda p: write_text_atomic(p, "optim:\n  lr: 0.001\n"),
                    lambda p: write_text_atomic(p, "# padding\n" * 10000)),
}


@pytest.mark.parametrize("name", WRITERS)
def test_a_full_disk_leaves_the_previous_file_whole(name, tmp_path):
    relative, small, large = WRITERS[name]
    path = tmp_path / relative
    small(path)
    before = path.read_bytes()
    assert 0 < len(before) < LIMIT
    with disk_fills_at(LIMIT), pytest.raises(OSError) as error:
        large(path)
    assert error.value.errno == errno.EFBIG and error.value.filename == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] == []
    large(path)  # with room on the disk, the new file replaces the old one
    assert len(path.read_bytes()) > LIMIT
