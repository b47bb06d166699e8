"""Furniture and fixtures built from boxes and cylinders, one function per kind of object.

Every object is written in its own frame: origin on the floor at the centre of its
footprint, local +y its front (facing into the room), +z up. :class:`Frame` places that
frame in the world (position + yaw) and forwards parts to the scene builder. Each part
carries the viewseg class id of the object it belongs to (a chair's legs are "chair").
"""
from __future__ import annotations

import colorsys
import math

import numpy as np

from viewseg_core.classes import CLASS_NAMES
from viewseg_core.data.synth.scene import (FABRIC, FOLDS, PANELS, PICTURE, PLAIN, SLATS, SPECKLE, TILES, WOOD,
                                           SceneBuilder)

C = {name: CLASS_NAMES.index(name) for name in CLASS_NAMES}


class Frame:
    """An object's local frame in the world: floor point (x, y), base height z, yaw about +z."""

    def __init__(self, builder: SceneBuilder, x: float, y: float, yaw: float = 0.0, z: float = 0.0):
        self.b, self.x, self.y, self.z, self.yaw = builder, float(x), float(y), float(z), float(yaw)
        self._c, self._s = math.cos(self.yaw), math.sin(self.yaw)

    def world(self, lx: float, ly: float, lz: float) -> list[float]:
        return [self.x + self._c * lx - self._s * ly, self.y + self._s * lx + self._c * ly, self.z + lz]

    def box(self, lx, ly, lz, hx, hy, hz, label: int, mat: int, yaw: float = 0.0) -> None:
        """A box centred at local (lx, ly, lz) with half extents (hx, hy, hz)."""
        self.b.box(self.world(lx, ly, lz), [hx, hy, hz], label, mat, yaw=self.yaw + yaw)

    def cyl(self, lx, ly, lz, radius, half_height, label: int, mat: int) -> None:
        self.b.cylinder(self.world(lx, ly, lz), radius, half_height, label, mat)

    def sub(self, lx: float, ly: float, yaw: float = 0.0, z: float = 0.0) -> "Frame":
        wx, wy, wz = self.world(lx, ly, z)
        return Frame(self.b, wx, wy, self.yaw + yaw, wz)


# --------------------------------------------------------------------------------------
# Materials
# --------------------------------------------------------------------------------------

def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, np.clip(s, 0, 1), np.clip(v, 0, 1)))


class Palette:
    """Random but plausible materials (wood, fabric, paint, metal...) for one scene."""

    def __init__(self, builder: SceneBuilder, rng: np.random.Generator):
        self.b, self.rng = builder, rng

    def wood(self, light: bool | None = None) -> int:
        r = self.rng
        light = r.random() < 0.5 if light is None else light
        base = hsv(r.uniform(0.05, 0.1), r.uniform(0.35, 0.6), r.uniform(0.55, 0.8) if light else r.uniform(0.2, 0.4))
        return self.b.material(base, base * r.uniform(0.6, 0.8), WOOD, r.uniform(8, 25))

    def painted(self) -> int:
        r = self.rng
        if r.random() < 0.5:
            base = hsv(r.uniform(0, 1), r.uniform(0.0, 0.1), r.uniform(0.75, 0.95))
        else:
            base = hsv(r.uniform(0, 1), r.uniform(0.2, 0.6), r.uniform(0.3, 0.8))
        return self.b.material(base, base * 0.6, PANELS, r.uniform(1.5, 3.0))

    def fabric(self, saturated: bool = False) -> int:
        r = self.rng
        base = hsv(r.uniform(0, 1), r.uniform(0.3, 0.8) if saturated else r.uniform(0.05, 0.5), r.uniform(0.3, 0.85))
        other = base * r.uniform(0.7, 0.95) + r.uniform(-0.05, 0.05, 3)
        return self.b.material(base, other, FABRIC, r.uniform(4, 15))

    def plain(self, lo: float = 0.2, hi: float = 0.9, sat: float = 0.6) -> int:
        r = self.rng
        return self.b.material(hsv(r.uniform(0, 1), r.uniform(0, sat), r.uniform(lo, hi)))

    def metal(self) -> int:
        v = self.rng.uniform(0.3, 0.75)
        return self.b.material([v, v, v * 1.03], None, PLAIN)

    def wall_paint(self) -> int:
        r = self.rng
        base = hsv(r.uniform(0, 1), r.uniform(0.0, 0.25), r.uniform(0.7, 0.95))
        return self.b.material(base, base * 0.9, PLAIN)

    def floor(self) -> int:
        r = self.rng
        k = r.integers(3)
        if k == 0:
            return self.wood(light=r.random() < 0.6)
        if k == 1:
            base = hsv(r.uniform(0, 1), r.uniform(0, 0.2), r.uniform(0.5, 0.9))
            return self.b.material(base, base * 0.55, TILES, 1.0 / r.uniform(0.3, 0.6))
        base = hsv(r.uniform(0, 1), r.uniform(0.1, 0.5), r.uniform(0.3, 0.7))
        return self.b.material(base, base, SPECKLE, r.uniform(20, 60))

    def picture(self) -> int:
        r = self.rng
        return self.b.material(hsv(r.uniform(0, 1), r.uniform(0.3, 0.9), r.uniform(0.3, 0.9)),
                               hsv(r.uniform(0, 1), r.uniform(0.3, 0.9), r.uniform(0.2, 0.9)), PICTURE,
                               r.uniform(4, 14))

    def glow(self, color, strength: float) -> int:
        return self.b.material(color, None, PLAIN, emissive=strength)


