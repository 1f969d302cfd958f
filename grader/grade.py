"""Grade a folder of submitted notebooks into a gradebook and one feedback file per student.

How a submission is graded (see docs/instructors.md for the why):

1. The grader reads the assignment's bundle (``grading.json``, written by ``make assignments`` from
   otter's autograder output: public and hidden tests, points, the master's setup code), every
   submission, and the course code it ships to the sandboxes, into memory, before any student code
   runs. It runs the master's setup code itself.
2. Each submission runs in its own process (``runner.py``), in a fresh temporary directory holding
   only a copy of the notebook and of the course code, under a time limit. That process exports the
   answer variables of each question as data (see ``codec.py``); functions are exported as the record
   of their calls while the tests ran there.
3. This process then runs otter's test cases (``OKTestFile``) on the master's setup plus the decoded
   answers, with recorded calls replayed. No student code runs here, so patching ``numpy``, otter,
   ``grader.check`` or the builtins inside the notebook changes nothing, and no file the submission
   writes is unpickled or executed.

A submission that is not a notebook, raises, loops, exits or deletes its directory gets zero on the
questions it did not answer, with the reason in its feedback; the batch goes on.
"""

import builtins
import concurrent.futures
import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import codec

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
MAX_NOTEBOOK_BYTES = 20_000_000
MAX_ANSWER_BYTES = 50_000_000
TEST_SECONDS = 20  # limit for the tests of one question in this process

INIT_LINE = re.compile(r"^(import otter|grader\s*=\s*otter\.Notebook\(.*\)|#.*)$")
CHECK_CELL = re.compile(r"^grader\.check\(\s*[\"'](\w+)[\"']\s*\)$")
GRADER_CALL = re.compile(r"^(grader\.\w+\(.*\)|#.*)$")


@dataclass
class Bundle:
    name: str
    setup: str
    questions: list[dict]

    @classmethod
    def load(cls, path: Path) -> "Bundle":
        spec = json.loads((path / "grading.json").read_text() if path.is_dir() else path.read_text())
        return cls(spec["name"], spec["setup"], spec["questions"])

    @property
    def possible(self) -> float:
        return sum(q["points"] for q in self.questions)


@dataclass
class Submission:
    student: str
    path: Path
    raw: bytes


@dataclass
class SandboxRun:
    answers: dict = field(default_factory=dict)  # question -> raw JSON of the export
    errors: list = field(default_factory=list)  # cell errors
    problem: str | None = None  # why the run stopped early, if it did
    stopped_at: object = None
    seconds: float = 0.0


@dataclass
class QuestionResult:
    name: str
    score: float
    possible: float
    cases: list = field(default_factory=list)  # (hidden, passed, message)
    reason: str | None = None


@dataclass
class Report:
    student: str
    results: list[QuestionResult]
    problems: list[str]
    seconds: float

    @property
    def total(self) -> float:
        return sum(r.score for r in self.results)


# ----------------------------------------------------------------------------------------- reading


def find_submissions(folder: Path) -> list[Submission]:
    """``folder/<student>.ipynb``, or ``folder/<student>/<any>.ipynb`` (one notebook per student)."""
    subs = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix == ".ipynb":
            subs.append(Submission(path.stem, path, b""))
        elif path.is_dir() and not path.name.startswith("."):
            notebooks = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            if notebooks:
                subs.append(Submission(path.name, notebooks[0] if len(notebooks) == 1 else path, b""))
    for sub in subs:  # read everything now: a submission that deletes files cannot hurt the others
        if sub.path.is_file():
            with open(sub.path, "rb") as f:
                sub.raw = f.read(MAX_NOTEBOOK_BYTES + 1)
    return subs


