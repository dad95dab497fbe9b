"""The reader notebooks that `make html` wrote from the executed chapters: every one reads as a notebook.

Run after the book is built (the README's test command runs the browser stage after `make html`):
no raw MyST role or directive in any markdown cell, every glued result filled in from the run, every
exercise solution folded into a ``<details>`` block, the set-up cell first, and the outputs kept.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from test_reader_notebooks import RAW_DIRECTIVE, RAW_ROLE, prose, rn

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "_build" / "notebooks" / "chapters"
CHAPTERS = [c.stem for c in rn.toc_chapters()]


@pytest.mark.parametrize("name", CHAPTERS)
def test_built_reader_notebook_is_plain_markdown(name):
    path = BUILT / f"{name}.ipynb"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make html` (it writes the reader notebooks) first")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "code" and "reader-setup" in first.metadata.get("tags", []), "set-up cell first"
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    for text in markdown:
        body = prose(text)
        assert not RAW_ROLE.search(body), (name, RAW_ROLE.search(body).group(0))
        assert not RAW_DIRECTIVE.search(body), (name, text[:300])
        assert not re.search(r"^\(\S+\)=\s*$", text, re.M), (name, text[:200])
        assert "computed when the notebook runs" not in text, (name, "a glued result is missing", text[:300])
    source = (ROOT / "chapters" / f"{name}.md").read_text(encoding="utf-8")
    solutions = len(re.findall(r"\{admonition\} Solution", source))
    assert "\n".join(markdown).count("<summary>Solution</summary>") == solutions
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "the run's outputs are kept"
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
