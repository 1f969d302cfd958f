"""The learner's copies of the chapters: stubs, friendly checks, Run All that previews a chapter."""

import ast
import json
import os
import re
from pathlib import Path

import jupytext
import pytest

from course_lib.exercises import ExerciseNotAnswered, require_answers, unanswered
from grader.build import meaningful_line
from scripts import build_notebooks

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))


def _exercises(path: Path) -> list[tuple[int, str, str]]:
    """(exercise number, solution source, self-check source) for each exercise of a chapter."""
    out, number, solution = [], None, None
    for cell in jupytext.read(path).cells:
        match = build_notebooks.EXERCISE.search(cell.source) if cell.cell_type == "markdown" else None
        if match:
            number, solution = int(match.group(1)), None
        elif cell.cell_type == "code" and cell.source.lstrip().startswith("# SOLUTION"):
            solution = cell.source
        elif cell.cell_type == "code" and cell.source.lstrip().startswith(build_notebooks.SELF_CHECK):
            out.append((number, solution, cell.source))
    return out


class _Stubbed: ...


class _Answered:
    def __init__(self, n):
        self.n = n


def _stub_function(x, y=2):
    """A docstring alone is no answer."""
    ...


def test_unanswered_tells_stubs_from_answers():
    for stub in (..., (1, ...), [...], {"a": ...}, _stub_function, _Stubbed, lambda: None):
        assert unanswered(stub), stub
    for answer in (0, None, False, 0.5, "text", (1, 2), abs, _Answered, lambda x: x, _Answered(1)):
        assert not unanswered(answer), answer


def test_require_answers_names_the_exercise_and_what_is_left():
    require_answers(2, a=1, f=abs)  # answered: silent
    with pytest.raises(
        ExerciseNotAnswered, match=r"^Exercise 3 is not answered yet: replace each `\.\.\.`"
    ) as err:
        require_answers(3, done=1.0, vol=..., fit=_stub_function)
    assert "`vol`, `fit`" in str(err.value) and "`done`" not in str(err.value)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_chapter_guards_each_self_check_and_lets_run_all_continue(path):
    nb = build_notebooks.student_chapter(path)
    assert nb.metadata["kernelspec"] == build_notebooks.KERNEL, "learners' copies open with the course kernel"
    numbers = [n for n, _, _ in _exercises(path)]
    checks = [
        c
        for c in nb.cells
        if c.cell_type == "code" and c.source.lstrip().startswith(build_notebooks.SELF_CHECK)
    ]
    stubs = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(build_notebooks.STUB)]
    assert len(checks) == len(numbers) == len(stubs) > 0
    for number, cell in zip(numbers, checks, strict=True):
        assert build_notebooks.RAISES in cell.metadata.get("tags", []), (
            f"exercise {number}: Run All would stop here"
        )
        assert re.search(rf"^require_answers\({number}, \w+=\w+", cell.source, re.M), cell.source[:200]
        ast.parse(cell.source)
    for cell in stubs:
        assert build_notebooks.RAISES in cell.metadata.get("tags", [])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_self_check_prints_a_pass_message(path):
    for number, _, check in _exercises(path):
        assert re.search(rf"print\(\s*f?[\"']Exercise {number} passed", check), (
            f"exercise {number} prints no pass message"
        )


def _calls(source: str) -> set[str]:
    """Every call with at least two arguments, as source text (what a learner could copy)."""
    tree = ast.parse(source)
    return {
        ast.unparse(n)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and len(n.args) + len(n.keywords) >= 2
    }


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_self_checks_do_not_contain_the_solution(path):
    exercises = _exercises(path)
    answers_and_checks = {source for _, solution, check in exercises for source in (solution, check)}
    # what the learner sees anyway (the prompt, the chapter's code) is no secret
    shown = "\n".join(c.source for c in jupytext.read(path).cells if c.source not in answers_and_checks)
    shown_lines = {line.strip() for line in shown.splitlines()}
    for number, solution, check in exercises:
        lines = {line.strip() for line in solution.splitlines() if meaningful_line(line)} - shown_lines
        copied = lines & {line.strip() for line in check.splitlines()}
        assert not copied, f"exercise {number}: the self-check repeats solution lines {sorted(copied)}"
        calls = {c for c in _calls(solution) & _calls(check) if c not in shown}
        assert not calls, f"exercise {number}: the self-check makes the solution's own calls {sorted(calls)}"