# --------------------------------------------------------------------------------------
# Objects (dimensions in metres; w along local x, d along local y, h up)
# --------------------------------------------------------------------------------------

def bed(f: Frame, w: float, d: float, pal: Palette, rng: np.random.Generator) -> None:
    frame_mat, sheet, blanket = pal.wood(), pal.fabric(), pal.fabric(saturated=True)
    f.box(0, 0, 0.15, w / 2, d / 2, 0.15, C["bed"], frame_mat)                         # base
    f.box(0, 0.02, 0.41, w / 2 - 0.02, d / 2 - 0.04, 0.11, C["bed"], sheet)           # mattress
    f.box(0, -d / 2 + 0.04, 0.55, w / 2, 0.04, 0.55, C["bed"], frame_mat)              # headboard
    f.box(0, 0.12 * d, 0.535, w / 2 + 0.01, 0.36 * d, 0.018, C["bed"], blanket)       # blanket
    n_pillows = 2 if w > 1.2 else 1
    pillow = pal.fabric()
    for i in range(n_pillows):
        x = (i - (n_pillows - 1) / 2) * (w / n_pillows)
        f.box(x, -d / 2 + 0.3, 0.58, min(0.33, w / n_pillows / 2 - 0.04), 0.18, 0.065, C["pillow"], pillow,
              yaw=rng.uniform(-0.1, 0.1))
    if rng.random() < 0.4:
        f.box(rng.uniform(-w / 4, w / 4), 0.25 * d, 0.57, 0.25, 0.2, 0.02, C["clothes"], pal.fabric(True),
              yaw=rng.uniform(0, 1.5))


def lamp(f: Frame, pal: Palette, rng: np.random.Generator, height: float) -> None:
    """Table or floor lamp: base, pole, shade (all "lamp")."""
    metal = pal.metal()
    shade = pal.b.material(hsv(rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.3), rng.uniform(0.8, 0.95)), None,
                           PLAIN, emissive=rng.uniform(0.0, 1.0) if rng.random() < 0.5 else 0.0)
    base_r = 0.08 if height < 0.8 else 0.15
    f.cyl(0, 0, 0.015, base_r, 0.015, C["lamp"], metal)
    pole_h = height * 0.7
    f.cyl(0, 0, 0.03 + pole_h / 2, 0.012, pole_h / 2, C["lamp"], metal)
    sh_h = height * 0.28
    f.cyl(0, 0, 0.03 + pole_h + sh_h / 2 - 0.02, base_r * 1.5, sh_h / 2, C["lamp"], shade)


