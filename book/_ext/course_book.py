"""The course's own Sphinx additions: a download line on every chapter, and MathJax served from the site.

* Every chapter page (``notebooks/NN_*``) starts with "Download this chapter": the notebook as
  ``.ipynb`` (built from the py:percent source by jupytext, no outputs: run it in the course's
  environment) and the source itself; both files are written next to the page.
* A chapter's output that names the build's temporary folder (conf.py sets ``TMPDIR``) says ``$TMPDIR``.
* MathJax 2.7 is copied from the ``jupyter-server-mathjax`` package into ``_static/mathjax`` (conf.py's
  ``mathjax_path`` points there), so formulas render with no network.
"""

import io
import os
import re
import shutil
from pathlib import Path

import jupytext
from docutils import nodes
from docutils.core import publish_doctree

CHAPTERS = "notebooks/"
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}  # the build's interpreter
LANGUAGE = {"name": "python", "pygments_lexer": "ipython3"}


def read_chapter(text: str):
    """A py:percent chapter as a notebook for MyST-NB (conf.py's ``nb_custom_formats``), in Python."""
    notebook = jupytext.reads(text, fmt="py:percent")
    notebook.metadata["kernelspec"] = dict(KERNEL)
    notebook.metadata["language_info"] = dict(LANGUAGE)
    return notebook


def _chapter(docname: str) -> bool:
    return docname.startswith(CHAPTERS)


def add_download_line(app, doctree, docname):
    """Put "Download this chapter: notebook (.ipynb), source (.py)" under the chapter's title."""
    if not _chapter(docname):
        return
    stem = docname[len(CHAPTERS) :]
    line = nodes.paragraph(classes=["course-download"])
    line += nodes.Text("Download this chapter: ")
    line += nodes.reference("", "notebook (.ipynb)", refuri=f"{stem}.ipynb", classes=["download"])
    line += nodes.Text(", to run in the course's environment (make lab); ")
    line += nodes.reference("", "source (py:percent)", refuri=f"{stem}.py", classes=["download"])
    line += nodes.Text(".")
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None or not isinstance(section[0], nodes.title):
        doctree.insert(0, line)
    else:
        section.insert(1, line)


def hide_temporary_folder(app, doctree, docname):
    """A chapter that prints where it keeps its files shows ``$TMPDIR/...``, not this machine's path."""
    if not _chapter(docname):
        return
    folder = os.environ.get("TMPDIR", "")
    if not folder:
        return
    for node in doctree.findall(nodes.literal_block):
        text = node.astext()
        if folder in text:
            text = text.replace(folder, "$TMPDIR")
            node.rawsource = text  # what Sphinx highlights
            node.clear()
            node += nodes.Text(text)


def write_downloads(app, exception):
    """The chapters' .ipynb and .py files beside their pages, and MathJax under _static/mathjax."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for docname in sorted(app.env.found_docs):
        if not _chapter(docname):
            continue
        source = Path(app.env.doc2path(docname))
        target = out / docname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target.with_suffix(".py"))
        notebook = read_chapter(source.read_text())
        jupytext.write(notebook, target.with_suffix(".ipynb"))
    import jupyter_server_mathjax

    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(mathjax, out / "_static" / "mathjax", dirs_exist_ok=True)


INLINE_LITERAL = re.compile(r"(``.+?``)")
LONE_STAR = re.compile(
    r"(?<![\w*\\])\*(?=\w)(?![^*]*\w\*(?!\w))"
)  # a `*` that opens no emphasis: (B, H, *output)
ROLE = re.compile(r":[\w:+-]+:`([^`]+)`")
DIRECTIVE = re.compile(r"(?m)^(\s*)\.\. [\w:-]+::.*$")
PLAIN_TEXT = ("Unexpected indentation", "Block quote ends without", "Definition list ends without")


def _outside_literals(line: str, change) -> str:
    return "".join(p if p.startswith("``") else change(p) for p in INLINE_LITERAL.split(line))


def _structure_problems(lines: list[str]) -> str:
    """docutils' complaints about the layout of a docstring (roles and references left aside)."""
    # Sphinx's roles and directives need its environment: for this check, a role is a literal and a
    # directive a literal block (the same layout).
    text = ROLE.sub(r"``\1``", "\n".join(lines))
    text = DIRECTIVE.sub(r"\1::", text)
    stream = io.StringIO()
    publish_doctree(
        text,
        settings_overrides={
            "report_level": 2,
            "halt_level": 5,
            "warning_stream": stream,
            "input_encoding": "unicode",
        },
    )
    return stream.getvalue()


def _indented_blocks_as_literal(lines: list[str]) -> list[str]:
    """Equations laid out by indentation in plain text (not reStructuredText) become literal blocks."""
    out, body, in_block = [], 0, False
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            out.append(line)
            continue
        if in_block and indent <= body:
            in_block = False
            if out and out[-1].strip():
                out.append("")
        if not in_block and out and indent > body:
            if out[-1].strip():
                out.append("")
            out += [" " * body + "::", ""]
            in_block = True
        out.append(line)
        if not in_block:
            stripped = line.lstrip()
            marker = re.match(r"([*-]|\d+\.) ", stripped)
            body = indent + (len(marker.group(0)) if marker else 0)
    return out


def plain_text_docstrings(app, what, name, obj, options, lines):
    """Make the library's docstrings, written for readers of the source, parse as reStructuredText.

    Bars are text, not substitutions (absolute values and norms, ``|x|``); where docutils finds the
    layout broken (equations aligned by indentation under a paragraph), the indented lines become
    literal blocks, shown as written; a ``*`` that opens no emphasis (``(B, H, *output)``) is text.
    """
    for i, line in enumerate(lines):
        if "|" in line:
            lines[i] = _outside_literals(line, lambda p: p.replace("|", "\\|"))
    problems = _structure_problems(lines)
    if "Inline emphasis start-string" in problems:
        for i, line in enumerate(lines):
            lines[i] = _outside_literals(line, lambda p: LONE_STAR.sub(r"\\*", p))
    if any(p in problems for p in PLAIN_TEXT):
        lines[:] = _indented_blocks_as_literal(lines)


def setup(app):
    app.connect("autodoc-process-docstring", plain_text_docstrings)
    app.connect("doctree-resolved", add_download_line)
    app.connect("doctree-resolved", hide_temporary_folder)
    app.connect("build-finished", write_downloads)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
