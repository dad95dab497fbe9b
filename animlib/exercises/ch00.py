"""Self-checks for chapter 0 (How this book runs)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ._common import verdict as _verdict

__all__ = ["check_copy_last", "check_step_fn"]



def check_copy_last(fn: Callable[[torch.Tensor], Optional[torch.Tensor]]) -> bool:
    """Exercise 1: ``fn(frames (B, 2, H, W)) -> (B, 1, H, W)`` repeating the most recent frame."""
    x = torch.rand(3, 2, 5, 7)
    out = fn(x)
    if out is None:
        print("Not solved yet: return a tensor of shape (B, 1, H, W).")
        return False
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (3, 1, 5, 7):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        print(f"Not quite: expected shape (3, 1, 5, 7) for input (3, 2, 5, 7), got {shape}. Keep the channel axis.")
        return False
    return _verdict(torch.equal(out, x[:, 1:2]), "Correct! This is the 'nothing moves' baseline.",
                    "Not quite: the most recent frame is the last one along dim 1 (index -1).")


def check_step_fn(step_fn: Optional[Callable], steps: int = 60) -> bool:
    """Exercise 2: a step function ``step_fn(trainer, batch)`` that trains with the L1 loss.

    It must run the forward pass under ``trainer.autocast()``, update through
    ``trainer.optimize(loss)`` and return ``{"loss": loss}``. The check trains a linear model on
    ``y = 2x - 1`` and compares the result with an independent L1 fit.
    """
    from animlib.engine import Trainer

    if step_fn is None:
        print("Not solved yet: define step(trainer, batch) and pass it here.")
        return False
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64)[:, None]
    y = 2 * x - 1
    model = torch.nn.Linear(1, 1)
    calls = {"optimize": 0}
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), step_fn, progress=False)
    real_optimize = trainer.optimize

    def counting_optimize(*a, **k):
        calls["optimize"] += 1
        return real_optimize(*a, **k)

    trainer.optimize = counting_optimize
    returned = []

    def watched(t, b):
        out = step_fn(t, b)
        returned.append(out)
        return out

    trainer.step_fn = watched
    try:
        hist = trainer.fit(lambda s: (x, y), steps)
    except Exception as e:  # the learner's code raised: explain, don't crash the notebook
        print(f"Your step function raised {type(e).__name__}: {e}")
        return False
    if returned and all(r is None for r in returned) and calls["optimize"] == 0:
        print("Not solved yet: your step function returns None and makes no update.")
        return False
    if calls["optimize"] != steps:
        print(f"Not quite: call trainer.optimize(loss) once per step (it was called {calls['optimize']} times).")
        return False
    if not hist or "loss" not in hist[-1]:
        print('Not quite: return a dict with the key "loss".')
        return False
    with torch.no_grad():
        l1 = F.l1_loss(model(x), y).item()
        reported = hist[-1]["loss"]
    start = F.l1_loss(torch.zeros_like(y), y).item()
    if abs(reported - F.l1_loss(model(x), y).item()) > 0.2 or l1 > 0.25 * start:
        print(f"Not quite: after {steps} steps the L1 error is {l1:.3f} (started near {start:.3f}). "
              "Is the loss F.l1_loss(prediction, target)?")
        return False
    return _verdict(True, f"Correct! L1 error fell to {l1:.3f}.", "")
