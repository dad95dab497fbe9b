"""Frame conversion: every layout the book produces, to uint8 ``(T, H, W, 3)`` frames."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Mapping, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["to_uint8_frames"]


ArrayLike = Union[torch.Tensor, np.ndarray]
Frames = Union[ArrayLike, Sequence[ArrayLike]]
ValueRange = Tuple[float, float]
History = Union[Sequence[Mapping[str, Any]], Mapping[str, Sequence[Any]]]

_LAYOUTS = (
    "accepted layouts: tensor (T, C, H, W) or (T, H, W); array (T, H, W) or (T, H, W, C); "
    "or a list of frames, each (C, H, W), (H, W) or (H, W, C); C is 1 (gray) or 3 (RGB)"
)
_TARGET_PX = 256  # an animation panel is shown about this tall when scale=None
_DPI = 100  # figure dpi for animations: 1 figure inch = 100 screen pixels


def _check_value_range(value_range: Sequence[float]) -> ValueRange:
    """Return ``value_range`` as a float pair, or raise if it is not ``(low, high)`` with low < high."""
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"value_range must be a pair (low, high), e.g. (0, 1) or (-1, 1); got {value_range!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with low < high; got {value_range!r}")
    return lo, hi


def _as_numpy(x: Any, name: str) -> np.ndarray:
    """Detach and move a tensor to the CPU as numpy; keep ``uint8``, turn every other dtype into float32."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.numpy() if x.dtype == torch.uint8 else x.float().numpy()
    elif isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
                raise ValueError(f"{name} must be numeric; got a numpy array of dtype {x.dtype}")
            x = x.astype(np.float32)
    else:
        raise ValueError(
            f"{name} must be a torch tensor, a numpy array or a list of them; got {type(x).__name__}"
        )
    return x


def _channels_last(shape: Tuple[int, ...], first: int, last: int, is_tensor: bool, what: str) -> bool:
    """Decide which of two axes holds the channels (size 1 or 3); tensors win ties channels-first."""
    first_ok, last_ok = shape[first] in (1, 3), shape[last] in (1, 3)
    if first_ok and last_ok:
        return not is_tensor
    if first_ok or last_ok:
        return last_ok
    hint = ""
    if 4 in (shape[first], shape[last]):
        hint = " (4 channels looks like RGBA: drop alpha first, e.g. x[..., :3])"
    raise ValueError(f"{what} has shape {tuple(shape)}: no channel axis of size 1 or 3{hint}; {_LAYOUTS}")


def _frame_hwc(x: ArrayLike, index: int, name: str) -> np.ndarray:
    """One list element (C, H, W), (H, W) or (H, W, C) -> numpy (H, W, C)."""
    is_tensor = isinstance(x, torch.Tensor)
    a = _as_numpy(x, f"{name}[{index}]")
    if a.ndim == 2:
        return a[:, :, None]  # (H, W, 1)
    if a.ndim == 3:
        if _channels_last(a.shape, 0, 2, is_tensor, f"{name}[{index}]"):
            return a  # (H, W, C)
        return np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
    extra = ""
    if a.ndim == 4:
        extra = (
            " It looks like a whole clip: to show several clips side by side use "
            "animate_side_by_side([clip_a, clip_b]) (or storyboard for rows of frames)."
        )
    raise ValueError(
        f"{name}[{index}] has {a.ndim} dims (shape {tuple(a.shape)}); a list of frames holds "
        f"(C, H, W), (H, W) or (H, W, C) frames.{extra}"
    )


