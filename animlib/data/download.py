"""Verified downloads and safe archive extraction for ``data_scripts/``.

Every real dataset the book uses is fetched through this module, so the same guarantees hold for all
of them:

- **Resumable.** Bytes arrive in ``<file>.part``; a later run asks the server for the rest with an HTTP
  ``Range`` request. A server that answers ``206 Partial Content`` is resumed; one that answers ``200``
  (it ignores ranges) is restarted from byte 0.
- **Verified.** The SHA-256 of the finished ``.part`` file is checked before the file gets its final
  name, which only ever appears through an atomic :func:`os.replace`. A mismatch raises
  :class:`ChecksumError` and the bad bytes are moved to ``<file>.bad``: nothing looks complete that is
  not.
- **Recorded, never invented.** Most publishers give no checksum. Then the hash of the first download
  is written to a manifest (``data_scripts/manifest.json``) labelled
  ``"source": "recorded-not-published"`` with the date and URL, and every later run is verified
  against it.
- **Idempotent.** A verified file that is already there is not downloaded again; an archive already
  extracted (its marker file exists) is not extracted again.
- **Safe extraction.** Zip and tar members with absolute paths, ``..`` components, links that leave
  the target or device files are rejected. Extraction happens in a temporary folder next to the
  target, which is renamed into place only when everything succeeded.
- **Offline-aware.** When the host cannot be reached the download fails within the connect timeout
  with a message saying that the script needs internet and how to pass a file downloaded elsewhere
  (``--from-file``).

The command-line boilerplate that every script in ``data_scripts/`` shares (``--out``,
``--from-file``, ``--mirror``, exit codes) lives with the scripts, in ``data_scripts/_common.py``.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import logging
import os
import shutil
import socket
import stat
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterator, List, Tuple, Union

from tqdm.auto import tqdm

from ..files import atomic_write_text, sha256_file

__all__ = [
    "DownloadError",
    "ChecksumError",
    "OfflineError",
    "UnsafeArchiveError",
    "RECORDED_NOT_PUBLISHED",
    "PREPARED_MARKER",
    "EXTRACTED_MARKER",
    "DEFAULT_MANIFEST",
    "Manifest",
    "download",
    "fetch",
    "extract_archive",
    "write_prepared_marker",
]

PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger("animlib.data")

#: Label of manifest entries whose hash was measured on the first download, not given by the publisher.
RECORDED_NOT_PUBLISHED = "recorded-not-published"
#: File written by every data script when its output folder is complete (read by the folder datasets).
PREPARED_MARKER = "PREPARED"
#: File written inside an extracted archive's folder once extraction has finished.
EXTRACTED_MARKER = ".extracted.json"
#: The manifest that the repository's data scripts share.
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "data_scripts" / "manifest.json"

_CHUNK = 1 << 20  # bytes per read/hash step
_USER_AGENT = "animlib-data-scripts/1.0 (+https://pypi.org/project/animlib)"


class DownloadError(RuntimeError):
    """A download, verification or extraction step failed; the message says how to fix it."""


class ChecksumError(DownloadError):
    """A file's SHA-256 differs from the published or recorded one."""


class OfflineError(DownloadError):
    """The server could not be reached (no network, DNS failure, refused or timed-out connection)."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the target folder, or is a device/special file."""


# --------------------------------------------------------------------------------------------------
# Hashes and the manifest
# --------------------------------------------------------------------------------------------------


