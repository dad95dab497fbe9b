"""The scenes of :mod:`animlib.data.depth_scenes`, as layouts: what stands where, drawn from a seed.

A :class:`Layout` lists a scene's boxes (buildings, furniture, vehicles), ellipsoids (tree canopies,
lamps), its ground or room, sky, sun and fog, and a :class:`Camera`; :func:`street_layout` and
:func:`indoor_layout` draw one from a NumPy generator. :mod:`animlib.data.depth_scenes` ray-casts
layouts into images with exact depth; its functions are the public way in.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Camera", "Layout", "street_layout", "indoor_layout"]

# Texture kinds (materials). Patterns are functions of the hit point in metres, so they shrink with
# distance like real textures do (a depth cue the network may learn, as it would on photographs).
FLAT, PLANKS, TILES, WINDOWS, BRICKS, ROAD, FOLIAGE, SIDEWALK = range(8)


# ----------------------------------------------------------------------------- layouts


@dataclass
class Camera:
    """Pinhole camera: position (metres, y up), yaw/pitch/roll (degrees; pitch < 0 looks down)."""

    position: Tuple[float, float, float]
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation matrix (columns: camera x=right, y=up, z=forward)."""
        y, p, r = (math.radians(a) for a in (self.yaw, self.pitch, self.roll))
        ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
        rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
        return ry @ rx @ rz


@dataclass
class Layout:
    """The geometry and materials of one scene.

    ``boxes``: ``(N, 6)`` axis-aligned boxes ``(x0, y0, z0, x1, y1, z1)``; ``ellipsoids``: ``(M, 6)``
    ``(cx, cy, cz, rx, ry, rz)``. Each primitive has a material row ``(r, g, b, kind, scale,
    contrast)``. ``room`` (indoor) is a box seen from *inside*, with one material per face kind
    (floor, walls, ceiling); ``ground`` (street) is the plane ``y = 0`` with the road's half width
    and sidewalk width. Sky colours and the sun direction shade the scene; ``fog`` is the haze
    distance in metres (0 = none).
    """

    camera: Camera
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    box_materials: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    ellipsoids: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    ellipsoid_materials: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    room: Optional[np.ndarray] = None  # (6,) box around the camera
    room_materials: Optional[np.ndarray] = None  # (3, 6): floor, walls, ceiling
    ground: Optional[Tuple[float, float]] = None  # (road half width, sidewalk width)
    ground_materials: Optional[np.ndarray] = None  # (2, 6): road, sidewalk/verge
    sky: Tuple[Tuple[float, float, float], Tuple[float, float, float]] = ((0.75, 0.82, 0.9), (0.35, 0.55, 0.85))
    sun: Tuple[float, float, float] = (0.4, 0.8, -0.3)
    fog: float = 0.0
    fog_color: Tuple[float, float, float] = (0.78, 0.82, 0.86)
    ambient: float = 0.45
    noise_seed: int = 0


def _mat(rgb: Sequence[float], kind: int, scale: float = 1.0, contrast: float = 0.3) -> List[float]:
    return [float(rgb[0]), float(rgb[1]), float(rgb[2]), float(kind), float(scale), float(contrast)]


def _jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float = 0.08) -> np.ndarray:
    return np.clip(np.asarray(rgb) + rng.uniform(-amount, amount, 3), 0.02, 0.98)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    # the standard library's conversion (float64, the same six-sector formula as matplotlib's)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


class _Builder:
    """Collects primitives for a layout."""

    def __init__(self) -> None:
        self.boxes: List[List[float]] = []
        self.box_mats: List[List[float]] = []
        self.ells: List[List[float]] = []
        self.ell_mats: List[List[float]] = []

    def box(self, x0, y0, z0, x1, y1, z1, mat) -> None:
        self.boxes.append([min(x0, x1), min(y0, y1), min(z0, z1), max(x0, x1), max(y0, y1), max(z0, z1)])
        self.box_mats.append(mat)

    def ellipsoid(self, cx, cy, cz, rx, ry, rz, mat) -> None:
        self.ells.append([cx, cy, cz, rx, ry, rz])
        self.ell_mats.append(mat)

    def arrays(self) -> Dict[str, np.ndarray]:
        def arr(rows, width):
            return np.asarray(rows, dtype=np.float64).reshape(-1, width)

        return dict(boxes=arr(self.boxes, 6), box_materials=arr(self.box_mats, 6),
                    ellipsoids=arr(self.ells, 6), ellipsoid_materials=arr(self.ell_mats, 6))


