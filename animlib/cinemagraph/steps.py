"""Training steps of :mod:`animlib.cinemagraph`: eq. (10) for the generator, Q-learning for the DRQN.

:class:`GeneratorStep` (MSE + adversarial term), :class:`DRQNStep` with its knobs
:class:`DRQNSchedule`, and :func:`drqn_lr_schedule`; all are steps of :class:`animlib.engine.Trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Trainer
from ..gan import alternating_step, d_loss_bce
from ..rehearsal import cap_phase
from ..rl import EpisodeReplay, bellman_targets, sync_target
from .networks import CinemagraphDRQN

__all__ = [
    "GeneratorStep",
    "DRQNSchedule",
    "DRQNStep",
    "drqn_lr_schedule",
]


def _targets(batch: Dict[str, torch.Tensor], n_frames: int) -> torch.Tensor:
    """Targets ``y_1..y_n`` of a looping clip: frames ``1..T-1`` then frame 0 again (loop closure)."""
    frames = batch["frames"]  # (B, T, C, H, W)
    T = frames.shape[1]
    idx = torch.arange(1, n_frames + 1, device=frames.device) % T
    return frames[:, idx]  # (B, n, C, H, W)


@dataclass
class GeneratorStep:
    """One update of the recurrent generator with eq. (10): MSE + ``adv_weight`` · (−log D(G(x))).

    Without a discriminator (``disc`` not in ``trainer.models``, or ``adv_weight == 0``) it is plain
    MSE. The generator produces ``n_frames`` (default ``T``: one full loop, whose last target is
    frame 0 again). The discriminator judges ``disc_frames`` randomly chosen time steps of every
    clip (default: all), real and generated alike; the alternating D/G updates are
    :func:`animlib.gan.alternating_step`'s.
    """

    adv_weight: float = 0.0  # λ_adv of eq. (10)
    n_frames: Optional[int] = None  # frames to generate (None: the clip's length T)
    disc_frames: Optional[int] = None  # time steps per clip that D judges (None: all)
    gen: str = "g"  # the trainer's generator
    disc: str = "d"  # the trainer's discriminator (if it has one)

    def __call__(self, trainer: Trainer, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        adv_weight, n_frames, disc_frames, gen, disc = self.adv_weight, self.n_frames, self.disc_frames, self.gen, self.disc
        frames = batch["frames"]  # (B, T, C, H, W)
        n = n_frames or frames.shape[1]
        target = _targets(batch, n)  # (B, n, C, H, W)
        G = trainer.models[gen]
        use_d = disc in trainer.models and adv_weight > 0
        idx = torch.arange(n, device=frames.device)
        if use_d and disc_frames is not None and disc_frames < n:  # drawn on the host's generator, as always
            idx = torch.randperm(n)[:disc_frames].sort().values.to(frames.device)
        out: Dict[str, torch.Tensor] = {}

        def generate():
            with trainer.autocast():
                fake = G(frames[:, 0], n)  # (B, n, C, H, W)
            out["mse"] = F.mse_loss(fake.float(), target)
            return fake[:, idx].flatten(0, 1), {"mse": out["mse"]}

        if use_d:
            metrics = alternating_step(trainer, target[:, idx].flatten(0, 1), generate, gen=gen, disc=disc,
                                       loss="bce", adv_weight=adv_weight)
            metrics["loss"] = metrics["mse"]
            return metrics
        generate()
        trainer.optimize(out["mse"], gen)
        return {"loss": out["mse"].detach(), "mse": out["mse"].detach()}


@dataclass
class DRQNSchedule:
    """Knobs of :class:`DRQNStep` (defaults: the setting measured to work at 32×32, N = 4)."""

    warmup: int = 150  # generator-only iterations (true-class actions) before Q-learning starts
    gamma: float = 0.5  # discount γ (the source's δ)
    reward_scale: float = 30.0  # r = -reward_scale · MSE(ŷ_{t+1}, y_{t+1})
    realism_weight: float = 0.0  # + realism_weight · log D(ŷ_{t+1}) when a discriminator "d" is trained
    q_weight: float = 1.0  # weight of the Huber TD loss in the joint loss
    target_tau: float = 0.05  # Polyak rate of the target network per iteration
    eps_start: float = 1.0  # ε at the end of the warm-up
    eps_end: float = 0.05  # final ε
    eps_steps: int = 300  # iterations of the ε decay (after the warm-up)
    teacher_weight: float = 1.0  # weight of the teacher-forced generator MSE (kept during Q-learning)
    teacher_every: int = 1  # during Q-learning, run the teacher-forced generator update every k-th iteration
    replay_capacity: int = 0  # episodes kept (as float16) for bootstrapped sequential updates (0: on-policy only)
    replay_batch: int = 0  # replayed episodes per iteration, each unrolled from its first frame


@dataclass
class DRQNStep:
    """One DRQN iteration: generator MSE with true-class actions, then (after the warm-up) Q-learning.

    Q-learning part: an ε-greedy rollout whose chosen actions drive the decoder; rewards
    ``r_t = -s · MSE(ŷ_{t+1}, y_{t+1})`` per scene; Double-DQN targets
    ``y_t = r_t + γ Q_target(s_{t+1}, argmax_a Q(s_{t+1}, a))`` (0 after the last step), where the
    target network unrolls over the same generated frames; Huber loss on ``Q(s_t, a_t) - y_t``.
    The generator MSE and the TD loss are summed and optimised together (the Q-loss gradient into
    the shared trunk is scaled by the model's ``q_grad_scale``). With an episode memory
    (``schedule.replay_capacity`` and ``replay_batch``) the rollout only acts: its episodes are
    stored, and the TD loss comes from ``replay_batch`` stored whole episodes (the fresh ones among
    them), each unrolled from its first frame with the current weights: Hausknecht & Stone's
    bootstrapped sequential updates.
    """

    schedule: DRQNSchedule  # warm-up, γ, rewards, ε decay, loss weights
    target_net: nn.Module  # the slowly updated copy of the DRQN (:func:`make_target`)
    model: str = "drqn"  # the trainer's DRQN
    disc: str = "d"  # the trainer's discriminator, used when ``schedule.realism_weight > 0``
    generator: Optional[torch.Generator] = None  # seeds the ε-greedy choices and the replay draws
    replay: Optional[EpisodeReplay] = None  # episode memory (made on the first batch if the schedule asks for one)

    def _td_targets(self, inputs: torch.Tensor, rewards: torch.Tensor, q_online: torch.Tensor,
                    trainer: Trainer) -> torch.Tensor:
        """Double-DQN targets ``(B, n)`` for an episode whose step inputs are ``inputs`` ``(B, n, C, H, W)``."""
        B, n = rewards.shape
        with trainer.autocast():
            q_tgt = self.target_net.q_values(inputs).float()  # (B, n, N)
        next_t = torch.cat([q_tgt[:, 1:], torch.zeros_like(q_tgt[:, :1])], 1)
        next_o = torch.cat([q_online[:, 1:], torch.zeros_like(q_online[:, :1])], 1)
        dones = torch.zeros(B, n, device=rewards.device)
        dones[:, -1] = 1.0
        return bellman_targets(rewards.flatten(), next_t.flatten(0, 1), dones.flatten(),
                               self.schedule.gamma, next_q_online=next_o.flatten(0, 1)).reshape(B, n)

    def __call__(self, trainer: Trainer, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
        schedule, target_net, model, disc, generator = self.schedule, self.target_net, self.model, self.disc, self.generator
        net: CinemagraphDRQN = trainer.models[model]
        frames, labels = batch["frames"], batch["label"]
        p = next(target_net.parameters(), None)
        if p is not None and p.device != frames.device:  # made before the trainer moved the DRQN to its device
            target_net.to(frames.device)
        B, T = frames.shape[:2]
        n = T
        target = _targets(batch, n)  # (B, n, C, H, W)
        # the true motion of every step (scenes whose motion changes have a per-step label)
        teacher = batch["step_label"] if "step_label" in batch else labels[:, None].expand(B, n)
        if schedule.replay_capacity > 0 and self.replay is None:
            self.replay = EpisodeReplay(schedule.replay_capacity, n, tuple(frames.shape[2:]), torch.float16)
        it = trainer.step
        warmup = cap_phase(schedule.warmup)  # (a rehearsal with a few steps still reaches Q-learning)
        loss = torch.zeros((), device=frames.device)
        metrics: Dict[str, Any] = {}
        if it < warmup or (it - warmup) % max(1, schedule.teacher_every) == 0:
            with trainer.autocast():
                out = net.rollout(frames[:, 0], n, policy=teacher)
            gen_mse = F.mse_loss(out["frames"].float(), target)
            loss = loss + schedule.teacher_weight * gen_mse
            metrics["mse"] = gen_mse.detach()
        if it >= warmup:
            k = it - warmup
            eps = schedule.eps_end + (schedule.eps_start - schedule.eps_end) * max(0.0, 1 - k / schedule.eps_steps)
            replaying = self.replay is not None and schedule.replay_batch > 0
            # with an episode memory the fresh rollout only acts (no graph); the update comes from replay
            with trainer.autocast(), torch.set_grad_enabled(torch.is_grad_enabled() and not replaying):
                ro = net.rollout(frames[:, 0], n, policy="epsilon", epsilon=eps, generator=generator,
                                 decoder_grad=False)  # the TD loss trains the Q-head and the trunk only
            gen = ro["frames"].detach().float()  # (B, n, C, H, W)
            with torch.no_grad():
                err = (gen - target).pow(2).mean((2, 3, 4))  # (B, n)
                rewards = -schedule.reward_scale * err
                if schedule.realism_weight > 0 and disc in trainer.models:
                    logits = trainer.models[disc](gen.flatten(0, 1)).float().reshape(B, n)
                    rewards = rewards + schedule.realism_weight * F.logsigmoid(logits)
                # States s_{t+1} are reached by feeding ŷ_{t+1}; input sequence x, ŷ_1..ŷ_{n-1}.
                inputs = torch.cat([frames[:, :1], gen[:, :-1]], dim=1)
            if replaying:
                # bootstrapped sequential updates: store the fresh episodes, then learn from stored
                # whole episodes (fresh and older), each unrolled from its first frame with current weights
                self.replay.add(inputs, ro["actions"], rewards)
                ep = self.replay.sample(schedule.replay_batch, generator)
                ep_in = ep["inputs"].to(frames.device, frames.dtype)
                ep_r, ep_a = ep["rewards"].to(frames.device), ep["actions"].to(frames.device)
                with trainer.autocast():
                    q_rep = net.q_sequence(ep_in).float()  # (b, n, N)
                with torch.no_grad():
                    y = self._td_targets(ep_in, ep_r, q_rep.detach(), trainer)
                q_sa = q_rep.gather(2, ep_a[..., None]).squeeze(2)  # (b, n)
                metrics["replayed"] = len(self.replay)
            else:  # on-policy: the fresh rollout's own transitions
                with torch.no_grad():
                    y = self._td_targets(inputs, rewards, ro["q"].detach().float(), trainer)
                q_sa = ro["q"].float().gather(2, ro["actions"][..., None].long()).squeeze(2)  # (B, n)
                if self.replay is not None:
                    self.replay.add(inputs, ro["actions"], rewards)
            td = F.smooth_l1_loss(q_sa, y)
            loss = loss + schedule.q_weight * td
            # tensors: the trainer reads them on the host when it syncs (not every step on a GPU)
            metrics.update(td=td.detach(), reward=rewards.mean(), epsilon=eps, q_mean=q_sa.detach().mean(),
                           greedy_acc=(ro["q"].detach().argmax(2) == teacher).float().mean())
            if schedule.realism_weight > 0 and disc in trainer.models:
                real_l = trainer.models[disc](target.flatten(0, 1))
                fake_l = trainer.models[disc](gen.flatten(0, 1))
                trainer.optimize(d_loss_bce(real_l.float(), fake_l.float()), disc)
        trainer.optimize(loss, model)
        if it >= warmup:
            sync_target(target_net, net, schedule.target_tau)
        elif it == warmup - 1:
            sync_target(target_net, net, 1.0)
        metrics["loss"] = loss.detach()
        return metrics


def drqn_lr_schedule(optimizer: torch.optim.Optimizer, schedule: DRQNSchedule, total_steps: int,
                     floor: float = 0.2) -> torch.optim.lr_scheduler.LambdaLR:
    """Full learning rate during the warm-up, then a linear decay to ``floor`` times it.

    Q-learning targets move as the network learns; a shrinking step size damps the oscillations
    of the greedy policy late in training (stepped once per iteration by the trainer).
    """
    warmup = cap_phase(schedule.warmup)
    span = max(1, total_steps - warmup)

    def factor(k: int) -> float:
        return 1.0 if k < warmup else max(floor, 1.0 - (1.0 - floor) * (k - warmup) / span)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
