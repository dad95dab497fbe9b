"""The built book, opened in headless Chromium (Debian's package) driven by Playwright.

Run after `make html` (`make browser` does: it also fetches axe-core, pinned, into _build/axe). Every
page of the book (chapters and front matter) is opened once, and each check below is a test
parametrised by page, so a failure names the page:

- no JavaScript error, no failed request, no request to any host (the book is offline);
- equations are typeset by the locally served MathJax, with no raw ``$$``/``\\(`` left visible;
- every animation player (matplotlib's jshtml) plays when Play is clicked and steps with Next frame;
- every ipywidgets output works without a kernel (animlib's scrub widget: moving the slider changes
  the image), or the page shows its static equivalent;
- body text keeps a WCAG contrast of at least 4.5 in light and in dark mode (screenshots of both in
  _build/screenshots/<page>-{light,dark}.png);
- every image has a real alt text (not Sphinx's fallback, the file name) and every animation an
  accessible name;
- axe-core finds no serious or critical violation, except the rules in AXE_ALLOWED (the theme's).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))  # another build: BOOK_HTML=path
AXE = ROOT / "_build" / "axe" / "axe.min.js"
SHOTS = HTML.parent / "screenshots"  # _build/screenshots
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

# Serious/critical axe-core rules that come from the theme (sphinx-book-theme on pydata-sphinx-theme) or
# from ipywidgets, not from the book's content: rule id -> (the elements where it is tolerated, as a CSS
# selector, and why). Anywhere else the rule fails the test. The test prints the counts of every rule.
AXE_ALLOWED: dict[str, tuple[str, str]] = {
    "label-content-name-mismatch": (
        ":not(article *), summary[aria-label='Toggle hidden content']",
        "the theme's search buttons are labelled 'Search' but show 'Search... Ctrl+K', its navigation links' "
        "aria-labels differ from their visible text, and sphinx-togglebutton labels the 'Show code cell "
        "source' toggles of hidden inputs 'Toggle hidden content'"),
    "aria-required-children": (
        ".citation-list",
        "docutils writes a chapter's bibliography as role=list whose items are role=doc-biblioentry (deprecated "
        "in ARIA 1.3) and contain role=doc-backlink links, which axe does not accept as list children"),
    "aria-input-field-name": (
        ".widget-slider .noUi-handle",
        "ipywidgets' IntSlider (noUiSlider) gives its handle role=slider but no accessible name, and has "
        "no option to set one; its visible description label is not associated with it"),
}

# Pages whose interactive widget is replaced in the static book by a static equivalent: the page must
# show a widget that works, or an image whose alt text contains this word.
STATIC_EQUIVALENTS = {"chapters/03_gram_style.html": "beta"}


REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)


def _is_redirect(path: Path) -> bool:
    """Jupyter Book's index.html only redirects to the root page (checked on its own)."""
    with path.open(encoding="utf-8") as f:
        return bool(REDIRECT.match(f.read(200)))


def _pages() -> list[str]:
    if not HTML.exists():
        return ["<the book is not built>"]
    skip = ("_", "genindex", "search", "py-modindex")
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
                  if not p.relative_to(HTML).as_posix().startswith(skip) and not _is_redirect(p))


PAGES = _pages()
CHAPTERS = [p for p in PAGES if p.startswith("chapters/")]


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


