"""Monitoring a deployed forecaster: input drift per feature, and its error against the baseline.

**Drift.** The population stability index of a feature compares the share of recent values in each
of ``k`` bins with the share of training values there (bins at training quantiles, so each holds
``1/k`` of the training data):

    PSI = sum_i (a_i - e_i) log(a_i / e_i),      e_i = training share, a_i = recent share

PSI is 0 when nothing moved; by convention < 0.1 is stable, 0.1-0.25 a moderate shift and > 0.25
a major one (the default alert). Sampling noise alone gives about ``(k - 1) / n`` for ``n`` recent
values (0.14 for a quarter of days and 10 bins): short windows need fewer bins or a higher threshold. The two-sample Kolmogorov-Smirnov statistic (the largest gap
between the two empirical distribution functions, :func:`scipy.stats.ks_2samp`) is given beside it.

**Error.** A network is worth serving only while it beats the baseline it replaced. The rolling
ratio ``MSE(model) / MSE(baseline)`` over the last ``window`` forecasts (computed once their
targets are known) raises an alert above ``threshold`` (default 1.2: 20% worse than the baseline).
"""

import numpy as np
import pandas as pd
from scipy import stats

PSI_ALERT = 0.25
SHARE_FLOOR = 1e-4  # an empty bin would give log(0)


def _check_frame(frame: pd.DataFrame, features: list[str], name: str) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a DataFrame with one column per feature, not {type(frame).__name__}")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the features {missing}; it has {list(frame.columns)}")
    values = frame[features].to_numpy(np.float64)
    if len(values) == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(values).all():
        col = features[int(np.argwhere(~np.isfinite(values))[0, 1])]
        raise ValueError(f"{name} has NaN or infinite values (first in feature {col!r})")
    return values


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (1-D samples), quantile bins."""
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if expected.ndim != 1 or actual.ndim != 1 or len(expected) < bins or len(actual) == 0:
        raise ValueError(
            f"psi needs 1-D samples, at least {bins} expected values; got {expected.shape}, {actual.shape}"
        )
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    e, a = np.maximum(e, SHARE_FLOOR), np.maximum(a, SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftMonitor:
    """Per-feature drift of recent inputs against the training distribution (PSI and KS)."""

    def __init__(
        self, reference: pd.DataFrame, features: list[str], bins: int = 10, threshold: float = PSI_ALERT
    ):
        self.features, self.bins, self.threshold = list(features), bins, threshold
        self.reference = _check_frame(reference, self.features, "reference")

    def drift(self, current: pd.DataFrame) -> pd.DataFrame:
        """One row per feature: PSI, KS statistic and p-value, and whether PSI crosses the threshold."""
        values = _check_frame(current, self.features, "current")
        rows = []
        for j, name in enumerate(self.features):
            ks = stats.ks_2samp(self.reference[:, j], values[:, j])
            rows.append(
                {
                    "feature": name,
                    "PSI": psi(self.reference[:, j], values[:, j], self.bins),
                    "KS": ks.statistic,
                    "KS_p": ks.pvalue,
                }
            )
        table = pd.DataFrame(rows).set_index("feature")
        table["alert"] = table["PSI"] > self.threshold
        return table

    def rolling(self, data: pd.DataFrame, window: int = 63, step: int = 5) -> pd.DataFrame:
        """PSI of each feature over the trailing ``window`` days, every ``step`` days (index: last day)."""
        values = _check_frame(data, self.features, "data")
        if not 2 <= window <= len(values):
            raise ValueError(f"window must be in [2, {len(values)}] (the rows of data), got {window}")
        ends = np.arange(window - 1, len(values), step)
        out = [
            [
                psi(self.reference[:, j], values[e - window + 1 : e + 1, j], self.bins)
                for j in range(len(self.features))
            ]
            for e in ends
        ]
        return pd.DataFrame(out, index=data.index[ends], columns=self.features)


def rolling_error(
    y: np.ndarray,
    model: np.ndarray,
    baseline: np.ndarray,
    dates: pd.DatetimeIndex,
    window: int = 63,
    threshold: float = 1.2,
) -> pd.DataFrame:
    """Rolling MSE of the model and of the baseline over ``window`` forecasts, their ratio and an alert.

    Inputs are 1-D, aligned on ``dates`` (the forecast origins). The first ``window - 1`` rows have
    no full window and are dropped.
    """
    y, model, baseline = (np.asarray(a, dtype=np.float64) for a in (y, model, baseline))
    if not (y.ndim == model.ndim == baseline.ndim == 1) or not (
        len(y) == len(model) == len(baseline) == len(dates)
    ):
        raise ValueError(
            f"y, model, baseline and dates must be 1-D of one length, got {y.shape}, {model.shape}, "
            f"{baseline.shape}, {len(dates)}"
        )
    if not 2 <= window <= len(y):
        raise ValueError(f"window must be in [2, {len(y)}], got {window}")
    frame = pd.DataFrame({"model": (y - model) ** 2, "baseline": (y - baseline) ** 2}, index=dates)
    mse = frame.rolling(window).mean().iloc[window - 1 :]
    mse["ratio"] = mse["model"] / mse["baseline"]
    mse["alert"] = mse["ratio"] > threshold
    return mse
