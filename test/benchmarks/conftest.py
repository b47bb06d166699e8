"""What the tests of benchmarks/ share: loading a benchmark script (not a package module) by its
name, and running one with ``--quick`` into a page of its own."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark_module(name: str):
    """The module of benchmarks/NAME.py, freshly executed (its neighbours, e.g. report.py, importable)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module          # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture
def load_benchmark():
    """``load_benchmark("bench_query")`` -> the module of benchmarks/bench_query.py."""
    return load_benchmark_module


def run_quick(name: str, tmp_path: Path, timeout: float = 180.0, env: dict | None = None,
              args: tuple[str, ...] = ()) -> list[list[str]]:
    """Run ``benchmarks/NAME.py --quick [args]`` recording into a fresh page under ``tmp_path``; check it
    succeeded and that the page holds its SECTION and TABLE_HEADER; return the dated rows it
    recorded, as lists of cell texts."""
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n")
    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick", "--output", str(page), *args],
                          cwd=BENCH.parent, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})
    assert done.returncode == 0, done.stdout + done.stderr
    module = load_benchmark_module(name)
    text = page.read_text()
    assert module.SECTION in text and module.TABLE_HEADER in text
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| 20")]


@pytest.fixture
def quick_rows():
    """``quick_rows("bench_x", tmp_path)`` -> the rows ``benchmarks/bench_x.py --quick`` recorded
    (:func:`run_quick`)."""
    return run_quick
