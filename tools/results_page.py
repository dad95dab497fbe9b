#!/usr/bin/env python3
"""The book's Results page: every chapter's headline measure against its baseline, from its metrics.json.

Examples (from the repository root)::

    python tools/results_page.py                          # this checkout's run, as MyST Markdown on stdout
    python tools/results_page.py --out results.md         # the same, into a file
    python tools/results_page.py --compare runs/quick runs/full --labels "quick, CPU" "full, GPU"

Each chapter writes ``outputs/<chapter>/metrics.json`` (its measured numbers plus provenance: profile,
device, wall seconds, git commit, library versions, the CPU's kernel set and bf16 probe), and
``tools/run_chapters.py`` writes ``_build/executed/summary.json`` (which chapters ran, whether they
succeeded, the notebook's wall time, the measured numbers without provenance). This module reads both,
checks that a metrics.json belongs to the run the summary describes (same numbers, or same settings),
and renders one table of headline measures (``HEADLINES``: a measure, the baseline the chapter compares
it with, which direction is better) with a "held" column computed from the two numbers, and one table of
provenance. A chapter without numbers is listed as "not run"; a missing number shows as "—".

``tools/build_book.py`` calls it with ``--stage``: the page is written to ``<stage>/book/results.md`` and
added to the staged ``_toc.yml`` under the "Reference" part. The source tree has no such page, so
``jupyter-book build .`` on the sources is unaffected.

``--compare RUN_A RUN_B`` sets two runs side by side (value A, value B, difference B - A) for every
headline measure and every measured number. A RUN is a ``summary.json``, a folder holding one (such as
``_build/executed``), a folder of chapter outputs (``outputs/``, one ``<chapter>/metrics.json`` each), or
a folder holding ``_build/executed`` and/or ``outputs`` (a copy of another checkout's results).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

_TOOLS = str(Path(__file__).resolve().parent)
if _TOOLS not in sys.path:  # loaded by its file path (as the tests do) rather than run as a script
    sys.path.insert(0, _TOOLS)

from book_common import PROVENANCE, ROOT, read_json, toc_chapters  # noqa: E402

DASH = "—"


class Headline(NamedTuple):
    """A chapter's headline measure and the baseline it is compared with.

    ``better`` is ``"lower"`` or ``"higher"``. The claim holds when ``metric`` beats ``factor * baseline``
    in that direction: strictly for ``factor == 1`` ("beats the baseline"), inclusively otherwise ("at
    least 80 % of the baseline", ``factor=0.8``; "at least twice chance", ``factor=2``).
    """

    metric: str
    baseline: str
    better: str
    label: str
    factor: float = 1.0


# One entry per chapter, keyed by the chapter's file name; every key is one the chapter writes with
# run.write_metrics (tests/test_results_page.py checks each key against the chapter's source).
HEADLINES: dict[str, tuple[Headline, ...]] = {
    "00_toolkit": (
        Headline("next_frame_mse", "copy_last_mse", "lower", "next-frame MSE against copying the last frame"),
        Headline("rollout_mse", "static_rollout_mse", "lower", "6-frame rollout MSE against a still frame"),
    ),
    "01_lstm_gates": (
        Headline("motion_mse", "static_motion_mse", "lower", "error inside the moving band against no motion"),
    ),
    "02_q_learning": (
        Headline("drqn_mean_return", "best_constant_action_return", "higher",
                 "DRQN return against the best constant action"),
        Headline("action_accuracy", "chance_action_accuracy", "higher",
                 "action accuracy against chance", 2.0),
    ),
    "03_gram_style": (
        Headline("style_distance_stylized", "style_distance_color_matched", "lower",
                 "style distance of the result against colour matching"),
    ),
    "04_relative_depth": (
        Headline("depth_ordinal_accuracy", "heuristic_ordinal_accuracy", "higher",
                 "ordinal depth accuracy against \"lower is nearer\""),
    ),
    "05_vae": (
        Headline("vae_test_bce", "mean_image_test_bce", "lower", "test reconstruction BCE against the mean image"),
    ),
    "06_gan": (
        Headline("vaegan_sharpness", "noise_control_sharpness", "higher",
                 "VAE-GAN sharpness against the VAE plus matched noise"),
        Headline("vaegan_video_sharpness", "noise_control_video_sharpness", "higher",
                 "VAE-GAN video sharpness against the VAE plus matched noise"),
        Headline("vaegan_feature_dist", "noise_control_feature_dist", "lower",
                 "VAE-GAN feature distance to the originals against the VAE plus matched noise"),
        Headline("real_face_identity_error_vaegan", "real_face_driver_identity_error_vaegan", "lower",
                 "real faces: VAE-GAN identity drift against copying the reconstructed driver"),
    ),
    "07_gru_video_autoencoder": (
        Headline("gru_ae_test_mse", "mean_frame_baseline_test_mse", "lower",
                 "GRU-AE test MSE against the mean frame"),
        Headline("classifier_accuracy_reconstructions", "classifier_accuracy_inputs", "higher",
                 "action accuracy on reconstructions against inputs", 0.8),
        Headline("anomaly_auc", "per_frame_ae_anomaly_auc", "higher",
                 "anomaly AUC of the surprise score against the per-frame AE"),
    ),
    "08_face_reenactment": (
        Headline("pose_error", "copy_source_pose_error", "lower", "pose error against copying the source"),
        Headline("identity_error", "copy_driver_identity_error", "lower",
                 "identity error against copying the driver"),
    ),
}

# ----------------------------------------------------------------------------------------------------------
# Reading runs


@dataclass
class ChapterResult:
    """One chapter of one run: ``status`` is ``"ok"``, ``"failed"`` or ``"not run"``."""

    chapter: str
    status: str = "not run"
    metrics: dict = field(default_factory=dict)  # measured numbers, plus provenance where known
    wall_seconds: float | None = None
    error: str = ""
    note: str = ""


@dataclass
class Run:
    label: str
    chapters: dict[str, ChapterResult]
    parameters: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def get(self, chapter: str) -> ChapterResult:
        return self.chapters.get(chapter) or ChapterResult(chapter)


def _read_json(path: Path) -> dict | None:
    data = read_json(path)
    return data if isinstance(data, dict) else None


def read_outputs(outputs: Path) -> dict[str, dict]:
    """Every ``metrics.json`` in ``outputs`` (``<chapter>/metrics.json``, or one at the top), by chapter."""
    found: dict[str, dict] = {}
    if not outputs.is_dir():
        return found
    for f in sorted([outputs / "metrics.json", *outputs.glob("*/metrics.json")]):
        record = _read_json(f) if f.is_file() else None
        if record is not None:
            name = str(record.get("chapter") or (f.parent.name if f.parent != outputs else ""))
            if name:
                found[name] = record
    return found


def _same_numbers(record: dict, measured: dict) -> bool:
    """Does ``record`` (a metrics.json) hold the numbers a summary row lists (same run)?"""
    return bool(measured) and all(k in record and record[k] == v for k, v in measured.items())


def _same_settings(record: dict, params: dict) -> bool:
    """Was ``record`` written with the profile and device of the summary's run (a re-execution of it)?"""
    if "profile" not in params or record.get("profile") != params["profile"]:
        return False
    wanted, got = str(params.get("device", "cpu")), str(record.get("device", ""))
    return wanted == "auto" or got.split(":")[0] == wanted.split(":")[0]


def _summary_outputs(summary: dict) -> Path:
    out_dir = (summary.get("parameters") or {}).get("out_dir")
    if not out_dir:
        return ROOT / "outputs"
    p = Path(out_dir)
    return p if p.is_absolute() else ROOT / p


def load_run(outputs: Path | None = None, summary: Path | None = None, label: str = "",
             chapters: list[str] | None = None) -> Run:
    """One run from a folder of chapter outputs and/or a runner summary.

    With a summary, its rows decide which chapters ran, whether they succeeded and what they measured;
    a chapter's metrics.json supplies the provenance only if it holds the summary's numbers or was
    written with the run's profile and device (``nbval`` re-executing the notebook rewrites it; a
    metrics.json from a run with other settings is ignored). Without one, every metrics.json found counts as a successful run.
    ``outputs=None`` with a summary: the folder the summary's run wrote to (``outputs/`` unless
    ``out_dir`` was passed).
    """
    rows: dict[str, dict] = {}
    params: dict = {}
    sources: list[str] = []
    summ = _read_json(summary) if summary is not None and summary.is_file() else None
    if summ is not None:
        params = dict(summ.get("parameters") or {})
        rows = {str(r.get("chapter")): r for r in summ.get("chapters") or [] if isinstance(r, dict)}
        sources.append(str(summary))
        if outputs is None:
            outputs = _summary_outputs(summ)
    records = read_outputs(outputs) if outputs is not None else {}
    if records:
        sources.append(str(outputs))

    if chapters is not None:
        order = list(chapters)
    else:  # table-of-contents order (none without a _toc.yml: then the order the run lists them in)
        order = [c.stem for c in toc_chapters()] if (ROOT / "_toc.yml").exists() else []
    order += [c for c in [*rows, *records] if c not in order]
    result: dict[str, ChapterResult] = {}
    for name in order:
        row, record = rows.get(name), records.get(name)
        ch = ChapterResult(name)
        if row is not None:
            ch.wall_seconds = row.get("seconds")
            if not row.get("ok"):
                ch.status, ch.error = "failed", str(row.get("error") or "")
            else:
                ch.status = "ok"
                measured = dict(row.get("metrics") or {})
                if record is not None and (_same_numbers(record, measured) or _same_settings(record, params)):
                    ch.metrics = {**record, **measured}  # the numbers of the notebooks the book shows
                else:
                    ch.metrics = {**measured, **{k: params[k] for k in ("profile", "device") if k in params}}
                    if record is not None:
                        ch.note = "its metrics.json is from another run; provenance not shown"
        elif record is not None:
            ch.status, ch.metrics, ch.wall_seconds = "ok", dict(record), record.get("seconds")
        result[name] = ch
    return Run(label=label, chapters=result, parameters=params, sources=sources)


def locate(path: Path) -> tuple[Path | None, Path | None]:
    """``(summary.json, outputs folder)`` for a RUN argument of ``--compare`` (either may be None)."""
    if path.is_file():
        return path, None
    if not path.is_dir():
        raise FileNotFoundError(f"no such run: {path} (a summary.json, or a folder of outputs or results)")
    summary = next((p for p in (path / "summary.json", path / "executed" / "summary.json",
                                path / "_build" / "executed" / "summary.json") if p.is_file()), None)
    if (path / "metrics.json").is_file() or any(path.glob("*/metrics.json")):
        return summary, path
    if (path / "outputs").is_dir():
        return summary, path / "outputs"
    if summary is None:
        raise FileNotFoundError(f"{path} holds neither a summary.json nor any <chapter>/metrics.json")
    return summary, None


def run_from_path(path: Path, label: str = "") -> Run:
    summary, outputs = locate(path)
    return load_run(outputs=outputs, summary=summary, label=label or str(path))


# ----------------------------------------------------------------------------------------------------------
# Numbers and claims


def number(v) -> float | None:
    """A finite real number, or None (missing, None, a flag, a string, a list, NaN)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def held(h: Headline, metrics: dict) -> bool | None:
    """Whether the headline claim held in these numbers; None when either number is missing."""
    value, base = number(metrics.get(h.metric)), number(metrics.get(h.baseline))
    if value is None or base is None:
        return None
    target = h.factor * base
    if h.better == "lower":
        return value < target if h.factor == 1 else value <= target
    if h.better == "higher":
        return value > target if h.factor == 1 else value >= target
    raise ValueError(f"{h.metric}: better must be 'lower' or 'higher', got {h.better!r}")


def fmt(v) -> str:
    """A value for a table cell: 4 significant digits, yes/no, "—" for None or missing."""
    if v is None:
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (dict, list)):
        return DASH
    return str(v)


def fmt_diff(a, b) -> str:
    x, y = number(a), number(b)
    if x is None or y is None:
        if a is None or b is None or isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
            return DASH
        return "same" if a == b else "differs"
    d = y - x
    text = f"{d:+.4g}"
    if x != 0:
        text += f" ({d / abs(x):+.1%})"
    return text


def cell(text) -> str:
    """Text for a MyST table cell: one line, with the characters Markdown and MyST read escaped."""
    s = " ".join(str(text).split())
    out = []
    for ch in s:
        out.append("\\" + ch if ch in "\\`*_{}[]<>|$#~^" else ch)
    return "".join(out)


def claim_text(h: Headline) -> str:
    if h.factor == 1:
        return f"{h.better} is better"
    bound = "at least" if h.better == "higher" else "at most"
    return f"{bound} {h.factor:g} × baseline"


def held_text(ok: bool | None) -> str:
    return DASH if ok is None else ("yes" if ok else "**no**")


def precision(metrics: dict) -> str:
    """The precision the chapter's ``amp="auto"`` training used, as far as metrics.json records it."""
    if isinstance(metrics.get("precision"), str):  # recorded by ChapterRun.write_metrics
        return metrics["precision"]
    if isinstance(metrics.get("amp"), str):
        return metrics["amp"]
    device = str(metrics.get("device") or "")
    if device.startswith("cpu"):
        if "cpu_bf16" not in metrics:
            return DASH
        probe = metrics["cpu_bf16"]
        if not isinstance(probe, dict):
            return "fp32 (bf16 not probed)"
        speed = number(probe.get("speedup"))
        speed_text = "" if speed is None else f", {speed:.2g}× fp32's speed"
        if probe.get("fast"):
            return f"bf16 (native{speed_text})"
        return f"fp32 (bf16 {'native but slow' if probe.get('native') else 'emulated'}{speed_text})"
    if device.startswith("mps"):
        return "fp32"
    if device.startswith("cuda"):
        return "bf16 or fp16 (not recorded)"
    return DASH


def cpu_kernels(metrics: dict) -> str:
    cap = metrics.get("cpu_capability")
    isa = metrics.get("onednn_max_cpu_isa")
    if cap is None and isa is None:
        return DASH
    return f"{cap or DASH}" + (f", oneDNN ≤ {isa}" if isa else "")


def chapter_title(name: str, chapters_dir: Path = ROOT / "chapters") -> str:
    """The chapter's first ``# `` heading, else its file name."""
    src = chapters_dir / f"{name}.md"
    if src.is_file():
        for line in src.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return name


def chapter_cell(name: str, links: bool) -> str:
    return f"{{doc}}`/chapters/{name}`" if links else cell(chapter_title(name))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _status(ch: ChapterResult) -> str:
    if ch.status == "failed":
        return "**failed**" + (f": {cell(ch.error)}" if ch.error else "")
    return cell(ch.status)


# ----------------------------------------------------------------------------------------------------------
# Pages


def headline_rows(run: Run, links: bool) -> list[list[str]]:
    rows = []
    for name, ch in run.chapters.items():
        heads = HEADLINES.get(name, ())
        first = chapter_cell(name, links)
        if ch.status != "ok":
            rows.append([first, _status(ch), DASH, DASH, DASH, DASH, DASH])
            continue
        if not heads:
            rows.append([first, "no headline measure defined", DASH, DASH, DASH, DASH, DASH])
            continue
        for i, h in enumerate(heads):
            rows.append([first if i == 0 else "", cell(h.label) + f" (`{h.metric}`)", fmt(ch.metrics.get(h.metric)),
                         f"`{h.baseline}`", fmt(ch.metrics.get(h.baseline)), cell(claim_text(h)),
                         held_text(held(h, ch.metrics))])
    return rows


def provenance_rows(run: Run, links: bool) -> list[list[str]]:
    rows = []
    for name, ch in run.chapters.items():
        m = ch.metrics
        rows.append([chapter_cell(name, links), _status(ch) + (f" ({cell(ch.note)})" if ch.note else ""),
                     cell(fmt(m.get("profile"))), cell(fmt(m.get("device"))), cell(cpu_kernels(m)),
                     cell(precision(m)), fmt(ch.wall_seconds), cell(fmt(m.get("torch"))),
                     cell(fmt(m.get("animlib"))), cell(fmt(m.get("git_commit")))])
    return rows


def render_page(run: Run, links: bool = False) -> str:
    """The Results page for one run, as MyST Markdown (``links``: chapter cells link to the chapters)."""
    ok = [c for c in run.chapters.values() if c.status == "ok"]
    verdicts = [held(h, c.metrics) for c in ok for h in HEADLINES.get(c.chapter, ())]
    n_held = sum(v is True for v in verdicts)
    n_known = sum(v is not None for v in verdicts)
    not_run = [c.chapter for c in run.chapters.values() if c.status != "ok"]
    lines = [
        "(results)=",
        "# Results of this build",
        "",
        "Every chapter measures its method against a simple baseline and writes the numbers, with how "
        "they were obtained, to `outputs/<chapter>/metrics.json`. This page is generated from those files "
        "when the book is built (by `tools/results_page.py`), so it always shows the run the chapters on "
        "these pages come from. \"Held\" is computed from the two numbers in each row; a number the run "
        "did not produce shows as a dash (—).",
        "",
        f"In this run {n_held} of {n_known} headline claims held"
        + (f"; {len(not_run)} chapter(s) did not run or failed." if not_run else "."),
        "",
        "## Headline measures",
        "",
        *_table(["chapter", "measure", "value", "baseline", "baseline value", "claim", "held"],
                headline_rows(run, links)),
        "",
        "## How each chapter ran",
        "",
        "Profile and device are the chapter's parameters; *CPU kernels* is the ATen kernel set in use "
        "(and a oneDNN cap if one was set); *precision* is what `amp=\"auto\"` chose, from the CPU's bf16 "
        "probe; wall time is the notebook's execution time as the runner measured it (for a chapter run "
        "on its own, the time the chapter recorded).",
        "",
        *_table(["chapter", "status", "profile", "device", "CPU kernels", "precision", "wall time (s)",
                 "torch", "animlib", "commit"], provenance_rows(run, links)),
        "",
        "To set two runs side by side (a quick CPU run and a full GPU run, say): "
        "`python tools/results_page.py --compare RUN_A RUN_B`, each RUN a `summary.json` or a folder of "
        "outputs.",
        "",
    ]
    return "\n".join(lines)


def _run_label(run: Run) -> str:
    profiles = sorted({str(c.metrics.get("profile")) for c in run.chapters.values() if c.metrics.get("profile")})
    devices = sorted({str(c.metrics.get("device")) for c in run.chapters.values() if c.metrics.get("device")})
    return f"{', '.join(profiles) or DASH} on {', '.join(devices) or DASH}"


def render_compare(a: Run, b: Run, links: bool = False) -> str:
    """Two runs side by side: value A, value B and the difference B - A."""
    names = list(a.chapters) + [c for c in b.chapters if c not in a.chapters]
    runs = [["A", cell(a.label), cell(_run_label(a))], ["B", cell(b.label), cell(_run_label(b))]]
    status_rows = []
    for name in names:
        ca, cb = a.get(name), b.get(name)
        status_rows.append([chapter_cell(name, links), _status(ca), _status(cb), fmt(ca.wall_seconds),
                            fmt(cb.wall_seconds), fmt_diff(ca.wall_seconds, cb.wall_seconds)])
    head_rows = []
    for name in names:
        ca, cb = a.get(name), b.get(name)
        for i, h in enumerate(HEADLINES.get(name, ())):
            va, vb = ca.metrics.get(h.metric), cb.metrics.get(h.metric)
            head_rows.append([chapter_cell(name, links) if i == 0 else "", cell(h.label) + f" (`{h.metric}`)",
                              fmt(va), fmt(vb), fmt_diff(va, vb), held_text(held(h, ca.metrics)),
                              held_text(held(h, cb.metrics))])
    every = []
    for name in names:
        ma, mb = a.get(name).metrics, b.get(name).metrics
        keys = [k for k in [*ma, *(k for k in mb if k not in ma)] if k not in PROVENANCE
                and not isinstance(ma.get(k), (dict, list)) and not isinstance(mb.get(k), (dict, list))]
        for i, k in enumerate(keys):
            every.append([chapter_cell(name, links) if i == 0 else "", f"`{k}`", cell(fmt(ma.get(k))),
                          cell(fmt(mb.get(k))), fmt_diff(ma.get(k), mb.get(k))])
    lines = [
        "# Two runs compared",
        "",
        "Differences are B - A (relative to A in brackets). A dash (—) marks a number one of the runs did "
        "not produce.",
        "",
        *_table(["run", "source", "profile and device"], runs),
        "",
        "## Chapters",
        "",
        *_table(["chapter", "status A", "status B", "wall time A (s)", "wall time B (s)", "difference"],
                status_rows),
        "",
        "## Headline measures",
        "",
        *_table(["chapter", "measure", "A", "B", "B - A", "held A", "held B"], head_rows),
        "",
        "## Every measured number",
        "",
        *_table(["chapter", "metric", "A", "B", "B - A"], every),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# The staged book


def add_to_stage(stage: Path, summary: Path | None = None, outputs: Path | None = None,
                 part: str = "Reference") -> Path:
    """Write ``<stage>/book/results.md`` and list it in ``<stage>/_toc.yml`` under the part ``part``."""
    import yaml

    toc_file = stage / "_toc.yml"
    toc = yaml.safe_load(toc_file.read_text())
    run = load_run(outputs=outputs, summary=summary, chapters=[c.stem for c in toc_chapters(stage)])
    page = stage / "book" / "results.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_page(run, links=True), encoding="utf-8")
    entry = {"file": "book/results"}
    parts = toc.setdefault("parts", [])
    target = next((p for p in parts if p.get("caption") == part), None)
    if target is None:
        target = {"caption": part, "numbered": False, "chapters": []}
        parts.append(target)
    if entry not in target.setdefault("chapters", []):
        target["chapters"].append(entry)
    toc_file.write_text(yaml.safe_dump(toc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return page


def _summary_path(p: Path) -> Path:
    return p / "summary.json" if p.is_dir() else p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outputs", type=Path, default=None,
                    help="folder of <chapter>/metrics.json (default: where the summary's run wrote, outputs/)")
    ap.add_argument("--summary", type=Path, default=ROOT / "_build" / "executed",
                    help="the runner's summary.json or the folder holding it (default: _build/executed)")
    ap.add_argument("--stage", type=Path, default=None,
                    help="a staged book: write <stage>/book/results.md and list it in <stage>/_toc.yml")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                    help="set two runs side by side (each a summary.json or a folder of outputs)")
    ap.add_argument("--labels", nargs=2, metavar=("A", "B"), help="names for the two compared runs")
    ap.add_argument("--out", type=Path, default=None, help="write the page here (default: standard output)")
    args = ap.parse_args(argv)
    summary = _summary_path(args.summary)
    if args.outputs is None and not summary.is_file():
        args.outputs = ROOT / "outputs"  # no runner summary: the chapters' default output folders

    if args.compare:
        labels = args.labels or [str(p) for p in args.compare]
        try:
            a, b = (run_from_path(p, label) for p, label in zip(args.compare, labels))
        except FileNotFoundError as e:
            ap.error(str(e))
        text = render_compare(a, b)
    elif args.stage is not None:
        page = add_to_stage(args.stage, summary=summary, outputs=args.outputs)
        print(f"wrote {page} and listed it in {args.stage / '_toc.yml'}")
        return 0
    else:
        text = render_page(load_run(outputs=args.outputs, summary=summary))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
