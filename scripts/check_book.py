"""Reads every page of the built course website (`make book`: build/site/) and fails on what a reader must
not see, printing each problem with its page.

    python scripts/check_book.py build/site [--strict-alt]

* a traceback, a warning (``SomethingWarning:``), an error box of the builder, or raw stderr in a
  chapter's outputs;
* a machine path (``/tmp/...``, ``/work/...``, a home folder) anywhere in a page's text;
* a chapter of notebooks/ missing from the landing page's navigation, or out of order, or without its
  "Download this chapter" links;
* a link, image, script or stylesheet of the site that points to no file (or to no anchor in its page);
* MathJax loaded from anywhere but the site itself.

It also counts the figures with and without alt text, per chapter (``--strict-alt`` fails on any
without). ``tests/test_book.py`` runs the same checks on a build without outputs.
"""

import argparse
import re
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))
MACHINE_PATH = re.compile(
    r"(?<![\w.])(/tmp/\S|/var/folders/|/private/var/|/work/|/home/\w|/Users/\w|/root/|[A-Z]:\\Users\\)"
)
WARNING = re.compile(r"\b[A-Z]\w*Warning\b:")
EXTERNAL = ("http:", "https:", "mailto:", "javascript:", "data:")
SKIPPED = {"genindex.html", "search.html", "py-modindex.html"}  # Sphinx's own index and search pages


class Page(HTMLParser):
    """One HTML page: its text, the text of its cell outputs, links, ids, images and scripts."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.output_text = [], []
        self.links, self.ids, self.images, self.scripts = [], set(), [], []
        self.stderr = self.tracebacks = self.system_messages = 0
        self.nav = []  # hrefs inside the sidebar's navigation, in order
        self._stack = []  # (tag, in_output, in_nav, in_script) for every open element

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        in_output, in_nav, in_script = self._stack[-1][1:] if self._stack else (False, False, False)
        in_output = in_output or "cell_output" in classes
        in_nav = in_nav or "bd-docs-nav" in classes
        in_script = tag in ("script", "style") or in_script
        if in_output and ("stderr" in classes or "traceback" in classes):
            self.stderr += "stderr" in classes
            self.tracebacks += "traceback" in classes
        if "system-message" in classes:
            self.system_messages += 1
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if in_nav:
                self.nav.append(a["href"])
        if tag in ("img", "script", "link") and (a.get("src") or a.get("href")):
            self.links.append(a.get("src") or a["href"])
        if tag == "img":  # docutils writes the file's path as alt when there is none: that is none
            alt = (a.get("alt") or "").strip()
            self.images.append(
                "" if alt == a.get("src") or re.search(r"\.(png|jpe?g|svg|gif)$", alt) else alt
            )
        if tag == "script":
            self.scripts.append(a.get("src") or "")
        if tag not in ("img", "br", "hr", "meta", "link", "input", "source", "wbr"):
            self._stack.append((tag, in_output, in_nav, in_script))

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data):
        in_output, _, in_script = self._stack[-1][1:] if self._stack else (False, False, False)
        if in_script:
            return
        self.text.append(data)
        if in_output:
            self.output_text.append(data)


def read_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def check_site(site: Path) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Every problem of the site at ``site``, and per chapter (figures with alt text, figures)."""
    site = Path(site)
    problems = []
    pages = {
        p.relative_to(site).as_posix(): read_page(p)
        for p in sorted(site.rglob("*.html"))
        if not p.relative_to(site).parts[0].startswith("_")
    }
    if "index.html" not in pages:
        return [f"{site}: no index.html (is it a built site?)"], {}
    alt = {}
    for name, page in pages.items():
        if name in SKIPPED:
            continue
        text, outputs = " ".join(page.text), " ".join(page.output_text)
        if page.tracebacks or "Traceback (most recent call last)" in outputs:
            problems.append(f"{name}: a traceback in the outputs")
        if page.stderr:
            problems.append(f"{name}: {page.stderr} output(s) written to stderr")
        for warning in sorted(set(WARNING.findall(outputs))):
            problems.append(f"{name}: a {warning} in the outputs")
        if page.system_messages:
            problems.append(f"{name}: {page.system_messages} error box(es) of the builder")
        for path in sorted(set(m.group(0) for m in MACHINE_PATH.finditer(text))):
            problems.append(f"{name}: a machine path in the page ({path}...)")
        for src in page.scripts:
            if "mathjax" in src.lower() and src.startswith((*EXTERNAL, "//")):
                problems.append(f"{name}: MathJax from the network ({src})")
        problems += [f"{name}: {p}" for p in broken_links(site, name, page, pages)]
        if name.startswith("notebooks/"):
            images = page.images
            alt[Path(name).stem] = (sum(bool(a) for a in images), len(images))
    nav = [unquote(urlsplit(h).path) for h in pages["index.html"].nav]
    order = [Path(h).stem for h in nav if h.startswith("notebooks/")]
    missing = [c for c in CHAPTERS if c not in order]
    if missing:
        problems.append(f"index.html: chapters missing from the navigation: {missing}")
    elif [c for c in order if c in CHAPTERS] != CHAPTERS:
        problems.append(f"index.html: chapters out of order in the navigation: {order}")
    for chapter in CHAPTERS:
        page = pages.get(f"notebooks/{chapter}.html")
        if page is None:
            problems.append(f"notebooks/{chapter}.html: no page for the chapter")
        elif f"{chapter}.ipynb" not in page.links or "Download this chapter" not in " ".join(page.text):
            problems.append(f"notebooks/{chapter}.html: no 'Download this chapter' link to {chapter}.ipynb")
    return problems, alt


def broken_links(site: Path, name: str, page: Page, pages: dict) -> list[str]:
    """Links of ``page`` (at ``name`` in ``site``) to a file or an anchor the site does not have."""
    out = []
    for link in sorted(set(page.links)):
        if link.startswith((*EXTERNAL, "//")):
            continue
        parts = urlsplit(link)
        target = (site / name).parent / unquote(parts.path) if parts.path else site / name
        rel = (
            target.resolve().relative_to(site.resolve()).as_posix()
            if target.resolve().is_relative_to(site.resolve())
            else None
        )
        if rel is None or not target.exists():
            out.append(f"a link to nothing: {link}")
        elif parts.fragment and rel in pages and unquote(parts.fragment) not in pages[rel].ids:
            out.append(f"a link to a missing anchor: {link}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site", type=Path, nargs="?", default=ROOT / "build" / "site")
    parser.add_argument("--strict-alt", action="store_true", help="fail on any figure without alt text")
    args = parser.parse_args(argv)
    problems, alt = check_site(args.site)
    with_alt, figures = (sum(v[i] for v in alt.values()) for i in (0, 1))
    print(f"figures with alt text: {with_alt} of {figures}")
    for chapter, (n_alt, n) in alt.items():
        if n:
            print(f"  {chapter}: {n_alt} of {n}")
    if args.strict_alt:
        problems += [
            f"notebooks/{c}.html: {n - a} figure(s) without alt text" for c, (a, n) in alt.items() if a < n
        ]
    for problem in problems:
        print(f"check_book: {problem}", file=sys.stderr)
    counts = Counter(p.split(":")[0] for p in problems)
    if problems:
        print(
            f"check_book: {len(problems)} problem(s) on {len(counts)} page(s) of {args.site}", file=sys.stderr
        )
        return 1
    print(
        f"check_book: {args.site} is clean ({len(CHAPTERS)} chapters in the navigation, every link resolves)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
