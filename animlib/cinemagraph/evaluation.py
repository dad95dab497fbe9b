"""Measurements of :mod:`animlib.cinemagraph`: does a generated loop move like the truth, does a
policy follow the motion.

:func:`cinemagraph_metrics` and :func:`evaluate_generator` (scenes with a true loop),
:func:`region_motion` (photographs, no truth), :func:`evaluate_policy`, :func:`action_metrics` and
:func:`best_matching_accuracy` (the DRQN's actions).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .networks import CinemagraphDRQN, CinemagraphGenerator
from .steps import _targets

__all__ = [
    "cinemagraph_metrics",
    "evaluate_generator",
    "region_motion",
    "evaluate_policy",
    "best_matching_accuracy",
    "action_metrics",
]


def cinemagraph_metrics(generated: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> Dict[str, float]:
    """Numbers that say whether a generated loop moves like the truth.

    ``generated`` ``(B, n, C, H, W)`` are ``ŷ_1..ŷ_n`` from the stills ``frames[:, 0]``; ``frames``
    ``(B, T, C, H, W)`` the true loop; ``mask`` ``(B, 1, H, W)``. With ``n >= T`` the frame
    ``ŷ_T`` should equal ``x`` (the loop closes). Returns:

    - ``motion_mse``: squared error inside the mask over ``ŷ_1..ŷ_{T-1}``;
    - ``static_motion_mse``: the same for the trivial baseline that repeats the still;
    - ``background_mse``: squared error outside the mask;
    - ``motion_energy_ratio``: mean temporal std inside the mask of ``[x, ŷ_1..ŷ_{T-1}]`` over that of
      the true frames (a blur that lowers MSE without moving scores near 0; 1 = as lively as the truth);
    - ``loop_error``: squared error inside the mask between ``ŷ_T`` and ``x`` (``nan`` if ``n < T``);
    - ``true_step_mse``: squared change between consecutive true frames in the mask (the scale of
      one step of motion, to read ``loop_error`` against).
    """
    B, T = frames.shape[:2]
    gen = generated.float()
    m = mask.float()[:, None]  # (B, 1, 1, H, W)
    C = frames.shape[2]
    k = min(T - 1, gen.shape[1])
    truth = frames[:, 1 : k + 1].float()
    still = frames[:, :1].float()

    def masked(err: torch.Tensor, w: torch.Tensor) -> float:
        w = w.expand_as(err)
        return float((err * w).sum() / w.sum().clamp_min(1e-8))

    seq_gen = torch.cat([still, gen[:, :k]], 1)
    seq_true = frames[:, : k + 1].float()
    std_ratio = masked(seq_gen.std(1, keepdim=True), m) / max(masked(seq_true.std(1, keepdim=True), m), 1e-12)
    out = {
        "motion_mse": masked((gen[:, :k] - truth) ** 2, m),
        "static_motion_mse": masked((still - truth) ** 2, m),
        "background_mse": masked((gen[:, :k] - truth) ** 2, 1 - m),
        "motion_energy_ratio": std_ratio,
        "loop_error": masked((gen[:, T - 1 : T] - still) ** 2, m) if gen.shape[1] >= T else float("nan"),
        "true_step_mse": masked((frames[:, 1:] - frames[:, :-1]).float() ** 2, m),
    }
    del C
    return out


def region_motion(loop: torch.Tensor, region: torch.Tensor, threshold: float = 0.5) -> Dict[str, float]:
    """How much a generated loop moves inside a region and outside it (for photographs, no truth).

    ``loop`` ``(T, C, H, W)`` is ``[x, ŷ_1 .. ŷ_{T-1}]``; ``region`` ``(1, H, W)`` or ``(H, W)`` in
    [0, 1]. Motion energy is the temporal standard deviation, averaged over channels and over the
    pixels where ``region > threshold`` (``inside``) or ``region <= threshold`` (``outside``). Returns
    ``motion_energy`` (inside), ``background_leak`` (outside) and ``leak_ratio`` (outside / inside).
    """
    if loop.dim() != 4:
        raise ValueError(f"loop must be (T, C, H, W), got shape {tuple(loop.shape)}")
    r = region.reshape(loop.shape[-2:]).float() > threshold
    if not bool(r.any()) or bool(r.all()):
        raise ValueError("the region must cover some pixels and leave some out")
    std = loop.float().std(0).mean(0)  # (H, W)
    inside, outside = float(std[r].mean()), float(std[~r].mean())
    return {"motion_energy": inside, "background_leak": outside, "leak_ratio": outside / max(inside, 1e-12)}


@torch.no_grad()
def evaluate_generator(gen: CinemagraphGenerator, frames: torch.Tensor, mask: torch.Tensor,
                       batch_size: int = 128, actions: Optional[torch.Tensor] = None) -> Tuple[Dict[str, float], torch.Tensor]:
    """:func:`cinemagraph_metrics` of ``gen`` on held-out clips (one loop, ``n = T``); returns (metrics, frames)."""
    gen.eval()
    dev = next(gen.parameters()).device
    T = frames.shape[1]
    outs = []
    for i in range(0, frames.shape[0], batch_size):
        x = frames[i : i + batch_size, 0].to(dev)
        a = None if actions is None else actions[i : i + batch_size].to(dev)
        outs.append(gen(x, T, actions=a).float().cpu())
    generated = torch.cat(outs)
    return cinemagraph_metrics(generated, frames, mask), generated


@torch.no_grad()
def evaluate_policy(net: CinemagraphDRQN, frames: torch.Tensor, labels: torch.Tensor,
                    policy: Union[str, torch.Tensor] = "greedy", constant: int = 0, reward_scale: float = 30.0,
                    seed: int = 0, batch_size: int = 128) -> Dict[str, torch.Tensor]:
    """Run ``policy`` on held-out clips; returns per-scene ``return`` (undiscounted sum of rewards),
    ``actions`` ``(B, T)``, ``frames`` ``(B, T, C, H, W)`` and ``q`` ``(B, T, N)``.

    ``policy`` is a name (see :meth:`CinemagraphDRQN.rollout`) or a tensor of actions ``(B, T)``:
    the scenes' true per-step classes give the *oracle* policy, an upper bound for the return."""
    net.eval()
    dev = next(net.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)
    T = frames.shape[1]
    if isinstance(policy, torch.Tensor) and policy.shape != (frames.shape[0], T):
        raise ValueError(f"a policy tensor must hold one action per scene and step, shape ({frames.shape[0]}, {T}); "
                         f"got {tuple(policy.shape)}")
    rets, acts, gens, qs = [], [], [], []
    for i in range(0, frames.shape[0], batch_size):
        clip = frames[i : i + batch_size]
        pol = policy[i : i + batch_size] if isinstance(policy, torch.Tensor) else policy
        ro = net.rollout(clip[:, 0].to(dev), T, policy=pol, generator=g, constant=constant)
        target = _targets({"frames": clip}, T)
        err = (ro["frames"].float().cpu() - target).pow(2).mean((2, 3, 4))  # (b, T)
        rets.append(-reward_scale * err.sum(1))
        acts.append(ro["actions"].cpu())
        gens.append(ro["frames"].float().cpu())
        qs.append(ro["q"].float().cpu())
    return {"return": torch.cat(rets), "actions": torch.cat(acts), "frames": torch.cat(gens), "q": torch.cat(qs)}


