"""Results tables: one row per model, its losses, its tests against a benchmark, the MCS; verdicts.

:func:`results_table` (one set of forecasts per model) and :func:`seed_summary` (one per training
seed, tests of the seed ensemble, never an average of p-values) put every model beside the
baselines of :mod:`.baselines` under one protocol (:mod:`.protocol`: the benchmark rule, "frozen");
volatility tables report QLIKE raw and level-corrected (:mod:`.correction`), and Diebold-Mariano tests
on both squared error and QLIKE (:mod:`.comparison`). :func:`verdicts` reads a table back as sentences;
:func:`correction_variants` puts the three level corrections side by side, with each model's factor,
and :func:`correction_reversals` says where the choice changes a verdict.
"""

import numpy as np
import pandas as pd

from ..data.windows import Task
from .baselines import VOLATILITY_BASELINES, check_protocol, standard_baselines
from .comparison import VERDICTS, clark_west, diebold_mariano, model_confidence_set, verdict_word
from .correction import RANKING_VARIANT, VARIANTS, apply_correction, level_shift
from .metrics import directional_accuracy, loss_series, mae, mse, r2_oos, up_rate
from .protocol import benchmark_rule


def _check_predictions(task: Task, predictions: dict, split: str) -> dict[str, np.ndarray]:
    shape = task.split(split).y.shape
    out = {}
    for name, p in predictions.items():
        p = np.asarray(p, dtype=np.float64)
        if p.shape != shape:
            raise ValueError(f"{name}: prediction shape {p.shape} != {split} target shape {shape}")
        if not np.isfinite(p).all():
            raise ValueError(f"{name}: {split} predictions contain NaN or inf")
        out[name] = p
    return out


def _standard_val_forecasts(
    task: Task, preds: dict[str, np.ndarray], split: str, protocol: str
) -> dict[str, np.ndarray]:
    """Validation forecasts of the standard baselines found in ``preds``, checked against ``protocol``.

    A prediction named like a baseline must *be* that baseline under the table's protocol; a table
    that mixes a walk-forward HAR with frozen networks is refused.
    """
    names = [n for n in preds if n in VOLATILITY_BASELINES]
    if not names:
        return {}
    ours = standard_baselines(task, split, protocol)
    for n in names:
        if not np.allclose(preds[n], ours[n], rtol=1e-5, atol=1e-6):
            raise ValueError(
                f"{n!r} is not the {protocol} baseline of this task: pass protocol= the protocol its "
                f"forecasts were made with (one protocol per table), or rename it"
            )
    val = standard_baselines(task, "val", protocol)
    return {n: val[n] for n in names}


def _caption(protocol: str, benchmark: str, ruled: bool, qlike_dm: str | None) -> str:
    text = f"protocol={protocol}; benchmark={benchmark} ({'the rule' if ruled else 'given'})"
    if qlike_dm is not None:
        text += f"; QLIKE tests: {qlike_dm}"
    return text


