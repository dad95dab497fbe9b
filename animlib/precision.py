"""Which precision a run trains in, and why: measured capability, never an assumption.

- On a CPU, bfloat16 is chosen only where this CPU computes it natively, *measured*
  (:func:`cpu_bf16_support`): a CPU without bf16 hardware emulates it, tens of times slower than
  fp32, and ``ONEDNN_MAX_CPU_ISA=AVX2`` or a virtual machine can hide instructions oneDNN announces.
- On CUDA, by the device's native tensor-core formats (:func:`cuda_autocast_dtype`): bf16 from
  compute capability 8.0, fp16 on 7.x (T4, V100), fp32 below. ``torch.cuda.is_bf16_supported()``
  says True on 7.x too, where bf16 is emulated, so it cannot decide.
- :func:`resolve_amp` turns a request (``"auto"``, ``"bf16"``, ``"fp16"``, ``None``) into an
  autocast dtype; :func:`amp_label` names it; :func:`precision_provenance` records the CPU facts
  behind the choice in ``metrics.json``.

The training loop (:mod:`animlib.engine`) and the run record (:mod:`animlib.runtime`) both read it.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Union

import torch

__all__ = [
    "BF16_MIN_SPEEDUP",
    "CpuBf16Support",
    "cpu_bf16_support",
    "cuda_autocast_dtype",
    "resolve_amp",
    "amp_label",
    "precision_provenance",
]


@dataclass(frozen=True)
class CpuBf16Support:
    """What :func:`cpu_bf16_support` found out about bfloat16 on this CPU.

    ``native``: oneDNN reports bf16 instructions (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``).
    ``fp32_seconds`` / ``bf16_seconds``: median time of one small convolution forward+backward in
    each precision (bf16 under ``torch.autocast``). ``speedup = fp32_seconds / bf16_seconds``: above 1
    bf16 is faster. ``fast``: bf16 is native and not emulated (measured at least
    :data:`BF16_MIN_SPEEDUP` times the speed of fp32), so ``amp="auto"`` picks it. ``reason``: one sentence for a printout.
    """

    native: bool
    fp32_seconds: float
    bf16_seconds: float
    speedup: float
    fast: bool
    threads: int
    reason: str

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


# The probe must find bf16 at least half as fast as fp32 for bf16 to be chosen. Native bf16
# convolutions measure 1.3-2.3x faster (the slower figure with ATEN_CPU_CAPABILITY=default),
# emulated ones 10-50x slower; on a busy machine a native one measured 0.95x. The threshold sits far
# from both groups, so the choice (and with it a chapter's numbers) is the same from run to run.
BF16_MIN_SPEEDUP = 0.5
_BF16_LOCK = threading.Lock()
_BF16_CACHE: Dict[int, CpuBf16Support] = {}


def _mkldnn_bf16_native() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or an older torch
        return False


def _conv_step_timer(dtype: Optional[torch.dtype]):
    """A function timing one small conv forward+backward on the CPU (``dtype`` None: fp32)."""
    g = torch.Generator().manual_seed(0)
    w1 = (torch.randn(64, 32, 3, 3, generator=g) * 0.05).requires_grad_(True)
    w2 = (torch.randn(64, 64, 3, 3, generator=g) * 0.05).requires_grad_(True)
    x = torch.randn(4, 32, 32, 32, generator=g)

    def once() -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            y = torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(x, w1, padding=1)), w2, padding=1)
        y.float().square().mean().backward()
        return time.perf_counter() - t0

    once()  # warm-up: kernel selection and first-touch allocation
    return once


def _median(values) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def cpu_bf16_support(refresh: bool = False) -> CpuBf16Support:
    """Does this CPU compute bfloat16 natively, and is bf16 autocast faster than fp32 here?

    Combines oneDNN's own report with a one-shot timed probe (a small convolution forward+backward
    in fp32 and under bf16 autocast, medians of five after a warm-up; about 0.2 s where bf16 is
    native, 1-2 s where it is emulated). The report alone is not enough: ``ONEDNN_MAX_CPU_ISA=AVX2`` or a virtual machine
    can disable the instructions it announces, and then bf16 runs emulated, tens of times slower.
    The result is cached per process and thread count; ``refresh=True`` measures again.
    """
    threads = torch.get_num_threads()
    with _BF16_LOCK:
        if not refresh and threads in _BF16_CACHE:
            return _BF16_CACHE[threads]
        native = _mkldnn_bf16_native()
        with torch.random.fork_rng(devices=[]):
            fp32, bf16 = _conv_step_timer(None), _conv_step_timer(torch.bfloat16)
            t32, first = fp32(), bf16()
            if first > 4 * t32:  # an emulated path is 10-50x slower: one measurement settles it
                t16 = first
            else:  # interleaved pairs, so that load from other processes hits both precisions alike
                pairs = [(t32, first)] + [(fp32(), bf16()) for _ in range(4)]
                t32, t16 = _median(a for a, _ in pairs), _median(b for _, b in pairs)
        speedup = t32 / max(t16, 1e-9)
        fast = native and speedup >= BF16_MIN_SPEEDUP
        if fast:
            reason = f"native bf16: bf16 autocast measured {speedup:.1f}x the speed of fp32"
        elif native:
            reason = (f"oneDNN reports bf16 but it measured {speedup:.2f}x the speed of fp32 "
                      "(disabled or emulated here), so fp32 is used")
        else:
            reason = f"no bf16 instructions: bf16 is emulated, measured {1 / max(speedup, 1e-9):.1f}x slower than fp32"
        info = CpuBf16Support(native=native, fp32_seconds=t32, bf16_seconds=t16, speedup=speedup, fast=fast,
                              threads=threads, reason=reason)
        _BF16_CACHE[threads] = info
        return info


_WARNED_EMULATED_BF16 = False


def cuda_autocast_dtype(device: Union[str, torch.device]) -> Optional[torch.dtype]:
    """The precision ``amp="auto"`` trains in on this CUDA device, by its native tensor-core formats.

    Compute capability 8.0 and above (A100, RTX 30xx/40xx, H100, ...) has bf16 tensor cores: bf16.
    7.x (V100, T4, RTX 20xx) has fp16 tensor cores but no bf16 ones: fp16 (with a gradient scaler).
    ``torch.cuda.is_bf16_supported()`` is True there too, because bf16 can be *emulated*, much more
    slowly. Below 7.0 (Pascal and older) neither is native: fp32 (``None``). The capability read is
    that of ``device`` itself (``cuda:1`` may differ from the current device).
    """
    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, _minor = torch.cuda.get_device_capability(index)
    if major >= 8:
        return torch.bfloat16
    if major == 7:
        return torch.float16
    return None


def resolve_amp(amp: Union[str, bool, None], device: torch.device) -> Optional[torch.dtype]:
    """Turn an ``amp`` request into an autocast dtype (or None for full precision).

    ``None``/``False``/``"off"``: fp32. ``"auto"``: on CUDA by the device's native tensor-core
    formats (:func:`cuda_autocast_dtype`: bf16 from compute capability 8.0, fp16 on 7.x, else fp32); on the
    CPU bf16 only where this CPU computes it natively *and* a timed probe finds it faster
    (:func:`cpu_bf16_support`), else fp32; fp32 on MPS. ``"bf16"``: bf16 on any
    device; on a CPU without native bf16 it still runs, with a one-time warning that says how much
    slower it measured. ``"fp16"``: CUDA or MPS only.
    """
    global _WARNED_EMULATED_BF16
    if amp in (None, False, "off", "fp32", "none"):
        return None
    device = torch.device(device)
    if amp is True or amp == "auto":
        if device.type == "cuda":
            return cuda_autocast_dtype(device)
        if device.type == "cpu":
            return torch.bfloat16 if cpu_bf16_support().fast else None
        return None
    if amp in ("bf16", "bfloat16", torch.bfloat16):
        if device.type == "cpu" and not _WARNED_EMULATED_BF16:
            info = cpu_bf16_support()
            if not info.fast:
                _WARNED_EMULATED_BF16 = True
                warnings.warn(
                    f"amp='bf16' on this CPU: {info.reason} (a small convolution took "
                    f"{info.bf16_seconds * 1e3:.1f} ms in bf16 vs {info.fp32_seconds * 1e3:.1f} ms in fp32). "
                    "Training will run, but slower; use amp='auto' to let the library choose.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return torch.bfloat16
    if amp in ("fp16", "float16", "half", torch.float16):
        if device.type == "cpu":
            raise ValueError("amp='fp16' is not supported on the CPU; use amp='auto' (bf16 where this CPU "
                             "computes it natively, else fp32), 'bf16' or None.")
        return torch.float16
    raise ValueError(f"amp must be None, 'auto', 'bf16' or 'fp16', got {amp!r}")


def amp_label(amp: Union[str, bool, None], device: Union[str, torch.device]) -> str:
    """What ``amp`` resolves to on ``device``, as a name: ``"bf16"``, ``"fp16"`` or ``"fp32"``."""
    dtype = resolve_amp(amp, torch.device(device))
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def precision_provenance() -> Dict[str, Any]:
    """The CPU facts that decide precision and kernels, for ``metrics.json``.

    ``cpu_capability``: the ATen kernel set in use (``ATEN_CPU_CAPABILITY`` can lower it);
    ``onednn_max_cpu_isa``: the oneDNN cap if one is set; ``cpu_bf16``: the probe's result if this
    process ran it (it runs on the first ``amp="auto"`` or ``"bf16"`` on the CPU).
    """
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # torch < 2.1
        capability = None
    probed = _BF16_CACHE.get(torch.get_num_threads()) or next(iter(_BF16_CACHE.values()), None)
    return {
        "cpu_capability": capability,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cpu_bf16": None if probed is None else {
            "native": probed.native, "fast": probed.fast, "speedup": round(probed.speedup, 3),
        },
    }
