"""Nothing lost, nothing silent: interrupts, divergence, killed writes and a full disk.

Each fault is injected at a chosen point and the outcome compared with an undisturbed run, bit for
bit: a resumed run must be indistinguishable from one that was never stopped.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from animlib.engine import NonFiniteLossError, SupervisedStep, Trainer, load_checkpoint
from animlib.files import atomic_torch_save

STEPS = 7


class Net(nn.Module):
    """Tiny, with dropout, so that a resumed run also needs the exact RNG state."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        return self.drop(self.lin(x))


def _data(step: int):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(5, 4, generator=g), torch.randn(5, 3, generator=g)


def _loader():
    g = torch.Generator().manual_seed(7)
    ds = TensorDataset(torch.randn(10, 4, generator=g), torch.randn(10, 3, generator=g))
    return DataLoader(ds, batch_size=4, shuffle=True, drop_last=True)  # 2 batches per epoch


def _trainer(ckpt=None, step_fn=None, lr=0.05, every=0, opt="adam"):
    torch.manual_seed(0)
    net = Net()
    optim = torch.optim.Adam(net.parameters(), lr) if opt == "adam" else torch.optim.SGD(net.parameters(), lr)
    step_fn = step_fn or SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1]))
    return Trainer(net, optim, step_fn, device="cpu", progress=False, checkpoint_dir=ckpt, checkpoint_every=every)


def _reference(data):
    t = _trainer()
    t.fit(data, STEPS)
    return t


def _same(a: Trainer, b: Trainer) -> bool:
    pa, pb = a.state_dict(), b.state_dict()
    same_w = all(torch.equal(pa["models"]["model"][k], pb["models"]["model"][k]) for k in pa["models"]["model"])
    return same_w and [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def _sigint():
    os.kill(os.getpid(), signal.SIGINT)


class Interrupting:
    """A step function that sends itself SIGINT at one point of step ``at``."""

    def __init__(self, point: str, at: int = 3):
        self.point, self.at = point, at
        self.inner = SupervisedStep(lambda m, b: self._loss(m, b))
        self.step_now = 0

    def _loss(self, m, b):
        out = F.mse_loss(m(b[0]), b[1])
        if self.point == "after_forward" and self.step_now == self.at:
            _sigint()
        return out

    def __call__(self, trainer, batch):
        self.step_now = trainer.step + 1
        if self.point == "before_batch_used" and self.step_now == self.at:
            _sigint()
        rec = self.inner(trainer, batch)
        if self.point == "after_update" and self.step_now == self.at:
            _sigint()
        return rec


@pytest.mark.parametrize("data_kind", ["step-indexed", "shuffling DataLoader"])
@pytest.mark.parametrize("point", ["before_batch_used", "after_forward", "after_update"])
def test_ctrl_c_at_any_point_of_a_step_resumes_bit_identically(tmp_path, point, data_kind):
    data = _data if data_kind == "step-indexed" else _loader()
    ref = _reference(data)
    t = _trainer(tmp_path, Interrupting(point, at=3 if data_kind == "step-indexed" else 4))
    with pytest.raises(KeyboardInterrupt):
        t.fit(data if data_kind == "step-indexed" else _loader(), STEPS)
    assert t.step == (3 if data_kind == "step-indexed" else 4)  # the interrupted step was finished
    assert load_checkpoint(tmp_path / "last.pt")["step"] == t.step
    resumed = _trainer(tmp_path)
    resumed.fit(data if data_kind == "step-indexed" else _loader(), STEPS, resume=True)
    assert _same(resumed, ref)


def test_interrupt_while_fetching_a_batch_resumes_bit_identically(tmp_path):
    ref = _reference(_data)

    def data(step):
        if step == 2:  # the trainer is fetching the batch of step 3
            _sigint()
        return _data(step)

    t = _trainer(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        t.fit(data, STEPS)
    resumed = _trainer(tmp_path)
    resumed.fit(_data, STEPS, resume=True)
    assert _same(resumed, ref)


def test_sigterm_saves_then_exits(tmp_path):
    def step(trainer, batch):
        if trainer.step + 1 == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1]))(trainer, batch)

    t = _trainer(tmp_path, step)
    with pytest.raises(SystemExit) as info:
        t.fit(_data, STEPS)
    assert info.value.code == 128 + signal.SIGTERM
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    def step(trainer, batch):
        if trainer.step + 1 == 4:
            _sigint()
            _sigint()  # impatient: the second one raises inside the step
        return SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1]))(trainer, batch)

    t = _trainer(tmp_path, step, every=2)
    with pytest.raises(KeyboardInterrupt):
        t.fit(_data, STEPS)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2  # not the half-done step 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    ref = _reference(_data)
    resumed = _trainer(tmp_path)
    resumed.fit(_data, STEPS, resume=True)
    assert _same(resumed, ref)


