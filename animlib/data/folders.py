"""Folder datasets for the real data that ``data_scripts/`` prepares.

The data scripts write plain folders of PNG files plus a small label table, and finish with a
``PREPARED`` marker file. The datasets here read those folders:

- :class:`FrameFolderDataset`: a root of clip folders (``<clip>/00000.png, 00001.png, ...``), as
  written by ``weizmann.py`` and ``voxceleb.py``; items are clips ``(T, C, H, W)`` in [0, 1],
  optionally cut into fixed-length sliding windows.
- :class:`ImageFolderDataset`: flat or nested images, as written by ``imdb_wiki.py``; items are
  ``(C, H, W)`` in [0, 1], optionally with labels from the CSV/JSON table the script writes.
- :func:`require_prepared`: the check every loader runs first. Missing data raises
  :class:`FileNotFoundError` naming the exact command that prepares it.

Pixels stay in [0, 1]; a method that wants [-1, 1] (e.g. a tanh decoder) maps them in its
``transform``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .download import PREPARED_MARKER

__all__ = ["require_prepared", "load_image", "FrameFolderDataset", "ImageFolderDataset", "IMAGE_EXTENSIONS"]

PathLike = Union[str, "os.PathLike[str]"]
Size = Union[int, Tuple[int, int], None]

#: File suffixes read as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for RGB -> gray


def _command(script: str, root: PathLike | None) -> str:
    out = str(root) if root is not None else f"data/{Path(script).stem}"
    return f"python data_scripts/{script} --out {out}"


def require_prepared(
    root: PathLike | None, script: Union[str, Sequence[str]], marker: str | None = PREPARED_MARKER
) -> Path:
    """Return ``Path(root)`` if a data script finished preparing it, else raise a helpful error.

    Args:
        root: the prepared data folder (``None`` means the caller has none).
        script: the ``data_scripts/`` file that prepares this layout (or several alternatives).
        marker: the file the script writes last; ``None`` only checks that ``root`` is a folder.

    Raises:
        FileNotFoundError: naming the command to run, e.g.
            ``python data_scripts/weizmann.py --out data/weizmann``.
    """
    scripts = [script] if isinstance(script, str) else list(script)
    commands = "\n".join(f"    {_command(s, root)}" for s in scripts)
    alternatives = "one of these commands" if len(scripts) > 1 else "this command"
    if root is None:
        raise FileNotFoundError(
            f"No data folder was given. Prepare the real data with {alternatives}:\n{commands}\n"
            "and pass its --out folder as the data root (chapters: the data_root parameter)."
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"The data folder {path} does not exist. Prepare it with {alternatives}:\n{commands}")
    if marker is not None and not (path / marker).exists():
        raise FileNotFoundError(
            f"The data folder {path} is not (completely) prepared: {path / marker} is missing. "
            f"Prepare it with {alternatives}:\n{commands}\n(re-running is safe: finished steps are skipped)."
        )
    return path


def load_image(path: PathLike, channels: int | None = None) -> torch.Tensor:
    """Read an image file as a float tensor ``(C, H, W)`` in [0, 1].

    8-bit images are divided by 255 and 16-bit ones by 65535; an alpha channel is dropped.
    ``channels=1`` converts colour to luminance, ``channels=3`` repeats a gray channel; ``None``
    keeps what the file holds (1 or 3).
    """
    try:
        array = np.asarray(iio.imread(path))
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated or corrupt files raise many kinds of errors deep inside a reader
        raise OSError(f"could not read the image {path}: {type(e).__name__}: {e}. The file is damaged or "
                      "incomplete; run its data script again (it re-downloads and verifies).") from e
    if array.dtype == np.uint8:
        x = torch.from_numpy(array.astype(np.float32) / 255.0)
    elif array.dtype == np.uint16:
        x = torch.from_numpy(array.astype(np.float32) / 65535.0)
    elif array.dtype == np.bool_:
        x = torch.from_numpy(array.astype(np.float32))
    else:
        x = torch.from_numpy(array.astype(np.float32)).clamp(0.0, 1.0)
    if x.ndim == 2:
        x = x[None]  # (1, H, W)
    elif x.ndim == 3:
        x = x.permute(2, 0, 1)  # (C, H, W)
        if x.shape[0] in (2, 4):
            x = x[:-1]  # drop alpha
    else:
        raise ValueError(f"{path}: expected a still image of 2 or 3 dimensions, got shape {tuple(array.shape)}.")
    if channels == 1 and x.shape[0] == 3:
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(3, 1, 1)
        x = (x * weights).sum(0, keepdim=True)  # (1, H, W)
    elif channels == 3 and x.shape[0] == 1:
        x = x.expand(3, -1, -1).contiguous()  # (3, H, W)
    elif channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, not {channels!r}.")
    return x


def _resize(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Bilinear, antialiased resize of ``(..., C, H, W)`` to ``size`` (int = square)."""
    if size is None:
        return x
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == hw:
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])  # (N, C, H, W)
    out = F.interpolate(flat, size=hw, mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0.0, 1.0).reshape(*lead, x.shape[-3], *hw)


