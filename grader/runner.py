"""Sandbox side of grading: run ONE submission's code and export its answers as data.

Started by :mod:`grader.grade` as ``python runner.py PLAN OUT`` in a throwaway working
directory, in its own process group, under a time limit. Nothing this process writes is trusted: the
grader reads back only JSON (see ``codec.py``) and decides every score itself, in a clean process,
with the instructor's tests. This process therefore only has to be *useful*, not secure:

* it runs the submission's code cells in order in an IPython shell (so magics work), recording the
  error of any cell that raises and carrying on, as Jupyter's "run all, ignore errors" would;
* at each ``grader.check("qN")`` cell (and, for questions without one, at the end) it exports the
  question's answer variables; functions are exported as the record of their calls while the
  question's tests run here, so the grader can replay them without running student code;
* after every step it rewrites ``progress.json``, so that a submission that loops forever or kills
  its own process still gets credit for the questions it answered before.
"""

import doctest
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codec  # noqa: E402  (the copy that sits next to this file)

_WRITTEN: dict[str, object] = {}


def _write_json(out_dir: str, name: str, data) -> None:
    """Write atomically; if the submission deleted the folder, recreate it and everything written so far."""
    _WRITTEN[name] = data
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir, exist_ok=True)
        for other, value in list(_WRITTEN.items()):
            if other != name:
                _write_json(out_dir, other, value)
    tmp = os.path.join(out_dir, f".{name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, allow_nan=True)
    os.replace(tmp, os.path.join(out_dir, name))


class _NoGrader:
    """Replaces otter's ``grader`` during grading: students' own check calls do nothing here."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Recorder:
    """Wraps an answer function: records (argument fingerprint -> results in call order)."""

    def __init__(self, fn):
        self.fn = fn
        self.calls: dict[str, list] = {}

    def __call__(self, *args, **kwargs):
        k = codec.key(args, kwargs)  # before the call: the function may mutate its arguments
        try:
            result = self.fn(*args, **kwargs)
        except Exception as err:
            self.calls.setdefault(k, []).append({"raise": type(err).__name__, "message": str(err)[:500]})
            raise
        self.calls.setdefault(k, []).append({"value": codec.encode(result)})
        return result


def _is_answer_function(value) -> bool:
    if isinstance(value, type):
        return False  # classes cannot be replayed; they travel as unsupported
    return callable(value) and not codec._is(value, "torch", "Module") and not isinstance(value, type)


def export_question(shell, question: dict, out_dir: str) -> None:
    ns = shell.user_ns
    values, recorders = {}, {}
    for name in question["answers"]:
        if name not in ns:
            values[name] = {"__missing__": True}
        elif _is_answer_function(ns[name]):
            recorders[name] = Recorder(ns[name])
            values[name] = {"__function__": True}
        else:
            values[name] = codec.encode(ns[name])
    if recorders:  # run the tests here once, only to record what the functions return
        test_ns = dict(ns)
        test_ns.update(recorders)
        for code in question["tests"]:
            for example in doctest.DocTestParser().get_examples(code):
                try:
                    exec(compile(example.source, "<test>", "exec"), test_ns)
                except BaseException:  # noqa: B036 (a failing or exiting test must not stop the export)
                    pass
    calls = {name: rec.calls for name, rec in recorders.items()}
    _write_json(out_dir, f"answers_{question['name']}.json", {"values": values, "calls": calls})


def main(plan_path: str, out_dir: str) -> None:
    with open(plan_path) as f:
        plan = json.load(f)
    os.remove(plan_path)
    questions = {q["name"]: q for q in plan["questions"]}
    progress = {"step": None, "errors": [], "finished": False, "exported": []}

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config, colors="nocolor")
    shell.user_ns["grader"] = _NoGrader()

    def checkpoint(name: str) -> None:
        if name in questions and name not in progress["exported"]:
            export_question(shell, questions[name], out_dir)
            progress["exported"].append(name)

    for step in plan["steps"]:
        progress["step"] = step["cell"]
        _write_json(out_dir, "progress.json", progress)
        if step["kind"] == "check":
            checkpoint(step["question"])
            continue
        if step["kind"] == "skip":
            continue
        start = time.monotonic()
        result = shell.run_cell(step["source"], store_history=False, silent=False)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            progress["errors"].append(
                {"cell": step["cell"], "error": f"{type(error).__name__}: {str(error)[:300]}",
                 "seconds": round(time.monotonic() - start, 1)}
            )
    for name in questions:
        progress["step"] = "end"
        checkpoint(name)
    progress["finished"] = True
    _write_json(out_dir, "progress.json", progress)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: atexit hooks a submission may have registered never run


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
