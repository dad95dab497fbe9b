"""Nothing lost, nothing silent: interrupts, divergence, killed writes and a full disk.

Each fault is injected at a chosen point and the outcome compared with an undisturbed run, bit for
bit: a resumed run must be indistinguishable from one that was never stopped.
"""

from __future__ import annotations

import copy
import errno
import io
import os
import random
import shutil
import signal
import subprocess
import time
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate

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
    before = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN in a job started in the background
    with pytest.raises(KeyboardInterrupt):
        t.fit(_data, STEPS)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2  # not the half-done step 4
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
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


def _training_state(source) -> dict:
    """Models and optimisers of a trainer or a loaded checkpoint, as an independent copy."""
    state = source.state_dict() if isinstance(source, Trainer) else source
    return copy.deepcopy({"step": state["step"], "models": state["models"], "optimizers": state["optimizers"]})


def _same_tree(a, b) -> bool:
    """Bit for bit: every tensor ``torch.equal`` (same dtype and shape), everything else ``==``."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same_tree(x, y) for x, y in zip(a, b))
    return a == b


def _slow_writes_with_marks(marks) -> None:
    """In a child process that is to be killed: write every checkpoint slowly, in small pieces with
    pauses (so that many kills land inside a write), and mark in ``marks`` when each save starts (S)
    and when it has returned (E), with unbuffered writes that a SIGKILL cannot lose."""
    fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    real_save, real_trainer_save = torch.save, Trainer.save

    def slow_save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        for i in range(0, len(data), 4096):
            f.write(data[i:i + 4096])
            f.flush()
            time.sleep(0.002)

    def marked_save(self, *args, **kwargs):
        os.write(fd, b"S")
        out = real_trainer_save(self, *args, **kwargs)
        os.write(fd, b"E")
        return out

    torch.save = slow_save
    Trainer.save = marked_save


def _fork(fn) -> int:
    """Run ``fn()`` in a forked child (torch is already imported: no start-up cost); its pid.
    The child exits with 0 if ``fn`` returned, else 1 (after printing the traceback)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


KILL_STEPS = 60
_supervised = SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1]))


def _slow_step(trainer, batch):
    """The usual step, after a pause that stands for a bigger model's compute (no random numbers used)."""
    time.sleep(0.006)
    return _supervised(trainer, batch)


def test_kill_9_at_random_moments_always_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    """24 SIGKILLs at random (seeded) moments of a run that checkpoints every step, many inside a write.

    A forked child resumes the run from its folder and is killed; the next child resumes from what
    the kill left, until the run is complete, then a new run starts. After every kill ``last.pt``
    itself loads, holds exactly the reference state of its step, and resuming it to the end gives
    the reference's final state, bit for bit (parameters and optimiser state).
    """
    trials, rng = 24, random.Random(2024)
    ref, ref_states, loader = _trainer(), {}, _loader()
    for k in range(1, KILL_STEPS + 1):
        ref.fit(loader, k)
        ref_states[k] = _training_state(ref)
    inside = temp_left = before_first = completed = 0
    run, last_step, marks = 0, 0, tmp_path / "marks"
    folder = tmp_path / "run0"

    def train():
        _slow_writes_with_marks(marks)
        _trainer(folder, _slow_step, every=1).fit(_loader(), KILL_STEPS, resume=True)

    for _ in range(trials):
        marks.write_bytes(b"")
        pid = _fork(train)
        time.sleep(rng.uniform(0.02, 0.3))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if not os.WIFSIGNALED(status):  # the run was complete before the kill: start another
            assert os.WEXITSTATUS(status) == 0, "the training child failed (traceback above)"
            assert _same_tree(_training_state(load_checkpoint(folder / "last.pt")), ref_states[KILL_STEPS])
            completed += 1
            run, last_step = run + 1, 0
            folder = tmp_path / f"run{run}"
            continue
        written = marks.read_bytes()
        inside += written.endswith(b"S")
        temp_left += any(".tmp" in p.name for p in folder.iterdir()) if folder.exists() else 0
        if not (folder / "last.pt").exists():
            assert last_step == 0 and b"E" not in written, "last.pt vanished after a checkpoint had been written"
            before_first += 1
            continue
        state = load_checkpoint(folder / "last.pt")  # last.pt itself: never missing, never partial
        k = state["step"]
        assert k >= last_step
        last_step = k
        assert _same_tree(_training_state(state), ref_states[k]), f"the checkpoint of step {k} differs"
        scratch = tmp_path / "resumed"  # resume a copy: the next child goes on from the folder as it is
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(folder, scratch)
        resumed = _trainer(scratch)
        assert resumed.resume() and resumed.step == k
        resumed.fit(_loader(), KILL_STEPS)
        assert _same_tree(_training_state(resumed), ref_states[KILL_STEPS]), f"resumed from step {k}, it differs"
        assert not [p.name for p in scratch.iterdir() if ".tmp" in p.name]  # its save cleared the leftovers
    report = (f"{trials} kills: {inside} inside a checkpoint write ({temp_left} left a partial temporary "
              f"file), {before_first} before the first checkpoint of a run, {completed} after a run was complete")
    print(report)
    assert inside >= trials // 4, report
    assert trials - before_first - completed >= trials // 2, report


