"""Cinemagraphs from a single image: a recurrent generator, its discriminator, and a DRQN.

Source S0 (E. Klembara, "Generovanie cinemagrafov pomocou hlbokých rekurentných Q-sietí", TU Košice)
generates ``n`` frames ``Y = {y_1..y_n}`` from one still ``x`` with a convolutional network holding
an LSTM layer, recursively: the previous output is the next input, and a latent ``z`` carries the
state. Two variants:

1. **Recurrent model** (chapter 1). FrameMapEncoder → peephole :class:`~animlib.convlstm.ConvLSTMCell` →
   decoder, trained with the source's two-part loss

   .. math::  loss = |Y - G(x)|^2 + λ_{adv} · (-\\log D(G(x)))                           (10)

   ``D`` a CNN real/fake classifier (:class:`FrameDiscriminator`); the adversarial part and the
   alternating updates come from :mod:`animlib.gan` (``loss="bce"`` gives exactly ``-log D(G(x))``).

2. **Deep recurrent Q-network** (chapter 2; Hausknecht & Stone 2015). The "linear" motion space is
   quantised into ``N`` actions; a Q-head reads the ConvLSTM state and outputs ``Q(s, ·)`` (an
   ``N``-vector) at every step; the one-hot of ``argmax Q`` is concatenated with the hidden latent
   and decoded into the next frame. The action value is the source's eq. (7) (see :mod:`animlib.rl`).

Our decoder *moves* the previous frame instead of painting pixels (CDNA, Finn et al. 2016): it
predicts a ``K×K`` motion kernel (from the latent, or from the one-hot action in the DRQN) and a
mask ``m`` saying where the move applies,

.. math::  \\hat y_{t+1} = m ∘ (k_t ⋆ \\hat y_t) + (1 - m) ∘ \\hat y_t                    (11)

A plain convolutional decoder trained with MSE learns to copy the input (or to blur it), which lowers
the error without moving anything; moving pixels keeps the texture sharp and the background exact.
This reading of the source's unspecified "decoder" is ours, and the chapters say so.

The DRQN reward is ``r_t = -reward_scale · MSE(ŷ_{t+1}, y_{t+1})`` (plus, optionally,
``realism_weight · log D(ŷ_{t+1})``); training is on-policy: every iteration runs fresh ε-greedy
rollouts and regresses ``Q(s_t, a_t)`` on Double-DQN targets from a slowly updated target copy
(:class:`DRQNStep`). Recurrent states make single replayed transitions stale, so they are never replayed; with
``DRQNSchedule.replay_capacity`` whole episodes are, each unrolled from its first frame
(Hausknecht & Stone's bootstrapped sequential updates, :class:`~animlib.rl.EpisodeReplay`).

The package's modules, by role: :mod:`~animlib.cinemagraph.networks` (the config, the generator,
discriminator, Q-head and DRQN), :mod:`~animlib.cinemagraph.steps` (the training steps),
:mod:`~animlib.cinemagraph.evaluation` (the measurements) and :mod:`~animlib.cinemagraph.settings`
(the chapters' settings by profile). Every name below is importable from ``animlib.cinemagraph``.
"""

from .evaluation import (
    action_metrics,
    best_matching_accuracy,
    cinemagraph_metrics,
    evaluate_generator,
    evaluate_policy,
    region_motion,
)
from .networks import (
    CinemagraphConfig,
    CinemagraphDRQN,
    CinemagraphGenerator,
    FrameDiscriminator,
    FrameMapEncoder,
    MotionDecoder,
    QHead,
    apply_motion_kernel,
    scale_grad,
)
from .settings import CinemagraphSettings
from .steps import DRQNSchedule, DRQNStep, GeneratorStep, drqn_lr_schedule

__all__ = [
    "CinemagraphConfig",
    "scale_grad",
    "apply_motion_kernel",
    "FrameMapEncoder",
    "MotionDecoder",
    "CinemagraphGenerator",
    "FrameDiscriminator",
    "QHead",
    "CinemagraphDRQN",
    "GeneratorStep",
    "DRQNSchedule",
    "DRQNStep",
    "drqn_lr_schedule",
    "cinemagraph_metrics",
    "evaluate_generator",
    "region_motion",
    "evaluate_policy",
    "best_matching_accuracy",
    "action_metrics",
    "CinemagraphSettings",
]
