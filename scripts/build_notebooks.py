"""The course's notebooks built from their py:percent sources in notebooks/ (never touched).

* ``--out DIR``: the full chapters as ``.ipynb``, with the solutions; ``make test`` (nbval runs these
  copies) and ``make book`` use them.
* ``--learner DIST``: the learner's copies, ``DIST/chapters/NN_*.ipynb``, with each ``# SOLUTION``
  cell replaced by a stub; each ``# SELF-CHECK`` cell stays and first checks, with
  ``course_lib.exercises.require_answers``, that its exercise is answered ("Exercise N is not answered
  yet: replace each `...`"). Answer and self-check cells carry the ``raises-exception`` tag, so Run
  All goes on past an unanswered exercise (to preview the chapter) while the failure shows in place.
  A solution line left in a copy stops the build.
* ``--workspace DEST``: the learner's ``workspace/`` that ``make lab`` opens: copies of the chapters
  and of the graded assignments' student versions (built by ``grader.build`` if missing), naming the
  course kernel; existing files are never overwritten, so a learner's work survives rebuilds.
"""

import argparse
import ast
import json
import re
import shutil
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file (python scripts/build_notebooks.py): grader is beside it
    sys.path.insert(0, str(ROOT))

from grader.build import (
    DIST,
    bound_names,
    build_assignment,
    clean_metadata,
    masters,
    meaningful_line,
    read_py_notebook,
)

CHAPTERS = ROOT / "notebooks"
STUB = "# YOUR CODE HERE: replace each `...` with your answer"
EXERCISE = re.compile(r"^#+\s*Exercise\s+(\d+)\b", re.M)  # a chapter's "### Exercise 2 (3 points): ..."
SELF_CHECK = "# SELF-CHECK"
RAISES = "raises-exception"  # Jupyter's tag: Run All (and nbclient, nbval) go on past this cell's error
# The kernel that `make setup` installs (scripts/setup_env.sh); learners' copies use it.
KERNEL = {"name": "dlfts", "display_name": "Python (DL for financial time series)", "language": "python"}


# ----------------------------------------------------------------------------------------- full chapters


def full_chapters(out: Path, src: Path = CHAPTERS) -> list[Path]:
    """Every chapter of ``src`` as ``.ipynb`` in ``out`` (emptied first), solutions and all."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sources = sorted(src.glob("[0-9][0-9]*_*.py"))
    if not sources:
        raise SystemExit(f"no notebooks found in {src}")
    written = []
    for path in sources:
        nb = jupytext.read(path, fmt="py:percent")
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        jupytext.write(nb, out / f"{path.stem}.ipynb")
        written.append(out / f"{path.stem}.ipynb")
    return written


# ----------------------------------------------------------------------------------------- learner copies


def _stub(source: str) -> str:
    """A ``# SOLUTION`` cell becomes the names it must define, with ``...`` as their value or body."""
    body = "\n".join(line for line in source.splitlines() if line.strip() != "# SOLUTION")
    out = [STUB]
    try:
        tree = ast.parse(body)
    except SyntaxError:
        return "\n".join([*out, "..."])
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.insert(1, ast.unparse(node))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            head = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
            doc = ast.get_docstring(node)
            out += [f"{head} {node.name}({ast.unparse(node.args)}):"]
            out += [f'    """{doc}"""'] if doc else []
            out += ["    ...", ""]
        elif isinstance(node, ast.ClassDef):
            bases = ", ".join(ast.unparse(b) for b in node.bases)
            out += [f"class {node.name}({bases}):" if bases else f"class {node.name}:", "    ...", ""]
        else:
            names = bound_names(ast.Module(body=[node], type_ignores=[]))
            out += [f"{name} = ..." for name in names if not name.startswith("_")]  # not the helpers
    return "\n".join(out).rstrip() + "\n"


