"""Command line: ``python -m grader {build,grade}`` (the Makefile calls these).

``python -m grader workspace DEST`` still works for one release: the learner's workspace moved to the
course's build script, ``python scripts/build_notebooks.py --workspace DEST`` (``make lab``), which it
runs (as a command: the grader never imports from ``scripts/``).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import build


def _find_bundle(assignment: str | None, folder: Path, dist: Path) -> Path:
    names = {m.stem for m in build.masters()}
    if assignment is None:  # the assignment the submitted notebooks say they are
        seen = set()
        for nb in folder.rglob("*.ipynb"):
            try:
                seen.add(json.loads(nb.read_text())["metadata"]["otter"]["assignment_name"])
            except (ValueError, KeyError, TypeError, OSError):
                continue
        seen &= names
        if len(seen) != 1:
            sys.exit(
                f"cannot tell which assignment {folder} holds (found {sorted(seen) or 'none'}): "
                f"pass ASSIGNMENT=<one of {sorted(names)}>"
            )
        assignment = seen.pop()
    matches = [n for n in names if n == assignment or n.startswith(f"{assignment}_")]
    if len(matches) != 1:
        sys.exit(f"unknown assignment {assignment!r}: choose one of {sorted(names)}")
    bundle = dist / "assignments" / matches[0] / "autograder"
    if not (bundle / "grading.json").exists():
        print(f"building {matches[0]} (no bundle in {dist} yet)")
        build.build_assignment(build.MASTERS / f"{matches[0]}.py", dist)
    return bundle


def verify(dist: Path, jobs: int, timeout: float, log=print, sandboxes=None) -> dict:
    """Grade each built solutions notebook (must get full marks) and student version (must get zero)."""
    from .driver import grade_folder, start_sandboxes
    from .records import Bundle

    outcome = {}
    folders = sorted((dist / "assignments").iterdir())
    bundles = [Bundle.load(folder / "autograder") for folder in folders]
    own = sandboxes is None
    sandboxes = sandboxes or start_sandboxes(bundles)
    try:
        for folder, bundle in zip(folders, bundles, strict=True):
            outcome[folder.name] = _verify_one(folder, bundle, sandboxes, jobs, timeout, log, grade_folder)
    finally:
        if own:
            sandboxes.close()
    return outcome


def _verify_one(folder, bundle, sandboxes, jobs, timeout, log, grade_folder):
    from .driver import TestHost, check_values

    solutions = (folder / "autograder" / f"{folder.name}.ipynb").read_bytes()
    with tempfile.TemporaryDirectory() as tmp, TestHost(bundle) as host:
        subs = Path(tmp)
        (subs / "solutions.ipynb").write_bytes(solutions)
        (subs / "student_version.ipynb").write_bytes(
            (folder / "student" / f"{folder.name}.ipynb").read_bytes()
        )
        reports = grade_folder(
            bundle, subs, None, timeout, jobs, log=lambda *a: None, sandboxes=sandboxes, host=host
        )
        mutants = check_values(bundle, solutions, sandboxes, host=host, timeout=timeout)
    reports = {r.student: r for r in reports}
    unchecked = {f"{q}.{a}": s for q, scores in mutants.items() for a, s in scores.items() if s > 0}
    reports["values"] = unchecked  # answer -> marks a wrong value of the right type still gets
    sol, stu = reports["solutions"], reports["student_version"]
    ok = (
        sol.total == bundle.possible
        and not sol.problems
        and all(r.score == 0 for r in stu.results)
        and not unchecked
    )
    log(
        f"{'ok  ' if ok else 'FAIL'} {folder.name}: solutions {sol.total:g}/{bundle.possible:g} "
        f"({sol.seconds:.1f} s), student version {stu.total:g} ({stu.seconds:.1f} s)"
        + (f"  problems: {sol.problems}" if sol.problems else "")
        + (f"  wrong values still score: {unchecked}" if unchecked else "")
    )
    return reports


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m grader", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="student versions and autograder bundles into DIST")
    b.add_argument("--dist", type=Path, default=build.DIST)
    b.add_argument(
        "--verify", action="store_true", help="then grade solutions (full marks) and student versions (zero)"
    )
    b.add_argument("--jobs", type=int, default=2)
    w = sub.add_parser("workspace", help="moved: python scripts/build_notebooks.py --workspace DEST")
    w.add_argument("dest", type=Path)
    g = sub.add_parser("grade", help="grade a folder of submissions")
    g.add_argument("submissions", type=Path)
    g.add_argument(
        "--assignment",
        default=None,
        help="e.g. 00 or 00_data_and_baselines (default: read from the notebooks)",
    )
    g.add_argument("--grades", type=Path, default=None, help="output folder (default: <submissions>-graded)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per submission")
    g.add_argument("--jobs", type=int, default=1)
    g.add_argument("--dist", type=Path, default=build.DIST)
    g.add_argument(
        "--unsandboxed",
        action="store_true",
        help="grade without bubblewrap (UNSAFE: submissions run as you, with your files and network)",
    )
    args = p.parse_args(argv)

    if args.cmd == "build":
        start = time.monotonic()
        build.build_all(args.dist)
        print(f"built in {time.monotonic() - start:.0f} s; release dist/assignments/*/student/*.ipynb")
        if args.verify:
            outcome = verify(args.dist, args.jobs, 60.0)
            bad = [
                n
                for n, r in outcome.items()
                if r["solutions"].total != sum(x.possible for x in r["solutions"].results)
                or r["solutions"].problems
                or r["student_version"].total != 0
                or r["values"]
            ]
            print(f"verified in {time.monotonic() - start:.0f} s in all")
            if bad:
                sys.exit(f"verification failed for {bad}")
    elif args.cmd == "workspace":
        script = build.ROOT / "scripts" / "build_notebooks.py"
        print(
            "python -m grader workspace has moved and goes in the next release: "
            f"run python scripts/build_notebooks.py --workspace {args.dest} (or make lab)",
            file=sys.stderr,
        )
        sys.exit(subprocess.run([sys.executable, str(script), "--workspace", str(args.dest)]).returncode)
    else:
        from .driver import grade_folder
        from .records import Bundle, SandboxUnavailable

        folder = args.submissions.resolve()
        if not folder.is_dir():
            sys.exit(f"{folder} is not a folder of submissions")
        bundle = Bundle.load(_find_bundle(args.assignment, folder, args.dist))
        grades = args.grades or folder.with_name(folder.name + "-graded")
        try:
            grade_folder(bundle, folder, grades, args.timeout, args.jobs, unsandboxed=args.unsandboxed)
        except SandboxUnavailable as err:
            sys.exit(f"refusing to grade without a sandbox: {err}")


if __name__ == "__main__":
    main()
