"""The capstone's leaderboard (chapter 08): entries beside the baselines, a forecast combination, one table.

:func:`leaderboard` scores every entry, the baselines (EWMA, GARCH, HAR, log-HAR, random walk) and a
combination of the best entries under the course's protocol (:mod:`course_lib.evaluation.protocol`):
QLIKE raw and level-corrected (the causal correction, :mod:`course_lib.evaluation.correction`), MSE,
the Diebold-Mariano test of the seed ensemble against the benchmark the rule picks (the strongest
classical baseline on validation) on corrected QLIKE with a Newey-West variance, the seeds that beat
it, time, parameters and the 90% model confidence set. :func:`evaluate_submission` is that in one call, and
:func:`plot_leaderboard` draws it. :func:`validation_choice` picks the board's best on validation (the
pick a forecaster could have made). :func:`save_predictions` writes every entry's forecasts (per seed,
validation and test) to one compressed file and :func:`load_entries` reads them back, so that every
figure of a committed board can be re-derived in seconds.

:func:`combination_weights`: weights on the simplex of a combination of log-volatility forecasts,

    w = argmin_w  QLIKE_val( sum_i w_i v_i + c(w) ),   c(w) the level shift of the combination,

learnt on the validation split only.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

from ..data.windows import Task
from ..evaluation.baselines import standard_baselines
from ..evaluation.correction import RANKING_VARIANT, apply_correction, level_shift
from ..evaluation.metrics import loss_series
from ..evaluation.protocol import benchmark_rule
from ..evaluation.tables import seed_summary
from .entries import Entry, leaderboard_entry, train_entry
from .task import capstone_task, random_walk


def combination_weights(val_forecasts: dict[str, np.ndarray], y_val) -> pd.Series:
    """Weights on the simplex (>= 0, sum 1) of a combination of log-volatility forecasts.

    Chosen to minimise the *validation* QLIKE of the level-corrected combination
    ``sum_i w_i v_i + c`` (c: the QLIKE-optimal shift of :func:`course_lib.evaluation.correction.level_shift`,
    profiled out), so nothing of the test years enters them.
    """
    names = list(val_forecasts)
    if len(names) < 2:
        raise ValueError(f"a combination needs at least two forecasts, got {names}")
    y = np.asarray(y_val, dtype=np.float64).reshape(-1)
    V = np.column_stack([np.asarray(val_forecasts[n], dtype=np.float64).reshape(-1) for n in names])
    if V.shape[0] != len(y):
        raise ValueError(f"validation forecasts have {V.shape[0]} rows, y_val {len(y)}")

    def corrected_qlike(z):
        w = np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # softmax: the simplex without constraints
        p = V @ w
        p = p + level_shift(y, p)
        return float(loss_series(y, p, "qlike").mean())

    res = optimize.minimize(
        corrected_qlike,
        np.zeros(len(names)),
        method="Nelder-Mead",
        options=dict(xatol=1e-6, fatol=1e-9, maxiter=4000),
    )
    w = np.exp(res.x - res.x.max())
    w = np.where(w / w.sum() < 1e-3, 0.0, w)  # weights below 0.1% are round-off of a corner solution
    return pd.Series(w / w.sum(), index=names, name="weight")


def _baseline_entries(task: Task, n_seeds: int) -> dict[str, tuple[list, list]]:
    return {"random_walk": ([random_walk(task, "test")] * n_seeds, [random_walk(task, "val")] * n_seeds)}


def _refuse_twins(forecasts: dict[str, np.ndarray]) -> None:
    """Refuse two rows whose seed ensembles differ by a constant (a copy, or a constant shift, of
    another row): a level correction makes them one forecast, and the model confidence set cannot rank
    identical losses."""
    names = list(forecasts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            gap = np.asarray(forecasts[a], dtype=np.float64) - forecasts[b]
            if np.allclose(gap, gap.mean(axis=0), rtol=0, atol=1e-6):
                raise ValueError(
                    f"{a!r} and {b!r} are the same forecast after the level correction (one is a copy or a "
                    "constant shift of the other): the model confidence set cannot tell them apart; drop one"
                )


def leaderboard(
    task: Task,
    entries: list[Entry],
    benchmark: str | None = None,
    combine: int = 3,
    mcs_size: float = 0.1,
) -> pd.DataFrame:
    """The capstone table: every entry beside the baselines, a forecast combination, one protocol.

    Columns: family, params, seconds (training per seed), QLIKE (raw, mean over seeds) and its sd,
    QLIKE_lc (level-corrected, the causal correction of the course's protocol) and sd, MSE and sd,
    ``ens QLIKE`` and ``ens QLIKE_lc`` (the seed ensemble), ``ens DM_QLIKE`` / ``ens p_QLIKE``
    (Diebold-Mariano of the seed ensemble against ``benchmark``, default the one
    :func:`~course_lib.evaluation.protocol.benchmark_rule` picks, on the corrected QLIKE differential,
    Newey-West variance), ``better QLIKE (p<0.05)`` (seeds that beat the benchmark significantly) and ``in_MCS``
    (the 1 - ``mcs_size`` model confidence set of the seed ensembles on corrected QLIKE). Sorted by
    QLIKE_lc. ``combine``: the ``combine`` entries (models, not baselines) with the lowest *validation*
    corrected QLIKE (seed ensembles) are combined with :func:`combination_weights` into the row ``combination`` (0: none);
    its weights are in ``table.attrs["weights"]``.
    """
    if not entries:
        raise ValueError("the leaderboard needs at least one entry (train_entry or leaderboard_entry)")
    n = {len(e.test) for e in entries}
    if len(n) != 1:
        raise ValueError(
            f"every entry needs the same number of seeds, got {sorted(n)}: train them with the same seeds"
        )
    (n_seeds,) = n
    names = [e.name for e in entries]
    if len(set(names)) != len(names) or set(names) & {
        "ewma",
        "garch",
        "har",
        "log_har",
        "random_walk",
        "combination",
    }:
        raise ValueError(f"entry names must be unique and differ from the baselines' names, got {names}")
    protocols = {e.protocol for e in entries}
    if len(protocols) != 1:
        raise ValueError(f"one protocol per table, got {sorted(protocols)}")
    (protocol,) = protocols
    base_test, base_val = (
        standard_baselines(task, "test", protocol),
        standard_baselines(task, "val", protocol),
    )
    preds = {e.name: e.test for e in entries}
    vals = {e.name: e.val for e in entries}
    for name, (t, v) in _baseline_entries(task, n_seeds).items():
        preds[name], vals[name] = t, v
    weights = None
    if combine and len(entries) >= 2:
        pool_val = {e.name: np.mean(e.val, axis=0) for e in entries}
        pool_test = {e.name: np.mean(e.test, axis=0) for e in entries}
        y = task.val.y[:, 0].astype(np.float64)

        def val_lc(p):
            p = p[:, 0]
            return loss_series(y, p + level_shift(y, p), "qlike").mean()

        best = sorted(pool_val, key=lambda k: val_lc(pool_val[k]))[: max(combine, 2)]
        weights = combination_weights({k: pool_val[k] for k in best}, task.val.y)
    if weights is not None and (weights > 0).sum() < 2:  # a corner: the "combination" is one model
        weights = None
    if weights is not None:
        preds["combination"] = [sum(w * pool_test[k] for k, w in weights.items())] * n_seeds
        vals["combination"] = [sum(w * pool_val[k] for k, w in weights.items())] * n_seeds
    # the seed ensembles, raw and level-corrected
    ens = {k: np.mean(v, axis=0) for k, v in preds.items()} | dict(base_test)
    ens_val = {k: np.mean(v, axis=0) for k, v in vals.items()} | dict(base_val)
    _refuse_twins(ens)
    corrected = apply_correction(
        RANKING_VARIANT, ens, y=task.test.y, horizons=task.horizons, val_predictions=ens_val, y_val=task.val.y
    )
    table = seed_summary(
        task,
        preds,
        base_test,
        benchmark=benchmark,
        val_predictions=vals,
        protocol=protocol,
        mcs_size=mcs_size,
    )
    yt = task.test.y[:, 0].astype(np.float64)
    table["ens QLIKE"] = [loss_series(yt, ens[m][:, 0], "qlike").mean() for m in table.index]
    table["ens QLIKE_lc"] = [loss_series(yt, corrected[m][:, 0], "qlike").mean() for m in table.index]
    info = {e.name: (e.family, e.params, e.seconds) for e in entries}
    fam = {
        "ewma": "baseline",
        "garch": "baseline",
        "har": "baseline",
        "log_har": "baseline",
        "random_walk": "baseline",
    }
    table.insert(0, "family", [info[m][0] if m in info else fam.get(m, "combination") for m in table.index])
    table.insert(1, "params", [info[m][1] if m in info else np.nan for m in table.index])
    table.insert(2, "seconds", [info[m][2] if m in info else np.nan for m in table.index])
    attrs = dict(table.attrs)
    table = table.sort_values("QLIKE_lc")
    table.attrs.update(attrs, weights=weights, n_seeds=n_seeds)
    return table


def evaluate_submission(
    model_or_predictions,
    task: Task | None = None,
    name: str = "my_model",
    seeds=(0,),
    others: list[Entry] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """A learner's model on the capstone leaderboard in one call.

    ``model_or_predictions``: an :class:`Entry`; a dict ``{"test": [...], "val": [...]}`` of forecasts
    per seed; or a model (an nn.Module, or a function ``seed -> model``), trained here with
    :func:`train_entry` (``kwargs`` go to the Trainer). ``others``: entries already trained (course
    models) to rank against. Returns :func:`leaderboard`'s table.
    """
    task = task or capstone_task()
    if kwargs and isinstance(model_or_predictions, Entry | dict):
        raise TypeError(
            f"trainer arguments {sorted(kwargs)} only apply to a model; forecasts are not trained"
        )
    if isinstance(model_or_predictions, Entry):
        entry = model_or_predictions
    elif isinstance(model_or_predictions, dict):
        missing = {"test", "val"} - set(model_or_predictions)
        if missing:
            raise KeyError(f"a dict of forecasts needs the keys 'test' and 'val' (missing {sorted(missing)})")
        entry = leaderboard_entry(name, model_or_predictions["test"], model_or_predictions["val"], task)
    else:
        entry = train_entry(model_or_predictions, task, seeds=seeds, name=name, family="learner", **kwargs)
    return leaderboard(task, [*(others or []), entry])


def plot_leaderboard(table: pd.DataFrame, ax=None, column: str = "QLIKE_lc"):
    """The leaderboard at a glance: test QLIKE per model (mean over seeds, bars of +- 1 sd across
    seeds), the benchmark's level as a line, members of the model confidence set filled, the others
    hollow. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.35 * len(table) + 1.5))
    t = table.sort_values(column, ascending=False)
    y = np.arange(len(t))
    sd = t[f"{column} sd"].fillna(0).to_numpy()
    member = t["in_MCS"].fillna(False).astype(bool).to_numpy()
    ax.errorbar(t[column], y, xerr=sd, fmt="none", ecolor="grey", capsize=3)
    ax.scatter(t[column][member], y[member], color="C0", zorder=3, label="in the 90% MCS (corrected QLIKE)")
    ax.scatter(
        t[column][~member], y[~member], facecolor="white", edgecolor="C3", zorder=3, label="outside the MCS"
    )
    bench = table.attrs.get("benchmark")
    if bench in t.index:
        ax.axvline(t.loc[bench, column], color="k", lw=0.8, ls="--", label=f"{bench}")
    ax.set_yticks(y, [f"{m} ({f})" for m, f in zip(t.index, t["family"], strict=True)])
    label = "level-corrected QLIKE" if column == "QLIKE_lc" else "raw QLIKE"
    ax.set_xlabel(f"test {label}, 2009-2018 (lower is better; bars: +-1 sd over seeds)")
    ax.set_title(f"Capstone leaderboard, {label} ({table.attrs.get('n_seeds', '?')} seeds)")
    ax.legend(loc="best", fontsize=8)
    return ax


