"""Synthetic cinemagraph scenes with known motion, and real clips from frame folders.

Source S0 (cinemagraphs with recurrent networks and a deep recurrent Q-network) has no dataset: its
future work calls for one. We generate scenes whose motion is known exactly, so that every number
the chapters report can be checked against the truth:

- a static background that must *not* move: blocky colour noise, or (``background="texture"``)
  crops of real photographed textures (scikit-image's grass, gravel and brick, each 512×512 px),
  at a random scale and position and tinted with a muted random colour;
- one band of soft stripes across the image, "flowing water", that translates in a loop. Its motion
  class ``c`` fixes the direction (``c % 4``: → ← ↓ ↑) and the speed (``1 + c // 4`` pixels per
  frame). The class is *visible in the still image*: the stripes run across the direction of flow
  (orientation tells the axis) and each class has its own hue (hue tells direction and speed), so
  a model can infer the motion from one frame, as a person does from a photo of a river;
- optional extra moving regions: a flickering ``"flame"`` (brightness loop) and a swaying
  ``"branch"`` (a dark bar rocking about its base). They join the motion mask; the class refers to
  the water band only.

Every scene loops: frame ``T`` equals frame ``0``. With the default stripe period ``P = T`` a speed
of ``s`` pixels per frame moves the stripes ``s·T`` pixels per loop, a whole number of periods.

Everything is a deterministic function of the seed (a private ``torch.Generator``; the global RNG is
untouched). Pixel values are in [0, 1], layout ``(N, T, 3, H, W)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..rehearsal import cap_items
from .images import hsv_to_rgb

__all__ = [
    "DIRECTIONS",
    "TEXTURES",
    "real_textures",
    "SceneConfig",
    "Scenes",
    "make_scenes",
    "SceneStream",
    "class_colors",
    "opposite_class",
    "motion_mask_from_clip",
]

#: Direction of each class (``class % 4``) as (dx, dy) per frame at speed 1, and its arrow.
DIRECTIONS = ((1, 0, "→"), (-1, 0, "←"), (0, 1, "↓"), (0, -1, "↑"))
_EXTRAS = ("flame", "branch")
_BACKGROUNDS = ("noise", "texture")
#: the real textures of ``background="texture"``: scikit-image's photographed samples (512×512, gray)
TEXTURES = ("grass", "gravel", "brick")


@dataclass
class SceneConfig:
    """Size and content of the synthetic scenes (defaults: the quick profile)."""

    size: int = 32  # image height = width in pixels (32 quick, 128+ full)
    frames: int = 8  # T, frames in one loop (frame T equals frame 0)
    num_classes: int = 4  # motion classes: 4 directions; 8 adds a second speed (2 px/frame)
    period: Optional[int] = None  # stripe period in pixels; None = frames (exact loop at any speed)
    band: float = 0.375  # width of the water band as a fraction of the image
    block: int = 4  # background noise block size in pixels (texture scale)
    extras: Tuple[str, ...] = ()  # extra moving regions: any of "flame", "branch"
    background: str = "noise"  # "noise" (blocky colour noise) or "texture" (crops of real photographed textures)
    reverse: float = 0.0  # share of scenes whose water reverses direction halfway through the loop

    def validate(self) -> SceneConfig:
        if not isinstance(self.size, int) or self.size < 16:
            raise ValueError(f"size must be an int >= 16, got {self.size!r}")
        if not isinstance(self.frames, int) or self.frames < 2:
            raise ValueError(f"frames must be an int >= 2, got {self.frames!r}")
        if not isinstance(self.num_classes, int) or not 1 <= self.num_classes <= 12:
            raise ValueError(f"num_classes must be 1..12 (4 directions x up to 3 speeds), got {self.num_classes!r}")
        period = self.period_px
        for speed in range(1, self.max_speed + 1):
            if (speed * self.frames) % period:
                raise ValueError(
                    f"period={period} does not divide speed*frames={speed * self.frames}: the scene would not "
                    "loop; use period=None (= frames) or a divisor of frames"
                )
        if not 0.1 <= self.band <= 0.8:
            raise ValueError(f"band must be a fraction in [0.1, 0.8], got {self.band!r}")
        if self.size % self.block:
            raise ValueError(f"block={self.block} must divide size={self.size}")
        if not 0.0 <= self.reverse <= 1.0:
            raise ValueError(f"reverse must be a share in [0, 1], got {self.reverse!r}")
        if self.reverse > 0 and self.frames % 2:
            raise ValueError(f"reversing scenes turn at frames/2: frames must be even, got {self.frames}")
        if self.background not in _BACKGROUNDS:
            raise ValueError(f"background must be one of {_BACKGROUNDS}, got {self.background!r}")
        bad = [e for e in self.extras if e not in _EXTRAS]
        if bad:
            raise ValueError(f"unknown extras {bad}; choose from {_EXTRAS}")
        return self

    @property
    def period_px(self) -> int:
        return self.period if self.period is not None else self.frames

    @property
    def max_speed(self) -> int:
        return 1 + (self.num_classes - 1) // 4


@dataclass
class Scenes:
    """A batch of scenes with their ground truth.

    Attributes: ``frames`` ``(N, T, 3, H, W)`` in [0, 1] (frame 0 is the still image), ``mask``
    ``(N, 1, H, W)`` (1 where anything moves), ``label`` ``(N,)`` motion class of the water band
    at the start, ``velocity`` ``(N, 2)`` its (dx, dy) in pixels per frame at the start, ``config``,
    and ``step_label`` ``(N, T)``: the motion class of each step ``t`` (frame ``t`` to ``t + 1``;
    the last step leads back to frame 0). It equals ``label`` at every step, except in reversing
    scenes (``config.reverse``), whose second half moves the opposite way.
    """

    frames: torch.Tensor
    mask: torch.Tensor
    label: torch.Tensor
    velocity: torch.Tensor
    config: SceneConfig = field(default_factory=SceneConfig)
    step_label: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.step_label is None:
            self.step_label = self.label[:, None].expand(-1, self.frames.shape[1]).clone()

    @property
    def reverses(self) -> torch.Tensor:
        """``(N,)`` bool: whether the scene's motion changes during the loop."""
        return (self.step_label != self.step_label[:, :1]).any(1)

    @property
    def still(self) -> torch.Tensor:
        """The input image of each scene, ``(N, 3, H, W)``."""
        return self.frames[:, 0]

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, idx) -> Scenes:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return Scenes(self.frames[idx], self.mask[idx], self.label[idx], self.velocity[idx], self.config,
                      self.step_label[idx])

    def to(self, device) -> Scenes:
        return Scenes(self.frames.to(device), self.mask.to(device), self.label.to(device),
                      self.velocity.to(device), self.config, self.step_label.to(device))

    def as_dict(self) -> Dict[str, torch.Tensor]:
        return {"frames": self.frames, "mask": self.mask, "label": self.label, "velocity": self.velocity,
                "step_label": self.step_label}