class Manifest:
    """Recorded SHA-256 hashes of downloaded files, kept in a JSON file.

    Each entry is keyed by a stable name such as ``"weizmann/walk.zip"``::

        {"weizmann/walk.zip": {"sha256": "...", "size": 1234, "source": "recorded-not-published",
                               "url": "http://...", "date": "2024-05-01"}}

    Only hashes measured on a real first download (or on a file the user supplied) are written here:
    the ``source`` field says so, so that nobody mistakes them for publisher checksums.
    """

    def __init__(self, path: PathLike = DEFAULT_MANIFEST) -> None:
        self.path = Path(path)

    def load(self) -> Dict[str, Dict[str, Any]]:
        """The manifest's entries (empty if the file does not exist yet)."""
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError as e:
            raise DownloadError(
                f"The checksum manifest {self.path} is not valid JSON ({e}). Repair it (it is a plain "
                "JSON object of file entries) or restore it from version control."
            ) from e
        if not isinstance(data, dict):
            raise DownloadError(f"The checksum manifest {self.path} must hold a JSON object, not {type(data).__name__}.")
        return data

    def get(self, key: str) -> Dict[str, Any] | None:
        """The entry for ``key``, or ``None``."""
        return self.load().get(key)

    def record(self, key: str, sha256: str, *, url: str, size: int, note: str | None = None) -> Dict[str, Any]:
        """Add the entry for a first download; an existing entry is never overwritten."""
        data = self.load()
        if key in data:
            raise DownloadError(
                f"The manifest {self.path} already holds an entry for {key!r}; it is not overwritten. "
                "Delete that entry by hand if the publisher really changed the file."
            )
        entry: Dict[str, Any] = {
            "sha256": sha256,
            "size": int(size),
            "source": RECORDED_NOT_PUBLISHED,
            "url": url,
            "date": _dt.date.today().isoformat(),
        }
        if note:
            entry["note"] = note
        data[key] = entry
        atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return entry


def _expected_hash(sha256: str | None, manifest: Manifest | None, key: str) -> Tuple[str | None, str]:
    """The hash to verify against and where it came from (``"published"`` or the manifest)."""
    if sha256:
        return sha256.lower(), "published"
    if manifest is not None:
        entry = manifest.get(key)
        if entry is not None:
            return str(entry["sha256"]).lower(), f"recorded in {manifest.path} on {entry.get('date', '?')}"
    return None, ""


# --------------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------------


def _offline_message(url: str, reason: object, dest: Path | None) -> str:
    where = f"\n  - or put it at {dest} and run the script again." if dest is not None else ""
    return (
        f"Cannot reach {urllib.parse.urlsplit(url).netloc or url} ({reason}).\n"
        "This script needs internet access to download its data. Either run it on a machine that has "
        "internet access, or download the file yourself from\n"
        f"    {url}\n"
        "and then:\n"
        "  - pass it with --from-file PATH (it is checksum-verified exactly like a download)" + where
    )