def night_stand(f: Frame, pal: Palette, rng: np.random.Generator) -> None:
    mat = pal.painted() if rng.random() < 0.5 else pal.wood()
    f.box(0, 0, 0.29, 0.24, 0.2, 0.29, C["night stand"], mat)
    if rng.random() < 0.8:
        lamp(f.sub(rng.uniform(-0.08, 0.08), 0, z=0.58), pal, rng, rng.uniform(0.35, 0.5))
    if rng.random() < 0.4:
        books_row(f.sub(0.1, 0.05, yaw=0.3, z=0.58), pal, rng, 0.15, lying=True)


def sofa(f: Frame, w: float, d: float, pal: Palette, rng: np.random.Generator, label: str = "sofa") -> None:
    fab = pal.fabric()
    arm = 0.15 if w > 1.0 else 0.1
    f.box(0, 0.05, 0.22, w / 2 - arm, d / 2 - 0.05, 0.22, C[label], fab)                      # seat
    f.box(0, -d / 2 + 0.11, 0.45, w / 2, 0.11, 0.45, C[label], fab)                           # back
    for sx in (-1, 1):
        f.box(sx * (w / 2 - arm / 2), 0, 0.3, arm / 2, d / 2, 0.3, C[label], fab)             # arms
    if label == "sofa" and rng.random() < 0.8:
        pil = pal.fabric(saturated=True)
        for i in range(int(rng.integers(1, 4))):
            x = rng.uniform(-w / 2 + arm + 0.25, w / 2 - arm - 0.25)
            f.box(x, -d / 2 + 0.32, 0.6, 0.2, 0.07, 0.18, C["pillow"], pil, yaw=rng.uniform(-0.2, 0.2))


def chair(f: Frame, pal: Palette, rng: np.random.Generator, mat: int | None = None) -> None:
    mat = pal.wood() if mat is None else mat
    seat_h = rng.uniform(0.42, 0.48)
    f.box(0, 0, seat_h, 0.22, 0.22, 0.025, C["chair"], mat)
    f.box(0, -0.2, seat_h + 0.27, 0.22, 0.022, 0.25, C["chair"], mat)
    for sx in (-1, 1):
        for sy in (-1, 1):
            f.box(sx * 0.19, sy * 0.19, (seat_h - 0.025) / 2, 0.02, 0.02, (seat_h - 0.025) / 2, C["chair"], mat)
    if rng.random() < 0.1:
        f.box(0, 0.02, seat_h + 0.045, 0.18, 0.16, 0.02, C["clothes"], pal.fabric(True), yaw=rng.uniform(-0.5, 0.5))


def office_chair(f: Frame, pal: Palette, rng: np.random.Generator) -> None:
    fab, metal = pal.fabric(), pal.metal()
    f.cyl(0, 0, 0.03, 0.3, 0.03, C["chair"], metal)
    f.cyl(0, 0, 0.24, 0.03, 0.18, C["chair"], metal)
    f.box(0, 0, 0.47, 0.25, 0.24, 0.05, C["chair"], fab)
    f.box(0, -0.22, 0.8, 0.23, 0.03, 0.28, C["chair"], fab)


def table(f: Frame, w: float, d: float, h: float, pal: Palette, rng: np.random.Generator,
          label: str = "table", round_top: bool = False) -> None:
    mat = pal.wood()
    if round_top:
        r = min(w, d) / 2
        f.cyl(0, 0, h - 0.02, r, 0.02, C[label], mat)
        f.cyl(0, 0, (h - 0.04) / 2, 0.05, (h - 0.04) / 2, C[label], mat)
        f.cyl(0, 0, 0.015, r * 0.45, 0.015, C[label], mat)
        return
    f.box(0, 0, h - 0.02, w / 2, d / 2, 0.02, C[label], mat)
    leg = 0.03
    for sx in (-1, 1):
        for sy in (-1, 1):
            f.box(sx * (w / 2 - 0.06), sy * (d / 2 - 0.06), (h - 0.04) / 2, leg, leg, (h - 0.04) / 2, C[label], mat)