# ----------------------------------------------------------------------------- helpers


def class_colors(num_classes: int) -> torch.Tensor:
    """One saturated RGB colour per class, ``(num_classes, 3)``, evenly spaced in hue."""
    hues = torch.arange(num_classes, dtype=torch.float32) / num_classes
    return hsv_to_rgb(hues, torch.full_like(hues, 0.85), torch.full_like(hues, 0.95))


def _rand(g: torch.Generator, *shape, device=None) -> torch.Tensor:
    # drawn on the CPU (the seeded generator lives there), so every device renders the same scenes
    return torch.rand(*shape, generator=g).to(device)


def _background(g: torch.Generator, n: int, size: int, block: int, device=None) -> torch.Tensor:
    """Blocky, muted colour noise ``(N, 3, H, W)``: texture that a model must keep still."""
    coarse = _rand(g, n, 3, size // block, size // block, device=device)  # (N, 3, h, w)
    gray = coarse.mean(1, keepdim=True)
    coarse = 0.15 + 0.6 * (0.55 * gray + 0.45 * coarse)  # desaturate so the stripes stand out
    return F.interpolate(coarse, scale_factor=block, mode="nearest")  # (N, 3, H, W)


@functools.lru_cache(maxsize=1)
def real_textures() -> torch.Tensor:
    """scikit-image's photographed textures (:data:`TEXTURES`) as ``(3, 512, 512)`` gray in [0, 1].

    Each is normalised to mean 0.5 and a common contrast (std 0.18), so that no texture stands out
    by its exposure. They ship with scikit-image: nothing is downloaded.
    """
    from skimage import data as skdata  # scikit-image is imported only when texture scenes are made

    out = []
    for name in TEXTURES:
        a = torch.from_numpy(getattr(skdata, name)().astype("float32") / 255.0)
        out.append(((a - a.mean()) / a.std().clamp_min(1e-6) * 0.18 + 0.5).clamp(0, 1))
    return torch.stack(out)  # (3, 512, 512)


def _texture_crops(g: torch.Generator, n: int, height: int, width: int, zoom: torch.Tensor) -> torch.Tensor:
    """``(N, height, width)`` crops of the real textures, ``zoom`` ``(N,)`` texture pixels (of the 512-px
    originals) per output pixel, at random positions; one ``grid_sample`` for the whole batch.

    Sampling happens on the textures shrunk 4× (antialiased), so that zooms of 2-6 do not alias."""
    tex = _small_textures()  # (K, 128, 128)
    which = torch.randint(len(TEXTURES), (n,), generator=g)
    frac = torch.rand(n, 2, generator=g)
    side = tex.shape[-1]
    half_h = (zoom / 4 * height / side).clamp(max=1.0)  # half extent of the crop in [-1, 1] units
    half_w = (zoom / 4 * width / side).clamp(max=1.0)
    cy = -1 + half_h + frac[:, 0] * (2 - 2 * half_h)
    cx = -1 + half_w + frac[:, 1] * (2 - 2 * half_w)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = half_w, cx, half_h, cy
    grid = F.affine_grid(theta, (n, 1, height, width), align_corners=False)
    return F.grid_sample(tex[which][:, None], grid, mode="bilinear", align_corners=False)[:, 0]


@functools.lru_cache(maxsize=1)
def _small_textures() -> torch.Tensor:
    return F.interpolate(real_textures()[:, None], scale_factor=0.25, mode="bilinear", antialias=True)[:, 0]


def _texture_background(g: torch.Generator, n: int, size: int, device=None) -> torch.Tensor:
    """Crops of real textures ``(N, 3, H, W)``: a random texture, scale (2-6 texture pixels per image
    pixel) and position, tinted with a muted colour and squeezed into the noise background's range."""
    zoom = 2.0 + 4.0 * torch.rand(n, generator=g)
    tint = 0.55 + 0.45 * torch.rand(n, 3, generator=g)
    gray = _texture_crops(g, n, size, size, zoom)[:, None]  # (N, 1, H, W)
    img = 0.15 + 0.6 * gray * (tint / tint.amax(1, keepdim=True))[:, :, None, None]  # same range as the noise
    return img.to(device)


def opposite_class(labels: torch.Tensor) -> torch.Tensor:
    """The class of the same speed in the opposite direction (→ and ←, ↓ and ↑ swap)."""
    return labels - labels % 4 + (labels % 4) ^ 1


def _water(cfg: SceneConfig, g: torch.Generator, n: int, labels: torch.Tensor, device=None,
           reverses: Optional[torch.Tensor] = None):
    """Stripe frames, band masks and velocities for the water band of each scene."""
    S, T, P = cfg.size, cfg.frames, cfg.period_px
    if reverses is None:
        reverses = torch.zeros(n, dtype=torch.bool)
    if cfg.reverse > 0:  # reversing scenes get hues of their own, so the still tells them apart
        colors = class_colors(2 * cfg.num_classes)[labels + cfg.num_classes * reverses.long()].to(device)
    else:
        colors = class_colors(cfg.num_classes)[labels].to(device)  # (N, 3)
    direction = labels % 4
    speed = 1 + labels // 4
    dirs = torch.tensor([[d[0], d[1]] for d in DIRECTIONS], dtype=torch.float32)
    velocity = (dirs[direction] * speed[:, None].float()).to(device)  # (N, 2) px per frame
    width = max(4, int(round(cfg.band * S)))
    start = (_rand(g, n, device=device) * (S - width + 1)).long()  # (N,)
    phase = _rand(g, n, device=device) * P
    coord = torch.arange(S, dtype=torch.float32, device=device)
    t = torch.arange(T, dtype=torch.float32, device=device)
    horizontal = velocity[:, 0] != 0  # flow along x: stripes vary along x, band spans rows
    v = torch.where(horizontal, velocity[:, 0], velocity[:, 1])  # (N,)
    # distance travelled by frame t: v·t, or for a reversing scene v·t up to T/2 and v·(T - t) after,
    # so that it is back at 0 after T frames and the loop closes at any period
    travel = torch.where(reverses.to(device)[:, None], torch.minimum(t, T - t)[None], t[None])  # (N, T)
    shift = v[:, None] * travel  # (N, T) pixels
    # s(u, t) = 1/2 + 1/2 cos(2π (u - shift(t) + phase) / P): a travelling wave along the flow axis u.
    arg = coord[None, None, :] - shift[:, :, None] + phase[:, None, None]  # (N, T, S)
    wave = 0.5 + 0.5 * torch.cos(2 * math.pi * arg / P)  # (N, T, S)
    inband = ((coord[None] >= start[:, None]) & (coord[None] < (start + width)[:, None])).float()  # (N, S)
    # Broadcast to images: horizontal flow -> wave along W, band along H; vertical the other way.
    wave_h = wave[:, :, None, :].expand(n, T, S, S)  # varies along x
    wave_v = wave[:, :, :, None].expand(n, T, S, S)  # varies along y
    hz = horizontal[:, None, None, None]
    w_img = torch.where(hz, wave_h, wave_v)  # (N, T, H, W)
    m_img = torch.where(horizontal[:, None, None], inband[:, :, None].expand(n, S, S),
                        inband[:, None, :].expand(n, S, S))  # (N, H, W)
    stripes = colors[:, None, :, None, None] * (0.3 + 0.7 * w_img[:, :, None])  # (N, T, 3, H, W)
    if cfg.background == "texture":  # grain from a real texture that travels with the wave (period P: loops)
        strip = _texture_strips(g, n, S, P)  # (N, S across, P along)
        along = (coord.long()[None, None, :] - shift[:, :, None].round().long()
                 + phase.round().long()[:, None, None]) % P  # (N, T, S)
        grain = torch.gather(strip[:, None].expand(n, T, S, P), 3,
                             along[:, :, None, :].expand(n, T, S, S).to(strip.device))  # (N, T, across, along)
        grain = grain.to(device)
        g_img = torch.where(hz, grain, grain.transpose(-1, -2))  # horizontal flow: along = x
        stripes = stripes * (1.0 + 0.9 * (g_img[:, :, None] - 0.5))
    return stripes, m_img[:, None], velocity


def _texture_strips(g: torch.Generator, n: int, across: int, period: int) -> torch.Tensor:
    """``(N, across, period)`` crops of the real textures, for grain that tiles with the stripe period."""
    return _texture_crops(g, n, across, period, torch.full((n,), 3.0))


def _flame(cfg: SceneConfig, g: torch.Generator, n: int, device=None):
    """A soft orange blob whose brightness flickers once per loop: colours ``(N, T, 3, H, W)``, alpha."""
    S, T = cfg.size, cfg.frames
    r = S * 0.12
    cy, cx = (r + _rand(g, n, device=device) * (S - 2 * r)), (r + _rand(g, n, device=device) * (S - 2 * r))
    ar = torch.arange(S, dtype=torch.float32, device=device)
    yy, xx = torch.meshgrid(ar, ar, indexing="ij")
    d2 = (yy[None] - cy[:, None, None]) ** 2 + ((xx[None] - cx[:, None, None]) * 1.4) ** 2  # taller than wide
    alpha = torch.clamp(1.5 - d2.sqrt() / r, 0, 1)  # (N, H, W) soft disc
    t = torch.arange(T, dtype=torch.float32, device=device)
    phase = _rand(g, n, device=device) * 2 * math.pi
    bright = 0.55 + 0.45 * torch.cos(2 * math.pi * t[None] / T + phase[:, None])  # (N, T)
    color = torch.tensor([1.0, 0.55, 0.1], device=device)
    img = color[None, None, :, None, None] * bright[:, :, None, None, None]  # (N, T, 3, 1, 1)
    return img.expand(n, T, 3, S, S), alpha[:, None, None].expand(n, T, 1, S, S), (alpha > 0).float()[:, None]


def _branch(cfg: SceneConfig, g: torch.Generator, n: int, device=None):
    """A dark bar rocking about its base, one swing per loop."""
    S, T = cfg.size, cfg.frames
    length, thick = S * 0.35, max(1.0, S / 24)
    by, bx = S * (0.55 + 0.4 * _rand(g, n, device=device)), S * (0.15 + 0.7 * _rand(g, n, device=device))  # base
    t = torch.arange(T, dtype=torch.float32, device=device)
    swing = _rand(g, n, device=device)[:, None] * 6.28
    angle = -math.pi / 2 + 0.35 * torch.sin(2 * math.pi * t[None] / T + swing)  # (N, T)
    ey, ex = by[:, None] + length * torch.sin(angle), bx[:, None] + length * torch.cos(angle)  # tip (N, T)
    ar = torch.arange(S, dtype=torch.float32, device=device)
    yy, xx = torch.meshgrid(ar, ar, indexing="ij")
    py, px = yy[None, None] - by[:, None, None, None], xx[None, None] - bx[:, None, None, None]  # (N, 1, H, W)
    dy, dx = (ey - by[:, None])[..., None, None], (ex - bx[:, None])[..., None, None]  # (N, T, 1, 1)
    u = torch.clamp((py * dy + px * dx) / (dy**2 + dx**2), 0, 1)
    dist = ((py - u * dy) ** 2 + (px - u * dx) ** 2).sqrt()  # (N, T, H, W) distance to the segment
    alpha = torch.clamp(thick + 0.5 - dist, 0, 1)
    color = torch.tensor([0.25, 0.16, 0.08], device=device)
    img = color[None, None, :, None, None].expand(n, T, 3, S, S)
    return img, alpha[:, :, None], (alpha.amax(1) > 0).float()[:, None]


# ----------------------------------------------------------------------------- generator


def make_scenes(
    n: int,
    config: Optional[SceneConfig] = None,
    seed: int = 0,
    labels: Optional[Union[Sequence[int], torch.Tensor]] = None,
    device: Union[str, torch.device, None] = None,
    **overrides,
) -> Scenes:
    """Generate ``n`` looping scenes, deterministically from ``seed``.

    ``config`` (or keyword ``overrides`` of its fields, e.g. ``size=64``) sets their content;
    ``labels`` fixes the motion classes (default: uniformly random). ``device`` renders them there
    (default the CPU): the random draws are made on the CPU either way, so a GPU renders the same
    scenes, and a training loop that makes a batch per step does not wait for the host. Returns
    :class:`Scenes` (on ``device``; ``labels`` too).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if labels is None:
        n = cap_items(n)  # a rehearsal (ANIMLIB_CAP_ITEMS) renders a few
    cfg = replace(config or SceneConfig(), **overrides).validate()
    g = torch.Generator().manual_seed(int(seed))
    if labels is None:
        lab = torch.randint(cfg.num_classes, (n,), generator=g)
    else:
        lab = torch.as_tensor(labels, dtype=torch.long)
        if lab.shape != (n,) or lab.min() < 0 or lab.max() >= cfg.num_classes:
            raise ValueError(f"labels must be {n} ints in [0, {cfg.num_classes}), got {labels!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    reverses = torch.zeros(n, dtype=torch.bool)
    if cfg.reverse > 0:
        reverses = torch.rand(n, generator=g) < cfg.reverse
    half = torch.arange(cfg.frames) >= cfg.frames // 2
    step_label = torch.where(reverses[:, None] & half[None], opposite_class(lab)[:, None], lab[:, None])  # (N, T)
    if cfg.background == "texture":
        bg = _texture_background(g, n, cfg.size, dev)  # (N, 3, H, W)
    else:
        bg = _background(g, n, cfg.size, cfg.block, dev)
    stripes, mask, velocity = _water(cfg, g, n, lab, dev, reverses)
    frames = torch.where(mask[:, None].bool(), stripes, bg[:, None])  # (N, T, 3, H, W)
    for extra in cfg.extras:
        img, alpha, m = (_flame if extra == "flame" else _branch)(cfg, g, n, dev)
        frames = frames * (1 - alpha) + img * alpha
        mask = torch.maximum(mask, m)
    return Scenes(frames.clamp_(0, 1), mask, lab.to(dev), velocity, cfg, step_label.to(dev))


class SceneStream:
    """Fresh training batches on demand: ``stream(step)`` is the batch for that step.

    Deterministic per ``(seed, step)``, so a resumed run sees the same data; pass it to
    ``Trainer.fit`` as ``data``. Seeds ``>= 10**6`` apart never collide with held-out sets made
    with small seeds.
    """

    def __init__(self, batch_size: int, config: Optional[SceneConfig] = None, seed: int = 0,
                 device: Union[str, torch.device, None] = None, **overrides):
        self.batch_size = batch_size
        self.config = replace(config or SceneConfig(), **overrides).validate()
        self.seed = seed
        self.device = device  # where the batches are rendered (see make_scenes)

    def __call__(self, step: int) -> Dict[str, torch.Tensor]:
        s = make_scenes(self.batch_size, self.config, seed=10**6 * (1 + self.seed) + int(step), device=self.device)
        return s.as_dict()


# ----------------------------------------------------------------------------- real clips


def motion_mask_from_clip(clip: torch.Tensor, threshold: float = 0.04) -> torch.Tensor:
    """Estimate where a clip ``(T, C, H, W)`` moves: temporal std (max over channels) > threshold."""
    if clip.dim() != 4:
        raise ValueError(f"clip must be (T, C, H, W), got shape {tuple(clip.shape)}")
    return (clip.std(0).amax(0, keepdim=True) > threshold).float()  # (1, H, W)


