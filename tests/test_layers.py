"""The layers of course_lib: every import inside the library runs down the layers, never up.

outputs, losses, _moved (and the package's own __init__) < data < models < training < evaluation
< capstone, production (docs/architecture.md). plotting, exercises and testing sit with the models
(they may import models, data and outputs). The test parses every module's imports (late imports
inside functions included), so it needs no import of the library; an old path kept for one release by
``course_lib._moved.alias`` imports nothing but ``_moved`` and is left out.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "course_lib"

ORDER = ["bottom", "data", "models", "training", "evaluation", "application"]
LAYERS = {  # module prefix -> layer; the longest prefix wins
    "course_lib._moved": "bottom",
    "course_lib.outputs": "bottom",
    "course_lib.losses": "bottom",
    "course_lib.data": "data",
    "course_lib.models": "models",
    "course_lib.plotting": "models",
    "course_lib.exercises": "models",
    "course_lib.testing": "models",
    "course_lib.training": "training",
    "course_lib.evaluation": "evaluation",
    "course_lib.causal": "evaluation",  # causal inference (06f): simulators, estimators, Granger tests
    "course_lib.capstone": "application",
    "course_lib.production": "application",
}


def _module_name(path: Path) -> str:
    parts = ("course_lib", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _layer(module: str) -> str | None:
    if module == "course_lib":  # the package's __init__ (get_device, set_seed), not a prefix of every module
        return "bottom"
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    return None


def _is_alias(tree: ast.Module) -> bool:
    """An old path kept for one release: a module-level ``alias(__name__, "new.path")``."""
    return any(
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "alias"
        for node in tree.body
    )


def _imports(module: str, path: Path) -> set[str]:
    """The course_lib modules that ``module`` imports (``from pkg import sub`` counts as pkg.sub)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m == "course_lib" or m.startswith("course_lib.")}


def test_every_module_of_the_library_has_a_layer():
    unknown = [m for m, p in MODULES.items() if _layer(m) is None and not _is_alias(ast.parse(p.read_text()))]
    assert not unknown, f"modules without a layer: {unknown}; add their prefix to LAYERS in {__file__}"


def test_imports_run_down_the_layers_only():
    upward = []
    for module, path in MODULES.items():
        if _is_alias(ast.parse(path.read_text())) or _layer(module) is None:
            continue
        rank = ORDER.index(_layer(module))
        for imported in sorted(_imports(module, path)):
            layer = _layer(imported)
            assert layer is not None, f"{module} imports {imported}, which has no layer: add it to LAYERS"
            if ORDER.index(layer) > rank:
                upward.append(f"{module} ({_layer(module)}) imports {imported} ({layer})")
    assert not upward, "imports up the layers (" + " < ".join(ORDER) + "):\n" + "\n".join(upward)


def test_the_import_parser_resolves_relative_and_submodule_imports():
    trainer = _imports("course_lib.training.trainer", MODULES["course_lib.training.trainer"])
    assert {"course_lib", "course_lib.losses", "course_lib.outputs"} <= trainer
    assert "course_lib.models.transfer" in trainer


def test_conformal_and_monitoring_depend_on_no_other_part_of_the_library():
    """Both are meant to be lifted out whole: a learner copies them next to any model."""
    for module in ("course_lib.evaluation.conformal", "course_lib.production.monitoring"):
        assert _imports(module, MODULES[module]) == set(), module
