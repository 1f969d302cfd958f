"""Old module paths, kept importable for one release (see CHANGELOG.md).

A learner's saved notebook may still say ``from course_lib.features import log_vol``. Each old path is a
module of two lines that calls :func:`alias`: the old name then *is* the new module (the same objects,
the same state), and the first import warns, naming the new path. A module split in several
(``course_lib.models.ssm``) calls :func:`split` instead: the old name re-exports the public names of
every new module. ``tests/test_layout.py`` imports every such module.
"""

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make module ``old`` an alias of module ``new``, warning (once: imports are cached) that it moved."""
    warnings.warn(
        f"{old} has moved to {new}; the old path is kept for one release: import from {new}",
        FutureWarning,
        stacklevel=2,
    )
    sys.modules[old] = importlib.import_module(new)


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