def validation_choice(task: Task, entries: list[Entry]) -> tuple[str, pd.Series]:
    """The entry a forecaster could have picked before the test years: the lowest validation QLIKE of
    its seed ensemble at its best level (the shift learnt on validation itself, the benchmark rule's
    criterion, :func:`course_lib.evaluation.protocol.validation_scores`). Returns the name and every
    entry's score."""
    if not entries:
        raise ValueError("validation_choice needs at least one entry")
    y = task.val.y.astype(np.float64)
    scores = {}
    for e in entries:
        p = np.mean(e.val, axis=0)
        scores[e.name] = float(loss_series(y, p + level_shift(y, p)[None, :], "qlike").mean())
    scores = pd.Series(scores, name="validation QLIKE at its best level").sort_values()
    return str(scores.index[0]), scores


DOCS = Path(__file__).resolve().parents[2] / "docs"  # where `make leaderboard` commits the full board


def committed_board(docs=DOCS) -> pd.DataFrame:
    """The full board `make leaderboard` committed (``docs/leaderboard.csv``), with its benchmark in
    ``attrs`` (the rule's pick, the same as every table of the course's)."""
    path = Path(docs) / "leaderboard.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make leaderboard` to make the full board")
    table = pd.read_csv(path, index_col=0)
    table.attrs["benchmark"] = benchmark_rule(capstone_task())
    return table


