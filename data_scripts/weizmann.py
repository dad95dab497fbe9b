#!/usr/bin/env python
"""Weizmann human actions -> clip folders of small grayscale frames (video autoencoder chapter).

The Weizmann "Actions as Space-Time Shapes" database (Gorelick et al. 2007; Blank et al. 2005):
about 90 low-resolution (180x144) videos of nine people performing ten actions, one zip archive per
action. This script downloads the archives (or takes them with ``--from-file``), verifies them,
extracts them safely and converts every ``.avi`` to a folder of ``--size`` x ``--size`` grayscale
PNG frames. The label comes from the file name (``<person>_<action>[n].avi``).

Source: http://www.wisdom.weizmann.ac.il/~vision/SpaceTimeActions.html
  archives: http://www.wisdom.weizmann.ac.il/~vision/VideoAnalysis/Demos/SpaceTimeActions/DB/<action>.zip
  for <action> in walk, run, jump, side, bend, wave1, wave2, pjump, jack, skip.
Licence: research use; cite Gorelick et al. 2007 (TPAMI) and Blank et al. 2005 (ICCV).
Size: ten small zip archives of 180x144 videos; no published checksums, so the first download's
SHA-256 is recorded in data_scripts/manifest.json and enforced on later runs.

Output layout (read by ``animlib.data.FrameFolderDataset(out, labels="labels.csv")``)::

    OUT/clips/<person>_<action>/00000.png, 00001.png, ...   uint8 grayscale, SIZE x SIZE
    OUT/labels.csv     columns clip,label,person,frames   (clip = "clips/<person>_<action>")
    OUT/PREPARED       written last (JSON: counts, size, archives)

Example::

    python data_scripts/weizmann.py --out data/weizmann
    python data_scripts/weizmann.py --out data/weizmann --from-file ~/Downloads/walk.zip ~/Downloads/run.zip
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from _common import (
    add_common_prepare_args,
    already_prepared,
    downloads_dir,
    extract_archive,
    fetch,
    iter_files,
    log,
    mirror_url,
    read_video_frames,
    run_script,
    save_png,
    script_parser,
    write_csv,
    write_prepared_marker,
)

DATASET = "weizmann"
HOME = "http://www.wisdom.weizmann.ac.il/~vision/SpaceTimeActions.html"
BASE_URL = "http://www.wisdom.weizmann.ac.il/~vision/VideoAnalysis/Demos/SpaceTimeActions/DB/"
ACTIONS = ("walk", "run", "jump", "side", "bend", "wave1", "wave2", "pjump", "jack", "skip")
LICENCE = "research use; cite Gorelick et al. 2007 (TPAMI) and Blank et al. 2005 (ICCV)"
SIZE = "ten small zip archives of 180x144 videos (exact sizes recorded in the manifest on first download)"
LAYOUT = """\
OUT/clips/<person>_<action>/00000.png ...   grayscale SIZE x SIZE frames
OUT/labels.csv                              clip,label,person,frames
OUT/PREPARED                                written last"""


def parse_name(stem: str) -> Tuple[str, str]:
    """``"lena_walk2"`` -> ``("lena", "walk")``; ``"daria_wave1"`` -> ``("daria", "wave1")``."""
    person, _, rest = stem.partition("_")
    if not rest:
        return "unknown", stem.lower()
    rest = rest.lower()
    if rest in ACTIONS:
        return person.lower(), rest
    stripped = rest.rstrip("0123456789")
    if stripped in ACTIONS:
        return person.lower(), stripped
    log.warning("Unknown Weizmann action in %r; using %r as its label.", stem, stripped or rest)
    return person.lower(), stripped or rest


def convert_video(video: Path, clip_dir: Path, *, size: int = 64, every: int = 1, crop: str = "none") -> int:
    """Write ``video``'s frames as ``size`` x ``size`` grayscale PNGs into ``clip_dir``; return the count.

    ``crop="none"`` scales the whole 180x144 frame to a square (people stay in view as they walk
    across); ``crop="center"`` cuts the central square first (no aspect change).
    """
    scale = f"scale={size}:{size}:flags=area"
    vf = f"crop='min(iw,ih)':'min(iw,ih)',{scale}" if crop == "center" else scale
    tmp = clip_dir.with_name(clip_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = 0
    for i, frame in enumerate(read_video_frames(video, gray=True, vf=vf)):
        if i % every:
            continue
        save_png(tmp / f"{count:05d}.png", frame)
        count += 1
    if count == 0:
        shutil.rmtree(tmp)
        raise RuntimeError(f"{video} has no decodable frames.")
    tmp.rename(clip_dir)  # a clip folder only exists complete
    return count


def prepare(video_dirs: Sequence[Path], out: Path, *, size: int = 64, every: int = 1, crop: str = "none",
            sources: Sequence[str] = ()) -> Dict[str, Any]:
    """Convert every ``.avi`` under ``video_dirs`` into ``out/clips/...`` and write labels + marker."""
    videos = sorted({v for d in video_dirs for v in iter_files(d, [".avi"])}, key=lambda p: p.name)
    if not videos:
        raise FileNotFoundError(f"No .avi videos were found in {', '.join(map(str, video_dirs))}.")
    rows: List[Dict[str, Any]] = []
    for video in videos:
        person, action = parse_name(video.stem)
        clip = f"clips/{video.stem}"
        clip_dir = out / clip
        if clip_dir.is_dir():
            frames = len(list(clip_dir.glob("*.png")))  # finished in an earlier, interrupted run
        else:
            frames = convert_video(video, clip_dir, size=size, every=every, crop=crop)
        rows.append({"clip": clip, "label": action, "person": person, "frames": frames})
        log.info("%s: %d frames (%s)", clip, frames, action)
    write_csv(out / "labels.csv", rows, ["clip", "label", "person", "frames"])
    info = {"dataset": DATASET, "clips": len(rows), "size": size, "every": every, "crop": crop,
            "actions": sorted({r["label"] for r in rows}), "sources": list(sources)}
    write_prepared_marker(out, info)
    return info


def obtain_archives(args: Any) -> List[Path]:
    """Verified local archives: the ``--from-file`` ones, or downloads of the selected actions."""
    downloads = downloads_dir(args, DATASET)
    common = dict(manifest=args.manifest, timeout=args.timeout, progress=not args.no_progress)
    archives: List[Path] = []
    if args.from_file:
        files: List[Path] = []
        for p in args.from_file:
            files.extend(sorted(Path(p).glob("*.zip")) if Path(p).is_dir() else [Path(p)])
        for f in files:
            url = BASE_URL + f.name
            archives.append(fetch(url, downloads / f.name, from_file=f, key=f"{DATASET}/{f.name}", **common))
        return archives
    for action in args.actions:
        name = f"{action}.zip"
        url = mirror_url(BASE_URL + name, args.mirror)
        archives.append(fetch(url, downloads / name, key=f"{DATASET}/{name}", **common))
    return archives


def build_parser() -> Any:
    parser = script_parser(
        "weizmann.py", __doc__.splitlines()[0], urls=[HOME, BASE_URL + "<action>.zip"], licence=LICENCE,
        size=SIZE, layout=LAYOUT, default_out="data/weizmann",
        from_file_help="zip archive(s) you downloaded already, or a folder holding them",
    )
    add_common_prepare_args(parser, DATASET)
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (default: 64)")
    parser.add_argument("--every", type=int, default=1, help="keep every n-th frame (default: 1 = all)")
    parser.add_argument("--crop", choices=("none", "center"), default="none",
                        help="none: scale the whole frame to a square; center: central square first")
    parser.add_argument("--actions", nargs="+", choices=ACTIONS, default=list(ACTIONS), metavar="ACTION",
                        help=f"which action archives to download (default: all of {', '.join(ACTIONS)})")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if already_prepared(out, args.force):
        return
    archives = obtain_archives(args)
    extracted = [extract_archive(a, downloads_dir(args, DATASET) / "extracted" / a.stem) for a in archives]
    if args.force:
        shutil.rmtree(out / "clips", ignore_errors=True)
    info = prepare(extracted, out, size=args.size, every=args.every, crop=args.crop,
                   sources=[a.name for a in archives])
    log.info("Prepared %d clips in %s", info["clips"], out)


if __name__ == "__main__":
    sys.exit(run_script(main))
