"""Graded assignments: masters build, solutions get full marks, student versions get zero and hide the
answers, and a folder of hostile submissions still produces a complete gradebook."""

import csv
import json
import shutil
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grader import build, codec
from grader.__main__ import verify
from grader.grade import Bundle, Replay, grade_folder, parse_notebook, plan_steps, start_sandboxes

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "bad_submissions"
MASTERS = build.masters()


# ----------------------------------------------------------------------------------------- fast


def test_every_chapter_has_a_master():
    chapters = {p.name.split("_")[0] for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.py")}
    assert chapters <= {p.name.split("_")[0] for p in MASTERS}, "write assignments/NN_*.py for every chapter"


@pytest.mark.parametrize("path", MASTERS, ids=[p.stem for p in MASTERS])
def test_master_has_graded_questions_with_public_and_hidden_tests(path):
    master = build.analyse_master(path)
    assert len(master.questions) >= 3
    for q in master.questions:
        assert q.points > 0 and q.answers and q.n_public >= 1 and q.n_hidden >= 1, q.name


def _write_master(tmp_path, body: str) -> Path:
    path = tmp_path / "99_demo.py"
    head = "# %% [raw]\n# # ASSIGNMENT CONFIG\n# name: 99_demo\n\n# %%\nimport numpy as np\n\n"
    question = """# %% [raw]
# # BEGIN QUESTION
# name: q{n}
# points: 1

# %% [raw]
# # BEGIN SOLUTION

# %%
a{n} = {n}  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert a{n} == {n}

# %%
# HIDDEN
assert a{n} + 1 == {n} + 1

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

"""
    path.write_text(head + "".join(question.format(n=n) for n in (1, 2, 3)) + body)
    return path


def test_master_checks_catch_leaks_and_setup_that_needs_answers(tmp_path):
    build.analyse_master(_write_master(tmp_path, ""))  # the valid skeleton passes
    with pytest.raises(ValueError, match="uses answer variables"):
        build.analyse_master(_write_master(tmp_path, "# %%\nprint(a1)\n"))
    leaky = _write_master(tmp_path, "").read_text().replace("a1 = 1  # SOLUTION", "a1 = 1")
    (tmp_path / "99_demo.py").write_text(leaky)
    with pytest.raises(ValueError, match="without a SOLUTION marker"):
        build.analyse_master(tmp_path / "99_demo.py")


def test_chapter_solution_cells_become_stubs():
    source = "# SOLUTION\nimport math\n\n\ndef f(x, n=2):\n    \"\"\"Doc.\"\"\"\n    return math.sqrt(x) * n\n\n\ny, z = f(4), 3\n"
    stub = build._stub(source)
    assert "return math.sqrt" not in stub and "f(4)" not in stub
    ns = {}
    exec(stub, ns)
    assert ns["y"] is Ellipsis and ns["z"] is Ellipsis and ns["f"](1) is None


@dataclass
class _Point:
    x: float
    label: str


@pytest.mark.parametrize(
    "value",
    [
        None, True, 3, 2.5, float("nan"), "text", Ellipsis, [1, (2, 3)], {"a": {1: 2}},
        np.float64(1.5), np.arange(6.0).reshape(2, 3).T, np.array(["a", "bc"]), torch.arange(4).float(),
        pd.Series([1.0, 2.0], index=pd.date_range("2020-01-01", periods=2), name="r"),
        pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}), namedtuple("DM", "statistic pvalue")(-2.0, 0.01),
    ],
)
def test_codec_round_trips_data(value):
    back = codec.decode(json.loads(json.dumps(codec.encode(value))))
    assert codec.encode(back) == codec.encode(value)
    assert type(back) is type(value) or isinstance(value, tuple)


def test_codec_refuses_code_and_objects():
    assert isinstance(codec.decode(codec.encode(object())), codec.Unsupported)
    record = codec.decode(codec.encode(_Point(1.0, "p")))
    assert record.x == 1.0 and record.label == "p"
    with pytest.raises(ValueError):
        codec.decode({"__ndarray__": "", "dtype": "|O", "shape": [0]})  # no object arrays (pickles)
    with pytest.raises(ValueError):
        codec.decode({"__pickle__": "gASV"})
    with pytest.raises(TypeError, match="cannot transfer"):
        float(codec.Unsupported("socket"))