def parse_notebook(raw: bytes) -> list[str]:
    """The code cells' sources; raises ``ValueError`` with a readable reason for anything else."""
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"the file is larger than {MAX_NOTEBOOK_BYTES // 1_000_000} MB")
    try:
        nb = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"the file is not UTF-8 text ({err})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"the file is not valid notebook JSON ({err})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("the file is JSON but not a Jupyter notebook (no list of cells)")
    sources = []
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise ValueError(f"cell {i} is not a notebook cell")
        src = cell.get("source", "")
        if isinstance(src, list) and all(isinstance(s, str) for s in src):
            src = "".join(src)
        if not isinstance(src, str):
            raise ValueError(f"cell {i} has no text source")
        if cell["cell_type"] == "code":
            sources.append(src)
    return sources


def plan_steps(sources: list[str]) -> list[dict]:
    """Run every code cell; otter's init cell is skipped and ``grader.check("q")`` marks an export point."""
    steps = []
    for i, src in enumerate(sources, start=1):
        lines = [s.strip() for s in src.strip().splitlines() if s.strip()]
        check = CHECK_CELL.match(lines[0]) if len(lines) == 1 else None
        if check:
            steps.append({"kind": "check", "cell": i, "question": check.group(1)})
        elif lines and "otter.Notebook(" in src and all(INIT_LINE.match(s) for s in lines):
            steps.append({"kind": "skip", "cell": i})
        elif lines and all(GRADER_CALL.match(s) for s in lines):
            steps.append({"kind": "skip", "cell": i})
        else:
            steps.append({"kind": "code", "cell": i, "source": src})
    return steps


# ----------------------------------------------------------------------------------------- sandbox


def snapshot_course_files() -> dict[str, bytes]:
    """The files each sandbox gets, read once: a submission that edits the repository changes nothing."""
    files = {}
    for base, pattern in (("course_lib", "**/*.py"), ("data", "*")):
        for path in sorted((ROOT / base).glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"lib/{path.relative_to(ROOT)}"] = path.read_bytes()
    for name in ("runner.py", "codec.py", "zygote.py"):
        files[f"runner/{name}"] = (HERE / name).read_bytes()
    return files


PRELOAD = ["numpy", "pandas", "scipy.stats", "torch", "matplotlib.pyplot", "IPython.core.interactiveshell",
           "traitlets.config", "doctest", "arch.data.sp500", "arch.data.nasdaq", "otter"]


def _setup_imports(code: str) -> list[str]:
    import ast

    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _limits():  # pragma: no cover (runs in the child)
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie nobody reaps (its zygote was killed) is dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


