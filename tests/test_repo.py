"""Repository rules that keep the course usable: pins agree, notebooks are clean and complete."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))


def _pins() -> list[str]:
    """Every pinned requirement of pyproject.toml: the core and each extra but ``all``, without repeats."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [d for name, group in project["optional-dependencies"].items() if name != "all" for d in group]
    return sorted(set(project["dependencies"] + extras))


def test_environment_yml_matches_pyproject():
    deps = _pins()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == deps
    assert "torch==2.13.0" in deps, (
        "torch must stay pinned: an open range downloads a CUDA build of several GB"
    )
    assert all("==" in d for d in deps), "every dependency is pinned"
    assert "python=3.11" in env["dependencies"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme


def _tracked(pattern):
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=False)
    return [ROOT / p for p in out.stdout.split()]


def test_no_notebook_is_committed_with_outputs():
    for path in _tracked("*.ipynb"):
        assert '"output_type"' not in path.read_text(), f"{path} is committed with outputs"


def test_every_data_file_has_provenance():
    readme = (ROOT / "data" / "README.md").read_text()
    for path in (ROOT / "data").iterdir():
        if path.name != "README.md":
            assert path.name in readme, f"{path.name} has no provenance line in data/README.md"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_every_part_of_a_chapter(path):
    text = path.read_text()
    assert text.startswith("# %% [markdown]"), "a py:percent notebook starting with its title cell"
    lowered = text.lower()
    for part in ("learning objectives", "## summary", "> **pitfall", "# solution", "# self-check"):
        assert part in lowered, f"{path.name} lacks '{part}'"
    exercises = re.findall(r"^# ### Exercise \d+ \((\d+) points?\)", text, flags=re.M)
    assert len(exercises) >= 3, f"{path.name} has {len(exercises)} exercises with points, at least 3 needed"
    assert lowered.count("# self-check") >= len(exercises), "every exercise has a self-check"
    assert "spot the bug" in lowered, f"{path.name} has no 'spot the bug' exercise"
    assert "# parameters" in lowered.split("# %%", 4)[-1] or "# parameters" in lowered[:3000], (
        "a parameters cell at the top"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_writes_nothing_and_has_no_ci_branches(path):
    code = path.read_text()
    assert not re.search(r"^\s*(el)?if\b.*\bCI\b", code, flags=re.M), (
        "no `if CI:` branches: size the defaults for the CPU budget"
    )
    assert 'environ.get("CI"' not in code and "environ['CI'" not in code, "no CI-dependent code"
    for forbidden in ("savefig(", ".to_csv(", "torch.save("):
        assert forbidden not in code, f"{path.name} writes into the working directory ({forbidden})"


def test_import_course_lib_needs_only_the_core_dependencies():
    """``pip install course-lib`` (no extra) must be enough for ``import course_lib``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split("==")[0] for d in project["dependencies"]}
    assert core == {"torch", "numpy"}
    extras = {d.split("==")[0].replace("-", "_") for d in _pins()} - core
    extras |= {"sklearn", "yaml", "otter"}  # import names that differ from the distribution's

    def loaded_by(statement: str) -> set[str]:
        code = f"import sys; {statement}; print(' '.join({{m.split('.')[0] for m in sys.modules}}))"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        return set(out.stdout.split()) & extras

    # torch itself imports some optional packages when they are installed (tqdm): those do not count
    loaded = loaded_by("import course_lib") - loaded_by("import torch, numpy")
    assert not loaded, f"import course_lib loads {sorted(loaded)}: import them where they are used"


def test_make_setup_installs_every_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # `browser` (Playwright) serves `make book-check` alone, which installs it: everything else is in `all`
    groups = set(project["optional-dependencies"]) - {"all", "browser"}
    (everything,) = project["optional-dependencies"]["all"]
    assert set(everything.removeprefix("course-lib[").removesuffix("]").split(",")) == groups
    assert '-e ".[all]"' in (ROOT / "scripts" / "setup_env.sh").read_text()


def test_the_package_version_is_the_one_pyproject_installs():
    import course_lib

    assert (
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == course_lib.__version__
    )
