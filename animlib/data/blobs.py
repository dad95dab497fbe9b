"""Moving Gaussian blobs: the smallest video data set with known motion (chapter 0's toy task).

Each clip shows one soft blob that moves with a constant integer velocity and bounces off the
borders. The ground truth (positions and velocity) comes with the frames, so a next-frame
predictor can be checked against the exact answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..rehearsal import cap_items

__all__ = ["BlobClips", "moving_blobs"]


@dataclass
class BlobClips:
    """A batch of clips: ``frames`` (N, T, 1, S, S) in [0, 1], ``positions`` (N, T, 2) as (row, col),
    ``velocity`` (N, 2) in pixels per frame at the start (its sign flips at a bounce)."""

    frames: torch.Tensor
    positions: torch.Tensor
    velocity: torch.Tensor


def _reflect(p: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Fold positions back into [lo, hi] as a ball bouncing off two walls would be."""
    span = hi - lo
    q = torch.remainder(p - lo, 2 * span)
    return lo + torch.where(q > span, 2 * span - q, q)


def moving_blobs(n: int, frames: int = 8, size: int = 16, sigma: float = 1.5, max_speed: int = 1,
                 seed: int = 0) -> BlobClips:
    """``n`` clips of ``frames`` frames, ``size``×``size`` pixels, deterministic in ``seed``.

    Velocities are integers in ``[-max_speed, max_speed]`` per axis (zero allowed: a still blob is a
    valid clip); blobs bounce off a margin of ``2·sigma`` pixels from the border.
    """
    if n < 1 or frames < 2 or size < 8:
        raise ValueError(f"need n >= 1, frames >= 2 and size >= 8; got n={n}, frames={frames}, size={size}")
    n = cap_items(n)  # a rehearsal (ANIMLIB_CAP_ITEMS) makes a few
    g = torch.Generator().manual_seed(seed)
    lo, hi = 2 * sigma, size - 1 - 2 * sigma
    start = lo + torch.rand(n, 2, generator=g) * (hi - lo)  # (N, 2)
    vel = torch.randint(-max_speed, max_speed + 1, (n, 2), generator=g).float()  # (N, 2)
    t = torch.arange(frames).float()  # (T,)
    pos = _reflect(start[:, None, :] + vel[:, None, :] * t[None, :, None], lo, hi)  # (N, T, 2)
    grid = torch.arange(size).float()
    dr = (grid[None, None, :] - pos[..., 0:1]) ** 2  # (N, T, S)
    dc = (grid[None, None, :] - pos[..., 1:2]) ** 2  # (N, T, S)
    img = torch.exp(-(dr[..., :, None] + dc[..., None, :]) / (2 * sigma**2))  # (N, T, S, S)
    return BlobClips(frames=img[:, :, None], positions=pos, velocity=vel)
