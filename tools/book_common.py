"""What the book's tools share: the repository root, the chapters in table-of-contents order, the
provenance keys of a chapter's ``metrics.json`` and a forgiving JSON reader.

The tools are scripts (``python tools/<tool>.py``), which puts ``tools/`` on ``sys.path``; a tool
loaded by its file path (the tests do) puts it there itself before importing this module.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What metrics.json records besides the measured numbers: the keys animlib.runtime.ChapterRun.write_metrics
# adds (chapter, profile, device, seed, seconds, git commit, versions, weight hashes, the CPU's kernel set and
# bf16 probe, the precision amp="auto" chose, peak memory, and the work cap of a rehearsal).
PROVENANCE = frozenset({
    "chapter", "profile", "device", "seed", "seconds", "git_commit", "python", "torch", "animlib",
    "pretrained_weights_sha256", "cpu_capability", "onednn_max_cpu_isa", "cpu_bf16", "precision",
    "peak_rss_mb", "peak_gpu_mb", "work_cap",
})


def toc_chapters(root: Path = ROOT) -> list[Path]:
    """The chapters' sources (``<root>/chapters/<name>.md``) in the order ``<root>/_toc.yml`` lists them.

    A chapter's name is the ``.stem`` of its path.
    """
    import yaml

    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if str(node.get("file", "")).startswith("chapters/"):
                files.append(str(node["file"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8")))
    return [root / f"{f}.md" for f in files]


def read_json(path: Path):
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
