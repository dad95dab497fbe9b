"""Facial landmarks: the 68-point layout, drawn as images, and read from real photographs.

Few-shot talking heads (Zakharov et al. 2019) drive the generator with a *landmark image*: the
68 points of a face, drawn as one polyline per facial part. Chapter 8 uses one representation for
synthetic and real faces:

- synthetic faces give their landmarks exactly (:func:`animlib.data.faces.face_landmarks`);
- real photographs give them through dlib's 68-point shape predictor (:func:`detect_landmarks`),
  which also provides the 128-d face descriptor used as an *independent* identity measure on real
  faces (:func:`face_descriptor`). Both models ship with the ``face-recognition-models`` package
  (Davis King's dlib models; the 68-point predictor was trained on the iBUG-300W data, whose
  licence excludes commercial use: see the attributions page). No network is needed.

Points are ``(x, y)`` in the image's normalised frame: ``[-1, 1]`` across, ``y`` pointing down,
the convention of :func:`torch.nn.functional.grid_sample` with ``align_corners=False``.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from .images import to_uint8

__all__ = [
    "N_LANDMARKS",
    "PARTS",
    "PART_SEGMENTS",
    "rasterize_landmarks",
    "pixels_to_normalized",
    "normalized_to_pixels",
    "interocular_distance",
    "dlib_model_paths",
    "detect_landmarks",
    "face_descriptor",
]

N_LANDMARKS = 68


def _chain(a: int, b: int, closed: bool = False) -> list:
    seg = [(i, i + 1) for i in range(a, b)]
    return seg + [(b, a)] if closed else seg


#: Facial parts in the order of the landmark image's channels, and the points each one joins.
PART_SEGMENTS: Dict[str, Tuple[Tuple[int, int], ...]] = {
    "jaw": tuple(_chain(0, 16)),
    "brows": tuple(_chain(17, 21) + _chain(22, 26)),
    "nose": tuple(_chain(27, 30) + _chain(31, 35) + [(30, 33)]),
    "eyes": tuple(_chain(36, 41, closed=True) + _chain(42, 47, closed=True)),
    "mouth": tuple(_chain(48, 59, closed=True) + _chain(60, 67, closed=True)),
}
PARTS: Tuple[str, ...] = tuple(PART_SEGMENTS)


def _check_points(points: torch.Tensor) -> None:
    if points.ndim != 3 or points.shape[1:] != (N_LANDMARKS, 2):
        raise ValueError(
            f"landmarks must have shape (B, {N_LANDMARKS}, 2) as (x, y) in [-1, 1]; got {tuple(points.shape)}. "
            "Use animlib.data.faces.face_landmarks or detect_landmarks(...)[None] to make them."
        )


def rasterize_landmarks(points: torch.Tensor, size: int, width: float | None = None) -> torch.Tensor:
    """Draw landmarks (B, 68, 2) as a landmark image (B, len(PARTS), size, size) in [0, 1].

    One channel per facial part (:data:`PARTS`); every segment of :data:`PART_SEGMENTS` is drawn
    as a soft line whose cross-section is ``exp(-d² / (2 w²))`` at ``d`` pixels from it. The line is
    the sum of Gaussian dots spaced at most ``0.7 w`` apart along the segment, each weighted by
    its share of the length over ``√(2π) w`` (so the sum integrates to that profile), then clipped
    at 1 where lines meet. A dot is separable (``g(x) g(y)``), so a whole channel is one batched
    matrix product ``G_y @ G_x``: fast, and differentiable in ``points``. ``width`` ``w`` defaults to
    ``max(0.7, size / 64)`` pixels, so a line keeps its look across resolutions.
    """
    _check_points(points)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}.")
    w = float(width) if width is not None else max(0.7, size / 64)
    pixel = 2.0 / size
    B = points.shape[0]
    coords = (torch.arange(size, device=points.device, dtype=points.dtype) + 0.5) * pixel - 1.0  # (S,)
    channels = []
    for part in PARTS:
        idx = torch.tensor(PART_SEGMENTS[part], device=points.device)  # (n_seg, 2)
        a, b = points[:, idx[:, 0]], points[:, idx[:, 1]]  # (B, n_seg, 2)
        length = (b - a).norm(dim=-1) / pixel  # (B, n_seg) in pixels
        m = int(max(1, min(256, float(length.max().detach()) / (0.7 * w) + 1)))  # dots per segment
        t = (torch.arange(m, device=points.device, dtype=points.dtype) + 0.5) / m  # (m,)
        dots = a.unsqueeze(2) + t[:, None] * (b - a).unsqueeze(2)  # (B, n_seg, m, 2)
        weight = (length / m / (math.sqrt(2 * math.pi) * w)).unsqueeze(2).expand(-1, -1, m).reshape(B, -1)
        dots = dots.reshape(B, -1, 2)  # (B, K, 2)
        gx = torch.exp(-0.5 * ((coords[None, None] - dots[..., :1]) / (pixel * w)) ** 2)  # (B, K, W)
        gy = torch.exp(-0.5 * ((coords[None, None] - dots[..., 1:]) / (pixel * w)) ** 2)  # (B, K, H)
        channels.append(torch.bmm((gy * weight.unsqueeze(-1)).transpose(1, 2), gx).clamp(max=1.0))  # (B, H, W)
    return torch.stack(channels, 1)


def pixels_to_normalized(xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates (..., 2) (x right, y down, pixel centres at integers) -> [-1, 1]."""
    scale = xy.new_tensor([2.0 / width, 2.0 / height])
    return (xy + 0.5) * scale - 1.0


