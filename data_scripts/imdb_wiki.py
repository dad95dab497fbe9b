#!/usr/bin/env python
"""IMDB-WIKI cropped faces -> 64x64 RGB face images with age/gender labels (VAE chapter).

IMDB-WIKI (Rothe, Timofte and Van Gool) holds celebrity photos from IMDb and Wikipedia with the
face already cropped (with a margin) in the "faces only" archives, plus a MATLAB metadata file with
each photo's path, face detector score, second-face score, gender, date of birth and year taken.

This script downloads the faces-only archive of the chosen subset (``wiki`` by default, ``imdb`` is
the large one), extracts it safely, optionally keeps only confident single-face photos (the
metadata is read with scipy, imported only for this step) and writes square ``--size`` RGB crops.

Source: https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/
  archives: https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/static/wiki_crop.tar
            https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/static/imdb_crop.tar
Licence: academic research only (non-commercial); cite Rothe, Timofte and Van Gool, "Deep expectation
of real and apparent age from a single image without facial landmarks", IJCV 2018 (and their ICCV
2015 workshop paper).
Size: wiki_crop.tar about 1 GB, imdb_crop.tar about 7 GB; no published checksums, so the first
download's SHA-256 is recorded in data_scripts/manifest.json and enforced on later runs.

Output layout (read by ``animlib.data.ImageFolderDataset(out, labels="labels.csv")``)::

    OUT/images/<nn>/<name>.png   uint8 RGB, SIZE x SIZE (centre square of the cropped face, resized)
    OUT/labels.csv   path,label,age,gender,face_score   (label = gender: female / male / unknown;
                     age in years, -1 if unknown; face_score empty without metadata)
    OUT/PREPARED     written last

Example::

    python data_scripts/imdb_wiki.py --out data/imdb_wiki
    python data_scripts/imdb_wiki.py --out data/imdb_wiki --from-file ~/Downloads/wiki_crop.tar --limit 20000
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
from _common import (
    DownloadError,
    add_common_prepare_args,
    already_prepared,
    downloads_dir,
    extract_archive,
    fetch,
    iter_files,
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

DATASET = "imdb_wiki"
HOME = "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/"
URLS = {
    "wiki": "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/static/wiki_crop.tar",
    "imdb": "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/static/imdb_crop.tar",
}
LICENCE = "academic research only (non-commercial); cite Rothe, Timofte and Van Gool (IJCV 2018)"
SIZE = "wiki_crop.tar about 1 GB; imdb_crop.tar about 7 GB"
LAYOUT = """\
OUT/images/<nn>/<name>.png   uint8 RGB SIZE x SIZE faces
OUT/labels.csv               path,label,age,gender,face_score   (label = gender)
OUT/PREPARED                 written last"""


def _strings(column: Any) -> List[str]:
    """A MATLAB cell array of strings (as scipy loads it) -> list of str."""
    out = []
    for item in np.ravel(column):
        value = np.ravel(item)
        out.append(str(value[0]) if value.size else "")
    return out


def _matlab_year(datenum: float) -> dt.date | None:
    """MATLAB serial date number -> date (``None`` if invalid)."""
    if not math.isfinite(datenum) or datenum < 367:
        return None
    try:
        return dt.date.fromordinal(int(datenum) - 366)
    except (ValueError, OverflowError):
        return None


def read_metadata(mat_path: Path, subset: str) -> Dict[str, Dict[str, Any]]:
    """Per-image metadata from ``wiki.mat`` / ``imdb.mat``: path -> age, gender, face scores.

    Age follows the dataset authors' convention: years from the date of birth to 1 July of the year the
    photo was taken.
    """
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise DownloadError(
            "Reading the IMDB-WIKI metadata (.mat) needs scipy:  pip install scipy  "
            "(or pass --no-filter to use every image without labels from the metadata)."
        ) from e
    meta = loadmat(str(mat_path))[subset][0, 0]
    paths = _strings(meta["full_path"])
    score = np.ravel(meta["face_score"]).astype(float)
    second = np.ravel(meta["second_face_score"]).astype(float)
    gender = np.ravel(meta["gender"]).astype(float)
    dob = np.ravel(meta["dob"]).astype(float)
    taken = np.ravel(meta["photo_taken"]).astype(float)
    table: Dict[str, Dict[str, Any]] = {}
    for i, p in enumerate(paths):
        born = _matlab_year(dob[i])
        age = -1
        if born is not None and math.isfinite(taken[i]):
            age = int((dt.date(int(taken[i]), 7, 1) - born).days // 365.25)
        g = "unknown" if not math.isfinite(gender[i]) else ("male" if gender[i] >= 0.5 else "female")
        table[p.replace("\\", "/")] = {"age": age, "gender": g, "face_score": score[i], "second_face_score": second[i]}
    return table


def square_face(rgb: np.ndarray, size: int) -> np.ndarray:
    """Central square of the (already face-centred) crop, resized to ``size`` x ``size``."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return resize_image(rgb[y0 : y0 + side, x0 : x0 + side], (size, size))


