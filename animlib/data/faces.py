"""Synthetic faces with known identity and motion.

Latent-difference video (Vysotsky & Demichev 2024, the source of chapters 5-6) claims that a VAE
separates *who* is in a picture from *how* they move. To measure that claim offline we need faces
whose identity and motion are known exactly. :func:`render_faces` draws them from two parameter
vectors, in torch, batched and anti-aliased at any size:

- **identity** (8 numbers in [0, 1], :data:`IDENTITY_NAMES`): face width and height, skin tone,
  hair colour, hair length (fringe depth), eye spacing, eye size, background hue;
- **motion** (5 numbers, :data:`MOTION_NAMES`): head yaw and pitch in [-1, 1] (the head shifts a
  little and the features shift more, a cheap parallax), mouth opening and eye blink in [0, 1],
  and smile in [-1, 1] (mouth curvature and brow height).

The face fills the frame and the eyes and mouth are large and high-contrast (white eyes with big
dark pupils and a dark lid line, a dark open mouth): a small VAE loses a blink or a mouth that is
only a pixel or two tall.

Edges are anti-aliased analytically: every shape has an approximate signed distance ``d`` (in image
units) and covers a pixel with ``alpha = clamp(1/2 - d / pixel, 0, 1)``, so the same parameters
give the same face at 32, 64 or 128 pixels.

The module also provides :class:`SyntheticFaces` (a dataset of random faces with their
parameters), :func:`face_clips` (moving/talking clips: identity fixed, motion animated),
and :func:`random_blur` (augmentation). The real faces that ``data_scripts/imdb_wiki.py`` and
``data_scripts/voxceleb.py`` prepare are read by :class:`animlib.data.prepared.RealFaces` and
:class:`animlib.data.prepared.FaceVideos`. The CNN that
reads the parameters back from an image, to *score* generated videos, is
:mod:`animlib.face_regressor`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Tuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..rehearsal import cap_items
from .images import hsv_to_rgb, to_float, to_uint8

__all__ = [
    "IDENTITY_NAMES",
    "MOTION_NAMES",
    "MOTION_RANGES",
    "sample_identity",
    "sample_motion",
    "render_faces",
    "face_landmarks",
    "motion_to_unit",
    "unit_to_motion",
    "SyntheticFaces",
    "FaceClips",
    "face_clips",
    "random_blur",
    "as_generator",
]

#: Identity parameters, each in [0, 1].
IDENTITY_NAMES: Tuple[str, ...] = (
    "face_width", "face_height", "skin_tone", "hair_color", "hair_length", "eye_spacing", "eye_size",
    "background",
)
#: Motion parameters (ranges in :data:`MOTION_RANGES`).
MOTION_NAMES: Tuple[str, ...] = ("yaw", "pitch", "mouth", "blink", "smile")
#: (low, high) of each motion parameter.
MOTION_RANGES: Tuple[Tuple[float, float], ...] = ((-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0), (0.0, 1.0), (-1.0, 1.0))

_SKIN = torch.tensor([[0.99, 0.86, 0.74], [0.86, 0.64, 0.48], [0.62, 0.42, 0.28], [0.40, 0.26, 0.17]])
_HAIR = torch.tensor([[0.07, 0.05, 0.04], [0.40, 0.24, 0.12], [0.70, 0.30, 0.10], [0.95, 0.82, 0.45]])


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _palette(table: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear colour ramp through the rows of ``table`` at ``u`` in [0, 1] -> (B, 3)."""
    table = table.to(u.device, u.dtype)
    pos = u.clamp(0, 1) * (table.shape[0] - 1)  # (B,)
    i0 = pos.floor().long().clamp(max=table.shape[0] - 2)
    w = (pos - i0.to(pos.dtype)).unsqueeze(1)  # (B, 1)
    return table[i0] * (1 - w) + table[i0 + 1] * w  # (B, 3)


