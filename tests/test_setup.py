"""`make setup` (scripts/setup_env.sh): the interpreter is checked first and TORCH is one of three builds."""

import os
import platform
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup_env.sh"


def _setup(*args, cwd=ROOT, env=None, timeout=60):
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_supported_pythons_agree_between_pyproject_makefile_and_setup():
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec == ">=3.11,<3.14"
    assert "(3, 11) <= sys.version_info[:2] <= (3, 13)" in (ROOT / "Makefile").read_text()
    assert "SUPPORTED='(3, 11) <= sys.version_info[:2] <= (3, 13)'" in SCRIPT.read_text()


def test_an_unsupported_python_gets_one_line_saying_what_to_install(tmp_path):
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\nexec " + sys.executable + " -c \"import sys; print('3.10'); sys.exit(1)\"\n")
    old.chmod(0o755)
    for python in (old, ""):
        out = _setup(
            python, tmp_path / "venv", "auto", "command line", env={"SETUP_CANDIDATES": "no-such-python"}
        )
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and re.match(
            r"setup: this course needs Python 3\.11, 3\.12 or 3\.13", lines[0]
        )
        assert "install one" in lines[0] and "PYTHON=" in lines[0]
    assert not (tmp_path / "venv").exists(), "nothing is created before the interpreter is checked"


def _broken_python(folder: Path, name: str) -> Path:
    """A `name` on PATH that does not run, like a pyenv shim for a version that is not selected."""
    folder.mkdir(exist_ok=True)
    shim = folder / name
    shim.write_text(f"#!/bin/sh\necho 'pyenv: {name}: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    return shim


def test_a_python_that_does_not_run_is_named_with_its_own_error(tmp_path):
    shim = _broken_python(tmp_path / "bin", "python3.13")
    env = {"PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}", "SETUP_CANDIDATES": "python3.13"}
    # found on PATH by the Makefile's search (which then passes no PYTHON), or named by the user
    for python, culprit in (("", f"python3.13 on PATH ({shim})"), (shim, f"PYTHON={shim}")):
        out = _setup(python, tmp_path / "venv", "auto", "command line", env=env)
        assert out.returncode == 1
        first = out.stderr.splitlines()[0]
        assert first.startswith(f"setup: {culprit} does not run: pyenv: python3.13: command not found"), first
        assert "this course needs" not in out.stderr, "a broken interpreter is not 'no interpreter'"
    assert not (tmp_path / "venv").exists()


@pytest.mark.slow
def test_an_unreachable_pytorch_index_is_named_before_pips_own_message(tmp_path):
    env = {
        "SETUP_TORCH_INDEX": "http://127.0.0.1:9/whl/cpu",  # nothing listens on the discard port
        "PIP_CONFIG_FILE": os.devnull,  # no local wheels or mirrors from this machine's pip settings
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_RETRIES": "0",
    }
    out = _setup(sys.executable, tmp_path / "venv", "cpu", "default", env=env, timeout=300)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    first = next(
        i for i, line in enumerate(lines) if line.startswith("setup: could not install the CPU build")
    )
    assert "the index is unreachable" in lines[first], lines[first]
    pip_lines = [i for i, line in enumerate(lines) if "ERROR" in line or "Could not" in line]
    assert pip_lines and min(pip_lines) > first, "the course's diagnosis comes before pip's messages"


def test_an_unknown_torch_build_is_refused_before_anything_is_built(tmp_path):
    out = _setup(sys.executable, tmp_path / "venv", "gpu", "default")
    assert out.returncode == 1 and "TORCH=gpu is not one of auto, cpu, cuda" in out.stderr
    assert not (tmp_path / "venv").exists()


def test_junit_times_per_notebook_and_test_module(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from notebook_times import file_times
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase file="build/nb/00_a.ipynb" name="Cell 0" time="1.5"/>'
        '<testcase file="build/nb/00_a.ipynb" name="Cell 1" time="2.0"><failure message="x"/></testcase>'
        '<testcase file="tests/test_x.py" name="test_a" time="0.25"/>'
        '<testcase file="tests/test_x.py" name="test_b" time="0"><skipped message="needs CUDA"/></testcase>'
        "</testsuite></testsuites>"
    )
    times = file_times(str(report))
    assert times["build/nb/00_a.ipynb"] == {"seconds": 3.5, "passed": 1, "failed": 1, "skipped": 0}
    assert times["tests/test_x.py"] == {"seconds": 0.25, "passed": 1, "failed": 0, "skipped": 1}


@pytest.mark.parametrize("gpu", [False, True])
def test_auto_picks_cuda_only_where_nvidia_smi_sees_a_gpu(tmp_path, monkeypatch, gpu):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200'\n" if gpu else "#!/bin/sh\nexit 9\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SETUP_PLAN", "1")
    out = _setup(sys.executable, tmp_path / "venv", "auto", "default")
    assert out.returncode == 0, out.stderr
    build = "cuda" if gpu else "cpu"
    expected = "macos" if platform.system() == "Darwin" else build
    assert f"PyTorch 2.13.0 {expected} build" in out.stdout
    assert not (tmp_path / "venv").exists()