class Sandboxes:
    """Starts sandboxed runs: forked from a warm zygote on Linux, else as fresh interpreters."""

    def __init__(self, files: dict[str, bytes], modules: list[str], zygote: bool | None = None):
        self.files, self.lock, self.zygote = files, threading.Lock(), None
        self.zygote_root, self.starting = None, False
        if zygote is None:
            zygote = sys.platform == "linux" and os.environ.get("GRADING_NO_FORK") != "1"
        if zygote:
            with contextlib.suppress(Exception):
                self._start_zygote(modules)

    def _populate(self, root: Path) -> None:
        for rel, data in self.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)

    @staticmethod
    def env(root: Path) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "PYTHONPATH": str(root / "lib"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "COURSE_OFFLINE": "1",
            "COURSE_DEVICE": "cpu",
            "COURSE_CACHE_DIR": str(root / "cache"),
            "IPYTHONDIR": str(root / "ipython"),
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        with contextlib.suppress(Exception):
            import matplotlib

            env["MPLCONFIGDIR"] = matplotlib.get_configdir()  # share the font cache: no rebuild per student
        return env

    def _start_zygote(self, modules: list[str]) -> None:
        root = Path(tempfile.mkdtemp(prefix="grade-zygote-"))
        self._populate(root)
        self.zygote_root = root
        self.zygote = subprocess.Popen(
            [sys.executable, str(root / "runner" / "zygote.py")], cwd=root, env=self.env(root),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )
        self._send({"modules": modules})  # it imports them while this process runs the master's setup
        self.starting = True

    def _send(self, request: dict) -> None:
        self.zygote.stdin.write(json.dumps(request) + "\n")
        self.zygote.stdin.flush()

    def _ask(self, request: dict) -> dict:
        if self.starting:
            self.starting = False
            if json.loads(self.zygote.stdout.readline()).get("ready") is not True:
                raise ValueError("the zygote did not start")
        self._send(request)
        return json.loads(self.zygote.stdout.readline())

    def run(self, root: Path, work: Path, out: Path, timeout: float) -> tuple[bool, float]:
        """Run the sandbox in ``root``: (whether it ended by itself within ``timeout`` s, seconds taken)."""
        self._populate(root)
        log, plan = root / "log.txt", root / "plan.json"
        runner = root / "runner" / "runner.py"
        if self.zygote is not None:
            try:
                with self.lock:
                    pid = self._ask({"root": str(root), "work": str(work), "plan": str(plan), "out": str(out),
                                     "log": str(log), "env": self.env(root)})["pid"]
            except (OSError, ValueError, KeyError):
                self.zygote = None  # killed by a submission, say: fall back to fresh interpreters
            else:
                start = time.monotonic()
                while _alive(pid) and time.monotonic() < start + timeout:
                    time.sleep(0.05)
                ended, seconds = not _alive(pid), time.monotonic() - start
                _kill_group(pid)
                while _alive(pid):
                    time.sleep(0.01)
                return ended, seconds
        start = time.monotonic()
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, str(runner), str(plan), str(out)], cwd=work, env=self.env(root),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_limits if os.name == "posix" else None,
            )
            try:
                proc.wait(timeout=timeout)
                ended = True
            except subprocess.TimeoutExpired:
                ended = False
            finally:
                if hasattr(os, "killpg"):
                    _kill_group(proc.pid)
                else:
                    proc.kill()
                proc.wait()
        return ended, time.monotonic() - start

    def close(self) -> None:
        if self.zygote is not None:
            _kill_group(self.zygote.pid)
            self.zygote.wait()
        if self.zygote_root is not None:
            shutil.rmtree(self.zygote_root, ignore_errors=True)


def run_sandbox(sub: Submission, steps: list[dict], bundle: Bundle, sandboxes: Sandboxes,
                timeout: float, notebook_name: str) -> SandboxRun:
    run = SandboxRun()
    root = Path(tempfile.mkdtemp(prefix="grade-"))
    try:
        work, out = root / "work", root / "out"
        work.mkdir()
        out.mkdir()
        (work / notebook_name).write_bytes(sub.raw)
        plan = {"steps": steps, "questions": [
            {"name": q["name"], "answers": q["answers"], "tests": [c["code"] for c in q["tests"]["suites"][0]["cases"]]}
            for q in bundle.questions
        ]}
        (root / "plan.json").write_text(json.dumps(plan))
        ended, run.seconds = sandboxes.run(root, work, out, timeout)
        progress = _read_json(out / "progress.json", 1_000_000)
        if isinstance(progress, dict):
            run.errors = [e for e in progress.get("errors", []) if isinstance(e, dict)][:50]
            run.stopped_at = progress.get("step")
        where = "at the end" if run.stopped_at == "end" else f"while running cell {run.stopped_at}"
        if not out.is_dir():
            run.problem = "the submission deleted its grading directory"
        elif not ended:
            run.problem = f"time limit of {timeout:g} s reached {where}"
        elif not (isinstance(progress, dict) and progress.get("finished") is True):
            run.problem = f"the notebook's process stopped {where}"
        for q in bundle.questions:
            data = _read_json(out / f"answers_{q['name']}.json", MAX_ANSWER_BYTES)
            if data is not None:
                run.answers[q["name"]] = data
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return run


def _read_json(path: Path, limit: int):
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------- scoring


