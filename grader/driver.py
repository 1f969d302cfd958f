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
import re
import threading
import time
from pathlib import Path

from .records import (
    CALL_SECONDS,
    FILE_BYTES,
    SANDBOX_PROCESSES,
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
from .scoring import MUTANTS, mutant, perturb, run_setup, score_question
from .submissions import find_submissions, parse_notebook, plan_steps
from .testhost import TestHost

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
    "TestHost",
    "check_values",
    "feedback_text",
    "find_bwrap",
    "find_submissions",
    "grade_folder",
    "grade_one",
    "mutant",
    "parse_notebook",
    "perturb",
    "plan_steps",
    "run_sandbox",
    "run_setup",
    "score_question",
    "start_sandboxes",
    "write_outputs",
]


TYPE_NAME = re.compile(r"[A-Za-z_][\w.]{0,79}")


def _nproc_limit(sandboxes: Sandboxes) -> int | None:
    """RLIMIT_NPROC for the runner where no cgroup counts processes: from Linux 5.14 a sandbox's own
    user namespace counts only its processes (root is exempt from the limit anyway)."""
    if sandboxes.unsandboxed or sandboxes.cgroups.parents or os.geteuid() == 0:
        return None
    with contextlib.suppress(ValueError):
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
        if (major, minor) >= (5, 14):
            return SANDBOX_PROCESSES
    return None


def _cell_error(message: dict, cell, withheld: bool) -> str:
    """A cell's error for notes and feedback: the type (checked to be a name), then the message the
    notebook supplied, quoted as such, or withheld once the tests have called its functions."""
    kind = str(message.get("type"))
    kind = kind if TYPE_NAME.fullmatch(kind) else "an error"
    if withheld:
        return (
            f"cell {cell} raised {kind} (its message is not shown once the tests have called your functions)"
        )
    text = " ".join(str(message.get("message", "")).split())[:200].replace("`", "'")
    return f"cell {cell} raised {kind}" + (f" (message from the notebook: `{text}`)" if text else "")


def run_sandbox(
    sub: Submission,
    steps: list[dict],
    bundle: Bundle,
    host: TestHost,
    sandboxes: Sandboxes,
    timeout: float,
    mutants: dict | None = None,
) -> SandboxRun:
    """Run one submission in a fresh sandbox; score function answers live, keep the last data answers.

    Cell numbers come from the plan: the runner must report the steps in order (anything else is a
    forged message and ends the run); a cell's error is recorded once, for the cell that is running.
    """
    run = SandboxRun()
    tmp = sandboxes.workdir()
    questions = {q["name"]: q for q in bundle.questions}
    order = [step["cell"] for step in steps] + ["end"]
    proc, tested = None, False
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
                    "processes": _nproc_limit(sandboxes),
                    "call_seconds": CALL_SECONDS,
                }
            )
            finished, position, errored = False, 0, set()
            while (message := channel.receive()) is not None:
                kind = message.get("kind")
                if kind == "cell":
                    if position >= len(order) or message.get("cell") != order[position]:
                        channel.broken = (
                            "the notebook wrote into the grader's channel (a message out of order)"
                        )
                        break
                    run.stopped_at, position = order[position], position + 1
                elif kind == "error" and run.stopped_at != "end" and run.stopped_at not in errored:
                    errored.add(run.stopped_at)
                    run.errors.append(
                        {"cell": run.stopped_at, "error": _cell_error(message, run.stopped_at, tested)}
                    )
                elif kind == "answers" and message.get("question") in questions:
                    q = questions[message["question"]]
                    values = message.get("values")
                    if not isinstance(values, dict):
                        continue
                    run.answers[q["name"]] = values
                    if any(isinstance(v, dict) and v.get("__function__") is True for v in values.values()):
                        tested = True
                        result = host.score(q, values, channel=channel)
                        if mutants is not None:
                            mutants[q["name"]] = {
                                (name, kind): host.score(
                                    q, values, channel=channel, mutate=name, mutation=kind
                                )
                                for name in q["answers"]
                                for kind in MUTANTS
                            }
                        if (
                            not channel.ended or q["name"] not in run.scored
                        ):  # a run cut short keeps its last score
                            run.scored[q["name"]] = result
                        if channel.broken:
                            break
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
            if run.stopped_at is None:  # no cell had started: the sandbox's own message, no student text
                err = (tmp / "stderr.txt").read_text(errors="replace")[-500:].strip()
                run.problem = f"the sandbox did not start ({err or 'no message'})"
    finally:
        if proc is not None:
            sandboxes.stop(proc)
        _rmtree(tmp)
    return run