class Opened:
    """A page of the book, open in the browser, with what went wrong while loading and using it."""

    def __init__(self, ctx, rel: str):
        self.rel = rel
        self.page = ctx.new_page()
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("request", lambda r: self.failed.append(f"network request {r.url}")
                     if not r.url.startswith(("file:", "data:", "blob:", "about:")) else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto((HTML / rel).as_uri(), wait_until="load")


@pytest.fixture(scope="module", params=PAGES)
def opened(request, browser):
    """Each page once for all the checks below (pytest runs every test of one page before the next)."""
    o = Opened(browser, request.param)
    yield o
    o.page.close()


def open_page(ctx, rel: str):
    o = Opened(ctx, rel)
    return o.page, o.failed, o.errors


# ------------------------------------------------------------------------------------------------
# 1. Offline, no errors
# ------------------------------------------------------------------------------------------------
def test_loads_offline_without_errors(opened):
    opened.page.wait_for_timeout(300)
    assert not opened.failed, opened.failed
    assert not opened.errors, opened.errors


# ------------------------------------------------------------------------------------------------
# 2. Equations
# ------------------------------------------------------------------------------------------------
RAW_TEX_JS = r"""() => {
  const root = document.querySelector('article') || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {acceptNode(n) {
    const el = n.parentElement;
    if (!el || el.closest('pre, code, script, style, mjx-container, mjx-assistive-mml, .cell_input, .output'))
      return NodeFilter.FILTER_REJECT;
    return NodeFilter.FILTER_ACCEPT;
  }});
  const raw = [];
  const pat = /\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\frac|\\mathbf|\$[^$\n]*\\[a-zA-Z]+[^$\n]*\$/;
  for (let n = walker.nextNode(); n; n = walker.nextNode())
    if (pat.test(n.textContent) && n.parentElement.offsetParent !== null) raw.push(n.textContent.trim().slice(0, 80));
  return raw;
}"""


def test_equations_render(opened):
    page = opened.page
    n_math = page.evaluate("() => document.querySelectorAll('.math').length")
    if n_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=15000)
        page.evaluate("() => MathJax.startup.promise")
        untypeset = page.evaluate("() => Array.from(document.querySelectorAll('.math'))"
                                  ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80))")
        assert not untypeset, f"{len(untypeset)} of {n_math} equations not typeset by MathJax: {untypeset[:5]}"
        # MathJax typesets what it cannot parse as a red error box (e.g. an environment it does not load).
        tex_errors = page.evaluate("() => Array.from(document.querySelectorAll('mjx-merror'))"
                                   ".map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 100))")
        assert not tex_errors, f"MathJax could not typeset {len(tex_errors)} equations: {tex_errors[:5]}"
        assert page.locator("mjx-container").count() >= n_math
    raw = page.evaluate(RAW_TEX_JS)
    assert not raw, f"raw TeX visible in the text: {raw[:5]}"


def test_notation_page_has_equations(browser):
    page, failed, errors = open_page(browser, "book/notation.html")
    page.wait_for_selector("mjx-container", timeout=15000)
    assert page.locator("mjx-container").count() > 5
    assert not failed and not errors, (failed, errors)
    page.close()


# ------------------------------------------------------------------------------------------------
# 3. Alt text
# ------------------------------------------------------------------------------------------------
MISSING_ALT_JS = r"""() => {
  const bad = [];
  for (const img of document.querySelectorAll('img')) {
    const alt = (img.getAttribute('alt') || '').trim();
    const src = img.getAttribute('src') || '';
    const file = src.startsWith('data:') ? '' : src.split('/').pop();
    // Sphinx writes the image's path as alt when none was given: that is no text alternative either.
    if (alt && alt !== src && alt !== file && !/\.(png|jpe?g|gif|svg)$/i.test(alt)) continue;
    if (img.getAttribute('role') === 'presentation' || img.getAttribute('aria-hidden') === 'true') continue;
    const cell = img.closest('.cell');
    const cells = Array.from(document.querySelectorAll('.cell'));
    const code = cell ? (cell.querySelector('.cell_input pre') || {}).textContent || '' : '';
    bad.push({cell: cell ? cells.indexOf(cell) : null, code: code.trim().split('\n').slice(-2).join(' / ').slice(0, 120),
              alt: alt.slice(0, 60)});
  }
  return bad;
}"""


def test_images_and_animations_have_alt_text(opened):
    page = opened.page
    bad = page.evaluate(MISSING_ALT_JS)
    unnamed = page.evaluate("""() => Array.from(document.querySelectorAll('div.animation'))
        .filter(a => !a.closest('[aria-label]') && !(a.querySelector('img') || {}).alt).length""")
    if bad:
        print(f"\n{opened.rel}: images without alt text, by code cell:\n"
              + "\n".join(f"  cell {b['cell']}: {b['code']}" for b in bad))
    assert not bad, f"{len(bad)} images without alt text (give the cell `mystnb: image: alt:` or animlib.viz's " \
        "alt=; `python tools/missing_alt.py` lists them by chapter line): " + "; ".join(
            f"cell {b['cell']} ending {b['code']!r}" for b in bad)
    assert not unnamed, f"{unnamed} animations without an aria-label or alt text"


