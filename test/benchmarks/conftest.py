"""What the tests of benchmarks/ share: loading a benchmark script (not a package module) by its name."""
from __future__ import annotations

import importlib.util
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
