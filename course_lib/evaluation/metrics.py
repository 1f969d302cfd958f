"""Point-forecast metrics and per-observation losses; QLIKE (Patton, 2011) on variances.

    MSE = mean((y - p)^2),   MAE = mean|y - p|,   R2_oos = 1 - SSE(model) / SSE(historical mean)
    QLIKE(s2, h2) = s2 / h2 - log(s2 / h2) - 1

R2_oos is Campbell & Thompson's (2008). QLIKE is robust to the noise of a variance proxy: it is a
member of Patton's (2011) class of robust losses (MSE on variances is another); squared error of a log
volatility is not. For log-volatility forecasts ``v`` (the course's
volatility target) QLIKE is taken on the variances ``exp(2 v)`` (:func:`loss_series`).
Every metric refuses inputs of different shapes (an (N,) vs (N, 1) mix-up would broadcast to (N, N)).
"""

import numpy as np


def check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Two float64 arrays of the same shape, non-empty and finite; raises otherwise."""
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
    y_true, y_pred = check_pair(y_true, y_pred)
    return float(np.mean((y_true - y_pred) ** 2))


def mae(y_true, y_pred) -> float:
    y_true, y_pred = check_pair(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def r2_oos(y_true, y_pred, y_benchmark) -> float:
    """Out-of-sample R^2 (Campbell & Thompson, 2008): 1 - SSE(model) / SSE(historical mean)."""
    y_true, y_pred = check_pair(y_true, y_pred)
    _, y_benchmark = check_pair(y_true, y_benchmark)
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / np.sum((y_true - y_benchmark) ** 2))


def directional_accuracy(y_true, y_pred) -> float:
    """Share of days whose predicted sign matches the realised sign (compare with :func:`up_rate`)."""
    y_true, y_pred = check_pair(y_true, y_pred)
    return float(np.mean(np.sign(y_true) == np.sign(y_pred)))


def up_rate(y_true) -> float:
    """Share of positive outcomes: the accuracy of always predicting 'up'."""
    return float(np.mean(np.asarray(y_true) > 0))


def qlike(var_true, var_pred) -> float:
    """QLIKE loss (Patton, 2011) on variances: mean(v/f - log(v/f) - 1); robust to a noisy proxy."""
    var_true, var_pred = check_pair(var_true, var_pred)
    if (var_true <= 0).any() or (var_pred <= 0).any():
        raise ValueError("QLIKE needs strictly positive variances")
    ratio = var_true / var_pred
    return float(np.mean(ratio - np.log(ratio) - 1.0))


LOSSES = ("se", "ae", "qlike")


def loss_series(y_true, y_pred, loss: str = "se") -> np.ndarray:
    """Per-observation losses: ``"se"`` squared error, ``"ae"`` absolute error, ``"qlike"``.

    For ``"qlike"`` both inputs are log volatilities ``v`` (the course's volatility target and
    forecasts) and the loss is taken on the variances ``exp(2 v)``: ``r - log r - 1`` with
    ``r = exp(2 y) / exp(2 p)``.
    """
    y_true, y_pred = check_pair(y_true, y_pred)
    if loss == "se":
        return (y_true - y_pred) ** 2
    if loss == "ae":
        return np.abs(y_true - y_pred)
    if loss == "qlike":
        log_ratio = 2.0 * (y_true - y_pred)  # log(var_true / var_pred)
        return np.exp(log_ratio) - log_ratio - 1.0
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