class Replay:
    """Stands for a submitted function: returns what it returned in the sandbox for the same arguments."""

    def __init__(self, name: str, calls: dict):
        self.name, self.calls, self.used = name, calls, {}

    def __call__(self, *args, **kwargs):
        k = codec.key(args, kwargs)
        results = self.calls.get(k)
        n = self.used.get(k, 0)
        if not isinstance(results, list) or n >= len(results):
            raise LookupError(
                f"{self.name} was not called with these arguments when your notebook ran "
                "(was it redefined, or did it change data the tests use?)"
            )
        self.used[k] = n + 1
        outcome = results[n]
        if not isinstance(outcome, dict):
            raise ValueError("malformed call record")
        if "raise" in outcome:
            exc = getattr(builtins, str(outcome["raise"]), None)
            if not (isinstance(exc, type) and issubclass(exc, Exception)):
                exc = RuntimeError
            raise exc(f"{outcome['raise']}: {outcome.get('message', '')}")
        return codec.decode(outcome["value"])


class _TestTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _TestTimeout(f"the tests took more than {seconds:g} s on this answer")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)



def _short(message: str, show_code: bool = False) -> str:
    """The first failing line and its error, out of doctest's long report (the code only for public tests)."""
    lines = message.splitlines()
    if "Failed example:" not in lines:
        nonempty = [s.strip() for s in lines if s.strip()]
        return (nonempty[-1] if nonempty else "failed")[:300]
    at = lines.index("Failed example:")
    code = lines[at + 1].strip()
    if "Got:" in lines[at:] and "Exception raised:" not in lines[at:]:
        got = lines[lines.index("Got:", at) + 1].strip()
        return f"`{code[:200]}` printed {got[:200]} (the tests expect no output)" if show_code else "unexpected output"
    error = next((s.strip() for s in lines[at + 2:] if s.startswith("    ") and not s.startswith("     ")
                  and not s.strip().startswith("Traceback")), "the output differed from the expected one")
    return f"`{code[:200]}` raised {error[:300]}" if show_code else error[:300]


def score_question(q: dict, setup_ns: dict, export, run: SandboxRun) -> QuestionResult:
    from otter.test_files.ok_test import OKTestFile

    test_file = OKTestFile.from_spec(q["tests"])
    result = QuestionResult(q["name"], 0.0, float(test_file.possible))
    if export is None:
        result.reason = (
            f"not graded: {run.problem}, before this question was reached" if run.problem
            else "no answer was exported for this question"
        )
        return result
    ns = dict(setup_ns)
    try:
        values, calls = export["values"], export["calls"]
        for name in q["answers"]:
            value = values.get(name, {"__missing__": True})
            if isinstance(value, dict) and value.get("__missing__") is True:
                ns.pop(name, None)
            elif isinstance(value, dict) and value.get("__function__") is True:
                ns[name] = Replay(name, calls.get(name, {}))
            else:
                ns[name] = codec.decode(value)
    except Exception as err:
        result.reason = f"the answer could not be read back ({type(err).__name__}: {err})"
        return result
    try:
        with _time_limit(TEST_SECONDS):
            test_file.run(ns)
    except _TestTimeout as err:
        result.reason = str(err)
        return result
    result.score = float(test_file.score)
    result.cases = [(r.test_case.hidden, r.passed, r.message) for r in test_file.test_case_results]
    return result


def run_setup(bundle: Bundle) -> dict:
    """Execute the master's setup code (trusted) once, in a scratch directory."""
    import matplotlib

    matplotlib.use("Agg")
    ns = {"__name__": "__grading_setup__"}
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        exec(compile(bundle.setup, f"<setup of {bundle.name}>", "exec"), ns)
    return ns


def _preload_course_lib() -> None:
    """Import every course module now, before any submission runs and could edit the files."""
    import importlib
    import pkgutil

    import course_lib

    for mod in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
        with contextlib.suppress(Exception):
            importlib.import_module(mod.name)


# ----------------------------------------------------------------------------------------- reports


def feedback_text(bundle: Bundle, report: Report) -> str:
    lines = [f"# Feedback: {report.student}, assignment {bundle.name}", "",
             f"**Score: {report.total:g} / {bundle.possible:g}**", ""]
    if report.problems:
        lines += ["## While running your notebook", ""] + [f"- {p}" for p in report.problems] + [""]
    for r in report.results:
        lines += [f"## {r.name}: {r.score:g} / {r.possible:g}", ""]
        if r.reason:
            lines += [f"- {r.reason}"]
        for i, (hidden, passed, message) in enumerate(r.cases, start=1):
            kind = "hidden test" if hidden else "public test"
            if passed:
                lines.append(f"- {kind} {i}: passed")
            else:
                lines.append(f"- {kind} {i}: failed: {_short(message, show_code=not hidden)}")
        lines.append("")
    return "\n".join(lines)


