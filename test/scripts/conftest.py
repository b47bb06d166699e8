"""What the tests of scripts/ share: loading a script (not a package module) by its name."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def load_script():
    """``load_script("depth_profile")`` -> the module of scripts/depth_profile.py, freshly executed."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses in a script look their module up there
        spec.loader.exec_module(module)
        return module
    return load