def _normalize(a: np.ndarray, lo: float, hi: float, name: str) -> np.ndarray:
    """Map raw values to float32 in [0, 1]: uint8 as 0..255, everything else from [lo, hi], clipped."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise ValueError(f"{name} contain {bad} NaN/inf values; cannot turn them into pixels")
    if a.size:
        mn, mx = float(a.min()), float(a.max())
        span = hi - lo
        if mn < lo - 0.05 * span or mx > hi + 0.05 * span:
            warnings.warn(
                f"{name} values span [{mn:.3g}, {mx:.3g}] but value_range=({lo:g}, {hi:g}); values outside are "
                "clipped (pass value_range=(-1, 1) for tanh outputs)",
                UserWarning,
                stacklevel=4,
            )
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _frames01(frames: Frames, value_range: Sequence[float] = (0, 1), name: str = "frames") -> np.ndarray:
    """Any accepted frame layout -> float32 (T, H, W, C) in [0, 1], C in {1, 3}."""
    lo, hi = _check_value_range(value_range)
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        is_tensor = isinstance(frames, torch.Tensor)
        a = _as_numpy(frames, name)
        if a.ndim == 3 and is_tensor and a.shape[0] == 3 and min(a.shape[1:]) > 3:
            raise ValueError(
                f"{name} has shape {tuple(a.shape)}: one RGB image (3, H, W) or three gray frames (T=3, H, W)? "
                f"Pass x[None] for one image or x[:, None] for three gray frames. {_LAYOUTS}"
            )
        if a.ndim == 3:
            a = a[..., None]  # (T, H, W) -> (T, H, W, 1)
        elif a.ndim == 4:
            if not _channels_last(a.shape, 1, 3, is_tensor, name):
                a = np.moveaxis(a, 1, -1)  # (T, C, H, W) -> (T, H, W, C)
        elif a.ndim == 2:
            raise ValueError(
                f"{name} has shape {tuple(a.shape)}: that is one (H, W) image, not a sequence; "
                f"wrap it as x[None] for a single frame. {_LAYOUTS}"
            )
        elif a.ndim == 5:
            raise ValueError(
                f"{name} has shape {tuple(a.shape)} (5-D, a batch of clips?): pass one clip such as x[0], "
                f"or several clips to animate_side_by_side / storyboard. {_LAYOUTS}"
            )
        else:
            raise ValueError(f"{name} has shape {tuple(a.shape)} ({a.ndim}-D); {_LAYOUTS}")
        out = _normalize(a, lo, hi, name)
    elif isinstance(frames, (list, tuple)):
        if len(frames) == 0:
            raise ValueError(f"{name} is an empty list: there are no frames to show")
        hwc = [_frame_hwc(f, i, name) for i, f in enumerate(frames)]
        h0, w0 = hwc[0].shape[:2]
        for i, f in enumerate(hwc):
            if f.shape[:2] != (h0, w0):
                raise ValueError(
                    f"{name}[{i}] is {f.shape[0]}x{f.shape[1]} (H x W) but {name}[0] is {h0}x{w0}: "
                    "all frames of one clip must have the same size"
                )
        norm = [_normalize(f, lo, hi, name) for f in hwc]
        if len({f.shape[2] for f in norm}) > 1:  # gray and RGB mixed: lift gray to RGB
            norm = [np.repeat(f, 3, axis=2) if f.shape[2] == 1 else f for f in norm]
        out = np.stack(norm)  # (T, H, W, C)
    else:
        raise ValueError(
            f"{name} must be a torch tensor, a numpy array or a list of frames; got {type(frames).__name__}"
        )
    if out.shape[0] == 0 or out.shape[1] == 0 or out.shape[2] == 0:
        raise ValueError(f"{name} has shape {tuple(out.shape)} (T, H, W, C): no pixels to show")
    return out


def _to_uint8(x01: np.ndarray) -> np.ndarray:
    """Float in [0, 1] -> uint8 0..255, rounding to nearest."""
    return np.rint(x01 * 255.0).astype(np.uint8)


def to_uint8_frames(frames: Frames, value_range: Sequence[float] = (0, 1)) -> np.ndarray:
    """Convert frames in any accepted layout to RGB bytes.

    Parameters
    ----------
    frames : tensor, array or list of frames
        See the module docstring for the accepted layouts.
    value_range : (low, high)
        Float values at ``low`` become 0 and at ``high`` become 255; outside values are clipped.

    Returns
    -------
    np.ndarray
        ``uint8`` array of shape ``(T, H, W, 3)``; grayscale is repeated over the three channels.
    """
    x = _frames01(frames, value_range)  # (T, H, W, C)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)  # (T, H, W, 3)
    return _to_uint8(x)


def _upscale(x: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling of (..., H, W, C) frames."""
    if scale == 1:
        return x
    return np.repeat(np.repeat(x, scale, axis=-3), scale, axis=-2)


def _check_int_scale(scale: int) -> int:
    if not (isinstance(scale, numbers.Integral) and scale >= 1):
        raise ValueError(f"scale must be a positive integer (nearest-neighbour upscaling); got {scale!r}")
    return int(scale)


def _auto_scale(height: int) -> float:
    """Display pixels per frame pixel so the panel is about ``_TARGET_PX`` tall (integer when enlarging)."""
    if height <= 2 * _TARGET_PX:
        return float(max(1, round(_TARGET_PX / height)))
    return 2 * _TARGET_PX / height
