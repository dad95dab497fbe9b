"""Self-checks for chapter 0 (How this book runs)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ._common import raised, try_call
from ._common import verdict as _verdict

__all__ = ["check_copy_last", "check_step_fn", "check_resume"]

def check_copy_last(fn: Callable[[torch.Tensor], Optional[torch.Tensor]]) -> bool:
    """Exercise 1: ``fn(frames (B, 2, H, W)) -> (B, 1, H, W)`` repeating the most recent frame."""
    x = torch.rand(3, 2, 5, 7)
    out, err = try_call(fn, x)
    if err is not None:
        print(f"Not yet: {raised(err)}. Slice the frames along dim 1 and keep that axis.")
        return False
    if out is None:
        print("Not solved yet: return a tensor of shape (B, 1, H, W).")
        return False
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (3, 1, 5, 7):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        print(f"Not quite: expected shape (3, 1, 5, 7) for input (3, 2, 5, 7), got {shape}. Keep the channel axis.")
        return False
    return _verdict(torch.equal(out, x[:, 1:2]), "Correct! This is the 'nothing moves' baseline.",
                    "Not quite: the most recent frame is the last one along dim 1 (index -1).")


def _l1_data():
    """y = 2x - 1 with a few outliers: the L1 fit ignores them, the squared error is pulled up."""
    x = torch.linspace(-1, 1, 64)[:, None]
    y = 2 * x - 1
    y[::8] += 4.0
    return x, y


def _reference_fit(loss_fn, steps: int):
    """The same linear model, data and SGD as the check, trained by a plain loop with ``loss_fn``."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _l1_data()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return model, float(loss.detach())


def check_step_fn(step_fn: Optional[Callable], steps: int = 60) -> bool:
    """Exercise 2: a step function ``step_fn(trainer, batch)`` that trains with the L1 loss.

    It must run the forward pass under ``trainer.autocast()``, update through
    ``trainer.optimize(loss)`` and return ``{"loss": loss}``. The check trains a linear model on
    ``y = 2x - 1`` with outliers (where the L1 and the squared-error fits differ) and compares the
    weights and the reported loss with an independent L1 fit by a plain PyTorch loop.
    """
    from animlib.engine import Trainer

    if step_fn is None:
        print("Not solved yet: define step(trainer, batch) and pass it here.")
        return False
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    x, y = _l1_data()
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
        print(f"Not yet: {raised(e)}.")
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
    ref, ref_loss = _reference_fit(F.l1_loss, steps)
    close = all(torch.allclose(p, q, atol=1e-4) for p, q in zip(model.parameters(), ref.parameters()))
    if not close:
        mse, _ = _reference_fit(F.mse_loss, steps)
        if all(torch.allclose(p, q, atol=1e-4) for p, q in zip(model.parameters(), mse.parameters())):
            print("Not quite: this trained with the squared error (the outliers pulled the line up). "
                  "Use F.l1_loss(prediction, target).")
        else:
            w, b = float(model.weight.detach()), float(model.bias.detach())
            print(f"Not quite: after {steps} steps the line is y = {w:.2f}x {b:+.2f}; the L1 fit reaches "
                  f"y = {float(ref.weight.detach()):.2f}x {float(ref.bias.detach()):+.2f}. Is the loss F.l1_loss(prediction, target), "
                  "the mean absolute error (not the sum)?")
        return False
    if abs(hist[-1]["loss"] - ref_loss) > 1e-4:
        print(f'Not quite: the training is right, but the returned "loss" is {hist[-1]["loss"]:.4f} where the L1 '
              f"loss of that step is {ref_loss:.4f}: return the loss you optimised.")
        return False
    return _verdict(True, f"Correct! The L1 fit y = {float(model.weight.detach()):.2f}x {float(model.bias.detach()):+.2f} "
                          "ignores the outliers (the squared error would not).", "")


def check_resume(finish: Optional[Callable], steps: int = 30) -> bool:
    """Exercise 3: ``finish(make_trainer, data, steps)`` completes an interrupted run.

    A run of ``steps`` steps was stopped after a third of them; its checkpoint is on disk.
    ``make_trainer()`` builds a new trainer (new model, optimiser, same checkpoint folder), as a new
    process would. ``finish`` must end with weights identical to an uninterrupted run, training
    only the steps that were missing.
    """
    import tempfile

    from animlib.engine import SupervisedStep, Trainer

    if finish is None:
        print("Not solved yet: define finish(make_trainer, data, steps) and pass it here.")
        return False
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 2, 6, 6, generator=g)
    y = x.mean(1, keepdim=True).roll(1, dims=-1)
    drawn = {"n": 0}

    def data(step):
        drawn["n"] += 1
        idx = torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(step))
        return x[idx], y[idx]

    def loss_fn(m, b):
        return F.mse_loss(m(b[0]), b[1])

    with tempfile.TemporaryDirectory() as tmp:
        def make_trainer(checkpoint_dir=tmp):
            model = torch.nn.Conv2d(2, 1, 3, padding=1)  # initialised from the global RNG
            return Trainer(model, torch.optim.Adam(model.parameters(), 1e-2), SupervisedStep(loss_fn),
                           progress=False, checkpoint_dir=checkpoint_dir, checkpoint_every=5, device="cpu")

        torch.manual_seed(0)
        reference = make_trainer(checkpoint_dir=None)
        reference.fit(data, steps)
        torch.manual_seed(0)
        make_trainer().fit(data, steps // 3)  # the interrupted run
        torch.manual_seed(999)  # a new process: other random numbers
        drawn["n"] = 0
        out, err = try_call(finish, make_trainer, data, steps)
        if err is not None:
            print(f"Not yet: {raised(err)}. Build a trainer with make_trainer() and call its fit.")
            return False
        if out is None:
            print("Not solved yet: return the trainer that finished the run.")
            return False
        if not isinstance(out, Trainer):
            print(f"Not quite: return the trainer (got {type(out).__name__}).")
            return False
        if drawn["n"] > steps - steps // 3:
            print(f"Not quite: your run trained {drawn['n']} steps, starting again from step 0. "
                  "Pass resume=True to fit so it continues from the checkpoint.")
            return False
        if out.step != steps:
            print(f"Not quite: the run stopped at step {out.step}, not {steps}. fit's steps is the total "
                  "number of steps, counted from the start of the run (not the steps still to do).")
            return False
        same = all(torch.equal(p, q) for p, q in zip(out.unwrap().parameters(), reference.unwrap().parameters()))
    return _verdict(same, "Correct! The resumed run is bit-identical to the uninterrupted one.",
                    "Not quite: the weights differ from the uninterrupted run's. Resume with fit(data, steps, "
                    "resume=True) on a new trainer from make_trainer().")
