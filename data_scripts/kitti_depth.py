#!/usr/bin/env python
"""KITTI depth -> RGB crops paired with sparse lidar depth (depth-aware style transfer chapter).

KITTI's depth completion/prediction benchmark (Uhrig et al. 2017, on the KITTI raw recordings of
Geiger et al. 2013) stores lidar scans projected into the camera as 16-bit PNGs: ``depth = value /
256`` metres, ``0`` = no measurement. The source fine-tunes a relative-depth network on pairs of such
sparse points, after cropping/resizing the images to 224x288 (height x width).

Two inputs are supported:

1. The *selected validation set* ``data_depth_selection.zip`` (default, about 2 GB): it holds RGB
   images, projected raw lidar (``velodyne_raw``) and semi-dense ground truth for 1000 frames in
   ``depth_selection/val_selection_cropped/``. It is downloaded (or taken with ``--from-file``).
2. A local copy of the raw drives plus ``data_depth_velodyne.zip`` (about 5 GB, extracted) given with
   ``--raw-root`` and ``--velodyne-root``: ``<velodyne-root>/{train,val}/<drive>/proj_depth/
   velodyne_raw/image_0{2,3}/<frame>.png`` is paired with ``<raw-root>/<date>/<drive>/image_0{2,3}/
   data/<frame>.png``.

Each frame is scaled so that its height becomes ``--height`` (the whole height is kept: the lidar
covers the lower image part) and ``--crops`` windows of ``--width`` columns are cut at evenly spaced
positions. Sparse depth is *not* interpolated: each lidar point moves to the pixel its position
falls in, and where several points land on one pixel the nearest one is kept.

Source: https://www.cvlibs.net/datasets/kitti/eval_depth.php?benchmark=depth_completion
  archive: https://s3.eu-central-1.amazonaws.com/avg-kitti/data_depth_selection.zip
Licence: CC BY-NC-SA 3.0 (non-commercial); cite Geiger et al. 2013 and Uhrig et al. 2017.
Size: about 2 GB (selection archive); no published checksum, so the first download's SHA-256 is
recorded in data_scripts/manifest.json and enforced on later runs.

Output layout (the depth chapter's loaders read ``index.csv``)::

    OUT/images/<frame id>_c<k>.png         uint8 RGB, HEIGHT x WIDTH
    OUT/sparse_depth/<frame id>_c<k>.png   uint16, depth = value / 256 m, 0 = no lidar point
    OUT/dense_depth/<frame id>_c<k>.png    uint16, same units (only where ground truth exists)
    OUT/index.csv   image,sparse_depth,dense_depth,split,source_image,crop_x,scale,points
    OUT/PREPARED    written last

Example::

    python data_scripts/kitti_depth.py --out data/kitti
    python data_scripts/kitti_depth.py --out data/kitti --from-file ~/Downloads/data_depth_selection.zip
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from _common import (
    add_common_prepare_args,
    already_prepared,
    downloads_dir,
    extract_archive,
    fetch,
    log,
    mirror_url,
    read_image_rgb,
    resize_image,
    run_script,
    save_png,
    script_parser,
    single_from_file,
    write_csv,
    write_prepared_marker,
)

DATASET = "kitti_depth"
HOME = "https://www.cvlibs.net/datasets/kitti/eval_depth.php?benchmark=depth_completion"
SELECTION_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_depth_selection.zip"
LICENCE = "CC BY-NC-SA 3.0 (non-commercial); cite Geiger et al. 2013 and Uhrig et al. 2017"
SIZE = "about 2 GB (data_depth_selection.zip)"
LAYOUT = """\
OUT/images/<id>_c<k>.png         uint8 RGB, HEIGHT x WIDTH (default 224 x 288)
OUT/sparse_depth/<id>_c<k>.png   uint16 lidar depth, metres = value / 256, 0 = none
OUT/dense_depth/<id>_c<k>.png    uint16 ground truth (selection set only)
OUT/index.csv                    image,sparse_depth,dense_depth,split,source_image,crop_x,scale,points
OUT/PREPARED                     written last"""

Pair = Tuple[str, Path, Path, Optional[Path], str]  # (frame id, rgb, sparse depth, dense depth or None, split)


def selection_pairs(root: Path) -> List[Pair]:
    """Pairs from ``.../val_selection_cropped/{image,velodyne_raw,groundtruth_depth}`` under ``root``."""
    pairs: List[Pair] = []
    for image in sorted(root.rglob("image/*.png")):
        if "_sync_image_" not in image.name:
            continue
        base = image.parent.parent
        sparse = base / "velodyne_raw" / image.name.replace("_sync_image_", "_sync_velodyne_raw_")
        dense = base / "groundtruth_depth" / image.name.replace("_sync_image_", "_sync_groundtruth_depth_")
        if not sparse.is_file():
            continue
        frame_id = image.stem.replace("_sync_image_", "_")
        pairs.append((frame_id, image, sparse, dense if dense.is_file() else None, base.name))
    return pairs


def raw_pairs(raw_root: Path, velodyne_root: Path) -> List[Pair]:
    """Pairs of raw-drive RGB frames and ``data_depth_velodyne`` projected lidar maps."""
    pairs: List[Pair] = []
    for sparse in sorted(velodyne_root.rglob("proj_depth/velodyne_raw/image_0*/*.png")):
        camera = sparse.parent.name  # image_02 / image_03
        drive = sparse.parents[3].name  # 2011_09_26_drive_0001_sync
        split = sparse.parents[4].name  # train / val
        image = raw_root / drive[:10] / drive / camera / "data" / sparse.name
        if image.is_file():
            pairs.append((f"{drive}_{sparse.stem}_{camera}", image, sparse, None, split))
    return pairs


def read_depth(path: Path) -> np.ndarray:
    """A KITTI depth PNG as uint16 (metres = value / 256)."""
    import imageio.v3 as iio

    depth = np.asarray(iio.imread(path))
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"{path} is not a 16-bit single-channel KITTI depth map (got {depth.dtype}, shape {depth.shape}).")
    return depth


def resize_sparse(depth: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Move every valid lidar point to its pixel in the resized grid; keep the nearest per pixel."""
    h, w = depth.shape
    out_h, out_w = size_hw
    ys, xs = np.nonzero(depth)
    values = depth[ys, xs].astype(np.float64)
    ny = np.minimum(((ys + 0.5) * out_h / h).astype(np.int64), out_h - 1)
    nx = np.minimum(((xs + 0.5) * out_w / w).astype(np.int64), out_w - 1)
    nearest = np.full(out_h * out_w, np.inf)
    np.minimum.at(nearest, ny * out_w + nx, values)
    nearest[np.isinf(nearest)] = 0
    return nearest.reshape(out_h, out_w).astype(np.uint16)


