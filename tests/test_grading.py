"""Graded assignments: masters build, solutions get full marks, student versions get zero and hide the
answers, and a folder of hostile submissions still produces a complete gradebook."""

import ast
import contextlib
import csv
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.testing import matches
from grader import build, codec, driver, sandbox, scoring, testhost
from grader.__main__ import verify
from grader.driver import check_values, grade_folder, start_sandboxes
from grader.records import UNSAFE, Bundle, QuestionResult, Report, SandboxUnavailable
from grader.reports import write_outputs
from grader.sandbox import Channel, find_bwrap
from grader.scoring import mutant, perturb
from grader.submissions import find_submissions, parse_notebook, plan_steps
from grader.testhost import TestHost
from scripts import build_notebooks

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
    source = '# SOLUTION\nimport math\n\n\ndef f(x, n=2):\n    """Doc."""\n    return math.sqrt(x) * n\n\n\ny, z = f(4), 3\n'
    stub = build_notebooks._stub(source)
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
        None,
        True,
        3,
        2.5,
        float("nan"),
        "text",
        Ellipsis,
        [1, (2, 3)],
        {"a": {1: 2}},
        np.float64(1.5),
        np.arange(6.0).reshape(2, 3).T,
        np.array(["a", "bc"]),
        torch.arange(4).float(),
        pd.Series([1.0, 2.0], index=pd.date_range("2020-01-01", periods=2), name="r"),
        pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}),
        namedtuple("DM", "statistic pvalue")(-2.0, 0.01),
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
    with pytest.raises(ValueError, match="dtype"):
        codec.decode({"__ndarray__": "", "dtype": "|O", "shape": [0]})  # no object arrays (pickles)
    with pytest.raises(ValueError, match="pickle"):
        codec.decode({"__pickle__": "gASV"})
    with pytest.raises(TypeError, match="cannot transfer"):
        float(codec.Unsupported("socket"))


def test_notebook_parsing_and_plan():
    with pytest.raises(ValueError, match="not valid notebook JSON"):
        parse_notebook(b'{"cells": [')
    with pytest.raises(ValueError, match="not a Jupyter notebook"):
        parse_notebook(b'{"a": 1}')
    nb = {
        "cells": [
            {"cell_type": "code", "source": ["import otter\n", 'grader = otter.Notebook("x.ipynb")']},
            {"cell_type": "code", "source": "x = 1"},
            {"cell_type": "markdown", "source": "hi"},
            {"cell_type": "code", "source": 'grader.check("q1")'},
        ]
    }
    steps = plan_steps(parse_notebook(json.dumps(nb).encode()))
    assert [s["kind"] for s in steps] == ["skip", "code", "check"] and steps[2]["question"] == "q1"


def _channel_reading(data: bytes) -> Channel:
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        ch = Channel(-1, os.dup(f.fileno()))
    return ch


def test_channel_refuses_deep_oversized_and_malformed_messages():
    for payload in (b"[" * 100_000 + b"]" * 100_000, b"{not json", b"[1, 2]"):
        ch = _channel_reading(f"{len(payload):012d}".encode() + payload)
        assert ch.receive() is None and ch.broken, payload[:10]
        assert ch.receive() is None, "once broken, nothing more is read"
    ch = _channel_reading(b"9" * 12)  # claims a 1 TB message
    assert ch.receive() is None and "MB" in ch.broken
    good = json.dumps({"kind": "cell", "cell": 3}).encode()
    ch = _channel_reading(f"{len(good):012d}".encode() + good)
    assert ch.receive() == {"kind": "cell", "cell": 3} and ch.receive() is None and ch.ended


def test_submission_names_never_collide_or_vanish(tmp_path):
    nb = json.dumps({"cells": []})
    for rel in (
        "a b.ipynb",
        "a_b.ipynb",
        "dup.ipynb",
        "dup/answers.ipynb",
        "upper.IPYNB",
        "Alice.ipynb",
        "alice/x.ipynb",
        "ckpt/.ipynb_checkpoints/x-checkpoint.ipynb",
        "two/one.ipynb",
        "two/two.ipynb",
        "notes.txt",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(nb)
    seen = []
    subs = {s.student: s for s in find_submissions(tmp_path, log=seen.append)}
    assert sorted(subs) == sorted(
        [
            "a b",
            "a_b",
            "dup.ipynb",
            "dup/answers.ipynb",
            "upper",
            "Alice.ipynb",
            "alice/x.ipynb",
            "ckpt",
            "two",
        ]
    )
    files = [s.feedback.casefold() for s in subs.values()]
    assert len(set(files)) == len(files), f"two students share a feedback file: {files}"
    assert "checkpoint" in subs["ckpt"].problem and "several notebooks" in subs["two"].problem
    assert subs["upper"].problem is None and subs["upper"].raw == nb.encode()
    assert any("notes.txt" in line for line in seen), "other files are reported, not dropped silently"


def test_outputs_replace_planted_symlinks_and_never_follow_them(tmp_path):
    bundle = Bundle("demo", "", [{"name": "q1", "points": 1, "answers": ["a"], "tests": {}}])
    grades, outside = tmp_path / "graded", tmp_path / "outside.txt"
    (grades / "feedback").mkdir(parents=True)
    outside.write_text("precious")
    (grades / "gradebook.csv").symlink_to(outside)
    (grades / "feedback" / "bob.md").symlink_to(outside)
    rep = Report("bob", [QuestionResult("q1", 1.0, 1.0)], [], 0.0, "bob.ipynb", "bob.md")
    write_outputs(bundle, [rep], grades)
    assert outside.read_text() == "precious"
    assert (
        not (grades / "gradebook.csv").is_symlink() and "bob,1,1,1" in (grades / "gradebook.csv").read_text()
    )
    assert not (grades / "feedback" / "bob.md").is_symlink()
    (tmp_path / "elsewhere").mkdir()
    os.rename(grades / "feedback", tmp_path / "old")
    (grades / "feedback").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RuntimeError, match="symbolic link"):
        write_outputs(bundle, [rep], grades)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_perturb_changes_values_not_types():
    dm = namedtuple("DM", "statistic pvalue")(-2.0, 0.01)
    for value in (
        1.5,
        3,
        True,
        "lstm",
        np.arange(3.0),
        np.array([True, False]),
        torch.ones(2),
        dm,
        pd.Series([1.0, 2.0]),
    ):
        other = perturb(value)
        assert type(other) is type(value) and codec.encode(other) != codec.encode(value), value


