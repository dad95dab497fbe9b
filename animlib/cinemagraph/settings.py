"""Settings of :mod:`animlib.cinemagraph` by profile: :class:`CinemagraphSettings` (chapters 1 and 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from ..data.scenes import SceneConfig
from ..runtime import ProfileSettings
from .networks import CinemagraphConfig
from .steps import DRQNSchedule

__all__ = ["CinemagraphSettings"]


@dataclass
class CinemagraphSettings(ProfileSettings):
    """Scene, model and training settings of chapters 1 and 2, by profile.

    ``quick`` is what the book build runs on a CPU in a few minutes; ``full`` is our GPU setting
    (the source gives none): 128×128 scenes, 16-frame loops, 8 motion classes (two speeds), a wider
    model with three encoder levels, longer training, five seeds for the DRQN. Real clips replace
    the synthetic scenes when a chapter gets ``data_root``.
    """

    scene: SceneConfig  # the synthetic scenes
    model: CinemagraphConfig  # the generator (and the DRQN built on it)
    batch: int  # clips per step
    lr: float  # Adam learning rate
    gen_steps: int  # steps of the recurrent generator (chapter 1)
    adv_weight: float  # λ_adv of eq. (10)
    disc_frames: int  # time steps per clip the discriminator judges
    drqn: DRQNSchedule  # the DRQN's schedule (chapter 2)
    drqn_steps: int  # DRQN iterations
    drqn_seeds: List[int]  # one DRQN run per seed
    held_out: int  # held-out scenes for the measurements
    amp: str  # precision: "auto" picks bf16 only where the device computes it natively
    drqn_reverse: float  # chapter 2: share of scenes whose motion reverses halfway (the best action changes)

    @classmethod
    def quick(cls) -> CinemagraphSettings:
        return cls(scene=SceneConfig(size=32, frames=8, num_classes=4, background="texture"), model=CinemagraphConfig(),
                   batch=16, lr=5e-3, gen_steps=300, adv_weight=1e-3, disc_frames=2,
                   drqn=DRQNSchedule(warmup=120, eps_steps=400, eps_end=0.1, teacher_every=3,
                                     replay_capacity=512, replay_batch=16), drqn_steps=800,
                   drqn_seeds=[0], held_out=256, amp="auto", drqn_reverse=0.5)

    @classmethod
    def full(cls) -> CinemagraphSettings:
        return cls(scene=SceneConfig(size=128, frames=16, num_classes=8, block=8, background="texture"),
                   model=CinemagraphConfig(widths=(32, 64, 128), hidden=64, kernel_hidden=128, q_hidden=128,
                                           disc_widths=(64, 128, 256, 256)),
                   batch=32, lr=2e-3, gen_steps=6000, adv_weight=1e-3, disc_frames=4,
                   drqn=DRQNSchedule(warmup=1500, eps_steps=2000, eps_end=0.1, teacher_every=2,
                                     replay_capacity=512, replay_batch=16), drqn_steps=4000,
                   drqn_seeds=[0, 1, 2, 3, 4], held_out=1024, amp="auto", drqn_reverse=0.5)