def normalized_to_pixels(xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pixels_to_normalized`."""
    scale = xy.new_tensor([width / 2.0, height / 2.0])
    return (xy + 1.0) * scale - 0.5


def interocular_distance(points: torch.Tensor) -> torch.Tensor:
    """Distance between the outer eye corners (points 36 and 45) of landmarks (..., 68, 2) -> (...,)."""
    return (points[..., 36, :] - points[..., 45, :]).norm(dim=-1)


# ----------------------------------------------------------------------------------------------
# real photographs: dlib's detector, 68-point predictor and face descriptor (all offline)
# ----------------------------------------------------------------------------------------------
def dlib_model_paths() -> Dict[str, Path]:
    """Where the ``face-recognition-models`` package keeps dlib's model files.

    Found without importing the package (its ``__init__`` needs ``pkg_resources``, which recent
    setuptools no longer ships). Raises a clear error naming the install command when missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    hint = ("install the offline face models with: pip install dlib-bin face-recognition-models "
            "(or `make setup`, which pins them)")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"face_recognition_models is not installed; {hint}")
    root = Path(list(spec.submodule_search_locations)[0]) / "models"
    paths = {"landmarks68": root / "shape_predictor_68_face_landmarks.dat",
             "descriptor": root / "dlib_face_recognition_resnet_model_v1.dat"}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"dlib model file(s) missing: {missing}; reinstall them: {hint}")
    return paths


@lru_cache(maxsize=1)
def _dlib_models():
    try:
        import dlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError("dlib is not installed; install the prebuilt wheel with: pip install dlib-bin") from err
    paths = dlib_model_paths()
    return (dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(paths["landmarks68"])),
            dlib.face_recognition_model_v1(str(paths["descriptor"])))


def _to_uint8_hwc(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        x = image.detach().cpu()
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"expected one RGB image (3, H, W) in [0, 1]; got {tuple(x.shape)}")
        return to_uint8(x).permute(1, 2, 0).contiguous().numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected one RGB image (H, W, 3); got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def _shape(image: np.ndarray, box: Sequence[int] | None, upsample: int):
    dlib, detector, predictor, _ = _dlib_models()
    if box is None:
        rects, scores, _ = detector.run(image, upsample, 0.0)
        if len(rects) == 0:
            raise ValueError("no face found in the image: pass a larger, frontal face, raise upsample=, "
                             "or give the face's box=(left, top, right, bottom) yourself")
        rect = rects[int(np.argmax(scores))]  # the most confident face
    else:
        rect = dlib.rectangle(*[int(v) for v in box])
    return predictor(image, rect), rect


def detect_landmarks(image, box: Sequence[int] | None = None, upsample: int = 1) -> Dict[str, torch.Tensor]:
    """The 68 landmarks of the most confident face in ``image`` (a (3, H, W) tensor in [0, 1] or (H, W, 3) array).

    Returns ``{"points": (68, 2) in [-1, 1], "pixels": (68, 2) pixel coordinates, "box": (4,)
    left, top, right, bottom}``. ``box`` skips the detector (e.g. for small synthetic crops).
    """
    img = _to_uint8_hwc(image)
    shape, rect = _shape(img, box, upsample)
    px = torch.tensor([[shape.part(i).x, shape.part(i).y] for i in range(N_LANDMARKS)], dtype=torch.float32)
    return {"points": pixels_to_normalized(px, img.shape[0], img.shape[1]), "pixels": px,
            "box": torch.tensor([rect.left(), rect.top(), rect.right(), rect.bottom()])}


def face_descriptor(image, box: Sequence[int] | None = None, upsample: int = 1) -> torch.Tensor:
    """dlib's 128-d face descriptor (a ResNet trained for face verification) of the face in ``image``.

    Euclidean distances below 0.6 mean "same person" in dlib's own evaluation (99.38 % on LFW).
    """
    img = _to_uint8_hwc(image)
    shape, _ = _shape(img, box, upsample)
    return torch.tensor(np.array(_dlib_models()[3].compute_face_descriptor(img, shape)), dtype=torch.float32)