def action_metrics(actions: torch.Tensor, step_label: torch.Tensor) -> Dict[str, float]:
    """Does a policy follow the motion step by step? ``actions``, ``step_label`` ``(B, T)``.

    - ``per_step_action_accuracy``: share of (scene, step) pairs whose action is the true class;
    - ``action_change_recall``: of the steps where the true motion changes (``step_label[t] !=
      step_label[t-1]``), the share where the action changes too (``nan`` if the motion never does);
    - ``action_change_correct``: of those steps, the share where the new action is the right one;
    - ``spurious_change_rate``: of the steps where the motion stays, the share where the action changes.
    """
    if actions.shape != step_label.shape or actions.dim() != 2:
        raise ValueError(f"actions and step_label must both be (B, T), got {tuple(actions.shape)} and "
                         f"{tuple(step_label.shape)}")
    a, y = actions.long().cpu(), step_label.long().cpu()
    changes = y[:, 1:] != y[:, :-1]
    acted = a[:, 1:] != a[:, :-1]
    nan = float("nan")
    return {
        "per_step_action_accuracy": float((a == y).float().mean()),
        "action_change_recall": float(acted[changes].float().mean()) if bool(changes.any()) else nan,
        "action_change_correct": float((a[:, 1:] == y[:, 1:])[changes].float().mean()) if bool(changes.any()) else nan,
        "spurious_change_rate": float(acted[~changes].float().mean()) if bool((~changes).any()) else nan,
    }


def best_matching_accuracy(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> Tuple[float, np.ndarray]:
    """Accuracy after the best one-to-one relabelling of predicted actions to classes (Hungarian).

    Returns ``(accuracy, mapping)`` with ``mapping[action] = class``.
    """
    p, t = pred.flatten().long().cpu().numpy(), true.flatten().long().cpu().numpy()
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (p, t), 1)
    rows, cols = linear_sum_assignment(-counts)
    mapping = np.empty(num_classes, dtype=np.int64)
    mapping[rows] = cols
    return float(counts[rows, cols].sum() / max(1, len(p))), mapping
