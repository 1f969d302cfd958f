"""Print each notebook's total run time under nbval from a pytest JUnit XML report."""

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict


def main(path: str) -> None:
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(path).getroot().iter("testcase"):
        file = case.get("file") or case.get("classname", "")
        if file.endswith(".ipynb"):
            totals[file] += float(case.get("time", 0.0))
    if not totals:
        print("no notebook cells in the report")
        return
    print(f"{'notebook':<50} {'seconds':>8}")
    for file, seconds in sorted(totals.items()):
        print(f"{file:<50} {seconds:8.1f}")


if __name__ == "__main__":
    main(sys.argv[1])