def save_predictions(entries: list[Entry], path) -> Path:
    """Every entry's validation and test forecasts, per seed (float32, compressed ``.npz``), and its
    family, parameters, seconds and protocol (JSON inside the same file)."""
    path = Path(path)
    arrays, meta = {}, {}
    for e in entries:
        arrays[f"test/{e.name}"] = np.stack(e.test).astype(np.float32)  # (seeds, N_test, 1)
        arrays[f"val/{e.name}"] = np.stack(e.val).astype(np.float32)  # (seeds, N_val, 1)
        meta[e.name] = dict(family=e.family, params=e.params, seconds=e.seconds, protocol=e.protocol)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    return path


def load_entries(path, task: Task) -> list[Entry]:
    """The entries :func:`save_predictions` wrote, checked against ``task``'s splits, in their order."""
    with np.load(Path(path)) as data:
        if "meta" not in data:
            raise ValueError(f"{path} is not a leaderboard predictions file (no 'meta' record)")
        meta = json.loads(bytes(data["meta"]).decode())
        entries = []
        for name, m in meta.items():
            e = leaderboard_entry(
                name, list(data[f"test/{name}"]), list(data[f"val/{name}"]), task, family=m["family"],
                seconds=float("nan") if m["seconds"] is None else m["seconds"], params=m["params"],
            )  # fmt: skip
            e.protocol = m["protocol"]
            entries.append(e)
    return entries
