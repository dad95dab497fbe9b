"""The one switch that caps a run's work (the full-profile rehearsal and the GPU check)."""

import json

import pytest
import torch

from animlib.engine import Trainer
from animlib.runtime import WorkCap, cap_items, start_chapter, work_cap


def _trainer():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(t, batch):
        loss = (t.models["model"](batch) ** 2).mean()
        t.optimize(loss)
        return {"loss": loss.detach()}

    return Trainer(model, opt, step, device="cpu", progress=False)


def test_no_cap_by_default(monkeypatch):
    for var in ("ANIMLIB_CAP_STEPS", "ANIMLIB_CAP_ITEMS", "ANIMLIB_CAP_SECONDS"):
        monkeypatch.delenv(var, raising=False)
    assert work_cap() == WorkCap() and not work_cap().active
    assert cap_items(1000) == 1000
    t = _trainer()
    t.fit(lambda s: torch.ones(4, 3), 7)
    assert t.step == 7


def test_steps_and_items_are_capped(monkeypatch):
    monkeypatch.setenv("ANIMLIB_CAP_STEPS", "2")
    monkeypatch.setenv("ANIMLIB_CAP_ITEMS", "4")
    assert work_cap() == WorkCap(steps=2, items=4) and work_cap().active
    assert cap_items(1000) == 4 and cap_items(3) == 3 and cap_items(1000, minimum=32) == 32
    t = _trainer()
    history = t.fit(lambda s: torch.ones(4, 3), 500)
    assert t.step == 2 and len(history) == 2
    t.fit(lambda s: torch.ones(4, 3), 1000)  # a later fit of the same run adds nothing: 2 steps in all
    assert t.step == 2


def test_seconds_cap_stops_a_fit_after_at_least_one_step(monkeypatch):
    monkeypatch.setenv("ANIMLIB_CAP_SECONDS", "0.000001")
    t = _trainer()
    t.fit(lambda s: torch.ones(4, 3), 100)
    assert t.step == 1


@pytest.mark.parametrize("var,value", [("ANIMLIB_CAP_STEPS", "two"), ("ANIMLIB_CAP_STEPS", "0"),
                                       ("ANIMLIB_CAP_ITEMS", "-3"), ("ANIMLIB_CAP_SECONDS", "0")])
def test_bad_cap_values_say_which_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        work_cap()


def test_fit_log_records_speed_and_precision(monkeypatch, tmp_path):
    log = tmp_path / "fits.jsonl"
    monkeypatch.setenv("ANIMLIB_FIT_LOG", str(log))
    t = _trainer()
    t.fit(lambda s: torch.ones(4, 3), 3)
    t.fit(lambda s: torch.ones(4, 3), 5)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["steps"] for r in rows] == [3, 2]
    assert all(r["device"] == "cpu" and r["precision"] == "fp32" and r["peak_gpu_mb"] is None for r in rows)
    assert all(r["steps_per_s"] > 0 for r in rows)


def test_expect_raises_unless_work_is_capped(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("ANIMLIB_CAP_STEPS", raising=False)
    run = start_chapter("t", profile="quick", device="cpu", out_dir=tmp_path)
    run.expect(True, "fine")
    with pytest.raises(AssertionError, match="beat the baseline"):
        run.expect(False, "beat the baseline")
    monkeypatch.setenv("ANIMLIB_CAP_STEPS", "2")
    run.expect(False, "beat the baseline")
    assert "not checked: beat the baseline" in capsys.readouterr().out
    record = run.write_metrics({"x": 1.0})
    assert record["work_cap"] == {"steps": 2, "items": None, "seconds": None}
    assert record["peak_rss_mb"] > 0 and record["peak_gpu_mb"] is None


def test_batches_are_cut_to_a_few_examples_and_phases_shortened(monkeypatch):
    from animlib.rehearsal import cap_batch, cap_phase

    batch = {"x": torch.zeros(32, 3), "pair": (torch.ones(32), torch.tensor(5.0)), "name": "scenes"}
    assert cap_batch(batch) is batch  # no cap: unchanged
    assert cap_phase(1500) == 1500
    monkeypatch.setenv("ANIMLIB_CAP_ITEMS", "4")
    out = cap_batch(batch)
    assert out["x"].shape == (4, 3) and out["pair"][0].shape == (4,) and out["pair"][1].shape == ()
    assert out["name"] == "scenes" and cap_batch(torch.zeros(8, 2), minimum=6).shape == (6, 2)
    monkeypatch.setenv("ANIMLIB_CAP_STEPS", "2")
    assert cap_phase(1500) == 1 and cap_phase(0) == 0
    monkeypatch.setenv("ANIMLIB_CAP_STEPS", "1")
    assert cap_phase(1500) == 0  # one step: it runs the phase after the warm-up
    seen = []
    t = _trainer()
    t.step_fn = lambda tr, b: seen.append(b.shape[0]) or {}
    t.fit(lambda s: torch.ones(32, 3), 10)
    assert seen == [4] and t.step == 1
