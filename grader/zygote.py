"""Fork server for the sandboxes (Linux only): import the heavy modules once, fork one child per submission.

Started by the grader before any submission is read into a child, with the same clean environment as
the sandboxes. Protocol on stdin/stdout, one JSON object per line:

    -> {"modules": [...]}                        preload these, answer {"ready": true}
    -> {"root", "work", "plan", "out", "log", "env"}   fork a sandbox, answer {"pid": <pid>}

Children are auto-reaped (SIGCHLD ignored): the grader waits for a child by polling its pid and reads
the outcome from the files the child writes, as for a spawned runner. Each child starts a new session,
so the grader can kill it and anything it started with one ``killpg``.
"""

import contextlib
import importlib
import json
import os
import pkgutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def preload(modules: list[str]) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    with contextlib.suppress(Exception):
        import course_lib

        for mod in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
            with contextlib.suppress(Exception):
                importlib.import_module(mod.name)
    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(1)


def child(req: dict) -> None:  # pragma: no cover (runs in the forked child)
    try:
        os.setsid()
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(req["work"])
        os.environ.clear()
        os.environ.update(req["env"])
        with contextlib.suppress(Exception):  # packaged data from this sandbox's own copy
            from pathlib import Path

            import course_lib.data

            course_lib.data.DATA_DIR = Path(req["root"]) / "lib" / "data"
        sys.argv = ["runner.py", req["plan"], req["out"]]
        import runner

        runner.main(req["plan"], req["out"])
    finally:
        os._exit(1)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for line in sys.stdin:
        req = json.loads(line)
        if "modules" in req:
            preload(req["modules"])
            reply = {"ready": True}
        else:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                child(req)
            reply = {"pid": pid}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