def _probe(url: str, timeout: float) -> None:
    """Fail fast with :class:`OfflineError` if the URL's host cannot be resolved and connected to.

    Runs in a daemon thread joined with a deadline, so that even a DNS lookup that hangs (as on some
    offline machines) cannot hold the script for longer than ``timeout`` seconds.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DownloadError(f"Only http and https URLs can be downloaded, not {url!r}.")
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        # urllib will go through the proxy: that is the host that must answer.
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or host, proxy_parts.port or 80
    outcome: List[BaseException] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except BaseException as e:  # reported to the caller below
            outcome.append(e)

    worker = threading.Thread(target=attempt, daemon=True, name="animlib-probe")
    worker.start()
    worker.join(timeout + 1.0)
    if worker.is_alive():
        raise OfflineError(_offline_message(url, f"no answer within {timeout:g} s", None))
    if outcome:
        raise OfflineError(_offline_message(url, outcome[0], None)) from outcome[0]


def _content_range_start(value: str | None) -> int | None:
    """First byte of a ``Content-Range: bytes a-b/total`` header, or ``None``."""
    if not value or not value.startswith("bytes "):
        return None
    span = value[6:].split("/", 1)[0]
    if "-" not in span:
        return None
    try:
        return int(span.split("-", 1)[0])
    except ValueError:
        return None


def _content_range_total(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _stream_to_part(
    url: str, part: Path, *, timeout: float, progress: bool, desc: str
) -> None:
    """Fill ``part`` with the file at ``url``, resuming from its current size when the server allows."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # Range not satisfiable: the .part may already hold the whole file (verification decides).
            total = _content_range_total(e.headers.get("Content-Range"))
            e.close()
            if total is not None and total == have:
                return
            log.info("Server refused to resume %s; starting again from byte 0.", part.name)
            part.unlink()
            _stream_to_part(url, part, timeout=timeout, progress=progress, desc=desc)
            return
        raise DownloadError(
            f"Downloading {url} failed: HTTP {e.code} {e.reason}. Check that the URL is still valid "
            "(publishers move files); if you have the file already, pass it with --from-file PATH."
        ) from e
    except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise OfflineError(_offline_message(url, reason, None)) from e

    with response:
        status = getattr(response, "status", response.getcode())
        if have and status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                raise DownloadError(
                    f"The server answered a resume request for {url} with the wrong byte range "
                    f"({response.headers.get('Content-Range')!r}, expected to start at {have}). "
                    f"Delete {part} and run again."
                )
            mode = "ab"
        else:
            if have:
                log.info("Server ignores HTTP ranges; restarting %s from byte 0.", part.name)
            have = 0
            mode = "wb"
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        total = have + remaining if remaining is not None else None
        received = 0
        with open(part, mode) as out, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, disable=not progress, leave=False,
        ) as bar:
            try:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, socket.timeout, http.client.HTTPException) as e:
                raise DownloadError(
                    f"The connection broke while downloading {url} ({e}); {have + received} bytes are "
                    f"kept in {part}. Run the script again to resume."
                ) from e
            out.flush()
            os.fsync(out.fileno())
        if remaining is not None and received < remaining:
            raise DownloadError(
                f"The server closed the connection early for {url} ({have + received} of {total} bytes); "
                f"the bytes are kept in {part}. Run the script again to resume."
            )


def _finish(
    candidate: Path,
    dest: Path,
    *,
    url: str,
    expected: str | None,
    origin: str,
    manifest: Manifest | None,
    key: str,
    note: str | None = None,
    move: bool = True,
) -> Path:
    """Verify ``candidate`` and (if ``move``) atomically give it the final name ``dest``."""
    actual = sha256_file(candidate)
    if expected is not None and actual != expected:
        msg = (
            f"Checksum mismatch for {key} ({url}):\n    expected {expected} ({origin})\n    got      {actual}\n"
        )
        if move:
            bad = candidate.with_name(dest.name + ".bad")
            os.replace(candidate, bad)
            msg += (
                f"The bytes were moved to {bad} and no file named {dest.name} was created. The download was "
                "corrupted or the publisher changed the file: delete the .bad file and run again; if the "
                "mismatch repeats, compare with the publisher's page before trusting a new file."
            )
        else:
            msg += f"The file {candidate} is not the expected one; nothing was changed."
        raise ChecksumError(msg)
    if expected is None and manifest is not None:
        manifest.record(key, actual, url=url, size=candidate.stat().st_size, note=note)
        log.info("Recorded SHA-256 of %s in %s (no published checksum).", key, manifest.path)
    elif expected is None:
        log.warning("No checksum known for %s and no manifest given: the file is not verified.", key)
    if move and candidate != dest:
        os.replace(candidate, dest)
    return dest


