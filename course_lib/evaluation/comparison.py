"""Tests of predictive accuracy: Diebold-Mariano, Clark-West, the model confidence set and SPA.

Diebold & Mariano (1995) with the Harvey, Leybourne & Newbold (1997) small-sample factor: for loss
differentials ``d_t = L_1t - L_2t``,

    DM = mean(d) / sqrt(LRV(d) / T),   LRV = gamma_0 + 2 sum_{k=1}^{K} (1 - k/(K+1)) gamma_k

a Bartlett-kernel (Newey-West) long-run variance with K = max(h - 1, floor(4 (T/100)^(2/9))) lags by
default (h - 1 alone corrects nothing at h = 1, although daily loss differentials are autocorrelated).
The statistic is scaled by sqrt((T + 1 - 2h + h(h-1)/T) / T) and compared with a t distribution
with T - 1 degrees of freedom. A negative statistic means model 1 has the lower loss.

Clark & West (2007) for nested return models (a model against the zero or mean forecast it nests);
model confidence sets (Hansen, Lunde & Nason, 2011) and the SPA test (Hansen, 2005) from
``arch.bootstrap`` for many models at once.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import LOSSES, check_pair, loss_series


def newey_west_lags(n_obs: int, h: int = 1) -> int:
    """The default HAC lag: at least h - 1 (overlapping targets) and Newey-West's floor(4 (T/100)^(2/9))."""
    return max(h - 1, int(np.floor(4.0 * (n_obs / 100.0) ** (2.0 / 9.0))))


def _hac_mean(d: np.ndarray, lags: int) -> tuple[float, float]:
    """Mean of ``d`` and its Bartlett-kernel (Newey-West) standard error."""
    T = len(d)
    if T < 10 or lags >= T:
        raise ValueError(f"too few observations ({T}) for a HAC test with {lags} lags")
    if lags < 0:
        raise ValueError(f"lags must be >= 0, got {lags}")
    dc = d - d.mean()
    lrv = dc @ dc / T
    for k in range(1, lags + 1):
        lrv += 2.0 * (1.0 - k / (lags + 1)) * (dc[k:] @ dc[:-k]) / T
    if not lrv > 0:
        raise ValueError("the two forecasts have identical losses: the test is undefined")
    return float(d.mean()), float(np.sqrt(lrv / T))


VERDICTS = ("better", "worse", "no significant difference")  # the course's words for a test's outcome


def verdict_word(stat: float, p: float, alpha: float = 0.05, one_sided: bool = False) -> str:
    """The outcome of a comparison against a benchmark in the course's one vocabulary (:data:`VERDICTS`).

    Diebold-Mariano (two-sided; a negative ``stat`` means the lower loss): ``better`` or ``worse`` when
    ``p < alpha``, else ``no significant difference``. Clark-West (``one_sided=True``; a positive ``stat``
    means the model beats the forecast it nests) can only say ``better``. ``benchmark`` where there is no
    test (a NaN statistic or p-value: the benchmark's own row)."""
    if not (np.isfinite(stat) and np.isfinite(p)):
        return "benchmark"
    if p >= alpha:
        return VERDICTS[2]
    if one_sided:
        return VERDICTS[0] if stat > 0 else VERDICTS[2]
    return VERDICTS[0] if stat < 0 else VERDICTS[1]


@dataclass
class DMResult:
    statistic: float
    pvalue: float
    mean_loss_diff: float
    lags: int = 0


def diebold_mariano(y_true, pred1, pred2, h: int = 1, loss: str = "se", lags: int | None = None) -> DMResult:
    """Diebold-Mariano test of equal predictive accuracy of ``pred1`` and ``pred2`` (two-sided).

    ``loss``: ``"se"``, ``"ae"`` or ``"qlike"`` (inputs are then log volatilities, see
    :func:`loss_series`). ``lags``: the Newey-West lag; by default :func:`newey_west_lags`.
    Inputs are 1-D (one horizon).
    """
    y_true, pred1 = check_pair(y_true, pred1)
    _, pred2 = check_pair(y_true, pred2)
    if y_true.ndim != 1:
        raise ValueError(
            f"diebold_mariano takes one horizon at a time (1-D arrays), got shape {y_true.shape}"
        )
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    d = loss_series(y_true, pred1, loss) - loss_series(y_true, pred2, loss)
    T = len(d)
    K = newey_west_lags(T, h) if lags is None else int(lags)
    mean, se = _hac_mean(d, K)
    dm = mean / se * np.sqrt((T + 1 - 2 * h + h * (h - 1) / T) / T)
    pvalue = 2.0 * stats.t.sf(abs(dm), df=T - 1)
    return DMResult(float(dm), float(pvalue), mean, K)


