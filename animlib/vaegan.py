"""The VAE-GAN (Larsen et al. 2016), as used by Vysotsky & Demichev 2024 (chapter 6).

A VAE whose decoder is also a GAN generator: a discriminator judges real images against the VAE's
reconstructions, and the encoder/decoder minimise three weighted terms, KL + reconstruction +
adversarial (:class:`VAEGANWeights`). The VAE itself is :class:`animlib.vae.ConvVAE`; the game is
:func:`animlib.gan.alternating_step`.

- :class:`VAEGANDiscriminator`: the source's discriminator, 4 conv + 3 linear layers, with an
  optional spectral norm on every layer (Miyato et al. 2018, :func:`animlib.gan.spectral_norm_all`);
- the three-part loss (:func:`vaegan_generator_loss`, :func:`vaegan_terms`) and a Trainer step
  (:class:`VAEGANStep`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .engine import Trainer
from .gan import alternating_step, check_image_channels, get_gan_loss, spectral_norm_all
from .runtime import ProfileSettings, training_steps
from .vae import beta_at, kl_divergence, reconstruction_bce, strided_conv_stack

__all__ = [
    "VAEGANSettings",
    "VAEGANDiscriminatorConfig",
    "VAEGANDiscriminator",
    "VAEGANWeights",
    "vaegan_generator_loss",
    "vaegan_terms",
    "VAEGANStep",
]


@dataclass
class VAEGANDiscriminatorConfig:
    """Sizes of :class:`VAEGANDiscriminator`."""

    image_size: int = 64  # input (channels, image_size, image_size); a multiple of 16
    channels: int = 3  # RGB
    width: int = 32  # conv channels: width, 2·width, 4·width, 8·width (4 stride-2 convs)
    hidden: int = 256  # the first hidden linear layer; the second has hidden // 4
    spectral_norm: bool = False  # spectral norm on every layer (a stability aid)
    slope: float = 0.2  # LeakyReLU negative slope


class VAEGANDiscriminator(nn.Module):
    """The source's discriminator: 4 stride-2 conv layers and 3 linear layers -> one logit per image.

    ``forward(x)`` takes images (B, C, S, S) in [0, 1] and returns logits (B,) (no sigmoid: the
    losses above apply it stably).
    """

    def __init__(self, config: VAEGANDiscriminatorConfig | None = None):
        super().__init__()
        self.config = c = config or VAEGANDiscriminatorConfig()
        if c.image_size % 16 or c.image_size < 16:
            raise ValueError(f"image_size must be a multiple of 16 (4 stride-2 convs), got {c.image_size}.")
        self.convs, flat = strided_conv_stack(c.channels, c.width, c.image_size, c.slope)
        self.fcs = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, c.hidden), nn.LeakyReLU(c.slope),
            nn.Linear(c.hidden, c.hidden // 4), nn.LeakyReLU(c.slope),
            nn.Linear(c.hidden // 4, 1),
        )
        if c.spectral_norm:
            spectral_norm_all(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        check_image_channels(x, c.channels, "VAEGANDiscriminator", "VAEGANDiscriminatorConfig(channels={c})")
        if x.ndim != 4 or x.shape[1] != c.channels or x.shape[-1] != c.image_size or x.shape[-2] != c.image_size:
            raise ValueError(
                f"VAEGANDiscriminator expects images (B, {c.channels}, {c.image_size}, {c.image_size}); got "
                f"{tuple(x.shape)}."
            )
        return self.fcs(self.convs(x * 2 - 1)).squeeze(1)  # (B,)


@dataclass
class VAEGANWeights:
    """Weights of the three parts of the VAE-GAN loss (the source: "each part may have a different
    order of magnitude, so choose the weights by their importance")."""

    kl: float = 0.1  # β: weight of KL(q(z|x) || N(0, I)), per image
    rec: float = 1.0  # weight of the reconstruction BCE, summed over pixels, per image
    adv: float = 20.0  # weight of the adversarial term (G's loss on D's verdict, a per-image mean)


def vaegan_generator_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                          fake_logits: torch.Tensor, weights: VAEGANWeights | None = None,
                          loss: str = "bce") -> Dict[str, torch.Tensor]:
    """The VAE-GAN's loss for the encoder/decoder, all three parts (weighted):

        L = w_kl · KL(q(z|x) || N(0, I)) + w_rec · BCE(x̂, x) + w_adv · L_G(D(x̂)),

    with L_G the generator loss of ``loss`` (``"bce"``: -log D(x̂), pushing D's verdict towards
    "real"). Returns ``{"loss", "kl", "rec", "adv"}`` (the parts weighted, batch means).
    """
    w = weights or VAEGANWeights()
    _, g_loss = get_gan_loss(loss)
    kl = w.kl * kl_divergence(mu.float(), logvar.float()).mean()
    rec = w.rec * reconstruction_bce(logits.float(), x).mean()
    adv = w.adv * g_loss(fake_logits.float())
    return {"loss": kl + rec + adv, "kl": kl, "rec": rec, "adv": adv}