def _ellipse_alpha(x, y, cx, cy, a, b, pixel: float) -> torch.Tensor:
    """Anti-aliased coverage of the ellipse ((x-cx)/a)² + ((y-cy)/b)² <= 1.

    The signed distance is approximated to first order, ``d ≈ (q - 1) / |∇q|`` with
    ``q = sqrt(((x-cx)/a)² + ((y-cy)/b)²)``; exact on the boundary, which is all anti-aliasing needs.
    """
    dx, dy = (x - cx) / a, (y - cy) / b  # (B, H, W)
    q = torch.sqrt(dx * dx + dy * dy + 1e-12)
    grad = torch.sqrt((dx / a) ** 2 + (dy / b) ** 2 + 1e-12) / q
    d = (q - 1) / grad
    return torch.clamp(0.5 - d / pixel, 0.0, 1.0)


def _below_alpha(y, y_line, pixel: float) -> torch.Tensor:
    """Anti-aliased coverage of the half-plane ``y <= y_line`` (image y points down)."""
    return torch.clamp(0.5 - (y - y_line) / pixel, 0.0, 1.0)


def _over(img: torch.Tensor, color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Paint ``colour`` (B, 3) over ``img`` (B, 3, H, W) with coverage ``alpha`` (B, H, W)."""
    a = alpha.unsqueeze(1)  # (B, 1, H, W)
    return img * (1 - a) + color[:, :, None, None] * a


def _col(b: torch.Tensor) -> torch.Tensor:
    return b[:, None, None]  # (B,) -> (B, 1, 1) for broadcasting over (H, W)


def as_generator(seed: Union[int, torch.Generator, None]) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (``None``: 0); a generator is returned as it is."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


# ----------------------------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------------------------
def sample_identity(n: int, generator: Union[int, torch.Generator, None] = None) -> torch.Tensor:
    """``n`` random identities, uniform in [0, 1]^8 -> (n, 8) (order: :data:`IDENTITY_NAMES`)."""
    return torch.rand(n, len(IDENTITY_NAMES), generator=as_generator(generator))


def sample_motion(n: int, generator: Union[int, torch.Generator, None] = None) -> torch.Tensor:
    """``n`` random poses/expressions -> (n, 5), uniform in :data:`MOTION_RANGES`.

    Blinks are drawn half the time fully open (0) so that open eyes, the common state, dominate.
    """
    g = as_generator(generator)
    u = torch.rand(n, len(MOTION_NAMES), generator=g)
    open_eyes = torch.rand(n, generator=g) < 0.5
    u[:, 3] = torch.where(open_eyes, torch.zeros_like(u[:, 3]), u[:, 3])
    return unit_to_motion(u)


def motion_to_unit(motion: torch.Tensor) -> torch.Tensor:
    """Map motion parameters (..., 5) from :data:`MOTION_RANGES` to [0, 1]."""
    lo = motion.new_tensor([r[0] for r in MOTION_RANGES])
    hi = motion.new_tensor([r[1] for r in MOTION_RANGES])
    return (motion - lo) / (hi - lo)


def unit_to_motion(u: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`motion_to_unit`."""
    lo = u.new_tensor([r[0] for r in MOTION_RANGES])
    hi = u.new_tensor([r[1] for r in MOTION_RANGES])
    return lo + u * (hi - lo)


def _check_params(identity: torch.Tensor, motion: torch.Tensor) -> None:
    if identity.ndim != 2 or identity.shape[1] != len(IDENTITY_NAMES):
        raise ValueError(
            f"identity must have shape (B, {len(IDENTITY_NAMES)}) with columns {IDENTITY_NAMES}; got "
            f"{tuple(identity.shape)}. Use sample_identity(B) to make one."
        )
    if motion.ndim != 2 or motion.shape[1] != len(MOTION_NAMES):
        raise ValueError(
            f"motion must have shape (B, {len(MOTION_NAMES)}) with columns {MOTION_NAMES}; got "
            f"{tuple(motion.shape)}. Use sample_motion(B) to make one."
        )
    if identity.shape[0] != motion.shape[0]:
        raise ValueError(f"identity has {identity.shape[0]} rows but motion has {motion.shape[0]}; give one of each per face.")


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------
def _render_chunk(identity: torch.Tensor, motion: torch.Tensor, size: int) -> torch.Tensor:
    B = identity.shape[0]
    dev, dt = identity.device, identity.dtype
    pixel = 2.0 / size
    coords = (torch.arange(size, device=dev, dtype=dt) + 0.5) * pixel - 1.0  # pixel centres in [-1, 1]
    y, x = torch.meshgrid(coords, coords, indexing="ij")  # (H, W) each; y points down
    x, y = x.unsqueeze(0), y.unsqueeze(0)  # (1, H, W)

    fw, fh, skin_u, hair_u, hair_len, eye_sp, eye_sz, bg_u = identity.unbind(1)  # (B,) each
    yaw, pitch, mouth, blink, smile = motion.unbind(1)

    a = 0.74 + 0.14 * fw  # face half-width
    b = 0.84 + 0.10 * fh  # face half-height
    head_x, head_y = 0.08 * yaw, 0.05 * pitch + 0.06  # the head moves a little ...
    feat_x, feat_y = head_x + 0.26 * yaw, head_y + 0.16 * pitch  # ... the features more (parallax)

    skin = _palette(_SKIN, skin_u)  # (B, 3)
    hair = _palette(_HAIR, hair_u)
    shade = skin * 0.78  # nose, lids' crease
    bg = hsv_to_rgb(bg_u, 0.4, 0.85)  # (B, 3): a muted colour of hue bg_u

    img = bg[:, :, None, None].expand(B, 3, size, size).clone()  # (B, 3, H, W)
    # hair behind the head, then the face
    img = _over(img, hair, _ellipse_alpha(x, y, _col(head_x), _col(head_y - 0.08), _col(a * 1.1), _col(b * 1.06), pixel))
    face = _ellipse_alpha(x, y, _col(head_x), _col(head_y), _col(a), _col(b), pixel)  # (B, H, W)
    img = _over(img, skin, face)
    # fringe: the hair covers the top of the face down to a line that dips with the hair length
    fringe_y = head_y - b + (0.25 + 0.30 * hair_len) * b  # (B,)
    fringe_line = _col(fringe_y) + 0.10 * ((x - _col(head_x)) / _col(a)) ** 2
    img = _over(img, hair, face * _below_alpha(y, fringe_line, pixel))

    # nose: a shaded ellipse that moves with the features
    img = _over(img, shade, _ellipse_alpha(x, y, _col(feat_x * 1.1), _col(feat_y + 0.16), 0.07, 0.12, pixel))

    # eyes: white, a big dark pupil, a lid (skin) that closes with the blink and a dark lid line
    ex = 0.25 + 0.13 * eye_sp  # half the distance between eye centres
    rx = 0.15 + 0.06 * eye_sz  # eye half-width
    ry = 0.8 * rx
    ey = feat_y - 0.16
    brow_y = ey - ry - 0.08 - 0.07 * smile
    white = torch.ones(B, 3, device=dev, dtype=dt) * 0.98
    dark = torch.ones(B, 3, device=dev, dtype=dt) * 0.05
    for side in (-1.0, 1.0):
        cx = feat_x + side * ex
        eye = _ellipse_alpha(x, y, _col(cx), _col(ey), _col(rx), _col(ry), pixel)
        img = _over(img, white, eye)
        pupil = _ellipse_alpha(x, y, _col(cx + 0.25 * rx * yaw), _col(ey), _col(0.65 * ry), _col(0.65 * ry), pixel)
        img = _over(img, dark, eye * pupil)
        lid_y = ey - ry + 2 * ry * blink  # (B,) the lid's edge: top of the eye when open
        img = _over(img, skin, eye * _below_alpha(y, _col(lid_y), pixel))
        lid_line = _ellipse_alpha(x, y, _col(cx), _col(lid_y), _col(rx * 1.05), _col(torch.full_like(rx, 0.045)), pixel)
        img = _over(img, dark, lid_line * _ellipse_alpha(x, y, _col(cx), _col(ey), _col(rx * 1.08), _col(ry * 1.25), pixel))
        # brow, in the hair colour, raised by a smile
        img = _over(img, hair * 0.7, _ellipse_alpha(x, y, _col(cx), _col(brow_y), _col(rx * 1.1), 0.04, pixel))

    # mouth: a dark ellipse around a curved centre line (corners up for a smile), opened by `mouth`
    mw = (0.30 + 0.04 * fw) * (1 + 0.15 * smile)  # a smile also widens the mouth
    my = feat_y + 0.46
    bend = 0.20 * smile
    center = _col(my) + _col(bend) * (1 - ((x - _col(feat_x)) / _col(mw)) ** 2).clamp(min=0) - _col(bend) * 0.5
    mh = 0.045 + 0.18 * mouth
    mouth_color = torch.tensor([0.35, 0.04, 0.07], device=dev, dtype=dt).expand(B, 3)
    dx, dy = (x - _col(feat_x)) / _col(mw), (y - center) / _col(mh)
    q = torch.sqrt(dx * dx + dy * dy + 1e-12)
    grad = torch.sqrt((dx / _col(mw)) ** 2 + (dy / _col(mh)) ** 2 + 1e-12) / q
    img = _over(img, mouth_color, torch.clamp(0.5 - (q - 1) / grad / pixel, 0, 1))
    return img.clamp(0.0, 1.0)


def render_faces(identity: torch.Tensor, motion: torch.Tensor, size: int = 64, chunk: int = 1024) -> torch.Tensor:
    """Draw faces from identity (B, 8) and motion (B, 5) parameters -> images (B, 3, size, size) in [0, 1].

    Deterministic: the same parameters always give the same pixels. Rendering runs on the
    parameters' device in chunks of ``chunk`` faces to bound memory.
    """
    _check_params(identity, motion)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}.")
    identity, motion = identity.float(), motion.float().to(identity.device)
    out = [_render_chunk(identity[i : i + chunk], motion[i : i + chunk], size) for i in range(0, identity.shape[0], chunk)]
    return torch.cat(out) if out else identity.new_zeros(0, 3, size, size)


