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
from .depth_layouts import (
    BRICKS,
    FOLIAGE,
    PLANKS,
    ROAD,
    SIDEWALK,
    TILES,
    WINDOWS,
    Camera,
    Layout,
    indoor_layout,
    street_layout,
)

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


_EPS = 1e-6  # hits nearer than this along a ray (at its own origin) do not count


@dataclass
class _Hits:
    """The nearest hit so far of every ray: ``t`` (z-depth, inf where none), material, normal, axis.

    ``axis`` is the world axis of the face's normal (0, 1, 2) or 3 for an ellipsoid; texture
    coordinates are taken in the two axes spanning the face. Each primitive kind is intersected
    in turn and :meth:`take` keeps its hits where they are nearer.
    """

    t: torch.Tensor  # (B, P)
    mat: torch.Tensor  # (B, P, 6)
    normal: torch.Tensor  # (B, P, 3)
    axis: torch.Tensor  # (B, P) long

    @classmethod
    def none(cls, B: int, P: int, dt: torch.dtype, device) -> _Hits:
        return cls(t=torch.full((B, P), float("inf"), dtype=dt, device=device),
                   mat=torch.zeros(B, P, 6, dtype=dt, device=device),
                   normal=torch.zeros(B, P, 3, dtype=dt, device=device),
                   axis=torch.zeros(B, P, dtype=torch.long, device=device))

    def take(self, t: torch.Tensor, m: torch.Tensor, n: torch.Tensor, ax: torch.Tensor) -> None:
        better = t < self.t
        self.t = torch.where(better, t, self.t)
        self.mat = torch.where(better[..., None], m, self.mat)
        self.normal = torch.where(better[..., None], n, self.normal)
        self.axis = torch.where(better, ax, self.axis)


def _hit_boxes(layouts: Sequence[Layout], o: torch.Tensor, d: torch.Tensor, inv: torch.Tensor, hits: _Hits,
               device) -> None:
    """Boxes, seen from outside (slab test), into ``hits``."""
    B, P = d.shape[:2]
    dt = d.dtype
    nb = max(len(lay.boxes) for lay in layouts)
    if not nb:
        return
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
        hit = (t_far >= t_near) & (t_near > _EPS) & (t_near < t_min)
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
    hits.take(t_min, m, n, ax_b)


def _hit_ellipsoids(layouts: Sequence[Layout], o: torch.Tensor, d: torch.Tensor, hits: _Hits, device) -> None:
    """Ellipsoids (tree canopies, lamp shades), into ``hits``."""
    B, P = d.shape[:2]
    dt = d.dtype
    ne = max(len(lay.ellipsoids) for lay in layouts)
    if not ne:
        return
    inf = torch.tensor(float("inf"), dtype=dt, device=device)
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
    t = torch.where((disc > 0) & (t > _EPS), t, inf)
    t_min, idx = t.min(1)
    m = emats.gather(1, idx[..., None].expand(B, P, 6))
    cc = c.gather(1, idx[..., None].expand(B, P, 3))
    rr = r.gather(1, idx[..., None].expand(B, P, 3))
    p = o[:, None] + t_min.clamp(max=1e6)[..., None] * d
    n = F.normalize((p - cc) / (rr * rr), dim=-1)
    hits.take(t_min, m, n, torch.full_like(idx, 3))


def _road_half_widths(layouts: Sequence[Layout], dt: torch.dtype, device) -> torch.Tensor:
    """Each street's road half width (0 for scenes without ground), ``(B, 1)``."""
    return torch.tensor([lay.ground[0] if lay.ground is not None else 0.0 for lay in layouts], dtype=dt,
                        device=device)[:, None]


def _hit_ground(layouts: Sequence[Layout], o: torch.Tensor, d: torch.Tensor, d_safe: torch.Tensor,
                road: torch.Tensor, hits: _Hits, device) -> None:
    """The street's ground plane y = 0 (road between the kerbs, sidewalk and verge outside), into ``hits``."""
    dt = d.dtype
    if not any(lay.ground is not None for lay in layouts):
        return
    inf = torch.tensor(float("inf"), dtype=dt, device=device)
    has = torch.tensor([lay.ground is not None for lay in layouts], device=device)[:, None]
    t = -o[:, None, 1] / d_safe[..., 1]
    t = torch.where(has & (d[..., 1] < 0) & (t > _EPS), t, inf)
    gm = torch.as_tensor(np.stack([lay.ground_materials if lay.ground is not None else np.zeros((2, 6)) for lay in layouts]), dtype=dt, device=device)
    x = o[:, None, 0] + t.clamp(max=1e6) * d[..., 0]
    on_road = (x.abs() < road)[..., None]
    m = torch.where(on_road, gm[:, None, 0], gm[:, None, 1])
    n = torch.zeros_like(d)
    n[..., 1] = 1
    hits.take(t, m, n, torch.full_like(hits.axis, 1))


def _hit_room(layouts: Sequence[Layout], o: torch.Tensor, d: torch.Tensor, inv: torch.Tensor, hits: _Hits,
              device) -> None:
    """The room, seen from inside: the exit point of the ray through the room box, into ``hits``."""
    B, P = d.shape[:2]
    dt = d.dtype
    if not any(lay.room is not None for lay in layouts):
        return
    inf = torch.tensor(float("inf"), dtype=dt, device=device)
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
    hits.take(t, m, n, ax)