def start_sandboxes(
    bundles: list[Bundle] | None = None, unsandboxed: bool = False, tmp: Path | None = None
) -> Sandboxes:
    """The sandbox factory for one or more batches (its files under ``tmp``); close it with ``.close()``."""
    os.environ.setdefault("COURSE_OFFLINE", "1")  # the master's setup must see the data the sandboxes see
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return Sandboxes(unsandboxed=unsandboxed, tmp=tmp)


def grade_one(
    sub: Submission, bundle: Bundle, host: TestHost, sandboxes: Sandboxes, timeout: float
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
    run = run_sandbox(sub, steps, bundle, host, sandboxes, timeout)
    results = [run.scored.get(q["name"]) or _score_data(q, host, run) for q in bundle.questions]
    problems = [e["error"] for e in run.errors]
    if run.problem:
        problems.append(run.problem)
    return Report(sub.student, results, problems, run.seconds, sub.rel, sub.feedback, cpu=run.cpu)


def _score_data(q: dict, host: TestHost, run: SandboxRun, **mutation) -> QuestionResult:
    values = run.answers.get(q["name"])
    if values is None:  # nothing to test: the reason needs no child process
        return score_question(q, {}, None, run=run)
    return host.score(q, values, problem=run.problem, **mutation)


def grade_folder(
    bundle: Bundle,
    folder: Path,
    grades: Path | None,
    timeout: float = 60.0,
    jobs: int = 1,
    log=print,
    sandboxes: Sandboxes | None = None,
    unsandboxed: bool = False,
    host: TestHost | None = None,
) -> list[Report]:
    """Grade every submission in ``folder``; write ``grades/gradebook.csv`` and ``grades/feedback/*.md``."""
    own = sandboxes is None
    sandboxes = sandboxes or start_sandboxes([bundle], unsandboxed=unsandboxed)
    own_host = host is None
    say = (
        (lambda text: log("\n".join(UNSAFE + line for line in str(text).splitlines())))
        if sandboxes.unsandboxed
        else log
    )
    try:
        say(f"sandbox: {sandboxes.budget}")
        subs = find_submissions(folder, log=say)
        host = host or TestHost(bundle)

        def job(sub: Submission) -> Report:
            try:
                return grade_one(sub, bundle, host, sandboxes, timeout)
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
        if own_host and host is not None:
            host.close()
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
    bundle: Bundle, raw: bytes, sandboxes: Sandboxes, host: TestHost | None = None, timeout: float = 60.0
) -> dict[str, dict[str, float]]:
    """Grade the solutions with one answer at a time replaced by a wrong one (:data:`MUTANTS`: other
    numbers in the same type and shape, or the same numbers in a shape that still broadcasts).

    Returns question -> ``answer`` (other numbers) or ``answer/mutant`` -> the score it still got:
    anything above zero means the tests that carry that question's marks let that wrong answer
    through. Helpers (``_name``) are skipped.
    """
    own = host is None
    host = host or TestHost(bundle)
    try:
        mutants: dict = {}
        sub = Submission("solutions", "solutions.ipynb", raw)
        run = run_sandbox(
            sub, plan_steps(parse_notebook(raw)), bundle, host, sandboxes, timeout, mutants=mutants
        )
        for q in bundle.questions:
            if q["name"] not in mutants:
                mutants[q["name"]] = {
                    (n, kind): _score_data(q, host, run, mutate=n, mutation=kind)
                    for n in q["answers"]
                    for kind in MUTANTS
                }
            mutants[q["name"]] = {  # a mutant that is the answer itself (a string's shape) proves nothing
                (n if kind == "values" else f"{n}/{kind}"): r.score
                for (n, kind), r in mutants[q["name"]].items()
                if not n.startswith("_") and (r.mutated or kind == "values")
            }
    finally:
        if own:
            host.close()
    return mutants
