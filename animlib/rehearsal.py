"""One switch that caps a run's work: the full profile rehearsed in minutes, a GPU timed in seconds.

A rehearsal runs a chapter with ``profile="full"`` (its image sizes, model widths, real-data loaders
and every branch) but does little of the work, so that what only the full path runs is exercised on
any machine: ``tools/run_chapters.py --rehearse`` (``make rehearse``). The cap is read from the
environment, so one switch reaches every chapter, and it is honoured in a few general places only:
:meth:`animlib.engine.Trainer.fit` (steps and seconds) and the data generators and evaluation sets
(items, through :func:`cap_items`), and the schedules whose later phases only start after a
warm-up (:func:`cap_phase`). Without the variables nothing changes.

This module imports nothing from the rest of the library, so data generators can use it too.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional

__all__ = ["WorkCap", "work_cap", "cap_items", "cap_phase", "cap_batch"]


@dataclass(frozen=True)
class WorkCap:
    """A cap on the work of a run, for rehearsing a profile's code paths in seconds.

    Read from the environment by :func:`work_cap`, so one switch reaches every chapter and helper:

    - ``ANIMLIB_CAP_STEPS``: every :meth:`animlib.engine.Trainer.fit` stops after this many steps
      in all (``tools/run_chapters.py --rehearse`` sets 1);
    - ``ANIMLIB_CAP_SECONDS``: every ``fit`` also stops once it has run this many seconds (at least one
      step), as the GPU check does to time each full-profile training run;
    - ``ANIMLIB_CAP_ITEMS``: evaluations, held-out and generated sets sized through :func:`cap_items`
      hold at most this many items, and the Trainer cuts each batch to as many (:func:`cap_batch`).

    Unset (the default) means no cap: a normal run is unchanged. A capped run keeps every shape,
    width and branch of its profile and only does less of it, so its numbers mean nothing; its
    ``metrics.json`` records the cap (``work_cap``).
    """

    steps: Optional[int] = None
    items: Optional[int] = None
    seconds: Optional[float] = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.steps, self.items, self.seconds))

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


_CAP_ENV = {"steps": "ANIMLIB_CAP_STEPS", "items": "ANIMLIB_CAP_ITEMS", "seconds": "ANIMLIB_CAP_SECONDS"}


def work_cap() -> WorkCap:
    """The :class:`WorkCap` the environment sets now (no cap when the variables are unset or empty)."""
    values: Dict[str, Any] = {}
    for key, var in _CAP_ENV.items():
        raw = os.environ.get(var, "").strip()
        if not raw:
            continue
        try:
            value = float(raw) if key == "seconds" else int(raw)
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not a number; unset it for an uncapped run") from None
        if value < 1 and key != "seconds" or value <= 0:
            raise ValueError(f"{var}={raw!r} must be positive; unset it for an uncapped run")
        values[key] = value
    return WorkCap(**values)


def cap_items(n: int, minimum: int = 1) -> int:
    """``n``, or fewer under ``ANIMLIB_CAP_ITEMS``: the size of an evaluation or generated set.

    ``minimum`` keeps what the code needs to run at all (two classes, a batch norm's two images).
    """
    cap = work_cap().items
    return n if cap is None else min(n, max(cap, minimum))


def cap_phase(steps: int) -> int:
    """A schedule's phase length (a warm-up), shortened under ``ANIMLIB_CAP_STEPS`` to half the cap.

    A rehearsal that trains two steps then runs one step of the warm-up and one of what follows;
    one that trains a single step starts with what follows the warm-up (0), so the code of the
    later phase runs either way.
    """
    cap = work_cap().steps
    return steps if cap is None else min(steps, cap // 2)


def cap_batch(batch: Any, minimum: int = 2) -> Any:
    """``batch`` with every tensor cut to its first ``ANIMLIB_CAP_ITEMS`` rows (at least ``minimum``).

    The Trainer applies it to batches whose tensors all have the batch along dim 0 (the same rule
    as DDP's sharding), so a rehearsal runs the full profile's shapes on a few examples.
    """
    cap = work_cap().items
    if cap is None:
        return batch
    n = max(cap, minimum)
    if hasattr(batch, "dim") and hasattr(batch, "shape"):  # a tensor (torch is not imported here)
        return batch if batch.dim() == 0 else batch[:n]
    if isinstance(batch, Mapping):
        return type(batch)({k: cap_batch(v, minimum) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(cap_batch(v, minimum) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(cap_batch(v, minimum) for v in batch)
    return batch
