"""Procedural indoor scenes: a room of a random type, size and shape, furnished plausibly.

One recipe per room type (bedroom, living room, office, kitchen, bathroom) places doors and
windows first, then large furniture against walls, then free-standing groups (a dining
table with chairs, a sofa facing a coffee table), then wall-mounted things (pictures, TV,
mirror, whiteboard) in the wall spans still free, then small objects. Everything is drawn
from one ``numpy.random.Generator`` seeded by the scene seed, so a seed is a scene.
"""
from __future__ import annotations

import math

import numpy as np

from viewseg_core.data.synth import furniture as fu
from viewseg_core.data.synth.furniture import C, Frame, Palette, hsv
from viewseg_core.data.synth.room import Room, Wall, rectilinear_outline
from viewseg_core.data.synth.scene import PLAIN, Scene, SceneBuilder

ROOM_TYPES = ("bedroom", "living", "office", "kitchen", "bathroom")
# Room-type draw weights (bathrooms are small and few in real datasets too).
ROOM_WEIGHTS = (0.24, 0.24, 0.2, 0.2, 0.12)
SIZE_RANGES = {  # (width range, depth range) in metres
    "bedroom": ((3.2, 5.5), (3.2, 5.0)),
    "living": ((4.0, 8.0), (3.8, 7.0)),
    "office": ((4.0, 8.0), (4.0, 7.0)),
    "kitchen": ((3.2, 6.0), (3.2, 5.5)),
    "bathroom": ((2.6, 3.8), (2.6, 3.6)),
}


class Placer:
    """Finds free spots for objects and records what they occupy."""

    def __init__(self, room: Room, builder: SceneBuilder, pal: Palette, rng: np.random.Generator):
        self.room, self.b, self.pal, self.rng = room, builder, pal, rng

    def _walls(self, min_len: float) -> list[Wall]:
        walls = [w for w in self.room.walls if w.length >= min_len]
        self.rng.shuffle(walls)
        return walls

    def against_wall(self, w: float, d: float, h: float, wall: Wall | None = None, s: float | None = None,
                     tries: int = 40, pad: float = 0.05) -> tuple[Frame, Wall, float] | None:
        """Floor object of footprint w x d (x along the wall), back against a wall.

        Returns (frame at the footprint centre facing into the room, wall, position along it).
        """
        walls = [wall] if wall is not None else self._walls(w + 0.1)
        for _ in range(tries):
            if not walls:
                return None
            wl = walls[int(self.rng.integers(len(walls)))]
            if wl.length < w + 0.1:
                return None
            si = s if s is not None else self.rng.uniform(w / 2 + 0.05, wl.length - w / 2 - 0.05)
            c = wl.point(si, d / 2 + 0.01)
            e = np.abs(wl.direction)
            hx, hy = (w / 2, d / 2) if e[0] > 0.5 else (d / 2, w / 2)
            rect = (c[0] - hx, c[1] - hy, c[0] + hx, c[1] + hy)
            if (self.room.rect_inside(rect, -0.02) and self.room.rect_free(rect, pad)
                    and wl.span_free(si - w / 2, si + w / 2, 0.0, h)):
                self.room.footprints.append(rect)
                wl.used.append((si - w / 2, si + w / 2, 0.0, h))
                return Frame(self.b, c[0], c[1], wl.yaw), wl, si
            if s is not None:
                return None
        return None

    def on_wall(self, w: float, h: float, zc: float, wall: Wall | None = None, s: float | None = None,
                tries: int = 30) -> tuple[Frame, Wall, float] | None:
        """Wall-mounted object (w wide, h tall, centred at height zc); frame on the wall line at zc."""
        if zc + h / 2 > self.room.height - 0.05 or zc - h / 2 < 0.0:
            return None
        walls = [wall] if wall is not None else self._walls(w + 0.2)
        for _ in range(tries):
            if not walls:
                return None
            wl = walls[int(self.rng.integers(len(walls)))]
            if wl.length < w + 0.2:
                return None
            si = s if s is not None else self.rng.uniform(w / 2 + 0.1, wl.length - w / 2 - 0.1)
            if wl.span_free(si - w / 2, si + w / 2, zc - h / 2, zc + h / 2):
                c = wl.point(si, 0.0)
                wl.used.append((si - w / 2, si + w / 2, zc - h / 2, zc + h / 2))
                return Frame(self.b, c[0], c[1], wl.yaw, zc), wl, si
            if s is not None:
                return None
        return None

    def free_standing(self, w: float, d: float, yaw: float | None = None, wall_gap: float = 0.6,
                      pad: float = 0.3, tries: int = 60) -> Frame | None:
        """Object (or group) with footprint w x d anywhere in the room, away from walls."""
        x0, y0, x1, y1 = self.room.bounds
        for _ in range(tries):
            a = yaw if yaw is not None else self.rng.choice([0.0, 0.5 * math.pi]) + self.rng.uniform(-0.3, 0.3)
            c, s = abs(math.cos(a)), abs(math.sin(a))
            hx, hy = (c * w + s * d) / 2, (s * w + c * d) / 2
            if 2 * hx >= x1 - x0 or 2 * hy >= y1 - y0:
                continue
            px, py = self.rng.uniform(x0 + hx, x1 - hx), self.rng.uniform(y0 + hy, y1 - hy)
            rect = (px - hx, py - hy, px + hx, py + hy)
            if self.room.rect_inside(rect, wall_gap) and self.room.rect_free(rect, pad):
                self.room.footprints.append(rect)
                return Frame(self.b, px, py, a)
        return None

    def floor_spot(self, w: float, d: float, tries: int = 30) -> Frame | None:
        """Small floor clutter (bags, boxes): anywhere free, not registered as an obstacle."""
        x0, y0, x1, y1 = self.room.bounds
        for _ in range(tries):
            px, py = self.rng.uniform(x0, x1), self.rng.uniform(y0, y1)
            rect = (px - w / 2, py - d / 2, px + w / 2, py + d / 2)
            if self.room.rect_inside(rect, 0.05) and self.room.rect_free(rect, 0.05):
                self.room.footprints.append(rect)
                return Frame(self.b, px, py, self.rng.uniform(0, 2 * math.pi))
        return None


