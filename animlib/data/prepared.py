"""Loaders for prepared real data: one per script in ``data_scripts/``, all in one place.

Each script downloads a data set, verifies it and writes a prepared folder (with a ``.prepared``
marker); each loader here reads one such folder and raises ``FileNotFoundError`` naming the
command that prepares it when the folder is missing or unfinished. They are built on the generic
folder datasets of :mod:`animlib.data.folders`.

===========================  ==============================================  ====================================
script                       loader                                          items
===========================  ==============================================  ====================================
``kitti_depth.py``           :class:`KittiDepth`                             image, sparse lidar depth (metres)
``nyu_depth_v2.py``          :class:`NyuDepthV2`                             image, dense depth (metres)
``diw.py``                   :class:`DiwPairs`                               image, one ordinal point pair
``imdb_wiki.py``             :class:`RealFaces`                              face crops
``voxceleb.py``              :class:`FaceVideos`                             face clips (driving videos)
``voxceleb.py --landmarks``  :func:`face_tracks`                             frames + 68 landmarks per track
``weizmann.py``              :func:`~animlib.data.actions.weizmann_dataset`  grayscale human-action clips
(your own folder of clips)   :class:`CinemagraphClips`                       looping clips with an estimated mask
===========================  ==============================================  ====================================

The Weizmann loader lives in :mod:`animlib.data.actions`, with the rest of the Weizmann code.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .folders import FrameFolderDataset, ImageFolderDataset, load_image, require_prepared
from .scenes import motion_mask_from_clip

__all__ = ["KittiDepth", "NyuDepthV2", "DiwPairs", "RealFaces", "FaceVideos", "face_tracks",
           "CinemagraphClips"]


# ----------------------------------------------------------------------------------------------
# relative depth (chapter 4)
# ----------------------------------------------------------------------------------------------
def _resize_pair(image: torch.Tensor, depth: torch.Tensor, size: Optional[Tuple[int, int]]):
    """Resize image (bilinear) and sparse depth (nearest, so no invented depths) to ``size``."""
    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return image, depth
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)
    depth = F.interpolate(depth[None], size=size, mode="nearest")[0]
    return image, depth


def _read_index(root: Path, name: str = "index.csv") -> List[Dict[str, str]]:
    path = root / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the folder is not a complete prepared dataset")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class KittiDepth(Dataset):
    """KITTI crops with sparse lidar depth, as written by ``data_scripts/kitti_depth.py``.

    Items are dicts: ``image`` ``(3, H, W)`` in [0, 1], ``depth`` ``(1, H, W)`` metres (0 = no
    point), ``valid`` (bool). ``split`` filters the index's split column (``None`` = all);
    ``size`` resizes (depth with nearest neighbours). ``dense=True`` returns the semi-dense ground
    truth instead of the raw lidar where the index has it.
    """

    script = "kitti_depth.py"

    def __init__(self, root, split: Optional[str] = None, size: Optional[Tuple[int, int]] = None, dense: bool = False):
        self.root = require_prepared(root, self.script)
        rows = _read_index(self.root)
        self.rows = [r for r in rows if split is None or r.get("split") == split]
        if not self.rows:
            raise FileNotFoundError(f"no KITTI items with split={split!r} under {self.root}")
        self.size, self.dense = size, dense

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        row = self.rows[i]
        image = load_image(self.root / row["image"], channels=3)
        key = "dense_depth" if self.dense and row.get("dense_depth") else "sparse_depth"
        raw = load_image(self.root / row[key])  # uint16 / 65535
        depth = raw * (65535.0 / 256.0)  # KITTI: metres = value / 256
        image, depth = _resize_pair(image, depth, self.size)
        return {"image": image, "depth": depth, "valid": depth > 0}


class NyuDepthV2(Dataset):
    """NYU Depth v2 labelled frames, as written by ``data_scripts/nyu_depth_v2.py``.

    Items: ``image`` ``(3, H, W)``, ``depth`` ``(1, H, W)`` metres (0 = none), ``valid``. ``indices``
    selects frames by their position in the index (e.g. a train/test split); ``size`` resizes.
    """

    script = "nyu_depth_v2.py"

    def __init__(self, root, indices: Optional[Sequence[int]] = None, size: Optional[Tuple[int, int]] = None):
        self.root = require_prepared(root, self.script)
        rows = _read_index(self.root)
        self.rows = rows if indices is None else [rows[i] for i in indices]
        if not self.rows:
            raise FileNotFoundError(f"no NYU frames selected under {self.root}")
        self.size = size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        row = self.rows[i]
        image = load_image(self.root / row["image"], channels=3)
        depth = load_image(self.root / row["depth"]) * (65535.0 / 1000.0)  # millimetres -> metres
        image, depth = _resize_pair(image, depth, self.size)
        return {"image": image, "depth": depth, "valid": depth > 0}


class DiwPairs(Dataset):
    """Depth in the Wild: one annotated point pair per photo, from ``data_scripts/diw.py``.

    Items: ``image`` ``(3, H, W)`` (resized to ``size`` if given, the pair's coordinates scaled with
    it) and ``pair`` = ``(ya, xa, yb, xb, relation)`` as a long tensor, relation -1 (A nearer),
    0 or +1.
    """

    script = "diw.py"

    def __init__(self, root, split: Optional[str] = "test", size: Optional[Tuple[int, int]] = None):
        self.root = require_prepared(root, self.script)
        path = self.root / "pairs.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run data_scripts/diw.py again")
        pairs = json.loads(path.read_text(encoding="utf-8"))
        self.items = [p for p in pairs if split is None or p.get("split") == split]
        self.items = [p for p in self.items if (self.root / p["image"]).exists()]
        if not self.items:
            raise FileNotFoundError(f"no DIW pairs with split={split!r} and an image under {self.root}")
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        p = self.items[i]
        image = load_image(self.root / p["image"], channels=3)
        (ya, xa), (yb, xb) = p["a"], p["b"]
        if self.size is not None:
            h, w = image.shape[-2:]
            sy, sx = self.size[0] / h, self.size[1] / w
            image = F.interpolate(image[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]
            ya, yb = min(int(ya * sy), self.size[0] - 1), min(int(yb * sy), self.size[0] - 1)
            xa, xb = min(int(xa * sx), self.size[1] - 1), min(int(xb * sx), self.size[1] - 1)
        return {"image": image.clamp(0, 1), "pair": torch.tensor([ya, xa, yb, xb, int(p["ordinal"])])}


# ----------------------------------------------------------------------------------------------
# faces (chapters 5 and 6)
# ----------------------------------------------------------------------------------------------
class RealFaces(Dataset):
    """Face crops prepared by ``data_scripts/imdb_wiki.py`` (IMDB-WIKI, Rothe et al. 2018).

    Items are ``(image (3, size, size), 0)`` in [0, 1] (the dummy label keeps batches shaped like
    :class:`SyntheticFaces`'s first element). Raises ``FileNotFoundError`` naming the script when
    the folder is missing or unfinished.
    """

    def __init__(self, root, size: int = 64, transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.images = ImageFolderDataset(root, size=size, channels=3, script="imdb_wiki.py", transform=transform)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], 0


class FaceVideos(Dataset):
    """Face clips prepared by ``data_scripts/voxceleb.py`` (VoxCeleb, Nagrani et al. 2017).

    Items are clips ``(clip_len, 3, size, size)`` in [0, 1] (driving videos for latent-difference
    video).
    """

    def __init__(self, root, clip_len: int = 16, size: int = 64, stride: int | None = None):
        self.clips = FrameFolderDataset(root, clip_len=clip_len, stride=stride, size=size, channels=3,
                                        script="voxceleb.py")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.clips[i]


#: the per-clip landmark file ``data_scripts/voxceleb.py --landmarks`` writes: (T, 68, 2) in [-1, 1]
LANDMARKS_FILE = "landmarks68.npy"


def face_tracks(root, n_poses: int, size: int, max_tracks: Optional[int] = None,
                seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Face tracks for reenactment (chapter 8): ``n_poses`` frames of each prepared VoxCeleb clip.

    Needs the landmarks that ``python data_scripts/voxceleb.py --out ROOT --landmarks`` stores next
    to each clip's frames (``landmarks68.npy``, dlib's 68 points). Returns ``(images (N, n_poses, 3,
    size, size) in [0, 1], points (N, n_poses, 68, 2) in [-1, 1])``, frames drawn evenly along each
    clip; clips shorter than ``n_poses`` or without landmarks are skipped. ``max_tracks`` keeps a
    random subset (seeded).
    """
    import numpy as np

    clips = FrameFolderDataset(root, clip_len=None, size=size, channels=3, script="voxceleb.py")
    base = Path(clips.root)
    with_lm = [i for i in range(len(clips)) if (base / clips.clip_name(i) / LANDMARKS_FILE).is_file()]
    if not with_lm:
        raise FileNotFoundError(f"no {LANDMARKS_FILE} under {root}: run python data_scripts/voxceleb.py --out {root} "
                                "--landmarks (dlib's 68-point model, offline) to add them")
    if max_tracks is not None and len(with_lm) > max_tracks:
        g = torch.Generator().manual_seed(seed)
        with_lm = [with_lm[i] for i in torch.randperm(len(with_lm), generator=g)[:max_tracks].tolist()]
    images, points = [], []
    for i in with_lm:
        pts = torch.from_numpy(np.load(base / clips.clip_name(i) / LANDMARKS_FILE, allow_pickle=False)).float()
        clip = clips[i]  # (T, 3, size, size)
        if clip.shape[0] < n_poses or pts.shape[0] != clip.shape[0]:
            continue
        pick = torch.linspace(0, clip.shape[0] - 1, n_poses).round().long()
        images.append(clip[pick])
        points.append(pts[pick])
    if not images:
        raise FileNotFoundError(f"no clip under {root} has {n_poses} frames with landmarks")
    return torch.stack(images), torch.stack(points)


# ----------------------------------------------------------------------------------------------
# cinemagraph clips of your own (chapters 1 and 2)
# ----------------------------------------------------------------------------------------------
class CinemagraphClips(Dataset):
    """Real cinemagraph clips from a folder: ``root/<clip>/00000.png, 00001.png, ...``.

    Items are dicts like a :class:`SceneStream` batch entry: ``frames`` ``(T, 3, H, W)`` in [0, 1],
    ``mask`` ``(1, H, W)`` estimated with :func:`motion_mask_from_clip` (real clips have no
    ground-truth mask) and ``label = -1`` (no motion class). Clips should loop (frame ``T`` close to
    frame 0), as cinemagraphs do. The default collate of a ``DataLoader`` batches them.
    """

    def __init__(self, root: Union[str, Path], frames: int = 8, size: int = 128, stride: Optional[int] = None,
                 mask_threshold: float = 0.04):
        if root is None or not Path(root).expanduser().is_dir():
            raise FileNotFoundError(
                f"no clip folder at {root!r}: put one folder of PNG/JPG frames per cinemagraph clip under it "
                "(root/<clip>/00000.png, ...), or use data_root=None for the synthetic scenes"
            )
        self.inner = FrameFolderDataset(Path(root).expanduser(), clip_len=frames, stride=stride or frames,
                                        size=size, channels=3, marker=None, script="(none)")
        self.mask_threshold = mask_threshold

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        clip = self.inner[i]  # (T, 3, H, W)
        return {"frames": clip, "mask": motion_mask_from_clip(clip, self.mask_threshold),
                "label": torch.tensor(-1), "velocity": torch.zeros(2)}
