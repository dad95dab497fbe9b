"""Devices, seeding, profiles, and the record every chapter run leaves behind.

Devices are resolved at call time (``get_device("auto")``: CUDA, then Apple MPS, then CPU), never
when a module is defined. The precision a run trains in is :mod:`animlib.precision`'s business; the
record (``metrics.json``) includes what it chose and why. Profiles size every experiment: ``quick``
is the CPU setting that the book build and CI execute in minutes; ``full`` is the GPU setting at the
source papers' scale.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from . import __version__
from .files import atomic_write_text, sha256_file
from .precision import amp_label, precision_provenance
from .rehearsal import WorkCap, cap_items, work_cap

PROFILES = ("quick", "full")

__all__ = [
    "PROFILES",
    "get_device",
    "seed_everything",
    "step_generator",
    "seeded",
    "check_profile",
    "ProfileSettings",
    "training_steps",
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


def step_generator(seed: int, step: int, device: Union[str, torch.device] = "cpu") -> torch.Generator:
    """The generator for draw number ``step`` of a run seeded with ``seed``: one per step, so a
    sampler's ``step``-th batch is the same whether the run got there straight or by resuming."""
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + int(step))


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with torch's global RNG seeded by ``seed``, then give the caller's RNG back
    untouched: the way to build the same initial weights for the same seed, whatever ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


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
