"""Adversarial losses and the alternating discriminator/generator step.

Goodfellow et al. (2014) pose training as a game between a generator G and a discriminator D.
Every adversarial method in the book (recurrent cinemagraphs, VAE-GAN, reenactment) uses the
losses and the :func:`alternating_step` below; none writes its own.

All discriminators return *logits* (no final sigmoid): ``D(x) = sigmoid(logit)`` for the BCE-based
losses, which keeps ``log D`` numerically stable (``-log sigmoid(l) = softplus(-l)``).

Losses, for real logits ``r = D(x)`` and fake logits ``f = D(G(z))``:

===============  ===============================================  ======================================
name             discriminator loss                               generator loss
===============  ===============================================  ======================================
``"bce"``        ``-log σ(r) - log(1 - σ(f))``                    ``-log σ(f)`` (non-saturating; the
                                                                  source's ``-log D(G(x))``)
``"minimax"``    as ``"bce"``                                     ``log(1 - σ(f))`` (saturates early)
``"hinge"``      ``relu(1 - r) + relu(1 + f)``                    ``-f``
``"lsgan"``      ``((r - 1)² + f²) / 2``                          ``(f - 1)² / 2`` (Mao et al. 2017)
===============  ===============================================  ======================================

Also here: :func:`spectral_norm_all` (a stability aid) and a GAN on 2-D points for watching
mode collapse (chapter 6): :class:`ToyGenerator`, :class:`ToyDiscriminator` (optionally "packed",
Lin et al. 2018, or seeing the minibatch spread, Karras et al. 2018) and :class:`ToyGANStep`;
its data, a ring of Gaussians with known modes, is :mod:`animlib.data.rings`. The VAE-GAN of
chapter 6 is :mod:`animlib.vaegan`; image measurements are :mod:`animlib.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .engine import Trainer

__all__ = [
    "d_loss_bce",
    "g_loss_nonsaturating",
    "g_loss_minimax",
    "d_loss_hinge",
    "g_loss_hinge",
    "d_loss_lsgan",
    "g_loss_lsgan",
    "GAN_LOSSES",
    "get_gan_loss",
    "discriminator_scores",
    "alternating_step",
    "spectral_norm_all",
    "check_image_channels",
    "ToyGenerator",
    "ToyDiscriminator",
    "ToyGANStep",
]


def d_loss_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """``-log σ(r) - log(1 - σ(f))`` (mean); one-sided label smoothing puts real targets at ``1 - s``."""
    real_t = torch.full_like(real_logits, 1.0 - label_smoothing)
    return (F.binary_cross_entropy_with_logits(real_logits, real_t)
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-log σ(f)`` = ``-log D(G(x))``: strong gradients when D confidently rejects the fakes."""
    return F.softplus(-fake_logits).mean()


def g_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """``log(1 - σ(f))`` = ``-softplus(f)``: the original minimax objective for G (it saturates)."""
    return (-F.softplus(fake_logits)).mean()


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """``relu(1 - r) + relu(1 + f)`` (mean). ``label_smoothing`` is accepted and ignored."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-f`` (mean)."""
    return -fake_logits.mean()


