"""Self-checks for chapter 1 (LSTM gates and the recurrent cinemagraph generator).

Each ``check_*`` takes the learner's function, runs it on fixed inputs, compares with a reference
from :mod:`animlib`, prints a verdict with a hint and returns True/False. A function that returns
``None`` (the unsolved template) gets a hint, never an exception.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ._common import try_call

__all__ = ["check_forget_gate", "check_motion_energy", "check_shift_kernel"]


def _unsolved(out, hint: str) -> bool:
    if out is None:
        print(f"Not solved yet: {hint}")
        return True
    return False



def check_forget_gate(fn: Callable) -> bool:
    """``fn(x, h_prev, c_prev, W_xf, W_hf, w_cf, b_f)`` must return eq. (2):
    ``f_t = σ(x W_xfᵀ + h_prev W_hfᵀ + w_cf ∘ c_prev + b_f)`` for batched row vectors."""
    g = torch.Generator().manual_seed(0)
    x, h, c = (torch.randn(3, n, generator=g) for n in (4, 5, 5))
    W_xf, W_hf = torch.randn(5, 4, generator=g), torch.randn(5, 5, generator=g)
    w_cf, b_f = torch.randn(5, generator=g), torch.randn(5, generator=g)
    out, err = try_call(fn, x, h, c, W_xf, W_hf, w_cf, b_f)
    if err is not None:
        print(f"Your function raised {type(err).__name__}: {err}")
        return False
    if _unsolved(out, "return the forget gate f_t, a (3, 5) tensor of values in (0, 1)."):
        return False
    ref = torch.sigmoid(x @ W_xf.T + h @ W_hf.T + w_cf * c + b_f)
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
        print(f"Not quite: expected a tensor of shape {tuple(ref.shape)}, got {getattr(out, 'shape', type(out))}.")
        return False
    if torch.allclose(out, ref, atol=1e-5):
        print("Correct! The forget gate peeks at the previous cell state c_{t-1}.")
        return True
    no_peep = torch.sigmoid(x @ W_xf.T + h @ W_hf.T + b_f)
    if torch.allclose(out, no_peep, atol=1e-5):
        print("Not quite: you left out the peephole term w_cf ∘ c_{t-1} (a Hadamard product, not a matrix product).")
    else:
        print("Not quite: check the transposes (x @ W_xf.T) and that the sigmoid wraps the whole sum.")
    return False


def check_motion_energy(fn: Callable) -> bool:
    """``fn(frames, mask)`` with ``frames`` ``(B, T, C, H, W)`` and ``mask`` ``(B, 1, H, W)`` must
    return the mean over the masked pixels (and channels) of the temporal standard deviation."""
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(2, 6, 3, 8, 8, generator=g)
    mask = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    out, err = try_call(fn, frames, mask)
    if err is not None:
        print(f"Your function raised {type(err).__name__}: {err}")
        return False
    if _unsolved(out, "return a float: frames.std(dim=1) averaged over the pixels where mask == 1."):
        return False
    std = frames.std(1)  # (B, C, H, W)
    w = mask.expand_as(std)
    ref = float((std * w).sum() / w.sum())
    val = float(out)
    if abs(val - ref) < 1e-4:
        print("Correct! A blur that stops moving scores near zero on this number.")
        return True
    if abs(val - float(std.mean())) < 1e-4:
        print("Not quite: average only over the pixels inside the mask.")
    else:
        print(f"Not quite: got {val:.4f}. Take the std over the time axis (dim=1), then the masked mean.")
    return False


def check_shift_kernel(fn: Callable) -> bool:
    """``fn(dx, dy, K)`` must return a ``(K, K)`` kernel that, used with
    :func:`animlib.cinemagraph.apply_motion_kernel`, moves an image by ``dx`` pixels right and
    ``dy`` pixels down."""
    from animlib.cinemagraph import apply_motion_kernel

    x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(2))
    for dx, dy in [(1, 0), (0, -1), (-2, 1)]:
        k, err = try_call(fn, dx, dy, 5)
        if err is not None:
            print(f"Your function raised {type(err).__name__}: {err}")
            return False
        if _unsolved(k, "return a (K, K) tensor with a single 1 at the right offset."):
            return False
        if not isinstance(k, torch.Tensor) or k.shape != (5, 5):
            print(f"Not quite: expected a (5, 5) tensor, got {getattr(k, 'shape', type(k))}.")
            return False
        y = apply_motion_kernel(x, k[None].float())
        want = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
        if not torch.allclose(y[inner], want[inner], atol=1e-5):
            print(f"Not quite for dx={dx}, dy={dy}: the kernel is a cross-correlation, so to move the image "
                  "right the weight sits LEFT of the centre (column K//2 - dx, row K//2 - dy).")
            return False
    print("Correct! An action of the DRQN in chapter 2 is exactly such a kernel.")
    return True


def solution_forget_gate(x, h_prev, c_prev, W_xf, W_hf, w_cf, b_f) -> torch.Tensor:
    """Worked solution (used by the tests)."""
    return torch.sigmoid(x @ W_xf.T + h_prev @ W_hf.T + w_cf * c_prev + b_f)


def solution_motion_energy(frames: torch.Tensor, mask: torch.Tensor) -> float:
    std = frames.std(dim=1)  # (B, C, H, W)
    w = mask.expand_as(std)
    return float((std * w).sum() / w.sum())


def solution_shift_kernel(dx: int, dy: int, K: int = 5) -> Optional[torch.Tensor]:
    k = torch.zeros(K, K)
    k[K // 2 - dy, K // 2 - dx] = 1.0
    return k
