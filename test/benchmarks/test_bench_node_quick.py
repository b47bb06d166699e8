"""benchmarks/bench_node.py cannot rot: its --quick run works end to end, and its rows land in
the "Node latency" table of a benchmarks page (not after the text that follows the table)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_node.py"


def table_rows(text: str, section: str) -> list[list[str]]:
    body = text[text.index(section):]
    body = body[:body.find("\n## ", 1)] if "\n## " in body[1:] else body
    lines = [ln for ln in body.splitlines() if ln.startswith("| 20")]
    return [[cell.strip() for cell in ln.strip("|").split("|")] for ln in lines]


def test_quick_run_prints_and_records_a_row(tmp_path, ros_subprocess_env, load_benchmark):
    bench = load_benchmark("bench_node")
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# viewseg benchmarks\n\n{bench.SECTION}\n\nintro\n\n{bench.TABLE_HEADER}\nLog: kept.\n\n"
                    "## Later section\n\n| a |\n")
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--output", str(page)], cwd=REPO,
                          env=dict(ros_subprocess_env, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "overhead p10/med/p90 ms" in done.stdout and "appended 1 row(s)" in done.stdout

    text = page.read_text()
    (row,) = table_rows(text, bench.SECTION)
    # The row sits right under the header, before the log text; the next section is untouched.
    assert text.index(bench.TABLE_HEADER) + len(bench.TABLE_HEADER) == text.index("| 20")
    assert text.index("| 20") < text.index("Log: kept.") < text.index("## Later section\n\n| a |\n")
    header = [c.strip() for c in bench.TABLE_HEADER.splitlines()[0].strip("|").split("|")]
    assert len(row) == len(header)
    cells = dict(zip(header, row))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cells["date"])
    assert cells["device"].startswith(("CPU ", "GPU ")) and cells["size"] == "80x60 (quick)"
    assert cells["keyframes"] == "8" and cells["calls"] == "8"
    assert float(cells["load avg"]) >= 0
    render, service, overhead = (
        [float(v) for v in cells[f"{name} p10 / median / p90 ms"].split(" / ")]
        for name in ("render", "service", "overhead"))
    for values in (render, service, overhead):
        assert values[0] <= values[1] <= values[2]
    assert 0 < render[1] < service[1] and overhead[0] > 0
    parts = [float(cells[name]) for name in ("tf", "select", "to numpy", "messages")]
    assert all(v > 0 for v in parts)  # each step was timed, the TF lookup included
    assert 0 <= float(cells["other"]) <= overhead[2]  # per call: overhead minus the timed parts
    assert cells["overhead < 5 ms"] in ("p90 met", "median met", "p10 only", "missed")
