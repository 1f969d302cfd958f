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
"""

import ast
import concurrent.futures
import contextlib
import csv
import doctest
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

from . import codec

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
MAX_NOTEBOOK_BYTES = 20_000_000
MAX_FRAME_BYTES = 32_000_000  # one message from a sandbox
MAX_TOTAL_BYTES = 200_000_000  # everything one sandbox may send
MEMORY_BYTES = 4 << 30  # address space of each process in a sandbox
FILE_BYTES = 256 << 20  # largest file a sandbox may write
CALL_SECONDS = 10.0  # one call of a submitted function while its tests run
HEADER = 12
UNSAFE = "UNSAFE (no sandbox): "
SETUP_MODULE = "grading_setup_"  # the runner knows this prefix

INIT_LINE = re.compile(r"^(import otter|grader\s*=\s*otter\.Notebook\(.*\)|#.*)$")
CHECK_CELL = re.compile(r"^grader\.check\(\s*[\"'](\w+)[\"']\s*\)$")
GRADER_CALL = re.compile(r"^(grader\.\w+\(.*\)|#.*)$")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


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
        return sum(float(q["points"]) for q in self.questions)


@dataclass
class Submission:
    student: str  # the name in the gradebook (unique in the batch)
    rel: str  # the path inside the submissions folder
    raw: bytes = b""
    problem: str | None = None  # why it cannot be graded, if it cannot
    feedback: str = ""  # the feedback file's name (unique, safe)


@dataclass
class SandboxRun:
    answers: dict = field(default_factory=dict)  # question -> its last message {"values": ...}
    scored: dict = field(default_factory=dict)  # question -> QuestionResult (function answers, scored live)
    errors: list = field(default_factory=list)  # cell errors
    problem: str | None = None  # why the run stopped early, if it did
    stopped_at: object = None
    seconds: float = 0.0
    cpu: float | None = None  # CPU seconds the notebook's process used, as it reported them


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
    rel: str = ""
    feedback: str = ""
    graded: bool = True  # False: reported without running (not a notebook, several notebooks, ...)
    cpu: float | None = None

    @property
    def total(self) -> float:
        return sum(r.score for r in self.results)


# ----------------------------------------------------------------------------------------- reading


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name).strip(".") or "student"


def find_submissions(folder: Path, log=print) -> list[Submission]:
    """Every ``.ipynb`` (any case) in ``folder``: ``<student>.ipynb`` or ``<student>/<any>.ipynb``.

    Nothing is dropped silently: a notebook that cannot be graded (several in one folder, only a
    Jupyter checkpoint, a symbolic link, too large) gets a row with the reason; names that would
    collide in the gradebook or as feedback files are made unique.
    """
    subs, ignored = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            ignored.append(path.name)
        elif path.is_symlink():
            subs.append(
                Submission(
                    path.stem if _is_nb(path) else path.name,
                    path.name,
                    problem="a symbolic link, not a file: submit the notebook itself",
                )
            )
        elif path.is_file():
            if _is_nb(path):
                subs.append(Submission(path.stem, path.name))
            else:
                ignored.append(path.name)
        elif path.is_dir():
            notebooks, checkpoints = [], []
            for p in sorted(path.rglob("*")):
                if _is_nb(p) and (p.is_file() or p.is_symlink()):
                    inner = p.relative_to(path).parts[:-1]
                    (checkpoints if any(s.startswith(".") for s in inner) else notebooks).append(p)
            rel = f"{path.name}/"
            if len(notebooks) == 1:
                nb = notebooks[0]
                problem = (
                    "a symbolic link, not a file: submit the notebook itself" if nb.is_symlink() else None
                )
                subs.append(Submission(path.name, str(nb.relative_to(folder)), problem=problem))
            elif notebooks:
                names = ", ".join(str(p.relative_to(path)) for p in notebooks)
                subs.append(
                    Submission(path.name, rel, problem=f"several notebooks ({names}): submit exactly one")
                )
            elif checkpoints:
                subs.append(
                    Submission(
                        path.name,
                        rel,
                        problem="only a Jupyter checkpoint "
                        f"({checkpoints[0].relative_to(path)}): submit the notebook itself",
                    )
                )
            else:
                ignored.append(rel)
    _disambiguate(subs)
    for sub in subs:  # read everything now: a submission cannot change the others' files later anyway
        if sub.problem is None:
            with open(folder / sub.rel, "rb") as f:
                sub.raw = f.read(MAX_NOTEBOOK_BYTES + 1)
    if ignored:
        log(f"ignored (not a notebook, or hidden): {', '.join(ignored)}")
    return subs


def _is_nb(path: Path) -> bool:
    return path.suffix.lower() == ".ipynb"


def _disambiguate(subs: list[Submission]) -> None:
    """Unique gradebook names (the path when two students share one) and unique feedback files."""

    def clash(key):
        seen = {}
        for s in subs:
            seen.setdefault(key(s), []).append(s)
        return [group for group in seen.values() if len(group) > 1]

    for group in clash(lambda s: s.student.casefold()):
        for s in group:
            s.student = s.rel
    for s in subs:
        s.feedback = _safe(s.student)
    for group in clash(lambda s: s.feedback.casefold()):
        for s in group:  # 'a b' and 'a_b': a short stable hash of the real name keeps them apart
            s.feedback = f"{s.feedback}-{hashlib.sha256(s.student.encode()).hexdigest()[:8]}"
    for s in subs:
        s.feedback += ".md"


def parse_notebook(raw: bytes) -> list[str]:
    """The code cells' sources; raises ``ValueError`` with a readable reason for anything else."""
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"the file is larger than {MAX_NOTEBOOK_BYTES // 1_000_000} MB")
    try:
        nb = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"the file is not UTF-8 text ({err})") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"the file is not valid notebook JSON ({str(err)[:200]})") from None
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
    """Every code cell runs, except otter's init cell and ``grader.check`` calls (answers are read after every cell)."""
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


