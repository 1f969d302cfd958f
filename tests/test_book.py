"""The course website (`make book`, book/): it builds without a warning, every chapter is in the
navigation with its download links, every internal link resolves, MathJax is served by the site, and the
page checker (scripts/check_book.py) catches what a reader must not see. Every cell of a chapter that
draws a figure carries its alt text (MyST-NB cell metadata), checked on the sources without a build.

The build here runs with execution off (the pages without outputs, about 30 s); `make book` executes the
chapters (cached) and runs the same checker on the pages with their outputs.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
try:
    import check_book
finally:
    sys.path.remove(str(ROOT / "scripts"))

BOOK_PACKAGES = ("sphinx", "myst_nb", "sphinx_book_theme", "jupyter_cache", "jupyter_server_mathjax")
missing = [name for name in BOOK_PACKAGES if importlib.util.find_spec(name) is None]
needs_book = pytest.mark.skipif(
    bool(missing),
    reason=f"the book's packages are not installed ({', '.join(missing)}): pip install -e '.[book]'",
)


SPHINX = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q"]  # any warning fails


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "BOOK_EXECUTE": "off", "COURSE_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    build = subprocess.run(
        [*SPHINX, "-d", str(out / "doctrees"), str(ROOT / "book"), str(out / "html")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, f"the book does not build without warnings:\n{build.stderr[-5000:]}"
    return out / "html"


@needs_book
@pytest.mark.slow
def test_the_site_builds_clean_with_every_chapter_in_the_navigation(site):
    problems, _ = check_book.check_site(site)
    assert not problems, "\n".join(problems)
    nav = check_book.read_page(site / "index.html").nav
    chapters = [Path(h).stem for h in nav if h.startswith("notebooks/")]
    assert chapters == check_book.CHAPTERS, "the sidebar lists every chapter of notebooks/, in order"
    for page in ("docs/errata", "docs/leaderboard", "docs/holdout", "docs/instructors", "reference/index"):
        assert f"{page}.html" in nav, f"{page} is in the sidebar"
    for chapter in check_book.CHAPTERS:  # the download links point to real notebooks
        notebook = site / "notebooks" / f"{chapter}.ipynb"
        assert notebook.stat().st_size > 1000 and '"cell_type"' in notebook.read_text()


@needs_book
@pytest.mark.slow
def test_maths_and_search_work_offline(site):
    page = (site / "notebooks" / "00_data_and_baselines.html").read_text()
    assert 'src="../_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"' in page
    assert "cdn" not in page.lower() and "https://" not in "".join(
        check_book.read_page(site / "index.html").scripts
    )
    assert (site / "_static" / "mathjax" / "MathJax.js").exists()
    assert (site / "_static" / "mathjax" / "fonts" / "HTML-CSS" / "STIX-Web").is_dir()
    assert "conformal" in (site / "searchindex.js").read_text().lower(), "the search index holds chapter 06d"
    reference = (site / "reference" / "generated" / "course_lib.losses.html").read_text()
    assert "qlike_loss" in reference and "Patton" in reference, "the reference shows the library's docstrings"


def _page(body: str) -> str:
    return f'<html><body><div id="top">{body}</div></body></html>'


def test_the_checker_finds_what_a_reader_must_not_see(tmp_path):
    site = tmp_path / "site"
    (site / "notebooks").mkdir(parents=True)
    nav = "".join(f'<a href="notebooks/{c}.html">{c}</a>' for c in check_book.CHAPTERS)
    (site / "index.html").write_text(_page(f'<nav class="bd-docs-nav">{nav}</nav>'))
    for chapter in check_book.CHAPTERS:
        (site / "notebooks" / f"{chapter}.ipynb").write_text("{}")
        clean = f'<p>Download this chapter: <a href="{chapter}.ipynb">notebook</a></p><a href="#top">up</a>'
        (site / "notebooks" / f"{chapter}.html").write_text(_page(clean))
    assert check_book.check_site(site)[0] == []

    first = check_book.CHAPTERS[0]
    bad = (
        '<div class="cell_output"><div class="output stderr"><pre>'
        "/tmp/tmpab12/x.py:3: DataFallbackWarning: offline</pre></div>"
        '<div class="output traceback"><pre>Traceback (most recent call last):</pre></div>'
        '<img src="figure.png"><img src="../_images/a.png" alt="../_images/a.png"></div>'
        f'<a href="{first}.ipynb">Download this chapter</a><a href="missing.html">x</a><a href="#nowhere">y</a>'
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
    )
    (site / "notebooks" / f"{first}.html").write_text(_page(bad))
    (site / "index.html").write_text(_page(f'<nav class="bd-docs-nav">{nav.split("</a>", 1)[1]}</nav>'))
    problems, alt = check_book.check_site(site)
    found = "\n".join(problems)
    for expected in (
        "a traceback",
        "written to stderr",
        "DataFallbackWarning",
        "a machine path",
        "MathJax from the network",
        "a link to nothing: missing.html",
        "a link to nothing: figure.png",
        "a link to nothing: ../_images/a.png",
        "a link to a missing anchor: #nowhere",
        f"chapters missing from the navigation: ['{first}']",
    ):
        assert expected in found, f"{expected!r} not reported in:\n{found}"
    assert alt[first] == (0, 2), "a figure without alt text (or with its path as alt) is counted"


# A code cell draws a figure when, outside its comments, it opens one (plt.subplots, plt.figure), draws with
# pandas or seaborn (.plot(, .hist(, sns.), or calls a function it imported from course_lib.plotting.
DRAWS = re.compile(
    r"\bplt\.(subplots|figure|subplot|plot|hist|bar|scatter|imshow)\(|\bsns\.\w+\(|\.plot\(|\.hist\(|\.imshow\("
    r"|\bplotting\.\w+\("
)
IMPORTS_PLOTTING = re.compile(r"^from course_lib\.plotting import \(?([\w\s,]*)\)?", flags=re.M)


def figure_cells_without_alt(path: Path) -> list[str]:
    """The first line of each code cell of a jupytext chapter that draws a figure but has no non-empty
    alt text in its header's metadata, ``# %% mystnb={"image": {"alt": "..."}}``."""
    cells = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
    helpers = {
        name
        for c in cells
        for group in IMPORTS_PLOTTING.findall(c.source)
        for name in re.findall(r"\w+", group)
    }
    calls_helper = re.compile(rf"\b({'|'.join(sorted(helpers))})\(") if helpers else None
    missing = []
    for cell in cells:
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("#"))
        if not (DRAWS.search(code) or (calls_helper and calls_helper.search(code))):
            continue
        alt = ((cell.metadata.get("mystnb") or {}).get("image") or {}).get("alt")
        if not (isinstance(alt, str) and alt.strip()):
            missing.append(cell.source.strip().splitlines()[0])
    return missing


