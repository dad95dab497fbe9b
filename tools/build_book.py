#!/usr/bin/env python3
"""Render the HTML book from already-executed chapter notebooks, without executing them again.

A staging folder ``_build/site`` receives the book's configuration, the front matter (``book/``),
the browser assets served locally (MathJax, require.js, the ipywidgets embedder) and, for every
chapter, only its executed ``.ipynb`` (no ``.md`` beside it, so Sphinx sees one source per page and
the download button offers the notebook with its outputs). Jupyter Book 1 then builds it with
``-W --keep-going``: any warning fails the build. The result lands in ``_build/html``.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

_TOOLS = str(Path(__file__).resolve().parent)
if _TOOLS not in sys.path:  # loaded by its file path (as the tests do) rather than run as a script
    sys.path.insert(0, _TOOLS)

from book_common import ROOT, toc_chapters  # noqa: E402

THEBE_CONFIG = re.compile(r"[ \t]*<script>const THEBE_JS_URL = [^<]*</script>\n?")


def dedupe_thebe_config(html_root: Path) -> int:
    """Keep the first of the identical ``const THEBE_JS_URL = ...`` scripts on each page.

    Jupyter Book 1.0.4 with sphinx-thebe 0.3.1 emits the inline config twice, and the second
    ``const`` declaration throws a JavaScript error in the reader's browser.
    """
    fixed = 0
    for page in html_root.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        found = THEBE_CONFIG.findall(text)
        if len(found) > 1:
            first = text.index(found[0]) + len(found[0])
            text = text[:first] + THEBE_CONFIG.sub("", text[first:])
            page.write_text(text, encoding="utf-8")
            fixed += 1
    return fixed


COLAB_URL = "https://colab.research.google.com"


def staging_config(config: dict, repo_url: str | None = None, branch: str | None = None) -> dict:
    """The staging copy's configuration: nothing executes, and "Open in Colab" once a repository is set.

    ``repo_url``/``branch`` override ``repository.url``/``repository.branch``. With a GitHub URL, every
    chapter page gets sphinx-book-theme's Colab button, which links
    ``{COLAB_URL}/github/<org>/<repo>/blob/<branch>/<path_to_book>/chapters/<name>.ipynb``: the reader
    notebook published on that branch. Empty (the default), the build is the offline one, unchanged.
    """
    config = copy.deepcopy(config)
    config.setdefault("execute", {})["execute_notebooks"] = "off"  # executed once, by papermill
    repo = config.setdefault("repository", {})
    if repo_url is not None:
        repo["url"] = repo_url
    if branch:
        repo["branch"] = branch
    url = str(repo.get("url") or "").strip().rstrip("/").removesuffix(".git")
    if url:
        if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
            raise ValueError(f"the repository URL must be https://github.com/<org>/<repo> (Colab opens "
                             f"notebooks from GitHub), got {url!r}")
        repo["url"] = url
        config.setdefault("launch_buttons", {})["colab_url"] = COLAB_URL
        config.setdefault("html", {})["use_download_button"] = True
    return config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--executed", type=Path, default=ROOT / "_build" / "executed")
    ap.add_argument("--stage", type=Path, default=ROOT / "_build" / "site")
    ap.add_argument("--offline-js", type=Path, default=ROOT / "_build" / "offline_js")
    ap.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--repo-url", default=None,
                    help="GitHub repository of the reader notebooks (default: _config.yml repository.url)")
    ap.add_argument("--notebook-branch", default=None,
                    help="its branch holding chapters/<name>.ipynb (default: _config.yml repository.branch)")
    args = ap.parse_args(argv)

    try:
        config = staging_config(yaml.safe_load((ROOT / "_config.yml").read_text()), args.repo_url,
                                args.notebook_branch)
    except ValueError as e:
        ap.error(str(e))
    chapters = [c.stem for c in toc_chapters()]
    missing = [f"chapters/{c}" for c in chapters if not (args.executed / f"{c}.ipynb").exists()]
    if missing:
        print(f"no executed notebook for {missing} in {args.executed}: run `make execute` "
              "(or tools/run_chapters.py) first", file=sys.stderr)
        return 1
    if not (args.offline_js / "es5").exists():
        print(f"browser assets missing in {args.offline_js}: run `bash tools/fetch_offline_js.sh {args.offline_js}`",
              file=sys.stderr)
        return 1

    stage = args.stage
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "chapters").mkdir(parents=True)
    shutil.copytree(ROOT / "book", stage / "book")
    shutil.copy(ROOT / "_toc.yml", stage / "_toc.yml")
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copytree(args.offline_js, stage / "_offline_js", ignore=shutil.ignore_patterns(".stamp"))
    for c in chapters:
        shutil.copy(args.executed / f"{c}.ipynb", stage / "chapters" / f"{c}.ipynb")

    # The Results page (tools/results_page.py): this run's metrics.json files, written into the stage only
    # (book/results.md, listed in the staged _toc.yml under "Reference").
    subprocess.run([sys.executable, str(ROOT / "tools" / "results_page.py"), "--stage", str(stage),
                    "--summary", str(args.executed)], check=True)

    out = ROOT / "_build" / "jb"
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(stage), "--path-output", str(out),
           "--builder", "html", "-W", "--keep-going"]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        print("The book build failed (warnings count as errors): see the messages above.", file=sys.stderr)
        return proc.returncode
    if args.html.exists():
        shutil.rmtree(args.html)
    shutil.move(str(out / "_build" / "html"), str(args.html))
    fixed = dedupe_thebe_config(args.html)
    if fixed:
        print(f"removed a duplicated sphinx-thebe config script from {fixed} pages")
    print(f"Built {args.html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