def _runtime_paths() -> list[str]:
    """The Python installation the sandboxes run: the venv and the interpreter it was made from."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    with contextlib.suppress(Exception):
        paths |= set(site.getsitepackages())
    out = []
    for p in sorted(os.path.realpath(p) for p in paths if p and os.path.isdir(p)):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return [p for p in out if not p.startswith("/usr/")]


def _copy_runtime(dest: Path) -> None:
    """course_lib, the packaged data and the runner, copied once per batch (then bound read-only)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "course_lib", dest / "lib" / "course_lib", ignore=ignore)
    shutil.copytree(ROOT / "data", dest / "data", ignore=ignore)
    (dest / "runner").mkdir()
    for name in ("runner.py", "codec.py"):
        shutil.copy(HERE / name, dest / "runner" / name)
    import compileall

    with contextlib.redirect_stdout(io.StringIO()):
        compileall.compile_dir(str(dest), quiet=2)  # bytecode now: the sandboxes cannot write it
    with contextlib.suppress(Exception):
        import matplotlib

        fonts = sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
        if fonts:
            (dest / "mpl").mkdir()
            shutil.copy(fonts[-1], dest / "mpl" / fonts[-1].name)  # no font-cache rebuild per student


def _bwrap_command(bwrap: str, runtime: Path, home: Path) -> list[str]:
    cmd = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--hostname",
        "sandbox",
        "--clearenv",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        p = Path("/") / name
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts"):
        if (Path("/etc") / name).exists():
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    # the private /tmp first: a runtime that lives under /tmp (a clone in /tmp/...) is bound on top of it
    cmd += ["--bind", str(home), "/tmp"]
    for p in _runtime_paths():
        cmd += ["--ro-bind", p, p]
    cmd += ["--ro-bind", str(runtime), "/course", "--chdir", "/tmp"]
    return cmd