def results_table(
    task: Task,
    predictions: dict[str, np.ndarray],
    benchmark: str | None = None,
    split: str = "test",
    *,
    val_predictions: dict[str, np.ndarray] | None = None,
    protocol: str = "frozen",
    correction: str = RANKING_VARIANT,
    correction_method: str = "variance",
    mcs_size: float | None = 0.1,
    mcs_reps: int = 1000,
) -> pd.DataFrame:
    """One row per model (and horizon): losses, DM tests against the benchmark, and the MCS.

    Returns: MSE, MAE, R2_oos (against the expanding historical mean, Campbell & Thompson),
    directional accuracy (DA) beside the up-day rate, and a Clark-West test against the benchmark
    (``CW``, ``CW_p``, one-sided: the model beats the forecast it nests). Volatility: MSE and MAE of
    the log volatility; QLIKE of the variance, raw and level-corrected (``QLIKE_lc``) with the
    ``correction`` variant of :mod:`.correction` (default: the causal one, learnt from past errors of
    this split only; ``"validation"``: the shift learnt on validation, NaN for a model without
    ``val_predictions``, the standard baselines get theirs automatically; ``"none"``: raw).
    ``DM``/``DM_p``: Diebold-Mariano on squared error (Newey-West lag); ``DM_QLIKE``/``p_QLIKE``: on
    QLIKE, of the level-corrected forecasts when every model has one. A negative DM with a small p
    means the model beats the benchmark (default: :func:`~course_lib.evaluation.protocol.benchmark_rule`,
    zero for returns, the strongest classical baseline on validation for volatility); the benchmark's
    row shows NaN.
    ``in_MCS``/``MCS_p``: membership of the ``1 - mcs_size`` model confidence set on QLIKE (the
    corrected one when available) for volatility, MSE for returns: the models that cannot be told
    apart from the best, with the search over models accounted for (``mcs_size=None`` skips it).

    ``protocol`` names how every forecast in the table was made (``"frozen"`` or ``"walk_forward"``);
    baselines passed under their standard names are checked against it. The table's column header
    (``table.columns.name``) and ``table.attrs`` say which protocol and which QLIKE the DM uses.
    """
    check_protocol(protocol)
    s = task.split(split)
    ruled = benchmark_rule(task, protocol)
    benchmark = benchmark or ruled
    if benchmark not in predictions:
        raise KeyError(f"benchmark {benchmark!r} is not among the predictions {list(predictions)}")
    preds = _check_predictions(task, predictions, split)
    corrected, qlike_dm = {}, None
    if task.kind == "returns":
        ret = task.frame["ret"].to_numpy()
        # R2_oos's benchmark (Campbell & Thompson): the expanding mean of r[0..t]
        expanding = (np.cumsum(ret) / np.arange(1, len(ret) + 1))[s.rows]
        hist = expanding[:, None] * np.array(task.horizons)[None, :]
        for n in [n for n in ("hist_mean", "ar1") if n in preds]:
            if not np.allclose(preds[n], standard_baselines(task, split, protocol)[n], rtol=1e-5, atol=1e-6):
                raise ValueError(
                    f"{n!r} is not the {protocol} baseline of this task: pass protocol= the protocol its "
                    "forecasts were made with (one protocol per table), or rename it"
                )
    else:
        val = _check_predictions(task, val_predictions or {}, "val")
        unknown = set(val) - set(preds)
        if unknown:
            raise KeyError(f"val_predictions for models not in predictions: {sorted(unknown)}")
        val = _standard_val_forecasts(task, preds, split, protocol) | val
        corrected = apply_correction(
            correction,
            preds,
            y=s.y,
            horizons=task.horizons,
            val_predictions=val,
            y_val=task.val.y,
            method=correction_method,
        )
        all_corrected = set(corrected) == set(preds) and correction != "none"
        qlike_dm = f"corrected ({correction})" if all_corrected else "raw"
    rows = []
    for j, h in enumerate(task.horizons):
        y = s.y[:, j].astype(np.float64)
        bench = preds[benchmark][:, j]
        for name, p in preds.items():
            row = {"horizon": h, "model": name, "MSE": mse(y, p[:, j]), "MAE": mae(y, p[:, j])}
            if task.kind == "returns":
                row["R2_oos"] = r2_oos(y, p[:, j], hist[:, j])
                # a forecast that is always zero has no direction: its DA is undefined, not 0
                row["DA"] = directional_accuracy(y, p[:, j]) if np.any(p[:, j] != 0) else np.nan
                row["up_rate"] = up_rate(y)
            else:
                row["QLIKE"] = float(loss_series(y, p[:, j], "qlike").mean())
                row["QLIKE_lc"] = (
                    float(loss_series(y, corrected[name][:, j], "qlike").mean())
                    if name in corrected
                    else np.nan
                )
            same = name == benchmark or np.array_equal(p[:, j], bench)
            row["DM"], row["DM_p"] = (np.nan, np.nan) if same else _dm(y, p[:, j], bench, h, "se")
            if task.kind == "returns":
                row["CW"], row["CW_p"] = (np.nan, np.nan) if same else _cw(y, p[:, j], bench, h)
            else:
                q = corrected if qlike_dm != "raw" else preds
                row["DM_QLIKE"], row["p_QLIKE"] = (
                    (np.nan, np.nan) if same else _dm(y, q[name][:, j], q[benchmark][:, j], h, "qlike")
                )
            rows.append(row)
    table = pd.DataFrame(rows)
    mcs_loss, mcs_preds = (
        ("se", preds) if task.kind == "returns" else ("qlike", corrected if qlike_dm != "raw" else preds)
    )
    if mcs_size is not None:
        mcs = []
        for j, h in enumerate(task.horizons):
            y = s.y[:, j].astype(np.float64)
            losses = pd.DataFrame({n: loss_series(y, p[:, j], mcs_loss) for n, p in mcs_preds.items()})
            mcs.append(model_confidence_set(losses, size=mcs_size, reps=mcs_reps).assign(horizon=h))
        mcs = pd.concat(mcs).rename_axis("model").reset_index()
        table = table.merge(mcs, on=["horizon", "model"], how="left")
    table = (
        table.drop(columns="horizon").set_index("model")
        if len(task.horizons) == 1
        else table.set_index(["horizon", "model"])
    )
    table.columns.name = _caption(protocol, benchmark, benchmark == ruled, qlike_dm)
    table.attrs.update(
        protocol=protocol,
        benchmark=benchmark,
        benchmark_rule=ruled,
        correction=correction if task.kind == "volatility" else None,
        qlike_dm=qlike_dm,
        mcs_size=mcs_size,
    )
    return table


