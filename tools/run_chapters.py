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

_TOOLS = str(Path(__file__).resolve().parent)
if _TOOLS not in sys.path:  # loaded by its file path (as the tests do) rather than run as a script
    sys.path.insert(0, _TOOLS)

from book_common import PROVENANCE, ROOT, toc_chapters  # noqa: E402

# Per-chapter wall-time budget of the quick profile on a 2-core CPU in fp32 (seconds): five minutes,
# with two chapters side by side at one thread each, as `make book` runs them.
QUICK_BUDGET = {"default": 300}
DEFAULT_OUT = ROOT / "_build" / "executed"


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


def cap_env(steps: int | None, items: int | None, seconds: float | None) -> dict:
    """The environment that caps a run's work (read by ``animlib.runtime.work_cap``)."""
    env = {}
    if steps is not None:
        env["ANIMLIB_CAP_STEPS"] = str(steps)
    if items is not None:
        env["ANIMLIB_CAP_ITEMS"] = str(items)
    if seconds is not None:
        env["ANIMLIB_CAP_SECONDS"] = f"{seconds:g}"
    return env


def execute(chapter: Path, out_dir: Path, params: dict, timeout: int, threads: int | None,
            extra_env: dict | None = None) -> tuple[bool, float, str]:
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
    env.update(extra_env or {})
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


