"""Small fake data folders in the exact formats that ``data_scripts/`` writes and the loaders read.

Every script in ``data_scripts/`` prepares one real dataset into a plain folder (see
``data_scripts/README.md``, "Output layouts") that one loader of :mod:`animlib.data.prepared` reads.
The writers here produce the same layouts (file names, image bit depths and units, index and label
tables, landmark files and the ``PREPARED`` marker written last) with a handful of small, made-up
items, in well under a second each. They serve two purposes: unit tests of the loaders, and
rehearsals of the chapters' ``full`` profile, whose real-data code paths otherwise run only where
the real data was prepared.

The content is deterministic for a seed and plausible rather than real: rooms and streets ray-cast
analytically (a box room with furniture, a road between buildings with cars) with their exact depth,
a lidar-like sparse sampling for KITTI, synthetic faces of :mod:`animlib.data.faces` with their exact
68 landmarks, stick figures of :mod:`animlib.data.actions` for the Weizmann actions and looping
scenes of :mod:`animlib.data.scenes` for cinemagraph clips. Nothing here is a measurement: never
report results obtained on these folders as results on the real datasets.

==========================  ============================  ======================================
name                        mirrors                       read by
==========================  ============================  ======================================
``"weizmann"``              ``weizmann.py``               :func:`~animlib.data.actions.weizmann_dataset`,
                                                          :func:`~animlib.data.actions.weizmann_benchmark`
``"kitti"``                 ``kitti_depth.py``            :class:`~animlib.data.prepared.KittiDepth`
``"nyu"``                   ``nyu_depth_v2.py``           :class:`~animlib.data.prepared.NyuDepthV2`
``"diw"``                   ``diw.py``                    :class:`~animlib.data.prepared.DiwPairs`
``"imdb_wiki"``             ``imdb_wiki.py``              :class:`~animlib.data.prepared.RealFaces`
``"voxceleb"``              ``voxceleb.py --landmarks``   :class:`~animlib.data.prepared.FaceVideos`,
                                                          :func:`~animlib.data.prepared.face_tracks`
``"cinemagraph_clips"``     your own clips (chapter 1)    :class:`~animlib.data.prepared.CinemagraphClips`
``"photos"``                a photo folder (chapter 3)    :class:`~animlib.data.folders.ImageFolderDataset`
==========================  ============================  ======================================

:func:`write_fake_dataset` writes one of them, :func:`write_fake_data_root` all of them side by side
in the layout the chapters expect, and :data:`CHAPTER_DATA_ROOT` says which part of that root each
chapter takes as ``data_root``. From the command line::

    python -m animlib.data.fake_prepared OUT      # writes OUT/<name>/ for every name, prints the mapping

The default counts are the smallest that every split of the chapters' ``full`` profile can cut
(train and test sets, held-out clips, batches with ``drop_last``), and the default sizes are the
scripts' defaults or the full profile's sizes, except NYU v2 (240 x 320, half the real 480 x 640, to
stay fast).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .download import PREPARED_MARKER, PathLike, write_prepared_marker

__all__ = [
    "FAKE_DATASETS",
    "CHAPTER_DATA_ROOT",
    "ROOT_NOTE",
    "write_fake_dataset",
    "write_fake_data_root",
    "write_fake_weizmann",
    "write_fake_kitti",
    "write_fake_nyu",
    "write_fake_diw",
    "write_fake_imdb_wiki",
    "write_fake_voxceleb",
    "write_fake_cinemagraph_clips",
    "write_fake_photos",
]

Size = Union[int, Tuple[int, int]]

#: Every fake dataset, by the name of its folder under a fake data root.
FAKE_DATASETS: Tuple[str, ...] = ("weizmann", "kitti", "nyu", "diw", "imdb_wiki", "voxceleb", "cinemagraph_clips",
                                  "photos")

#: For each chapter, the part of a :func:`write_fake_data_root` folder to pass as its ``data_root``:
#: ``"."`` is the root itself (the chapter reads ``data_root / "nyu"`` and the like), a name is one
#: dataset folder, ``None`` means the chapter takes no data (chapter 0 never reads ``data_root``;
#: chapter 2 only notes that it ignores it, since it needs scenes whose true motion is known).
CHAPTER_DATA_ROOT: Dict[str, Optional[str]] = {
    "00_toolkit": None,
    "01_lstm_gates": "cinemagraph_clips",  # CinemagraphClips(data_root)
    "02_q_learning": None,
    "03_gram_style": "photos",  # ImageFolderDataset(data_root, marker=None)
    "04_relative_depth": ".",  # data_root / "nyu", data_root / "kitti"
    "05_vae": ".",  # data_root / "imdb_wiki", data_root / "voxceleb"
    "06_gan": ".",  # data_root / "imdb_wiki", data_root / "voxceleb"
    "07_gru_video_autoencoder": "weizmann",  # weizmann_benchmark(data_root)
    "08_face_reenactment": ".",  # face_tracks(data_root / "voxceleb")
}

#: The note :func:`write_fake_data_root` leaves in its root (JSON: seed and datasets); a root holding
#: it is replaced by the next call instead of refused.
ROOT_NOTE = "FAKE_DATA.json"

#: ``weizmann.py``'s actions, in its order, and the people of the real recordings.
_WEIZMANN_ACTIONS = ("walk", "run", "jump", "side", "bend", "wave1", "wave2", "pjump", "jack", "skip")
_WEIZMANN_PEOPLE = ("daria", "denis", "eli", "ido", "ira", "lena", "lyova", "moshe", "shahar")
#: KITTI's selected validation frames: 352 x 1216 pixels, 1000 of them.
_KITTI_FRAME = (352, 1216)
#: the source of every fake file, recorded in the markers
_SOURCE = "animlib.data.fake_prepared"


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _hw(size: Size) -> Tuple[int, int]:
    if isinstance(size, int):
        h = w = size
    else:
        h, w = (int(v) for v in size)
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least 8 x 8 pixels, got {size!r}")
    return h, w


def _side(size: Size) -> int:
    h, w = _hw(size)
    if h != w:
        raise ValueError(f"this dataset stores square images; give one side, not {size!r}")
    return h


def _fresh(out: PathLike) -> Path:
    """``out`` as a new or empty folder (a fake never writes over other files)."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; fake data is written only into a new or "
                              "empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _uint8(x: Any) -> np.ndarray:
    """Floats in [0, 1] (numpy or torch, channels last) -> uint8."""
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _save_png(path: Path, array: np.ndarray) -> None:
    """uint8 gray/RGB or uint16 gray as PNG (fast compression: the format is the scripts' PNG)."""
    from PIL import Image

    if array.dtype not in (np.uint8, np.uint16) or (array.dtype == np.uint16 and array.ndim != 2):
        raise ValueError(f"PNG frames are uint8 gray/RGB or uint16 gray, got {array.dtype} {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=1)


def _save_jpeg(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="JPEG", quality=90)


def _write_csv(path: Path, rows: Sequence[Dict[str, Any]], fieldnames: Sequence[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)


def _mark(out: Path, info: Dict[str, Any]) -> None:
    """The script's ``PREPARED`` marker, written last, with the script's keys plus ``fake: true``."""
    write_prepared_marker(out, {**info, "sources": [_SOURCE], "fake": True})


# ----------------------------------------------------------------------------------------------
# rooms and streets, ray-cast analytically: images with exact depth
# ----------------------------------------------------------------------------------------------
#: a painter: (rows, cols, depth) of the pixels a surface owns -> their colours (k, 3)
_Paint = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _plane(cond: np.ndarray, num: float, den: np.ndarray) -> np.ndarray:
    """Depth of a plane along the rays where ``cond`` holds (``num / den``), ``inf`` elsewhere."""
    safe = np.where(cond, den, np.float32(1.0))
    return np.where(cond, np.float32(num) / safe, np.float32(np.inf)).astype(np.float32)


class _SceneBuilder:
    """Surfaces of a scene as depth maps plus painters; :meth:`render` keeps the nearest per pixel.

    Depths are computed on the broadcast grid (floors depend on the row only, walls on the column
    only), colours only for the pixels each surface wins, so that a frame costs a few full-grid
    operations.
    """

    def __init__(self, rng: np.random.Generator, h: int, w: int, f: float, cx: float, cy: float) -> None:
        self.rng, self.h, self.w = rng, h, w
        self.x = ((np.arange(w) + 0.5 - cx) / f).astype(np.float32)  # (w,) ray slope across
        self.y = ((np.arange(h) + 0.5 - cy) / f).astype(np.float32)  # (h,) ray slope down
        self.surfaces: List[Tuple[np.ndarray, _Paint]] = []

    def add(self, z: np.ndarray, paint: _Paint) -> None:
        self.surfaces.append((z, paint))

    def color(self, rgb: Sequence[float], amount: float = 0.08) -> np.ndarray:
        """``rgb`` with a random shift of up to ``amount`` per channel."""
        return np.clip(np.asarray(rgb, np.float32) + self.rng.uniform(-amount, amount, 3).astype(np.float32),
                       0.05, 0.95)

    def box(self, z0: float, x0: float, x1: float, y_top: float, y_bottom: float, paint: _Paint) -> None:
        """A rectangle facing the camera at depth ``z0``: ``x0..x1`` across, ``y_top..y_bottom`` down."""
        cols = (self.x * z0 > x0) & (self.x * z0 < x1)
        rows = (self.y * z0 > y_top) & (self.y * z0 < y_bottom)
        self.add(np.where(rows[:, None] & cols[None, :], np.float32(z0), np.float32(np.inf)), paint)

    def render(self, sky: Optional[_Paint] = None) -> Tuple[np.ndarray, np.ndarray]:
        depth = np.full((self.h, self.w), np.inf, np.float32)
        owner = np.full((self.h, self.w), -1, np.int16)
        for k, (z, _) in enumerate(self.surfaces):
            closer = z < depth  # broadcasts (h, 1), (1, w) or (h, w)
            depth = np.where(closer, z, depth)
            owner[closer] = k
        rgb = np.zeros((self.h, self.w, 3), np.float32)
        painters = [p for _, p in self.surfaces] + ([sky] if sky is not None else [])
        owner[owner < 0] = len(self.surfaces)  # the sky
        for k, paint in enumerate(painters):
            rows, cols = np.nonzero(owner == k)
            if rows.size:
                rgb[rows, cols] = paint(rows, cols, depth[rows, cols])
        return rgb, depth


def _flat(rgb: np.ndarray, light: float = 1.0) -> _Paint:
    """A painter of one colour."""
    c = (np.asarray(rgb, np.float32) * light)[None, :]
    return lambda rows, cols, z: np.broadcast_to(c, (rows.size, 3))


def _room(s: _SceneBuilder) -> Callable[[], Tuple[np.ndarray, np.ndarray]]:
    """A box room (floor, ceiling, side and back walls with a window) with furniture."""
    rng, x, y, eps = s.rng, s.x, s.y, 1e-6
    hc, top = rng.uniform(1.1, 1.6), rng.uniform(2.5, 3.1)  # camera height, ceiling height
    wl, wr, back = rng.uniform(1.4, 3.0), rng.uniform(1.4, 3.0), rng.uniform(3.5, 8.0)
    wood, wall = s.color((0.55, 0.40, 0.26)), s.color((0.80, 0.74, 0.62), 0.12)

    def floor(rows: np.ndarray, cols: np.ndarray, z: np.ndarray) -> np.ndarray:
        across = x[cols] * z  # metres from the camera's axis
        return wood[None, :] * (0.86 + 0.14 * np.sin(np.float32(2 * np.pi / 0.2) * across))[:, None]  # planks

    s.add(_plane(y > eps, hc, y)[:, None], floor)
    s.add(_plane(y < -eps, top - hc, -y)[:, None], _flat(s.color((0.9, 0.9, 0.88), 0.04), 0.85))

    def side_wall(light: float) -> _Paint:
        def paint(rows: np.ndarray, cols: np.ndarray, z: np.ndarray) -> np.ndarray:
            height = hc - y[rows] * z
            pattern = np.where(height < 0.1, 0.6, 0.93 + 0.07 * np.sin(np.float32(2 * np.pi / 1.3) * z))  # skirting
            return wall[None, :] * (light * pattern)[:, None]
        return paint

    s.add(_plane(x < -eps, wl, -x)[None, :], side_wall(0.75))
    s.add(_plane(x > eps, wr, x)[None, :], side_wall(0.9))
    x0 = rng.uniform(-wl + 0.2, wr - 1.4)
    sky_blue = np.array([0.85, 0.9, 0.97], np.float32)

    def back_wall(rows: np.ndarray, cols: np.ndarray, z: np.ndarray) -> np.ndarray:
        across, height = x[cols] * z, hc - y[rows] * z
        window = (across > x0) & (across < x0 + 1.2) & (height > 0.9) & (height < 2.1)
        return np.where(window[:, None], sky_blue[None, :], wall[None, :] * 0.8)

    s.add(np.full((1, 1), back, np.float32), back_wall)
    for _ in range(int(rng.integers(1, 4))):  # furniture: boxes facing the camera
        z0 = rng.uniform(1.2, back - 0.3)
        width, tall = rng.uniform(0.5, 1.5), rng.uniform(0.4, 1.2)
        xa = rng.uniform(-wl, max(-wl + 0.01, wr - width))
        s.box(z0, xa, xa + width, hc - tall, hc, _shaded(s.color(rng.uniform(0.2, 0.8, 3), 0.0), y, hc, z0, tall))

    def finish() -> Tuple[np.ndarray, np.ndarray]:
        rgb, depth = s.render()
        return rgb / (1.0 + 0.04 * depth[..., None]), depth  # farther walls a little darker
    return finish


def _shaded(rgb: np.ndarray, y: np.ndarray, hc: float, z0: float, tall: float) -> _Paint:
    """A box's colour, lighter towards its top."""
    def paint(rows: np.ndarray, cols: np.ndarray, z: np.ndarray) -> np.ndarray:
        up = np.clip((hc - y[rows] * z0) / tall, 0, 1)
        return rgb[None, :] * (0.8 + 0.2 * up)[:, None]
    return paint


def _street(s: _SceneBuilder) -> Callable[[], Tuple[np.ndarray, np.ndarray]]:
    """A road between buildings (blocks of random height, with gaps and windows), cars and sky."""
    rng, x, y, eps = s.rng, s.x, s.y, 1e-6
    hc = 1.65  # KITTI's camera height
    half_road = rng.uniform(3.5, 6.0)
    lane = rng.uniform(-1.0, 1.0)

    def road(rows: np.ndarray, cols: np.ndarray, z: np.ndarray) -> np.ndarray:
        across = x[cols] * z
        dashes = (np.abs(across - lane) < 0.08) & ((z % 6.0) < 3.0)
        gray = np.where(dashes, 0.85, np.where(np.abs(across) > half_road, 0.52, 0.34 + 0.03 * np.sin(z * 1.7)))
        return gray[:, None] * np.array([1.0, 1.0, 1.02], np.float32)[None, :]

    s.add(_plane(y > eps, hc, y)[:, None], road)
    block = rng.uniform(8.0, 14.0)
    window_color = np.array([0.25, 0.3, 0.38], np.float32)
    for side, light in ((-1, 0.7), (1, 0.9)):
        dist = half_road + rng.uniform(1.5, 4.0)
        heights = (rng.uniform(6.0, 25.0, 64) * (rng.random(64) > 0.15)).astype(np.float32)  # gaps
        facades = np.clip(rng.uniform(0.3, 0.8, (64, 1)) * np.array([1.0, 0.95, 0.85])
                          + rng.uniform(-0.08, 0.08, (64, 3)), 0.05, 0.95).astype(np.float32)
        z = _plane(side * x > eps, dist, side * x)  # (w,)
        b = np.clip(np.where(np.isfinite(z), z / block, 0).astype(np.int64), 0, 63)
        height = hc - y[:, None] * np.where(np.isfinite(z), z, 0)[None, :]  # (h, w)
        z = np.where((height <= heights[b][None, :]) & (z < 64 * block)[None, :], z[None, :], np.float32(np.inf))

        def facade(rows: np.ndarray, cols: np.ndarray, z: np.ndarray, b: np.ndarray = b,
                   facades: np.ndarray = facades, light: float = light) -> np.ndarray:
            up, along = (hc - y[rows] * z) % 3.0, z % 2.5
            windows = (up > 1.0) & (up < 2.2) & (along > 0.6) & (along < 1.9) & (hc - y[rows] * z > 2.5)
            return np.where(windows[:, None], window_color[None, :], facades[b[cols]]) * light

        s.add(z, facade)
    for _ in range(int(rng.integers(1, 4))):  # cars: boxes facing the camera
        z0 = rng.uniform(6.0, 35.0)
        xa = rng.uniform(-half_road + 0.3, half_road - 2.1)
        s.box(z0, xa, xa + 1.8, hc - 1.5, hc - 0.2, _car(s.color(rng.uniform(0.1, 0.9, 3), 0.0), x, y, hc, z0, xa))
    top, bottom = np.array([0.45, 0.62, 0.85], np.float32), np.array([0.82, 0.87, 0.93], np.float32)

    def sky(rows: np.ndarray, cols: np.ndarray, z: np.ndarray) -> np.ndarray:
        t = (rows / max(1, s.h - 1)).astype(np.float32)[:, None]
        return top[None, :] * (1 - t) + bottom[None, :] * t

    def finish() -> Tuple[np.ndarray, np.ndarray]:
        rgb, depth = s.render(sky)
        finite = np.isfinite(depth)
        haze = np.where(finite, np.exp(-np.where(finite, depth, 0) / 250.0), 1.0)[..., None]  # not on the sky
        return rgb * haze + np.array([0.8, 0.84, 0.9], np.float32) * (1 - haze), depth
    return finish


def _car(body: np.ndarray, x: np.ndarray, y: np.ndarray, hc: float, z0: float, xa: float) -> _Paint:
    """A car's back: body colour, dark rear window and wheels."""
    glass_c, tyre_c = np.array([0.15, 0.18, 0.22], np.float32), np.array([0.08, 0.08, 0.08], np.float32)

    def paint(rows: np.ndarray, cols: np.ndarray, z: np.ndarray) -> np.ndarray:
        up, across = hc - y[rows] * z0, x[cols] * z0
        glass = (up > 1.0) & (up < 1.4) & (across > xa + 0.2) & (across < xa + 1.6)
        return np.where(glass[:, None], glass_c[None, :], np.where((up < 0.45)[:, None], tyre_c[None, :], body[None, :]))
    return paint


def _scene(rng: np.random.Generator, h: int, w: int, kind: str, *, horizon: Optional[float] = None,
           fov_deg: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """A room (``"indoor"``) or a street (``"street"``) seen by a pinhole camera, ray-cast exactly.

    Returns ``(rgb (h, w, 3) float32 in [0, 1], depth (h, w) float32 metres)``: z-depth along the
    optical axis, as NYU's Kinect and KITTI's lidar give it, ``inf`` on the sky. Camera coordinates:
    x right, y down, z forward; the floor (road) lies the camera's height below it. ``horizon`` (a
    fraction of the height) and ``fov_deg`` (horizontal) are drawn unless given.
    """
    street = kind == "street"
    if fov_deg is None:
        fov_deg = rng.uniform(78.0, 84.0) if street else rng.uniform(57.0, 63.0)  # KITTI ~81°, NYU ~60°
    if horizon is None:
        horizon = rng.uniform(0.42, 0.5) if street else rng.uniform(0.44, 0.56)
    f = (w / 2) / math.tan(math.radians(fov_deg) / 2)
    builder = _SceneBuilder(rng, h, w, f, w / 2 + rng.uniform(-0.03, 0.03) * w, h * horizon)
    rgb, depth = (_street if street else _room)(builder)()
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), depth


def _beam_rows(h: int, w: int, horizon: float, fov_deg: float) -> np.ndarray:
    """Image rows of a 64-beam scanner's beams (elevations +2° to -24.8°, like KITTI's Velodyne)."""
    f = (w / 2) / math.tan(math.radians(fov_deg) / 2)
    rows = np.round(horizon * h - f * np.tan(np.radians(np.linspace(2.0, -24.8, 64)))).astype(np.int64)
    return np.unique(rows[(rows >= 0) & (rows < h)])


def _lidar(rng: np.random.Generator, depth: np.ndarray, rows: np.ndarray, *, max_depth: float = 80.0,
           keep: float = 0.6) -> np.ndarray:
    """Where the beams at ``rows`` return a point: most pixels of each row, none on the sky or beyond 80 m."""
    mask = np.zeros(depth.shape, bool)
    mask[rows] = rng.random((len(rows), depth.shape[1])) < keep
    return mask & np.isfinite(depth) & (depth <= max_depth)


# ----------------------------------------------------------------------------------------------
# one writer per dataset
# ----------------------------------------------------------------------------------------------
def write_fake_weizmann(out: PathLike, *, n: int = 20, size: int = 64, frames: int = 24, seed: int = 0,
                        names: Optional[Sequence[str]] = None) -> Path:
    """A folder like ``data_scripts/weizmann.py``'s: stick figures of :mod:`animlib.data.actions`.

    ``OUT/clips/<person>_<action>/00000.png ...`` (uint8 grayscale ``size`` x ``size``),
    ``OUT/labels.csv`` (``clip,label,person,frames``) and ``OUT/PREPARED``. Clip ``i`` shows the
    script's action ``i % 10`` (walk, run, jump, side, bend, wave1, wave2, pjump, jack, skip)
    performed by person ``i // 10`` of the real recordings (daria, denis, ...), so the default 20 clips
    hold every action twice, "jack" (chapter 7's unseen action) included. ``names`` gives the clip
    names (``<person>_<action>[n]``) instead. Read by :func:`animlib.data.actions.weizmann_dataset`
    and :func:`animlib.data.actions.weizmann_benchmark`.
    """
    from .actions import ACTIONS, make_action_clips
    from .actions import weizmann_action as _action_of

    size = _side(size)
    if names is None:
        if not 1 <= n <= len(_WEIZMANN_ACTIONS) * len(_WEIZMANN_PEOPLE):
            raise ValueError(f"n must be 1..{len(_WEIZMANN_ACTIONS) * len(_WEIZMANN_PEOPLE)} clips, got {n}")
        names = [f"{_WEIZMANN_PEOPLE[i // 10]}_{_WEIZMANN_ACTIONS[i % 10]}" for i in range(n)]
    names = list(names)
    actions = [ACTIONS[_action_of(name)] for name in names]  # raises for a name without a known action
    out = _fresh(out)
    clips: Dict[str, np.ndarray] = {}
    for j, action in enumerate(sorted(set(actions))):
        which = [name for name, a in zip(names, actions) if a == action]
        made = make_action_clips(len(which), frames, size, seed=seed * 101 + j, actions=(action,))
        for k, name in enumerate(which):
            clips[name] = _uint8(made.clips[k, :, 0])  # (T, H, W)
    rows = []
    for name, action in zip(names, actions):
        for t, frame in enumerate(clips[name]):
            _save_png(out / "clips" / name / f"{t:05d}.png", frame)
        person = name.partition("_")[0].lower()
        rows.append({"clip": f"clips/{name}", "label": action, "person": person, "frames": frames})
    _write_csv(out / "labels.csv", rows, ["clip", "label", "person", "frames"])
    _mark(out, {"dataset": "weizmann", "clips": len(rows), "size": size, "every": 1, "crop": "none",
                "actions": sorted(set(actions))})
    return out


def write_fake_kitti(out: PathLike, *, n: int = 33, size: Size = (224, 288), seed: int = 0) -> Path:
    """A folder like ``data_scripts/kitti_depth.py``'s on the selected validation set: street crops.

    Like the script, each fake 352 x 1216 frame is scaled to ``size[0]`` rows and cut into three
    windows of ``size[1]`` columns, ``n`` crops in all: ``OUT/images/<frame>_c<k>.png`` (uint8 RGB),
    ``OUT/sparse_depth/...`` (uint16, metres = value / 256, 0 = no point: a 64-beam lidar band, at most
    80 m), ``OUT/dense_depth/...`` (the same units, semi-dense ground truth), ``OUT/index.csv``
    (``image,sparse_depth,dense_depth,split,source_image,crop_x,scale,points``, split
    ``val_selection_cropped``) and ``OUT/PREPARED``. Read by :class:`animlib.data.prepared.KittiDepth`.
    The default 33 crops leave chapter 4 the four street test images its figures show.
    """
    height, width = _hw(size)
    out = _fresh(out)
    scale = max(height / _KITTI_FRAME[0], width / _KITTI_FRAME[1])
    new_h, new_w = max(height, round(_KITTI_FRAME[0] * scale)), max(width, round(_KITTI_FRAME[1] * scale))
    xs = sorted(set(np.linspace(0, new_w - width, 3).round().astype(int).tolist()))
    rng = np.random.default_rng([seed, 1])
    rows: List[Dict[str, Any]] = []
    frame = 0
    while len(rows) < n:
        drive = f"2011_09_26_drive_{(frame // 4) * 7 + 2:04d}"
        stem = f"{drive}_sync_image_{(frame % 4) * 5 + 5:010d}_image_0{2 + frame % 2}"
        frame_id = stem.replace("_sync_image_", "_")
        fov, horizon = rng.uniform(79.0, 83.0), rng.uniform(0.44, 0.5)
        rgb, depth = _scene(np.random.default_rng([seed, 2, frame]), new_h, new_w, "street", horizon=horizon,
                            fov_deg=fov)
        beams = _beam_rows(new_h, new_w, horizon, fov)
        sparse = _lidar(rng, depth, beams)
        # semi-dense ground truth: scans accumulated over neighbouring frames fill the band below the top beam
        dense = np.isfinite(depth) & (depth <= 80.0) & (np.arange(new_h)[:, None] >= beams.min(initial=new_h))
        y0 = new_h - height
        for k, x0 in enumerate(xs):
            if len(rows) == n:
                break
            name = f"{frame_id}_c{k}"
            window = (slice(y0, y0 + height), slice(x0, x0 + width))
            d = np.where(np.isfinite(depth[window]), depth[window], 0.0)
            sp = np.where(sparse[window], np.round(d * 256.0), 0).astype(np.uint16)
            de = np.where(dense[window], np.round(d * 256.0), 0).astype(np.uint16)
            _save_png(out / "images" / f"{name}.png", _uint8(rgb[window]))
            _save_png(out / "sparse_depth" / f"{name}.png", sp)
            _save_png(out / "dense_depth" / f"{name}.png", de)
            rows.append({"image": f"images/{name}.png", "sparse_depth": f"sparse_depth/{name}.png",
                         "dense_depth": f"dense_depth/{name}.png", "split": "val_selection_cropped",
                         "source_image": f"{stem}.png", "crop_x": x0, "scale": f"{scale:.6f}",
                         "points": int(np.count_nonzero(sp))})
        frame += 1
    _write_csv(out / "index.csv", rows, ["image", "sparse_depth", "dense_depth", "split", "source_image", "crop_x",
                                         "scale", "points"])
    _mark(out, {"dataset": "kitti_depth", "crops": len(rows), "frames": frame, "height": height, "width": width,
                "depth_units": "metres = value / 256"})
    return out


def write_fake_nyu(out: PathLike, *, n: int = 24, size: Size = (240, 320), seed: int = 0) -> Path:
    """A folder like ``data_scripts/nyu_depth_v2.py``'s: rooms with dense depth.

    ``OUT/rgb/00000.png`` (uint8 RGB), ``OUT/depth/00000.png`` (uint16 millimetres, metres = value /
    1000; rooms of 1-10 m as the Kinect sees them), ``OUT/index.csv`` (``image,depth,index``) and
    ``OUT/PREPARED``. The real frames are 480 x 640; the default here is half that, so that it stays
    fast. Read by :class:`animlib.data.prepared.NyuDepthV2`. Chapter 4 keeps the last tenth as its test
    set: the default 24 frames leave it the three test rooms its figure shows.
    """
    h, w = _hw(size)
    out = _fresh(out)
    rows = []
    for i in range(n):
        rgb, depth = _scene(np.random.default_rng([seed, 3, i]), h, w, "indoor")
        mm = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
        _save_png(out / "rgb" / f"{i:05d}.png", _uint8(rgb))
        _save_png(out / "depth" / f"{i:05d}.png", mm)
        rows.append({"image": f"rgb/{i:05d}.png", "depth": f"depth/{i:05d}.png", "index": i})
    _write_csv(out / "index.csv", rows, ["image", "depth", "index"])
    _mark(out, {"dataset": "nyu_depth_v2", "frames": n, "depth_units": "millimetres", "source": _SOURCE})
    return out


def write_fake_diw(out: PathLike, *, n: int = 8, size: Size = (240, 320), seed: int = 0) -> Path:
    """A folder like ``data_scripts/diw.py``'s: photos with one ordinal point pair each.

    ``n`` test photos (``OUT/images/test/<name>.jpg``) and ``n // 4`` more in ``train_val``, rooms and
    streets alternating, every other one portrait (``size`` transposed), and ``OUT/pairs.json``:
    ``[{"image", "split", "a": [row, col], "b": [row, col], "relation", "ordinal", "width", "height"}]``
    with 0-based coordinates and the relation taken from the exact depth (``<``: A is nearer, ``=``
    within 2 %; sky is farthest). Read by :class:`animlib.data.prepared.DiwPairs`.
    """
    h, w = _hw(size)
    out = _fresh(out)
    pairs = []
    for i in range(n + n // 4):
        split = "test" if i < n else "train_val"
        rng = np.random.default_rng([seed, 4, i])
        ih, iw = (h, w) if i % 2 == 0 else (w, h)
        rgb, depth = _scene(rng, ih, iw, "indoor" if i % 4 < 2 else "street")
        while True:
            (ya, yb), (xa, xb) = rng.integers(0, ih, 2), rng.integers(0, iw, 2)
            za, zb = depth[ya, xa], depth[yb, xb]
            if (ya, xa) != (yb, xb) and (np.isfinite(za) or np.isfinite(zb)):
                break
        if np.isfinite(za) and np.isfinite(zb) and abs(za - zb) <= 0.02 * max(za, zb):
            relation = "="
        else:
            relation = "<" if za < zb else ">"
        rel = f"images/{split}/{rng.bytes(16).hex()}.jpg"
        _save_jpeg(out / rel, _uint8(rgb))
        pairs.append({"image": rel, "split": split, "a": [int(ya), int(xa)], "b": [int(yb), int(xb)],
                      "relation": relation, "ordinal": {"<": -1, "=": 0, ">": 1}[relation], "width": iw,
                      "height": ih})
    (out / "pairs.json").write_text(json.dumps(pairs, indent=1) + "\n", encoding="utf-8")
    _mark(out, {"dataset": "diw", "pairs": len(pairs), "missing_images": 0,
                "splits": sorted({p["split"] for p in pairs})})
    return out


def write_fake_imdb_wiki(out: PathLike, *, n: int = 144, size: int = 64, seed: int = 0) -> Path:
    """A folder like ``data_scripts/imdb_wiki.py``'s: faces of :func:`animlib.data.faces.render_faces`.

    ``OUT/images/<nn>/<id>_<birth date>_<year taken>.png`` (uint8 RGB ``size`` x ``size``, ``nn`` the
    id's last two digits, as in ``wiki_crop``), ``OUT/labels.csv`` (``path,label,age,gender,face_score``;
    label = gender, female or male; age from the birth date and the year taken, as the dataset's authors
    count it; face scores of at least 1, as the script's filter keeps) and ``OUT/PREPARED``. Read by
    :class:`animlib.data.prepared.RealFaces`. Chapters 5 and 6 hold out a tenth and train with batches
    of 128 (``drop_last``): the default 144 faces give them 130 and 14.
    """
    import torch

    from .faces import render_faces, sample_identity, sample_motion

    size = _side(size)
    out = _fresh(out)
    g = torch.Generator().manual_seed(int(seed) * 7 + 5)
    images = _uint8(render_faces(sample_identity(n, g), sample_motion(n, g), size).permute(0, 2, 3, 1))
    rng = np.random.default_rng([seed, 5])
    rows = []
    for i in range(n):
        ident = 100_000 + 400_000 * i + int(rng.integers(0, 400_000))  # distinct, like the dataset's ids
        born = dt.date(1930, 1, 1) + dt.timedelta(days=int(rng.integers(0, 60 * 365)))  # up to 1989
        taken = int(rng.integers(born.year + 19, min(born.year + 70, 2015) + 1))  # adults, photos up to 2015
        age = int((dt.date(taken, 7, 1) - born).days // 365.25)
        gender = "male" if rng.random() < 0.5 else "female"
        rel = f"images/{ident % 100:02d}/{ident}_{born.isoformat()}_{taken}.png"
        _save_png(out / rel, images[i])
        rows.append({"path": rel, "label": gender, "age": age, "gender": gender,
                     "face_score": f"{rng.uniform(1.0, 6.0):.4f}"})
    _write_csv(out / "labels.csv", rows, ["path", "label", "age", "gender", "face_score"])
    _mark(out, {"dataset": "imdb_wiki", "subset": "wiki", "faces": n, "skipped": 0, "size": size,
                "min_face_score": 1.0, "single_face": True})
    return out


def write_fake_voxceleb(out: PathLike, *, n: int = 4, size: int = 128, frames: int = 24, seed: int = 0,
                        landmarks: bool = True) -> Path:
    """A folder like ``data_scripts/voxceleb.py --videos ... --landmarks``'s: talking synthetic faces.

    ``n`` clips, two per speaker (one identity each, different motion):
    ``OUT/clips/<speaker>/<youtube id>_<segment>/00000.png ...`` (uint8 RGB ``size`` x ``size``, drawn
    by :func:`animlib.data.faces.render_faces` at up to 64 px and scaled up, as low-resolution videos
    are), ``landmarks68.npy`` next to each clip's frames (``(T, 68, 2)`` float32 ``(x, y)`` normalised to
    [-1, 1] across the frame: the faces' exact landmarks, :func:`animlib.data.faces.face_landmarks`, in
    dlib's layout; a chin pitched out of the frame lies just outside, as dlib's points can),
    ``OUT/labels.csv`` (``clip,label,video,segment,frames``, label = speaker), ``OUT/videos_needed.txt``
    and ``OUT/PREPARED``. ``landmarks=False`` leaves the landmark files out, as a run without
    ``--landmarks`` does. Read by :class:`animlib.data.prepared.FaceVideos` and
    :func:`animlib.data.prepared.face_tracks`. The defaults give chapters 5 and 6 four driving windows
    of 24 frames and chapter 8 four tracks (two held out).
    """
    import torch
    import torch.nn.functional as F

    from .faces import face_clips, face_landmarks, render_faces, sample_identity

    size = _side(size)
    out = _fresh(out)
    n_speakers = max(1, math.ceil(n / 2))
    rng = np.random.default_rng([seed, 6])
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    videos = ["".join(rng.choice(alphabet, 11)) for _ in range(n_speakers)]
    identity = sample_identity(n_speakers, int(seed) * 7 + 6)  # (speakers, 8)
    motion = face_clips(n, frames, 8, seed=int(seed) * 7 + 7).motion  # (n, T, 5): talking, blinking, turning
    speaker = torch.arange(n) // 2
    flat_id = identity[speaker].repeat_interleave(frames, 0)  # (n * T, 8)
    flat_motion = motion.reshape(n * frames, -1)
    drawn = render_faces(flat_id, flat_motion, min(size, 64))
    if drawn.shape[-1] != size:
        drawn = F.interpolate(drawn, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    pixels = _uint8(drawn.permute(0, 2, 3, 1)).reshape(n, frames, size, size, 3)
    points = face_landmarks(flat_id, flat_motion).reshape(n, frames, 68, 2).numpy().astype(np.float32)
    rows = []
    for i in range(n):
        spk = int(speaker[i])
        name, video, segment = f"id{10270 + spk}", videos[spk], f"{i % 2 + 1:05d}"
        clip = f"clips/{name}/{video}_{segment}"
        for t in range(frames):
            _save_png(out / clip / f"{t:05d}.png", pixels[i, t])
        if landmarks:
            np.save(out / clip / "landmarks68.npy", points[i], allow_pickle=False)
        rows.append({"clip": clip, "label": name, "video": video, "segment": segment, "frames": frames})
    (out / "videos_needed.txt").write_text("\n".join(sorted(set(videos))) + "\n", encoding="utf-8")
    _write_csv(out / "labels.csv", rows, ["clip", "label", "video", "segment", "frames"])
    _mark(out, {"dataset": "voxceleb", "clips": n, "speakers": n_speakers, "size": size, "missing_videos": 0})
    return out


def write_fake_cinemagraph_clips(out: PathLike, *, n: int = 40, size: int = 128, frames: int = 16,
                                 seed: int = 0) -> Path:
    """A folder of your own cinemagraph clips, as chapter 1 takes it: looping scenes of :mod:`animlib.data.scenes`.

    ``OUT/<clip>/00000.png ...`` (uint8 RGB ``size`` x ``size``), no marker and no table, as
    :class:`animlib.data.prepared.CinemagraphClips` reads it. ``n`` counts the loops of ``frames``
    frames, the items the loader cuts: they are spread over up to eight clip folders, each holding its
    scene's loop played several times in a row, as a looping cinemagraph is exported. Chapter 1 holds
    out a tenth and trains with batches of 32 (``drop_last``); the default 40 loops leave it 36 and 4.
    """
    from .scenes import SceneConfig, make_scenes

    size = _side(size)
    out = _fresh(out)
    block = next(b for b in (8, 4, 2, 1) if size % b == 0)
    n_clips = min(n, 8)
    scenes = make_scenes(n_clips, SceneConfig(size=size, frames=frames, num_classes=8, block=block), seed=seed)
    loops = [n // n_clips + (1 if i < n % n_clips else 0) for i in range(n_clips)]
    for i in range(n_clips):
        folder = out / f"clip_{i:03d}"
        encoded = [folder / f"{t:05d}.png" for t in range(frames)]
        for t, path in enumerate(encoded):
            _save_png(path, _uint8(scenes.frames[i, t].permute(1, 2, 0)))
        for k in range(1, loops[i]):  # the same loop again: the bytes are copied, not encoded again
            for t, src in enumerate(encoded):
                shutil.copyfile(src, folder / f"{k * frames + t:05d}.png")
    return out


def write_fake_photos(out: PathLike, *, n: int = 8, size: Size = (256, 320), seed: int = 0) -> Path:
    """A folder of photographs as chapter 3's fast style transfer takes it (COCO-like JPEG files).

    ``OUT/<12-digit id>.jpg``: rooms and streets, landscape (``size``) and portrait (transposed) in
    turn; no marker, since the chapter reads any photo folder with ``marker=None``. Read by
    :class:`animlib.data.folders.ImageFolderDataset`. The default 8 photos fill two batches of the full
    profile's 4.
    """
    h, w = _hw(size)
    out = _fresh(out)
    for i in range(n):
        rng = np.random.default_rng([seed, 8, i])
        ih, iw = (h, w) if i % 2 == 0 else (w, h)
        rgb, _ = _scene(rng, ih, iw, "street" if i % 3 == 1 else "indoor")
        _save_jpeg(out / f"{75_000 * i + int(rng.integers(1, 75_000)):012d}.jpg", _uint8(rgb))
    return out


_WRITERS = {
    "weizmann": write_fake_weizmann,
    "kitti": write_fake_kitti,
    "nyu": write_fake_nyu,
    "diw": write_fake_diw,
    "imdb_wiki": write_fake_imdb_wiki,
    "voxceleb": write_fake_voxceleb,
    "cinemagraph_clips": write_fake_cinemagraph_clips,
    "photos": write_fake_photos,
}
_WITH_FRAMES = ("weizmann", "voxceleb", "cinemagraph_clips")


def write_fake_dataset(name: str, out: PathLike, *, n: Optional[int] = None, size: Optional[Size] = None,
                       frames: Optional[int] = None, seed: int = 0) -> Path:
    """Write the fake dataset ``name`` (one of :data:`FAKE_DATASETS`) into the new or empty folder ``out``.

    ``n`` is the number of items (clips, crops, frames, photos or faces; see each ``write_fake_<name>``),
    ``size`` the stored image size (int for square images, ``(H, W)`` otherwise) and ``frames`` the
    frames per clip of the clip datasets; ``None`` keeps each dataset's default, sized for the chapters'
    full profile. Deterministic for ``seed``. Returns ``out``.
    """
    if name not in _WRITERS:
        raise ValueError(f"unknown fake dataset {name!r}; choose one of {', '.join(FAKE_DATASETS)}")
    if frames is not None and name not in _WITH_FRAMES:
        raise ValueError(f"{name} holds still images; frames= applies to {', '.join(_WITH_FRAMES)}")
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of items, got {n}")
    options: Dict[str, Any] = {"seed": seed}
    for key, value in (("n", n), ("size", size), ("frames", frames)):
        if value is not None:
            options[key] = value
    return _WRITERS[name](out, **options)


def write_fake_data_root(out: PathLike, seed: int = 0) -> Path:
    """Every fake dataset with its defaults under ``out``: ``out/<name>`` for each of :data:`FAKE_DATASETS`.

    The layout the chapters expect of ``data_root``: chapter 4 reads ``out/nyu`` and ``out/kitti``,
    chapters 5 and 6 ``out/imdb_wiki`` and ``out/voxceleb``, chapter 8 ``out/voxceleb``, and chapters
    1, 3 and 7 take ``out/cinemagraph_clips``, ``out/photos`` and ``out/weizmann`` themselves (see
    :data:`CHAPTER_DATA_ROOT`). ``out`` must be new or empty, or a root an earlier call wrote (it holds
    :data:`ROOT_NOTE`), which is replaced. Returns ``out``.
    """
    out = Path(out).expanduser()
    if (out / ROOT_NOTE).is_file():
        for name in FAKE_DATASETS:
            shutil.rmtree(out / name, ignore_errors=True)
        (out / ROOT_NOTE).unlink()
    out = _fresh(out)
    for name in FAKE_DATASETS:
        write_fake_dataset(name, out / name, seed=seed)
    note = {"generator": _SOURCE, "seed": seed, "datasets": list(FAKE_DATASETS),
            "chapter_data_root": CHAPTER_DATA_ROOT, "marker": PREPARED_MARKER}
    (out / ROOT_NOTE).write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m animlib.data.fake_prepared OUT [--seed N]``: write a fake data root, print the mapping."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m animlib.data.fake_prepared",
                                     description="Write small fake folders in the data scripts' formats (for tests "
                                                 "and rehearsals of the full profile) and print each chapter's "
                                                 "data_root.")
    parser.add_argument("out", type=Path, help="a new or empty folder (or one this command wrote before)")
    parser.add_argument("--seed", type=int, default=0, help="fixes every pixel (default: 0)")
    args = parser.parse_args(argv)
    root = write_fake_data_root(args.out, seed=args.seed)
    print(f"fake data in the data scripts' formats written to {root}")
    for chapter, sub in CHAPTER_DATA_ROOT.items():
        print(f"  {chapter}: data_root=" + ("None (takes no data)" if sub is None else str(root / sub)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
