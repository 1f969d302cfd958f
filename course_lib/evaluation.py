"""Honest evaluation: metrics, the baselines every model must face, and the Diebold-Mariano test.

Baselines (all computed without look-ahead: a forecast made at origin t uses data up to t only,
and model parameters are re-estimated every ``refit_every`` days on an expanding window):

* returns:    zero (random walk in prices), historical mean, AR(1) (``arch`` ARX);
* volatility: EWMA with lambda = 0.94 (RiskMetrics), GARCH(1,1) and HAR (Corsi, 2009), all from ``arch``.

Targets follow :mod:`course_lib.windows`: summed percent log returns, or the log of the mean
Garman-Klass volatility over the horizon. QLIKE is computed on variances ``exp(2 * log_vol)``.

Diebold & Mariano (1995) with the Harvey, Leybourne & Newbold (1997) small-sample correction:
for loss differentials ``d_t = L(e1_t) - L(e2_t)``,

    DM = mean(d) / sqrt(LRV(d) / T),   LRV = gamma_0 + 2 sum_{k=1}^{K} (1 - k/(K+1)) gamma_k

a Bartlett-kernel (Newey-West) HAC variance with K = h - 1 lags by default; the statistic is scaled
by sqrt((T + 1 - 2h + h(h-1)/T) / T) and compared with a t distribution with T - 1 degrees of freedom.
A negative statistic means model 1 has the lower loss.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .features import VAR_FLOOR, log_vol
from .windows import Task


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


@dataclass
class DMResult:
    statistic: float
    pvalue: float
    mean_loss_diff: float


def diebold_mariano(y_true, pred1, pred2, h: int = 1, loss: str = "se", lags: int | None = None) -> DMResult:
    """Diebold-Mariano test of equal predictive accuracy of ``pred1`` and ``pred2`` (two-sided).

    ``loss``: ``"se"`` (squared error) or ``"ae"`` (absolute error). Inputs are 1-D (one horizon).
    """
    y_true, pred1 = _pair(y_true, pred1)
    _, pred2 = _pair(y_true, pred2)
    if y_true.ndim != 1:
        raise ValueError(f"diebold_mariano takes one horizon at a time (1-D arrays), got shape {y_true.shape}")
    if loss not in {"se", "ae"}:
        raise ValueError(f"loss must be 'se' or 'ae', got {loss!r}")
    f = np.square if loss == "se" else np.abs
    d = f(y_true - pred1) - f(y_true - pred2)
    T = len(d)
    K = h - 1 if lags is None else lags
    if T < 10 or K >= T:
        raise ValueError(f"too few observations ({T}) for a DM test with {K} lags")
    dc = d - d.mean()
    lrv = dc @ dc / T
    for k in range(1, K + 1):
        lrv += 2.0 * (1.0 - k / (K + 1)) * (dc[k:] @ dc[:-k]) / T
    if lrv <= 0:
        raise ValueError("the two forecasts have identical losses: the DM test is undefined")
    dm = d.mean() / np.sqrt(lrv / T)
    dm *= np.sqrt((T + 1 - 2 * h + h * (h - 1) / T) / T)
    pvalue = 2.0 * stats.t.sf(abs(dm), df=T - 1)
    return DMResult(float(dm), float(pvalue), float(d.mean()))


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


HAR_WARMUP = 22  # the HAR's longest lag: no HAR forecast from earlier origins


def _blocks(rows: np.ndarray, refit_every: int) -> list[np.ndarray]:
    return [rows[i : i + refit_every] for i in range(0, len(rows), refit_every)]


def _arch_forecasts(model, rows: np.ndarray, refit_every: int, horizon: int, what: str) -> np.ndarray:
    """h-step forecasts of an arch model for consecutive origin rows, without look-ahead.

    The parameters are re-estimated at the start of each block of ``refit_every`` origins on the
    data up to that origin. Returns (len(rows), horizon): mean or variance forecasts for t+1..t+h.
    """
    out = []
    for block in _blocks(rows, refit_every):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(last_obs=int(block[0]) + 1, disp="off")  # data up to the block's first origin
            fc = res.forecast(horizon=horizon, start=int(block[0]), reindex=False)
        values = getattr(fc, what).to_numpy()  # row j: forecasts made at origin block[0] + j
        out.append(values[block - block[0]])
    return np.concatenate(out)


def _arch_training_fit(model, rows: np.ndarray, horizon: int, what: str) -> np.ndarray:
    """Forecasts at the training origins from one fit on the training data (for a bias estimate).

    ``rows`` must start after the HAR's 22-day warm-up.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(last_obs=int(rows[-1]) + 1, disp="off")
        fc = res.forecast(horizon=horizon, start=int(rows[0]), reindex=False)
    return getattr(fc, what).to_numpy()[rows - rows[0]]


