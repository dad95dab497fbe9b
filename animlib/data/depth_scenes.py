"""Synthetic depth scenes with exact dense depth: indoor-like rooms and KITTI-like streets.

Source S2 (depth-aware style transfer) trains a relative-depth network (Chen et al. 2016) on indoor
photographs with Kinect depth (NYU v2) and fine-tunes it on street photographs with sparse lidar
depth (KITTI). Offline, this module makes both domains: small scenes are *ray-cast* in perspective
(a pinhole camera, one ray per pixel through its centre), so every pixel's depth is known exactly.

- ``"indoor"``: a room seen from inside (floor, walls and ceiling with paint, tiles or planks),
  furniture (tables with legs, chairs, cabinets, shelves on walls, sofas, boxes, lamps), pictures
  and doors on the walls. Depth is dense everywhere, as in NYU's in-painted maps.
- ``"street"``: a road with lane markings between sidewalks, buildings 3-22 m tall with windows and
  gaps, parked and moving vehicles, bins and crates, trees whose canopies overhang the road, street
  lamps with arms over the road, sometimes a bridge or shop awnings, far buildings in haze, and sky.
  Overhangs matter: on ground plus sky alone the rule "lower in the image is nearer" orders every
  pair correctly, and comparing a depth network with it would mean nothing.

Depth is *z-depth* in metres (distance along the optical axis, as in KITTI and NYU): rays are cast
with camera-space direction ``((u - cx)/f, -(v - cy)/f, 1)`` whose optical-axis component is 1, so
the ray parameter ``t`` of the first hit *is* the z-depth. Sky pixels have no hit; they get
``DepthSceneConfig.sky_depth`` (a large finite value, farther than any surface) and ``sky=True``.

Street scenes also carry a lidar-like sparse mask (``lidar``): a 64-beam scanner's elevation band
(+2 deg to -24.8 deg, as on KITTI's Velodyne HDL-64E) intersected with the image, no returns from sky
or beyond ``max_range`` metres, and random drop-outs. As on KITTI, the band covers the lower part of
the image only.

Everything is a deterministic function of ``(seed, index)``: scene ``i`` of seed ``s`` is the same
whatever ``n``, ``start`` or batch it is rendered in (a NumPy generator seeded with ``[s, i]`` draws
the layout; the renderer itself has no randomness except the seeded per-scene noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..rehearsal import cap_items

__all__ = [
    "DOMAINS",
    "DepthSceneConfig",
    "LidarConfig",
    "Camera",
    "Layout",
    "DepthScenes",
    "make_depth_scenes",
    "render_layouts",
    "street_layout",
    "indoor_layout",
    "lidar_mask",
]

DOMAINS = ("indoor", "street")
#: Horizontal fields of view: NYU's Kinect sees about 57 deg; KITTI crops of 224x288 from frames
#: scaled to 224 rows see about 37 deg. A 64x64 street image at 45 deg keeps enough of the street.
DEFAULT_FOV = {"indoor": 60.0, "street": 45.0}

Size = Union[int, Tuple[int, int]]

# Texture kinds (materials). Patterns are functions of the hit point in metres, so they shrink with
# distance like real textures do (a depth cue the network may learn, as it would on photographs).
FLAT, PLANKS, TILES, WINDOWS, BRICKS, ROAD, FOLIAGE, SIDEWALK = range(8)


# ----------------------------------------------------------------------------- configuration


@dataclass
class LidarConfig:
    """A KITTI-like scanner (Velodyne HDL-64E numbers), used for the sparse mask of street scenes."""

    beams: int = 64  # number of laser beams
    elevation_top: float = 2.0  # degrees above the horizon of the highest beam
    elevation_bottom: float = -24.8  # degrees of the lowest beam
    max_range: float = 80.0  # metres; farther surfaces give no return
    keep: float = 0.35  # share of in-band pixels that get a point (azimuth gaps, drop-outs)
    glass_keep: float = 0.1  # share kept on windows (glass rarely returns the beam)


@dataclass
class DepthSceneConfig:
    """Camera and rendering settings shared by both domains."""

    fov_deg: Optional[float] = None  # horizontal field of view (degrees); None: 45 street, 60 indoor
    sky_depth: float = 1.0e4  # depth stored for sky pixels (metres): farther than any surface
    max_depth: float = 400.0  # surfaces beyond this are not drawn (they are lost in haze: sky)
    noise: float = 0.015  # std of the per-pixel sensor noise added to images in [0, 1]
    supersample: int = 1  # rays per pixel side for the *image* (depth always from the centre ray)
    lidar: LidarConfig = field(default_factory=LidarConfig)  # the sparse sampling of street scenes


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
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


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


def street_layout(rng: np.random.Generator) -> Layout:
    """Draw one KITTI-like street: road, sidewalks, buildings, vehicles, trees, lamps, bridges, awnings."""
    # Long, and better read whole: one street drawn front to back, each block reading the random
    # numbers of the one before (splitting it would change every scene of a given seed).
    b = _Builder()
    road = rng.uniform(3.0, 7.0)  # half width of the road
    walk = rng.uniform(1.5, 4.0)  # sidewalk width
    edge = road + walk
    z_far = 160.0
    building_colors = [(0.62, 0.55, 0.48), (0.72, 0.68, 0.6), (0.55, 0.35, 0.28), (0.8, 0.78, 0.72),
                       (0.45, 0.47, 0.5), (0.66, 0.6, 0.4)]
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
                col = _jitter(rng, building_colors[rng.integers(len(building_colors))], 0.1)
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
    # far buildings in the haze, at the end of the street
    for _ in range(rng.integers(0, 5)):
        x = rng.uniform(-60.0, 60.0)
        z = rng.uniform(170.0, 300.0)
        w = rng.uniform(10.0, 40.0)
        b.box(x - w / 2, 0.0, z, x + w / 2, rng.uniform(8.0, 45.0), z + rng.uniform(10, 30),
              _mat(_jitter(rng, (0.6, 0.62, 0.66), 0.1), WINDOWS, 1.0, 0.2))
    # trees on the sidewalks; canopies may hang over the road
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
    # street lamps: a pole and an arm over the road
    for side in (-1, 1):
        if rng.uniform() < 0.4:
            z = rng.uniform(4.0, 20.0)
            while z < 90.0:
                x = side * (road + 0.5)
                h = rng.uniform(5.0, 8.0)
                grey = (0.35, 0.36, 0.38)
                b.box(x - 0.1, 0.0, z - 0.1, x + 0.1, h, z + 0.1, _mat(grey, FLAT, 1.0, 0.1))
                b.box(x, h - 0.25, z - 0.1, x - side * rng.uniform(1.5, 3.5), h, z + 0.1, _mat(grey, FLAT, 1.0, 0.1))
                z += rng.uniform(20.0, 35.0)
    # vehicles: parked along the kerbs and driving ahead
    for side in (-1, 1):
        if rng.uniform() < 0.6:
            z = rng.uniform(2.0, 12.0)
            while z < 70.0:
                _car(b, rng, side * (road - 1.1), z, big=rng.uniform() < 0.1)
                z += rng.uniform(5.0, 14.0)
    for _ in range(rng.integers(0, 4)):
        lane = rng.choice([-1, 1]) * road / 2
        _car(b, rng, lane + rng.uniform(-0.3, 0.3), rng.uniform(8.0, 60.0), big=rng.uniform() < 0.25)
    # bins, crates and bollards on the sidewalks
    for _ in range(rng.integers(0, 7)):
        side = rng.choice([-1, 1])
        x = side * (road + rng.uniform(0.3, walk))
        z = rng.uniform(2.0, 50.0)
        s = rng.uniform(0.3, 1.0)
        col = _hsv(rng.uniform(), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.8))
        b.box(x - s / 2, 0.0, z - s / 2, x + s / 2, s * rng.uniform(0.8, 1.6), z + s / 2, _mat(col, PLANKS, 3.0, 0.3))
    # a bridge across the street: deck and two piers
    if rng.uniform() < 0.25:
        z = rng.uniform(15.0, 70.0)
        depth = rng.uniform(6.0, 12.0)
        under = rng.uniform(4.5, 7.0)
        col = _jitter(rng, (0.55, 0.53, 0.5), 0.08)
        b.box(-80.0, under, z, 80.0, under + rng.uniform(1.2, 2.5), z + depth, _mat(col, BRICKS, 1.5, 0.25))
        for side in (-1, 1):
            b.box(side * (edge + 0.3), 0.0, z + 1.0, side * (edge + 2.0), under, z + depth - 1.0, _mat(col, BRICKS, 1.5, 0.25))
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


# ----------------------------------------------------------------------------- rendering


def _size(size: Size) -> Tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    h, w = int(size[0]), int(size[1])
    if h < 4 or w < 4:
        raise ValueError(f"image size must be at least 4x4 pixels, got {h}x{w}")
    return h, w


def _rays(layouts: Sequence[Layout], h: int, w: int, fov_deg: float, ss: int, device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ray origins (B, 3) and directions (B, P, 3) in world space, plus camera-space dirs (P, 3).

    Directions have optical-axis component 1 in camera space, so the hit parameter t is z-depth.
    With ``ss > 1`` each pixel gets an ``ss x ss`` grid of sub-pixel rays (P = H*W*ss*ss, ordered
    so that a reshape to ``(H, ss, W, ss)`` groups them by pixel).
    """
    f = (w / 2) / math.tan(math.radians(fov_deg) / 2)  # focal length in pixels
    cpu = torch.device("cpu")  # float64 on the CPU (MPS has no float64), then float32 on `device`
    sub = (torch.arange(ss, device=cpu, dtype=torch.float64) + 0.5) / ss
    v = (torch.arange(h, device=cpu, dtype=torch.float64)[:, None] + sub[None, :]).reshape(-1)
    u = (torch.arange(w, device=cpu, dtype=torch.float64)[:, None] + sub[None, :]).reshape(-1)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    dc = torch.stack([(uu - w / 2) / f, -(vv - h / 2) / f, torch.ones_like(uu)], -1).reshape(-1, 3)  # (P, 3)
    rot = torch.as_tensor(np.stack([lay.camera.rotation() for lay in layouts]))  # (B, 3, 3)
    dirs = torch.einsum("bij,pj->bpi", rot, dc)  # (B, P, 3)
    origins = torch.as_tensor(np.stack([lay.camera.position for lay in layouts]), dtype=torch.float64)
    return origins.float().to(device), dirs.float().to(device), dc.float().to(device)


