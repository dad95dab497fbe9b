"""Data for the book: synthetic generators with ground truth, and loaders for prepared real data.

- :mod:`animlib.data.download`: verified, resumable downloads and safe extraction (used by
  ``data_scripts/``; needs only the standard library and ``tqdm``).
- :mod:`animlib.data.images`: sample photographs and a painterly style image, made or shipped
  locally.
- :mod:`animlib.data.rings`: points on a ring of Gaussians (chapter 6's toy GAN).
- :mod:`animlib.data.prepared`: one loader per script in ``data_scripts/`` (KITTI, NYU v2, DIW,
  IMDB-WIKI, VoxCeleb, Weizmann) and your own cinemagraph clips.
- :mod:`animlib.data.folders`: :class:`FrameFolderDataset`, :class:`ImageFolderDataset` and
  :func:`require_prepared` for the folders the data scripts write.
- :mod:`animlib.data.fake_prepared`: small fake folders in each data script's exact output format
  (plus chapter 1's clip folder and chapter 3's photo folder), for tests and rehearsals of the
  ``full`` profile; ``python -m animlib.data.fake_prepared OUT`` writes them all.

The folder datasets are imported on first use, so that the data scripts (which import only the
download layer) start without loading PyTorch.
"""

from __future__ import annotations

from typing import Any

from .download import (
    PREPARED_MARKER,
    RECORDED_NOT_PUBLISHED,
    ChecksumError,
    DownloadError,
    Manifest,
    OfflineError,
    UnsafeArchiveError,
    download,
    extract_archive,
    fetch,
)

_FOLDER_NAMES = ("FrameFolderDataset", "ImageFolderDataset", "require_prepared", "load_image")

__all__ = [
    "PREPARED_MARKER",
    "RECORDED_NOT_PUBLISHED",
    "ChecksumError",
    "DownloadError",
    "Manifest",
    "OfflineError",
    "UnsafeArchiveError",
    "download",
    "extract_archive",
    "fetch",
    *_FOLDER_NAMES,
]


#: Submodules loaded on first attribute access (``animlib.data.rings``).
_SUBMODULES = ("actions", "blobs", "depth_scenes", "download", "faces", "fake_prepared", "folders", "images", "landmarks",
               "prepared", "rings", "scenes")


def __getattr__(name: str) -> Any:
    if name in _FOLDER_NAMES:
        from . import folders

        return getattr(folders, name)
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'animlib.data' has no attribute {name!r}")
