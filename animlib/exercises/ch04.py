"""Self-checks for chapter 4 (Relative depth, and style transfer that keeps it).

Each checker calls the learner's function on small inputs, compares it with :mod:`animlib.depth`,
prints a verdict with a hint, and returns True/False. An unsolved exercise (a function that returns
None) prints a hint and returns False; a function that raises is reported, never re-raised.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..depth import ordinal_accuracy, relative_depth_loss
from ._common import call_learner

__all__ = ["check_relative_loss", "check_pair_rule", "check_ordinal_accuracy"]



def _pairs(seed: int = 0, n: int = 64):
    g = torch.Generator().manual_seed(seed)
    z_x, z_y = torch.randn(n, generator=g) * 2, torch.randn(n, generator=g) * 2
    rel = torch.randint(-1, 2, (n,), generator=g)
    rel[:3] = torch.tensor([-1, 0, 1])  # every relation appears
    return z_x, z_y, rel


def check_relative_loss(fn: Optional[Callable]) -> bool:
    """Exercise 1: ``fn(z_x, z_y, relation) -> scalar``, Chen et al.'s loss with the equal term, mean over pairs."""
    z_x, z_y, rel = _pairs()
    ran, out = call_learner(fn, z_x.clone(), z_y.clone(), rel.clone())
    if not ran:
        return False
    if out is None:
        print("Not solved yet: return the mean loss over the pairs, a scalar tensor.")
        return False
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        print("Not quite: return one number (a 0-d tensor): the mean over all pairs.")
        return False
    ref = relative_depth_loss(z_x, z_y, rel)
    if torch.allclose(out.float().reshape(()), ref, atol=1e-5):
        print("Correct! Ordered pairs pay log(1 + exp(r (z_y - z_x))), equal pairs (z_x - z_y)^2.")
        return True
    per = relative_depth_loss(z_x, z_y, rel, reduction="none")
    no_equal = per[rel != 0].mean()
    if torch.allclose(out.float().reshape(()), no_equal, atol=1e-5):
        print("Not quite: equal pairs (relation 0) also count, with the squared difference (z_x - z_y)^2.")
    elif torch.allclose(out.float().reshape(()), relative_depth_loss(z_x, z_y, -rel), atol=1e-5):
        print("Not quite: the sign is flipped. relation = -1 means x is nearer, so z_x < z_y should cost little.")
    else:
        print(f"Not quite: expected {float(ref):.4f}, got {float(out):.4f}. Check the three cases and take the mean.")
    return False


def check_pair_rule(fn: Optional[Callable]) -> bool:
    """Exercise 2: ``fn(z_a, z_b, distance, depth_range) -> bool tensor``: the source's lidar pair rule."""
    g = torch.Generator().manual_seed(1)
    n = 200
    z_a, z_b = torch.rand(n, generator=g) * 50 + 1, torch.rand(n, generator=g) * 50 + 1
    distance = torch.rand(n, generator=g) * 60
    depth_range = torch.full((n,), 49.0)
    z_b[:20] = z_a[:20] + 0.3  # under 1 % of the range
    distance[20:30] = 40.0  # exactly at the limit: allowed
    ran, out = call_learner(fn, z_a.clone(), z_b.clone(), distance.clone(), depth_range.clone())
    if not ran:
        return False
    if out is None:
        print("Not solved yet: return a boolean tensor, True where the pair may be used.")
        return False
    if not isinstance(out, torch.Tensor) or out.shape != (n,):
        print(f"Not quite: return a tensor with one boolean per pair, shape ({n},).")
        return False
    ref = (distance <= 40.0) & ((z_a - z_b).abs() >= 0.01 * depth_range)
    out = out.bool()
    if torch.equal(out, ref):
        print("Correct! At most 40 px apart, and a depth difference of at least 1 % of the image's range.")
        return True
    if torch.equal(out, (distance < 40.0) & ((z_a - z_b).abs() >= 0.01 * depth_range)):
        print("Almost: pairs exactly 40 px apart are allowed ('not more than 40 pixels').")
    elif torch.equal(out, distance <= 40.0):
        print("Not quite: also drop pairs whose depths differ by less than 1 % of the depth range (lidar noise).")
    else:
        print("Not quite: keep a pair when distance <= 40 and |z_a - z_b| >= 0.01 * depth_range.")
    return False


def check_ordinal_accuracy(fn: Optional[Callable]) -> bool:
    """Exercise 3: ``fn(z_x, z_y, relation) -> float``: share of ordered pairs in the right order, ties 0.5."""
    z_x, z_y, rel = _pairs(2, 80)
    z_y[5:10] = z_x[5:10]  # some ties
    rel[5:10] = 1
    ran, out = call_learner(fn, z_x.clone(), z_y.clone(), rel.clone())
    if not ran:
        return False
    if out is None:
        print("Not solved yet: return a float between 0 and 1.")
        return False
    try:
        value = float(out)
    except (TypeError, ValueError):
        print("Not quite: return a single number.")
        return False
    ref = ordinal_accuracy(z_x, z_y, rel)
    if abs(value - ref) < 1e-6:
        print("Correct! Equal pairs are left out, and a tie is a coin flip (0.5).")
        return True
    if abs(value - ordinal_accuracy(z_x, z_y, rel, ties=0.0)) < 1e-6:
        print("Almost: a prediction that ties (z_x == z_y) should count as 0.5, a coin flip.")
    else:
        print(f"Not quite: expected {ref:.4f}, got {value:.4f}. Use only pairs with relation != 0.")
    return False
