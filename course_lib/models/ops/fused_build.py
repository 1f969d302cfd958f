"""The fused scan's C kernel (``selective_scan.c``): compiled once per machine, cached, and loaded.

:func:`load_kernel` compiles the kernel with the system C compiler (``CC``, else ``cc`` or ``clang``)
into a shared library that ``ctypes`` loads: no C++ toolchain, no ninja, no Python headers
(``torch.utils.cpp_extension`` would need all three for a kernel that takes seven pointers).
The library is cached, so a process that finds it built runs no compiler:

* **where**: ``$COURSE_CACHE_DIR/kernels`` if that variable is set, else ``kernels`` in the user cache
  directory (``platformdirs.user_cache_dir("dlfts-course")``), the root that :mod:`course_lib.data`
  caches prices under; never the repository or the working directory;
* **key**: a hash of the C source, the compiler (its path and ``--version`` output), the compile and
  link flags, the dtype (``REAL=float`` or ``double``) and the CPU (a ``-march=native`` build may not
  run on another CPU that shares the cache folder, e.g. a home directory on a cluster). Any change
  gives a new file name, so a stale library is never loaded;
* **atomic**: each build compiles and links in a temporary folder inside the cache folder and moves
  the library into place with ``os.replace``, so two processes building at once each load a whole
  library, never a half-written one. Its SHA-256 is kept beside it (``.so.sha256``) and checked
  before loading; a cached library that is corrupt (a truncated one can crash the process that loads
  it) or fails to load is rebuilt.

Builds are tried in order until one compiles and loads (:data:`_BUILDS`): vectorised for this CPU
(512-bit vectors where it has them) and threaded with OpenMP, then for any CPU, then one thread
without OpenMP (e.g. Apple's clang). Every build is compiled with ``-ffast-math`` (so that ``exp`` is
vectorised) but linked without it, so that the flush-to-zero start-up code of fast-math is not loaded
into the process. Linked with ``-fopenmp``, it uses the OpenMP runtime (``libgomp.so.1``) that
PyTorch has already loaded, and its threads.
"""

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

__all__ = ["cache_dir", "fused_scan_available", "fused_scan_unavailable_reason", "load_kernel"]

SOURCE = Path(__file__).with_name("selective_scan.c")
_KERNELS: dict[torch.dtype, ctypes.CDLL] = {}  # loaded in this process, per dtype
_BUILDS = (
    ["-march=native", "-mprefer-vector-width=512", "-fopenmp"],
    ["-march=native", "-fopenmp"],
    ["-fopenmp"],
    [],
)
_FLAGS = ["-O3", "-ffast-math", "-fPIC"]


def cache_dir() -> Path:
    """Where built kernels are kept: ``$COURSE_CACHE_DIR/kernels``, or ``kernels`` in the user cache dir."""
    if os.environ.get("COURSE_CACHE_DIR"):
        return Path(os.environ["COURSE_CACHE_DIR"]) / "kernels"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dlfts-course")) / "kernels"


def _compiler() -> str:
    requested = os.environ.get("CC")
    compiler = shutil.which(requested) if requested else shutil.which("cc") or shutil.which("clang")
    if compiler is None:
        where = f"CC={requested} is not on PATH" if requested else "no cc or clang on PATH"
        raise RuntimeError(
            f"selective_scan(scan='fused') compiles a small C kernel once per machine and found no C "
            f"compiler ({where}); install gcc or clang, or use scan='chunked', which needs none"
        )
    return compiler


def _cpu() -> str:
    """What ``-march=native`` compiles for: the CPU's model and feature flags (Linux), else its name."""
    try:
        with open("/proc/cpuinfo") as info:
            lines = [line for line in info if line.startswith(("model name", "flags", "Features"))]
        return "".join(dict.fromkeys(lines))  # each distinct line once
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def build_key(source: bytes, compiler: str, version: str, compile_flags, link_flags, cpu: str) -> str:
    """The cache key of one build: a hash of everything that makes the library what it is."""
    parts = [hashlib.sha256(source).hexdigest(), compiler, version, [*compile_flags], [*link_flags], cpu]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _builds(dtype: torch.dtype, compiler: str) -> list[tuple[list[str], list[str], Path]]:
    """``(compile flags, link flags, cached library)`` of each build to try, in order."""
    real, exp = ("float", "expf") if dtype == torch.float32 else ("double", "exp")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    source, cpu, folder = SOURCE.read_bytes(), _cpu(), cache_dir()
    builds = []
    for build_flags in _BUILDS:
        compile_flags = [*build_flags, *_FLAGS, f"-DREAL={real}", f"-DEXP={exp}"]
        link_flags = ["-shared", *(["-fopenmp"] if "-fopenmp" in build_flags else [])]
        key = build_key(source, compiler, version, compile_flags, link_flags, cpu)
        builds.append((compile_flags, link_flags, folder / f"selective_scan_{real}_{key}.so"))
    return builds


