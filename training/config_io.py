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
import types
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
        else:
            kwargs[name] = _typed(value, hint, where + name)
    return cls(**kwargs)


_NO_MATCH = object()


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint``, or _NO_MATCH. Lossless conversions only."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            out = _coerce(value, option)
            if out is not _NO_MATCH:
                return out
        return _NO_MATCH
    if hint is type(None):
        return None if value is None else _NO_MATCH
    if hint is bool:
        return value if isinstance(value, bool) else _NO_MATCH
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO_MATCH
    if hint is float:
        # PyYAML reads '1e-3' (no dot) as a string; a float field takes it as the number.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return _NO_MATCH
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _NO_MATCH
    if hint is str:
        return value if isinstance(value, str) else _NO_MATCH
    if hint is dict or origin is dict:
        return value if isinstance(value, dict) else _NO_MATCH
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _NO_MATCH
        args = typing.get_args(hint)
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            return _NO_MATCH
        items = [_coerce(v, t) for v, t in zip(value, kinds)]
        return _NO_MATCH if any(i is _NO_MATCH for i in items) else tuple(items)
    return value  # a type this reader does not check (the dataclass may)


def _typed(value: Any, hint: Any, key: str) -> Any:
    """``value`` converted to ``hint``; a wrong type is an error naming the key."""
    out = _coerce(value, hint)
    if out is _NO_MATCH:
        name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        raise ValueError(f"config key {key}: expected {name}, got {value!r} ({type(value).__name__})")
    return out


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


def check_bounds(obj: Any, section: str, at_least: Mapping[str, float] = {},
                 above: Mapping[str, float] = {}) -> None:
    """Range checks for a config section's numbers: a zero or negative count must not run.

    ``viewseg train run.max_steps=-5`` used to 'finish' at once with exit 0 and no model.
    """
    for bounds, ok, word in ((at_least, lambda v, b: v >= b, ">="), (above, lambda v, b: v > b, ">")):
        for name, bound in bounds.items():
            value = getattr(obj, name)
            if not ok(value, bound):  # NaN fails both comparisons
                raise ValueError(f"config key {section}.{name} must be {word} {bound}, got {value!r}")
