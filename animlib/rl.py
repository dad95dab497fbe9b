"""Reinforcement-learning pieces shared by the book: Q-learning, tabular and deep.

Source S0 defines the action value of a policy π with discount δ (the book writes γ for the
discount, because the source also uses δ for the sigmoid):

.. math::  Q(s, a) = \\max_π E[r_t + γ r_{t+1} + γ^2 r_{t+2} + … | s_t = s, a_t = a, π]      (7)

The optimal Q satisfies the Bellman optimality equation (Sutton & Barto 2018, eq. 3.20)

.. math::  Q^*(s, a) = E[r + γ \\max_{a'} Q^*(s', a')]                                         (8)

which value iteration solves by repeated application when the model (P, R) is known, and
Q-learning (Watkins & Dayan 1992) solves from samples without the model:

.. math::  Q(s, a) ← Q(s, a) + α [r + γ \\max_{a'} Q(s', a') - Q(s, a)]                      (9)

Deep Q-networks (Mnih et al. 2015) regress Q_θ(s, a) on the target ``r + γ max_a' Q_θ⁻(s', a')``
computed with a slowly updated *target network* θ⁻; Double DQN (van Hasselt et al. 2016) picks
``a'`` with the online network and evaluates it with the target network, which removes the
max-operator's upward bias. This module holds those pieces; the recurrent cinemagraph DRQN in
:mod:`animlib.cinemagraph` uses them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

__all__ = [
    "EpsilonSchedule",
    "epsilon_greedy",
    "bellman_targets",
    "sync_target",
    "make_target",
    "ReplayBuffer",
    "EpisodeReplay",
    "TabularMDP",
    "slippery_chain",
    "value_iteration",
    "policy_evaluation",
    "q_learning",
]


# ----------------------------------------------------------------------------- exploration


@dataclass
class EpsilonSchedule:
    """ε for ε-greedy exploration: ``start`` → ``end`` over ``steps`` steps, then constant.

    ``kind="linear"``: ``ε(t) = start + (end - start) · min(t / steps, 1)``;
    ``kind="exponential"``: ``ε(t) = end + (start - end) · exp(-5 t / steps)`` (1 % of the gap
    remains at ``t = steps``).
    """

    start: float = 1.0  # ε at step 0: act at random
    end: float = 0.05  # the floor: keep exploring a little
    steps: int = 1000  # length of the decay
    kind: str = "linear"  # "linear" or "exponential"

    def __post_init__(self) -> None:
        if not (0 <= self.end <= 1 and 0 <= self.start <= 1):
            raise ValueError(f"start and end must be probabilities in [0, 1], got {self.start}, {self.end}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.kind not in ("linear", "exponential"):
            raise ValueError(f"kind must be 'linear' or 'exponential', got {self.kind!r}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.kind == "linear":
            return self.start + (self.end - self.start) * min(step / self.steps, 1.0)
        return self.end + (self.start - self.end) * math.exp(-5.0 * step / self.steps)


def epsilon_greedy(q: torch.Tensor, epsilon: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Actions for Q-values ``q`` ``(B, N)``: argmax, replaced by a uniform action with probability ε."""
    if q.dim() != 2:
        raise ValueError(f"q must be (batch, num_actions), got shape {tuple(q.shape)}")
    greedy = q.argmax(dim=1)  # (B,)
    if epsilon <= 0:
        return greedy
    B, N = q.shape
    dev = generator.device if generator is not None else torch.device("cpu")
    explore = torch.rand(B, generator=generator, device=dev) < epsilon
    random_a = torch.randint(N, (B,), generator=generator, device=dev)
    return torch.where(explore.to(q.device), random_a.to(q.device), greedy)


# ----------------------------------------------------------------------------- targets


