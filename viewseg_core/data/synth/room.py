"""Room shells (floor outline, walls, floor, ceiling) and the bookkeeping for placing things.

A room is a rectilinear polygon (rectangle, L-shape or a rectangle with an alcove) extruded
to its height. Walls are boxes standing just outside the outline, so the room is closed and
every ray from inside hits something. :class:`Room` tracks what has been placed: floor
footprints (axis-aligned rectangles) and, per wall, the spans already taken (with heights),
so that a wardrobe does not stand in front of a window or a door.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

WALL_THICKNESS = 0.15


@dataclass
class Wall:
    """One straight wall: from ``p0`` to ``p1`` (counter-clockwise), ``normal`` points inward."""

    index: int
    p0: np.ndarray
    p1: np.ndarray
    used: list[tuple[float, float, float, float]] = field(default_factory=list)  # (s0, s1, z0, z1)

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.p1 - self.p0))

    @property
    def direction(self) -> np.ndarray:
        return (self.p1 - self.p0) / self.length

    @property
    def normal(self) -> np.ndarray:
        e = self.direction
        return np.array([-e[1], e[0]])

    @property
    def yaw(self) -> float:
        """Yaw of an object whose local +y (its front) faces into the room from this wall."""
        n = self.normal
        return math.atan2(n[1], n[0]) - 0.5 * math.pi

    def point(self, s: float, offset: float = 0.0) -> np.ndarray:
        """Floor point ``s`` metres along the wall, ``offset`` metres into the room."""
        return self.p0 + self.direction * s + self.normal * offset

    def span_free(self, s0: float, s1: float, z0: float, z1: float, pad: float = 0.05) -> bool:
        if s0 < 0.0 or s1 > self.length:
            return False
        for a0, a1, b0, b1 in self.used:
            if s0 < a1 + pad and a0 < s1 + pad and z0 < b1 and b0 < z1:
                return False
        return True


def rectilinear_outline(rng: np.random.Generator, width: float, depth: float, shape: str) -> np.ndarray:
    """Counter-clockwise outline [V, 2] of a rectangle, L-shape or alcove room, origin at a corner."""
    W, D = width, depth
    if shape == "rect":
        return np.array([[0, 0], [W, 0], [W, D], [0, D]], dtype=np.float64)
    if shape == "L":
        cw = rng.uniform(0.3, 0.5) * W
        cd = rng.uniform(0.3, 0.5) * D
        # Remove the corner at (W, D).
        return np.array([[0, 0], [W, 0], [W, D - cd], [W - cw, D - cd], [W - cw, D], [0, D]], dtype=np.float64)
    if shape == "alcove":
        aw = rng.uniform(1.2, max(1.3, 0.5 * W))
        ad = rng.uniform(0.8, 1.5)
        a0 = rng.uniform(0.3, W - aw - 0.3)
        return np.array([[0, 0], [W, 0], [W, D], [a0 + aw, D], [a0 + aw, D + ad], [a0, D + ad], [a0, D], [0, D]],
                        dtype=np.float64)
    raise ValueError(f"unknown room shape {shape!r}")


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """[N, 2] points -> [N] bool, strictly inside (even-odd rule)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (np.sum(crosses & (x < xi), axis=1) % 2) == 1


