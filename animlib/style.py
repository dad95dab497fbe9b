"""Neural style transfer: Gatys' optimisation and the source's depth-weighted content.

The methods of the book's style chapters (source S2, "Depth-aware neural style transfer"):

- **Gatys et al. 2016** (*Image Style Transfer Using Convolutional Neural Networks*, CVPR): a frozen
  ImageNet CNN gives feature maps; the content loss compares feature maps, the style loss compares
  their Gram matrices; the image itself is optimised (L-BFGS or Adam) under
  ``alpha * content + beta * style``. Layers as in the source: content ``conv_2_2``, style
  ``conv_1_2, conv_2_2, conv_3_3, conv_4_3``.
- **The source's own method**: a per-pixel content weight map ``alpha_ij`` (from depth: nearest pixel
  ``alpha_max``, farthest ``alpha_min``, log scale in between) carried through the feature network
  (a convolution becomes a border-normalised window mean, pooling becomes average pooling) and used
  in a weighted content loss. The depth network itself lives in ``animlib.depth``; the depth
  loss of Liu et al. 2017 enters :func:`stylize` through ``extra_losses``.
- A colour-statistics baseline (:func:`match_color`) and an independent judge
  (:func:`style_distance`, measured with a network the optimisation never sees).

The feature networks and their verified weight files are in :mod:`animlib.backbones`; Johnson et
al.'s fast, feed-forward transfer (the source's named future work) is in
:mod:`animlib.fast_style`; the sample photographs and the painterly style image are in
:mod:`animlib.data.images`.

Conventions (every choice that references disagree on is written here and tested):

- Images are float tensors ``(B, 3, H, W)`` in [0, 1]; ImageNet normalisation happens inside the
  feature networks.
- Layer ``conv_b_k`` is the **post-ReLU** activation of the k-th convolution of block b (blocks are
  separated by pooling), i.e. what Gatys and the source call ``relu_b_k``; ``pool_b`` is the output
  of block b's pooling layer. In VGG16-BN the order is conv -> batch norm -> ReLU and ``conv_b_k`` is
  again the ReLU output.
- Gram matrix per image, normalised by the layer size: ``G = F F^T / (C H W)`` (the source's
  definition; Gatys' paper uses no normalisation, Johnson's uses the same ``C H W``).
- Content loss ``(1/HWC) sum (X - Y)^2`` (the source's), averaged over the batch.
- Style loss per layer ``sum_ij (G^X_ij - G^Y_ij)^2`` (the source's: no further factor; Gatys'
  ``1/(4 N^2 M^2)`` is already absorbed in the Gram normalisation up to a constant 1/4), summed over
  the style layers and averaged over the batch.
- Weight propagation through a ``k x k`` convolution: the mean of the weights over the conv's own
  in-bounds ``k x k`` window (``window="kernel"``, the default: exactly the pixels that feed the
  neuron). The source's formula sums over ``i-h .. i+h``, a ``(2h+1) x (2w+1)`` window for an
  ``h x w`` kernel; ``window="source"`` reproduces it literally. Both are tested.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import FeatureExtractor, as_layer_names
from .engine import TensorState, Trainer, every
from .precision import resolve_amp
from .runtime import ProfileSettings, get_device, seeded

__all__ = [
    "as_image_batch",
    "PixelStep",
    "StyleSettings",
    "gram_matrix",
    "content_loss",
    "style_loss",
    "tv_loss",
    "weighted_content_loss",
    "propagate_content_weights",
    "depth_to_alpha",
    "alpha_ramp",
    "match_color",
    "style_distance",
    "GatysLoss",
    "StyleResult",
    "stylize",
    "synthesize_texture",
]


# ----------------------------------------------------------------------------------------------
# Losses (the source's equations)
# ----------------------------------------------------------------------------------------------
def _check_feats(f: Tensor, who: str) -> None:
    if not isinstance(f, Tensor) or f.dim() != 4:
        shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
        raise ValueError(f"{who} expects feature maps (B, C, H, W), got {shape}")


def gram_matrix(feats: Tensor) -> Tensor:
    """Gram matrices per image, ``G_ij = (1/HWC) sum_xy a^i_xy a^j_xy``: ``(B, C, H, W) -> (B, C, C)``.

    The source's normalisation by the layer size ``C*H*W`` (Gatys' paper has none; Johnson et al.
    use the same ``C*H*W``). Computed in float32 even under autocast: the sums are long.
    """
    _check_feats(feats, "gram_matrix")
    b, c, h, w = feats.shape
    f = feats.float().reshape(b, c, h * w)  # (B, C, HW)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)  # (B, C, C)


def content_loss(x: Tensor, y: Tensor) -> Tensor:
    """``L_content = (1/HWC) sum_{c,i,j} (X_ijc - Y_ijc)^2`` per image, averaged over the batch."""
    _check_feats(x, "content_loss")
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"content_loss: feature shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    return (x.float() - y.float()).pow(2).mean()


def style_loss(gx: Tensor, gy: Tensor) -> Tensor:
    """``L_style = sum_{i,j} (G^X_ij - G^Y_ij)^2`` per image (no extra factor), averaged over the batch.

    ``gy`` may hold one style Gram ``(1, C, C)`` for a batch ``gx`` of ``(B, C, C)``.
    """
    if gx.dim() != 3 or gy.dim() != 3 or gx.shape[1:] != gy.shape[1:]:
        raise ValueError(
            f"style_loss expects Gram matrices (B, C, C) of equal C, got {tuple(gx.shape)}, {tuple(gy.shape)}"
        )
    return (gx.float() - gy.float()).pow(2).sum(dim=(1, 2)).mean()


def tv_loss(img: Tensor) -> Tensor:
    """Total variation ``mean (x_{i+1,j} - x_ij)^2 + mean (x_{i,j+1} - x_ij)^2`` (squared, as Johnson et al.)."""
    if img.dim() != 4:
        raise ValueError(f"tv_loss expects images (B, C, H, W), got {tuple(img.shape)}")
    dh = (img[:, :, 1:, :] - img[:, :, :-1, :]).float().pow(2).mean()
    dw = (img[:, :, :, 1:] - img[:, :, :, :-1]).float().pow(2).mean()
    return dh + dw


def weighted_content_loss(x_feat: Tensor, y_feat: Tensor, alpha_l: Tensor) -> Tensor:
    """The source's weighted content loss ``(1/HWC) sum_{c,i,j} alpha^l_ij (X^l_ijc - Y^l_ijc)^2``.

    ``alpha_l`` is ``(B, 1, h, w)`` (or ``(1, 1, h, w)``) at the layer's resolution, as returned by
    :func:`propagate_content_weights`. With ``alpha_l == a`` everywhere this is ``a * content_loss``.
    """
    _check_feats(x_feat, "weighted_content_loss")
    if alpha_l.dim() != 4 or alpha_l.shape[1] != 1 or alpha_l.shape[-2:] != x_feat.shape[-2:]:
        raise ValueError(
            f"alpha_l must be (B, 1, {x_feat.shape[-2]}, {x_feat.shape[-1]}) to match the features "
            f"{tuple(x_feat.shape)}, got {tuple(alpha_l.shape)}; use propagate_content_weights"
        )
    diff = (x_feat.float() - y_feat.float()).pow(2)  # (B, C, h, w)
    return (alpha_l.float() * diff).mean()


# ----------------------------------------------------------------------------------------------
# The source's method: content weights through the network, depth -> alpha
# ----------------------------------------------------------------------------------------------
def _pair(v: Any) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window_mean(
    a: Tensor, kernel: Tuple[int, int], stride: Tuple[int, int], padding: Tuple[int, int]
) -> Tensor:
    """Mean over the in-bounds part of each window (a border-normalised box filter)."""
    return F.avg_pool2d(a, kernel, stride, padding, ceil_mode=False, count_include_pad=False)


def propagate_content_weights(
    alpha: Tensor,
    extractor: nn.Module,
    layers: Sequence[str] | None = None,
    window: str = "kernel",
) -> Dict[str, Tensor]:
    """Carry a per-pixel content weight map through the feature network (the source's Section 4.1).

    ``alpha`` ``(B, 1, H, W)`` -> ``{layer: (B, 1, h_l, w_l)}``, walking ``extractor.features``:

    - ``Conv2d`` with kernel ``k x k``, stride ``s``, padding ``p``: each output weight is the mean of
      the input weights over that neuron's window, counting only in-bounds pixels (the source's
      equation: a sum over the window divided by the number of in-bounds terms, so zero padding
      does not dilute the weight at the border). ``window="kernel"`` (default) uses the conv's own
      ``k x k`` window, exactly the pixels that feed the neuron; ``window="source"`` takes the
      source's bounds ``i-h .. i+h`` literally, a ``(2h+1) x (2w+1)`` window for an ``h x w`` kernel
      (stride 1 only), which blurs the map faster with depth.
    - pooling (max or average) with kernel ``k``: average pooling with the same kernel and stride.
    - batch norm, ReLU and other point-wise layers: unchanged.

    A constant map stays exactly constant at every layer (tested), so a constant ``alpha = a`` gives
    ``a * content_loss``.
    """
    if window not in ("kernel", "source"):
        raise ValueError(f"window must be 'kernel' or 'source', got {window!r}")
    if not isinstance(alpha, Tensor) or alpha.dim() != 4 or alpha.shape[1] != 1:
        shape = tuple(alpha.shape) if isinstance(alpha, Tensor) else type(alpha).__name__
        raise ValueError(f"alpha must be a weight map (B, 1, H, W), got {shape}")
    if not hasattr(extractor, "features") or not hasattr(extractor, "layer_index"):
        raise TypeError("extractor must be a FeatureExtractor (with .features and .layer_index)")
    layers = tuple(extractor.layers if layers is None else ((layers,) if isinstance(layers, str) else layers))
    unknown = [n for n in layers if n not in extractor.layer_index]
    if unknown:
        raise ValueError(
            f"layers {unknown} are not computed by this extractor (it has {list(extractor.layer_index)})"
        )
    want = {extractor.layer_index[n]: n for n in layers}
    last = max(want)
    a = alpha.float()
    out: Dict[str, Tensor] = {}
    for i, layer in enumerate(extractor.features):
        if i > last:
            break
        if isinstance(layer, nn.Conv2d):
            k, s = _pair(layer.kernel_size), _pair(layer.stride)
            if layer.dilation not in ((1, 1), 1):
                raise NotImplementedError(
                    "weight propagation through dilated convolutions is not defined here"
                )
            if isinstance(layer.padding, str):
                if layer.padding == "same":
                    p = (k[0] // 2, k[1] // 2)
                else:
                    p = (0, 0)
            else:
                p = _pair(layer.padding)
            if window == "kernel":
                a = _window_mean(a, k, s, p)  # (B, 1, h, w)
            else:
                if s != (1, 1):
                    raise NotImplementedError("window='source' is defined for stride-1 convolutions only")
                a = _window_mean(a, (2 * k[0] + 1, 2 * k[1] + 1), (1, 1), k)  # i-h .. i+h
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(layer.kernel_size)
            s = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
            p = _pair(layer.padding)
            a = F.avg_pool2d(a, k, s, p, ceil_mode=layer.ceil_mode, count_include_pad=False)
        if i in want:
            out[want[i]] = a
    return {n: out[n] for n in layers}


def depth_to_alpha(
    depth: Tensor, alpha_min: float = 1.0, alpha_max: float = 5.0, near_is_small: bool = True
) -> Tensor:
    """The source's depth -> content weight map, per image, on a log scale.

    The nearest pixel gets ``alpha_max``, the farthest ``alpha_min``, and in between
    ``log alpha = log alpha_min + t (log alpha_max - log alpha_min)`` with ``t`` the pixel's nearness
    scaled to [0, 1]: ``alpha = alpha_min (alpha_max / alpha_min)^t``. ``near_is_small=True`` reads
    ``depth`` as a distance (small = near); pass False for disparity-like maps (large = near, e.g.
    the relative-depth network's output when trained with that sign). A constant map (no depth
    information) gives ``alpha_min`` everywhere, i.e. plain Gatys.
    """
    if not isinstance(depth, Tensor) or depth.dim() != 4 or depth.shape[1] != 1:
        shape = tuple(depth.shape) if isinstance(depth, Tensor) else type(depth).__name__
        raise ValueError(f"depth must be (B, 1, H, W), got {shape}")
    if not (alpha_min > 0 and alpha_max >= alpha_min):
        raise ValueError(f"need 0 < alpha_min <= alpha_max, got alpha_min={alpha_min}, alpha_max={alpha_max}")
    if not torch.isfinite(depth).all():
        raise ValueError("depth contains NaN or inf")
    d = depth.float()
    lo = d.amin(dim=(1, 2, 3), keepdim=True)
    hi = d.amax(dim=(1, 2, 3), keepdim=True)
    span = hi - lo
    near = (hi - d) if near_is_small else (d - lo)  # 0 at the farthest pixel
    t = torch.where(span > 0, near / span.clamp_min(1e-12), torch.zeros_like(d))  # (B, 1, H, W) in [0, 1]
    return alpha_min * (alpha_max / alpha_min) ** t


def alpha_ramp(
    height: int, width: int, alpha_min: float = 1.0, alpha_max: float = 10.0, log: bool = True
) -> Tensor:
    """The source's synthetic left-to-right weight ramp (Fig. 10: 1 -> 10), ``(1, 1, H, W)``."""
    if height < 1 or width < 1:
        raise ValueError("height and width must be positive")
    t = torch.linspace(0.0, 1.0, width).view(1, 1, 1, width).expand(1, 1, height, width)
    if log:
        return alpha_min * (alpha_max / alpha_min) ** t
    return alpha_min + (alpha_max - alpha_min) * t