def _parse_value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _read_label_table(path: Path, label_column: str, key_columns: Sequence[str]) -> Dict[str, Any]:
    """Map relative path -> label from a CSV (with a header) or a JSON file written by a data script.

    JSON may be ``{"rel/path": label, ...}`` or ``[{"path": ..., "<label_column>": ...}, ...]``.
    """
    if not path.exists():
        raise FileNotFoundError(f"The label file {path} does not exist (the data script writes it next to the data).")
    table: Dict[str, Any] = {}
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return {str(k).replace("\\", "/"): v for k, v in data.items()}
        rows = data
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    for row in rows:
        key = next((row[c] for c in key_columns if c in row), None)
        if key is None or label_column not in row:
            raise ValueError(
                f"{path}: every row needs a key column ({' or '.join(key_columns)}) and the label column "
                f"{label_column!r}; found columns {sorted(row)}."
            )
        value = row[label_column]
        table[str(key).replace("\\", "/")] = _parse_value(value) if isinstance(value, str) else value
    return table


class _Labels:
    """Label values as the dataset returns them: numbers stay numbers, strings become class indices."""

    def __init__(self, values: Sequence[Any]) -> None:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            self.classes: List[Any] | None = None
            self._index: Dict[Any, int] = {}
        else:
            self.classes = sorted({str(v) for v in values})
            self._index = {c: i for i, c in enumerate(self.classes)}

    def __call__(self, value: Any) -> Any:
        return value if self.classes is None else self._index[str(value)]