def download(
    url: str,
    dest: PathLike,
    *,
    sha256: str | None = None,
    manifest: Union[Manifest, PathLike] | None = None,
    key: str | None = None,
    timeout: float = 15.0,
    progress: bool = True,
    retries: int = 2,
) -> Path:
    """Download ``url`` to ``dest`` with resume and SHA-256 verification; return ``dest``.

    Args:
        url: http(s) address of the file.
        dest: final path. It appears only after verification, through an atomic rename.
        sha256: the publisher's checksum, if it publishes one. Otherwise leave ``None`` and pass a
            ``manifest``: the first download's hash is recorded there and enforced afterwards.
        manifest: a :class:`Manifest` or the path of its JSON file.
        key: the manifest entry's name (default: the file name of ``dest``).
        timeout: seconds for the connection (and for each read); an unreachable host fails within it.
        progress: show a ``tqdm`` progress bar.
        retries: how many times a broken connection is resumed before giving up.

    Raises:
        OfflineError: the host cannot be reached (message explains ``--from-file``).
        ChecksumError: the bytes differ from the expected hash (they are moved to ``<dest>.bad``).
        DownloadError: any other failure, with what to do next.
    """
    dest = Path(dest)
    if isinstance(manifest, (str, os.PathLike)):
        manifest = Manifest(manifest)
    key = key or dest.name
    expected, origin = _expected_hash(sha256, manifest, key)

    if dest.exists():
        if expected is None:
            if manifest is not None:
                # A final name is only ever created after verification, so this is a first download
                # from before the manifest existed: record it.
                return _finish(dest, dest, url=url, expected=None, origin="", manifest=manifest, key=key, move=False)
            log.info("%s exists (no checksum to verify against); not downloading again.", dest)
            return dest
        actual = sha256_file(dest)
        if actual == expected:
            log.info("%s is already downloaded and verified.", dest)
            return dest
        raise ChecksumError(
            f"{dest} exists but its SHA-256 is {actual}, not {expected} ({origin}). Delete it and run the "
            "script again to download a fresh copy."
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _probe(url, timeout)
    log.info("Downloading %s -> %s", url, dest)
    for attempt in range(retries + 1):
        try:
            _stream_to_part(url, part, timeout=timeout, progress=progress, desc=dest.name)
            break
        except OfflineError:
            raise
        except DownloadError as e:
            if attempt == retries or not part.exists() or "Run the script again to resume" not in str(e):
                raise
            log.warning("%s Resuming (attempt %d of %d).", e, attempt + 2, retries + 1)
    return _finish(part, dest, url=url, expected=expected, origin=origin, manifest=manifest, key=key)


def fetch(
    url: str,
    dest: PathLike,
    *,
    from_file: PathLike | None = None,
    sha256: str | None = None,
    manifest: Union[Manifest, PathLike] | None = None,
    key: str | None = None,
    timeout: float = 15.0,
    progress: bool = True,
) -> Path:
    """Return a verified local copy of ``url``: a user-supplied file, or a (resumed) download.

    With ``from_file`` the given file is verified exactly like a download (published hash, else the
    manifest entry, else its hash is recorded) and its own path is returned, so that a multi-gigabyte
    archive is not copied. Without it, this is :func:`download`.
    """
    if isinstance(manifest, (str, os.PathLike)):
        manifest = Manifest(manifest)
    key = key or Path(dest).name
    if from_file is None:
        return download(url, dest, sha256=sha256, manifest=manifest, key=key, timeout=timeout, progress=progress)
    src = Path(from_file).expanduser()
    if not src.is_file():
        raise DownloadError(f"--from-file {src}: no such file. Give the path of the downloaded {key}.")
    expected, origin = _expected_hash(sha256, manifest, key)
    log.info("Verifying user-supplied %s", src)
    return _finish(
        src, src, url=url, expected=expected, origin=origin, manifest=manifest, key=key,
        note=f"recorded from a user-supplied file named {src.name}", move=False,
    )


# --------------------------------------------------------------------------------------------------
# Safe extraction
# --------------------------------------------------------------------------------------------------


def _archive_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise DownloadError(f"{path} is neither a zip nor a tar archive (supported: .zip, .tar, .tar.gz/.tgz, .tar.bz2).")


def _safe_relpath(name: str, archive: Path) -> PurePosixPath:
    """Check an archive member name and return it as a relative path (never absolute, no ``..``)."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafeArchiveError(f"{archive} contains a member with an absolute path ({name!r}); refusing to extract it.")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive} contains a member with a '..' path component ({name!r}); refusing to extract it.")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _check_link(member: str, target: str, archive: Path, *, relative_to_member: bool) -> PurePosixPath:
    """Lexically resolve a link target; reject it if it is absolute or leaves the extraction root."""
    norm = target.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} points to the absolute path {target!r}; refusing to extract.")
    base = list(PurePosixPath(member).parent.parts) if relative_to_member else []
    stack = [p for p in base if p not in ("", ".")]
    for part in norm.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise UnsafeArchiveError(f"{archive}: link {member!r} -> {target!r} escapes the target folder; refusing to extract.")
            stack.pop()
        else:
            stack.append(part)
    return PurePosixPath(*stack) if stack else PurePosixPath(".")


def _inside(root: Path, path: PathLike) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


class _Writer:
    """Writes checked members under ``root``; every write re-checks the real path (symlink chains)."""

    def __init__(self, root: Path, archive: Path, max_bytes: int) -> None:
        self.root = root
        self.archive = archive
        self.links: List[Path] = []
        self.max_bytes = max_bytes  # for all members together (a decompression bomb stops here)
        self.written = 0

    def _dest(self, rel: PurePosixPath) -> Path:
        dest = self.root.joinpath(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(self.root, dest.parent):
            raise UnsafeArchiveError(f"{self.archive}: member {str(rel)!r} would be written through a link outside the target.")
        if os.path.lexists(dest) and not dest.is_dir():
            dest.unlink()  # never write *through* an existing link
        return dest

    def directory(self, rel: PurePosixPath) -> None:
        dest = self.root.joinpath(*rel.parts)
        dest.mkdir(parents=True, exist_ok=True)
        if not _inside(self.root, dest):
            raise UnsafeArchiveError(f"{self.archive}: directory {str(rel)!r} resolves outside the target.")

    def file(self, rel: PurePosixPath, stream: Any, mode: int) -> None:
        dest = self._dest(rel)
        with open(dest, "wb") as out:
            while True:
                block = stream.read(_CHUNK)
                if not block:
                    break
                self.written += len(block)
                if self.written > self.max_bytes:
                    raise UnsafeArchiveError(
                        f"{self.archive}: extracting {str(rel)!r} passes {self.max_bytes / 2**20:.0f} MiB in total, "
                        "far more than an archive of this size should hold (a decompression bomb?); refusing. "
                        "Raise max_bytes= if the data set really is that large."
                    )
                out.write(block)
        os.chmod(dest, 0o755 if mode & 0o111 else 0o644)

    def symlink(self, rel: PurePosixPath, target: str) -> None:
        dest = self._dest(rel)
        os.symlink(target, dest)
        self.links.append(dest)

    def copy(self, rel: PurePosixPath, source_rel: PurePosixPath) -> None:
        source = self.root.joinpath(*source_rel.parts)
        if not _inside(self.root, source) or not source.is_file():
            raise UnsafeArchiveError(f"{self.archive}: hard link {str(rel)!r} -> {str(source_rel)!r} has no target inside the archive.")
        shutil.copyfile(source, self._dest(rel))

    def check_links(self) -> None:
        for link in self.links:
            if not _inside(self.root, link):
                raise UnsafeArchiveError(
                    f"{self.archive}: symbolic link {link.relative_to(self.root)} resolves outside the target; refusing to extract."
                )


def _tar_members(archive: Path) -> Iterator[Tuple[tarfile.TarFile, tarfile.TarInfo]]:
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            yield tf, member


def _extract_tar(archive: Path, writer: _Writer) -> None:
    for tf, m in _tar_members(archive):
        rel = _safe_relpath(m.name, archive)
        if m.isdir():
            writer.directory(rel)
        elif m.isreg():
            stream = tf.extractfile(m)
            assert stream is not None
            writer.file(rel, stream, m.mode)
        elif m.issym():
            _check_link(m.name, m.linkname, archive, relative_to_member=True)
            writer.symlink(rel, m.linkname)
        elif m.islnk():
            source = _check_link(m.name, m.linkname, archive, relative_to_member=False)
            writer.copy(rel, source)
        else:
            kind = "device" if (m.ischr() or m.isblk()) else "FIFO" if m.isfifo() else "special"
            raise UnsafeArchiveError(f"{archive} contains a {kind} file ({m.name!r}); refusing to extract it.")


def _extract_zip(archive: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = _safe_relpath(info.filename, archive)
            unix_mode = info.external_attr >> 16
            if info.is_dir():
                writer.directory(rel)
            elif stat.S_ISLNK(unix_mode):
                target = zf.read(info).decode("utf-8", "replace")
                _check_link(info.filename, target, archive, relative_to_member=True)
                writer.symlink(rel, target)
            elif unix_mode and not stat.S_ISREG(unix_mode) and stat.S_IFMT(unix_mode):
                raise UnsafeArchiveError(f"{archive} contains a special file ({info.filename!r}); refusing to extract it.")
            else:
                if info.file_size > _MAX_RATIO * max(info.compress_size, 1) and info.file_size > 2**20:
                    raise UnsafeArchiveError(
                        f"{archive}: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}:1 "
                        f"(more than {_MAX_RATIO}:1; a decompression bomb?); refusing to extract it."
                    )
                with zf.open(info) as stream:
                    writer.file(rel, stream, unix_mode)


#: Most a member may expand (uncompressed : compressed). Real data sets stay far below (images and
#: video barely compress; text metadata about 10:1); decompression bombs reach 1000:1.
_MAX_RATIO = 100


def extract_archive(archive: PathLike, target: PathLike, *, marker: str = EXTRACTED_MARKER,
                    max_bytes: int | None = None) -> Path:
    """Safely extract a .zip / .tar / .tar.gz / .tgz / .tar.bz2 archive into the folder ``target``.

    Members are checked one by one: absolute paths, ``..`` components, symbolic or hard links that
    resolve outside ``target`` and device/FIFO files raise :class:`UnsafeArchiveError`. So does an
    archive that expands too much: a zip member past :data:`_MAX_RATIO`:1, or more than ``max_bytes``
    written in all (default: that ratio times the archive's size, at least 64 MiB). Everything is
    written to a temporary folder in ``target``'s parent, which becomes ``target`` by one rename after
    the last member, so that a failed extraction leaves nothing behind. A marker file inside
    ``target`` records the completed extraction; if it exists, nothing is done (idempotent re-runs).
    """
    archive = Path(archive)
    target = Path(target)
    if (target / marker).exists():
        try:
            done = json.loads((target / marker).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            done = {}
        if done.get("archive") == archive.name and done.get("size") == archive.stat().st_size:
            log.info("%s is already extracted in %s.", archive.name, target)
            return target
        raise DownloadError(
            f"{target} holds the extraction of another archive ({done.get('archive')!r}, {done.get('size')} bytes), "
            f"not of {archive} ({archive.stat().st_size} bytes). Delete {target} and run again."
        )
    if target.exists():
        raise DownloadError(
            f"{target} exists but holds no completed extraction (no {marker} file). It was not made by "
            f"this script or an earlier run was interrupted oddly: delete {target} and run again."
        )
    kind = _archive_kind(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting", dir=target.parent))
    try:
        size = archive.stat().st_size
        writer = _Writer(tmp, archive, max_bytes if max_bytes is not None else max(_MAX_RATIO * size, 64 * 2**20))
        log.info("Extracting %s -> %s", archive, target)
        (_extract_zip if kind == "zip" else _extract_tar)(archive, writer)
        writer.check_links()
        info = {"archive": archive.name, "size": archive.stat().st_size, "date": _dt.datetime.now().isoformat(timespec="seconds")}
        (tmp / marker).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.rename(tmp, target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive} is damaged and cannot be extracted ({e}). Delete it and download it again.") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_prepared_marker(out: PathLike, info: Dict[str, Any] | None = None, *, marker: str = PREPARED_MARKER) -> Path:
    """Write the marker that says a data script finished preparing ``out`` (read by the loaders)."""
    out = Path(out)
    record = {"date": _dt.datetime.now().isoformat(timespec="seconds")}
    record.update(info or {})
    path = out / marker
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