def _dm(y, p, bench, h, loss) -> tuple[float, float]:
    res = diebold_mariano(y, p, bench, h=h, loss=loss)
    return res.statistic, res.pvalue


def _cw(y, p, bench, h) -> tuple[float, float]:
    res = clark_west(y, p, bench, h=h)
    return res.statistic, res.pvalue


def seed_summary(
    task: Task,
    predictions: dict[str, list[np.ndarray]],
    baselines: dict[str, np.ndarray],
    benchmark: str | None = None,
    split: str = "test",
    *,
    val_predictions: dict[str, list[np.ndarray]] | None = None,
    protocol: str = "frozen",
    correction: str = RANKING_VARIANT,
    mcs_size: float = 0.1,
) -> pd.DataFrame:
    """Results over several training seeds, without ever averaging p-values.

    ``predictions`` maps a model name to one prediction array per seed (``val_predictions`` likewise,
    for the level correction of volatility forecasts). Columns: the mean of each loss across seeds
    and its spread (``MSE sd``, ``QLIKE sd``...); the test of the *seed ensemble* (the mean forecast
    over seeds) against the benchmark (``ens DM``, ``ens DM_p``; for volatility also ``ens DM_QLIKE``,
    ``ens p_QLIKE``); how many seeds were significantly better or worse than the benchmark (DM at
    5%: on squared error, and for volatility on QLIKE too); and ``in_MCS`` of the ensembles and the
    baselines. Deterministic baselines appear once, with a spread of 0.
    """
    n_seeds = {len(p) for p in predictions.values()}
    if len(n_seeds) != 1:
        raise ValueError(f"every model needs the same number of seeds, got {sorted(n_seeds)}")
    (n,) = n_seeds
    if n < 1:
        raise ValueError("seed_summary needs at least one seed per model")
    val_predictions = val_predictions or {}
    for name, v in val_predictions.items():
        if name not in predictions or len(v) != n:
            raise ValueError(
                f"val_predictions[{name!r}] must list one array per seed of a model in predictions"
            )
    kw = dict(benchmark=benchmark, split=split, protocol=protocol, correction=correction, mcs_size=mcs_size)
    per_seed = pd.concat(
        [
            results_table(
                task,
                {name: p[s] for name, p in predictions.items()} | baselines,
                val_predictions={name: v[s] for name, v in val_predictions.items()},
                **(kw | {"mcs_size": None}),
            ).assign(seed=s)
            for s in range(n)
        ]
    )
    ensemble = results_table(
        task,
        {name: np.mean(p, axis=0) for name, p in predictions.items()} | baselines,
        val_predictions={name: np.mean(v, axis=0) for name, v in val_predictions.items()},
        **kw,
    )
    levels = ["horizon", "model"] if len(task.horizons) > 1 else "model"
    grouped = per_seed.groupby(level=levels, sort=False)
    scores = ["MSE", "R2_oos"] if task.kind == "returns" else ["MSE", "QLIKE", "QLIKE_lc"]
    table = pd.DataFrame(index=ensemble.index)
    for col in scores:
        table[col] = grouped[col].mean()
        table[f"{col} sd"] = grouped[col].std(ddof=1) if n > 1 else 0.0
    table["ens DM"], table["ens DM_p"] = ensemble["DM"], ensemble["DM_p"]
    tests = (
        [("DM", "DM_p", "")]
        if task.kind == "returns"
        else [("DM", "DM_p", " MSE"), ("DM_QLIKE", "p_QLIKE", " QLIKE")]
    )
    if task.kind == "volatility":
        table["ens DM_QLIKE"], table["ens p_QLIKE"] = ensemble["DM_QLIKE"], ensemble["p_QLIKE"]
    for stat, p, label in tests:
        better = grouped.apply(lambda g, stat=stat, p=p: int(((g[stat] < 0) & (g[p] < 0.05)).sum()))
        worse = grouped.apply(lambda g, stat=stat, p=p: int(((g[stat] > 0) & (g[p] < 0.05)).sum()))
        table[f"better{label} (p<0.05)"] = [f"{b}/{n}" for b in better.reindex(table.index)]
        table[f"worse{label} (p<0.05)"] = [f"{w}/{n}" for w in worse.reindex(table.index)]
    table["in_MCS"] = ensemble["in_MCS"]
    table.columns.name = ensemble.columns.name + f"; {n} seeds, tests of the seed ensemble"
    table.attrs.update(ensemble.attrs, n_seeds=n)
    return table


