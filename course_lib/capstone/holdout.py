"""A sealed cross-asset hold-out: the board's recipes re-fitted, once, on assets they were never tuned on.

Every chapter and the leaderboard tune on the S&P 500 and read its 2009-2018 test years, so a ranking
on that board is partly a ranking of what was tried on it. The hold-out takes each *recipe* of the
board (architecture, size, budget, training loss, correction rule, benchmark rule) unchanged and
re-fits it on

* the NASDAQ Composite (``^IXIC``, shipped by ``arch``): the capstone's own dates, test 2009-2018;
* the packaged AAPL, MSFT and IBM: the same calendar split inside their 2000-2013 history (train to
  2006, validation 2007-2008, test 2009 to their last day),

with the capstone's task otherwise unchanged (60 days of [r, v, log volume change], next-day log
Parkinson volatility, split by target date, scaler on training rows only). It is scored once:
:func:`holdout_summary` says whether the ranking survives (Spearman's rank correlation with the
S&P 500 board, over the rows both have) and whether each recipe still beats its asset's benchmark.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..data.prices import load_prices
from ..data.windows import Task
from ..evaluation.comparison import verdict_word
from .leaderboard import DOCS
from .task import TEST_END, capstone_task

HOLDOUT_ASSETS = ("^IXIC", "AAPL", "MSFT", "IBM")


def holdout_task(ticker: str) -> Task:
    """The capstone's task on a hold-out asset: same window, features, target and split dates; the test
    targets end on the capstone's last test day or the asset's last day, whichever is earlier."""
    if ticker not in HOLDOUT_ASSETS:
        raise ValueError(f"hold-out assets are {HOLDOUT_ASSETS}, got {ticker!r}")
    prices = load_prices(ticker, offline=True)
    last = min(pd.Timestamp(TEST_END), prices.index[-1])  # the last test target
    return capstone_task(prices, ticker=ticker, test_end=str(last.date()))


def holdout_summary(boards: dict[str, pd.DataFrame], reference: pd.DataFrame, alpha: float = 0.05):
    """One row per recipe: its corrected QLIKE and verdict against each board's benchmark (the S&P 500
    ``reference`` first, then each hold-out asset), and whether the asset's MCS keeps it; and, per asset,
    Spearman's rank correlation of corrected QLIKE with the reference over the rows both boards have.

    Returns ``(table, correlations)``; ``correlations`` is :func:`rank_correlations` of the table.
    """
    if not boards:
        raise ValueError("holdout_summary needs at least one hold-out board")
    columns = {}
    rows = sorted(
        set().union(*(b.index for b in boards.values())) & set(reference.index),
        key=list(reference.index).index,
    )
    reference = reference.loc[rows]  # the recipes re-fitted on at least one hold-out asset
    for asset, board in {"^GSPC": reference, **boards}.items():
        columns[(asset, "QLIKE_lc")] = board["QLIKE_lc"]
        columns[(asset, "verdict")] = pd.Series(
            [
                verdict_word(d, p, alpha)
                for d, p in zip(board["ens DM_QLIKE"], board["ens p_QLIKE"], strict=True)
            ],
            index=board.index,
        )
        columns[(asset, "in_MCS")] = board["in_MCS"].astype(bool)
    table = pd.DataFrame(columns)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["asset", ""])
    return table, rank_correlations(table)


def rank_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Per hold-out asset of a :func:`holdout_summary` table: Spearman's rank correlation of corrected
    QLIKE with the S&P 500 (``^GSPC``) column over the rows both scored; a DataFrame (rho, p, rows)."""
    sp = table[("^GSPC", "QLIKE_lc")]
    correlations = {}
    for asset in table.columns.get_level_values("asset").unique().drop("^GSPC"):
        both = sp.notna() & table[(asset, "QLIKE_lc")].notna()
        rho, p = stats.spearmanr(sp[both], table.loc[both, (asset, "QLIKE_lc")])
        correlations[asset] = {"rho": float(rho), "p": float(p), "rows": int(both.sum())}
    return pd.DataFrame(correlations).T


def table_benchmarks(table: pd.DataFrame) -> dict[str, str]:
    """Each asset's benchmark in a :func:`holdout_summary` table: the row its verdict column calls
    ``benchmark`` (the one row with no test against itself)."""
    out = {}
    for asset in table.columns.get_level_values("asset").unique():
        rows = table.index[table[(asset, "verdict")] == "benchmark"]
        if len(rows) != 1:
            raise ValueError(f"{asset}: expected one benchmark row, found {list(rows)}")
        out[asset] = rows[0]
    return out


def load_holdout(docs: str | Path = DOCS) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """The committed hold-out (``make holdout``: ``docs/holdout.csv``) as ``(table, correlations,
    benchmarks)``, ready for :func:`holdout_sentences`; the correlations and benchmarks are re-derived
    from the table, not stored beside it."""
    path = Path(docs) / "holdout.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"no hold-out results at {path}: run `make holdout` (about an hour on 2 cores)"
        )
    table = pd.read_csv(path, header=[0, 1], index_col=0)
    table.columns = table.columns.set_names(["asset", ""])
    for asset in table.columns.get_level_values("asset").unique():
        mcs = table[(asset, "in_MCS")]
        table[(asset, "in_MCS")] = mcs.map({True: True, False: False, "True": True, "False": False})
    return table, rank_correlations(table), table_benchmarks(table)


def holdout_sentences(table: pd.DataFrame, correlations: pd.DataFrame, benchmarks: dict[str, str]) -> str:
    """What the hold-out shows, in words: the rank correlation per asset, and every recipe whose verdict
    against the benchmark on the S&P 500 does not hold on an asset."""
    lines = [
        f"{asset}: Spearman rank correlation with the S&P 500 board {r['rho']:+.2f} over {int(r['rows'])} rows "
        f"(p = {r['p']:.3f}); benchmark by the rule: {benchmarks.get(asset, '?')}."
        for asset, r in correlations.iterrows()
    ]
    sp = table["^GSPC"]["verdict"]
    for name in table.index:
        if name in benchmarks.values() or not isinstance(sp.get(name), str) or sp[name] == "benchmark":
            continue
        scored = [a for a in correlations.index if isinstance(table.loc[name, (a, "verdict")], str)]
        lost = [
            f"{a} {table.loc[name, (a, 'verdict')]}"
            for a in scored
            if table.loc[name, (a, "verdict")] != sp[name]
        ]
        if lost:
            lines.append(f"{name}: {sp[name]} on the S&P 500; " + ", ".join(lost) + " on the hold-out.")
    mean_rho = float(np.mean(correlations["rho"]))
    lines.append(
        f"Mean rank correlation {mean_rho:+.2f}: "
        + (
            "the S&P 500 ranking largely carries over."
            if mean_rho > 0.5
            else "the S&P 500 ranking does not carry over well."
        )
    )
    return "\n".join(lines)
