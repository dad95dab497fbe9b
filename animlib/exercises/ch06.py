"""Self-checks for chapter 6 (GANs and the VAE-GAN).

Each checker calls the learner's function on fixed inputs, compares with the library, prints a
verdict with a hint and returns True/False; an unsolved exercise (None) prints a hint, never raises.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..gan import d_loss_bce
from ..metrics import laplacian_energy
from ._common import report_tensor, try_call

__all__ = ["check_d_loss", "check_generator_gradients", "check_sharpness"]


def check_d_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """``fn(real_logits, fake_logits) -> scalar``: the discriminator's BCE loss, batch means."""
    g = torch.Generator().manual_seed(8)
    r, f = torch.randn(16, generator=g), torch.randn(16, generator=g)
    out, err = try_call(fn, r, f)
    if isinstance(out, torch.Tensor) and out.ndim == 1 and out.numel() == 1:
        out = out[0]
    return report_tensor(out, d_loss_bce(r, f),
                   "mean of -log σ(r) plus mean of -log(1 - σ(f)); F.softplus(-r) = -log σ(r) is the stable form.", err)


def check_generator_gradients(fn: Callable[[torch.Tensor], tuple]) -> bool:
    """``fn(fake_logits) -> (grad_minimax, grad_nonsaturating)``: d/df of log(1 - σ(f)) and of -log σ(f), per element."""
    f = torch.linspace(-6, 6, 7)
    out, err = try_call(fn, f)
    if out is not None and err is None:
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            print("Not quite: return a pair (grad_minimax, grad_nonsaturating).")
            return False
        s = torch.sigmoid(f)
        hint = "d/df log(1 - σ(f)) = -σ(f) and d/df (-log σ(f)) = σ(f) - 1."
        ok1 = report_tensor(out[0], -s, hint)
        ok2 = ok1 and report_tensor(out[1], s - 1, hint)
        return ok1 and ok2
    return report_tensor(out, f, "differentiate both losses by hand, using σ'(f) = σ(f)(1 - σ(f)).", err)


def check_sharpness(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """``fn(images (B, 3, H, W)) -> (B,)``: mean squared 3×3 Laplacian of the luminance, borders excluded."""
    g = torch.Generator().manual_seed(9)
    x = torch.rand(3, 3, 12, 12, generator=g)
    out, err = try_call(fn, x)
    return report_tensor(out, laplacian_energy(x),
                   "luminance 0.299 R + 0.587 G + 0.114 B; kernel [[0,1,0],[1,-4,1],[0,1,0]] with no padding; "
                   "square and average per image.", err)