def desk(f: Frame, w: float, d: float, pal: Palette, rng: np.random.Generator) -> None:
    mat = pal.wood() if rng.random() < 0.6 else pal.painted()
    h = 0.74
    f.box(0, 0, h - 0.02, w / 2, d / 2, 0.02, C["desk"], mat)
    f.box(-w / 2 + 0.02, 0, (h - 0.04) / 2, 0.02, d / 2 - 0.02, (h - 0.04) / 2, C["desk"], mat)
    if rng.random() < 0.6:     # drawer pedestal
        f.box(w / 2 - 0.22, 0, (h - 0.04) / 2, 0.2, d / 2 - 0.03, (h - 0.04) / 2, C["desk"], pal.painted())
    else:
        f.box(w / 2 - 0.02, 0, (h - 0.04) / 2, 0.02, d / 2 - 0.02, (h - 0.04) / 2, C["desk"], mat)
    top = f.sub(0, 0, z=h)
    if rng.random() < 0.7:
        paper = pal.b.material([0.95, 0.95, 0.93])
        for _ in range(int(rng.integers(1, 4))):
            top.box(rng.uniform(-w / 3, w / 3), rng.uniform(-d / 4, d / 4), 0.002 + rng.uniform(0, 0.004), 0.105,
                    0.148, 0.002, C["paper"], paper, yaw=rng.uniform(-0.6, 0.6))
    if rng.random() < 0.5:
        lamp(top.sub(-w / 2 + 0.15, -d / 2 + 0.15), pal, rng, 0.45)
    if rng.random() < 0.6:
        tv_mat = pal.b.material([0.04, 0.04, 0.05], None, PLAIN, emissive=rng.uniform(0, 0.5))
        top.box(rng.uniform(-0.2, 0.2), -d / 2 + 0.12, 0.25, 0.27, 0.02, 0.17, C["television"], tv_mat)
        top.box(0, -d / 2 + 0.12, 0.04, 0.03, 0.03, 0.04, C["television"], pal.metal())
    if rng.random() < 0.4:
        books_row(top.sub(w / 2 - 0.15, -d / 2 + 0.1), pal, rng, 0.25)


def books_row(f: Frame, pal: Palette, rng: np.random.Generator, length: float, max_h: float = 0.3,
              lying: bool = False) -> None:
    """A row of books standing (or a small stack lying) along local x, base at the frame."""
    if lying:
        z = 0.0
        for _ in range(int(rng.integers(1, 4))):
            th = rng.uniform(0.02, 0.05)
            f.box(0, 0, z + th / 2, rng.uniform(0.08, 0.12), rng.uniform(0.11, 0.15), th / 2, C["books"],
                  pal.plain(0.2, 0.8), yaw=rng.uniform(-0.3, 0.3))
            z += th
        return
    x = -length / 2
    while True:
        th = rng.uniform(0.02, 0.06)
        if x + th > length / 2:
            break
        h = rng.uniform(0.6, 1.0) * max_h
        f.box(x + th / 2, 0, h / 2, th / 2 - 0.001, rng.uniform(0.07, 0.11), h / 2, C["books"], pal.plain(0.15, 0.85))
        x += th + (rng.uniform(0.05, 0.2) if rng.random() < 0.1 else 0.0)


def shelf_unit(f: Frame, w: float, d: float, h: float, pal: Palette, rng: np.random.Generator,
               label: str = "bookshelf") -> None:
    """Bookshelf (with back panel) or open shelves, filled with books and boxes."""
    mat = pal.wood() if rng.random() < 0.6 else pal.painted()
    side = 0.02
    for sx in (-1, 1):
        f.box(sx * (w / 2 - side), 0, h / 2, side, d / 2, h / 2, C[label], mat)
    if label == "bookshelf":
        f.box(0, -d / 2 + 0.01, h / 2, w / 2, 0.01, h / 2, C[label], mat)
    n = max(2, int(h / 0.38))
    for i in range(n + 1):
        z = 0.05 + i * (h - 0.07) / n
        f.box(0, 0, z, w / 2 - 2 * side, d / 2, 0.015, C[label], mat)
        if i < n:
            gap = (h - 0.07) / n - 0.04
            if rng.random() < 0.8:
                books_row(f.sub(rng.uniform(-0.1, 0.1), 0, z=z + 0.015), pal, rng, (w - 0.1) * rng.uniform(0.4, 0.9),
                          max_h=min(0.3, gap))
            elif rng.random() < 0.6:
                cardboard(f.sub(rng.uniform(-w / 4, w / 4), 0, z=z + 0.015), pal, rng, min(0.15, gap / 2))


