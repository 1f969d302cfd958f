"""Honest evaluation: metrics, the baselines every model must face, and tests a quant would sign.

Baselines (all without look-ahead: a forecast made at origin t uses data up to t only):

* returns:    zero (random walk in prices), historical mean, AR(1) (``arch`` ARX);
* volatility: EWMA with lambda = 0.94 (RiskMetrics), GARCH(1,1), HAR (Corsi, 2009) on the target's
  variance proxy, and a direct log-HAR.

Two protocols, one per table: ``"frozen"`` (the chapters' default) fits each baseline once on the data
the training split covers and then only filters forward, exactly like a network trained once and
frozen; ``"walk_forward"`` re-estimates every ``refit_every`` days on an expanding window.

Targets follow :mod:`course_lib.data.windows`: summed percent log returns, or the log of the mean daily
variance proxy (Parkinson by default) over the horizon. QLIKE is computed on variances ``exp(2 v)``
of log-volatility forecasts ``v``.

Diebold & Mariano (1995) with the Harvey, Leybourne & Newbold (1997) small-sample factor: for loss
differentials ``d_t = L_1t - L_2t``,

    DM = mean(d) / sqrt(LRV(d) / T),   LRV = gamma_0 + 2 sum_{k=1}^{K} (1 - k/(K+1)) gamma_k

a Bartlett-kernel (Newey-West) long-run variance with K = max(h - 1, floor(4 (T/100)^(2/9))) lags by
default (h - 1 alone corrects nothing at h = 1, although daily loss differentials are autocorrelated).
The statistic is scaled by sqrt((T + 1 - 2h + h(h-1)/T) / T) and compared with a t distribution
with T - 1 degrees of freedom. A negative statistic means model 1 has the lower loss. Squared error
of a log volatility is not robust to the noise of the proxy; QLIKE is (Patton, 2011), so volatility
tables test both.

Clark & West (2007) for nested return models (a model against the zero or mean forecast it nests);
model confidence sets (Hansen, Lunde & Nason, 2011) and the SPA test (Hansen, 2005) from
``arch.bootstrap`` for many models at once; a level correction of log-volatility forecasts learnt
on the validation split (the Jensen gap: exp(E log v) is below E v).
"""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .data.features import VAR_FLOOR, log_vol
from .data.windows import Task


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"shape mismatch: y_true {y_true.shape} vs y_pred {y_pred.shape}; reshape explicitly "
            "(an (N,) vs (N, 1) mix-up would silently broadcast to (N, N))"
        )
    if y_true.size == 0:
        raise ValueError("empty arrays: nothing to evaluate")
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("y_true and y_pred must be finite (found NaN or inf)")
    return y_true, y_pred


def mse(y_true, y_pred) -> float:
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean((y_true - y_pred) ** 2))


def mae(y_true, y_pred) -> float:
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def r2_oos(y_true, y_pred, y_benchmark) -> float:
    """Out-of-sample R^2 (Campbell & Thompson, 2008): 1 - SSE(model) / SSE(historical mean)."""
    y_true, y_pred = _pair(y_true, y_pred)
    _, y_benchmark = _pair(y_true, y_benchmark)
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / np.sum((y_true - y_benchmark) ** 2))


