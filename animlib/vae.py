"""Convolutional variational autoencoder and video by latent differences.

Kingma & Welling (2014) train an encoder q(z|x) = N(μ(x), diag σ²(x)) and a decoder p(x|z) by
maximising the evidence lower bound (ELBO)

    log p(x) >= E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || N(0, I)),                          (1)

with samples drawn by the *reparameterisation* z = μ + σ ⊙ ε, ε ~ N(0, I) (2), so that gradients
reach μ and σ. For a diagonal Gaussian against N(0, I) the KL term has the closed form

    KL = -1/2 Σ_j (1 + log σ_j² - μ_j² - σ_j²).                                             (3)

Higgins et al. (2017) weight the KL by β; a small β (or a warm-up from 0) keeps small details.

Vysotsky & Demichev (2024, the source of chapters 5-6) train such a VAE on 3×64×64 faces with a
200-dimensional latent, binary cross-entropy reconstruction, Adam and a ``DataLoader``, and make
video by *latent arithmetic*: encode a photo, then add the latent differences between consecutive
frames of a driving video,

    z_0 = enc(photo),   z_t = z_{t-1} + (enc(d_t) - enc(d_{t-1})),                          (4)

and decode every z_t: the photo's person moves like the driver.

**Layer count.** The source says the encoder and decoder "consist of 7 conv and 3 linear layers";
its figure is missing, so whether that is per network or in total is ambiguous. We read it as *in
total*, the common layout of a convolutional VAE: the encoder has 4 stride-2 convolutions and two
linear heads (μ and log σ²), the decoder one linear layer and 3 stride-2 transposed convolutions —
7 convolutional and 3 linear layers. (The discriminator the source adds for the VAE-GAN, "4 conv and
3 linear", is a single network of the same size, which supports this reading.) ``tests/test_vae.py``
checks the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .engine import Trainer, batched_inference
from .runtime import ProfileSettings, training_steps

__all__ = [
    "VAESettings",
    "ConvVAEConfig",
    "ConvVAE",
    "reparameterize",
    "kl_divergence",
    "kl_monte_carlo",
    "reconstruction_bce",
    "elbo_loss",
    "beta_at",
    "VAEStep",
    "train_vae",
    "encode_mean",
    "decode",
    "reconstruct",
    "interpolate",
    "latent_difference_video",
    "score_function_grad",
    "reparam_grad",
    "layer_counts",
]


# ----------------------------------------------------------------------------------------------
# helpers: the maths of the ELBO
# ----------------------------------------------------------------------------------------------
def _check_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> None:
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape; got {tuple(mu.shape)} and {tuple(logvar.shape)}.")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample z = μ + σ ⊙ ε with ε ~ N(0, I) and σ = exp(log σ² / 2)  (eq. 2).

    The randomness sits in ε, which does not depend on the parameters, so ``z`` is a
    differentiable function of ``mu`` and ``logvar``.
    """
    _check_gaussian(mu, logvar)
    if generator is None:
        eps = torch.randn_like(mu)
    else:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) || N(0, I)) per sample, summed over the last (latent) dim  (eq. 3).

    ``mu``, ``logvar``: (..., D) -> (...,).
    """
    _check_gaussian(mu, logvar)
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def kl_monte_carlo(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 1000,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte Carlo estimate of the same KL: the mean over z ~ q of log q(z) - log p(z) -> (...,)."""
    _check_gaussian(mu, logvar)
    z = reparameterize(mu.unsqueeze(0).expand(n_samples, *mu.shape), logvar.unsqueeze(0).expand(n_samples, *mu.shape),
                       generator)  # (S, ..., D)
    log_q = -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)
    log_p = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    return (log_q - log_p).mean(0)


