"""The economic reading of a volatility forecast (chapter 08): volatility targeting and a VaR backtest.

Both rescale the Parkinson forecast to the close-to-close return scale with one factor learnt on
validation (Parkinson ignores the overnight move, so it runs below the return's variance):

    k^2 = mean( r_{t+1}^2 / sigma_hat_{t+1}^2 )  on validation          (:func:`return_scale`)
    w_t = target / (k sigma_hat_{t+1})                                  (:func:`vol_targeting`)
    VaR_{t+1} = -z_alpha k sigma_hat_{t+1}                              (:func:`var_backtest`)

The violations of the VaR are tested with Kupiec's (1995) proportion of failures and Christoffersen's
(1998) independence and conditional coverage (:func:`kupiec_test`, :func:`christoffersen_test`, which
live in :mod:`course_lib.evaluation.backtests` and are re-exported here).
"""

import numpy as np
import pandas as pd
from scipy import stats

from ..data.windows import Task
from ..evaluation.backtests import christoffersen_test, kupiec_test
from ..evaluation.baselines import standard_baselines
from .entries import Entry
from .task import random_walk


def return_scale(task: Task, val_logvol) -> float:
    """The factor k with E[r^2] = k^2 sigma_hat^2 on validation: Parkinson volatility -> return volatility."""
    r = task.frame["ret"].to_numpy()[task.val.rows + 1]
    sigma = np.exp(np.asarray(val_logvol, dtype=np.float64).reshape(-1))
    return float(np.sqrt(np.mean(r**2 / sigma**2)))


def vol_targeting(
    task: Task, test_logvol, val_logvol, target: float = 10.0, max_leverage: float = 3.0
) -> dict:
    """Volatility targeting on the S&P 500 with a forecast: position w_t = target / (k sigma_hat_{t+1}).

    ``target``: annualised volatility in percent; k from :func:`return_scale` (validation). Returns
    the realised annualised volatility of the targeted portfolio on the test years, its ratio to the
    target, the spread of its one-year rolling volatility around the target (RMSE, percent points) and
    the mean daily turnover ``mean |w_t - w_{t-1}|``.
    """
    k = return_scale(task, val_logvol)
    r = task.frame["ret"].to_numpy()[task.test.rows + 1]
    sigma = k * np.exp(np.asarray(test_logvol, dtype=np.float64).reshape(-1))
    w = np.minimum(target / np.sqrt(252) / sigma, max_leverage)
    pr = w * r
    realised = float(pr.std(ddof=1) * np.sqrt(252))
    rolling = pd.Series(pr).rolling(252).std().dropna().to_numpy() * np.sqrt(252)
    return {
        "realised vol": realised,
        "ratio": realised / target,
        "rolling RMSE": float(np.sqrt(np.mean((rolling - target) ** 2))),
        "turnover": float(np.mean(np.abs(np.diff(w)))),
    }


def var_backtest(task: Task, test_logvol, val_logvol, alpha: float = 0.01) -> dict:
    """A Gaussian ``alpha`` VaR from a volatility forecast, backtested on the test years.

    VaR_{t+1} = -z_alpha k sigma_hat_{t+1} (k from :func:`return_scale`, validation). Returns the
    violation rate, Kupiec's p-value and Christoffersen's independence and conditional-coverage p-values.
    """
    k = return_scale(task, val_logvol)
    r = task.frame["ret"].to_numpy()[task.test.rows + 1]
    var = -stats.norm.ppf(alpha) * k * np.exp(np.asarray(test_logvol, dtype=np.float64).reshape(-1))
    hits = r < -var
    lr, p = kupiec_test(hits, alpha)
    ch = christoffersen_test(hits, alpha)
    return {
        "violations": int(hits.sum()),
        "rate": float(hits.mean()),
        "p_kupiec": p,
        "p_ind": ch["p_ind"],
        "p_cc": ch["p_cc"],
    }


def economic_table(
    task: Task, table: pd.DataFrame, entries: list[Entry], models: list[str] | None = None, **kw
) -> pd.DataFrame:
    """Volatility targeting and the 1% VaR backtest for the seed ensembles of ``models`` (default:
    every entry) beside HAR and GARCH (and the combination when the table has one)."""
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    series = {e.name: (np.mean(e.test, axis=0), np.mean(e.val, axis=0)) for e in entries}
    series |= {n: (base_t[n], base_v[n]) for n in ("har", "garch")}
    weights = table.attrs.get("weights")
    if weights is not None:
        pool = (
            series
            | {n: (base_t[n], base_v[n]) for n in base_t}
            | {"random_walk": (random_walk(task, "test"), random_walk(task, "val"))}
        )
        series["combination"] = tuple(sum(w * pool[k][i] for k, w in weights.items()) for i in (0, 1))
    names = models or list(series)
    rows = {}
    for n in names:
        t, v = series[n]
        rows[n] = {
            **{f"vt {k}": x for k, x in vol_targeting(task, t, v, **kw).items()},
            **{f"VaR {k}": x for k, x in var_backtest(task, t, v).items()},
        }
    return pd.DataFrame(rows).T
