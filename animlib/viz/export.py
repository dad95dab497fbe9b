"""Animations as files: GIF (Pillow) and MP4 (ffmpeg), written atomically."""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any, Dict, Sequence, Union

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np

from ..files import atomic_target
from .frames import Frames, _check_int_scale, _frames01, _to_uint8, _upscale, to_uint8_frames

__all__ = ["save_gif", "save_mp4"]


def save_gif(
    frames: Frames,
    path: Union[str, os.PathLike],
    fps: float = 8,
    loop: int | None = 0,
    value_range: Sequence[float] = (0, 1),
    scale: int = 1,
) -> Path:
    """Write frames to an animated GIF (imageio with Pillow), atomically.

    Parameters
    ----------
    frames : tensor, array or list of frames
    path : str or Path
        Destination; parent folders are created.
    fps : float
        Frames per second (GIF stores delays in 1/100 s; browsers slow down delays under 0.02 s).
    loop : int or None
        0 loops forever, n repeats n times, ``None`` plays once.
    value_range : (low, high)
    scale : int
        Nearest-neighbour upscaling factor, so small frames stay sharp.

    Returns
    -------
    Path
        The written file. Grayscale clips are stored as 8-bit gray; RGB frames are palettised by
        Pillow (exact for up to 256 colours per frame). Pillow merges identical consecutive frames
        into one longer frame, so such a GIF holds fewer frames but plays for the same time.
    """
    if not (isinstance(fps, numbers.Real) and fps > 0):
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    if loop is not None and not (isinstance(loop, numbers.Integral) and loop >= 0):
        raise ValueError(
            f"loop must be 0 (forever), a positive repeat count or None (play once); got {loop!r}"
        )
    x = _upscale(_to_uint8(_frames01(frames, value_range)), _check_int_scale(scale))  # (T, H, W, C)
    data = x[..., 0] if x.shape[-1] == 1 else x  # (T, H, W) gray or (T, H, W, 3)
    kwargs: Dict[str, Any] = {"duration": 1000.0 / fps}
    if loop is not None:
        kwargs["loop"] = int(loop)
    with atomic_target(path) as tmp:
        iio.imwrite(tmp, list(data), extension=".gif", plugin="pillow", **kwargs)
    return Path(path)


def save_mp4(
    frames: Frames,
    path: Union[str, os.PathLike],
    fps: float = 8,
    value_range: Sequence[float] = (0, 1),
    scale: int = 1,
    quality: float = 8.0,
) -> Path:
    """Write frames to an H.264 MP4 (yuv420p, plays in browsers) with imageio-ffmpeg, atomically.

    Parameters
    ----------
    frames : tensor, array or list of frames
    path : str or Path
        Destination; parent folders are created. The container is MP4 whatever the suffix.
    fps : float
    value_range : (low, high)
    scale : int
        Nearest-neighbour upscaling factor before encoding.
    quality : float
        0 (worst) .. 10 (best); 8 keeps small synthetic frames close to lossless.

    Returns
    -------
    Path
        The written file. yuv420p needs even sizes: an odd height or width is padded by repeating
        the last row or column, so the video may be one pixel larger than the frames.
    """
    if not (isinstance(fps, numbers.Real) and fps > 0):
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    if not (0 <= quality <= 10):
        raise ValueError(f"quality must be in [0, 10]; got {quality!r}")
    x = to_uint8_frames(frames, value_range)  # (T, H, W, 3)
    x = _upscale(x, _check_int_scale(scale))
    _, h, w, _ = x.shape
    x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # even (H, W) for yuv420p
    x = np.ascontiguousarray(x)
    with atomic_target(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            size=(x.shape[2], x.shape[1]),  # (width, height)
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=quality,
            macro_block_size=1,  # already even; 16 would make ffmpeg resize instead of keeping pixels
            ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart", "-f", "mp4"],
        )
        writer.send(None)  # start ffmpeg
        try:
            for frame in x:
                writer.send(frame)
        finally:
            writer.close()
    return Path(path)