def test_replay_answers_only_recorded_calls():
    args = (np.ones(3), 2)
    replay = Replay("f", {codec.key(args, {}): [{"value": codec.encode(np.zeros(3))}]})
    assert np.array_equal(replay(*args), np.zeros(3))
    with pytest.raises(LookupError, match="not called with these arguments"):
        replay(*args)  # recorded once, so replayed once
    with pytest.raises(LookupError):
        Replay("f", {})(np.ones(3), 3)


def test_notebook_parsing_and_plan():
    with pytest.raises(ValueError, match="not valid notebook JSON"):
        parse_notebook(b'{"cells": [')
    with pytest.raises(ValueError, match="not a Jupyter notebook"):
        parse_notebook(b'{"a": 1}')
    nb = {"cells": [{"cell_type": "code", "source": ["import otter\n", 'grader = otter.Notebook("x.ipynb")']},
                    {"cell_type": "code", "source": "x = 1"}, {"cell_type": "markdown", "source": "hi"},
                    {"cell_type": "code", "source": 'grader.check("q1")'}]}
    steps = plan_steps(parse_notebook(json.dumps(nb).encode()))
    assert [s["kind"] for s in steps] == ["skip", "code", "check"] and steps[2]["question"] == "q1"


# ----------------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    build.build_all(out, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def sandboxes(dist):
    boxes = start_sandboxes([Bundle.load(d / "autograder") for d in sorted((dist / "assignments").iterdir())])
    yield boxes
    boxes.close()


@pytest.mark.slow
def test_student_versions_hide_solutions_and_hidden_tests(dist):
    for path in MASTERS:
        master = build.analyse_master(path)
        student = dist / "assignments" / path.stem / "student"
        assert sorted(p.name for p in student.iterdir()) == [f"{path.stem}.ipynb"]
        assert build.find_leaks(master, student) == [], f"{path.stem}: solution or hidden-test lines leaked"
        nb = json.loads((student / f"{path.stem}.ipynb").read_text())
        tests = nb["metadata"]["otter"]["tests"]
        assert sorted(tests) == sorted(q.name for q in master.questions)
        assert not any(c["hidden"] for t in tests.values() for c in t["suites"][0]["cases"]), "hidden test shipped"
        assert not any(c.get("outputs") for c in nb["cells"]), "outputs shipped"
    for chapter in sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py")):
        student = json.loads((dist / "chapters" / f"{chapter.stem}.ipynb").read_text())
        text = "".join("".join(c["source"]) for c in student["cells"])
        assert build.chapter_leaks(chapter, build.student_chapter(chapter)) == []
        assert text.count("# SELF-CHECK") == chapter.read_text().count("# SELF-CHECK"), "self-checks kept"
        assert build.STUB in text


@pytest.mark.slow
def test_solutions_get_full_marks_and_student_versions_zero(dist, sandboxes):
    outcome = verify(dist, jobs=2, timeout=60, log=lambda *a: None, sandboxes=sandboxes)
    assert sorted(outcome) == [p.stem for p in MASTERS]
    for name, reports in outcome.items():
        sol, stu = reports["solutions"], reports["student_version"]
        assert sol.problems == [], f"{name}: the solutions notebook does not run cleanly: {sol.problems}"
        for r in sol.results:
            assert r.score == r.possible > 0, f"{name} {r.name}: solution scored {r.score}/{r.possible}: {r.cases}"
        for r in stu.results:
            assert r.score == 0, f"{name} {r.name}: the unmodified student version scored {r.score}"
        assert sol.seconds < 30, f"{name}: grading one submission must stay fast ({sol.seconds:.0f} s)"


