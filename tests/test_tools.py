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

CHAPTER = """---
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