def _car(b: _Builder, rng: np.random.Generator, x: float, z: float, big: bool = False) -> None:
    """A vehicle centred at (x, z), pointing along the road: body, cabin and dark wheels."""
    color = _hsv(rng.uniform(), rng.uniform(0.0, 0.8), rng.uniform(0.25, 0.95))
    if big:  # van, truck or bus
        w, length, h = rng.uniform(2.2, 2.6), rng.uniform(6.0, 11.0), rng.uniform(2.6, 3.4)
        b.box(x - w / 2, 0.35, z - length / 2, x + w / 2, h, z + length / 2, _mat(color, WINDOWS, 1.2, 0.25))
    else:
        w, length = rng.uniform(1.65, 1.9), rng.uniform(3.8, 4.8)
        b.box(x - w / 2, 0.3, z - length / 2, x + w / 2, 1.0, z + length / 2, _mat(color, FLAT, 1.0, 0.1))
        cab = rng.uniform(0.45, 0.6) * length
        off = rng.uniform(-0.1, 0.15) * length
        b.box(x - w / 2 + 0.1, 1.0, z - cab / 2 + off, x + w / 2 - 0.1, rng.uniform(1.4, 1.6), z + cab / 2 + off,
              _mat(color * 0.55, FLAT, 1.0, 0.1))
    # wheels and the dark underside, as one block (one box instead of four keeps rendering fast)
    b.box(x - w / 2 + 0.05, 0.0, z - 0.4 * length, x + w / 2 - 0.05, 0.35, z + 0.4 * length,
          _mat((0.05, 0.05, 0.05), FLAT, 1.0, 0.05))


#: facade colours of the street's buildings (jittered per building)
_BUILDING_COLORS = [(0.62, 0.55, 0.48), (0.72, 0.68, 0.6), (0.55, 0.35, 0.28), (0.8, 0.78, 0.72),
                    (0.45, 0.47, 0.5), (0.66, 0.6, 0.4)]


def _street_buildings(b: _Builder, rng: np.random.Generator, road: float, walk: float) -> None:
    """On each side (most of the time), a row of buildings with gaps, some with a shop awning."""
    edge = road + walk
    z_far = 160.0
    for side in (-1, 1):
        if rng.uniform() < 0.85:  # a row of buildings with gaps
            z = rng.uniform(-8.0, 6.0)
            while z < z_far:
                length = rng.uniform(6.0, 28.0)
                if rng.uniform() < 0.25:  # a gap (a side street, a car park)
                    z += rng.uniform(4.0, 14.0)
                setback = rng.uniform(0.0, 3.0) if rng.uniform() < 0.5 else 0.0
                front = edge + setback
                height = rng.uniform(3.0, 22.0)
                col = _jitter(rng, _BUILDING_COLORS[rng.integers(len(_BUILDING_COLORS))], 0.1)
                kind = WINDOWS if rng.uniform() < 0.75 else BRICKS
                b.box(side * front, 0.0, z, side * (front + rng.uniform(8.0, 15.0)), height, z + length,
                      _mat(col, kind, rng.uniform(0.8, 1.4), 0.45))
                if rng.uniform() < 0.3 and height > 3.5:  # a shop awning over the sidewalk
                    out = rng.uniform(1.0, min(2.5, walk + setback - 0.2))
                    y = rng.uniform(2.4, 3.2)
                    z0 = z + rng.uniform(0.0, length * 0.4)
                    z1 = min(z + length, z0 + rng.uniform(3.0, 10.0))
                    acol = _hsv(rng.uniform(), rng.uniform(0.4, 0.9), rng.uniform(0.4, 0.9))
                    b.box(side * front, y, z0, side * (front - out), y + 0.18, z1, _mat(acol, PLANKS, 2.0, 0.3))
                z += length


def _far_buildings(b: _Builder, rng: np.random.Generator) -> None:
    """Up to four buildings in the haze, at the end of the street."""
    for _ in range(rng.integers(0, 5)):
        x = rng.uniform(-60.0, 60.0)
        z = rng.uniform(170.0, 300.0)
        w = rng.uniform(10.0, 40.0)
        b.box(x - w / 2, 0.0, z, x + w / 2, rng.uniform(8.0, 45.0), z + rng.uniform(10, 30),
              _mat(_jitter(rng, (0.6, 0.62, 0.66), 0.1), WINDOWS, 1.0, 0.2))


