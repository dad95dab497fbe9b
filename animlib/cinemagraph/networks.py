"""The networks of :mod:`animlib.cinemagraph`: the recurrent generator, its discriminator, the DRQN.

:class:`CinemagraphConfig` sizes them all. :class:`CinemagraphGenerator` is :class:`FrameMapEncoder`
→ peephole :class:`~animlib.convlstm.ConvLSTMCell` → :class:`MotionDecoder` (eq. 11, with
:func:`apply_motion_kernel`); :class:`FrameDiscriminator` judges single frames; :class:`CinemagraphDRQN`
adds a :class:`QHead` to the generator's trunk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import norm_layer
from ..convlstm import ConvLSTMCell
from ..gan import check_image_channels
from ..rl import epsilon_greedy

__all__ = [
    "CinemagraphConfig",
    "scale_grad",
    "apply_motion_kernel",
    "FrameMapEncoder",
    "MotionDecoder",
    "CinemagraphGenerator",
    "FrameDiscriminator",
    "QHead",
    "CinemagraphDRQN",
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
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), norm_layer("group", cout), nn.LeakyReLU(0.2))


# ----------------------------------------------------------------------------- blocks


class FrameMapEncoder(nn.Module):
    """A frame to a latent feature map: stride-2 convolutions, ``(B, C, H, W)`` -> latent
    ``(B, widths[-1], H/2^L, W/2^L)`` + skips (the input of every level, for the U-Net mask decoder)."""

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
    """FrameMapEncoder → ConvLSTM → motion decoder, generating frames recursively from one still.

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
        self.encoder = FrameMapEncoder(cfg.channels, cfg.widths)
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