DDP_KILL_STEPS = 40


def _ddp_rank(rank: int, folder, store, marks=None) -> None:
    """One of two gloo ranks (a forked child): resume the run in ``folder`` and train to the end."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    if marks is not None and rank == 0:
        _slow_writes_with_marks(marks)
    t = _trainer(folder, every=1)
    assert t.world_size == 2
    t.fit(_loader(), DDP_KILL_STEPS, resume=True)
    dist.destroy_process_group()


def _wait_all(pids, timeout=120.0) -> list:
    deadline, codes = time.monotonic() + timeout, {}
    while len(codes) < len(pids):
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = status
        if time.monotonic() > deadline:
            for pid in pids:
                if pid not in codes:
                    os.kill(pid, signal.SIGKILL)
                    codes[pid] = os.waitpid(pid, 0)[1]
            raise AssertionError("the DDP ranks did not finish in time")
        time.sleep(0.01)
    return [codes[p] for p in pids]


@pytest.mark.ddp
def test_kill_9_during_ddp_training_leaves_rank_0s_checkpoint_resumable(tmp_path):
    """Two gloo ranks, rank 0 writing a checkpoint every step, both killed three times (once a save
    of the round has completed); resumed, the run ends bit-identical to one never killed."""
    ref_pids = [_fork(lambda r=r: _ddp_rank(r, tmp_path / "ref", tmp_path / "store-ref")) for r in range(2)]
    assert _wait_all(ref_pids) == [0, 0], "the DDP reference run failed (traceback above)"
    reference = _training_state(load_checkpoint(tmp_path / "ref" / "last.pt"))
    assert reference["step"] == DDP_KILL_STEPS
    folder, marks, rng, inside, steps = tmp_path / "run", tmp_path / "marks", random.Random(11), 0, []
    for trial in range(3):
        marks.write_bytes(b"")
        store = tmp_path / f"store{trial}"
        pids = [_fork(lambda r=r, store=store: _ddp_rank(r, folder, store, marks)) for r in range(2)]
        deadline = time.monotonic() + 60
        while b"E" not in marks.read_bytes() and time.monotonic() < deadline:
            assert not any(os.waitpid(pid, os.WNOHANG)[0] for pid in pids), "a DDP rank ended early"
            time.sleep(0.005)
        assert b"E" in marks.read_bytes(), "no checkpoint was written within a minute"
        time.sleep(rng.uniform(0.0, 0.15))
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        _wait_all(pids)
        inside += marks.read_bytes().endswith(b"S")
        steps.append(load_checkpoint(folder / "last.pt")["step"])
    pids = [_fork(lambda r=r: _ddp_rank(r, folder, tmp_path / "store-end")) for r in range(2)]
    assert _wait_all(pids) == [0, 0], "the resumed DDP run failed (traceback above)"
    print(f"DDP: 3 kills at steps {steps}, {inside} inside rank 0's checkpoint write")
    assert _same_tree(_training_state(load_checkpoint(folder / "last.pt")), reference)


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


# ----------------------------------------------------------------------------- the previous checkpoint


def test_last_pt_is_there_and_complete_at_every_moment_of_a_save(tmp_path, monkeypatch):
    """While each checkpoint is being written, last.pt is the complete one before it, and the one
    before that is already kept as last.previous.pt."""
    real_save, seen = torch.save, []

    def checking_save(obj, f, *args, **kwargs):  # called in the middle of the write window
        if (tmp_path / "last.pt").exists():
            seen.append((load_checkpoint(tmp_path / "last.pt")["step"],
                         load_checkpoint(tmp_path / "last.previous.pt")["step"]))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", checking_save)
    _trainer(tmp_path, every=1).fit(_data, 4)
    # saves after steps 1-4 and the one at the end of fit (the same step again: the older one stays)
    assert seen == [(1, 1), (2, 2), (3, 3), (4, 3)]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4
    assert load_checkpoint(tmp_path / "last.previous.pt")["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.previous.pt", "last.pt"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoints_get_the_permissions_of_an_ordinary_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        _trainer(tmp_path, every=1).fit(_data, 2)
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert modes == {"last.pt": oct(0o666 & ~umask), "last.previous.pt": oct(0o666 & ~umask)}


# ----------------------------------------------------------------------------- resume falls back, never silently


def _broken_run(folder, steps=4):
    """A run that checkpointed every step up to ``steps``: last.pt holds ``steps``, last.previous.pt one less."""
    _trainer(folder, every=1).fit(_data, steps)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["truncated", "missing", "garbage"])
def test_resume_falls_back_to_the_previous_checkpoint_and_says_so(tmp_path, damage, capsys):
    ref = _reference(_data)
    _broken_run(tmp_path)
    last = tmp_path / "last.pt"
    if damage == "truncated":
        _truncate(last)
    elif damage == "missing":
        last.unlink()
    else:
        last.write_bytes(b"not a checkpoint at all")
    capsys.readouterr()
    resumed = _trainer(tmp_path)
    resumed.fit(_data, STEPS, resume=True)
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("resume:")]
    assert len(said) == 1, err
    assert f"resuming from {tmp_path / 'last.previous.pt'} (after step 3)" in said[0]
    assert ("last.pt is missing" if damage == "missing" else "last.pt could not be loaded") in said[0]
    assert _same(resumed, ref) and _same_tree(_training_state(resumed), _training_state(ref))


def test_resume_falls_back_to_another_checkpoint_of_the_folder(tmp_path, capsys):
    ref = _reference(_data)
    t = _trainer(tmp_path)
    t.fit(_data, 2)
    t.save(tmp_path / "after-2.pt")
    t.fit(_data, 4)  # last.pt: step 4 (no previous: only saved at the ends of fit)
    _truncate(tmp_path / "last.pt")
    (tmp_path / "weights.pt").write_bytes((tmp_path / "after-2.pt").read_bytes()[:100])  # unreadable too
    os.utime(tmp_path / "weights.pt", (1, 1))  # older: tried after after-2.pt
    capsys.readouterr()
    resumed = _trainer(tmp_path)
    assert resumed.resume() is True and resumed.step == 2
    assert f"resuming from {tmp_path / 'after-2.pt'} (after step 2)" in capsys.readouterr().err
    resumed.fit(_data, STEPS)
    assert _same(resumed, ref)


def test_resume_refuses_when_no_checkpoint_loads_and_names_them(tmp_path):
    _broken_run(tmp_path)
    _truncate(tmp_path / "last.pt")
    (tmp_path / "last.previous.pt").write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"cannot resume") as info:
        _trainer(tmp_path).fit(_data, STEPS, resume=True)
    msg = str(info.value)
    assert "last.pt" in msg and "last.previous.pt" in msg and "resume=False" in msg and str(tmp_path) in msg
    assert len(msg.splitlines()) == 1


@pytest.mark.parametrize("folder", ["empty", "absent", "only other files"])
def test_resume_with_nothing_to_resume_starts_fresh_and_says_so_once(tmp_path, folder, capsys):
    ckpt = tmp_path / "ckpt"
    if folder != "absent":
        ckpt.mkdir()
    if folder == "only other files":
        (ckpt / "notes.txt").write_text("x")
        torch.save({"w": torch.ones(2)}, ckpt / "weights.pt")  # loads, but is not a trainer's checkpoint
    ref = _reference(_data)
    capsys.readouterr()
    t = _trainer(ckpt)
    assert t.resume() is False
    t2 = _trainer(ckpt)
    t2.fit(_data, STEPS, resume=True)
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("resume:")]
    assert said == [f"resume: no checkpoint in {ckpt}; starting at step 0"] * 2  # once per call
    assert _same(t2, ref)


# ----------------------------------------------------------------------------- a KeyboardInterrupt inside a step


class RaisingStep:
    """The usual step, raising ``KeyboardInterrupt`` itself (no signal) at one point of step ``at``."""

    def __init__(self, point: str, at: int):
        self.point, self.at, self.armed = point, at, True

    def __call__(self, trainer, batch):
        trap = self.armed and trainer.step + 1 == self.at

        def loss(m, b):
            out = F.mse_loss(m(b[0]), b[1])
            if trap and self.point == "forward":
                raise KeyboardInterrupt
            return out

        record = SupervisedStep(loss)(trainer, batch)
        if trap and self.point == "after_update":
            raise KeyboardInterrupt
        return record


class CollateTrap:
    """A DataLoader's collate function that raises ``KeyboardInterrupt`` while making batch number ``at``."""

    def __init__(self, at: int):
        self.at, self.calls = at, 0

    def __call__(self, items):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return default_collate(items)


