"""Still figures: image grids, storyboards and training curves."""

from __future__ import annotations

import base64
import functools
import html
import io
import math
import numbers
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch

from .backend import _hide_ticks, _pyplot
from .frames import Frames, History, _frames01, to_uint8_frames

__all__ = ["make_grid_array", "image_grid", "storyboard", "ema", "plot_history"]


# ----------------------------------------------------------------------------------------------
# Alt text: a figure returned here also renders as an HTML <img> carrying it
# ----------------------------------------------------------------------------------------------
def _join(items: Sequence[Any], limit: int = 12) -> str:
    items = [str(i) for i in items]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _figure_alt(fig) -> str:
    """The alt text: the one given, else the description with the figure's suptitle (read at display time)."""
    if fig._animlib_alt:
        return str(fig._animlib_alt)
    sup = getattr(fig, "_suptitle", None)
    title = " ".join(sup.get_text().split()) if sup is not None and sup.get_text() else ""
    text = fig._animlib_description
    return f"{title}: {text[0].lower()}{text[1:]}" if title else text


def _figure_html(fig) -> str | None:
    """``<img>`` of the figure as the notebook's inline backend draws it, with alt text.

    Jupyter (and MyST-NB, which prefers ``text/html`` to ``image/png``) then shows an image that
    screen readers can describe; a cell-level ``mystnb: image: alt:`` applies only to ``image/png``,
    so a chapter gives a figure from here its specific alt text with the ``alt=`` argument.
    """
    if "WebAgg" in type(fig.canvas).__name__:  # ipympl / %matplotlib widget: matplotlib's own repr
        return type(fig)._repr_html_(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor=fig.get_facecolor(),
                edgecolor=fig.get_edgecolor())
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    alt = html.escape(_figure_alt(fig), quote=True)
    return f'<img src="data:image/png;base64,{data}" alt="{alt}" class="animlib-figure">'


def _with_alt(fig, alt: str | None, description: str):
    """Attach alt text (given, or the description) to a figure made here; returns the figure.

    ``fig.animlib_alt()`` returns the text; everything stored is picklable, like the figure.
    """
    fig._animlib_alt = alt
    fig._animlib_description = description
    fig._repr_html_ = functools.partial(_figure_html, fig)
    fig.animlib_alt = functools.partial(_figure_alt, fig)
    return fig


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
    alt: str | None = None,
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
    alt : str, optional
        Text alternative of the figure (its ``<img>`` alt in the book); by default it names the
        grid's size, the titles and the figure's suptitle (``fig.animlib_alt()`` shows it).

    Returns
    -------
    matplotlib.figure.Figure
        Closed (not tracked by pyplot): display it as a cell's last expression or with ``display``.
        Displayed, it is an image with alt text (``text/html``) as well as ``image/png``.
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
    shape = f"{rows} rows of {ncol}" if rows > 1 else "in a row"
    named = f": {_join(titles)}" if titles is not None else ""
    return _with_alt(fig, alt, f"{n} images {shape}{named}" if n > 1 else f"An image{named}")


def storyboard(
    rows: Union[Sequence[Frames], Mapping[str, Frames]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    value_range: Sequence[float] = (0, 1),
    figsize: Tuple[float, float] | None = None,
    alt: str | None = None,
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
    alt : str, optional
        Text alternative; by default the rows' and columns' labels (see :func:`image_grid`).

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
    text = f"Storyboard of {n_rows} row{'s' if n_rows > 1 else ''} of up to {n_cols} frames"
    if row_labels is not None:
        text += f"; rows: {_join(row_labels)}"
    if col_labels is not None:
        text += f"; columns: {_join(col_labels)}"
    return _with_alt(fig, alt, text)


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
    alt: str | None = None,
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
    alt : str, optional
        Text alternative; by default it names the curves (see :func:`image_grid`). Not used with
        ``ax`` (the figure is then the caller's).

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
    if not own:
        return fig
    _pyplot().close(fig)
    how = ", ".join(w for w, on in [("smoothed", smooth > 0), ("log scale", logy)] if on)
    how = f" ({how})" if how else ""
    if separate and len(keys) > 1:
        text = f"{len(keys)} stacked line plots against the training step{how}: {_join(keys)}"
    else:
        text = f"Line plot of {_join(keys)} against the training step{how}"
    return _with_alt(fig, alt, text)
