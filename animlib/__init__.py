"""animlib: the library behind *Making Still Images Move*.

Every method the book teaches lives here, one family per module; the chapters import it and never
re-implement it. The core API (devices and chapter runs, the training engine, atomic files) is
importable from the package itself, ``from animlib import Trainer, start_chapter``; every module
is reachable as an attribute, ``animlib.style``, imported when first used.

Shared pieces:

- :mod:`animlib.runtime`: devices, seeding, profiles, the CPU's bfloat16 capability and the chapter
  run record (``metrics.json``).
- :mod:`animlib.chapter_params`: a warning for a chapter parameter that a chapter does not use.
- :mod:`animlib.rehearsal`: the one switch that caps a run's work (the full profile rehearsed on
  any machine in minutes, a GPU timed in seconds).
- :mod:`animlib.engine`: the one training loop (AMP, progress, clipping, NaN stop, atomic
  checkpoints with exact resume, DistributedDataParallel).
- :mod:`animlib.files`: atomic file writes and SHA-256 hashes, used by everything that writes.
- :mod:`animlib.viz`: animations that play in the static book, GIF/MP4 files, grids, storyboards,
  training curves.
- :mod:`animlib.backbones`: frozen ImageNet networks (VGG, MobileNetV2) and their verified weights.
- :mod:`animlib.metrics`: measurements of generated images (sharpness, feature distance).
- :mod:`animlib.gan`: adversarial losses, the alternating discriminator/generator step, a 2-D toy GAN.
- :mod:`animlib.data`: synthetic generators with ground truth (``blobs``, ``scenes``,
  ``depth_scenes``, ``faces``, ``actions``, ``rings``), facial landmarks (``landmarks``), local images (``images``), folder datasets
  for prepared real data, and the verified downloader used by ``data_scripts/``.

Method modules, one family each: :mod:`animlib.nextframe` (chapter 0), :mod:`animlib.convlstm`,
:mod:`animlib.cinemagraph` and :mod:`animlib.rl` (Part I), :mod:`animlib.style`,
:mod:`animlib.fast_style` and :mod:`animlib.depth` (Part II), :mod:`animlib.vae` and
:mod:`animlib.vaegan` (Part III, scored by :mod:`animlib.face_regressor`), :mod:`animlib.video_ae` (Part IV,
judged by :mod:`animlib.action_classifier`),
:mod:`animlib.reenact` (Part V).
"""

import importlib
from typing import Any

__version__ = "0.1.0"

#: Modules loaded on first attribute access (``animlib.style``), so ``import animlib`` stays light.
SUBMODULES = (
    "action_classifier", "backbones", "chapter_params", "cinemagraph", "convlstm", "data", "depth", "engine",
    "exercises", "face_regressor", "fast_style", "files", "gan", "metrics", "nextframe", "precision", "reenact", "rehearsal", "rl",
    "runtime", "style", "vae", "vaegan", "video_ae", "viz",
)

#: The core API, importable from the package: name -> the module that defines it. Loaded on first
#: use like the modules, so that the data scripts (which need only ``animlib.data.download``) start
#: without PyTorch.
CORE = {
    "ChapterRun": "runtime", "check_profile": "runtime", "get_device": "runtime",
    "seed_everything": "runtime", "start_chapter": "runtime",
    "NonFiniteLossError": "engine", "Trainer": "engine", "train_supervised": "engine",
    "load_checkpoint": "engine", "save_checkpoint": "engine", "SupervisedStep": "engine",
    "amp_label": "precision", "cpu_bf16_support": "precision", "resolve_amp": "precision",
    "atomic_target": "files", "atomic_torch_save": "files", "atomic_write_text": "files", "sha256_file": "files",
}

__all__ = ["__version__", *CORE]


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in CORE:
        return getattr(importlib.import_module(f".{CORE[name]}", __name__), name)
    raise AttributeError(f"module 'animlib' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(SUBMODULES) | set(CORE))
