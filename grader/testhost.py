"""The tests' own process: the master's setup run once per batch, then one forked child per question
scored, with a memory limit, a CPU limit and a deadline.

A test runs on whatever a submission returned: an answer shaped ``(10**6, 1, 1)`` broadcast against
the reference, or a test that waits for ever on a stalled call, would otherwise grow or stall the
grader itself. Here the grader only hands each question's decoded answers (and, for a function
answer, the submission's channel) to a child of this host and waits for a small JSON result until
``SCORE_SECONDS``; a child that runs past it, or past its memory (``SCORE_MEMORY_BYTES`` on top of
the setup it was forked from) or CPU limit, is killed, and that question scores zero with the reason.

The host is a separate, single-threaded process (``python -m grader.testhost FD``), so forking it is
safe whatever threads the grader runs; the children inherit the master's setup, already executed.
File descriptors reach it with ``SCM_RIGHTS`` on a private socket pair.
"""

import contextlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .records import SCORE_MEMORY_BYTES, SCORE_SECONDS, Bundle, QuestionResult, SandboxRun
from .sandbox import Channel
from .scoring import run_setup, score_question

ROOT = Path(__file__).resolve().parents[1]


def _send_message(sock: socket.socket, data: bytes) -> None:
    sock.sendall(f"{len(data):012d}".encode() + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the socket")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_until(fd: int, deadline: float, limit: int = 8 << 20) -> tuple[bytes, bool]:
    """What ``fd`` gives until its end (``True``), ``limit`` bytes or the deadline (``False``)."""
    chunks, size = [], 0
    while (
        size <= limit and (left := deadline - time.monotonic()) > 0 and select.select([fd], [], [], left)[0]
    ):
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


class TestHost:
    """Scores questions in forked children of one process that ran ``bundle``'s setup (``close()`` it)."""

    __test__ = False  # not a pytest class

    def __init__(self, bundle: Bundle):
        self.sock, theirs = socket.socketpair()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grader.testhost", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.lock = threading.Lock()
        try:
            _send_message(self.sock, json.dumps({"name": bundle.name, "setup": bundle.setup}).encode())
            answer = json.loads(_recv_exact(self.sock, int(_recv_exact(self.sock, 12))))
        except (OSError, EOFError, ValueError) as err:
            self.close()
            raise RuntimeError(f"the tests' process did not start ({err})") from None
        if answer.get("error"):
            self.close()
            raise RuntimeError(f"the setup of {bundle.name} failed in the tests' process: {answer['error']}")

    def score(
        self,
        q: dict,
        values,
        channel: Channel | None = None,
        problem: str | None = None,
        mutate: str | None = None,
        mutation: str = "values",
    ) -> QuestionResult:
        """:func:`grader.scoring.score_question` in a limited child; the channel's state comes back with it."""
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        fds = [req_r, res_w] + ([channel.send_fd, channel.recv_fd] if channel is not None else [])
        request = {
            "question": q,
            "values": values,
            "problem": problem,
            "mutate": mutate,
            "mutation": mutation,
        }
        if channel is not None:
            request["received"] = channel.received
        mine = {req_r, req_w, res_r, res_w}  # closed exactly once: another thread may reuse a number at once

        def close(fd: int) -> None:
            mine.discard(fd)
            os.close(fd)

        try:
            with self.lock:
                socket.send_fds(self.sock, [b"x"], fds)
            close(req_r)
            close(res_w)
            data = json.dumps(request).encode()
            while data:
                data = data[os.write(req_w, data) :]
            close(req_w)
            raw, ended = _read_until(res_r, time.monotonic() + SCORE_SECONDS + 5)
        finally:
            for fd in list(mine):
                close(fd)
        pid = int(raw[:12]) if raw[:12].isdigit() else None
        if pid is not None:  # a finished child has exited already: this only stops one past its deadline
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            out = json.loads(raw[12:])
        except ValueError:
            why = "ran past" if not ended else "stopped at"
            reason = (
                f"not graded: the tests on this answer {why} the grader's limits "
                f"({SCORE_SECONDS:g} s, {SCORE_MEMORY_BYTES >> 30} GiB)"
            )
            if channel is not None:
                channel.broken = channel.broken or reason
            return QuestionResult(q["name"], 0.0, float(q["points"]), reason=reason)
        if channel is not None:
            state = out["channel"]
            channel.received, channel.ended = state["received"], state["ended"]
            channel.broken = channel.broken or state["broken"]
        r = out["result"]
        cases = [tuple(c) for c in r["cases"]]
        return QuestionResult(r["name"], r["score"], r["possible"], cases, r["reason"], r["mutated"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _child(setup_ns: dict, fds: list[int]) -> None:
    """One question: limits first, then the tests; the result as JSON on ``res_w``."""
    req_r, res_w, *chan = fds
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.write(res_w, f"{os.getpid():012d}".encode())
    try:
        status = Path("/proc/self/status").read_text()
        vm = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:"))) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + SCORE_MEMORY_BYTES,) * 2)
        resource.setrlimit(resource.RLIMIT_CPU, (int(SCORE_SECONDS) + 1,) * 2)
        chunks = []
        while chunk := os.read(req_r, 1 << 20):
            chunks.append(chunk)
        request = json.loads(b"".join(chunks))
        channel = Channel(*chan) if chan else None
        if channel is not None:
            channel.received = request["received"]
        run = SandboxRun(problem=request["problem"]) if request["problem"] else None
        result = score_question(
            request["question"],
            setup_ns,
            request["values"],
            channel=channel,
            run=run,
            mutate=request["mutate"],
            mutation=request["mutation"],
        )
        out = {
            "result": {
                "name": result.name,
                "score": result.score,
                "possible": result.possible,
                "cases": [list(c) for c in result.cases],
                "reason": result.reason,
                "mutated": result.mutated,
            },
            "channel": {
                "received": channel.received if channel else 0,
                "ended": channel.ended if channel else False,
                "broken": channel.broken if channel else None,
            },
        }
        data = json.dumps(out).encode()
        while data:
            data = data[os.write(res_w, data) :]
    finally:
        os._exit(0)


def serve(fd: int) -> None:
    """The host's loop: run the setup, then fork one child per request until the grader closes the socket."""
    sock = socket.socket(fileno=fd)
    spec = json.loads(_recv_exact(sock, int(_recv_exact(sock, 12))))
    try:
        setup_ns = run_setup(Bundle(spec["name"], spec["setup"], []))
    except BaseException as err:
        _send_message(sock, json.dumps({"error": f"{type(err).__name__}: {str(err)[:300]}"}).encode())
        return
    _send_message(sock, b'{"ready": true}')
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1, 4)
        except OSError:
            return
        if not msg:
            return
        if os.fork() == 0:
            sock.close()
            _child(setup_ns, fds)
        for f in fds:
            os.close(f)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
