"""The course's evaluation protocol: the benchmark rule, the causal level correction (no look-ahead,
shown with random probes), the three correction variants side by side, and the chapters that use them."""

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_lib.evaluation import (
    RANKING_VARIANT,
    VARIANTS,
    VOLATILITY_BASELINES,
    apply_correction,
    benchmark_rule,
    causal_level_shift,
    correction_reversals,
    correction_variants,
    level_shift,
    results_table,
    validation_scores,
    volatility_baselines,
)
from course_lib.evaluation.correction import MIN_KNOWN

ROOT = Path(__file__).resolve().parent.parent


def _errors(n=300, n_h=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, n_h))
    return y, y + rng.normal(0.3, 0.5, size=(n, n_h))


@pytest.mark.parametrize("method", ["variance", "lognormal"])
def test_causal_shift_is_the_validation_formula_on_the_errors_known_so_far(method):
    y, p = _errors()
    horizons = [1, 5]
    shift = causal_level_shift(y, p, horizons, method)
    assert shift.shape == y.shape
    for t in (MIN_KNOWN + 5, 120, 299):
        for j, h in enumerate(horizons):
            known = slice(0, t - h + 1)  # origins s <= t - h
            assert shift[t, j] == pytest.approx(level_shift(y[known, j], p[known, j], method)[0])
    assert (shift[:MIN_KNOWN, 0] == 0).all() and shift[MIN_KNOWN, 0] != 0  # raw until MIN_KNOWN errors
    assert (shift[: MIN_KNOWN + 4, 1] == 0).all() and shift[MIN_KNOWN + 4, 1] != 0


@pytest.mark.parametrize("seed", range(5))
def test_causal_shift_never_reads_a_target_that_is_not_known_yet(seed):
    """Random probes: change every target whose error is unknown at origin t; row t must not move.
    Change one that is known; row t must move (so the probe can fail)."""
    rng = np.random.default_rng(seed)
    y, p = _errors(seed=seed)
    horizons = [1, 5]
    base = causal_level_shift(y, p, horizons)
    for _ in range(5):
        t = int(rng.integers(MIN_KNOWN + 5, len(y)))
        for j, h in enumerate(horizons):
            future = y.copy()
            future[t - h + 1 :, j] += rng.normal(0, 3, size=len(y) - (t - h + 1))
            assert causal_level_shift(future, p, horizons)[t, j] == base[t, j]
            past = y.copy()
            past[int(rng.integers(0, t - h + 1)), j] += 1.0
            assert causal_level_shift(past, p, horizons)[t, j] != base[t, j]


def test_causal_shift_refuses_bad_arguments():
    y, p = _errors()
    with pytest.raises(ValueError, match="horizons"):
        causal_level_shift(y, p, [1])
    with pytest.raises(ValueError, match="min_known"):
        causal_level_shift(y, p, [1, 5], min_known=0)
    with pytest.raises(ValueError, match="method"):
        causal_level_shift(y, p, [1, 5], "median")
    with pytest.raises(ValueError, match="shape"):
        causal_level_shift(y[:, :1], p, [1])
    with pytest.raises(ValueError, match="correction must be one of"):
        apply_correction("test", {"m": p}, y=y, horizons=[1, 5])


def test_the_benchmark_rule_is_the_strongest_baseline_on_validation(vol_task, returns_task):
    scores = validation_scores(vol_task)
    assert set(scores) == set(VOLATILITY_BASELINES)
    assert benchmark_rule(vol_task) == min(VOLATILITY_BASELINES, key=lambda n: scores[n])
    assert benchmark_rule(returns_task) == "zero"
    # a candidate far better on validation wins the rule; the targets plus noise is one
    noise = np.random.default_rng(0).normal(0, 0.05, vol_task.val.y.shape)
    assert benchmark_rule(vol_task, candidates={"oracle": vol_task.val.y + noise}) == "oracle"
    assert benchmark_rule(vol_task) != "oracle"  # a candidate does not stick to the task's cache
    with pytest.raises(ValueError, match="shape"):
        validation_scores(vol_task, candidates={"short": vol_task.val.y[:10]})
    table = results_table(vol_task, volatility_baselines(vol_task), mcs_size=None)
    assert table.attrs["benchmark"] == benchmark_rule(vol_task)
    assert f"benchmark={benchmark_rule(vol_task)} (the rule)" in table.columns.name
    given = results_table(vol_task, volatility_baselines(vol_task), benchmark="ewma", mcs_size=None)
    assert "benchmark=ewma (given)" in given.columns.name


