"""Build what instructors release: the graded assignments.

* Graded assignments: each master ``assignments/NN_*.py`` (py:percent, otter-grader's assign format)
  goes through ``otter assign`` into ``dist/assignments/NN_*/``:
  ``student/NN_*.ipynb`` (no solutions, no hidden tests, no outputs; public tests in its metadata for
  ``grader.check``) and ``autograder/`` (otter's autograder zip, the solutions notebook, and
  ``grading.json``: every test, the points, and the master's setup code, which ``make grade`` uses).

The learner's copies of the chapters and the ``workspace/`` that ``make lab`` opens are the course's,
not the grader's: ``scripts/build_notebooks.py`` builds them with what both need from here
(:func:`read_py_notebook`, :func:`bound_names`, :func:`meaningful_line`, :func:`clean_metadata`,
:func:`build_assignment`). The grader never imports from ``scripts/``.
"""

import ast
import contextlib
import io
import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MASTERS = ROOT / "assignments"
DIST = ROOT / "dist"

BOUNDARY = re.compile(r"#\s+(begin|end)\s+(question|prompt|solution|tests)\s*$", re.I)
CONFIG = re.compile(r"#\s+assignment\s+config\s*$", re.I)
SOLUTION_MARK = re.compile(r"\s*#\s*SOLUTION(\s+NO\s+PROMPT)?\s*$")


@dataclass
class Question:
    name: str
    points: float
    answers: list[str] = field(default_factory=list)
    solution_lines: list[str] = field(default_factory=list)  # what otter removes: must never reach students
    hidden_lines: list[str] = field(default_factory=list)
    n_public: int = 0
    n_hidden: int = 0
    test_names: set[str] = field(default_factory=set)


@dataclass
class Master:
    path: Path
    name: str
    setup: str
    questions: list[Question]


# ----------------------------------------------------------------------------------------- masters


def read_py_notebook(path: Path):
    import jupytext

    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    return nb


def bound_names(tree: ast.Module) -> list[str]:
    """Names a cell defines at top level (also inside ``with``, ``if``, ``for``, ``try``; not in functions)."""
    names = []

    def visit(body):
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.append(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    names.extend(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, ast.With | ast.If | ast.For | ast.While | ast.Try):
                for field_name in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field_name, []))
            elif isinstance(node, ast.ExceptHandler):
                visit(node.body)

    visit(tree.body)
    return list(dict.fromkeys(names))


def _loaded_names(code: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}


def _secret_lines(source: str) -> list[str]:
    """Lines that otter strips from a solution cell (``# SOLUTION`` lines and BEGIN/END SOLUTION blocks)."""
    out, inside = [], False
    for line in source.splitlines():
        s = line.strip()
        if s.endswith("# END SOLUTION"):
            inside = False
        elif s.startswith("# BEGIN SOLUTION"):
            inside = True
        elif inside or SOLUTION_MARK.search(line):
            out.append(SOLUTION_MARK.sub("", line).strip())
    return [s for s in out if meaningful_line(s)]


def meaningful_line(line: str) -> bool:
    """A line that could give an answer away (not blank, a comment, a placeholder or a bare keyword)."""
    s = line.strip()
    return (
        bool(s)
        and not s.startswith("#")
        and s not in ("...", "pass", "return", "else:", "try:")
        and len(s) > 6
    )


def _unmarked_solution_lines(source: str) -> list[str]:
    """Solution-cell lines otter would KEEP for students, other than signatures, imports and comments."""
    keep, inside = [], False
    for line in source.splitlines():
        s = line.strip()
        if s.endswith("# END SOLUTION"):
            inside = False
            continue
        if s.startswith("# BEGIN SOLUTION"):
            inside = True
            continue
        if inside or SOLUTION_MARK.search(line) or not s or s.startswith(("#", "@", "import ", "from ")):
            continue
        if (
            re.match(r"(async\s+)?def\s|class\s", s)
            or s.startswith(('"""', "'''"))
            or s.endswith(("):", '"""'))
        ):
            continue
        keep.append(s)
    return keep


def analyse_master(path: Path) -> Master:
    """Parse a master and check the rules that keep grading sound; raises ``ValueError`` naming the problem."""
    nb = read_py_notebook(path)
    name, setup, questions, public = path.stem, [], [], set()
    block: list[str] = []
    q: Question | None = None
    for i, cell in enumerate(nb.cells):
        src = cell.source
        first = src.strip().splitlines()[0] if src.strip() else ""
        if cell.cell_type == "raw" and CONFIG.match(first):
            config = yaml.safe_load("\n".join(src.strip().splitlines()[1:])) or {}
            if config.get("name") != name:
                raise ValueError(f"{path.name}: the ASSIGNMENT CONFIG name must be {name!r}")
            continue
        m = BOUNDARY.match(first) if cell.cell_type == "raw" else None
        if m:
            kind, what = m.group(1).lower(), m.group(2).lower()
            if kind == "begin":
                block.append(what)
                if what == "question":
                    config = yaml.safe_load("\n".join(src.strip().splitlines()[1:])) or {}
                    if "name" not in config or "points" not in config:
                        raise ValueError(f"{path.name}: cell {i}: a question needs a name and points")
                    q = Question(str(config["name"]), float(config["points"]))
                    questions.append(q)
            else:
                if not block or block.pop() != what:
                    raise ValueError(f"{path.name}: cell {i}: END {what.upper()} without its BEGIN")
                if what == "question":
                    q = None
            continue
        where = block[-1] if block else None
        hidden_test = (
            where == "tests" and first.startswith("#") and re.search(r"\bhidden\b", first, re.I) is not None
        )
        if where != "solution" and not hidden_test:
            public |= {s.strip() for s in src.splitlines()}
        if cell.cell_type != "code":
            continue
        if where == "solution":
            unmarked = _unmarked_solution_lines(src)
            if unmarked:
                raise ValueError(
                    f"{path.name}: question {q.name}: solution lines without a SOLUTION marker "
                    f"would be shown to students: {unmarked[:3]}"
                )
            q.answers += [a for a in bound_names(ast.parse(src)) if a not in q.answers]
            q.solution_lines += _secret_lines(src)
        elif where == "tests":
            hidden = hidden_test
            q.n_hidden += hidden
            q.n_public += not hidden
            q.test_names |= _loaded_names(src)
            if hidden:
                q.hidden_lines += [s.strip() for s in src.splitlines()[1:] if meaningful_line(s)]
        else:
            setup.append(src)
    if block:
        raise ValueError(f"{path.name}: unclosed {block[-1].upper()} block")
    for q in questions:  # a line students see anyway (in a public test, say) is no secret
        q.solution_lines = [s for s in q.solution_lines if s not in public]
        q.hidden_lines = [s for s in q.hidden_lines if s not in public]
    master = Master(path, name, "\n\n".join(setup), questions)
    _check_master(master)
    return master


