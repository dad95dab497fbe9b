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
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Per-chapter wall-time budget of the quick profile on a 2-core CPU in fp32 (seconds): five minutes,
# with two chapters side by side at one thread each, as `make book` runs them.
QUICK_BUDGET = {"default": 300}


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


DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")


def chapter_parameters(chapter: Path) -> dict:
    """The names and default values the chapter's cell tagged ``parameters`` assigns (read with ``ast``)."""
    import ast

    import jupytext

    nb = jupytext.read(chapter)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{chapter}: expected one cell tagged 'parameters', found {len(cells)}")
    names = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names[t.id] = ast.literal_eval(node.value) if isinstance(node.value, ast.Constant) else None
    return names


def check_parameters(chapters: list[Path], params: dict) -> list[str]:
    """Problems with ``params`` for these chapters, before anything runs: unknown names (a typo such as
    ``-p profil full`` would silently run the defaults), and values of ``profile``/``device`` that no
    chapter accepts."""
    problems = []
    for ch in chapters:
        known = chapter_parameters(ch)
        unknown = sorted(set(params) - set(known))
        if unknown:
            problems.append(f"{ch.stem} has no parameter {', '.join(map(repr, unknown))}; its parameters are "
                            f"{', '.join(sorted(known))}")
    if params.get("profile") not in ("quick", "full"):
        problems.append(f"profile must be 'quick' or 'full', got {params.get('profile')!r}")
    device = str(params.get("device", "cpu"))
    if device.split(":")[0] not in DEVICE_TYPES or (":" in device and not device.split(":", 1)[1].isdigit()):
        problems.append(f"device must be one of {', '.join(DEVICE_TYPES)} (or cuda:N), got {device!r}")
    return problems


def execute(chapter: Path, out_dir: Path, params: dict, timeout: int, threads: int | None) -> tuple[bool, float, str]:
    """Run one chapter in its own papermill process (so several can run side by side)."""
    import jupytext
    import nbformat
    import yaml

    nb = jupytext.read(chapter)
    src = out_dir / f"{chapter.stem}.source.ipynb"
    nbformat.write(nb, src)
    dest = out_dir / f"{chapter.stem}.ipynb"
    log = out_dir / f"{chapter.stem}.log"
    env = dict(os.environ)
    if threads:
        # The kernel's BLAS/OpenMP pools; nbval re-executes with the same setting (see the Makefile).
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "papermill", str(src), str(dest), "-y", yaml.safe_dump(params), "-k", "python3",
           "--cwd", str(ROOT), "--no-progress-bar", "--execution-timeout", str(timeout)]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    secs = time.perf_counter() - t0
    src.unlink(missing_ok=True)
    if proc.returncode == 0:
        return True, secs, ""
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    err = next((ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln), lines[-1] if lines else "?")
    return False, secs, f"{err.strip()} (full log: {log})"


def read_metrics(stem: str, params: dict) -> dict:
    out = Path(params.get("out_dir") or ROOT / "outputs" / stem)
    if not out.is_absolute():
        out = ROOT / out
    f = out / "metrics.json"
    return json.loads(f.read_text()) if f.exists() else {}


PROVENANCE = {"chapter", "profile", "device", "seed", "seconds", "git_commit", "python", "torch", "animlib",
              "pretrained_weights_sha256",
              "cpu_capability", "onednn_max_cpu_isa", "cpu_bf16"}


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
    ap.add_argument("--jobs", type=int, default=1, help="chapters executed side by side (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads per chapter kernel (OMP_NUM_THREADS); default: the library's choice")
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
    problems = check_parameters(chapters, base)
    if problems:
        ap.error("; ".join(problems))

    print(f"executing {len(chapters)} chapter(s) with {base}, {args.jobs} at a time"
          + (f", {args.threads} thread(s) each" if args.threads else ""), flush=True)

    def one(ch: Path) -> dict:
        ok, secs, err = execute(ch, args.out, dict(base), args.timeout, args.threads)
        metrics = read_metrics(ch.stem, base) if ok else {}
        budget = QUICK_BUDGET.get(ch.stem, QUICK_BUDGET["default"]) if args.profile == "quick" else None
        status = "ok" if ok else f"FAILED: {err}"
        print(f"    {ch.stem}: {status} in {secs:.1f} s", flush=True)
        return {"chapter": ch.stem, "ok": ok, "seconds": round(secs, 1), "budget": budget, "error": err,
                "metrics": {k: v for k, v in metrics.items() if k not in PROVENANCE}}

    t_all = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(one, chapters))  # results in table-of-contents order
    wall = time.perf_counter() - t_all

    lines = ["| chapter | status | wall time (s) | budget (s) | key metrics |", "|---|---|---|---|---|"]
    for r in rows:
        over = " (over budget)" if r["budget"] and r["seconds"] > r["budget"] else ""
        mets = ", ".join(f"{k}={fmt(v)}" for k, v in r["metrics"].items() if isinstance(v, (int, float, str)))
        lines.append(f"| {r['chapter']} | {'ok' if r['ok'] else 'FAILED'} | {r['seconds']}{over} | "
                     f"{r['budget'] or '-'} | {mets} |")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **total** (sum; wall {wall:.1f} s with {args.jobs} job(s)) | | {total:.1f} | | |")
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