def cardboard(f: Frame, pal: Palette, rng: np.random.Generator, half: float = 0.2) -> None:
    mat = pal.b.material(hsv(rng.uniform(0.07, 0.1), rng.uniform(0.4, 0.6), rng.uniform(0.5, 0.8)))
    hx, hy, hz = (rng.uniform(0.5, 1.0) * half for _ in range(3))
    f.box(0, 0, hz, hx, hy, hz, C["box"], mat, yaw=rng.uniform(-0.4, 0.4))


def cabinet(f: Frame, w: float, d: float, h: float, pal: Palette, rng: np.random.Generator,
            label: str = "cabinet") -> None:
    mat = pal.painted() if rng.random() < 0.6 else pal.wood()
    f.box(0, 0, h / 2, w / 2, d / 2, h / 2, C[label], mat)
    handle = pal.metal()
    for x in np.linspace(-w / 2, w / 2, max(2, int(w / 0.45)) + 1)[1:-1]:
        f.box(x + 0.04, d / 2 + 0.012, h * 0.55 if h > 1 else h * 0.7, 0.008, 0.012, 0.06, C[label], handle)


def kitchen_run(f: Frame, w: float, pal: Palette, rng: np.random.Generator, with_sink: bool) -> None:
    """Base cabinets + countertop (+ sink) + wall cabinets above."""
    base = pal.painted()
    d = 0.6
    f.box(0, 0, 0.43, w / 2, d / 2 - 0.02, 0.43, C["cabinet"], base)
    top = pal.b.material(hsv(rng.uniform(0, 1), rng.uniform(0, 0.15), rng.uniform(0.2, 0.9)), None, SPECKLE, 40)
    f.box(0, 0.01, 0.88, w / 2 + 0.01, d / 2, 0.02, C["counter"], top)
    if with_sink:
        metal = pal.metal()
        sx = rng.uniform(-w / 2 + 0.4, w / 2 - 0.4)
        f.box(sx, 0.02, 0.905, 0.3, 0.22, 0.006, C["sink"], metal)
        f.cyl(sx, -0.22, 1.0, 0.015, 0.1, C["sink"], metal)
    if rng.random() < 0.8:
        f.box(0, -d / 2 + 0.18, 1.85, w / 2, 0.17, 0.35, C["cabinet"], base)
    if rng.random() < 0.5:
        cardboard(f.sub(rng.uniform(-w / 3, w / 3), 0, z=0.9), pal, rng, 0.1)


def refrigerator(f: Frame, pal: Palette, rng: np.random.Generator) -> None:
    v = rng.uniform(0.6, 0.95)
    mat = pal.b.material([v, v, v], [v * 0.6] * 3, PANELS, 0.55)
    h = rng.uniform(1.7, 2.0)
    f.box(0, 0, h / 2, 0.34, 0.33, h / 2, C["refrigerator"], mat)
    f.box(0.28, 0.35, h * 0.6, 0.012, 0.02, 0.25, C["refrigerator"], pal.metal())


def tv(f: Frame, w: float, pal: Palette, rng: np.random.Generator) -> None:
    """Flat TV, centred at the frame (its back against the wall)."""
    glow = rng.uniform(0.0, 0.8) if rng.random() < 0.5 else 0.0      # switched on or off
    screen = pal.b.material([0.03, 0.03, 0.04], [0.1] * 3, PLAIN, emissive=glow)
    f.box(0, 0.03, 0, w / 2, 0.03, w * 0.29, C["television"], screen)


def picture(f: Frame, w: float, h: float, pal: Palette, rng: np.random.Generator) -> None:
    frame = pal.wood() if rng.random() < 0.5 else pal.plain(0.05, 0.95, 0.1)
    f.box(0, 0.015, 0, w / 2, 0.015, h / 2, C["picture"], frame)
    f.box(0, 0.032, 0, w / 2 - 0.04, 0.003, h / 2 - 0.04, C["picture"], pal.picture())


