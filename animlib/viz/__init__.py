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

from .export import save_gif, save_mp4
from .figures import ema, image_grid, make_grid_array, plot_history, storyboard
from .frames import to_uint8_frames
from .player import animate, animate_side_by_side
from .widgets import scrub_widget

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
