"""Seeing what the models do: animations, video files, grids, storyboards and training curves.

Every function takes *frames* in any of the layouts the book produces and converts them the same way:

- a torch tensor ``(T, C, H, W)`` or ``(T, H, W)``;
- a numpy array ``(T, H, W)`` or ``(T, H, W, C)``;
- a list of single frames, each ``(C, H, W)``, ``(H, W)`` or ``(H, W, C)`` (tensor or array).

``C`` is 1 (grayscale) or 3 (RGB). The channel axis is the one of size 1 or 3; when both ends could
be (e.g. ``(T, 3, 3, 3)``), tensors are read channels-first and arrays channels-last. Float values
are mapped from ``value_range`` (``(0, 1)`` by default, ``(-1, 1)`` for tanh outputs) to 0..255 and
clipped; ``uint8`` data is always read as 0..255. Bad shapes raise a ``ValueError`` that says which
layouts are accepted.

Animations are rendered with matplotlib's ``FuncAnimation.to_jshtml()`` so they play in the static
book with no kernel; :func:`animate` shows one clip and :func:`animate_side_by_side` several clips
(e.g. the input still next to the generated motion). Figures are built without touching the
notebook's matplotlib backend, are closed before they are returned (so a cell shows each figure
exactly once: make it the cell's last expression or call ``display(fig)``), and nothing here calls
``plt.show()``.
"""

from __future__ import annotations

import html
import io
import math
import numbers
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import imageio.v3 as iio
import imageio_ffmpeg
import matplotlib
import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .files import atomic_target

__all__ = [
    "to_uint8_frames",
    "animate",
    "animate_side_by_side",
    "save_gif",
    "save_mp4",
    "make_grid_array",
    "image_grid",
    "storyboard",
    "ema",
    "plot_history",
    "scrub_widget",
]

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


# ----------------------------------------------------------------------------------------------
# Frame conversion
# ----------------------------------------------------------------------------------------------
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


def _normalise(a: np.ndarray, lo: float, hi: float, name: str) -> np.ndarray:
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
        out = _normalise(a, lo, hi, name)
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
        norm = [_normalise(f, lo, hi, name) for f in hwc]
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


# ----------------------------------------------------------------------------------------------
# Matplotlib handling
# ----------------------------------------------------------------------------------------------
def _no_display() -> bool:
    """True on Linux/BSD with neither an X11 nor a Wayland display (a server, CI, papermill)."""
    if sys.platform.startswith(("win", "darwin")):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _pyplot():
    """Import pyplot, choosing Agg on a display-less machine unless a backend was already chosen.

    A backend set by the user, by ``MPLBACKEND`` or by a Jupyter kernel (the inline backend) is left
    alone; this runs at first use, never at import.
    """
    if not os.environ.get("MPLBACKEND") and "ipykernel" not in sys.modules and _no_display():
        getter = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
        if getter is not None and getter() is None:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here, not at the top: importing pyplot picks a backend (see above)

    return plt