def _trapped_loader(at: int):
    loader = _loader()
    return DataLoader(loader.dataset, batch_size=4, shuffle=True, drop_last=True, collate_fn=CollateTrap(at))


@pytest.mark.parametrize("data_kind", ["step-indexed", "shuffling DataLoader"])
@pytest.mark.parametrize("point", ["fetch", "forward", "after_update"])
def test_a_keyboard_interrupt_inside_a_step_saves_the_last_consistent_state(tmp_path, point, data_kind):
    loader_kind = data_kind == "shuffling DataLoader"
    at = 5 if loader_kind else 3  # (with the loader: the first batch of the third epoch)

    def clean():
        return _loader() if loader_kind else _data

    def trapped_data(step):
        if step == at - 1:  # fetching the batch of step `at`
            raise KeyboardInterrupt
        return _data(step)

    ref = _reference(clean())
    data = clean()
    if point == "fetch":
        data = _trapped_loader(at) if loader_kind else trapped_data
    t = _trainer(tmp_path / "run", RaisingStep(point, at))
    with pytest.raises(KeyboardInterrupt):
        t.fit(data, STEPS)
    kept = at if point == "after_update" else at - 1  # after its update the step counts as done
    assert t.step == kept and load_checkpoint(tmp_path / "run" / "last.pt")["step"] == kept
    shutil.copytree(tmp_path / "run", tmp_path / "saved")
    t.step_fn.armed = False  # the interrupted trainer itself goes on exactly (before any other run
    t.fit(clean(), STEPS)  # moves the process's random number generators)
    assert _same(t, ref) and _same_tree(_training_state(t), _training_state(ref))
    resumed = _trainer(tmp_path / "saved")
    resumed.fit(clean(), STEPS, resume=True)
    assert _same(resumed, ref) and _same_tree(_training_state(resumed), _training_state(ref))


