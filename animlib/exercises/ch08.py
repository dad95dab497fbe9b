"""Self-checks for chapter 8 (face reenactment): relative motion transfer, the hinge loss, L_MCH.

Each ``check_*`` takes the learner's function, prints a verdict with a hint and returns True/False;
an unsolved exercise (returning None) or one that raises is reported, never crashes the notebook.
The worked solutions (``solution_*``) are the ones the book shows.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._common import report_tensor, try_call

__all__ = [
    "check_relative_transfer",
    "check_hinge_d_loss",
    "check_match_loss",
    "solution_relative_transfer",
    "solution_hinge_d_loss",
    "solution_match_loss",
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# Exercise 1: relative motion transfer
# ----------------------------------------------------------------------------------------------
def solution_relative_transfer(kp_source: torch.Tensor, kp_driving: torch.Tensor, kp_initial: torch.Tensor) -> torch.Tensor:
    """``kp_source + (kp_driving − kp_initial)``: (68, 2), (T, 68, 2), (68, 2) -> (T, 68, 2)."""
    return kp_source + (kp_driving - kp_initial)


def check_relative_transfer(fn: Callable) -> bool:
    """Compare ``fn(kp_source, kp_driving, kp_initial)`` with relative transfer on random landmarks."""
    g = _gen(8)
    src, init = torch.rand(68, 2, generator=g) * 2 - 1, torch.rand(68, 2, generator=g) * 2 - 1
    drv = init + 0.1 * torch.randn(5, 68, 2, generator=g)
    out, err = try_call(fn, src.clone(), drv.clone(), init.clone())
    return report_tensor(out, solution_relative_transfer(src, drv, init),
                         "only the driver's *change* since its initial frame moves the source's points; "
                         "broadcast the (68, 2) tensors over the clip's T frames", error=err)


# ----------------------------------------------------------------------------------------------
# Exercise 2: the discriminator's hinge loss
# ----------------------------------------------------------------------------------------------
def solution_hinge_d_loss(r_real: torch.Tensor, r_fake: torch.Tensor) -> torch.Tensor:
    """``mean(relu(1 − r_real)) + mean(relu(1 + r_fake))``: a scalar."""
    return torch.relu(1 - r_real).mean() + torch.relu(1 + r_fake).mean()


def check_hinge_d_loss(fn: Callable) -> bool:
    """Compare ``fn(r_real, r_fake)`` with the hinge loss on scores on both sides of the margins."""
    g = _gen(9)
    r_real, r_fake = 2.5 * torch.randn(64, generator=g), 2.5 * torch.randn(64, generator=g) - 0.5
    out, err = try_call(fn, r_real.clone(), r_fake.clone())
    return report_tensor(out, solution_hinge_d_loss(r_real, r_fake),
                         "real scores are pushed above +1 and fake scores below -1; a score already past "
                         "its margin costs nothing (relu), and each half is a mean over the batch", error=err)


# ----------------------------------------------------------------------------------------------
# Exercise 3: the embedding-match term
# ----------------------------------------------------------------------------------------------
def solution_match_loss(W: torch.Tensor, idx: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``mean |W[idx] − e|``: D's identity columns for the batch against the embedder's vectors."""
    return (W[idx] - e).abs().mean()


def check_match_loss(fn: Callable) -> bool:
    """Compare ``fn(W, idx, e)`` with L_MCH on a random table, indices and embeddings."""
    g = _gen(10)
    W, e = torch.randn(20, 6, generator=g), torch.randn(4, 6, generator=g)
    idx = torch.tensor([3, 17, 3, 9])
    out, err = try_call(fn, W.clone(), idx.clone(), e.clone())
    return report_tensor(out, solution_match_loss(W, idx, e),
                         "look up the batch's rows W[idx] (one per sample, repeats allowed) and take the mean "
                         "absolute difference (L1, not squared) to e", error=err)