def crops(frame_id: str, rgb: np.ndarray, sparse: np.ndarray, dense: np.ndarray | None, *, height: int,
          width: int, n_crops: int) -> Iterator[Tuple[str, int, float, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Scale to ``height`` rows (or ``width`` columns if the frame is relatively narrow), then cut windows."""
    h, w = rgb.shape[:2]
    if sparse.shape != (h, w) or (dense is not None and dense.shape != (h, w)):
        raise ValueError(f"{frame_id}: image {rgb.shape[:2]} and depth {sparse.shape} differ in size.")
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    rgb_s = resize_image(rgb, (new_h, new_w))
    sparse_s = resize_sparse(sparse, (new_h, new_w))
    dense_s = resize_sparse(dense, (new_h, new_w)) if dense is not None else None
    y0 = new_h - height  # keep the bottom rows, where the lidar points are
    xs = np.linspace(0, new_w - width, max(1, n_crops)).round().astype(int)
    for k, x0 in enumerate(sorted(set(xs.tolist()))):
        window = (slice(y0, y0 + height), slice(x0, x0 + width))
        yield (f"{frame_id}_c{k}", x0, scale, rgb_s[window], sparse_s[window],
               dense_s[window] if dense_s is not None else None)


def prepare(pairs: Sequence[Pair], out: Path, *, height: int = 224, width: int = 288, n_crops: int = 3,
            limit: int | None = None, sources: Sequence[str] = ()) -> Dict[str, Any]:
    """Write the crops and ``index.csv`` for ``pairs``; finish with the PREPARED marker."""
    if not pairs:
        raise FileNotFoundError("No image / projected-lidar pairs were found in the KITTI folders given.")
    rows: List[Dict[str, Any]] = []
    for frame_id, image_path, sparse_path, dense_path, split in list(pairs)[: limit or None]:
        rgb = read_image_rgb(image_path)
        sparse = read_depth(sparse_path)
        dense = read_depth(dense_path) if dense_path is not None else None
        for name, x0, scale, rgb_c, sparse_c, dense_c in crops(
            frame_id, rgb, sparse, dense, height=height, width=width, n_crops=n_crops
        ):
            save_png(out / "images" / f"{name}.png", rgb_c)
            save_png(out / "sparse_depth" / f"{name}.png", sparse_c)
            dense_rel = ""
            if dense_c is not None:
                save_png(out / "dense_depth" / f"{name}.png", dense_c)
                dense_rel = f"dense_depth/{name}.png"
            rows.append({
                "image": f"images/{name}.png", "sparse_depth": f"sparse_depth/{name}.png", "dense_depth": dense_rel,
                "split": split, "source_image": image_path.name, "crop_x": x0, "scale": f"{scale:.6f}",
                "points": int(np.count_nonzero(sparse_c)),
            })
        log.info("%s: %d crops", frame_id, n_crops)
    write_csv(out / "index.csv", rows, ["image", "sparse_depth", "dense_depth", "split", "source_image",
                                         "crop_x", "scale", "points"])
    info = {"dataset": DATASET, "crops": len(rows), "frames": len({r["source_image"] for r in rows}),
            "height": height, "width": width, "depth_units": "metres = value / 256", "sources": list(sources)}
    write_prepared_marker(out, info)
    return info


def build_parser() -> Any:
    parser = script_parser(
        "kitti_depth.py", __doc__.splitlines()[0], urls=[HOME, SELECTION_URL], licence=LICENCE, size=SIZE,
        layout=LAYOUT, default_out="data/kitti",
        from_file_help="data_depth_selection.zip downloaded already (checksum-verified like a download)",
    )
    add_common_prepare_args(parser, DATASET)
    parser.add_argument("--raw-root", type=Path, default=None, help="extracted KITTI raw drives (<date>/<drive>/image_02/data)")
    parser.add_argument("--velodyne-root", type=Path, default=None, help="extracted data_depth_velodyne ({train,val}/<drive>/...)")
    parser.add_argument("--height", type=int, default=224, help="crop height (default: 224)")
    parser.add_argument("--width", type=int, default=288, help="crop width (default: 288)")
    parser.add_argument("--crops", type=int, default=3, help="windows per frame, evenly spaced (default: 3)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N frames")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if already_prepared(out, args.force):
        return
    if (args.raw_root is None) != (args.velodyne_root is None):
        raise FileNotFoundError("--raw-root and --velodyne-root go together: give both, or neither (selection set).")
    if args.raw_root is not None:
        for folder in (args.raw_root, args.velodyne_root):
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} is not a folder.")
        pairs, sources = raw_pairs(args.raw_root, args.velodyne_root), [str(args.raw_root), str(args.velodyne_root)]
    else:
        downloads = downloads_dir(args, DATASET)
        archive = fetch(
            mirror_url(SELECTION_URL, args.mirror), downloads / "data_depth_selection.zip",
            from_file=single_from_file(args), manifest=args.manifest, key=f"{DATASET}/data_depth_selection.zip",
            timeout=args.timeout, progress=not args.no_progress,
        )
        extracted = extract_archive(archive, downloads / "extracted" / "data_depth_selection")
        pairs, sources = selection_pairs(extracted), [archive.name]
    if args.force:
        for sub in ("images", "sparse_depth", "dense_depth"):
            shutil.rmtree(out / sub, ignore_errors=True)
    info = prepare(pairs, out, height=args.height, width=args.width, n_crops=args.crops, limit=args.limit,
                   sources=sources)
    log.info("Prepared %d crops from %d frames in %s", info["crops"], info["frames"], out)


if __name__ == "__main__":
    sys.exit(run_script(main))
