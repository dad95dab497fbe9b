"""Checkpoints and random-number state: what a run saves to resume exactly."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import numpy as np
import torch

from ..files import atomic_torch_save

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng_state", "restore_rng_state", "TensorState", "previous_of"]


def capture_rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA RNG states, as tensors and ints (``weights_only``-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached": float(np_cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: Mapping[str, Any], path: Union[str, os.PathLike]) -> Path:
    """Write a checkpoint dict atomically (see :func:`atomic_torch_save`)."""
    return atomic_torch_save(dict(state), path)


def load_checkpoint(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs while loading)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise RuntimeError(f"could not load checkpoint {path}: {e}. Is it a file written by animlib?") from e


def previous_of(path: Path) -> Path:
    """Where :meth:`Trainer.save` keeps the checkpoint before ``path`` (``last.pt`` -> ``last.previous.pt``)."""
    return path.with_name(path.stem + ".previous" + path.suffix)


class TensorState:
    """Wrap a tensor (e.g. the image that style transfer optimises) so checkpoints include it."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"tensor": self.tensor.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.tensor.copy_(state["tensor"].to(self.tensor.device))

