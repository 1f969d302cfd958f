"""Sandbox side of grading: run ONE submission's code cells and send its answers out as data.

Started by :mod:`grader.sandbox` inside the sandbox (bubblewrap) as ``python runner.py REQ_FD OUT_FD``.
Nothing this process sends is trusted: the grader decodes only data (see ``codec.py``), runs every
test itself, outside the sandbox, and decides every score. This process only has to be *useful*:

* it sets its own CPU, memory and file-size limits, then reads the plan (the notebook's code cells
  and, per question, the names of its answer variables; never a test) from ``REQ_FD``;
* it runs the cells in order in an IPython shell (so magics work), recording the error of any cell
  that raises and carrying on, as Jupyter's "run all, ignore errors" would;
* after every cell it sends, for each question whose answers changed, their values as data, so a
  later crash or time limit keeps what was already answered; an answer that is a function is sent as
  a marker, and the runner then serves the grader's calls to it (arguments in, data out) while the
  grader runs that question's tests on its side, until the grader says ``done``;
* at the end it sends the function answers once more (the notebook's final state) and ``finished``.

Frames on both pipes: 12 ASCII digits (the payload's length) then the payload; JSON from here to the
grader, pickles from the grader (trusted) to here.
"""

import hashlib
import io
import json
import os
import pickle
import signal
import sys
import time
from typing import ClassVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codec

HEADER = 12
MAX_FRAME = 32_000_000  # bytes of one message; the grader refuses larger ones


class _CallTimeout(BaseException):
    """Raised inside a submitted function that runs longer than the limit for one call."""


def _send(fd: int, message: dict) -> None:
    payload = json.dumps(message).encode()
    if len(payload) > MAX_FRAME:
        payload = json.dumps({"kind": "oversized", "question": message.get("question")}).encode()
    data = f"{len(payload):0{HEADER}d}".encode() + payload
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the grader closed the channel")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class _Unpickler(pickle.Unpickler):
    """Classes of the master's setup (module ``grading_setup_*`` in the grader) are the notebook's own."""

    namespace: ClassVar[dict] = {}

    def find_class(self, module, name):
        if module.startswith("grading_setup_"):
            if name not in self.namespace:
                raise pickle.UnpicklingError(
                    f"the notebook no longer defines {name} (from the assignment's setup)"
                )
            return self.namespace[name]
        return super().find_class(module, name)


def _receive(fd: int):
    data = _read_exact(fd, int(_read_exact(fd, HEADER)))
    return _Unpickler(io.BytesIO(data)).load()  # from the grader: trusted


def _limits(plan: dict) -> None:
    import resource

    cpu = int(plan["cpu_seconds"])
    for name, value in (
        ("RLIMIT_CPU", cpu),
        ("RLIMIT_AS", int(plan["memory_bytes"])),
        ("RLIMIT_FSIZE", int(plan["file_bytes"])),
        ("RLIMIT_CORE", 0),
    ):
        limit = getattr(resource, name, None)
        if limit is not None:
            resource.setrlimit(limit, (value, value))


def _is_function(value) -> bool:
    if isinstance(value, type) or codec._is(value, "torch", "Module"):
        return False  # classes and models cannot be called through the channel: they travel as unsupported
    return callable(value)


def _signature(value) -> str:
    if _is_function(value):
        return f"function {id(value)}"
    return hashlib.sha256(json.dumps(codec.encode(value), sort_keys=True).encode()).hexdigest()


class Runner:
    def __init__(self, req_fd: int, out_fd: int, plan: dict):
        self.req, self.out, self.plan = req_fd, out_fd, plan
        self.sent: dict[str, tuple] = {}  # question -> signatures of the answers last sent
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.enabled = False
        self.shell = InteractiveShell.instance(config=config, colors="nocolor")
        self.shell.user_ns["grader"] = _NoGrader()
        _Unpickler.namespace = self.shell.user_ns

    def capture(self, final: bool = False) -> None:
        """Send the answers of every question that changed (and, if ``final``, every function answer)."""
        ns = self.shell.user_ns
        for q in self.plan["questions"]:
            names = [n for n in q["answers"] if n in ns]
            if not names:
                continue
            sig = tuple(_signature(ns[n]) if n in ns else None for n in q["answers"])
            functions = [n for n in names if _is_function(ns[n])]
            if sig == self.sent.get(q["name"]) and not (final and functions):
                continue
            self.sent[q["name"]] = sig
            values = {}
            for n in q["answers"]:
                if n not in ns:
                    values[n] = {"__missing__": True}
                elif n in functions:
                    values[n] = {"__function__": True}
                else:
                    values[n] = codec.encode(ns[n])
            _send(self.out, {"kind": "answers", "question": q["name"], "values": values, "final": final})
            if functions:
                self.serve()

    def serve(self) -> None:
        """Answer the grader's calls to submitted functions until it says ``done``."""
        seconds = float(self.plan["call_seconds"])

        def on_alarm(signum, frame):
            raise _CallTimeout(f"a call took more than {seconds:g} s")

        while True:
            request = _receive(self.req)
            if request.get("done"):
                return
            fn = self.shell.user_ns.get(request["call"])
            old = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                if not callable(fn):
                    raise TypeError(f"{request['call']} is no longer a function")
                value = fn(*request["args"], **request["kwargs"])
                reply = {"kind": "return", "value": codec.encode(value)}
            except (Exception, _CallTimeout) as err:
                reply = {"kind": "raise", "type": type(err).__name__, "message": str(err)[:500]}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
            _send(self.out, reply)

    def run(self) -> None:
        for step in self.plan["steps"]:
            _send(self.out, {"kind": "cell", "cell": step["cell"]})
            if step["kind"] != "code":
                continue
            start = time.monotonic()
            result = self.shell.run_cell(step["source"], store_history=False, silent=False)
            error = result.error_before_exec or result.error_in_exec
            if error is not None:
                _send(
                    self.out,
                    {
                        "kind": "error",
                        "cell": step["cell"],
                        "error": f"{type(error).__name__}: {str(error)[:300]}",
                        "seconds": round(time.monotonic() - start, 1),
                    },
                )
            self.capture()
        _send(self.out, {"kind": "cell", "cell": "end"})
        self.capture(final=True)
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        _send(self.out, {"kind": "finished", "cpu": round(usage.ru_utime + usage.ru_stime, 2)})


class _NoGrader:
    """Replaces otter's ``grader`` during grading: students' own check calls do nothing here."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def main(req_fd: int, out_fd: int) -> None:
    plan = _receive(req_fd)
    _limits(plan)
    os.environ.update(plan.get("env", {}))
    Runner(req_fd, out_fd, plan).run()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: atexit hooks a submission may have registered never run


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
