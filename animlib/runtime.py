"""Devices, seeding, profiles, precision capability, and the record every chapter run leaves behind.

Devices are resolved at call time (``get_device("auto")``: CUDA, then Apple MPS, then CPU), never
when a module is defined. Whether this CPU computes bfloat16 natively is *measured*
(:func:`cpu_bf16_support`): a CPU without bf16 hardware emulates it, tens of times slower than fp32. Profiles size every experiment: ``quick`` is the CPU setting that the book
build and CI execute in minutes; ``full`` is the GPU setting at the source papers' scale.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from . import __version__
from .files import atomic_write_text, sha256_file
from .rehearsal import WorkCap, cap_items, work_cap

PROFILES = ("quick", "full")

__all__ = [
    "PROFILES",
    "get_device",
    "seed_everything",
    "check_profile",
    "ProfileSettings",
    "training_steps",
    "CpuBf16Support",
    "cpu_bf16_support",
    "precision_provenance",
    "WorkCap",
    "work_cap",
    "cap_items",
    "peak_memory_mb",
    "ChapterRun",
    "start_chapter",
]


def get_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """Resolve ``device``: ``"auto"``/``None`` picks CUDA, then MPS, then CPU.

    An explicit request for a device that is not present raises a ``RuntimeError`` that says so,
    instead of failing later inside a kernel.
    """
    if isinstance(device, str):
        device = device.strip().lower()
        device = {"gpu": "cuda", "cuda:gpu": "cuda"}.get(device, device)
        if device.startswith("gpu:"):
            device = "cuda:" + device[4:]
        kind, _, index = device.partition(":")
        if kind not in ("auto", "cpu", "cuda", "mps") or (index and not index.isdigit()) or (index and kind != "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (also 'gpu'), got {device!r}")
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={str(device)!r} was requested but CUDA is not available on this machine; "
            "use device='auto' or 'cpu'."
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError(
                f"device={str(device)!r} was requested but Apple MPS is not available; use 'auto' or 'cpu'."
            )
    return dev


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


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all CUDA devices too); return a seeded CPU generator.

    ``deterministic=True`` also asks torch for deterministic algorithms (and cuDNN to stop
    benchmarking), which makes GPU runs repeatable at some cost in speed.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return torch.Generator().manual_seed(seed)


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is one of :data:`PROFILES`, else raise a clear ``ValueError``."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


class ProfileSettings:
    """The one way an experiment is sized by profile.

    Each method module has a settings dataclass built on this class (``VAESettings``,
    ``CinemagraphSettings``, ...): its fields are the sizes and knobs a chapter trains with, none
    has a default, and the classmethods :meth:`quick` and :meth:`full` set every one of them, so
    both profiles always have the same keys. Chapters call ``XSettings.for_profile(run.profile)``
    and read ``settings.field``.
    """

    @classmethod
    def quick(cls):
        """The CPU profile: minutes, small data."""
        raise NotImplementedError(f"{cls.__name__} must define quick()")

    @classmethod
    def full(cls):
        """The GPU profile: the sources' scale."""
        raise NotImplementedError(f"{cls.__name__} must define full()")

    @classmethod
    def for_profile(cls, profile: str):
        """``quick()`` or ``full()``; an unknown profile raises a clear ``ValueError``."""
        return cls.quick() if check_profile(profile) == "quick" else cls.full()


def training_steps(steps: Optional[int], epochs: Optional[int], batches_per_epoch: int, who: str = "settings") -> int:
    """A training length given as steps or as epochs: ``steps``, else ``epochs × batches_per_epoch``."""
    if steps is not None:
        return steps
    if epochs is None:
        raise ValueError(f"{who} needs steps or epochs")
    return epochs * batches_per_epoch


def peak_memory_mb(device: Union[str, torch.device, None] = None) -> Dict[str, Optional[float]]:
    """This process's peak resident memory and, on CUDA, the peak memory torch allocated (MiB)."""
    peak_rss = None
    try:
        import resource

        peak_rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
        if platform.system() == "Darwin":  # bytes on macOS
            peak_rss = round(peak_rss / 1024, 1)
    except (ImportError, OSError):
        pass
    peak_gpu = None
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        peak_gpu = round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, 1)
    return {"peak_rss_mb": peak_rss, "peak_gpu_mb": peak_gpu}


def _git_commit() -> Optional[str]:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


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


