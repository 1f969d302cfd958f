"""The level correction of log-volatility forecasts, learnt on the validation split (the Jensen gap).

A model fitted on log volatility forecasts ``exp(E log var)``, below ``E var`` (Jensen's inequality),
so its variance forecast is too low for QLIKE. One multiplicative factor c of the variance, learnt on
validation, corrects the level: with ``e = 2 (y - p)`` the log-variance error,

    c = mean(exp(e))     (``"variance"``: the QLIKE-optimal factor, Patton 2011's loss)
    p_corrected = p + 0.5 log c

Every level shift of the course (tables, the capstone's leaderboard and combination) is this one.
"""

import numpy as np

from .metrics import check_pair

CORRECTIONS = ("variance", "lognormal")


def level_shift(y_val, pred_val, method: str = "variance") -> np.ndarray:
    """The log-volatility shift that corrects a forecast's level, learnt on the validation split.

    A model fitted on log volatility forecasts ``exp(E log var)``, below ``E var`` (Jensen), so its
    variance forecast ``exp(2 p)`` is too low for QLIKE. With ``e = 2 (y - p)`` the log variance error:

    * ``"variance"``:  factor c = mean(exp(e)) = mean(s2 / h2), the QLIKE-optimal multiplier;
    * ``"lognormal"``: c = exp(mean(e) + var(e) / 2), the same under a lognormal error.

    Returns ``0.5 log c`` per horizon (n_h,): add it to the log-volatility forecasts.
    """
    y_val, pred_val = check_pair(y_val, pred_val)
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
