"""Every chapter's parameters cell is visible to papermill: name for name, with its help text.

papermill silently drops a parameter line it cannot parse (``papermill --help-notebook`` and
``papermill.inspect_notebook`` then omit it), e.g. one whose comment contains ``=``. This test
compares the names the cell assigns (read with ``ast``) with the names papermill infers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

papermill = pytest.importorskip("papermill")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))


def _parameters_cell(nb) -> str:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "a chapter has exactly one cell tagged 'parameters'"
    return cells[0].source


def _assigned(source: str) -> list[str]:
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_papermill_sees_every_parameter(chapter, tmp_path):
    nb = jupytext.read(chapter)
    names = _assigned(_parameters_cell(nb))
    assert {"profile", "device", "seed", "out_dir"} <= set(names)
    path = tmp_path / f"{chapter.stem}.ipynb"
    nbformat.write(nb, path)
    inferred = papermill.inspect_notebook(str(path))
    missing = [n for n in names if n not in inferred]
    assert not missing, f"papermill cannot parse {missing} in {chapter.name}: keep '=' out of the comment"
    undocumented = [n for n in names if not inferred[n]["help"].strip()]
    assert not undocumented, f"{chapter.name}: give {undocumented} a comment saying what the values mean"


def test_the_check_can_fail(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    cell = nbformat.v4.new_code_cell('profile = "quick"  # ok\ndata_root = None  # None = synthetic\n')
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    assert _assigned(cell.source) == ["profile", "data_root"]
    assert "data_root" not in papermill.inspect_notebook(str(path))
