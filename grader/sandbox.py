"""The sandboxes: a private copy of the course runtime, bubblewrap, and one pair of pipes per submission.

:class:`Sandboxes` starts ``runner.py`` (copied with ``codec.py`` into the runtime folder) once per
submission, in bubblewrap or, only when asked, as a bare process; :class:`Channel` is that
submission's pipes. What runs there and what comes back is :func:`grader.driver.run_sandbox`'s.
"""

import contextlib
import io
import json
import os
import pickle
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .records import HEADER, MAX_FRAME_BYTES, MAX_TOTAL_BYTES, MEMORY_BYTES, SandboxUnavailable

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _runtime_paths() -> list[str]:
    """The Python installation the sandboxes run: the venv and the interpreter it was made from."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    with contextlib.suppress(Exception):
        paths |= set(site.getsitepackages())
    out = []
    for p in sorted(os.path.realpath(p) for p in paths if p and os.path.isdir(p)):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return [p for p in out if not p.startswith("/usr/")]


def _copy_runtime(dest: Path) -> None:
    """course_lib, the packaged data and the runner, copied once per batch (then bound read-only)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "course_lib", dest / "lib" / "course_lib", ignore=ignore)
    shutil.copytree(ROOT / "data", dest / "data", ignore=ignore)
    (dest / "runner").mkdir()
    for name in ("runner.py", "codec.py"):
        shutil.copy(HERE / name, dest / "runner" / name)
    import compileall

    with contextlib.redirect_stdout(io.StringIO()):
        compileall.compile_dir(str(dest), quiet=2)  # bytecode now: the sandboxes cannot write it
    with contextlib.suppress(Exception):
        import matplotlib

        fonts = sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
        if fonts:
            (dest / "mpl").mkdir()
            shutil.copy(fonts[-1], dest / "mpl" / fonts[-1].name)  # no font-cache rebuild per student


def _bwrap_command(bwrap: str, runtime: Path, home: Path) -> list[str]:
    cmd = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--hostname",
        "sandbox",
        "--clearenv",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        p = Path("/") / name
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts"):
        if (Path("/etc") / name).exists():
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    # the private /tmp first: a runtime that lives under /tmp (a clone in /tmp/...) is bound on top of it
    cmd += ["--bind", str(home), "/tmp"]
    for p in _runtime_paths():
        cmd += ["--ro-bind", p, p]
    cmd += ["--ro-bind", str(runtime), "/course", "--chdir", "/tmp"]
    return cmd


SANDBOX_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "PYTHONPATH": "/course/lib",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "COURSE_OFFLINE": "1",
    "COURSE_DEVICE": "cpu",
    "COURSE_DATA_DIR": "/course/data",
    "COURSE_CACHE_DIR": "/tmp/cache",
    "IPYTHONDIR": "/tmp/.ipython",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp/.matplotlib",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def find_bwrap() -> str:
    """The bubblewrap binary, checked to work here; raises :class:`SandboxUnavailable` saying what to do."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: sudo apt-get install bubblewrap; "
            "Fedora: sudo dnf install bubblewrap), or grade without a sandbox with UNSANDBOXED=1 (unsafe)"
        )
    probe = subprocess.run(
        [
            bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "/usr/bin/true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot create a sandbox here ({probe.stderr.strip()[:300]}): user namespaces may be "
            "disabled (sysctl kernel.unprivileged_userns_clone=1, or the AppArmor rule of Ubuntu 24.04: see "
            "docs/instructors.md), or grade without a sandbox with UNSANDBOXED=1 (unsafe)"
        )
    return bwrap


class Channel:
    """One submission's two pipes: pickles to the sandbox, size-bounded JSON frames back."""

    def __init__(self, send_fd: int, recv_fd: int):
        self.send_fd, self.recv_fd, self.received, self.broken = send_fd, recv_fd, 0, None
        self.ended = False  # the sandbox closed its end (it finished, died or was stopped)

    def send(self, message) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = f"{len(payload):0{HEADER}d}".encode() + payload
        while data:
            data = data[os.write(self.send_fd, data) :]

    def _read(self, n: int) -> bytes | None:
        chunks = []
        while n:
            chunk = os.read(self.recv_fd, min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self):
        """The next message as a dict, or ``None`` at the end (or once the sandbox broke the protocol)."""
        if self.broken:
            return None
        try:
            head = self._read(HEADER)
            if head is None:
                self.ended = True
                return None
            if not head.isdigit():
                raise ValueError("a malformed message")
            size = int(head)
            if size > MAX_FRAME_BYTES or self.received + size > MAX_TOTAL_BYTES:
                raise ValueError(
                    f"more than {MAX_FRAME_BYTES // 1_000_000} MB in one message, or "
                    f"{MAX_TOTAL_BYTES // 1_000_000} MB in all"
                )
            self.received += size + HEADER
            payload = self._read(size)
            if payload is None:
                self.ended = True
                return None
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("a message that is not an object")
            return message
        except Exception as err:  # RecursionError from deep nesting included
            self.broken = f"the notebook sent the grader {type(err).__name__}: {str(err)[:200]}"
            return None


