"""``amp="auto"`` on CUDA picks the format the GPU computes natively, read from the device in use.

No GPU is needed: the capability query is faked per device index, so each row of the table (a
Pascal card, a V100, a T4, an A100, an RTX 4090, an H100) is checked as the library would see it.
"""

import pytest
import torch

from animlib import engine
from animlib.precision import amp_label, cuda_autocast_dtype, resolve_amp

# (name, compute capability, what amp="auto" must choose)
GPUS = [
    ("GTX 1080 (Pascal)", (6, 1), None),
    ("P100", (6, 0), None),
    ("V100", (7, 0), torch.float16),
    ("T4 (Colab)", (7, 5), torch.float16),
    ("A100", (8, 0), torch.bfloat16),
    ("RTX 4090", (8, 9), torch.bfloat16),
    ("H100", (9, 0), torch.bfloat16),
]


@pytest.fixture
def fake_gpus(monkeypatch):
    """Fake CUDA devices: index -> capability; the current device is index 0."""
    caps = {}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: caps[0 if index is None else index])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    # bf16 can be emulated on every one of these, so this must not decide anything.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    return caps


@pytest.mark.parametrize("name,cap,expected", GPUS, ids=[g[0] for g in GPUS])
def test_auto_precision_follows_native_capability(fake_gpus, name, cap, expected):
    fake_gpus[0] = cap
    assert cuda_autocast_dtype("cuda") is expected
    assert resolve_amp("auto", torch.device("cuda")) is expected
    assert amp_label("auto", "cuda") == {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[expected]


def test_capability_of_the_device_in_use_not_the_current_one(fake_gpus):
    fake_gpus[0] = (9, 0)  # current device: an H100
    fake_gpus[1] = (7, 5)  # the device asked for: a T4
    assert resolve_amp("auto", torch.device("cuda:1")) is torch.float16
    assert resolve_amp("auto", torch.device("cuda:0")) is torch.bfloat16
    fake_gpus[1] = (6, 1)
    assert resolve_amp("auto", torch.device("cuda:1")) is None


def test_explicit_requests_are_kept(fake_gpus):
    fake_gpus[0] = (7, 5)
    assert resolve_amp("bf16", torch.device("cuda")) is torch.bfloat16  # asked for: emulated, but run
    assert resolve_amp("fp16", torch.device("cuda")) is torch.float16
    assert resolve_amp(None, torch.device("cuda")) is None


def test_mps_stays_fp32():
    assert resolve_amp("auto", torch.device("mps")) is None


def test_fp16_trains_with_a_grad_scaler_and_bf16_without(fake_gpus, monkeypatch):
    """The Trainer enables its GradScaler exactly when auto resolves to fp16 on CUDA."""
    made = []

    class FakeScaler:
        def __init__(self, device, enabled):
            made.append(enabled)

    monkeypatch.setattr(torch.amp, "GradScaler", FakeScaler)
    monkeypatch.setattr(engine.trainer, "get_device", lambda d: torch.device("cuda"))
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)
    for cap, scaled in [((7, 5), True), ((8, 0), False), ((6, 1), False)]:
        fake_gpus[0] = cap
        model = torch.nn.Linear(2, 2)
        engine.Trainer(model, torch.optim.SGD(model.parameters(), 0.1), lambda t, b: {}, device="cuda",
                       amp="auto", progress=False)
        assert made[-1] is scaled, cap
