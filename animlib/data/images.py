"""Still images made or shipped locally: sample photographs and a painterly style image.

- :func:`sample_image`: scikit-image's sample photographs (shipped with the package, no download),
  resized or centre-cropped for the style chapters.
- :func:`brushstroke_painting`: a style image drawn on the spot from a seeded flow field (no image
  file or licence involved).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

__all__ = ["SAMPLE_PHOTOS", "sample_image", "brushstroke_painting"]


SAMPLE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)


def sample_image(name: str, short_side: int | None = None, size: Tuple[int, int] | None = None) -> Tensor:
    """A scikit-image sample photograph (shipped with the package, no download) as ``(3, H, W)`` in [0, 1].

    ``short_side`` resizes (antialiased) so the shorter side has that many pixels and both sides are
    multiples of 4 (what :class:`animlib.fast_style.TransformerNet` needs). ``size=(H, W)`` instead crops the centre to
    that aspect ratio and resizes to exactly ``(H, W)`` (e.g. the source's 512x640). Gray images are
    repeated to 3 channels.
    """
    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"skimage.data has no image {name!r}; try one of {SAMPLE_PHOTOS}")
    a = np.asarray(loader())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    x = torch.from_numpy(a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0))
    x = x[..., None].expand(-1, -1, 3) if x.dim() == 2 else x[..., :3]  # (H, W, 3), alpha dropped
    x = x.permute(2, 0, 1).contiguous()  # (3, H, W)
    if size is not None:
        if short_side is not None:
            raise ValueError("pass short_side or size, not both")
        th, tw = int(size[0]), int(size[1])
        h, w = x.shape[-2:]
        ch, cw = (h, round(h * tw / th)) if h * tw <= w * th else (round(w * th / tw), w)  # centre crop
        top, left = (h - ch) // 2, (w - cw) // 2
        x = x[:, top : top + ch, left : left + cw]
        x = F.interpolate(x[None], size=(th, tw), mode="bilinear", antialias=True, align_corners=False)[0]
    elif short_side is not None:
        h, w = x.shape[-2:]
        scale = short_side / min(h, w)
        hw = (max(4, round(h * scale) // 4 * 4), max(4, round(w * scale) // 4 * 4))
        x = F.interpolate(x[None], size=hw, mode="bilinear", antialias=True, align_corners=False)[0]
    return x.clamp(0.0, 1.0)


def brushstroke_painting(
    size: Tuple[int, int] = (256, 256), seed: int = 0, strokes: int | None = None
) -> Tensor:
    """A painterly style image made on the spot: short brush strokes that follow swirling currents.

    Blue and ultramarine strokes swirl around a few vortices where warm yellow strokes gather,
    above a darker band of horizontal strokes (an homage to a famous night sky, drawn from a seeded
    random flow field, so no image file or licence is involved). Returns ``(3, H, W)`` in [0, 1].
    ``strokes`` defaults to about one stroke per 18 pixels.
    """
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least 8x8, got {size}")
    rng = np.random.default_rng(seed)
    # A swirling flow field: a few vortices plus a gentle horizontal drift.
    centres = rng.uniform([0.1 * w, 0.05 * h], [0.9 * w, 0.6 * h], size=(4, 2))
    spins = rng.choice([-1.0, 1.0], size=4) * rng.uniform(0.6, 1.2, size=4)
    radii = rng.uniform(0.12, 0.25, size=4) * min(h, w)

    def flow(x, y):
        vx, vy = 1.0, 0.15 * np.sin(y / h * 6.0)
        for (cx, cy), s, r in zip(centres, spins, radii):
            dx, dy = x - cx, y - cy
            d2 = dx * dx + dy * dy
            k = s * np.exp(-d2 / (2 * r * r)) * 3.0
            vx += -dy / r * k
            vy += dx / r * k
        n = np.hypot(vx, vy) + 1e-6
        return vx / n, vy / n

    sky = np.array([[18, 40, 110], [35, 75, 160], [70, 120, 200], [120, 170, 220]], float)
    warm = np.array([[240, 200, 60], [250, 230, 120], [220, 150, 40]], float)
    ground = np.array([[20, 35, 60], [40, 60, 40], [60, 50, 30]], float)
    img = Image.new("RGB", (w, h), (25, 45, 100))
    draw = ImageDraw.Draw(img)
    n = strokes or int(2.2 * h * w / 40)
    horizon = 0.72 * h
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if y > horizon:
            base = ground[rng.integers(len(ground))]
        else:
            near_vortex = min(np.hypot(x - cx, y - cy) / r for (cx, cy), r in zip(centres, radii))
            p_warm = 0.55 * np.exp(-(near_vortex**2)) + 0.04
            base = warm[rng.integers(len(warm))] if rng.random() < p_warm else sky[rng.integers(len(sky))]
        col = tuple(int(v) for v in np.clip(base + rng.normal(0, 14, 3), 0, 255))
        length = rng.uniform(6, 16) * min(h, w) / 256
        width = max(1, int(round(rng.uniform(2, 4) * min(h, w) / 256)))
        pts = [(x, y)]
        for _ in range(4):
            vx, vy = flow(x, y)
            if y > horizon:
                vx, vy = 1.0, 0.0
            x, y = x + vx * length / 4, y + vy * length / 4
            pts.append((x, y))
        draw.line(pts, fill=col, width=width, joint="curve")
    img = img.filter(ImageFilter.SMOOTH)
    return torch.from_numpy(np.asarray(img).astype(np.float32) / 255).permute(2, 0, 1)
