"""The interface every dataset reader offers: a scene as an indexable list of posed views.

Pair mining and the training dataset only need this much of a scene, so they work on the
scene folder, Hypersim and Replica readers alike (issue 5: "it works on all sources").
Cameras are cheap (metadata only); images are loaded on demand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from viewseg_core.data.records import View


@dataclass(frozen=True)
class CameraFrame:
    """The camera of one view, without its pixels.

    Attributes:
        view_id: unique within the scene.
        K: [3, 3] float64 general projective intrinsics (OpenCV pixels).
        c2w: [4, 4] float64 camera-to-world (OpenCV optical frame), metres.
        height, width: image size in pixels.
    """

    view_id: str
    K: np.ndarray
    c2w: np.ndarray
    height: int
    width: int


@runtime_checkable
class SceneSource(Protocol):
    """One scene of any dataset: ``len`` views, each with a camera and loadable pixels."""

    name: str

    def __len__(self) -> int: ...

    def camera(self, index: int) -> CameraFrame:
        """Camera of view ``index`` (no image I/O)."""
        ...

    def load_depth(self, index: int) -> np.ndarray | None:
        """[H, W] float32 planar depth in metres (NaN = unknown), or None when the source has none."""
        ...

    def load_view(self, index: int) -> View:
        """The full record of view ``index``."""
        ...


def view_ids(source: SceneSource) -> list[str]:
    """The view ids of a scene, in index order."""
    return [source.camera(i).view_id for i in range(len(source))]


def index_by_id(source: SceneSource) -> dict[str, int]:
    """view_id -> index; raises ValueError on duplicate ids (they would make pairs ambiguous)."""
    out: dict[str, int] = {}
    for i in range(len(source)):
        vid = source.camera(i).view_id
        if vid in out:
            raise ValueError(f"scene {source.name!r}: duplicate view id {vid!r} (indices {out[vid]} and {i})")
        out[vid] = i
    return out


def check_sources(sources: Sequence[SceneSource]) -> dict[str, SceneSource]:
    """name -> source; raises ValueError on duplicate scene names."""
    out: dict[str, SceneSource] = {}
    for s in sources:
        if s.name in out:
            raise ValueError(f"duplicate scene name {s.name!r}")
        out[s.name] = s
    return out


__all__ = ["CameraFrame", "SceneSource", "view_ids", "index_by_id", "check_sources"]