def return_baselines(task: Task, split: str = "test", refit_every: int = 252) -> dict[str, np.ndarray]:
    """Zero, historical mean and AR(1) forecasts aligned with ``task.<split>.y`` (N, n_h)."""
    from arch.univariate import ARX

    if task.kind != "returns":
        raise ValueError(f"return baselines need a returns task, got {task.kind!r}")
    s = task.split(split)
    ret = task.frame["ret"].to_numpy()
    hs = np.array(task.horizons)
    expanding_mean = np.cumsum(ret) / np.arange(1, len(ret) + 1)  # mean of r[0..t]
    ar = _arch_forecasts(ARX(ret, lags=1, rescale=False), s.rows, refit_every, max(hs), "mean")
    ar_cum = np.cumsum(ar, axis=1)[:, hs - 1]  # summed over the horizon
    return {
        "zero": np.zeros_like(s.y),
        "hist_mean": (expanding_mean[s.rows, None] * hs[None, :]).astype(np.float32),
        "ar1": ar_cum.astype(np.float32),
    }


def _mean_variance_to_logvol(var_paths: np.ndarray, horizons: tuple[int, ...]) -> np.ndarray:
    """(N, max_h) variance forecasts -> (N, n_h) log of the mean variance over each horizon, halved."""
    cum = np.cumsum(var_paths, axis=1)
    hs = np.array(horizons)
    return (0.5 * np.log(np.maximum(cum[:, hs - 1] / hs, VAR_FLOOR))).astype(np.float32)


def volatility_baselines(
    task: Task, split: str = "test", refit_every: int = 252, debias: bool = True
) -> dict[str, np.ndarray]:
    """EWMA(0.94), GARCH(1,1), HAR and log-HAR forecasts of the log-volatility target, aligned with ``task.<split>.y``.

    EWMA and GARCH model the daily returns; HAR regresses the Garman-Klass variance proxy (the
    target's own proxy) on its 1-, 5- and 22-day averages; log-HAR regresses each horizon's target
    directly on the logs of those averages (see :func:`log_har_forecasts`). Each is re-estimated
    every ``refit_every`` days on an expanding window that ends at the forecast origin.

    The target is the log of a noisy proxy, so the log of a variance forecast is biased for it
    (Jensen's inequality, and range-based variance runs below squared returns). With ``debias``
    each baseline gets the constant shift that centres its errors on the *training* split, the
    same correction a network learns through its bias term. No validation or test data is used.
    """
    from arch.univariate import GARCH, HARX, ConstantMean, EWMAVariance, ZeroMean

    if task.kind != "volatility":
        raise ValueError(f"volatility baselines need a volatility task, got {task.kind!r}")
    s = task.split(split)
    ret = task.frame["ret"].to_numpy()
    var_gk = task.frame["var_gk"].to_numpy()
    H = max(task.horizons)
    models = {
        "ewma": (ZeroMean(ret, volatility=EWMAVariance(0.94), rescale=False), "variance", len(s.rows)),
        "garch": (ConstantMean(ret, volatility=GARCH(1, 0, 1), rescale=False), "variance", refit_every),
        "har": (HARX(var_gk, lags=[1, 5, 22], rescale=False), "mean", refit_every),
    }
    out = {}
    for name, (model, what, every) in models.items():
        forecast = _mean_variance_to_logvol(_arch_forecasts(model, s.rows, every, H, what), task.horizons)
        if debias:
            keep = task.train.rows >= HAR_WARMUP
            fitted = _arch_training_fit(model, task.train.rows[keep], H, what)
            shift = (task.train.y[keep] - _mean_variance_to_logvol(fitted, task.horizons)).mean(axis=0)
            forecast = forecast + shift[None, :]
        out[name] = forecast.astype(np.float32)
    out["log_har"] = log_har_forecasts(task, split, refit_every)
    return out


def log_har_forecasts(task: Task, split: str = "test", refit_every: int = 252) -> np.ndarray:
    """Direct log-HAR: ``y_{t,h} = b0 + b1 lv1_t + b2 lv5_t + b3 lv22_t`` by least squares, per horizon.

    ``lvk_t`` is the log volatility of the Garman-Klass variance averaged over days t-k+1..t. At
    each re-estimation date b, only samples whose targets were known by b (origin + h <= b) are used.
    For the training split itself there is no earlier data: it is fitted in-sample on the training years.
    """
    var = task.frame["var_gk"]
    averages = [log_vol(var.rolling(k).mean().dropna()).reindex(var.index) for k in (1, 5, 22)]  # NaN warm-up
    design = np.column_stack([np.ones(len(var))] + [a.to_numpy() for a in averages])
    rows = np.concatenate([task.split(n).rows for n in ("train", "val", "test")])
    ys = np.concatenate([task.split(n).y for n in ("train", "val", "test")])
    usable_rows = rows >= HAR_WARMUP - 1
    H = max(task.horizons)
    s = task.split(split)
    out = []
    for block in _blocks(s.rows, refit_every):
        fit = usable_rows & (rows + H <= block[0])
        if fit.sum() < 100:  # forecasting the training split: fit on it in-sample
            fit = usable_rows & np.isin(rows, task.train.rows)
        beta, *_ = np.linalg.lstsq(design[rows[fit]], ys[fit], rcond=None)  # (4, n_h)
        out.append(design[block] @ beta)
    return np.concatenate(out).astype(np.float32)