SANDBOX_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "PYTHONPATH": "/course/lib",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "COURSE_OFFLINE": "1",
    "COURSE_DEVICE": "cpu",
    "COURSE_DATA_DIR": "/course/data",
    "COURSE_CACHE_DIR": "/tmp/cache",
    "IPYTHONDIR": "/tmp/.ipython",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp/.matplotlib",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def find_bwrap() -> str:
    """The bubblewrap binary, checked to work here; raises :class:`SandboxUnavailable` saying what to do."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: sudo apt-get install bubblewrap; "
            "Fedora: sudo dnf install bubblewrap), or grade without a sandbox with UNSANDBOXED=1 (unsafe)"
        )
    probe = subprocess.run(
        [
            bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "/usr/bin/true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot create a sandbox here ({probe.stderr.strip()[:300]}): user namespaces may be "
            "disabled (sysctl kernel.unprivileged_userns_clone=1, or the AppArmor rule of Ubuntu 24.04: see "
            "docs/instructors.md), or grade without a sandbox with UNSANDBOXED=1 (unsafe)"
        )
    return bwrap


class Channel:
    """One submission's two pipes: pickles to the sandbox, size-bounded JSON frames back."""

    def __init__(self, send_fd: int, recv_fd: int):
        self.send_fd, self.recv_fd, self.received, self.broken = send_fd, recv_fd, 0, None
        self.ended = False  # the sandbox closed its end (it finished, died or was stopped)

    def send(self, message) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = f"{len(payload):0{HEADER}d}".encode() + payload
        while data:
            data = data[os.write(self.send_fd, data) :]

    def _read(self, n: int) -> bytes | None:
        chunks = []
        while n:
            chunk = os.read(self.recv_fd, min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self):
        """The next message as a dict, or ``None`` at the end (or once the sandbox broke the protocol)."""
        if self.broken:
            return None
        try:
            head = self._read(HEADER)
            if head is None:
                self.ended = True
                return None
            if not head.isdigit():
                raise ValueError("a malformed message")
            size = int(head)
            if size > MAX_FRAME_BYTES or self.received + size > MAX_TOTAL_BYTES:
                raise ValueError(
                    f"more than {MAX_FRAME_BYTES // 1_000_000} MB in one message, or "
                    f"{MAX_TOTAL_BYTES // 1_000_000} MB in all"
                )
            self.received += size + HEADER
            payload = self._read(size)
            if payload is None:
                self.ended = True
                return None
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("a message that is not an object")
            return message
        except Exception as err:  # RecursionError from deep nesting included
            self.broken = f"the notebook sent the grader {type(err).__name__}: {str(err)[:200]}"
            return None


