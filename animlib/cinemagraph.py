"""Cinemagraphs from a single image: a recurrent generator, its discriminator, and a DRQN.

Source S0 (E. Klembara, "Generovanie cinemagrafov pomocou hlbokých rekurentných Q-sietí", TU Košice)
generates ``n`` frames ``Y = {y_1..y_n}`` from one still ``x`` with a convolutional network holding
an LSTM layer, recursively: the previous output is the next input, and a latent ``z`` carries the
state. Two variants:

1. **Recurrent model** (chapter 1). FrameEncoder → peephole :class:`~animlib.convlstm.ConvLSTMCell` →
   decoder, trained with the source's two-part loss

   .. math::  loss = |Y - G(x)|^2 + λ_{adv} · (-\\log D(G(x)))                           (10)

   ``D`` a CNN real/fake classifier (:class:`FrameDiscriminator`); the adversarial part and the
   alternating updates come from :mod:`animlib.gan` (``loss="bce"`` gives exactly ``-log D(G(x))``).

2. **Deep recurrent Q-network** (chapter 2; Hausknecht & Stone 2015). The "linear" motion space is
   quantised into ``N`` actions; a Q-head reads the ConvLSTM state and outputs ``Q(s, ·)`` (an
   ``N``-vector) at every step; the one-hot of ``argmax Q`` is concatenated with the hidden latent
   and decoded into the next frame. The action value is the source's eq. (7) (see :mod:`animlib.rl`).

Our decoder *moves* the previous frame instead of painting pixels (CDNA, Finn et al. 2016): it
predicts a ``K×K`` motion kernel (from the latent, or from the one-hot action in the DRQN) and a
mask ``m`` saying where the move applies,

.. math::  \\hat y_{t+1} = m ∘ (k_t ⋆ \\hat y_t) + (1 - m) ∘ \\hat y_t                    (11)

A plain convolutional decoder trained with MSE learns to copy the input (or to blur it), which lowers
the error without moving anything; moving pixels keeps the texture sharp and the background exact.
This reading of the source's unspecified "decoder" is ours, and the chapters say so.

The DRQN reward is ``r_t = -reward_scale · MSE(ŷ_{t+1}, y_{t+1})`` (plus, optionally,
``realism_weight · log D(ŷ_{t+1})``); training is on-policy: every iteration runs fresh ε-greedy
rollouts and regresses ``Q(s_t, a_t)`` on Double-DQN targets from a slowly updated target copy
(:class:`DRQNStep`). Recurrent states make single replayed transitions stale, so they are never replayed; with
``DRQNSchedule.replay_capacity`` whole episodes are, each unrolled from its first frame
(Hausknecht & Stone's bootstrapped sequential updates, :class:`~animlib.rl.EpisodeReplay`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from .convlstm import ConvLSTMCell
from .data.scenes import SceneConfig
from .engine import Trainer
from .gan import alternating_step, check_image_channels, d_loss_bce
from .rehearsal import cap_phase
from .rl import EpisodeReplay, bellman_targets, epsilon_greedy, sync_target
from .runtime import ProfileSettings

__all__ = [
    "CinemagraphConfig",
    "scale_grad",
    "apply_motion_kernel",
    "FrameEncoder",
    "MotionDecoder",
    "CinemagraphGenerator",
    "FrameDiscriminator",
    "QHead",
    "CinemagraphDRQN",
    "GeneratorStep",
    "DRQNSchedule",
    "DRQNStep",
    "drqn_lr_schedule",
    "cinemagraph_metrics",
    "evaluate_generator",
    "region_motion",
    "evaluate_policy",
    "best_matching_accuracy",
    "action_metrics",
    "CinemagraphSettings",
]


@dataclass
class CinemagraphConfig:
    """Sizes of the generator, discriminator and Q-head (defaults: the quick 32×32 setting)."""

    channels: int = 3  # image channels
    widths: Tuple[int, ...] = (16, 32)  # encoder widths; each level halves the size (32 px -> 8×8 latent)
    hidden: int = 32  # ConvLSTM hidden channels: the latent z that carries the state
    lstm_kernel: int = 3  # ConvLSTM gate kernel
    peephole: bool = True  # the source's peephole terms W_c· ∘ c
    peephole_size: Optional[Tuple[int, int]] = None  # None: per-channel peepholes; (h, w): full latent shape
    motion_kernel: int = 5  # K of the K×K motion kernel; moves up to K // 2 pixels per frame
    kernel_hidden: int = 64  # width of the MLP that predicts the kernel
    num_actions: int = 0  # 0: recurrent generator (kernel from the latent); N > 0: DRQN with N actions
    q_hidden: int = 64  # width of the Q-head
    dueling: bool = True  # Q = V + A - mean(A) (Wang et al. 2016)
    max_steps: int = 32  # longest rollout (the Q-head sees the step index)
    disc_widths: Tuple[int, ...] = (32, 64, 128)  # discriminator widths (stride-2 convs)

    def validate(self) -> CinemagraphConfig:
        if self.motion_kernel % 2 == 0 or self.motion_kernel < 3:
            raise ValueError(f"motion_kernel must be odd and >= 3, got {self.motion_kernel}")
        if not self.widths:
            raise ValueError("widths must list at least one encoder level")
        if self.num_actions < 0:
            raise ValueError(f"num_actions must be >= 0, got {self.num_actions}")
        return self


# ----------------------------------------------------------------------------- helpers


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``scale`` in the backward pass."""
    if scale == 1.0:
        return x
    return x * scale + x.detach() * (1.0 - scale)


