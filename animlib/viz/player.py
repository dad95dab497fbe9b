"""Animations that play in a static page (matplotlib's jshtml with offline controls)."""

from __future__ import annotations

import html
import numbers
import re
from typing import List, Mapping, Sequence, Union

import matplotlib
import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .frames import _DPI, Frames, _auto_scale, to_uint8_frames

__all__ = ["animate", "animate_side_by_side"]


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


def _label_player(jshtml: str, alt: str) -> str:
    """Alt text on the player's frame ``<img>`` and an accessible name on its frame slider."""
    jshtml = jshtml.replace('<img id="_anim_img', f'<img alt="{html.escape(alt, quote=True)}" id="_anim_img', 1)
    return jshtml.replace('class="anim-slider"', 'class="anim-slider" aria-label="Frame"', 1)


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
    jshtml = _label_player(jshtml, alt)
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
