#!/usr/bin/env python
"""NYU Depth v2 (labelled subset) -> RGB PNGs and 16-bit depth PNGs in millimetres.

The labelled subset of NYU Depth v2 (Silberman et al. 2012) is one MATLAB file with 1449 aligned
RGB-D frames of indoor scenes (480x640; ``images`` uint8, ``depths`` float metres, in-painted). The
depth chapter evaluates relative depth (ordinal accuracy) on it.

The file is MATLAB v7.3, i.e. HDF5: it is read with ``h5py`` when installed; otherwise ``scipy`` is
tried (it reads only copies re-saved in the older MATLAB format). Both are imported only here, and a
missing reader is reported with the package to install (``pip install h5py``).

Source: https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html
  file: http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat
Licence: research use; cite Silberman, Hoiem, Kohli and Fergus, "Indoor Segmentation and Support
Inference from RGBD Images", ECCV 2012.
Size: about 2.8 GB; no published checksum, so the first download's SHA-256 is recorded in
data_scripts/manifest.json and enforced on later runs.

Output layout::

    OUT/rgb/00000.png     uint8 RGB, 480 x 640 (index = position in the .mat file)
    OUT/depth/00000.png   uint16 depth in millimetres (metres = value / 1000), 0 = none
    OUT/index.csv         image,depth,index
    OUT/PREPARED          written last

Example::

    python data_scripts/nyu_depth_v2.py --out data/nyu
    python data_scripts/nyu_depth_v2.py --out data/nyu --from-file ~/Downloads/nyu_depth_v2_labeled.mat
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from _common import (
    DownloadError,
    add_common_prepare_args,
    already_prepared,
    downloads_dir,
    fetch,
    log,
    mirror_url,
    run_script,
    save_png,
    script_parser,
    single_from_file,
    write_csv,
    write_prepared_marker,
)

DATASET = "nyu_depth_v2"
HOME = "https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html"
URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
LICENCE = "research use; cite Silberman et al., ECCV 2012"
SIZE = "about 2.8 GB (one .mat file, 1449 frames)"
LAYOUT = """\
OUT/rgb/00000.png     uint8 RGB 480 x 640
OUT/depth/00000.png   uint16 millimetres (metres = value / 1000), 0 = none
OUT/index.csv         image,depth,index
OUT/PREPARED          written last"""


class LabeledMat:
    """Random access to ``images``/``depths`` of the labelled .mat file, whatever reader is available.

    HDF5 (v7.3) stores MATLAB's column-major arrays transposed: ``images`` is ``(N, 3, W, H)`` and
    ``depths`` ``(N, W, H)``; older MATLAB files read by scipy keep ``(H, W, 3, N)`` and ``(H, W, N)``.
    Both are returned as ``(H, W, 3)`` uint8 and ``(H, W)`` float metres.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._h5: Any = None
        try:
            import h5py
        except ImportError:
            h5py = None
        if h5py is not None and h5py.is_hdf5(str(path)):
            self._h5 = h5py.File(str(path), "r")
            self._images, self._depths = self._h5["images"], self._h5["depths"]
            self.count = int(self._images.shape[0])
            return
        if h5py is None and _is_hdf5(path):
            raise DownloadError(
                f"{path} is a MATLAB v7.3 (HDF5) file and reading it needs h5py, which is not installed. "
                "Install it with:  pip install h5py   and run this script again."
            )
        try:
            from scipy.io import loadmat
        except ImportError as e:
            raise DownloadError(
                f"Reading {path} needs h5py (for the published v7.3 file) or scipy (older MATLAB files). "
                "Install one with:  pip install h5py"
            ) from e
        try:
            data = loadmat(str(path), variable_names=["images", "depths"])
        except NotImplementedError as e:  # scipy's answer to v7.3 files
            raise DownloadError(f"{path} is a MATLAB v7.3 file; install h5py to read it:  pip install h5py") from e
        if "images" not in data or "depths" not in data:
            raise DownloadError(f"{path} has no 'images' and 'depths' variables: is it nyu_depth_v2_labeled.mat?")
        self._images = np.asarray(data["images"])
        self._depths = np.asarray(data["depths"])
        self.count = int(self._images.shape[-1]) if self._images.ndim == 4 else 1

    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        if self._h5 is not None:
            rgb = np.transpose(np.asarray(self._images[i]), (2, 1, 0))  # (3, W, H) -> (H, W, 3)
            depth = np.transpose(np.asarray(self._depths[i]), (1, 0))  # (W, H) -> (H, W)
        elif self._images.ndim == 4:
            rgb, depth = self._images[..., i], self._depths[..., i]
        else:
            rgb, depth = self._images, self._depths
        return np.ascontiguousarray(rgb, dtype=np.uint8), np.asarray(depth, dtype=np.float64)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(520)
    return b"\x89HDF\r\n\x1a\n" in head  # MATLAB v7.3 puts the HDF5 signature at byte 512


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """Metres (float) -> uint16 millimetres, rounded; invalid or non-positive depth -> 0."""
    mm = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000.0), 0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def prepare(mat_path: Path, out: Path, *, limit: int | None = None) -> Dict[str, Any]:
    """Write every frame of the labelled .mat file as PNGs plus ``index.csv`` and the marker."""
    mat = LabeledMat(mat_path)
    try:
        n = min(mat.count, limit) if limit else mat.count
        rows: List[Dict[str, Any]] = []
        for i in range(n):
            rgb, depth = mat[i]
            save_png(out / "rgb" / f"{i:05d}.png", rgb)
            save_png(out / "depth" / f"{i:05d}.png", depth_to_mm(depth))
            rows.append({"image": f"rgb/{i:05d}.png", "depth": f"depth/{i:05d}.png", "index": i})
            if i % 100 == 0:
                log.info("frame %d of %d", i, n)
    finally:
        mat.close()
    write_csv(out / "index.csv", rows, ["image", "depth", "index"])
    info = {"dataset": DATASET, "frames": len(rows), "depth_units": "millimetres", "source": mat_path.name}
    write_prepared_marker(out, info)
    return info


def build_parser() -> Any:
    parser = script_parser(
        "nyu_depth_v2.py", __doc__.splitlines()[0], urls=[HOME, URL], licence=LICENCE, size=SIZE,
        layout=LAYOUT, default_out="data/nyu",
        from_file_help="nyu_depth_v2_labeled.mat downloaded already (checksum-verified like a download)",
    )
    add_common_prepare_args(parser, DATASET)
    parser.add_argument("--limit", type=int, default=None, help="write only the first N frames")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if already_prepared(out, args.force):
        return
    mat = fetch(
        mirror_url(URL, args.mirror), downloads_dir(args, DATASET) / "nyu_depth_v2_labeled.mat",
        from_file=single_from_file(args), manifest=args.manifest, key=f"{DATASET}/nyu_depth_v2_labeled.mat",
        timeout=args.timeout, progress=not args.no_progress,
    )
    info = prepare(mat, out, limit=args.limit)
    log.info("Prepared %d frames in %s", info["frames"], out)


if __name__ == "__main__":
    sys.exit(run_script(main))