def _outcome(stat: float, p: float, alpha: float) -> str:
    """A DM outcome in words with its p-value: ``better, p = 0.003``."""
    if not np.isfinite(p):
        return "no test"
    return f"{verdict_word(stat, p, alpha)}, p = {p:.3f}" if p < alpha else f"{VERDICTS[2]}, p = {p:.2f}"


def _by_horizon(table: pd.DataFrame):
    """(horizon, the rows of that horizon indexed by model) for each horizon of a table; (None, table)
    for a one-horizon table."""
    if table.index.nlevels == 1:
        yield None, table
        return
    for h, t in table.groupby(level="horizon", sort=False):
        yield h, t.droplevel("horizon")


def _rows(t: pd.DataFrame, models, bench: str) -> list:
    """The rows a sentence speaks of: ``models`` (default every row) but the benchmark, each checked."""
    names = [n for n in (models or t.index) if n != bench]
    unknown = [n for n in names if n not in t.index]
    if unknown:
        raise KeyError(f"models {unknown} are not rows of the table {list(t.index)}")
    return names


def verdicts(table: pd.DataFrame, models: list[str] | None = None, alpha: float = 0.05) -> str:
    """Plain sentences read off a :func:`results_table` or :func:`seed_summary` table.

    One line per model (default: every row but the benchmark) and horizon: its losses beside the
    benchmark's, the DM outcomes (on squared error, and on QLIKE for volatility; for a seed summary those
    of the seed ensemble, with the number of seeds that were significantly better / worse), whether it is
    in the model confidence set; then one line per horizon naming the best model under each loss. Print it
    beside a table so that the chapter's verdicts come from the numbers, never from hand-typed text. In a
    seed summary the losses are means over the seeds and the p-values those of the seed ensemble.
    """
    bench = table.attrs.get("benchmark")
    if bench is None:
        raise ValueError(
            "verdicts needs a table made by results_table or seed_summary (it reads table.attrs)"
        )
    seeds = table.attrs.get("n_seeds")
    prefix = "ens " if seeds else ""
    vol = "QLIKE" in table.columns
    lines = [f"Against {bench} ({table.columns.name}):"]
    for h, t in _by_horizon(table):
        at = f"h = {h}: " if h is not None else ""
        names = _rows(t, models, bench)
        b = t.loc[bench]
        for n in names:
            row = t.loc[n]
            mse_text = f"{'mean MSE over seeds' if seeds else 'MSE'} {row['MSE']:.4f} vs {b['MSE']:.4f}"
            text = f"  {at}{n}: {mse_text} ({_outcome(row[prefix + 'DM'], row[prefix + 'DM_p'], alpha)})"
            if vol:
                q = "QLIKE" if table.attrs.get("qlike_dm") == "raw" else "QLIKE_lc"  # the QLIKE the test used
                stat, p = row[prefix + "DM_QLIKE"], row[prefix + "p_QLIKE"]
                how = f"corrected ({table.attrs.get('correction')}) " if q == "QLIKE_lc" else ""
                name = f"{'mean ' if seeds else ''}{how}QLIKE"
                text += f"; {name} {row[q]:.4f} vs {b[q]:.4f} ({_outcome(stat, p, alpha)})"
            else:
                text += f"; R2_oos {100 * row['R2_oos']:.2f}%"
            if seeds:
                label = " MSE" if vol else ""
                text += f"; seeds better / worse on MSE: {row[f'better{label} (p<0.05)']} / {row[f'worse{label} (p<0.05)']}"
                if vol:
                    text += f", on QLIKE: {row['better QLIKE (p<0.05)']} / {row['worse QLIKE (p<0.05)']}"
            if "in_MCS" in t.columns:
                text += "; in the MCS" if row["in_MCS"] else "; outside the MCS"
            lines.append(text + ".")
        best = f"  {at}lowest MSE: {t['MSE'].idxmin()}"
        if vol:
            best += f"; lowest raw QLIKE: {t['QLIKE'].idxmin()}"
            if t["QLIKE_lc"].notna().any():
                best += f"; lowest corrected QLIKE: {t['QLIKE_lc'].idxmin()}"
        if "in_MCS" in t.columns:
            best += f"; model confidence set: {', '.join(t.index[t['in_MCS'].astype(bool)])}"
        lines.append(best + ".")
    return "\n".join(lines)


