"""Measuring generated images: sharpness and a perceptual feature distance.

- :func:`laplacian_energy`: the mean energy of the 3×3 Laplacian on the luminance. Blur removes high
  frequencies, so a VAE's reconstructions score lower than the real images (chapter 6).
- :func:`mobilenet_descriptor` and :func:`feature_distance`: the squared distance between the
  features of two images in a frozen ImageNet MobileNetV2 (Sandler et al. 2018), a rough
  *perceptual* distance. The network and its SHA-256-verified weights come from
  :mod:`animlib.backbones`.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Union

import torch
import torch.nn.functional as F

from .backbones import MobileNetV2Features
from .engine import batched_inference
from .runtime import get_device

__all__ = ["laplacian_energy", "mobilenet_descriptor", "feature_distance", "noise_control"]


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


def mobilenet_descriptor(
    block: int = 6,
    size: int = 128,
    grid: int = 4,
    device: Union[str, torch.device, None] = None,
    weights_path: Union[str, os.PathLike, None] = None,
) -> Callable[..., torch.Tensor]:
    """A frozen ImageNet MobileNetV2 cut after feature block ``block`` (``features[:block + 1]``).

    Returns ``feat(images, batch_size=128) -> (B, F)`` on the CPU: images (B, 3, H, W) in [0, 1]
    are resized to ``size``×``size``, normalised with ImageNet statistics and passed through the
    blocks; the output map is average-pooled to ``grid``×``grid`` and flattened, so the features
    keep a coarse layout. ``feat.net`` is the :class:`~animlib.backbones.MobileNetV2Features`
    (its ``weights_path`` and ``weights_sha256`` identify the verified weight file).
    """
    dev = get_device(device)
    name = f"block_{block}"
    net = MobileNetV2Features((name,), "imagenet", weights_path=weights_path).to(dev)

    @torch.no_grad()
    def feat(images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [0, 1]; got {tuple(images.shape)}.")

        def describe(chunk: torch.Tensor) -> torch.Tensor:
            x = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False)
            return F.adaptive_avg_pool2d(net(x)[name], grid).flatten(1)

        return batched_inference(describe, images, batch_size, model=net)

    feat.net = net  # type: ignore[attr-defined]
    return feat


def feature_distance(feat: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over image pairs of the squared distance between features, normalised by the feature size:
    mean_i ‖φ(a_i) - φ(b_i)‖² / F. Lower means ``a`` looks more like ``b`` to the network."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold paired images of the same shape; got {tuple(a.shape)} and {tuple(b.shape)}.")
    fa, fb = feat(a), feat(b)
    return float((fa - fb).pow(2).mean())


def noise_control(images: torch.Tensor, originals: torch.Tensor, target_mse: float, seed: int = 0,
                  iterations: int = 40) -> torch.Tensor:
    """``images`` plus Gaussian noise, clipped to [0, 1], whose pixel MSE to ``originals`` is ``target_mse``.

    A control for sharpness claims: noise raises the Laplacian energy too, so a method that is
    "sharper" only because its error is high-frequency does no better than this control at the same
    pixel error. The noise is drawn once (from ``seed``) and its scale found by bisection. If the
    images are already at least that far from the originals, they are returned unchanged.
    """
    if images.shape != originals.shape:
        raise ValueError(f"images and originals must be paired, of the same shape; got {tuple(images.shape)} "
                         f"and {tuple(originals.shape)}.")
    if not (isinstance(target_mse, (int, float)) and math.isfinite(target_mse) and target_mse >= 0):
        raise ValueError(f"target_mse must be a finite number >= 0, got {target_mse!r}")
    x, ref = images.float(), originals.float()

    def mse(sigma: float) -> float:
        return float(((x + sigma * noise).clamp(0, 1) - ref).pow(2).mean())

    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device)
    if mse(0.0) >= target_mse:
        return x.clone()
    lo, hi = 0.0, 1.0
    while mse(hi) < target_mse and hi < 64:
        hi *= 2
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mse(mid) < target_mse else (lo, mid)
    return (x + hi * noise).clamp(0, 1)
