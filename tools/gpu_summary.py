#!/usr/bin/env python3
"""The report of ``tools/gpu_check.sh``: the machine, then one table per stage, as ``<out>/summary.md``.

    python tools/gpu_summary.py _build/gpu_check            # write and print <out>/summary.md
    python tools/gpu_summary.py --chapters                  # the chapters of _toc.yml (checked to exist)

It reads what the check left in its output folder, and copes with any of it missing (a stage that
timed out writes no ``summary.json``):

- ``machine.txt``: the GPU, driver, Python, PyTorch and the precision ``amp="auto"`` picks;
- ``stages.tsv``: one line per stage, ``name<TAB>exit status<TAB>seconds<TAB>budget seconds``;
- ``<stage>/summary.json``: written by ``tools/run_chapters.py`` when a stage finishes;
- ``<stage>/<chapter>.ipynb``: papermill's record of a chapter (used when ``summary.json`` is missing);
- ``<stage>/<chapter>.fits.jsonl``: one line per ``Trainer.fit`` of a rehearsal (written as it runs,
  so it survives a stage that timed out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_TOOLS = str(Path(__file__).resolve().parent)
if _TOOLS not in sys.path:  # loaded by its file path (as the tests do) rather than run as a script
    sys.path.insert(0, _TOOLS)

from book_common import ROOT, read_json, toc_chapters  # noqa: E402

# name, folder under the output folder, title
STAGES = [
    ("quick", "quick", "Stage 1: every chapter, quick profile, device cuda"),
    ("full", "full", "Stage 2: full profile, every training run capped (rehearsal), device cuda"),
]


def read_fits(path: Path) -> list[dict]:
    """The records of a ``.fits.jsonl`` file; a missing file or a torn last line gives what is readable."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    fits = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            fits.append(rec)
    return fits


def read_stages(path: Path) -> dict[str, dict]:
    """``stages.tsv``: per stage its exit status (``rc``), ``seconds`` and ``budget``."""
    stages: dict[str, dict] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return stages
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 4 or not parts[0]:
            continue
        try:
            stages[parts[0]] = {"rc": int(parts[1]), "seconds": int(parts[2]), "budget": int(parts[3])}
        except ValueError:
            continue
    return stages


def stage_status(info: dict | None) -> str:
    """One phrase for how a stage ended; 124 and 137 are ``timeout``'s codes, 130 an interrupt."""
    if info is None:
        return "not run"
    rc, secs, budget = info["rc"], info["seconds"], info["budget"]
    if rc == 0:
        return f"ok in {secs} s (budget {budget} s)"
    if rc in (124, 137):
        return f"TIMED OUT after {secs} s (budget {budget} s)"
    if rc == 130:
        return f"INTERRUPTED after {secs} s (budget {budget} s)"
    return f"FAILED (exit status {rc}) after {secs} s (budget {budget} s)"


def notebook_status(path: Path) -> tuple[str, float | None]:
    """What papermill's metadata says about a chapter whose stage wrote no summary."""
    if (path.parent / f"{path.stem}.source.ipynb").exists():
        return "not finished", None
    nb = read_json(path)
    if nb is None:
        return ("not finished", None) if (path.parent / f"{path.stem}.log").exists() else ("not started", None)
    pm = nb.get("metadata", {}).get("papermill", {}) if isinstance(nb, dict) else {}
    duration = pm.get("duration")
    duration = round(float(duration), 1) if isinstance(duration, (int, float)) else None
    if pm.get("exception"):
        return "FAILED", duration
    if pm.get("end_time"):
        return "ok", duration
    return "not finished", None


def chapter_rows(folder: Path, chapters: list[str]) -> list[dict]:
    """One row per chapter: from ``summary.json`` when the stage wrote it, else from the notebooks.
    Each row has chapter, status, seconds, peak_gpu_mb, precision, error and fits."""
    summary = read_json(folder / "summary.json")
    recorded = {}
    if isinstance(summary, dict):
        recorded = {r.get("chapter"): r for r in summary.get("chapters", []) if isinstance(r, dict)}
    rows = []
    for ch in list(chapters) + [c for c in recorded if c not in chapters and c]:
        fits = read_fits(folder / f"{ch}.fits.jsonl")
        r = recorded.get(ch)
        if r is not None:
            status = "ok" if r.get("ok") else "FAILED"
            seconds = r.get("seconds")
            peak = r.get("peak_gpu_mb")
            precision = r.get("precision")
            error = r.get("error") or ""
            if not fits and isinstance(r.get("fits"), list):
                fits = [f for f in r["fits"] if isinstance(f, dict)]
        elif recorded:  # the stage finished without this chapter
            status, seconds, peak, precision, error = "not run", None, None, None, ""
        else:
            status, seconds = notebook_status(folder / f"{ch}.ipynb")
            if status == "not started" and fits:  # it trained, so it had started
                status = "not finished"
            peak, precision, error = None, None, ""
        if peak is None:
            peaks = [f["peak_gpu_mb"] for f in fits if isinstance(f.get("peak_gpu_mb"), (int, float))]
            peak = max(peaks) if peaks else None
        if precision is None:
            precision = ", ".join(sorted({str(f["precision"]) for f in fits if f.get("precision")})) or None
        rows.append({"chapter": ch, "status": status, "seconds": seconds, "peak_gpu_mb": peak,
                     "precision": precision, "error": error, "fits": fits})
    return rows


