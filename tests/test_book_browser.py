"""The built book, opened in headless Chromium (Debian's package) driven by Playwright.

Run after `make html` (the README's test command does both). Checks what a reader sees: the
chapter 0 animation plays when Play is clicked, equations are typeset by the locally served
MathJax, and no page asks the network for anything or throws a JavaScript error.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make html` (or `make book`) first")
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium not found: run `bash tools/ensure_chromium.sh`")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                  viewport={"width": 1280, "height": 1000})
        yield ctx
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(ctx, rel: str):
    page = ctx.new_page()
    failed, errors = [], []
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("request", lambda r: failed.append(f"network request {r.url}") if r.url.startswith("http") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((HTML / rel).as_uri(), wait_until="load")
    return page, failed, errors


def test_chapter0_animation_plays(browser):
    page, failed, errors = open_page(browser, "chapters/00_toolkit.html")
    anim = page.locator("div.animation").first
    anim.scroll_into_view_if_needed()
    slider = anim.locator("input.anim-slider")
    before = int(slider.input_value())
    anim.locator("button[title='Play']").click()
    deadline = time.time() + 5
    moved = before
    while time.time() < deadline and moved == before:
        time.sleep(0.2)
        moved = int(slider.input_value())
    anim.locator("button[title='Pause']").click()
    assert moved != before, "the animation's frame slider did not move after clicking Play"
    frames = page.evaluate("() => document.querySelectorAll('div.animation').length")
    assert frames >= 2
    assert not failed, failed
    assert not errors, errors
    page.close()


def test_equations_render_offline(browser):
    page, failed, errors = open_page(browser, "book/notation.html")
    page.wait_for_selector("mjx-container", timeout=15000)
    assert page.locator("mjx-container").count() > 5
    assert not failed, failed
    assert not errors, errors
    page.close()


def test_every_page_loads_without_network_or_errors(browser):
    pages = sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
                   if not p.relative_to(HTML).as_posix().startswith(("_", "genindex", "search", "py-modindex")))
    assert any(p.startswith("chapters/") for p in pages)
    problems = []
    for rel in pages:
        page, failed, errors = open_page(browser, rel)
        page.wait_for_timeout(300)
        if failed or errors:
            problems.append((rel, failed, errors))
        page.close()
    assert not problems, problems