# ------------------------------------------------------------------------------------------------
# 4. axe-core (before anything is clicked or restyled)
# ------------------------------------------------------------------------------------------------
def test_axe_no_serious_violations(opened):
    if not AXE.exists():
        pytest.fail("axe-core missing: run `bash tools/fetch_axe.sh` (make browser does)")
    page = opened.page
    page.add_script_tag(path=str(AXE))
    # preload: false, or axe re-fetches the stylesheets with XHR, which file:// pages refuse.
    results = page.evaluate("""async allowed => {
        const r = await axe.run(document, {resultTypes: ['violations'], preload: false});
        const tolerated = (id, n) => {
            if (!(id in allowed)) return false;
            try { const e = document.querySelector(n.target[0]); return !!(e && e.matches(allowed[id])); }
            catch (err) { return false; }
        };
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
            not_allowed: v.nodes.filter(n => !tolerated(v.id, n)).map(n => n.target.join(' '))}));
    }""", {k: sel for k, (sel, _) in AXE_ALLOWED.items()})
    counts = {f"{v['id']} ({v['impact']})": v["nodes"] for v in results}
    print(f"\n{opened.rel}: axe violations {json.dumps(counts) if counts else 'none'}")
    serious = [v for v in results if v["impact"] in ("serious", "critical") and v["not_allowed"]]
    assert not serious, "axe-core: " + "; ".join(
        f"{v['id']} ({v['impact']}, {len(v['not_allowed'])} nodes: {v['help']}; e.g. {v['not_allowed'][:3]})"
        for v in serious)


# ------------------------------------------------------------------------------------------------
# 5. Animation players
# ------------------------------------------------------------------------------------------------
def _wait_for(fn, timeout: float = 5.0, step: float = 0.1) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(step)
    return fn()


def _changes(read, old, timeout: float = 5.0) -> bool:
    """Whether ``read()`` comes to differ from ``old`` within the timeout."""
    return _wait_for(lambda: read() != old, timeout)


def test_animations_play_and_step(opened):
    page = opened.page
    anims = page.locator("div.animation")
    n = anims.count()
    problems = []
    for i in range(n):
        anim = anims.nth(i)
        anim.scroll_into_view_if_needed()
        slider, img = anim.locator("input.anim-slider"), anim.locator("img").first
        n_frames = int(slider.get_attribute("max") or 0) + 1
        before = int(slider.input_value())
        anim.locator("button[title='Play']").click()
        moved = _changes(slider.input_value, str(before), timeout=5)
        anim.locator("button[title='Pause']").click()
        if not moved:
            problems.append(f"animation {i}: the frame slider did not move after Play")
        anim.locator("button[title='First frame']").click()
        src0, k0 = img.get_attribute("src"), int(slider.input_value())
        anim.locator("button[title='Next frame']").click()
        if n_frames > 1 and (int(slider.input_value()) == k0 or img.get_attribute("src") == src0):
            problems.append(f"animation {i}: Next frame did not change the frame image ({n_frames} frames)")
    assert not problems, problems
    assert not opened.errors, opened.errors


# ------------------------------------------------------------------------------------------------
# 6. Widgets without a kernel
# ------------------------------------------------------------------------------------------------
SHOWN_IMAGES_JS = """el => Array.from(el.querySelectorAll('img'))
  .filter(i => i.offsetParent !== null).map(i => (i.alt || '') + '|' + i.src.length + '|' + i.src.slice(-40))"""


