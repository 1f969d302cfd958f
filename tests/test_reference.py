"""Full-budget reference results: the loader, the budget comparison, the script, and its recipes
against the notebooks (course_lib.evaluation.reference, scripts/reference_runs.py)."""

import ast
import contextlib
import inspect
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_lib.evaluation import model_confidence_set
from course_lib.evaluation.reference import (
    CHAPTERS,
    RECORD,
    REFERENCE_DIR,
    budget_comparison,
    budget_verdicts,
    load_reference,
    provenance,
    table_records,
    verdict_word,
)
from scripts import reference_runs

ROOT = Path(__file__).resolve().parent.parent


def summary(rows: dict, benchmark: str = "har") -> pd.DataFrame:
    """A stand-in for a seed_summary table: model -> (QLIKE_lc, ens DM_QLIKE, ens p_QLIKE, in_MCS)."""
    table = pd.DataFrame(
        {
            name: {
                "QLIKE": q + 0.05,
                "QLIKE_lc": q,
                "MSE": q / 2,
                "ens DM_QLIKE": dm,
                "ens p_QLIKE": p,
                "in_MCS": m,
            }
            for name, (q, dm, p, m) in rows.items()
        }
    ).T.rename_axis("model")
    table = table.astype({c: float for c in RECORD if c != "in_MCS"} | {"in_MCS": bool})
    table.attrs["benchmark"] = benchmark
    return table


def write_reference(directory: Path, table: pd.DataFrame, models: list[str], chapter: str = "06a") -> None:
    record = {
        "chapter": chapter,
        "models": models,
        "settings": {"budget": {"epochs": [7, 12], "seeds": [0, 1, 2, 3, 4]}},
        "tables": {"main": {"benchmark": table.attrs["benchmark"], "rows": table_records(table)}},
    }
    (directory / f"{chapter}.json").write_text(json.dumps(record))


NOTEBOOK = {
    "S4D": (0.60, 4.0, 0.001, False),
    "Mamba": (0.45, 1.0, 0.30, True),
    "har": (0.43, np.nan, np.nan, True),
}


def test_verdict_word():
    assert verdict_word(-2.5, 0.01) == "better"
    assert verdict_word(2.5, 0.01) == "worse"
    assert verdict_word(-2.5, 0.2) == "no significant difference"
    assert verdict_word(np.nan, np.nan) == "benchmark"
    # Clark-West is one-sided: a positive statistic beats the nested forecast, and it cannot say "worse"
    assert verdict_word(2.5, 0.01, one_sided=True) == "better"
    assert verdict_word(-2.5, 0.01, one_sided=True) == "no significant difference"
    assert verdict_word(-2.5, 0.04, alpha=0.01) == "no significant difference"


def test_loader_round_trip(tmp_path):
    table = summary(NOTEBOOK)
    write_reference(tmp_path, table, ["S4D", "Mamba"])
    reference = load_reference("06a", tmp_path)
    rows = reference["tables"]["main"]["rows"]
    assert list(rows.index) == list(table.index)
    assert np.allclose(rows["QLIKE_lc"], table["QLIKE_lc"])
    assert rows.loc["S4D", "verdict"] == "worse" and rows.loc["har", "verdict"] == "benchmark"
    with pytest.raises(FileNotFoundError, match="make reference CHAPTER=06c"):
        load_reference("06c", tmp_path)
    with pytest.raises(ValueError, match="chapter must be one of"):
        load_reference("07", tmp_path)


def test_budget_comparison_reports_a_flip_and_only_a_flip(tmp_path):
    full = summary(NOTEBOOK | {"S4D": (0.44, -0.5, 0.60, True)})  # S4D: worse -> no difference, in the MCS
    write_reference(tmp_path, full, ["S4D", "Mamba"])
    comparison = budget_comparison(
        summary(NOTEBOOK), load_reference("06a", tmp_path), notebook_budget={"epochs": 3, "seeds": (0, 1, 2)}
    )
    assert list(comparison.index) == [
        ("S4D", "notebook"),
        ("S4D", "full"),
        ("Mamba", "notebook"),
        ("Mamba", "full"),
    ]
    assert comparison.loc[("S4D", "notebook"), "verdict"] == "worse"
    assert comparison.loc[("S4D", "full"), "verdict"] == "no significant difference"
    text = budget_verdicts(comparison).splitlines()
    s4d, mamba = (next(line for line in text if line.startswith(m)) for m in ("S4D", "Mamba"))
    assert (
        "CHANGES (the test and the MCS)" in s4d
        and "3 epochs, 3 seeds" in s4d
        and "best epochs 7-12, 5 seeds" in s4d
    )
    assert "does not change" in mamba and "CHANGES" not in mamba
    assert text[-1].startswith("1 of 2 verdicts change")
    # a table with no flip reports none
    same = budget_verdicts(
        budget_comparison(summary(NOTEBOOK), load_reference("06a", tmp_path), models=["Mamba"])
    )
    assert "CHANGES" not in same and same.splitlines()[-1].startswith("0 of 1")