def _check_master(m: Master) -> None:
    if len(m.questions) < 3:
        raise ValueError(f"{m.path.name}: at least three graded questions are needed")
    setup_names = _loaded_names(m.setup)
    all_answers = {a: q.name for q in m.questions for a in q.answers}
    for q in m.questions:
        if not q.answers:
            raise ValueError(f"{m.path.name}: question {q.name} has no solution cell defining an answer")
        if q.n_public < 1 or q.n_hidden < 1:
            raise ValueError(
                f"{m.path.name}: question {q.name} needs at least one public and one hidden test"
            )
        foreign = {a for a in q.test_names if all_answers.get(a, q.name) != q.name}
        if foreign:
            raise ValueError(
                f"{m.path.name}: tests of {q.name} use answers of other questions: {sorted(foreign)}"
            )
    leaked = setup_names & set(all_answers)
    if leaked:
        raise ValueError(
            f"{m.path.name}: code outside the questions uses answer variables {sorted(leaked)}; "
            "the grader runs that code without the student's answers"
        )


def clean_metadata(path: Path) -> None:
    nb = json.loads(path.read_text())
    nb["metadata"].pop("jupytext", None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("lines_to_next_cell", None)
    path.write_text(json.dumps(nb, indent=1) + "\n")


def build_assignment(master_path: Path, dist: Path = DIST) -> Path:
    """otter assign one master into ``dist/assignments/<name>/``; returns that folder."""
    import jupytext
    from otter.assign import main as otter_assign

    master = analyse_master(master_path)
    out = dist / "assignments" / master.name
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = Path(tmp) / f"{master.name}.ipynb"
        jupytext.write(read_py_notebook(master_path), ipynb, fmt="ipynb")
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            otter_assign(str(ipynb), str(out), no_pdfs=True, no_run_tests=True)
    ag = out / "autograder"
    zips = sorted(ag.glob("*.zip"))
    zips[-1].rename(ag / "autograder.zip")
    for stale in zips[:-1]:
        stale.unlink()
    for nb_path in (ag / f"{master.name}.ipynb", out / "student" / f"{master.name}.ipynb"):
        clean_metadata(nb_path)
    tests = {}
    with zipfile.ZipFile(ag / "autograder.zip") as z:
        for member in z.namelist():
            if member.startswith("tests/") and member.endswith(".py"):
                tests[Path(member).stem] = _ok_spec(z.read(member).decode())
    questions = []
    for q in master.questions:
        spec = tests[q.name]
        possible = sum(c.get("points") or 0 for c in spec["suites"][0]["cases"])
        questions.append(
            {
                "name": q.name,
                "points": possible or q.points,
                "answers": q.answers,
                "tests": spec,
            }
        )
    bundle = {"name": master.name, "setup": master.setup, "questions": questions}
    (ag / "grading.json").write_text(json.dumps(bundle, indent=1) + "\n")
    leaks = find_leaks(master, out / "student")
    if leaks:
        raise RuntimeError(f"{master.name}: the student version contains secret lines: {leaks[:3]}")
    return out


def _ok_spec(text: str) -> dict:
    """Read otter's ``test = {...}`` file as data (never executed)."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "test" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise ValueError("no test dict in otter test file")


def find_leaks(master: Master, student_dir: Path) -> list[str]:
    """Solution or hidden-test lines of ``master`` that appear anywhere in the student folder."""
    text = "\n".join(p.read_text(errors="replace") for p in student_dir.rglob("*") if p.is_file())
    # compare on the JSON-escaped form as well, since notebooks store sources as JSON strings
    secrets = [s for q in master.questions for s in q.solution_lines + q.hidden_lines]
    return [s for s in secrets if s in text or json.dumps(s)[1:-1] in text]


# ----------------------------------------------------------------------------------------- all


def masters() -> list[Path]:
    return sorted(MASTERS.glob("[0-9][0-9]*_*.py"))


def build_all(dist: Path = DIST, log=print) -> list[Path]:
    built = []
    for master in masters():
        built.append(build_assignment(master, dist))
        log(
            f"assignment {master.stem}: {built[-1].relative_to(dist.parent) if dist.parent in built[-1].parents else built[-1]}"
        )
    return built
