"""tools/: the chapter runner (papermill, parameters, the summary table) and the book builder's fix-up."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


run_chapters = _load("run_chapters")
build_book = _load("build_book")

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

CHAPTER = HEADER + """
# A tiny chapter

```{code-cell} ipython3
:tags: [parameters]
profile = "quick"
device = "cpu"
out_dir = None
answer = 1
```

```{code-cell} ipython3
import json, pathlib
assert answer != 13, "unlucky parameter"
out = pathlib.Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"answer": answer, "profile": profile, "seconds": 0.1}))
```
"""


def test_toc_lists_every_chapter_file_in_order():
    chapters = run_chapters.toc_chapters()
    assert chapters == sorted(chapters), "chapters are numbered in table-of-contents order"
    assert {p.name for p in chapters} == {p.name for p in (ROOT / "chapters").glob("*.md")}
    assert all(p.exists() for p in chapters)


def test_parameter_values_parse_like_papermill():
    assert run_chapters.parse_value("3") == 3 and run_chapters.parse_value("0.5") == 0.5
    assert run_chapters.parse_value("null") is None and run_chapters.parse_value("true") is True
    assert run_chapters.parse_value("cuda:1") == "cuda:1"
    assert run_chapters.fmt(0.123456) == "0.1235" and run_chapters.fmt("x") == "x"


def test_runner_executes_reports_and_fails_loudly(tmp_path, capsys):
    ch = tmp_path / "tiny.md"
    ch.write_text(CHAPTER)
    out = tmp_path / "executed"
    metrics_dir = tmp_path / "metrics"
    rc = run_chapters.main([str(ch), "--out", str(out), "-p", "out_dir", str(metrics_dir), "-p", "answer", "42",
                            "--timeout", "120"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    row = summary["chapters"][0]
    assert row["ok"] and row["metrics"] == {"answer": 42}  # provenance (profile, seconds) left out of the table
    assert summary["parameters"]["answer"] == 42 and (out / "tiny.ipynb").exists()
    assert "| tiny | ok |" in (out / "summary.md").read_text()
    rc = run_chapters.main([str(ch), "--out", str(out), "-p", "out_dir", str(metrics_dir), "-p", "answer", "13",
                            "--timeout", "120"])
    assert rc == 1
    row = json.loads((out / "summary.json").read_text())["chapters"][0]
    assert not row["ok"] and "unlucky parameter" in row["error"]
    assert "1 chapter(s) failed: tiny" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_chapters.main([str(tmp_path / "missing.md")])


def test_duplicate_thebe_config_is_removed_once_per_page(tmp_path):
    script = '<script>const THEBE_JS_URL = "x.js"</script>\n'
    twice = tmp_path / "a.html"
    twice.write_text(f"<head>\n{script}<meta>\n{script}</head>\n")
    once = tmp_path / "sub" / "b.html"
    once.parent.mkdir()
    once.write_text(f"<head>\n{script}</head>\n")
    assert build_book.dedupe_thebe_config(tmp_path) == 1
    assert twice.read_text().count("THEBE_JS_URL") == 1 and "<meta>" in twice.read_text()
    assert once.read_text() == f"<head>\n{script}</head>\n"
    assert build_book.dedupe_thebe_config(tmp_path) == 0  # idempotent


def test_runner_refuses_unknown_parameters_and_values_before_running(tmp_path, capsys):
    ch = tmp_path / "tiny.md"
    ch.write_text(CHAPTER)
    assert run_chapters.chapter_parameters(ch) == {"profile": "quick", "device": "cpu", "out_dir": None, "answer": 1}
    for argv, message in [
        (["-p", "profil", "full"], "tiny has no parameter 'profil'; its parameters are answer, device, out_dir, profile"),
        (["--device", "gpu"], "device must be one of auto, cpu, cuda, mps"),
        (["--device", "cuda:x"], "device must be one of"),
    ]:
        with pytest.raises(SystemExit):
            run_chapters.main([str(ch), "--out", str(tmp_path / "out"), *argv])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "tiny.ipynb").exists()  # nothing ran
    assert run_chapters.check_parameters(run_chapters.toc_chapters(), {"profile": "full", "device": "cuda:1"}) == []


TRAINING_CHAPTER = HEADER + """
```{code-cell} ipython3
:tags: [parameters]
profile = "quick"
device = "cpu"
data_root = None
out_dir = None
```

```{code-cell} ipython3
import torch
from animlib.engine import Trainer
from animlib.runtime import start_chapter
run = start_chapter("04_relative_depth", profile=profile, device=device, out_dir=out_dir, data_root=data_root)
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), 0.1)
def step(t, b):
    loss = t.models["model"](b).pow(2).mean()
    t.optimize(loss)
    return {"loss": loss.detach()}
trainer = Trainer(model, opt, step, device=run.device)
trainer.fit(lambda s: torch.ones(4, 2), 1000 if profile == "full" else 3)
run.expect(trainer.step == 1000, "a full run trains 1000 steps")
run.write_metrics({"steps": trainer.step, "nyu": (run.data_root / "nyu" / "PREPARED").exists()})
```
"""


def test_rehearsal_runs_the_full_profile_with_capped_work_and_fake_data(tmp_path, capsys):
    ch = tmp_path / "04_relative_depth.md"  # a chapter that takes data: it gets the fake root itself
    ch.write_text(TRAINING_CHAPTER)
    out = tmp_path / "rehearsal"
    rc = run_chapters.main([str(ch), "--rehearse", "--cap-steps", "3", "--out", str(out), "--timeout", "120"])
    assert rc == 0, capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    row = summary["chapters"][0]
    assert summary["parameters"]["profile"] == "full"
    assert summary["work_cap"] == {"ANIMLIB_CAP_STEPS": "3", "ANIMLIB_CAP_ITEMS": "4"}
    assert row["ok"] and row["metrics"] == {"steps": 3, "nyu": True}  # capped; the prepared fake NYU was read
    assert [f["steps"] for f in row["fits"]] == [3] and row["fits"][0]["precision"] in ("fp32", "bf16")
    assert row["peak_rss_mb"] > 0
    metrics = json.loads((out / "outputs" / "04_relative_depth" / "metrics.json").read_text())
    assert metrics["work_cap"]["steps"] == 3 and metrics["profile"] == "full"
    assert "peak memory" in (out / "summary.md").read_text()


def test_dry_run_lists_every_chapter_with_its_data_root_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert run_chapters.main(["--rehearse", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "ANIMLIB_CAP_STEPS=1" in text and "ANIMLIB_CAP_ITEMS=4" in text
    for ch in run_chapters.toc_chapters():
        assert f"  {ch.stem}: " in text
    assert str(out / "fake_data" / "weizmann") in text and '"profile": "full"' in text