def test_correction_variants_side_by_side(vol_task):
    base = volatility_baselines(vol_task)
    val = volatility_baselines(vol_task, "val")
    rng = np.random.default_rng(1)
    model = [base["log_har"] - 0.2 + rng.normal(0, 0.05, base["log_har"].shape) for _ in range(2)]
    model_val = [val["log_har"] - 0.2 + rng.normal(0, 0.05, val["log_har"].shape) for _ in range(2)]
    table = correction_variants(vol_task, {"net": model}, {"net": model_val})
    bench = benchmark_rule(vol_task)
    assert table.attrs["benchmark"] == bench and table.attrs["ranking"] == RANKING_VARIANT
    assert set(table.index.get_level_values("model")) == {"net", *VOLATILITY_BASELINES}
    for v in VARIANTS:
        assert f"QLIKE {v}" in table.columns and f"vs {bench} {v}" in table.columns
    # each column is the corresponding results_table figure of the seed ensemble
    ens, ens_val = np.mean(model, 0), np.mean(model_val, 0)
    for v in ("none", "validation", "causal"):
        ref = results_table(
            vol_task, base | {"net": ens}, val_predictions={"net": ens_val}, correction=v, mcs_size=None
        )
        column = "QLIKE" if v == "none" else "QLIKE_lc"
        assert np.allclose(table[f"QLIKE {v}"], ref.loc[table.index, column])
    # the factors: learnt on validation is exp(2 shift); the oracle one minimises the split's QLIKE
    j = 0
    f_val = np.exp(2 * level_shift(vol_task.val.y[:, j], ens_val[:, j])[0])
    assert table.loc[(1, "net"), "factor val"] == pytest.approx(f_val)
    oracle = table.loc[(1, "net"), "factor oracle"]
    y, p = vol_task.test.y[:, j].astype(float), ens[:, j]
    from course_lib.evaluation import loss_series

    at = lambda c: loss_series(y, p + 0.5 * np.log(c), "qlike").mean()  # noqa: E731
    assert at(oracle) <= min(at(oracle * 1.05), at(oracle / 1.05))
    text = correction_reversals(table)
    assert text.startswith(f"The rankings use the {RANKING_VARIANT} correction")
    # every model whose outcome differs across variants is named, and no other
    cols = [f"vs {bench} {v}" for v in VARIANTS]
    for (h, name), row in table[cols].iterrows():
        flips = len({o for o in row if o != "no test"}) > 1 and name != bench
        assert (f"h = {h}: {name} against {bench} reverses" in text) == flips
    with pytest.raises(ValueError, match="correction_variants"):
        correction_reversals(pd.DataFrame({"a": [1]}))


CLASSICAL = {*VOLATILITY_BASELINES, "zero", "hist_mean", "ar1"}


def _hand_picked_benchmarks(path: Path) -> list[str]:
    """Calls that pass ``benchmark=`` a classical baseline (or an expression that could be one)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for k in node.keywords:
                if k.arg != "benchmark":
                    continue
                value = k.value.value if isinstance(k.value, ast.Constant) else None
                if value is None or value in CLASSICAL:
                    found.append(f"line {node.lineno}: benchmark={ast.unparse(k.value)}")
    return found


@pytest.mark.parametrize(
    "path",
    [
        *sorted((ROOT / "notebooks").glob("0[6-8]*.py")),
        ROOT / "scripts" / "leaderboard.py",
        ROOT / "scripts" / "holdout.py",
        ROOT / "scripts" / "reference_runs.py",
    ],
    ids=lambda p: p.name,
)
def test_chapters_06a_to_08_test_against_the_benchmark_the_rule_picks(path):
    """No table of chapters 06a-08 (or the scripts that write docs/) hand-picks a classical baseline as
    its benchmark: each takes the rule's. (A table of re-fitting policies may name one of its own rows.)"""
    found = _hand_picked_benchmarks(path)
    assert not found, f"{path.name} picks its benchmark by hand ({found}): let the benchmark rule pick it"


def test_correction_variants_do_not_test_a_copy_of_the_benchmark(vol_task):
    base = volatility_baselines(vol_task)
    bench = benchmark_rule(vol_task)
    table = correction_variants(vol_task, {"copy": base[bench]})
    assert (table.xs("copy", level="model")[[f"vs {bench} {v}" for v in VARIANTS]] == "no test").all().all()
