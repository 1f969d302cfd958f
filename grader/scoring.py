"""Scoring, outside the sandbox: the master's setup, the tests on the decoded answers, and calls of
submitted functions (:class:`Remote`) that run in the submission's waiting sandbox."""

import ast
import contextlib
import doctest
import pickle
import re
import sys
import tempfile
import time
import types

from . import codec
from .records import (
    CALL_GRACE,
    CALL_SECONDS,
    RESULT_FACTOR,
    RESULT_SLACK,
    SETUP_MODULE,
    Bundle,
    QuestionResult,
    SandboxRun,
)
from .sandbox import Channel


class Remote:
    """Stands for a submitted function: each call runs it in the submission's waiting sandbox.

    The grader waits at most ``CALL_SECONDS + CALL_GRACE`` for a reply (then the channel is broken and
    the run ends), matches replies to calls by number, and refuses a result with more than
    ``RESULT_FACTOR`` times the elements of the arguments (plus ``RESULT_SLACK``) before a test sees it.
    """

    calls = 0  # numbers the calls of this process (one scoring child, or the grader)

    def __init__(self, name: str, channel: Channel, mutate: str | None = None):
        self.name, self.channel, self.mutate, self.mutated = name, channel, mutate, False

    def __call__(self, *args, **kwargs):
        Remote.calls += 1
        ident = Remote.calls
        try:
            self.channel.send({"call": self.name, "id": ident, "args": args, "kwargs": kwargs})
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise TypeError(f"the grader cannot send these arguments to {self.name} ({err})") from None
        except OSError:
            raise RuntimeError(f"your notebook stopped before {self.name} could be called") from None
        limit = CALL_SECONDS + CALL_GRACE
        reply = self.channel.receive(
            deadline=time.monotonic() + limit,
            waiting_for=f"a call of {self.name} did not return within {limit:g} s (the grader's limit)",
        )
        if (
            not isinstance(reply, dict)
            or reply.get("kind") not in ("return", "raise")
            or reply.get("id") != ident
        ):
            self.channel.broken = (
                self.channel.broken or f"the notebook answered a call of {self.name} out of turn"
            )
            raise RuntimeError(f"your notebook stopped while the tests called {self.name}")
        if reply["kind"] == "raise":
            raise SubmittedError(str(reply.get("type"))[:80], str(reply.get("message"))[:300])
        value = codec.decode(reply.get("value"))
        if self.mutate:
            wrong = mutant(value, self.mutate)
            self.mutated = self.mutated or wrong is not value
            value = wrong
        allowed = RESULT_FACTOR * elements((args, kwargs)) + RESULT_SLACK
        if elements(value) > allowed:
            raise SubmittedError(
                "ValueError", f"{self.name} returned {elements(value)} numbers, far more than it was given"
            )
        return value


def elements(x, _depth: int = 0) -> int:
    """How many numbers (or items) ``x`` holds: arrays and tensors by size, modules by parameters."""
    if _depth > 30 or isinstance(x, codec.Unsupported):
        return 1
    if hasattr(x, "numel") and callable(x.numel):
        return int(x.numel())
    if hasattr(x, "size") and isinstance(getattr(x, "size", None), int):  # NumPy arrays, pandas objects
        return int(x.size)
    if hasattr(x, "parameters") and callable(x.parameters):  # a torch module given as an argument
        return sum(int(p.numel()) for p in x.parameters())
    if isinstance(x, dict):
        return len(x) + sum(elements(v, _depth + 1) for v in x.values())
    if isinstance(x, list | tuple | set | frozenset):
        return len(x) + sum(elements(v, _depth + 1) for v in x)
    return 1


class SubmittedError(Exception):
    """An exception raised by a submitted function, as reported by its sandbox."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


MUTANTS = ("values", "empty", "extra_axis", "broadcast")  # what the value check tries on each answer


def mutant(value, kind: str = "values"):
    """A wrong answer of kind ``kind``: other numbers of the same type and shape (``values``), or the
    same numbers in another shape that NumPy and PyTorch still broadcast against the right one:
    ``empty`` (no elements: ``allclose`` of an empty array is True), ``extra_axis`` (a leading axis of
    one) or ``broadcast`` (two copies along a new leading axis). Tests that carry marks must fail all four."""
    if kind == "values":
        return perturb(value)
    import numpy as np

    if isinstance(value, list | tuple | dict):  # the container itself when no item changes (strings, bools)
        items = list(value.values() if isinstance(value, dict) else value)
        wrong = [mutant(v, kind) for v in items]
        if all(w is v for w, v in zip(wrong, items, strict=True)):
            return value
        if isinstance(value, dict):
            return dict(zip(value, wrong, strict=True))
        return type(value)(*wrong) if hasattr(value, "_fields") else type(value)(wrong)
    if codec._is(value, "torch", "Tensor"):
        import torch

        shapes = {"empty": lambda t: t.new_empty((0, *t.shape)), "extra_axis": lambda t: t.unsqueeze(0)}
        return shapes.get(kind, lambda t: torch.stack([t, t]))(value)
    if isinstance(value, np.ndarray | np.generic) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    ):
        a = np.asarray(value)
        shapes = {"empty": lambda a: np.empty((0, *a.shape), a.dtype), "extra_axis": lambda a: a[None]}
        return shapes.get(kind, lambda a: np.stack([a, a]))(a)
    return value


def perturb(value):
    """The same kind and shape of value with other numbers (to prove that tests check values)."""
    import numpy as np

    if isinstance(value, bool | np.bool_):
        return not value
    if isinstance(value, int | np.integer):
        return value + 1
    if isinstance(value, float | np.floating):
        return type(value)(value * 1.25 + 0.37)
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return ~value
        if value.dtype.kind in "iuf":
            return (value * 1.25 + 1).astype(value.dtype)
        return value
    if codec._is(value, "torch", "Tensor"):
        return ~value if str(value.dtype) == "torch.bool" else (value * 1.25 + 1).to(value.dtype)
    if codec._is(value, "pandas", "Series") or codec._is(value, "pandas", "DataFrame"):
        return value * 1.25 + 1
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[perturb(v) for v in value])
    if isinstance(value, list | tuple):
        return type(value)(perturb(v) for v in value)
    if isinstance(value, dict):
        return {k: perturb(v) for k, v in value.items()}
    return value


def case_points(q: dict) -> list[float]:
    """Marks per test case: the hidden tests share the question's points; public tests carry none."""
    cases = q["tests"]["suites"][0]["cases"]
    hidden = [c for c in cases if c.get("hidden")]
    if not hidden:
        return [float(q["points"]) / len(cases)] * len(cases)
    return [float(q["points"]) / len(hidden) if c.get("hidden") else 0.0 for c in cases]