def directional_accuracy(y_true, y_pred) -> float:
    """Share of days whose predicted sign matches the realised sign (compare with :func:`up_rate`)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(np.sign(y_true) == np.sign(y_pred)))


def up_rate(y_true) -> float:
    """Share of positive outcomes: the accuracy of always predicting 'up'."""
    return float(np.mean(np.asarray(y_true) > 0))


def qlike(var_true, var_pred) -> float:
    """QLIKE loss (Patton, 2011) on variances: mean(v/f - log(v/f) - 1); robust to a noisy proxy."""
    var_true, var_pred = _pair(var_true, var_pred)
    if (var_true <= 0).any() or (var_pred <= 0).any():
        raise ValueError("QLIKE needs strictly positive variances")
    ratio = var_true / var_pred
    return float(np.mean(ratio - np.log(ratio) - 1.0))


LOSSES = ("se", "ae", "qlike")
PROTOCOLS = ("frozen", "walk_forward")
CORRECTIONS = ("variance", "lognormal")


def loss_series(y_true, y_pred, loss: str = "se") -> np.ndarray:
    """Per-observation losses: ``"se"`` squared error, ``"ae"`` absolute error, ``"qlike"``.

    For ``"qlike"`` both inputs are log volatilities ``v`` (the course's volatility target and
    forecasts) and the loss is taken on the variances ``exp(2 v)``: ``r - log r - 1`` with
    ``r = exp(2 y) / exp(2 p)``.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if loss == "se":
        return (y_true - y_pred) ** 2
    if loss == "ae":
        return np.abs(y_true - y_pred)
    if loss == "qlike":
        log_ratio = 2.0 * (y_true - y_pred)  # log(var_true / var_pred)
        return np.exp(log_ratio) - log_ratio - 1.0
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


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
    y_true, pred1 = _pair(y_true, pred1)
    _, pred2 = _pair(y_true, pred2)
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
    y_true, pred_large = _pair(y_true, pred_large)
    _, pred_small = _pair(y_true, pred_small)
    if y_true.ndim != 1:
        raise ValueError(f"clark_west takes one horizon at a time (1-D arrays), got shape {y_true.shape}")
    f = (y_true - pred_small) ** 2 - ((y_true - pred_large) ** 2 - (pred_small - pred_large) ** 2)
    K = newey_west_lags(len(f), h) if lags is None else int(lags)
    mean, se = _hac_mean(f, K)
    statistic = mean / se
    return DMResult(float(statistic), float(stats.norm.sf(statistic)), mean, K)


def level_shift(y_val, pred_val, method: str = "variance") -> np.ndarray:
    """The log-volatility shift that corrects a forecast's level, learnt on the validation split.

    A model fitted on log volatility forecasts ``exp(E log var)``, below ``E var`` (Jensen), so its
    variance forecast ``exp(2 p)`` is too low for QLIKE. With ``e = 2 (y - p)`` the log variance error:

    * ``"variance"``:  factor c = mean(exp(e)) = mean(s2 / h2), the QLIKE-optimal multiplier;
    * ``"lognormal"``: c = exp(mean(e) + var(e) / 2), the same under a lognormal error.

    Returns ``0.5 log c`` per horizon (n_h,): add it to the log-volatility forecasts.
    """
    y_val, pred_val = _pair(y_val, pred_val)
    if y_val.ndim == 1:
        y_val, pred_val = y_val[:, None], pred_val[:, None]
    e = 2.0 * (y_val - pred_val)
    if method == "variance":
        return 0.5 * np.log(np.mean(np.exp(e), axis=0))
    if method == "lognormal":
        return 0.5 * (e.mean(axis=0) + 0.5 * e.var(axis=0))
    raise ValueError(f"method must be one of {CORRECTIONS}, got {method!r}")


def level_correct(
    predictions: dict[str, np.ndarray],
    val_predictions: dict[str, np.ndarray],
    y_val,
    method: str = "variance",
) -> dict[str, np.ndarray]:
    """Level-corrected forecasts for every model that has validation forecasts (see :func:`level_shift`)."""
    out = {}
    for name, pred in predictions.items():
        if name in val_predictions:
            shift = level_shift(y_val, val_predictions[name], method)
            out[name] = np.asarray(pred, dtype=np.float64) + shift.reshape((1,) * (np.ndim(pred) - 1) + (-1,))
    return out


