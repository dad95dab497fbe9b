"""The training engine: exact resume, NaN stop, atomic checkpoints, AMP, DDP against one process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from animlib import precision
from animlib.engine import (
    NonFiniteLossError,
    SupervisedStep,
    TensorState,
    Trainer,
    load_checkpoint,
    shard_batch,
    train_supervised,
)
from animlib.files import atomic_torch_save
from animlib.gan import alternating_step
from animlib.precision import BF16_MIN_SPEEDUP, CpuBf16Support, amp_label, cpu_bf16_support, resolve_amp
from animlib.runtime import seed_everything

ROOT = Path(__file__).resolve().parents[1]


def _net():
    # Dropout makes the run depend on the torch RNG, so a resume that loses RNG state shows up.
    return nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.Tanh(), nn.Linear(16, 1))


def _setup(seed=0):
    seed_everything(seed)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.7)
    return net, opt, sched


def _loss(m, b):
    return F.mse_loss(m(b[0]), b[1])


def _loader():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 4, generator=g)
    y = torch.sin(x.sum(1, keepdim=True))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True)


def _train(steps, ckpt=None, resume=False, amp=None, total=None):
    net, opt, sched = _setup()
    if resume:  # a fresh process would start from other random numbers: disturb them on purpose
        torch.manual_seed(12345)
    t = Trainer(net, opt, SupervisedStep(_loss), schedulers={"model": sched}, progress=False,
                checkpoint_dir=ckpt, amp=amp)
    t.fit(_loader(), steps, resume=resume)
    return t, net


@pytest.mark.parametrize("k", [3, 7, 10])  # mid-epoch, at an epoch boundary (7 batches/epoch), later
def test_resume_is_bit_identical(tmp_path, k):
    _, ref = _train(17)
    _train(k, ckpt=tmp_path)  # "interrupted" after k steps
    t, resumed = _train(17, ckpt=tmp_path, resume=True)
    assert t.step == 17
    for a, b in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert len(t.history) == 17


def test_resume_without_rng_restore_would_differ(tmp_path):
    # Guard that the test above can fail: resuming with a disturbed RNG and no checkpoint RNG restore
    # (here: no checkpoint at all, only the model weights copied) gives other parameters.
    _, ref = _train(17)
    t0, net0 = _train(5, ckpt=tmp_path)
    net, opt, sched = _setup()
    net.load_state_dict(net0.state_dict())
    torch.manual_seed(999)
    t = Trainer(net, opt, SupervisedStep(_loss), progress=False)
    t.step = 5
    t.fit(_loader(), 17)
    assert not all(torch.equal(a, b) for a, b in zip(ref.parameters(), net.parameters()))


def test_checkpoint_loads_weights_only_and_has_everything(tmp_path):
    _train(5, ckpt=tmp_path)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == 5
    assert set(state) >= {"models", "optimizers", "scalers", "schedulers", "rng", "history", "epoch_rng"}
    assert state["schedulers"]["model"]["last_epoch"] == 5


def test_nan_stops_with_step_and_last_finite_loss_and_keeps_checkpoint(tmp_path):
    seed_everything(0)
    w = nn.Parameter(torch.tensor([1.0]))
    model = nn.Module()
    model.w = w
    opt = torch.optim.SGD([w], lr=0.1)

    def step(t, batch):
        loss = (model.w - 3.0).pow(2).sum()
        if t.step == 6:  # the 7th step produces NaN
            loss = loss * float("nan")
        t.optimize(loss, "model")
        return {"loss": loss}

    t = Trainer({"model": model}, {"model": opt}, step, checkpoint_dir=tmp_path, checkpoint_every=5, progress=False)
    before = None
    with pytest.raises(NonFiniteLossError) as err:
        t.fit(lambda s: None, 20)
    e = err.value
    assert e.step == 7
    assert e.last_finite is not None and e.last_finite > 0
    assert "step 7" in str(e) and str(tmp_path / "last.pt") in str(e)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 5  # the good checkpoint was neither overwritten nor removed
    before = state["models"]["model"]["w"]
    assert torch.isfinite(before).all()
    assert torch.isfinite(model.w).all()  # the NaN step did not touch the parameters


def test_killed_mid_write_leaves_previous_checkpoint_loadable(tmp_path):
    target = tmp_path / "last.pt"
    atomic_torch_save({"step": 1, "w": torch.ones(3)}, target)
    # A child process starts writing a large checkpoint and dies (os._exit) half-way through.
    code = textwrap.dedent(f"""
        import os, torch
        import animlib.files as E
        real_save = torch.save
        def dying_save(obj, f, *a, **k):
            f.write(b"PK\\x03\\x04" + b"x" * 100000)   # half a file...
            f.flush()
            os._exit(9)                                  # ...and the process is killed
        torch.save = dying_save
        E.atomic_torch_save({{"step": 2, "w": torch.zeros(10**6)}}, {str(target)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    state = torch.load(target, weights_only=True)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))


