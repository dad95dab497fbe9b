"""Helpers shared by the scripts in ``data_scripts/`` (not a script itself).

The download, verification and extraction logic lives in :mod:`animlib.data.download`; this
module makes it importable when a script is run straight from a checkout
(``python data_scripts/weizmann.py``) and holds what only the scripts need: the command-line
boilerplate (:func:`script_parser`, :func:`run_script`, ``--mirror``) and the few image/video
helpers that several scripts use. Everything here needs only numpy, Pillow, imageio and imageio-ffmpeg: no PyTorch.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path and (_REPO / "animlib").is_dir():
    sys.path.insert(0, str(_REPO))  # run from a checkout without `pip install -e .`

import numpy as np  # noqa: E402

from animlib.data.download import (  # noqa: E402,F401  (re-exported for the scripts)
    PREPARED_MARKER,
    DownloadError,
    Manifest,
    extract_archive,
    fetch,
    write_prepared_marker,
)
from animlib.files import atomic_target  # noqa: E402

#: The checksum manifest kept next to these scripts (recorded hashes of first downloads).
MANIFEST = Path(__file__).resolve().parent / "manifest.json"

log = logging.getLogger("animlib.data.scripts")


def add_common_prepare_args(parser: Any, dataset: str) -> None:
    """Options for the prepare step that every script shares: ``--downloads`` and ``--force``."""
    parser.add_argument(
        "--downloads", type=Path, default=None,
        help=f"folder for downloaded and extracted archives (default: <parent of --out>/downloads/{dataset})",
    )
    parser.add_argument("--force", action="store_true", help="prepare again even if --out is already PREPARED")


def downloads_dir(args: Any, dataset: str) -> Path:
    """Where archives are kept: ``--downloads`` or ``<parent of --out>/downloads/<dataset>``."""
    return Path(args.downloads) if args.downloads else Path(args.out).resolve().parent / "downloads" / dataset


def already_prepared(out: Path, force: bool) -> bool:
    """True (and a log line) if ``out`` holds the PREPARED marker and ``--force`` was not given."""
    if (out / PREPARED_MARKER).exists() and not force:
        log.info("%s is already prepared (%s exists); pass --force to prepare it again.", out, PREPARED_MARKER)
        return True
    if (out / PREPARED_MARKER).exists():
        (out / PREPARED_MARKER).unlink()  # the folder is not complete again until we finish
    return False


def single_from_file(args: Any) -> Path | None:
    """The one ``--from-file`` path of a single-archive script (error if several were given)."""
    if not args.from_file:
        return None
    if len(args.from_file) != 1:
        raise DownloadError(f"This script takes one --from-file archive, not {len(args.from_file)}.")
    return Path(args.from_file[0])


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 or uint16 array as PNG, creating the folder."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array)


def resize_image(array: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Resize a uint8 ``(H, W)`` or ``(H, W, 3)`` image to ``size_hw`` (Lanczos, antialiased)."""
    from PIL import Image

    h, w = size_hw
    if array.shape[:2] == (h, w):
        return array
    image = Image.fromarray(array)
    return np.asarray(image.resize((w, h), resample=Image.Resampling.LANCZOS))


def read_image_rgb(path: Path) -> np.ndarray:
    """Read an image as uint8 RGB ``(H, W, 3)`` (gray is repeated, alpha dropped)."""
    import imageio.v3 as iio

    a = np.asarray(iio.imread(path))
    if a.dtype != np.uint8:
        a = (a.astype(np.float64) / np.iinfo(a.dtype).max * 255).round().astype(np.uint8) if a.dtype.kind == "u" else a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def read_video_frames(
    path: Path, *, gray: bool = False, vf: str | None = None, input_params: List[str] | None = None
) -> Iterator[np.ndarray]:
    """Decode a video with imageio-ffmpeg: uint8 frames ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB).

    ``vf`` is an ffmpeg filter chain applied while decoding (e.g. ``"scale=64:64"``), and
    ``input_params`` go before ``-i`` (e.g. ``["-ss", "12.4"]`` to seek).
    """
    import imageio_ffmpeg

    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)  # "frame size differs" notes for scaled reads
    output_params = ["-vf", vf] if vf else []
    reader = imageio_ffmpeg.read_frames(
        str(path), pix_fmt="gray" if gray else "rgb24", bits_per_pixel=8 if gray else 24,
        input_params=input_params or [], output_params=output_params,
    )
    try:
        meta = next(reader)
        width, height = meta["size"]
        shape = (height, width) if gray else (height, width, 3)
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(shape)
    finally:
        reader.close()  # stops ffmpeg when the caller stops early


def write_csv(path: Path, rows: Sequence[Dict[str, Any]], fieldnames: Sequence[str]) -> None:
    """Write rows to a CSV file atomically (a temporary file renamed into place)."""
    with atomic_target(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)


def script_name(file: str) -> str:
    """``data_scripts/<file name>`` for help texts."""
    return f"data_scripts/{Path(file).name}"


# --------------------------------------------------------------------------------------------------
# Command-line boilerplate shared by the scripts
# --------------------------------------------------------------------------------------------------


def script_parser(
    name: str,
    description: str,
    *,
    urls: Sequence[str],
    licence: str,
    size: str,
    layout: str,
    default_out: str,
    from_file_help: str = "an archive you downloaded already (checksum-verified like a download)",
    manifest: Path = MANIFEST,
) -> argparse.ArgumentParser:
    """An :mod:`argparse` parser with the options every data script has.

    ``--out``, ``--from-file``, ``--manifest``, ``--mirror``, ``--timeout``, ``--no-progress`` and
    ``--verbose``; the help text ends with the source URLs, licence, download size and the output
    layout that the library's loaders read.
    """
    epilog = "\n".join(
        [
            "source:",
            *(f"  {u}" for u in urls),
            f"licence: {licence}",
            f"download size: {size}",
            "output layout:",
            *(f"  {line}" for line in layout.strip("\n").splitlines()),
            "checksums: published ones where the publisher gives them; otherwise the first download's",
            "  SHA-256 is recorded in the manifest (source: recorded-not-published) and enforced later.",
        ]
    )
    parser = argparse.ArgumentParser(
        prog=name, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(default_out), help=f"output folder (default: {default_out})")
    parser.add_argument("--from-file", type=Path, nargs="+", metavar="PATH", default=None, help=from_file_help)
    parser.add_argument(
        "--manifest", type=Path, default=Path(manifest),
        help=f"JSON file of recorded checksums (default: {Path(manifest).parent.name}/{Path(manifest).name})",
    )
    parser.add_argument(
        "--mirror", metavar="URL", default=None,
        help="download from this base URL instead (a mirror holding the same file names)",
    )
    parser.add_argument("--timeout", type=float, default=15.0, help="network timeout in seconds (default: 15)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    return parser


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` itself, or the same file name under the ``--mirror`` base URL."""
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + PurePosixPath(urllib.parse.urlsplit(url).path).name


def run_script(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> int:
    """Run a data script's ``main``; print :class:`DownloadError` messages without a traceback.

    Returns the process exit code: 0 on success, 1 for a reported failure, 130 on Ctrl-C.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    try:
        main(argv)
    except (DownloadError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the script again to resume where it stopped", file=sys.stderr)
        return 130
    return 0


def iter_files(root: Path | str, suffixes: Iterable[str]) -> List[Path]:
    """All files under ``root`` whose lower-case suffix is in ``suffixes``, sorted."""
    wanted = {s.lower() for s in suffixes}
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in wanted)