def apply_motion_kernel(frame: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its own kernel: ``frame`` ``(B, C, H, W)``, ``kernel`` ``(B, K, K)``.

    The kernel is a probability map over source offsets: output pixel ``p`` takes
    ``Σ_d k[d] · frame[p + d]`` (cross-correlation, as ``F.conv2d``, offsets ``d`` from ``-K//2`` to
    ``K//2``). A one-hot kernel at row ``K//2``, column ``K//2 - 1`` (offset ``dx = -1``) therefore
    moves the image one pixel to the right. Borders replicate the edge pixels.
    """
    B, C, H, W = frame.shape
    K = kernel.shape[-1]
    if kernel.shape != (B, K, K):
        raise ValueError(f"kernel must be (B, K, K) with B={B}, got {tuple(kernel.shape)}")
    x = F.pad(frame, (K // 2,) * 4, mode="replicate").reshape(1, B * C, H + K - 1, W + K - 1)
    w = kernel.to(frame.dtype).repeat_interleave(C, dim=0)[:, None]  # (B*C, 1, K, K)
    return F.conv2d(x, w, groups=B * C).reshape(B, C, H, W)  # (B, C, H, W)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.LeakyReLU(0.2))


# ----------------------------------------------------------------------------- blocks


class FrameEncoder(nn.Module):
    """Stride-2 convolutions: ``(B, C, H, W)`` -> latent ``(B, widths[-1], H/2^L, W/2^L)`` + skips."""

    def __init__(self, channels: int, widths: Sequence[int]):
        super().__init__()
        ins = [channels] + list(widths[:-1])
        self.levels = nn.ModuleList(
            nn.Sequential(_conv(i, o, stride=2), _conv(o, o)) for i, o in zip(ins, widths)
        )

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Encode frames (B, C, H, W); returns the latent map and the input of every level."""
        skips = []
        for level in self.levels:
            skips.append(x)  # the input of each level: (B, C_l, H_l, W_l)
            x = level(x)
        return x, skips


class MotionDecoder(nn.Module):
    """Decodes ``cat([h, one-hot action])`` into a motion kernel and a mask, then applies eq. (11).

    The kernel comes from the one-hot action (DRQN: an action *is* a motion) or, without actions,
    from mean- and max-pooled ``h``. The mask is upsampled U-Net style, with the encoder's skips,
    to full resolution so that the moving region's edges are sharp.
    """

    def __init__(self, cfg: CinemagraphConfig):
        super().__init__()
        self.config = cfg
        K, A = cfg.motion_kernel, cfg.num_actions
        kin = A if A > 0 else 2 * cfg.hidden
        self.kernel_mlp = nn.Sequential(nn.Linear(kin, cfg.kernel_hidden), nn.ReLU(),
                                        nn.Linear(cfg.kernel_hidden, K * K))
        with torch.no_grad():  # start near the identity kernel: the first frames copy the input
            self.kernel_mlp[-1].weight.mul_(0.1)
            self.kernel_mlp[-1].bias.zero_()
            self.kernel_mlp[-1].bias[(K * K) // 2] = 2.0
        widths = list(cfg.widths)
        skip_ch = [cfg.channels] + widths[:-1]  # channels of each skip, top (full res) first
        self.inp = _conv(cfg.hidden + A, widths[-1])
        ups = []
        cur = widths[-1]
        for level in reversed(range(len(widths))):
            out = max(8, skip_ch[level] if level > 0 else widths[0] // 2)
            ups.append(_conv(cur + skip_ch[level], out))
            cur = out
        self.ups = nn.ModuleList(ups)
        self.mask_out = nn.Conv2d(cur, 1, 1)

    def kernel(self, h: torch.Tensor, onehot: Optional[torch.Tensor]) -> torch.Tensor:
        """The motion kernel ``(B, K, K)``, a softmax over the K² offsets."""
        if self.config.num_actions > 0:
            if onehot is None:
                raise ValueError("this decoder is action-conditioned (num_actions > 0): pass the one-hot action")
            feat = onehot.float()
        else:
            feat = torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1).float()  # (B, 2*hidden)
        K = self.config.motion_kernel
        return torch.softmax(self.kernel_mlp(feat), dim=1).reshape(-1, K, K)

    def forward(self, h: torch.Tensor, prev: torch.Tensor, skips: List[torch.Tensor],
                onehot: Optional[torch.Tensor] = None, region: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Eq. (11): returns the next ``frame``, its ``mask`` (B, 1, H, W) and ``kernel`` (B, K, K).

        ``region`` ``(B or 1, 1, H, W)`` in [0, 1], if given, multiplies the predicted mask: the user's
        region says where motion is allowed, the network still says how (and where inside it)."""
        z = h
        if self.config.num_actions > 0:
            if onehot is None:
                raise ValueError("this decoder is action-conditioned (num_actions > 0): pass the one-hot action")
            a = onehot.to(h.dtype)[:, :, None, None].expand(-1, -1, *h.shape[-2:])  # (B, N, h, w)
            z = torch.cat([h, a], dim=1)  # the source's [z, one-hot] concatenation
        z = self.inp(z)
        for up, skip in zip(self.ups, reversed(skips)):
            z = F.interpolate(z, size=skip.shape[-2:], mode="nearest")
            z = up(torch.cat([z, skip.to(z.dtype)], dim=1))
        mask = torch.sigmoid(self.mask_out(z).float())  # (B, 1, H, W)
        if region is not None:
            mask = mask * region.to(mask)
        kernel = self.kernel(h, onehot)  # (B, K, K)
        moved = apply_motion_kernel(prev.float(), kernel)
        frame = mask * moved + (1 - mask) * prev.float()  # eq. (11)
        return {"frame": frame, "mask": mask, "kernel": kernel}


# ----------------------------------------------------------------------------- models


class CinemagraphGenerator(nn.Module):
    """FrameEncoder → ConvLSTM → motion decoder, generating frames recursively from one still.

    ``forward(x, n_frames, actions=None) -> frames`` ``(B, n, C, H, W)``: step ``t`` encodes the
    previous frame (``x`` at ``t = 0``), updates the ConvLSTM state (the latent ``z``) and decodes
    the next frame. With ``num_actions > 0`` pass ``actions`` ``(B, n)``, a callable
    ``actions(t, h) -> (B,)``, or use :class:`CinemagraphDRQN`. ``return_info=True`` also returns
    the masks, kernels, hidden states and actions.
    """

    def __init__(self, config: Optional[CinemagraphConfig] = None, **overrides):
        super().__init__()
        try:  # a copy: the caller's config is never changed
            cfg = replace(config or CinemagraphConfig(), **overrides)
        except TypeError as e:
            raise TypeError(f"unknown CinemagraphConfig field in {sorted(overrides)}: {e}") from None
        self.config = cfg.validate()
        self.encoder = FrameEncoder(cfg.channels, cfg.widths)
        self.lstm = ConvLSTMCell(cfg.widths[-1], cfg.hidden, cfg.lstm_kernel, cfg.peephole, cfg.peephole_size)
        self.decoder = MotionDecoder(cfg)

    def step(self, prev: torch.Tensor, state=None):
        """Encode ``prev`` and advance the ConvLSTM: returns ``(h, (h, c), skips)``."""
        if prev.dim() != 4 or prev.shape[1] != self.config.channels:
            raise ValueError(f"expected frames (B, {self.config.channels}, H, W), got {tuple(prev.shape)}")
        div = 2 ** len(self.config.widths)
        if prev.shape[-1] % div or prev.shape[-2] % div:
            raise ValueError(f"image size {tuple(prev.shape[-2:])} must be divisible by {div} "
                             f"(2 ** number of encoder levels)")
        lat, skips = self.encoder(prev)  # (B, C_lat, h, w)
        h, c = self.lstm(lat, state)  # (B, hidden, h, w)
        return h, (h, c), skips

    def forward(self, x: torch.Tensor, n_frames: int, actions=None, state=None, return_info: bool = False,
                decoder_grad: bool = True, region: Optional[torch.Tensor] = None):
        """See the class docstring. ``decoder_grad=False`` runs the decoder without a graph and feeds
        back detached frames: a rollout that only trains the Q-head and the trunk (encoder, ConvLSTM)
        then costs a fraction of the backward pass. ``region`` ``(B or 1, 1, H, W)`` in [0, 1]
        restricts motion to a user's region (a cinemagraph tool's brush): it multiplies every
        predicted mask, so outside it eq. (11) copies the still exactly."""
        if n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        if region is not None:
            if region.dim() != 4 or region.shape[1] != 1 or region.shape[-2:] != x.shape[-2:] \
                    or region.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"region must be (1 or {x.shape[0]}, 1, {x.shape[-2]}, {x.shape[-1]}) like the "
                                 f"images, got {tuple(region.shape)}")
            if bool((region < 0).any()) or bool((region > 1).any()):
                raise ValueError("region must be a mask with values in [0, 1] (1 = may move)")
        N = self.config.num_actions
        prev, frames, info = x, [], {"mask": [], "kernel": [], "h": [], "action": []}
        for t in range(n_frames):
            h, state, skips = self.step(prev, state)
            onehot = None
            if N > 0:
                if actions is None:
                    raise ValueError("an action-conditioned generator needs actions (B, n) or a callable")
                a = actions(t, h) if callable(actions) else actions[:, t]
                if a.shape != (x.shape[0],) or bool((a < 0).any()) or bool((a >= N).any()):
                    raise ValueError(f"actions at step {t} must be {x.shape[0]} integers in [0, {N}) (one per clip), "
                                     f"got shape {tuple(a.shape)} with values {a.tolist()[:8]}")
                onehot = F.one_hot(a.long(), N).to(h.dtype)
                info["action"].append(a)
            if decoder_grad:
                out = self.decoder(h, prev, skips, onehot, region)
            else:
                with torch.no_grad():
                    out = self.decoder(h.detach(), prev.detach(), [sk.detach() for sk in skips],
                                       None if onehot is None else onehot.detach(), region)
            prev = out["frame"].to(x.dtype)
            frames.append(prev)
            if return_info:
                info["mask"].append(out["mask"])
                info["kernel"].append(out["kernel"])
                info["h"].append(h)
        y = torch.stack(frames, dim=1)  # (B, n, C, H, W)
        if return_info:
            return y, {k: torch.stack(v, 1) for k, v in info.items() if v}
        return y


class FrameDiscriminator(nn.Module):
    """A CNN real/fake classifier for single frames; returns logits ``(B,)`` (``D = σ(logit)``)."""

    def __init__(self, channels: int = 3, widths: Sequence[int] = (32, 64, 128)):
        super().__init__()
        self.channels = channels
        layers, cin = [], channels
        for w in widths:
            layers += [nn.Conv2d(cin, w, 4, 2, 1), nn.LeakyReLU(0.2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Real/fake logits (B,) for frames (B, C, H, W)."""
        if x.dim() != 4:
            raise ValueError(f"FrameDiscriminator expects frames (B, C, H, W), got {tuple(x.shape)}; "
                             "flatten clips with x.flatten(0, 1)")
        check_image_channels(x, self.channels, "FrameDiscriminator", "FrameDiscriminator(channels={c})")
        return self.head(self.features(x).mean((2, 3))).squeeze(1)  # (B,)


class QHead(nn.Module):
    """``Q(s, ·)`` from the ConvLSTM state: 1×1 conv, mean+max pooling, step index, dueling."""

    def __init__(self, cfg: CinemagraphConfig):
        super().__init__()
        self.config = cfg
        self.proj = nn.Sequential(nn.Conv2d(cfg.hidden, cfg.q_hidden, 1), nn.ReLU())
        self.mlp = nn.Sequential(nn.Linear(2 * cfg.q_hidden + cfg.max_steps, cfg.q_hidden), nn.ReLU())
        self.adv = nn.Linear(cfg.q_hidden, cfg.num_actions)
        self.val = nn.Linear(cfg.q_hidden, 1) if cfg.dueling else None

    def forward(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """Q-values (B, N) from the ConvLSTM state ``h`` (B, hidden, h, w) at step ``t``."""
        if t >= self.config.max_steps:
            raise ValueError(f"step {t} >= max_steps={self.config.max_steps}; raise CinemagraphConfig.max_steps")
        z = self.proj(h.float())  # (B, q_hidden, h, w)
        step = F.one_hot(torch.full((h.shape[0],), t, device=h.device), self.config.max_steps).float()
        z = self.mlp(torch.cat([z.mean((2, 3)), z.amax((2, 3)), step], dim=1))  # (B, q_hidden)
        adv = self.adv(z)  # (B, N)
        if self.val is None:
            return adv
        return self.val(z) + adv - adv.mean(1, keepdim=True)  # dueling


class CinemagraphDRQN(nn.Module):
    """The source's deep recurrent Q-network: generator trunk + Q-head over ``N`` actions.

    At step ``t``: encode the previous frame, update the ConvLSTM (state ``s_t`` = hidden ``h_t``),
    ``Q(s_t, ·) = QHead(h_t)``, choose ``a_t`` (greedy, ε-greedy, random, constant or given),
    decode ``[h_t, one_hot(a_t)]`` into ``ŷ_{t+1}``. :meth:`rollout` returns everything a Q-learning
    update needs. ``q_grad_scale`` scales the Q-loss gradient that reaches the shared trunk.
    """

    def __init__(self, config: Optional[CinemagraphConfig] = None, q_grad_scale: float = 0.2, **overrides):
        super().__init__()
        cfg = replace(config or CinemagraphConfig(num_actions=4), **overrides)
        if cfg.num_actions < 2:
            raise ValueError("a DRQN needs num_actions >= 2 (set CinemagraphConfig(num_actions=N))")
        self.config = cfg.validate()
        self.generator = CinemagraphGenerator(cfg)
        self.q_head = QHead(cfg)
        self.q_grad_scale = q_grad_scale

    def rollout(
        self,
        x: torch.Tensor,
        n_frames: int,
        policy: Union[str, torch.Tensor] = "greedy",
        epsilon: float = 0.0,
        generator: Optional[torch.Generator] = None,
        constant: int = 0,
        decoder_grad: bool = True,
    ) -> Dict[str, torch.Tensor]:
        """Run one episode from the stills ``x``.

        ``policy``: ``"greedy"``, ``"epsilon"`` (ε-greedy with ``epsilon``), ``"random"``,
        ``"constant"`` (always action ``constant``) or a tensor of actions ``(B, n)`` (e.g. the true
        class, for teacher-forced generator training). Returns ``frames`` ``(B, n, C, H, W)``,
        ``q`` ``(B, n, N)`` (with graph), ``actions`` ``(B, n)``, ``masks`` ``(B, n, 1, H, W)``.
        """
        B, N = x.shape[0], self.config.num_actions
        qs: List[torch.Tensor] = []

        def choose(t: int, h: torch.Tensor) -> torch.Tensor:
            q = self.q_head(scale_grad(h, self.q_grad_scale), t)  # (B, N)
            qs.append(q)
            if isinstance(policy, torch.Tensor):
                return policy[:, t].to(h.device)
            if policy == "greedy":
                return q.argmax(1)
            if policy == "epsilon":
                return epsilon_greedy(q.detach(), epsilon, generator)
            if policy == "random":
                dev = generator.device if generator is not None else torch.device("cpu")
                return torch.randint(N, (B,), generator=generator, device=dev).to(h.device)
            if policy == "constant":
                return torch.full((B,), int(constant), device=h.device, dtype=torch.long)
            raise ValueError(f"unknown policy {policy!r}: use greedy, epsilon, random, constant or a tensor")

        frames, info = self.generator(x, n_frames, actions=choose, return_info=True, decoder_grad=decoder_grad)
        return {"frames": frames, "q": torch.stack(qs, 1), "actions": info["action"], "masks": info["mask"]}

    @torch.no_grad()
    def q_values(self, frames_in: torch.Tensor) -> torch.Tensor:
        """Q-values ``(B, n, N)`` of the states reached by feeding the frames ``(B, n, C, H, W)``."""
        return self.q_sequence(frames_in)

    def q_sequence(self, frames_in: torch.Tensor) -> torch.Tensor:
        """:meth:`q_values` with a graph: the recurrent state is rebuilt from the first frame on, with
        the current weights (a replayed episode; the Q-loss gradient into the trunk is scaled by
        ``q_grad_scale``)."""
        state, out = None, []
        for t in range(frames_in.shape[1]):
            h, state, _ = self.generator.step(frames_in[:, t], state)
            out.append(self.q_head(scale_grad(h, self.q_grad_scale), t))
        return torch.stack(out, 1)


# ----------------------------------------------------------------------------- training steps


def _targets(batch: Dict[str, torch.Tensor], n_frames: int) -> torch.Tensor:
    """Targets ``y_1..y_n`` of a looping clip: frames ``1..T-1`` then frame 0 again (loop closure)."""
    frames = batch["frames"]  # (B, T, C, H, W)
    T = frames.shape[1]
    idx = torch.arange(1, n_frames + 1, device=frames.device) % T
    return frames[:, idx]  # (B, n, C, H, W)


@dataclass
class GeneratorStep:
    """One update of the recurrent generator with eq. (10): MSE + ``adv_weight`` · (−log D(G(x))).

    Without a discriminator (``disc`` not in ``trainer.models``, or ``adv_weight == 0``) it is plain
    MSE. The generator produces ``n_frames`` (default ``T``: one full loop, whose last target is
    frame 0 again). The discriminator judges ``disc_frames`` randomly chosen time steps of every
    clip (default: all), real and generated alike; the alternating D/G updates are
    :func:`animlib.gan.alternating_step`'s.
    """

    adv_weight: float = 0.0  # λ_adv of eq. (10)
    n_frames: Optional[int] = None  # frames to generate (None: the clip's length T)
    disc_frames: Optional[int] = None  # time steps per clip that D judges (None: all)
    gen: str = "g"  # the trainer's generator
    disc: str = "d"  # the trainer's discriminator (if it has one)

    def __call__(self, trainer: Trainer, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        adv_weight, n_frames, disc_frames, gen, disc = self.adv_weight, self.n_frames, self.disc_frames, self.gen, self.disc
        frames = batch["frames"]  # (B, T, C, H, W)
        n = n_frames or frames.shape[1]
        target = _targets(batch, n)  # (B, n, C, H, W)
        G = trainer.models[gen]
        use_d = disc in trainer.models and adv_weight > 0
        idx = torch.arange(n, device=frames.device)
        if use_d and disc_frames is not None and disc_frames < n:  # drawn on the host's generator, as always
            idx = torch.randperm(n)[:disc_frames].sort().values.to(frames.device)
        out: Dict[str, torch.Tensor] = {}

        def generate():
            with trainer.autocast():
                fake = G(frames[:, 0], n)  # (B, n, C, H, W)
            out["mse"] = F.mse_loss(fake.float(), target)
            return fake[:, idx].flatten(0, 1), {"mse": out["mse"]}

        if use_d:
            metrics = alternating_step(trainer, target[:, idx].flatten(0, 1), generate, gen=gen, disc=disc,
                                       loss="bce", adv_weight=adv_weight)
            metrics["loss"] = metrics["mse"]
            return metrics
        generate()
        trainer.optimize(out["mse"], gen)
        return {"loss": out["mse"].detach(), "mse": out["mse"].detach()}


@dataclass
class DRQNSchedule:
    """Knobs of :class:`DRQNStep` (defaults: the setting measured to work at 32×32, N = 4)."""

    warmup: int = 150  # generator-only iterations (true-class actions) before Q-learning starts
    gamma: float = 0.5  # discount γ (the source's δ)
    reward_scale: float = 30.0  # r = -reward_scale · MSE(ŷ_{t+1}, y_{t+1})
    realism_weight: float = 0.0  # + realism_weight · log D(ŷ_{t+1}) when a discriminator "d" is trained
    q_weight: float = 1.0  # weight of the Huber TD loss in the joint loss
    target_tau: float = 0.05  # Polyak rate of the target network per iteration
    eps_start: float = 1.0  # ε at the end of the warm-up
    eps_end: float = 0.05  # final ε
    eps_steps: int = 300  # iterations of the ε decay (after the warm-up)
    teacher_weight: float = 1.0  # weight of the teacher-forced generator MSE (kept during Q-learning)
    teacher_every: int = 1  # during Q-learning, run the teacher-forced generator update every k-th iteration
    replay_capacity: int = 0  # episodes kept (as float16) for bootstrapped sequential updates (0: on-policy only)
    replay_batch: int = 0  # replayed episodes per iteration, each unrolled from its first frame


@dataclass
class DRQNStep:
    """One DRQN iteration: generator MSE with true-class actions, then (after the warm-up) Q-learning.

    Q-learning part: an ε-greedy rollout whose chosen actions drive the decoder; rewards
    ``r_t = -s · MSE(ŷ_{t+1}, y_{t+1})`` per scene; Double-DQN targets
    ``y_t = r_t + γ Q_target(s_{t+1}, argmax_a Q(s_{t+1}, a))`` (0 after the last step), where the
    target network unrolls over the same generated frames; Huber loss on ``Q(s_t, a_t) - y_t``.
    The generator MSE and the TD loss are summed and optimised together (the Q-loss gradient into
    the shared trunk is scaled by the model's ``q_grad_scale``). With an episode memory
    (``schedule.replay_capacity`` and ``replay_batch``) the rollout only acts: its episodes are
    stored, and the TD loss comes from ``replay_batch`` stored whole episodes (the fresh ones among
    them), each unrolled from its first frame with the current weights: Hausknecht & Stone's
    bootstrapped sequential updates.
    """

    schedule: DRQNSchedule  # warm-up, γ, rewards, ε decay, loss weights
    target_net: nn.Module  # the slowly updated copy of the DRQN (:func:`make_target`)
    model: str = "drqn"  # the trainer's DRQN
    disc: str = "d"  # the trainer's discriminator, used when ``schedule.realism_weight > 0``
    generator: Optional[torch.Generator] = None  # seeds the ε-greedy choices and the replay draws
    replay: Optional[EpisodeReplay] = None  # episode memory (made on the first batch if the schedule asks for one)

    def _td_targets(self, inputs: torch.Tensor, rewards: torch.Tensor, q_online: torch.Tensor,
                    trainer: Trainer) -> torch.Tensor:
        """Double-DQN targets ``(B, n)`` for an episode whose step inputs are ``inputs`` ``(B, n, C, H, W)``."""
        B, n = rewards.shape
        with trainer.autocast():
            q_tgt = self.target_net.q_values(inputs).float()  # (B, n, N)
        next_t = torch.cat([q_tgt[:, 1:], torch.zeros_like(q_tgt[:, :1])], 1)
        next_o = torch.cat([q_online[:, 1:], torch.zeros_like(q_online[:, :1])], 1)
        dones = torch.zeros(B, n, device=rewards.device)
        dones[:, -1] = 1.0
        return bellman_targets(rewards.flatten(), next_t.flatten(0, 1), dones.flatten(),
                               self.schedule.gamma, next_q_online=next_o.flatten(0, 1)).reshape(B, n)

    def __call__(self, trainer: Trainer, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
        schedule, target_net, model, disc, generator = self.schedule, self.target_net, self.model, self.disc, self.generator
        net: CinemagraphDRQN = trainer.models[model]
        frames, labels = batch["frames"], batch["label"]
        p = next(target_net.parameters(), None)
        if p is not None and p.device != frames.device:  # made before the trainer moved the DRQN to its device
            target_net.to(frames.device)
        B, T = frames.shape[:2]
        n = T
        target = _targets(batch, n)  # (B, n, C, H, W)
        # the true motion of every step (scenes whose motion changes have a per-step label)
        teacher = batch["step_label"] if "step_label" in batch else labels[:, None].expand(B, n)
        if schedule.replay_capacity > 0 and self.replay is None:
            self.replay = EpisodeReplay(schedule.replay_capacity, n, tuple(frames.shape[2:]), torch.float16)
        it = trainer.step
        warmup = cap_phase(schedule.warmup)  # (a rehearsal with a few steps still reaches Q-learning)
        loss = torch.zeros((), device=frames.device)
        metrics: Dict[str, Any] = {}
        if it < warmup or (it - warmup) % max(1, schedule.teacher_every) == 0:
            with trainer.autocast():
                out = net.rollout(frames[:, 0], n, policy=teacher)
            gen_mse = F.mse_loss(out["frames"].float(), target)
            loss = loss + schedule.teacher_weight * gen_mse
            metrics["mse"] = gen_mse.detach()
        if it >= warmup:
            k = it - warmup
            eps = schedule.eps_end + (schedule.eps_start - schedule.eps_end) * max(0.0, 1 - k / schedule.eps_steps)
            replaying = self.replay is not None and schedule.replay_batch > 0
            # with an episode memory the fresh rollout only acts (no graph); the update comes from replay
            with trainer.autocast(), torch.set_grad_enabled(torch.is_grad_enabled() and not replaying):
                ro = net.rollout(frames[:, 0], n, policy="epsilon", epsilon=eps, generator=generator,
                                 decoder_grad=False)  # the TD loss trains the Q-head and the trunk only
            gen = ro["frames"].detach().float()  # (B, n, C, H, W)
            with torch.no_grad():
                err = (gen - target).pow(2).mean((2, 3, 4))  # (B, n)
                rewards = -schedule.reward_scale * err
                if schedule.realism_weight > 0 and disc in trainer.models:
                    logits = trainer.models[disc](gen.flatten(0, 1)).float().reshape(B, n)
                    rewards = rewards + schedule.realism_weight * F.logsigmoid(logits)
                # States s_{t+1} are reached by feeding ŷ_{t+1}; input sequence x, ŷ_1..ŷ_{n-1}.
                inputs = torch.cat([frames[:, :1], gen[:, :-1]], dim=1)
            if replaying:
                # bootstrapped sequential updates: store the fresh episodes, then learn from stored
                # whole episodes (fresh and older), each unrolled from its first frame with current weights
                self.replay.add(inputs, ro["actions"], rewards)
                ep = self.replay.sample(schedule.replay_batch, generator)
                ep_in = ep["inputs"].to(frames.device, frames.dtype)
                ep_r, ep_a = ep["rewards"].to(frames.device), ep["actions"].to(frames.device)
                with trainer.autocast():
                    q_rep = net.q_sequence(ep_in).float()  # (b, n, N)
                with torch.no_grad():
                    y = self._td_targets(ep_in, ep_r, q_rep.detach(), trainer)
                q_sa = q_rep.gather(2, ep_a[..., None]).squeeze(2)  # (b, n)
                metrics["replayed"] = len(self.replay)
            else:  # on-policy: the fresh rollout's own transitions
                with torch.no_grad():
                    y = self._td_targets(inputs, rewards, ro["q"].detach().float(), trainer)
                q_sa = ro["q"].float().gather(2, ro["actions"][..., None].long()).squeeze(2)  # (B, n)
                if self.replay is not None:
                    self.replay.add(inputs, ro["actions"], rewards)
            td = F.smooth_l1_loss(q_sa, y)
            loss = loss + schedule.q_weight * td
            # tensors: the trainer reads them on the host when it syncs (not every step on a GPU)
            metrics.update(td=td.detach(), reward=rewards.mean(), epsilon=eps, q_mean=q_sa.detach().mean(),
                           greedy_acc=(ro["q"].detach().argmax(2) == teacher).float().mean())
            if schedule.realism_weight > 0 and disc in trainer.models:
                real_l = trainer.models[disc](target.flatten(0, 1))
                fake_l = trainer.models[disc](gen.flatten(0, 1))
                trainer.optimize(d_loss_bce(real_l.float(), fake_l.float()), disc)
        trainer.optimize(loss, model)
        if it >= warmup:
            sync_target(target_net, net, schedule.target_tau)
        elif it == warmup - 1:
            sync_target(target_net, net, 1.0)
        metrics["loss"] = loss.detach()
        return metrics


def drqn_lr_schedule(optimizer: torch.optim.Optimizer, schedule: DRQNSchedule, total_steps: int,
                     floor: float = 0.2) -> torch.optim.lr_scheduler.LambdaLR:
    """Full learning rate during the warm-up, then a linear decay to ``floor`` times it.

    Q-learning targets move as the network learns; a shrinking step size damps the oscillations
    of the greedy policy late in training (stepped once per iteration by the trainer).
    """
    warmup = cap_phase(schedule.warmup)
    span = max(1, total_steps - warmup)

    def factor(k: int) -> float:
        return 1.0 if k < warmup else max(floor, 1.0 - (1.0 - floor) * (k - warmup) / span)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------- evaluation


def cinemagraph_metrics(generated: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> Dict[str, float]:
    """Numbers that say whether a generated loop moves like the truth.

    ``generated`` ``(B, n, C, H, W)`` are ``ŷ_1..ŷ_n`` from the stills ``frames[:, 0]``; ``frames``
    ``(B, T, C, H, W)`` the true loop; ``mask`` ``(B, 1, H, W)``. With ``n >= T`` the frame
    ``ŷ_T`` should equal ``x`` (the loop closes). Returns:

    - ``motion_mse``: squared error inside the mask over ``ŷ_1..ŷ_{T-1}``;
    - ``static_motion_mse``: the same for the trivial baseline that repeats the still;
    - ``background_mse``: squared error outside the mask;
    - ``motion_energy_ratio``: mean temporal std inside the mask of ``[x, ŷ_1..ŷ_{T-1}]`` over that of
      the true frames (a blur that lowers MSE without moving scores near 0; 1 = as lively as the truth);
    - ``loop_error``: squared error inside the mask between ``ŷ_T`` and ``x`` (``nan`` if ``n < T``);
    - ``true_step_mse``: squared change between consecutive true frames in the mask (the scale of
      one step of motion, to read ``loop_error`` against).
    """
    B, T = frames.shape[:2]
    gen = generated.float()
    m = mask.float()[:, None]  # (B, 1, 1, H, W)
    C = frames.shape[2]
    k = min(T - 1, gen.shape[1])
    truth = frames[:, 1 : k + 1].float()
    still = frames[:, :1].float()

    def masked(err: torch.Tensor, w: torch.Tensor) -> float:
        w = w.expand_as(err)
        return float((err * w).sum() / w.sum().clamp_min(1e-8))

    seq_gen = torch.cat([still, gen[:, :k]], 1)
    seq_true = frames[:, : k + 1].float()
    std_ratio = masked(seq_gen.std(1, keepdim=True), m) / max(masked(seq_true.std(1, keepdim=True), m), 1e-12)
    out = {
        "motion_mse": masked((gen[:, :k] - truth) ** 2, m),
        "static_motion_mse": masked((still - truth) ** 2, m),
        "background_mse": masked((gen[:, :k] - truth) ** 2, 1 - m),
        "motion_energy_ratio": std_ratio,
        "loop_error": masked((gen[:, T - 1 : T] - still) ** 2, m) if gen.shape[1] >= T else float("nan"),
        "true_step_mse": masked((frames[:, 1:] - frames[:, :-1]).float() ** 2, m),
    }
    del C
    return out


def region_motion(loop: torch.Tensor, region: torch.Tensor, threshold: float = 0.5) -> Dict[str, float]:
    """How much a generated loop moves inside a region and outside it (for photographs, no truth).

    ``loop`` ``(T, C, H, W)`` is ``[x, ŷ_1 .. ŷ_{T-1}]``; ``region`` ``(1, H, W)`` or ``(H, W)`` in
    [0, 1]. Motion energy is the temporal standard deviation, averaged over channels and over the
    pixels where ``region > threshold`` (``inside``) or ``region <= threshold`` (``outside``). Returns
    ``motion_energy`` (inside), ``background_leak`` (outside) and ``leak_ratio`` (outside / inside).
    """
    if loop.dim() != 4:
        raise ValueError(f"loop must be (T, C, H, W), got shape {tuple(loop.shape)}")
    r = region.reshape(loop.shape[-2:]).float() > threshold
    if not bool(r.any()) or bool(r.all()):
        raise ValueError("the region must cover some pixels and leave some out")
    std = loop.float().std(0).mean(0)  # (H, W)
    inside, outside = float(std[r].mean()), float(std[~r].mean())
    return {"motion_energy": inside, "background_leak": outside, "leak_ratio": outside / max(inside, 1e-12)}


@torch.no_grad()
def evaluate_generator(gen: CinemagraphGenerator, frames: torch.Tensor, mask: torch.Tensor,
                       batch_size: int = 128, actions: Optional[torch.Tensor] = None) -> Tuple[Dict[str, float], torch.Tensor]:
    """:func:`cinemagraph_metrics` of ``gen`` on held-out clips (one loop, ``n = T``); returns (metrics, frames)."""
    gen.eval()
    dev = next(gen.parameters()).device
    T = frames.shape[1]
    outs = []
    for i in range(0, frames.shape[0], batch_size):
        x = frames[i : i + batch_size, 0].to(dev)
        a = None if actions is None else actions[i : i + batch_size].to(dev)
        outs.append(gen(x, T, actions=a).float().cpu())
    generated = torch.cat(outs)
    return cinemagraph_metrics(generated, frames, mask), generated


@torch.no_grad()
def evaluate_policy(net: CinemagraphDRQN, frames: torch.Tensor, labels: torch.Tensor,
                    policy: Union[str, torch.Tensor] = "greedy", constant: int = 0, reward_scale: float = 30.0,
                    seed: int = 0, batch_size: int = 128) -> Dict[str, torch.Tensor]:
    """Run ``policy`` on held-out clips; returns per-scene ``return`` (undiscounted sum of rewards),
    ``actions`` ``(B, T)``, ``frames`` ``(B, T, C, H, W)`` and ``q`` ``(B, T, N)``.

    ``policy`` is a name (see :meth:`CinemagraphDRQN.rollout`) or a tensor of actions ``(B, T)``:
    the scenes' true per-step classes give the *oracle* policy, an upper bound for the return."""
    net.eval()
    dev = next(net.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)
    T = frames.shape[1]
    if isinstance(policy, torch.Tensor) and policy.shape != (frames.shape[0], T):
        raise ValueError(f"a policy tensor must hold one action per scene and step, shape ({frames.shape[0]}, {T}); "
                         f"got {tuple(policy.shape)}")
    rets, acts, gens, qs = [], [], [], []
    for i in range(0, frames.shape[0], batch_size):
        clip = frames[i : i + batch_size]
        pol = policy[i : i + batch_size] if isinstance(policy, torch.Tensor) else policy
        ro = net.rollout(clip[:, 0].to(dev), T, policy=pol, generator=g, constant=constant)
        target = _targets({"frames": clip}, T)
        err = (ro["frames"].float().cpu() - target).pow(2).mean((2, 3, 4))  # (b, T)
        rets.append(-reward_scale * err.sum(1))
        acts.append(ro["actions"].cpu())
        gens.append(ro["frames"].float().cpu())
        qs.append(ro["q"].float().cpu())
    return {"return": torch.cat(rets), "actions": torch.cat(acts), "frames": torch.cat(gens), "q": torch.cat(qs)}


def action_metrics(actions: torch.Tensor, step_label: torch.Tensor) -> Dict[str, float]:
    """Does a policy follow the motion step by step? ``actions``, ``step_label`` ``(B, T)``.

    - ``per_step_action_accuracy``: share of (scene, step) pairs whose action is the true class;
    - ``action_change_recall``: of the steps where the true motion changes (``step_label[t] !=
      step_label[t-1]``), the share where the action changes too (``nan`` if the motion never does);
    - ``action_change_correct``: of those steps, the share where the new action is the right one;
    - ``spurious_change_rate``: of the steps where the motion stays, the share where the action changes.
    """
    if actions.shape != step_label.shape or actions.dim() != 2:
        raise ValueError(f"actions and step_label must both be (B, T), got {tuple(actions.shape)} and "
                         f"{tuple(step_label.shape)}")
    a, y = actions.long().cpu(), step_label.long().cpu()
    changes = y[:, 1:] != y[:, :-1]
    acted = a[:, 1:] != a[:, :-1]
    nan = float("nan")
    return {
        "per_step_action_accuracy": float((a == y).float().mean()),
        "action_change_recall": float(acted[changes].float().mean()) if bool(changes.any()) else nan,
        "action_change_correct": float((a[:, 1:] == y[:, 1:])[changes].float().mean()) if bool(changes.any()) else nan,
        "spurious_change_rate": float(acted[~changes].float().mean()) if bool((~changes).any()) else nan,
    }


def best_matching_accuracy(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> Tuple[float, np.ndarray]:
    """Accuracy after the best one-to-one relabelling of predicted actions to classes (Hungarian).

    Returns ``(accuracy, mapping)`` with ``mapping[action] = class``.
    """
    p, t = pred.flatten().long().cpu().numpy(), true.flatten().long().cpu().numpy()
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (p, t), 1)
    rows, cols = linear_sum_assignment(-counts)
    mapping = np.empty(num_classes, dtype=np.int64)
    mapping[rows] = cols
    return float(counts[rows, cols].sum() / max(1, len(p))), mapping


# ----------------------------------------------------------------------------- profiles


@dataclass
class CinemagraphSettings(ProfileSettings):
    """Scene, model and training settings of chapters 1 and 2, by profile.

    ``quick`` is what the book build runs on a CPU in a few minutes; ``full`` is our GPU setting
    (the source gives none): 128×128 scenes, 16-frame loops, 8 motion classes (two speeds), a wider
    model with three encoder levels, longer training, five seeds for the DRQN. Real clips replace
    the synthetic scenes when a chapter gets ``data_root``.
    """

    scene: SceneConfig  # the synthetic scenes
    model: CinemagraphConfig  # the generator (and the DRQN built on it)
    batch: int  # clips per step
    lr: float  # Adam learning rate
    gen_steps: int  # steps of the recurrent generator (chapter 1)
    adv_weight: float  # λ_adv of eq. (10)
    disc_frames: int  # time steps per clip the discriminator judges
    drqn: DRQNSchedule  # the DRQN's schedule (chapter 2)
    drqn_steps: int  # DRQN iterations
    drqn_seeds: List[int]  # one DRQN run per seed
    held_out: int  # held-out scenes for the measurements
    amp: str  # precision: "auto" picks bf16 only where the device computes it natively
    drqn_reverse: float  # chapter 2: share of scenes whose motion reverses halfway (the best action changes)

    @classmethod
    def quick(cls) -> CinemagraphSettings:
        return cls(scene=SceneConfig(size=32, frames=8, num_classes=4, background="texture"), model=CinemagraphConfig(),
                   batch=16, lr=5e-3, gen_steps=300, adv_weight=1e-3, disc_frames=2,
                   drqn=DRQNSchedule(warmup=120, eps_steps=400, eps_end=0.1, teacher_every=3,
                                     replay_capacity=512, replay_batch=16), drqn_steps=800,
                   drqn_seeds=[0], held_out=256, amp="auto", drqn_reverse=0.5)

    @classmethod
    def full(cls) -> CinemagraphSettings:
        return cls(scene=SceneConfig(size=128, frames=16, num_classes=8, block=8, background="texture"),
                   model=CinemagraphConfig(widths=(32, 64, 128), hidden=64, kernel_hidden=128, q_hidden=128,
                                           disc_widths=(64, 128, 256, 256)),
                   batch=32, lr=2e-3, gen_steps=6000, adv_weight=1e-3, disc_frames=4,
                   drqn=DRQNSchedule(warmup=1500, eps_steps=2000, eps_end=0.1, teacher_every=2,
                                     replay_capacity=512, replay_batch=16), drqn_steps=4000,
                   drqn_seeds=[0, 1, 2, 3, 4], held_out=1024, amp="auto", drqn_reverse=0.5)
