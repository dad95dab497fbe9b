"""Files written so that a crash never leaves half of one, and files identified by their hash.

Every file the library writes (checkpoints, ``metrics.json``, GIF/MP4 animations, the download
manifest) goes through :func:`atomic_target`: the data is written to a temporary file in the same
folder, flushed and ``fsync``-ed, then renamed over the target with :func:`os.replace` (atomic on
POSIX and Windows), and the folder is ``fsync``-ed so that the rename itself survives a power cut.
At every instant the target is either the complete old file or the complete new one, never missing
or partial. A failure at any point (an exception, Ctrl-C, a full disk) removes the temporary file
and leaves the old target untouched; a temporary file left by a killed process is removed by the
next write of the same target; a full disk is reported as such, with the path. The files get the
permissions of any file the user creates (``0666`` less the umask, typically ``0644``).
:func:`atomic_copy` keeps a copy of a file (a hard link where the filesystem has them) under the
same guarantee, without ever removing the original.

This module needs only the standard library (PyTorch only for :func:`atomic_torch_save`), so the
data scripts can use it without loading PyTorch.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

__all__ = ["sha256_file", "atomic_target", "atomic_write_text", "atomic_write_bytes", "atomic_torch_save",
           "atomic_copy"]

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


def _create_temporary(folder: Path, prefix: str, suffix: str) -> Path:
    """Create a new, empty file ``folder/prefix<random>suffix`` with the mode ``open()`` would give.

    (``tempfile.mkstemp`` would make it ``0600``, and the rename would keep that for the target.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f"{prefix}{os.urandom(4).hex()}{suffix}"
        try:
            os.close(os.open(tmp, flags, 0o666))  # 0666 less the umask, like any new file
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, f"no free temporary name {prefix}*{suffix} in {folder}")


def _fsync_file(path: Path) -> None:
    try:
        fh = open(path, "rb+")
    except PermissionError:  # a read-only file (e.g. a hard link to one): fsync works on a read handle
        fh = open(path, "rb")
    with fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_target(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, make it ``path`` atomically.

    Write the whole file to the yielded path (by name: tools such as Pillow or ffmpeg open it
    themselves; it exists, empty, when the block starts). The temporary name keeps the target's
    suffix, so writers that choose a format by extension still work. On success the file is
    fsync-ed and renamed onto ``path`` (so ``path`` is never missing or partial), then the folder is
    fsync-ed; on any exception (including ``KeyboardInterrupt`` and a full disk) the temporary file
    is removed and ``path`` is left as it was. The new file's permissions are those of any file
    created under the current umask.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{final.stem}.", f".tmp{final.suffix}"
    for stale in final.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        stale.unlink(missing_ok=True)  # left by a write that was killed (kill -9, power cut)
    tmp = _create_temporary(final.parent, prefix, suffix)
    try:
        yield tmp
        _fsync_file(tmp)
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


def atomic_copy(source: PathLike, path: PathLike) -> Path:
    """Make ``path`` a copy of ``source`` atomically (see :func:`atomic_target`); ``source`` stays.

    A hard link where the filesystem has them (no data is copied, no room is needed), else a byte
    copy. Used to keep the previous checkpoint before the next one is written: the current file is
    never renamed away, so there is no moment without it.
    """
    with atomic_target(path) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (some network and FAT filesystems) or across devices
            shutil.copyfile(source, tmp)
    return Path(path)


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


def _os_error_behind(exc: BaseException) -> Optional[OSError]:
    """The ``OSError`` that ``exc`` was raised from or while handling (torch's writer does so), or None."""
    behind = exc.__cause__ or exc.__context__
    return behind if isinstance(behind, OSError) and behind.errno is not None else None


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file at ``path`` (see :func:`atomic_target`)."""
    import torch  # here, not at the top: the download layer uses this module without PyTorch

    with atomic_target(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
        except RuntimeError as e:  # torch's zip writer reports a failed write (e.g. a full disk) like this
            cause = _os_error_behind(e)
            if cause is not None:  # the operating system's error, e.g. ENOSPC: reported as such
                raise OSError(cause.errno, cause.strerror) from e
            if "write" not in str(e).lower():
                raise
            raise OSError(errno.EIO, f"could not write {path}: disk full? ({e})") from e
    return Path(path)
