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
import select
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .records import (
    HEADER,
    MAX_FRAME_BYTES,
    MAX_TOTAL_BYTES,
    MEMORY_BYTES,
    SANDBOX_MEMORY_BYTES,
    SANDBOX_PROCESSES,
    SHM_BYTES,
    TMP_BYTES,
    SandboxUnavailable,
)

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


def _bwrap_command(bwrap: str, runtime: Path) -> list[str]:
    """Read-only everywhere but a sized ``/tmp`` and ``/dev/shm`` (both in memory, so bounded)."""
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
        "--size",
        str(SHM_BYTES),
        "--tmpfs",
        "/dev/shm",
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
    cmd += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for font in sorted((runtime / "mpl").glob("*.json")):  # matplotlib's font list, no rebuild per student
        cmd += ["--ro-bind", str(font), f"/tmp/.matplotlib/{font.name}"]
    for p in _runtime_paths():
        cmd += ["--ro-bind", p, p]
    cmd += [
        "--ro-bind",
        str(runtime),
        "/course",
        "--chdir",
        "/tmp",
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
    ]
    return cmd


class Cgroups:
    """One memory and process budget per sandbox: a child cgroup of this process's own, where it may
    write one (cgroup v1 ``memory`` and ``pids`` hierarchies, or a v2 group that already delegates both
    controllers). Elsewhere :attr:`why_not` says why, and only the per-process limits apply.

    ``proc`` and ``sysfs`` are where this process's membership and the cgroup file system are read
    (the system's by default; the tests point them at a made-up layout)."""

    def __init__(self, proc: Path = Path("/proc/self/cgroup"), sysfs: Path = Path("/sys/fs/cgroup")):
        self.parents: dict[str, Path] = {}
        self.why_not = None
        try:
            lines = proc.read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for c in set(controllers.split(",")) & {"memory", "pids"}:
                self.parents[c] = sysfs / c / path.lstrip("/")
            if controllers == "" and not self.parents:
                here = sysfs / path.lstrip("/")
                with contextlib.suppress(OSError):
                    if {"memory", "pids"} <= set((here / "cgroup.subtree_control").read_text().split()):
                        self.parents["v2"] = here
        if not (set(self.parents) == {"memory", "pids"} or set(self.parents) == {"v2"}):
            self.parents, self.why_not = (
                {},
                "no cgroup with the memory and pids controllers delegated to this user",
            )
        elif not all(os.access(d, os.W_OK) for d in self.parents.values()):
            self.parents, self.why_not = {}, "this user may not create cgroups (run as root, or delegate one)"

    def create(self, name: str) -> list[Path]:
        """The new group's folders (limits written); the sandbox's first process joins them."""
        made = []
        try:
            for kind, parent in sorted(self.parents.items()):
                d = parent / name
                d.mkdir()
                made.append(d)
                if kind == "memory":
                    (d / "memory.limit_in_bytes").write_text(str(SANDBOX_MEMORY_BYTES))
                    with contextlib.suppress(OSError):  # no swap either, where swap is accounted
                        (d / "memory.memsw.limit_in_bytes").write_text(str(SANDBOX_MEMORY_BYTES))
                elif kind == "pids":
                    (d / "pids.max").write_text(str(SANDBOX_PROCESSES))
                else:
                    (d / "memory.max").write_text(str(SANDBOX_MEMORY_BYTES))
                    (d / "pids.max").write_text(str(SANDBOX_PROCESSES))
                    with contextlib.suppress(OSError):
                        (d / "memory.swap.max").write_text("0")
        except OSError:
            self.remove(made)
            raise
        return made

    @staticmethod
    def remove(groups: list[Path]) -> None:
        """Kill what is left in the groups, then remove them (retrying while the dead are reaped)."""
        for d in groups:
            with contextlib.suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
        for d in groups:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


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
        self.waiting_for = ""  # why a receive with a deadline stopped waiting

    def send(self, message) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = f"{len(payload):0{HEADER}d}".encode() + payload
        while data:
            data = data[os.write(self.send_fd, data) :]

    def _read(self, n: int, deadline: float | None) -> bytes | None:
        chunks = []
        while n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.recv_fd], [], [], left)[0]:
                    raise TimeoutError(self.waiting_for)
            chunk = os.read(self.recv_fd, min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self, deadline: float | None = None, waiting_for: str = ""):
        """The next message as a dict, or ``None`` at the end (or once the sandbox broke the protocol).

        ``deadline`` (``time.monotonic()``): past it the channel is broken, its reason ``waiting_for``.
        """
        if self.broken:
            return None
        self.waiting_for = waiting_for or "the notebook did not answer in time"
        try:
            head = self._read(HEADER, deadline)
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
            payload = self._read(size, deadline)
            if payload is None:
                self.ended = True
                return None
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("a message that is not an object")
            return message
        except TimeoutError as err:
            self.broken = str(err)
            return None
        except Exception as err:  # RecursionError from deep nesting included
            self.broken = f"the notebook sent the grader {type(err).__name__}: {str(err)[:200]}"
            return None


