"""What the grader's sections hand each other: the limits, and the records of a batch.

The bottom of the grader: it imports nothing else of it. :mod:`grader.submissions`,
:mod:`grader.sandbox`, :mod:`grader.scoring` and :mod:`grader.reports` build on it and
:mod:`grader.driver` on all of them (``tests/test_grading.py`` checks that no import goes up).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

MAX_NOTEBOOK_BYTES = 20_000_000
MAX_FRAME_BYTES = 32_000_000  # one message from a sandbox
MAX_TOTAL_BYTES = 200_000_000  # everything one sandbox may send
MEMORY_BYTES = 4 << 30  # address space of each process in a sandbox
SANDBOX_MEMORY_BYTES = 4 << 30  # all of one sandbox's memory, its /tmp and /dev/shm included (cgroup)
SANDBOX_PROCESSES = 64  # processes (and threads) of one sandbox (cgroup, or RLIMIT_NPROC without one)
TMP_BYTES = 512 << 20  # the sandbox's /tmp, in memory
SHM_BYTES = 64 << 20  # its /dev/shm
FILE_BYTES = 256 << 20  # largest file a sandbox may write
CALL_SECONDS = 10.0  # one call of a submitted function while its tests run (killed in the sandbox)
CALL_GRACE = 5.0  # the grader's own deadline for a call is CALL_SECONDS + this, whatever the sandbox does
SCORE_SECONDS = 60.0  # the tests of one question on one answer, in their child process (calls included)
SCORE_MEMORY_BYTES = 2 << 30  # what that child may add to the address space of the setup it forks from
RESULT_FACTOR = 64  # a submitted function may return at most this many times the elements it was given
RESULT_SLACK = 4096  # ... plus this many (a scalar argument may ask for a small table)
HEADER = 12
UNSAFE = "UNSAFE (no sandbox): "
SETUP_MODULE = "grading_setup_"  # the runner knows this prefix


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
    mutated: bool = False  # (value check only) the wrong answer asked for differed from the answer


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