class Room:
    """The shell of a room and what has been placed in it so far."""

    def __init__(self, polygon: np.ndarray, height: float):
        self.polygon = np.asarray(polygon, dtype=np.float64)
        self.height = float(height)
        n = len(self.polygon)
        self.walls = [Wall(i, self.polygon[i].copy(), self.polygon[(i + 1) % n].copy()) for i in range(n)]
        # Floor footprints [xmin, ymin, xmax, ymax] of everything that blocks walking/placing.
        self.footprints: list[tuple[float, float, float, float]] = []
        # Regions kept clear of furniture but not of rugs or cameras (door swings).
        self.keep_clear: list[tuple[float, float, float, float]] = []

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = self.polygon.min(0), self.polygon.max(0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def area(self) -> float:
        x, y = self.polygon[:, 0], self.polygon[:, 1]
        return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    def convex_vertex(self, i: int) -> bool:
        p_prev, p, p_next = self.polygon[i - 1], self.polygon[i], self.polygon[(i + 1) % len(self.polygon)]
        a, b = p - p_prev, p_next - p
        return a[0] * b[1] - a[1] * b[0] > 0

    def rect_inside(self, rect, margin: float = 0.0) -> bool:
        """Axis-aligned rectangle inside the room, at least ``margin`` from every wall."""
        x0, y0, x1, y1 = rect[0] - margin, rect[1] - margin, rect[2] + margin, rect[3] + margin
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [(x0 + x1) / 2, (y0 + y1) / 2]])
        if not points_in_polygon(corners, self.polygon).all():
            return False
        # A rectilinear room's reflex corner can poke into a rectangle whose corners are all inside.
        px, py = self.polygon[:, 0], self.polygon[:, 1]
        return not np.any((px > x0) & (px < x1) & (py > y0) & (py < y1))

    def rect_free(self, rect, pad: float = 0.0, include_clear: bool = True) -> bool:
        areas = self.footprints + (self.keep_clear if include_clear else [])
        for a in areas:
            if rect[0] < a[2] + pad and a[0] < rect[2] + pad and rect[1] < a[3] + pad and a[1] < rect[3] + pad:
                return False
        return True

    def shell(self, builder, rng: np.random.Generator, wall_mat: int, accent_mat: int | None, floor_mat: int,
              ceiling_mat: int, labels: dict[str, int]) -> None:
        """Emit wall, floor and ceiling boxes."""
        th, H = WALL_THICKNESS, self.height
        accent_wall = int(rng.integers(len(self.walls))) if accent_mat is not None else -1
        for w in self.walls:
            ext0 = th if self.convex_vertex(w.index) else 0.0
            ext1 = th if self.convex_vertex((w.index + 1) % len(self.walls)) else 0.0
            a = w.p0 - w.direction * ext0
            b = w.p1 + w.direction * ext1
            outer = -w.normal * th
            lo = np.minimum(np.minimum(a, b), np.minimum(a + outer, b + outer))
            hi = np.maximum(np.maximum(a, b), np.maximum(a + outer, b + outer))
            center = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, H / 2]
            half = [(hi[0] - lo[0]) / 2, (hi[1] - lo[1]) / 2, H / 2 + th]
            mat = accent_mat if w.index == accent_wall else wall_mat
            builder.box(center, half, labels["wall"], mat)
        x0, y0, x1, y1 = self.bounds
        c = [(x0 + x1) / 2, (y0 + y1) / 2]
        half_xy = [(x1 - x0) / 2 + th, (y1 - y0) / 2 + th]
        builder.box([c[0], c[1], -th / 2], [half_xy[0], half_xy[1], th / 2], labels["floor"], floor_mat)
        builder.box([c[0], c[1], H + th / 2], [half_xy[0], half_xy[1], th / 2], labels["ceiling"], ceiling_mat)

    def free_grid(self, cell: float, wall_margin: float, object_margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Cells where a camera may stand: inside, away from walls and from every footprint.

        Returns:
            free [ny, nx] bool, and cell centres [ny, nx, 2].
        """
        x0, y0, x1, y1 = self.bounds
        xs = np.arange(x0 + cell / 2, x1, cell)
        ys = np.arange(y0 + cell / 2, y1, cell)
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], 1)
        free = points_in_polygon(pts, self.polygon)
        # Distance to every wall segment.
        for w in self.walls:
            a, b = w.p0, w.p1
            ab = b - a
            tt = np.clip(((pts - a) @ ab) / (ab @ ab), 0, 1)
            d = np.linalg.norm(pts - (a + tt[:, None] * ab), axis=1)
            free &= d >= wall_margin
        for f in self.footprints:
            inside = ((pts[:, 0] > f[0] - object_margin) & (pts[:, 0] < f[2] + object_margin) &
                      (pts[:, 1] > f[1] - object_margin) & (pts[:, 1] < f[3] + object_margin))
            free &= ~inside
        return free.reshape(gx.shape), np.stack([gx, gy], -1)


__all__ = ["Room", "Wall", "rectilinear_outline", "points_in_polygon", "WALL_THICKNESS"]
