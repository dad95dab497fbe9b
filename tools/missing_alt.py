#!/usr/bin/env python3
"""List the chapter cells whose images reach the book without alt text.

Reads the executed notebooks (``_build/executed/*.ipynb``, written by ``make execute``) and prints,
per chapter, every code cell with an ``image/*`` output that MyST-NB will render as an ``<img>``
without a text alternative: no ``mystnb: image: alt:`` in the cell metadata, and no ``text/html``
rendering beside it (the animlib.viz figures and players carry their alt text in it). Those cells need
an alt text: ``viz.image_grid(..., alt="...")`` for animlib figures, or for a matplotlib figure the
cell metadata ``mystnb: {image: {alt: "..."}}``. Exit status 1 when any is found (``--check``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cells_without_alt(nb: dict) -> list[str]:
    """The sources of the code cells whose image outputs have no alt text."""
    found = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        tags = meta.get("tags", [])
        if "remove-output" in tags or "remove-cell" in tags:
            continue
        cell_alt = ((meta.get("mystnb") or {}).get("image") or {}).get("alt")
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if not any(k.startswith("image/") for k in data) or "text/html" in data or cell_alt:
                continue
            found.append("".join(cell.get("source", "")))
            break
    return found


def where(source: str, chapter: Path) -> str:
    """``chapters/<name>.md:<line>`` of the cell's first line (the MyST source), else the first line."""
    lines = [ln for ln in source.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if chapter.exists() and first:
        text = chapter.read_text(encoding="utf-8").splitlines()
        for i, ln in enumerate(text, 1):
            if ln == first:
                return f"{chapter.relative_to(ROOT)}:{i}"
    return f"{chapter.relative_to(ROOT)} (cell starting {first[:60]!r})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--executed", type=Path, default=ROOT / "_build" / "executed")
    ap.add_argument("--check", action="store_true", help="exit 1 when a cell lacks alt text")
    args = ap.parse_args(argv)
    total = 0
    for path in sorted(args.executed.glob("*.ipynb")):
        if path.name.endswith(".source.ipynb"):
            continue
        found = cells_without_alt(json.loads(path.read_text(encoding="utf-8")))
        total += len(found)
        for source in found:
            last = [ln for ln in source.splitlines() if ln.strip()][-1].strip()
            print(f"{where(source, ROOT / 'chapters' / f'{path.stem}.md')}: ...{last[-70:]}")
    print(f"{total} cells with images without alt text")
    return 1 if args.check and total else 0


if __name__ == "__main__":
    sys.exit(main())