# --------------------------------------------------------------------------------------
# Shared fixtures: doors, windows, pictures, lights
# --------------------------------------------------------------------------------------

def _doors(p: Placer, n: int) -> None:
    for _ in range(n):
        w, h = p.rng.uniform(0.8, 0.95), p.rng.uniform(2.0, 2.1)
        res = p.on_wall(w + 0.2, h + 0.1, (h + 0.1) / 2)
        if res is None:
            continue
        f, wall, s = res
        f = Frame(p.b, f.x, f.y, f.yaw, 0.0)
        fu.door(f, w, h, p.pal, p.rng)
        # Keep the swing area clear of furniture (cameras may stand there).
        c = wall.point(s, 0.5)
        e = np.abs(wall.direction)
        hx, hy = ((w + 0.2) / 2, 0.5) if e[0] > 0.5 else (0.5, (w + 0.2) / 2)
        p.room.keep_clear.append((c[0] - hx, c[1] - hy, c[0] + hx, c[1] + hy))


def _windows(p: Placer, n: int, coverings=("none", "blinds", "curtains"), weights=(0.3, 0.35, 0.35)) -> None:
    H = p.room.height
    for _ in range(n):
        w = p.rng.uniform(0.7, 2.0)
        z0 = p.rng.uniform(0.75, 1.0)
        z1 = min(H - 0.3, z0 + p.rng.uniform(0.9, 1.5))
        covering = str(p.rng.choice(coverings, p=np.asarray(weights) / np.sum(weights)))
        if covering == "curtains":
            res = p.on_wall(w + 0.9, z1 + 0.3, (z1 + 0.3) / 2)     # curtains reach the floor
        else:
            res = p.on_wall(w + 0.15, z1 - z0 + 0.15, (z0 + z1) / 2)
        if res is None:
            continue
        f, _, _ = res
        fu.window(Frame(p.b, f.x, f.y, f.yaw, 0.0), w, z0, z1, p.pal, p.rng, covering)


def _pictures(p: Placer, n: int) -> None:
    for _ in range(n):
        w, h = p.rng.uniform(0.3, 1.2), p.rng.uniform(0.3, 0.9)
        res = p.on_wall(w, h, p.rng.uniform(1.3, 1.75))
        if res is not None:
            fu.picture(res[0], w, h, p.pal, p.rng)