def _resolve(root: Path, path: PathLike | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else root / p


def _inside(root: Path, relative: str, table: Path) -> Path:
    """``root / relative``, refusing paths that leave ``root`` (``../x``, absolute paths, symlinks out)."""
    target = (root / relative).resolve()
    base = root.resolve()
    if Path(relative).is_absolute() or (target != base and base not in target.parents):
        raise ValueError(f"{table} lists {relative!r}, which is outside the prepared folder {root}; a label "
                         "table may only name files inside its folder.")
    return root / relative


class FrameFolderDataset(Dataset):
    """Clips stored as folders of frames: ``root/<clip>/00000.png, 00001.png, ...``.

    Every folder under ``root`` that directly holds image files is one clip (clips may be nested, e.g.
    ``root/clips/<person>/<clip>/``); frames are read in file-name order.

    Args:
        root: the folder a data script prepared (it must hold the ``PREPARED`` marker unless
            ``marker=None``).
        clip_len: ``None`` returns whole clips (their lengths may differ); an int returns windows of
            exactly ``clip_len`` frames, sliding by ``stride`` (default ``clip_len``); clips shorter
            than ``clip_len`` are skipped.
        stride: step between window starts.
        size: resize frames to ``size`` (int = square, or ``(H, W)``); ``None`` keeps them.
        channels: ``1`` gray, ``3`` RGB, ``None`` as stored.
        labels: a CSV/JSON label table (relative to ``root``) keyed by clip path; only listed clips are
            used, and items become ``(clip, label)``. String labels become class indices
            (:attr:`classes`).
        label_column: which column of the table is the label.
        script: the data script(s) that prepare this layout, named in the error when data is missing.
        marker: the completion marker checked by :func:`require_prepared`.
        transform: applied to each ``(T, C, H, W)`` clip tensor.

    Items: ``(T, C, H, W)`` float tensors in [0, 1] (and the label when ``labels`` is given).
    """

    def __init__(
        self,
        root: PathLike | None,
        *,
        clip_len: int | None = None,
        stride: int | None = None,
        size: Size = None,
        channels: int | None = None,
        labels: PathLike | None = None,
        label_column: str = "label",
        script: Union[str, Sequence[str]] = ("weizmann.py", "voxceleb.py"),
        marker: str | None = PREPARED_MARKER,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = require_prepared(root, script, marker)
        if clip_len is not None and clip_len < 1:
            raise ValueError(f"clip_len must be a positive number of frames, not {clip_len}.")
        if stride is not None and stride < 1:
            raise ValueError(f"stride must be positive, not {stride}.")
        self.clip_len = clip_len
        self.stride = stride or clip_len or 1
        self.size = size
        self.channels = channels
        self.transform = transform
        exts = {e.lower() for e in extensions}

        frames_by_dir: Dict[Path, List[Path]] = {}
        for dirpath, _dirnames, filenames in os.walk(self.root):
            frames = sorted(f for f in filenames if Path(f).suffix.lower() in exts)
            if frames:
                d = Path(dirpath)
                frames_by_dir[d] = [d / f for f in frames]
        clips = sorted(frames_by_dir, key=lambda d: d.relative_to(self.root).as_posix())
        self.clips: List[str] = [d.relative_to(self.root).as_posix() for d in clips]
        self._frames: List[List[Path]] = [frames_by_dir[d] for d in clips]

        self._label_of: Dict[str, Any] | None = None
        self.classes: List[Any] | None = None
        label_path = _resolve(self.root, labels)
        if label_path is not None:
            table = _read_label_table(label_path, label_column, ("clip", "path"))
            keep = [i for i, c in enumerate(self.clips) if c in table]
            if not keep:
                raise FileNotFoundError(f"None of the clip folders under {self.root} is listed in {label_path}.")
            self.clips = [self.clips[i] for i in keep]
            self._frames = [self._frames[i] for i in keep]
            encoder = _Labels([table[c] for c in self.clips])
            self.classes = encoder.classes
            self._label_of = {c: encoder(table[c]) for c in self.clips}
        if not self.clips:
            raise FileNotFoundError(f"No clip folders with {sorted(exts)} frames were found under {self.root}.")

        self._items: List[Tuple[int, int, int]] = []  # (clip index, first frame, number of frames)
        for ci, frames in enumerate(self._frames):
            n = len(frames)
            if clip_len is None:
                self._items.append((ci, 0, n))
            else:
                self._items.extend((ci, s, clip_len) for s in range(0, n - clip_len + 1, self.stride))
        if not self._items:
            raise ValueError(f"No clip under {self.root} has {clip_len} frames; use a smaller clip_len.")

    def __len__(self) -> int:
        return len(self._items)

    def clip_name(self, index: int) -> str:
        """The clip folder (relative to ``root``) that item ``index`` comes from."""
        return self.clips[self._items[index][0]]

    def __getitem__(self, index: int) -> Union[torch.Tensor, Tuple[torch.Tensor, Any]]:
        ci, start, length = self._items[index]
        frames = [load_image(p, self.channels) for p in self._frames[ci][start : start + length]]
        shapes = {tuple(f.shape) for f in frames}
        if len({s[0] for s in shapes}) > 1:
            raise ValueError(f"Frames of clip {self.clips[ci]} mix gray and colour ({sorted(shapes)}); pass "
                             "channels=1 or channels=3 to convert them all.")
        if len(shapes) > 1 and self.size is None:
            raise ValueError(f"Frames of clip {self.clips[ci]} differ in size {sorted(shapes)}; pass size=... to "
                             "resize them.")
        clip = torch.stack([_resize(f, self.size) for f in frames])  # (T, C, H, W)
        if self.transform is not None:
            clip = self.transform(clip)
        if self._label_of is not None:
            return clip, self._label_of[self.clips[ci]]
        return clip


def _check_one_size(paths: Sequence[Path], root: Path) -> None:
    """Refuse images of different sizes (batches need one size), reading only the file headers."""
    from PIL import Image

    first = None
    for path in paths:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # unreadable here: load_image names the file when the item is read
            continue
        if first is None:
            first = (path, h, w)
        elif (h, w) != first[1:]:
            a, b = (p.relative_to(root).as_posix() for p in (first[0], path))
            raise ValueError(
                f"the images under {root} differ in size: {a} is {first[1]}×{first[2]} but {b} is {h}×{w} "
                "(H×W), and a batch needs one size; pass size= to resize them all, e.g. "
                f"size={first[1]} (square) or size=({first[1]}, {first[2]})"
            )


class ImageFolderDataset(Dataset):
    """Images in a flat or nested folder, optionally labelled by a table the data script wrote.

    Args:
        root: the prepared folder (with the ``PREPARED`` marker unless ``marker=None``).
        size: resize to ``size`` (int = square, or ``(H, W)``); ``None`` keeps the stored size, which
            must then be the same for every image (checked from the file headers).
        channels: ``1`` gray, ``3`` RGB, ``None`` as stored.
        labels: CSV/JSON table relative to ``root`` with a ``path`` column (image path relative to
            ``root``) and ``label_column``; only listed images are used, in the table's order, and items
            become ``(image, label)``. String labels become class indices (:attr:`classes`).
        label_column: the column used as label (e.g. ``"age"`` or ``"gender"`` for IMDB-WIKI).
        script: the data script(s) named in the error when data is missing.
        marker: the completion marker checked by :func:`require_prepared`.
        transform: applied to each ``(C, H, W)`` tensor.

    Items: ``(C, H, W)`` float tensors in [0, 1] (and the label when ``labels`` is given).
    """

    def __init__(
        self,
        root: PathLike | None,
        *,
        size: Size = None,
        channels: int | None = None,
        labels: PathLike | None = None,
        label_column: str = "label",
        script: Union[str, Sequence[str]] = "imdb_wiki.py",
        marker: str | None = PREPARED_MARKER,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = require_prepared(root, script, marker)
        self.size = size
        self.channels = channels
        self.transform = transform
        self.classes: List[Any] | None = None
        self._labels: List[Any] | None = None
        label_path = _resolve(self.root, labels)
        if label_path is not None:
            table = _read_label_table(label_path, label_column, ("path", "image"))
            for k in table:
                _inside(self.root, k, label_path)
            missing = [k for k in table if not (self.root / k).is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} image(s) listed in {label_path} are missing under {self.root}, e.g. "
                    f"{missing[0]!r}. The folder is incomplete: run its data script again."
                )
            self.paths = [self.root / k for k in table]
            encoder = _Labels(list(table.values()))
            self.classes = encoder.classes
            self._labels = [encoder(v) for v in table.values()]
        else:
            exts = {e.lower() for e in extensions}
            self.paths = sorted(
                (p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in exts),
                key=lambda p: p.relative_to(self.root).as_posix(),
            )
        if not self.paths:
            raise FileNotFoundError(f"No images were found under {self.root}.")
        if size is None:
            _check_one_size(self.paths, self.root)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Union[torch.Tensor, Tuple[torch.Tensor, Any]]:
        image = _resize(load_image(self.paths[index], self.channels), self.size)  # (C, H, W)
        if self.transform is not None:
            image = self.transform(image)
        if self._labels is not None:
            return image, self._labels[index]
        return image
