"""Print each notebook's total run time under nbval from a pytest JUnit XML report.

``--all`` adds every test module; ``--markdown FILE`` also writes the table as markdown (gpu_check.sh).
Times are the sums of the test cases' own times: with pytest-xdist, a file's serial time on its worker.
"""

import argparse
import xml.etree.ElementTree as ET
from collections import defaultdict


def file_times(path: str) -> dict[str, dict[str, float]]:
    """Per file of the report: seconds and the number of tests passed, failed (or errors) and skipped."""
    totals: dict[str, dict[str, float]] = defaultdict(
        lambda: dict.fromkeys(("seconds", "passed", "failed", "skipped"), 0)
    )
    for case in ET.parse(path).getroot().iter("testcase"):
        file = case.get("file") or case.get("classname", "")
        row = totals[file]
        row["seconds"] += float(case.get("time", 0.0))
        outcome = {child.tag for child in case} & {"failure", "error", "skipped"}
        row["failed" if outcome & {"failure", "error"} else "skipped" if outcome else "passed"] += 1
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("junit", help="pytest --junitxml report (junit_family=xunit1)")
    parser.add_argument("--all", action="store_true", help="test modules too, not only notebooks")
    parser.add_argument("--markdown", help="also write the table to this markdown file")
    parser.add_argument("--title", default="", help="a line above the markdown table")
    args = parser.parse_args()
    rows = {f: r for f, r in file_times(args.junit).items() if args.all or f.endswith(".ipynb")}
    if not rows:
        print("no notebook cells in the report")
        return
    # notebooks first, then test modules, each by name
    order = sorted(rows, key=lambda f: (not f.endswith(".ipynb"), f))
    print(f"{'file':<50} {'seconds':>8} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for f in order:
        r = rows[f]
        print(f"{f:<50} {r['seconds']:8.1f} {r['passed']:7.0f} {r['failed']:7.0f} {r['skipped']:8.0f}")
    if args.markdown:
        lines = [args.title, ""] if args.title else []
        lines += ["| file | kind | seconds | passed | failed | skipped |", "|---|---|---:|---:|---:|---:|"]
        for f in order:
            r = rows[f]
            kind = "notebook" if f.endswith(".ipynb") else "tests"
            lines.append(
                f"| {f} | {kind} | {r['seconds']:.1f} | {r['passed']:.0f} | {r['failed']:.0f} | {r['skipped']:.0f} |"
            )
        total = sum(r["seconds"] for r in rows.values())
        lines.append(f"| **total (serial)** | | {total:.1f} | | | |")
        with open(args.markdown, "w") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