@pytest.mark.parametrize("chapter", sorted(ROOT.glob("notebooks/*.py")), ids=lambda path: path.stem)
def test_every_figure_cell_carries_alt_text(chapter):
    """The website's images get their alt text from the cell that draws them: a figure cell's header is
    ``# %% mystnb={"image": {"alt": "what the figure shows: axes, series, the point"}}``."""
    missing = figure_cells_without_alt(chapter)
    assert not missing, (
        f"notebooks/{chapter.name}: these figure cells have no alt text; give each header line "
        '`# %% mystnb={"image": {"alt": "..."}}` describing the figure:\n' + "\n".join(missing)
    )


def test_the_alt_text_check_finds_a_figure_cell_without_alt(tmp_path):
    chapter = tmp_path / "chapter.py"
    chapter.write_text(
        "# %%\nimport matplotlib.pyplot as plt\nfrom course_lib.plotting import (\n    plot_attention,\n)\n\n"
        '# %% mystnb={"image": {"alt": "A line"}}\nfig, ax = plt.subplots()\n\n'
        "# %%\nprices.plot()  # no alt\n\n"
        '# %% mystnb={"image": {"alt": " "}}\nplot_attention(weights)\n\n'
        "# %%\n# plt.subplots() in a comment draws nothing\nx = 1\n\n"
        "# %% [markdown]\n# plt.figure() in prose\n"
    )
    assert figure_cells_without_alt(chapter) == ["prices.plot()  # no alt", "plot_attention(weights)"]