def _surface_color(layouts: Sequence[Layout], hits: _Hits, p: torch.Tensor, t_draw: torch.Tensor,
                   seed: torch.Tensor, road: torch.Tensor, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Colour of every hit point ``p`` (B, P, 3): material texture, sun and ambient light, then haze.

    Returns the colour ``(B, P, 3)`` and the glass flag ``(B, P)`` (windows) of :func:`_pattern`."""
    B, P = t_draw.shape
    dt = t_draw.dtype
    # texture coordinates: the two world axes spanning the face (ellipsoids: x and y)
    ax = hits.axis
    u = torch.where(ax == 0, p[..., 2], p[..., 0])
    v = torch.where(ax == 1, p[..., 2], p[..., 1])
    kind = hits.mat[..., 3].round().long()
    bright, glass = _pattern(kind, u, v, p, ax, hits.mat[..., 4], hits.mat[..., 5], seed, road.expand(B, P))
    sun = F.normalize(torch.as_tensor(np.stack([lay.sun for lay in layouts]), dtype=dt, device=device), dim=-1)
    amb = torch.tensor([lay.ambient for lay in layouts], dtype=dt, device=device)[:, None]
    lambert = (hits.normal * sun[:, None]).sum(-1).clamp_min(0)
    shade = amb + (1 - amb) * lambert
    color = hits.mat[..., :3] * (bright * shade)[..., None]
    fog = torch.tensor([lay.fog for lay in layouts], dtype=dt, device=device)[:, None]
    fog_c = torch.as_tensor(np.stack([lay.fog_color for lay in layouts]), dtype=dt, device=device)
    keep = torch.where(fog > 0, torch.exp(-t_draw / fog.clamp_min(1e-6)), torch.ones_like(t_draw))
    color = color * keep[..., None] + fog_c[:, None] * (1 - keep[..., None])
    return color, glass


def _sky_color(layouts: Sequence[Layout], d: torch.Tensor, seed: torch.Tensor, device) -> torch.Tensor:
    """The sky along every ray ``(B, P, 3)``: a horizon-to-zenith gradient by elevation, with soft clouds."""
    dt = d.dtype
    hor = torch.as_tensor(np.stack([lay.sky[0] for lay in layouts]), dtype=dt, device=device)
    zen = torch.as_tensor(np.stack([lay.sky[1] for lay in layouts]), dtype=dt, device=device)
    elev = d[..., 1] / d[..., [0, 2]].norm(dim=-1)
    k = elev.clamp(0, 1).sqrt()[..., None]
    cloud = _value_noise(d[..., 0] / d[..., 1].clamp_min(0.05) * 3, d[..., 2] / d[..., 1].clamp_min(0.05) * 3, seed)
    sky_c = hor[:, None] * (1 - k) + zen[:, None] * k
    return sky_c + 0.25 * (cloud.clamp(0.5, 1) - 0.5)[..., None] * (elev > 0)[..., None]


def _render_chunk(layouts: Sequence[Layout], h: int, w: int, cfg: DepthSceneConfig, ss: int, device) -> Dict[str, torch.Tensor]:
    """Ray-cast a chunk of layouts: colour, depth, sky and glass, all (B, P) or (B, P, 3).

    Rays, then every primitive kind intersected in turn (boxes, ellipsoids, ground, room), each
    keeping its nearer hits; then the hits are textured and shaded, and rays without a hit (or with
    one beyond ``max_depth``) see the sky.
    """
    B = len(layouts)
    dt = torch.float32  # float32 is exact enough for depth (relative error ~1e-7) and twice as fast
    o, d, _ = _rays(layouts, h, w, cfg.fov_deg, ss, device)  # (B,3), (B,P,3)
    o, d = o.to(dt), d.to(dt)
    P = d.shape[1]
    hits = _Hits.none(B, P, dt, device)
    d_safe = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    inv = 1.0 / d_safe  # (B, P, 3)
    _hit_boxes(layouts, o, d, inv, hits, device)
    _hit_ellipsoids(layouts, o, d, hits, device)
    road = _road_half_widths(layouts, dt, device)  # (B, 1)
    _hit_ground(layouts, o, d, d_safe, road, hits, device)
    _hit_room(layouts, o, d, inv, hits, device)
    sky = ~torch.isfinite(hits.t) | (hits.t > cfg.max_depth)
    t_draw = torch.where(sky, torch.zeros_like(hits.t), hits.t)
    p = o[:, None] + t_draw[..., None] * d  # (B, P, 3) hit points
    seed = torch.tensor([lay.noise_seed % 1000 for lay in layouts], dtype=dt, device=device)[:, None].expand(B, P)
    color, glass = _surface_color(layouts, hits, p, t_draw, seed, road, device)
    color = torch.where(sky[..., None], _sky_color(layouts, d, seed, device), color)
    depth = torch.where(sky, torch.full_like(hits.t, cfg.sky_depth), hits.t)
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
            center = hi
        else:
            center = _render_chunk(chunk, h, w, replace(cfg, supersample=1), 1, rdev)
        gens = [torch.Generator().manual_seed(int(lay.noise_seed)) for lay in chunk]
        noise = torch.stack([torch.randn(h, w, 3, generator=g) for g in gens]).to(rdev)  # seeded on the CPU
        color = (color + cfg.noise * noise).clamp(0, 1)
        depth = center["depth"].reshape(B, 1, h, w)
        sky = center["sky"].reshape(B, 1, h, w)
        if domain == "street" or any(lay.ground is not None for lay in chunk):
            uniform = torch.stack([torch.rand(h, w, generator=torch.Generator().manual_seed(int(lay.noise_seed) + 7),
                                              dtype=torch.float64) for lay in chunk])
            lid = lidar_mask(center["dirs"], center["depth"], center["sky"], center["glass"], h, w, cfg.fov_deg,
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
