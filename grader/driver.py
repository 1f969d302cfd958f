"""Grade a folder of submitted notebooks into a gradebook and one feedback file per student.

How a submission is graded (docs/instructors.md says why):

1. The grader reads the assignment's bundle (``grading.json``: public and hidden tests, points, the
   master's setup code) and every submission into memory, copies the course code and data into a
   private runtime folder, and runs the master's setup code itself.
2. Each submission runs in its own sandbox (bubblewrap: own user, PID, network, IPC and mount
   namespaces; read-only views of the Python runtime and of that runtime folder; a private writable
   temporary folder; nothing else of the machine; CPU, memory and file-size limits; every process
   dies with it). ``runner.py`` runs its code cells there and sends each question's answers out as
   data (``codec.py``) through a pipe that belongs to this submission alone, after every cell.
3. This process runs every test (public and hidden) itself, outside the sandbox: on the decoded
   values, and, for an answer that is a function, by calling it in the sandbox while that sandbox is
   waiting (arguments in, data out). No student code runs here and no test runs there.
4. Once every sandbox is gone, the gradebook and the feedback files are written atomically, never
   through a symbolic link.

Whatever a submission does, it can only change its own row: it cannot see the repository, the
bundle, other submissions or this process; everything it sends is parsed with size and depth limits
and every error is caught, so the batch always produces a complete gradebook.

The grader's sections, each a module, imports going down only: :mod:`grader.records` (limits and
records) <- :mod:`grader.submissions` (reading), :mod:`grader.sandbox` (bubblewrap and pipes) <-
:mod:`grader.scoring` (tests, outside the sandbox), :mod:`grader.reports` (gradebook, feedback) <- this
driver. ``runner.py`` and ``codec.py`` are copied into each sandbox.
"""

import concurrent.futures
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

from .records import (
    CALL_SECONDS,
    FILE_BYTES,
    UNSAFE,
    Bundle,
    QuestionResult,
    Report,
    SandboxRun,
    SandboxUnavailable,
    Submission,
)
from .reports import feedback_text, write_outputs
from .sandbox import Channel, Sandboxes, _rmtree, find_bwrap
from .scoring import perturb, run_setup, score_question
from .submissions import find_submissions, parse_notebook, plan_steps

# The driver-level API in one place: what ``grader.grade`` (now an alias of this module, for one
# release) offered and callers used, besides this module's own functions.
__all__ = [
    "UNSAFE",
    "Bundle",
    "Channel",
    "QuestionResult",
    "Report",
    "SandboxRun",
    "SandboxUnavailable",
    "Sandboxes",
    "Submission",
    "check_values",
    "feedback_text",
    "find_bwrap",
    "find_submissions",
    "grade_folder",
    "grade_one",
    "parse_notebook",
    "perturb",
    "plan_steps",
    "run_sandbox",
    "run_setup",
    "score_question",
    "start_sandboxes",
    "write_outputs",
]


def run_sandbox(
    sub: Submission,
    steps: list[dict],
    bundle: Bundle,
    setup_ns: dict,
    sandboxes: Sandboxes,
    timeout: float,
    mutants: dict | None = None,
) -> SandboxRun:
    """Run one submission in a fresh sandbox; score function answers live, keep the last data answers."""
    run = SandboxRun()
    tmp = Path(tempfile.mkdtemp(prefix="grade-sub-"))
    questions = {q["name"]: q for q in bundle.questions}
    proc = None
    try:
        home = tmp / "home"
        home.mkdir()
        start = time.monotonic()
        proc, channel = sandboxes.start(home)
        timer = threading.Timer(timeout, lambda: sandboxes.stop(proc))
        timer.daemon = True
        timer.start()
        try:
            channel.send(
                {
                    "steps": steps,
                    "questions": [{"name": q["name"], "answers": q["answers"]} for q in bundle.questions],
                    "cpu_seconds": max(1, int(timeout) + 1),
                    "memory_bytes": sandboxes.memory_bytes,
                    "file_bytes": FILE_BYTES,
                    "call_seconds": CALL_SECONDS,
                }
            )
            finished = False
            while (message := channel.receive()) is not None:
                kind = message.get("kind")
                if kind == "cell":
                    run.stopped_at = message.get("cell")
                elif kind == "error" and len(run.errors) < 50:
                    run.errors.append({"cell": message.get("cell"), "error": str(message.get("error"))[:400]})
                elif kind == "answers" and message.get("question") in questions:
                    q = questions[message["question"]]
                    values = message.get("values")
                    if not isinstance(values, dict):
                        continue
                    run.answers[q["name"]] = values
                    if any(isinstance(v, dict) and v.get("__function__") is True for v in values.values()):
                        result = score_question(q, setup_ns, values, channel=channel)
                        if mutants is not None:
                            mutants[q["name"]] = {
                                name: score_question(q, setup_ns, values, channel=channel, mutate=name).score
                                for name in q["answers"]
                            }
                        if (
                            not channel.ended or q["name"] not in run.scored
                        ):  # a run cut short keeps its last score
                            run.scored[q["name"]] = result
                        channel.send({"done": True})
                elif kind == "finished":
                    finished = True
                    with contextlib.suppress(TypeError, ValueError):
                        run.cpu = float(message.get("cpu"))
                    break
        except (BrokenPipeError, OSError):
            finished = False
        finally:
            timer.cancel()
            ran_out = time.monotonic() - start >= timeout
            sandboxes.stop(proc)
            os.close(channel.send_fd)
            os.close(channel.recv_fd)
        run.seconds = time.monotonic() - start
        where = "at the end" if run.stopped_at == "end" else f"while running cell {run.stopped_at}"
        if channel.broken:
            run.problem = f"{channel.broken} {where}; its answers until then are kept"
        elif ran_out:
            run.problem = f"time limit of {timeout:g} s reached {where}"
        elif not finished:
            run.problem = f"the notebook's process stopped {where}"
            if run.stopped_at is None:
                err = (tmp / "stderr.txt").read_text(errors="replace")[-500:].strip()
                run.problem = f"the sandbox did not start ({err or 'no message'})"
    finally:
        if proc is not None:
            sandboxes.stop(proc)
        _rmtree(tmp)
    return run


