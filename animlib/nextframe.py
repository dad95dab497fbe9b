"""Next-frame prediction with a small convolutional network: the toolkit chapter's model.

Given the two most recent frames, predict the next one. Two frames are the least that can show
motion: one frame alone says where the blob is, not where it goes. Predicting recursively (feeding
each prediction back as input) turns a single pair of frames into a video, the same recursion the
cinemagraph generator of Part I uses (Srivastava et al. 2015 study it for LSTMs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .runtime import ProfileSettings

__all__ = ["NextFrameConfig", "NextFrameNet", "NextFrameSettings", "rollout", "next_frame_pairs"]


@dataclass
class NextFrameConfig:
    context: int = 2  # frames the network sees (stacked as channels)
    width: int = 16  # channels of the hidden convolutions
    depth: int = 3  # hidden 5×5 convolutions (receptive field grows by 4 px each)
    kernel_size: int = 5  # large enough to see a move of up to 2 px in one layer


class NextFrameNet(nn.Module):
    """``(B, context, H, W)`` frames in [0, 1] → ``(B, 1, H, W)`` next frame (last frame + predicted change)."""

    def __init__(self, config: NextFrameConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else NextFrameConfig()
        k, w = config.kernel_size, config.width
        layers = [nn.Conv2d(config.context, w, k, padding=k // 2), nn.ReLU()]
        for _ in range(config.depth - 1):
            layers += [nn.Conv2d(w, w, k, padding=k // 2), nn.ReLU()]
        layers += [nn.Conv2d(w, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 4 or frames.shape[1] != self.config.context:
            raise ValueError(
                f"expected frames of shape (B, {self.config.context}, H, W), got {tuple(frames.shape)}"
            )
        # Predict the *change* from the last frame: a still scene is then the easy default, and the
        # network spends its capacity on motion (a residual connection, as in ResNets).
        return frames[:, -1:] + self.net(frames)  # (B, 1, H, W)


def next_frame_pairs(clips: torch.Tensor, context: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """All (context frames → next frame) training pairs of clips ``(N, T, 1, H, W)``.

    Returns inputs ``(N·(T−context), context, H, W)`` and targets ``(N·(T−context), 1, H, W)``.
    """
    n, t = clips.shape[:2]
    if t <= context:
        raise ValueError(f"clips need more than {context} frames, got {t}")
    xs = torch.stack([clips[:, i:i + context, 0] for i in range(t - context)], 1)  # (N, T-c, c, H, W)
    ys = clips[:, context:]  # (N, T-c, 1, H, W)
    return xs.flatten(0, 1), ys.flatten(0, 1)


@torch.no_grad()
def rollout(model: NextFrameNet, start: torch.Tensor, steps: int) -> torch.Tensor:
    """Generate ``steps`` frames from ``start`` ``(B, context, H, W)``, each fed back as input.

    Returns ``(B, steps, 1, H, W)``.
    """
    model.eval()
    window, out = start, []
    for _ in range(steps):
        nxt = model(window).clamp(0, 1)  # (B, 1, H, W)
        out.append(nxt)
        window = torch.cat([window[:, 1:], nxt], 1)
    return torch.stack(out, 1)


@dataclass
class NextFrameSettings(ProfileSettings):
    """Chapter 0's sizes by profile: training steps, training clips and the frame size."""

    steps: int  # optimisation steps
    n_train: int  # training clips
    size: int  # frame size in pixels

    @classmethod
    def quick(cls) -> NextFrameSettings:
        return cls(steps=300, n_train=512, size=16)

    @classmethod
    def full(cls) -> NextFrameSettings:
        return cls(steps=3000, n_train=8192, size=32)