def d_loss_lsgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Least squares: ``((r - (1 - s))² + f²) / 2`` (mean), ``s`` the label smoothing."""
    return 0.5 * ((real_logits - (1.0 - label_smoothing)) ** 2).mean() + 0.5 * (fake_logits**2).mean()


def g_loss_lsgan(fake_logits: torch.Tensor) -> torch.Tensor:
    """Least squares: ``(f - 1)² / 2`` (mean)."""
    return 0.5 * ((fake_logits - 1.0) ** 2).mean()


GAN_LOSSES: Dict[str, Tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "bce": (d_loss_bce, g_loss_nonsaturating),
    "nonsaturating": (d_loss_bce, g_loss_nonsaturating),
    "minimax": (d_loss_bce, g_loss_minimax),
    "hinge": (d_loss_hinge, g_loss_hinge),
    "lsgan": (d_loss_lsgan, g_loss_lsgan),
}


def get_gan_loss(name: str) -> Tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """``(d_loss, g_loss)`` for a loss name in :data:`GAN_LOSSES`."""
    try:
        return GAN_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown GAN loss {name!r}; choose one of {sorted(GAN_LOSSES)}") from None


def discriminator_scores(real_logits: torch.Tensor, fake_logits: torch.Tensor, loss: str = "bce") -> Dict[str, float]:
    """Monitoring numbers: mean D(x) and D(G(·)) (probabilities for BCE losses, raw scores otherwise)."""
    with torch.no_grad():
        if loss in ("bce", "nonsaturating", "minimax"):
            r, f = torch.sigmoid(real_logits.float()), torch.sigmoid(fake_logits.float())
        else:
            r, f = real_logits.float(), fake_logits.float()
        return {"d_real": float(r.mean()), "d_fake": float(f.mean())}


def alternating_step(
    trainer,
    real: torch.Tensor,
    generate: Callable[[], Tuple[torch.Tensor, Mapping[str, torch.Tensor]]],
    *,
    gen: str = "g",
    disc: str = "d",
    loss: str = "bce",
    adv_weight: float = 1.0,
    label_smoothing: float = 0.0,
    d_steps: int = 1,
) -> Dict[str, float]:
    """One round of the adversarial game, through the engine's :meth:`~animlib.engine.Trainer.optimize`.

    1. **D step** (``d_steps`` times): D sees ``real`` and a *detached* fake, so this update cannot
       change G's parameters; only D's optimiser steps.
    2. **G step**: G's loss is the sum of the weighted terms that ``generate`` returns (e.g.
       reconstruction, KL) plus ``adv_weight`` times the adversarial loss on D's verdict of the
       fake. Gradients flow through D into G, but only G's optimiser steps, so D is unchanged.

    ``generate()`` returns ``(fake, terms)``: the generated batch (with its graph) and a dict of
    already-weighted scalar loss terms for G (may be empty). Returns the step's metrics: ``d_loss``,
    ``g_loss`` (total), ``g_adv``, each term, ``d_real`` and ``d_fake``.
    """
    d_loss_fn, g_loss_fn = get_gan_loss(loss)
    D = trainer.models[disc]
    fake, terms = generate()
    d_loss = torch.zeros(())
    for _ in range(max(1, d_steps)):
        with trainer.autocast():
            real_logits = D(real)
            fake_logits = D(fake.detach())
            d_loss = d_loss_fn(real_logits.float(), fake_logits.float(), label_smoothing=label_smoothing)
        trainer.optimize(d_loss, disc)
    scores = discriminator_scores(real_logits, fake_logits, loss)
    with trainer.autocast():
        g_adv = g_loss_fn(D(fake).float())
    g_loss = adv_weight * g_adv
    for v in terms.values():
        g_loss = g_loss + v.float()
    trainer.optimize(g_loss, gen)
    out = {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), "g_adv": g_adv.detach()}
    out.update({k: v.detach() for k, v in terms.items()})
    out.update(scores)
    return out


# ----------------------------------------------------------------------------------------------
# stability aids
# ----------------------------------------------------------------------------------------------
def spectral_norm_all(module: nn.Module) -> nn.Module:
    """Put spectral normalisation (Miyato et al. 2018) on every conv and linear layer of ``module``.

    Each weight W is divided by its largest singular value (estimated by one power iteration per
    forward pass), so every layer is 1-Lipschitz and D cannot become arbitrarily steep. Returns the
    same module, modified in place.
    """
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and not hasattr(m, "parametrizations"):
            spectral_norm(m)
    return module


def check_image_channels(x: torch.Tensor, channels: int, who: str, rebuild: str | None) -> None:
    """Refuse images (B, C, H, W) whose C is not the ``channels`` that ``who`` was built for.

    The message names both channel counts and the fix: repeat a gray image to RGB, or build the
    network for ``C`` channels with ``rebuild`` (a format string with ``{c}``; None if it cannot be).
    """
    if x.ndim != 4 or x.shape[1] == channels:
        return
    got = x.shape[1]
    fixes = []
    if got == 1 and channels == 3:
        fixes.append("repeat gray images to RGB with x.expand(-1, 3, -1, -1)")
    if rebuild is not None:
        fixes.append(f"build it with {rebuild.format(c=got)}")
    raise ValueError(f"{who} expects {channels}-channel images (B, {channels}, H, W) but got {got} channel"
                     f"{'' if got == 1 else 's'} {tuple(x.shape)}" + (f": {' or '.join(fixes)}" if fixes else ""))


# ----------------------------------------------------------------------------------------------
# a 2-D toy GAN: watching mode collapse
# ----------------------------------------------------------------------------------------------
class ToyGenerator(nn.Module):
    """MLP from noise (B, latent_dim) to points (B, 2)."""

    def __init__(self, latent_dim: int = 8, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.latent_dim = latent_dim
        dims = [latent_dim] + [hidden] * layers
        body = []
        for a, b in zip(dims[:-1], dims[1:]):
            body += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*body, nn.Linear(hidden, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        dev = next(self.parameters()).device
        return self(torch.randn(n, self.latent_dim, generator=generator).to(dev))


class ToyDiscriminator(nn.Module):
    """MLP from points (B, 2) to logits.

    ``pack > 1`` makes it a PacGAN discriminator (Lin et al. 2018): it judges ``pack`` samples at
    once (concatenated), so a generator that keeps producing the same point is easy to spot; the
    batch size must be a multiple of ``pack`` and the output has B / pack logits.
    ``spectral_norm=True`` normalises every layer (:func:`spectral_norm_all`).
    ``minibatch_std=True`` appends, after the first layer, the features' standard deviation across
    the batch (averaged to one number, Karras et al. 2018): a collapsed batch has a tell-tale small
    spread that D can see and punish.
    """

    def __init__(self, hidden: int = 128, layers: int = 3, pack: int = 1, spectral_norm: bool = False,
                 minibatch_std: bool = False):
        super().__init__()
        self.pack, self.minibatch_std = pack, minibatch_std
        self.first = nn.Sequential(nn.Linear(2 * pack, hidden), nn.LeakyReLU(0.2))
        dims = [hidden + int(minibatch_std)] + [hidden] * (layers - 1)
        body = []
        for a, b in zip(dims[:-1], dims[1:]):
            body += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*body, nn.Linear(dims[-1], 1))
        if spectral_norm:
            spectral_norm_all(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"ToyDiscriminator expects points (B, 2); got {tuple(x.shape)}.")
        if x.shape[0] % self.pack:
            raise ValueError(f"batch size {x.shape[0]} is not a multiple of pack={self.pack}.")
        h = self.first(x.reshape(-1, 2 * self.pack))  # (B / pack, hidden)
        if self.minibatch_std:
            spread = h.std(0, unbiased=False).mean().expand(h.shape[0], 1)  # (B / pack, 1)
            h = torch.cat([h, spread], dim=1)
        return self.net(h).squeeze(1)  # (B / pack,)


@dataclass
class ToyGANStep:
    """A Trainer step for the 2-D toy GAN: batches of real points come from the data source; G draws
    ``batch_size`` noise vectors and :func:`alternating_step` plays one round of the game."""

    batch_size: int = 256  # noise vectors per step
    loss: str = "bce"  # a name in :data:`GAN_LOSSES`
    label_smoothing: float = 0.0  # one-sided: real targets at 1 - s
    generator: torch.Generator | None = None  # seeds the noise
    d_steps: int = 1  # discriminator updates per generator update

    def __call__(self, trainer: Trainer, real: torch.Tensor) -> Dict[str, float]:
        G = trainer.models["g"]
        z = torch.randn(self.batch_size, G.latent_dim, generator=self.generator).to(trainer.device)
        return alternating_step(trainer, real, lambda: (G(z), {}), loss=self.loss,
                                label_smoothing=self.label_smoothing, d_steps=self.d_steps)