def _sorted_by_outcome(t: pd.DataFrame, names: list[str], stat: str, p: str, alpha: float) -> dict:
    """{"better": [...], "worse": [...], "no significant difference": [...]} of ``names`` by one test
    (:func:`~course_lib.evaluation.comparison.verdict_word`; Clark-West, ``stat == "CW"``, is one-sided)."""
    out = {word: [] for word in VERDICTS}
    for n in names:
        word = verdict_word(t.loc[n, stat], t.loc[n, p], alpha, one_sided=stat == "CW")
        if word != "benchmark":
            out[word].append(n)
    return out


def verdict_summary(table: pd.DataFrame, models: list[str] | None = None, alpha: float = 0.05) -> str:
    """The verdict of a :func:`results_table` or :func:`seed_summary` table in a few sentences, MCS first.

    Per horizon: which models the model confidence set keeps (and on which loss: the test of the
    whole table, with the search over models accounted for); then ``models`` (default: every row but
    the benchmark) grouped by their Diebold-Mariano outcome against the benchmark at ``alpha``, on
    squared error and, for volatility, on the QLIKE the table tests (corrected or raw); for returns
    also by Clark-West where the table has it (every return forecast nests the zero forecast).
    For a seed summary the tests are those of the seed ensemble.
    """
    bench = table.attrs.get("benchmark")
    if bench is None:
        raise ValueError(
            "verdict_summary needs a table made by results_table or seed_summary (it reads table.attrs)"
        )
    prefix = "ens " if table.attrs.get("n_seeds") else ""
    vol = "QLIKE" in table.columns
    mcs_loss = (
        ("corrected QLIKE" if table.attrs.get("qlike_dm") != "raw" else "raw QLIKE")
        if vol
        else "squared error"
    )
    level = 1 - (table.attrs.get("mcs_size") or 0.1)
    tests = [("squared error (DM)", prefix + "DM", prefix + "DM_p")]
    if vol:
        tests.append((f"{mcs_loss} (DM)", prefix + "DM_QLIKE", prefix + "p_QLIKE"))
    elif "CW" in table.columns:
        tests.append(("squared error (Clark-West: every return forecast nests zero)", "CW", "CW_p"))
    lines = []
    for h, t in _by_horizon(table):
        at = f"At h = {h}, t" if h is not None else "T"
        names = _rows(t, models, bench)
        if "in_MCS" in t.columns:
            kept = list(t.index[t["in_MCS"].astype(bool)])
            lines.append(
                f"{at}he {level:.0%} model confidence set on {mcs_loss} keeps {', '.join(kept)}"
                + (
                    f": none of {', '.join(n for n in names if n not in kept)} is among the best."
                    if any(n not in kept for n in names)
                    else "."
                )
            )
        for loss, stat, p in tests:
            groups_ = _sorted_by_outcome(t, names, stat, p, alpha)
            said = "; ".join(f"{k}: {', '.join(v)}" for k, v in groups_.items() if v)
            lines.append(f"Against {bench} on {loss}, {said or 'no model tested'}.")
    return "\n".join(lines)


