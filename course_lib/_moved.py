"""Old module paths, kept importable for one release (see CHANGELOG.md).

A learner's saved notebook may still say ``from course_lib.features import log_vol``. Each old path is a
module of two lines that calls :func:`alias`: the old name then *is* the new module (the same objects,
the same state), and the first import warns, naming the new path. A module split in several
(``course_lib.models.ssm``) calls :func:`split` instead: the old name re-exports the public names of
every new module. ``tests/test_moved.py`` imports every such module.
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


def moved_names(old: str, names: dict[str, str]):
    """A module ``__getattr__`` for names that left module ``old`` (which stays) for other modules.

    ``__getattr__ = moved_names(__name__, {"CausalLSTM": "course_lib.models.causal"})`` in ``old``
    makes ``from old import CausalLSTM`` work for one release, warning once per name.
    """
    warned: set[str] = set()

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        if name not in warned:
            warned.add(name)
            warnings.warn(
                f"{old}.{name} has moved to {names[name]}.{name}; the old path is kept for one release",
                FutureWarning,
                stacklevel=2,
            )
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__


def split(old: str, *new: str) -> None:
    """Make module ``old`` re-export ``__all__`` of each module in ``new``, warning (once) that it was split.

    For a module whose names went to several modules: no single module can stand in for it, so the old
    module keeps the same objects under the same names (a monkeypatch of the old name no longer
    reaches the new modules).
    """
    warnings.warn(
        f"{old} was split into {', '.join(new)}; the old path is kept for one release: import from those",
        FutureWarning,
        stacklevel=2,
    )
    module, names = sys.modules[old], []
    for name in new:
        source = importlib.import_module(name)
        for attribute in source.__all__:
            setattr(module, attribute, getattr(source, attribute))
        names += source.__all__
    module.__all__ = sorted(names)
