"""The built website in a real browser (`make book-check`; marker `browser`, never in `make test`).

Headless Chromium from the system's packages (Debian/Ubuntu: `apt-get install chromium`; or set
CHROMIUM=/path/to/chromium), driven by Playwright (`pip install -e ".[browser]"`; no browser download).
It serves build/site/ over HTTP (search needs it), opens the landing page, follows the sidebar to every
chapter, searches a term of chapter 06d, and saves screenshots in build/site-check/.
"""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "build" / "site"
SHOTS = ROOT / "build" / "site-check"
SEARCH = "conformal"  # a term of chapter 06d

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    named = os.environ.get("CHROMIUM")
    if named:
        return named
    return next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
        None,
    )


@pytest.fixture(scope="module")
def browser_page(request):
    if "browser" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the browser check runs with `make book-check` (pytest -m browser)")
    if not (SITE / "index.html").exists():
        pytest.fail(f"no {SITE}/index.html: run `make book` first")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[browser]'")
    executable = _chromium()
    if executable is None:
        pytest.fail("no Chromium found: apt-get install chromium (or set CHROMIUM=/path/to/chromium)")
    handler = functools.partial(QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # the site must not reach out: any request that leaves it is an error (MathJax probing for a
        # font that jupyter-server-mathjax does not ship falls back to its STIX fonts: not one)
        page.on(
            "request",
            lambda req: (
                req.url.startswith(("http:", "https:"))
                and not req.url.startswith("http://127.0.0.1:")
                and errors.append(f"request to the network: {req.url}")
            ),
        )
        yield page, f"http://127.0.0.1:{server.server_port}", errors
        browser.close()
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_the_sidebar_reaches_every_chapter_and_maths_renders(browser_page):
    page, base, errors = browser_page
    page.goto(f"{base}/index.html")
    page.screenshot(path=str(SHOTS / "index.png"))
    links = page.locator("nav.bd-docs-nav a.reference.internal")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    chapters = [h for h in hrefs if h.startswith("notebooks/")]
    expected = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))
    assert [Path(h).stem for h in chapters] == expected
    for href in chapters:
        page.goto(f"{base}/index.html")
        page.locator(f'nav.bd-docs-nav a[href="{href}"]').first.click()
        page.wait_for_load_state("networkidle")
        stem = Path(href).stem
        assert page.url.endswith(f"notebooks/{stem}.html")
        assert page.locator("h1").first.inner_text().startswith("Chapter")
        assert page.get_by_text("Download this chapter").count() == 1
        if page.locator("span.math").count():  # MathJax (from the site) has typeset the formulas
            page.wait_for_function("() => document.querySelectorAll('.MathJax, .MathJax_Display').length > 0")
        page.screenshot(path=str(SHOTS / f"{stem}.png"))
    assert not errors, errors


def test_search_finds_chapter_06d(browser_page):
    page, base, errors = browser_page
    page.goto(f"{base}/search.html?q={SEARCH}")
    results = page.locator("#search-results li a")
    results.first.wait_for(timeout=30_000)
    found = [results.nth(i).get_attribute("href") for i in range(results.count())]
    page.screenshot(path=str(SHOTS / "search.png"))
    assert any("06d_conformal_prediction" in h for h in found), found
    assert not errors, errors
