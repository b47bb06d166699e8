"""A procedural scene as flat primitive arrays: boxes and vertical cylinders, materials, lights.

Every surface of a synthetic room (walls, floor and ceiling included) is one primitive, so
a ray caster needs only two kernels and a label image is a lookup of the hit primitive's
class. World frame: z up, metres, the floor at z = 0.

Primitive ``i`` is a box (``kind == BOX``): centre ``center[i]``, half extents ``half[i]``
in its own frame, rotated by ``yaw[i]`` about +z; or a vertical cylinder (``kind == CYLINDER``):
radius ``half[i, 0]`` (= ``half[i, 1]``), half height ``half[i, 2]``, yaw unused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BOX = 0
CYLINDER = 1

# Texture kinds (see shading.py for what each looks like).
PLAIN, WOOD, TILES, SLATS, FOLDS, FABRIC, PICTURE, SPECKLE, PANELS = range(9)
TEXTURE_NAMES = ("plain", "wood", "tiles", "slats", "folds", "fabric", "picture", "speckle", "panels")


@dataclass
class Scene:
    """Primitive arrays of one scene (see the module docstring for their meaning).

    Attributes:
        kind, label, material: [N] int32 (label: viewseg class id 0-36).
        center, half: [N, 3] float64 metres. yaw: [N] float64 radians.
        mat_color, mat_color2: [P, 3] float64 linear albedo in [0, 1].
        mat_texture: [P] int32 texture kind; mat_scale: [P] float64 texture frequency (1/m);
        mat_emissive: [P] float64 (0 = lit surface, > 0 = glows with mat_color * value).
        light_pos: [L, 3]; light_color: [L, 3] intensity per channel. ambient: scalar.
        polygon: [V, 2] the room's floor outline (counter-clockwise); height: room height.
    """

    name: str
    seed: int
    kind: np.ndarray
    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    label: np.ndarray
    material: np.ndarray
    mat_color: np.ndarray
    mat_color2: np.ndarray
    mat_texture: np.ndarray
    mat_scale: np.ndarray
    mat_emissive: np.ndarray
    light_pos: np.ndarray
    light_color: np.ndarray
    ambient: float
    polygon: np.ndarray
    height: float
    meta: dict = field(default_factory=dict)

    @property
    def num_primitives(self) -> int:
        return int(self.kind.shape[0])

    def corners(self) -> np.ndarray:
        """[N, 8, 3] corners of every primitive's (oriented) bounding box, world frame."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        local = signs[None] * self.half[:, None, :]                       # [N, 8, 3]
        yaw = np.where(self.kind == BOX, self.yaw, 0.0)
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        x = c * local[..., 0] - s * local[..., 1]
        y = s * local[..., 0] + c * local[..., 1]
        return np.stack([x, y, local[..., 2]], axis=-1) + self.center[:, None, :]

    def to_dict(self) -> dict:
        """Plain-JSON description (lists), enough to re-render any camera later."""
        out = {"name": self.name, "seed": int(self.seed), "ambient": float(self.ambient),
               "height": float(self.height), "meta": self.meta}
        for key in ("kind", "center", "half", "yaw", "label", "material", "mat_color", "mat_color2",
                    "mat_texture", "mat_scale", "mat_emissive", "light_pos", "light_color", "polygon"):
            out[key] = getattr(self, key).tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "scene") -> "Scene":
        try:
            ints = {k: np.asarray(d[k], dtype=np.int32) for k in ("kind", "label", "material", "mat_texture")}
            floats = {k: np.asarray(d[k], dtype=np.float64) for k in
                      ("center", "half", "yaw", "mat_color", "mat_color2", "mat_scale", "mat_emissive",
                       "light_pos", "light_color", "polygon")}
            scene = cls(name=str(d["name"]), seed=int(d["seed"]), ambient=float(d["ambient"]),
                        height=float(d["height"]), meta=dict(d.get("meta") or {}), **ints, **floats)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: not a valid synthetic scene description: {e!r}") from e
        scene.validate(where)
        return scene

    def validate(self, where: str = "scene") -> None:
        n, p = self.num_primitives, self.mat_color.shape[0]
        checks = [
            (self.center.shape == (n, 3) and self.half.shape == (n, 3), "center/half must be [N, 3]"),
            (self.yaw.shape == (n,) and self.label.shape == (n,) and self.material.shape == (n,),
             "yaw/label/material must be [N]"),
            (bool(np.all(self.half > 0)), "half extents must be positive"),
            (n == 0 or (self.material.min() >= 0 and self.material.max() < p), "material index out of range"),
            (self.mat_color2.shape == (p, 3) and self.mat_texture.shape == (p,) and self.mat_scale.shape == (p,)
             and self.mat_emissive.shape == (p,), "material arrays must share their length"),
            (self.light_pos.shape == self.light_color.shape and self.light_pos.ndim == 2, "lights must be [L, 3]"),
            (self.polygon.ndim == 2 and self.polygon.shape[1] == 2, "polygon must be [V, 2]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"{where}: {msg}")


class SceneBuilder:
    """Accumulates primitives, materials and lights, then freezes them into a :class:`Scene`."""

    def __init__(self) -> None:
        self._prims: list[tuple] = []
        self._mats: list[tuple] = []
        self._lights: list[tuple] = []

    def material(self, color, color2=None, texture: int = PLAIN, scale: float = 1.0,
                 emissive: float = 0.0) -> int:
        color = np.clip(np.asarray(color, dtype=np.float64), 0.0, 1.0)
        color2 = color * 0.7 if color2 is None else np.clip(np.asarray(color2, dtype=np.float64), 0.0, 1.0)
        self._mats.append((color, color2, int(texture), float(scale), float(emissive)))
        return len(self._mats) - 1

    def box(self, center, half, label: int, material: int, yaw: float = 0.0) -> int:
        center = np.asarray(center, dtype=np.float64)
        half = np.asarray(half, dtype=np.float64)
        # Quarter turns become axis-aligned boxes with swapped extents: the caster's fast path.
        k = yaw / (0.5 * np.pi)
        if abs(k - round(k)) < 1e-9:
            if int(round(k)) % 2:
                half = half[[1, 0, 2]]
            yaw = 0.0
        self._prims.append((BOX, center, half, float(yaw), int(label), int(material)))
        return len(self._prims) - 1

    def cylinder(self, center, radius: float, half_height: float, label: int, material: int) -> int:
        half = np.array([radius, radius, half_height], dtype=np.float64)
        self._prims.append((CYLINDER, np.asarray(center, dtype=np.float64), half, 0.0, int(label), int(material)))
        return len(self._prims) - 1

    def light(self, position, color) -> None:
        self._lights.append((np.asarray(position, dtype=np.float64), np.asarray(color, dtype=np.float64)))

    def build(self, name: str, seed: int, polygon, height: float, ambient: float, meta: dict | None = None) -> Scene:
        prims = self._prims
        mats = self._mats
        lights = self._lights or [(np.array([0.0, 0.0, height - 0.1]), np.ones(3))]
        scene = Scene(
            name=name, seed=int(seed),
            kind=np.array([p[0] for p in prims], dtype=np.int32),
            center=np.array([p[1] for p in prims], dtype=np.float64).reshape(-1, 3),
            half=np.array([p[2] for p in prims], dtype=np.float64).reshape(-1, 3),
            yaw=np.array([p[3] for p in prims], dtype=np.float64),
            label=np.array([p[4] for p in prims], dtype=np.int32),
            material=np.array([p[5] for p in prims], dtype=np.int32),
            mat_color=np.array([m[0] for m in mats], dtype=np.float64).reshape(-1, 3),
            mat_color2=np.array([m[1] for m in mats], dtype=np.float64).reshape(-1, 3),
            mat_texture=np.array([m[2] for m in mats], dtype=np.int32),
            mat_scale=np.array([m[3] for m in mats], dtype=np.float64),
            mat_emissive=np.array([m[4] for m in mats], dtype=np.float64),
            light_pos=np.array([l[0] for l in lights], dtype=np.float64).reshape(-1, 3),
            light_color=np.array([l[1] for l in lights], dtype=np.float64).reshape(-1, 3),
            ambient=float(ambient), polygon=np.asarray(polygon, dtype=np.float64), height=float(height),
            meta=dict(meta or {}))
        scene.validate(name)
        return scene


__all__ = ["Scene", "SceneBuilder", "BOX", "CYLINDER", "PLAIN", "WOOD", "TILES", "SLATS", "FOLDS",
           "FABRIC", "PICTURE", "SPECKLE", "PANELS", "TEXTURE_NAMES"]