def read_fits(path: Path) -> list[dict]:
    """The training runs a chapter logged (``ANIMLIB_FIT_LOG``: one JSON object a line)."""
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _summary_table(rows: list, caps: dict, wall: float, jobs: int) -> str:
    """The run's table (Markdown): per chapter its status and time, and the key metrics or, under a
    work cap, the memory and the speed of every training run."""
    if caps:  # a rehearsal or a timed check: the numbers mean nothing, the shapes, memory and speed do
        lines = ["| chapter | status | wall time (s) | peak memory (MiB) | peak GPU memory (MiB) | training runs |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            fits = ", ".join(f"{f['desc']} {f['steps']} steps {fmt(f['steps_per_s'])}/s {f['precision']}"
                             for f in r["fits"])
            lines.append(f"| {r['chapter']} | {'ok' if r['ok'] else 'FAILED'} | {r['seconds']} | "
                         f"{fmt(r['peak_rss_mb'])} | {fmt(r['peak_gpu_mb'])} | {fits or '-'} |")
    else:
        lines = ["| chapter | status | wall time (s) | budget (s) | key metrics |", "|---|---|---|---|---|"]
        for r in rows:
            over = " (over budget)" if r["budget"] and r["seconds"] > r["budget"] else ""
            mets = ", ".join(f"{k}={fmt(v)}" for k, v in r["metrics"].items() if isinstance(v, (int, float, str)))
            lines.append(f"| {r['chapter']} | {'ok' if r['ok'] else 'FAILED'} | {r['seconds']}{over} | "
                         f"{r['budget'] or '-'} | {mets} |")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **total** (sum; wall {wall:.1f} s with {jobs} job(s)) | | {total:.1f} | | |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", type=Path, help="chapter .md files (default: all, in _toc.yml order)")
    ap.add_argument("--profile", default="quick", choices=["quick", "full"])
    ap.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:1, mps (default: cpu)")
    ap.add_argument("--data-root", default=None, help="prepared real data (see data_scripts/); default synthetic")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="any other papermill parameter, e.g. -p out_dir outputs/run2")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="executed notebooks go here (and, when not "
                    "the default, each chapter's out_dir: <out>/outputs/<chapter>)")
    ap.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    ap.add_argument("--jobs", type=int, default=1, help="chapters executed side by side (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads per chapter kernel (OMP_NUM_THREADS); default: the library's choice")
    ap.add_argument("--rehearse", action="store_true",
                    help="the full profile's shapes, widths and code paths with capped work: every training run "
                         "stops after --cap-steps steps, every evaluation holds --cap-items items, and chapters that "
                         "take data read small fake folders in the data scripts' formats (unless --data-root)")
    ap.add_argument("--cap-steps", type=int, default=None, help="steps per training run (--rehearse: 1)")
    ap.add_argument("--cap-items", type=int, default=None, help="items per batch, evaluation or generated set (--rehearse: 4)")
    ap.add_argument("--cap-seconds", type=float, default=None, help="seconds per training run (default: no limit)")
    ap.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.rehearse:
        args.profile = "full"
        args.cap_steps = 1 if args.cap_steps is None else args.cap_steps
        args.cap_items = 4 if args.cap_items is None else args.cap_items
    caps = cap_env(args.cap_steps, args.cap_items, args.cap_seconds)

    chapters = [c.resolve() for c in args.chapters] or toc_chapters()
    missing = [str(c) for c in chapters if not c.exists()]
    if missing:
        ap.error(f"no such chapter: {', '.join(missing)}")
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
    fake_root = args.out / "fake_data" if args.rehearse and args.data_root is None else None

    def chapter_params(ch: Path) -> dict:
        params = dict(base)
        if fake_root is not None:
            from animlib.data.fake_prepared import CHAPTER_DATA_ROOT

            sub = CHAPTER_DATA_ROOT.get(ch.stem)
            if sub is not None:
                params["data_root"] = str(fake_root / sub)
        if "out_dir" not in params and (caps or args.out.resolve() != DEFAULT_OUT):
            # A rehearsal, a timed check or a run into another folder keeps its metrics.json beside its
            # notebooks, never over the book's outputs/<chapter>/metrics.json.
            params["out_dir"] = str(args.out / "outputs" / ch.stem)
        return params

    if args.dry_run:
        print(f"would execute {len(chapters)} chapter(s) into {args.out}, {args.jobs} at a time"
              + (f"; fake data in the data scripts' formats written to {fake_root}" if fake_root else ""))
        print(f"  environment: {' '.join(f'{k}={v}' for k, v in caps.items()) or '(no work cap)'}")
        for ch in chapters:
            print(f"  {ch.stem}: {json.dumps(chapter_params(ch), sort_keys=True)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if fake_root is not None:
        from animlib.data.fake_prepared import write_fake_data_root

        write_fake_data_root(fake_root, seed=0)

    print(f"executing {len(chapters)} chapter(s) with {base}, {args.jobs} at a time"
          + (f", {args.threads} thread(s) each" if args.threads else "")
          + (f", work capped: {caps}" if caps else ""), flush=True)

    def one(ch: Path) -> dict:
        params = chapter_params(ch)
        fit_log = args.out / f"{ch.stem}.fits.jsonl"
        fit_log.unlink(missing_ok=True)
        ok, secs, err = execute(ch, args.out, params, args.timeout, args.threads,
                                {**caps, "ANIMLIB_FIT_LOG": str(fit_log)})
        metrics = read_metrics(ch.stem, params) if ok else {}
        budget = QUICK_BUDGET.get(ch.stem, QUICK_BUDGET["default"]) if args.profile == "quick" and not caps else None
        status = "ok" if ok else f"FAILED: {err}"
        print(f"    {ch.stem}: {status} in {secs:.1f} s", flush=True)
        return {"chapter": ch.stem, "ok": ok, "seconds": round(secs, 1), "budget": budget, "error": err,
                "peak_rss_mb": metrics.get("peak_rss_mb"), "peak_gpu_mb": metrics.get("peak_gpu_mb"),
                "precision": metrics.get("precision"), "fits": read_fits(fit_log),
                "metrics": {k: v for k, v in metrics.items() if k not in PROVENANCE}}

    t_all = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(one, chapters))  # results in table-of-contents order
    wall = time.perf_counter() - t_all

    table = _summary_table(rows, caps, wall, args.jobs)
    kind = " rehearsal" if args.rehearse else ""
    print(f"\nChapter execution{kind} (papermill, profile={args.profile}, device={args.device}"
          + (f", {caps}" if caps else "") + f"):\n{table}")
    (args.out / "summary.md").write_text(table + "\n")
    (args.out / "summary.json").write_text(json.dumps({"parameters": base, "work_cap": caps, "chapters": rows},
                                                      indent=2))
    failed = [r["chapter"] for r in rows if not r["ok"]]
    if failed:
        print(f"\n{len(failed)} chapter(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
