"""Nested dataclass configs from YAML plus ``key.sub=value`` command-line overrides.

Unknown keys are errors (a typo must not silently train the wrong model), and override
values are parsed as YAML scalars, so ``optim.lr=1e-3``, ``data.image_size=[120,160]`` and
``train.bf16=false`` all get their natural types.

A config may start from another: ``base: other.yaml`` (a path relative to the file that names
it) reads that file first, and this file's sections are merged over it key by key, so a
variant states only what it changes (``synthetic_gpu.yaml`` is ``synthetic_medium.yaml`` plus
its data, optimiser and run). Bases may chain; a cycle is an error.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, recursing into dataclass-typed fields."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
                         f"valid keys under '{where or '<root>'}': {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[name] = from_dict(hint, value, f"{where}{name}.")
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain dict (lists instead of tuples) of a dataclass, fit for YAML and checkpoints."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(obj))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``a.b.c=value`` entries in a nested dict (creating sub-dicts as needed)."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: '{part}' is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def deep_merge(base: dict, update: Mapping) -> dict:
    """Recursive dict update (``update`` wins), without touching either input."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


BASE_KEY = "base"


def read_config_dict(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping in YAML ``path``, merged over its ``base:`` chain; errors name the file."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise ValueError(f"config base cycle: {cycle}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must be a mapping at the top level")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ValueError(f"config {path}: '{BASE_KEY}' must be a file name, got {base!r}")
    return deep_merge(read_config_dict(path.parent / base, (*_chain, resolved)), data)


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Read YAML ``path`` (optional, with its ``base:`` chain), apply overrides, build ``cls``."""
    data: dict[str, Any] = read_config_dict(path) if path is not None else {}
    apply_overrides(data, overrides or [])
    return from_dict(cls, data)
