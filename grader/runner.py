"""Sandbox side of grading: run ONE submission's code cells and send its answers out as data.

Started by :mod:`grader.sandbox` inside the sandbox (bubblewrap) as ``python runner.py REQ_FD OUT_FD
BATCH`` (``BATCH`` only names the batch's processes).
Nothing this process sends is trusted: the grader decodes only data (see ``codec.py``), runs every
test itself, outside the sandbox, and decides every score. This process only has to be *useful*:

* it sets its own CPU, memory and file-size limits, then reads the plan (the notebook's code cells
  and, per question, the names of its answer variables; never a test) from ``REQ_FD``;
* it runs the cells in order in an IPython shell (so magics work; ``%matplotlib`` and GUI event
  loops are no-ops here), recording the error of any cell that raises and carrying on, as Jupyter's
  "run all, ignore errors" would;
* after every cell it sends, for each question whose answers changed, their values as data, so a
  later crash or time limit keeps what was already answered; an answer that is a function is sent as
  a marker, and the runner then serves the grader's calls to it (arguments in, data out) while the
  grader runs that question's tests on its side, until the grader says ``done``. Each call runs in a
  forked child that this process kills at the per-call limit (a function that blocks ``SIGALRM`` or
  never returns cannot stall the grader), and whatever the call changes dies with that child;
* at the end it sends the function answers once more (the notebook's final state) and ``finished``.

Frames on both pipes: 12 ASCII digits (the payload's length) then the payload; JSON from here to the
grader, pickles from the grader (trusted) to here.
"""

import contextlib
import hashlib
import io
import json
import os
import pickle
import select
import signal
import sys
import time
from typing import ClassVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codec

HEADER = 12
MAX_FRAME = 32_000_000  # bytes of one message; the grader refuses larger ones


def _send(fd: int, message: dict) -> None:
    _send_payload(fd, json.dumps(message).encode(), message)


def _send_payload(fd: int, payload: bytes, message: dict | None = None) -> None:
    if len(payload) > MAX_FRAME:
        payload = json.dumps({"kind": "oversized", "question": (message or {}).get("question")}).encode()
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
        ("RLIMIT_NPROC", plan.get("processes")),  # only where the kernel counts a sandbox's own processes
    ):
        if value is None:
            continue
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


def make_shell():
    """An IPython shell without a front end: the magics notebooks use (``%matplotlib inline``,
    ``%config InlineBackend...``) are accepted and do nothing here, where figures are never shown."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):  # no event loop in a sandbox (the base class raises)
            return None

        def enable_matplotlib(self, gui=None):
            import matplotlib

            matplotlib.use("Agg")
            return gui, "agg"

    config = Config()
    config.HistoryManager.enabled = False
    shell = Shell.instance(config=config, colors="nocolor")
    with contextlib.suppress(ImportError):  # %config InlineBackend.* as in Jupyter
        from matplotlib_inline.backend_inline import InlineBackend

        shell.configurables.append(InlineBackend.instance(parent=shell))
    return shell


class Runner:
    def __init__(self, req_fd: int, out_fd: int, plan: dict):
        self.req, self.out, self.plan = req_fd, out_fd, plan
        self.sent: dict[str, tuple] = {}  # question -> signatures of the answers last sent
        self.shell = make_shell()
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
        while True:
            request = _receive(self.req)
            if request.get("done"):
                return
            _send_payload(self.out, self.call(request))

    def call(self, request: dict) -> bytes:
        """Run one call in a forked child, killed at the per-call limit; the reply (JSON) carries the call's id."""
        seconds, ident = float(self.plan["call_seconds"]), request.get("id")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the notebook's state as it is now; nothing it changes survives the call
            os.close(r)
            try:
                fn = self.shell.user_ns.get(request["call"])
                if not callable(fn):
                    raise TypeError(f"{request['call']} is no longer a function")
                value = fn(*request["args"], **request["kwargs"])
                reply = {"kind": "return", "id": ident, "value": codec.encode(value)}
            except BaseException as err:
                reply = {"kind": "raise", "id": ident, "type": type(err).__name__, "message": str(err)[:500]}
            with contextlib.suppress(BaseException):
                data = json.dumps(reply).encode()
                while data:
                    data = data[os.write(w, data) :]
            os._exit(0)
        os.close(w)
        chunks, deadline, size = [], time.monotonic() + seconds, 0
        try:
            while (left := deadline - time.monotonic()) > 0 and select.select([r], [], [], left)[0]:
                chunk = os.read(r, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_FRAME:
                    break
            else:
                chunks = None  # the limit: the child is killed below
        finally:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
        if chunks is None:
            why = ("TimeoutError", f"a call took more than {seconds:g} s")
        elif size > MAX_FRAME:
            why = ("MemoryError", f"the result is larger than {MAX_FRAME // 1_000_000} MB")
        elif not chunks:
            why = ("SystemExit", "the call ended its process")
        else:
            return b"".join(chunks)
        return json.dumps({"kind": "raise", "id": ident, "type": why[0], "message": why[1]}).encode()

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
                        "type": type(error).__name__,
                        "message": str(error)[:300],
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
