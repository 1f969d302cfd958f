"""Every old module path of course_lib (before v3) still imports, for one release, and says where it went.

The old paths are found, not listed: every module that calls ``course_lib._moved.alias`` or
``course_lib._moved.moved_names``. Each import runs in a fresh interpreter, so that the warning is the
first one of its process.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _calls(path: Path, function: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == function
    ]


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


ALIASES = {
    _module(path): call.args[1].value
    for path in sorted((ROOT / "course_lib").rglob("*.py"))
    for call in _calls(path, "alias")
    if path.name != "_moved.py"
}
MOVED_NAMES = {
    (_module(path), name): new.value
    for path in sorted((ROOT / "course_lib").rglob("*.py"))
    for call in _calls(path, "moved_names")
    if path.name != "_moved.py"
    for name, new in zip(call.args[1].keys, call.args[1].values, strict=True)
    for name in [name.value]
}


SPLITS = {
    _module(path): [arg.value for arg in call.args[1:]]
    for path in sorted((ROOT / "course_lib").rglob("*.py"))
    for call in _calls(path, "split")
    if path.name != "_moved.py"
}


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-W", "always::FutureWarning", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_old_paths_are_found():
    assert "course_lib.features" in ALIASES and "course_lib.deployment" in ALIASES
    assert "course_lib.models.ssm" in SPLITS


@pytest.mark.parametrize("old", sorted(SPLITS))
def test_a_split_module_re_exports_every_name_of_its_parts_and_warns_once(old):
    code = f"""
import importlib, json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    old = importlib.import_module({old!r})
    importlib.import_module({old!r})
missing = [(new, name) for new in {SPLITS[old]!r} for name in importlib.import_module(new).__all__
           if getattr(old, name, None) is not getattr(importlib.import_module(new), name)]
print(json.dumps({{"missing": missing,
                  "warnings": [str(w.message) for w in caught if w.category is FutureWarning]}}))
"""
    result = _run(code)
    assert result["missing"] == []
    assert len(result["warnings"]) == 1 and all(new in result["warnings"][0] for new in SPLITS[old])


@pytest.fixture(scope="module")
def imported() -> dict:
    """Each old path imported twice in one fresh interpreter: whether it is the new module, and the
    FutureWarnings each import raised."""
    code = f"""
import importlib, json, warnings
result = {{}}
for old, new in {ALIASES!r}.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = importlib.import_module(old)
        again = importlib.import_module(old)
    result[old] = {{"same": first is again is importlib.import_module(new),
                   "warnings": [str(w.message) for w in caught if w.category is FutureWarning]}}
print(json.dumps(result))
"""
    return _run(code)


@pytest.mark.parametrize("old", sorted(ALIASES))
def test_an_old_module_path_is_the_new_module_and_warns_once(old, imported):
    new = ALIASES[old]
    assert imported[old]["same"], f"{old} is not the module {new}"
    warned = imported[old]["warnings"]
    assert len(warned) == 1 and new in warned[0], warned


@pytest.mark.parametrize(("old", "name"), sorted(MOVED_NAMES))
def test_a_name_that_left_a_module_still_imports_from_it_and_warns(old, name):
    new = MOVED_NAMES[old, name]
    code = f"""
import importlib, json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = getattr(importlib.import_module({old!r}), {name!r})
print(json.dumps({{"same": value is getattr(importlib.import_module({new!r}), {name!r}),
                  "warnings": [str(w.message) for w in caught if w.category is FutureWarning]}}))
"""
    result = _run(code)
    assert result["same"]
    assert any(new in w for w in result["warnings"]), result["warnings"]


def test_the_library_itself_imports_no_old_path():
    """In-repo code uses the new paths: importing every module of course_lib raises no FutureWarning."""
    modules = [
        _module(p)
        for p in sorted((ROOT / "course_lib").rglob("*.py"))
        if _module(p) not in ALIASES and _module(p) not in SPLITS and p.name != "__main__.py"
    ]
    code = f"""
import importlib, json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in {modules!r}:
        importlib.import_module(name)
print(json.dumps([str(w.message) for w in caught if w.category is FutureWarning]))
"""
    assert _run(code) == []