@torch.no_grad()
def bellman_targets(
    rewards: torch.Tensor,
    next_q_target: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    next_q_online: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Q-learning targets ``y = r + γ (1 - done) Q_target(s', a*)``.

    ``a* = argmax_a next_q_target`` (DQN), or ``argmax_a next_q_online`` when given (Double DQN:
    the online network chooses, the target network evaluates). Shapes: ``rewards``, ``dones`` ``(B,)``;
    Q-values ``(B, N)``. No gradient flows through the targets.
    """
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if next_q_target.dim() != 2 or rewards.shape != next_q_target.shape[:1]:
        raise ValueError(
            f"expected rewards (B,) and next Q-values (B, N); got {tuple(rewards.shape)} and "
            f"{tuple(next_q_target.shape)}"
        )
    if next_q_online is None:
        best = next_q_target.max(dim=1).values  # (B,)
    else:
        a_star = next_q_online.argmax(dim=1, keepdim=True)  # (B, 1)
        best = next_q_target.gather(1, a_star).squeeze(1)  # (B,)
    return rewards + gamma * (1.0 - dones.float()) * best


def make_target(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to compute targets with (``requires_grad=False``, eval mode)."""
    target = copy.deepcopy(model)
    for p in target.parameters():
        p.requires_grad_(False)
    return target.eval()


@torch.no_grad()
def sync_target(target: nn.Module, online: nn.Module, tau: float = 1.0) -> None:
    """θ⁻ ← τ θ + (1 − τ) θ⁻: a hard copy with ``tau=1`` (DQN), Polyak averaging with small τ."""
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    for pt, po in zip(target.parameters(), online.parameters()):
        pt.lerp_(po.detach(), tau)
    for bt, bo in zip(target.buffers(), online.buffers()):
        bt.copy_(bo)


class _RingState:
    """``state_dict``/``load_state_dict`` for a ring buffer: its tensors (named in ``_tensors``) and
    its write position and fill level, so ``Trainer(extra={"replay": buffer})`` checkpoints it."""

    _tensors: Tuple[str, ...] = ()
    pos: int
    size: int

    def state_dict(self) -> Dict[str, torch.Tensor]:
        state = {k: getattr(self, k) for k in self._tensors}
        state.update(pos=torch.tensor(self.pos), size=torch.tensor(self.size))
        return state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        for k in self._tensors:
            getattr(self, k).copy_(state[k])
        self.pos, self.size = int(state["pos"]), int(state["size"])


class ReplayBuffer(_RingState):
    """A ring buffer of transitions ``(state, action, reward, next_state, done)``.

    ``state`` may be any fixed-shape tensor (an index for tabular problems, a feature map for deep
    ones). ``sample(batch, generator)`` draws uniformly with replacement. The buffer has
    ``state_dict``/``load_state_dict``, so ``Trainer(extra={"replay": buffer})`` checkpoints it.
    """

    _tensors = ("states", "next_states", "actions", "rewards", "dones")

    def __init__(self, capacity: int, state_shape: Tuple[int, ...] = (), state_dtype: torch.dtype = torch.float32):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.states = torch.zeros((capacity, *state_shape), dtype=state_dtype)
        self.next_states = torch.zeros((capacity, *state_shape), dtype=state_dtype)
        self.actions = torch.zeros(capacity, dtype=torch.long)
        self.rewards = torch.zeros(capacity)
        self.dones = torch.zeros(capacity)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, state, action, reward, next_state, done) -> None:
        """Add one transition, or a batch (leading dimension) of them."""
        state = torch.as_tensor(state, dtype=self.states.dtype)
        batched = state.dim() == self.states.dim()
        if not batched:
            state, next_state = state[None], torch.as_tensor(next_state)[None]
            action, reward, done = [action], [reward], [done]
        n = state.shape[0]
        idx = (self.pos + torch.arange(n)) % self.capacity
        self.states[idx] = state.detach().cpu()
        self.next_states[idx] = torch.as_tensor(next_state, dtype=self.states.dtype).detach().cpu()
        self.actions[idx] = torch.as_tensor(action).long().cpu()
        self.rewards[idx] = torch.as_tensor(reward, dtype=torch.float32).cpu()
        self.dones[idx] = torch.as_tensor(done, dtype=torch.float32).cpu()
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer; add transitions first")
        idx = torch.randint(self.size, (batch_size,), generator=generator)
        return {"state": self.states[idx], "action": self.actions[idx], "reward": self.rewards[idx],
                "next_state": self.next_states[idx], "done": self.dones[idx]}



class EpisodeReplay(_RingState):
    """A ring buffer of whole episodes, for recurrent Q-networks (Hausknecht & Stone 2015).

    A recurrent network's state depends on everything it saw, so single replayed transitions would
    need stale stored states. Their *bootstrapped sequential updates* store whole episodes instead
    and replay each from its beginning, rebuilding the recurrent state with the current weights.
    An episode is its ``inputs`` ``(n, *obs_shape)`` (the observation at each step), ``actions``
    ``(n,)`` and ``rewards`` ``(n,)``. ``state_dict``/``load_state_dict`` make it checkpointable
    (``Trainer(extra={"replay": buffer})``).
    """

    _tensors = ("inputs", "actions", "rewards")

    def __init__(self, capacity: int, steps: int, obs_shape: Tuple[int, ...], obs_dtype: torch.dtype = torch.float32):
        if capacity < 1 or steps < 1:
            raise ValueError(f"capacity and steps must be >= 1, got {capacity} and {steps}")
        self.capacity, self.steps = int(capacity), int(steps)
        self.inputs = torch.zeros((capacity, steps, *obs_shape), dtype=obs_dtype)
        self.actions = torch.zeros(capacity, steps, dtype=torch.long)
        self.rewards = torch.zeros(capacity, steps)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, inputs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        """Add a batch of episodes: ``inputs`` ``(B, n, *obs)``, ``actions`` and ``rewards`` ``(B, n)``."""
        if inputs.shape[1:] != self.inputs.shape[1:] or actions.shape != inputs.shape[:2] \
                or rewards.shape != inputs.shape[:2]:
            raise ValueError(f"episodes must be inputs (B, {self.steps}, {', '.join(map(str, self.inputs.shape[2:]))}) "
                             f"with actions and rewards (B, {self.steps}); got {tuple(inputs.shape)}, "
                             f"{tuple(actions.shape)}, {tuple(rewards.shape)}")
        n = inputs.shape[0]
        idx = (self.pos + torch.arange(n)) % self.capacity
        self.inputs[idx] = inputs.detach().to("cpu", self.inputs.dtype)
        self.actions[idx] = actions.detach().long().cpu()
        self.rewards[idx] = rewards.detach().float().cpu()
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """``batch_size`` episodes drawn uniformly with replacement: dict of inputs, actions, rewards."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty episode buffer; add episodes first")
        idx = torch.randint(self.size, (batch_size,), generator=generator)
        return {"inputs": self.inputs[idx], "actions": self.actions[idx], "rewards": self.rewards[idx]}



# ----------------------------------------------------------------------------- tabular


@dataclass
class TabularMDP:
    """A finite MDP: ``P[s, a, s']`` transition probabilities, ``R[s, a]`` expected rewards.

    ``terminal[s]`` marks absorbing states (no further reward); ``gamma`` is the discount.
    """

    P: np.ndarray  # (S, A, S) rows sum to 1
    R: np.ndarray  # (S, A) expected reward of taking a in s
    gamma: float = 0.9  # discount γ (the source's δ)
    terminal: Optional[np.ndarray] = None  # (S,) bool

    def __post_init__(self) -> None:
        self.P = np.asarray(self.P, dtype=np.float64)
        self.R = np.asarray(self.R, dtype=np.float64)
        S, A, S2 = self.P.shape
        if S != S2 or self.R.shape != (S, A):
            raise ValueError(f"P must be (S, A, S) and R (S, A); got {self.P.shape} and {self.R.shape}")
        if not np.allclose(self.P.sum(-1), 1.0):
            raise ValueError("each P[s, a, :] must sum to 1")
        if not 0 <= self.gamma < 1:
            raise ValueError(f"gamma must be in [0, 1) for a finite answer, got {self.gamma}")
        self.terminal = np.zeros(S, bool) if self.terminal is None else np.asarray(self.terminal, bool)

    @property
    def num_states(self) -> int:
        return self.P.shape[0]

    @property
    def num_actions(self) -> int:
        return self.P.shape[1]

    def step(self, s: int, a: int, rng: np.random.Generator) -> Tuple[int, float, bool]:
        """Sample ``(s', r, done)`` from state ``s`` and action ``a``."""
        s2 = int(rng.choice(self.num_states, p=self.P[s, a]))
        return s2, float(self.R[s, a]), bool(self.terminal[s2])


def slippery_chain(n: int = 6, slip: float = 0.2, gamma: float = 0.9) -> TabularMDP:
    """A corridor of ``n`` states; actions 0 = left, 1 = right; with probability ``slip`` the move
    goes the other way. Reaching the right end pays +1 and ends the episode; the left end pays a
    small +0.1 and ends it too (a tempting but worse goal). Start states are the middle ones.
    """
    if n < 3:
        raise ValueError("the chain needs at least 3 states")
    P = np.zeros((n, 2, n))
    R = np.zeros((n, 2))
    terminal = np.zeros(n, bool)
    terminal[0] = terminal[-1] = True
    for s in range(n):
        if terminal[s]:
            P[s, :, s] = 1.0  # absorbing, reward 0
            continue
        for a, d in ((0, -1), (1, +1)):
            for move, p in ((d, 1 - slip), (-d, slip)):
                s2 = min(max(s + move, 0), n - 1)
                P[s, a, s2] += p
                R[s, a] += p * (1.0 if s2 == n - 1 else 0.1 if s2 == 0 else 0.0)
    return TabularMDP(P, R, gamma, terminal)


def value_iteration(mdp: TabularMDP, tol: float = 1e-10, max_iter: int = 10_000) -> Tuple[np.ndarray, int]:
    """Q* by repeated Bellman optimality backups (8): ``Q ← R + γ P max_a' Q``; returns (Q*, iterations)."""
    Q = np.zeros_like(mdp.R)
    alive = (~mdp.terminal).astype(np.float64)
    for it in range(1, max_iter + 1):
        V = Q.max(1) * alive  # terminal states have value 0
        Q_new = mdp.R + mdp.gamma * mdp.P @ V  # (S, A)
        Q_new[mdp.terminal] = 0.0
        if np.abs(Q_new - Q).max() < tol:
            return Q_new, it
        Q = Q_new
    return Q, max_iter


def policy_evaluation(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """V^π for a deterministic policy (one action per state), solving the linear Bellman equation."""
    S = mdp.num_states
    P_pi = mdp.P[np.arange(S), policy] * (~mdp.terminal)[:, None]  # (S, S), no flow out of terminals
    R_pi = mdp.R[np.arange(S), policy] * (~mdp.terminal)
    return np.linalg.solve(np.eye(S) - mdp.gamma * P_pi, R_pi)


def q_learning(
    mdp: TabularMDP,
    steps: int = 20_000,
    epsilon: Optional[EpsilonSchedule] = None,
    alpha_power: float = 0.8,
    max_episode_len: int = 100,
    start_states: Optional[List[int]] = None,
    seed: int = 0,
    replay: Optional[ReplayBuffer] = None,
    replay_batch: int = 0,
) -> Tuple[np.ndarray, Dict[str, List[float]]]:
    """Tabular Q-learning (9) with ε-greedy behaviour; returns (Q, history).

    The step size of each pair is ``α = 1 / n(s, a)^alpha_power`` (``n`` its visit count), which
    satisfies the Robbins-Monro conditions for ``0.5 < alpha_power <= 1``, so Q converges to Q* as
    long as every pair keeps being visited (Watkins & Dayan 1992). Episodes start in a random
    non-terminal state (or one of ``start_states``). With a ``replay`` buffer, each real step also
    replays ``replay_batch`` stored transitions (experience replay, Lin 1992; DQN's key ingredient).
    ``history`` holds per-episode ``return`` and ``epsilon``.
    """
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    eps = epsilon or EpsilonSchedule(1.0, 0.3, max(1, steps // 2))
    S, A = mdp.num_states, mdp.num_actions
    Q = np.zeros((S, A))
    visits = np.zeros((S, A))
    starts = start_states if start_states is not None else [s for s in range(S) if not mdp.terminal[s]]
    hist: Dict[str, List[float]] = {"return": [], "epsilon": []}

    def update(s: int, a: int, r: float, s2: int, done: bool) -> None:
        visits[s, a] += 1
        alpha = 1.0 / visits[s, a] ** alpha_power
        target = r + (0.0 if done else mdp.gamma * Q[s2].max())
        Q[s, a] += alpha * (target - Q[s, a])

    t = 0
    while t < steps:
        s, ret, disc = int(rng.choice(starts)), 0.0, 1.0
        for _ in range(max_episode_len):
            e = eps(t)
            a = int(rng.integers(A)) if rng.random() < e else int(rng.choice(np.flatnonzero(Q[s] == Q[s].max())))
            s2, r, done = mdp.step(s, a, rng)
            update(s, a, r, s2, done)
            if replay is not None:
                replay.add(torch.tensor(s), a, r, torch.tensor(s2), done)
                if replay_batch:
                    b = replay.sample(replay_batch, g)
                    for k in range(replay_batch):
                        update(int(b["state"][k]), int(b["action"][k]), float(b["reward"][k]),
                               int(b["next_state"][k]), bool(b["done"][k]))
            ret += disc * r
            disc *= mdp.gamma
            t += 1
            s = s2
            if done or t >= steps:
                break
        hist["return"].append(ret)
        hist["epsilon"].append(e)
    return Q, hist
