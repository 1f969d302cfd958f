"""Friendly exercise checks for the learner's copies of the chapters (``make lab``).

In a learner's copy every answer cell starts as a stub (``vol_2008 = ...``, a function whose body is
``...``), and the self-check cell below it begins with :func:`require_answers`. Until the stub is
replaced, the self-check stops with one sentence ("Exercise 1 is not answered yet: ...") instead of
a raw Python error such as ``TypeError: 'ellipsis' object is not callable``.
"""

import dis
import types


class ExerciseNotAnswered(Exception):
    """An exercise's answer cell still holds the stub's ``...``."""

    def _render_traceback_(self) -> list[str]:
        """What Jupyter shows instead of a traceback: the sentence, in red, and nothing else."""
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


def _empty(): ...


def _instructions(fn) -> list:
    return [
        (i.opname, i.argval) for i in dis.get_instructions(fn) if i.opname not in ("RESUME", "NOP", "CACHE")
    ]


def unanswered(value) -> bool:
    """Whether ``value`` is still a stub: ``...``, a container of ``...``, a ``...`` function or class."""
    if value is Ellipsis:
        return True
    if isinstance(value, tuple | list | set | frozenset):
        return any(v is Ellipsis for v in value)
    if isinstance(value, dict):
        return any(v is Ellipsis for v in value.values())
    if isinstance(value, types.FunctionType):
        # a body of only `...` (and perhaps a docstring) compiles to the same instructions as _empty's
        return _instructions(value) == _instructions(_empty)
    if isinstance(value, type):
        own = {k for k in vars(value) if not (k.startswith("__") and k.endswith("__"))}
        return not own and not any(k in vars(value) for k in ("__init__", "__call__"))
    return False


def require_answers(exercise: int, **answers) -> None:
    """Raise :class:`ExerciseNotAnswered` naming the answers of ``exercise`` that are still stubs."""
    __tracebackhide__ = True  # pytest shows the message, not this frame
    missing = [name for name, value in answers.items() if unanswered(value)]
    if missing:
        names = ", ".join(f"`{n}`" for n in missing)
        raise ExerciseNotAnswered(
            f"Exercise {exercise} is not answered yet: replace each `...` in the answer cell above ({names}), "
            "run it, then run this check again."
        )