def test_budget_comparison_refuses_bad_input(tmp_path):
    write_reference(tmp_path, summary(NOTEBOOK), ["S4D", "Mamba"])
    reference = load_reference("06a", tmp_path)
    with pytest.raises(KeyError, match="LSTM"):
        budget_comparison(summary(NOTEBOOK), reference, models=["LSTM"])
    bare = summary(NOTEBOOK)
    bare.attrs.clear()
    with pytest.raises(ValueError, match="seed_summary"):
        budget_comparison(bare, reference)
    with pytest.raises(KeyError, match="no table"):
        budget_comparison(summary(NOTEBOOK), reference, table="60% removed")


def test_benchmark_mismatch_is_said(tmp_path):
    write_reference(tmp_path, summary(NOTEBOOK), ["S4D"])
    notebook = summary(NOTEBOOK)
    notebook.attrs["benchmark"] = "log_har"
    assert "benchmarks differ" in budget_verdicts(
        budget_comparison(notebook, load_reference("06a", tmp_path))
    )


def test_model_confidence_set_with_identical_models():
    rng = np.random.default_rng(0)
    losses = pd.DataFrame({"a": rng.gamma(2.0, size=500), "b": rng.gamma(2.0, size=500) + 0.5})
    losses["a copy"] = losses["a"]  # e.g. a baseline on data with nothing removed, beside the full-data one
    out = model_confidence_set(losses, reps=200)
    assert out.loc["a", "MCS_p"] == out.loc["a copy", "MCS_p"]
    assert out.loc["a", "in_MCS"] and not out.loc["b", "in_MCS"]


# ---- the recipes against the notebooks ---------------------------------------------------------


def notebook_tree(chapter: str) -> ast.Module:
    return ast.parse((ROOT / reference_runs.NOTEBOOKS[chapter]).read_text())


def constants(tree: ast.Module) -> dict:
    """The first value of every upper-case name assigned a literal at the top level (parameters cell)."""
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs = zip(target.elts, node.value.elts, strict=True)
            else:
                pairs = [(target, node.value)]
            for name, value in pairs:
                if isinstance(name, ast.Name) and name.id.isupper() and name.id not in found:
                    with contextlib.suppress(ValueError):
                        found[name.id] = ast.literal_eval(value)
    return found


def dict_assigned(tree: ast.Module, name: str) -> ast.Dict:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and isinstance(
            node.value, ast.Dict
        ):
            return node.value
    raise AssertionError(f"no top-level `{name} = {{...}}` in the notebook")