def _ceiling_lights(p: Placer) -> None:
    room, rng = p.room, p.rng
    n = int(np.clip(round(room.area / 10.0), 1, 3))
    fixture = p.pal.glow(hsv(rng.uniform(0.08, 0.15), rng.uniform(0.0, 0.2), 1.0), rng.uniform(1.2, 1.6))
    warm = hsv(rng.uniform(0.07, 0.14), rng.uniform(0.05, 0.3), 1.0)
    x0, y0, x1, y1 = room.bounds
    placed = 0
    for _ in range(50):
        if placed == n:
            break
        px, py = rng.uniform(x0 + 0.6, x1 - 0.6), rng.uniform(y0 + 0.6, y1 - 0.6)
        if not room.rect_inside((px - 0.3, py - 0.3, px + 0.3, py + 0.3), 0.3):
            continue
        p.b.cylinder([px, py, room.height - 0.02], rng.uniform(0.15, 0.3), 0.02, C["lamp"], fixture)
        p.b.light([px, py, room.height - 0.4], warm * rng.uniform(0.9, 1.4) / math.sqrt(n))
        placed += 1
    if placed == 0:
        c = room.polygon.mean(0)
        p.b.light([c[0], c[1], room.height - 0.4], warm * 1.6)


def _clutter(p: Placer, n: int) -> None:
    for _ in range(n):
        kind = p.rng.integers(3)
        f = p.floor_spot(0.5, 0.5)
        if f is None:
            continue
        if kind == 0:
            fu.cardboard(f, p.pal, p.rng, p.rng.uniform(0.12, 0.3))
        elif kind == 1:
            fu.bag(f, p.pal, p.rng)
        else:
            fu.books_row(f, p.pal, p.rng, 0.2, lying=True)


def _floor_lamp(p: Placer) -> None:
    res = p.against_wall(0.4, 0.4, 1.6)
    if res is not None:
        fu.lamp(res[0], p.pal, p.rng, p.rng.uniform(1.4, 1.7))


def _wall_shelves(p: Placer) -> None:
    w = p.rng.uniform(0.6, 1.2)
    n = int(p.rng.integers(1, 4))
    res = p.on_wall(w, 0.38 * n, p.rng.uniform(1.3, 1.7))
    if res is None:
        return
    f, _, _ = res
    mat = p.pal.wood() if p.rng.random() < 0.6 else p.pal.painted()
    for i in range(n):
        z = -0.19 * n + 0.38 * i + 0.02
        f.box(0, 0.12, z, w / 2, 0.12, 0.015, C["shelves"], mat)
        if p.rng.random() < 0.8:
            fu.books_row(f.sub(0, 0.12, z=z + 0.015), p.pal, p.rng, w * p.rng.uniform(0.4, 0.9), max_h=0.3)
        elif p.rng.random() < 0.5:
            fu.cardboard(f.sub(0, 0.12, z=z + 0.015), p.pal, p.rng, 0.12)


def _dining(p: Placer, max_chairs: int = 6) -> None:
    rng = p.rng
    round_top = rng.random() < 0.3
    if round_top:
        w = d = rng.uniform(0.9, 1.3)
    else:
        w, d = rng.uniform(1.2, 2.0), rng.uniform(0.8, 1.0)
    f = p.free_standing(w + 1.0, d + 1.0, wall_gap=0.3)
    if f is None:
        f = p.free_standing(w + 0.2, d + 0.2, wall_gap=0.3)
        if f is None:
            return
        fu.table(f, w, d, 0.75, p.pal, rng, round_top=round_top)
        return
    fu.table(f, w, d, 0.75, p.pal, rng, round_top=round_top)
    chair_mat = p.pal.wood()
    seats = []
    per_side = max(1, int(w / 0.6))
    for i in range(per_side):
        x = (i - (per_side - 1) / 2) * (w / per_side)
        seats += [(x, -d / 2 - 0.1, 0.0), (x, d / 2 + 0.1, math.pi)]
    if not round_top and w > 1.4:
        seats += [(-w / 2 - 0.1, 0.0, -0.5 * math.pi), (w / 2 + 0.1, 0.0, 0.5 * math.pi)]
    rng.shuffle(seats)
    for x, y, a in seats[:int(rng.integers(2, max_chairs + 1))]:
        pull = rng.uniform(0.0, 0.25)
        fx, fy = x - pull * math.sin(a) * -1, y - pull * math.cos(a)
        fu.chair(f.sub(fx, fy, yaw=a + rng.uniform(-0.3, 0.3)), p.pal, rng, chair_mat)