def _ensemble(p) -> np.ndarray:
    """One forecast array: itself, or the mean over a list of per-seed arrays."""
    return np.mean(p, axis=0) if isinstance(p, list | tuple) else np.asarray(p, dtype=np.float64)


def correction_variants(
    task: Task,
    predictions: dict,
    val_predictions: dict | None = None,
    benchmark: str | None = None,
    split: str = "test",
    *,
    protocol: str = "frozen",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The three level corrections of :mod:`.correction` side by side, one row per model (and horizon).

    ``predictions`` / ``val_predictions``: name -> forecasts, or a list of per-seed forecasts (their
    seed ensemble is used); the standard baselines are added. Columns: each model's variance factor
    ``c`` learnt on validation (``factor val``; NaN without validation forecasts), learnt causally by the
    split's last origin (``factor causal``), and the one the split itself would have wanted
    (``factor oracle``: hindsight, for reading only); test QLIKE under each variant (``QLIKE none``,
    ``QLIKE validation``, ``QLIKE causal``) and the Diebold-Mariano outcome on QLIKE against the
    benchmark under each (``vs <benchmark> ...``: :func:`~course_lib.evaluation.comparison.verdict_word`).
    ``table.attrs``: benchmark and the ranking variant. :func:`correction_reversals` reads it.
    """
    if task.kind != "volatility":
        raise ValueError(f"level corrections apply to volatility tasks, got a {task.kind!r} task")
    check_protocol(protocol)
    s = task.split(split)
    benchmark = benchmark or benchmark_rule(task, protocol)
    preds = _check_predictions(task, {n: _ensemble(p) for n, p in predictions.items()}, split)
    val = _check_predictions(task, {n: _ensemble(p) for n, p in (val_predictions or {}).items()}, "val")
    for n, p in standard_baselines(task, split, protocol).items():
        preds.setdefault(n, np.asarray(p, dtype=np.float64))
        val.setdefault(n, np.asarray(standard_baselines(task, "val", protocol)[n], dtype=np.float64))
    if benchmark not in preds:
        raise KeyError(f"benchmark {benchmark!r} is not among the predictions {list(preds)}")
    y = s.y.astype(np.float64)
    kw = dict(y=y, horizons=task.horizons, val_predictions=val, y_val=task.val.y)
    variants = {v: apply_correction(v, preds, **kw) for v in VARIANTS}
    rows = []
    for j, h in enumerate(task.horizons):
        for name, p in preds.items():
            row = {
                "horizon": h,
                "model": name,
                "factor val": np.exp(2 * level_shift(task.val.y[:, j], val[name][:, j])[0])
                if name in val
                else np.nan,
                "factor causal": np.exp(2 * level_shift(y[: len(y) - h, j], p[: len(y) - h, j])[0]),
                "factor oracle": np.exp(2 * level_shift(y[:, j], p[:, j])[0]),
            }
            for v, corrected in variants.items():
                if name not in corrected:
                    row[f"QLIKE {v}"], row[f"vs {benchmark} {v}"] = np.nan, "no test"
                    continue
                row[f"QLIKE {v}"] = float(loss_series(y[:, j], corrected[name][:, j], "qlike").mean())
                twin = benchmark in corrected and np.array_equal(
                    corrected[name][:, j], corrected[benchmark][:, j]
                )
                if name == benchmark or benchmark not in corrected or twin:  # nothing to test
                    row[f"vs {benchmark} {v}"] = "benchmark" if name == benchmark else "no test"
                    continue
                stat, pv = _dm(y[:, j], corrected[name][:, j], corrected[benchmark][:, j], h, "qlike")
                row[f"vs {benchmark} {v}"] = verdict_word(stat, pv, alpha)
            rows.append(row)
    table = pd.DataFrame(rows)
    table = (
        table.drop(columns="horizon").set_index("model")
        if len(task.horizons) == 1
        else table.set_index(["horizon", "model"])
    )
    table.columns.name = f"protocol={protocol}; benchmark={benchmark}; ranking uses: {RANKING_VARIANT}"
    table.attrs.update(benchmark=benchmark, ranking=RANKING_VARIANT, alpha=alpha, protocol=protocol)
    return table


def correction_reversals(table: pd.DataFrame) -> str:
    """Sentences read off :func:`correction_variants`: which variant the ranking uses and why, the
    lowest QLIKE under each variant, how the validation factor compares with the one the test wanted,
    and every model whose verdict against the benchmark changes with the variant."""
    bench, rank = table.attrs.get("benchmark"), table.attrs.get("ranking")
    if bench is None:
        raise ValueError(
            "correction_reversals needs a table made by correction_variants (it reads table.attrs)"
        )
    lines = [
        f"The rankings use the {rank} correction: it is learnt only from errors already known at each "
        "origin, so it neither carries the validation years' level into the test years nor looks ahead."
    ]
    for h, t in _by_horizon(table):
        at = f"h = {h}: " if h is not None else ""
        best = {v: t[f"QLIKE {v}"].idxmin() for v in VARIANTS if t[f"QLIKE {v}"].notna().any()}
        lines.append(
            at
            + "lowest QLIKE "
            + "; ".join(f"{v}: {m} {t.loc[m, f'QLIKE {v}']:.4f}" for v, m in best.items())
            + "."
        )
        known = t.dropna(subset=["factor val"])
        above = int((known["factor val"] > known["factor oracle"]).sum())
        lines.append(
            f"{at}the factor learnt on validation is above the one the test years wanted for {above} of "
            f"{len(known)} forecasts (median {known['factor val'].median():.2f} against "
            f"{known['factor oracle'].median():.2f}); where it is, the validation correction inflates the "
            "variance forecast and raises QLIKE."
        )
        cols = [f"vs {bench} {v}" for v in VARIANTS]
        for name, row in t[cols].iterrows():
            outcomes = dict(zip(VARIANTS, row.to_numpy(), strict=True))
            if name == bench or len({o for o in outcomes.values() if o != "no test"}) < 2:
                continue
            said = ", ".join(f"{o} with {v}" for v, o in outcomes.items())
            lines.append(f"{at}{name} against {bench} reverses with the correction: {said}.")
    if not any("reverses" in line for line in lines):
        lines.append(f"No model's verdict against {bench} depends on the correction.")
    return "\n".join(lines)
