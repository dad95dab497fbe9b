#!/usr/bin/env python3
"""Execute the book's chapters with papermill, once each, and summarise wall times and metrics.

Examples (from the repository root)::

    python tools/run_chapters.py                                  # every chapter, quick profile, CPU
    python tools/run_chapters.py --profile full --device cuda --data-root /data
    python tools/run_chapters.py chapters/05_vae.md -p profile full -p device cuda

Each chapter (a jupytext MyST ``.md``) is converted to a notebook, its ``parameters`` cell is
overridden by papermill, and the executed notebook is written to ``<out>/<chapter>.ipynb``. The
chapter writes ``outputs/<chapter>/metrics.json`` (or the ``out_dir`` you pass). At the end a table
of wall times and key metrics is printed and saved as ``<out>/summary.md`` and ``summary.json``.
The exit status is non-zero if any chapter failed; the others still run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Per-chapter wall-time budgets of the quick profile on a 2-core CPU (seconds).
QUICK_BUDGET = {"default": 180, "03_gram_style": 300, "04_relative_depth": 300, "06_gan": 300}


def toc_chapters() -> list[Path]:
    """Chapters in the order the table of contents lists them."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return [ROOT / f"{f}.md" for f in files if f.startswith("chapters/")]


def parse_value(text: str):
    """papermill-style parameter values: JSON when it parses (numbers, null, true), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def execute(chapter: Path, out_dir: Path, params: dict, timeout: int) -> tuple[bool, float, str]:
    import jupytext
    import nbformat
    import papermill as pm

    nb = jupytext.read(chapter)
    src = out_dir / f"{chapter.stem}.source.ipynb"
    nbformat.write(nb, src)
    dest = out_dir / f"{chapter.stem}.ipynb"
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(src), str(dest), parameters=params, kernel_name="python3", cwd=str(ROOT),
            progress_bar=False, execution_timeout=timeout, request_save_on_cell_execute=False,
        )
        ok, err = True, ""
    except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
        ok, err = False, str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    finally:
        src.unlink(missing_ok=True)
    return ok, time.perf_counter() - t0, err


def read_metrics(stem: str, params: dict) -> dict:
    out = Path(params.get("out_dir") or ROOT / "outputs" / stem)
    if not out.is_absolute():
        out = ROOT / out
    f = out / "metrics.json"
    return json.loads(f.read_text()) if f.exists() else {}


PROVENANCE = {"chapter", "profile", "device", "seed", "seconds", "git_commit", "python", "torch", "animlib",
              "pretrained_weights_sha256"}


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", type=Path, help="chapter .md files (default: all, in _toc.yml order)")
    ap.add_argument("--profile", default="quick", choices=["quick", "full"])
    ap.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:1, mps (default: cpu)")
    ap.add_argument("--data-root", default=None, help="prepared real data (see data_scripts/); default synthetic")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="any other papermill parameter, e.g. -p out_dir outputs/run2")
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "executed", help="executed notebooks go here")
    ap.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    args = ap.parse_args(argv)

    chapters = [c.resolve() for c in args.chapters] or toc_chapters()
    missing = [str(c) for c in chapters if not c.exists()]
    if missing:
        ap.error(f"no such chapter: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    base = {"profile": args.profile, "device": args.device}
    if args.data_root is not None:
        base["data_root"] = args.data_root
    if args.seed is not None:
        base["seed"] = args.seed
    for name, value in args.parameter:
        base[name] = parse_value(value)

    rows = []
    for ch in chapters:
        print(f"--> executing {ch.relative_to(ROOT) if ch.is_relative_to(ROOT) else ch} with {base}", flush=True)
        ok, secs, err = execute(ch, args.out, dict(base), args.timeout)
        metrics = read_metrics(ch.stem, base) if ok else {}
        budget = QUICK_BUDGET.get(ch.stem, QUICK_BUDGET["default"]) if args.profile == "quick" else None
        rows.append({"chapter": ch.stem, "ok": ok, "seconds": round(secs, 1), "budget": budget, "error": err,
                     "metrics": {k: v for k, v in metrics.items() if k not in PROVENANCE}})
        status = "ok" if ok else f"FAILED: {err}"
        print(f"    {ch.stem}: {status} in {secs:.1f} s", flush=True)

    lines = ["| chapter | status | wall time (s) | budget (s) | key metrics |", "|---|---|---|---|---|"]
    for r in rows:
        over = " (over budget)" if r["budget"] and r["seconds"] > r["budget"] else ""
        mets = ", ".join(f"{k}={fmt(v)}" for k, v in r["metrics"].items() if isinstance(v, (int, float, str)))
        lines.append(f"| {r['chapter']} | {'ok' if r['ok'] else 'FAILED'} | {r['seconds']}{over} | "
                     f"{r['budget'] or '-'} | {mets} |")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **total** | | {total:.1f} | | |")
    table = "\n".join(lines)
    print(f"\nChapter execution (papermill, profile={args.profile}, device={args.device}):\n{table}")
    (args.out / "summary.md").write_text(table + "\n")
    (args.out / "summary.json").write_text(json.dumps({"parameters": base, "chapters": rows}, indent=2))
    failed = [r["chapter"] for r in rows if not r["ok"]]
    if failed:
        print(f"\n{len(failed)} chapter(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