class Sandboxes:
    """Starts one sandbox per submission: bubblewrap, or (only when asked) a bare process."""

    def __init__(self, unsandboxed: bool = False, memory_bytes: int = MEMORY_BYTES):
        self.unsandboxed, self.memory_bytes = unsandboxed, memory_bytes
        self.bwrap = None if unsandboxed else find_bwrap()
        self.runtime = Path(tempfile.mkdtemp(prefix="grade-runtime-"))
        try:
            _copy_runtime(self.runtime)
        except BaseException:
            _rmtree(self.runtime)
            raise
        os.chmod(self.runtime, 0o755)
        self.live: set = set()
        self.lock = threading.Lock()

    def start(self, home: Path) -> tuple[subprocess.Popen, Channel]:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            if self.unsandboxed:
                runner = str(self.runtime / "runner" / "runner.py")
                env = {
                    **SANDBOX_ENV,
                    "HOME": str(home),
                    "TMPDIR": str(home),
                    "PYTHONPATH": str(self.runtime / "lib"),
                    "COURSE_DATA_DIR": str(self.runtime / "data"),
                    "COURSE_CACHE_DIR": str(home / "cache"),
                    "IPYTHONDIR": str(home / ".ipython"),
                    "MPLCONFIGDIR": str(home / ".matplotlib"),
                }
                cmd, cwd = [sys.executable, runner, str(to_child_r), str(from_child_w)], home
            else:
                cmd = _bwrap_command(self.bwrap, self.runtime, home)
                for key, value in SANDBOX_ENV.items():
                    cmd += ["--setenv", key, value]
                cmd += [sys.executable, "/course/runner/runner.py", str(to_child_r), str(from_child_w)]
                env, cwd = {"PATH": "/usr/bin:/bin"}, home
            (home / ".matplotlib").mkdir()
            for font in (self.runtime / "mpl").glob("*.json"):
                shutil.copy(font, home / ".matplotlib" / font.name)
            with open(home.parent / "stderr.txt", "wb") as err:
                proc = subprocess.Popen(
                    cmd,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    pass_fds=(to_child_r, from_child_w),
                    start_new_session=True,
                )
        except BaseException:
            os.close(to_child_w)
            os.close(from_child_r)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        with self.lock:
            self.live.add(proc)
        return proc, Channel(to_child_w, from_child_r)

    def stop(self, proc: subprocess.Popen) -> None:
        """Kill the sandbox and everything in it (its PID namespace dies with bwrap), then reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, OSError):
            proc.kill()
        proc.wait()
        with self.lock:
            self.live.discard(proc)

    def close(self) -> None:
        for proc in list(self.live):
            self.stop(proc)
        _rmtree(self.runtime)


def _rmtree(path: Path) -> None:
    def retry(func, p, exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            os.chmod(p, stat.S_IRWXU)
            func(p)

    shutil.rmtree(path, onerror=retry)


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


# ----------------------------------------------------------------------------------------- scoring


class Remote:
    """Stands for a submitted function: each call runs it in the submission's waiting sandbox."""

    def __init__(self, name: str, channel: Channel, mutate: bool = False):
        self.name, self.channel, self.mutate = name, channel, mutate

    def __call__(self, *args, **kwargs):
        try:
            self.channel.send({"call": self.name, "args": args, "kwargs": kwargs})
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise TypeError(f"the grader cannot send these arguments to {self.name} ({err})") from None
        except OSError:
            raise RuntimeError(f"your notebook stopped before {self.name} could be called") from None
        reply = self.channel.receive()
        if not isinstance(reply, dict) or reply.get("kind") not in ("return", "raise"):
            raise RuntimeError(f"your notebook stopped while the tests called {self.name}")
        if reply["kind"] == "raise":
            raise SubmittedError(str(reply.get("type"))[:80], str(reply.get("message"))[:300])
        value = codec.decode(reply.get("value"))
        return perturb(value) if self.mutate else value


class SubmittedError(Exception):
    """An exception raised by a submitted function, as reported by its sandbox."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


def perturb(value):
    """The same kind and shape of value with other numbers (to prove that tests check values)."""
    import numpy as np

    if isinstance(value, bool | np.bool_):
        return not value
    if isinstance(value, int | np.integer):
        return value + 1
    if isinstance(value, float | np.floating):
        return type(value)(value * 1.25 + 0.37)
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return ~value
        if value.dtype.kind in "iuf":
            return (value * 1.25 + 1).astype(value.dtype)
        return value
    if codec._is(value, "torch", "Tensor"):
        return ~value if str(value.dtype) == "torch.bool" else (value * 1.25 + 1).to(value.dtype)
    if codec._is(value, "pandas", "Series") or codec._is(value, "pandas", "DataFrame"):
        return value * 1.25 + 1
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[perturb(v) for v in value])
    if isinstance(value, list | tuple):
        return type(value)(perturb(v) for v in value)
    if isinstance(value, dict):
        return {k: perturb(v) for k, v in value.items()}
    return value


def case_points(q: dict) -> list[float]:
    """Marks per test case: the hidden tests share the question's points; public tests carry none."""
    cases = q["tests"]["suites"][0]["cases"]
    hidden = [c for c in cases if c.get("hidden")]
    if not hidden:
        return [float(q["points"]) / len(cases)] * len(cases)
    return [float(q["points"]) / len(hidden) if c.get("hidden") else 0.0 for c in cases]


def run_case(code: str, ns: dict, hidden: bool) -> tuple[bool, str]:
    """Run one doctest-format case in ``ns`` (thread-safe: no stdout swapping); the message is for feedback."""
    for example in doctest.DocTestParser().get_examples(code):
        shown = example.source.strip().splitlines()[0][:200] if example.source.strip() else ""
        try:
            tree = ast.parse(example.source)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, "<test>", "exec"), ns)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<test>", "eval"), ns)
                if value is not None and repr(value).strip() != example.want.strip():
                    return False, (
                        f"`{shown}` printed {repr(value)[:200]} (the tests expect no output)"
                        if not hidden
                        else "unexpected output"
                    )
        except Exception as err:
            return False, _error_text(err, shown, hidden)
    return True, ""


