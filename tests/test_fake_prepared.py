"""The fake data folders of animlib.data.fake_prepared load with the real loaders at the full profile's sizes.

One fake data root is written per test session; each test reads one dataset of it with the loader
(and the split) that its chapter uses, at the sizes of that chapter's ``full()`` settings, and checks
that the counts suffice for the chapter's splits and batches. Small separate folders check the
``PREPARED`` marker, determinism and the refusal to write over other files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from animlib.data import actions, prepared
from animlib.data import fake_prepared as fp
from animlib.data.download import PREPARED_MARKER
from animlib.data.folders import FrameFolderDataset, ImageFolderDataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return fp.write_fake_data_root(tmp_path_factory.mktemp("fake_root"), seed=0)


def _held_out(n: int, share: float = 0.1) -> int:
    """Items in the last tenth, as chapter 4 cuts NYU and KITTI (``int(0.9 * n)`` train)."""
    return n - int((1 - share) * n)


def test_root_layout_and_note(root):
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(fp.FAKE_DATASETS)
    note = json.loads((root / fp.ROOT_NOTE).read_text())
    assert note["seed"] == 0 and note["chapter_data_root"] == fp.CHAPTER_DATA_ROOT
    for name in ("weizmann", "kitti", "nyu", "diw", "imdb_wiki", "voxceleb"):
        marker = json.loads((root / name / PREPARED_MARKER).read_text())
        assert marker["fake"] is True and marker["dataset"].startswith(name.split("_")[0])
    for name in ("cinemagraph_clips", "photos"):  # read with marker=None, as a user's own folder is
        assert not (root / name / PREPARED_MARKER).exists()


def test_kitti_at_chapter_4_size(root):
    from animlib.depth import DepthSettings

    size = DepthSettings.full().size
    kitti = prepared.KittiDepth(root / "kitti", size=size)
    assert len(kitti) == 33 and _held_out(len(kitti)) >= 4  # the street test figure shows four images
    item = kitti[0]
    assert item["image"].shape == (3, *size) and 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    depth, valid = item["depth"], item["valid"]
    assert depth.shape == (1, *size) and valid.dtype == torch.bool
    share = float(valid.float().mean())
    assert 0.02 < share < 0.5  # a sparse lidar band
    assert 1.0 < float(depth[valid].min()) and float(depth[valid].max()) <= 80.0 + 1 / 256
    assert not valid[0, :10].any()  # no returns at the top of the image (sky, above the beams)
    dense = prepared.KittiDepth(root / "kitti", size=size, dense=True)[0]
    assert int(dense["valid"].sum()) > int(valid.sum())
    assert len(prepared.KittiDepth(root / "kitti", split="val_selection_cropped")) == len(kitti)
    raw = prepared.KittiDepth(root / "kitti")[0]  # stored at the script's 224 x 288
    assert raw["image"].shape == (3, 224, 288)


def test_nyu_at_chapter_4_size(root):
    from animlib.depth import DepthSettings

    size = DepthSettings.full().size
    nyu = prepared.NyuDepthV2(root / "nyu", size=size)
    cut = int(0.9 * len(nyu))
    test = prepared.NyuDepthV2(root / "nyu", indices=range(cut, len(nyu)), size=size)
    assert len(test) >= 3  # the test figure shows three rooms
    item = test[0]
    assert item["image"].shape == (3, *size) and item["depth"].shape == (1, *size)
    assert bool(item["valid"].all())  # dense, like the in-painted Kinect maps
    assert 0.5 < float(item["depth"].min()) and float(item["depth"].max()) < 10.0


def test_diw_pairs(root):
    pairs = json.loads((root / "diw" / "pairs.json").read_text())
    assert {p["split"] for p in pairs} == {"test", "train_val"}
    test = prepared.DiwPairs(root / "diw")
    assert len(test) == 8 and len(prepared.DiwPairs(root / "diw", split=None)) == len(pairs)
    for p in pairs:
        assert p["ordinal"] == {"<": -1, "=": 0, ">": 1}[p["relation"]]
        assert all(0 <= v < lim for v, lim in zip(p["a"] + p["b"], (p["height"], p["width"]) * 2))
    item = test[1]  # a portrait photo
    assert item["image"].shape[1:] == (pairs[1]["height"], pairs[1]["width"])
    small = prepared.DiwPairs(root / "diw", size=(64, 96))[1]["pair"]
    assert small.shape == (5,) and 0 <= int(small[0]) < 64 and 0 <= int(small[1]) < 96


def test_faces_for_chapters_5_and_6(root):
    from animlib.vae import VAESettings
    from animlib.vaegan import VAEGANSettings

    for cfg in (VAESettings.full(), VAEGANSettings.full()):
        faces = prepared.RealFaces(root / "imdb_wiki", size=cfg.size)
        n_test = min(cfg.n_test, len(faces) // 10)
        assert len(faces) - n_test >= cfg.batch  # one batch of the DataLoader with drop_last
        image, label = faces[0]
        assert image.shape == (3, cfg.size, cfg.size) and label == 0
        driving = prepared.FaceVideos(root / "voxceleb", clip_len=cfg.frames, size=cfg.size)
        n_clips = min(cfg.n_clips, len(driving))
        assert 2 <= n_clips <= n_test  # one held-out photo per driving clip; the storyboard shows clip 1
        assert driving[0].shape == (cfg.frames, 3, cfg.size, cfg.size)
    labelled = ImageFolderDataset(root / "imdb_wiki", labels="labels.csv")
    assert labelled.classes == ["female", "male"]
    ages = ImageFolderDataset(root / "imdb_wiki", labels="labels.csv", label_column="age")
    assert all(18 <= ages[i][1] <= 70 for i in range(0, len(ages), 12))


def test_voxceleb_tracks_for_chapter_8(root):
    from animlib.data.landmarks import interocular_distance, normalized_to_pixels
    from animlib.reenact import ReenactSettings

    cfg = ReenactSettings.full()
    images, points = prepared.face_tracks(root / "voxceleb", n_poses=cfg.n_poses, size=cfg.size,
                                          max_tracks=cfg.n_ids, seed=0)
    assert images.shape == (4, cfg.n_poses, 3, cfg.size, cfg.size) and points.shape == (4, cfg.n_poses, 68, 2)
    assert len(images) > max(2, len(images) // 10)  # held-out tracks and some to train on
    assert float(points.abs().max()) <= 1.1 and float(interocular_distance(points).min()) > 0.2  # a chin may leave
    # the landmarks sit on the drawn face: the nose tip's pixel is not the background's
    x, y = normalized_to_pixels(points[0, 0, 30], cfg.size, cfg.size).round().long().tolist()
    assert float((images[0, 0, :, y, x] - images[0, 0, :, 2, 2]).abs().sum()) > 0.1
    clips = FrameFolderDataset(root / "voxceleb", labels="labels.csv")
    assert clips.classes == ["id10270", "id10271"] and len(clips) == 4
    assert (root / "voxceleb" / "videos_needed.txt").read_text().count("\n") == 2
    stored = np.load(next((root / "voxceleb" / "clips").rglob("landmarks68.npy")))
    assert stored.dtype == np.float32 and stored.shape == (24, 68, 2)


def test_weizmann_benchmark_for_chapter_7(root):
    from animlib.data.actions import ACTIONS, weizmann_benchmark
    from animlib.video_ae import VideoAESettings

    cfg = VideoAESettings.full().model
    T, size = cfg.frames, cfg.image_size
    train, val, test, flags, labels = weizmann_benchmark(root / "weizmann", frames=T, size=size, seed=0,
                                                         with_labels=True)
    assert train.shape[1:] == (T, 1, size, size) and -1.0 <= float(train.min()) and float(train.max()) <= 1.0
    assert len(test["normal"]) >= 4  # the storyboard of held-out clips shows four
    assert set(test) == {"normal", "unseen_action", "backwards", "teleport", "object"}
    seen = set(labels["train"].tolist()) | set(labels["val"].tolist()) | set(labels["normal"].tolist())
    assert seen == set(range(len(ACTIONS))) - {ACTIONS.index("jack")}  # every action but the unseen one
    ds = actions.weizmann_dataset(root / "weizmann", frames=T, size=size)
    assert ds[0].shape == (T, 1, size, size)
    table = FrameFolderDataset(root / "weizmann", labels="labels.csv")
    assert len(table.classes) == 10 and len(table) == 20


def test_cinemagraph_clips_for_chapter_1(root):
    from animlib.cinemagraph import CinemagraphSettings

    s = CinemagraphSettings.full()
    clips = prepared.CinemagraphClips(root / "cinemagraph_clips", frames=s.scene.frames, size=s.scene.size)
    n_test = max(1, len(clips) // 10)
    assert n_test >= 3 and len(clips) - n_test >= s.batch  # three held-out loops shown; one full batch
    a, b = clips[0], clips[1]  # two loops of the first clip folder
    assert a["frames"].shape == (s.scene.frames, 3, s.scene.size, s.scene.size)
    assert torch.equal(a["frames"], b["frames"])  # the loop repeats
    moving = float(a["mask"].mean())
    assert 0.05 < moving < 0.95  # the water band moves, the background stays


def test_photos_for_chapter_3(root):
    from animlib.fast_style import FastStyleSettings

    s = FastStyleSettings.full()
    photos = ImageFolderDataset(root / "photos", size=s.crop, channels=3, marker=None)
    assert len(photos) >= 2 * s.batch
    assert photos[0].shape == (3, s.crop, s.crop)
    assert {p.suffix for p in photos.paths} == {".jpg"}


@pytest.mark.parametrize("name,loader", [
    ("weizmann", lambda p: actions.weizmann_dataset(p, frames=4, size=16)),
    ("kitti", prepared.KittiDepth),
    ("nyu", prepared.NyuDepthV2),
    ("diw", prepared.DiwPairs),
    ("imdb_wiki", prepared.RealFaces),
    ("voxceleb", lambda p: prepared.FaceVideos(p, clip_len=4, size=16)),
])
def test_small_folders_load_and_need_the_marker(tmp_path, name, loader):
    frames = {"frames": 6} if name in ("weizmann", "voxceleb") else {}
    size = {"kitti": (24, 40), "nyu": (24, 32), "diw": (24, 32)}.get(name, 16)
    out = fp.write_fake_dataset(name, tmp_path / name, n=2, size=size, seed=1, **frames)
    ds = loader(out)
    assert len(ds) >= 1
    (out / PREPARED_MARKER).unlink()
    with pytest.raises(FileNotFoundError, match="PREPARED"):
        loader(out)


def test_deterministic_and_seeded(tmp_path):
    a = fp.write_fake_dataset("nyu", tmp_path / "a", n=2, size=(24, 32), seed=3)
    b = fp.write_fake_dataset("nyu", tmp_path / "b", n=2, size=(24, 32), seed=3)
    c = fp.write_fake_dataset("nyu", tmp_path / "c", n=2, size=(24, 32), seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 4
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


def test_refuses_other_folders_and_bad_arguments(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        fp.write_fake_dataset("photos", tmp_path / "mine")
    with pytest.raises(FileExistsError):
        fp.write_fake_data_root(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="unknown fake dataset"):
        fp.write_fake_dataset("coco", tmp_path / "x")
    with pytest.raises(ValueError, match="frames"):
        fp.write_fake_dataset("nyu", tmp_path / "y", frames=4)


def test_weizmann_names(tmp_path):
    out = fp.write_fake_weizmann(tmp_path, names=["lena_walk2", "daria_wave1"], frames=3, size=16)
    rows = (out / "labels.csv").read_text().splitlines()
    assert rows == ["clip,label,person,frames", "clips/lena_walk2,walk,lena,3", "clips/daria_wave1,wave1,daria,3"]
    with pytest.raises(ValueError, match="no Weizmann action"):
        fp.write_fake_weizmann(tmp_path / "bad", names=["someone_dances"])
    assert not (tmp_path / "bad").exists()  # checked before anything is written


def _chapter_reads(text: str):
    """How a chapter uses ``run.data_root``: the sub-folders it joins, and whether it passes the root itself."""
    subs = set(re.findall(r'run\.data_root\s*/\s*"([^"]+)"', text))
    direct = bool(re.search(r"\(run\.data_root\s*,", text))
    return subs, direct


def test_chapter_data_root_matches_the_chapters(root):
    chapters = {p.stem: p.read_text(encoding="utf-8") for p in sorted((REPO / "chapters").glob("[0-9]*.md"))}
    assert set(fp.CHAPTER_DATA_ROOT) == set(chapters)
    for stem, sub in fp.CHAPTER_DATA_ROOT.items():
        subs, direct = _chapter_reads(chapters[stem])
        if sub is None:
            assert not subs and not direct, stem
        elif sub == ".":
            assert subs and not direct, stem
            assert all((root / s).is_dir() for s in subs), (stem, subs)
        else:
            assert direct and not subs, stem
            assert (root / sub).is_dir()


def test_command_line_prints_the_mapping(tmp_path, capsys, monkeypatch):
    written = []
    monkeypatch.setattr(fp, "write_fake_data_root", lambda out, seed=0: written.append((out, seed)) or out)
    assert fp.main([str(tmp_path / "data"), "--seed", "2"]) == 0
    assert written == [(tmp_path / "data", 2)]
    out = capsys.readouterr().out
    assert f"04_relative_depth: data_root={tmp_path / 'data'}" in out
    assert "00_toolkit: data_root=None" in out
    assert f"07_gru_video_autoencoder: data_root={tmp_path / 'data' / 'weizmann'}" in out


def test_root_is_replaced_by_a_second_call(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(fp, "write_fake_dataset", lambda name, out, seed=0: calls.append(name) or Path(out).mkdir())
    fp.write_fake_data_root(tmp_path / "r")
    (tmp_path / "r" / "kitti" / "stale.png").write_bytes(b"")
    fp.write_fake_data_root(tmp_path / "r")
    assert not (tmp_path / "r" / "kitti" / "stale.png").exists() and calls == list(fp.FAKE_DATASETS) * 2
