"""The level correction of log-volatility forecasts (the Jensen gap), and the three ways to learn it.

A model fitted on log volatility forecasts ``exp(E log var)``, below ``E var`` (Jensen's inequality),
so its variance forecast is too low for QLIKE. One multiplicative factor c of the variance corrects the
level: with ``e = 2 (y - p)`` the log-variance error,

    c = mean(exp(e))     (``"variance"``: the QLIKE-optimal factor, Patton 2011's loss)
    p_corrected = p + 0.5 log c

Where c is learnt is a choice that can decide a ranking, so the course reports three variants
(:data:`VARIANTS`) and ranks on one (:data:`RANKING_VARIANT`):

* ``"none"``: the raw forecast;
* ``"validation"``: c learnt once on the validation split (for the S&P 500 that is the 2007-2008
  crisis, whose level is far above the calm test years');
* ``"causal"``: at each test origin t, c learnt on the test-period errors already known at t, an
  expanding window: the error of origin s at horizon h is known once its target is, at s + h <= t.
  Nothing later than t is used, nothing of the validation years either; before :data:`MIN_KNOWN`
  errors are known the forecast stays raw.

Every level shift of the course (tables, the capstone's leaderboard and combination) is one of these.
"""

import numpy as np

from .metrics import check_pair

CORRECTIONS = ("variance", "lognormal")  # how c is computed from the errors
VARIANTS = ("none", "validation", "causal")  # where c is learnt
RANKING_VARIANT = "causal"  # the one the course's tables test and rank on: no crisis level, no look-ahead
MIN_KNOWN = 20  # errors a causal correction waits for before it shifts anything


def _factor_log(e: np.ndarray, method: str, axis: int = 0) -> np.ndarray:
    """log c of log-variance errors ``e`` along ``axis``."""
    if method == "variance":
        return np.log(np.mean(np.exp(e), axis=axis))
    if method == "lognormal":
        return e.mean(axis=axis) + 0.5 * e.var(axis=axis)
    raise ValueError(f"method must be one of {CORRECTIONS}, got {method!r}")


def _as_2d(y, pred) -> tuple[np.ndarray, np.ndarray]:
    y, pred = check_pair(y, pred)
    return (y[:, None], pred[:, None]) if y.ndim == 1 else (y, pred)


def level_shift(y_val, pred_val, method: str = "variance") -> np.ndarray:
    """The log-volatility shift that corrects a forecast's level, learnt on the validation split.

    A model fitted on log volatility forecasts ``exp(E log var)``, below ``E var`` (Jensen), so its
    variance forecast ``exp(2 p)`` is too low for QLIKE. With ``e = 2 (y - p)`` the log variance error:

    * ``"variance"``:  factor c = mean(exp(e)) = mean(s2 / h2), the QLIKE-optimal multiplier;
    * ``"lognormal"``: c = exp(mean(e) + var(e) / 2), the same under a lognormal error.

    Returns ``0.5 log c`` per horizon (n_h,): add it to the log-volatility forecasts.
    """
    y_val, pred_val = _as_2d(y_val, pred_val)
    return 0.5 * _factor_log(2.0 * (y_val - pred_val), method)


def causal_level_shift(y, pred, horizons, method: str = "variance", min_known: int = MIN_KNOWN) -> np.ndarray:
    """The level shift of each origin learnt only from errors known at that origin, (N, n_h).

    Rows are consecutive daily origins. The error ``e_s = 2 (y_s - p_s)`` of origin s at horizon h is
    known at origin t once its target is (s + h <= t), so row t's shift is

        0.5 log c_t,   c_t = mean_{s <= t - h} exp(e_s)        (``"variance"``; ``"lognormal"`` likewise)

    and 0 while fewer than ``min_known`` errors are known. ``y`` is used only through those known errors:
    changing any target of an origin after t - h leaves row t unchanged (``tests/test_evaluation.py``).
    """
    y, pred = _as_2d(y, pred)
    horizons = [int(h) for h in np.atleast_1d(horizons)]
    if len(horizons) != y.shape[1] or min(horizons) < 1:
        raise ValueError(f"horizons {horizons} must be >= 1, one per column of y {y.shape}")
    if min_known < 1:
        raise ValueError(f"min_known must be >= 1, got {min_known}")
    n = len(y)
    e = 2.0 * (y - pred)
    count = np.arange(1, n + 1)[:, None]
    if method == "variance":
        running = np.log(np.cumsum(np.exp(e), axis=0) / count)  # row k: log c from errors 0..k
    elif method == "lognormal":
        mean = np.cumsum(e, axis=0) / count
        running = mean + 0.5 * (np.cumsum(e**2, axis=0) / count - mean**2)
    else:
        raise ValueError(f"method must be one of {CORRECTIONS}, got {method!r}")
    out = np.zeros_like(e)
    for j, h in enumerate(horizons):
        last = np.arange(n) - h  # the last origin whose error is known at row t
        ok = last + 1 >= min_known
        out[ok, j] = 0.5 * running[last[ok], j]
    return out


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


def apply_correction(
    variant: str,
    predictions: dict[str, np.ndarray],
    *,
    y,
    horizons,
    val_predictions: dict[str, np.ndarray] | None = None,
    y_val=None,
    method: str = "variance",
) -> dict[str, np.ndarray]:
    """The forecasts of one split under one correction :data:`VARIANTS` entry.

    ``y`` are the split's realised targets (N, n_h), read by ``"causal"`` only through the errors known
    at each origin; ``"validation"`` needs ``val_predictions`` and ``y_val`` and corrects only the models
    that have validation forecasts; ``"none"`` returns the forecasts unchanged.
    """
    if variant not in VARIANTS:
        raise ValueError(f"correction must be one of {VARIANTS}, got {variant!r}")
    preds = {n: np.asarray(p, dtype=np.float64) for n, p in predictions.items()}
    if variant == "none":
        return preds
    if variant == "validation":
        if y_val is None:
            raise ValueError("the 'validation' correction needs y_val and val_predictions")
        return level_correct(preds, val_predictions or {}, y_val, method)
    return {n: p + causal_level_shift(y, p, horizons, method).reshape(p.shape) for n, p in preds.items()}
