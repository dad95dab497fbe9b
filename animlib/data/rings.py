"""Points on a ring of Gaussians: the 2-D data of chapter 6's toy GAN, with its ground truth.

An equal mixture of ``modes`` Gaussians spaced evenly on a circle (:func:`ring_mixture`). Its
modes are known (:func:`ring_centers`), so :func:`modes_covered` can say exactly how many of
them a generator reaches: the classic picture of mode collapse.
"""

from __future__ import annotations

from typing import Dict

import torch

__all__ = ["ring_centers", "ring_mixture", "modes_covered"]


def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """Centres (modes, 2) of Gaussians spaced evenly on a circle."""
    ang = torch.arange(modes, dtype=torch.float32) * (2 * torch.pi / modes)
    return radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)


def ring_mixture(n: int, modes: int = 8, radius: float = 2.0, std: float = 0.05,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples (n, 2) from an equal mixture of ``modes`` Gaussians of std ``std`` on a ring."""
    idx = torch.randint(modes, (n,), generator=generator)
    return ring_centers(modes, radius)[idx] + std * torch.randn(n, 2, generator=generator)


def modes_covered(samples: torch.Tensor, centers: torch.Tensor, std: float, n_sigma: float = 3.0,
                  min_fraction: float | None = None) -> Dict[str, float]:
    """How many mixture modes a generator reaches.

    A sample belongs to the nearest centre if it is within ``n_sigma · std`` of it; a mode is
    *covered* if it receives at least ``min_fraction`` of the samples (default: a quarter of its
    fair share, 1 / (4 · modes)). Returns ``{"covered", "total", "high_quality"}`` where
    ``high_quality`` is the fraction of samples near some mode.
    """
    k = centers.shape[0]
    frac = 0.25 / k if min_fraction is None else min_fraction
    d = torch.cdist(samples.float(), centers.float().to(samples.device))  # (N, K)
    dmin, idx = d.min(1)
    near = dmin <= n_sigma * std
    counts = torch.bincount(idx[near], minlength=k).float()
    covered = int((counts >= frac * samples.shape[0]).sum())
    return {"covered": covered, "total": k, "high_quality": float(near.float().mean())}
