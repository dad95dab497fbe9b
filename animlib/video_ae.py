"""Video reconstruction with a GRU autoencoder, its comparators, and anomaly scores.

The source (S3, a review and implementation of a "GRU autoencoder" for video) encodes every frame
``x_t`` of a clip ``x_1..x_T`` with a convolutional encoder into a latent ``z_t``, models the latent
*sequence* with a GRU whose output at step ``t`` is ``ẑ_t``, and decodes every ``ẑ_t`` back into a
frame; the loss is the mean squared error between input and output. It argues that a clip should stay
a sequence of latents rather than one point in latent space. Its extension is anomaly detection from
the reconstruction error, as AnoGAN does for images (Schlegl et al. 2017), and its named comparison is
the spatio-temporal (3D-convolution) autoencoder (Hasan et al. 2016).

References:
    Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder for Statistical
    Machine Translation" (the GRU, eqs. 5-8); Chung et al. (2014) (GRU vs LSTM);
    Srivastava et al. (2015), "Unsupervised Learning of Video Representations using LSTMs" (the
    one-vector-per-clip sequence autoencoder, our comparator); Hasan et al. (2016), "Learning Temporal
    Regularity in Video Sequences" (regularity score); Schlegl et al. (2017) (AnoGAN).

Differences from the public reference code of the source (satolab12/GRU-Autoencoder), each deliberate:

- the GRU's initial state is deterministic (zeros, or a learned vector), where the reference draws a
  fresh random state on every call, so the same clip gave a different reconstruction each time;
- devices are taken from the parameters (CPU, CUDA, MPS alike) instead of a hard-coded ``.cuda()``;
- :func:`clip_batches` samples every clip and every window (the reference's ``randint(0, n - 1)``
  never draws its last video, and its crop never starts at the last two possible frames);
- the decoder reads ``ẑ_t`` (a linear read-out of the GRU state, the article's figure) where the
  reference feeds the 100-d GRU output straight into its first decoder layer (its ``fc2`` is unused);
- the channel widths are a config field: the reference's (32, 64, 128, 256, 512) is the default.

Contents, helpers -> blocks -> models -> training -> anomaly scores:
:class:`GRUCell` / :class:`GRU` (our GRU, parameter-compatible with ``torch.nn.GRUCell``),
:class:`FrameVectorEncoder`, :class:`FrameDecoder`, :class:`GRUAutoencoder`, :class:`PerFrameAutoencoder`,
:class:`ClipLatentAutoencoder`, :func:`clip_batches`, :func:`foreground_weights`, :class:`ReconstructionStep`,
:func:`train_autoencoder`, :func:`frame_errors`, :func:`clip_scores`, :func:`anomaly_auc`,
:func:`roc`, :func:`regularity_score`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from .backbones import norm_layer
from .engine import Trainer, batched_inference
from .runtime import ProfileSettings, step_generator

__all__ = [
    "GRUAEConfig",
    "GRUCell",
    "GRU",
    "FrameVectorEncoder",
    "FrameDecoder",
    "GRUAutoencoder",
    "PerFrameAutoencoder",
    "ClipLatentAutoencoder",
    "build_autoencoder",
    "VideoAESettings",
    "count_parameters",
    "check_clips",
    "clip_batches",
    "foreground_weights",
    "reconstruction_loss",
    "ReconstructionStep",
    "train_autoencoder",
    "reconstruct_clips",
    "frame_errors",
    "frame_surprise",
    "copy_frame_codec",
    "clip_scores",
    "anomaly_auc",
    "roc",
    "regularity_score",
]


@dataclass
class GRUAEConfig:
    """Hyperparameters of the video autoencoders (defaults: the source's reference code)."""

    frames: int = 16  # T, frames per clip (the reference uses 16; the model itself accepts any T)
    channels: int = 1  # 1 = grayscale (the reference converts Weizmann to gray), 3 = RGB
    image_size: int = 64  # frames are image_size x image_size
    z_dim: int = 64  # per-frame latent z_t (and ẑ_t)
    gru_hidden: int = 100  # GRU state size
    widths: Tuple[int, ...] = (32, 64, 128, 256, 512)  # encoder conv channels; the decoder mirrors them
    stem_stride: int = 1  # first conv: 1 = 3x3 at full resolution (reference); 2 or 4 = a k x k patchify conv
    norm: str = "batch"  # "batch" (reference), "group" or "none" inside the conv stacks
    initial_state: str = "zeros"  # GRU h_0: "zeros" or "learned" (never random)
    output: str = "tanh"  # "tanh" for pixels in [-1, 1] (reference), "sigmoid" for [0, 1], "none"
    gru_impl: str = "animlib"  # "animlib" (our GRUCell, eqs. in the book) or "torch" (nn.GRU, fused)
    latent_dropout: float = 0.0  # training only: share of z_t replaced by a learned "missing" token (0 = source)

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be a non-empty tuple of positive channel counts, got {self.widths}")
        if self.stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {self.stem_stride}")
        down = self.stem_stride * 2 ** (len(self.widths) - 1)
        if self.image_size % down:
            raise ValueError(
                f"image_size={self.image_size} must be divisible by {down} (stem_stride={self.stem_stride} times one "
                f"halving per further conv of widths={self.widths}); change widths, stem_stride or image_size"
            )
        for name, val, ok in (("norm", self.norm, ("batch", "group", "none")),
                              ("initial_state", self.initial_state, ("zeros", "learned")),
                              ("output", self.output, ("tanh", "sigmoid", "none")),
                              ("gru_impl", self.gru_impl, ("animlib", "torch"))):
            if val not in ok:
                raise ValueError(f"{name} must be one of {ok}, got {val!r}")
        if not 0.0 <= self.latent_dropout < 1.0:
            raise ValueError(f"latent_dropout must be in [0, 1), got {self.latent_dropout}")
        for name in ("frames", "channels", "z_dim", "gru_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def feature_size(self) -> int:
        """Side of the encoder's last feature map (4 for 64 x 64 input with the reference widths)."""
        return self.image_size // (self.stem_stride * 2 ** (len(self.widths) - 1))


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_clips(x: torch.Tensor, cfg: GRUAEConfig, name: str = "x") -> torch.Tensor:
    """Raise a clear error unless ``x`` is a ``(B, T, C, H, W)`` batch of clips that fits ``cfg``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of clips (B, T, C, H, W), got {type(x).__name__}")
    if x.dim() != 5:
        hint = " (one clip? add a batch axis with x.unsqueeze(0))" if x.dim() == 4 else ""
        raise ValueError(f"{name} must have shape (B, T, C, H, W), got {tuple(x.shape)}{hint}")
    _, T, C, H, W = x.shape
    if C != cfg.channels or H != cfg.image_size or W != cfg.image_size:
        raise ValueError(
            f"{name} has frames of shape (C, H, W) = {(C, H, W)} but the model was built for "
            f"{(cfg.channels, cfg.image_size, cfg.image_size)}; resize the clips or change GRUAEConfig"
        )
    if T < 1:
        raise ValueError(f"{name} has no frames (T = 0)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor (got {x.dtype}); scale uint8 frames to [-1, 1] first")
    return x


# ----------------------------------------------------------------------------------------------
# Blocks: our GRU, the per-frame encoder and decoder
# ----------------------------------------------------------------------------------------------
class GRUCell(nn.Module):
    """One GRU step (Cho et al. 2014), written out; parameters laid out like ``torch.nn.GRUCell``.

    With input ``x_t`` and previous state ``h_{t-1}`` (PyTorch's gate order r, z, n in the stacked
    weights ``weight_ih`` ``(3H, I)`` and ``weight_hh`` ``(3H, H)``)::

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate      (Cho eq. 5)
        u_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate     (Cho eq. 6)
        n_t = tanh(W_in x_t + b_in + r_t ∘ (W_hn h_{t-1} + b_hn))  candidate    (Cho eq. 8)
        h_t = (1 − u_t) ∘ n_t + u_t ∘ h_{t-1}                    new state       (Cho eq. 7)

    (Cho et al. write the update gate z; we call it u so it cannot be confused with the latent z_t.
    Cho apply r *before* the matrix, ``W_hn (r ∘ h)``; PyTorch and cuDNN apply it after,
    ``r ∘ (W_hn h + b_hn)``. We follow PyTorch so that weights are interchangeable.)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(−1/√H, 1/√H), as ``torch.nn.GRUCell``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gi = F.linear(x, self.weight_ih, self.bias_ih)  # (B, 3H) input part of all three gates
        gh = F.linear(h, self.weight_hh, self.bias_hh)  # (B, 3H) recurrent part
        i_r, i_u, i_n = gi.chunk(3, dim=-1)  # each (B, H)
        h_r, h_u, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)  # reset gate r_t
        u = torch.sigmoid(i_u + h_u)  # update gate u_t
        n = torch.tanh(i_n + r * h_n)  # candidate state n_t
        return (1 - u) * n + u * h  # h_t: keep u_t of the old state, take 1 - u_t of the candidate


class GRU(nn.Module):
    """A one-layer GRU over a sequence ``(B, T, I) -> (B, T, H)`` with a deterministic initial state.

    ``impl="animlib"`` loops :class:`GRUCell` over time (the equations in the book);
    ``impl="torch"`` runs the same parameters through ``torch.nn.functional``'s fused GRU (cuDNN on
    CUDA), which gives the same numbers up to floating-point rounding.
    """

    def __init__(self, input_size: int, hidden_size: int, initial_state: str = "zeros", impl: str = "animlib"):
        super().__init__()
        self.cell = GRUCell(input_size, hidden_size)
        self.impl = impl
        self.h0 = nn.Parameter(torch.zeros(hidden_size)) if initial_state == "learned" else None
        if impl not in ("animlib", "torch"):
            raise ValueError(f"impl must be 'animlib' or 'torch', got {impl!r}")
        # A parameter-free shell of nn.GRU for impl="torch" (kept out of the module tree and state dict).
        self.__dict__["_fused"] = nn.GRU(input_size, hidden_size, batch_first=True) if impl == "torch" else None

    def initial(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """``h_0`` ``(B, H)``: zeros, or the learned vector repeated; on ``like``'s device and dtype."""
        H = self.cell.hidden_size
        if self.h0 is None:
            return like.new_zeros(batch, H)
        return self.h0.to(like.dtype).expand(batch, H)

    def forward(self, x: torch.Tensor, h: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape  # (B, T, I)
        h = self.initial(B, x) if h is None else h  # (B, H)
        if self.impl == "torch":
            # The same parameters through the fused kernel (cuDNN on CUDA): functional_call swaps them in.
            c = self.cell
            params = {"weight_ih_l0": c.weight_ih, "weight_hh_l0": c.weight_hh,
                      "bias_ih_l0": c.bias_ih, "bias_hh_l0": c.bias_hh}
            out, h_last = torch.func.functional_call(self._fused, params, (x, h.unsqueeze(0).contiguous()))
            return out, h_last[0]
        outs = []
        for t in range(T):
            h = self.cell(x[:, t], h)  # (B, H)
            outs.append(h)
        return torch.stack(outs, dim=1), h  # (B, T, H), (B, H)


class FrameVectorEncoder(nn.Module):
    """A frame ``(N, C, H, W)`` -> latent vector ``(N, z_dim)``: strided 3x3 convs, norm, ReLU, then a linear map."""

    def __init__(self, cfg: GRUAEConfig):
        super().__init__()
        layers = []
        c_in = cfg.channels
        for i, w in enumerate(cfg.widths):
            last = i == len(cfg.widths) - 1
            bias = last or cfg.norm == "none"
            if i == 0 and cfg.stem_stride > 1:  # non-overlapping k x k patches
                conv = nn.Conv2d(c_in, w, cfg.stem_stride, stride=cfg.stem_stride, bias=bias)
            else:
                conv = nn.Conv2d(c_in, w, 3, stride=1 if i == 0 else 2, padding=1, bias=bias)
            layers += [conv,
                       nn.Identity() if last else norm_layer(cfg.norm, w), nn.ReLU(inplace=True)]
            c_in = w
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(cfg.widths[-1] * cfg.feature_size**2, cfg.z_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x).flatten(1))  # (N, z)


class FrameDecoder(nn.Module):
    """A latent ``(N, in_dim)`` -> frame ``(N, C, H, W)``: a linear map, then the encoder's convs mirrored.

    Each stride-2 conv of the encoder becomes a stride-2 transposed conv; a stride-1 stem becomes a
    final 3x3 conv to ``C`` channels; the last layer has no norm or ReLU, only the output activation.
    """

    def __init__(self, cfg: GRUAEConfig, in_dim: Optional[int] = None):
        super().__init__()
        self.config = cfg
        ws = cfg.widths
        self.fc = nn.Linear(in_dim or cfg.z_dim, ws[-1] * cfg.feature_size**2)
        layers = []
        for i in range(len(ws) - 1, -1, -1):  # mirror encoder layer i: (ws[i-1] or C) <- ws[i]
            c_out = ws[i - 1] if i > 0 else cfg.channels
            last = i == 0
            if i == 0 and cfg.stem_stride == 1:
                layers.append(nn.Conv2d(ws[0], c_out, 3, padding=1))
            elif i == 0:  # undo the patchify stem
                layers.append(nn.ConvTranspose2d(ws[0], c_out, cfg.stem_stride, stride=cfg.stem_stride))
            else:
                # Kernel 4 with stride 2 overlaps every output pixel equally: no checkerboard pattern,
                # which the reference's kernel 3 (output_padding=1) leaves in early reconstructions.
                layers.append(nn.ConvTranspose2d(ws[i], c_out, 4, stride=2, padding=1,
                                                 bias=last or cfg.norm == "none"))
            if not last:
                layers += [norm_layer(cfg.norm, c_out), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.out = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "none": lambda v: v}[cfg.output]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s, w = self.config.feature_size, self.config.widths[-1]
        h = self.fc(z).view(-1, w, s, s)  # (N, w, s, s)
        return self.out(self.convs(h))  # (N, C, H, W)


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
class _VideoAE(nn.Module):
    """Shared plumbing: per-frame encoding of a clip, per-frame decoding of a latent sequence."""

    def __init__(self, cfg: Optional[GRUAEConfig] = None):
        super().__init__()
        self.config = cfg or GRUAEConfig()
        self.encoder = FrameVectorEncoder(self.config)
        self.decoder = FrameDecoder(self.config)

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``z_t`` for every frame: ``(B, T, C, H, W) -> (B, T, z)``."""
        check_clips(x, self.config)
        B, T = x.shape[:2]
        return self.encoder(x.flatten(0, 1)).view(B, T, -1)  # (B, T, z)

    def decode_frames(self, zhat: torch.Tensor) -> torch.Tensor:
        """Frames from ``ẑ_t``: ``(B, T, z) -> (B, T, C, H, W)``."""
        B, T = zhat.shape[:2]
        return self.decoder(zhat.flatten(0, 1)).view(B, T, self.config.channels, self.config.image_size,
                                                     self.config.image_size)

    def latents(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct clips ``(B, T, C, H, W)`` -> ``(B, T, C, H, W)``."""
        return self.decode_frames(self.latents(x))

    @property
    def bottleneck(self) -> int:
        """Numbers per clip that the encoder side hands to the decoder side, for ``cfg.frames`` frames."""
        return self.config.frames * self.config.z_dim


class GRUAutoencoder(_VideoAE):
    """The source's model: ``z_t = Enc(x_t)``, ``h_t = GRU(z_t, h_{t-1})``, ``ẑ_t = W h_t``, ``x̂_t = Dec(ẑ_t)``.

    The latents stay a sequence, one per frame; the GRU lets ``ẑ_t`` depend on ``z_1..z_t``.
    Trained with the MSE between ``x`` and ``x̂``.
    """

    def __init__(self, cfg: Optional[GRUAEConfig] = None):
        super().__init__(cfg)
        c = self.config
        self.gru = GRU(c.z_dim, c.gru_hidden, initial_state=c.initial_state, impl=c.gru_impl)
        self.readout = nn.Linear(c.gru_hidden, c.z_dim)  # ẑ_t = W h_t + b
        # The GRU's input for a frame it may not see (latent dropout in training, prediction at test).
        self.missing = nn.Parameter(torch.zeros(c.z_dim))

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """``ẑ_1..ẑ_T`` ``(B, T, z)``."""
        z = self.encode_frames(x)  # (B, T, z)
        p = self.config.latent_dropout
        if self.training and p > 0:
            drop = torch.rand(z.shape[:2], device=z.device) < p  # (B, T) frames the GRU must fill in
            z = torch.where(drop[..., None], self.missing.to(z.dtype), z)
        h, _ = self.gru(z)  # (B, T, hidden)
        return self.readout(h)  # (B, T, z)

    def predict_latents(self, x: torch.Tensor) -> torch.Tensor:
        """One-step-ahead ``ẑ_t`` from frames ``1..t-1`` only: ``(B, T, z)`` (frame 1 from ``h_0``).

        The GRU runs over the true latents; at every step its previous state is also fed the
        "missing" token instead of ``z_t``, i.e. the model fills in a frame it was not shown. This is
        what latent dropout trains; without it the prediction is untrained.
        """
        z = self.encode_frames(x)  # (B, T, z)
        B, T, _ = z.shape
        h, _ = self.gru(z)  # (B, T, hidden): h_1..h_T
        h_prev = torch.cat([self.gru.initial(B, h).unsqueeze(1), h[:, :-1]], dim=1)  # (B, T, hidden)
        miss = self.missing.to(z.dtype).expand(B * T, -1)
        h_pred = self.gru.cell(miss, h_prev.reshape(B * T, -1))  # (B·T, hidden), all steps at once
        return self.readout(h_pred).view(B, T, -1)  # (B, T, z)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Frames predicted from their past: ``(B, T, C, H, W)``."""
        return self.decode_frames(self.predict_latents(x))


class PerFrameAutoencoder(_VideoAE):
    """Comparator without recurrence: ``x̂_t = Dec(Enc(x_t))``; same encoder, decoder and latent size."""

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_frames(x)  # (B, T, z): ẑ_t = z_t


class ClipLatentAutoencoder(_VideoAE):
    """Comparator: one latent vector per clip (the design the source argues against).

    A sequence autoencoder in the manner of Srivastava et al. (2015): an encoder GRU reads
    ``z_1..z_T`` and its last state, of size ``T·z`` (the same number of values per clip as the GRU
    autoencoder's latent sequence), is the clip's single code ``c``. A decoder GRU started from ``c``
    and fed ``c`` at every step unrolls ``T`` states, read out as ``ẑ_t`` and decoded per frame.
    """

    def __init__(self, cfg: Optional[GRUAEConfig] = None):
        super().__init__(cfg)
        c = self.config
        code = c.frames * c.z_dim
        self.clip_encoder = GRU(c.z_dim, code, initial_state=c.initial_state, impl=c.gru_impl)
        self.clip_decoder = GRU(code, code, impl=c.gru_impl)
        self.readout = nn.Linear(code, c.z_dim)

    def encode_clip(self, x: torch.Tensor) -> torch.Tensor:
        """The one code per clip ``c`` ``(B, T·z)``."""
        _, c = self.clip_encoder(self.encode_frames(x))
        return c

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        c = self.encode_clip(x)  # (B, T·z)
        h, _ = self.clip_decoder(c.unsqueeze(1).expand(-1, T, -1), c)  # (B, T, T·z)
        return self.readout(h)  # (B, T, z)


_MODELS = {"gru": GRUAutoencoder, "per_frame": PerFrameAutoencoder, "clip_latent": ClipLatentAutoencoder}


def build_autoencoder(kind: str, cfg: Optional[GRUAEConfig] = None, **overrides) -> _VideoAE:
    """``"gru"`` (the source's model), ``"per_frame"`` or ``"clip_latent"``, from one config."""
    if kind not in _MODELS:
        raise ValueError(f"kind must be one of {sorted(_MODELS)}, got {kind!r}")
    cfg = replace(cfg or GRUAEConfig(), **overrides)
    return _MODELS[kind](cfg)


@dataclass
class VideoAESettings(ProfileSettings):
    """Everything chapter 7 sizes by profile: the model config, the training and data knobs, the judge.

    ``quick`` (CPU, minutes): 32 x 32 clips of 8 frames, a light encoder (patchify stem, widths 32/64/64),
    the source's z = 64 and GRU hidden 100, latent dropout 0.25; a shared frame codec pre-trained for
    1000 steps on single frames (Adam 2e-3), then 240 steps per model with the codec at 1e-3 and the
    fresh GRU parts at 5e-3; a foreground-weighted loss; an action classifier of 400 steps.
    ``full`` (GPU): the source's reference settings: 64 x 64, T = 16, widths 32..512, Adam 1e-4 with
    weight decay 1e-5, batch 16, 10,000 iterations (plus latent dropout 0.5 and the foreground weight).
    """

    model: GRUAEConfig  # the GRU autoencoder (its frames and image size size the data too)
    batch: int  # clips per step
    lr: float  # Adam learning rate of the three models' own parts (GRU, read-out); the codec's is codec_lr
    codec_lr: float  # Adam learning rate of the copied frame encoder and decoder while the three models train
    weight_decay: float  # Adam weight decay
    amp: str  # precision: "auto" picks bf16 only where the device computes it natively
    foreground_weight: float  # loss weight 1 + w·|x − clip median| (0: the source's plain MSE)
    pretrain_steps: int  # steps of the shared frame codec
    pretrain_batch: int  # clips per codec step
    pretrain_frames: int  # frames per clip in a codec step (1: single frames, the codec sees no time)
    pretrain_lr: float  # Adam learning rate of the codec pre-training
    steps: int  # steps per model
    n_train: int  # training clips
    train_frames: int  # frames per training clip (windows of model.frames are drawn from them)
    n_val: int  # validation clips
    n_test: int  # normal test clips
    n_anomaly: int  # anomalous test clips per kind
    snapshots: int  # reconstructions recorded during training
    classifier_steps: int  # steps of the action classifier (trained on input clips only)
    classifier_batch: int  # clips per classifier step
    classifier_width: int  # channels of the classifier's first layer
    classifier_lr: float  # peak AdamW learning rate of the classifier (one-cycle schedule)

    @classmethod
    def quick(cls) -> VideoAESettings:
        model = GRUAEConfig(frames=8, image_size=32, widths=(32, 64, 64), stem_stride=2, z_dim=64, gru_hidden=100,
                            latent_dropout=0.25)
        return cls(model=model, batch=16, lr=5e-3, codec_lr=1e-3, weight_decay=1e-5, amp="auto",
                   foreground_weight=10.0, pretrain_steps=1000, pretrain_batch=32, pretrain_frames=1, pretrain_lr=2e-3,
                   steps=240, n_train=256, train_frames=16, n_val=64, n_test=128, n_anomaly=64, snapshots=4,
                   classifier_steps=400, classifier_batch=32, classifier_width=16, classifier_lr=3e-3)

    @classmethod
    def full(cls) -> VideoAESettings:
        model = GRUAEConfig(frames=16, image_size=64, latent_dropout=0.5)  # the reference network
        return cls(model=model, batch=16, lr=1e-4, codec_lr=1e-4, weight_decay=1e-5, amp="auto",
                   foreground_weight=10.0, pretrain_steps=2000, pretrain_batch=16, pretrain_frames=16, pretrain_lr=1e-4,
                   steps=10_000, n_train=1024, train_frames=24, n_val=256, n_test=512, n_anomaly=256, snapshots=10,
                   classifier_steps=3000, classifier_batch=32, classifier_width=32, classifier_lr=3e-3)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def clip_batches(
    clips: torch.Tensor,
    batch_size: int = 16,
    frames: Optional[int] = None,
    flip: bool = True,
    seed: int = 0,
    labels: Optional[torch.Tensor] = None,
) -> Callable[[int], Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]]:
    """A ``data(step) -> (B, T, C, H, W)`` sampler over a tensor of clips ``(N, T_all, C, H, W)``.

    Each step draws ``batch_size`` random clips, a random window of ``frames`` consecutive frames
    (the reference code's ``trim``) and, with ``flip``, a random horizontal mirror. The draw depends
    only on ``(seed, step)`` (:func:`animlib.runtime.step_generator`), so a resumed run sees exactly
    the batches it would have seen. With ``labels`` ``(N,)`` (one per clip) it returns
    ``(clips (B, T, C, H, W), labels (B,))`` pairs instead: the same clips, with their labels
    (:func:`animlib.action_classifier.labelled_clip_batches` checks them first).
    """
    if clips.dim() != 5:
        raise ValueError(f"clips must be (N, T, C, H, W), got {tuple(clips.shape)}")
    N, T_all = clips.shape[:2]
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (clips drawn per step), got {batch_size!r}; "
                         "e.g. batch_size=16")
    if N == 0:
        raise ValueError("clips holds no clips (N = 0): give at least one clip (N, T, C, H, W)")
    if labels is not None and len(labels) != N:
        raise ValueError(f"got {N} clips but {len(labels)} labels")
    frames = frames or T_all
    if not 1 <= frames <= T_all:
        raise ValueError(f"frames={frames} must be between 1 and the clips' length {T_all}")

    def data(step: int) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        g = step_generator(seed, step)
        idx = torch.randint(0, N, (batch_size,), generator=g)
        start = torch.randint(0, T_all - frames + 1, (batch_size,), generator=g)
        win = torch.arange(frames)
        batch = clips[idx[:, None], start[:, None] + win[None, :]]  # (B, T, C, H, W)
        if flip:
            m = (torch.rand(batch_size, generator=g) < 0.5).to(batch.device)  # drawn on the host
            batch = torch.where(m[:, None, None, None, None], batch.flip(-1), batch)
        if labels is None:
            return batch
        return batch, labels[idx.to(labels.device)]

    return data