def cell(v, digits: int = 4) -> str:
    """A table cell: ``–`` for nothing, floats to a few significant digits, ``|`` escaped."""
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def chapter_table(rows: list[dict]) -> list[str]:
    lines = ["| chapter | ok | seconds | precision | peak GPU MB | error |", "|---|---|---|---|---|---|"]
    for r in rows:
        err = r["error"] if len(r["error"]) <= 160 else r["error"][:157] + "..."
        lines.append(f"| {r['chapter']} | {r['status']} | {cell(r['seconds'])} | {cell(r['precision'])} | "
                     f"{cell(r['peak_gpu_mb'])} | {cell(err)} |")
    return lines


def fits_table(rows: list[dict]) -> list[str]:
    """One line per ``Trainer.fit`` of every chapter, in the order they ran."""
    lines = ["| chapter | fit | steps | seconds | steps/s | precision | peak GPU MB |",
             "|---|---|---|---|---|---|---|"]
    n = 0
    for r in rows:
        for f in r["fits"]:
            n += 1
            lines.append(f"| {r['chapter']} | {cell(f.get('desc'))} | {cell(f.get('steps'))} | "
                         f"{cell(f.get('seconds'))} | {cell(f.get('steps_per_s'))} | {cell(f.get('precision'))} | "
                         f"{cell(f.get('peak_gpu_mb'))} |")
    return lines if n else []


def render(out: Path, chapters: list[str]) -> tuple[str, bool]:
    """The text of ``summary.md`` and whether every stage finished with status 0."""
    stages = read_stages(out / "stages.tsv")
    parts = ["# GPU check", ""]
    try:
        machine = (out / "machine.txt").read_text().strip()
    except OSError:
        machine = "(machine.txt missing: the machine was not recorded)"
    parts += ["## Machine", "", "```text", machine, "```", ""]
    all_ok = True
    for name, sub, title in STAGES:
        info = stages.get(name)
        status = stage_status(info)
        all_ok = all_ok and info is not None and info["rc"] == 0
        parts += [f"## {title}", "", f"Stage `{name}` ({sub}/): {status}.", ""]
        folder = out / sub
        if info is None and not folder.exists():
            continue
        rows = chapter_rows(folder, chapters)
        if not (folder / "summary.json").exists():
            parts += ["No `summary.json`: the stage did not finish; chapter states below come from the "
                      "executed notebooks.", ""]
        parts += chapter_table(rows) + [""]
        fits = fits_table(rows)
        if fits:
            capped = ", each capped at the rehearsal's limits" if name == "full" else ""
            parts += [f"Training runs (`Trainer.fit`){capped}:", ""] + fits + [""]
        elif name == "full":
            parts += ["No training run was recorded (no `*.fits.jsonl`).", ""]
    parts.append("All stages passed." if all_ok else "At least one stage failed, timed out or did not run.")
    return "\n".join(parts) + "\n", all_ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", type=Path, help="the output folder of tools/gpu_check.sh")
    ap.add_argument("--chapters", action="store_true",
                    help="print the chapters of _toc.yml, one a line; exit 1 if one is missing")
    args = ap.parse_args(argv)
    chapters = [c.stem for c in toc_chapters()]
    if args.chapters:
        missing = [c for c in chapters if not (ROOT / "chapters" / f"{c}.md").exists()]
        print("\n".join(chapters))
        if missing or not chapters:
            print(f"missing chapter files: {', '.join(missing) or 'none listed in _toc.yml'}", file=sys.stderr)
            return 1
        return 0
    if args.out is None:
        ap.error("name the output folder of tools/gpu_check.sh")
    text, _ = render(args.out, chapters)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
