#!/usr/bin/env python
"""VoxCeleb1/2 -> face-centred clip folders of 64x64 or 256x256 frames (face reenactment chapter).

VoxCeleb (Nagrani et al. 2017; Chung et al. 2018) is distributed as *metadata*: for every speaker,
YouTube video IDs and, per speech segment, a text file with the face box in each frame (25 fps).
The videos themselves belong to their owners and are not distributed by the dataset's authors.

This script follows the usual preprocessing recipe in three steps:

1. download the segment metadata (``vox1_test_txt.zip`` by default; ``--version``/``--split`` pick
   another) or take it with ``--from-file``, verify and extract it;
2. write ``OUT/videos_needed.txt``, the YouTube IDs whose videos are needed. Fetch those videos
   yourself, with a tool you run and within YouTube's terms, into one folder as ``<youtube id>.mp4``
   (any container ffmpeg reads works: .mp4, .mkv, .webm);
3. with ``--videos DIR``, cut every segment whose video is there: the union of the segment's face
   boxes, enlarged by ``--increase`` and made square, is cropped from each frame (read at 25 fps with
   imageio-ffmpeg) and resized to ``--size``;
4. with ``--landmarks``, store every frame's 68 facial landmarks (dlib's offline model, see
   :mod:`animlib.data.landmarks`) as ``landmarks68.npy`` next to each clip's frames: the driving
   signal of the reenactment chapter (read by :func:`animlib.data.prepared.face_tracks`). It can be
   run again on a prepared folder; clips that already have the file are skipped.

Box units: VoxCeleb2 boxes are fractions of the frame size; VoxCeleb1 boxes are pixels of a 360-row
reference frame. Boxes whose values are all at most 1 are read as fractions, others as 360p pixels.

Source: https://www.robots.ox.ac.uk/~vgg/data/voxceleb/
  metadata: https://www.robots.ox.ac.uk/~vgg/data/voxceleb/data/vox1_test_txt.zip (and vox1_dev_txt.zip,
            vox2_test_txt.zip, vox2_dev_txt.zip)
Licence: metadata CC BY 4.0; the videos belong to their owners. Cite Nagrani, Chung and Zisserman,
"VoxCeleb", Interspeech 2017, and Chung, Nagrani and Zisserman, "VoxCeleb2", Interspeech 2018.
Size: metadata only: vox1_test_txt.zip is small, vox1_dev_txt.zip about 0.1 GB, vox2_dev_txt.zip
about 1.5 GB. No published checksums: the first download's SHA-256 is recorded in
data_scripts/manifest.json and enforced on later runs.

Output layout (read by ``animlib.data.FrameFolderDataset(out, labels="labels.csv")``)::

    OUT/videos_needed.txt                          one YouTube ID per line
    OUT/clips/<speaker>/<youtube id>_<segment>/00000.png ...   uint8 RGB, SIZE x SIZE
    OUT/labels.csv    clip,label,video,segment,frames   (label = speaker id)
    OUT/PREPARED      written last, once at least one clip was cut

Example::

    python data_scripts/voxceleb.py --out data/voxceleb                 # metadata + videos_needed.txt
    python data_scripts/voxceleb.py --out data/voxceleb --videos ~/vox_videos --size 256
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

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
    read_video_frames,
    run_script,
    save_png,
    script_parser,
    single_from_file,
    write_csv,
    write_prepared_marker,
)

DATASET = "voxceleb"
HOME = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/"
META_BASE = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/data/"
LICENCE = "metadata CC BY 4.0, videos belong to their owners; cite Nagrani et al. 2017 and Chung et al. 2018"
SIZE = "metadata only: vox1_test_txt.zip small, vox1_dev_txt.zip ~0.1 GB, vox2_dev_txt.zip ~1.5 GB"
LAYOUT = """\
OUT/videos_needed.txt                                 YouTube IDs to fetch yourself
OUT/clips/<speaker>/<video>_<segment>/00000.png ...   uint8 RGB SIZE x SIZE
OUT/clips/<speaker>/<video>_<segment>/landmarks68.npy  (--landmarks) (T, 68, 2) float32 in [-1, 1]
OUT/labels.csv                                        clip,label,video,segment,frames
OUT/PREPARED                                          written last"""
FPS = 25  # the frame numbers in the metadata count frames at 25 fps
REF_HEIGHT = 360  # VoxCeleb1 boxes are pixels of a 360-row frame
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclass
class Segment:
    """One speech segment: who, which video, which frames, and the face box in each."""

    speaker: str
    video: str
    name: str
    frames: np.ndarray  # (N,) frame numbers at 25 fps
    boxes: np.ndarray  # (N, 4) x, y, w, h


def parse_segment(path: Path) -> Segment:
    """Read a VoxCeleb segment file (``txt/<speaker>/<video>/<segment>.txt``)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = {}
    start = None
    for i, line in enumerate(lines):
        if line.strip().upper().startswith("FRAME"):
            start = i + 1
            break
        if ":" in line:
            k, _, v = line.partition(":")
            header[k.strip().lower()] = v.strip()
    if start is None:
        raise ValueError(f"{path}: no 'FRAME X Y W H' table found; is this a VoxCeleb segment file?")
    rows = [ln.split() for ln in lines[start:] if ln.strip()]
    table = np.array([[float(v) for v in r[:5]] for r in rows if len(r) >= 5], dtype=np.float64)
    if table.size == 0:
        raise ValueError(f"{path}: the frame table is empty.")
    speaker = header.get("identity", path.parent.parent.name).split()[0]
    video = header.get("reference", path.parent.name).split()[0]
    return Segment(speaker, video, path.stem, table[:, 0].astype(np.int64), table[:, 1:5])


