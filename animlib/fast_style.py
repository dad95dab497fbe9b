"""Fast style transfer (Johnson et al. 2016): a feed-forward network trained for one style.

*Perceptual Losses for Real-Time Style Transfer and Super-Resolution* (ECCV 2016), the source's
named future work: an image transformation network (:class:`TransformerNet`, as in pytorch/examples'
``transformer_net``) is trained through the engine with the same perceptual losses as Gatys'
optimisation (:mod:`animlib.style`), then stylises a new image in one forward pass
(:func:`fast_stylize`). Helpers -> blocks -> model -> training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import FeatureExtractor, as_layer_names, norm_layer
from .engine import Trainer
from .precision import resolve_amp
from .runtime import ProfileSettings, get_device, seeded, step_generator
from .style import as_image_batch, content_loss, gram_matrix, style_loss, tv_loss

__all__ = [
    "TransformerStep",
    "FastStyleSettings",
    "TransformerConfig",
    "ConvLayer",
    "ResidualBlock",
    "UpsampleConvLayer",
    "TransformerNet",
    "random_crops",
    "train_fast_style",
    "fast_stylize",
]

# ----------------------------------------------------------------------------------------------
# Fast style transfer (Johnson et al. 2016): helpers -> blocks -> model -> training
# ----------------------------------------------------------------------------------------------
@dataclass
class TransformerConfig:
    """Johnson et al.'s image transformation network (as in pytorch/examples' ``transformer_net``)."""

    base_channels: int = 32  # channels after the 9x9 input conv; doubled by each of the 2 down-samplings
    n_residual: int = 5  # residual blocks at 1/4 resolution (Johnson: 5)
    kernel_in_out: int = 9  # kernel of the first and last convolution (Johnson: 9x9)
    norm: str = "instance"  # "instance" (Ulyanov et al. 2016: sharper) or "batch" (Johnson's original)
    upsample: str = "nearest"  # "nearest" resize + conv (no checkerboard, Odena 2016) or "transposed"

    @classmethod
    def quick(cls) -> TransformerConfig:
        """A smaller net for CPU demos: 16 base channels, 3 residual blocks."""
        return cls(base_channels=16, n_residual=3)

    @classmethod
    def full(cls) -> TransformerConfig:
        """Johnson et al.'s size."""
        return cls()


def _norm(kind: str, channels: int) -> nn.Module:
    if kind not in ("instance", "batch"):
        raise ValueError(f"norm must be 'instance' or 'batch', got {kind!r}")
    return norm_layer(kind, channels)


class ConvLayer(nn.Module):
    """Reflection padding + convolution (reflection avoids dark borders in generated images)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c_in, H, W) -> (B, c_out, H / stride, W / stride)``."""
        return self.conv(self.pad(x))


class ResidualBlock(nn.Module):
    """conv3x3 -> norm -> ReLU -> conv3x3 -> norm, plus the identity (He et al. 2016; Johnson's design)."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3),
            _norm(norm, channels),
            nn.ReLU(),
            ConvLayer(channels, channels, 3),
            _norm(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x + body(x)``, shape preserved."""
        return x + self.body(x)


class UpsampleConvLayer(nn.Module):
    """2x up-sampling: nearest-neighbour resize then conv, or a stride-2 transposed conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, mode: str = "nearest"):
        super().__init__()
        if mode not in ("nearest", "transposed"):
            raise ValueError(f"upsample must be 'nearest' or 'transposed', got {mode!r}")
        self.mode = mode
        if mode == "nearest":
            self.conv = ConvLayer(c_in, c_out, kernel)
        else:
            self.conv = nn.ConvTranspose2d(
                c_in, c_out, kernel, stride=2, padding=kernel // 2, output_padding=1
            )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c_in, H, W) -> (B, c_out, 2H, 2W)``."""
        if self.mode == "nearest":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x)


