"""Interactive scrubbing through frames in a live kernel (ipywidgets), with a static fallback."""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence, Union

import numpy as np
from PIL import Image

from .frames import Frames, _auto_scale, _check_int_scale, _upscale, to_uint8_frames
from .player import animate, animate_side_by_side

__all__ = ["scrub_widget"]


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