def test_widgets_work_without_kernel(opened):
    page = opened.page
    n_views = page.locator("script[type='application/vnd.jupyter.widget-view+json']").count()
    if n_views:
        # The ipywidgets HTML manager renders each saved view next to its script element.
        unrendered = """() => Array.from(document.querySelectorAll(
              "script[type='application/vnd.jupyter.widget-view+json']"))
            .filter(s => !s.parentElement.querySelector('.jupyter-widgets')).length"""
        if not _wait_for(lambda: page.evaluate(unrendered) == 0, timeout=10):
            empty = page.evaluate(unrendered)
            pytest.fail(f"{empty} of {n_views} widget views were not rendered by the ipywidgets HTML manager "
                        "(is the widget state saved in the executed notebook?)")
    scrubbers = page.locator(".widget-vbox:has(.widget-slider)")
    for i in range(scrubbers.count()):
        box = scrubbers.nth(i)
        box.scroll_into_view_if_needed()
        shown = box.evaluate(SHOWN_IMAGES_JS)
        assert shown, f"scrub widget {i} shows no image"
        handle = box.locator(".widget-slider .noUi-handle, .widget-slider [role=slider]").first
        handle.focus()
        page.keyboard.press("End")
        assert _changes(lambda b=box: b.evaluate(SHOWN_IMAGES_JS), shown, timeout=3), \
            f"scrub widget {i}: moving the slider did not change the image"
        select = box.locator("select")
        if select.count():
            options = select.first.locator("option").all_text_contents()
            before = box.evaluate(SHOWN_IMAGES_JS)
            select.first.select_option(label=options[-1])
            assert _changes(lambda b=box: b.evaluate(SHOWN_IMAGES_JS), before, timeout=3), \
                f"scrub widget {i}: choosing {options[-1]!r} did not change the image"
    word = STATIC_EQUIVALENTS.get(opened.rel)
    if word and not scrubbers.count():
        alts = page.evaluate("() => Array.from(document.querySelectorAll('article img')).map(i => i.alt)")
        assert any(word in a.lower() for a in alts), \
            f"no working widget and no static equivalent (an image whose alt mentions {word!r})"
    assert not opened.errors, opened.errors


# ------------------------------------------------------------------------------------------------
# 7. Dark mode
# ------------------------------------------------------------------------------------------------
CONTRAST_JS = r"""() => {
  const parse = c => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const v = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
  const lum = ([r, g, b]) => { const f = x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const over = (top, base) => [0, 1, 2].map(i => top[i] * top[3] + base[i] * (1 - top[3])).concat([1]);
  const background = el => {  // the stacked backgrounds behind el, blended from the page's root down
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
  const out = [];
  for (const p of document.querySelectorAll('article p')) {
    if (p.offsetParent === null || !p.textContent.trim()) continue;
    const fg0 = parse(getComputedStyle(p).color), bg = background(p);
    const fg = over(fg0, bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    out.push({ratio: (a + 0.05) / (b + 0.05), color: getComputedStyle(p).color,
              background: 'rgb(' + bg.slice(0, 3).map(Math.round).join(',') + ')', text: p.textContent.trim().slice(0, 60)});
  }
  return out;
}"""


def _set_mode(page, mode: str) -> None:
    page.evaluate("""mode => { const h = document.documentElement;
        h.dataset.theme = mode; h.dataset.mode = mode; try { localStorage.setItem('mode', mode); } catch (e) {} }""",
                  mode)
    page.wait_for_timeout(150)  # let CSS transitions finish


def test_text_contrast_light_and_dark(opened):
    page = opened.page
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = Path(opened.rel).with_suffix("").as_posix().replace("/", "-")
    report = {}
    try:
        for mode in ("light", "dark"):
            _set_mode(page, mode)
            page.evaluate("() => window.scrollTo(0, 0)")
            page.screenshot(path=str(SHOTS / f"{name}-{mode}.png"))
            measured = page.evaluate(CONTRAST_JS)
            assert measured, "no paragraph of text measured"
            report[mode] = min(measured, key=lambda m: m["ratio"])
    finally:
        _set_mode(page, "light")
    print(f"\n{opened.rel}: lowest text contrast "
          + ", ".join(f"{m} {r['ratio']:.2f} ({r['color']} on {r['background']})" for m, r in report.items()))
    low = {m: r for m, r in report.items() if r["ratio"] < 4.5}
    assert not low, f"body text below WCAG AA contrast 4.5: {low}"


def test_no_errors_after_interaction(opened):
    assert not opened.failed, opened.failed
    assert not opened.errors, opened.errors


def test_every_page_is_checked(browser):
    assert any(p.startswith("chapters/") for p in PAGES), PAGES
    assert "book/notation.html" in PAGES, PAGES
    # index.html redirects to the root page, which is checked with the others.
    page, failed, errors = open_page(browser, "index.html")
    page.wait_for_url(lambda url: not url.endswith("/index.html"), timeout=10000)
    page.wait_for_load_state("load")
    target = Path(page.url.removeprefix("file://")).resolve().relative_to(HTML.resolve()).as_posix()
    assert target in PAGES, target
    assert not failed and not errors, (failed, errors)
    page.close()