def prepare(root: Path, out: Path, *, subset: str = "wiki", size: int = 64, min_face_score: float | None = 1.0,
            single_face: bool = True, limit: int | None = None, sources: Sequence[str] = ()) -> Dict[str, Any]:
    """Resize the selected faces under ``root`` (the extracted ``<subset>_crop`` folder) into ``out``."""
    mats = sorted(root.rglob(f"{subset}.mat"))
    filtering = min_face_score is not None or single_face
    metadata: Dict[str, Dict[str, Any]] = {}
    if mats:
        metadata = read_metadata(mats[0], subset)
        base = mats[0].parent
    elif filtering:
        raise FileNotFoundError(
            f"No {subset}.mat metadata was found under {root}, so faces cannot be filtered by detector score. "
            "Pass --no-filter to use every image."
        )
    else:
        base = root
    images = [p for p in iter_files(base, [".jpg", ".jpeg", ".png"])]
    rows: List[Dict[str, Any]] = []
    skipped = 0
    for image in images:
        rel = image.relative_to(base).as_posix()
        m = metadata.get(rel)
        if filtering:
            if m is None:
                skipped += 1
                continue
            if min_face_score is not None and not (m["face_score"] >= min_face_score):
                skipped += 1
                continue
            if single_face and math.isfinite(m["second_face_score"]):
                skipped += 1
                continue
        rgb = read_image_rgb(image)
        if min(rgb.shape[:2]) < 8:  # the dataset's 1x1 placeholders for failed downloads
            skipped += 1
            continue
        dest_rel = f"images/{Path(rel).with_suffix('.png').as_posix()}"
        save_png(out / dest_rel, square_face(rgb, size))
        gender = m["gender"] if m else "unknown"
        rows.append({
            "path": dest_rel, "label": gender, "age": m["age"] if m else -1, "gender": gender,
            "face_score": f"{m['face_score']:.4f}" if m else "",
        })
        if limit and len(rows) >= limit:
            break
        if len(rows) % 5000 == 0:
            log.info("%d faces written", len(rows))
    if not rows:
        raise FileNotFoundError(f"No face image under {root} passed the filters ({skipped} skipped).")
    write_csv(out / "labels.csv", rows, ["path", "label", "age", "gender", "face_score"])
    info = {"dataset": DATASET, "subset": subset, "faces": len(rows), "skipped": skipped, "size": size,
            "min_face_score": min_face_score, "single_face": single_face, "sources": list(sources)}
    write_prepared_marker(out, info)
    return info


def build_parser() -> Any:
    parser = script_parser(
        "imdb_wiki.py", __doc__.splitlines()[0], urls=[HOME, *URLS.values()], licence=LICENCE, size=SIZE,
        layout=LAYOUT, default_out="data/imdb_wiki",
        from_file_help="wiki_crop.tar / imdb_crop.tar downloaded already (checksum-verified like a download)",
    )
    add_common_prepare_args(parser, DATASET)
    parser.add_argument("--subset", choices=sorted(URLS), default="wiki", help="wiki (about 62k photos) or imdb (about 460k)")
    parser.add_argument("--size", type=int, default=64, help="output side in pixels (default: 64)")
    parser.add_argument("--min-face-score", type=float, default=1.0,
                        help="keep photos whose face detector score is at least this (default: 1.0)")
    parser.add_argument("--allow-second-face", action="store_true", help="keep photos in which a second face was detected")
    parser.add_argument("--no-filter", action="store_true", help="keep every image (no metadata needed)")
    parser.add_argument("--limit", type=int, default=None, help="stop after N faces")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if already_prepared(out, args.force):
        return
    name = f"{args.subset}_crop.tar"
    downloads = downloads_dir(args, DATASET)
    archive = fetch(
        mirror_url(URLS[args.subset], args.mirror), downloads / name, from_file=single_from_file(args),
        manifest=args.manifest, key=f"{DATASET}/{name}", timeout=args.timeout, progress=not args.no_progress,
    )
    extracted = extract_archive(archive, downloads / "extracted" / f"{args.subset}_crop")
    if args.force:
        shutil.rmtree(out / "images", ignore_errors=True)
    info = prepare(
        extracted, out, subset=args.subset, size=args.size,
        min_face_score=None if args.no_filter else args.min_face_score,
        single_face=not (args.no_filter or args.allow_second_face), limit=args.limit, sources=[archive.name],
    )
    log.info("Prepared %d faces in %s (%d skipped)", info["faces"], out, info["skipped"])


if __name__ == "__main__":
    sys.exit(run_script(main))