def model_confidence_set(
    losses: pd.DataFrame, size: float = 0.1, reps: int = 1000, block_size: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Hansen-Lunde-Nason model confidence set over the columns of a (T, n_models) loss frame.

    Returns, per model, the MCS p-value and whether it is in the ``1 - size`` set: the models that
    cannot be told apart from the best. Stationary bootstrap with mean block ``block_size``
    (default: the Newey-West lag + 1), seeded, so a table is reproducible.
    """
    from arch.bootstrap import MCS

    if losses.shape[1] < 2:
        raise ValueError(f"a model confidence set needs at least two models, got {list(losses.columns)}")
    if not np.isfinite(losses.to_numpy()).all():
        raise ValueError("losses must be finite")
    block = block_size or newey_west_lags(len(losses)) + 1
    mcs = MCS(losses, size=size, reps=reps, block_size=block, method="R", seed=seed)
    mcs.compute()
    p = mcs.pvalues["Pvalue"].reindex(losses.columns)
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


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


HAR_WARMUP = 22  # the HAR's longest lag: no HAR forecast from earlier origins


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _blocks(rows: np.ndarray, refit_every: int) -> list[np.ndarray]:
    return [rows[i : i + refit_every] for i in range(0, len(rows), refit_every)]


def _fit_and_forecast(model, last_obs: int, rows: np.ndarray, horizon: int, what: str) -> np.ndarray:
    """Fit an arch model on observations [0, last_obs) and forecast from each origin in ``rows``.

    The forecasts made at origin t filter the data up to t with the fitted parameters.
    Returns (len(rows), horizon): mean or variance forecasts for t+1..t+h.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(last_obs=int(last_obs), disp="off")
        fc = res.forecast(horizon=horizon, start=int(rows.min()), reindex=False)
    return getattr(fc, what).to_numpy()[rows - rows.min()]  # row j: forecasts made at origin rows.min() + j


def _arch_forecasts(
    model, task: Task, rows: np.ndarray, horizon: int, what: str, protocol: str, refit_every: int
) -> np.ndarray:
    """h-step forecasts of an arch model for consecutive origin rows, without look-ahead.

    ``"frozen"``: one fit on the rows the training split covers. ``"walk_forward"``: re-estimated at
    the start of each block of ``refit_every`` origins on the data up to that origin.
    """
    if protocol == "frozen":
        return _fit_and_forecast(model, task.fit_end_row + 1, rows, horizon, what)
    return np.concatenate(
        [_fit_and_forecast(model, block[0] + 1, block, horizon, what) for block in _blocks(rows, refit_every)]
    )


def return_baselines(
    task: Task, split: str = "test", refit_every: int = 252, protocol: str = "frozen"
) -> dict[str, np.ndarray]:
    """Zero, historical mean and AR(1) forecasts aligned with ``task.<split>.y`` (N, n_h).

    ``"frozen"``: the mean and the AR(1) are estimated once on the training years;
    ``"walk_forward"``: an expanding mean up to each origin, the AR(1) refitted every ``refit_every`` days.
    """
    from arch.univariate import ARX

    _check_protocol(protocol)
    if task.kind != "returns":
        raise ValueError(f"return baselines need a returns task, got {task.kind!r}")
    s = task.split(split)
    ret = task.frame["ret"].to_numpy()
    hs = np.array(task.horizons)
    if protocol == "frozen":
        mean = np.full(len(s.rows), ret[: task.fit_end_row + 1].mean())
    else:
        mean = (np.cumsum(ret) / np.arange(1, len(ret) + 1))[s.rows]  # mean of r[0..t]
    ar = _arch_forecasts(
        ARX(ret, lags=1, rescale=False), task, s.rows, max(hs), "mean", protocol, refit_every
    )
    return {
        "zero": np.zeros_like(s.y),
        "hist_mean": (mean[:, None] * hs[None, :]).astype(np.float32),
        "ar1": np.cumsum(ar, axis=1)[:, hs - 1].astype(np.float32),  # summed over the horizon
    }


def _mean_variance_to_logvol(var_paths: np.ndarray, horizons: tuple[int, ...]) -> np.ndarray:
    """(N, max_h) variance forecasts -> (N, n_h) log of the mean variance over each horizon, halved."""
    cum = np.cumsum(var_paths, axis=1)
    hs = np.array(horizons)
    return (0.5 * np.log(np.maximum(cum[:, hs - 1] / hs, VAR_FLOOR))).astype(np.float32)


VOLATILITY_BASELINES = ("ewma", "garch", "har", "log_har")


def volatility_baselines(
    task: Task, split: str = "test", refit_every: int = 252, debias: bool = True, protocol: str = "frozen"
) -> dict[str, np.ndarray]:
    """EWMA(0.94), GARCH(1,1), HAR and log-HAR forecasts of the log-volatility target, aligned with ``task.<split>.y``.

    EWMA and GARCH model the daily returns; HAR regresses the target's own variance proxy (Parkinson
    by default, ``task.target_column``) on its 1-, 5- and 22-day averages; log-HAR regresses each
    horizon's target directly on the logs of those averages (see :func:`log_har_forecasts`).
    ``protocol``: ``"frozen"`` (fitted once on the training years, like the networks) or
    ``"walk_forward"`` (re-estimated every ``refit_every`` days on an expanding window).

    The target is the log of a noisy proxy, so the log of a variance forecast is biased for it
    (Jensen's inequality, and range-based variance runs below squared returns). With ``debias``
    each baseline gets the constant shift that centres its errors on the *training* split, the
    same correction a network learns through its bias term under MSE. No validation or test data is
    used. (The QLIKE-oriented level correction, learnt on validation, is :func:`level_shift`.)
    """
    from arch.univariate import GARCH, HARX, ConstantMean, EWMAVariance, ZeroMean

    _check_protocol(protocol)
    if task.kind != "volatility":
        raise ValueError(f"volatility baselines need a volatility task, got {task.kind!r}")
    s = task.split(split)
    ret = task.frame["ret"].to_numpy()
    proxy = task.frame[task.target_column].to_numpy()
    H = max(task.horizons)
    models = {
        "ewma": (ZeroMean(ret, volatility=EWMAVariance(0.94), rescale=False), "variance"),
        "garch": (ConstantMean(ret, volatility=GARCH(1, 0, 1), rescale=False), "variance"),
        "har": (HARX(proxy, lags=[1, 5, 22], rescale=False), "mean"),
    }
    out = {}
    warm = task.train.rows >= HAR_WARMUP
    for name, (model, what) in models.items():
        if protocol == "frozen":  # one fit: the training-split forecasts (for the shift) come with it
            rows = np.concatenate([s.rows, task.train.rows[warm]])
            paths = _fit_and_forecast(model, task.fit_end_row + 1, rows, H, what)
            paths, fitted = paths[: len(s.rows)], paths[len(s.rows) :]
        else:
            paths = _arch_forecasts(model, task, s.rows, H, what, protocol, refit_every)
            fitted = _fit_and_forecast(model, task.fit_end_row + 1, task.train.rows[warm], H, what)
        forecast = _mean_variance_to_logvol(paths, task.horizons)
        if debias:
            shift = (task.train.y[warm] - _mean_variance_to_logvol(fitted, task.horizons)).mean(axis=0)
            forecast = forecast + shift[None, :]
        out[name] = forecast.astype(np.float32)
    out["log_har"] = log_har_forecasts(task, split, refit_every, protocol)
    return out


def log_har_forecasts(
    task: Task, split: str = "test", refit_every: int = 252, protocol: str = "frozen"
) -> np.ndarray:
    """Direct log-HAR: ``y_{t,h} = b0 + b1 lv1_t + b2 lv5_t + b3 lv22_t`` by least squares, per horizon.

    ``lvk_t`` is the log volatility of the target's variance proxy averaged over days t-k+1..t.
    ``"frozen"``: fitted once on the training samples. ``"walk_forward"``: at each re-estimation date b,
    only samples whose targets were known by b (origin + h <= b) are used; for the training split
    itself there is no earlier data, so it is fitted in-sample on the training years.
    """
    _check_protocol(protocol)
    var = task.frame[task.target_column]
    averages = [log_vol(var.rolling(k).mean().dropna()).reindex(var.index) for k in (1, 5, 22)]  # NaN warm-up
    design = np.column_stack([np.ones(len(var))] + [a.to_numpy() for a in averages])
    rows = np.concatenate([task.split(n).rows for n in ("train", "val", "test")])
    ys = np.concatenate([task.split(n).y for n in ("train", "val", "test")])
    usable_rows = rows >= HAR_WARMUP - 1
    train_fit = usable_rows & np.isin(rows, task.train.rows)
    H = max(task.horizons)
    s = task.split(split)
    out = []
    for block in _blocks(s.rows, len(s.rows) if protocol == "frozen" else refit_every):
        fit = train_fit if protocol == "frozen" else usable_rows & (rows + H <= block[0])
        if fit.sum() < 100:  # walk-forward over the training split: fit on it in-sample
            fit = train_fit
        beta, *_ = np.linalg.lstsq(design[rows[fit]], ys[fit], rcond=None)  # (4, n_h)
        out.append(design[block] @ beta)
    return np.concatenate(out).astype(np.float32)


BENCHMARKS = {"returns": "zero", "volatility": "log_har"}  # what the chapters test every model against


def _baselines(task: Task, split: str, protocol: str) -> dict[str, np.ndarray]:
    """The standard baselines of ``task`` under ``protocol``, computed once per task (cached)."""
    key = (split, protocol)
    if key not in task.cache:
        fn = return_baselines if task.kind == "returns" else volatility_baselines
        task.cache[key] = fn(task, split, protocol=protocol)
    return task.cache[key]


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
    ours = _baselines(task, split, protocol)
    for n in names:
        if not np.allclose(preds[n], ours[n], rtol=1e-5, atol=1e-6):
            raise ValueError(
                f"{n!r} is not the {protocol} baseline of this task: pass protocol= the protocol its "
                f"forecasts were made with (one protocol per table), or rename it"
            )
    val = _baselines(task, "val", protocol)
    return {n: val[n] for n in names}


def _caption(protocol: str, qlike_dm: str | None) -> str:
    text = f"protocol={protocol}"
    if qlike_dm is not None:
        text += f"; QLIKE tests: {qlike_dm.split(' ')[0]}"
    return text


def results_table(
    task: Task,
    predictions: dict[str, np.ndarray],
    benchmark: str | None = None,
    split: str = "test",
    *,
    val_predictions: dict[str, np.ndarray] | None = None,
    protocol: str = "frozen",
    correction: str = "variance",
    mcs_size: float | None = 0.1,
    mcs_reps: int = 1000,
) -> pd.DataFrame:
    """One row per model (and horizon): losses, DM tests against the benchmark, and the MCS.

    Returns: MSE, MAE, R2_oos (against the expanding historical mean, Campbell & Thompson),
    directional accuracy (DA) beside the up-day rate, and a Clark-West test against the benchmark
    (``CW``, ``CW_p``, one-sided: the model beats the forecast it nests). Volatility: MSE and MAE of
    the log volatility; QLIKE of the variance, raw and level-corrected (``QLIKE_lc``, the shift learnt
    on validation, see :func:`level_shift`; NaN for a model without ``val_predictions``; the standard
    baselines get theirs automatically). ``DM``/``DM_p``: Diebold-Mariano on squared error (Newey-West
    lag); ``DM_QLIKE``/``p_QLIKE``: on QLIKE, of the level-corrected forecasts when every model has
    one. A negative DM with a small p means the model beats the benchmark (default
    :data:`BENCHMARKS`: zero for returns, log-HAR for volatility); the benchmark's row shows NaN.
    ``in_MCS``/``MCS_p``: membership of the ``1 - mcs_size`` model confidence set on QLIKE (the
    corrected one when available) for volatility, MSE for returns: the models that cannot be told
    apart from the best, with the search over models accounted for (``mcs_size=None`` skips it).

    ``protocol`` names how every forecast in the table was made (``"frozen"`` or ``"walk_forward"``);
    baselines passed under their standard names are checked against it. The table's column header
    (``table.columns.name``) and ``table.attrs`` say which protocol and which QLIKE the DM uses.
    """
    _check_protocol(protocol)
    s = task.split(split)
    benchmark = benchmark or BENCHMARKS[task.kind]
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
            if not np.allclose(preds[n], _baselines(task, split, protocol)[n], rtol=1e-5, atol=1e-6):
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
        corrected = level_correct(preds, val, task.val.y, correction)
        all_corrected = set(corrected) == set(preds)
        qlike_dm = f"level-corrected ({correction})" if all_corrected else "raw"
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
    table.columns.name = _caption(protocol, qlike_dm)
    table.attrs.update(protocol=protocol, benchmark=benchmark, qlike_dm=qlike_dm, mcs_size=mcs_size)
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
    correction: str = "variance",
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
    if not np.isfinite(p):
        return "n/a"
    if p >= alpha:
        return f"no significant difference, p = {p:.2f}"
    return f"{'better' if stat < 0 else 'WORSE'}, p = {p:.3f}"


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
    groups = table.groupby(level="horizon", sort=False) if table.index.nlevels > 1 else [(None, table)]
    for h, t in groups:
        t = t.droplevel("horizon") if h is not None else t
        at = f"h = {h}: " if h is not None else ""
        names = [n for n in (models or t.index) if n != bench]
        unknown = [n for n in names if n not in t.index]
        if unknown:
            raise KeyError(f"models {unknown} are not rows of the table {list(t.index)}")
        b = t.loc[bench]
        for n in names:
            row = t.loc[n]
            mse_text = f"{'mean MSE over seeds' if seeds else 'MSE'} {row['MSE']:.4f} vs {b['MSE']:.4f}"
            text = f"  {at}{n}: {mse_text} ({_outcome(row[prefix + 'DM'], row[prefix + 'DM_p'], alpha)})"
            if vol:
                q = "QLIKE" if table.attrs.get("qlike_dm") == "raw" else "QLIKE_lc"  # the QLIKE the test used
                stat, p = row[prefix + "DM_QLIKE"], row[prefix + "p_QLIKE"]
                name = f"{'mean ' if seeds else ''}{'corrected ' if q == 'QLIKE_lc' else ''}QLIKE"
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
