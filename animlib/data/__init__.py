"""Data for the book: synthetic generators with ground truth, and loaders for prepared real data.

- :mod:`animlib.data.download`: verified, resumable downloads and safe extraction (used by
  ``data_scripts/``; needs only the standard library and ``tqdm``).
- :mod:`animlib.data.folders`: :class:`FrameFolderDataset`, :class:`ImageFolderDataset` and
  :func:`require_prepared` for the folders the data scripts write.

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
    sha256_file,
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
    "sha256_file",
    *_FOLDER_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _FOLDER_NAMES:
        from . import folders

        return getattr(folders, name)
    raise AttributeError(f"module 'animlib.data' has no attribute {name!r}")
