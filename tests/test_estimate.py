"""The GPU estimate on paper (benchmarks/estimate.py): its counting, and that the published table
matches the full profile's current settings."""

import importlib.util
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _estimate_module():
    spec = importlib.util.spec_from_file_location("bench_estimate", ROOT / "benchmarks" / "estimate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (its dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


def test_per_step_count_matches_a_hand_count():
    E = _estimate_module()
    b = E.COUNT_BATCH

    def data():
        return torch.rand(b, 10), torch.rand(b, 20)

    from animlib.engine import SupervisedStep

    run = E.Run("x", "linear", steps=100, batch=8,
                train=E._trainer_run(lambda: {"model": nn.Linear(10, 20)},
                                     lambda: SupervisedStep(lambda m, x: F.mse_loss(m(x[0]), x[1])), data))
    c = E._per_step(run)
    # forward x @ W^T: 2·B·10·20 FLOPs; backward: the same for the weight's gradient (the input
    # needs none), so 4·B·10·20 per step at the count batch, scaled to the full batch of 8
    assert c["flops"] == 4 * 8 * 10 * 20
    assert 5 < c["kernels"] < 200  # forward, loss, backward and Adam's update, not the set-up
    assert c["data_s"] == 0.0


def test_published_estimate_matches_the_full_profile():
    E = _estimate_module()
    published = json.loads((ROOT / "benchmarks" / "estimate.json").read_text())
    assert published["settings"] == E.settings_fingerprint(), (
        "the full profile's settings changed since book/gpu_estimate.md was written: "
        "run `python benchmarks/run.py --estimate` and commit its two files")
    page = (ROOT / "book" / "gpu_estimate.md").read_text()
    assert f"{published['total_hours']:.1f} hours" in page
    names = {r.name for r in E.runs()}
    assert names == {r["run"] for r in published["rows"]}