BENCHMARKS = {"returns": "zero", "volatility": "har"}


def results_table(
    task: Task, predictions: dict[str, np.ndarray], benchmark: str | None = None, split: str = "test"
) -> pd.DataFrame:
    """One row per model (and horizon): error metrics and a DM test against the benchmark.

    Returns: MSE, MAE, R2_oos (against the historical mean, computed here), directional accuracy
    (DA) beside the up-day rate. Volatility: MSE and MAE of the log volatility and QLIKE of the
    variance. ``DM`` < 0 with a small ``DM_p`` means the model beats the benchmark (default: zero
    for returns, HAR for volatility); the benchmark's own row shows NaN.
    """
    s = task.split(split)
    benchmark = benchmark or BENCHMARKS[task.kind]
    if benchmark not in predictions:
        raise KeyError(f"benchmark {benchmark!r} is not among the predictions {list(predictions)}")
    preds = {name: np.asarray(p, dtype=np.float64) for name, p in predictions.items()}
    for name, p in preds.items():
        if p.shape != s.y.shape:
            raise ValueError(f"{name}: prediction shape {p.shape} != target shape {s.y.shape}")
    if task.kind == "returns":
        hist = return_baselines(task, split)["hist_mean"]
    rows = []
    for j, h in enumerate(task.horizons):
        y = s.y[:, j].astype(np.float64)
        for name, p in preds.items():
            row = {"horizon": h, "model": name, "MSE": mse(y, p[:, j]), "MAE": mae(y, p[:, j])}
            if task.kind == "returns":
                row["R2_oos"] = r2_oos(y, p[:, j], hist[:, j])
                # a forecast that is always zero has no direction: its DA is undefined, not 0
                row["DA"] = directional_accuracy(y, p[:, j]) if np.any(p[:, j] != 0) else np.nan
                row["up_rate"] = up_rate(y)
            else:
                row["QLIKE"] = qlike(np.exp(2 * y), np.exp(2 * p[:, j]))
            if name == benchmark:
                row["DM"], row["DM_p"] = np.nan, np.nan
            else:
                dm = diebold_mariano(y, p[:, j], preds[benchmark][:, j], h=h)
                row["DM"], row["DM_p"] = dm.statistic, dm.pvalue
            rows.append(row)
    table = pd.DataFrame(rows)
    if len(task.horizons) == 1:
        return table.drop(columns="horizon").set_index("model")
    return table.set_index(["horizon", "model"])


def seed_summary(
    task: Task,
    predictions: dict[str, list[np.ndarray]],
    baselines: dict[str, np.ndarray],
    benchmark: str | None = None,
    split: str = "test",
) -> pd.DataFrame:
    """Results over several training seeds: one :func:`results_table` per seed, then averaged.

    ``predictions`` maps a model name to one prediction array per seed. Columns: mean MSE and its
    spread across seeds (``MSE sd``), the mean R2_oos (returns) or QLIKE (volatility), mean DM
    statistic and p-value, and how many seeds were significantly better or worse than the
    benchmark (DM at the 5% level). Deterministic baselines appear once per seed, unchanged.
    """
    n_seeds = {len(p) for p in predictions.values()}
    if len(n_seeds) != 1:
        raise ValueError(f"every model needs the same number of seeds, got {sorted(n_seeds)}")
    (n,) = n_seeds
    per_seed = pd.concat(
        [
            results_table(task, {name: p[s] for name, p in predictions.items()} | baselines, benchmark, split)
            .assign(seed=s)
            for s in range(n)
        ]
    )
    levels = ["horizon", "model"] if len(task.horizons) > 1 else "model"
    grouped = per_seed.groupby(level=levels, sort=False)
    score = "R2_oos" if task.kind == "returns" else "QLIKE"
    table = grouped[["MSE", score, "DM", "DM_p"]].mean()
    table.insert(1, "MSE sd", grouped["MSE"].std())
    table["better (p<0.05)"] = grouped.apply(lambda g: f"{int(((g.DM < 0) & (g.DM_p < 0.05)).sum())}/{n}")
    table["worse (p<0.05)"] = grouped.apply(lambda g: f"{int(((g.DM > 0) & (g.DM_p < 0.05)).sum())}/{n}")
    return table
