"""Reading identity and motion back from a face image: the yardstick for generated faces.

Chapters 5 and 6 claim that latent-difference video moves *the photo's person* like *the driver*.
On synthetic faces (:mod:`animlib.data.faces`) both halves are measurable: a small CNN,
:class:`FaceParamRegressor`, trained on freshly rendered faces (:func:`train_face_regressor`),
reads the 8 identity and 5 motion parameters of any image, real or generated. Comparing what it
reads from a generated frame with the driver's motion and the photo's identity scores the video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .data.faces import (
    IDENTITY_NAMES,
    MOTION_NAMES,
    as_generator,
    motion_to_unit,
    random_blur,
    render_faces,
    sample_identity,
    sample_motion,
    unit_to_motion,
)
from .engine import Trainer, batched_inference

__all__ = ["FaceRegressorConfig", "FaceParamRegressor", "RegressorStep", "train_face_regressor", "regressor_batches",
           "motion_correlations"]


@dataclass
class FaceRegressorConfig:
    """Size of :class:`FaceParamRegressor`."""

    image_size: int = 64  # input images are (3, image_size, image_size)
    width: int = 32  # channels of the first conv; doubled at each of the 3 stride-2 convs
    hidden: int = 128  # the penultimate (feature) layer


class FaceParamRegressor(nn.Module):
    """A small CNN that reads identity (8) and motion (5) parameters, all in [0, 1], from a face.

    Three stride-2 convs, a hidden layer (:meth:`features`, also usable as a face-feature space)
    and a linear head. ``forward`` returns ``(identity_u, motion_u)``; convert motion back with
    :func:`unit_to_motion`.
    """

    def __init__(self, config: FaceRegressorConfig | None = None):
        super().__init__()
        self.config = c = config or FaceRegressorConfig()
        w = c.width
        self.convs = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.GELU(),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.GELU(),
        )
        s = c.image_size // 8
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * s * s, c.hidden), nn.GELU())
        self.head = nn.Linear(c.hidden, len(IDENTITY_NAMES) + len(MOTION_NAMES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, hidden) of images (B, 3, H, W) in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != self.config.image_size:
            raise ValueError(
                f"expected images (B, 3, {self.config.image_size}, {self.config.image_size}); got {tuple(x.shape)}"
            )
        return self.fc(self.convs(x * 2 - 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.features(x))  # (B, 13)
        n = len(IDENTITY_NAMES)
        return out[:, :n], out[:, n:]

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch_size: int = 512) -> Tuple[torch.Tensor, torch.Tensor]:
        """Read parameters from any number of images (N, 3, H, W) (or (N, T, 3, H, W)).

        Returns ``(identity (.., 8) in [0, 1], motion (.., 5) in MOTION_RANGES)`` on the images'
        device, computed in batches on the model's device in eval mode.
        """
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])

        def read_chunk(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            pi, pm = self(x.float())
            return pi, unit_to_motion(pm.float())

        ids, mots = batched_inference(read_chunk, flat, batch_size, model=self, out_device=images.device)
        return ids.reshape(*lead, -1), mots.reshape(*lead, -1)


class RegressorStep:
    """One step of :func:`train_face_regressor`: the MSE on identity and motion parameters, one update."""

    def __call__(self, t: Trainer, batch: Tuple[torch.Tensor, ...]) -> Dict[str, torch.Tensor]:
        x, ident, mot_u = batch
        with t.autocast():
            pi, pm = t.models["model"](x)
        loss = F.mse_loss(pi.float(), ident) + F.mse_loss(pm.float(), mot_u)
        t.optimize(loss, "model")
        return {"loss": loss.detach()}


def train_face_regressor(
    size: int = 64,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    device: Union[str, torch.device, None] = "auto",
    config: FaceRegressorConfig | None = None,
    amp: str | None = None,
    progress: bool = True,
) -> Trainer:
    """Train a :class:`FaceParamRegressor` on freshly rendered random faces, through the engine.

    Each step renders a new batch (so it never overfits), blurs it randomly (:func:`random_blur`)
    and adds a little noise; the loss is the MSE on all 13 parameters in [0, 1]. Returns the
    :class:`~animlib.engine.Trainer`, like every ``train_*`` function: ``trainer.raw_models["model"]``
    is the regressor, in eval mode. The batches are made on the training device (:func:`regressor_batches`): the host
    only draws the faces' parameters.
    """
    cfg = config or FaceRegressorConfig(image_size=size)
    torch.manual_seed(seed)
    model = FaceParamRegressor(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)

    trainer = Trainer({"model": model}, {"model": opt}, RegressorStep(), schedulers={"model": sched}, device=device,
                      amp=amp, progress=progress, desc="face regressor")
    trainer.fit(regressor_batches(size, batch_size, seed, trainer.device), steps)
    model.eval()
    return trainer


def regressor_batches(size: int, batch_size: int, seed: int = 0,
                      device: Union[str, torch.device] = "cpu") -> Callable[[int], Tuple[torch.Tensor, ...]]:
    """What :func:`train_face_regressor` trains on: ``data(step) -> (images, identity, motion in [0, 1])``.

    Each call draws ``batch_size`` identities and motions and the blur widths on a CPU generator
    seeded from ``seed``, then renders, blurs and noises the faces on ``device``; everything it
    returns lives there. On the CPU the noise comes from the same generator (the numbers do not
    depend on the machine); on another device it is drawn there, from that device's generator
    (seeded from ``seed``), so that nothing image-sized is made on the host.
    """
    dev = torch.device(device)
    g = as_generator(seed + 7919)
    noise_g = None
    if dev.type != "cpu":
        try:
            noise_g = torch.Generator(device=dev).manual_seed(seed + 7919)
        except RuntimeError:  # a device without generators of its own: its default one
            noise_g = None

    def data(step: int) -> Tuple[torch.Tensor, ...]:
        ident = sample_identity(batch_size, g).to(dev, non_blocking=True)
        mot = sample_motion(batch_size, g).to(dev, non_blocking=True)
        x = random_blur(render_faces(ident, mot, size), generator=g)
        if dev.type == "cpu":
            noise = torch.randn(x.shape, generator=g)
        else:
            noise = torch.randn(x.shape, generator=noise_g, device=dev)
        x = (x + 0.02 * noise).clamp(0, 1)
        return x, ident, motion_to_unit(mot)

    return data


def motion_correlations(read: torch.Tensor, true: torch.Tensor) -> Dict[str, float]:
    """Pearson's r between read and true motion, per motion parameter: ``{name: r}``.

    ``read`` and ``true`` are ``(..., 5)`` (e.g. ``(N, 5)`` for images or ``(N, T, 5)`` for videos);
    all leading axes are pooled. How chapters 5 and 6 score whether a video moves like its driver.
    """
    if read.shape != true.shape or read.shape[-1] != len(MOTION_NAMES):
        raise ValueError(f"read and true must both be (..., {len(MOTION_NAMES)}) motion parameters of the same "
                         f"shape; got {tuple(read.shape)} and {tuple(true.shape)}")
    a, b = read.reshape(-1, len(MOTION_NAMES)).float(), true.reshape(-1, len(MOTION_NAMES)).float()
    return {name: torch.corrcoef(torch.stack([a[:, i], b[:, i]]))[0, 1].item() for i, name in enumerate(MOTION_NAMES)}
