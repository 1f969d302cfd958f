"""The gradebook (``gradebook.csv``) and one feedback file per student, written atomically, never
through a symbolic link."""

import contextlib
import csv
import io
import os
import tempfile
from pathlib import Path

from .records import Bundle, Report


def feedback_text(bundle: Bundle, report: Report) -> str:
    lines = [
        f"# Feedback: {report.student}, assignment {bundle.name}",
        "",
        f"**Score: {report.total:g} / {bundle.possible:g}**",
        "",
    ]
    if report.problems:
        lines += ["## While running your notebook", ""] + [f"- {p}" for p in report.problems] + [""]
    for r in report.results:
        lines += [f"## {r.name}: {r.score:g} / {r.possible:g}", ""]
        if r.reason:
            lines += [f"- {r.reason}"]
        for i, (hidden, passed, message) in enumerate(r.cases, start=1):
            kind = "hidden test" if hidden else "public test"
            lines.append(f"- {kind} {i}: passed" if passed else f"- {kind} {i}: failed: {message}")
        lines.append("")
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    """Write a new file beside ``path`` and rename it over: a symlink at ``path`` is replaced, never followed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _real_dir(path: Path) -> None:
    if path.is_symlink():
        raise RuntimeError(f"{path} is a symbolic link: refusing to write grades through it")
    path.mkdir(parents=True, exist_ok=True)


def cell(text: str) -> str:
    """A gradebook cell that a spreadsheet shows as text: a leading ``=``, ``+``, ``-``, ``@`` (or tab,
    carriage return) would start a formula, so such a cell gets a leading apostrophe (OWASP's advice)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_outputs(bundle: Bundle, reports: list[Report], grades: Path) -> Path:
    _real_dir(grades)
    feedback = grades / "feedback"
    _real_dir(feedback)
    names = [q["name"] for q in bundle.questions]
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["student", *names, "total", "possible", "notes", "file", "feedback"])
    for rep in sorted(reports, key=lambda r: r.student):
        scores = {r.name: r.score for r in rep.results}
        w.writerow(
            [
                cell(rep.student),
                *[f"{scores[n]:g}" for n in names],
                f"{rep.total:g}",
                f"{bundle.possible:g}",
                cell("; ".join(rep.problems)),
                cell(rep.rel),
                f"feedback/{rep.feedback}",
            ]
        )
    for rep in reports:
        _write_atomic(feedback / rep.feedback, feedback_text(bundle, rep))
    gradebook = grades / "gradebook.csv"
    _write_atomic(gradebook, out.getvalue())
    return gradebook