def crop_box(seg: Segment, width: int, height: int, increase: float) -> Tuple[int, int, int]:
    """Square ``(x0, y0, side)`` around the union of the segment's face boxes, inside the frame."""
    boxes = seg.boxes.copy()
    if boxes.max() <= 1.0:
        boxes *= np.array([width, height, width, height], dtype=np.float64)  # fractions
    else:
        boxes *= height / REF_HEIGHT  # pixels of the 360-row reference frame
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * (1 + increase)
    side = int(round(min(side, width, height)))
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, side


def _video_size(video: Path) -> Tuple[int, int]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(video))
    try:
        meta = next(reader)
    finally:
        reader.close()
    width, height = meta["size"]
    return int(width), int(height)


def cut_segment(seg: Segment, video: Path, clip_dir: Path, *, size: int, increase: float, max_frames: int) -> int:
    """Write the segment's face crops as PNG frames into ``clip_dir`` (complete or not at all)."""
    width, height = _video_size(video)
    left, top, side = crop_box(seg, width, height, increase)
    first, last = int(seg.frames.min()), int(seg.frames.max())
    wanted = last - first + 1
    if max_frames:
        wanted = min(wanted, max_frames)
    vf = f"fps={FPS},crop={side}:{side}:{left}:{top},scale={size}:{size}:flags=area"
    tmp = clip_dir.with_name(clip_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = 0
    frames = read_video_frames(video, vf=vf, input_params=["-ss", f"{first / FPS:.3f}"])
    try:
        for frame in frames:
            save_png(tmp / f"{count:05d}.png", frame)
            count += 1
            if count >= wanted:
                break
    finally:
        frames.close()
    if count == 0:
        shutil.rmtree(tmp)
        return 0
    tmp.rename(clip_dir)
    return count


def find_videos(folder: Path) -> Dict[str, Path]:
    """YouTube ID -> video file in ``folder`` (file stem = ID)."""
    return {p.stem: p for p in iter_files(folder, VIDEO_SUFFIXES)}


def prepare(txt_root: Path, out: Path, videos: Path | None, *, size: int = 256, increase: float = 0.1,
            max_frames: int = 0, min_frames: int = 1, sources: Sequence[str] = ()) -> Dict[str, Any]:
    """Write ``videos_needed.txt``; with ``videos``, cut the clips and write labels + marker."""
    seg_files = iter_files(txt_root, [".txt"])
    segments = [parse_segment(p) for p in seg_files]
    if not segments:
        raise FileNotFoundError(f"No VoxCeleb segment files (*.txt) were found under {txt_root}.")
    out.mkdir(parents=True, exist_ok=True)
    needed = sorted({s.video for s in segments})
    (out / "videos_needed.txt").write_text("\n".join(needed) + "\n", encoding="utf-8")
    if videos is None:
        raise DownloadError(
            f"Metadata ready: {len(segments)} segments from {len(needed)} YouTube videos, listed in "
            f"{out / 'videos_needed.txt'}. VoxCeleb does not distribute the videos: fetch them yourself into "
            "one folder as <youtube id>.mp4, then run this script again with --videos FOLDER."
        )
    available = find_videos(videos)
    rows: List[Dict[str, Any]] = []
    missing = set()
    for seg in segments:
        video = available.get(seg.video)
        if video is None:
            missing.add(seg.video)
            continue
        clip = f"clips/{seg.speaker}/{seg.video}_{seg.name}"
        clip_dir = out / clip
        frames = len(list(clip_dir.glob("*.png"))) if clip_dir.is_dir() else cut_segment(
            seg, video, clip_dir, size=size, increase=increase, max_frames=max_frames)
        if frames < min_frames:
            shutil.rmtree(clip_dir, ignore_errors=True)
            continue
        rows.append({"clip": clip, "label": seg.speaker, "video": seg.video, "segment": seg.name, "frames": frames})
        log.info("%s: %d frames", clip, frames)
    if not rows:
        raise FileNotFoundError(
            f"None of the {len(needed)} needed videos was found in {videos} (as <youtube id>.mp4); see "
            f"{out / 'videos_needed.txt'}."
        )
    if missing:
        log.warning("%d of %d videos are missing; their segments are skipped.", len(missing), len(needed))
    write_csv(out / "labels.csv", rows, ["clip", "label", "video", "segment", "frames"])
    info = {"dataset": DATASET, "clips": len(rows), "speakers": len({r["label"] for r in rows}), "size": size,
            "missing_videos": len(missing), "sources": list(sources)}
    write_prepared_marker(out, info)
    return info


def build_parser() -> Any:
    parser = script_parser(
        "voxceleb.py", __doc__.splitlines()[0], urls=[HOME, META_BASE + "vox{1,2}_{test,dev}_txt.zip"],
        licence=LICENCE, size=SIZE, layout=LAYOUT, default_out="data/voxceleb",
        from_file_help="the segment metadata zip (e.g. vox1_test_txt.zip) downloaded already",
    )
    add_common_prepare_args(parser, DATASET)
    parser.add_argument("--version", type=int, choices=(1, 2), default=1, help="VoxCeleb1 or 2 (default: 1)")
    parser.add_argument("--split", choices=("test", "dev"), default="test", help="metadata split (default: test, the small one)")
    parser.add_argument("--videos", type=Path, default=None, help="folder of videos you fetched, named <youtube id>.mp4")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels, e.g. 64 or 256 (default: 256)")
    parser.add_argument("--increase", type=float, default=0.1, help="enlarge the face box by this fraction (default: 0.1)")
    parser.add_argument("--max-frames", type=int, default=0, help="at most this many frames per clip (0 = all)")
    parser.add_argument("--min-frames", type=int, default=1, help="drop clips shorter than this (default: 1)")
    parser.add_argument("--landmarks", action="store_true",
                        help="also store each frame's 68 dlib landmarks (landmarks68.npy per clip; needs dlib-bin and "
                             "face-recognition-models, offline)")
    return parser


def add_landmarks(out: Path) -> int:
    """Write ``landmarks68.npy`` (T, 68, 2) in [-1, 1] into every clip folder under ``out/clips`` lacking it.

    A frame where dlib finds no face is read with the whole crop as the face box (the crops are
    face-centred). Each file is written atomically; returns the number of clips processed.
    """
    import io

    import imageio.v3 as iio

    from animlib.data.landmarks import detect_landmarks
    from animlib.files import atomic_write_bytes

    done = 0
    for clip in sorted({p.parent for p in (out / "clips").rglob("*.png")}):
        target = clip / "landmarks68.npy"
        if target.is_file():
            continue
        points = []
        for frame in sorted(clip.glob("*.png")):
            img = iio.imread(frame)[..., :3]
            try:
                found = detect_landmarks(img)
            except ValueError:  # no face detected: the crop itself is the face box
                h, w = img.shape[:2]
                found = detect_landmarks(img, box=(int(0.1 * w), int(0.1 * h), int(0.9 * w), int(0.9 * h)))
            points.append(found["points"].numpy())
        buf = io.BytesIO()
        np.save(buf, np.stack(points).astype(np.float32), allow_pickle=False)
        atomic_write_bytes(target, buf.getvalue())
        done += 1
        log.info("%s: landmarks of %d frames", clip, len(points))
    return done


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if already_prepared(out, args.force):
        if args.landmarks:
            log.info("Added landmarks to %d clips in %s", add_landmarks(out), out)
        return
    supplied = single_from_file(args)
    name = supplied.name if supplied is not None else f"vox{args.version}_{args.split}_txt.zip"
    downloads = downloads_dir(args, DATASET)
    archive = fetch(
        mirror_url(META_BASE + name, args.mirror), downloads / name, from_file=supplied,
        manifest=args.manifest, key=f"{DATASET}/{name}", timeout=args.timeout, progress=not args.no_progress,
    )
    txt_root = extract_archive(archive, downloads / "extracted" / Path(archive.name).stem)
    if args.force:
        shutil.rmtree(out / "clips", ignore_errors=True)
    info = prepare(txt_root, out, args.videos, size=args.size, increase=args.increase,
                   max_frames=args.max_frames, min_frames=args.min_frames, sources=[archive.name])
    log.info("Prepared %d clips of %d speakers in %s", info["clips"], info["speakers"], out)
    if args.landmarks:
        log.info("Added landmarks to %d clips", add_landmarks(out))


if __name__ == "__main__":
    sys.exit(run_script(main))
