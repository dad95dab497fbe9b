"""animlib: the library behind *Making Still Images Move*.

Every method the book teaches lives here, one family per module; the chapters import it and never
re-implement it.

- :mod:`animlib.runtime`: devices, seeding, profiles and the chapter run record (``metrics.json``).
- :mod:`animlib.engine`: the one training loop (AMP, progress, clipping, NaN stop, atomic
  checkpoints with exact resume, DistributedDataParallel).
- :mod:`animlib.viz`: animations that play in the static book, GIF/MP4 files, grids, storyboards,
  training curves.
- :mod:`animlib.gan`: adversarial losses and the alternating discriminator/generator step.
- :mod:`animlib.data`: synthetic generators with ground truth, folder datasets for prepared real
  data, and the verified downloader used by ``data_scripts/``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
