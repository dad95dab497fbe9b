"""Tests for animlib.data.folders and the data scripts' prepare steps on tiny synthetic raw data.

Each data script is run as a command (``--from-file`` with an archive generated here, a private
``--manifest``), then its output is read back, where a library loader exists, with the folder
datasets. No network is used.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import List

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from animlib.data import FrameFolderDataset, ImageFolderDataset, require_prepared
from animlib.data.download import PREPARED_MARKER, RECORDED_NOT_PUBLISHED, DownloadError
from animlib.data.folders import load_image

REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "data_scripts" / name), "--no-progress", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)


def run_main(name: str, *args: str) -> None:
    """Run a data script's ``main`` in this process (faster than a subprocess; errors raise)."""
    import_script(name.removesuffix(".py")).main(["--no-progress", *args])


def import_script(name: str):
    """Import a data script as a module (its folder goes on sys.path, as when it is run)."""
    folder = str(REPO / "data_scripts")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import importlib

    return importlib.import_module(name)


def read_csv(path: Path) -> List[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mark(root: Path) -> Path:
    (root / PREPARED_MARKER).write_text("{}")
    return root


# --------------------------------------------------------------------------------------------------
# require_prepared and the folder datasets
# --------------------------------------------------------------------------------------------------


def test_require_prepared_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python data_scripts/weizmann.py --out data/weizmann"):
        require_prepared(None, "weizmann.py")
    with pytest.raises(FileNotFoundError, match=r"does not exist.*\n.*python data_scripts/kitti_depth.py --out "):
        require_prepared(tmp_path / "nope", "kitti_depth.py")
    with pytest.raises(FileNotFoundError, match=r"PREPARED is missing(.|\n)*python data_scripts/diw.py --out " + str(tmp_path)):
        require_prepared(tmp_path, "diw.py")
    with pytest.raises(FileNotFoundError, match="one of these commands(.|\n)*weizmann.py(.|\n)*voxceleb.py"):
        require_prepared(tmp_path, ["weizmann.py", "voxceleb.py"])
    assert require_prepared(tmp_path, "diw.py", marker=None) == tmp_path
    assert require_prepared(mark(tmp_path), "diw.py") == tmp_path


def _clip(folder: Path, n: int, size=(8, 10), start: int = 0) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        iio.imwrite(folder / f"{i:05d}.png", np.full(size, (start + i) * 20, dtype=np.uint8))


def test_frame_folder_dataset_whole_clips_and_windows(tmp_path):
    _clip(tmp_path / "clips" / "a", 5)
    _clip(tmp_path / "clips" / "nested" / "b", 3, start=7)
    with pytest.raises(FileNotFoundError, match="data_scripts/weizmann.py"):
        FrameFolderDataset(tmp_path)
    mark(tmp_path)

    whole = FrameFolderDataset(tmp_path)
    assert whole.clips == ["clips/a", "clips/nested/b"] and len(whole) == 2
    clip = whole[0]
    assert clip.shape == (5, 1, 8, 10) and clip.dtype == torch.float32
    torch.testing.assert_close(clip[:, 0, 0, 0], torch.arange(5) * 20 / 255.0)
    torch.testing.assert_close(whole[1][:, 0, 0, 0], (torch.arange(3) + 7) * 20 / 255.0)

    windows = FrameFolderDataset(tmp_path, clip_len=3, stride=1)
    assert len(windows) == 3 + 1  # a: starts 0,1,2; b: start 0
    torch.testing.assert_close(windows[2][:, 0, 0, 0], torch.arange(2, 5) * 20 / 255.0)
    assert windows.clip_name(3) == "clips/nested/b"

    assert len(FrameFolderDataset(tmp_path, clip_len=4)) == 1  # b is too short, a has one window
    resized = FrameFolderDataset(tmp_path, clip_len=2, size=4, channels=3)
    assert resized[0].shape == (2, 3, 4, 4) and float(resized[0].min()) >= 0.0 and float(resized[0].max()) <= 1.0
    with pytest.raises(ValueError, match="smaller clip_len"):
        FrameFolderDataset(tmp_path, clip_len=9)


def test_frame_folder_dataset_labels_and_transform(tmp_path):
    _clip(tmp_path / "clips" / "walk1", 4)
    _clip(tmp_path / "clips" / "run1", 4)
    _clip(tmp_path / "clips" / "unlisted", 4)
    mark(tmp_path)
    (tmp_path / "labels.csv").write_text("clip,label\nclips/walk1,walk\nclips/run1,run\n")
    ds = FrameFolderDataset(tmp_path, labels="labels.csv", transform=lambda c: c * 2 - 1)
    assert ds.classes == ["run", "walk"] and len(ds) == 2
    clip, label = ds[ds.clips.index("clips/walk1")]
    assert label == 1 and float(clip.min()) == -1.0
    (tmp_path / "labels.json").write_text(json.dumps({"clips/run1": 3}))
    ds = FrameFolderDataset(tmp_path, labels="labels.json")
    assert ds.classes is None and len(ds) == 1 and ds[0][1] == 3


def test_image_folder_dataset_nested_labels_and_formats(tmp_path):
    rgb = np.zeros((6, 4, 3), np.uint8)
    rgb[..., 0] = 255
    iio.imwrite(tmp_path / "a.png", rgb)
    (tmp_path / "sub").mkdir()
    iio.imwrite(tmp_path / "sub" / "b.png", np.full((6, 4), 65535, np.uint16))
    rgba = np.concatenate([rgb, np.full((6, 4, 1), 7, np.uint8)], axis=2)
    iio.imwrite(tmp_path / "sub" / "c.png", rgba)
    with pytest.raises(FileNotFoundError, match="data_scripts/imdb_wiki.py"):
        ImageFolderDataset(tmp_path)
    mark(tmp_path)

    ds = ImageFolderDataset(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in ds.paths] == ["a.png", "sub/b.png", "sub/c.png"]
    assert ds[0].shape == (3, 6, 4) and ds[1].shape == (1, 6, 4) and ds[2].shape == (3, 6, 4)
    assert float(ds[1].min()) == 1.0  # 16-bit white
    gray = ImageFolderDataset(tmp_path, channels=1, size=(3, 2))
    assert gray[0].shape == (1, 3, 2)
    torch.testing.assert_close(gray[0], torch.full((1, 3, 2), 0.299))
    assert ImageFolderDataset(tmp_path, channels=3)[1].shape == (3, 6, 4)

    (tmp_path / "labels.csv").write_text("path,label,age\nsub/c.png,male,40\na.png,female,31\n")
    ds = ImageFolderDataset(tmp_path, labels="labels.csv")
    assert ds.classes == ["female", "male"] and [ds[i][1] for i in range(2)] == [1, 0]
    ages = ImageFolderDataset(tmp_path, labels="labels.csv", label_column="age")
    assert ages.classes is None and ages[0][1] == 40
    (tmp_path / "bad.csv").write_text("path,label\nmissing.png,x\n")
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageFolderDataset(tmp_path, labels="bad.csv")


def test_load_image_rejects_bad_channels(tmp_path):
    iio.imwrite(tmp_path / "x.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="channels"):
        load_image(tmp_path / "x.png", channels=2)


# --------------------------------------------------------------------------------------------------
# Data scripts on synthetic stand-ins of the raw layouts
# --------------------------------------------------------------------------------------------------


def _avi(path: Path, frames: int, moving: bool) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (48, 32), fps=25, macro_block_size=16, ffmpeg_log_level="error")
    writer.send(None)
    for i in range(frames):
        frame = np.zeros((32, 48, 3), np.uint8)
        x = 8 * i if moving else 0
        frame[:, x : x + 8] = 255
        writer.send(frame.tobytes())
    writer.close()


def test_weizmann_prepare_from_file_and_load(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _avi(raw / "daria_walk.avi", 6, moving=True)
    _avi(raw / "lena_wave1.avi", 4, moving=False)
    archive = tmp_path / "walk.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(raw / "daria_walk.avi", "walk/daria_walk.avi")
        zf.write(raw / "lena_wave1.avi", "lena_wave1.avi")
    out, manifest = tmp_path / "weizmann", tmp_path / "manifest.json"
    args = ["--out", str(out), "--from-file", str(archive), "--manifest", str(manifest), "--size", "16"]
    r = run_script("weizmann.py", *args)
    assert r.returncode == 0, r.stderr

    assert json.loads(manifest.read_text())["weizmann/walk.zip"]["source"] == RECORDED_NOT_PUBLISHED
    rows = read_csv(out / "labels.csv")
    assert [(r["clip"], r["label"], r["person"], r["frames"]) for r in rows] == [
        ("clips/daria_walk", "walk", "daria", "6"), ("clips/lena_wave1", "wave1", "lena", "4")]
    ds = FrameFolderDataset(out, labels="labels.csv", channels=1)
    assert ds.classes == ["walk", "wave1"]
    clip, label = ds[0]
    assert clip.shape == (6, 1, 16, 16) and label == 0
    # The white bar moves right: its brightness-weighted column grows frame by frame.
    cols = torch.arange(16, dtype=torch.float32)
    center = (clip[:, 0].sum(1) * cols).sum(1) / clip[:, 0].sum((1, 2))
    assert bool((center[1:] > center[:-1]).all())

    again = run_script("weizmann.py", *args)  # idempotent: already prepared
    assert again.returncode == 0 and "already prepared" in again.stderr
    with zipfile.ZipFile(archive, "a") as zf:  # the archive changes: the recorded hash catches it
        zf.writestr("extra.txt", "x")
    bad = run_script("weizmann.py", *args, "--force")
    assert bad.returncode == 1 and "Checksum mismatch" in bad.stderr


def test_kitti_resize_sparse_keeps_nearest_point():
    kitti = import_script("kitti_depth")
    depth = np.zeros((4, 4), np.uint16)
    depth[0, 0], depth[1, 1], depth[3, 3] = 5000, 3000, 7000
    small = kitti.resize_sparse(depth, (2, 2))
    assert small.tolist() == [[3000, 0], [0, 7000]]
    assert kitti.resize_sparse(depth, (8, 8))[7, 7] == 7000 and np.count_nonzero(kitti.resize_sparse(depth, (8, 8))) == 3


def test_kitti_prepare_selection_from_file(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "raw" / "depth_selection" / "val_selection_cropped"
    stem = "2011_09_26_drive_0002_sync_{}_0000000005_image_02.png"
    rgb = rng.integers(0, 255, (20, 60, 3), dtype=np.uint8)
    sparse = np.zeros((20, 60), np.uint16)
    ys, xs = rng.integers(10, 20, 40), rng.integers(0, 60, 40)
    sparse[ys, xs] = rng.integers(256, 80 * 256, 40).astype(np.uint16)
    for sub, kind, img in [("image", "image", rgb), ("velodyne_raw", "velodyne_raw", sparse),
                           ("groundtruth_depth", "groundtruth_depth", sparse)]:
        (base / sub).mkdir(parents=True, exist_ok=True)
        iio.imwrite(base / sub / stem.format(kind), img)
    archive = tmp_path / "data_depth_selection.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((tmp_path / "raw").rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path / "raw").as_posix())
    out = tmp_path / "kitti"
    run_main("kitti_depth.py", "--out", str(out), "--from-file", str(archive), "--manifest",
             str(tmp_path / "m.json"), "--height", "10", "--width", "12", "--crops", "2")
    rows = read_csv(out / "index.csv")
    assert len(rows) == 2 and {r["split"] for r in rows} == {"val_selection_cropped"}
    assert [int(r["crop_x"]) for r in rows] == [0, 18]  # 60 columns scaled by 0.5 -> 30; windows at 0 and 18
    for row in rows:
        image = iio.imread(out / row["image"])
        depth = iio.imread(out / row["sparse_depth"])
        assert image.shape == (10, 12, 3) and image.dtype == np.uint8
        assert depth.shape == (10, 12) and depth.dtype == np.uint16
        assert set(np.unique(depth[depth > 0])) <= set(np.unique(sparse[sparse > 0]))  # values never blended
        assert int(row["points"]) == np.count_nonzero(depth) > 0
        assert (out / row["dense_depth"]).is_file()
    assert json.loads((out / PREPARED_MARKER).read_text())["depth_units"] == "metres = value / 256"


def test_nyu_prepare_from_older_mat_file(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (6, 8, 3, 2), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.0, (6, 8, 2))
    depths[0, 0, 1] = 0.0
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    scipy_io.savemat(mat, {"images": images, "depths": depths})
    out = tmp_path / "nyu"
    run_main("nyu_depth_v2.py", "--out", str(out), "--from-file", str(mat), "--manifest", str(tmp_path / "m.json"))
    assert [row["image"] for row in read_csv(out / "index.csv")] == ["rgb/00000.png", "rgb/00001.png"]
    np.testing.assert_array_equal(iio.imread(out / "rgb/00001.png"), images[..., 1])
    mm = iio.imread(out / "depth/00001.png")
    assert mm.dtype == np.uint16 and mm[0, 0] == 0
    np.testing.assert_array_equal(mm[1:], np.round(depths[1:, :, 1] * 1000).astype(np.uint16))


def test_nyu_reads_hdf5_layout(tmp_path):
    h5py = pytest.importorskip("h5py")
    nyu = import_script("nyu_depth_v2")
    images = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)  # (N, 3, W, H)
    with h5py.File(tmp_path / "x.mat", "w") as f:
        f["images"] = images
        f["depths"] = np.ones((2, 4, 5))
    rgb, depth = nyu.LabeledMat(tmp_path / "x.mat")[1]
    assert rgb.shape == (5, 4, 3) and depth.shape == (5, 4)
    np.testing.assert_array_equal(rgb[:, :, 0], images[1, 0].T)


def _tar_bytes(path: Path, files: dict, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _jpeg(h: int = 12, w: int = 16, value: int = 120) -> bytes:
    return iio.imwrite("<bytes>", np.full((h, w, 3), value, np.uint8), extension=".jpg")


def test_diw_prepare_from_files(tmp_path):
    annotations = _tar_bytes(tmp_path / "DIW_Annotations_splitted.tar.gz", {
        "DIW_test.csv": (b"./DIW_test/abc.thumb\n5,7,10,3,<,16,12\n"
                         b"./DIW_test/missing.thumb\n1,1,2,2,>,16,12\n"),
    })
    images = _tar_bytes(tmp_path / "DIW_test.tar.gz", {"DIW_test/abc.thumb": _jpeg()})
    out = tmp_path / "diw"
    run_main("diw.py", "--out", str(out), "--from-file", str(annotations), str(images),
             "--manifest", str(tmp_path / "m.json"))
    pairs = json.loads((out / "pairs.json").read_text())
    assert pairs == [{"image": "images/test/abc.jpg", "split": "test", "a": [4, 6], "b": [9, 2], "relation": "<",
                      "ordinal": -1, "width": 16, "height": 12}]
    assert iio.imread(out / "images/test/abc.jpg").shape == (12, 16, 3)
    assert json.loads((out / PREPARED_MARKER).read_text())["missing_images"] == 1
    recorded = json.loads((tmp_path / "m.json").read_text())
    assert set(recorded) == {"diw/DIW_Annotations_splitted.tar.gz", "diw/DIW_test.tar.gz"}


def test_imdb_wiki_prepare_filters_and_loads(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    paths = ["00/a_1980.jpg", "01/b_1990.jpg", "01/c.jpg", "02/d.jpg"]
    # MATLAB datenum of 1980-01-01 is 723181; photo taken 2010 -> 30 years old on 1 July.
    meta = {
        "full_path": np.array([np.array([p]) for p in paths], dtype=object).reshape(1, -1),
        "face_score": np.array([[3.0, 2.0, 0.2, 4.0]]),
        "second_face_score": np.array([[np.nan, np.nan, np.nan, 1.5]]),
        "gender": np.array([[1.0, 0.0, 1.0, np.nan]]),
        "dob": np.array([[723181.0, 726834.0, 723181.0, 723181.0]]),
        "photo_taken": np.array([[2010, 2010, 2010, 2010]]),
    }
    mat_buf = io.BytesIO()
    scipy_io.savemat(mat_buf, {"wiki": meta})
    files = {"wiki_crop/wiki.mat": mat_buf.getvalue()}
    files.update({f"wiki_crop/{p}": _jpeg(30, 24, 40 * (i + 1)) for i, p in enumerate(paths)})
    archive = _tar_bytes(tmp_path / "wiki_crop.tar", files, mode="w")
    out = tmp_path / "faces"
    run_main("imdb_wiki.py", "--out", str(out), "--from-file", str(archive), "--manifest",
             str(tmp_path / "m.json"), "--size", "8")
    rows = read_csv(out / "labels.csv")
    assert [(r["path"], r["gender"], r["age"]) for r in rows] == [
        ("images/00/a_1980.png", "male", "30"), ("images/01/b_1990.png", "female", "20")]
    ds = ImageFolderDataset(out, labels="labels.csv", label_column="age")
    image, age = ds[0]
    assert image.shape == (3, 8, 8) and age == 30
    assert ImageFolderDataset(out, size=4)[1].shape == (3, 4, 4)


def test_voxceleb_metadata_then_clips(tmp_path):
    import imageio_ffmpeg

    video_id = "AbCdEfGhIjK"
    segment = ("Identity  : \tid10001\nReference : \t" + video_id + "\nOffset    : \t1\nFV Conf   : \t16.6\n"
               "ASD Conf  : \t4.4\n\nFRAME \tX \tY \tW \tH \n"
               + "".join(f"{f:06d} \t0.25 \t0.20 \t0.30 \t0.40 \n" for f in range(5, 15)))
    archive = tmp_path / "vox1_test_txt.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"txt/id10001/{video_id}/00001.txt", segment)
    out, manifest = tmp_path / "vox", tmp_path / "m.json"
    common = ["--out", str(out), "--from-file", str(archive), "--manifest", str(manifest), "--size", "16"]

    with pytest.raises(DownloadError, match="--videos"):
        run_main("voxceleb.py", *common)
    assert (out / "videos_needed.txt").read_text().split() == [video_id]
    assert not (out / PREPARED_MARKER).exists()

    videos = tmp_path / "videos"
    videos.mkdir()
    writer = imageio_ffmpeg.write_frames(str(videos / f"{video_id}.mp4"), (64, 48), fps=25, macro_block_size=16,
                                         ffmpeg_log_level="error")
    writer.send(None)
    for i in range(30):
        writer.send(np.full((48, 64, 3), 8 * i, np.uint8).tobytes())
    writer.close()
    run_main("voxceleb.py", *common, "--videos", str(videos))
    rows = read_csv(out / "labels.csv")
    assert [(r["clip"], r["label"], r["frames"]) for r in rows] == [(f"clips/id10001/{video_id}_00001", "id10001", "10")]
    ds = FrameFolderDataset(out, labels="labels.csv", clip_len=4)
    clip, label = ds[0]
    assert clip.shape == (4, 3, 16, 16) and ds.classes == ["id10001"] and label == 0
    whole = FrameFolderDataset(out)[0]
    # Frames 5..14 were cut (not 0..9): frame k has gray level 8k.
    assert abs(float(whole[0].mean()) * 255 - 40) < 6 and abs(float(whole[-1].mean()) * 255 - 112) < 6


def test_voxceleb_crop_box_units():
    vox = import_script("voxceleb")
    seg = vox.Segment("id", "v", "00001", np.array([1, 2]), np.array([[0.25, 0.25, 0.5, 0.5], [0.3, 0.25, 0.5, 0.5]]))
    # Fractions: union x 160..512, y 90..270 -> a 352-px square around (336, 180), inside the frame.
    assert vox.crop_box(seg, 640, 360, increase=0.0) == (160, 4, 352)
    assert vox.crop_box(seg, 640, 360, increase=0.5) == (156, 0, 360)  # never larger than the frame
    pixels = vox.Segment("id", "v", "00001", np.array([1]), np.array([[100.0, 50.0, 80.0, 120.0]]))
    assert vox.crop_box(pixels, 1280, 720, increase=0.0) == (160, 100, 240)  # 360p boxes scale by 720/360
