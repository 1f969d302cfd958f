"""Convert the py:percent notebooks in notebooks/ to .ipynb files in an output folder.

Used by `make test` (nbval runs the .ipynb copies) and `make book`. The sources are never touched.
"""

import argparse
import shutil
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder for the .ipynb files (emptied first)")
    parser.add_argument("--src", default=str(ROOT / "notebooks"), help="folder of py:percent notebooks")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sources = sorted(Path(args.src).glob("[0-9][0-9]*_*.py"))
    if not sources:
        raise SystemExit(f"no notebooks found in {args.src}")
    for src in sources:
        nb = jupytext.read(src, fmt="py:percent")
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        jupytext.write(nb, out / f"{src.stem}.ipynb")
    print(f"converted {len(sources)} notebooks into {out}")


if __name__ == "__main__":
    main()
