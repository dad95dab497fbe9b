"""tools/results_page.py: the Results page computed from the chapters' metrics.json files."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_page", ROOT / "tools" / "results_page.py")
rp = importlib.util.module_from_spec(spec)
sys.modules["results_page"] = rp  # dataclasses look their module up
spec.loader.exec_module(rp)

PROVENANCE = {"profile": "quick", "device": "cpu", "seed": 0, "seconds": 12.5, "git_commit": "abc1234",
              "python": "3.11.9", "torch": "2.4.1+cpu", "animlib": "0.3.0", "pretrained_weights_sha256": {},
              "cpu_capability": "AVX512", "onednn_max_cpu_isa": None,
              "cpu_bf16": {"native": True, "fast": True, "speedup": 1.8}}


def measured(chapter: str, claims_hold: bool) -> dict:
    """Numbers for every headline of ``chapter``, all holding or all failing."""
    m = {}
    for h in rp.HEADLINES[chapter]:
        base = 0.5
        good = base * h.factor * (0.5 if h.better == "lower" else 1.5)
        bad = base * h.factor * (1.5 if h.better == "lower" else 0.5)
        m[h.metric], m[h.baseline] = (good if claims_hold else bad), base
    return m


def write_record(outputs: Path, chapter: str, numbers: dict, **provenance) -> dict:
    record = {**numbers, "chapter": chapter, **PROVENANCE, **provenance}
    (outputs / chapter).mkdir(parents=True, exist_ok=True)
    (outputs / chapter / "metrics.json").write_text(json.dumps(record))
    return record


def split_row(line: str) -> list[str]:
    """A Markdown table row's cells, split on unescaped pipes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def table(page: str, heading: str) -> list[list[str]]:
    """The rows (without header) of the first table after ``## heading``."""
    lines = page.split(f"## {heading}\n", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    block = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        block.append(ln)
    return [split_row(ln) for ln in block[2:]]


def by_chapter(rows: list[list[str]]) -> dict[str, list[list[str]]]:
    """Rows grouped under the chapter named in the first cell (continuation rows leave it empty)."""
    out: dict[str, list[list[str]]] = {}
    current = None
    for r in rows:
        if r[0]:
            current = re.sub(r"^\{doc\}`/chapters/(.*)`$", r"\1", r[0])
        out.setdefault(current, []).append(r)
    return out


def test_every_chapter_has_headlines_and_every_key_is_written_by_its_chapter():
    chapters = [p.stem for p in (ROOT / "chapters").glob("*.md")]
    assert set(rp.HEADLINES) == set(chapters) == {c.stem for c in rp.toc_chapters()}
    for chapter, heads in rp.HEADLINES.items():
        source = (ROOT / "chapters" / f"{chapter}.md").read_text(encoding="utf-8")
        assert "run.write_metrics(" in source
        for h in heads:
            assert h.better in ("lower", "higher") and h.label and h.factor > 0
            for key in (h.metric, h.baseline):
                assert f'"{key}"' in source or f"'{key}'" in source, f"{chapter} writes no metric named {key!r}"


def test_held_is_computed_from_the_numbers():
    lower = rp.Headline("m", "b", "lower", "x")
    higher = rp.Headline("m", "b", "higher", "x")
    at_least = rp.Headline("m", "b", "higher", "x", 0.8)
    assert rp.held(lower, {"m": 1.0, "b": 2.0}) is True and rp.held(lower, {"m": 2.0, "b": 1.0}) is False
    assert rp.held(lower, {"m": 1.0, "b": 1.0}) is False  # a tie does not beat the baseline
    assert rp.held(higher, {"m": 3, "b": 2}) is True and rp.held(higher, {"m": 1, "b": 2}) is False
    assert rp.held(at_least, {"m": 0.8, "b": 1.0}) is True and rp.held(at_least, {"m": 0.79, "b": 1.0}) is False
    for missing in ({"m": None, "b": 1.0}, {"b": 1.0}, {"m": float("nan"), "b": 1.0}, {"m": True, "b": 1.0}):
        assert rp.held(lower, missing) is None
    with pytest.raises(ValueError):
        rp.held(rp.Headline("m", "b", "sideways", "x"), {"m": 1.0, "b": 2.0})


def test_page_computes_held_and_lists_missing_chapters_and_values(tmp_path):
    outputs = tmp_path / "outputs"
    write_record(outputs, "00_toolkit", measured("00_toolkit", True))
    write_record(outputs, "01_lstm_gates", measured("01_lstm_gates", False))
    numbers = measured("05_vae", True)
    numbers["vae_test_bce"] = None
    write_record(outputs, "05_vae", numbers, cpu_bf16=None, onednn_max_cpu_isa="AVX2", cpu_capability="AVX2")
    run = rp.load_run(outputs=outputs)
    page = rp.render_page(run, links=True)

    heads = by_chapter(table(page, "Headline measures"))
    assert list(heads) == [c.stem for c in rp.toc_chapters()]  # every chapter, in table-of-contents order
    assert [r[-1] for r in heads["00_toolkit"]] == ["yes", "yes"]
    assert [r[-1] for r in heads["01_lstm_gates"]] == ["**no**"]
    assert heads["05_vae"][0][2] == "—" and heads["05_vae"][0][-1] == "—"  # None value, no verdict
    assert heads["01_lstm_gates"][0][2] == "0.75" and heads["01_lstm_gates"][0][4] == "0.5"
    for chapter in ("02_q_learning", "08_face_reenactment"):
        assert heads[chapter] == [[f"{{doc}}`/chapters/{chapter}`", "not run", "—", "—", "—", "—", "—"]]
    assert "In this run 2 of 3 headline claims held" in page

    prov = {k: v[0] for k, v in by_chapter(table(page, "How each chapter ran")).items()}
    assert prov["00_toolkit"][1:] == ["ok", "quick", "cpu", "AVX512", "bf16 (native, 1.8× fp32's speed)", "12.5",
                                      "2.4.1+cpu", "0.3.0", "abc1234"]
    assert prov["05_vae"][4:6] == ["AVX2, oneDNN ≤ AVX2", "fp32 (bf16 not probed)"]
    assert prov["06_gan"][1:] == ["not run"] + ["—"] * 8
    # without links the chapters are named by their titles
    assert "| How this book runs |" in rp.render_page(run)
    # nothing at all: every chapter "not run", no crash
    empty = rp.render_page(rp.load_run(outputs=tmp_path / "nothing", summary=tmp_path / "none.json"))
    assert empty.count("| not run |") == 2 * len(rp.HEADLINES) and "0 of 0" in empty


def test_summary_decides_what_ran_and_stale_metrics_are_not_trusted(tmp_path):
    outputs = tmp_path / "outputs"
    ok_numbers = measured("00_toolkit", True)
    write_record(outputs, "00_toolkit", {**ok_numbers, "train_steps": 40})
    # from an older run with other settings
    write_record(outputs, "03_gram_style", measured("03_gram_style", True), profile="full", device="cuda:0")
    # rewritten by a re-execution of the same notebook (nbval): same settings, a different CPU time
    write_record(outputs, "01_lstm_gates", {**measured("01_lstm_gates", True), "cpu_seconds": 9.0})
    write_record(outputs, "04_relative_depth", measured("04_relative_depth", True))  # its chapter failed now
    summary = tmp_path / "executed" / "summary.json"
    summary.parent.mkdir()
    summary.write_text(json.dumps({"parameters": {"profile": "quick", "device": "cpu"}, "chapters": [
        {"chapter": "00_toolkit", "ok": True, "seconds": 61.0, "metrics": {**ok_numbers, "train_steps": 40}},
        {"chapter": "01_lstm_gates", "ok": True, "seconds": 20.0,
         "metrics": {**measured("01_lstm_gates", True), "cpu_seconds": 8.0}},
        {"chapter": "03_gram_style", "ok": True, "seconds": 30.0, "metrics": measured("03_gram_style", False)},
        {"chapter": "04_relative_depth", "ok": False, "seconds": 5.0, "metrics": {},
         "error": "ValueError: a|b {x} $y$ *z* <w> (full log: _build/executed/04_relative_depth.log)"},
    ]}))
    run = rp.load_run(outputs=outputs, summary=summary)
    assert run.chapters["00_toolkit"].metrics["torch"] == "2.4.1+cpu"  # provenance from the same run
    assert run.chapters["00_toolkit"].wall_seconds == 61.0  # the notebook's wall time, from the runner
    stale = run.chapters["03_gram_style"]
    assert "torch" not in stale.metrics and "another run" in stale.note and stale.metrics["profile"] == "quick"
    assert run.chapters["04_relative_depth"].status == "failed" and not run.chapters["04_relative_depth"].metrics
    rerun = run.chapters["01_lstm_gates"]
    assert rerun.metrics["cpu_seconds"] == 8.0 and rerun.metrics["torch"] == "2.4.1+cpu" and not rerun.note
    page = rp.render_page(run, links=True)
    heads = by_chapter(table(page, "Headline measures"))
    assert heads["03_gram_style"][0][-1] == "**no**"  # the summary's numbers, not the older file's
    failed = heads["04_relative_depth"][0]
    assert failed[1].startswith("**failed**: ValueError: a\\|b \\{x\\} \\$y\\$ \\*z\\* \\<w\\>")
    assert failed[2:] == ["—"] * 5
    # outputs=None: the folder the summary's run wrote to, here given by out_dir
    data = json.loads(summary.read_text())
    data["parameters"]["out_dir"] = str(outputs)
    summary.write_text(json.dumps(data))
    assert rp.load_run(summary=summary).chapters["00_toolkit"].metrics["git_commit"] == "abc1234"


def test_compare_sets_two_runs_side_by_side(tmp_path, capsys):
    quick, full = tmp_path / "quick", tmp_path / "full"
    write_record(quick, "01_lstm_gates", {**measured("01_lstm_gates", False), "data": "synthetic scenes"})
    write_record(full, "01_lstm_gates", {"motion_mse": 0.25, "static_motion_mse": 0.5, "data": "real clips"},
                 profile="full", device="cuda:0", seconds=900.0)
    write_record(full, "05_vae", measured("05_vae", True), profile="full", device="cuda:0")
    page = rp.render_compare(rp.run_from_path(quick, "quick CPU"), rp.run_from_path(full, "full GPU"), links=True)
    heads = by_chapter(table(page, "Headline measures"))
    row = heads["01_lstm_gates"][0]
    assert row[2:] == ["0.75", "0.25", "-0.5 (-66.7%)", "**no**", "yes"]
    assert by_chapter(table(page, "Headline measures"))["05_vae"][0][2:] == ["—", "0.25", "—", "—", "yes"]
    every = by_chapter(table(page, "Every measured number"))["01_lstm_gates"]
    assert ["", "`data`", "synthetic scenes", "real clips", "differs"] in every
    chapters = by_chapter(table(page, "Chapters"))
    assert chapters["01_lstm_gates"][0][1:] == ["ok", "ok", "12.5", "900", "+887.5 (+7100.0%)"]
    assert chapters["05_vae"][0][1:3] == ["not run", "ok"]
    assert "quick on cpu" in page and "full on cuda:0" in page

    # the command line: a summary.json against a folder of outputs, into a file
    summary = tmp_path / "executed" / "summary.json"
    summary.parent.mkdir()
    summary.write_text(json.dumps({"parameters": {"profile": "quick", "device": "cpu", "out_dir": str(quick)},
                                   "chapters": [{"chapter": "01_lstm_gates", "ok": True, "seconds": 70.0,
                                                 "metrics": measured("01_lstm_gates", False)}]}))
    out = tmp_path / "compare.md"
    assert rp.main(["--compare", str(summary.parent), str(full), "--labels", "A run", "B run", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| A | A run | quick on cpu |" in text and "-0.5 (-66.7%)" in text and "| 70 | 900 |" in text
    # a run copied aside: <folder>/executed/summary.json and <folder>/outputs
    aside = tmp_path / "aside"
    shutil.copytree(summary.parent, aside / "executed")
    shutil.copytree(quick, aside / "outputs")
    assert rp.locate(aside) == (aside / "executed" / "summary.json", aside / "outputs")
    assert rp.run_from_path(aside).chapters["01_lstm_gates"].wall_seconds == 70.0
    with pytest.raises(SystemExit):
        rp.main(["--compare", str(tmp_path / "missing"), str(full)])
    assert "no such run" in capsys.readouterr().err


def test_stage_gets_the_page_and_its_toc_entry_and_the_sources_do_not(tmp_path):
    assert "book/results" not in (ROOT / "_toc.yml").read_text()
    assert not (ROOT / "book" / "results.md").exists()
    stage = tmp_path / "site"
    (stage / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_toc.yml", stage / "_toc.yml")
    outputs = tmp_path / "outputs"
    write_record(outputs, "00_toolkit", measured("00_toolkit", True))
    for _ in range(2):  # idempotent
        assert rp.main(["--stage", str(stage), "--outputs", str(outputs), "--summary", str(tmp_path / "x")]) == 0
    toc = yaml.safe_load((stage / "_toc.yml").read_text())
    reference = next(p for p in toc["parts"] if p["caption"] == "Reference")
    assert [c["file"] for c in reference["chapters"]].count("book/results") == 1
    assert reference["chapters"][-1] == {"file": "book/results"}
    source_toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert [p["caption"] for p in toc["parts"]] == [p["caption"] for p in source_toc["parts"]]
    page = (stage / "book" / "results.md").read_text()
    assert page.startswith("(results)=\n# Results of this build\n") and "{doc}`/chapters/00_toolkit`" in page


def test_the_page_is_valid_myst_for_sphinx_with_warnings_as_errors(tmp_path):
    """The staged page builds with Sphinx -W and the book's MyST extensions (chapters stubbed)."""
    outputs = tmp_path / "outputs"
    write_record(outputs, "00_toolkit", measured("00_toolkit", True))
    write_record(outputs, "02_q_learning", measured("02_q_learning", False), cpu_bf16=None)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"parameters": {"out_dir": str(outputs)}, "chapters": [
        {"chapter": "00_toolkit", "ok": True, "seconds": 1.0, "metrics": measured("00_toolkit", True)},
        {"chapter": "07_gru_video_autoencoder", "ok": False, "seconds": 1.0, "metrics": {},
         "error": "RuntimeError: {bad} | `x` $y [z](w) <b> #1 ~s~ \\ end"}]}))
    src = tmp_path / "src"
    (src / "chapters").mkdir(parents=True)
    chapters = [c.stem for c in rp.toc_chapters()]
    for name in chapters:
        (src / "chapters" / f"{name}.md").write_text(f"# {rp.chapter_title(name)}\n\nText.\n")
    (src / "book").mkdir()
    shutil.copy(ROOT / "_toc.yml", src / "_toc.yml")
    rp.add_to_stage(src, summary=summary)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    extensions = config["parse"]["myst_enable_extensions"]
    (src / "conf.py").write_text(f"extensions = ['myst_parser']\nmyst_enable_extensions = {extensions!r}\n"
                                 "exclude_patterns = ['_toc.yml']\n")
    (src / "index.md").write_text("# Index\n\n```{toctree}\n" + "\n".join(f"chapters/{c}" for c in chapters)
                                  + "\nbook/results\n```\n")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "dummy", str(src),
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    levels = [len(m) for m in re.findall(r"^(#+) ", (src / "book" / "results.md").read_text(), re.M)]
    assert levels[0] == 1 and all(b - a <= 1 for a, b in zip(levels, levels[1:]))
