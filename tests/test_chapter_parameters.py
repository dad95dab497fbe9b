"""Every chapter's parameters cell is visible to papermill, and every parameter it sets is used.

papermill silently drops a parameter line it cannot parse (``papermill --help-notebook`` and
``papermill.inspect_notebook`` then omit it), e.g. one whose comment contains ``=``. The first test
compares the names the cell assigns (read with ``ast``) with the names papermill infers.

A parameter that a chapter accepts and never reads is ignored in silence: ``-p data_root ...``
would run on synthetic data without a word. The second test reads each chapter's code and checks
that every parameter is read later, either as a name or, when it is passed to ``start_chapter``
only to be stored on the run record, as ``run.<name>``. A chapter that has no use for a parameter
reads it to say so, with :func:`animlib.chapter_params.ignored_parameter`.
"""

from __future__ import annotations

import ast
import inspect
import re
import warnings
from pathlib import Path

import jupytext
import nbformat
import pytest

from animlib.chapter_params import ignored_parameter
from animlib.runtime import start_chapter

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))

#: start_chapter's arguments that it acts on itself (the run's name, the profile it checks, the
#: device it picks, the seed it sets, the folder it makes, the thread count): passing one is a use.
#: Any other argument (data_root) is only checked and stored, so the chapter must read run.<name>.
START_CHAPTER_ACTS_ON = {"name", "profile", "device", "seed", "out_dir", "deterministic", "threads"}


def _parameters_cell(nb) -> str:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "a chapter has exactly one cell tagged 'parameters'"
    return cells[0].source


def _assigned(source: str) -> list[str]:
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_papermill_sees_every_parameter(chapter, tmp_path):
    papermill = pytest.importorskip("papermill")
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
    papermill = pytest.importorskip("papermill")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    cell = nbformat.v4.new_code_cell('profile = "quick"  # ok\ndata_root = None  # None = synthetic\n')
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    assert _assigned(cell.source) == ["profile", "data_root"]
    assert "data_root" not in papermill.inspect_notebook(str(path))


def _parse(source: str) -> ast.Module:
    # IPython lines (%magic, !shell) are not Python; they read no parameter.
    return ast.parse("\n".join("" if re.match(r"\s*[%!]", line) else line for line in source.splitlines()))


def _is_start_chapter(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "start_chapter")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "start_chapter"))


def _unused(parameters: str, code: str) -> list[str]:
    """The parameters that ``code`` (the rest of the chapter) never reads."""
    tree = _parse(code)
    signature = inspect.signature(start_chapter)
    passed: dict[str, set[str]] = {}  # parameter -> the start_chapter arguments it is passed as
    as_argument: set[int] = set()  # the Name nodes passed straight to start_chapter
    runs: set[str] = set()  # the names bound to start_chapter's run record
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_start_chapter(node.value):
            runs |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        if _is_start_chapter(node):
            keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
            for arg, value in signature.bind_partial(*node.args, **keywords).arguments.items():
                if isinstance(value, ast.Name):
                    passed.setdefault(value.id, set()).add(arg)
                    as_argument.add(id(value))
    read = {n.id for n in ast.walk(tree)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in as_argument}
    run_attrs = {n.attr for n in ast.walk(tree)
                 if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in runs}
    used = read | {p for p, args in passed.items() if args & (START_CHAPTER_ACTS_ON | run_attrs)}
    return [name for name in _assigned(parameters) if name not in used]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_parameter_is_read(chapter):
    nb = jupytext.read(chapter)
    parameters = _parameters_cell(nb)
    code = "\n".join(c.source for c in nb.cells
                     if c.cell_type == "code" and "parameters" not in c.get("metadata", {}).get("tags", []))
    unused = _unused(parameters, code)
    assert not unused, (
        f"{chapter.name} sets {unused} in its parameters cell but never reads them (one passed to start_chapter "
        "only to be stored counts when the chapter reads run.<name>): use them, or say that the chapter "
        "ignores them with animlib.chapter_params.ignored_parameter(name, run.<name>, why)")


def test_start_chapter_stores_data_root_without_acting_on_it():
    args = set(inspect.signature(start_chapter).parameters)
    assert START_CHAPTER_ACTS_ON <= args and "data_root" in args - START_CHAPTER_ACTS_ON


def test_the_usage_check_can_fail():
    parameters = 'profile = "quick"\ndevice = "auto"\ndata_root = None\nseed = 0\nout_dir = "o"\nsteps = 5\n'
    code = ('run = start_chapter("x", profile=profile, device=device, seed=seed, out_dir=out_dir,\n'
            '                    data_root=data_root)\n%matplotlib inline\nprint(run.profile)\n')
    assert _unused(parameters, code) == ["data_root", "steps"]  # data_root only stored, steps never read
    assert _unused(parameters, code + "train(steps=steps)\nif run.data_root is not None:\n    pass\n") == []
    ignored = 'animlib.chapter_params.ignored_parameter("data_root", run.data_root, "synthetic only")\n'
    assert _unused(parameters, code + ignored + "print(steps)\n") == []
    positional = 'run = animlib.start_chapter("x", profile, device, seed, out_dir, data_root)\nprint(steps)\n'
    assert _unused(parameters, positional) == ["data_root"]
    assert _unused(parameters, positional + "print(run.data_root)\n") == []


def test_an_ignored_parameter_warns_only_when_set():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignored_parameter("data_root", None, "synthetic data only")  # the default: silent
        ignored_parameter("steps", 5, "fixed here", default=5)
    with pytest.warns(UserWarning, match=r"^data_root='/data/faces' is ignored: synthetic data only$"):
        ignored_parameter("data_root", Path("/data/faces"), "synthetic data only")
