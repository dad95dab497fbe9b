#!/usr/bin/env python
"""Depth in the Wild (DIW) -> images plus a JSON list of ordinal point pairs (depth chapter).

DIW (Chen, Fu, Yang and Deng 2016) annotates one pair of points per internet photo with their
relative depth. The annotation files are CSV with two lines per image: the image path, then
``yA,xA,yB,xB,relation,width,height`` with 1-based pixel coordinates and ``relation`` one of
``<``, ``>`` or ``=``, comparing the depth of point A with that of point B (``<``: A is closer).

The annotations are downloaded (or taken with ``--from-file``). The images come in two large
archives, ``DIW_train_val.tar.gz`` (training/validation images) and ``DIW_test.tar.gz`` (test
images), linked from the project page: download the ones you need there and pass them (or the
folders you extracted them to) with ``--from-file``. Images named in the annotations but not supplied
are skipped and counted.

Source: http://www-personal.umich.edu/~wfchen/depth-in-the-wild/
  annotations: https://vl-lab.eecs.umich.edu/data/nips2016/DIW_Annotations_splitted.tar.gz
Licence: research use; cite Chen et al., "Single-Image Depth Perception in the Wild", NeurIPS 2016.
Size: the annotation archive is small; the image archives are large (about 421k training and 74k
test photos). No published checksums: first downloads/supplied files are recorded in
data_scripts/manifest.json and enforced on later runs.

Output layout::

    OUT/images/<split>/<name>.<jpg|png>   the photos, unchanged
    OUT/pairs.json   [{"image": "images/test/<name>.jpg", "split": "test", "a": [y, x], "b": [y, x],
                       "relation": "<", "ordinal": -1, "width": W, "height": H}, ...]
                     a/b are 0-based (row, column) in the stored image; ordinal = -1 (<), 0 (=), +1 (>)
    OUT/PREPARED     written last

Example::

    python data_scripts/diw.py --out data/diw --from-file ~/Downloads/DIW_test.tar.gz
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

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
    run_script,
    script_parser,
    write_prepared_marker,
)

DATASET = "diw"
HOME = "http://www-personal.umich.edu/~wfchen/depth-in-the-wild/"
ANNOTATIONS_URL = "https://vl-lab.eecs.umich.edu/data/nips2016/DIW_Annotations_splitted.tar.gz"
LICENCE = "research use; cite Chen et al., NeurIPS 2016"
SIZE = "annotations: small; images: DIW_train_val.tar.gz and DIW_test.tar.gz are large (~421k + ~74k photos)"
LAYOUT = """\
OUT/images/<split>/<name>.jpg   photos, unchanged
OUT/pairs.json                  list of {image, split, a:[y,x], b:[y,x], relation, ordinal, width, height}
OUT/PREPARED                    written last"""

ORDINAL = {"<": -1, "=": 0, ">": 1}
_ARCHIVE = re.compile(r"\.(zip|tar|tgz|tar\.gz|tar\.bz2)$", re.IGNORECASE)


def parse_annotations(csv_path: Path) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Yield ``(image basename, pair)`` from a DIW annotation CSV (two lines per image)."""
    lines = [ln.strip() for ln in csv_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if len(lines) % 2:
        raise ValueError(f"{csv_path}: expected pairs of lines (image path, annotation), got {len(lines)} lines.")
    for image_line, values_line in zip(lines[0::2], lines[1::2]):
        fields = [v.strip() for v in values_line.split(",")]
        if len(fields) < 7 or fields[4] not in ORDINAL:
            raise ValueError(f"{csv_path}: cannot read annotation {values_line!r} (for {image_line!r}).")
        ya, xa, yb, xb = (int(float(v)) for v in fields[:4])
        width, height = int(float(fields[5])), int(float(fields[6]))
        yield Path(image_line.replace("\\", "/")).name, {
            "a": [ya - 1, xa - 1], "b": [yb - 1, xb - 1], "relation": fields[4],
            "ordinal": ORDINAL[fields[4]], "width": width, "height": height,
        }


def split_of(csv_path: Path) -> str:
    """``DIW_train_val.csv`` -> ``train_val``; ``DIW_test.csv`` -> ``test``."""
    return re.sub(r"^DIW_", "", csv_path.stem, flags=re.IGNORECASE).lower()


def _image_suffix(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\xff\xd8"):
        return ".jpg"
    if head.startswith(b"\x89PNG"):
        return ".png"
    return path.suffix.lower() or ".jpg"


def prepare(annotation_dirs: Sequence[Path], image_dirs: Sequence[Path], out: Path,
            sources: Sequence[str] = ()) -> Dict[str, Any]:
    """Copy the annotated images that are available and write ``pairs.json`` plus the marker."""
    csvs = sorted({c for d in annotation_dirs for c in iter_files(d, [".csv"])})
    if not csvs:
        raise FileNotFoundError(f"No DIW annotation CSV files were found in {', '.join(map(str, annotation_dirs))}.")
    images: Dict[str, Path] = {}
    for d in image_dirs:
        for p in Path(d).rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                images.setdefault(p.name, p)
    pairs: List[Dict[str, Any]] = []
    missing = 0
    for csv_path in csvs:
        split = split_of(csv_path)
        for name, pair in parse_annotations(csv_path):
            source = images.get(name)
            if source is None:
                missing += 1
                continue
            rel = f"images/{split}/{Path(name).stem}{_image_suffix(source)}"
            dest = out / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest)
            pairs.append({"image": rel, "split": split, **pair})
    if not pairs:
        raise FileNotFoundError(
            f"None of the images named in the DIW annotations was supplied ({missing} missing). Download "
            f"DIW_test.tar.gz and/or DIW_train_val.tar.gz from {HOME} and pass them with --from-file."
        )
    if missing:
        log.warning("%d annotated images were not supplied and are skipped.", missing)
    (out / "pairs.json").write_text(json.dumps(pairs, indent=1) + "\n", encoding="utf-8")
    info = {"dataset": DATASET, "pairs": len(pairs), "missing_images": missing,
            "splits": sorted({p["split"] for p in pairs}), "sources": list(sources)}
    write_prepared_marker(out, info)
    return info


def build_parser() -> Any:
    parser = script_parser(
        "diw.py", __doc__.splitlines()[0], urls=[HOME, ANNOTATIONS_URL], licence=LICENCE, size=SIZE,
        layout=LAYOUT, default_out="data/diw",
        from_file_help="DIW image archives (DIW_test.tar.gz, DIW_train_val.tar.gz) or folders of extracted "
                       "images; an archive whose name contains 'Annotations' is used instead of downloading them",
    )
    add_common_prepare_args(parser, DATASET)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if already_prepared(out, args.force):
        return
    downloads = downloads_dir(args, DATASET)
    common = dict(manifest=args.manifest, timeout=args.timeout, progress=not args.no_progress)
    supplied = [Path(p) for p in (args.from_file or [])]
    annotation_archives = [p for p in supplied if "annotation" in p.name.lower() and p.is_file()]
    image_inputs = [p for p in supplied if p not in annotation_archives]
    if not image_inputs:
        raise DownloadError(
            "DIW's images are not downloaded by this script: get DIW_test.tar.gz and/or DIW_train_val.tar.gz "
            f"from {HOME} and pass them with --from-file (the annotations are fetched automatically)."
        )
    annotation_dirs: List[Path] = []
    for archive in annotation_archives or [None]:
        name = archive.name if archive is not None else Path(ANNOTATIONS_URL).name
        verified = fetch(mirror_url(ANNOTATIONS_URL, args.mirror), downloads / name, from_file=archive,
                         key=f"{DATASET}/{name}", **common)
        annotation_dirs.append(extract_archive(verified, downloads / "extracted" / _ARCHIVE.sub("", name)))
    image_dirs: List[Path] = []
    for item in image_inputs:
        if item.is_dir():
            image_dirs.append(item)
            continue
        if not _ARCHIVE.search(item.name):
            raise DownloadError(f"--from-file {item}: expected a .tar.gz/.tar/.zip archive of DIW images or a folder.")
        verified = fetch(HOME, downloads / item.name, from_file=item, key=f"{DATASET}/{item.name}", **common)
        image_dirs.append(extract_archive(verified, downloads / "extracted" / _ARCHIVE.sub("", item.name)))
    info = prepare(annotation_dirs, image_dirs, out, sources=[p.name for p in supplied])
    log.info("Prepared %d point pairs in %s", info["pairs"], out)


if __name__ == "__main__":
    sys.exit(run_script(main))
