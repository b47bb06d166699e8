"""benchmarks/bench_heap_release.py cannot rot: its --quick run renders in pairs around a real
malloc_trim and lands one dated row in its own table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_records_a_row(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_heap_release.py"), "--quick",
                           "--output", str(page)], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_heap_release

    text = page.read_text()
    assert bench_heap_release.SECTION in text and bench_heap_release.TABLE_HEADER in text
    (row,) = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| 20")]
    assert row[3] == "small (--quick)" and row[5] == "40x30" and row[6] == "3"
    release_ms, released, after, without, ratio = map(float, row[7:12])
    assert release_ms > 0 and after > 0 and without > 0
    assert abs(ratio - after / without) < 0.02 + 0.01 * ratio   # the ratio is of the two medians shown
