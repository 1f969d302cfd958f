"""The course as a website: Sphinx, MyST-NB and the book theme, all from PyPI (`pip install -e ".[book]"`).

`make book` builds it into build/site/ (a plain folder for any static host). The chapters are read
straight from their py:percent sources (notebooks/, linked here as book/notebooks) through jupytext;
they are executed once and cached (jupyter-cache, build/book-cache/): a rebuild re-executes only a
chapter whose code changed. MathJax is copied from the `jupyter-server-mathjax` package, so formulas
render without a network. Environment:

* ``BOOK_EXECUTE``: ``cache`` (default) or ``off`` (structure only, no outputs: tests/test_book.py);
* ``BOOK_CACHE``: the execution cache folder (default build/book-cache).
"""

import os
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
sys.path.insert(0, str(ROOT))  # autodoc imports course_lib from this checkout
sys.path.insert(0, str(BOOK / "_ext"))
os.environ.setdefault("COURSE_OFFLINE", "1")  # the packaged data: the same pages with or without a network
# The chapters' kernels inherit this environment: figures inline whatever MPLBACKEND the shell has (agg
# would draw nothing), and temporary files in one known folder that the pages name "$TMPDIR".
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
BOOK_TMP = ROOT / "build" / "book-tmp"
BOOK_TMP.mkdir(parents=True, exist_ok=True)
os.environ["TMPDIR"] = str(BOOK_TMP)

project = "Deep Learning for Financial Time Series"
author = "the course's contributors"
copyright = "the course's contributors, MIT licence"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.githubpages",  # .nojekyll: GitHub Pages then serves _static/ as it is
    "course_book",  # book/_ext/course_book.py: download links, offline MathJax
]

root_doc = "index"
# The pages: this folder's, the chapters, the learners' and instructors' documents, the reference.
# (docs/architecture.md, the contributors' map of the code, links into the repository: it stays there.)
include_patterns = [
    "index.md",
    "notebooks/[0-9][0-9]*_*.py",
    "docs/errata.md",
    "docs/leaderboard.md",
    "docs/holdout.md",
    "docs/instructors.md",
    "docs/capstone_brief.md",
    "reference/**",
]
exclude_patterns = ["**/.ipynb_checkpoints"]
templates_path = ["_templates"]
html_static_path: list[str] = []  # MathJax is copied into the site's _static/ after the build
html_title = "Deep Learning for Financial Time Series"
html_theme = "sphinx_book_theme"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
html_copy_source = True
html_show_sphinx = False
suppress_warnings = ["myst.header"]  # chapters start their sections at ## under one # title

# The chapters: py:percent text read by jupytext, executed once per change of their code.
nb_custom_formats = {".py": "course_book.read_chapter"}
source_suffix = {
    ".rst": "restructuredtext",
    ".md": "myst-nb",
    ".py": "myst-nb",
}  # .rst first: autosummary writes rst
nb_execution_mode = os.environ.get("BOOK_EXECUTE", "cache")
nb_execution_cache_path = os.environ.get("BOOK_CACHE", str(ROOT / "build" / "book-cache"))
nb_execution_timeout = 900  # one chapter, in seconds (each runs in about a minute or two)
nb_execution_raise_on_error = True  # a chapter that fails stops the build
nb_execution_show_tb = True
nb_output_stderr = "warn"  # stderr on a page is a build warning (make book fails on warnings)
nb_merge_streams = True
nb_ipywidgets_js = {}  # no require.js from a CDN: the pages are static (a closed progress bar leaves only state)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_update_mathjax = False  # MathJax 2 (bundled) reads its own configuration below
myst_heading_anchors = 3

# Maths offline: MathJax 2.7 from the jupyter-server-mathjax package (the build Jupyter's own server
# uses), copied into _static/mathjax; it ships one configuration and the STIX web fonts.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True},
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
    "showMathMenu": False,
    "messageStyle": "none",
}

# The library reference: course_lib's docstrings (equations and papers included).
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # torch's own docstrings (Module.forward, ...) are torch's to document
napoleon_google_docstring = True
napoleon_numpy_docstring = True