# ----------------------------------------------------------------------------------------------
# landmarks: the same geometry as the renderer, in the 68-point layout of real-face detectors
# ----------------------------------------------------------------------------------------------
def face_landmarks(identity: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """The 68 facial landmarks of the faces :func:`render_faces` draws -> (B, 68, 2) as (x, y) in [-1, 1].

    The points follow the iBUG-300W layout that dlib's 68-point model (and most landmark
    detectors) use, so synthetic and real faces share one representation
    (:mod:`animlib.data.landmarks` rasterises both): 0-16 jaw (image left to right, round the
    chin), 17-21 and 22-26 brows, 27-30 the nose bridge and 31-35 its base, 36-41 and 42-47 the
    eyes (outer/inner corner, two upper-lid points, corner, two lower-lid points, clockwise), 48-59
    the outer and 60-67 the inner lip contour. Coordinates are the renderer's: x to the right, y
    down, the image spanning [-1, 1]. They are computed from the same formulas as the pixels, so a
    blink moves the upper-lid points down onto the lower lid and an open mouth separates the lips.
    """
    _check_params(identity, motion)
    identity, motion = identity.float(), motion.float().to(identity.device)
    fw, fh, _, _, _, eye_sp, eye_sz, _ = identity.unbind(1)  # (B,) each
    yaw, pitch, mouth, blink, smile = motion.unbind(1)
    dev = identity.device
    a, b = 0.74 + 0.14 * fw, 0.84 + 0.10 * fh
    head_x, head_y = 0.08 * yaw, 0.05 * pitch + 0.06
    feat_x, feat_y = head_x + 0.26 * yaw, head_y + 0.16 * pitch

    def pts(x, y):  # (B, n) each -> (B, n, 2)
        return torch.stack([x, y], dim=2)

    col = lambda v: v[:, None]  # noqa: E731 - (B,) -> (B, 1)
    # jaw: the face ellipse from the left ear level round the chin to the right
    phi = math.pi * (1 - torch.arange(17, device=dev) / 16.0)  # (17,) pi -> 0, through pi/2 (the chin)
    jaw = pts(col(head_x) + col(a) * torch.cos(phi), col(head_y) + col(b) * torch.sin(phi))
    ex, rx = 0.25 + 0.13 * eye_sp, 0.15 + 0.06 * eye_sz
    ry, ey = 0.8 * rx, feat_y - 0.16
    brow_y = ey - ry - 0.08 - 0.07 * smile
    t5 = torch.linspace(-1, 1, 5, device=dev)  # (5,)
    brows, eyes = [], []
    lid_y = ey - ry + 2 * ry * blink  # the upper lid's edge, as drawn
    for side in (-1.0, 1.0):
        cx = feat_x + side * ex
        brows.append(pts(col(cx) + 1.1 * col(rx) * t5, col(brow_y) - 0.04 * torch.sqrt(1 - t5 ** 2)))
        k = math.sqrt(8.0 / 9.0)  # the ellipse's height at a third of its half-width
        top, bottom = ey - ry * k, ey + ry * k
        upper = torch.minimum(torch.maximum(top, lid_y), bottom)
        xs = torch.stack([cx - rx, cx - rx / 3, cx + rx / 3, cx + rx, cx + rx / 3, cx - rx / 3], 1)  # (B, 6)
        ys = torch.stack([ey, upper, upper, ey, bottom, bottom], 1)
        eyes.append(torch.stack([xs, ys], 2))
    nose_x, nose_y = feat_x * 1.1, feat_y + 0.16
    bridge = pts(col(nose_x).expand(-1, 4), col(ey) + (col(nose_y) + 0.10 - col(ey)) * torch.linspace(0, 1, 4, device=dev))
    base = pts(col(nose_x) + 0.07 * t5, col(nose_y) + 0.10 + 0.02 * (1 - t5.abs()))
    # mouth: the renderer's dark ellipse around a bent centre line
    mw = (0.30 + 0.04 * fw) * (1 + 0.15 * smile)
    my, bend, mh = feat_y + 0.46, 0.20 * smile, 0.045 + 0.18 * mouth

    def lip(t, sign, scale):  # t (n,) in [-1, 1] along the mouth; sign -1 upper, +1 lower
        x = col(feat_x) + col(mw) * t
        center = col(my) + col(bend) * (1 - t ** 2) - col(bend) * 0.5
        return pts(x, center + sign * scale * col(mh) * torch.sqrt((1 - t ** 2).clamp(min=0)))

    tt = lambda *v: torch.tensor(v, device=dev)  # noqa: E731
    outer = torch.cat([lip(tt(-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1), -1, 1.0), lip(tt(2 / 3, 1 / 3, 0, -1 / 3, -2 / 3), 1, 1.0)], 1)
    inner = torch.cat([lip(tt(-0.8), 0, 0.0), lip(tt(-0.4, 0, 0.4), -1, 0.5), lip(tt(0.8), 0, 0.0),
                       lip(tt(0.4, 0, -0.4), 1, 0.5)], 1)
    return torch.cat([jaw, brows[0], brows[1], bridge, base, eyes[0], eyes[1], outer, inner], 1)  # (B, 68, 2)


# ----------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------
class SyntheticFaces(Dataset):
    """``n`` random faces (random identity × random motion), rendered once and kept in memory.

    Items are ``(image (3, H, W), identity (8,), motion (5,))``; the whole set is also available as
    the tensors :attr:`images`, :attr:`identity`, :attr:`motion`. Deterministic from ``seed``.
    ``uint8=True`` stores the images as bytes (4× less memory for large sets; items are still
    float in [0, 1]). ``device`` renders there (e.g. a GPU, much faster for large sets); the
    stored tensors always live on the CPU, ready for a ``DataLoader``.
    """

    def __init__(self, n: int, size: int = 64, seed: int = 0, uint8: bool = False, device=None):
        if n < 1:
            raise ValueError(f"n must be a positive number of faces, got {n}.")
        g = as_generator(seed)
        self.identity = sample_identity(n, g)  # (n, 8); sampled on the CPU so data do not depend on the device
        self.motion = sample_motion(n, g)  # (n, 5)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        chunks = []
        for i in range(0, n, 4096):
            img = render_faces(self.identity[i : i + 4096].to(dev), self.motion[i : i + 4096].to(dev), size)
            chunks.append((to_uint8(img) if uint8 else img).cpu())  # img is in [0, 1]: the clamp changes nothing
        self.images = torch.cat(chunks)  # (n, 3, H, W), float in [0, 1] or bytes

    def __len__(self) -> int:
        return self.images.shape[0]

    def image(self, i) -> torch.Tensor:
        """Image(s) ``i`` as float in [0, 1]."""
        x = self.images[i]
        return to_float(x) if x.dtype == torch.uint8 else x

    def __getitem__(self, i: int):
        return self.image(i), self.identity[i], self.motion[i]


class FaceClips(NamedTuple):
    """Clips from :func:`face_clips`: ``video`` (N, T, 3, H, W), ``identity`` (N, 8), ``motion`` (N, T, 5)."""

    video: torch.Tensor
    identity: torch.Tensor
    motion: torch.Tensor


def face_clips(n: int, frames: int = 16, size: int = 64, seed: int = 0) -> FaceClips:
    """``n`` moving, talking faces: each clip keeps one identity and animates the motion.

    Yaw, pitch and smile follow slow sinusoids (0.4-1.2 cycles per clip, random phase and
    amplitude), the mouth opens and closes faster (talking, 1-3 cycles), and the eyes blink once or
    twice (a 2-3 frame pulse). Deterministic from ``seed``.
    """
    if n < 1 or frames < 2:
        raise ValueError(f"need n >= 1 clips of frames >= 2; got n={n}, frames={frames}.")
    n = cap_items(n)  # a rehearsal (ANIMLIB_CAP_ITEMS) makes a few
    g = as_generator(seed)
    identity = sample_identity(n, g)  # (n, 8)
    t = torch.linspace(0, 1, frames).unsqueeze(0)  # (1, T)

    def wave(lo_cycles, hi_cycles, amp_lo, amp_hi):
        f = lo_cycles + (hi_cycles - lo_cycles) * torch.rand(n, 1, generator=g)
        ph = 2 * math.pi * torch.rand(n, 1, generator=g)
        amp = amp_lo + (amp_hi - amp_lo) * torch.rand(n, 1, generator=g)
        return amp * torch.sin(2 * math.pi * f * t + ph)  # (n, T)

    yaw = wave(0.4, 1.2, 0.6, 1.0)
    pitch = wave(0.4, 1.2, 0.5, 1.0)
    smile = wave(0.3, 1.0, 0.5, 1.0)
    mouth = (0.5 + wave(1.0, 3.0, 0.3, 0.5)).clamp(0, 1)
    blink = torch.zeros(n, frames)
    for k in range(2):
        center = torch.rand(n, 1, generator=g) * frames
        on = (torch.rand(n, 1, generator=g) < (1.0 if k == 0 else 0.5)).float()
        tt = torch.arange(frames).unsqueeze(0).float()
        blink = torch.maximum(blink, on * torch.exp(-0.5 * ((tt - center) / 0.8) ** 2))
    motion = torch.stack([yaw, pitch, mouth, blink, smile], dim=2)  # (n, T, 5)
    flat_id = identity.unsqueeze(1).expand(n, frames, -1).reshape(n * frames, -1)
    video = render_faces(flat_id, motion.reshape(n * frames, -1), size).reshape(n, frames, 3, size, size)
    return FaceClips(video, identity, motion)


# ----------------------------------------------------------------------------------------------
# augmentation: the softer images a VAE decodes
# ----------------------------------------------------------------------------------------------
def random_blur(x: torch.Tensor, max_sigma: float = 1.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blur each image (B, C, H, W) with a Gaussian of random sigma in [0, max_sigma] pixels.

    Used as augmentation so that a regressor trained on crisp renders also reads the softer
    images a VAE decodes. ``x`` may live on any device: the sigmas are drawn on the generator's
    device (the CPU without one) and the blur runs on ``x``'s.
    """
    B, C, H, W = x.shape
    gen_device = generator.device if generator is not None else torch.device("cpu")
    sigma = torch.rand(B, generator=generator, device=gen_device).to(x.device) * max_sigma + 1e-3  # (B,)
    r = 3
    k = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)  # (K,)
    w = torch.exp(-0.5 * (k[None] / sigma[:, None].to(x.dtype)) ** 2)
    w = w / w.sum(1, keepdim=True)  # (B, K)
    xp = F.pad(x.reshape(1, B * C, H, W), (r, r, r, r), mode="replicate")
    wk = w.repeat_interleave(C, 0)  # (B*C, K)
    out = F.conv2d(xp, wk[:, None, None, :], groups=B * C)  # horizontal pass
    out = F.conv2d(out, wk[:, None, :, None], groups=B * C)  # vertical pass
    return out.reshape(B, C, H, W)
