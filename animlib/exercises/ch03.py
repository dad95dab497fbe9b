"""Self-checks for chapter 3 (What a Gram matrix measures: neural style transfer).

Each checker calls the learner's function on small inputs, compares with an independent
computation, prints a verdict with a hint, and returns True/False. An unsolved exercise (a function
that returns None) prints a hint and returns False; a function that raises is reported, not re-raised.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ._common import call_learner
from ._common import verdict as _verdict

__all__ = ["check_gram", "check_depth_to_alpha", "check_window_mean"]




def _shape_ok(out: Any, shape: tuple, hint: str) -> bool:
    if not isinstance(out, torch.Tensor):
        print(f"Not quite: return a torch.Tensor of shape {shape}, got {type(out).__name__}. {hint}")
        return False
    if tuple(out.shape) != shape:
        print(f"Not quite: expected shape {shape}, got {tuple(out.shape)}. {hint}")
        return False
    return True


def check_gram(fn: Callable[[torch.Tensor], torch.Tensor | None] | None) -> bool:
    """Exercise 1: ``fn(feats (B, C, H, W)) -> (B, C, C)``, per image, normalised by ``C*H*W``."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 3, 4, 5, generator=g)
    ran, out = call_learner(fn, f.clone())
    if not ran:
        return False
    if out is None:
        print("Not solved yet: return the Gram matrices, a tensor of shape (B, C, C).")
        return False
    if not _shape_ok(out, (2, 3, 3), "One C x C matrix per image: flatten H and W, keep B."):
        return False
    flat = f.reshape(2, 3, 20)
    ref = torch.einsum("bix,bjx->bij", flat, flat) / 60.0
    out = out.detach().float()
    if torch.allclose(out, ref, atol=1e-5):
        return _verdict(True, "Correct! Each entry is the average co-activation of two channels.", "")
    if torch.allclose(out, ref * 60.0, atol=1e-4):
        print("Not quite: divide by C*H*W (the source's normalisation), not by nothing.")
    elif torch.allclose(out, ref * 3.0, atol=1e-4):
        print("Not quite: you divided by H*W only; the source divides by C*H*W.")
    else:
        print("Not quite: G_ij = (1/CHW) * sum over pixels of a_i * a_j, separately for each image.")
    return False


def check_depth_to_alpha(
    fn: Callable[[torch.Tensor, float, float], torch.Tensor | None] | None,
) -> bool:
    """Exercise 2: ``fn(depth (B, 1, H, W), alpha_min, alpha_max)``: nearest -> alpha_max, log scale."""
    depth = torch.tensor([[2.0, 4.0, 6.0], [8.0, 10.0, 3.0]]).view(1, 1, 2, 3)
    far = torch.tensor([[1.0, 1.0, 5.0], [0.5, 1.5, 0.5]]).view(1, 1, 2, 3)
    batch = torch.cat([depth, far])  # two images: the range is per image
    ran, out = call_learner(fn, batch.clone(), 1.0, 5.0)
    if not ran:
        return False
    if out is None:
        print("Not solved yet: return a weight map of the depth's shape.")
        return False
    if not _shape_ok(out, (2, 1, 2, 3), "Keep the depth map's shape (B, 1, H, W)."):
        return False
    lo = batch.amin(dim=(1, 2, 3), keepdim=True)
    hi = batch.amax(dim=(1, 2, 3), keepdim=True)
    t = (hi - batch) / (hi - lo)  # 1 at the nearest pixel
    ref = 5.0**t
    out = out.detach().float()
    if torch.allclose(out, ref, atol=1e-4):
        return _verdict(True, "Correct! The nearest pixel keeps the most content (alpha = 5).", "")
    if torch.allclose(out, 1.0 + 4.0 * t, atol=1e-4):
        print("Not quite: that is a linear scale; interpolate log(alpha) linearly instead.")
    elif torch.allclose(out, 5.0 ** (1 - t), atol=1e-4):
        print("Not quite: near and far are swapped. Small depth = near = alpha_max.")
    else:
        glob = 5.0 ** ((batch.max() - batch) / (batch.max() - batch.min()))
        if torch.allclose(out, glob, atol=1e-4):
            print("Not quite: scale each image by its own nearest and farthest pixel, not the batch's.")
        else:
            print("Not quite: alpha = alpha_min * (alpha_max / alpha_min) ** t, t = 1 at the nearest pixel.")
    return False


def check_window_mean(fn: Callable[[torch.Tensor, int], torch.Tensor | None] | None) -> bool:
    """Exercise 3: ``fn(alpha (B, 1, H, W), k)``: mean of alpha over each in-bounds k x k window ('same')."""
    g = torch.Generator().manual_seed(1)
    alpha = torch.rand(2, 1, 6, 5, generator=g) * 4 + 1
    results = []
    for k in (3, 5):
        ran, out = call_learner(fn, alpha.clone(), k)
        if not ran:
            return False
        if out is None:
            print("Not solved yet: return the propagated weight map.")
            return False
        if not _shape_ok(out, tuple(alpha.shape), "A 'same' convolution keeps H and W."):
            return False
        r = k // 2
        ref = torch.empty_like(alpha)
        for i in range(6):
            for j in range(5):
                ref[..., i, j] = alpha[..., max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean(
                    dim=(-2, -1)
                )
        results.append((out.detach().float(), ref, k))
    if all(torch.allclose(o, ref, atol=1e-5) for o, ref, _ in results):
        return _verdict(
            True, "Correct! At the corners only the in-bounds pixels count, as in the source.", ""
        )
    o, ref, k = next((o, ref, k) for o, ref, k in results if not torch.allclose(o, ref, atol=1e-5))
    if torch.allclose(o[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5) or torch.allclose(
        o[..., k // 2 : -(k // 2), k // 2 : -(k // 2)],
        ref[..., k // 2 : -(k // 2), k // 2 : -(k // 2)],
        atol=1e-5,
    ):
        print(
            f"Not quite (k={k}): the interior is right but the border is not. Divide by the number of "
            "in-bounds pixels (zero padding must not pull the weight down): count_include_pad=False."
        )
    else:
        print(f"Not quite (k={k}): each output is the mean over the k x k window centred on it.")
    return False
