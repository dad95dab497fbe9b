"""tools/gpu_check.sh (the one-command check on a CUDA GPU) and its report, tools/gpu_summary.py.

Nothing here needs a GPU: the script's dry run, its refusal to run without CUDA, and its stages
driven by a stand-in interpreter; the report from hand-written stage outputs."""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gpu_summary = _load("gpu_summary")


def toc_stems() -> list[str]:
    stems = re.findall(r"^\s*-?\s*file:\s*chapters/(\S+)\s*$", (ROOT / "_toc.yml").read_text(), flags=re.M)
    assert stems, "_toc.yml lists chapters"
    return stems


def run_script(*args, env=None, timeout=120):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def run_chapters_flags() -> str:
    return subprocess.run([PY, str(ROOT / "tools" / "run_chapters.py"), "--help"], capture_output=True,
                          text=True, cwd=ROOT).stdout


def test_bash_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck():
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_help():
    proc = run_script("--help")
    assert proc.returncode == 0, proc.stderr
    for word in ("--dry-run", "--python", "_build/gpu_check", "240", "270", "summary.md", "CUDA"):
        assert word in proc.stdout, word
    assert run_script("--no-such-option").returncode == 2


def stage_sections(out: str) -> dict[str, str]:
    """The dry run's text from each stage's header to the next one."""
    parts = re.split(r"^\[gpu_check +\d+s\] (stage \d) \(", out, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_dry_run_prints_each_stage_command_with_its_timeout_and_caps(tmp_path):
    out = tmp_path / "check"
    proc = run_script("--dry-run", str(out))
    text = proc.stdout
    # Exit 1 only when the runner's own plan could not be made; the reason is on stderr.
    assert proc.returncode == 0 or "run_chapters.py" in proc.stderr, proc.stderr
    for stem in toc_stems():
        assert f"    {stem}\n" in text, f"{stem} is not in the checked chapter list"
    sections = stage_sections(text)
    assert set(sections) == {"stage 1", "stage 2"}, text
    assert re.search(rf"timeout --kill-after=\d+ 240 \S+ tools/run_chapters.py --profile quick --device cuda "
                     rf"--jobs 2 --out {re.escape(str(out / 'quick'))}\n", sections["stage 1"]), sections["stage 1"]
    assert re.search(rf"timeout --kill-after=\d+ 270 \S+ tools/run_chapters.py --rehearse --device cuda "
                     rf"--cap-steps 200 --cap-seconds 20 --cap-items 64 --jobs 2 --out "
                     rf"{re.escape(str(out / 'full'))}\n", sections["stage 2"]), sections["stage 2"]
    assert "summary.md" in text and "machine.txt" in text
    # Nothing is written outside the output folder; the check itself writes nothing at all.
    assert [p.name for p in tmp_path.iterdir()] in ([], ["check"])
    assert not (out / "machine.txt").exists() and not (out / "summary.md").exists()


@pytest.mark.skipif(not all(f in run_chapters_flags() for f in ("--dry-run", "--rehearse", "--cap-seconds")),
                    reason="tools/run_chapters.py has no --dry-run/--rehearse/--cap-seconds yet: the stages' "
                           "plans cannot be checked")
def test_dry_run_shows_run_chapters_plan_for_every_chapter_in_both_stages(tmp_path):
    proc = run_script("--dry-run", str(tmp_path / "check"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sections = stage_sections(proc.stdout)
    for stage, section in sections.items():
        plan = [ln for ln in section.splitlines() if ln.startswith("    | ")]
        for stem in toc_stems():
            assert any(stem in ln for ln in plan), f"{stem} is missing from the plan of {stage}"
    full_plan = "\n".join(ln for ln in sections["stage 2"].splitlines() if ln.startswith("    | "))
    for cap in ("ANIMLIB_CAP_STEPS=200", "ANIMLIB_CAP_ITEMS=64", "ANIMLIB_CAP_SECONDS=20"):
        assert cap in full_plan, full_plan
    assert "ANIMLIB_CAP" not in "\n".join(ln for ln in sections["stage 1"].splitlines() if ln.startswith("    | "))


def test_without_a_gpu_it_stops_and_says_cuda(tmp_path):
    out = tmp_path / "check"
    proc = run_script(str(out), env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU, even on a machine with one
    assert proc.returncode != 0
    assert "CUDA" in proc.stderr, proc.stderr
    assert "--dry-run" in proc.stderr
    assert not out.exists(), "nothing is written before the GPU is found"


FAKE_PY = r"""#!/usr/bin/env bash
# Stands in for Python on a GPU machine: the machine probe says there is a GPU, the runner's stages
# write what tools/run_chapters.py writes, and the rehearsal hangs (with a process in a session of
# its own, as a Jupyter kernel is) until the stage's timeout ends it.
real=$FAKE_REAL_PY
case "$1" in
  -c) printf 'python: 3.x\ntorch: 9.9 (fake)\nGPU 0: Fake GPU (1 visible)\namp="auto" on cuda picks: bf16\n'; exit 0 ;;
  tools/gpu_summary.py) exec "$real" "$@" ;;
esac
for a in "$@"; do [ "$a" = --help ] && exec "$real" "$@"; done
out=""; prev=""
for a in "$@"; do [ "$prev" = --out ] && out=$a; prev=$a; done
mkdir -p "$out"
case " $* " in
  *" --rehearse "*)
    echo '{"desc": "vae", "steps": 200, "seconds": 4.0, "steps_per_s": 50.0, "device": "cuda", "precision": "bf16", "peak_gpu_mb": 812.5}' > "$out/00_toolkit.fits.jsonl"
    setsid bash -c 'echo $$ > "$1"; exec sleep 300' _ "$out/orphan.pid" &
    echo "rehearsing"
    sleep 300 ;;
  *)
    echo '{"chapters": [{"chapter": "00_toolkit", "ok": true, "seconds": 12.5, "error": ""}]}' > "$out/summary.json"
    echo "quick done" ;;
esac
"""


def test_stages_run_in_turn_a_timeout_is_recorded_and_left_processes_end(tmp_path):
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    out = tmp_path / "check"
    orphan = None
    try:
        t0 = time.monotonic()
        proc = run_script("--python", str(fake), str(out), timeout=90,
                          env={"FAKE_REAL_PY": PY, "GPU_CHECK_FULL_S": "5", "GPU_CHECK_GRACE_S": "1"})
        assert time.monotonic() - t0 < 60
        if (out / "full" / "orphan.pid").exists():
            orphan = int((out / "full" / "orphan.pid").read_text())
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "quick done" in proc.stdout and "rehearsing" in proc.stdout  # each stage's output, live
        assert (out / "quick.log").exists() and (out / "full.log").exists()
        stages = gpu_summary.read_stages(out / "stages.tsv")
        assert stages["quick"]["rc"] == 0 and stages["full"]["rc"] in (124, 137)
        machine = (out / "machine.txt").read_text()
        assert "GPU 0: Fake GPU" in machine and "nvidia-smi" in machine
        summary = (out / "summary.md").read_text()
        assert "Fake GPU" in summary and "TIMED OUT" in summary
        assert "| 00_toolkit | vae | 200 | 4 | 50 | bf16 | 812.5 |" in summary
        assert orphan is not None, "the fake rehearsal started its process"
        deadline = time.monotonic() + 5
        while Path(f"/proc/{orphan}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{orphan}").exists(), "a process left by the stage still runs"
    finally:
        if orphan is not None and Path(f"/proc/{orphan}").exists():
            os.kill(orphan, signal.SIGKILL)


# --- the report ---------------------------------------------------------------------------------

CHAPTERS = ["00_toolkit", "01_lstm_gates", "02_q_learning"]


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fit(desc, steps, secs, precision="bf16", peak=512.0):
    return {"desc": desc, "steps": steps, "seconds": secs, "steps_per_s": steps / secs, "device": "cuda",
            "precision": precision, "peak_gpu_mb": peak}


def test_toc_chapters_match_the_table_of_contents():
    assert [c.stem for c in gpu_summary.toc_chapters()] == toc_stems()


def test_report_with_a_failed_stage_and_a_missing_one(tmp_path):
    (tmp_path / "machine.txt").write_text("GPU 0: NVIDIA H100 80GB HBM3\namp=\"auto\" on cuda picks: bf16\n")
    (tmp_path / "stages.tsv").write_text("quick\t1\t201\t240\n")
    write_json(tmp_path / "quick" / "summary.json", {"parameters": {}, "chapters": [
        {"chapter": "00_toolkit", "ok": True, "seconds": 20.25, "error": "", "peak_gpu_mb": 1024.0,
         "precision": "bf16"},
        {"chapter": "01_lstm_gates", "ok": False, "seconds": 33.0,
         "error": "RuntimeError: CUDA error | device-side assert (full log: x.log)"},
        {"chapter": "02_q_learning", "ok": True, "seconds": 40.0, "error": ""},
    ]})
    text, ok = gpu_summary.render(tmp_path, CHAPTERS)
    assert not ok
    assert "NVIDIA H100 80GB HBM3" in text
    assert "Stage `quick` (quick/): FAILED (exit status 1) after 201 s (budget 240 s)." in text
    assert "| 00_toolkit | ok | 20.25 | bf16 | 1024 | – |" in text
    assert "| 01_lstm_gates | FAILED | 33 | – | – | RuntimeError: CUDA error \\| device-side assert" in text
    assert "Stage `full` (full/): not run." in text
    assert "No training run" not in text  # nothing is tabulated for a stage that never started
    assert text.rstrip().endswith("At least one stage failed, timed out or did not run.")


def test_report_of_a_stage_that_timed_out_reads_notebooks_and_fit_logs(tmp_path):
    (tmp_path / "stages.tsv").write_text("quick\t0\t150\t240\nfull\t124\t271\t270\n")
    write_json(tmp_path / "quick" / "summary.json", {"chapters": [
        {"chapter": c, "ok": True, "seconds": 10.0, "error": ""} for c in CHAPTERS]})
    full = tmp_path / "full"
    # 00 finished (papermill's metadata), 01 was running when the stage ended, 02 never started.
    write_json(full / "00_toolkit.ipynb", {"metadata": {"papermill": {
        "end_time": "2025-01-01T00:01:00", "exception": None, "duration": 61.44}}, "cells": []})
    write_json(full / "01_lstm_gates.ipynb", {"metadata": {"papermill": {"end_time": None}}, "cells": []})
    (full / "01_lstm_gates.source.ipynb").write_text("{}")
    lines = [json.dumps(fit("vae", 200, 4.0)), json.dumps(fit("gan", 120, 20.0, "fp16", 2048.0))]
    (full / "00_toolkit.fits.jsonl").write_text("\n".join(lines) + "\n")
    (full / "01_lstm_gates.fits.jsonl").write_text(json.dumps(fit("convlstm", 37, 20.0)) + '\n{"desc": "tor')
    text, ok = gpu_summary.render(tmp_path, CHAPTERS)
    assert not ok
    assert "(machine.txt missing" in text
    assert "Stage `quick` (quick/): ok in 150 s (budget 240 s)." in text
    assert "Stage `full` (full/): TIMED OUT after 271 s (budget 270 s)." in text
    assert "No `summary.json`" in text
    assert "| 00_toolkit | ok | 61.4 | bf16, fp16 | 2048 | – |" in text
    assert "| 01_lstm_gates | not finished | – | bf16 | 512 | – |" in text
    assert "| 02_q_learning | not started | – | – | – | – |" in text
    assert "| 00_toolkit | vae | 200 | 4 | 50 | bf16 | 512 |" in text
    assert "| 00_toolkit | gan | 120 | 20 | 6 | fp16 | 2048 |" in text
    assert "| 01_lstm_gates | convlstm | 37 | 20 | 1.85 | bf16 | 512 |" in text  # the torn line is skipped
    assert text.index("| vae |") < text.index("| gan |") < text.index("| convlstm |")


def test_report_all_ok_uses_summary_fits_when_the_log_is_gone(tmp_path):
    (tmp_path / "machine.txt").write_text("GPU 0: X\n")
    (tmp_path / "stages.tsv").write_text("quick\t0\t100\t240\nfull\t0\t200\t270\n")
    write_json(tmp_path / "quick" / "summary.json", {"chapters": [
        {"chapter": c, "ok": True, "seconds": 5.0, "error": ""} for c in CHAPTERS]})
    write_json(tmp_path / "full" / "summary.json", {"chapters": [
        {"chapter": c, "ok": True, "seconds": 30.0, "error": "", "peak_gpu_mb": 700.0, "precision": "bf16",
         "fits": [fit(f"{c} fit", 200, 8.0, peak=700.0)]} for c in CHAPTERS]})
    text, ok = gpu_summary.render(tmp_path, CHAPTERS)
    assert ok and text.rstrip().endswith("All stages passed.")
    for c in CHAPTERS:
        assert f"| {c} | {c} fit | 200 | 8 | 25 | bf16 | 700 |" in text


def test_stage_status_names_each_ending():
    assert gpu_summary.stage_status(None) == "not run"
    assert gpu_summary.stage_status({"rc": 0, "seconds": 9, "budget": 240}) == "ok in 9 s (budget 240 s)"
    for rc, word in ((124, "TIMED OUT"), (137, "TIMED OUT"), (130, "INTERRUPTED"), (2, "FAILED (exit status 2)")):
        assert gpu_summary.stage_status({"rc": rc, "seconds": 9, "budget": 240}).startswith(word)


def test_chapter_states_without_a_summary(tmp_path):
    (tmp_path / "00_toolkit.fits.jsonl").write_text(json.dumps(fit("vae", 3, 1.0)) + "\n")  # no notebook yet
    write_json(tmp_path / "01_lstm_gates.ipynb", {"metadata": {"papermill": {
        "end_time": "2025-01-01T00:01:00", "exception": True, "duration": 3.0}}})
    (tmp_path / "02_q_learning.log").write_text("starting\n")
    rows = gpu_summary.chapter_rows(tmp_path, CHAPTERS)
    assert [(r["status"], r["seconds"]) for r in rows] == [("not finished", None), ("FAILED", 3.0),
                                                          ("not finished", None)]
    write_json(tmp_path / "summary.json", {"chapters": [{"chapter": "01_lstm_gates", "ok": True, "seconds": 4}]})
    rows = gpu_summary.chapter_rows(tmp_path, CHAPTERS)
    assert [r["status"] for r in rows] == ["not run", "ok", "not run"]


def test_main_writes_summary_md_and_lists_chapters(tmp_path, capsys):
    assert gpu_summary.main([str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "not run" in text and text == capsys.readouterr().out
    assert gpu_summary.main(["--chapters"]) == 0
    assert capsys.readouterr().out.split() == toc_stems()
