"""Helpers shared by the scripts in ``data_scripts/`` (not a script itself).

The download, verification, extraction and command-line logic lives in
:mod:`animlib.data.download`; this module makes it importable when a script is run straight from a
checkout (``python data_scripts/weizmann.py``) and adds the few image/video helpers that several
scripts use. Everything here needs only numpy, Pillow, imageio and imageio-ffmpeg: no PyTorch.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

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
    iter_files,
    mirror_url,
    run_script,
    write_prepared_marker,
)
from animlib.data.download import script_parser as _script_parser  # noqa: E402
from animlib.files import atomic_target  # noqa: E402

#: The checksum manifest kept next to these scripts (recorded hashes of first downloads).
MANIFEST = Path(__file__).resolve().parent / "manifest.json"

log = logging.getLogger("animlib.data.scripts")


def script_parser(*args: Any, **kwargs: Any) -> Any:
    """:func:`animlib.data.download.script_parser` with this folder's ``manifest.json`` as default."""
    kwargs.setdefault("manifest", MANIFEST)
    return _script_parser(*args, **kwargs)


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
