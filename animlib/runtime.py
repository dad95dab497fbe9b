"""Devices, seeding, profiles, and the record every chapter run leaves behind.

Devices are resolved at call time (``get_device("auto")``: CUDA, then Apple MPS, then CPU), never
when a module is defined. Profiles size every experiment: ``quick`` is the CPU setting that the book
build and CI execute in minutes; ``full`` is the GPU setting at the source papers' scale.
"""

from __future__ import annotations

import hashlib
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

PROFILES = ("quick", "full")

__all__ = [
    "PROFILES",
    "get_device",
    "seed_everything",
    "check_profile",
    "pick",
    "sha256_file",
    "ChapterRun",
    "start_chapter",
]


def get_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """Resolve ``device``: ``"auto"``/``None`` picks CUDA, then MPS, then CPU.

    An explicit request for a device that is not present raises a ``RuntimeError`` that says so,
    instead of failing later inside a kernel.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
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


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is one of :data:`PROFILES`, else raise a clear ``ValueError``."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


def pick(profile: str, quick: Any, full: Any) -> Any:
    """Choose a setting by profile: ``pick(profile, quick=200, full=10_000)``."""
    return quick if check_profile(profile) == "quick" else full


def sha256_file(path: Union[str, os.PathLike], chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


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

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` or ``full`` by this run's profile."""
        return pick(self.profile, quick, full)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def path(self, name: str) -> Path:
        """A file path inside ``out_dir``."""
        return self.out_dir / name

    def record_weights(self, name: str, path_or_hash: Union[str, os.PathLike]) -> str:
        """Note a pretrained weight file used by the chapter (its SHA-256 goes into metrics.json)."""
        value = str(path_or_hash)
        digest = value if (len(value) == 64 and not os.path.exists(value)) else sha256_file(value)
        self.weights[name] = digest
        return digest

    def write_metrics(self, metrics: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
        """Write ``metrics`` plus provenance to ``<out_dir>/metrics.json`` (atomically) and return it."""
        import animlib

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
            animlib=animlib.__version__,
            pretrained_weights_sha256=dict(self.weights),
        )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        target = self.out_dir / "metrics.json"
        tmp = target.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
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
