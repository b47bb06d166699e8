"""benchmarks/bench_lifecycle.py cannot rot: its --quick run moves a real managed node through
two configure/cleanup cycles and lands one dated row in its own table, with a resident set
that cleanup brought back down."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.ros


def test_quick_run_records_a_row(tmp_path, quick_rows):
    (row,) = quick_rows("bench_lifecycle", tmp_path, env={"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert row[2:6] == ["tiny (--quick)", "4", "2", "yes"]
    configure_s, cleanup_s, unconfigured, configured, after, last = map(float, row[6:12])
    assert configure_s > 0 and cleanup_s > 0
    assert configured > unconfigured and after < configured and last <= after + 16