def _hide_ticks(ax) -> None:
    """No ticks and no frame, but keep the axis labels (``axis("off")`` would hide a row label)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# ----------------------------------------------------------------------------------------------
# Animations that play in a static page
# ----------------------------------------------------------------------------------------------
def _html_object(markup: str):
    """An object that notebooks render as HTML: ``IPython.display.HTML`` when IPython is present."""
    try:
        from IPython.display import HTML  # optional: the plain-Python fallback below needs no IPython
    except ImportError:  # pragma: no cover - IPython ships with every notebook install
        return _PlainHTML(markup)
    return HTML(markup)


class _PlainHTML:
    """Minimal stand-in for ``IPython.display.HTML`` (``.data`` and ``_repr_html_``)."""

    def __init__(self, data: str) -> None:
        self.data = data

    def _repr_html_(self) -> str:
        return self.data


# Player buttons as plain text glyphs: matplotlib's template loads Font Awesome from a CDN, which
# leaves the buttons blank in an offline book. U+FE0E asks for the text (not emoji) form of a glyph.
_BUTTON_GLYPHS = {
    "fa fa-minus": "\u2212",
    "fa fa-fast-backward": "\u21e4",
    "fa fa-step-backward": "\u25c1\ufe0e",
    "fa fa-play fa-flip-horizontal": "\u25c0\ufe0e",
    "fa fa-pause": "\u275a\u275a",
    "fa fa-play": "\u25b6\ufe0e",
    "fa fa-step-forward": "\u25b7\ufe0e",
    "fa fa-fast-forward": "\u21e5",
    "fa fa-plus": "+",
}
_ICON_RE = re.compile(r'<i class="(fa [^"]+)"></i>')
_FA_LINK_RE = re.compile(r'<link rel="stylesheet"\s*href="[^"]*font-awesome[^"]*">\s*')


def _offline_controls(jshtml: str) -> str:
    """Swap the player's Font Awesome icons for text glyphs and drop the CDN stylesheet.

    Only done when every icon is a known one, so a changed matplotlib template is left untouched.
    """
    icons = _ICON_RE.findall(jshtml)
    if not icons or any(i not in _BUTTON_GLYPHS for i in icons):
        return jshtml
    out = _ICON_RE.sub(lambda m: f'<span aria-hidden="true">{_BUTTON_GLYPHS[m.group(1)]}</span>', jshtml)
    return _FA_LINK_RE.sub("", out)


def _animate_panels(
    clips: List[np.ndarray],
    titles: Sequence[str] | None,
    fps: float,
    scale: float | None,
    loop: bool,
    alt: str | None,
    embed_limit_mb: float,
):
    """Render uint8 clips (each (T_i, H_i, W_i, 3)) side by side as a jshtml animation."""
    if not (isinstance(fps, numbers.Real) and fps > 0):
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    if titles is not None and len(titles) != len(clips):
        raise ValueError(f"got {len(titles)} titles for {len(clips)} clips; give one title per clip")
    n_frames = max(c.shape[0] for c in clips)
    max_h = max(c.shape[1] for c in clips)
    if scale is None:
        scale = _auto_scale(max_h)
    if not (isinstance(scale, numbers.Real) and scale > 0):
        raise ValueError(f"scale must be a positive number (display pixels per frame pixel); got {scale!r}")

    # Exact pixel layout: every panel is shown at the same height; wider frames get wider panels.
    disp_h = max(1, round(max_h * scale))
    widths = [max(1, round(c.shape[2] * disp_h / c.shape[1])) for c in clips]
    margin, gap = 4, 8
    title_px = 22 if titles else 0
    fig_w = 2 * margin + sum(widths) + gap * (len(clips) - 1)
    fig_h = 2 * margin + disp_h + title_px
    fig = Figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)  # not a pyplot figure: nothing to close, no stray static image in the notebook
    images = []
    x = margin
    for i, (clip, w) in enumerate(zip(clips, widths)):
        ax = fig.add_axes((x / fig_w, margin / fig_h, w / fig_w, disp_h / fig_h))
        ax.set_axis_off()
        images.append(ax.imshow(clip[0], interpolation="nearest", resample=False, aspect="auto"))
        if titles:
            ax.set_title(str(titles[i]), fontsize=10, pad=4)
        x += w + gap

    def update(k: int):
        for im, clip in zip(images, clips):
            im.set_data(clip[min(k, clip.shape[0] - 1)])  # shorter clips hold their last frame
        return images

    anim = FuncAnimation(fig, update, frames=n_frames, interval=1000.0 / fps, blit=False)
    rc = {
        "animation.embed_limit": float(embed_limit_mb),
        "savefig.dpi": "figure",
        "savefig.transparent": False,
    }
    with matplotlib.rc_context(rc):
        jshtml = anim.to_jshtml(fps=fps, embed_frames=True, default_mode="loop" if loop else "once")
    jshtml = _offline_controls(jshtml)
    embedded = jshtml.count("data:image/png;base64,")
    if embedded != n_frames:
        raise ValueError(
            f"the animation needs more than embed_limit_mb={embed_limit_mb:g} MB and was cut to {embedded} of "
            f"{n_frames} frames; pass fewer or smaller frames, a smaller scale, or a larger embed_limit_mb"
        )
    if alt is None:
        named = f": {', '.join(str(t) for t in titles)}" if titles else ""
        kind = f"{len(clips)} clips side by side" if len(clips) > 1 else "clip"
        alt = f"Animation ({kind}, {n_frames} frames at {fps:g} fps){named}"
    # role="figure" (not "img") so the Play/Pause controls inside stay reachable by screen readers.
    markup = (
        f'<div class="animlib-animation" role="figure" aria-label="{html.escape(alt, quote=True)}">\n'
        f"{jshtml}\n</div>"
    )
    return _html_object(markup)


def animate(
    frames: Frames,
    fps: float = 8,
    title: str | None = None,
    scale: float | None = None,
    loop: bool = True,
    alt: str | None = None,
    value_range: Sequence[float] = (0, 1),
    embed_limit_mb: float = 64.0,
):
    """One clip as an animation that plays in a static HTML page (no kernel needed).

    Parameters
    ----------
    frames : tensor, array or list of frames
        One clip; to show several clips use :func:`animate_side_by_side`.
    fps : float
        Playback speed in frames per second.
    title : str, optional
        Drawn above the clip.
    scale : float, optional
        Display pixels per frame pixel; ``None`` picks an integer so the clip is about 256 px tall.
    loop : bool
        Start the player in loop mode (else play once).
    alt : str, optional
        Text alternative, stored as the ``aria-label`` of the wrapping element.
    value_range : (low, high)
        Value range of float frames, e.g. ``(-1, 1)`` for tanh outputs.
    embed_limit_mb : float
        Size cap of the embedded frames; exceeding it raises instead of silently dropping frames.

    Returns
    -------
    IPython.display.HTML
        Displays the player; ``.data`` is the markup (a ``<div role="figure" aria-label=...>``).
    """
    clip = to_uint8_frames(frames, value_range)  # (T, H, W, 3)
    return _animate_panels(
        [clip], [title] if title is not None else None, fps, scale, loop, alt, embed_limit_mb
    )


def animate_side_by_side(
    clips: Union[Sequence[Frames], Mapping[str, Frames]],
    titles: Sequence[str] | None = None,
    fps: float = 8,
    scale: float | None = None,
    loop: bool = True,
    alt: str | None = None,
    value_range: Sequence[float] = (0, 1),
    embed_limit_mb: float = 64.0,
):
    """Several clips played in step, side by side (e.g. ``input`` next to ``generated``).

    Parameters
    ----------
    clips : list of clips, or dict title -> clip
        Each clip is in any accepted frame layout. Clips may differ in length (a shorter clip holds
        its last frame, so a single still image can sit next to an animation) and in size (all are
        shown at the same height).
    titles : list of str, optional
        One per clip; taken from the keys when ``clips`` is a dict.
    fps, scale, loop, alt, value_range, embed_limit_mb
        As in :func:`animate`.

    Returns
    -------
    IPython.display.HTML
    """
    if isinstance(clips, Mapping):
        if titles is not None:
            raise ValueError("clips is a dict, so its keys are the titles; do not pass titles as well")
        titles = [str(k) for k in clips.keys()]
        clips = list(clips.values())
    if isinstance(clips, (torch.Tensor, np.ndarray)):
        raise ValueError(
            "animate_side_by_side takes a list (or dict) of clips; for one clip tensor or array use animate(frames)"
        )
    if len(clips) == 0:
        raise ValueError("animate_side_by_side got no clips")
    arrays = [to_uint8_frames(c, value_range) for c in clips]  # each (T_i, H_i, W_i, 3)
    return _animate_panels(arrays, titles, fps, scale, loop, alt, embed_limit_mb)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Still figures
# ----------------------------------------------------------------------------------------------
def make_grid_array(
    images: Frames,
    nrow: int = 8,
    padding: int = 2,
    pad_value: float = 1.0,
    value_range: Sequence[float] = (0, 1),
) -> np.ndarray:
    """Tile images into one RGB array, with no matplotlib (the layout of ``torchvision.utils.make_grid``).

    Parameters
    ----------
    images : tensor, array or list of images
        ``N`` images in any accepted frame layout.
    nrow : int
        Images per row (torchvision's name for it).
    padding : int
        Pixels between images and around the border.
    pad_value : float
        Border brightness in [0, 1].
    value_range : (low, high)

    Returns
    -------
    np.ndarray
        ``uint8`` array ``(rows * (H + padding) + padding, ncol * (W + padding) + padding, 3)``.
    """
    if not (isinstance(nrow, numbers.Integral) and nrow >= 1):
        raise ValueError(f"nrow (images per row) must be a positive integer; got {nrow!r}")
    if not (isinstance(padding, numbers.Integral) and padding >= 0):
        raise ValueError(f"padding must be a non-negative integer; got {padding!r}")
    x = to_uint8_frames(_frames01(images, value_range, name="images"), (0, 1))  # (N, H, W, 3)
    n, h, w, _ = x.shape
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    fill = int(np.rint(np.clip(pad_value, 0.0, 1.0) * 255))
    grid = np.full((rows * (h + padding) + padding, ncol * (w + padding) + padding, 3), fill, np.uint8)
    for k in range(n):
        r, c = divmod(k, ncol)
        y0, x0 = padding + r * (h + padding), padding + c * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = x[k]
    return grid


def image_grid(
    images: Frames,
    nrow: int = 8,
    titles: Sequence[str] | None = None,
    value_range: Sequence[float] = (0, 1),
    figsize: Tuple[float, float] | None = None,
):
    """Show images in a grid.

    Parameters
    ----------
    images : tensor, array or list of images
    nrow : int
        Images per row.
    titles : list of str, optional
        One per image. Without titles the grid is a single axes showing :func:`make_grid_array`
        (fast for many images); with titles every image gets its own axes.
    value_range : (low, high)
    figsize : (width, height) in inches, optional

    Returns
    -------
    matplotlib.figure.Figure
        Closed (not tracked by pyplot): display it as a cell's last expression or with ``display``.
    """
    plt = _pyplot()
    x = to_uint8_frames(_frames01(images, value_range, name="images"), (0, 1))  # (N, H, W, 3)
    n, h, w, _ = x.shape
    if not (isinstance(nrow, numbers.Integral) and nrow >= 1):
        raise ValueError(f"nrow (images per row) must be a positive integer; got {nrow!r}")
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images; give one title per image")
    if figsize is None:
        cell = min(1.6, 12.0 / ncol)  # inches per image
        figsize = (
            cell * ncol * w / max(h, w) + 0.2,
            cell * rows * h / max(h, w) + (0.3 * rows if titles else 0.2),
        )
    if titles is None:
        fig = plt.figure(figsize=figsize)
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.imshow(make_grid_array(x, nrow=ncol), interpolation="nearest")
        ax.set_axis_off()
    else:
        fig = plt.figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(rows, ncol, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k >= n:
                fig.delaxes(ax)  # only as many axes as images
                continue
            ax.imshow(x[k], interpolation="nearest")
            ax.set_title(str(titles[k]), fontsize=9)
            ax.set_axis_off()
    plt.close(fig)
    return fig


def storyboard(
    rows: Union[Sequence[Frames], Mapping[str, Frames]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    value_range: Sequence[float] = (0, 1),
    figsize: Tuple[float, float] | None = None,
):
    """Rows of frames in one figure, e.g. the input sequence above its reconstruction.

    Parameters
    ----------
    rows : list of clips, or dict label -> clip
        Each row is a clip in any accepted frame layout. Rows may have different lengths (missing
        cells are left empty) and frame sizes.
    row_labels : list of str, optional
        One per row, written left of the row; taken from the keys when ``rows`` is a dict.
    col_labels : list of str, optional
        One per column (e.g. ``"t=0"``, ``"step 500"``), written above it.
    value_range : (low, high)
    figsize : (width, height) in inches, optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes per frame; closed like :func:`image_grid`.
    """
    if isinstance(rows, Mapping):
        if row_labels is not None:
            raise ValueError("rows is a dict, so its keys are the row labels; do not pass row_labels as well")
        row_labels = [str(k) for k in rows.keys()]
        rows = list(rows.values())
    if isinstance(rows, (torch.Tensor, np.ndarray)):
        rows = list(rows)  # a stacked (R, T, ...) batch: one row per clip
    if len(rows) == 0:
        raise ValueError("storyboard got no rows")
    clips = [
        to_uint8_frames(_frames01(r, value_range, name=f"rows[{i}]"), (0, 1)) for i, r in enumerate(rows)
    ]
    n_rows, n_cols = len(clips), max(c.shape[0] for c in clips)
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"got {len(row_labels)} row_labels for {n_rows} rows; give one label per row")
    if col_labels is not None and len(col_labels) != n_cols:
        raise ValueError(f"got {len(col_labels)} col_labels for {n_cols} columns (the longest row)")
    plt = _pyplot()
    if figsize is None:
        cell = min(1.3, 13.0 / n_cols)
        aspect = max(c.shape[1] / c.shape[2] for c in clips)
        figsize = (
            cell * n_cols + (1.2 if row_labels else 0.2),
            cell * aspect * n_rows + (0.4 if col_labels else 0.2),
        )
    fig = plt.figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, clip in enumerate(clips):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= clip.shape[0]:
                fig.delaxes(ax)
                continue
            ax.imshow(clip[c], interpolation="nearest")
            _hide_ticks(ax)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[r]), rotation=0, ha="right", va="center", fontsize=10)
    if col_labels is not None:
        for c in range(n_cols):
            top = next(r for r in range(n_rows) if c < clips[r].shape[0])  # highest row with this column
            axes[top, c].set_title(str(col_labels[c]), fontsize=9)
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------
def ema(values: Sequence[float], smooth: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing).

    ``m_t = smooth * m_{t-1} + (1 - smooth) * x_t`` with ``m_{-1} = 0``, reported as
    ``m_t / (1 - smooth**(t+1))`` so the curve starts at the first value instead of at zero.
    ``smooth = 0`` returns the values unchanged.
    """
    if not (0.0 <= smooth < 1.0):
        raise ValueError(f"smooth must be in [0, 1) (0 = no smoothing, 0.9 = strong); got {smooth!r}")
    x = np.asarray(values, dtype=np.float64)
    out = np.empty_like(x)
    m = 0.0
    for t, v in enumerate(x):
        m = smooth * m + (1.0 - smooth) * v
        out[t] = m / (1.0 - smooth ** (t + 1))
    return out


def _scalar(v: Any) -> float | None:
    """A float for numbers and one-element tensors/arrays; None for anything else (strings, lists)."""
    if isinstance(v, numbers.Real):  # includes bool and numpy scalars
        return float(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.item())
    if isinstance(v, np.ndarray) and v.size == 1 and np.issubdtype(v.dtype, np.number):
        return float(v.item())
    return None


def _history_series(history: History) -> Dict[str, Tuple[List[float], List[float]]]:
    """``{key: (steps, values)}`` from a list of per-step dicts or a dict of lists (non-numbers skipped)."""
    series: Dict[str, Tuple[List[float], List[float]]] = {}
    if isinstance(history, Mapping):
        steps = history.get("step")
        for key, vals in history.items():
            if key == "step":
                continue
            vals = list(vals)
            xs = list(steps) if steps is not None else list(range(len(vals)))
            if len(xs) != len(vals):
                raise ValueError(f"history['{key}'] has {len(vals)} values but history['step'] has {len(xs)}")
            for s, v in zip(xs, vals):
                f = _scalar(v)
                if f is not None:
                    series.setdefault(key, ([], []))
                    series[key][0].append(float(s))
                    series[key][1].append(f)
    elif isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        for i, rec in enumerate(history):
            if not isinstance(rec, Mapping):
                raise ValueError(
                    f"history[{i}] is a {type(rec).__name__}; history must be a list of dicts "
                    "(e.g. [{'step': 0, 'loss': 1.2}, ...]) or a dict of lists"
                )
            step = _scalar(rec.get("step", i))
            for key, v in rec.items():
                f = _scalar(v)
                if key == "step" or f is None:
                    continue
                series.setdefault(key, ([], []))
                series[key][0].append(float(i if step is None else step))
                series[key][1].append(f)
    else:
        raise ValueError(f"history must be a list of dicts or a dict of lists; got {type(history).__name__}")
    return series


def plot_history(
    history: History,
    keys: Union[str, Sequence[str]] | None = None,
    smooth: float = 0.0,
    logy: bool = False,
    ax=None,
    separate: bool = False,
):
    """Plot training metrics against the step.

    Parameters
    ----------
    history : list of dicts or dict of lists
        ``[{"step": 0, "loss": 1.2}, ...]`` (keys may be missing at some steps, e.g. an evaluation
        every 100 steps; without ``"step"`` the list index is used) or ``{"step": [...], "loss": [...]}``.
    keys : str or list of str, optional
        Metrics to plot; default every numeric key except ``"step"``.
    smooth : float
        :func:`ema` factor in [0, 1); when > 0 the raw curve is drawn faintly under the smoothed one
        (the smoothed line carries the key as its label).
    logy : bool
        Logarithmic y axis.
    ax : matplotlib Axes, optional
        Draw into this axes (the figure is then the caller's and is not closed).
    separate : bool
        One axes per key, stacked, sharing the step axis (for metrics on different scales).

    Returns
    -------
    matplotlib.figure.Figure
    """
    series = _history_series(history)
    if isinstance(keys, str):
        keys = [keys]
    if keys is None:
        keys = list(series)
        if not keys:
            raise ValueError("history holds no numeric metrics to plot")
    else:
        missing = [k for k in keys if k not in series]
        if missing:
            raise ValueError(f"history has no numeric values for {missing}; available keys: {sorted(series)}")
    if separate and ax is not None:
        raise ValueError("separate=True makes its own axes; do not pass ax as well")
    ema(np.zeros(1), smooth)  # validates smooth before drawing anything

    if ax is not None:
        fig, axes, own = ax.figure, [ax] * len(keys), False
    else:
        plt = _pyplot()
        n_axes = len(keys) if separate else 1
        fig = plt.figure(figsize=(6.0, 2.2 * n_axes + 0.8) if separate else (6.0, 3.5), layout="constrained")
        made = fig.subplots(n_axes, 1, sharex=True, squeeze=False)[:, 0]
        axes, own = (list(made) if separate else [made[0]] * len(keys)), True
    for i, (key, a) in enumerate(zip(keys, axes)):
        steps, vals = (np.asarray(v, dtype=np.float64) for v in series[key])
        keep = np.isfinite(vals)  # a NaN/inf step leaves a gap instead of wrecking the scale
        steps, vals = steps[keep], vals[keep]
        color = f"C{i}"
        if smooth > 0:
            a.plot(steps, vals, color=color, alpha=0.3, linewidth=1, label="_nolegend_")
            a.plot(steps, ema(vals, smooth), color=color, linewidth=1.8, label=key)
        else:
            a.plot(steps, vals, color=color, linewidth=1.5, label=key)
        if logy:
            a.set_yscale("log")
        if separate:
            a.set_ylabel(key)
        a.grid(True, alpha=0.3)
    last = axes[-1]
    last.set_xlabel("step")
    if not separate and len(keys) > 1:
        last.legend()
    elif not separate:
        last.set_ylabel(keys[0])
    if own:
        _pyplot().close(fig)
    return fig


# ----------------------------------------------------------------------------------------------
# Interactive scrubbing (live kernel)
# ----------------------------------------------------------------------------------------------
def _png_bytes(frame: np.ndarray) -> bytes:
    """One uint8 (H, W, 3) frame -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def scrub_widget(
    frames_or_dict: Union[Frames, Mapping[str, Frames]],
    value_range: Sequence[float] = (0, 1),
    scale: int | None = None,
    description: str = "frame",
    fps: float = 8,
):
    """A slider that shows frame ``k``; with a dict, a dropdown also picks the sequence.

    Parameters
    ----------
    frames_or_dict : frames, or dict name -> frames
        E.g. ``{"input gate": i_t, "forget gate": f_t}``; sequences may differ in length and size.
    value_range : (low, high)
    scale : int, optional
        Nearest-neighbour upscaling; ``None`` makes frames about 256 px tall.
    description : str
        Slider label.
    fps : float
        Only used by the static fallback.

    Returns
    -------
    ipywidgets.VBox or IPython.display.HTML
        ``VBox([Dropdown?, Image, IntSlider])`` in a live kernel (PNG bytes are precomputed so
        scrubbing is instant); when ipywidgets is not installed, the static :func:`animate` /
        :func:`animate_side_by_side` player instead. Headless runs (papermill) just store the widget.
    """
    named = isinstance(frames_or_dict, Mapping)
    seqs = dict(frames_or_dict) if named else {"frames": frames_or_dict}
    if not seqs:
        raise ValueError("scrub_widget got an empty dict of sequences")
    arrays = {str(k): to_uint8_frames(v, value_range) for k, v in seqs.items()}  # each (T, H, W, 3)
    try:
        import ipywidgets as widgets  # optional (the "notebook" extra): without it, a static animation
    except ImportError:
        if named:
            return animate_side_by_side(arrays, fps=fps, value_range=(0, 255))
        return animate(arrays["frames"], fps=fps, value_range=(0, 255))

    max_h = max(a.shape[1] for a in arrays.values())
    s = _check_int_scale(scale) if scale is not None else max(1, int(_auto_scale(max_h)))
    pngs = {k: [_png_bytes(f) for f in _upscale(a, s)] for k, a in arrays.items()}
    first = next(iter(pngs))
    image = widgets.Image(value=pngs[first][0], format="png")
    slider = widgets.IntSlider(value=0, min=0, max=len(pngs[first]) - 1, description=description)
    dropdown = widgets.Dropdown(options=list(pngs), value=first, description="show") if named else None

    def _update(_change: Any = None) -> None:
        seq = pngs[dropdown.value if dropdown is not None else first]
        slider.max = len(seq) - 1  # clamps the value if the new sequence is shorter
        image.value = seq[min(slider.value, len(seq) - 1)]

    slider.observe(_update, names="value")
    if dropdown is not None:
        dropdown.observe(_update, names="value")
    children = ([dropdown] if dropdown is not None else []) + [image, slider]
    return widgets.VBox(children)