class Sandboxes:
    """Starts one sandbox per submission: bubblewrap, or (only when asked) a bare process.

    Everything it writes on this machine lives in one temporary folder, ``tmp`` (the system's by
    default): the runtime copy and one working folder per submission, all removed by :meth:`close`.
    """

    def __init__(self, unsandboxed: bool = False, memory_bytes: int = MEMORY_BYTES, tmp: Path | None = None):
        self.unsandboxed, self.memory_bytes = unsandboxed, memory_bytes
        self.bwrap = None if unsandboxed else find_bwrap()
        self.cgroups = None if unsandboxed else Cgroups()
        self.root = Path(tempfile.mkdtemp(prefix="grade-", dir=tmp))
        self.runtime = self.root / "runtime"
        try:
            _copy_runtime(self.runtime)
        except BaseException:
            _rmtree(self.root)
            raise
        os.chmod(self.root, 0o755)
        os.chmod(self.runtime, 0o755)
        self.live: set = set()
        self.lock = threading.Lock()
        self.count = 0

    @property
    def budget(self) -> str:
        """What bounds one sandbox's memory and processes here (the grader prints it)."""
        if self.unsandboxed:
            return (
                "no sandbox: each submission is limited per process only (CPU time, address space, file size)"
            )
        common = (
            f"/tmp {TMP_BYTES >> 20} MiB and /dev/shm {SHM_BYTES >> 20} MiB in memory, the rest read-only"
        )
        if self.cgroups.parents:
            return (
                f"one budget per sandbox (cgroup): {SANDBOX_MEMORY_BYTES >> 30} GiB of memory, its files in "
                f"memory included, and {SANDBOX_PROCESSES} processes; {common}"
            )
        return (
            f"no cgroup ({self.cgroups.why_not}): memory is limited per process only "
            f"({self.memory_bytes >> 30} GiB of address space each, at most {SANDBOX_PROCESSES} processes where "
            f"the kernel counts them per sandbox); {common} (see docs/instructors.md)"
        )

    def workdir(self) -> Path:
        """A new, private working folder for one submission, inside this batch's temporary folder."""
        return Path(tempfile.mkdtemp(prefix="sub-", dir=self.root))

    def start(self, home: Path) -> tuple[subprocess.Popen, Channel]:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        groups = []
        args = [str(to_child_r), str(from_child_w), self.root.name]  # the last: names this batch's processes
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
                cmd, cwd = [sys.executable, runner, *args], home
                (home / ".matplotlib").mkdir()
                for font in (self.runtime / "mpl").glob("*.json"):
                    shutil.copy(font, home / ".matplotlib" / font.name)
            else:
                cmd = _bwrap_command(self.bwrap, self.runtime)
                for key, value in SANDBOX_ENV.items():
                    cmd += ["--setenv", key, value]
                cmd += [sys.executable, "/course/runner/runner.py", *args]
                env, cwd = {"PATH": "/usr/bin:/bin"}, home
                if self.cgroups.parents:
                    with self.lock:
                        self.count += 1
                        name = f"{self.root.name}-{self.count}"
                    groups = self.cgroups.create(name)
                    # the shell joins the groups, then becomes bubblewrap: every process of the sandbox is in them
                    join = " && ".join(f'echo $$ > "{g}/cgroup.procs"' for g in groups)
                    cmd = ["/bin/sh", "-c", f'{join} && exec "$@"', "sh", *cmd]
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
            proc.groups = groups
        except BaseException:
            os.close(to_child_w)
            os.close(from_child_r)
            Cgroups.remove(groups)
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
        Cgroups.remove(getattr(proc, "groups", []))
        with self.lock:
            self.live.discard(proc)

    def close(self) -> None:
        for proc in list(self.live):
            self.stop(proc)
        _rmtree(self.root)


def _rmtree(path: Path) -> None:
    def retry(func, p, exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            os.chmod(p, stat.S_IRWXU)
            func(p)

    shutil.rmtree(path, onerror=retry)