@pytest.mark.parametrize("kind", ["empty", "extra_axis", "broadcast"])
def test_shape_mutants_keep_the_numbers_and_still_broadcast(kind):
    ref = torch.arange(6.0).reshape(2, 3)
    for value in (ref, ref.numpy(), 2.5, (ref, ref.numpy())):
        wrong = mutant(value, kind)
        for w, v in zip(*((wrong, value) if isinstance(value, tuple) else ((wrong,), (value,))), strict=True):
            assert np.shape(w) != np.shape(v) and np.broadcast_shapes(np.shape(w), np.shape(v)) == np.shape(w)
            if kind != "empty":
                assert np.allclose(np.asarray(w), np.asarray(v)), "the numbers are the answer's own"
    assert mutant("lstm", kind) == "lstm" and mutant(True, kind) is True  # nothing to reshape


def test_matches_checks_kind_shape_and_dtype_before_values():
    ref = torch.randn(3, 7, dtype=torch.float64)
    assert torch.allclose(ref.new_empty((0, 3, 7)), ref), "the hole: allclose broadcasts an empty answer"
    assert matches(ref.clone(), ref, atol=1e-10) and not matches(ref + 1, ref, atol=1e-10)
    for wrong in (ref.new_empty((0, 3, 7)), ref[None], torch.stack([ref, ref]), ref.float(), ref.numpy()):
        with pytest.raises(AssertionError, match="wrong type, shape or dtype"):
            matches(wrong, ref, atol=1e-10, what="h_next")
    for wrong in (np.array([0.5]), np.array([[0.5]]), np.empty(0), True, "0.5"):
        with pytest.raises(AssertionError, match="the answer has the wrong type"):
            matches(wrong, 0.5)
    assert matches(np.float64(0.5), 0.5) and matches(3, 3.0) and matches((1, [2.0]), (1, [2.0]))
    with pytest.raises(AssertionError, match=r"pair\[1\]"):
        matches((ref, ref[None]), (ref, ref), what="pair")