def test_an_interrupt_between_two_updates_keeps_the_last_checkpoint(tmp_path, capsys):
    def make(folder):
        torch.manual_seed(0)
        a, b = Net(), Net()
        opts = {"a": torch.optim.Adam(a.parameters(), 0.05), "b": torch.optim.Adam(b.parameters(), 0.05)}
        return Trainer({"a": a, "b": b}, opts, step, device="cpu", progress=False, checkpoint_dir=folder,
                       checkpoint_every=1)

    armed = {"at": 3}

    def step(t, batch):
        t.optimize(F.mse_loss(t.models["a"](batch[0]), batch[1]), "a")
        if t.step + 1 == armed["at"]:
            raise KeyboardInterrupt  # "a" is updated, "b" not yet: neither before nor after the step
        t.optimize(F.mse_loss(t.models["b"](batch[0]), batch[1]), "b")
        return {}

    t = make(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        t.fit(_data, STEPS)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    err = capsys.readouterr().err
    assert "step 3" in err and "not saved" in err and f"resume from {tmp_path / 'last.pt'} (after step 2)" in err
    armed["at"] = None
    ref = make(None)
    ref.fit(_data, STEPS)
    resumed = make(tmp_path)
    resumed.fit(_data, STEPS, resume=True)
    assert _same_tree(_training_state(resumed), _training_state(ref))


# ----------------------------------------------------------------------------- a disk that fills up


def test_a_disk_that_fills_during_a_checkpoint_write_keeps_the_last_one(tmp_path, monkeypatch):
    ref = _reference(_data)
    t = _trainer(tmp_path, every=1)
    t.fit(_data, 3)
    real_save = torch.save

    def fills_up(obj, f, *args, **kwargs):  # half of the file, then no room
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fills_up)
    with pytest.raises(OSError, match=r"disk full\? could not write .*last\.pt") as info:
        t.fit(_data, STEPS)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.previous.pt", "last.pt"]
    resumed = _trainer(tmp_path)  # with room again, the run goes on from there
    resumed.fit(_data, STEPS, resume=True)
    assert _same(resumed, ref)