def reconstruction_bce(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the decoder's logits against images in [0, 1], summed per image -> (B,).

    This is -log p(x|z) for a Bernoulli decoder (the source's ``BCELoss``, computed from logits for
    numerical stability). Summing over pixels (not averaging) keeps the balance with the KL that
    eq. (1) prescribes.
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and images {tuple(x.shape)} must have the same shape.")
    return F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none").flatten(1).sum(1)


def elbo_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              beta: float = 1.0) -> Dict[str, torch.Tensor]:
    """The (β-weighted) negative ELBO, averaged over the batch: mean(BCE + β·KL)  (eqs. 1, 3).

    Returns ``{"loss", "bce", "kl"}`` (scalars; ``bce`` and ``kl`` are per-image means).
    """
    bce = reconstruction_bce(logits, x).mean()
    kl = kl_divergence(mu.float(), logvar.float()).mean()
    return {"loss": bce + beta * kl, "bce": bce, "kl": kl}


def beta_at(step: int, beta: float = 1.0, warmup_steps: int = 0) -> float:
    """KL weight at ``step``: a linear warm-up from 0 to ``beta`` over ``warmup_steps``, then ``beta``."""
    if warmup_steps <= 0:
        return float(beta)
    return float(beta) * min(1.0, step / warmup_steps)


# ----------------------------------------------------------------------------------------------
# blocks and model
# ----------------------------------------------------------------------------------------------
@dataclass
class ConvVAEConfig:
    """Sizes of :class:`ConvVAE` (defaults: the source's setting)."""

    image_size: int = 64  # input and output are (channels, image_size, image_size); a multiple of 16
    channels: int = 3  # RGB
    latent_dim: int = 200  # the source's 200-dimensional feature space
    width: int = 32  # encoder channels: width, 2·width, 4·width, 8·width (4 stride-2 convs)
    dec_width: int = 32  # decoder channels: 4·dec_width -> 2·dec_width -> dec_width -> channels
    slope: float = 0.2  # LeakyReLU negative slope