def clark_west(y_true, pred_large, pred_small, h: int = 1, lags: int | None = None) -> DMResult:
    """Clark & West (2007) test that a larger model beats the nested ``pred_small`` (one-sided).

    Under the null the small model (zero or the mean forecast) is right and the large model only adds
    estimation noise, which penalises its MSE; CW adds that noise back:
    ``f_t = e_small^2 - (e_large^2 - (pred_small - pred_large)^2)``, and tests mean(f) > 0 with a
    Newey-West standard error. A positive statistic with a small p-value favours the large model.
    """
    y_true, pred_large = check_pair(y_true, pred_large)
    _, pred_small = check_pair(y_true, pred_small)
    if y_true.ndim != 1:
        raise ValueError(f"clark_west takes one horizon at a time (1-D arrays), got shape {y_true.shape}")
    f = (y_true - pred_small) ** 2 - ((y_true - pred_large) ** 2 - (pred_small - pred_large) ** 2)
    K = newey_west_lags(len(f), h) if lags is None else int(lags)
    mean, se = _hac_mean(f, K)
    statistic = mean / se
    return DMResult(float(statistic), float(stats.norm.sf(statistic)), mean, K)


def model_confidence_set(
    losses: pd.DataFrame, size: float = 0.1, reps: int = 1000, block_size: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Hansen-Lunde-Nason model confidence set over the columns of a (T, n_models) loss frame.

    Returns, per model, the MCS p-value and whether it is in the ``1 - size`` set: the models that
    cannot be told apart from the best. Stationary bootstrap with mean block ``block_size``
    (default: the Newey-West lag + 1), seeded, so a table is reproducible. Models with identical
    losses (e.g. a baseline fed data with nothing removed, beside the same baseline on the full data)
    are one model to the test (their loss difference has no variance) and share its p-value.
    """
    from arch.bootstrap import MCS

    if losses.shape[1] < 2:
        raise ValueError(f"a model confidence set needs at least two models, got {list(losses.columns)}")
    if not np.isfinite(losses.to_numpy()).all():
        raise ValueError("losses must be finite")
    first = {}  # each column -> the first column with the same losses
    for name in losses.columns:
        first[name] = next((u for u in set(first.values()) if losses[u].equals(losses[name])), name)
    unique = losses[list(dict.fromkeys(first.values()))]
    if unique.shape[1] < 2:
        p = pd.Series(1.0, index=losses.columns)
        return pd.DataFrame({"MCS_p": p, "in_MCS": p > size})
    block = block_size or newey_west_lags(len(losses)) + 1
    mcs = MCS(unique, size=size, reps=reps, block_size=block, method="R", seed=seed)
    mcs.compute()
    p = mcs.pvalues["Pvalue"].reindex([first[n] for n in losses.columns])
    p.index = losses.columns
    return pd.DataFrame({"MCS_p": p, "in_MCS": p > size})


def spa_test(
    benchmark_losses,
    model_losses: pd.DataFrame,
    reps: int = 1000,
    block_size: int | None = None,
    seed: int = 0,
) -> pd.Series:
    """Hansen's SPA test: does any of many models beat one benchmark? Returns the p-values.

    ``benchmark_losses`` (T,), ``model_losses`` (T, n_models). A small ``consistent`` p-value means
    at least one model has a lower expected loss than the benchmark, with the search over models
    accounted for (unlike the smallest of many DM p-values).
    """
    from arch.bootstrap import SPA

    benchmark_losses = np.asarray(benchmark_losses, dtype=np.float64)
    if model_losses.shape[0] != len(benchmark_losses):
        raise ValueError(f"benchmark has {len(benchmark_losses)} losses, models {model_losses.shape[0]}")
    block = block_size or newey_west_lags(len(benchmark_losses)) + 1
    spa = SPA(benchmark_losses, model_losses, reps=reps, block_size=block, seed=seed)
    spa.compute()
    return spa.pvalues