# ----------------------------------------------------------------------------------------------
# Images, a baseline and an independent judge
# ----------------------------------------------------------------------------------------------
def as_image_batch(img: Tensor, who: str) -> Tensor:
    """``img`` as a float batch ``(B, 3, H, W)``: a ``(3, H, W)`` image gains the batch dimension;
    anything else is refused with an error that names ``who``."""
    if not isinstance(img, Tensor):
        raise TypeError(f"{who} must be a torch.Tensor image, got {type(img).__name__}")
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(
            f"{who} must be an RGB image (3, H, W) or batch (B, 3, H, W), got {tuple(img.shape)}"
        )
    if not img.is_floating_point():
        raise TypeError(
            f"{who} must be a float tensor in [0, 1] (got {img.dtype}; divide uint8 images by 255)"
        )
    if not torch.isfinite(img).all():
        raise ValueError(f"{who} contains NaN or inf")
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{who} must hold values in [0, 1], got [{lo:.3g}, {hi:.3g}]"
                         + (": divide 0..255 images by 255" if hi > 1.5 else ""))
    return img


def match_color(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Colour transfer baseline: give ``content`` the RGB mean and covariance of ``style``.

    A linear map per image, ``x -> C_s^{1/2} C_c^{-1/2} (x - mu_c) + mu_s`` (symmetric matrix square
    roots), clamped to [0, 1]. It copies everything about the style that colour statistics can carry
    and nothing about texture, which makes it the trivial baseline a style transfer must beat.
    """
    c = as_image_batch(content, "content").float()
    s = as_image_batch(style, "style").float().to(c.device)
    if s.shape[0] not in (1, c.shape[0]):
        raise ValueError("style must hold 1 image or as many as content")
    out = []
    for k in range(c.shape[0]):
        xc = c[k].reshape(3, -1)  # (3, N)
        xs = s[min(k, s.shape[0] - 1)].reshape(3, -1)
        mc, ms = xc.mean(1, keepdim=True), xs.mean(1, keepdim=True)
        cc = torch.cov(xc) + eps * torch.eye(3, device=xc.device)
        cs = torch.cov(xs) + eps * torch.eye(3, device=xs.device)

        def _sqrtm(m: Tensor, inverse: bool = False) -> Tensor:
            vals, vecs = torch.linalg.eigh(m.double())
            vals = vals.clamp_min(eps)
            p = -0.5 if inverse else 0.5
            return (vecs @ torch.diag(vals**p) @ vecs.T).float()

        t = _sqrtm(cs) @ _sqrtm(cc, inverse=True)
        out.append((t @ (xc - mc) + ms).reshape(c.shape[1:]))
    return torch.stack(out).clamp(0.0, 1.0)



@torch.no_grad()
def style_distance(image: Tensor, style: Tensor, net: nn.Module) -> float:
    """Relative Gram distance ``mean_l ||G^l(image) - G^l(style)||_F^2 / ||G^l(style)||_F^2``.

    Measured with ``net`` (use :func:`animlib.backbones.mobilenet_v2_features`, a network the optimisation never
    saw). Dividing by the style Gram's norm makes layers of different scales count equally and the
    number unit-free: 0 means identical second-order statistics, 1 is as far as a zero Gram.
    Averaged over the batch of ``image``.
    """
    x = as_image_batch(image, "image")
    s = as_image_batch(style, "style")
    dev = next(net.parameters()).device
    fx, fs = net(x.to(dev)), net(s.to(dev))
    total = 0.0
    for name in fx:
        gx, gs = gram_matrix(fx[name]), gram_matrix(fs[name])
        total += float(((gx - gs).pow(2).sum(dim=(1, 2)) / gs.pow(2).sum(dim=(1, 2))).mean())
    return total / len(fx)


# ----------------------------------------------------------------------------------------------
# Gatys style transfer through the engine
# ----------------------------------------------------------------------------------------------
@dataclass
class StyleResult:
    """What :func:`stylize` returns."""

    image: Tensor  # (B, 3, H, W) in [0, 1], on the CPU
    history: List[Dict[str, float]]  # per step, losses of the image *before* the step's update, and
    # "evaluations": how many loss+gradient evaluations had been made when they were measured
    initial: Dict[str, float]  # losses of the initial image (weighted terms, unweighted names below)
    final: Dict[str, float]  # losses of the returned image (the best seen, clamped to [0, 1])
    seconds: float  # wall time of the optimisation
    seconds_per_step: float
    steps: int
    feature_net: str  # extractor.source
    evaluations: int = 0  # loss+gradient evaluations (L-BFGS line searches take more than one per step)
    best_step: int = 0  # the step whose image is returned (0: the initial image)
    trainer: Any = field(default=None, repr=False)  # the animlib.engine.Trainer (checkpoints, history)
    snapshots: List[Tuple[int, Tensor]] = field(default_factory=list, repr=False)  # (step, image) pairs
    # with ``snapshot_every``: the image (clamped, on the CPU) every that many steps, from step 0



@dataclass
class GatysLoss:
    """The objective of :func:`stylize` for fixed targets: ``losses(img) -> {term: value, "loss": total}``."""

    extractor: FeatureExtractor
    content_layers: Tuple[str, ...]
    style_layers: Tuple[str, ...]
    content_targets: Dict[str, Tensor]  # feature maps of the content image
    style_targets: Dict[str, Tensor]  # Gram matrices of the style image(s), (B or 1, C, C)
    alpha_maps: Dict[str, Tensor] | None  # per-layer content weights (the source's method), or None
    alpha_value: float  # the scalar content weight (1 with maps)
    beta: float
    tv_weight: float
    extra_losses: Dict[str, Tuple[float, Callable[[Tensor], Tensor]]]
    input_pool: int
    amp_dtype: torch.dtype | None
    device_type: str

    @property
    def use_content(self) -> bool:
        return self.alpha_maps is not None or self.alpha_value > 0

    def pooled(self, img: Tensor) -> Tensor:
        return F.avg_pool2d(img, self.input_pool) if self.input_pool > 1 else img  # (B, C, H/p, W/p)

    def autocast(self):
        # bf16/fp16 for the feature network only; the pixels, Grams and losses stay float32.
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.amp_dtype)

    @classmethod
    def build(cls, content: Tensor, style: Tensor, extractor: FeatureExtractor, content_layers: Tuple[str, ...],
              style_layers: Tuple[str, ...], alpha: Union[float, Tensor], beta: float, tv_weight: float,
              extra_losses: Dict[str, Tuple[float, Callable[[Tensor], Tensor]]], input_pool: int, window: str,
              amp_dtype: torch.dtype | None) -> GatysLoss:
        """Check ``alpha``, propagate an alpha map through the network, and compute the targets."""
        b = content.shape[0]
        loss = cls(extractor, content_layers, style_layers, {}, {}, None, 1.0, beta, tv_weight, extra_losses,
                   input_pool, amp_dtype, content.device.type)
        if isinstance(alpha, Tensor):
            if (
                alpha.dim() != 4
                or alpha.shape[1] != 1
                or alpha.shape[-2:] != content.shape[-2:]
                or alpha.shape[0] not in (1, b)
            ):
                raise ValueError(
                    f"an alpha map must be (B, 1, H, W) = ({b}, 1, {content.shape[-2]}, {content.shape[-1]}) "
                    f"(or batch 1), got {tuple(alpha.shape)}"
                )
            if (alpha < 0).any() or not torch.isfinite(alpha).all():
                raise ValueError("alpha map values must be finite and >= 0")
            loss.alpha_maps = propagate_content_weights(
                loss.pooled(alpha.to(content.device).float()), extractor, content_layers, window=window
            )
        else:
            loss.alpha_value = float(alpha)
            if loss.alpha_value < 0:
                raise ValueError(f"alpha must be >= 0, got {alpha}")
        with torch.no_grad(), loss.autocast():
            fc = extractor(loss.pooled(content), content_layers)
            fs = extractor(loss.pooled(style), style_layers)
        loss.content_targets = {n: fc[n].detach().float() for n in content_layers}
        loss.style_targets = {n: gram_matrix(fs[n]).detach() for n in style_layers}
        return loss

    def __call__(self, img: Tensor) -> Dict[str, Tensor]:
        with self.autocast():
            f = self.extractor(self.pooled(img))
        terms: Dict[str, Tensor] = {}
        if self.use_content:
            if self.alpha_maps is not None:
                terms["content"] = sum(
                    weighted_content_loss(f[n], self.content_targets[n], self.alpha_maps[n])
                    for n in self.content_layers
                )
            else:
                terms["content"] = sum(content_loss(f[n], self.content_targets[n]) for n in self.content_layers)
        terms["style"] = sum(style_loss(gram_matrix(f[n]), self.style_targets[n]) for n in self.style_layers)
        if self.tv_weight:
            terms["tv"] = tv_loss(img)
        for name, (_, fn) in self.extra_losses.items():
            terms[name] = fn(img).float()
        total = self.beta * terms["style"]
        if self.use_content:
            total = total + self.alpha_value * terms["content"]
        if self.tv_weight:
            total = total + self.tv_weight * terms["tv"]
        for name, (w, _) in self.extra_losses.items():
            total = total + w * terms[name]
        terms["loss"] = total
        return terms


def _initial_image(init: Union[str, Tensor], content: Tensor, seed: int) -> Tensor:
    """The starting pixels: the content image, seeded uniform noise, or a given image; clamped to [0, 1]."""
    if isinstance(init, Tensor):
        x0 = as_image_batch(init, "init").to(content.device).float()
        if x0.shape != content.shape:
            raise ValueError(
                f"init image must have the content's shape {tuple(content.shape)}, got {tuple(x0.shape)}"
            )
    elif init == "content":
        x0 = content
    elif init == "noise":
        g = torch.Generator().manual_seed(seed)
        x0 = torch.rand(content.shape, generator=g).to(content.device)
    else:
        raise ValueError(f"init must be 'content', 'noise' or an image tensor, got {init!r}")
    return x0.detach().clone().contiguous().clamp_(0, 1)


def _checked_extractor(extractor: FeatureExtractor | None, layers: Tuple[str, ...]) -> FeatureExtractor:
    if extractor is None:
        return FeatureExtractor(layers, "auto")
    missing = [n for n in layers if n not in extractor.layer_index]
    if missing:
        raise ValueError(
            f"the extractor does not compute {missing}; build it with FeatureExtractor({list(dict.fromkeys(layers))})"
        )
    return extractor


def _checked_extra_losses(extra_losses: Mapping[str, Tuple[float, Callable[[Tensor], Tensor]]] | None
                          ) -> Dict[str, Tuple[float, Callable[[Tensor], Tensor]]]:
    extra = dict(extra_losses or {})
    for name, spec in extra.items():
        if not (isinstance(spec, tuple) and len(spec) == 2 and callable(spec[1])):
            raise TypeError(f"extra_losses[{name!r}] must be (weight, fn), got {spec!r}")
        if name in ("loss", "content", "style", "tv"):
            raise ValueError(f"extra loss name {name!r} clashes with a built-in term")
    return extra


def _pixel_optimizer(x: Tensor, optimizer: str, lr: float | None, line_search: bool) -> torch.optim.Optimizer:
    """One L-BFGS iteration per step (a strong-Wolfe line search by default), or Adam in pixel units."""
    if optimizer == "lbfgs":
        return torch.optim.LBFGS(
            [x],
            lr=1.0 if lr is None else lr,
            max_iter=1,
            max_eval=1 + 20,  # the default, 1.25 * max_iter = 1, would leave the line search no evaluation
            history_size=50,
            line_search_fn="strong_wolfe" if line_search else None,
        )
    return torch.optim.Adam([x], lr=0.02 if lr is None else lr)


def _check_stylize_settings(content: Tensor, style: Tensor, optimizer: str, steps: int, input_pool: int,
                            snapshot_every: int, box_weight: float) -> None:
    """:func:`stylize`'s arguments, checked before any work: each error says what would work."""
    b = content.shape[0]
    if style.shape[0] not in (1, b):
        raise ValueError(f"style must hold 1 image or {b} (one per content image), got {style.shape[0]}")
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if not isinstance(input_pool, int) or input_pool < 1:
        raise ValueError(f"input_pool must be a positive int, got {input_pool!r}")
    if not isinstance(snapshot_every, int) or snapshot_every < 0:
        raise ValueError(f"snapshot_every must be an int >= 0 (0: no snapshots), got {snapshot_every!r}")
    if not (isinstance(box_weight, (int, float)) and box_weight > 0):
        raise ValueError(f"box_weight must be a positive number, got {box_weight!r}")


def _snapshot_keeper(x: Tensor, snapshots: List[Tuple[int, Tensor]]) -> Callable[[Trainer], None]:
    """A callback that appends ``(step, image)`` to ``snapshots``, once per step."""

    def snapshot(t: Trainer) -> None:
        if not snapshots or snapshots[-1][0] != t.step:
            snapshots.append((t.step, x.detach().clamp(0.0, 1.0).cpu().clone()))

    return snapshot


def _check_image_sizes(content: Tensor, style: Tensor, extractor: FeatureExtractor, content_layers: Tuple[str, ...],
                       style_layers: Tuple[str, ...], input_pool: int) -> None:
    """Each image is big enough for the deepest layer it goes through."""
    for what, img, layers in (("content", content, content_layers + style_layers), ("style", style, style_layers)):
        deepest, side = extractor.min_image_size(layers) if layers else ("", 1)
        if min(img.shape[-2:]) < side * input_pool:
            pool = f" ({side}×{side} after input_pool={input_pool})" if input_pool > 1 else ""
            raise ValueError(
                f"the {what} image is {img.shape[-2]}×{img.shape[-1]} pixels, too small for layer {deepest!r}, which "
                f"needs at least {side * input_pool}×{side * input_pool}{pool}: upscale the {what} image or use "
                "shallower layers"
            )


@dataclass
class PixelStep:
    """One step of :func:`stylize`: an update of the pixels ``x`` (the trainer's optimiser ``"image"``).

    L-BFGS evaluates the objective several times a step (its closure); every evaluated image is a
    candidate for the best one seen (``best``: the lowest objective and its step; ``best_image``).
    ``evaluations`` counts the objective's evaluations. All three are tensors, so that checkpoints
    keep them with the image. The step's record holds the losses at the image the step started from.
    """

    x: Tensor  # the pixels being optimised (a leaf tensor)
    losses: GatysLoss
    optimizer: str  # "lbfgs" or "adam"
    box_scale: float  # the weight of the penalty outside [0, 1] (L-BFGS only)
    best_image: Tensor
    best: Tensor  # (lowest objective seen, the step it was seen at)
    evaluations: Tensor

    def objective(self, terms: Dict[str, Tensor], img: Tensor) -> Tensor:
        if self.optimizer != "lbfgs":
            return terms["loss"]
        outside = img - img.detach().clamp(0.0, 1.0)  # zero inside the box; gradient only outside
        return terms["loss"] + self.box_scale * outside.float().pow(2).mean()

    def remember(self, value: Tensor, step: int) -> None:
        """The image just evaluated is a candidate for the best one (L-BFGS probes it in its closure)."""
        if float(value) < float(self.best[0]):
            self.best[0], self.best[1] = float(value), step
            self.best_image.copy_(self.x.detach())

    def __call__(self, t: Trainer, _batch: Any) -> Dict[str, Tensor]:
        if self.optimizer == "lbfgs":
            return self._lbfgs_step(t)
        x = self.x
        terms = self.losses(x)
        self.remember(terms["loss"].detach(), t.step)
        t.optimize(terms["loss"], "image")
        self.evaluations.add_(1)
        record = {k: v.detach() for k, v in terms.items()}
        record["evaluations"] = self.evaluations.clone()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        return record

    def _lbfgs_step(self, t: Trainer) -> Dict[str, Tensor]:
        record: Dict[str, Tensor] = {}
        x, opt = self.x, t.optimizers["image"]

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            terms = self.losses(x)
            total = self.objective(terms, x)
            t.check_finite("loss", total)
            total.backward()
            self.evaluations.add_(1)
            self.remember(total.detach(), t.step)
            if not record:  # the first evaluation is at the current image; later ones are probes
                record.update({k: v.detach() for k, v in terms.items()})
                record["evaluations"] = self.evaluations.clone()  # the count when these losses were measured
            return total

        opt.step(closure)
        return record


def stylize(
    content: Tensor,
    style: Tensor,
    *,
    extractor: FeatureExtractor | None = None,
    content_layers: Sequence[str] = ("conv_2_2",),
    style_layers: Sequence[str] = ("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3"),
    alpha: Union[float, Tensor] = 1.0,
    beta: float = 1e3,
    tv_weight: float = 0.0,
    extra_losses: Mapping[str, Tuple[float, Callable[[Tensor], Tensor]]] | None = None,
    optimizer: str = "lbfgs",
    steps: int = 200,
    lr: float | None = None,
    init: Union[str, Tensor] = "content",
    window: str = "kernel",
    device: Union[str, torch.device, None] = "auto",
    amp: Union[str, bool, None] = None,
    progress: bool = True,
    seed: int = 0,
    checkpoint_dir: Union[str, os.PathLike, None] = None,
    checkpoint_every: int = 0,
    line_search: bool = True,
    box_weight: float = 0.1,
    input_pool: int = 1,
    snapshot_every: int = 0,
) -> StyleResult:
    """Gatys style transfer: optimise the pixels ``X`` (the source's Eq. for ``argmin_X``).

    Minimises ``alpha * sum_l L_content^l + beta * sum_l L_style^l + tv_weight * TV
    + sum_k w_k f_k(X)`` where:

    - ``alpha`` is a float (plain Gatys) or a weight map ``(B, 1, H, W)`` (the source's method): the
      map is propagated to every content layer (:func:`propagate_content_weights`) and the content
      term becomes :func:`weighted_content_loss` (the map *is* the weight; no extra factor).
      ``alpha=0`` drops the content term (texture synthesis).
    - ``extra_losses`` maps a name to ``(weight, fn)`` with ``fn(X) -> scalar``, e.g. chapter 4's
      depth loss ``{"depth": (gamma, lambda x: depth_loss(depth_net(x), target))}``.

    ``content`` ``(B, 3, H, W)`` or ``(3, H, W)`` in [0, 1]; ``style`` one image or ``B`` images of
    any size. ``optimizer="lbfgs"`` (one L-BFGS iteration per step, ``lr`` default 1, with a
    strong-Wolfe line search unless ``line_search=False``) or ``"adam"`` (``lr`` default 0.02 in
    pixel units). ``init``: ``"content"``, ``"noise"`` (uniform, seeded by ``seed``) or an image tensor.

    The [0, 1] box: Adam's pixels are clamped after every step (projected gradient descent). L-BFGS
    must not be clamped (that would move the pixels behind the back of its curvature memory and of
    its line search, which then oscillate), so its objective adds a smooth penalty on pixels outside
    the box, ``L0 * mean(dist(X, [0, 1])^2) / box_weight`` with ``L0`` the initial loss (scale-free:
    an excursion of ``sqrt(box_weight)`` costs about the whole initial loss). The returned image is
    the best one seen (lowest objective), clamped to [0, 1]; ``final`` holds *its* losses.

    ``input_pool=2`` is the source's 512x640 setting: a 2x average pooling in front of the feature
    network (the image is optimised at full resolution; an alpha map is pooled the same way;
    ``extra_losses`` receive the full-resolution image). ``amp="auto"`` runs the feature network
    under bf16 autocast where the device computes bf16 natively (see
    :func:`animlib.precision.resolve_amp`); Gram matrices and losses stay float32. Steps go through
    :class:`animlib.engine.Trainer` (progress bar, history, NaN stop, checkpoints with the image).
    ``snapshot_every=k`` keeps the image at step 0 and every ``k`` steps (and the last) in
    ``result.snapshots``, e.g. for an animation of the optimisation (not kept in checkpoints).
    """
    dev = get_device(device)
    content = as_image_batch(content, "content")
    style = as_image_batch(style, "style")
    _check_stylize_settings(content, style, optimizer, steps, input_pool, snapshot_every, box_weight)
    content_layers, style_layers = as_layer_names(content_layers), as_layer_names(style_layers)
    extractor = _checked_extractor(extractor, content_layers + style_layers).to(dev)
    extra_losses = _checked_extra_losses(extra_losses)
    _check_image_sizes(content, style, extractor, content_layers, style_layers, input_pool)
    content = content.to(dev).float()
    losses = GatysLoss.build(content, style.to(dev).float(), extractor, content_layers, style_layers, alpha, beta,
                              tv_weight, extra_losses, input_pool, window, resolve_amp(amp, dev))
    x = _initial_image(init, content, seed).requires_grad_(True)  # the pixels: a leaf tensor

    opt = _pixel_optimizer(x, optimizer, lr, line_search)
    with torch.no_grad():
        initial = {k: float(v) for k, v in losses(x).items()}
    step = PixelStep(x=x, losses=losses, optimizer=optimizer, box_scale=max(initial["loss"], 1e-12) / box_weight,
                     best_image=x.detach().clone(), best=torch.tensor([initial["loss"], 0.0]),
                     evaluations=torch.zeros(1))
    snapshots: List[Tuple[int, Tensor]] = []
    snapshot = _snapshot_keeper(x, snapshots)
    trainer = Trainer(
        {}, {"image": opt}, step, device=dev, amp=None, progress=progress, desc=f"stylize ({optimizer})",
        extra={"image": TensorState(x), "best_image": TensorState(step.best_image), "best": TensorState(step.best),
               "evaluations": TensorState(step.evaluations)},
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        callbacks={"on_step_end": every(snapshot_every, snapshot), "on_fit_end": snapshot} if snapshot_every else None,
    )
    if snapshot_every:
        snapshot(trainer)
    with seeded(seed):
        t0 = time.perf_counter()
        trainer.fit(lambda step: None, steps)
        seconds = time.perf_counter() - t0
    with torch.no_grad():
        last = losses(x)
        step.remember(step.objective(last, x), trainer.step)  # the image after the last update
        out = step.best_image.clamp(0.0, 1.0)
        final = {k: float(v) for k, v in losses(out).items()}
    return StyleResult(image=out.detach().cpu().clone(), history=trainer.history, initial=initial, final=final,
                       seconds=seconds, seconds_per_step=seconds / max(steps, 1), steps=steps,
                       evaluations=int(step.evaluations.item()), best_step=int(step.best[1].item()),
                       feature_net=extractor.source, trainer=trainer, snapshots=snapshots)


def synthesize_texture(style: Tensor, size: Tuple[int, int], **kwargs: Any) -> StyleResult:
    """Texture synthesis (Gatys et al. 2015): start from noise and match only the style Grams.

    ``stylize`` with ``alpha=0`` and ``init="noise"``; ``size`` is the output ``(H, W)``; one texture
    per style image in the batch.
    """
    style = as_image_batch(style, "style")
    kwargs.setdefault("init", "noise")
    kwargs["alpha"] = 0.0
    blank = torch.zeros(style.shape[0], 3, int(size[0]), int(size[1]))  # one texture per style image
    return stylize(blank, style, **kwargs)


# ----------------------------------------------------------------------------------------------
# chapter 3's sizes
# ----------------------------------------------------------------------------------------------
@dataclass
class StyleSettings(ProfileSettings):
    """Chapter 3's sizes by profile for Gatys' optimisation (the source's 512×640 in ``full``).

    ``quick`` stylises at 192×240 on a CPU and runs the optimiser comparison and the weight sweep,
    which only compare settings, at 64×80.
    """

    size: Tuple[int, int]  # (H, W) of the content and style images
    small_size: Tuple[int, int]  # (H, W) of the optimiser comparison and the weight sweep
    input_pool: int  # average pooling before the networks (the source: 2 at 512x640)
    tex_size: Tuple[int, int]  # texture synthesis output
    tex_steps: int  # texture synthesis steps
    steps: int  # the main stylisation's L-BFGS steps
    cmp_steps: int  # steps of the optimiser comparison (half-size images)
    grid_steps: int  # steps of the content/style weight sweep

    @classmethod
    def quick(cls) -> StyleSettings:
        return cls(size=(192, 240), small_size=(64, 80), input_pool=1, tex_size=(96, 96), tex_steps=40, steps=85,
                   cmp_steps=50, grid_steps=70)

    @classmethod
    def full(cls) -> StyleSettings:
        return cls(size=(512, 640), small_size=(256, 320), input_pool=2, tex_size=(256, 256), tex_steps=500,
                   steps=500, cmp_steps=300, grid_steps=300)