def _pad(rows: Sequence[np.ndarray], fill: Sequence[float]) -> np.ndarray:
    """Stack per-scene ``(n_i, 6)`` arrays into ``(B, max n_i, 6)``, padding with ``fill`` rows."""
    n = max(len(r) for r in rows)
    out = np.tile(np.asarray(fill, dtype=np.float64), (len(rows), n, 1))
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _visible(layout: Layout, fov_deg: float, h: int, w: int) -> Layout:
    """Drop boxes and ellipsoids that lie wholly behind the camera or outside its view frustum.

    Pure speed: a culled primitive could not have been hit by any pixel's ray, so images and depth
    are unchanged (the tests check this)."""
    rot = layout.camera.rotation()
    pos = np.asarray(layout.camera.position, dtype=np.float64)
    tx = math.tan(math.radians(fov_deg) / 2) * 1.05
    ty = tx * h / w

    def keep(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        corners = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(8, 3)
        pts = lo[:, None, :] + corners[None] * (hi - lo)[:, None, :]  # (N, 8, 3)
        cam = (pts - pos) @ rot  # world -> camera coordinates, (N, 8, 3)
        x, y, z = cam[..., 0], cam[..., 1], cam[..., 2]
        out = (z <= 1e-3).all(1)
        out |= (x > tx * z).all(1) | (x < -tx * z).all(1) | (y > ty * z).all(1) | (y < -ty * z).all(1)
        return ~out

    boxes, bm = layout.boxes, layout.box_materials
    if len(boxes):
        k = keep(boxes[:, :3], boxes[:, 3:])
        boxes, bm = boxes[k], bm[k]
    ells, em = layout.ellipsoids, layout.ellipsoid_materials
    if len(ells):
        k = keep(ells[:, :3] - ells[:, 3:], ells[:, :3] + ells[:, 3:])
        ells, em = ells[k], em[k]
    return replace(layout, boxes=boxes, box_materials=bm, ellipsoids=ells, ellipsoid_materials=em)


def _hash(*coords: torch.Tensor) -> torch.Tensor:
    """A cheap deterministic hash of integer lattice coordinates to [0, 1)."""
    s = coords[0] * 12.9898
    for k, c in enumerate(coords[1:]):
        s = s + c * (78.233 + 37.719 * k)
    return torch.frac(torch.sin(s) * 43758.5453)


def _value_noise(u: torch.Tensor, v: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Smooth 2-D value noise in [0, 1) on the unit lattice."""
    iu, iv = torch.floor(u), torch.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    a = _hash(iu, iv, seed)
    b = _hash(iu + 1, iv, seed)
    c = _hash(iu, iv + 1, seed)
    d = _hash(iu + 1, iv + 1, seed)
    return (a * (1 - fu) + b * fu) * (1 - fv) + (c * (1 - fu) + d * fu) * fv


def _pattern(kind: torch.Tensor, u: torch.Tensor, v: torch.Tensor, world: torch.Tensor, normal_axis: torch.Tensor,
             scale: torch.Tensor, contrast: torch.Tensor, seed: torch.Tensor, road: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Brightness factor (>0) and a 'glass' flag for every hit, from the material kind and (u, v)."""
    su, sv = u * scale, v * scale
    n1 = _value_noise(su * 4, sv * 4, seed)
    grain = 1 + contrast * (n1 - 0.5)
    out = grain.clone()
    glass = torch.zeros_like(u, dtype=torch.bool)
    # planks: stripes along u with per-plank brightness
    plank = torch.floor(sv * 2.5)
    f_pl = 1 + contrast * (_hash(plank, seed) - 0.5) - 0.25 * (torch.frac(sv * 2.5) < 0.06).to(sv.dtype)
    out = torch.where(kind == PLANKS, grain * f_pl, out)
    # tiles: a grid of lines with per-tile tint
    tu, tv = torch.floor(su * 2), torch.floor(sv * 2)
    line = (torch.frac(su * 2) < 0.05) | (torch.frac(sv * 2) < 0.05)
    f_ti = (1 + contrast * (_hash(tu, tv, seed) - 0.5)) * torch.where(line, 0.7, 1.0)
    out = torch.where(kind == TILES, f_ti * grain, out)
    # windows: dark glass rectangles in a facade grid (vertical faces); floors every 3 m
    wu, wv = torch.frac(su / 2.6), torch.frac(v / 3.0)
    win = (wu > 0.25) & (wu < 0.75) & (wv > 0.3) & (wv < 0.8) & (normal_axis != 1) & (v > 0.5)
    lit = _hash(torch.floor(su / 2.6), torch.floor(v / 3.0), seed) > 0.85
    f_wi = torch.where(win, torch.where(lit, 1.2, 0.3 + 0.15 * n1), grain)
    out = torch.where(kind == WINDOWS, f_wi, out)
    glass = glass | ((kind == WINDOWS) & win)
    # bricks: staggered courses with mortar
    row = torch.floor(v * scale * 6)
    bu = su * 3 + 0.5 * torch.remainder(row, 2)
    mortar = (torch.frac(v * scale * 6) < 0.12) | (torch.frac(bu) < 0.06)
    f_br = torch.where(mortar, 1.25, 1 + contrast * (_hash(torch.floor(bu), row, seed) - 0.5))
    out = torch.where(kind == BRICKS, f_br, out)
    # foliage: high-contrast blobs
    n2 = _value_noise(su * 9, sv * 9 + world[..., 1] * 3, seed + 1)
    out = torch.where(kind == FOLIAGE, 0.55 + 0.9 * n2 * n1 + 0.2 * n2, out)
    # road: asphalt noise, dashed centre line, solid edge lines (u = world x, v = world z)
    x, z = world[..., 0], world[..., 2]
    dash = (x.abs() < 0.08) & (torch.frac(z / 9.0) < 0.45)
    edge = (x.abs() - (road - 0.25)).abs() < 0.08
    f_rd = torch.where(dash | edge, 2.6, 1 + contrast * (_value_noise(x * 3, z * 3, seed) - 0.5))
    out = torch.where(kind == ROAD, f_rd, out)
    # sidewalk: square slabs
    slab = (torch.frac(x / 1.2) < 0.04) | (torch.frac(z / 1.2) < 0.04)
    f_sw = torch.where(slab, 0.75, 1 + contrast * (_hash(torch.floor(x / 1.2), torch.floor(z / 1.2), seed) - 0.5))
    out = torch.where(kind == SIDEWALK, f_sw, out)
    return out.clamp(0.05, 3.0), glass


def _render_chunk(layouts: Sequence[Layout], h: int, w: int, cfg: DepthSceneConfig, ss: int, device) -> Dict[str, torch.Tensor]:
    """Ray-cast a chunk of layouts: colour, depth, sky and glass, all (B, P) or (B, P, 3)."""
    # Long, and better read whole: rays, then every primitive kind intersected in turn, then shading;
    # the intermediate tensors are shared by all steps and splitting them out would only pass them around.
    B = len(layouts)
    dt = torch.float32  # float32 is exact enough for depth (relative error ~1e-7) and twice as fast
    o, d, _ = _rays(layouts, h, w, cfg.fov_deg, ss, device)  # (B,3), (B,P,3)
    o, d = o.to(dt), d.to(dt)
    P = d.shape[1]
    inf = torch.tensor(float("inf"), dtype=dt, device=device)
    eps = 1e-6
    t_best = torch.full((B, P), float("inf"), dtype=dt, device=device)
    mat = torch.zeros(B, P, 6, dtype=dt, device=device)
    normal = torch.zeros(B, P, 3, dtype=dt, device=device)
    axis_best = torch.zeros(B, P, dtype=torch.long, device=device)
    d_safe = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    inv = 1.0 / d_safe  # (B, P, 3)

    def take(t, m, n, ax):
        nonlocal t_best, mat, normal, axis_best
        better = t < t_best
        t_best = torch.where(better, t, t_best)
        mat = torch.where(better[..., None], m, mat)
        normal = torch.where(better[..., None], n, normal)
        axis_best = torch.where(better, ax, axis_best)

    # boxes (seen from outside)
    nb = max(len(lay.boxes) for lay in layouts)
    if nb:
        bx = torch.as_tensor(_pad([lay.boxes for lay in layouts], [0, 0, 0, -1, -1, -1]), dtype=dt, device=device)  # (B, N, 6)
        bmats = torch.as_tensor(_pad([lay.box_materials for lay in layouts], [0] * 6), dtype=dt, device=device)
        # slab test, one box at a time over (B, P) tensors: small, cache-friendly operations. Padding
        # boxes are empty (hi < lo), so t_far < t_near and they are never hit.
        inv_a = [inv[..., a].contiguous() for a in range(3)]  # 3 x (B, P)
        t_min = torch.full((B, P), float("inf"), dtype=dt, device=device)
        idx = torch.zeros(B, P, dtype=torch.long, device=device)
        for j in range(nb):
            lo = bx[:, j, :3] - o  # (B, 3)
            hi = bx[:, j, 3:] - o
            t1 = lo[:, 0:1] * inv_a[0]  # (B, P)
            t2 = hi[:, 0:1] * inv_a[0]
            t_near, t_far = torch.minimum(t1, t2), torch.maximum(t1, t2)
            for a in (1, 2):
                t1 = lo[:, a : a + 1] * inv_a[a]
                t2 = hi[:, a : a + 1] * inv_a[a]
                t_near = torch.maximum(t_near, torch.minimum(t1, t2))
                t_far = torch.minimum(t_far, torch.maximum(t1, t2))
            hit = (t_far >= t_near) & (t_near > eps) & (t_near < t_min)
            t_min = torch.where(hit, t_near, t_min)
            idx = torch.where(hit, j, idx)
        # the face that was hit: the axis whose slab entry equals t_near, for the winning box only
        lo = bx.gather(1, idx[..., None].expand(B, P, 6))  # (B, P, 6)
        t1 = (lo[..., :3] - o[:, None]) * inv
        t2 = (lo[..., 3:] - o[:, None]) * inv
        ax_b = torch.minimum(t1, t2).argmax(-1)  # (B, P)
        m = bmats.gather(1, idx[..., None].expand(B, P, 6))
        sign = -torch.sign(d.gather(2, ax_b[..., None]))  # (B, P, 1)
        n = F.one_hot(ax_b, 3).to(dt) * sign
        take(t_min, m, n, ax_b)
    # ellipsoids
    ne = max(len(lay.ellipsoids) for lay in layouts)
    if ne:
        ells = torch.as_tensor(_pad([lay.ellipsoids for lay in layouts], [0, -1e6, 0, 1, 1, 1]), dtype=dt, device=device)  # (B, M, 6)
        emats = torch.as_tensor(_pad([lay.ellipsoid_materials for lay in layouts], [0] * 6), dtype=dt, device=device)
        c, r = ells[..., :3], ells[..., 3:]  # (B, M, 3)
        oc = (o[:, None] - c) / r  # (B, M, 3)
        dd = d[:, None] / r[:, :, None]  # (B, M, P, 3)
        a = (dd * dd).sum(-1)
        bq = 2 * (dd * oc[:, :, None]).sum(-1)
        cq = (oc * oc).sum(-1)[..., None] - 1
        disc = bq * bq - 4 * a * cq
        t = (-bq - torch.sqrt(disc.clamp_min(0))) / (2 * a)
        t = torch.where((disc > 0) & (t > eps), t, inf)
        t_min, idx = t.min(1)
        m = emats.gather(1, idx[..., None].expand(B, P, 6))
        cc = c.gather(1, idx[..., None].expand(B, P, 3))
        rr = r.gather(1, idx[..., None].expand(B, P, 3))
        p = o[:, None] + t_min.clamp(max=1e6)[..., None] * d
        n = F.normalize((p - cc) / (rr * rr), dim=-1)
        take(t_min, m, n, torch.full_like(idx, 3))
    # the street's ground plane y = 0: road between the kerbs, sidewalk and verge outside
    ground = [lay.ground for lay in layouts]
    road = torch.tensor([g[0] if g is not None else 0.0 for g in ground], dtype=dt, device=device)[:, None]  # (B, 1)
    if any(g is not None for g in ground):
        has = torch.tensor([g is not None for g in ground], device=device)[:, None]
        t = -o[:, None, 1] / d_safe[..., 1]
        t = torch.where(has & (d[..., 1] < 0) & (t > eps), t, inf)
        gm = torch.as_tensor(np.stack([lay.ground_materials if lay.ground is not None else np.zeros((2, 6)) for lay in layouts]), dtype=dt, device=device)
        x = o[:, None, 0] + t.clamp(max=1e6) * d[..., 0]
        on_road = (x.abs() < road)[..., None]
        m = torch.where(on_road, gm[:, None, 0], gm[:, None, 1])
        n = torch.zeros_like(d)
        n[..., 1] = 1
        take(t, m, n, torch.full_like(axis_best, 1))
    # the room (seen from inside): the exit point of the ray through the room box
    if any(lay.room is not None for lay in layouts):
        has = torch.tensor([lay.room is not None for lay in layouts], device=device)[:, None]
        rm = torch.as_tensor(np.stack([lay.room if lay.room is not None else np.array([-1, -1, -1, 1, 1, 1.0]) for lay in layouts]), dtype=dt, device=device)
        rmat = torch.as_tensor(np.stack([lay.room_materials if lay.room is not None else np.zeros((3, 6)) for lay in layouts]), dtype=dt, device=device)
        t1 = (rm[:, None, :3] - o[:, None]) * inv
        t2 = (rm[:, None, 3:] - o[:, None]) * inv
        t_exit, ax = torch.maximum(t1, t2).min(-1)  # (B, P)
        t = torch.where(has, t_exit, inf)
        dy = d[..., 1]
        face = torch.where(ax == 1, torch.where(dy < 0, 0, 2), 1)  # floor, walls, ceiling
        m = rmat.gather(1, face[..., None].expand(B, P, 6))
        n = F.one_hot(ax, 3).to(dt) * -torch.sign(d.gather(2, ax[..., None]))
        take(t, m, n, ax)
    sky = ~torch.isfinite(t_best) | (t_best > cfg.max_depth)
    t_draw = torch.where(sky, torch.zeros_like(t_best), t_best)
    p = o[:, None] + t_draw[..., None] * d  # (B, P, 3) hit points
    # texture coordinates: the two world axes spanning the face (ellipsoids: x and y)
    ax = axis_best
    u = torch.where(ax == 0, p[..., 2], p[..., 0])
    v = torch.where(ax == 1, p[..., 2], p[..., 1])
    seed = torch.tensor([lay.noise_seed % 1000 for lay in layouts], dtype=dt, device=device)[:, None].expand(B, P)
    kind = mat[..., 3].round().long()
    bright, glass = _pattern(kind, u, v, p, ax, mat[..., 4], mat[..., 5], seed, road.expand(B, P))
    sun = F.normalize(torch.as_tensor(np.stack([lay.sun for lay in layouts]), dtype=dt, device=device), dim=-1)
    amb = torch.tensor([lay.ambient for lay in layouts], dtype=dt, device=device)[:, None]
    lambert = (normal * sun[:, None]).sum(-1).clamp_min(0)
    shade = amb + (1 - amb) * lambert
    color = mat[..., :3] * (bright * shade)[..., None]
    fog = torch.tensor([lay.fog for lay in layouts], dtype=dt, device=device)[:, None]
    fog_c = torch.as_tensor(np.stack([lay.fog_color for lay in layouts]), dtype=dt, device=device)
    keep = torch.where(fog > 0, torch.exp(-t_draw / fog.clamp_min(1e-6)), torch.ones_like(t_draw))
    color = color * keep[..., None] + fog_c[:, None] * (1 - keep[..., None])
    # sky: horizon-to-zenith gradient by ray elevation, with soft clouds
    hor = torch.as_tensor(np.stack([lay.sky[0] for lay in layouts]), dtype=dt, device=device)
    zen = torch.as_tensor(np.stack([lay.sky[1] for lay in layouts]), dtype=dt, device=device)
    elev = d[..., 1] / d[..., [0, 2]].norm(dim=-1)
    k = elev.clamp(0, 1).sqrt()[..., None]
    cloud = _value_noise(d[..., 0] / d[..., 1].clamp_min(0.05) * 3, d[..., 2] / d[..., 1].clamp_min(0.05) * 3, seed)
    sky_c = hor[:, None] * (1 - k) + zen[:, None] * k
    sky_c = sky_c + 0.25 * (cloud.clamp(0.5, 1) - 0.5)[..., None] * (elev > 0)[..., None]
    color = torch.where(sky[..., None], sky_c, color)
    depth = torch.where(sky, torch.full_like(t_best, cfg.sky_depth), t_best)
    return dict(color=color.clamp(0, 1), depth=depth, sky=sky, glass=glass & ~sky, dirs=d)


def lidar_mask(dirs: torch.Tensor, depth: torch.Tensor, sky: torch.Tensor, glass: torch.Tensor, h: int, w: int,
               fov_deg: float, cfg: LidarConfig, uniform: torch.Tensor) -> torch.Tensor:
    """Which pixels get a lidar point: in a beam's elevation band, in range, not sky, not dropped.

    ``dirs`` are the world-space centre rays ``(B, H*W, 3)``; a pixel row is in the band of beam
    ``k`` if the beam's elevation falls inside the pixel's vertical angular extent. ``uniform`` holds
    one U(0, 1) draw per pixel ``(B, H, W)`` for the drop-outs. Returns a boolean ``(B, 1, H, W)`` mask.
    """
    B = dirs.shape[0]
    elev = torch.rad2deg(torch.atan2(dirs[..., 1], dirs[..., [0, 2]].norm(dim=-1))).reshape(B, h, w)
    pix = fov_deg / w  # angular size of one pixel (degrees), roughly
    beams = torch.linspace(cfg.elevation_bottom, cfg.elevation_top, cfg.beams, dtype=elev.dtype, device=elev.device)
    near_beam = ((elev[..., None] - beams).abs() <= pix / 2).any(-1)  # (B, H, W)
    rnd = uniform.to(dirs.device)
    glass = glass.reshape(B, h, w)
    keep = torch.where(glass, rnd < cfg.glass_keep, rnd < cfg.keep)
    ok = near_beam & keep & ~sky.reshape(B, h, w) & (depth.reshape(B, h, w) <= cfg.max_range)
    return ok[:, None]


@dataclass
class DepthScenes:
    """A batch of rendered scenes with their ground truth.

    - ``images``: ``(N, 3, H, W)`` float32 in [0, 1];
    - ``depth``: ``(N, 1, H, W)`` float32 z-depth in metres (sky: ``DepthSceneConfig.sky_depth``);
    - ``sky``: ``(N, 1, H, W)`` bool;
    - ``lidar``: ``(N, 1, H, W)`` bool, the lidar-like sparse points (street) or all non-sky pixels
      (indoor: dense, like NYU's in-painted Kinect maps);
    - ``domain``, ``seed``, ``start`` (index of the first scene), ``layouts`` (the geometry).
    """

    images: torch.Tensor
    depth: torch.Tensor
    sky: torch.Tensor
    lidar: torch.Tensor
    domain: str
    seed: int
    start: int = 0
    layouts: List[Layout] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        return {"image": self.images[i], "depth": self.depth[i], "sky": self.sky[i], "lidar": self.lidar[i]}

    @property
    def sparse_depth(self) -> torch.Tensor:
        """Depth where the lidar has a point, 0 elsewhere (the KITTI convention), ``(N, 1, H, W)``."""
        return torch.where(self.lidar, self.depth, torch.zeros_like(self.depth))

    def to(self, device) -> DepthScenes:
        return replace(self, images=self.images.to(device), depth=self.depth.to(device), sky=self.sky.to(device),
                       lidar=self.lidar.to(device))

    def batch(self, index: torch.Tensor, flip: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Items ``index`` as a dict of stacked tensors; ``flip`` (bool per item) mirrors left-right."""
        out = {"image": self.images[index], "depth": self.depth[index], "sky": self.sky[index], "lidar": self.lidar[index]}
        if flip is not None:
            f = flip.to(out["image"].device).view(-1, 1, 1, 1)
            out = {k: torch.where(f, v.flip(-1), v) for k, v in out.items()}
        return out


def render_layouts(layouts: Sequence[Layout], size: Size = 64, config: Optional[DepthSceneConfig] = None,
                   domain: str = "custom", seed: int = 0, start: int = 0, device=None) -> DepthScenes:
    """Ray-cast ``layouts`` into a :class:`DepthScenes` (images, exact depth, sky, lidar mask)."""
    cfg = config or DepthSceneConfig()
    if cfg.fov_deg is None:
        cfg = replace(cfg, fov_deg=DEFAULT_FOV.get(domain, 60.0))
    if not 1.0 <= cfg.fov_deg <= 150.0:
        raise ValueError(f"fov_deg must be between 1 and 150 degrees, got {cfg.fov_deg}")
    h, w = _size(size)
    ss = int(cfg.supersample)
    if ss < 1:
        raise ValueError(f"supersample must be >= 1, got {ss}")
    dev = torch.device("cpu") if device is None else torch.device(device)
    rdev = dev  # ray casting runs on `device` (a GPU renders large full-profile sets much faster)
    if not layouts:
        raise ValueError("no layouts to render")
    per_chunk = max(1, int(262_144 // (h * w * ss * ss)))
    images, depths, skies, lidars = [], [], [], []
    for c0 in range(0, len(layouts), per_chunk):
        chunk = [_visible(lay, cfg.fov_deg, h, w) for lay in layouts[c0 : c0 + per_chunk]]
        B = len(chunk)
        hi = _render_chunk(chunk, h, w, cfg, ss, rdev)
        color = hi["color"].reshape(B, h, ss, w, ss, 3).mean((2, 4))  # (B, H, W, 3) box-filtered
        if ss == 1:
            centre = hi
        else:
            centre = _render_chunk(chunk, h, w, replace(cfg, supersample=1), 1, rdev)
        gens = [torch.Generator().manual_seed(int(lay.noise_seed)) for lay in chunk]
        noise = torch.stack([torch.randn(h, w, 3, generator=g) for g in gens]).to(rdev)  # seeded on the CPU
        color = (color + cfg.noise * noise).clamp(0, 1)
        depth = centre["depth"].reshape(B, 1, h, w)
        sky = centre["sky"].reshape(B, 1, h, w)
        if domain == "street" or any(lay.ground is not None for lay in chunk):
            uniform = torch.stack([torch.rand(h, w, generator=torch.Generator().manual_seed(int(lay.noise_seed) + 7),
                                              dtype=torch.float64) for lay in chunk])
            lid = lidar_mask(centre["dirs"], centre["depth"], centre["sky"], centre["glass"], h, w, cfg.fov_deg,
                             cfg.lidar, uniform)
            is_street = torch.tensor([lay.ground is not None for lay in chunk], device=rdev).view(B, 1, 1, 1)
            lid = torch.where(is_street, lid, ~sky)
        else:
            lid = ~sky
        images.append(color.permute(0, 3, 1, 2).float().contiguous())  # (B, 3, H, W)
        depths.append(depth.float())
        skies.append(sky)
        lidars.append(lid)
    return DepthScenes(images=torch.cat(images).to(dev), depth=torch.cat(depths).to(dev), sky=torch.cat(skies).to(dev),
                       lidar=torch.cat(lidars).to(dev), domain=domain, seed=seed, start=start, layouts=list(layouts))


def make_depth_scenes(domain: str, n: int, size: Size = 64, seed: int = 0, *, start: int = 0,
                      config: Optional[DepthSceneConfig] = None, device=None) -> DepthScenes:
    """Render scenes ``start .. start+n-1`` of ``domain`` (``"indoor"`` or ``"street"``) for ``seed``.

    Scene ``i`` depends only on ``(seed, i)`` (and the size/config), so ``make_depth_scenes(d, 10,
    start=5)`` equals items 5..14 of ``make_depth_scenes(d, 15)``. Use different seeds (or disjoint
    index ranges) for training and test sets.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if n < 1:
        raise ValueError(f"n must be a positive number of scenes, got {n}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    n = cap_items(n, minimum=2)  # a rehearsal (ANIMLIB_CAP_ITEMS) renders a few (a batch norm needs 2)
    draw = street_layout if domain == "street" else indoor_layout
    layouts = [draw(np.random.default_rng([seed, DOMAINS.index(domain), start + i])) for i in range(n)]
    return render_layouts(layouts, size, config, domain=domain, seed=seed, start=start, device=device)