def _desk_with_chair(p: Placer) -> bool:
    w, d = p.rng.uniform(1.0, 1.6), p.rng.uniform(0.6, 0.8)
    res = p.against_wall(w, d + 0.7, 0.75)       # leave room for the chair in the footprint
    if res is None:
        return False
    f, _, _ = res
    fu.desk(f.sub(0, -0.35), w, d, p.pal, p.rng)
    cf = f.sub(p.rng.uniform(-0.2, 0.2), -0.35 + d / 2 + 0.2, yaw=math.pi + p.rng.uniform(-0.5, 0.5))
    if p.rng.random() < 0.6:
        fu.office_chair(cf, p.pal, p.rng)
    else:
        fu.chair(cf, p.pal, p.rng)
    return True


# --------------------------------------------------------------------------------------
# Room recipes
# --------------------------------------------------------------------------------------

def _bedroom(p: Placer) -> None:
    rng = p.rng
    double = rng.random() < 0.65
    bw, bd = (rng.uniform(1.4, 1.8), rng.uniform(2.0, 2.15)) if double else (rng.uniform(0.9, 1.05), 2.0)
    res = p.against_wall(bw, bd, 1.1)
    if res is not None:
        f, wall, s = res
        fu.bed(f, bw, bd, p.pal, rng)
        for side in (-1, 1):
            if rng.random() < 0.8:
                ns = p.against_wall(0.48, 0.4, 0.95, wall=wall, s=s + side * (bw / 2 + 0.3))
                if ns is not None:
                    fu.night_stand(ns[0], p.pal, rng)
        if rng.random() < 0.6:     # rug at the foot of the bed (not an obstacle)
            fu.rug(f.sub(0, bd / 2 - 0.1), bw + rng.uniform(0.3, 0.8), rng.uniform(0.8, 1.4), p.pal, rng)
    if rng.random() < 0.8:        # wardrobe
        w = rng.uniform(1.0, 2.0)
        res = p.against_wall(w, 0.6, 2.1)
        if res is not None:
            fu.cabinet(res[0], w, 0.6, 2.0, p.pal, rng)
    if rng.random() < 0.6:
        w = rng.uniform(0.8, 1.4)
        res = p.against_wall(w, 0.5, 1.0)
        if res is not None:
            f, wall, s = res
            fu.cabinet(f, w, 0.5, 0.8, p.pal, rng, label="dresser")
            if rng.random() < 0.7:
                m = p.on_wall(min(w, 0.8), 0.7, 1.5, wall=wall, s=s)
                if m is not None:
                    fu.mirror(m[0], min(w, 0.8), 0.7, p.pal, rng)
    if rng.random() < 0.4:
        _desk_with_chair(p)
    if rng.random() < 0.3:
        _floor_lamp(p)
    if rng.random() < 0.3:
        _wall_shelves(p)
    _pictures(p, int(rng.integers(1, 4)))
    _clutter(p, int(rng.integers(0, 3)))


