"""Files written so that a crash never leaves half of one, and files identified by their hash.

Every file the library writes (checkpoints, ``metrics.json``, GIF/MP4 animations, the download
manifest) goes through :func:`atomic_target`: the data is written to a temporary file in the same
folder, flushed and ``fsync``-ed, then renamed over the target with :func:`os.replace` (atomic on
POSIX and Windows), and the folder is ``fsync``-ed so that the rename itself survives a power cut.
A failure at any point (an exception, Ctrl-C) removes the temporary file and leaves the old target
untouched; a temporary file left by a killed process is removed by the next write of the same
target; a full disk is reported as such, with the path.

This module needs only the standard library (PyTorch only for :func:`atomic_torch_save`), so the
data scripts can use it without loading PyTorch.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

__all__ = ["sha256_file", "atomic_target", "atomic_write_text", "atomic_write_bytes", "atomic_torch_save"]

PathLike = Union[str, os.PathLike]


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (works for multi-gigabyte archives)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets us fsync a directory
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextmanager
def atomic_target(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, make it ``path`` atomically.

    Write the whole file to the yielded path (by name: tools such as Pillow or ffmpeg open it
    themselves). The temporary name keeps the target's suffix, so writers that choose a format by
    extension still work. On success the file is fsync-ed and renamed onto ``path``; on any
    exception (including ``KeyboardInterrupt``) it is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{final.stem}.", f".tmp{final.suffix}"
    for stale in final.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        stale.unlink(missing_ok=True)  # left by a write that was killed (kill -9, power cut)
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"disk full? could not write {final} ({e.strerror}); the previous "
                          "file, if any, is unchanged") from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_target`)."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_target`)."""
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file at ``path`` (see :func:`atomic_target`)."""
    import torch  # here, not at the top: the download layer uses this module without PyTorch

    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:  # torch's zip writer reports a failed write (e.g. a full disk) like this
            if "write" not in str(e).lower():
                raise
            raise OSError(errno.EIO, f"could not write {path}: disk full? ({e})") from e
    return Path(path)
