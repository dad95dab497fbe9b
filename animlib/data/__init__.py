"""Data for the book: synthetic generators with ground truth, and loaders for prepared real data.

One line per submodule:

- :mod:`animlib.data.actions`: stick-figure action clips and anomalies; the real Weizmann clips (ch. 7).
- :mod:`animlib.data.blobs`: moving Gaussian blobs with known motion (chapter 0's toy task).
- :mod:`animlib.data.depth_layouts`: the rooms and streets those scenes ray-cast, drawn from a seed (ch. 4).
- :mod:`animlib.data.depth_scenes`: ray-cast rooms and streets with exact depth and lidar masks (ch. 4).
- :mod:`animlib.data.download`: verified, resumable downloads and safe extraction (for ``data_scripts/``).
- :mod:`animlib.data.faces`: synthetic faces from known identity and motion parameters (ch. 5, 6, 8).
- :mod:`animlib.data.fake_prepared`: small fake folders in each data script's format (tests, rehearsals).
- :mod:`animlib.data.folders`: datasets over the folders the data scripts write, and :func:`require_prepared`.
- :mod:`animlib.data.images`: local photographs, paintings, faces and depth; uint8/float and HSV helpers.
- :mod:`animlib.data.landmarks`: the 68 facial landmarks, drawn as images and read by dlib (ch. 8).
- :mod:`animlib.data.prepared`: one loader per script in ``data_scripts/``, and your own cinemagraph clips.
- :mod:`animlib.data.rings`: points on a ring of Gaussians (chapter 6's toy GAN).
- :mod:`animlib.data.scenes`: synthetic cinemagraph scenes with known motion (chapters 1 and 2).

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