@dataclass
class ChapterRun:
    """What one execution of a chapter needs and leaves: device, profile, seed, output folder.

    Create it with :func:`start_chapter`. ``write_metrics`` stores the chapter's measured numbers
    with their provenance (profile, device, seconds, git commit, library versions, hashes of any
    pretrained weights) in ``<out_dir>/metrics.json``.
    """

    name: str
    profile: str
    device: torch.device
    seed: int
    out_dir: Path
    data_root: Optional[Path] = None
    started: float = field(default_factory=time.perf_counter)
    weights: Dict[str, str] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def path(self, name: str) -> Path:
        """A file path inside ``out_dir``."""
        return self.out_dir / name

    def glue(self, name: str, markdown: str) -> None:
        """Make the Markdown text ``markdown`` available to the page's prose as ``{glue:md}`name```.

        The book's sentences about a result quote the run they stand next to this way, never a
        number from an earlier run. Uses MyST-NB's ``glue`` (installed with the book's tools);
        elsewhere (a plain Jupyter or Colab session) it does nothing.
        """
        if not isinstance(markdown, str):
            raise TypeError(f"glue {name!r}: pass the text as a str, got {type(markdown).__name__}")
        try:
            from IPython.display import Markdown
            from myst_nb import glue
        except ImportError:
            return
        glue(name, Markdown(markdown), display=False)

    def expect(self, condition: bool, claim: str) -> None:
        """Check a result the chapter relies on: raise ``AssertionError(claim)`` if it does not hold.

        In a run whose work is capped (:class:`WorkCap`: a rehearsal of the full profile's code paths
        with a few steps), results mean nothing, so a failed check only prints that it was not
        reached.
        """
        if not condition:
            if work_cap().active:
                print(f"(work capped: not checked: {claim})")
            else:
                raise AssertionError(claim)

    def record_weights(self, name: str, path_or_hash: Union[str, os.PathLike]) -> str:
        """Note a pretrained weight file used by the chapter (its SHA-256 goes into metrics.json)."""
        value = str(path_or_hash)
        digest = value if (len(value) == 64 and not os.path.exists(value)) else sha256_file(value)
        self.weights[name] = digest
        return digest

    def write_metrics(self, metrics: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
        """Write ``metrics`` plus provenance to ``<out_dir>/metrics.json`` (atomically) and return it."""
        record: Dict[str, Any] = {}
        for k, v in {**metrics, **extra}.items():
            if isinstance(v, torch.Tensor):
                v = v.item() if v.numel() == 1 else v.tolist()
            elif isinstance(v, np.generic):
                v = v.item()
            record[k] = v
        record.update(
            chapter=self.name,
            profile=self.profile,
            device=str(self.device),
            seed=self.seed,
            seconds=round(self.seconds, 2),
            git_commit=_git_commit(),
            python=platform.python_version(),
            torch=torch.__version__,
            animlib=__version__,
            pretrained_weights_sha256=dict(self.weights),
            **precision_provenance(),
            **peak_memory_mb(self.device),
        )
        cap = work_cap()
        if cap.active:
            record["work_cap"] = cap.as_dict()  # a rehearsal: the numbers above mean nothing
        from .engine import amp_label  # engine imports this module

        record["precision"] = amp_label("auto", self.device)  # what every chapter's amp="auto" trains in
        self.out_dir.mkdir(parents=True, exist_ok=True)
        target = self.out_dir / "metrics.json"
        atomic_write_text(target, json.dumps(record, indent=2, sort_keys=False))
        return record


def start_chapter(
    name: str,
    profile: str = "quick",
    device: Union[str, torch.device, None] = "auto",
    seed: int = 0,
    out_dir: Union[str, os.PathLike, None] = None,
    data_root: Union[str, os.PathLike, None] = None,
    deterministic: bool = False,
    threads: Optional[int] = None,
) -> ChapterRun:
    """Validate a chapter's parameters, pick the device, seed everything, make ``out_dir``.

    ``threads`` caps torch's CPU threads (the book build runs on 2 cores).
    """
    check_profile(profile)
    dev = get_device(device)
    seed_everything(seed, deterministic=deterministic)
    if threads is not None:
        torch.set_num_threads(threads)
    out = Path(out_dir if out_dir is not None else Path("outputs") / name)
    out.mkdir(parents=True, exist_ok=True)
    root = None
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.exists():
            raise FileNotFoundError(
                f"data_root={str(data_root)!r} does not exist. Prepare a dataset with the matching "
                "script in data_scripts/ (see its --help), or leave data_root=None for synthetic data."
            )
    return ChapterRun(name=name, profile=profile, device=dev, seed=seed, out_dir=out, data_root=root)
