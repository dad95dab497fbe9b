"""Opt-in torch.compile in the Trainer: the same training as eager execution, on the CPU."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from animlib.engine import SupervisedStep, Trainer, compile_mode


def _run(tmp_path, compile, steps=4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    data = [(torch.randn(4, 2, 8, 8), torch.randn(4, 1, 8, 8)) for _ in range(steps)]
    t = Trainer(model, torch.optim.Adam(model.parameters(), 1e-2), SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1])),
                device="cpu", progress=False, compile=compile, checkpoint_dir=tmp_path)
    hist = t.fit(lambda s: data[s], steps)
    return t, [h["loss"] for h in hist]


def test_compiled_training_matches_eager(tmp_path):
    # Run under every kernel set by `make test`: with one shared inductor cache, kernels compiled
    # under AVX-512 were reused under ATEN_CPU_CAPABILITY=avx2 and the losses came out near 1e31.
    eager, eager_losses = _run(tmp_path / "eager", False)
    compiled, compiled_losses = _run(tmp_path / "compiled", True)
    assert type(compiled.models["model"]).__name__ == "OptimizedModule"  # it really was compiled
    assert type(eager.models["model"]).__name__ == "Sequential"
    torch.testing.assert_close(torch.tensor(compiled_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-6)
    # checkpoints hold the plain module's weights: no "_orig_mod." prefix, loadable without compiling
    state = torch.load(tmp_path / "compiled" / "last.pt", weights_only=True)
    assert set(state["models"]["model"]) == set(eager.raw_models["model"].state_dict())
    capability = torch.backends.cpu.get_cpu_capability().lower()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"].endswith(f"animlib-cpu-{capability}")


def test_compile_mode_values(monkeypatch):
    monkeypatch.delenv("ANIMLIB_COMPILE", raising=False)
    assert compile_mode(None) is None and compile_mode(False) is None
    assert compile_mode(True) == "default" and compile_mode("max-autotune") == "max-autotune"
    monkeypatch.setenv("ANIMLIB_COMPILE", "1")
    assert compile_mode(None) == "default"
    monkeypatch.setenv("ANIMLIB_COMPILE", "reduce-overhead")
    assert compile_mode(None) == "reduce-overhead"
    monkeypatch.setenv("ANIMLIB_COMPILE", "fastest")
    with pytest.raises(ValueError, match="ANIMLIB_COMPILE"):
        compile_mode(None)
