"""Opt-in ``torch.compile`` for the Trainer's models."""

from __future__ import annotations

import os
from typing import Optional, Union

import torch

__all__ = ["compile_mode", "separate_compile_cache"]


_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(value: Union[bool, str, None] = None) -> Optional[str]:
    """The ``torch.compile`` mode a :class:`Trainer` uses, or ``None`` for eager execution.

    ``value``: ``False``/``True``, a mode name, or ``None`` to read ``ANIMLIB_COMPILE`` from the
    environment (``""``/``"0"``: eager, ``"1"``: the default mode, else a mode name).
    """
    if value is None:
        env = os.environ.get("ANIMLIB_COMPILE", "").strip().lower()
        value = False if env in ("", "0", "false", "no") else (True if env in ("1", "true", "yes") else env)
    if value is False:
        return None
    if value is True:
        return "default"
    if isinstance(value, str) and value in _COMPILE_MODES:
        return value
    raise ValueError(f"compile must be True, False or one of {_COMPILE_MODES} (also in ANIMLIB_COMPILE), "
                     f"got {value!r}")


def separate_compile_cache() -> None:
    """Keep torch.compile's on-disk cache apart per CPU kernel set.

    Inductor's cache key does not include ``ATEN_CPU_CAPABILITY``: kernels compiled under one
    setting (e.g. AVX-512) were reused under another (``avx2``, ``default``) and the compiled
    training step then returned losses of 1e31 on the same machine. Unless the user chose a cache
    folder (``TORCHINDUCTOR_CACHE_DIR``), each kernel set gets its own subfolder of the default one.
    """
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # an older torch: its layout differs, leave its cache alone
        return
    default = os.path.abspath(default_cache_dir())
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # (importing torch._dynamo, which any optimiser does, writes the default folder into the variable)
    if chosen and os.path.abspath(chosen) != default:
        return
    capability = torch.backends.cpu.get_cpu_capability().lower()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(default, f"animlib-cpu-{capability}")