def _living(p: Placer) -> None:
    rng = p.rng
    sw, sd = rng.uniform(1.6, 2.4), rng.uniform(0.85, 0.95)
    res = p.against_wall(sw, sd + 1.4, 0.9)      # footprint includes the coffee-table zone
    sofa_wall = None
    if res is not None:
        f, sofa_wall, _ = res
        base = f.sub(0, -(sd + 1.4) / 2 + sd / 2)
        fu.sofa(base, sw, sd, p.pal, rng)
        tw, td = rng.uniform(0.9, 1.3), rng.uniform(0.5, 0.7)
        if rng.random() < 0.7:
            fu.rug(base.sub(0, sd / 2 + 0.7), tw + rng.uniform(0.8, 1.4), td + rng.uniform(0.8, 1.2), p.pal, rng)
        fu.table(base.sub(0, sd / 2 + 0.45 + td / 2), tw, td, 0.42, p.pal, rng)
    # TV on the wall facing the sofa when there is one.
    walls = [w for w in p.room.walls if sofa_wall is not None and np.dot(w.normal, sofa_wall.normal) < -0.9]
    tvw = rng.uniform(0.9, 1.5)
    stand = p.against_wall(tvw + 0.3, 0.45, 0.55, wall=walls[0] if walls else None)
    if stand is None:
        stand = p.against_wall(tvw + 0.3, 0.45, 0.55)
    if stand is not None:
        f, wall, s = stand
        fu.cabinet(f, tvw + 0.3, 0.45, 0.5, p.pal, rng)
        m = p.on_wall(tvw, tvw * 0.58, rng.uniform(1.0, 1.3), wall=wall, s=s)
        if m is not None:
            fu.tv(m[0], tvw, p.pal, rng)
    for _ in range(int(rng.integers(0, 3))):
        f = p.free_standing(0.9, 0.9, yaw=rng.uniform(0, 2 * math.pi), wall_gap=0.3)
        if f is not None:
            fu.sofa(f, 0.9, 0.85, p.pal, rng, label="chair")
    if rng.random() < 0.6:
        w = rng.uniform(0.8, 1.2)
        res = p.against_wall(w, 0.35, 2.0)
        if res is not None:
            fu.shelf_unit(res[0], w, 0.35, rng.uniform(1.6, 2.1), p.pal, rng)
    if rng.random() < 0.3:
        _wall_shelves(p)
    if rng.random() < 0.6:
        _floor_lamp(p)
    if rng.random() < 0.4:
        res = p.against_wall(0.5, 0.5, 0.6)
        if res is not None:
            fu.table(res[0], 0.5, 0.5, 0.55, p.pal, rng)
            if rng.random() < 0.6:
                fu.lamp(res[0].sub(0, 0, z=0.55), p.pal, rng, 0.45)
    if rng.random() < 0.25:
        _dining(p, max_chairs=4)
    _pictures(p, int(rng.integers(1, 5)))
    _clutter(p, int(rng.integers(0, 3)))


def _office(p: Placer) -> None:
    rng = p.rng
    for _ in range(int(rng.integers(2, 5))):
        _desk_with_chair(p)
    if rng.random() < 0.7:
        w = rng.uniform(1.2, 2.0)
        res = p.on_wall(w, 1.0, 1.45)
        if res is not None:
            fu.whiteboard(res[0], w, 1.0, p.pal, rng)
    for _ in range(int(rng.integers(1, 3))):
        w = rng.uniform(0.8, 1.2)
        res = p.against_wall(w, 0.4, 2.0)
        if res is not None:
            fu.shelf_unit(res[0], w, 0.4, rng.uniform(1.2, 2.0), p.pal, rng,
                          label="bookshelf" if rng.random() < 0.6 else "shelves")
    for _ in range(int(rng.integers(0, 3))):
        res = p.against_wall(0.5, 0.6, 1.3)
        if res is not None:
            fu.cabinet(res[0], 0.5, 0.6, rng.uniform(0.7, 1.3), p.pal, rng)
    if rng.random() < 0.35:
        _dining(p, max_chairs=6)
    if rng.random() < 0.3:
        _wall_shelves(p)
    _pictures(p, int(rng.integers(0, 3)))
    _clutter(p, int(rng.integers(1, 4)))


def _kitchen(p: Placer) -> None:
    rng = p.rng
    w = rng.uniform(1.8, min(3.6, max(1.9, max(wl.length for wl in p.room.walls) - 1.2)))
    res = p.against_wall(w, 0.62, 2.3)
    if res is not None:
        f, wall, s = res
        fu.kitchen_run(f, w, p.pal, rng, with_sink=True)
        fr = p.against_wall(0.7, 0.7, 2.0, wall=wall, s=s + (w / 2 + 0.42) * (1 if rng.random() < 0.5 else -1))
        if fr is not None:
            fu.refrigerator(fr[0], p.pal, rng)
    if rng.random() < 0.5:
        w2 = rng.uniform(1.2, 2.4)
        res = p.against_wall(w2, 0.62, 2.3)
        if res is not None:
            fu.kitchen_run(res[0], w2, p.pal, rng, with_sink=False)
    if p.room.area > 10 or rng.random() < 0.5:
        _dining(p, max_chairs=6)
    if rng.random() < 0.3:
        _wall_shelves(p)
    _pictures(p, int(rng.integers(0, 3)))
    _clutter(p, int(rng.integers(0, 2)))