def _street_trees(b: _Builder, rng: np.random.Generator, road: float, walk: float) -> None:
    """Trees on the sidewalks (trunk and canopy); canopies may hang over the road."""
    for side in (-1, 1):
        if rng.uniform() < 0.6:
            z = rng.uniform(0.0, 12.0)
            while z < 110.0:
                x = side * (road + rng.uniform(0.4, walk - 0.2))
                trunk = rng.uniform(2.0, 4.0)
                b.box(x - 0.15, 0.0, z - 0.15, x + 0.15, trunk + 0.5, z + 0.15, _mat((0.3, 0.22, 0.15), PLANKS, 4.0, 0.3))
                r = rng.uniform(1.5, 3.5)
                green = _jitter(rng, (0.22, 0.42, 0.16), 0.08)
                b.ellipsoid(x - side * rng.uniform(0.0, 1.0), trunk + 0.7 * r, z, r, r * rng.uniform(0.7, 1.1), r,
                            _mat(green, FOLIAGE, 2.0, 0.6))
                z += rng.uniform(6.0, 16.0)


def _street_lamps(b: _Builder, rng: np.random.Generator, road: float) -> None:
    """Street lamps at the kerbs: a pole and an arm over the road."""
    for side in (-1, 1):
        if rng.uniform() < 0.4:
            z = rng.uniform(4.0, 20.0)
            while z < 90.0:
                x = side * (road + 0.5)
                h = rng.uniform(5.0, 8.0)
                gray = (0.35, 0.36, 0.38)
                b.box(x - 0.1, 0.0, z - 0.1, x + 0.1, h, z + 0.1, _mat(gray, FLAT, 1.0, 0.1))
                b.box(x, h - 0.25, z - 0.1, x - side * rng.uniform(1.5, 3.5), h, z + 0.1, _mat(gray, FLAT, 1.0, 0.1))
                z += rng.uniform(20.0, 35.0)


def _street_vehicles(b: _Builder, rng: np.random.Generator, road: float) -> None:
    """Vehicles parked along the kerbs, then up to three driving ahead."""
    for side in (-1, 1):
        if rng.uniform() < 0.6:
            z = rng.uniform(2.0, 12.0)
            while z < 70.0:
                _car(b, rng, side * (road - 1.1), z, big=rng.uniform() < 0.1)
                z += rng.uniform(5.0, 14.0)
    for _ in range(rng.integers(0, 4)):
        lane = rng.choice([-1, 1]) * road / 2
        _car(b, rng, lane + rng.uniform(-0.3, 0.3), rng.uniform(8.0, 60.0), big=rng.uniform() < 0.25)


def _street_clutter(b: _Builder, rng: np.random.Generator, road: float, walk: float) -> None:
    """Up to six bins, crates and bollards on the sidewalks."""
    for _ in range(rng.integers(0, 7)):
        side = rng.choice([-1, 1])
        x = side * (road + rng.uniform(0.3, walk))
        z = rng.uniform(2.0, 50.0)
        s = rng.uniform(0.3, 1.0)
        col = _hsv(rng.uniform(), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.8))
        b.box(x - s / 2, 0.0, z - s / 2, x + s / 2, s * rng.uniform(0.8, 1.6), z + s / 2, _mat(col, PLANKS, 3.0, 0.3))


def _street_bridge(b: _Builder, rng: np.random.Generator, road: float, walk: float) -> None:
    """Sometimes (a quarter of the streets) a bridge across the street: deck and two piers."""
    edge = road + walk
    if rng.uniform() < 0.25:
        z = rng.uniform(15.0, 70.0)
        depth = rng.uniform(6.0, 12.0)
        under = rng.uniform(4.5, 7.0)
        col = _jitter(rng, (0.55, 0.53, 0.5), 0.08)
        b.box(-80.0, under, z, 80.0, under + rng.uniform(1.2, 2.5), z + depth, _mat(col, BRICKS, 1.5, 0.25))
        for side in (-1, 1):
            b.box(side * (edge + 0.3), 0.0, z + 1.0, side * (edge + 2.0), under, z + depth - 1.0, _mat(col, BRICKS, 1.5, 0.25))