class Sandboxes:
    """Starts one sandbox per submission: bubblewrap, or (only when asked) a bare process."""

    def __init__(self, unsandboxed: bool = False, memory_bytes: int = MEMORY_BYTES):
        self.unsandboxed, self.memory_bytes = unsandboxed, memory_bytes
        self.bwrap = None if unsandboxed else find_bwrap()
        self.runtime = Path(tempfile.mkdtemp(prefix="grade-runtime-"))
        try:
            _copy_runtime(self.runtime)
        except BaseException:
            _rmtree(self.runtime)
            raise
        os.chmod(self.runtime, 0o755)
        self.live: set = set()
        self.lock = threading.Lock()

    def start(self, home: Path) -> tuple[subprocess.Popen, Channel]:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            if self.unsandboxed:
                runner = str(self.runtime / "runner" / "runner.py")
                env = {
                    **SANDBOX_ENV,
                    "HOME": str(home),
                    "TMPDIR": str(home),
                    "PYTHONPATH": str(self.runtime / "lib"),
                    "COURSE_DATA_DIR": str(self.runtime / "data"),
                    "COURSE_CACHE_DIR": str(home / "cache"),
                    "IPYTHONDIR": str(home / ".ipython"),
                    "MPLCONFIGDIR": str(home / ".matplotlib"),
                }
                cmd, cwd = [sys.executable, runner, str(to_child_r), str(from_child_w)], home
            else:
                cmd = _bwrap_command(self.bwrap, self.runtime, home)
                for key, value in SANDBOX_ENV.items():
                    cmd += ["--setenv", key, value]
                cmd += [sys.executable, "/course/runner/runner.py", str(to_child_r), str(from_child_w)]
                env, cwd = {"PATH": "/usr/bin:/bin"}, home
            (home / ".matplotlib").mkdir()
            for font in (self.runtime / "mpl").glob("*.json"):
                shutil.copy(font, home / ".matplotlib" / font.name)
            with open(home.parent / "stderr.txt", "wb") as err:
                proc = subprocess.Popen(
                    cmd,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    pass_fds=(to_child_r, from_child_w),
                    start_new_session=True,
                )
        except BaseException:
            os.close(to_child_w)
            os.close(from_child_r)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        with self.lock:
            self.live.add(proc)
        return proc, Channel(to_child_w, from_child_r)

    def stop(self, proc: subprocess.Popen) -> None:
        """Kill the sandbox and everything in it (its PID namespace dies with bwrap), then reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, OSError):
            proc.kill()
        proc.wait()
        with self.lock:
            self.live.discard(proc)

    def close(self) -> None:
        for proc in list(self.live):
            self.stop(proc)
        _rmtree(self.runtime)


def _rmtree(path: Path) -> None:
    def retry(func, p, exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            os.chmod(p, stat.S_IRWXU)
            func(p)

    shutil.rmtree(path, onerror=retry)
