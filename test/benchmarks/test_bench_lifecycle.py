"""benchmarks/bench_lifecycle.py cannot rot: its --quick run moves a real managed node through
two configure/cleanup cycles and lands one dated row in its own table, with a resident set
that cleanup brought back down."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_records_a_row(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_lifecycle.py"), "--quick",
                           "--output", str(page)], cwd=REPO, capture_output=True, text=True, timeout=180,
                          env={**__import__("os").environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_lifecycle

    text = page.read_text()
    assert bench_lifecycle.SECTION in text and bench_lifecycle.TABLE_HEADER in text
    (row,) = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| 20")]
    assert row[2:6] == ["tiny (--quick)", "4", "2", "yes"]
    configure_s, cleanup_s, unconfigured, configured, after, last = map(float, row[6:12])
    assert configure_s > 0 and cleanup_s > 0
    assert configured > unconfigured and after < configured and last <= after + 16
