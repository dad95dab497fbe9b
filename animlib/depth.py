"""Relative depth from one image, and depth losses for depth-aware style transfer.

Papers:

- W. Chen, Z. Fu, D. Yang, J. Deng. *Single-Image Depth Perception in the Wild.* NeurIPS 2016:
  the hourglass network of inception blocks, trained on *pairs of points* with a ranking loss.
- A. Newell, K. Yang, J. Deng. *Stacked Hourglass Networks for Human Pose Estimation.* ECCV 2016:
  the hourglass topology (nested "skip + pool/process/upsample" levels).
- C. Szegedy et al. *Going Deeper with Convolutions.* CVPR 2015: the inception block.
- X.-C. Liu, M.-M. Cheng, Y.-K. Lai, P. L. Rosin. *Depth-Aware Neural Style Transfer.* NPAR 2017:
  the depth loss ``(1/HW) sum (depth(X) - depth(Y_content))^2`` with weight gamma.
- K. Kozlovtsev (source S2 of this course): the hourglass with the block table below, fine-tuned on
  KITTI lidar pairs (at most 40 px apart, depth difference at least 1 % of the image's range).

Contents, in order: point pairs (sampling, gathering), the relative-depth loss and the metrics,
the inception block, the hourglass, the depth loss for style transfer, a training step for
:class:`animlib.engine.Trainer`. The prepared real data (KITTI, NYU v2, DIW) is read by the loaders
of :mod:`animlib.data.prepared`.

Conventions (written down because references disagree):

- Depth maps are ``(B, 1, H, W)``; larger values are *farther*. The network's output is a relative
  depth: only its order (and, for the depth loss, its normalised shape) means anything.
- A pair ``(x, y)`` has ``relation = -1`` if ``x`` is nearer (``z_x < z_y``), ``+1`` if ``x`` is
  farther and ``0`` if they are (about) equal. This is Chen et al.'s ``r`` for point ``x``.
- The loss for ordered pairs is ``log(1 + exp(relation * (z_y - z_x)))`` (the source's equation
  for ``relation = -1``); for equal pairs it is ``(z_x - z_y)^2``, as in the *official* criterion
  (``relative_depth.lua``) rather than a hinge or zero. The loss is the mean over all pairs of the
  batch (the official criterion divides by the total number of points, not per image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .engine import batched_inference
from .runtime import ProfileSettings

__all__ = [
    "DepthSettings",
    "PointPairs",
    "sample_point_pairs",
    "propose_pairs",
    "sample_image_pairs",
    "training_pairs",
    "gather_pairs",
    "relative_depth_loss",
    "ordinal_accuracy",
    "whdr",
    "lower_is_nearer",
    "evaluate_pairs",
    "BlockSpec",
    "BLOCK_TABLE",
    "InceptionBlock",
    "HourglassConfig",
    "HourglassLevel",
    "Hourglass",
    "normalize_depth",
    "depth_loss",
    "DepthLossTerm",
    "predict_depth",
    "RelativeDepthStep",
]

# ----------------------------------------------------------------------------- helpers


def _as_depth_map(t: torch.Tensor, name: str) -> torch.Tensor:
    """Accept ``(B, 1, H, W)`` or ``(B, H, W)``; return ``(B, 1, H, W)``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 3:
        t = t[:, None]
    if t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B, 1, H, W) or (B, H, W), got {tuple(t.shape)}")
    return t