def _digest_file(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _compile(compiler: str, compile_flags: list[str], link_flags: list[str], library: Path) -> str | None:
    """Build ``library`` and its SHA-256 (each moved into place whole); ``None``, or the complaint."""
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=library.parent, prefix=".build-") as folder:
            obj, lib = os.path.join(folder, "scan.o"), os.path.join(folder, library.name)
            compile_ = [compiler, *compile_flags, "-c", str(SOURCE), "-o", obj]
            build = subprocess.run(compile_, capture_output=True, text=True)
            if build.returncode == 0:
                link = [compiler, *link_flags, obj, "-o", lib, "-lm"]
                build = subprocess.run(link, capture_output=True, text=True)
            if build.returncode != 0:
                return build.stderr.strip()
            digest = Path(folder, "sha256")
            digest.write_text(hashlib.sha256(Path(lib).read_bytes()).hexdigest())
            os.replace(digest, _digest_file(library))  # first the digest, then the library it vouches for
            os.replace(lib, library)
    except OSError as error:  # e.g. a cache folder that cannot be written: say where
        return f"{error} (set COURSE_CACHE_DIR to a writable folder)"
    return None


def _intact(library: Path) -> bool:
    """Whether ``library`` has the SHA-256 written beside it at build time. Checked before loading: a
    truncated shared library can crash the process that loads it (SIGBUS) instead of failing to load."""
    try:
        return _digest_file(library).read_text() == hashlib.sha256(library.read_bytes()).hexdigest()
    except OSError:
        return False


def _load(library: Path) -> ctypes.CDLL:
    kernel = ctypes.CDLL(str(library))
    if not all(hasattr(kernel, name) for name in ("scan_forward", "scan_backward")):
        raise OSError(f"{library} lacks the scan functions")  # not a build of selective_scan.c
    return kernel


def _cached(builds) -> ctypes.CDLL | None:
    """The first build in the cache that is intact and loads (built before, by any process): no
    compiler runs. Nothing is deleted: a build that replaces a corrupt file replaces it whole."""
    for *_, library in builds:
        if _intact(library):
            try:
                return _load(library)
            except OSError:  # cannot load here (e.g. a missing OpenMP symbol): try the next build
                pass
    return None


def load_kernel(dtype: torch.dtype) -> ctypes.CDLL:
    """The C kernel of ``selective_scan.c`` for ``dtype``: from the cache, else compiled into it."""
    if dtype not in _KERNELS:
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"selective_scan(scan='fused') takes float32 or float64 tensors, got {dtype}")
        compiler = _compiler()
        builds = _builds(dtype, compiler)
        kernel, errors = _cached(builds), []
        if kernel is None:
            for compile_flags, link_flags, library in builds:
                error = _compile(compiler, compile_flags, link_flags, library)
                if error is None:
                    try:
                        kernel = _load(library)
                        break
                    except OSError as load_error:  # e.g. an OpenMP runtime without a symbol it needs
                        error = str(load_error)
                errors.append(error)
            else:
                raise RuntimeError(
                    f"could not build {SOURCE.name} with {compiler} (scan='chunked' needs no compiler):\n"
                    + "\n".join(errors)
                )
        size, pointer = ctypes.c_int64, ctypes.c_void_p
        kernel.scan_forward.argtypes = [size] * 6 + [pointer] * 7
        kernel.scan_backward.argtypes = [size] * 6 + [pointer] * 12
        kernel.scan_forward.restype = kernel.scan_backward.restype = ctypes.c_int
        _KERNELS[dtype] = kernel
    return _KERNELS[dtype]


def fused_scan_unavailable_reason() -> str | None:
    """Why ``selective_scan(scan="fused")`` cannot run here (no compiler, no build loads), or None."""
    try:
        load_kernel(torch.float32)
    except RuntimeError as error:
        return str(error)
    return None


def fused_scan_available() -> bool:
    """Whether ``selective_scan(scan="fused")`` can run here (its C kernel builds or is cached, and loads)."""
    return fused_scan_unavailable_reason() is None
