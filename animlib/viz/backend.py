"""Matplotlib without side effects: pyplot only on first use, a headless backend where there is no display."""

from __future__ import annotations

import os
import sys

import matplotlib

__all__: list = []


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