def mirror(f: Frame, w: float, h: float, pal: Palette, rng: np.random.Generator) -> None:
    glass = pal.b.material([0.62, 0.7, 0.74], [0.5, 0.58, 0.62], FABRIC, 1.0)
    f.box(0, 0.012, 0, w / 2, 0.012, h / 2, C["mirror"], glass)


def whiteboard(f: Frame, w: float, h: float, pal: Palette, rng: np.random.Generator) -> None:
    f.box(0, 0.015, 0, w / 2, 0.015, h / 2, C["whiteboard"], pal.metal())
    f.box(0, 0.031, 0, w / 2 - 0.02, 0.002, h / 2 - 0.02, C["whiteboard"], pal.b.material([0.95, 0.95, 0.96]))


def door(f: Frame, w: float, h: float, pal: Palette, rng: np.random.Generator) -> None:
    """Door leaf + frame flush with the wall (the frame origin is on the wall line)."""
    mat = pal.wood() if rng.random() < 0.5 else pal.painted()
    f.box(0, 0.02, h / 2, w / 2, 0.02, h / 2, C["door"], mat)
    trim = pal.plain(0.7, 0.95, 0.1)
    f.box(-w / 2 - 0.04, 0.025, h / 2 + 0.02, 0.04, 0.025, h / 2 + 0.02, C["door"], trim)
    f.box(w / 2 + 0.04, 0.025, h / 2 + 0.02, 0.04, 0.025, h / 2 + 0.02, C["door"], trim)
    f.box(0, 0.025, h + 0.04, w / 2 + 0.08, 0.025, 0.04, C["door"], trim)
    f.box(w / 2 - 0.1, 0.06, 1.0, 0.06, 0.02, 0.012, C["door"], pal.metal())


def window(f: Frame, w: float, z0: float, z1: float, pal: Palette, rng: np.random.Generator,
           covering: str) -> None:
    """Glowing glass with a frame; optional blinds (over it) or curtains (either side)."""
    sky = pal.glow(hsv(rng.uniform(0.52, 0.62), rng.uniform(0.05, 0.35), 1.0), rng.uniform(0.8, 1.2))
    frame = pal.plain(0.75, 0.98, 0.05)
    zc, hh = (z0 + z1) / 2, (z1 - z0) / 2
    f.box(0, 0.01, zc, w / 2, 0.01, hh, C["window"], sky)
    for sx in (-1, 1):
        f.box(sx * (w / 2 + 0.03), 0.03, zc, 0.03, 0.03, hh + 0.06, C["window"], frame)
    f.box(0, 0.03, z1 + 0.03, w / 2, 0.03, 0.03, C["window"], frame)
    f.box(0, 0.08, z0 - 0.03, w / 2 + 0.06, 0.08, 0.03, C["window"], frame)            # sill
    if w > 1.0:
        f.box(0, 0.025, zc, 0.02, 0.02, hh, C["window"], frame)                        # mullion
    if covering == "blinds":
        down = rng.uniform(0.3, 1.0) * (z1 - z0)
        slats = pal.b.material(hsv(rng.uniform(0, 1), rng.uniform(0, 0.2), rng.uniform(0.6, 0.95)), None, SLATS,
                               rng.uniform(18, 30))
        f.box(0, 0.1, z1 + 0.06 - down / 2, w / 2 + 0.05, 0.012, down / 2, C["blinds"], slats)
    elif covering == "curtains":
        cloth = pal.b.material(hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.9)), None, FOLDS,
                               rng.uniform(5, 9))
        top = z1 + 0.25           # rod height; the curtains hang to just above the floor
        for sx in (-1, 1):
            cw = rng.uniform(0.2, 0.45)
            f.box(sx * (w / 2 + cw / 2 - 0.1), 0.14, top / 2 + 0.01, cw / 2 + 0.08, 0.03, top / 2 - 0.01,
                  C["curtain"], cloth)


def rug(f: Frame, w: float, d: float, pal: Palette, rng: np.random.Generator) -> None:
    mat = pal.fabric(saturated=rng.random() < 0.5)
    f.box(0, 0, 0.006, w / 2, d / 2, 0.006, C["floor mat"], mat)