def start_sandboxes(bundles: list[Bundle] | None = None, unsandboxed: bool = False) -> Sandboxes:
    """The sandbox factory for one or more batches; close it with ``.close()``."""
    os.environ.setdefault("COURSE_OFFLINE", "1")  # the master's setup must see the data the sandboxes see
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return Sandboxes(unsandboxed=unsandboxed)


def grade_one(
    sub: Submission, bundle: Bundle, setup_ns: dict, sandboxes: Sandboxes, timeout: float
) -> Report:
    if sub.problem is None:
        try:
            steps = plan_steps(parse_notebook(sub.raw))
        except ValueError as err:
            sub.problem = f"not graded: {err}"
    if sub.problem is not None:
        results = [
            QuestionResult(q["name"], 0.0, float(q["points"]), reason=sub.problem) for q in bundle.questions
        ]
        return Report(sub.student, results, [sub.problem], 0.0, sub.rel, sub.feedback, graded=False)
    run = run_sandbox(sub, steps, bundle, setup_ns, sandboxes, timeout)
    results = [
        run.scored.get(q["name"]) or score_question(q, setup_ns, run.answers.get(q["name"]), run=run)
        for q in bundle.questions
    ]
    problems = [f"cell {e['cell']} raised {e['error']}" for e in run.errors]
    if run.problem:
        problems.append(run.problem)
    return Report(sub.student, results, problems, run.seconds, sub.rel, sub.feedback, cpu=run.cpu)


def grade_folder(
    bundle: Bundle,
    folder: Path,
    grades: Path | None,
    timeout: float = 60.0,
    jobs: int = 1,
    log=print,
    sandboxes: Sandboxes | None = None,
    unsandboxed: bool = False,
) -> list[Report]:
    """Grade every submission in ``folder``; write ``grades/gradebook.csv`` and ``grades/feedback/*.md``."""
    own = sandboxes is None
    sandboxes = sandboxes or start_sandboxes([bundle], unsandboxed=unsandboxed)
    say = (
        (lambda text: log("\n".join(UNSAFE + line for line in str(text).splitlines())))
        if sandboxes.unsandboxed
        else log
    )
    try:
        subs = find_submissions(folder, log=say)
        setup_ns = run_setup(bundle)

        def job(sub: Submission) -> Report:
            try:
                return grade_one(sub, bundle, setup_ns, sandboxes, timeout)
            except Exception as err:  # the grader's own failure on one submission never stops the batch
                why = f"not graded: the grader failed on this submission ({type(err).__name__}: {str(err)[:200]})"
                results = [
                    QuestionResult(q["name"], 0.0, float(q["points"]), reason=why) for q in bundle.questions
                ]
                return Report(sub.student, results, [why], 0.0, sub.rel, sub.feedback, graded=False)

        reports = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for rep in pool.map(job, subs):
                reports.append(rep)
                say(
                    f"{rep.student:<30} {rep.total:>6g} / {bundle.possible:g}   ({rep.seconds:.1f} s"
                    + (f", CPU {rep.cpu:.1f} s)" if rep.cpu is not None else ")")
                    + (f"   {rep.problems[-1]}" if rep.problems else "")
                )
    finally:
        if own:
            sandboxes.close()
    graded = sum(r.graded for r in reports)
    say(
        f"{len(subs)} notebooks found, {graded} graded, {len(subs) - graded} reported without grading"
        + ("" if not sandboxes.unsandboxed else " (graded WITHOUT a sandbox)")
    )
    if grades is not None:  # only now: every sandbox of this batch is gone
        path = write_outputs(bundle, reports, grades)
        say(f"gradebook: {path}\nfeedback:  {grades / 'feedback'}/<student>.md")
    return reports


def check_values(
    bundle: Bundle, raw: bytes, sandboxes: Sandboxes, setup_ns: dict | None = None, timeout: float = 60.0
) -> dict[str, dict[str, float]]:
    """Grade the solutions with one answer at a time perturbed (same type and shape, other numbers).

    Returns question -> answer -> the score it still got: anything above zero means the tests that
    carry that question's marks do not check that answer's value. Helpers (``_name``) are skipped.
    """
    setup_ns = setup_ns if setup_ns is not None else run_setup(bundle)
    mutants: dict = {}
    sub = Submission("solutions", "solutions.ipynb", raw)
    run = run_sandbox(
        sub, plan_steps(parse_notebook(raw)), bundle, setup_ns, sandboxes, timeout, mutants=mutants
    )
    for q in bundle.questions:
        if q["name"] not in mutants:
            mutants[q["name"]] = {
                n: score_question(q, setup_ns, run.answers.get(q["name"]), run=run, mutate=n).score
                for n in q["answers"]
            }
        mutants[q["name"]] = {n: s for n, s in mutants[q["name"]].items() if not n.startswith("_")}
    return mutants
