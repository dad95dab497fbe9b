"""Trainer(sync_every=N): the host reads the steps' numbers every N steps (as on a GPU by default),
with the same training, the same history and the same protection against NaN as checking every step."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from animlib.engine import NonFiniteLossError, SupervisedStep, Trainer, load_checkpoint


def _train(tmp_path, sync_every, steps=12, log_every=1):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    data = [(torch.randn(16, 4), torch.randn(16, 1)) for _ in range(steps)]
    t = Trainer(model, torch.optim.Adam(model.parameters(), 1e-2), SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1])),
                device="cpu", progress=False, sync_every=sync_every, log_every=log_every, checkpoint_dir=tmp_path,
                checkpoint_every=5)
    return t, t.fit(lambda s: data[s], steps)


def test_reading_every_few_steps_gives_the_same_run(tmp_path):
    every, every_hist = _train(tmp_path / "a", 1)
    deferred, deferred_hist = _train(tmp_path / "b", 7, log_every=1)
    assert every.sync_every == 1 and deferred.sync_every == 7
    assert deferred_hist == every_hist  # same losses, all plain floats, step by step
    assert all(isinstance(v, float) for r in deferred_hist for k, v in r.items() if k != "step")
    for a, b in zip(every.raw_models["model"].parameters(), deferred.raw_models["model"].parameters()):
        assert torch.equal(a, b)
    assert not deferred._pending and deferred.last_finite == every.last_finite
    assert load_checkpoint(tmp_path / "b" / "last.pt")["history"] == every_hist


def test_the_default_reads_every_step_on_the_cpu():
    t = Trainer(nn.Linear(2, 1), torch.optim.SGD(nn.Linear(2, 1).parameters(), 0.1), lambda t, b: {}, device="cpu",
                progress=False)
    assert t.sync_every == 1
    with pytest.raises(ValueError, match="sync_every"):
        Trainer(nn.Linear(2, 1), torch.optim.SGD(nn.Linear(2, 1).parameters(), 0.1), lambda t, b: {}, sync_every=0)


def test_a_nan_is_found_at_the_next_read_with_its_step_and_no_checkpoint_holds_it(tmp_path):
    w = nn.Parameter(torch.tensor([1.0]))
    model = nn.Module()
    model.w = w
    opt = torch.optim.SGD([w], lr=0.1)

    def step(t, batch):
        loss = (model.w - 3.0).pow(2).sum()
        if t.step == 6:  # the 7th step produces NaN (and, deferred, its update goes ahead)
            loss = loss * float("nan")
        t.optimize(loss, "model")
        return {"loss": loss}

    t = Trainer({"model": model}, {"model": opt}, step, checkpoint_dir=tmp_path, checkpoint_every=5, progress=False,
                sync_every=4)
    with pytest.raises(NonFiniteLossError) as err:
        t.fit(lambda s: None, 20)
    e = err.value
    assert e.step == 7  # the step that produced it, found at the read after step 8
    assert t.step == 8
    assert e.last_finite is not None and e.last_finite > 0
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 5 and torch.isfinite(state["models"]["model"]["w"]).all()
    assert all(isinstance(r["loss"], float) for r in t.history)


def test_a_nan_right_after_a_checkpoint_sets_that_checkpoint_aside(tmp_path):
    w = nn.Parameter(torch.tensor([1.0]))
    model = nn.Module()
    model.w = w

    def step(t, batch):
        loss = (model.w - 3.0).pow(2).sum() * (float("nan") if t.step == 5 else 1.0)  # step 6, from step 5's state
        t.optimize(loss, "model")
        return {"loss": loss}

    t = Trainer({"model": model}, {"model": torch.optim.SGD([w], lr=0.1)}, step, checkpoint_dir=tmp_path,
                checkpoint_every=5, progress=False, sync_every=3)
    with pytest.raises(NonFiniteLossError) as err:
        t.fit(lambda s: None, 20)
    assert err.value.step == 6
    assert (tmp_path / "last.nonfinite.pt").exists()  # step 5's state produced the NaN: set aside
    assert load_checkpoint(tmp_path / "last.nonfinite.pt")["step"] == 5
