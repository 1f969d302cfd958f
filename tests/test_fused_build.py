"""Tests of course_lib.models.ops.fused_build: the fused scan's C kernel is built once per machine.

Every test points ``COURSE_CACHE_DIR`` at its own ``tmp_path`` (conftest.py already points it at a
folder of the test run): nothing is written to the user's cache or the working directory.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.models.ops import fused_build
from course_lib.models.ops.fused_build import build_key, cache_dir, fused_scan_available, load_kernel

ROOT = Path(__file__).resolve().parents[1]
REAL_CC = (
    (os.environ.get("CC") and shutil.which(os.environ["CC"])) or shutil.which("cc") or shutil.which("clang")
)
needs_compiler = pytest.mark.skipif(
    REAL_CC is None or not fused_scan_available(), reason="the fused scan's C kernel needs a C compiler"
)

# Loads the float32 kernel, runs the fused scan on fixed inputs and prints the sum of its output.
CHILD = """
import torch
from course_lib.models.ops.selective_scan import selective_scan
g = torch.Generator().manual_seed(0)
u, delta, B, C = (torch.rand(2, 16, n, generator=g) for n in (3, 3, 4, 4))
print(repr(selective_scan(u, delta, -torch.rand(3, 4, generator=g), B, C, scan="fused").sum().item()))
"""


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder of this test, and no kernel loaded yet in this process."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fused_build, "_KERNELS", {})
    return tmp_path / "cache" / "kernels"


def _logging_compiler(tmp_path: Path) -> tuple[Path, Path]:
    """A ``CC`` that writes each of its command lines to a log, then runs the real compiler."""
    log, wrapper = tmp_path / "cc.log", tmp_path / "logging-cc"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{REAL_CC}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def _compiles(log: Path) -> int:
    """How many compile steps (``-c``) the log holds; ``--version`` (part of the key) is not one."""
    return sum(" -c " in f" {line} " for line in log.read_text().splitlines()) if log.exists() else 0


def _child_env(tmp_path: Path, compiler: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "CC": str(compiler),
        "COURSE_CACHE_DIR": str(tmp_path / "cache"),
    }


@needs_compiler
def test_a_second_process_loads_the_cached_kernel_without_compiling(tmp_path):
    compiler, log = _logging_compiler(tmp_path)
    env = _child_env(tmp_path, compiler)
    first = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    assert _compiles(log) >= 1
    compiled = _compiles(log)
    second = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    assert _compiles(log) == compiled, "the second process ran the compiler again"
    assert first.stdout == second.stdout  # the same library, the same bits
    libraries = sorted(p.name for p in (tmp_path / "cache" / "kernels").iterdir())
    assert len(libraries) == 2 and libraries[0].startswith("selective_scan_float_"), libraries
    assert libraries[1] == libraries[0] + ".sha256"  # the library and its digest, nothing else


@needs_compiler
def test_processes_building_at_once_each_load_a_whole_library(tmp_path):
    compiler, _ = _logging_compiler(tmp_path)
    env = _child_env(tmp_path, compiler)
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [child.communicate()[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert outputs[0] == outputs[1]
    left = sorted(p.name for p in (tmp_path / "cache" / "kernels").iterdir())
    assert len(left) == 2 and left[1] == left[0] + ".sha256", left  # no half-written file, no build folder


def test_the_key_changes_with_the_source_compiler_flags_dtype_and_cpu():
    base = dict(
        source=b"int f;",
        compiler="/usr/bin/cc",
        version="cc 12",
        compile_flags=["-O3", "-DREAL=float"],
        link_flags=["-shared"],
        cpu="avx512f",
    )
    changed = [
        dict(source=b"int f; /* edited */"),
        dict(compiler="/usr/bin/clang"),
        dict(version="cc 13"),
        dict(compile_flags=["-O3", "-DREAL=double"]),  # the dtype is a flag
        dict(compile_flags=["-O2", "-DREAL=float"]),
        dict(link_flags=["-shared", "-fopenmp"]),
        dict(cpu="avx2"),
    ]
    keys = {build_key(**base)} | {build_key(**{**base, **change}) for change in changed}
    assert len(keys) == 1 + len(changed)
    assert build_key(**base) == build_key(**base)


@needs_compiler
def test_each_dtype_build_and_source_has_its_own_library(fresh_cache, tmp_path, monkeypatch):
    paths = {
        dtype: [p for *_, p in fused_build._builds(dtype, REAL_CC)]
        for dtype in (torch.float32, torch.float64)
    }
    every = paths[torch.float32] + paths[torch.float64]
    assert len(set(every)) == len(every) == 2 * len(fused_build._BUILDS)
    assert all(p.parent == fresh_cache for p in every)
    edited = tmp_path / "selective_scan.c"
    edited.write_text(fused_build.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(fused_build, "SOURCE", edited)
    assert not set(p for *_, p in fused_build._builds(torch.float32, REAL_CC)) & set(every)


@needs_compiler
def test_a_corrupt_cached_library_is_rebuilt(tmp_path):
    # in fresh processes: this one may not load a library twice from one path (nor rewrite a loaded one)
    compiler, log = _logging_compiler(tmp_path)
    env = _child_env(tmp_path, compiler)
    first = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    (library,) = (tmp_path / "cache" / "kernels").glob("*.so")
    good, compiled = library.read_bytes(), _compiles(log)
    library.write_bytes(good[: len(good) // 3])  # truncated, as by a full disk or a killed copy
    second = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    assert _compiles(log) > compiled, "the corrupt library was not rebuilt"
    assert first.stdout == second.stdout
    assert sorted(p.name for p in library.parent.iterdir()) == [library.name, library.name + ".sha256"]
    assert len(library.read_bytes()) > len(good) // 3


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "kernels"
    monkeypatch.delenv("COURSE_CACHE_DIR")
    from platformdirs import user_cache_dir

    assert cache_dir() == Path(user_cache_dir("dlfts-course")) / "kernels"  # only named, nothing written


@needs_compiler
def test_the_kernel_is_built_into_the_folder_of_the_environment_variable(fresh_cache):
    assert not fresh_cache.exists()
    load_kernel(torch.float64)
    assert [p.name.startswith("selective_scan_double_") for p in fresh_cache.glob("*.so")] == [True]


def test_an_unwritable_cache_folder_is_named_in_the_error(fresh_cache, monkeypatch):
    if REAL_CC is None:
        pytest.skip("needs a C compiler to get as far as the cache folder")
    fresh_cache.parent.write_text("a file where the cache folder should be")
    with pytest.raises(RuntimeError, match="COURSE_CACHE_DIR"):
        load_kernel(torch.float32)
    assert fused_build.fused_scan_unavailable_reason() is not None
