"""Reading submissions: find the notebooks in a folder, parse one, plan which of its cells run.

Nothing here runs a submission: a notebook is read as bytes, once, and parsed as JSON with limits.
"""

import hashlib
import json
import re
from pathlib import Path

from .records import MAX_NOTEBOOK_BYTES, Submission

INIT_LINE = re.compile(r"^(import otter|grader\s*=\s*otter\.Notebook\(.*\)|#.*)$")
CHECK_CELL = re.compile(r"^grader\.check\(\s*[\"'](\w+)[\"']\s*\)$")
GRADER_CALL = re.compile(r"^(grader\.\w+\(.*\)|#.*)$")


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
        elif (lines and "otter.Notebook(" in src and all(INIT_LINE.match(s) for s in lines)) or (
            lines and all(GRADER_CALL.match(s) for s in lines)
        ):
            steps.append({"kind": "skip", "cell": i})
        else:
            steps.append({"kind": "code", "cell": i, "source": src})
    return steps