def foreground_weights(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights ``1 + weight · |x_t − median_t x|``: ``(B, T, C, H, W)``, no gradient.

    The per-pixel median over the clip's frames is its static background (with a static camera);
    pixels that differ from it (the figure, above all its moving limbs) weigh more. ``weight = 0``
    gives ones, i.e. the plain MSE.
    """
    if weight == 0:
        return torch.ones_like(x)
    with torch.no_grad():
        background = x.float().median(dim=1, keepdim=True).values  # (B, 1, C, H, W)
        return (1.0 + float(weight) * (x.float() - background).abs()).to(x.dtype)


def reconstruction_loss(model: nn.Module, x: torch.Tensor, foreground_weight: float = 0.0) -> torch.Tensor:
    """The source's loss, the mean squared error between the clip and its reconstruction.

    With ``foreground_weight > 0`` each pixel's squared error is weighted by
    :func:`foreground_weights` (normalised to mean 1 per batch), so that thin limbs, a few pixels of
    the frame, are not traded for a slightly better background.
    """
    if foreground_weight < 0:
        raise ValueError(f"foreground_weight must be >= 0, got {foreground_weight}")
    if foreground_weight == 0:
        return F.mse_loss(model(x), x)
    w = foreground_weights(x, foreground_weight)
    return ((model(x) - x).pow(2) * w).sum() / w.sum()


@dataclass
class ReconstructionStep:
    """Engine step: one update of ``trainer.models[name]`` on the reconstruction MSE.

    Batches are clips ``(B, T, C, H, W)`` or ``(clips, labels)`` pairs (labels are ignored).
    """

    name: str = "model"  # which of the trainer's models/optimisers to use
    foreground_weight: float = 0.0  # 0: the source's MSE; > 0: see reconstruction_loss

    def __call__(self, trainer: Trainer, batch) -> Dict[str, torch.Tensor]:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        with trainer.autocast():
            loss = reconstruction_loss(trainer.models[self.name], batch, self.foreground_weight)
        trainer.optimize(loss.float(), self.name)
        return {"loss": loss.detach()}


def train_autoencoder(
    model: nn.Module,
    data,
    steps: int,
    lr: float = 1e-4,
    weight_decay: float = 1e-5,
    device: Union[str, torch.device, None] = "auto",
    eval_fn=None,
    eval_every: int = 0,
    schedule: str = "constant",
    foreground_weight: float = 0.0,
    codec_lr: Optional[float] = None,
    **trainer_kwargs,
):
    """Train with :class:`animlib.engine.Trainer` and Adam (the reference: lr 1e-4, weight decay 1e-5).

    ``data`` is a ``data(step)`` callable (e.g. :func:`clip_batches`) or an iterable of clip batches
    (a ``DataLoader``; ``(clips, labels)`` pairs are accepted, labels are ignored). ``foreground_weight``
    weights the loss as :func:`reconstruction_loss` describes (0: the source's MSE). ``codec_lr``, if
    given, is the learning rate of the frame ``encoder`` and ``decoder`` while everything else (the
    GRU, its read-out) learns at ``lr``: a lower one keeps a pre-trained codec (:func:`copy_frame_codec`)
    from being thrown off by the first steps of a freshly initialised GRU. Returns the trainer
    (``.history`` holds the loss per step).
    """
    if codec_lr is None:
        groups = [{"params": list(model.parameters()), "lr": lr}]
    else:
        if not all(isinstance(getattr(model, part, None), nn.Module) for part in ("encoder", "decoder")):
            raise ValueError(f"codec_lr needs a model with .encoder and .decoder modules; {type(model).__name__} "
                             "has not both (leave codec_lr=None to train every parameter at lr)")
        codec = [p for part in ("encoder", "decoder") for p in getattr(model, part).parameters()]
        ids = {id(p) for p in codec}
        groups = [{"params": codec, "lr": codec_lr},
                  {"params": [p for p in model.parameters() if id(p) not in ids], "lr": lr}]
        groups = [g for g in groups if g["params"]]
    opt = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if schedule == "constant":
        schedulers = None
    elif schedule == "cosine":  # 10 % linear warm-up, then cosine decay to zero (short CPU runs)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=max(1, steps),
                                                    pct_start=0.1, anneal_strategy="cos", cycle_momentum=False)
        schedulers = {"model": sched}
    else:
        raise ValueError(f"schedule must be 'constant' (the reference) or 'cosine', got {schedule!r}")

    trainer = Trainer({"model": model}, {"model": opt}, ReconstructionStep(foreground_weight=foreground_weight),
                      device=device, schedulers=schedulers,
                      **trainer_kwargs)
    trainer.fit(data, steps, eval_fn=eval_fn, eval_every=eval_every)
    return trainer


# ----------------------------------------------------------------------------------------------
# Reconstruction errors and anomaly scores
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def reconstruct_clips(model: nn.Module, clips: torch.Tensor, batch_size: int = 64, mode: str = "reconstruct",
                device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """``model(clips)`` (or ``model.predict(clips)`` with ``mode="predict"``) in eval mode, in batches.

    Runs on the model's device; returns a CPU tensor.
    """
    if mode not in ("reconstruct", "predict"):
        raise ValueError(f"mode must be 'reconstruct' or 'predict', got {mode!r}")
    if mode == "predict" and not hasattr(model, "predict"):
        raise ValueError(f"{type(model).__name__} cannot predict frames from their past; use mode='reconstruct'")
    dev = next(model.parameters()).device if device is None else torch.device(device)
    if len(clips) == 0:
        return clips.new_empty(clips.shape)
    fn = model if mode == "reconstruct" else model.predict
    return batched_inference(fn, clips, batch_size, model=model, device=dev)


@torch.no_grad()
def frame_errors(model: nn.Module, clips: torch.Tensor, batch_size: int = 64, mode: str = "reconstruct") -> torch.Tensor:
    """Per-frame error ``e(t) = mean_pixels (x_t − x̂_t)²``: ``(N, T)``.

    ``mode="reconstruct"``: ``x̂`` is the reconstruction (the source's score); ``"predict"``: ``x̂_t``
    is predicted from frames before ``t`` (:meth:`GRUAutoencoder.predict`).
    """
    out = reconstruct_clips(model, clips, batch_size, mode=mode)
    return (out - clips.float().cpu()).pow(2).flatten(2).mean(-1)  # (N, T)


@torch.no_grad()
def frame_surprise(model: nn.Module, clips: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """How much worse frame ``t`` is rendered when the model has not seen it: ``(N, T)``.

    ``s(t) = e_pred(t) − e_rec(t)``, the error of the one-step prediction from frames ``< t`` minus the
    reconstruction error of the same frame (so a frame that is hard to draw anyway, e.g. a large
    figure, does not count as surprising). Frame 0 has no past and gets ``s = 0``. Needs a model with
    ``predict`` (the :class:`GRUAutoencoder`), trained with ``latent_dropout > 0``.
    """
    e_rec = frame_errors(model, clips, batch_size, mode="reconstruct")
    e_pred = frame_errors(model, clips, batch_size, mode="predict")
    s = e_pred - e_rec
    s[:, 0] = 0.0
    return s  # (N, T)


def copy_frame_codec(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Copy the per-frame encoder and decoder weights of ``src`` into ``dst`` (same config); return ``dst``.

    Lets the three autoencoders start from one shared frame codec, so that they differ only in what
    happens between encoder and decoder.
    """
    for part in ("encoder", "decoder"):
        getattr(dst, part).load_state_dict(getattr(src, part).state_dict())
    return dst


def clip_scores(frame_err: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """One anomaly score per clip from its per-frame errors ``(N, T)``: ``"mean"`` or ``"max"`` over time."""
    if frame_err.dim() != 2:
        raise ValueError(f"frame_err must be (N, T), got {tuple(frame_err.shape)}")
    if reduce == "mean":
        return frame_err.mean(1)
    if reduce == "max":
        return frame_err.amax(1)
    raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")


def _labels_scores(normal_scores, anomalous_scores) -> Tuple[np.ndarray, np.ndarray]:
    n = np.asarray(torch.as_tensor(normal_scores).detach().cpu().reshape(-1), dtype=np.float64)
    a = np.asarray(torch.as_tensor(anomalous_scores).detach().cpu().reshape(-1), dtype=np.float64)
    if n.size == 0 or a.size == 0:
        raise ValueError(f"need at least one normal and one anomalous score, got {n.size} and {a.size}")
    return np.r_[np.zeros(n.size), np.ones(a.size)], np.r_[n, a]


def anomaly_auc(normal_scores, anomalous_scores) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``); anomalies are the positives.

    It is the probability that a random anomalous clip scores higher than a random normal clip
    (ties count one half): 1.0 separates them perfectly, 0.5 is chance.
    """
    y, s = _labels_scores(normal_scores, anomalous_scores)
    return float(roc_auc_score(y, s))


def roc(normal_scores, anomalous_scores) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and thresholds (``sklearn.metrics.roc_curve``)."""
    y, s = _labels_scores(normal_scores, anomalous_scores)
    fpr, tpr, thr = roc_curve(y, s)
    return fpr, tpr, thr


def regularity_score(frame_err: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Hasan et al. (2016), eq. 3: ``s(t) = 1 − (e(t) − min_t e) / max_t e`` per clip; ``(N, T)`` or ``(T,)``.

    High (near 1) where the clip is as regular as its most regular frame, lower where it is not.
    """
    e = frame_err.float()
    lo = e.amin(-1, keepdim=True)
    hi = e.amax(-1, keepdim=True)
    return 1.0 - (e - lo) / hi.clamp_min(eps)

