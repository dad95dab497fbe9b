"""Interactive scrubbing through frames (ipywidgets) that also works in the static book, with no kernel."""

from __future__ import annotations

import base64
import functools
import html
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
        ``VBox([Dropdown?, view, IntSlider])``: every frame is precomputed (a PNG in an HTML
        ``<img>`` with alt text, in an ``ipywidgets.Stack`` per sequence; ``view.value`` is the PNG
        bytes on show), and the slider and dropdown pick the frame both through kernel callbacks and
        through browser-side links (``jsdlink``), so the saved widget state also scrubs in the static
        book, with no kernel. When ipywidgets is not installed, the static :func:`animate` /
        :func:`animate_side_by_side` player instead.
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
    names = list(pngs)
    first = names[0]
    n_max = max(len(p) for p in pngs.values())
    # One HTML <img> per frame (with alt text; ipywidgets' Image has none), in one Stack per sequence,
    # padded to the longest with its last frame (a shorter sequence holds it, as in the players).
    stacks = []
    for name, seq in pngs.items():
        shown = [
            widgets.HTML(value=_img_tag(png, f"{name + ', ' if named else ''}{description} {k} of {len(seq) - 1}"))
            for k, png in enumerate(seq)
        ]
        stacks.append(widgets.Stack(shown + [shown[-1]] * (n_max - len(seq)), selected_index=0))
    view = _frame_view_class()(pngs, children=stacks, selected_index=0)
    slider = widgets.IntSlider(value=0, min=0, max=len(pngs[first]) - 1, description=description)
    dropdown = widgets.Dropdown(options=names, value=first, description="show") if named else None

    def _update(_change: Any = None) -> None:
        k = names.index(dropdown.value) if dropdown is not None else 0
        slider.max = len(pngs[names[k]]) - 1  # clamps the value if the new sequence is shorter
        view.selected_index = k
        for stack in stacks:
            stack.selected_index = slider.value

    slider.observe(_update, names="value")
    if dropdown is not None:
        dropdown.observe(_update, names="value")
    # The same links in the browser, so the widget also works without a kernel: in the static book,
    # whose saved widget state (nbclient stores it) is rendered by the ipywidgets HTML manager.
    links = [widgets.jsdlink((slider, "value"), (stack, "selected_index")) for stack in stacks]
    if dropdown is not None:
        links.append(widgets.jsdlink((dropdown, "index"), (view, "selected_index")))
    children = ([dropdown] if dropdown is not None else []) + [view, slider]
    box = widgets.VBox(children)
    box._animlib_links = links  # keep the link widgets alive with the box
    return box


def _img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}" style="max-width:none">'


@functools.cache
def _frame_view_class():
    import ipywidgets as widgets

    class _FrameView(widgets.Stack):
        """The frame on show: a Stack (one child Stack per sequence, one HTML image per frame).

        ``value`` is the PNG bytes of the frame on show, as ``ipywidgets.Image.value`` would be.
        """

        def __init__(self, pngs, **kwargs):
            super().__init__(**kwargs)
            self._pngs = list(pngs.values())

        @property
        def value(self) -> bytes:
            seq = self._pngs[self.selected_index or 0]
            return seq[min(self.children[self.selected_index or 0].selected_index or 0, len(seq) - 1)]

    return _FrameView

