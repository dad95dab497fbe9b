"""Self-checks for chapter 5 (variational autoencoders and video by latent differences).

Each checker calls the learner's function on fixed inputs, compares with the library, prints a
verdict with a hint and returns True/False. A function that returns None counts as "not solved
yet": a hint is printed and False returned, nothing raises.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..vae import kl_divergence
from ._common import report_tensor, try_call

__all__ = ["check_kl", "check_reparameterize", "check_latent_path"]


def check_kl(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """``fn(mu, logvar) -> (B,)``: the closed-form KL(N(mu, diag exp(logvar)) || N(0, I)) per row."""
    g = torch.Generator().manual_seed(5)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    out, err = try_call(fn, mu, logvar)
    return report_tensor(out, kl_divergence(mu, logvar),
                   "-1/2 · sum over the latent dim of (1 + logvar - mu² - exp(logvar)); keep one value per row.", err)


def check_reparameterize(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """``fn(mu, logvar, eps) -> z``: the reparameterised sample for a given noise ``eps``."""
    g = torch.Generator().manual_seed(6)
    mu, logvar, eps = (torch.randn(3, 5, generator=g) for _ in range(3))
    out, err = try_call(fn, mu, logvar, eps)
    return report_tensor(out, mu + torch.exp(0.5 * logvar) * eps,
                   "sigma = exp(logvar / 2) (logvar is log sigma², not log sigma); z = mu + sigma * eps.", err)


def check_latent_path(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """``fn(z_photo (D,), z_drive (T, D)) -> (T, D)``: the latent path of eq. (4)."""
    g = torch.Generator().manual_seed(7)
    zp, zd = torch.randn(4, generator=g), torch.randn(6, 4, generator=g)
    expected = torch.cat([zp[None], zp + (zd[1:] - zd[:-1]).cumsum(0)])
    out, err = try_call(fn, zp, zd)
    return report_tensor(out, expected,
                   "start at z_photo; each next latent adds enc(d_t) - enc(d_(t-1)); the path has T rows, the "
                   "first one being z_photo itself.", err)