def write_outputs(bundle: Bundle, reports: list[Report], grades: Path) -> Path:
    grades.mkdir(parents=True, exist_ok=True)
    feedback = grades / "feedback"
    feedback.mkdir(exist_ok=True)
    names = [q["name"] for q in bundle.questions]
    gradebook = grades / "gradebook.csv"
    with open(gradebook, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", *names, "total", "possible", "notes"])
        for rep in sorted(reports, key=lambda r: r.student):
            scores = {r.name: r.score for r in rep.results}
            notes = "; ".join(rep.problems)
            w.writerow([rep.student, *[f"{scores[n]:g}" for n in names], f"{rep.total:g}", f"{bundle.possible:g}", notes])
    for rep in reports:
        (feedback / f"{_safe(rep.student)}.md").write_text(feedback_text(bundle, rep))
    return gradebook


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name) or "student"


# ----------------------------------------------------------------------------------------- driver


def start_sandboxes(bundles: list[Bundle]) -> Sandboxes:
    """One warm zygote for one or more assignments; close it with ``.close()``."""
    os.environ.setdefault("COURSE_OFFLINE", "1")  # the master's setup must see the data the sandboxes see
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    modules = PRELOAD + [m for b in bundles for m in _setup_imports(b.setup)]
    return Sandboxes(snapshot_course_files(), list(dict.fromkeys(modules)))


def grade_folder(bundle: Bundle, folder: Path, grades: Path | None, timeout: float = 60.0,
                 jobs: int = 1, notebook_name: str | None = None, log=print,
                 sandboxes: Sandboxes | None = None) -> list[Report]:
    """Grade every submission in ``folder``; write ``grades/gradebook.csv`` and ``grades/feedback/*.md``."""
    subs = find_submissions(folder)
    own = sandboxes is None
    sandboxes = sandboxes or start_sandboxes([bundle])
    _preload_course_lib()
    setup_ns = run_setup(bundle)
    from otter.test_files.ok_test import OKTestFile  # noqa: F401  (imported before any submission runs)
    notebook_name = notebook_name or f"{bundle.name}.ipynb"

    def sandbox(sub: Submission):
        if not sub.path.is_file():
            return sub, None, "several notebooks in the student's folder: submit exactly one"
        try:
            steps = plan_steps(parse_notebook(sub.raw))
        except ValueError as err:
            return sub, None, f"not graded: {err}"
        return sub, run_sandbox(sub, steps, bundle, sandboxes, timeout, notebook_name), None

    reports = []
    with contextlib.ExitStack() as stack:
        if own:
            stack.callback(sandboxes.close)
        pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)))
        for fut in concurrent.futures.as_completed([pool.submit(sandbox, s) for s in subs]):
            sub, run, invalid = fut.result()
            if run is None:
                results = [QuestionResult(q["name"], 0.0, float(q["points"]), reason=invalid) for q in bundle.questions]
                rep = Report(sub.student, results, [invalid], 0.0)
            else:
                results = [score_question(q, setup_ns, run.answers.get(q["name"]), run) for q in bundle.questions]
                problems = [f"cell {e.get('cell')} raised {e.get('error')}" for e in run.errors]
                if run.problem:
                    problems.append(run.problem)
                rep = Report(sub.student, results, problems, run.seconds)
            reports.append(rep)
            log(f"{sub.student:<30} {rep.total:>6g} / {bundle.possible:g}   ({rep.seconds:.1f} s)"
                + (f"   {rep.problems[-1]}" if rep.problems else ""))
    if grades is not None:
        path = write_outputs(bundle, reports, grades)
        log(f"gradebook: {path}\nfeedback:  {grades / 'feedback'}/<student>.md")
    return reports