def _street_scene(b: _Builder, rng: np.random.Generator, road: float, walk: float) -> Layout:
    """The street's camera, ground materials, sky, sun, haze and noise seed around the primitives of ``b``."""
    arrays = b.arrays()
    cam = Camera(position=(rng.uniform(-road / 2, road / 2), rng.uniform(1.4, 1.9), 0.0),
                 yaw=rng.uniform(-12.0, 12.0), pitch=rng.uniform(-5.0, 2.0), roll=rng.uniform(-1.5, 1.5))
    road_col = _jitter(rng, (0.3, 0.3, 0.32), 0.06)
    walk_col = _jitter(rng, (0.62, 0.6, 0.56), 0.08)
    horizon = _jitter(rng, (0.8, 0.84, 0.88), 0.06)
    zenith = _jitter(rng, (0.35, 0.55, 0.85), 0.1)
    return Layout(
        camera=cam, **arrays,
        ground=(road, walk),
        ground_materials=np.asarray([_mat(road_col, ROAD, 1.0, 0.25), _mat(walk_col, SIDEWALK, 1.0, 0.25)]),
        sky=(tuple(horizon), tuple(zenith)),
        sun=(rng.uniform(-0.6, 0.6), rng.uniform(0.4, 1.0), rng.uniform(-0.8, 0.3)),
        fog=float(rng.uniform(80.0, 300.0)), fog_color=tuple(horizon), ambient=float(rng.uniform(0.35, 0.55)),
        noise_seed=int(rng.integers(2**31 - 1)),
    )


def street_layout(rng: np.random.Generator) -> Layout:
    """Draw one KITTI-like street: road, sidewalks, buildings, vehicles, trees, lamps, bridges, awnings.

    The street is drawn front to back from ``rng``, one part after the other in this order (each part
    reads the random numbers after those of the one before, so the order fixes every scene of a seed).
    """
    b = _Builder()
    road = rng.uniform(3.0, 7.0)  # half width of the road
    walk = rng.uniform(1.5, 4.0)  # sidewalk width
    _street_buildings(b, rng, road, walk)
    _far_buildings(b, rng)
    _street_trees(b, rng, road, walk)
    _street_lamps(b, rng, road)
    _street_vehicles(b, rng, road)
    _street_clutter(b, rng, road, walk)
    _street_bridge(b, rng, road, walk)
    return _street_scene(b, rng, road, walk)


