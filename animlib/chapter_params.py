"""Chapter parameters that a chapter accepts but does not use.

Every chapter has the same parameters cell (``profile``, ``device``, ``data_root``, ``seed``,
``out_dir``), so that one command line runs any chapter. A chapter that has no use for one of them
(chapter 0 trains on synthetic blobs only, chapter 2 needs scenes whose true motion is known) says
so with :func:`ignored_parameter`: a value that differs from the default then gives a visible,
one-line warning instead of being dropped in silence. ``tests/test_chapter_parameters.py`` checks
that every chapter reads each of its parameters, or declares it ignored this way.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["ignored_parameter"]


def ignored_parameter(name: str, value: Any, why: str, default: Any = None) -> None:
    """Warn (``UserWarning``) that parameter ``name`` was set to ``value`` but this chapter ignores it.

    Nothing happens when ``value`` is ``default`` (``None`` unless given), so a chapter run with its
    default parameters prints nothing. ``why`` says in a few words why the chapter does not use it.
    """
    unchanged = value is None if default is None else value == default
    if unchanged:
        return
    warnings.warn(f"{name}={str(value)!r} is ignored: {why}", UserWarning, stacklevel=2)