def _error_text(err: Exception, shown: str, hidden: bool) -> str:
    """What a student may see: for hidden tests only the instructor's assertion message or the error type."""
    name = err.type_name if isinstance(err, SubmittedError) else type(err).__name__
    if hidden:
        if isinstance(err, AssertionError) and err.args:
            return str(err.args[0])[:300]
        return f"raised {name}" + (" in your function" if isinstance(err, SubmittedError) else "")
    text = str(err)[:300]
    return f"`{shown}` raised " + (
        f"{name}: {text}" if text and not isinstance(err, SubmittedError) else str(err)[:300] or name
    )


def score_question(
    q: dict,
    setup_ns: dict,
    values,
    channel: Channel | None = None,
    run: SandboxRun | None = None,
    mutate: str | None = None,
) -> QuestionResult:
    """Run the question's tests here on the decoded answers (``mutate``: perturb that answer first)."""
    cases = q["tests"]["suites"][0]["cases"]
    result = QuestionResult(q["name"], 0.0, float(q["points"]))
    if values is None:
        result.reason = (
            f"not graded: {run.problem}, before this question was answered"
            if run and run.problem
            else "no answer was found for this question"
        )
        return result
    ns = dict(setup_ns)
    try:
        for name in q["answers"]:
            value = values.get(name, {"__missing__": True})
            if isinstance(value, dict) and value.get("__missing__") is True:
                ns.pop(name, None)
            elif isinstance(value, dict) and value.get("__function__") is True:
                if channel is None:
                    raise ValueError(
                        f"{name} is a function but the notebook stopped before it could be tested"
                    )
                ns[name] = Remote(name, channel, mutate=mutate == name)
            else:
                decoded = codec.decode(value)
                ns[name] = perturb(decoded) if mutate == name else decoded
    except Exception as err:
        result.reason = f"the answer could not be read back ({type(err).__name__}: {str(err)[:200]})"
        return result
    if all(ns.get(name, Ellipsis) is Ellipsis for name in q["answers"] if not name.startswith("_")):
        result.reason = "not answered yet: replace each `...` with your answer"
    for case, points in zip(cases, case_points(q), strict=True):
        hidden = bool(case.get("hidden"))
        try:
            passed, message = run_case(case["code"], ns, hidden)
        except BaseException as err:  # noqa: B036 (a test may hit anything; the batch goes on)
            passed, message = False, f"the test could not run ({type(err).__name__})"
        result.cases.append((hidden, passed, message))
        result.score += points if passed else 0.0
    result.score = round(result.score, 6)
    return result


def run_setup(bundle: Bundle) -> dict:
    """Execute the master's setup code (trusted) once, in a scratch directory."""
    import matplotlib

    matplotlib.use("Agg")
    # a real module, so that objects of classes the setup defines can be pickled to the sandbox, where
    # the runner maps the class to the one of the same name that the notebook's setup cell defined
    module = types.ModuleType(SETUP_MODULE + re.sub(r"\W", "_", bundle.name))
    sys.modules[module.__name__] = module
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        exec(compile(bundle.setup, f"<setup of {bundle.name}>", "exec"), module.__dict__)
    return module.__dict__


# ----------------------------------------------------------------------------------------- reports


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
                rep.student,
                *[f"{scores[n]:g}" for n in names],
                f"{rep.total:g}",
                f"{bundle.possible:g}",
                "; ".join(rep.problems),
                rep.rel,
                f"feedback/{rep.feedback}",
            ]
        )
    for rep in reports:
        _write_atomic(feedback / rep.feedback, feedback_text(bundle, rep))
    gradebook = grades / "gradebook.csv"
    _write_atomic(gradebook, out.getvalue())
    return gradebook


# ----------------------------------------------------------------------------------------- driver


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