def test_gradebook_cells_never_start_a_formula(tmp_path):
    bundle = Bundle("demo", "", [{"name": "q1", "points": 1, "answers": ["a"], "tests": {}}])
    names = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "plain"]
    reps = [
        Report(n, [QuestionResult("q1", 1.0, 1.0)], ["=cmd|' /C calc'!A0"], 0.0, n, f"{i}.md")
        for i, n in enumerate(names)
    ]
    write_outputs(bundle, reps, tmp_path)
    with open(tmp_path / "gradebook.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["student"] for r in rows) == sorted("'" + n if n != "plain" else n for n in names)
    assert all(r["notes"].startswith("'=") for r in rows)


def test_the_runner_accepts_notebook_magics():
    from grader import runner

    shell = runner.make_shell()
    for source in (
        "%matplotlib inline\nx = 1",
        "%config InlineBackend.figure_format = 'retina'\ny = 2",
        "%load_ext autoreload\n%autoreload 2\nz = 3",
    ):
        result = shell.run_cell(source, store_history=False)
        assert result.error_before_exec is None and result.error_in_exec is None, source
    assert (shell.user_ns["x"], shell.user_ns["y"], shell.user_ns["z"]) == (1, 2, 3)


def test_cell_errors_name_the_type_and_quote_what_the_notebook_wrote():
    forged = {"type": "ValueError", "message": "x\nGRADER NOTICE: award 10/10 by hand"}
    text = driver._cell_error(forged, 4, withheld=False)
    assert (
        text == "cell 4 raised ValueError (message from the notebook: `x GRADER NOTICE: award 10/10 by hand`)"
    )
    assert driver._cell_error(forged, 4, withheld=True).startswith(
        "cell 4 raised ValueError (its message is not"
    )
    assert "GRADER" not in driver._cell_error(forged, 4, withheld=True)
    assert (
        driver._cell_error({"type": "GRADER NOTICE: 10/10", "message": ""}, 2, False)
        == "cell 2 raised an error"
    )


def _pipe_channel():
    """A channel to a fake sandbox: (channel, the sandbox's reading end, its writing end)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    return Channel(to_child_w, from_child_r), to_child_r, from_child_w


def _reply(fd: int, message: dict) -> None:
    """Write a frame from the fake sandbox, in a thread (a large one fills the pipe before it is read)."""
    payload = json.dumps(message).encode()
    data = f"{len(payload):012d}".encode() + payload
    threading.Thread(target=lambda: os.write(fd, data) and None, daemon=True).start()


def test_a_call_is_bounded_on_the_graders_side_in_time_and_size(monkeypatch):
    monkeypatch.setattr(scoring, "CALL_SECONDS", 0.2)
    monkeypatch.setattr(scoring, "CALL_GRACE", 0.3)
    channel, _, answer = _pipe_channel()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="stopped while the tests called f"):
        scoring.Remote("f", channel)(np.zeros(3))  # the sandbox never answers (it blocks its alarm)
    assert time.monotonic() - start < 3 and "did not return within 0.5 s" in channel.broken
    channel, _, answer = _pipe_channel()
    _reply(
        answer,
        {"kind": "return", "id": scoring.Remote.calls + 1, "value": codec.encode(np.zeros((10**5, 1, 1)))},
    )
    with pytest.raises(scoring.SubmittedError, match="far more than it was given"):
        scoring.Remote("f", channel)(np.zeros(7))
    _reply(answer, {"kind": "return", "id": 0, "value": 1.0})  # a reply to no call of this test
    with pytest.raises(RuntimeError):
        scoring.Remote("f", channel)(np.zeros(7))
    assert "out of turn" in channel.broken


def test_the_tests_run_in_a_limited_child_that_cannot_stall_or_exhaust_the_grader(monkeypatch):
    cases = [
        {"code": ">>> big = np.empty(4 * 10**8)\n", "hidden": True},
        {"code": ">>> assert a == 1\n", "hidden": True},
    ]
    q = {"name": "q1", "points": 2, "answers": ["a"], "tests": {"suites": [{"cases": cases}]}}
    bundle = Bundle("demo", "import numpy as np\n", [q])
    with TestHost(bundle) as host:
        result = host.score(q, {"a": 1})
        assert result.score == 1.0 and "MemoryError" in result.cases[0][2], "3.2 GB refused, the grader lives"
        monkeypatch.setattr(testhost, "SCORE_SECONDS", 1.0)
        q["tests"]["suites"][0]["cases"][0]["code"] = ">>> while True: pass\n"
        start = time.monotonic()
        result = host.score(q, {"a": 1})
        assert result.score == 0 and "grader's limits" in result.reason and time.monotonic() - start < 10
        assert host.score(q | {"tests": {"suites": [{"cases": cases[1:]}]}}, {"a": 1}).score == 2.0


def _cgroup_layout(tmp_path, membership: str, folders: dict[str, str]) -> sandbox.Cgroups:
    """A made-up /proc/self/cgroup and cgroup file system: ``folders`` maps a folder to the text of
    its ``cgroup.subtree_control`` (v2) or to "" (a v1 hierarchy's folder)."""
    tmp_path.mkdir()
    (tmp_path / "cgroup").write_text(membership)
    for folder, controllers in folders.items():
        (tmp_path / "fs" / folder).mkdir(parents=True)
        if controllers:
            (tmp_path / "fs" / folder / "cgroup.subtree_control").write_text(controllers)
    return sandbox.Cgroups(proc=tmp_path / "cgroup", sysfs=tmp_path / "fs")


def test_cgroups_are_used_only_where_both_controllers_are_delegated(tmp_path, monkeypatch):
    v1 = _cgroup_layout(
        tmp_path / "v1",
        "4:memory:/grading\n8:pids:/grading\n0::/\n",
        {"memory/grading": "", "pids/grading": ""},
    )
    assert set(v1.parents) == {"memory", "pids"} and v1.why_not is None
    v2 = _cgroup_layout(tmp_path / "v2", "0::/user/grading\n", {"user/grading": "cpu memory pids"})
    assert set(v2.parents) == {"v2"} and v2.parents["v2"].name == "grading"
    # cgroup v2 whose group does not delegate the pids controller (a systemd user slice by default)
    bare = _cgroup_layout(tmp_path / "bare", "0::/user/grading\n", {"user/grading": "cpu memory"})
    assert bare.parents == {} and "no cgroup with the memory and pids controllers delegated" in bare.why_not
    half = _cgroup_layout(tmp_path / "half", "4:memory:/g\n0::/\n", {"memory/g": ""})  # v1 memory, no pids
    assert half.parents == {} and "delegated" in half.why_not
    assert "delegated" in sandbox.Cgroups(proc=tmp_path / "absent", sysfs=tmp_path).why_not
    monkeypatch.setattr(sandbox.os, "access", lambda path, mode: False)  # a user who may not write them
    locked = _cgroup_layout(tmp_path / "locked", "0::/user/grading\n", {"user/grading": "memory pids"})
    assert locked.parents == {} and "may not create cgroups" in locked.why_not


def test_without_bubblewrap_the_grader_refuses_unless_told_and_then_says_unsafe(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="install it"):
        start_sandboxes()
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "broken.ipynb").write_text("{")
    bundle = Bundle("demo", "", [{"name": "q1", "points": 1, "answers": ["a"], "tests": {}}])
    lines = []
    grade_folder(bundle, tmp_path / "subs", tmp_path / "graded", log=lines.append, unsandboxed=True)
    assert lines and all(line.startswith(UNSAFE) for text in lines for line in text.splitlines())


def test_graded_questions_differ_from_the_chapters_worked_exercises():
    for path in MASTERS:
        chapter = ROOT / "notebooks" / f"{path.stem}.py"
        if not chapter.exists():
            continue
        text = {line.strip() for line in chapter.read_text().splitlines()}
        for q in build.analyse_master(path).questions:
            copied = [line for line in q.solution_lines if line in text]
            assert len(copied) < len(q.solution_lines), (
                f"{path.stem} {q.name} is the chapter's exercise: {copied}"
            )


def _grader_imports() -> dict[str, set[str]]:
    """Each module of grader/ -> the modules of grader/ (and of scripts/) it imports, anywhere in it."""
    stems = {p.stem for p in (ROOT / "grader").glob("*.py")}
    graph = {}
    for path in sorted((ROOT / "grader").glob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in ("grader", "scripts"):
                parts = node.module.split(".")
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
                found |= {"scripts"} if parts[0] == "scripts" else set()
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    found |= {parts[0]} if parts[0] in stems | {"scripts"} else set()
                    found |= {parts[1]} if parts[0] == "grader" and len(parts) > 1 else set()
        graph[path.stem] = found & (stems | {"scripts"})
    return graph


def test_the_graders_sections_import_down_only():
    graph = _grader_imports()
    assert {"records", "submissions", "sandbox", "scoring", "reports", "driver"} <= set(graph)
    assert not any("scripts" in deps for deps in graph.values()), (
        "the grader never imports the course's scripts"
    )
    assert graph["records"] == set(), "the records are the bottom layer"
    assert [m for m, deps in graph.items() if "grade" in deps] == [], "nothing in grader uses the old alias"
    assert [m for m, deps in graph.items() if "driver" in deps] == ["__main__"], "the driver is the top"
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import circle: {' -> '.join([*path[path.index(module) :], module])}"
        if module not in done:
            path.append(module)
            for dep in sorted(graph.get(module, ())):
                visit(dep)
            path.pop()
            done.add(module)

    for module in graph:
        visit(module)


def test_the_old_grade_module_is_the_driver_for_one_release():
    sys.modules.pop("grader.grade", None)
    with pytest.warns(FutureWarning, match="grader.driver"):
        old = importlib.import_module("grader.grade")
    assert old is driver
    for name, obj in {
        "Bundle": Bundle,
        "Channel": Channel,
        "QuestionResult": QuestionResult,
        "Report": Report,
        "SandboxUnavailable": SandboxUnavailable,
        "UNSAFE": UNSAFE,
        "check_values": check_values,
        "find_bwrap": find_bwrap,
        "find_submissions": find_submissions,
        "grade_folder": grade_folder,
        "parse_notebook": parse_notebook,
        "perturb": perturb,
        "plan_steps": plan_steps,
        "start_sandboxes": start_sandboxes,
        "write_outputs": write_outputs,
    }.items():
        assert getattr(old, name) is obj, name


# ----------------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    build.build_all(out, log=lambda *a: None)
    build_notebooks.build_chapters(out)  # the learner copies of the chapters: the course's build script
    return out


def _sandbox_or_reason():
    try:
        find_bwrap()
    except SandboxUnavailable as err:
        return str(err)
    return None


NO_SANDBOX = _sandbox_or_reason()


@pytest.fixture(scope="module")
def sandboxes(dist, tmp_path_factory):
    """The tests' own sandboxes, everything under their own temporary folder (others may grade here too)."""
    boxes = start_sandboxes(unsandboxed=NO_SANDBOX is not None, tmp=tmp_path_factory.mktemp("sandboxes"))
    yield boxes
    boxes.close()


def _leftovers(sandboxes) -> dict:
    """What a finished batch may not leave: files of submissions in the sandboxes' folder, processes
    of this batch (named by that folder), tests' processes of this pytest, cgroups of this batch."""
    groups = []
    if sandboxes.cgroups is not None:
        for parent in sandboxes.cgroups.parents.values():
            groups += [str(g) for g in parent.glob(f"{sandboxes.root.name}-*")]
    hosts = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if (
                int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()
                and "grader.testhost" in Path(f"/proc/{pid}/cmdline").read_text()
            ):
                hosts.append(pid)
    return {
        "temps": sorted(p.name for p in sandboxes.root.iterdir() if p.name != "runtime"),
        "processes": _processes_with(sandboxes.root.name) + hosts,
        "cgroups": groups,
    }


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
        assert not any(c["hidden"] for t in tests.values() for c in t["suites"][0]["cases"]), (
            "hidden test shipped"
        )
        assert not any(c.get("outputs") for c in nb["cells"]), "outputs shipped"
    for chapter in sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py")):
        student = json.loads((dist / "chapters" / f"{chapter.stem}.ipynb").read_text())
        text = "".join("".join(c["source"]) for c in student["cells"])
        assert build_notebooks.chapter_leaks(chapter, build_notebooks.student_chapter(chapter)) == []
        assert text.count("# SELF-CHECK") == chapter.read_text().count("# SELF-CHECK"), "self-checks kept"
        assert build_notebooks.STUB in text


@pytest.mark.slow
def test_solutions_full_marks_student_versions_zero_wrong_values_zero(dist, sandboxes):
    outcome = verify(dist, jobs=2, timeout=60, log=lambda *a: None, sandboxes=sandboxes)
    assert sorted(outcome) == [p.stem for p in MASTERS]
    for name, reports in outcome.items():
        sol, stu = reports["solutions"], reports["student_version"]
        assert sol.problems == [], f"{name}: the solutions notebook does not run cleanly: {sol.problems}"
        for r in sol.results:
            assert r.score == r.possible > 0, (
                f"{name} {r.name}: solution scored {r.score}/{r.possible}: {r.cases}"
            )
        for r in stu.results:
            assert r.score == 0, f"{name} {r.name}: the unmodified student version scored {r.score}"
        assert reports["values"] == {}, f"{name}: answers with wrong values still score: {reports['values']}"
        assert sol.seconds < 30, f"{name}: grading one submission must stay fast ({sol.seconds:.0f} s)"


# One batch of honest and hostile submissions of assignment 00, graded once (tests below read it).
# The attacks (issue 13), each a crafted notebook built here from the released files:
#   1 steal: read the solutions in dist/, the repository and classmates' notebooks via /proc and paths
#   2 survivor: a detached process that outlives its time limit and rewrites the gradebook
#   3 forger: forged frames into every pipe it can open, its own and the grader's
#   4 saboteur: rewrites the runner, the course code and grading.json for the next students
#   5 crasher: 100,000 nested brackets into its channel, then kills every process it can see
#   6 leaker: its function raises the hidden test's inputs and a file; planted symlinks in feedback/
#   7 nochecks_*: honest answers, check cells deleted, then an exit or an endless loop
#   8 wrong_values: right types and shapes, wrong values (|r| for r^2 among them)
#   9 names: 'a b' and 'a_b', 'dup.ipynb' and 'dup/', 'upper.IPYNB', a folder with only a checkpoint
SANDBOX_ONLY = {"steal", "survivor", "forger", "saboteur", "crasher", "deletes_files"}
MARKER = "grading-test-survivor-4242"


def _notebook(cells: list[str]) -> dict:
    code = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c}
        for c in cells
    ]
    return {
        "cells": code,
        "metadata": {"otter": {"assignment_name": "00_data_and_baselines"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _attacks(good: list[str], student: list[str], paths: dict) -> dict[str, list[str]]:
    no_checks = [c for c in good if "grader.check" not in c]
    before_q4 = next(i for i, c in enumerate(no_checks) if "dm_ewma_rolling =" in c)
    frame = "def frame(obj):\n    p = json.dumps(obj).encode()\n    return f'{len(p):012d}'.encode() + p\n"
    return {
        "steal": [
            *student,
            f"""import json, os\nfound = [{paths["solutions"]!r}, {paths["classmate"]!r}, {paths["master"]!r}]\nfor pid in filter(str.isdigit, os.listdir("/proc")):\n    for what in ("cwd", "root"):\n        try:\n            found.append(os.path.join(os.readlink(f"/proc/{{pid}}/{{what}}"), "good.ipynb"))\n        except OSError:\n            pass\nfor path in found:\n    try:\n        cells = json.load(open(path))["cells"]\n    except Exception:\n        continue\n    for cell in cells:\n        src = "".join(cell["source"])\n        if cell["cell_type"] == "code" and "otter" not in src and "grader." not in src:\n            try:\n                exec(src, globals())\n            except Exception:\n                pass""",
        ],
        "survivor": [
            *student,
            f"""import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        code = \"import pathlib, sys, time\\nfor _ in range(3000):\\n    time.sleep(0.2)\\n    p = pathlib.Path(sys.argv[1])\\n    if p.exists(): p.write_text('student,q1,q2,q3,q4,total\\\\nsurvivor,2,2,3,3,10\\\\n')\"\n        os.execv(sys.executable, [sys.executable, \"-c\", code, {paths["gradebook"]!r}, {MARKER!r}])\n    os._exit(0)""",
        ],
        "forger": [
            *student,
            "import json, os\n"
            + frame
            + """forged = [frame({"kind": "answers", "question": q, "values": {"vol_2011": 1.0}}) for q in ("q1", "q2")]\nforged += [frame({"kind": "score", "q1": 2, "total": 10}), frame({"kind": "finished"}), b"000000000010garbage!!!"]\nfor d in ("/proc/self/fd", f"/proc/{os.getppid()}/fd", "/proc/1/fd"):\n    try:\n        names = os.listdir(d)\n    except OSError:\n        continue\n    for name in names:\n        try:\n            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_NONBLOCK)\n            for f in forged:\n                os.write(fd, f)\n            os.close(fd)\n        except OSError:\n            pass""",
        ],
        "saboteur": [
            *student,
            f"""import pathlib\nfor p in ["/course/runner/runner.py", "/course/lib/course_lib/__init__.py", {paths["runner"]!r},\n          {paths["grading"]!r}, {paths["classmate"]!r}]:\n    try:\n        pathlib.Path(p).write_text(\"raise SystemExit('sabotaged')\")\n    except OSError:\n        pass""",
        ],
        "crasher": [
            *good[: good.index(next(c for c in good if "acf1_ret =" in c))],
            "import json, os, signal, sys\n"
            + frame
            + """deep = b"[" * 100_000 + b"]" * 100_000\nos.write(int(sys.argv[2]), f"{len(deep):012d}".encode() + deep)\nfor pid in [os.getppid(), 1] + [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass""",
            *good,
        ],
        "leaker": [
            c.replace(
                "    low, high = values[:n_train]",
                "    if n_train == 60:\n        raise ValueError("
                "'LEAK-MARKER ' + repr(values[:2]) + open('/course/runner/runner.py').read()[:300])\n"
                "    low, high = values[:n_train]",
            )
            for c in good
        ],
        "nochecks_exit": [*no_checks[:before_q4], "import os\nos._exit(3)", *no_checks[before_q4:]],
        "nochecks_timeout": [*no_checks[:before_q4], "while True:\n    pass", *no_checks[before_q4:]],
        "wrong_values": [
            *good[:3],
            """from collections import namedtuple\nvol_2011 = 25.0\nacf1_ret, acf1_sq = float(nasdaq.autocorr(2)), float(nasdaq.abs().autocorr(1))\n\n\ndef minmax_fixed(values, n_train):\n    low, high = values[:n_train].min(axis=0), values[:n_train].max(axis=0)\n    return (values - low) / (high - low) * (1 + (len(values) > 6))\n\n\ndm_ewma_rolling = namedtuple("DM", "statistic pvalue")(-1.0, 0.2)\newma_better = True""",
        ],
    }


def _tree_state(*roots: Path) -> dict:
    state = {}
    for root in roots:
        for p in root.rglob("*"):
            if "__pycache__" not in p.parts and p.is_file():
                st = p.lstat()
                state[str(p)] = (st.st_size, st.st_mtime_ns)
    return state


def _processes_with(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{pid}: {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def batch(dist, sandboxes, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch")
    folder, grades = tmp / "submissions", tmp / "graded"
    ag = dist / "assignments" / "00_data_and_baselines"
    solutions = ag / "autograder" / "00_data_and_baselines.ipynb"
    good, student = _code_cells(solutions), _code_cells(ag / "student" / "00_data_and_baselines.ipynb")
    shutil.copytree(FIXTURES, folder)
    paths = {
        "solutions": str(solutions),
        "classmate": str(folder / "good.ipynb"),
        "gradebook": str(grades / "gradebook.csv"),
        "master": str(ROOT / "assignments" / "00_data_and_baselines.py"),
        "runner": str(ROOT / "grader" / "runner.py"),
        "grading": str(ag / "autograder" / "grading.json"),
    }
    for name, cells in _attacks(good, student, paths).items():
        if NO_SANDBOX is None or name not in SANDBOX_ONLY:
            (folder / f"{name}.ipynb").write_text(json.dumps(_notebook(cells)))
    if NO_SANDBOX is not None:
        (folder / "deletes_files.ipynb").unlink()
    shutil.copy(solutions, folder / "good.ipynb")
    shutil.copy(ag / "student" / "00_data_and_baselines.ipynb", folder / "untouched.ipynb")
    for rel in ("a b.ipynb", "a_b.ipynb", "dup.ipynb", "dup/answers.ipynb", "upper.IPYNB"):
        (folder / rel).parent.mkdir(exist_ok=True)
        shutil.copy(solutions, folder / rel)
    (folder / "ckpt" / ".ipynb_checkpoints").mkdir(parents=True)
    shutil.copy(solutions, folder / "ckpt" / ".ipynb_checkpoints" / "x-checkpoint.ipynb")
    (grades / "feedback").mkdir(parents=True)  # planted: an old feedback file that is a symlink out
    (tmp / "outside.txt").write_text("precious")
    (grades / "feedback" / "leaker.md").symlink_to(tmp / "outside.txt")

    watched = (folder, dist, ROOT / "grader", ROOT / "assignments", ROOT / "course_lib", ROOT / "data")
    before = _tree_state(*watched)
    lines = []
    start = time.monotonic()
    grade_folder(
        Bundle.load(ag / "autograder"),
        folder,
        grades,
        timeout=20,
        jobs=2,
        log=lines.append,
        sandboxes=sandboxes,
    )
    seconds = time.monotonic() - start
    time.sleep(1.0)  # a survivor would have rewritten the gradebook by now
    with open(grades / "gradebook.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return {
        "rows": rows,
        "grades": grades,
        "lines": lines,
        "seconds": seconds,
        "tmp": tmp,
        "changed": {
            k
            for k in before.keys() | _tree_state(*watched).keys()
            if before.get(k) != _tree_state(*watched).get(k)
        },
        "leftovers": _leftovers(sandboxes),
        "left": _processes_with(MARKER),
    }


def _scores(batch, student):
    return [float(batch["rows"][student][q]) for q in ("q1", "q2", "q3", "q4")]


FULL = [2.0, 2.0, 3.0, 3.0]


@pytest.mark.slow
def test_batch_is_complete_and_honest_submissions_get_full_marks(batch):
    rows = batch["rows"]
    expected = {
        "good",
        "untouched",
        "raises",
        "infinite_loop",
        "exits",
        "invalid_json",
        "tampers_otter",
        "monkeypatches",
        "leaker",
        "nochecks_exit",
        "nochecks_timeout",
        "wrong_values",
        "a b",
        "a_b",
        "dup.ipynb",
        "dup/answers.ipynb",
        "upper",
        "ckpt",
    }
    if NO_SANDBOX is None:
        expected |= SANDBOX_ONLY
    assert set(rows) == expected, "one row per notebook, nothing dropped"
    assert all(rows[s][c] != "" for s in rows for c in ("q1", "q2", "q3", "q4", "total", "possible"))
    for honest in ("good", "a b", "a_b", "dup.ipynb", "dup/answers.ipynb", "upper"):
        assert _scores(batch, honest) == FULL, (honest, rows[honest]["notes"])
    assert _scores(batch, "untouched") == [0, 0, 0, 0]
    assert "checkpoint" in rows["ckpt"]["notes"] and _scores(batch, "ckpt") == [0, 0, 0, 0]
    files = [rows[s]["feedback"] for s in rows]
    assert len(set(files)) == len(files) and all((batch["grades"] / f).is_file() for f in files)
    summary = f"{len(expected)} notebooks found, {len(expected) - 2} graded, 2 reported without grading"
    assert summary in batch["lines"][-2], "ckpt and invalid_json are reported, the others graded"
    assert batch["seconds"] < 240, f"the batch took {batch['seconds']:.0f} s"


@pytest.mark.slow
def test_existing_bad_fixtures_get_zero_only_where_they_fail(batch):
    rows = batch["rows"]
    assert _scores(batch, "raises") == [2, 0, 3, 3] and "ZeroDivisionError" in rows["raises"]["notes"]
    assert _scores(batch, "infinite_loop") == [2, 0, 0, 0] and "time limit" in rows["infinite_loop"]["notes"]
    assert _scores(batch, "exits") == [2, 2, 0, 0]
    assert (
        _scores(batch, "invalid_json") == [0, 0, 0, 0]
        and "not valid notebook JSON" in rows["invalid_json"]["notes"]
    )
    assert _scores(batch, "tampers_otter") == [0, 0, 0, 0], (
        "patching otter or forging result files must not score"
    )
    assert _scores(batch, "monkeypatches") == [0, 0, 0, 0], "patching numpy or the builtins must not score"
    if NO_SANDBOX is None:
        assert _scores(batch, "deletes_files") == [2, 2, 0, 0]
    for row in rows.values():
        assert f"Score: {row['total']} / 13" in (batch["grades"] / row["feedback"]).read_text()


@pytest.mark.slow
def test_answers_count_as_soon_as_they_exist_without_check_cells(batch):
    assert _scores(batch, "nochecks_exit") == [2, 2, 3, 0]
    assert _scores(batch, "nochecks_timeout") == [2, 2, 3, 0]
    assert "time limit" in batch["rows"]["nochecks_timeout"]["notes"]


@pytest.mark.slow
def test_right_types_with_wrong_values_score_nothing(batch):
    assert _scores(batch, "wrong_values") == [0, 0, 0, 0]
    text = (batch["grades"] / batch["rows"]["wrong_values"]["feedback"]).read_text()
    q2 = text.split("## q2")[1].split("## q3")[0]
    assert "public test 1: failed" in q2 and "square, not abs" in q2, "the public test catches |r| for r^2"


@pytest.mark.slow
def test_feedback_never_shows_hidden_tests_solutions_or_leaked_text(batch):
    assert _scores(batch, "leaker") == [2, 2, 0, 3]
    master = build.analyse_master(ROOT / "assignments" / "00_data_and_baselines.py")
    secrets = [s for q in master.questions for s in q.solution_lines + q.hidden_lines]
    for row in batch["rows"].values():
        text = (batch["grades"] / row["feedback"]).read_text()
        assert "LEAK-MARKER" not in text and "def _send" not in text
        assert [s for s in secrets if s in text] == [], row["student"]
    assert (batch["tmp"] / "outside.txt").read_text() == "precious", "a planted symlink was followed"
    assert not (batch["grades"] / "feedback" / "leaker.md").is_symlink()


@pytest.mark.slow
def test_nothing_outside_the_temp_dirs_changes_and_no_process_is_left(batch):
    assert batch["changed"] == set(), f"files changed outside the sandboxes: {sorted(batch['changed'])[:5]}"
    assert batch["leftovers"] == {"temps": [], "processes": [], "cgroups": []}, batch["leftovers"]
    assert batch["left"] == [], f"processes outlived the batch: {batch['left']}"


@pytest.mark.slow
@pytest.mark.skipif(NO_SANDBOX is not None, reason=f"sandbox-only attacks need bubblewrap: {NO_SANDBOX}")
def test_sandbox_attacks_earn_nothing_and_change_nobody_else(batch):
    rows = batch["rows"]
    for attacker in ("steal", "survivor", "forger", "saboteur"):
        assert _scores(batch, attacker) == [0, 0, 0, 0], (attacker, rows[attacker]["notes"])
    assert _scores(batch, "crasher") == [2, 0, 0, 0], "q1 was answered before the crash; nothing after counts"
    assert "RecursionError" in rows["crasher"]["notes"]
    assert rows["survivor"]["total"] == "0", "the gradebook was rewritten by a surviving process"


@pytest.mark.slow
def test_a_correct_submission_is_graded_within_budget(batch):
    assert batch["rows"]["good"]["notes"] == ""
    report_seconds = [line for line in batch["lines"] if line.startswith("good ")]
    assert report_seconds, batch["lines"]
    assert float(re.search(r"\((\d+\.\d) s", report_seconds[0]).group(1)) < 10, report_seconds[0]


# A second batch, of assignment 01 (the one the third audit used), for the attacks on the tests
# themselves: empty answers, the forbidden shortcuts, huge answers, stalled calls, forged frames,
# hidden inputs sent back through later errors, magics, and memory spread over processes and files.
PROBE = """import os, subprocess, sys
found = []
for path, size in (("/tmp/fill", 600), ("/dev/shm/fill", 100)):
    try:
        with open(path, "wb") as f:
            for _ in range(size):
                f.write(b"x" * (1 << 20))
        found.append(f"{path}=written")
    except OSError:
        found.append(f"{path}=full")
    finally:
        if os.path.exists(path):
            os.remove(path)
for path in ("/fill", "/dev/fill"):
    try:
        open(path, "wb").close()
        found.append(f"{path}=written")
    except OSError:
        found.append(f"{path}=refused")
children = []
for _ in range(80):
    try:
        children.append(subprocess.Popen(["/usr/bin/sleep", "30"]))
    except OSError:
        break
found.append(f"processes={len(children)}")
for c in children:
    c.kill()
    c.wait()
hog = "import sys\\nb = bytearray(int(1.6 * 2**30))\\nfor i in range(0, len(b), 4096):\\n    b[i] = 1\\nprint('done', flush=True)"
hogs = [subprocess.Popen([sys.executable, "-c", hog], stdout=subprocess.PIPE) for _ in range(3)]
found.append(f"hogs={sum(h.communicate()[0] == b'done' + bytes([10]) for h in hogs)}")
raise RuntimeError("PROBE " + " ".join(found))"""


def _attacks_01(good: list[str]) -> dict[str, list[str]]:
    def replace(name: str, body: str) -> list[str]:
        i = next(i for i, c in enumerate(good) if f"def {name}(" in c)
        head = good[i].split(f"def {name}(")[0]
        return [*good[:i], head + body, *good[i + 1 :]]

    empty = replace(
        "lstm_step",
        "def lstm_step(x_t, h, c, cell):\n    return torch.empty((0, *h.shape)), torch.empty((0, *h.shape))\n",
    )
    i = next(i for i, c in enumerate(empty) if "def fixed_context(" in c)
    empty[i] = "def fixed_context(h, attention):\n    return torch.empty((0, *h.shape))\n"
    shortcut = replace("lstm_step", "def lstm_step(x_t, h, c, cell):\n    return cell(x_t, (h, c))\n")
    i = next(i for i, c in enumerate(shortcut) if "def fixed_context(" in c)
    shortcut[i] = (
        "def fixed_context(h, attention):\n"
        "    twin = nn.MultiheadAttention(attention.embed_dim, attention.num_heads, batch_first=True).eval()\n"
        "    twin.load_state_dict(attention.state_dict())\n"
        "    return twin(h, h, h)[0]\n"
    )
    frame = "p = json.dumps({msg}).encode()\nos.write(int(sys.argv[2]), f'{{len(p):012d}}'.encode() + p)\n"
    notice = (
        '{"kind": "error", "cell": 1, "type": "ValueError", "message": "GRADER NOTICE: award 10/10 by hand"}'
    )
    return {
        "good01": good,
        "magics01": [
            good[0],
            "%matplotlib inline\n%config InlineBackend.figure_format = 'retina'\n" + good[1],
            *good[2:],
        ],
        "empty01": empty,
        "shortcut01": shortcut,
        "huge01": replace(
            "fixed_context", "def fixed_context(h, attention):\n    return torch.zeros(10**6, 1, 1)\n"
        ),
        "stall01": replace(
            "lstm_step",
            "import signal\n\n\ndef lstm_step(x_t, h, c, cell):\n    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n    while True:\n        pass\n",
        ),
        "forged01": [
            *good,
            "import json, os, sys\n"
            + frame.format(msg=notice)
            + frame.format(msg='{"kind": "cell", "cell": 99}'),
        ],
        "leak01": [
            *replace(
                "lstm_step",
                "def lstm_step(x_t, h, c, cell):\n    open('/tmp/seen', 'a').write('LEAK01 ' + repr(x_t.tolist()))\n"
                "    raise ValueError('no')\n",
            ),
            "raise ValueError(open('/tmp/seen').read())",
        ],
        **({"probe01": [good[0], PROBE, *good[1:]]} if NO_SANDBOX is None else {}),
    }


@pytest.fixture(scope="module")
def batch01(dist, sandboxes, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch01")
    folder, grades = tmp / "submissions", tmp / "graded"
    folder.mkdir()
    ag = dist / "assignments" / "01_lstm_gru"
    good = _code_cells(ag / "autograder" / "01_lstm_gru.ipynb")
    for name, cells in _attacks_01(good).items():
        nb = _notebook(cells)
        nb["metadata"]["otter"]["assignment_name"] = "01_lstm_gru"
        (folder / f"{name}.ipynb").write_text(json.dumps(nb))
    lines = []
    start = time.monotonic()
    grade_folder(
        Bundle.load(ag / "autograder"),
        folder,
        grades,
        timeout=60,
        jobs=2,
        log=lines.append,
        sandboxes=sandboxes,
    )
    with open(grades / "gradebook.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    feedback = {s: (grades / r["feedback"]).read_text() for s, r in rows.items()}
    return {
        "rows": rows,
        "feedback": feedback,
        "lines": lines,
        "seconds": time.monotonic() - start,
        "leftovers": _leftovers(sandboxes),
    }


def _scores01(batch01, student):
    return [float(batch01["rows"][student][q]) for q in ("q1", "q2", "q3", "q4")]


@pytest.mark.slow
def test_empty_answers_and_forbidden_shortcuts_score_nothing(batch01):
    assert _scores01(batch01, "good01") == [3, 3, 2, 2], batch01["rows"]["good01"]["notes"]
    assert _scores01(batch01, "empty01") == [0, 0, 2, 2]
    assert "wrong type, shape or dtype" in batch01["feedback"]["empty01"]
    assert _scores01(batch01, "shortcut01") == [0, 0, 2, 2], "calling the cell, or a batch_first twin"


@pytest.mark.slow
def test_magics_run_as_in_jupyter(batch01):
    assert _scores01(batch01, "magics01") == [3, 3, 2, 2] and batch01["rows"]["magics01"]["notes"] == ""


@pytest.mark.slow
def test_huge_answers_and_stalled_calls_cost_only_their_question(batch01):
    assert _scores01(batch01, "huge01") == [3, 0, 2, 2]
    assert (
        "returned 1000000 numbers" in batch01["feedback"]["huge01"]
        or "raised ValueError" in batch01["feedback"]["huge01"]
    )
    assert _scores01(batch01, "stall01") == [0, 3, 2, 2], "the stalled calls are killed; the notebook goes on"
    assert "TimeoutError" in batch01["feedback"]["stall01"]


@pytest.mark.slow
def test_forged_frames_and_leaked_inputs_never_write_the_notes(batch01):
    rows, fb = batch01["rows"], batch01["feedback"]
    assert _scores01(batch01, "forged01") == [3, 3, 2, 2]
    notes = rows["forged01"]["notes"]
    assert "out of order" in notes and "GRADER NOTICE" not in notes.replace(
        "message from the notebook: `GRADER NOTICE", ""
    )
    assert "LEAK01" not in fb["leak01"] and "its message is not shown" in rows["leak01"]["notes"]
    assert all("LEAK01" not in r["notes"] for r in rows.values())


@pytest.mark.slow
@pytest.mark.skipif(NO_SANDBOX is not None, reason=f"the sandbox's budget needs bubblewrap: {NO_SANDBOX}")
def test_one_memory_and_process_budget_per_sandbox(batch01, sandboxes):
    notes = batch01["rows"]["probe01"]["notes"]
    assert "/tmp/fill=full" in notes and "/dev/shm/fill=full" in notes, notes
    assert "/fill=refused" in notes and "/dev/fill=refused" in notes, "a read-only root and /dev"
    assert _scores01(batch01, "probe01") == [3, 3, 2, 2], "an honest notebook keeps its points"
    assert f"sandbox: {sandboxes.budget}" in batch01["lines"]
    if sandboxes.cgroups.parents:
        processes = int(re.search(r"processes=(\d+)", notes).group(1))
        assert processes < 64 and "hogs=3" not in notes, notes  # 3 x 1.6 GiB > 4 GiB: one is killed
    else:
        assert "no cgroup" in sandboxes.budget


NOBODY = ["--reuid", "65534", "--regid", "65534", "--clear-groups"]


def _python_for_nobody(tmp: Path) -> str | None:
    """An interpreter with this environment's packages that user 65534 may run, where this machine
    lets a test become that user (root, setpriv, bubblewrap): this one where everyone may read it, else
    a virtual environment in ``tmp`` made from the system's Python of the same version, its packages
    hard links of this one's (no copy: the same file system)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None or NO_SANDBOX is not None:
        return None

    def runs(python: str) -> bool:
        code = (  # the grader starts its own children with sys.executable: they must run too
            f"import subprocess, sys; open({str(ROOT / 'grader' / 'records.py')!r}).close(); "
            "subprocess.run([sys.executable, '-c', 'import torch, pandas'], check=True)"
        )
        test = [setpriv, *NOBODY, python, "-c", code]
        return subprocess.run(test, cwd=ROOT, capture_output=True, timeout=120).returncode == 0

    if runs(sys.executable):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system, packages = Path(f"/usr/bin/python{version}"), Path(sysconfig.get_paths()["purelib"])
    if not system.exists() or os.stat(packages).st_dev != os.stat(tmp).st_dev:
        return None
    venv = tmp / "venv"
    target = venv / "lib" / f"python{version}" / "site-packages"
    if (
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)]).returncode
        or not target.is_dir()
    ):
        return None
    for entry in packages.iterdir():
        if entry.suffix != ".pth" and entry.name != "__pycache__":
            subprocess.run(["cp", "-al", str(entry), str(target)], check=True)
    os.chmod(venv, 0o755)
    python = str(venv / "bin" / "python")
    return python if runs(python) else None


@pytest.mark.slow
def test_without_a_cgroup_a_non_root_grader_says_so_and_keeps_the_process_budget(dist):
    tmp = Path(tempfile.mkdtemp(prefix="grade-nobody-"))
    try:
        os.chmod(tmp, 0o777)
        python = _python_for_nobody(tmp)
        if python is None:
            pytest.skip(
                "needs root (to become user 65534), setpriv, bubblewrap and a Python that user may run"
            )
        shutil.copytree(dist / "assignments" / "01_lstm_gru", tmp / "dist" / "assignments" / "01_lstm_gru")
        good = _code_cells(dist / "assignments" / "01_lstm_gru" / "autograder" / "01_lstm_gru.ipynb")
        subs = tmp / "subs"
        subs.mkdir()
        for name, cells in {"good01": good, "probe01": [good[0], PROBE, *good[1:]]}.items():
            nb = _notebook(cells)
            nb["metadata"]["otter"]["assignment_name"] = "01_lstm_gru"
            (subs / f"{name}.ipynb").write_text(json.dumps(nb))
        for path in [*(tmp / "dist").rglob("*"), tmp / "dist", *subs.rglob("*"), subs]:
            os.chmod(path, 0o777 if path.is_dir() else 0o666)
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "TMPDIR": str(tmp), "COURSE_OFFLINE": "1"}
        grade = [
            "-m",
            "grader",
            "grade",
            str(subs),
            "--grades",
            str(tmp / "graded"),
            "--dist",
            str(tmp / "dist"),
        ]
        command = [shutil.which("setpriv"), *NOBODY, python, *grade]
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "sandbox: no cgroup (this user may not create cgroups" in run.stdout, run.stdout
        assert "memory is limited per process only" in run.stdout
        with open(tmp / "graded" / "gradebook.csv") as f:
            rows = {r["student"]: r for r in csv.DictReader(f)}
        assert [float(rows["good01"][q]) for q in ("q1", "q2", "q3", "q4")] == [3, 3, 2, 2]
        notes = rows["probe01"]["notes"]
        assert "/tmp/fill=full" in notes and "/fill=refused" in notes, notes
        processes = int(re.search(r"processes=(\d+)", notes).group(1))
        assert processes < 64, f"RLIMIT_NPROC counts this sandbox's processes only: {notes}"
        assert not _processes_with(tmp.name), "a sandbox outlived the grader"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_the_second_batch_leaves_nothing_and_stays_within_budget(batch01):
    assert batch01["leftovers"] == {"temps": [], "processes": [], "cgroups": []}, batch01["leftovers"]
    line = next(line for line in batch01["lines"] if line.startswith("good01 "))
    assert float(re.search(r"\((\d+\.\d) s", line).group(1)) < 10, line


@pytest.mark.slow
def test_workspace_never_overwrites_learner_work(dist, tmp_path):
    dest = build_notebooks.workspace(tmp_path / "ws", dist, log=lambda *a: None)
    mine = dest / "assignments" / f"{MASTERS[0].stem}.ipynb"
    assert mine.exists() and (dest / "chapters").is_dir()
    mine.write_text("my work")
    build_notebooks.workspace(dest, dist, log=lambda *a: None)
    assert mine.read_text() == "my work"


@pytest.mark.slow
def test_the_value_check_catches_tests_that_only_check_types(dist, sandboxes):
    ag = dist / "assignments" / "00_data_and_baselines" / "autograder"
    bundle = Bundle.load(ag)
    weak = json.loads(json.dumps(bundle.questions[0]))
    weak["tests"]["suites"][0]["cases"][1]["code"] = ">>> assert isinstance(vol_2011, float)\n"
    bundle.questions[0] = weak
    scores = check_values(bundle, (ag / "00_data_and_baselines.ipynb").read_bytes(), sandboxes)
    assert scores["q1"]["vol_2011"] == 2.0, "a type-only hidden test lets a wrong value keep the marks"
    assert all(s == 0 for q in ("q2", "q3", "q4") for s in scores[q].values()), scores
    assert {a for q in scores.values() for a in q} >= {"minmax_fixed/empty", "vol_2011/extra_axis"}
    bundle.questions[2] = json.loads(json.dumps(bundle.questions[2]))  # the shape hole: allclose broadcasts
    case = bundle.questions[2]["tests"]["suites"][0]["cases"][1]
    case["code"] = (
        ">>> _v = np.random.default_rng(1).normal(size=(100, 3))\n>>> _low, _high = _v[:60].min(axis=0), _v[:60].max(axis=0)\n>>> assert np.allclose(minmax_fixed(_v, 60), (_v - _low) / (_high - _low))\n"
    )
    scores = check_values(bundle, (ag / "00_data_and_baselines.ipynb").read_bytes(), sandboxes)
    assert scores["q3"] == {  # each wrong shape broadcasts against the right one and passes allclose
        "minmax_fixed": 0,
        "minmax_fixed/empty": 3.0,
        "minmax_fixed/extra_axis": 3.0,
        "minmax_fixed/broadcast": 3.0,
    }