def run_case(code: str, ns: dict, hidden: bool) -> tuple[bool, str]:
    """Run one doctest-format case in ``ns`` (thread-safe: no stdout swapping); the message is for feedback."""
    for example in doctest.DocTestParser().get_examples(code):
        shown = example.source.strip().splitlines()[0][:200] if example.source.strip() else ""
        try:
            tree = ast.parse(example.source)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, "<test>", "exec"), ns)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<test>", "eval"), ns)
                if value is not None and repr(value).strip() != example.want.strip():
                    return False, (
                        f"`{shown}` printed {repr(value)[:200]} (the tests expect no output)"
                        if not hidden
                        else "unexpected output"
                    )
        except Exception as err:
            return False, _error_text(err, shown, hidden)
    return True, ""


def _error_text(err: Exception, shown: str, hidden: bool) -> str:
    """What a student may see: for hidden tests only the instructor's assertion message or the error type."""
    name = err.type_name if isinstance(err, SubmittedError) else type(err).__name__
    if hidden:
        if isinstance(err, AssertionError) and err.args:
            return str(err.args[0])[:300]
        return f"raised {name}" + (" in your function" if isinstance(err, SubmittedError) else "")
    text = str(err)[:300]
    return f"`{shown}` raised " + (
        f"{name}: {text}" if text and not isinstance(err, SubmittedError) else str(err)[:300] or name
    )


def score_question(
    q: dict,
    setup_ns: dict,
    values,
    channel: Channel | None = None,
    run: SandboxRun | None = None,
    mutate: str | None = None,
    mutation: str = "values",
) -> QuestionResult:
    """Run the question's tests here on the decoded answers (``mutate``: that answer is replaced by its
    :func:`mutant` of kind ``mutation`` first)."""
    cases = q["tests"]["suites"][0]["cases"]
    result = QuestionResult(q["name"], 0.0, float(q["points"]))
    if values is None:
        result.reason = (
            f"not graded: {run.problem}, before this question was answered"
            if run and run.problem
            else "no answer was found for this question"
        )
        return result
    ns = dict(setup_ns)
    try:
        for name in q["answers"]:
            value = values.get(name, {"__missing__": True})
            if isinstance(value, dict) and value.get("__missing__") is True:
                ns.pop(name, None)
            elif isinstance(value, dict) and value.get("__function__") is True:
                if channel is None:
                    raise ValueError(
                        f"{name} is a function but the notebook stopped before it could be tested"
                    )
                ns[name] = Remote(name, channel, mutate=mutation if mutate == name else None)
            else:
                decoded = codec.decode(value)
                ns[name] = mutant(decoded, mutation) if mutate == name else decoded
                result.mutated = result.mutated or ns[name] is not decoded
    except Exception as err:
        result.reason = f"the answer could not be read back ({type(err).__name__}: {str(err)[:200]})"
        return result
    if all(ns.get(name, Ellipsis) is Ellipsis for name in q["answers"] if not name.startswith("_")):
        result.reason = "not answered yet: replace each `...` with your answer"
    for case, points in zip(cases, case_points(q), strict=True):
        hidden = bool(case.get("hidden"))
        try:
            passed, message = run_case(case["code"], ns, hidden)
        except BaseException as err:
            passed, message = False, f"the test could not run ({type(err).__name__})"
        result.cases.append((hidden, passed, message))
        result.score += points if passed else 0.0
    result.score = round(result.score, 6)
    remote = ns.get(mutate) if mutate else None
    result.mutated = result.mutated or (isinstance(remote, Remote) and remote.mutated)
    return result


def run_setup(bundle: Bundle) -> dict:
    """Execute the master's setup code (trusted) once, in a scratch directory."""
    import matplotlib

    matplotlib.use("Agg")
    # a real module, so that objects of classes the setup defines can be pickled to the sandbox, where
    # the runner maps the class to the one of the same name that the notebook's setup cell defined
    module = types.ModuleType(SETUP_MODULE + re.sub(r"\W", "_", bundle.name))
    sys.modules[module.__name__] = module
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        exec(compile(bundle.setup, f"<setup of {bundle.name}>", "exec"), module.__dict__)
    return module.__dict__