def _check_pair_values(z_x: torch.Tensor, z_y: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
    if z_x.shape != z_y.shape or z_x.shape != relation.shape:
        raise ValueError(
            f"z_x, z_y and relation must have the same shape, got {tuple(z_x.shape)}, {tuple(z_y.shape)}, "
            f"{tuple(relation.shape)}"
        )
    if relation.numel() == 0:
        raise ValueError("no point pairs were given (an empty set has no mean loss or accuracy)")
    rel = relation.to(z_x.dtype) if relation.is_floating_point() else relation.to(torch.float32)
    bad = (rel != -1) & (rel != 0) & (rel != 1)
    if bool(bad.any()):
        raise ValueError(f"relation must hold only -1 (x nearer), 0 (equal) or +1 (x farther); found {rel[bad][:5].tolist()}")
    return rel


# ----------------------------------------------------------------------------- point pairs


@dataclass
class PointPairs:
    """Point pairs over a batch: pair ``k`` compares pixel ``(ya[k], xa[k])`` with ``(yb[k], xb[k])``
    of image ``b[k]``; ``relation[k]`` is -1 (a nearer), 0 (equal) or +1 (a farther)."""

    b: torch.Tensor
    ya: torch.Tensor
    xa: torch.Tensor
    yb: torch.Tensor
    xb: torch.Tensor
    relation: torch.Tensor

    def __len__(self) -> int:
        return int(self.b.numel())

    def to(self, device) -> PointPairs:
        return PointPairs(*(t.to(device) for t in (self.b, self.ya, self.xa, self.yb, self.xb, self.relation)))

    @staticmethod
    def cat(parts: Sequence[PointPairs]) -> PointPairs:
        return PointPairs(*(torch.cat([getattr(p, k) for p in parts]) for k in ("b", "ya", "xa", "yb", "xb", "relation")))

    def distance(self) -> torch.Tensor:
        """Euclidean distance in pixels between the two points of every pair."""
        return torch.hypot((self.ya - self.yb).float(), (self.xa - self.xb).float())


def _checked_pair_inputs(depth: torch.Tensor, valid: Optional[torch.Tensor], n_pairs: int,
                         max_distance: Optional[float], equal_ratio: Optional[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_point_pairs`' arguments checked: ``depth`` and a boolean ``valid``, both ``(B, 1, H, W)``."""
    depth = _as_depth_map(depth, "depth")
    if valid is None:
        valid = depth > 0
    valid = _as_depth_map(valid, "valid").bool()
    if valid.shape != depth.shape:
        raise ValueError(f"valid has shape {tuple(valid.shape)} but depth has {tuple(depth.shape)}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be positive, got {n_pairs}")
    if max_distance is not None and max_distance < 1:
        raise ValueError(f"max_distance must be at least 1 pixel (or None), got {max_distance}")
    if equal_ratio is not None and equal_ratio < 1:
        raise ValueError(f"equal_ratio must be >= 1, got {equal_ratio}")
    return depth, valid


def _first_acceptance(n_valid: int, H: int, W: int, max_distance: Optional[float]) -> float:
    """A first guess at the acceptance of one draw: the share of valid pixels, times the share of the
    disc inside the image (later rounds use the acceptance actually observed)."""
    accept = n_valid / (H * W)
    if max_distance is not None:
        accept *= min(1.0, H * W / (math.pi * max_distance**2 + 1))
    return accept


def propose_pairs(idx: torch.Tensor, m: torch.Tensor, H: int, W: int, max_distance: Optional[float], n: int,
                   draw: Callable[[int, int, int], torch.Tensor]):
    """One round of ``n`` candidate pairs of one image, before the depth rule.

    The first point is uniform over the valid pixels ``idx`` (flat indices; ``m`` is the flat valid
    mask); the second is uniform over the valid pixels too (``max_distance=None``) or over the disc
    of radius ``max_distance`` around the first. ``draw(low, high, n)`` gives ``n`` integers in
    ``[low, high)``. Returns flat indices ``a``, ``bb``, their rows and columns ``ay, ax, by, bx``
    and ``ok``, whether the candidate is a pair of two different valid pixels within the distance.
    """
    n_valid = idx.numel()
    a = idx[draw(0, n_valid, n)]
    ay, ax = a // W, a % W
    if max_distance is None:
        bb = idx[draw(0, n_valid, n)]
        by, bx = bb // W, bb % W
        ok = bb != a
    else:
        r = int(math.floor(max_distance))
        dy = draw(-r, r + 1, n)
        dx = draw(-r, r + 1, n)
        by, bx = ay + dy, ax + dx
        ok = (dy * dy + dx * dx <= max_distance**2) & ((dy != 0) | (dx != 0))
        ok &= (by >= 0) & (by < H) & (bx >= 0) & (bx < W)
        by, bx = by.clamp(0, H - 1), bx.clamp(0, W - 1)
        bb = by * W + bx
        ok &= m[bb]
    return a, bb, ay, ax, by, bx, ok


def sample_image_pairs(depth: torch.Tensor, valid: torch.Tensor, n_pairs: int, max_distance: Optional[float],
                 min_range_fraction: float, equal_ratio: Optional[float], max_rounds: int,
                 draw: Callable[[int, int, int], torch.Tensor]) -> Optional[torch.Tensor]:
    """Up to ``n_pairs`` pairs of one image ``(H, W)`` by rejection sampling: ``(4, K)`` rows ``ya, xa,
    yb, xb``, or ``None`` where none were found (or the image has fewer than 2 valid pixels)."""
    H, W = depth.shape
    d = depth.reshape(-1)
    m = valid.reshape(-1)
    idx = m.nonzero().squeeze(1)  # (N,) flat indices of valid pixels
    n_valid = idx.numel()
    if n_valid < 2:
        return None
    dv = d[idx]
    threshold = float(min_range_fraction) * float(dv.max() - dv.min()) if equal_ratio is None else 0.0
    accept = _first_acceptance(n_valid, H, W, max_distance)
    got: List[torch.Tensor] = []
    count = 0
    for _ in range(max_rounds):
        need = n_pairs - count
        if need <= 0:
            break
        m_draw = int(min(1_000_000, max(64, 2 * need / max(accept, 1e-4))))
        a, bb, ay, ax, by, bx, ok = propose_pairs(idx, m, H, W, max_distance, m_draw, draw)
        za, zb = d[a], d[bb]
        if equal_ratio is None:  # the source's rule: depths differ by a share of the range
            ok &= (za - zb).abs() >= threshold
            ok &= za != zb
        accept = float(ok.float().mean())
        if accept == 0 and m_draw >= 20_000:
            break  # nothing obeys the rule here (e.g. all depths within 1 % of the range)
        accept = max(accept, 1e-4)
        keep = ok.nonzero().squeeze(1)[:need]
        if keep.numel():
            got.append(torch.stack([ay[keep], ax[keep], by[keep], bx[keep]]))
            count += keep.numel()
    return torch.cat(got, 1) if got else None


def _pair_relations(depth: torch.Tensor, ya: torch.Tensor, xa: torch.Tensor, yb: torch.Tensor, xb: torch.Tensor,
                    equal_ratio: Optional[float]) -> torch.Tensor:
    """Labels of pairs of one image ``(H, W)``: -1 (a nearer), +1 (a farther), and with ``equal_ratio``
    0 (equal) where the depth ratio ``max/min`` is below it; ``int8``."""
    za, zb = depth[ya, xa], depth[yb, xb]
    rel = torch.sign(za - zb).to(torch.int8)
    if equal_ratio is not None:
        lo, hi = torch.minimum(za, zb), torch.maximum(za, zb)
        rel = torch.where(hi < lo * equal_ratio, torch.zeros_like(rel), rel)
    return rel


def sample_point_pairs(
    depth: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    n_pairs: int = 1000,
    *,
    max_distance: Optional[float] = 40.0,
    min_range_fraction: float = 0.01,
    equal_ratio: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    max_rounds: int = 8,
) -> PointPairs:
    """Sample labelled point pairs from (sparse) ground-truth depth, per image.

    The source's rule for KITTI (section 5.1): both points have a depth value, they are at most
    ``max_distance`` = 40 px apart (Euclidean), and their depths differ by at least
    ``min_range_fraction`` = 1 % of the image's depth range (max - min over its valid pixels), which
    keeps lidar noise out; the label says which point is nearer. Pairs are uniform over all pairs
    that obey the rule: a first point is drawn uniformly from the valid pixels and a second one
    uniformly from the disc of radius ``max_distance`` around it, and draws that break a rule are
    rejected (``max_distance=None``: the second point is any valid pixel).

    ``equal_ratio`` switches to Chen et al.'s dense labelling instead: every pair is kept, and pairs
    whose depth ratio ``max/min`` is below ``equal_ratio`` (e.g. 1.02) are labelled equal (0);
    ``min_range_fraction`` is then ignored.

    Args:
        depth: ``(B, 1, H, W)`` or ``(B, H, W)`` depth (positive where valid).
        valid: boolean mask of the same shape; default ``depth > 0`` (KITTI's 0 = no point).
        n_pairs: pairs wanted per image; fewer are returned for an image where fewer exist after
            ``max_rounds`` rounds of rejection sampling (none for an image with < 2 valid pixels).
        generator: a ``torch.Generator`` on the depth's device for reproducible pairs.

    Returns:
        :class:`PointPairs` on ``depth.device``.
    """
    depth, valid = _checked_pair_inputs(depth, valid, n_pairs, max_distance, equal_ratio)
    B = depth.shape[0]
    dev = depth.device
    gdev = generator.device if generator is not None else dev  # a seeded CPU generator draws on the CPU

    def draw(low: int, high: int, n: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=generator, device=gdev).to(dev)

    parts: List[PointPairs] = []
    for bi in range(B):
        got = sample_image_pairs(depth[bi, 0], valid[bi, 0], n_pairs, max_distance, min_range_fraction, equal_ratio,
                           max_rounds, draw)
        if got is None:
            continue
        ya, xa, yb, xb = got
        rel = _pair_relations(depth[bi, 0], ya, xa, yb, xb, equal_ratio)
        parts.append(PointPairs(torch.full_like(ya, bi), ya, xa, yb, xb, rel))
    if not parts:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return PointPairs(empty, empty, empty, empty, empty, empty.to(torch.int8))
    return PointPairs.cat(parts)


def training_pairs(depth: torch.Tensor, valid: Optional[torch.Tensor] = None, n_pairs: int = 1024, *,
                   sparse: bool = False, max_distance: float = 40.0, equal_ratio: float = 1.02,
                   generator: Optional[torch.Generator] = None) -> PointPairs:
    """Pairs for one training batch.

    ``sparse=True`` (lidar, the source's fine-tuning): :func:`sample_point_pairs` with the source's
    rule (≤ ``max_distance`` px, ≥ 1 % of the range, ordered pairs only). ``sparse=False`` (dense
    depth, Chen et al.'s pre-training): half the pairs within ``max_distance`` px and half anywhere
    in the image, with pairs whose depth ratio is below ``equal_ratio`` labelled equal.
    """
    if sparse:
        return sample_point_pairs(depth, valid, n_pairs, max_distance=max_distance, generator=generator)
    half = max(1, n_pairs // 2)
    near = sample_point_pairs(depth, valid, half, max_distance=max_distance, equal_ratio=equal_ratio, generator=generator)
    far = sample_point_pairs(depth, valid, n_pairs - half, max_distance=None, equal_ratio=equal_ratio, generator=generator)
    return PointPairs.cat([near, far])


def _check_pairs_inside(pairs: PointPairs, b: int, h: int, w: int) -> None:
    """Refuse pairs whose coordinates fall outside a ``(b, 1, h, w)`` map (negative ones would wrap)."""
    if len(pairs) == 0:
        return
    parts = (pairs.b, pairs.ya, pairs.yb, pairs.xa, pairs.xb)
    lo_b, lo_ya, lo_yb, lo_xa, lo_xb, hi_b, hi_ya, hi_yb, hi_xa, hi_xb = torch.stack(
        [t.min() for t in parts] + [t.max() for t in parts]).tolist()  # one transfer
    y, x = (min(lo_ya, lo_yb), max(hi_ya, hi_yb)), (min(lo_xa, lo_xb), max(hi_xa, hi_xb))
    if lo_b >= 0 and hi_b < b and y[0] >= 0 and y[1] < h and x[0] >= 0 and x[1] < w:
        return
    raise ValueError(
        f"point pairs reach outside the depth map: rows y in [{y[0]}, {y[1]}], columns x in [{x[0]}, {x[1]}], "
        f"images b in [{lo_b}, {hi_b}], but the map is {b} image(s) of {h}×{w} (y in [0, {h - 1}], "
        f"x in [0, {w - 1}]): sample the pairs on depth of the predicted map's size, or rescale their coordinates"
    )


def gather_pairs(z: torch.Tensor, pairs: PointPairs) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values of a depth map ``z`` ``(B, 1, H, W)`` at both points: ``(z_x, z_y, relation)``."""
    z = _as_depth_map(z, "z")
    _check_pairs_inside(pairs, z.shape[0], z.shape[-2], z.shape[-1])
    p = pairs.to(z.device)
    z2 = z[:, 0]
    return z2[p.b, p.ya, p.xa], z2[p.b, p.yb, p.xb], p.relation


# ----------------------------------------------------------------------------- loss and metrics


def relative_depth_loss(z_x: torch.Tensor, z_y: torch.Tensor, relation: torch.Tensor,
                        reduction: str = "mean") -> torch.Tensor:
    """Chen et al.'s ranking loss for point pairs (the source's section 3.4, Fig. 7).

    .. math::
        \\psi(z_x, z_y, r) = \\begin{cases}
            \\log\\bigl(1 + \\exp(r\\,(z_y - z_x))\\bigr) & r = \\pm 1 \\\\
            (z_x - z_y)^2 & r = 0
        \\end{cases}

    ``r = -1`` (x nearer) gives the source's ``log(1 + exp(-(z_y - z_x)))``: near zero when
    ``z_x`` is well below ``z_y``, growing linearly when the order is wrong. The equal term is the
    official criterion's squared difference. ``log(1 + exp(.))`` is computed as ``softplus`` so it
    does not overflow. ``reduction``: ``"mean"`` over pairs (default), ``"sum"`` or ``"none"``.
    """
    rel = _check_pair_values(z_x, z_y, relation)
    z_x, z_y = z_x.float(), z_y.float()
    rel = rel.float()
    ordered = F.softplus(rel * (z_y - z_x))
    equal = (z_x - z_y) ** 2
    loss = torch.where(rel == 0, equal, ordered)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


@torch.no_grad()
def ordinal_accuracy(z_x: torch.Tensor, z_y: torch.Tensor, relation: torch.Tensor, ties: float = 0.5) -> float:
    """Share of *ordered* pairs whose predicted order matches ``relation`` (the source's accuracy).

    Equal pairs (``relation == 0``) are left out; a prediction that ties (``z_x == z_y``) scores
    ``ties`` (0.5: a coin flip). Raises if there is no ordered pair.
    """
    rel = _check_pair_values(z_x, z_y, relation)
    keep = rel != 0
    if not bool(keep.any()):
        raise ValueError("ordinal_accuracy needs at least one ordered pair (relation -1 or +1)")
    s = torch.sign((z_x - z_y).float())[keep]
    r = rel[keep].float()
    score = torch.where(s == 0, torch.full_like(s, float(ties)), (s == r).float())
    return float(score.mean())


@torch.no_grad()
def whdr(z_x: torch.Tensor, z_y: torch.Tensor, relation: torch.Tensor, delta: float = 0.0,
         weights: Optional[torch.Tensor] = None, ratio: bool = False) -> float:
    """Weighted Human Disagreement Rate (Bell et al. 2014; Chen et al. 2016's metric on DIW).

    The predicted relation is ``+1`` if ``z_x - z_y > delta``, ``-1`` if ``< -delta``, else ``0``
    (``ratio=True``: compare ``z_x / z_y`` with ``1 + delta`` instead, for positive metric depth);
    WHDR is the (weighted) share of pairs whose predicted relation differs from ``relation``. With
    ordered pairs only and ``delta = 0`` it is ``1 - ordinal_accuracy`` with ties counted wrong.
    """
    rel = _check_pair_values(z_x, z_y, relation)
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    if ratio:
        if bool(((z_x <= 0) | (z_y <= 0)).any()):
            raise ValueError("ratio=True needs positive depths")
        q = (z_x / z_y).float()
        pred = torch.where(q > 1 + delta, 1.0, torch.where(q < 1 / (1 + delta), -1.0, 0.0))
    else:
        diff = (z_x - z_y).float()
        pred = torch.where(diff > delta, 1.0, torch.where(diff < -delta, -1.0, 0.0))
    wrong = (pred != rel.float()).float()
    if weights is None:
        return float(wrong.mean())
    w = weights.float()
    if w.shape != wrong.shape or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError("weights must be non-negative, of the pairs' shape, and not all zero")
    return float((wrong * w).sum() / w.sum())


def lower_is_nearer(batch: int, height: int, width: int, device=None) -> torch.Tensor:
    """The trivial baseline as a depth map ``(B, 1, H, W)``: depth = -row (lower rows are nearer).

    Two points on the same row tie (a coin flip in :func:`ordinal_accuracy`).
    """
    rows = -torch.arange(height, dtype=torch.float32, device=device).view(1, 1, height, 1)
    return rows.expand(batch, 1, height, width)


@torch.no_grad()
def evaluate_pairs(z: torch.Tensor, pairs: PointPairs) -> Dict[str, float]:
    """Relative loss, ordinal accuracy and WHDR of depth map ``z`` on ``pairs`` (Table 1's columns)."""
    z_x, z_y, rel = gather_pairs(z.float(), pairs)
    ordered = rel != 0
    out = {"loss": float(relative_depth_loss(z_x, z_y, rel)), "whdr": whdr(z_x, z_y, rel), "pairs": len(pairs)}
    out["accuracy"] = ordinal_accuracy(z_x[ordered], z_y[ordered], rel[ordered]) if bool(ordered.any()) else float("nan")
    return out


# ----------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class BlockSpec:
    """One row of the block table: input/output channels, reduction width, branch kernels."""

    in_channels: int
    out_channels: int
    reduce: int  # width of the 1x1 reductions before the k x k convolutions (Chen's "inter dim")
    kernels: Tuple[int, int, int]  # the three k x k branches (the fourth branch is a plain 1x1)


#: The source's table (in/out channels, kernel sizes 1 / 3 / k3 / k4) with the reduction widths of
#: Chen et al.'s released ``hourglass3.lua`` (the source's "1x1 conv output" row repeats the output
#: width instead, which cannot be right for a concatenation of four branches).
BLOCK_TABLE: Dict[str, BlockSpec] = {
    "A": BlockSpec(128, 64, 64, (3, 7, 11)),
    "B": BlockSpec(128, 128, 32, (3, 5, 7)),
    "C": BlockSpec(128, 128, 64, (3, 7, 11)),
    "D": BlockSpec(128, 256, 32, (3, 5, 7)),
    "E": BlockSpec(256, 256, 32, (3, 5, 7)),
    "F": BlockSpec(256, 256, 64, (3, 7, 11)),
    "G": BlockSpec(256, 128, 32, (3, 5, 7)),
}


def _scaled(channels: int, width: float, groups: int = 4) -> int:
    """``channels * width`` rounded to a multiple of ``groups`` (at least ``groups``)."""
    return groups * max(1, int(round(channels * width / groups)))


class InceptionBlock(nn.Module):
    """Four parallel branches, concatenated along channels (Szegedy et al. 2015; Chen et al. Fig. 5).

    Branch 0 is a 1x1 convolution; branches 1-3 are a 1x1 reduction to ``reduce`` channels followed
    by a ``k x k`` convolution with 'same' padding ``(k - 1) / 2``. Every convolution is followed by
    batch normalisation (without affine parameters, as in the released code) and ReLU. Each branch
    gives ``out_channels / 4`` channels, so the spatial size is unchanged.

    Implementation: the four 1x1 convolutions that read the block's input are stored as *one*
    convolution ``self.reduce`` (their weights stacked: branch 0's output channels first, then each
    reduction), followed by one BatchNorm; likewise the three ``k x k`` outputs share one BatchNorm.
    Batch normalisation works per channel, so this is the same function with the same parameters as
    four separate branches (a test checks it), and about twice as fast on a CPU with fewer, larger
    kernels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernels: Sequence[int] = (3, 5, 7), reduce: int = 32,
                 batch_norm: bool = True):
        super().__init__()
        n_branches = len(kernels) + 1
        if out_channels % n_branches:
            raise ValueError(f"out_channels ({out_channels}) must split evenly over {n_branches} branches")
        if any(k % 2 == 0 or k < 1 for k in kernels):
            raise ValueError(f"kernel sizes must be odd and positive for 'same' padding, got {tuple(kernels)}")
        if in_channels < 1 or reduce < 1:
            raise ValueError("in_channels and reduce must be positive")
        each = out_channels // n_branches
        self.in_channels, self.out_channels, self.kernels, self.reduce_channels = in_channels, out_channels, tuple(kernels), reduce
        self.each = each
        self.reduce = nn.Conv2d(in_channels, each + len(kernels) * reduce, 1)  # all 1x1 convs on the input
        self.norm_in = nn.BatchNorm2d(each + len(kernels) * reduce, affine=False) if batch_norm else nn.Identity()
        self.convs = nn.ModuleList([nn.Conv2d(reduce, each, k, padding=(k - 1) // 2) for k in kernels])
        self.norm_out = nn.BatchNorm2d(len(kernels) * each, affine=False) if batch_norm else nn.Identity()

    @property
    def branches(self) -> int:
        """Number of concatenated branches (the plain 1x1 one plus one per kernel)."""
        return len(self.kernels) + 1

    @classmethod
    def from_spec(cls, spec: BlockSpec, width: float = 1.0, batch_norm: bool = True, reduce: Optional[int] = None) -> InceptionBlock:
        """Build a table row, its channel counts scaled by ``width`` (``reduce`` overrides the row's)."""
        r = reduce if reduce is not None else spec.reduce
        return cls(_scaled(spec.in_channels, width), _scaled(spec.out_channels, width), spec.kernels,
                   max(1, int(round(r * width))), batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"InceptionBlock expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = F.relu(self.norm_in(self.reduce(x)))  # (B, each + 3 * reduce, H, W)
        plain, *reduced = torch.split(h, [self.each] + [self.reduce_channels] * len(self.kernels), dim=1)
        wide = torch.cat([conv(r) for conv, r in zip(self.convs, reduced)], dim=1)  # (B, 3 * each, H, W)
        return torch.cat([plain, F.relu(self.norm_out(wide))], dim=1)  # (B, out, H, W)


# ----------------------------------------------------------------------------- the hourglass

# Chen et al.'s released hourglass (hourglass3.lua) as four nested levels, outermost first. Each
# level returns skip(x) + up(post(inner(pre(pool(x))))). Blocks are table letters; ("B", 64) is
# block B with a reduction width of 64 instead of 32 (the released code's choice at that place).
_TOPOLOGY = (
    dict(pool="max", pre=("B", "B"), post=(("B", 64), ("A", 32)), skip=("A",)),  # full -> 1/2
    dict(pool="max", pre=("B", "D"), post=("E", "G"), skip=("B", "C")),  # 1/2 -> 1/4
    dict(pool="avg", pre=("E", "E"), post=("E", "F"), skip=("E", "F")),  # 1/4 -> 1/8
    dict(pool="avg", pre=("E", "E", "E"), post=(), skip=("E", "E")),  # 1/8 -> 1/16 (innermost)
)


@dataclass
class HourglassConfig:
    """The hourglass of Chen et al. 2016 (defaults: the released network, 5.4 M parameters)."""

    width: float = 1.0  # channel multiplier for every layer (quick CPU runs use 0.25)
    in_channels: int = 3  # RGB input in [0, 1]
    stem_kernel: int = 7  # the input convolution (the source: 7x7, 128 channels)
    head_kernel: int = 3  # the output convolution (the source: 3x3 to one channel, no ReLU)
    batch_norm: bool = True  # BatchNorm after every convolution but the last (as released)
    upsample: str = "nearest"  # "nearest" (released) or "bilinear"


def _block(item, width: float, batch_norm: bool) -> InceptionBlock:
    letter, reduce = (item, None) if isinstance(item, str) else item
    return InceptionBlock.from_spec(BLOCK_TABLE[letter], width, batch_norm, reduce)


class HourglassLevel(nn.Module):
    """One level: ``skip(x) + upsample(post(inner(pre(pool(x)))))`` (the element-wise sum of Fig. 4)."""

    def __init__(self, pool: str, pre, post, skip, inner: Optional[nn.Module], width: float, batch_norm: bool,
                 upsample: str):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.pre = nn.Sequential(*[_block(b, width, batch_norm) for b in pre])
        self.inner = inner if inner is not None else nn.Identity()
        self.post = nn.Sequential(*[_block(b, width, batch_norm) for b in post])
        self.skip = nn.Sequential(*[_block(b, width, batch_norm) for b in skip])
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.post(self.inner(self.pre(self.pool(x))))  # (B, C, H/2, W/2)
        mode = dict(mode="nearest") if self.upsample == "nearest" else dict(mode="bilinear", align_corners=False)
        return self.skip(x) + F.interpolate(y, scale_factor=2, **mode)  # (B, C, H, W)


class Hourglass(nn.Module):
    """Chen et al.'s relative-depth hourglass: RGB ``(B, 3, H, W)`` in [0, 1] -> depth ``(B, 1, H, W)``.

    Input conv 7x7 (128 channels) + BN + ReLU; four nested levels of inception blocks (A-G of the
    source's table) with 2x pooling and nearest-neighbour upsampling; output conv 3x3 to one channel
    (no activation). ``H`` and ``W`` must be multiples of 16. Larger outputs mean farther.

    Deviations from the source, all following Chen et al.'s released code (the source's topology
    figure is missing and its table lists no branch structure): four concatenated branches per
    block, each ``out/4`` wide, the non-plain ones with a 1x1 reduction; reduction widths from the
    released code (the source's table repeats the output width there); BatchNorm after every conv;
    max pooling at the two outer levels and average pooling at the two inner ones. Ours: a channel
    ``width`` multiplier, and inputs mapped from [0, 1] to [-1, 1] before the first convolution.
    """

    def __init__(self, config: Optional[HourglassConfig] = None):
        super().__init__()
        cfg = config or HourglassConfig()
        if cfg.width <= 0:
            raise ValueError(f"width must be positive, got {cfg.width}")
        if cfg.upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {cfg.upsample!r}")
        self.config = cfg
        w, bn = cfg.width, cfg.batch_norm
        c_stem, c_head = _scaled(128, w), _scaled(64, w)
        stem: List[nn.Module] = [nn.Conv2d(cfg.in_channels, c_stem, cfg.stem_kernel, padding=(cfg.stem_kernel - 1) // 2)]
        if bn:
            stem.append(nn.BatchNorm2d(c_stem))
        stem.append(nn.ReLU(inplace=True))
        self.stem = nn.Sequential(*stem)
        inner: Optional[nn.Module] = None
        for level in reversed(_TOPOLOGY):  # build from the innermost level outwards
            inner = HourglassLevel(level["pool"], level["pre"], level["post"], level["skip"], inner, w, bn, cfg.upsample)
        self.body = inner
        self.head = nn.Conv2d(c_head, 1, cfg.head_kernel, padding=(cfg.head_kernel - 1) // 2)
        self.multiple = 2 ** len(_TOPOLOGY)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"Hourglass expects images (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(
                f"height and width must be multiples of {self.multiple} (four 2x poolings), got {h}x{w}; "
                "resize or crop the image (e.g. 224x288 as in the source)"
            )
        if self.training and self.config.batch_norm and x.shape[0] * (h // self.multiple) * (w // self.multiple) == 1:
            raise ValueError(
                f"batch norm needs >= 2 images in train mode at {h}x{w}: the innermost level is 1x1, so a batch of "
                f"{x.shape[0]} leaves one value per channel; train with batch >= 2 (or larger images), or call "
                "model.eval() to predict"
            )
        x = (x * 2 - 1).contiguous(memory_format=torch.channels_last)  # NHWC: ~1.5x faster convs on CPUs
        z = self.head(self.body(self.stem(x)))  # (B, 1, H, W)
        return z.float().contiguous()


# ----------------------------------------------------------------------------- depth loss (Liu et al.)


def normalize_depth(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per image: subtract the mean and divide by the standard deviation, ``(B, 1, H, W)``.

    Relative depth has no scale or offset, so the depth loss compares *normalised* maps; otherwise
    the weight gamma would depend on whatever scale a particular network happened to learn.
    """
    z = _as_depth_map(z, "z").float()
    mean = z.mean(dim=(1, 2, 3), keepdim=True)
    std = z.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (z - mean) / (std + eps)


def depth_loss(depth_x: torch.Tensor, depth_content: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Liu et al.'s depth loss ``(1/HW) sum_ij (depth(X)_ij - depth(Y_content)_ij)^2``, mean over the batch.

    With ``normalize=True`` (default) both maps are normalised per image first (:func:`normalize_depth`).
    """
    a, b = _as_depth_map(depth_x, "depth_x"), _as_depth_map(depth_content, "depth_content")
    if a.shape != b.shape:
        raise ValueError(f"depth maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if normalize:
        a, b = normalize_depth(a), normalize_depth(b)
    return ((a.float() - b.float()) ** 2).mean()


class DepthLossTerm:
    """``fn(X) -> scalar``: the depth loss of image ``X`` against a fixed content image.

    Built for :func:`animlib.style.stylize`'s ``extra_losses={"depth": (gamma, DepthLossTerm(net,
    content))}``. The network is frozen and in eval mode; ``downsample`` average-pools the image
    before the network (the source pools its 512x640 images 2x before every network).
    """

    def __init__(self, net: nn.Module, content: torch.Tensor, downsample: int = 1, normalize: bool = True):
        if downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {downsample}")
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.downsample, self.normalize = downsample, normalize
        with torch.no_grad():
            self.target = self.depth(content).detach()

    def depth(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.net.parameters()).device
        x = x.to(dev)
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)
        return self.net(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return depth_loss(self.depth(x), self.target, self.normalize)


@torch.no_grad()
def predict_depth(net: nn.Module, images: torch.Tensor, batch_size: int = 64, downsample: int = 1) -> torch.Tensor:
    """Run ``net`` in eval mode over ``images`` ``(N, 3, H, W)`` in batches; returns ``(N, 1, h, w)`` on CPU."""
    return batched_inference(lambda x: net(F.avg_pool2d(x, downsample) if downsample > 1 else x), images,
                             batch_size, model=net)


# ----------------------------------------------------------------------------- training


@dataclass
class RelativeDepthStep:
    """A step function for :class:`animlib.engine.Trainer`: sample pairs, Chen's loss, one update.

    Batches are dicts with ``image`` ``(B, 3, H, W)``, ``depth`` ``(B, 1, H, W)`` and (optionally)
    ``valid`` (bool, where depth is known). ``sparse=True`` samples pairs with the source's lidar
    rule; ``sparse=False`` with Chen's dense rule (see :func:`training_pairs`).
    """

    n_pairs: int = 1024  # pairs per image
    sparse: bool = False  # lidar rule (fine-tuning) or dense rule (pre-training)
    max_distance: float = 40.0  # pixels
    equal_ratio: float = 1.02  # dense rule: depth ratio below which a pair is "equal"
    model: str = "model"  # which of the trainer's models/optimisers to use

    def __call__(self, trainer, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        depth = batch["depth"]
        valid = batch.get("valid")
        pairs = training_pairs(depth, valid, self.n_pairs, sparse=self.sparse, max_distance=self.max_distance,
                               equal_ratio=self.equal_ratio)
        if len(pairs) == 0:
            raise ValueError("a training batch gave no point pairs: is the depth valid anywhere?")
        with trainer.autocast():
            z = trainer.models[self.model](batch["image"])  # (B, 1, H, W)
        z_x, z_y, rel = gather_pairs(z.float(), pairs)
        loss = relative_depth_loss(z_x, z_y, rel)
        trainer.optimize(loss, self.model)
        with torch.no_grad():
            ordered = rel != 0
            if not bool(ordered.any()):  # only "equal" pairs (a wall, a sky crop): accuracy is undefined here
                return {"loss": loss.detach()}
            acc = ordinal_accuracy(z_x[ordered], z_y[ordered], rel[ordered])
        return {"loss": loss.detach(), "accuracy": acc}


# ----------------------------------------------------------------------------------------------
# chapter 4's sizes
# ----------------------------------------------------------------------------------------------
@dataclass
class DepthSettings(ProfileSettings):
    """Chapter 4's sizes by profile: data, network width, training, and the depth-aware style transfer."""

    size: Union[int, Tuple[int, int]]  # training images (the source fine-tunes at 224x288)
    n_train: int  # scenes per domain (synthetic data)
    n_test: int  # held-out scenes per domain
    width: float  # channel multiplier of the hourglass (1.0: the released size)
    batch: int  # images per step
    pre_steps: int  # pre-training steps on rooms
    ft_steps: int  # fine-tuning steps on streets
    ft_lr: float  # constant Adam learning rate of the fine-tuning
    judge_steps: int  # steps of the independent depth judge
    style_size: Union[int, Tuple[int, int]]  # depth-aware style transfer images
    style_steps: int  # style transfer steps

    @classmethod
    def quick(cls) -> DepthSettings:
        return cls(size=64, n_train=384, n_test=64, width=0.25, batch=16, pre_steps=200, ft_steps=100, ft_lr=3e-5,
                   judge_steps=50, style_size=96, style_steps=40)

    @classmethod
    def full(cls) -> DepthSettings:
        return cls(size=(224, 288), n_train=2000, n_test=500, width=1.0, batch=8, pre_steps=20000, ft_steps=4000,
                   ft_lr=1e-4, judge_steps=20000, style_size=(512, 640), style_steps=500)