@pytest.mark.slow
def test_bad_submissions_still_give_a_complete_gradebook(dist, sandboxes, tmp_path):
    folder = tmp_path / "submissions"
    shutil.copytree(FIXTURES, folder)
    ag = dist / "assignments" / "00_data_and_baselines"
    shutil.copy(ag / "autograder" / "00_data_and_baselines.ipynb", folder / "good.ipynb")
    shutil.copy(ag / "student" / "00_data_and_baselines.ipynb", folder / "untouched.ipynb")
    before = sorted(p.name for p in folder.iterdir())
    bundle = Bundle.load(ag / "autograder")
    grades = tmp_path / "graded"
    grade_folder(bundle, folder, grades, timeout=20, jobs=2, log=lambda *a: None, sandboxes=sandboxes)

    assert sorted(p.name for p in folder.iterdir()) == before, "a submission deleted files outside its sandbox"
    with open(grades / "gradebook.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(Path(n).stem for n in before), "one row per submission"
    assert list(next(iter(rows.values())))[:5] == ["student", "q1", "q2", "q3", "q4"]
    scores = {s: [float(r[q]) for q in ("q1", "q2", "q3", "q4")] for s, r in rows.items()}
    assert scores["good"] == [2, 2, 3, 3]
    assert scores["untouched"] == [0, 0, 0, 0]
    assert scores["raises"] == [2, 0, 3, 3], "zero only where it fails"
    assert scores["infinite_loop"] == [2, 0, 0, 0], "credit for what was answered before the time limit"
    assert scores["exits"] == [2, 2, 0, 0]
    assert scores["deletes_files"] == [2, 2, 0, 0]
    assert scores["invalid_json"] == [0, 0, 0, 0]
    assert scores["tampers_otter"] == [0, 0, 0, 0], "patching otter or forging result files must not score"
    assert scores["monkeypatches"] == [0, 0, 0, 0], "patching numpy or the builtins must not score"
    assert "ZeroDivisionError" in rows["raises"]["notes"]
    assert "time limit" in rows["infinite_loop"]["notes"]
    assert "not valid notebook JSON" in rows["invalid_json"]["notes"]
    for student in rows:
        text = (grades / "feedback" / f"{student}.md").read_text()
        assert f"Score: {rows[student]['total']} / 10" in text
    assert "time limit" in (grades / "feedback" / "infinite_loop.md").read_text()


@pytest.mark.slow
def test_a_submission_that_kills_the_fork_server_does_not_stop_the_batch(dist, tmp_path):
    ag = dist / "assignments" / "03_tcn_wavenet"
    bundle = Bundle.load(ag / "autograder")
    boxes = start_sandboxes([bundle])
    try:
        if boxes.zygote is None:
            pytest.skip("no fork server on this platform (each submission starts its own interpreter)")
        good = json.loads((ag / "autograder" / "03_tcn_wavenet.ipynb").read_text())
        killer = json.loads(json.dumps(good))
        killer["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                "source": "import os\nimport signal\n\nos.kill(os.getppid(), signal.SIGKILL)"})
        folder = tmp_path / "subs"
        folder.mkdir()
        (folder / "a_killer.ipynb").write_text(json.dumps(killer))
        (folder / "b_good.ipynb").write_text(json.dumps(good))  # graded after the fork server died
        reports = grade_folder(bundle, folder, None, timeout=120, jobs=1, log=lambda *a: None, sandboxes=boxes)
    finally:
        boxes.close()
    assert boxes.zygote is None, "the fork server should have been replaced by fresh interpreters"
    assert {r.student: r.total for r in reports} == {"a_killer": 10, "b_good": 10}


@pytest.mark.slow
def test_workspace_never_overwrites_learner_work(dist, tmp_path):
    dest = build.workspace(tmp_path / "ws", dist, log=lambda *a: None)
    mine = dest / "assignments" / f"{MASTERS[0].stem}.ipynb"
    assert mine.exists() and (dest / "chapters").is_dir()
    mine.write_text("my work")
    build.workspace(dest, dist, log=lambda *a: None)
    assert mine.read_text() == "my work"