def test_a_nan_gradient_with_a_finite_loss_stops_before_the_update(tmp_path):
    class Sqrt(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.0, 0.0]))

    net = Sqrt()
    t = Trainer(net, torch.optim.SGD(net.parameters(), 0.1), SupervisedStep(lambda m, b: m.w.sqrt().sum()),
                device="cpu", progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"gradient of model\.w became inf at step 1") as info:
        t.fit(lambda s: None, 3)
    assert torch.equal(net.w.detach(), torch.tensor([1.0, 0.0]))  # not touched
    assert info.value.step == 1


def test_divergence_names_a_checkpoint_that_really_trains_on(tmp_path):
    # SGD with a huge learning rate: finite losses and weights for a few steps, then inf/NaN.
    t = _trainer(tmp_path, lr=3e3, every=1, opt="sgd")
    with pytest.raises(NonFiniteLossError) as info:
        t.fit(_data, 100)
    err = info.value
    assert err.checkpoint == tmp_path / "last.pt" and err.checkpoint_step is not None
    assert err.checkpoint_step < err.step - 1  # not the state that produced the bad value
    state = load_checkpoint(err.checkpoint)
    assert state["step"] == err.checkpoint_step
    assert all(torch.isfinite(v).all() for v in state["models"]["model"].values())
    again = _trainer(tmp_path, lr=3e3, every=0, opt="sgd")
    again.fit(_data, err.checkpoint_step + 1, resume=True)  # the named checkpoint takes a finite step
    assert again.step == err.checkpoint_step + 1 and torch.isfinite(torch.tensor(again.history[-1]["loss"]))
    assert f"after step {err.checkpoint_step}" in str(err)


def test_a_checkpoint_is_never_written_from_non_finite_weights(tmp_path):
    t = _trainer(tmp_path)
    t.fit(_data, 2)
    t.save()
    with torch.no_grad():
        t.raw_models["model"].lin.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"parameter model\.lin\.weight became nan"):
        t.save()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "last.pt")["models"]["model"].values())


def test_kill_9_at_random_moments_always_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    """20 trials: a forked child trains with a checkpoint every step and is killed at a random moment."""
    ref_states = {}
    ref = _trainer()
    for k in range(1, 41):
        ref.fit(_data, k)
        ref_states[k] = {n: v.clone() for n, v in ref.raw_models["model"].state_dict().items()}
    rng = random.Random(0)
    for trial in range(20):
        ckpt = tmp_path / f"t{trial}"
        pid = os.fork()
        if pid == 0:  # the child: train until killed
            try:
                torch.set_num_threads(1)
                t = _trainer(ckpt, every=1)
                t.fit(_data, 10_000)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if not (ckpt / "last.pt").exists():
            continue  # killed before the first checkpoint
        state = load_checkpoint(ckpt / "last.pt")
        k = state["step"]
        if k in ref_states:
            assert all(torch.equal(state["models"]["model"][n], ref_states[k][n]) for n in ref_states[k])
        resumed = _trainer(ckpt, every=1)
        resumed.fit(_data, k + 1, resume=True)  # trains on, and its next save clears a killed write's leftovers
        assert not [p.name for p in ckpt.iterdir() if ".tmp" in p.name]


def test_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, target)

    def no_space(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(OSError, match=r"disk full\? could not write .*last\.pt"):
        atomic_torch_save({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_write_killed_earlier_leaves_nothing_behind_after_the_next_save(tmp_path):
    target = tmp_path / "last.pt"
    stale = tmp_path / ".last.abc123.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    atomic_torch_save({"step": 3}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