def _bathroom(p: Placer) -> None:
    rng = p.rng
    tw, td = rng.uniform(1.5, 1.75), rng.uniform(0.72, 0.8)
    res = p.against_wall(tw, td, 1.9)
    if res is not None:
        fu.bathtub(res[0], tw, td, p.pal, rng)
    res = p.against_wall(0.45, 0.7, 0.8)
    if res is not None:
        fu.toilet(res[0], p.pal, rng)
    vw = rng.uniform(0.6, 1.0)
    res = p.against_wall(vw, 0.52, 2.0)
    if res is not None:
        f, wall, s = res
        fu.vanity(f.sub(0, -0.26), vw, p.pal, rng)
    for _ in range(int(rng.integers(1, 3))):
        res = p.on_wall(0.5, 0.7, 1.2)
        if res is not None:
            fu.towel(res[0].sub(0, 0.05), p.pal, rng)
    if rng.random() < 0.7:
        f = p.floor_spot(0.6, 0.4)
        if f is not None:
            p.room.footprints.pop()
            fu.rug(Frame(p.b, f.x, f.y, 0.0), 0.7, 0.45, p.pal, rng)
    if rng.random() < 0.4:
        res = p.on_wall(0.6, 0.6, 1.5)
        if res is not None:
            fu.cabinet(res[0].sub(0, 0.1, z=-0.3), 0.6, 0.2, 0.6, p.pal, rng)
    _clutter(p, int(rng.integers(0, 2)))


RECIPES = {"bedroom": _bedroom, "living": _living, "office": _office, "kitchen": _kitchen, "bathroom": _bathroom}


def generate_scene(seed: int, room_type: str | None = None, name: str | None = None) -> Scene:
    """A furnished room, fully determined by ``seed`` (and ``room_type`` when given)."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    if room_type is None:
        room_type = str(rng.choice(ROOM_TYPES, p=ROOM_WEIGHTS))
    if room_type not in RECIPES:
        raise ValueError(f"unknown room type {room_type!r}; choose from {ROOM_TYPES}")
    (wlo, whi), (dlo, dhi) = SIZE_RANGES[room_type]
    W, D = rng.uniform(wlo, whi), rng.uniform(dlo, dhi)
    shape = "rect"
    if room_type != "bathroom" and min(W, D) >= 4.0:
        shape = str(rng.choice(["rect", "L", "alcove"], p=[0.45, 0.35, 0.2]))
    H = rng.uniform(2.45, 3.1)
    room = Room(rectilinear_outline(rng, W, D, shape), H)
    b = SceneBuilder()
    pal = Palette(b, rng)
    p = Placer(room, b, pal, rng)
    ceiling = b.material(hsv(0.1, rng.uniform(0, 0.05), rng.uniform(0.85, 0.97)), None, PLAIN)
    accent = pal.wall_paint() if rng.random() < 0.4 else None
    room.shell(b, rng, pal.wall_paint(), accent, pal.floor(), ceiling, {"wall": C["wall"], "floor": C["floor"],
                                                                         "ceiling": C["ceiling"]})
    _doors(p, 1 if room.area < 20 else int(rng.integers(1, 3)))
    _windows(p, int(rng.integers(1, 3)) if room_type != "bathroom" else int(rng.integers(0, 2)))
    RECIPES[room_type](p)
    if room_type in ("living", "office") and rng.random() < 0.12:
        f = p.free_standing(0.5, 0.4, yaw=rng.uniform(0, 2 * math.pi), wall_gap=0.5, pad=0.4)
        if f is not None:
            fu.person(f, pal, rng)
    _ceiling_lights(p)
    meta = {"room_type": room_type, "shape": shape, "size": [float(W), float(D), float(H)],
            "exposure": float(rng.uniform(0.85, 1.1)), "footprints": [list(map(float, r)) for r in room.footprints]}
    return b.build(name or f"synth_{int(seed):06d}", seed, room.polygon, H, ambient=float(rng.uniform(0.18, 0.3)),
                   meta=meta)


__all__ = ["generate_scene", "ROOM_TYPES", "Placer"]