def test_workspace_copies_name_the_kernel_that_setup_installs(tmp_path):
    setup = (ROOT / "scripts" / "setup_env.sh").read_text()
    assert (
        f'--name {build_notebooks.KERNEL["name"]} --display-name "{build_notebooks.KERNEL["display_name"]}"'
        in setup
    )
    assert (
        f"--KernelSpecManager.allowed_kernelspecs={build_notebooks.KERNEL['name']}"
        in (ROOT / "Makefile").read_text()
    )
    src = tmp_path / "src.ipynb"
    jupytext.write(build_notebooks.student_chapter(CHAPTERS[0]), src, fmt="ipynb")
    nb = json.loads(src.read_text())
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src.write_text(json.dumps(nb))
    build_notebooks._copy_with_course_kernel(src, tmp_path / "copy.ipynb")
    assert (
        json.loads((tmp_path / "copy.ipynb").read_text())["metadata"]["kernelspec"] == build_notebooks.KERNEL
    )


def _run_all_on_a_learner_copy(path, tmp_path, monkeypatch):
    """A fresh learner's copy, answers untouched: every cell runs, each exercise says it is unanswered."""
    from nbclient import NotebookClient

    (dest := tmp_path / "workspace").mkdir()
    built = {p.stem: p for p in build_notebooks.build_chapters(tmp_path / "dist")}
    build_notebooks._copy_with_course_kernel(
        built[path.stem], dest / f"{path.stem}.ipynb"
    )  # as `make lab` does
    nb = jupytext.read(dest / f"{path.stem}.ipynb")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "agg")
    # the course kernel need not be installed where the tests run: the current interpreter's is the same
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[-1].get("execution_count") is not None, "Run All stopped before the last cell"
    reports, other_errors = [], []
    for cell in code:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if cell.source.lstrip().startswith(build_notebooks.SELF_CHECK):
            assert [e["ename"] for e in errors] == ["ExerciseNotAnswered"], cell.source[:300]
            reports.append(errors[0]["evalue"])
        elif errors:
            other_errors.append((cell.source[:80], errors[0]["ename"], errors[0]["evalue"]))
    assert not other_errors, f"cells other than the self-checks failed: {other_errors}"
    numbers = [n for n, _, _ in _exercises(path)]
    assert [int(re.match(r"Exercise (\d+) is not answered yet", r).group(1)) for r in reports] == numbers


def _learner_copy_test(path):
    @pytest.mark.slow
    def test_run_all_reaches_the_end(self, tmp_path, monkeypatch):
        _run_all_on_a_learner_copy(path, tmp_path, monkeypatch)

    return test_run_all_reaches_the_end


# One class per chapter: `make test` runs with `--dist loadscope`, which keeps each test file (and each
# notebook's cells) on one worker but gives every class its own unit, so these long runs spread.
for _path in CHAPTERS:
    _name = "TestLearnerCopy_" + _path.stem
    globals()[_name] = type(_name, (), {"test_run_all_reaches_the_end": _learner_copy_test(_path)})


def test_jupyter_shows_the_sentence_not_a_traceback():
    with pytest.raises(ExerciseNotAnswered) as err:
        require_answers(1, vol=...)
    (line,) = err.value._render_traceback_()  # IPython's hook: these lines replace the traceback
    assert "ExerciseNotAnswered" in line and "Exercise 1 is not answered yet" in line