def strided_conv_stack(channels: int, width: int, image_size: int, slope: float) -> Tuple[nn.Sequential, int]:
    """Four 4×4 stride-2 convolutions (widths w, 2w, 4w, 8w) with LeakyReLU: the VAE's encoder
    trunk and the VAE-GAN discriminator's. Returns the stack and its flattened output size."""
    chans = [channels, width, 2 * width, 4 * width, 8 * width]
    layers = []
    for cin, cout in zip(chans[:-1], chans[1:]):
        layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(slope)]
    return nn.Sequential(*layers), 8 * width * (image_size // 16) ** 2


class Encoder(nn.Module):
    """4 stride-2 convs (image_size -> image_size/16), then two linear heads: μ and log σ²."""

    def __init__(self, c: ConvVAEConfig):
        super().__init__()
        self.convs, flat = strided_conv_stack(c.channels, c.width, c.image_size, c.slope)
        self.fc_mu = nn.Linear(flat, c.latent_dim)
        self.fc_logvar = nn.Linear(flat, c.latent_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.convs(x * 2 - 1).flatten(1)  # (B, 8w·(S/16)²); inputs centred to [-1, 1]
        return self.fc_mu(h), self.fc_logvar(h)  # (B, D), (B, D)


class Decoder(nn.Module):
    """One linear layer to a (4·dec_width, S/8, S/8) map, then 3 stride-2 transposed convs -> logits."""

    def __init__(self, c: ConvVAEConfig):
        super().__init__()
        w, self.s0 = c.dec_width, c.image_size // 8
        self.c0 = 4 * w
        self.fc = nn.Linear(c.latent_dim, self.c0 * self.s0 * self.s0)
        self.deconvs = nn.Sequential(
            nn.LeakyReLU(c.slope),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.LeakyReLU(c.slope),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.LeakyReLU(c.slope),
            nn.ConvTranspose2d(w, c.channels, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.c0, self.s0, self.s0)  # (B, 4w, S/8, S/8)
        return self.deconvs(h)  # (B, C, S, S) logits


class ConvVAE(nn.Module):
    """The source's convolutional VAE: 7 conv + 3 linear layers in total (see the module docstring).

    ``forward(x)`` returns ``(logits, mu, logvar, z)``; images are ``sigmoid(logits)``. With
    ``sample=False`` the decoder sees μ itself (a plain autoencoder pass).
    """

    def __init__(self, config: ConvVAEConfig | None = None):
        super().__init__()
        self.config = c = config or ConvVAEConfig()
        if c.image_size % 16 or c.image_size < 16:
            raise ValueError(f"image_size must be a multiple of 16 (4 stride-2 convs), got {c.image_size}.")
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.channels or x.shape[2] != c.image_size or x.shape[3] != c.image_size:
            raise ValueError(
                f"ConvVAE expects images (B, {c.channels}, {c.image_size}, {c.image_size}) in [0, 1]; got "
                f"{tuple(x.shape)}. Resize the images or build the model with ConvVAEConfig(image_size=...)."
            )

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): ``(mu, logvar)``, each (B, latent_dim)."""
        self._check(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder logits (B, C, S, S); apply ``torch.sigmoid`` for images."""
        d = self.config.latent_dim
        if z.ndim != 2 or z.shape[1] != d:
            raise ValueError(f"this VAE decodes latents of shape (B, {d}), got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x: torch.Tensor, sample: bool = True):
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar) if sample else mu  # (B, D)
        return self.decode(z), mu, logvar, z


def layer_counts(model: nn.Module) -> Dict[str, int]:
    """Numbers of convolutional (incl. transposed) and linear layers in ``model``."""
    conv = sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
    lin = sum(isinstance(m, nn.Linear) for m in model.modules())
    return {"conv": conv, "linear": lin}


# ----------------------------------------------------------------------------------------------
# training through the engine
# ----------------------------------------------------------------------------------------------
def _images(batch) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError("a VAE batch must be images (B, C, H, W) or a tuple/list whose first element is.")
    if not x.is_floating_point():
        raise TypeError(f"VAE images must be float tensors in [0, 1], got {x.dtype}: divide uint8 images by 255")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"VAE images must lie in [0, 1] (the reconstruction is a Bernoulli likelihood), got values "
                         f"in [{lo:.3g}, {hi:.3g}]" + (": divide 0..255 images by 255" if hi > 1.5 else ""))
    return x


@dataclass
class VAEStep:
    """A step for :class:`animlib.engine.Trainer`: one optimiser step on BCE + β(step)·KL.

    Batches may be images or tuples whose first element is the images (as :class:`SyntheticFaces`
    yields). Logs ``loss``, ``bce``, ``kl`` and the current ``beta``. ``sample=False`` with
    ``beta=0`` trains the same network as a plain (deterministic) autoencoder.
    """

    beta: float = 1.0  # the KL weight after the warm-up
    warmup_steps: int = 0  # β rises linearly from 0 over these steps (:func:`beta_at`)
    name: str = "vae"  # which of the trainer's models/optimisers to use
    sample: bool = True  # decode z ~ q(z|x) (a VAE) or z = μ (an autoencoder)

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0 (a negative weight would maximise the KL), got {self.beta}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def __call__(self, trainer: Trainer, batch) -> Dict[str, torch.Tensor]:
        x = _images(batch)
        b = beta_at(trainer.step, self.beta, self.warmup_steps)
        with trainer.autocast():
            logits, mu, logvar, _ = trainer.models[self.name](x, sample=self.sample)
        parts = elbo_loss(logits.float(), x, mu.float(), logvar.float(), b)
        trainer.optimize(parts["loss"], self.name)
        return {"loss": parts["loss"].detach(), "bce": parts["bce"].detach(), "kl": parts["kl"].detach(), "beta": b}


def train_vae(vae: ConvVAE, data: Union[Iterable, Callable], steps: int, *, lr: float = 1e-3, beta: float = 1.0,
              warmup_steps: int = 0, sample: bool = True, device: Union[str, torch.device, None] = "auto",
              amp: str | None = None, progress: bool = True, desc: str = "VAE", **trainer_kwargs):
    """Train ``vae`` with Adam on the β-ELBO through the engine; returns the :class:`Trainer`.

    ``data`` is a ``DataLoader`` (re-iterated each epoch) or a callable ``data(step)``. Extra keyword
    arguments go to the Trainer (checkpoints, grad clipping, ...).
    """
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    trainer = Trainer({"vae": vae}, {"vae": opt}, VAEStep(beta, warmup_steps, sample=sample), device=device,
                      amp=amp, progress=progress, desc=desc, **trainer_kwargs)
    trainer.fit(data, steps)
    vae.eval()
    return trainer


# ----------------------------------------------------------------------------------------------
# using a trained VAE
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def encode_mean(vae: ConvVAE, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """μ(x) for images (N, C, H, W), in batches, on the model's device -> (N, D) on x's device."""
    return batched_inference(lambda chunk: vae.encode(chunk)[0], x, batch_size, model=vae, out_device=x.device)


@torch.no_grad()
def decode(vae: ConvVAE, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images sigmoid(dec(z)) for latents (N, D) -> (N, C, H, W) in [0, 1]."""
    return batched_inference(lambda chunk: torch.sigmoid(vae.decode(chunk).float()), z, batch_size, model=vae,
                             out_device=z.device)


@torch.no_grad()
def reconstruct(vae: ConvVAE, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """dec(μ(x)): the deterministic reconstruction of images (N, C, H, W)."""
    return decode(vae, encode_mean(vae, x, batch_size), batch_size)


@torch.no_grad()
def interpolate(vae: ConvVAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """Decode the straight line between μ(x_a) and μ(x_b) (single images (C, H, W)) -> (steps, C, H, W)."""
    z = encode_mean(vae, torch.stack([x_a, x_b]))  # (2, D)
    w = torch.linspace(0, 1, steps, device=z.device).unsqueeze(1)  # (steps, 1)
    return decode(vae, (1 - w) * z[0] + w * z[1])


@torch.no_grad()
def latent_difference_video(vae: ConvVAE, photo: torch.Tensor, driving_frames: torch.Tensor,
                            return_latents: bool = False):
    """Make the person in ``photo`` move like the driver: eq. (4), decoded frame by frame.

    Args:
        photo: (C, H, W), or a batch (B, C, H, W) of photos.
        driving_frames: (T, C, H, W), or (B, T, C, H, W) with one driving clip per photo.
        return_latents: also return the latent path z_0..z_{T-1}.

    Returns:
        Frames (T, C, H, W) (or (B, T, C, H, W)) in [0, 1]; frame 0 is the photo's reconstruction.
        Encodings use the posterior mean μ (no sampling), so the video is deterministic.
    """
    single = photo.ndim == 3
    if single:
        photo, driving_frames = photo.unsqueeze(0), driving_frames.unsqueeze(0)
    if photo.ndim != 4 or driving_frames.ndim != 5 or driving_frames.shape[0] != photo.shape[0]:
        raise ValueError(
            "expected photo (C, H, W) with driving_frames (T, C, H, W), or photo (B, C, H, W) with driving_frames "
            f"(B, T, C, H, W); got {tuple(photo.shape)} and {tuple(driving_frames.shape)}."
        )
    B, T = driving_frames.shape[:2]
    z_photo = encode_mean(vae, photo)  # (B, D)
    z_drive = encode_mean(vae, driving_frames.flatten(0, 1)).view(B, T, -1)  # (B, T, D)
    steps = z_drive[:, 1:] - z_drive[:, :-1]  # (B, T-1, D): enc(d_t) - enc(d_{t-1})
    z = torch.cat([z_photo.unsqueeze(1), z_photo.unsqueeze(1) + steps.cumsum(1)], dim=1)  # (B, T, D)
    frames = decode(vae, z.flatten(0, 1)).view(B, T, *photo.shape[1:])  # (B, T, C, H, W)
    if single:
        frames, z = frames[0], z[0]
    return (frames, z) if return_latents else frames


# ----------------------------------------------------------------------------------------------
# why reparameterise: two gradient estimators of d/dμ E_{z ~ N(μ, σ²)}[f(z)]
# ----------------------------------------------------------------------------------------------
def score_function_grad(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, logvar: torch.Tensor,
                        n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample score-function (REINFORCE) estimates of ∇_μ E[f(z)]: f(z)·(z - μ)/σ²  -> (S, D).

    ``f`` maps latents (S, D) to values (S,); it is only evaluated, never differentiated.
    """
    _check_gaussian(mu, logvar)
    with torch.no_grad():
        z = reparameterize(mu.expand(n_samples, -1), logvar.expand(n_samples, -1), generator)  # (S, D)
        return f(z).unsqueeze(1) * (z - mu) / logvar.exp()  # ∇_μ log N(z; μ, σ²) = (z - μ)/σ²


def reparam_grad(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, logvar: torch.Tensor,
                 n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample reparameterised estimates of ∇_μ E[f(z)]: ∇_μ f(μ + σ ε)  -> (S, D).

    Each of the S rows is the gradient for one ε (f must treat the rows independently).
    """
    _check_gaussian(mu, logvar)
    m = mu.detach().expand(n_samples, -1).clone().requires_grad_(True)  # one copy of μ per sample
    z = reparameterize(m, logvar.detach().expand(n_samples, -1), generator)
    (grad,) = torch.autograd.grad(f(z).sum(), m)
    return grad.detach()


# ----------------------------------------------------------------------------------------------
# chapter 5's sizes
# ----------------------------------------------------------------------------------------------
@dataclass
class VAESettings(ProfileSettings):
    """Everything chapter 5 sizes by profile (the data, the VAE, its training and the measurements).

    ``quick``: 32×32 synthetic faces, a 64-d latent, 1,400 steps of batch 64 on a CPU. ``full``: the
    source's 64×64 faces, a 200-d latent and 30 epochs of batch 128 on a GPU. Training length is
    ``steps`` when given, else ``epochs`` passes over the data (:meth:`train_steps`).
    """

    size: int  # image side in pixels
    latent: int  # latent dimension
    width: int  # encoder/decoder channels
    n_train: int  # synthetic training faces
    n_test: int  # held-out faces
    batch: int  # images per step
    steps: Optional[int]  # training steps (None: use epochs)
    epochs: Optional[int]  # passes over the training set (when steps is None)
    lr: float  # Adam learning rate
    beta: float  # KL weight after the warm-up
    warmup: int  # KL warm-up steps
    ae_steps: int  # steps of the plain autoencoder baseline
    reg_steps: int  # steps of the face-parameter regressor that scores the videos
    n_clips: int  # driving clips for latent-difference video
    frames: int  # frames per driving clip
    n_grad: int  # samples for the score-function gradient comparison

    def train_steps(self, batches_per_epoch: int) -> int:
        """``steps``, or ``epochs`` × the loader's length when ``steps`` is None."""
        return training_steps(self.steps, self.epochs, batches_per_epoch, type(self).__name__)

    @classmethod
    def quick(cls) -> VAESettings:
        return cls(size=32, latent=64, width=32, n_train=16_000, n_test=1_000, batch=64, steps=1_400, epochs=None,
                   lr=2e-3, beta=0.1, warmup=600, ae_steps=400, reg_steps=450, n_clips=40, frames=16, n_grad=1_000)

    @classmethod
    def full(cls) -> VAESettings:
        return cls(size=64, latent=200, width=32, n_train=100_000, n_test=5_000, batch=128, steps=None, epochs=30,
                   lr=1e-3, beta=0.1, warmup=3_000, ae_steps=3_000, reg_steps=5_000, n_clips=200, frames=24,
                   n_grad=5_000)