def indoor_layout(rng: np.random.Generator) -> Layout:
    """Draw one NYU-like room: walls, floor, ceiling, furniture, shelves, pictures, lamps."""
    b = _Builder()
    W = rng.uniform(3.0, 7.0)
    D = rng.uniform(4.0, 10.0)
    Hh = rng.uniform(2.4, 3.2)
    x0, x1, z0, z1 = -W / 2, W / 2, -1.0, D - 1.0
    room = np.array([x0, 0.0, z0, x1, Hh, z1])
    wood = [(0.55, 0.38, 0.22), (0.7, 0.55, 0.35), (0.4, 0.28, 0.18), (0.85, 0.8, 0.7), (0.3, 0.3, 0.32)]

    def furniture_color():
        if rng.uniform() < 0.6:
            return _jitter(rng, wood[rng.integers(len(wood))], 0.06)
        return _hsv(rng.uniform(), rng.uniform(0.1, 0.7), rng.uniform(0.3, 0.9))

    def table(cx, cz, w, d, h, col):
        b.box(cx - w / 2, h - 0.05, cz - d / 2, cx + w / 2, h, cz + d / 2, _mat(col, PLANKS, 6.0, 0.2))
        for sx in (-1, 1):
            for sz in (-1, 1):
                lx, lz = cx + sx * (w / 2 - 0.06), cz + sz * (d / 2 - 0.06)
                b.box(lx - 0.03, 0.0, lz - 0.03, lx + 0.03, h - 0.05, lz + 0.03, _mat(col * 0.7, FLAT, 1.0, 0.1))

    # furniture against the walls (cabinets, shelves, sofas, beds)
    for _ in range(rng.integers(2, 6)):
        wall = rng.integers(3)  # 0 left, 1 right, 2 back
        col = furniture_color()
        w, d, h = rng.uniform(0.6, 2.2), rng.uniform(0.35, 0.9), rng.uniform(0.4, 2.1)
        if wall == 2:
            cx = rng.uniform(x0 + w / 2, x1 - w / 2) if W > w else 0.0
            b.box(cx - w / 2, 0.0, z1 - d, cx + w / 2, h, z1, _mat(col, rng.choice([PLANKS, FLAT, TILES]), 4.0, 0.25))
        else:
            cz = rng.uniform(z0 + 1.5, z1 - w / 2)
            xa = x0 if wall == 0 else x1
            b.box(xa, 0.0, cz - w / 2, xa + (d if wall == 0 else -d), h, cz + w / 2,
                  _mat(col, rng.choice([PLANKS, FLAT, TILES]), 4.0, 0.25))
    # shelves on the walls (overhangs) and pictures, doors, windows (thin boxes)
    for _ in range(rng.integers(1, 6)):
        wall = rng.integers(3)
        col = _hsv(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.95))
        shelf = rng.uniform() < 0.35
        w = rng.uniform(0.4, 1.6)
        h = 0.04 if shelf else rng.uniform(0.3, 1.2)
        y = rng.uniform(0.9, Hh - 0.3 - h)
        t = rng.uniform(0.2, 0.35) if shelf else 0.03
        kind = PLANKS if shelf else rng.choice([FLAT, TILES, WINDOWS])
        if wall == 2:
            cx = rng.uniform(x0 + 0.3, x1 - 0.3)
            b.box(cx - w / 2, y, z1 - t, cx + w / 2, y + h, z1, _mat(col, kind, 5.0, 0.4))
        else:
            cz = rng.uniform(z0 + 1.0, z1 - 0.3)
            xa = x0 if wall == 0 else x1
            b.box(xa, y, cz - w / 2, xa + (t if wall == 0 else -t), y + h, cz + w / 2, _mat(col, kind, 5.0, 0.4))
    # free-standing things: tables with legs, chairs, boxes, floor lamps
    for _ in range(rng.integers(1, 6)):
        what = rng.uniform()
        cx = rng.uniform(x0 + 0.6, x1 - 0.6)
        cz = rng.uniform(0.8, z1 - 0.6)
        col = furniture_color()
        if what < 0.35:
            table(cx, cz, rng.uniform(0.7, 1.8), rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.8), col)
        elif what < 0.6:  # chair: a small table plus a back
            s = rng.uniform(0.4, 0.5)
            table(cx, cz, s, s, 0.45, col)
            b.box(cx - s / 2, 0.45, cz + s / 2 - 0.04, cx + s / 2, 0.95, cz + s / 2, _mat(col, PLANKS, 6.0, 0.2))
        elif what < 0.85:
            s = rng.uniform(0.25, 0.8)
            b.box(cx - s / 2, 0.0, cz - s / 2, cx + s / 2, s * rng.uniform(0.6, 1.4), cz + s / 2,
                  _mat(col, rng.choice([FLAT, PLANKS]), 5.0, 0.3))
        else:  # floor lamp: pole and shade
            h = rng.uniform(1.2, 1.8)
            b.box(cx - 0.02, 0.0, cz - 0.02, cx + 0.02, h, cz + 0.02, _mat((0.2, 0.2, 0.2), FLAT, 1.0, 0.1))
            b.ellipsoid(cx, h, cz, 0.22, 0.16, 0.22, _mat(_jitter(rng, (0.9, 0.85, 0.7), 0.08), FLAT, 1.0, 0.05))
    if rng.uniform() < 0.5:  # a ceiling lamp
        b.ellipsoid(rng.uniform(x0 + 0.5, x1 - 0.5), Hh - 0.1, rng.uniform(1.0, z1 - 0.5), 0.3, 0.12, 0.3,
                    _mat((0.95, 0.93, 0.85), FLAT, 1.0, 0.02))
    arrays = b.arrays()
    cam = Camera(position=(rng.uniform(-W / 4, W / 4), rng.uniform(1.0, 1.7), rng.uniform(-0.8, 0.0)),
                 yaw=rng.uniform(-30.0, 30.0), pitch=rng.uniform(-22.0, 2.0), roll=rng.uniform(-2.0, 2.0))
    wall_col = _hsv(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.55, 0.95))
    floor_col = _jitter(rng, wood[rng.integers(len(wood))], 0.08) if rng.uniform() < 0.7 else _jitter(rng, (0.6, 0.6, 0.6), 0.2)
    room_mats = np.asarray([
        _mat(floor_col, rng.choice([PLANKS, TILES]), rng.uniform(2.0, 4.0), 0.3),
        _mat(wall_col, rng.choice([FLAT, FLAT, BRICKS, PLANKS]), rng.uniform(1.0, 3.0), 0.15),
        _mat(_jitter(rng, (0.92, 0.92, 0.9), 0.04), FLAT, 1.0, 0.05),
    ])
    return Layout(
        camera=cam, **arrays, room=room, room_materials=room_mats,
        sun=(rng.uniform(-0.6, 0.6), rng.uniform(0.3, 1.0), rng.uniform(-0.8, 0.8)),
        fog=0.0, ambient=float(rng.uniform(0.45, 0.65)), noise_seed=int(rng.integers(2**31 - 1)),
    )
