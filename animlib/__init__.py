"""animlib: the library behind *Making Still Images Move*.

Every method the book teaches lives here, one family per module; the chapters import it and never
re-implement it.

- :mod:`animlib.runtime`: devices, seeding, profiles and the chapter run record (``metrics.json``).
- :mod:`animlib.engine`: the one training loop (AMP, progress, clipping, NaN stop, atomic
  checkpoints with exact resume, DistributedDataParallel).
- :mod:`animlib.viz`: animations that play in the static book, GIF/MP4 files, grids, storyboards,
  training curves.
- :mod:`animlib.gan`: adversarial losses and the alternating discriminator/generator step.
- :mod:`animlib.data`: synthetic generators with ground truth (``blobs``, ``scenes``,
  ``depth_scenes``, ``faces``, ``actions``), folder datasets for prepared real data, and the
  verified downloader used by ``data_scripts/``.

Method modules, one family each: :mod:`animlib.nextframe` (chapter 0), :mod:`animlib.convlstm`,
:mod:`animlib.cinemagraph` and :mod:`animlib.rl` (Part I), :mod:`animlib.style` and
:mod:`animlib.depth` (Part II), :mod:`animlib.vae` (Part III, with :mod:`animlib.gan`),
:mod:`animlib.video_ae` (Part IV).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