def called(node: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_recipe_equals_the_notebook(chapter):
    tree = notebook_tree(chapter)
    values = constants(tree)
    for key, value in reference_runs.RECIPES[chapter].items():
        assert key in values, f"{key} is not a constant of the {chapter} notebook's parameters cell"
        assert values[key] == value, (
            f"{chapter}: {key} = {values[key]!r} in the notebook, {value!r} in the script"
        )


def function_defined(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"no top-level `def {name}` in the notebook")


@pytest.mark.parametrize(
    ("chapter", "name"), [("01", "MODELS"), ("02", None), ("03", "factories"), ("04", "factories")]
)
def test_foundation_model_lists_equal_the_notebooks(chapter, name):
    """Chapters 01-04: the names and classes of the notebook's networks, and its linear window (chapter
    02 builds its transformer in ``make_transformer``)."""
    tree = notebook_tree(chapter)
    script = reference_runs.foundation_models(chapter, 4)
    linear = reference_runs.LINEAR[chapter]
    if name is None:
        nets = function_defined(tree, "make_transformer")
        assert list(script) == ["Transformer", linear]
    else:
        nets = dict_assigned(tree, name)
        assert [k.value for k in nets.keys] + [linear] == list(script)
    source = ast.parse(inspect.getsource(reference_runs.foundation_models))
    by_chapter = next(  # the script's {chapter: {name: factory}}
        d
        for d in ast.walk(source)
        if isinstance(d, ast.Dict) and any(getattr(k, "value", None) == "01" for k in d.keys)
    )
    chapter_dict = by_chapter.values[[k.value for k in by_chapter.keys].index(chapter)]
    classes = {name for name in called(nets) if name[0].isupper()}
    assert classes == {name for name in called(chapter_dict) if name[0].isupper()}
    assert linear in {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}, (
        f"the {chapter} notebook names its linear window otherwise"
    )
    import torch

    model = script[linear]()
    assert [p.shape for p in model.parameters()] == [torch.Size([1, 20 * 4]), torch.Size([1])]


def test_model_lists_equal_the_notebooks():
    # 06a: the names and classes of `factories`
    factories = dict_assigned(notebook_tree("06a"), "factories")
    scope = constants(notebook_tree("06a"))
    names = [eval(compile(ast.Expression(k), "<key>", "eval"), {}, scope) for k in factories.keys]
    script = ast.parse(inspect.getsource(reference_runs.ssm_models))
    assert names == [
        eval(compile(ast.Expression(k), "<key>", "eval"), {}, {"c": reference_runs.SSM})
        for k in next(n for n in ast.walk(script) if isinstance(n, ast.Dict)).keys
    ]
    assert called(factories) == called(script)
    # 06c: the names and classes of `MODELS`
    models = dict_assigned(notebook_tree("06c"), "MODELS")
    assert [k.value for k in models.keys] == list(reference_runs.ode_models(3))
    classes = {"FinancialGRU", "NeuralODE", "NeuralCDEFinance"}
    assert classes <= called(models)
    assert classes <= called(ast.parse(inspect.getsource(reference_runs.ode_models)))
    # 06e: the models that enter the notebook's table
    tree = notebook_tree("06e")
    keys = {
        n.slice.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == "predictions"
        and isinstance(n.slice, ast.Constant)
    }  # fmt: skip
    assert keys == set(reference_runs.KOOPMAN_MODELS)


# ---- the script, on a tiny budget ------------------------------------------------------------------


def test_script_on_a_tiny_budget(tmp_path):
    start = time.perf_counter()
    reference_runs.main(
        ["--chapter", "06e", "--seeds", "0", "1", "--max-epochs", "2", "--out", str(tmp_path)]
    )
    reference = load_reference("06e", tmp_path)
    settings = reference["settings"]
    assert settings["seeds"] == [0, 1] and settings["max_epochs"] == 2 and settings["correction"] == "causal"
    assert all(1 <= b <= 2 for b in settings["best_epoch"]["DeepKoopman"])
    assert reference["command"].endswith(f"--out {tmp_path}") and reference["wall_seconds"] > 0
    rows = reference["tables"]["main"]["rows"]
    assert set(rows.index.get_level_values("horizon")) == {1, 5, 22}
    assert set(reference_runs.KOOPMAN_MODELS) <= set(rows.index.get_level_values("model"))
    arrays = np.load(tmp_path / "06e.npz")
    assert arrays["DeepKoopman/seeds"].shape == (2, *arrays["y_test"].shape)
    assert arrays["DeepKoopman/ensemble"].dtype == np.float32
    assert np.allclose(arrays["DeepKoopman/seeds"].mean(axis=0), arrays["DeepKoopman/ensemble"], atol=1e-6)
    text = (tmp_path / "06e.md").read_text()
    assert "Benchmark: **" in text and "ranking uses: causal" in text
    # the table compares with itself without a change
    assert budget_verdicts(budget_comparison_of(reference)).splitlines()[-1].startswith("0 of")
    assert time.perf_counter() - start < 120


def test_provenance_names_the_budget_and_the_run():
    reference = load_reference("06e")
    line = provenance(reference)
    assert line.startswith(
        f"full budget: seeds {reference['settings']['seeds']}, up to 300 epochs with patience 20"
    )
    assert reference["command"] in line and reference["date"] in line and reference["torch"] in line


def budget_comparison_of(reference: dict) -> pd.DataFrame:
    """The reference's own table as if a notebook had printed it."""
    table = reference["tables"]["main"]["rows"].drop(columns="verdict")
    table.attrs["benchmark"] = reference["tables"]["main"]["benchmark"]
    return budget_comparison(table, reference)


# ---- the committed results --------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_committed_reference_matches_the_recipe(chapter):
    """The committed results were made with the current recipe, at a full budget, with the rule's benchmark."""
    from course_lib.data.windows import make_task
    from course_lib.evaluation import benchmark_rule

    reference = load_reference(chapter)
    settings = reference["settings"]
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in reference_runs.RECIPES[chapter].items()}
    assert settings["recipe"] == recipe, (
        f"docs/reference/{chapter}.json is stale: run make reference CHAPTER={chapter}"
    )
    assert len(settings["seeds"]) >= 5 and settings["correction"] == "causal"
    assert (REFERENCE_DIR / f"{chapter}.npz").stat().st_size < 2e6
    kwargs = {"06e": {"features": ["log_vol_parkinson"]}, "02": {"features": recipe.get("FEATURES")}}.get(
        chapter, {}
    )
    task = make_task(
        "volatility",
        ticker="^GSPC",
        lookback=settings["window"],
        horizons=tuple(settings["horizons"]),
        **kwargs,
    )
    for label, table in reference["tables"].items():
        assert table["benchmark"] == benchmark_rule(task), label
        assert set(reference["models"]) <= set(table["rows"].index.get_level_values("model")), label
