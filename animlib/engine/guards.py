"""What keeps a run safe: the non-finite stop and the deferred Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import torch

__all__ = ["NonFiniteLossError", "DeferredInterrupt", "first_nonfinite", "first_line"]


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss or metric becomes NaN or infinite.

    Attributes: ``step`` (1-based step that produced it), ``name`` (which value: a loss, a metric,
    ``"gradient of <model>.<parameter>"`` or ``"parameter <model>.<name>"``), ``last_finite`` (the
    last finite loss, or None), ``checkpoint`` and ``checkpoint_step`` (the last good checkpoint on
    disk and the step it holds, or None) and ``set_aside`` (a checkpoint of the very state that
    produced the value, renamed ``*.nonfinite.pt``, or None).
    """

    def __init__(self, step: int, name: str, value: float, last_finite: Optional[float],
                 checkpoint: Optional[Path], checkpoint_step: Optional[int] = None,
                 set_aside: Optional[Path] = None, checkpointing: bool = True):
        self.step, self.name, self.value = step, name, value
        self.last_finite, self.checkpoint, self.checkpoint_step = last_finite, checkpoint, checkpoint_step
        self.set_aside = set_aside
        at = f" (after step {checkpoint_step})" if checkpoint_step is not None else ""
        if checkpoint is not None:
            where = f"the last good checkpoint is {checkpoint}{at}"
        elif checkpointing:
            where = "no checkpoint from before the divergence is on disk"
        else:
            where = "no checkpoint was written (pass checkpoint_dir= to keep one)"
        if set_aside is not None:
            where += f"; the checkpoint of the state that diverged was moved to {set_aside}"
        last = f"{last_finite:.6g}" if last_finite is not None else "none yet"
        super().__init__(
            f"{name} became {value} at step {step} (last finite loss: {last}); training stopped and "
            f"{where}. Lower the learning rate, clip gradients (grad_clip=...) or check the inputs."
        )


def first_nonfinite(named: Iterable[Tuple[str, torch.Tensor]]) -> Optional[Tuple[str, float]]:
    """The first (name, offending value) among floating tensors holding NaN or inf, else None."""
    for name, t in named:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = t.detach()[~torch.isfinite(t.detach())].flatten()[0]
            return name, float(bad)
    return None


class DeferredInterrupt:
    """Within a ``with`` block, Ctrl-C (SIGINT) and SIGTERM only *ask* to stop; :attr:`requested` says so.

    The training loop checks it between steps, so an interrupt never leaves a step half done: the
    step finishes, a checkpoint is written, and then ``KeyboardInterrupt`` (or ``SystemExit`` for
    SIGTERM) is raised. A second Ctrl-C stops at once (the last checkpoint on disk stays good).
    Signal handlers can only be set in the main thread; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.requested: Optional[int] = None
        self.forced = False  # True once a second Ctrl-C has stopped the step at once
        self._old: Dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            self.forced = True
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.requested = signum
        print("\ninterrupt: finishing the current step, then saving (Ctrl-C again stops at once)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old[sig] = signal.signal(sig, self._handler)
                except (ValueError, OSError):  # not supported here
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def raise_if_requested(self) -> None:
        if self.requested == signal.SIGTERM:
            raise SystemExit(128 + signal.SIGTERM)
        if self.requested is not None:
            raise KeyboardInterrupt


def first_line(error: BaseException, limit: int = 160) -> str:
    """An error's message, short: its first line, cut at ``limit`` characters."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
