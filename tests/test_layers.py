"""The layers of course_lib: every import inside the library runs down the layers, never up.

outputs, losses, _moved (and the package's own __init__) < data < models < training < evaluation
< capstone, production. plotting, exercises and testing sit with the models (they may import models,
data and outputs). The test parses every module's imports (late imports inside functions included),
so it needs no import of the library and works while modules move: each module prefix below names a
layer, a top-level module that a worker is still moving into its package is mapped to the layer it is
moving to, and an old path kept by ``course_lib._moved.alias`` imports nothing but ``_moved``.
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
    "course_lib.evaluation": "evaluation",  # a single module evaluation.py until it becomes evaluation/
    "course_lib.walkforward": "evaluation",  # top-level modules still moving into evaluation/
    "course_lib.conformal": "evaluation",
    "course_lib.causal": "evaluation",  # its models move to models/causal.py, its analysis to evaluation/
    "course_lib.capstone": "application",  # capstone.py until it becomes capstone/
    "course_lib.production": "application",
}
# Upward imports that a worker of the v3 redesign is removing: (importer, imported) -> why it is still here.
PENDING: dict[tuple[str, str], str] = {}  # (module, imported) -> why it is tolerated for now


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
    upward, seen_pending = [], set()
    for module, path in MODULES.items():
        if _is_alias(ast.parse(path.read_text())) or _layer(module) is None:
            continue
        rank = ORDER.index(_layer(module))
        for imported in sorted(_imports(module, path)):
            layer = _layer(imported)
            assert layer is not None, f"{module} imports {imported}, which has no layer: add it to LAYERS"
            if ORDER.index(layer) > rank:
                if (module, imported) in PENDING:
                    seen_pending.add((module, imported))
                else:
                    upward.append(f"{module} ({_layer(module)}) imports {imported} ({layer})")
    assert not upward, "imports up the layers (" + " < ".join(ORDER) + "):\n" + "\n".join(upward)
    stale = set(PENDING) - seen_pending
    assert not stale, (
        f"these upward imports are gone: delete them from PENDING in {__file__}: {sorted(stale)}"
    )


def test_the_import_parser_resolves_relative_and_submodule_imports():
    trainer = _imports("course_lib.training.trainer", MODULES["course_lib.training.trainer"])
    assert {"course_lib", "course_lib.losses", "course_lib.outputs"} <= trainer
    assert "course_lib.models.transfer" in trainer
