"""The baselines every model must face, without look-ahead (a forecast made at origin t uses data up to t).

* returns:    zero (random walk in prices), historical mean, AR(1) (``arch`` ARX);
* volatility: EWMA with lambda = 0.94 (RiskMetrics), GARCH(1,1), HAR (Corsi, 2009) on the target's
  variance proxy, and a direct log-HAR:  y_{t,h} = b0 + b1 lv1_t + b2 lv5_t + b3 lv22_t.

Two protocols, one per table: ``"frozen"`` (the chapters' default) fits each baseline once on the data
the training split covers and then only filters forward, exactly like a network trained once and
frozen; ``"walk_forward"`` re-estimates every ``refit_every`` days on an expanding window.

Targets follow :mod:`course_lib.data.windows`: summed percent log returns, or half the log of the mean
daily variance proxy (Parkinson by default) over the horizon; a variance path becomes that target
through :func:`course_lib.data.features.log_vol_targets`.
"""

import warnings

import numpy as np

from ..data.features import log_vol, log_vol_targets
from ..data.windows import Task

PROTOCOLS = ("frozen", "walk_forward")
HAR_WARMUP = 22  # the HAR's longest lag: no HAR forecast from earlier origins


def check_protocol(protocol: str) -> None:
    """Raise unless ``protocol`` is one of :data:`PROTOCOLS`."""
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

    check_protocol(protocol)
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

    check_protocol(protocol)
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
        forecast = log_vol_targets(paths, task.horizons).astype(np.float32)
        if debias:
            in_sample = log_vol_targets(fitted, task.horizons).astype(np.float32)  # (N_train, n_h)
            shift = (task.train.y[warm] - in_sample).mean(axis=0)
            forecast = forecast + shift[None, :]
        out[name] = forecast.astype(np.float32)
    out["log_har"] = log_har_forecasts(task, split, refit_every, protocol)
    return out


LONG_MEMORY_LAGS = (1, 5, 22, 66, 126)  # day, week, month, quarter, half-year: for long windows


def log_har_design(task: Task, lags=(1, 5, 22)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The log-HAR regressors of every day and the samples of every split.

    Returns ``design`` (T, 1 + len(lags)): ``[1, lv{k}_t for k in lags]`` per row of ``task.frame`` (NaN
    during the warm-up), ``rows`` (N,): the origin row of every train, validation and test sample, and
    ``ys`` (N, n_h): their targets. A fit at date b may use the samples with ``rows + max(h) <= b`` only.
    """
    lags = tuple(int(k) for k in lags)
    if min(lags) < 1:
        raise ValueError(f"log-HAR lags must be >= 1 day, got {lags}")
    var = task.frame[task.target_column]
    averages = [log_vol(var.rolling(k).mean().dropna()).reindex(var.index) for k in lags]  # NaN warm-up
    design = np.column_stack([np.ones(len(var))] + [a.to_numpy() for a in averages])  # (T, 1 + len(lags))
    rows = np.concatenate([task.split(n).rows for n in ("train", "val", "test")])  # (N,)
    ys = np.concatenate([task.split(n).y for n in ("train", "val", "test")])  # (N, n_h)
    return design, rows, ys


def log_har_forecasts(
    task: Task, split: str = "test", refit_every: int = 252, protocol: str = "frozen", lags=(1, 5, 22)
) -> np.ndarray:
    """Direct log-HAR: ``y_{t,h} = b0 + b1 lv1_t + b2 lv5_t + b3 lv22_t`` by least squares, per horizon.

    ``lvk_t`` is the log volatility of the target's variance proxy averaged over days t-k+1..t.
    ``lags``: the averages; :data:`LONG_MEMORY_LAGS` adds a quarter and a half-year, the long-memory
    HAR that a network reading 256 days should face (Corsi 2009's cascade, extended; its first
    ``max(lags) - 1`` origins have no forecast inputs and are left out of the fit).
    ``"frozen"``: fitted once on the training samples. ``"walk_forward"``: at each re-estimation date b,
    only samples whose targets were known by b (origin + h <= b) are used; for the training split
    itself there is no earlier data, so it is fitted in-sample on the training years.
    """
    check_protocol(protocol)
    lags = tuple(int(k) for k in lags)
    design, rows, ys = log_har_design(task, lags)
    usable_rows = rows >= max(HAR_WARMUP, max(lags)) - 1
    train_fit = usable_rows & np.isin(rows, task.train.rows)
    H = max(task.horizons)
    s = task.split(split)
    out = []
    for block in _blocks(s.rows, len(s.rows) if protocol == "frozen" else refit_every):
        fit = train_fit if protocol == "frozen" else usable_rows & (rows + H <= block[0])
        if fit.sum() < 100:  # walk-forward over the training split: fit on it in-sample
            fit = train_fit
        beta, *_ = np.linalg.lstsq(design[rows[fit]], ys[fit], rcond=None)  # (1 + len(lags), n_h)
        out.append(design[block] @ beta)
    return np.concatenate(out).astype(np.float32)


def standard_baselines(task: Task, split: str, protocol: str) -> dict[str, np.ndarray]:
    """The standard baselines of ``task`` under ``protocol``, computed once per task (cached)."""
    key = (split, protocol)
    if key not in task.cache:
        fn = return_baselines if task.kind == "returns" else volatility_baselines
        task.cache[key] = fn(task, split, protocol=protocol)
    return task.cache[key]
