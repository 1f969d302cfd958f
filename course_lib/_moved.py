"""Old module paths, kept importable for one release (see CHANGELOG.md).

A learner's saved notebook may still say ``from course_lib.features import log_vol``. Each old path is a
module of two lines that calls :func:`alias`: the old name then *is* the new module (the same objects,
the same state), and the first import warns, naming the new path. ``tests/test_layout.py`` imports
every such module.
"""

import importlib
import runpy
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make module ``old`` an alias of module ``new``, warning (once: imports are cached) that it moved.

    Run as a script (``python -m old``, where ``old`` arrives as ``"__main__"``), it runs ``new`` instead.
    """
    shown = new if old != "__main__" else f"python -m {new}"
    warnings.warn(
        f"{old} has moved to {new}; the old path is kept for one release: use {shown}",
        FutureWarning,
        stacklevel=2,
    )
    if old == "__main__":
        runpy.run_module(new, run_name="__main__", alter_sys=True)
    else:
        sys.modules[old] = importlib.import_module(new)