def toilet(f: Frame, pal: Palette, rng: np.random.Generator) -> None:
    white = pal.b.material([0.93, 0.93, 0.92])
    f.box(0, -0.25, 0.6, 0.2, 0.09, 0.2, C["toilet"], white)      # tank
    f.cyl(0, 0.05, 0.2, 0.17, 0.2, C["toilet"], white)            # bowl
    f.box(0, -0.05, 0.2, 0.12, 0.12, 0.2, C["toilet"], white)
    f.cyl(0, 0.06, 0.41, 0.19, 0.015, C["toilet"], white)         # seat


def bathtub(f: Frame, w: float, d: float, pal: Palette, rng: np.random.Generator) -> None:
    white = pal.b.material([0.94, 0.94, 0.93])
    h, t = 0.55, 0.07
    f.box(0, 0, 0.05, w / 2, d / 2, 0.05, C["bathtub"], white)
    f.box(0, d / 2 - t / 2, h / 2, w / 2, t / 2, h / 2, C["bathtub"], white)
    f.box(0, -d / 2 + t / 2, h / 2, w / 2, t / 2, h / 2, C["bathtub"], white)
    for sx in (-1, 1):
        f.box(sx * (w / 2 - t / 2), 0, h / 2, t / 2, d / 2 - t, h / 2, C["bathtub"], white)
    if rng.random() < 0.7:
        cloth = pal.b.material(hsv(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.6, 0.95)), None, FOLDS, 8)
        cw = w * rng.uniform(0.3, 0.8)
        f.box(-w / 2 + cw / 2, d / 2 + 0.02, 1.25, cw / 2, 0.01, 0.7, C["shower curtain"], cloth)
    if rng.random() < 0.6:
        towel(f.sub(w / 4, d / 2 - t / 2, z=h - 0.15), pal, rng)


def towel(f: Frame, pal: Palette, rng: np.random.Generator) -> None:
    cloth = pal.fabric(saturated=True)
    f.box(0, 0.0, 0.0, rng.uniform(0.15, 0.3), 0.04, rng.uniform(0.12, 0.3), C["towel"], cloth)


def vanity(f: Frame, w: float, pal: Palette, rng: np.random.Generator) -> None:
    """Bathroom sink on a cabinet, with a mirror above (origin on the wall line)."""
    cabinet(f.sub(0, 0.25), w, 0.5, 0.8, pal, rng)
    white = pal.b.material([0.95, 0.95, 0.95])
    f.box(0, 0.27, 0.84, min(0.3, w / 2 - 0.05), 0.2, 0.04, C["sink"], white)
    f.cyl(0, 0.08, 0.95, 0.015, 0.08, C["sink"], pal.metal())
    mirror(f.sub(0, 0, z=1.55), w * 0.9, 0.8, pal, rng)


def bag(f: Frame, pal: Palette, rng: np.random.Generator) -> None:
    mat = pal.fabric(saturated=True)
    h = rng.uniform(0.2, 0.4)
    f.box(0, 0, h / 2, rng.uniform(0.12, 0.2), rng.uniform(0.06, 0.12), h / 2, C["bag"], mat, yaw=rng.uniform(0, 3))
    f.box(0, 0, h + 0.05, 0.08, 0.01, 0.05, C["bag"], mat, yaw=rng.uniform(0, 3))


def person(f: Frame, pal: Palette, rng: np.random.Generator) -> None:
    skin = pal.b.material(hsv(rng.uniform(0.04, 0.09), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.9)))
    shirt, trousers = pal.fabric(True), pal.fabric()
    height = rng.uniform(1.55, 1.9)
    leg = 0.47 * height
    for sx in (-1, 1):
        f.box(sx * 0.09, 0, leg / 2, 0.07, 0.08, leg / 2, C["person"], trousers)
    torso = 0.32 * height
    f.box(0, 0, leg + torso / 2, 0.2, 0.11, torso / 2, C["person"], shirt)
    for sx in (-1, 1):
        f.box(sx * 0.25, 0, leg + torso - 0.3, 0.045, 0.05, 0.3, C["person"], shirt)
    f.cyl(0, 0, leg + torso + 0.03, 0.05, 0.04, C["person"], skin)
    f.cyl(0, 0, height - 0.11, 0.09, 0.11, C["person"], skin)


__all__ = ["Frame", "Palette", "C", "hsv"]