class Buffer:
    """Extra state that grows (like a replay buffer)."""

    def __init__(self):
        self.data = torch.zeros(0)

    def state_dict(self):
        return {"data": self.data.clone()}

    def load_state_dict(self, state):
        self.data = state["data"].clone()


def test_a_real_full_disk_keeps_the_last_checkpoint_and_says_so(tmp_path):
    """A 1 MiB tmpfs, filled so that there is less room than a checkpoint, and less than the rotation
    frees plus that, while the next checkpoint grows: the write fails, last.pt stays as it was."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        torch.manual_seed(0)
        net, buffer = Net(), Buffer()
        t = Trainer(net, torch.optim.Adam(net.parameters(), 0.05),
                    SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1])), device="cpu", progress=False,
                    checkpoint_dir=disk, checkpoint_every=1, extra={"buffer": buffer})
        t.fit(_data, 2)
        size = (disk / "last.pt").stat().st_size
        good = _training_state(load_checkpoint(disk / "last.pt"))
        st = os.statvfs(disk)
        free = st.f_bavail * st.f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - size // 2))  # room left: about half a checkpoint
        buffer.data = torch.zeros(size)  # the next checkpoint is 5x as big: more than room + what is freed
        with pytest.raises(OSError, match=r"disk full\? could not write .*last\.pt") as info:
            t.fit(_data, 3)
        assert info.value.errno == errno.ENOSPC
        assert _same_tree(_training_state(load_checkpoint(disk / "last.pt")), good)
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "last.previous.pt", "last.pt"]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, timeout=30)
