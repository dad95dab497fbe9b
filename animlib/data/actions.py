"""Synthetic human-action clips (offline stand-in for the Weizmann dataset) and video anomalies.

The Weizmann human-action dataset (Gorelick et al. 2007) films nine people performing ten actions
against a static background: ``bend``, ``jack`` (jumping jack), ``jump`` (forward on two legs),
``pjump`` (jump in place), ``run``, ``side`` (gallop sideways), ``skip``, ``walk``, ``wave1`` (one
hand) and ``wave2`` (two hands). It is the data of the source's GRU autoencoder (after MoCoGAN,
Tulyakov et al. 2018). This module renders the same ten actions with an articulated stick figure so
that every chapter runs offline, and returns the ground truth with the pixels: the action label and
every motion parameter of every clip.

What varies from clip to clip (all drawn from one seeded generator, so a seed fixes every pixel):
body height, limb thickness, brightness of figure and background, background gradient and
texture, start position, facing direction, cycle rate (speed) and starting phase of the motion.

The anomalies of the detection task (:func:`make_anomaly_clips`) each start at a known frame, and
the per-frame ground truth says where they are:

- ``"unseen_action"``: an action never seen in training: by default ``"fall"``, a walking figure
  that falls over from frame ``k`` and lies on the ground (a Weizmann action left out of the training
  set, e.g. ``jack``, can be chosen instead; it is then anomalous from frame 0);
- ``"backwards"``: a walking or running figure that reverses from frame ``k`` on, i.e. moves
  backwards with its limbs cycling backwards (every single frame is still a normal pose: only the
  motion is wrong);
- ``"teleport"``: the figure jumps sideways by a quarter to a third of the frame width at frame ``k``
  and carries on from there
  (again, every frame on its own is normal);
- ``"object"``: a foreign object (a bright ball or box) flies through the scene from frame ``k``.

Real Weizmann clips prepared by ``python data_scripts/weizmann.py --help`` are read by
:func:`weizmann_dataset` (frames resized to 64 x 64); :func:`weizmann_benchmark`
splits them into the train / validation / anomaly-test sets of the full profile.

Conventions: clips are float32 tensors ``(N, T, 1, H, W)`` in ``value_range`` (default [0, 1]);
image coordinates have x to the right and y downwards; limb angles are measured from straight down,
positive towards the direction the figure faces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .folders import FrameFolderDataset

__all__ = [
    "ACTIONS",
    "NORMAL_ACTIONS",
    "UNSEEN_ACTIONS",
    "ANOMALY_TYPES",
    "ActionClips",
    "make_action_clips",
    "make_anomaly_clips",
    "make_anomaly_benchmark",
    "inject_anomaly",
    "weizmann_dataset",
    "weizmann_benchmark",
    "weizmann_action",
    "to_model_range",
]

#: The ten Weizmann actions, in the index order of the labels.
ACTIONS: Tuple[str, ...] = ("bend", "jack", "jump", "pjump", "run", "side", "skip", "walk", "wave1", "wave2")
#: The actions a "normal" training set contains by default: all ten.
NORMAL_ACTIONS: Tuple[str, ...] = ACTIONS
#: Unseen actions for the anomaly task: ``"fall"`` (a walker falls over and lies on the ground; not a
#: Weizmann action) or any Weizmann action left out of the training set.
UNSEEN_ACTIONS: Tuple[str, ...] = ("fall",) + ACTIONS
#: The anomaly kinds of :func:`make_anomaly_clips`.
ANOMALY_TYPES: Tuple[str, ...] = ("unseen_action", "backwards", "teleport", "object")

# Cycle rate range (motion cycles per frame) and horizontal travel per cycle (in body heights).
_RATE = {
    "bend": (1 / 16, 1 / 10), "jack": (1 / 10, 1 / 7), "jump": (1 / 10, 1 / 7), "pjump": (1 / 8, 1 / 6),
    "run": (1 / 7, 1 / 5), "side": (1 / 9, 1 / 6), "skip": (1 / 9, 1 / 6), "walk": (1 / 10, 1 / 7),
    "wave1": (1 / 10, 1 / 6), "wave2": (1 / 10, 1 / 6),
}
_STRIDE = {"jump": 0.55, "run": 0.95, "side": 0.45, "skip": 0.7, "walk": 0.6}


@dataclass
class ActionClips:
    """A batch of clips with their ground truth.

    Attributes:
        clips: ``(N, T, 1, H, W)`` float32 frames in ``value_range``.
        labels: ``(N,)`` int64 index into :data:`ACTIONS` of the action each figure performs.
        params: per-clip motion parameters (numpy arrays of length N): ``height`` (px), ``rate``
            (cycles per frame), ``phase0`` (cycles), ``facing`` (+1 right, -1 left), ``x0``, ``ground``
            (px), ``velocity`` (px per frame, signed; 0 for actions in place).
        pelvis: ``(N, T, 2)`` the figure's pelvis position (x, y) in pixels, frame by frame.
        frame_anomaly: ``(N, T)`` bool, True on frames that are anomalous (all False for normal clips).
        kind: ``"normal"`` or one of :data:`ANOMALY_TYPES`.
        anomaly_start: ``(N,)`` first anomalous frame (``T`` when there is none).
    """

    clips: torch.Tensor
    labels: torch.Tensor
    params: Dict[str, np.ndarray]
    pelvis: np.ndarray
    frame_anomaly: torch.Tensor
    kind: str = "normal"
    anomaly_start: Optional[np.ndarray] = None
    value_range: Tuple[float, float] = (0.0, 1.0)
    extra: Dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.clips.shape[0])

    @property
    def action_names(self) -> list:
        """The action name of every clip."""
        return [ACTIONS[i] for i in self.labels.tolist()]


# ----------------------------------------------------------------------------------------------
# Poses: joint angles as functions of the motion phase
# ----------------------------------------------------------------------------------------------
def _smooth01(u: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero slope at both ends (a cosine ramp), for u in [0, 1]."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0.0, 1.0))


def _pose(action: str, cyc: np.ndarray) -> Dict[str, np.ndarray]:
    """Joint angles (radians) and offsets (in body heights) for motion phase ``cyc`` (in cycles).

    Returns a dict of arrays shaped like ``cyc``: ``lean`` (torso from vertical, + forwards),
    ``thigh_l/r`` (from straight down, + forwards), ``knee_l/r`` (flexion >= 0), ``arm_l/r``
    (upper arm from straight down; pi = overhead), ``elbow_l/r`` (flexion), ``air`` (height of the
    feet above the ground) and ``advance`` (horizontal progress in strides, monotone in ``cyc``).
    """
    phi = 2 * np.pi * cyc
    u = np.mod(cyc, 1.0)  # position inside the current cycle
    z = np.zeros_like(cyc)
    p = {k: z.copy() for k in ("lean", "thigh_l", "thigh_r", "knee_l", "knee_r", "arm_l", "arm_r",
                               "elbow_l", "elbow_r", "air")}
    p["advance"] = cyc.copy()  # steady progress by default
    if action == "walk":
        p["thigh_l"], p["thigh_r"] = 0.45 * np.sin(phi), -0.45 * np.sin(phi)
        p["knee_l"] = 0.1 + 0.6 * np.maximum(0, np.sin(phi + 0.9))
        p["knee_r"] = 0.1 + 0.6 * np.maximum(0, np.sin(phi + np.pi + 0.9))
        p["arm_l"], p["arm_r"] = -0.4 * np.sin(phi), 0.4 * np.sin(phi)
        p["elbow_l"] = p["elbow_r"] = z + 0.25
        p["lean"] = z + 0.05
    elif action == "run":
        p["thigh_l"], p["thigh_r"] = 0.2 + 0.7 * np.sin(phi), 0.2 - 0.7 * np.sin(phi)
        p["knee_l"] = 0.3 + 1.1 * np.maximum(0, np.sin(phi + 1.2))
        p["knee_r"] = 0.3 + 1.1 * np.maximum(0, np.sin(phi + np.pi + 1.2))
        p["arm_l"], p["arm_r"] = -0.8 * np.sin(phi), 0.8 * np.sin(phi)
        p["elbow_l"] = p["elbow_r"] = z + 1.4
        p["lean"] = z + 0.3
        p["air"] = 0.06 * np.abs(np.sin(phi))
    elif action in ("jump", "pjump"):
        # First half of each cycle in the air, second half a crouch to take off again.
        air = np.where(u < 0.5, np.sin(2 * np.pi * u), 0.0)
        crouch = np.where(u >= 0.5, np.sin(2 * np.pi * (u - 0.5)), 0.0)
        p["air"] = (0.3 if action == "jump" else 0.22) * air
        p["thigh_l"] = p["thigh_r"] = 0.9 * crouch + 0.15 * air
        p["knee_l"] = p["knee_r"] = 1.6 * crouch + 0.3 * air
        p["lean"] = 0.5 * crouch
        p["arm_l"] = p["arm_r"] = -0.6 * crouch + 1.2 * air
        p["elbow_l"] = p["elbow_r"] = z + 0.3
        p["advance"] = np.floor(cyc) + _smooth01(2 * u)  # moves only while airborne
    elif action == "skip":
        p["thigh_l"], p["thigh_r"] = 0.5 * np.sin(phi), -0.5 * np.sin(phi)
        p["knee_l"] = 0.2 + 0.8 * np.maximum(0, np.sin(phi + 0.5))
        p["knee_r"] = 0.2 + 0.8 * np.maximum(0, np.sin(phi + np.pi + 0.5))
        p["arm_l"], p["arm_r"] = -0.9 * np.sin(phi), 0.9 * np.sin(phi)
        p["elbow_l"] = p["elbow_r"] = z + 0.5
        p["air"] = 0.12 * np.abs(np.sin(2 * phi))
        p["lean"] = z + 0.1
    elif action == "side":
        # Seen from the front: legs open and close while the figure gallops sideways.
        spread = 0.12 + 0.3 * (0.5 + 0.5 * np.sin(phi))
        p["thigh_l"], p["thigh_r"] = -spread, spread
        p["knee_l"] = p["knee_r"] = z + 0.1
        p["arm_l"], p["arm_r"] = -0.35 - 0.15 * np.sin(phi), 0.35 + 0.15 * np.sin(phi)
        p["air"] = 0.07 * np.maximum(0, np.sin(phi))
    elif action == "jack":
        v = 0.5 - 0.5 * np.cos(phi)  # 0 = closed, 1 = open
        p["thigh_l"], p["thigh_r"] = -(0.05 + 0.4 * v), 0.05 + 0.4 * v
        p["arm_l"], p["arm_r"] = -(0.2 + 2.6 * v), 0.2 + 2.6 * v
        p["elbow_l"] = p["elbow_r"] = z + 0.1
        p["air"] = 0.05 * np.abs(np.sin(phi))
    elif action == "bend":
        v = 0.5 - 0.5 * np.cos(phi)
        p["lean"] = 1.35 * v
        p["thigh_l"] = p["thigh_r"] = -0.2 * v  # hips move back as the torso folds
        p["knee_l"] = p["knee_r"] = 0.15 * v
        p["arm_l"] = p["arm_r"] = 0.1 + 0.9 * v
        p["elbow_l"] = p["elbow_r"] = z + 0.1
    elif action in ("wave1", "wave2"):
        wave = 2.3 + 0.55 * np.sin(phi)  # an arc overhead
        p["thigh_l"], p["thigh_r"] = z - 0.12, z + 0.12
        p["arm_r"], p["elbow_r"] = wave, 0.25 + 0.2 * np.sin(phi)
        if action == "wave2":
            p["arm_l"], p["elbow_l"] = -wave, -(0.25 + 0.2 * np.sin(phi))
        else:
            p["arm_l"], p["elbow_l"] = z - 0.15, z + 0.05
    else:
        raise ValueError(f"unknown action {action!r}; choose from {ACTIONS}")
    return p


def _front_view(action: str) -> bool:
    """Actions seen from the front: limbs open sideways, so 'facing' only mirrors the figure."""
    return action in ("side", "jack", "wave1", "wave2")


# ----------------------------------------------------------------------------------------------
# Skeleton -> line segments -> pixels
# ----------------------------------------------------------------------------------------------
def _dirv(angle: np.ndarray, facing: np.ndarray) -> np.ndarray:
    """Unit vector at ``angle`` from straight down, turned towards ``facing``: (..., 2) as (x, y)."""
    return np.stack([facing * np.sin(angle), np.cos(angle)], axis=-1)


def _skeleton(p: Dict[str, np.ndarray], height: np.ndarray, facing: np.ndarray,
              pelvis_x: np.ndarray, ground: np.ndarray):
    """Segments ``(..., 9, 2, 2)``, head centre ``(..., 2)``, head radius and pelvis ``(..., 2)``.

    Body proportions (fractions of the height ``height``): thigh and shin 0.25 each, torso 0.30,
    upper arm 0.17, forearm 0.16, neck-to-head-centre 0.11, head radius 0.09.
    """
    H = height
    L_th, L_sh, L_to, L_ua, L_fa = 0.25 * H, 0.25 * H, 0.30 * H, 0.17 * H, 0.16 * H
    f = facing
    # Leg vectors relative to the hip; the pelvis height keeps the lower foot on the ground.
    legs = {}
    for s in ("l", "r"):
        knee = L_th[..., None] * _dirv(p[f"thigh_{s}"], f)
        foot = knee + L_sh[..., None] * _dirv(p[f"thigh_{s}"] - p[f"knee_{s}"], f)
        legs[s] = (knee, foot)
    reach = np.maximum(legs["l"][1][..., 1], legs["r"][1][..., 1])  # how far below the hip the lower foot is
    pelvis = np.stack([pelvis_x, ground - reach - p["air"] * H], axis=-1)  # (..., 2)
    torso_dir = np.stack([f * np.sin(p["lean"]), -np.cos(p["lean"])], axis=-1)
    neck = pelvis + L_to[..., None] * torso_dir
    head = neck + (0.11 * H)[..., None] * torso_dir
    segs = [(pelvis, neck)]
    for s in ("l", "r"):
        knee, foot = legs[s]
        segs += [(pelvis, pelvis + knee), (pelvis + knee, pelvis + foot)]
    for s in ("l", "r"):
        # Arm angles are relative to the torso for side views (they follow a bending back) and
        # absolute for front views.
        elbow = neck + L_ua[..., None] * _dirv(p[f"arm_{s}"], f)
        hand = elbow + L_fa[..., None] * _dirv(p[f"arm_{s}"] + p[f"elbow_{s}"], f)
        segs += [(neck, elbow), (elbow, hand)]
    segs = np.stack([np.stack(ab, axis=-2) for ab in segs], axis=-3)  # (..., 9, 2, 2)
    return segs, head, 0.09 * H, pelvis


def _render_figures(segs: np.ndarray, head: np.ndarray, head_r: np.ndarray, thick: np.ndarray,
                    size: int, chunk: int = 32) -> torch.Tensor:
    """Anti-aliased coverage in [0, 1] of stick figures: ``(F, size, size)`` for ``F`` frames.

    A pixel's coverage is ``clamp(r - d + 0.5, 0, 1)`` with ``d`` its distance to the nearest limb
    segment (or to the head disc's centre) and ``r`` the half thickness (or head radius): a one-pixel
    linear ramp that anti-aliases the edges.
    """
    F_ = segs.shape[0]
    c = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    px = c.repeat(size).reshape(1, 1, -1)  # (1, 1, P) x of every pixel, row-major
    py = c.repeat_interleave(size).reshape(1, 1, -1)  # (1, 1, P) y
    out = torch.empty(F_, size * size)
    S = torch.from_numpy(segs.astype(np.float32))
    Hc = torch.from_numpy(head.astype(np.float32))
    Hr = torch.from_numpy(head_r.astype(np.float32))
    Th = torch.from_numpy(thick.astype(np.float32))
    for i in range(0, F_, chunk):
        s = S[i:i + chunk]
        ax, ay = s[:, :, 0, 0, None], s[:, :, 0, 1, None]  # (f, 9, 1) segment starts
        bx, by = s[:, :, 1, 0, None] - ax, s[:, :, 1, 1, None] - ay  # (f, 9, 1) segment vectors
        dx, dy = px - ax, py - ay  # (f, 9, P)
        t = ((dx * bx + dy * by) / (bx * bx + by * by).clamp_min(1e-6)).clamp_(0, 1)
        d2 = (dx - t * bx).square_() + (dy - t * by).square_()  # squared distance to each limb
        d = d2.amin(1).sqrt_()  # (f, P) distance to the nearest limb
        cov = (Th[i:i + chunk, None] - d + 0.5).clamp_(0, 1)
        h = Hc[i:i + chunk]
        dh = ((px[0] - h[:, 0, None]).square() + (py[0] - h[:, 1, None]).square()).sqrt()  # (f, P)
        out[i:i + chunk] = torch.maximum(cov, (Hr[i:i + chunk, None] - dh + 0.5).clamp_(0, 1))
    return out.reshape(F_, size, size)


def _backgrounds(rng: np.random.Generator, n: int, size: int) -> Tuple[torch.Tensor, np.ndarray]:
    """Static backgrounds ``(n, size, size)``: a brightness gradient plus smooth texture; and the ground line."""
    base = rng.uniform(0.05, 0.35, n)
    grad = rng.uniform(-0.15, 0.15, (n, 2))
    coarse = torch.from_numpy(rng.uniform(-1, 1, (n, 1, 5, 5)).astype(np.float32))
    tex = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[:, 0]
    amp = torch.from_numpy(rng.uniform(0.01, 0.05, n).astype(np.float32))
    lin = torch.linspace(-0.5, 0.5, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    bg = (torch.from_numpy(base.astype(np.float32))[:, None, None]
          + torch.from_numpy(grad[:, 0].astype(np.float32))[:, None, None] * xx
          + torch.from_numpy(grad[:, 1].astype(np.float32))[:, None, None] * yy
          + amp[:, None, None] * tex)
    ground = rng.uniform(0.86, 0.97, n) * size
    return bg.clamp(0, 1), ground


def _check_common(n: int, frames: int, size: int, value_range: Sequence[float]) -> Tuple[float, float]:
    if not (isinstance(n, (int, np.integer)) and n >= 0):
        raise ValueError(f"n (number of clips) must be a non-negative int, got {n!r}")
    if not (isinstance(frames, (int, np.integer)) and frames >= 1):
        raise ValueError(f"frames must be a positive int, got {frames!r}")
    if not (isinstance(size, (int, np.integer)) and size >= 16):
        raise ValueError(f"size must be an int >= 16 (pixels per side), got {size!r}; the book uses 64")
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    return lo, hi


def _draw_params(rng: np.random.Generator, actions: Sequence[str], n: int, frames: int, size: int,
                 speed: Tuple[float, float]) -> Dict[str, np.ndarray]:
    """Per-clip parameters: action index, body size, speed, phase, facing, start position."""
    idx = rng.integers(0, len(actions), n)
    label = np.array([ACTIONS.index(actions[i]) for i in idx], dtype=np.int64)
    height = rng.uniform(0.5, 0.68, n) * size
    lo_hi = np.array([_RATE[ACTIONS[lab]] for lab in label]).reshape(n, 2)
    rate = rng.uniform(lo_hi[:, 0], lo_hi[:, 1]) * rng.uniform(speed[0], speed[1], n)
    phase0 = rng.uniform(0, 1, n)
    facing = rng.choice(np.array([-1.0, 1.0]), n)
    stride = np.array([_STRIDE.get(ACTIONS[lab], 0.0) for lab in label])
    # Keep the whole path inside the frame: a clip that would travel further than 60 % of the frame
    # width gets a proportionally shorter stride (its feet slide a little, as in a slow-motion gait).
    margin = 0.22 * height
    room = 0.6 * size
    travel_abs = stride * height * rate * (frames - 1)
    stride = stride * np.minimum(1.0, room / np.maximum(travel_abs, 1e-9))
    velocity = facing * stride * height * rate  # px per frame (mean)
    travel = velocity * (frames - 1)
    # Start so that the whole path stays inside the frame (with a little jitter).
    center = rng.uniform(-1, 1, n) * np.maximum(0.0, (size - 2 * margin - np.abs(travel)) / 2) + size / 2
    x0 = center - travel / 2
    return {"label": label, "height": height, "rate": rate, "phase0": phase0, "facing": facing,
            "stride": stride, "velocity": velocity, "x0": x0,
            "thick": rng.uniform(0.07, 0.09, n) * height + 0.5,
            "figure": rng.uniform(0.75, 1.0, n)}


def _render(params: Dict[str, np.ndarray], t: np.ndarray, size: int, bg: torch.Tensor, ground: np.ndarray,
            x_shift: Optional[np.ndarray] = None, tilt: Optional[np.ndarray] = None) -> Tuple[torch.Tensor, np.ndarray]:
    """Render clips at (per-clip) times ``t`` ``(N, T)`` (frames; may run backwards). Returns clips, pelvis.

    ``x_shift`` ``(N, T)`` moves figures sideways (teleport); ``tilt`` ``(N, T)`` rotates the whole
    figure about the point on the ground below its pelvis (falling over), in radians.
    """
    n, T = t.shape
    segs = np.zeros((n, T, 9, 2, 2))
    head = np.zeros((n, T, 2))
    head_r = np.zeros((n, T))
    pelvis = np.zeros((n, T, 2))
    for lab in np.unique(params["label"]):
        m = params["label"] == lab
        action = ACTIONS[lab]
        cyc = params["phase0"][m, None] + params["rate"][m, None] * t[m]  # (n_a, T) in cycles
        p = _pose(action, cyc)
        stride_px = (params["stride"] * params["height"] * params["facing"])[m, None]
        adv = p["advance"] - params["phase0"][m, None]
        x = params["x0"][m, None] + stride_px * adv
        if x_shift is not None:
            x = x + x_shift[m]
        facing = np.broadcast_to(params["facing"][m, None], cyc.shape)
        if _front_view(action):
            # Front views: "facing" mirrors which arm waves; limbs are symmetric otherwise.
            facing = facing if action == "wave1" else np.ones_like(cyc)
        hgt = np.broadcast_to(params["height"][m, None], cyc.shape)
        s, h, r, pv = _skeleton(p, hgt, facing, x, np.broadcast_to(ground[m, None], cyc.shape))
        if tilt is not None:
            pivot = np.stack([pv[..., 0], np.broadcast_to(ground[m, None], cyc.shape)], -1)  # (n_a, T, 2)
            c, sn = np.cos(tilt[m]), np.sin(tilt[m])

            def rot(q, pivot=pivot, c=c, sn=sn):
                d = q - pivot[(...,) + (None,) * (q.ndim - 3) + (slice(None),)]
                cc = c[(...,) + (None,) * (q.ndim - 3)]
                ss = sn[(...,) + (None,) * (q.ndim - 3)]
                return pivot[(...,) + (None,) * (q.ndim - 3) + (slice(None),)] + np.stack(
                    [cc * d[..., 0] - ss * d[..., 1], ss * d[..., 0] + cc * d[..., 1]], -1)

            s, h, pv = rot(s), rot(h), rot(pv)
        segs[m], head[m], head_r[m], pelvis[m] = s, h, r, pv
    thick = np.broadcast_to(params["thick"][:, None], (n, T)) / 2  # half thickness
    cov = _render_figures(segs.reshape(n * T, 9, 2, 2), head.reshape(n * T, 2), head_r.reshape(-1),
                          thick.reshape(-1), size).reshape(n, T, size, size)
    fig = torch.from_numpy(params["figure"].astype(np.float32))[:, None, None, None]
    clips = bg[:, None] * (1 - cov) + fig * cov  # (N, T, H, W)
    return clips.unsqueeze(2), pelvis  # (N, T, 1, H, W)


def _finish(clips: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return (clips.clamp(0, 1) * (hi - lo) + lo).float().contiguous()


def make_action_clips(
    n: int,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    actions: Optional[Sequence[str]] = None,
    speed: Tuple[float, float] = (0.85, 1.15),
    value_range: Sequence[float] = (0.0, 1.0),
) -> ActionClips:
    """``n`` clips of stick figures performing actions, deterministic given ``seed``.

    Args:
        n: number of clips.
        frames: frames per clip ``T``.
        size: frame side in pixels (64 in the book).
        seed: fixes every pixel and parameter.
        actions: which actions to draw from, uniformly (default :data:`NORMAL_ACTIONS`).
        speed: range of a random factor on each clip's cycle rate.
        value_range: pixel range of the output, ``(0, 1)`` or ``(-1, 1)`` for a tanh decoder.

    Returns:
        :class:`ActionClips` with ``clips`` ``(n, frames, 1, size, size)`` and the ground truth.
    """
    lo, hi = _check_common(n, frames, size, value_range)
    actions = tuple(NORMAL_ACTIONS if actions is None else actions)
    bad = [a for a in actions if a not in ACTIONS]
    if bad or not actions:
        raise ValueError(f"unknown actions {bad}; choose from {ACTIONS}")
    rng = np.random.default_rng(seed)
    params = _draw_params(rng, actions, n, frames, size, speed)
    bg, ground = _backgrounds(rng, n, size)
    params["ground"] = ground
    t = np.broadcast_to(np.arange(frames, dtype=np.float64), (n, frames)).copy()
    clips, pelvis = _render(params, t, size, bg, ground)
    return ActionClips(clips=_finish(clips, lo, hi), labels=torch.from_numpy(params["label"]), params=params,
                       pelvis=pelvis, frame_anomaly=torch.zeros(n, frames, dtype=torch.bool),
                       anomaly_start=np.full(n, frames), value_range=(lo, hi))


def make_anomaly_clips(
    n: int,
    kind: str,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    unseen_action: str = "fall",
    start: Optional[Tuple[int, int]] = None,
    value_range: Sequence[float] = (0.0, 1.0),
) -> ActionClips:
    """``n`` anomalous clips of one ``kind`` (see :data:`ANOMALY_TYPES`), deterministic given ``seed``.

    Args:
        kind: ``"unseen_action"``, ``"backwards"``, ``"teleport"`` or ``"object"``.
        start: range ``[lo, hi)`` of the first anomalous frame ``k`` (default ``[T/4, T/2)``; the fall
            starts at ``k``; an unseen *Weizmann* action is anomalous from frame 0).
        unseen_action: the action used by ``"unseen_action"``: ``"fall"`` or a Weizmann action (then keep
            it out of the training set with ``make_action_clips(actions=...)``).

    Returns:
        :class:`ActionClips` whose ``frame_anomaly[i, t]`` is True from frame ``anomaly_start[i]`` on
        (for ``"teleport"`` from the jump on; for ``"object"`` while the object is in view).
    """
    lo, hi = _check_common(n, frames, size, value_range)
    if kind not in ANOMALY_TYPES:
        raise ValueError(f"unknown anomaly kind {kind!r}; choose from {ANOMALY_TYPES}")
    if unseen_action not in UNSEEN_ACTIONS:
        raise ValueError(f"unknown unseen_action {unseen_action!r}; choose from {UNSEEN_ACTIONS}")
    if frames < 4 and not (kind == "unseen_action" and unseen_action != "fall"):
        raise ValueError(f"kind={kind!r} needs at least 4 frames per clip, got frames={frames}")
    rng = np.random.default_rng(seed)
    s_lo, s_hi = start if start is not None else (max(1, frames // 4), max(2, frames // 2))
    if not 1 <= s_lo < s_hi <= frames:
        raise ValueError(f"start must satisfy 1 <= lo < hi <= frames, got {start!r} with frames={frames}")
    k = rng.integers(s_lo, s_hi, n)
    t = np.broadcast_to(np.arange(frames, dtype=np.float64), (n, frames)).copy()
    x_shift = None
    extra: Dict[str, np.ndarray] = {}
    tilt = None
    if kind == "unseen_action" and unseen_action != "fall":
        actions: Sequence[str] = (unseen_action,)
        k = np.zeros(n, dtype=np.int64)
    elif kind == "unseen_action":
        actions = ("walk",)
    elif kind == "backwards":
        actions = ("walk", "run")
    else:
        actions = NORMAL_ACTIONS
    params = _draw_params(rng, actions, n, frames, size, (0.85, 1.15))
    bg, ground = _backgrounds(rng, n, size)
    params["ground"] = ground
    if kind == "backwards":
        # From frame k on, time runs backwards: t' = 2k - t (position and limbs retrace their path).
        # Start the figure so that the turning point is where a normal clip would have been mid-way.
        t = np.where(t <= k[:, None], t, 2 * k[:, None] - t)
        params["x0"] = params["x0"] + params["velocity"] * ((frames - 1) / 2 - k * 0.5)
    elif kind == "teleport":
        jump = rng.uniform(0.25, 0.35, n) * size * rng.choice(np.array([-1.0, 1.0]), n)
        # Jump towards the side with more room so the figure stays in view.
        px_mid = params["x0"] + params["velocity"] * k
        jump = np.where(px_mid + jump < 0.2 * size, np.abs(jump), jump)
        jump = np.where(px_mid + jump > 0.8 * size, -np.abs(jump), jump)
        x_shift = np.where(np.arange(frames)[None, :] >= k[:, None], jump[:, None], 0.0)
        extra["jump_px"] = jump
    if kind == "unseen_action" and unseen_action == "fall":
        # Tip over towards the middle of the frame within ~3 frames, then lie still on the ground.
        dur = rng.uniform(2.5, 4.0, n)
        u = np.clip((np.arange(frames)[None, :] - k[:, None] + 1) / dur[:, None], 0, 1)
        x_k = params["x0"] + params["velocity"] * k
        towards = np.where(x_k < size / 2, 1.0, -1.0)  # +1 falls to the right
        tilt = towards[:, None] * (np.pi / 2) * _smooth01(u)
        t = np.minimum(t, k[:, None] + dur[:, None])  # limbs stop moving once down
        extra["fall_duration"] = dur
    clips, pelvis = _render(params, t, size, bg, ground, x_shift, tilt)
    frame_anomaly = torch.from_numpy(np.arange(frames)[None, :] >= k[:, None])
    if kind == "object":
        clips, frame_anomaly, extra = _add_objects(rng, clips, k, size)
    return ActionClips(clips=_finish(clips, lo, hi), labels=torch.from_numpy(params["label"]), params=params,
                       pelvis=pelvis, frame_anomaly=frame_anomaly.bool(), kind=kind, anomaly_start=k,
                       value_range=(lo, hi), extra=extra)


def _add_objects(rng: np.random.Generator, clips: torch.Tensor, k: np.ndarray, size: int):
    """Paint a ball or box that enters at frame k and flies across (from left or right)."""
    n, T = clips.shape[:2]
    radius = rng.uniform(4.0, 6.5, n)
    is_box = rng.random(n) < 0.5
    side = rng.choice(np.array([-1.0, 1.0]), n)
    speed = rng.uniform(4.0, 7.0, n)
    y0 = rng.uniform(0.25, 0.7, n) * size
    vy = rng.uniform(-1.0, 1.0, n)
    value = rng.uniform(0.85, 1.0, n)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5,
                            torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    out = clips.clone()
    present = np.zeros((n, T), dtype=bool)
    for i in range(n):
        for t in range(int(k[i]), T):
            dt = t - k[i]
            cx = (-radius[i] + speed[i] * (dt + 1)) if side[i] > 0 else (size + radius[i] - speed[i] * (dt + 1))
            cy = y0[i] + vy[i] * dt
            if is_box[i]:
                d = torch.maximum((xs - cx).abs(), (ys - cy).abs())
            else:
                d = ((xs - cx) ** 2 + (ys - cy) ** 2).sqrt()
            cov = (radius[i] - d + 0.5).clamp(0, 1)
            if cov.sum() > 1.0:
                present[i, t] = True
            out[i, t, 0] = out[i, t, 0] * (1 - cov) + float(value[i]) * cov
    extra = {"object_radius": radius, "object_is_box": is_box, "object_speed": speed}
    return out, torch.from_numpy(present), extra


def make_anomaly_benchmark(
    n_normal: int,
    n_per_type: int,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    types: Sequence[str] = ANOMALY_TYPES,
    value_range: Sequence[float] = (0.0, 1.0),
) -> Dict[str, ActionClips]:
    """Held-out normal clips and ``n_per_type`` anomalous clips of each type, as a dict by kind.

    Every part has its own seed derived from ``seed``, so the parts do not share figures or scenes
    with each other or with a training set made from a different seed.
    """
    out = {"normal": make_action_clips(n_normal, frames, size, seed=seed * 7919 + 1, value_range=value_range)}
    for j, kind in enumerate(types):
        out[kind] = make_anomaly_clips(n_per_type, kind, frames, size, seed=seed * 7919 + 11 + j,
                                       value_range=value_range)
    return out


def inject_anomaly(
    clips: torch.Tensor,
    kind: str,
    seed: int = 0,
    start: Optional[Tuple[int, int]] = None,
    value_range: Sequence[float] = (0.0, 1.0),
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Turn any normal clips ``(N, T, C, H, W)`` (e.g. real Weizmann windows) into anomalous ones.

    ``kind``: ``"backwards"`` (time runs backwards from frame ``k``: ``t' = 2k − t``, clamped at 0),
    ``"teleport"`` (frames from ``k`` on are shifted sideways by a quarter to a third of the width,
    wrapping around) or ``"object"`` (a bright disc flies through from frame ``k``). Returns the
    clips and the per-frame ground truth ``(N, T)`` (True from ``k`` on).
    """
    if clips.dim() != 5:
        raise ValueError(f"clips must be (N, T, C, H, W), got {tuple(clips.shape)}")
    if kind not in ("backwards", "teleport", "object"):
        raise ValueError(f"inject_anomaly supports 'backwards', 'teleport' and 'object', got {kind!r}")
    lo, hi = (float(v) for v in value_range)
    n, T, C, H, W = clips.shape
    rng = np.random.default_rng(seed)
    s_lo, s_hi = start if start is not None else (max(1, T // 4), max(2, T // 2))
    k = rng.integers(s_lo, s_hi, n)
    out = clips.clone()
    t = np.arange(T)
    for i in range(n):
        if kind == "backwards":
            src = np.where(t <= k[i], t, np.maximum(0, 2 * k[i] - t))
            out[i] = clips[i, torch.from_numpy(src)]
        elif kind == "teleport":
            shift = int(round(rng.uniform(0.25, 0.34) * W)) * int(rng.choice([-1, 1]))
            out[i, k[i]:] = torch.roll(clips[i, k[i]:], shifts=shift, dims=-1)
    flags = torch.from_numpy(t[None, :] >= k[:, None])
    if kind == "object":
        base = (out - lo) / (hi - lo)  # to [0, 1]
        painted, flags, _ = _add_objects(rng, base.mean(2, keepdim=True), k, H)
        delta = painted - base.mean(2, keepdim=True)  # the object only
        out = ((base + delta).clamp(0, 1) * (hi - lo) + lo).float()
    return out, flags.bool()


def to_model_range(x: torch.Tensor, value_range: Sequence[float] = (0.0, 1.0)) -> torch.Tensor:
    """Map pixels from ``value_range`` to [-1, 1], the range of a tanh decoder (the source's choice)."""
    lo, hi = (float(v) for v in value_range)
    return (x - lo) * (2.0 / (hi - lo)) - 1.0


# ----------------------------------------------------------------------------------------------
# the real Weizmann clips (prepared by data_scripts/weizmann.py)
# ----------------------------------------------------------------------------------------------
def weizmann_dataset(
    root: Union[str, os.PathLike[str], None],
    frames: int = 16,
    size: int = 64,
    stride: Optional[int] = None,
    value_range: Sequence[float] = (-1.0, 1.0),
):
    """The real Weizmann clips prepared by ``python data_scripts/weizmann.py``, as fixed-length windows.

    Items are ``(frames, 1, size, size)`` grayscale clips in ``value_range`` (default [-1, 1], as in the
    source's reference code). Raises ``FileNotFoundError`` naming the command that prepares the data
    (see ``python data_scripts/weizmann.py --help``) when ``root`` is missing or incomplete.
    """
    lo, hi = (float(v) for v in value_range)

    def transform(clip: torch.Tensor) -> torch.Tensor:
        return clip * (hi - lo) + lo

    try:
        return FrameFolderDataset(root, clip_len=frames, stride=stride or max(1, frames // 2), size=size,
                                  channels=1, script="weizmann.py", transform=transform)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e}\nThe Weizmann human-action clips are not prepared (see `python data_scripts/weizmann.py "
            "--help`); or leave data_root=None to use the synthetic clips of animlib.data.actions."
        ) from e


def weizmann_benchmark(
    root: Union[str, os.PathLike[str], None],
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    unseen_action: str = "jack",
    held_out_share: float = 0.2,
    value_range: Sequence[float] = (-1.0, 1.0),
    with_labels: bool = False,
):
    """Train / validation / anomaly-test split of the real Weizmann windows (the full profile).

    Clips whose folder name contains ``unseen_action`` are never trained on: they are the unseen-action
    anomalies. Of the other clips, a seeded ``held_out_share`` is the normal test set and as many again
    the validation set. The test set's clips are turned into the other anomaly kinds with
    :func:`inject_anomaly`. Returns ``(train, val, test, flags)``: two tensors ``(N, T, 1, H, W)`` and
    two dicts by kind (``"normal"`` and the anomaly kinds) of clips and per-frame ground truth. With
    ``with_labels=True`` a fifth item follows: the action labels (indices into :data:`ACTIONS`, read
    from the clip names by :func:`weizmann_action`) of ``"train"``, ``"val"`` and ``"normal"``, each
    ``(N,)`` int64.
    """
    ds = weizmann_dataset(root, frames, size, value_range=value_range)
    names = sorted({ds.clip_name(i) for i in range(len(ds))})
    unseen = {n for n in names if unseen_action in n.lower()}
    rest = [n for n in names if n not in unseen]
    perm = np.random.default_rng(seed).permutation(len(rest))
    n_out = max(1, int(round(held_out_share * len(rest))))
    test_names = {rest[i] for i in perm[:n_out]}
    val_names = {rest[i] for i in perm[n_out:2 * n_out]}
    parts: Dict[str, list] = {"train": [], "val": [], "test": [], "unseen": []}
    part_labels: Dict[str, list] = {k: [] for k in parts}
    for i in range(len(ds)):
        n = ds.clip_name(i)
        part = "unseen" if n in unseen else "test" if n in test_names else "val" if n in val_names else "train"
        parts[part].append(ds[i])
        part_labels[part].append(weizmann_action(n) if with_labels else -1)
    if not parts["train"] or not parts["test"]:
        raise ValueError(f"too few Weizmann clips under {root} to split into train and test ({len(names)} clips)")
    stack = {k: torch.stack(v) if v else None for k, v in parts.items()}
    test = {"normal": stack["test"]}
    flags = {"normal": torch.zeros(stack["test"].shape[:2], dtype=torch.bool)}
    if stack["unseen"] is not None:
        test["unseen_action"] = stack["unseen"]
        flags["unseen_action"] = torch.ones(stack["unseen"].shape[:2], dtype=torch.bool)
    for j, kind in enumerate(("backwards", "teleport", "object")):
        test[kind], flags[kind] = inject_anomaly(stack["test"], kind, seed=seed + 17 + j, value_range=value_range)
    val = stack["val"] if stack["val"] is not None else stack["train"][: max(1, len(stack["train"]) // 10)]
    if not with_labels:
        return stack["train"], val, test, flags
    lab = {k: torch.tensor(v, dtype=torch.long) for k, v in part_labels.items()}
    n_val = len(val)
    labels = {"train": lab["train"], "val": lab["val"] if stack["val"] is not None else lab["train"][:n_val],
              "normal": lab["test"]}
    return stack["train"], val, test, flags, labels


def weizmann_action(clip_name: str) -> int:
    """The action label (index into :data:`ACTIONS`) of a Weizmann clip from its name.

    Names are ``<person>_<action>[n]`` (e.g. ``"lena_walk2"``, ``"daria_wave1"``), possibly under a
    folder; a trailing repeat number is dropped unless the action itself ends in a digit
    (``wave1``, ``wave2``). Raises ``ValueError`` for a name without a known action.
    """
    stem = str(clip_name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    _, _, rest = stem.partition("_")
    rest = (rest or stem).lower()
    for cand in (rest, rest.rstrip("0123456789")):
        if cand in ACTIONS:
            return ACTIONS.index(cand)
    raise ValueError(f"no Weizmann action in the clip name {clip_name!r}; expected <person>_<action>[n] with an "
                     f"action from {ACTIONS}")