def test_non_atomic_write_would_corrupt(tmp_path):
    # The failure the atomic write prevents: writing in place and dying leaves an unloadable file.
    target = tmp_path / "last.pt"
    torch.save({"step": 1}, target)
    with open(target, "wb") as f:
        f.write(b"PK\x03\x04" + b"x" * 1000)
    with pytest.raises((RuntimeError, EOFError, OSError)):
        torch.load(target, weights_only=True)


def test_auto_precision_on_cpu_trains():
    # amp="auto" trains in whatever this CPU computes fastest (bf16 only where it is native)
    seed_everything(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    seen = []

    def step(t, batch):
        with t.autocast():
            out = t.models["model"](batch[0])
        seen.append(out.dtype)
        loss = F.mse_loss(out.float(), batch[1])
        t.optimize(loss)
        return {"loss": loss}

    t = Trainer(net, torch.optim.Adam(net.parameters(), 1e-2), step, amp="auto", progress=False)
    hist = t.fit(lambda s: (x, y), 150)
    assert seen[0] == (torch.bfloat16 if cpu_bf16_support().fast else torch.float32)
    assert hist[-1]["loss"] < 0.2 * hist[0]["loss"]
    # A forced bf16 runs the forward pass in bf16 (one tiny step: cheap even where bf16 is emulated).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        forced = Trainer(net, torch.optim.Adam(net.parameters(), 1e-2), step, amp="bf16", progress=False)
    forced.fit(lambda s: (x, y), 1)
    assert seen[-1] == torch.bfloat16 and forced.amp_dtype == torch.bfloat16


def _fake_probe(fast: bool) -> CpuBf16Support:
    return CpuBf16Support(native=fast, fp32_seconds=0.01, bf16_seconds=0.005 if fast else 0.3,
                          speedup=2.0 if fast else 1 / 30, fast=fast, threads=1,
                          reason="fake probe: " + ("native" if fast else "emulated, 30.0x slower"))


def test_amp_resolution(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_amp(None, cpu) is None and resolve_amp("off", cpu) is None
    with pytest.raises(ValueError, match="bf16"):
        resolve_amp("fp16", cpu)
    with pytest.raises(ValueError):
        resolve_amp("int8", cpu)
    # "auto" on the CPU follows the measured capability, never a guess
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: _fake_probe(True))
    assert resolve_amp("auto", cpu) is torch.bfloat16 and amp_label("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: _fake_probe(False))
    assert resolve_amp("auto", cpu) is None and amp_label("auto", "cpu") == "fp32"
    assert resolve_amp("auto", torch.device("meta")) is None  # neither CUDA nor CPU: fp32


def test_explicit_bf16_on_an_emulating_cpu_runs_but_warns_once(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: _fake_probe(False))
    monkeypatch.setattr(precision, "_WARNED_EMULATED_BF16", False)
    with pytest.warns(RuntimeWarning, match="30.0x slower"):
        assert resolve_amp("bf16", torch.device("cpu")) is torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_amp("bf16", torch.device("cpu")) is torch.bfloat16  # once only
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: _fake_probe(True))
    monkeypatch.setattr(precision, "_WARNED_EMULATED_BF16", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_amp("bf16", torch.device("cpu")) is torch.bfloat16  # native: silent


def test_the_probe_measures_and_agrees_with_auto():
    info = cpu_bf16_support()
    assert info is cpu_bf16_support()  # cached per process
    assert info.fp32_seconds > 0 and info.bf16_seconds > 0
    assert info.speedup == pytest.approx(info.fp32_seconds / info.bf16_seconds)
    assert info.fast == (info.native and info.speedup >= BF16_MIN_SPEEDUP)
    assert (resolve_amp("auto", torch.device("cpu")) is torch.bfloat16) == info.fast
    assert info.reason and info.as_dict()["threads"] == info.threads


def _cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


@pytest.mark.skipif("avx_ne_convert" in _cpu_flags(), reason="AVX2-class bf16 instructions exist on this CPU")
def test_auto_refuses_bf16_when_onednn_is_capped_at_avx2():
    # The cap leaves oneDNN without bf16 instructions (emulated, ~25x slower here): the probe must see it.
    code = ("from animlib.precision import amp_label, cpu_bf16_support as c; "
            "i = c(); print(i.fast, amp_label('auto', 'cpu'), round(i.speedup, 3))")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    fast, label, speedup = out.stdout.split()
    assert fast == "False" and label == "fp32", out.stdout
    assert float(speedup) < 1.0


def test_grad_clip_bounds_the_update():
    w = nn.Parameter(torch.zeros(3))
    m = nn.Module()
    m.w = w
    opt = torch.optim.SGD([w], lr=1.0)

    def step(t, _):
        loss = (m.w * torch.tensor([300.0, 400.0, 0.0])).sum()  # gradient norm 500
        norm = t.optimize(loss)
        return {"loss": loss, "norm": norm}

    t = Trainer({"model": m}, {"model": opt}, step, grad_clip=1.0, progress=False)
    hist = t.fit(lambda s: None, 1)
    assert hist[0]["norm"] == pytest.approx(500.0)
    assert float(w.detach().norm()) == pytest.approx(1.0, rel=1e-5)  # one SGD step of a unit-norm gradient


def test_image_optimisation_and_extra_state_resume(tmp_path):
    target = torch.linspace(0, 1, 16).reshape(1, 1, 4, 4)

    def run(steps, resume):
        seed_everything(0)
        img = torch.zeros(1, 1, 4, 4, requires_grad=True)
        opt = torch.optim.Adam([img], lr=0.05)

        def step(t, _):
            loss = F.mse_loss(img, target)
            t.optimize(loss, "image")
            return {"loss": loss}

        t = Trainer({}, {"image": opt}, step, extra={"image": TensorState(img)}, checkpoint_dir=tmp_path,
                    progress=False)
        t.fit(lambda s: None, steps, resume=resume)
        return img.detach()

    full = run(30, False)
    for p in tmp_path.iterdir():
        p.unlink()
    run(12, False)
    resumed = run(30, True)
    assert torch.equal(full, resumed)
    assert F.mse_loss(full, target) < F.mse_loss(torch.zeros_like(target), target)


def test_alternating_step_through_engine_updates_only_the_right_nets():
    seed_everything(0)
    G = nn.Linear(2, 2)
    D = nn.Linear(2, 1)
    t = Trainer({"g": G, "d": D}, {"g": torch.optim.SGD(G.parameters(), 0.1), "d": torch.optim.SGD(D.parameters(), 0.1)},
                lambda t, b: alternating_step(t, b, lambda: (t.models["g"](torch.randn(4, 2)), {})), progress=False)
    hist = t.fit(lambda s: torch.randn(4, 2) + 3, 3)
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(hist[-1])


def test_fit_helper_and_bad_inputs():
    seed_everything(0)
    net = nn.Linear(3, 1)
    x = torch.randn(32, 3)
    y = x.sum(1, keepdim=True)
    t = train_supervised(net, torch.optim.SGD(net.parameters(), 0.1), lambda m, b: F.mse_loss(m(b[0]), b[1]),
            lambda s: (x, y), 60, progress=False)
    assert t.history[-1]["loss"] < 0.05 * t.history[0]["loss"]
    with pytest.raises(KeyError, match="no optimiser named"):
        t.optimize(torch.tensor(1.0, requires_grad=True), "nope")
    with pytest.raises(ValueError, match="divisible"):
        shard_batch(torch.zeros(5, 2), 0, 2)
    with pytest.raises(ValueError, match="yielded no batches"):
        Trainer(net, torch.optim.SGD(net.parameters(), 0.1), SupervisedStep(lambda m, b: m(b).sum()),
                progress=False).fit([], 1)


DDP_SCRIPT = r"""
import os, sys, torch, torch.nn as nn, torch.nn.functional as F
import torch.distributed as dist
from animlib.engine import Trainer, SupervisedStep
from animlib.runtime import seed_everything
torch.set_num_threads(1)
seed_everything(0)
net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
g = torch.Generator().manual_seed(3)
X = torch.randn(10, 8, 4, generator=g)
Y = X.sum(-1, keepdim=True).sin()
t = Trainer(net, opt, SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1])), progress=False, device="cpu")
t.fit(lambda s: (X[s], Y[s]), 10)
if t.rank == 0:
    torch.save({k: v.clone() for k, v in t.unwrap().state_dict().items()}, sys.argv[1])
if t.world_size > 1:
    dist.destroy_process_group()
"""


@pytest.mark.ddp
def test_ddp_two_processes_matches_single_process(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single.pt")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp = subprocess.run(torchrun + [str(script), str(tmp_path / "ddp.pt")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = torch.load(tmp_path / "single.pt", weights_only=True)
    b = torch.load(tmp_path / "ddp.pt", weights_only=True)
    moved = any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a)
    assert moved
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)


def test_batched_inference_matches_one_pass_and_restores_the_mode():
    from animlib.engine import batched_inference

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5))  # dropout: eval mode must be on inside
    net.train()
    x = torch.randn(10, 3)
    want = net.eval()(x).detach()
    net.train()
    got = batched_inference(net, x, 4, model=net)
    torch.testing.assert_close(got, want)
    assert net.training and not got.requires_grad and got.device.type == "cpu"
    a, b = batched_inference(lambda c: (net(c), c.sum(1)), x, 3, model=net)
    torch.testing.assert_close(a, want)
    torch.testing.assert_close(b, x.sum(1))

    def boom(c):
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        batched_inference(boom, x, 4, model=net)
    assert net.training  # restored after the exception
    with pytest.raises(ValueError, match="no inputs"):
        batched_inference(net, x[:0], 4, model=net)
    with pytest.raises(ValueError, match="batch_size"):
        batched_inference(net, x, 0)


def test_callbacks_run_at_their_events_and_every_thins_them_out():
    from animlib.engine import every

    net = nn.Linear(2, 1)
    seen = []
    t = Trainer(net, torch.optim.SGD(net.parameters(), 0.1), SupervisedStep(lambda m, b: m(b).pow(2).mean()),
                device="cpu", progress=False,
                callbacks={"on_fit_start": lambda tr: seen.append(("start", tr.step)),
                           "on_step_end": [every(3, lambda tr: seen.append(("step", tr.step)))]})
    t.add_callback("on_fit_end", lambda tr: seen.append(("end", tr.step, net.training)))
    t.fit(lambda step: torch.ones(4, 2), 7)
    assert seen == [("start", 0), ("step", 3), ("step", 6), ("end", 7, True)]
    with pytest.raises(ValueError, match="on_step_end"):
        t.add_callback("on_epoch_end", print)
    with pytest.raises(ValueError, match="n >= 1"):
        every(0, print)
