"""Source views and their prepared feature maps, kept across queries that pick the same keyframes.

A query renders from a few keyframes. Before any ray is sampled, the keyframes' cached
encoder features are stacked into :class:`~viewseg_core.model.field.SourceViews` and each
field projects them through its input layer (:meth:`Renderer.prepare`: a 1x1 convolution to
``hidden_dim`` channels per field; on CUDA the fused kernel also keeps a channels-last copy
per maps tensor). All of that depends only on which keyframes were picked, so a robot that
asks for several views around the same spot pays it once. Issue 19, item 3.

An entry is found by a hashable key (the node uses the picked keyframe ids, in order) *and*
the identity of the objects it was built from (each keyframe's feature tensor and view): a
keyframe whose features were re-encoded, or an id that came back with other content, is a
miss, never a stale hit. Entries hold those objects, so their ``id`` cannot be reused while
the entry lives. Least recently used entries go first; ``capacity`` 0 keeps nothing.
Thread-safe: concurrent misses of one key may both build (the second result is kept), and a
hit hands out the same tensors to concurrent renders, which only read them (inference).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import torch


def tensor_bytes(value: Any) -> int:
    """Bytes of the storage behind the tensors in ``value`` (tensors, dataclasses, tuples and
    lists, nested); a storage reached twice (the same tensor, or views of it) counts once."""
    seen: set[int] = set()

    def walk(x: Any) -> int:
        if isinstance(x, torch.Tensor):
            storage = x.untyped_storage()
            if storage.data_ptr() in seen:
                return 0
            seen.add(storage.data_ptr())
            return storage.nbytes()
        if isinstance(x, (tuple, list)):
            return sum(walk(v) for v in x)
        if is_dataclass(x) and not isinstance(x, type):
            return sum(walk(getattr(x, f.name)) for f in fields(x))
        return 0

    return walk(value)


@dataclass
class _Entry:
    owners: tuple
    sources: Any
    prepared: Any
    nbytes: int


@dataclass
class CacheStats:
    """Counters since start (or :meth:`PreparedCache.clear`) and the current size."""

    hits: int = 0
    misses: int = 0
    entries: int = 0
    nbytes: int = 0

    def __str__(self) -> str:
        return f"{self.hits} hits, {self.misses} misses, {self.entries} entries, {self.nbytes / 2**20:.1f} MiB"


class PreparedCache:
    """LRU of (SourceViews, prepared maps) per keyframe set (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"PreparedCache capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: Hashable, owners: Sequence[object], build_sources: Callable[[], Any],
            prepare: Callable[[Any], Any]) -> tuple[Any, Any, bool]:
        """(sources, prepared, hit): the entry for ``key`` built from exactly ``owners`` (compared
        by identity), else ``prepare(build_sources())``, kept for the next query."""
        owners = tuple(owners)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and len(entry.owners) == len(owners) and all(
                    a is b for a, b in zip(entry.owners, owners)):
                self._entries.move_to_end(key)
                self._hits += 1
                return entry.sources, entry.prepared, True
            self._misses += 1
        sources = build_sources()
        prepared = prepare(sources)
        if self.capacity > 0:
            entry = _Entry(owners, sources, prepared, tensor_bytes((sources, prepared)))
            with self._lock:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        return sources, prepared, False

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._hits = self._misses = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries),
                              sum(e.nbytes for e in self._entries.values()))


__all__ = ["CacheStats", "PreparedCache", "tensor_bytes"]