def vaegan_terms(vae: nn.Module, x: torch.Tensor, weights: VAEGANWeights | None = None, autocast=None
                 ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Run the VAE on ``x``: ``(reconstruction in [0, 1], {"kl", "rec"} weighted)``.

    This is the ``generate()`` half of :func:`alternating_step`; the third part (adversarial) is
    added there with ``adv_weight``.
    """
    w = weights or VAEGANWeights()
    ctx = autocast() if autocast is not None else torch.autocast("cpu", enabled=False)
    with ctx:
        logits, mu, logvar, _ = vae(x)
    terms = {
        "kl": w.kl * kl_divergence(mu.float(), logvar.float()).mean(),
        "rec": w.rec * reconstruction_bce(logits.float(), x).mean(),
    }
    return torch.sigmoid(logits.float()), terms


@dataclass
class VAEGANStep:
    """A Trainer step for the VAE-GAN, as the source trains it: D on real vs VAE images, then the VAE
    against D's verdict plus its KL and reconstruction terms (:func:`~animlib.gan.alternating_step`).

    ``adv_warmup_steps`` ramps the adversarial weight linearly from 0 (the VAE first learns to
    reconstruct, so D has something face-like to judge); ``kl_warmup_steps`` ramps the KL weight the
    same way (:func:`animlib.vae.beta_at`), as a plain VAE's training does. Logs ``d_loss``,
    ``g_loss``, ``g_adv``, ``kl``, ``rec``, ``d_real`` (mean D(x)) and ``d_fake`` (mean D(x̂)).
    """

    weights: VAEGANWeights = field(default_factory=VAEGANWeights)  # the three parts' weights
    loss: str = "bce"  # the adversarial loss, a name in :data:`animlib.gan.GAN_LOSSES`
    label_smoothing: float = 0.0  # one-sided: real targets at 1 - s
    vae: str = "vae"  # the trainer's VAE
    disc: str = "d"  # the trainer's discriminator
    adv_warmup_steps: int = 0  # steps over which the adversarial weight rises from 0
    kl_warmup_steps: int = 0  # steps over which the KL weight rises from 0

    def __call__(self, trainer: Trainer, batch) -> Dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        w = self.weights
        if self.kl_warmup_steps > 0:
            w = replace(w, kl=beta_at(trainer.step, w.kl, self.kl_warmup_steps))
        ramp = 1.0 if self.adv_warmup_steps <= 0 else min(1.0, trainer.step / self.adv_warmup_steps)
        out = alternating_step(
            trainer, x, lambda: vaegan_terms(trainer.models[self.vae], x, w, trainer.autocast), gen=self.vae,
            disc=self.disc, loss=self.loss, adv_weight=w.adv * ramp, label_smoothing=self.label_smoothing,
        )
        out["loss"] = out["g_loss"]
        return out


@dataclass
class VAEGANSettings(ProfileSettings):
    """Everything chapter 6 sizes by profile: the faces, the shared VAE, both trainings, the videos.

    ``quick``: 32×32 synthetic faces, 560 steps of batch 48 on a CPU; ``full``: the source's 64×64
    faces, a 200-d latent and 30 epochs of batch 128 on a GPU. Training length is ``steps`` when
    given, else ``epochs`` passes over the data (:meth:`train_steps`).
    """

    size: int  # image side in pixels
    latent: int  # latent dimension
    width: int  # encoder/decoder channels
    n_train: int  # synthetic training faces
    n_test: int  # held-out faces
    batch: int  # images per step
    steps: Optional[int]  # training steps (None: use epochs)
    epochs: Optional[int]  # passes over the training set (when steps is None)
    lr: float  # Adam learning rate of the VAE
    beta: float  # KL weight after the warm-up
    warmup: int  # KL and adversarial warm-up steps
    adv: float  # adversarial weight (VAEGANWeights.adv)
    d_lr: float  # Adam learning rate of the discriminator
    n_clips: int  # driving clips for latent-difference video
    frames: int  # frames per driving clip
    toy_steps: int  # steps of the 2-D toy GAN
    reg_steps: int  # steps of the face-parameter regressor that scores the real-face videos

    def train_steps(self, batches_per_epoch: int) -> int:
        """``steps``, or ``epochs`` × the loader's length when ``steps`` is None."""
        return training_steps(self.steps, self.epochs, batches_per_epoch, type(self).__name__)

    @classmethod
    def quick(cls) -> VAEGANSettings:
        return cls(size=32, latent=64, width=32, n_train=16_000, n_test=300, batch=48, steps=560, epochs=None, lr=2e-3,
                   beta=0.1, warmup=240, adv=20.0, d_lr=2e-4, n_clips=24, frames=16, toy_steps=1_600,
                   reg_steps=450)

    @classmethod
    def full(cls) -> VAEGANSettings:
        return cls(size=64, latent=200, width=32, n_train=100_000, n_test=2_000, batch=128, steps=None, epochs=30,
                   lr=1e-3, beta=0.1, warmup=3_000, adv=80.0, d_lr=2e-4, n_clips=100, frames=24, toy_steps=5_000,
                   reg_steps=5_000)