def _stub_names(stub: str) -> list[str]:
    """The answers a stub asks for: its functions, classes and ``name = ...`` lines."""
    names = []
    for node in ast.parse(stub).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def _tag(cell, tag: str = RAISES) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def student_chapter(path: Path):
    """The chapter notebook with every ``# SOLUTION`` cell replaced by a stub.

    The self-check after a stub first calls ``require_answers(N, name=name, ...)`` for the stub's
    names (exercise N from the ``### Exercise N`` heading above it); both cells get the
    ``raises-exception`` tag so that Run All continues past an exercise that is not answered yet.
    """
    nb = read_py_notebook(path)
    nb.metadata["kernelspec"] = dict(KERNEL)
    exercise, answers = None, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = EXERCISE.search(cell.source)
            if match:
                exercise, answers = int(match.group(1)), []
            continue
        if cell.cell_type != "code":
            continue
        source = cell.source.lstrip()
        if source.startswith("# SOLUTION"):
            cell.source = _stub(cell.source)
            answers += [n for n in _stub_names(cell.source) if n not in answers]
            _tag(cell)
        elif source.startswith(SELF_CHECK) and exercise is not None and answers:
            first, _, rest = source.partition("\n")
            arguments = ", ".join(f"{n}={n}" for n in answers)
            guard = f"from course_lib.exercises import require_answers\n\nrequire_answers({exercise}, {arguments})\n"
            cell.source = f"{first}\n{guard}{rest}"
            _tag(cell)
    return nb


def chapter_leaks(path: Path, student_nb) -> list[str]:
    """Lines of the chapter's ``# SOLUTION`` cells (found nowhere else in it) left in the student version."""
    secret, public = set(), set()
    for cell in read_py_notebook(path).cells:
        lines = {s.strip() for s in cell.source.splitlines() if meaningful_line(s)}
        solution = cell.cell_type == "code" and cell.source.lstrip().startswith("# SOLUTION")
        secret, public = (secret | lines, public) if solution else (secret, public | lines)
    student = {s.strip() for c in student_nb.cells if c.cell_type == "code" for s in c.source.splitlines()}
    skeleton = ("def ", "async def ", "class ", "import ", "from ", '"""')
    return sorted(
        s for s in (secret - public) & student if not s.startswith(skeleton) and not s.endswith("= ...")
    )


def build_chapters(dist: Path = DIST) -> list[Path]:
    """The learner copies of every chapter in ``dist/chapters/``; a solution line left in one stops the build."""
    out = dist / "chapters"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(CHAPTERS.glob("[0-9][0-9]*_*.py")):
        nb = student_chapter(src)
        leaks = chapter_leaks(src, nb)
        if leaks:
            raise RuntimeError(f"{src.name}: the student version still contains solution lines: {leaks[:3]}")
        target = out / f"{src.stem}.ipynb"
        jupytext.write(nb, target, fmt="ipynb")
        clean_metadata(target)
        written.append(target)
    return written


def _copy_with_course_kernel(src: Path, dst: Path) -> None:
    """Copy a notebook, naming the course kernel so that it opens in the course's environment."""
    nb = json.loads(src.read_text())
    nb["metadata"]["kernelspec"] = dict(KERNEL)
    dst.write_text(json.dumps(nb, indent=1) + "\n")


def workspace(dest: Path, dist: Path = DIST, log=print) -> Path:
    """Give the learner student versions in ``dest`` (built if needed); never overwrite their files."""
    wanted = {f"chapters/{p.stem}.ipynb": None for p in CHAPTERS.glob("[0-9][0-9]*_*.py")}
    wanted |= {f"assignments/{p.stem}.ipynb": p for p in masters()}
    missing = [rel for rel in wanted if not (dest / rel).exists()]
    if not missing:
        return dest
    if any(rel.startswith("chapters/") for rel in missing):
        build_chapters(dist)  # always fresh: a stale dist/ must not hand out an old chapter
    for rel in missing:
        if rel.startswith("assignments/"):
            stem = Path(rel).stem
            src = dist / "assignments" / stem / "student" / f"{stem}.ipynb"
            if not src.exists():
                build_assignment(wanted[rel], dist)
        else:
            src = dist / rel
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        _copy_with_course_kernel(src, dest / rel)
        log(f"workspace: added {rel}")
    return dest


# ----------------------------------------------------------------------------------------- command line


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="folder for the full chapters as .ipynb files (emptied first)")
    what.add_argument("--learner", type=Path, metavar="DIST", help="learner copies into DIST/chapters/")
    what.add_argument("--workspace", type=Path, metavar="DEST", help="add missing learner copies to DEST")
    parser.add_argument("--src", type=Path, default=CHAPTERS, help="folder of py:percent notebooks (--out)")
    parser.add_argument("--dist", type=Path, default=DIST, help="where built copies go (--workspace)")
    args = parser.parse_args(argv)
    if args.out is not None:
        written = full_chapters(args.out, args.src)
        print(f"converted {len(written)} notebooks into {args.out}")
    elif args.learner is not None:
        for chapter in build_chapters(args.learner):
            print(f"chapter    {chapter.stem}: student version written")
    else:
        workspace(args.workspace, args.dist)


if __name__ == "__main__":
    main()
