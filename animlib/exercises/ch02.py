"""Self-checks for chapter 2 (Q-learning and the cinemagraph DRQN).

Each ``check_*`` takes the learner's function, compares it with a reference on fixed inputs,
prints a verdict with a hint and returns True/False; an unsolved exercise (returning ``None``)
prints a hint and returns False.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from animlib.rl import bellman_targets

from ._common import report_raised, try_call

__all__ = ["check_discounted_return", "check_q_update", "check_double_dqn_target"]



def check_discounted_return(fn: Callable) -> bool:
    """``fn(rewards, gamma)`` must return ``Σ_k γ^k r_k`` (the bracket of the source's eq. (7))."""
    cases = [([1.0, 1.0, 1.0], 0.5, 1.75), ([0.0, 0.0, 2.0], 0.9, 1.62), ([-1.0, 2.0], 1.0, 1.0)]
    for rewards, gamma, ref in cases:
        out, err = try_call(fn, list(rewards), gamma)
        if err is not None:
            return report_raised(err)
        if out is None:
            print("Not solved yet: return a float, r_0 + γ r_1 + γ² r_2 + ...")
            return False
        if abs(float(out) - ref) > 1e-6:
            print(f"Not quite: for rewards {rewards} and γ={gamma} the return is {ref}, you gave {float(out):.4g}. "
                  "The first reward is not discounted (γ^0 = 1).")
            return False
    print("Correct!")
    return True


def check_q_update(fn: Callable) -> bool:
    """``fn(Q, s, a, r, s_next, done, alpha, gamma)`` must return a NEW array with eq. (9) applied."""
    Q = np.array([[0.0, 1.0], [2.0, 0.5], [0.0, 0.0]])
    cases = [((0, 1, 1.0, 1, False, 0.5, 0.9), 1.0 + 0.5 * (1.0 + 0.9 * 2.0 - 1.0)),
             ((1, 0, -1.0, 0, True, 0.1, 0.9), 2.0 + 0.1 * (-1.0 - 2.0))]
    for (s, a, r, s2, done, alpha, gamma), ref in cases:
        Qc = Q.copy()
        out, err = try_call(fn, Qc, s, a, r, s2, done, alpha, gamma)
        if err is not None:
            return report_raised(err)
        if out is None:
            print("Not solved yet: return the updated table (a copy of Q with one entry changed).")
            return False
        if not np.array_equal(Qc, Q):
            print("Not quite: your function changed the table it was given. Return a NEW table: copy Q first "
                  "(Q = Q.copy()), so that the caller's table stays as it was.")
            return False
        out = np.asarray(out)
        if out.shape != Q.shape:
            print(f"Not quite: return the whole table of shape {Q.shape}.")
            return False
        if abs(out[s, a] - ref) > 1e-9:
            hint = "after a terminal step there is no future value" if done else "the target uses max over a' of Q[s_next]"
            print(f"Not quite: Q[{s},{a}] should become {ref:.4g}, got {out[s, a]:.4g} ({hint}).")
            return False
        others = np.ones_like(Q, bool)
        others[s, a] = False
        if not np.allclose(out[others], Q[others]):
            print("Not quite: only the entry Q[s, a] may change.")
            return False
    print("Correct!")
    return True


def check_double_dqn_target(fn: Callable) -> bool:
    """``fn(r, q_next_online, q_next_target, done, gamma)`` must return Double-DQN targets ``(B,)``."""
    g = torch.Generator().manual_seed(0)
    r = torch.randn(6, generator=g)
    qo, qt = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    done = torch.tensor([0, 0, 1, 0, 1, 0.0])
    out, err = try_call(fn, r, qo, qt, done, 0.9)
    if err is not None:
        return report_raised(err)
    if out is None:
        print("Not solved yet: pick a' with the online Q, evaluate it with the target Q.")
        return False
    ref = bellman_targets(r, qt, done, 0.9, next_q_online=qo)
    if torch.allclose(torch.as_tensor(out, dtype=ref.dtype), ref, atol=1e-5):
        print("Correct! The online network chooses, the target network evaluates.")
        return True
    if torch.allclose(torch.as_tensor(out, dtype=ref.dtype), bellman_targets(r, qt, done, 0.9), atol=1e-5):
        print("Not quite: that is the plain DQN target (max of the target Q); let the ONLINE Q choose a'.")
    else:
        print("Not quite: y = r + γ (1 - done) q_next_target[a*], with a* = argmax q_next_online.")
    return False


def solution_discounted_return(rewards: Sequence[float], gamma: float) -> float:
    return float(sum(r * gamma**k for k, r in enumerate(rewards)))


def solution_q_update(Q, s, a, r, s_next, done, alpha, gamma):
    Q = np.array(Q, dtype=float, copy=True)
    target = r + (0.0 if done else gamma * Q[s_next].max())
    Q[s, a] += alpha * (target - Q[s, a])
    return Q


def solution_double_dqn_target(r, q_next_online, q_next_target, done, gamma):
    a_star = q_next_online.argmax(1, keepdim=True)
    return r + gamma * (1 - done) * q_next_target.gather(1, a_star).squeeze(1)