class TransformerNet(nn.Module):
    """Image -> stylised image, ``(B, 3, H, W) -> (B, 3, H, W)`` in [0, 1] (H, W multiples of 4).

    9x9 conv -> two stride-2 3x3 convs -> residual blocks -> two 2x up-samplings -> 9x9 conv ->
    sigmoid (Johnson et al. use a scaled tanh; a sigmoid maps to [0, 1] the same way).
    """

    def __init__(self, config: TransformerConfig | None = None):
        super().__init__()
        self.config = cfg = config or TransformerConfig()
        c = cfg.base_channels
        self.down = nn.Sequential(
            ConvLayer(3, c, cfg.kernel_in_out),
            _norm(cfg.norm, c),
            nn.ReLU(),
            ConvLayer(c, 2 * c, 3, stride=2),
            _norm(cfg.norm, 2 * c),
            nn.ReLU(),
            ConvLayer(2 * c, 4 * c, 3, stride=2),
            _norm(cfg.norm, 4 * c),
            nn.ReLU(),
        )
        self.res = nn.Sequential(*[ResidualBlock(4 * c, cfg.norm) for _ in range(cfg.n_residual)])
        self.up = nn.Sequential(
            UpsampleConvLayer(4 * c, 2 * c, 3, cfg.upsample),
            _norm(cfg.norm, 2 * c),
            nn.ReLU(),
            UpsampleConvLayer(2 * c, c, 3, cfg.upsample),
            _norm(cfg.norm, c),
            nn.ReLU(),
            ConvLayer(c, 3, cfg.kernel_in_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Stylise ``(B, 3, H, W)`` images in [0, 1]; the output has the same shape and range."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"TransformerNet expects (B, 3, H, W) images in [0, 1], got {tuple(x.shape)}")
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(
                f"height and width must be multiples of 4 (two 2x down-samplings), got {tuple(x.shape[-2:])}"
            )
        h = self.down(x)  # (B, 4c, H/4, W/4)
        h = self.res(h)  # (B, 4c, H/4, W/4)
        return torch.sigmoid(self.up(h))  # (B, 3, H, W)


def random_crops(
    images: Union[Tensor, Sequence[Tensor]],
    size: int,
    batch_size: int,
    generator: torch.Generator,
    scale: Tuple[float, float] = (0.5, 1.0),
) -> Tensor:
    """A batch of random square crops (random scale in ``scale`` of the shorter side), resized to ``size``, random flips.

    ``images``: a tensor ``(N, 3, H, W)`` or a list of ``(3, H_i, W_i)`` tensors in [0, 1].
    """
    pool = list(images)
    if not pool:
        raise ValueError("random_crops needs at least one image")
    out = []
    for _ in range(batch_size):
        img = pool[int(torch.randint(len(pool), (1,), generator=generator))]
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"training images must be (3, H, W), got {tuple(img.shape)}")
        h, w = img.shape[-2:]
        frac = scale[0] + (scale[1] - scale[0]) * float(torch.rand((), generator=generator))
        side = max(8, int(min(h, w) * frac))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = img[:, top : top + side, left : left + side].unsqueeze(0).float()
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if float(torch.rand((), generator=generator)) < 0.5:
            crop = crop.flip(-1)
        out.append(crop.clamp(0, 1))
    return torch.cat(out)  # (batch, 3, size, size)


def _training_batches(images: Any, image_size: int, batch_size: int, seed: int, device=None) -> Any:
    """What :func:`train_fast_style` feeds the trainer: random crops of a pool of images, or ``images`` itself.

    A pool (a tensor, or a list of ``(3, H, W)`` tensors) becomes ``data(step)``: ``batch_size`` crops
    seeded by ``(seed, step)``, so resumed runs see the same batches. The pool is kept on ``device``
    (default: the CPU), where the crops are cut and resized; only the crop positions are drawn on the
    host. Anything else (a DataLoader, an iterable of batches, a callable) is passed through.
    """
    is_pool = (isinstance(images, Tensor) and images.dim() in (3, 4)) or (
        isinstance(images, (list, tuple))
        and len(images) > 0
        and all(isinstance(im, Tensor) and im.dim() == 3 for im in images)
    )
    if not is_pool:
        return images
    if isinstance(images, Tensor):
        pool = list(images.unbind(0)) if images.dim() == 4 else [images]
    else:
        pool = list(images)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    pool = [im.float().to(dev) for im in pool]

    def data(step: int) -> Tensor:
        return random_crops(pool, image_size, batch_size, step_generator(seed, step))

    return data


@dataclass
class TransformerStep:
    """One step of :func:`train_fast_style`: the perceptual loss of the transformer's output, one update.

    ``content_weight * L_content(T(y), y) + style_weight * L_style(T(y), style) + tv_weight * TV(T(y))``
    on a batch ``y`` of content crops, with the losses of :func:`animlib.style.stylize`; ``style_targets``
    are the style image's Gram matrices per layer. The model is the trainer's ``"transformer"``.
    """

    extractor: FeatureExtractor
    content_layers: Tuple[str, ...]
    style_layers: Tuple[str, ...]
    style_targets: Dict[str, Tensor]
    content_weight: float
    style_weight: float
    tv_weight: float

    def __call__(self, t: Trainer, y: Any) -> Dict[str, Tensor]:
        if isinstance(y, (list, tuple)):  # e.g. (images, labels) from a DataLoader
            y = y[0]
        if not isinstance(y, Tensor) or y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(
                f"training batches must be (B, 3, H, W) image tensors, got {getattr(y, 'shape', type(y))}"
            )
        y = y.float()
        with t.autocast():
            out = t.models["transformer"](y)  # (B, 3, H, W)
            fo = self.extractor(out)
            with torch.no_grad():
                fy = self.extractor(y, self.content_layers)  # only as deep as the content layers
        c = sum(content_loss(fo[n], fy[n]) for n in self.content_layers)
        s = sum(style_loss(gram_matrix(fo[n]), self.style_targets[n]) for n in self.style_layers)
        loss = self.content_weight * c + self.style_weight * s
        rec = {"content": c.detach(), "style": s.detach()}
        if self.tv_weight:
            tv = tv_loss(out)
            loss = loss + self.tv_weight * tv
            rec["tv"] = tv.detach()
        t.optimize(loss, "transformer")
        rec["loss"] = loss.detach()
        return rec


def train_fast_style(
    style: Tensor,
    images: Union[Tensor, Sequence[Tensor], Iterable, Callable[[int], Tensor]],
    extractor: FeatureExtractor | None = None,
    *,
    steps: int,
    config: TransformerConfig | None = None,
    net: TransformerNet | None = None,
    batch_size: int = 4,
    image_size: int = 256,
    content_layers: Sequence[str] = ("conv_2_2",),
    style_layers: Sequence[str] = ("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3"),
    content_weight: float = 1.0,
    style_weight: float = 1e3,
    tv_weight: float = 0.0,
    lr: float = 1e-3,
    device: Union[str, torch.device, None] = "auto",
    amp: Union[str, bool, None] = None,
    progress: bool = True,
    seed: int = 0,
    checkpoint_dir: Union[str, os.PathLike, None] = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> Trainer:
    """Train a :class:`TransformerNet` for one style (Johnson et al. 2016) through the engine.

    Loss per batch of content crops ``y``: ``content_weight * L_content(T(y), y) + style_weight *
    L_style(T(y), style) + tv_weight * TV(T(y))`` with the same losses as :func:`stylize`.
    ``images``: a pool of images (tensor ``(N, 3, H, W)`` or a list of ``(3, H, W)``) from which
    each step draws ``batch_size`` random crops of ``image_size`` (seeded by ``seed`` and the step,
    so resumed runs see the same batches); or a DataLoader / iterable of ``(B, 3, H, W)`` batches;
    or a callable ``data(step) -> batch``. Adam with learning rate ``lr`` (Johnson: 1e-3).

    Returns the :class:`~animlib.engine.Trainer`, like every ``train_*`` function:
    ``trainer.raw_models["transformer"]`` is the trained net (in eval mode, on the training device),
    ``trainer.history`` the losses, ``trainer.seconds`` the training time.
    """
    dev = get_device(device)
    style = as_image_batch(style, "style")
    if style.shape[0] != 1:
        raise ValueError("train_fast_style learns one style: pass a single style image")
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
    content_layers, style_layers = as_layer_names(content_layers), as_layer_names(style_layers)
    if extractor is None:
        extractor = FeatureExtractor(content_layers + style_layers, "auto")
    missing = [n for n in content_layers + style_layers if n not in extractor.layer_index]
    if missing:
        raise ValueError(f"the extractor does not compute {missing}")
    extractor = extractor.to(dev)
    if net is None:
        with seeded(seed):
            net = TransformerNet(config)

    amp_dtype = resolve_amp(amp, dev)
    with torch.no_grad():
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            fs = extractor(style.to(dev).float(), style_layers)
        style_targets = {n: gram_matrix(fs[n]) for n in style_layers}  # (1, C, C)

    data = _training_batches(images, image_size, batch_size, seed, dev)

    step = TransformerStep(extractor, content_layers, style_layers, style_targets, content_weight, style_weight,
                           tv_weight)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    trainer = Trainer(
        {"transformer": net},
        {"transformer": opt},
        step,
        device=dev,
        amp=amp,
        progress=progress,
        desc="fast style",
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )
    if resume:
        trainer.resume()
    trainer.fit(data, steps)
    trainer.unwrap("transformer").eval()
    return trainer


@torch.no_grad()
def fast_stylize(
    net: TransformerNet, images: Tensor, batch_size: int = 8, amp: Union[str, bool, None] = None
) -> Tensor:
    """Stylise images with a trained :class:`TransformerNet` in one forward pass each (CPU result).

    Images whose sides are not multiples of 4 are reflection-padded and cropped back.
    """
    x = as_image_batch(images, "images").float()
    dev = next(net.parameters()).device
    was_training = net.training
    net.eval()
    h, w = x.shape[-2:]
    ph, pw = (-h) % 4, (-w) % 4
    amp_dtype = resolve_amp(amp, dev)
    outs = []
    for chunk in x.split(batch_size):
        c = chunk.to(dev)
        if ph or pw:
            c = F.pad(c, (0, pw, 0, ph), mode="reflect")
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            y = net(c)
        outs.append(y[..., :h, :w].float().cpu())
    net.train(was_training)
    return torch.cat(outs)


@dataclass
class FastStyleSettings(ProfileSettings):
    """Chapter 3's sizes by profile for Johnson et al.'s fast transfer."""

    transformer: TransformerConfig  # the image transformation network
    steps: int  # training steps
    crop: int  # side of the training crops in pixels
    batch: int  # crops per step
    checkpoint_every: int  # steps between checkpoints (0: none)

    @classmethod
    def quick(cls) -> FastStyleSettings:
        return cls(transformer=TransformerConfig.quick(), steps=190, crop=64, batch=4, checkpoint_every=0)

    @classmethod
    def full(cls) -> FastStyleSettings:
        return cls(transformer=TransformerConfig.full(), steps=20000, crop=256, batch=4, checkpoint_every=2000)
